//! Engine behaviour with synthetic steps (no AWS). Time is paused, so
//! durations are exact and tests are instant.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use super::*;

#[derive(Default)]
struct Journal {
    events: Mutex<Vec<String>>,
    running: Mutex<usize>,
    max_running: Mutex<usize>,
    seen_inputs: Mutex<BTreeMap<String, Vec<String>>>,
}

impl Journal {
    fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }
    fn position(&self, event: &str) -> usize {
        self.events()
            .iter()
            .position(|e| e == event)
            .unwrap_or_else(|| panic!("no event {event} in {:?}", self.events()))
    }
}

struct Fake {
    id: StepId,
    kind: &'static str,
    deps: Vec<Dependency>,
    work: Duration,
    fail: bool,
}

fn step(id: &str, deps: &[&str], work_ms: u64) -> Box<dyn Step<Journal>> {
    Box::new(Fake {
        id: id.into(),
        kind: "test:fake",
        deps: deps.iter().map(|d| Dependency::on(*d, "test")).collect(),
        work: Duration::from_millis(work_ms),
        fail: false,
    })
}

fn failing(id: &str, deps: &[&str]) -> Box<dyn Step<Journal>> {
    Box::new(Fake {
        id: id.into(),
        kind: "test:fake",
        deps: deps.iter().map(|d| Dependency::on(*d, "test")).collect(),
        work: Duration::from_millis(1),
        fail: true,
    })
}

impl Fake {
    async fn work(&self, j: &Journal, cx: &StepCx<'_>) -> Result<Record, StepError> {
        j.events.lock().unwrap().push(format!("start {}", self.id));
        j.seen_inputs.lock().unwrap().insert(
            self.id.to_string(),
            cx.inputs().map(|(id, _)| id.to_string()).collect(),
        );
        {
            let mut r = j.running.lock().unwrap();
            *r += 1;
            let mut m = j.max_running.lock().unwrap();
            *m = (*m).max(*r);
        }
        tokio::time::sleep(self.work).await;
        *j.running.lock().unwrap() -= 1;
        j.events.lock().unwrap().push(format!("end {}", self.id));
        if self.fail {
            return Err(format!("{} broke", self.id).into());
        }
        Ok(Record::default().output(format!("{}Out", self.id), "v"))
    }
}

#[async_trait]
impl Step<Journal> for Fake {
    fn id(&self) -> &StepId {
        &self.id
    }
    fn kind(&self) -> &'static str {
        self.kind
    }
    fn dependencies(&self) -> &[Dependency] {
        &self.deps
    }
    async fn observe(&self, j: &Journal, cx: &StepCx<'_>) -> Result<Observation, StepError> {
        self.work(j, cx).await?;
        Ok(Observation::Missing)
    }
    async fn ensure(&self, j: &Journal, cx: &StepCx<'_>) -> Result<Applied, StepError> {
        let record = self.work(j, cx).await?;
        Ok(Applied::new(Change::Created, record))
    }
    async fn destroy(&self, j: &Journal, cx: &StepCx<'_>) -> Result<Removed, StepError> {
        self.work(j, cx).await?;
        Ok(Removed::Deleted { notes: vec![] })
    }
}

#[derive(Default)]
struct Recorder {
    finished: Mutex<Vec<String>>,
    remembered: Mutex<Vec<String>>,
}

impl StepEvents for Recorder {
    fn progress(&self, _: &StepId, _: &str) {}
    fn remember(&self, step: &StepId, key: &str, id: &str) {
        self.remembered
            .lock()
            .unwrap()
            .push(format!("{step}/{key}={id}"));
    }
}

#[async_trait]
impl WalkObserver for Recorder {
    fn step_started(&self, _: &StepId, _: &'static str) {}
    async fn step_finished(&self, report: &StepReport) {
        self.finished
            .lock()
            .unwrap()
            .push(format!("{} {}", report.id, report.outcome.label()));
    }
}

async fn run(
    steps: Vec<Box<dyn Step<Journal>>>,
    operation: Operation,
    parallelism: usize,
) -> (WalkReport, Journal, Recorder) {
    let graph = Graph::new(steps).expect("valid graph");
    let journal = Journal::default();
    let recorder = Recorder::default();
    let cancel = CancelFlag::new();
    let previous = BTreeMap::new();
    let report = walk(
        &graph,
        &journal,
        WalkOptions {
            operation,
            parallelism,
            previous: &previous,
            cancel: &cancel,
            weight: None,
        },
        &recorder,
    )
    .await;
    (report, journal, recorder)
}

#[tokio::test(start_paused = true)]
async fn a_step_starts_only_after_its_dependencies_finish() {
    let (report, j, _) = run(
        vec![
            step("vpc", &[], 10),
            step("subnets", &["vpc"], 10),
            step("nat", &["subnets"], 10),
        ],
        Operation::Ensure,
        8,
    )
    .await;
    assert!(report.succeeded());
    assert!(j.position("end vpc") < j.position("start subnets"));
    assert!(j.position("end subnets") < j.position("start nat"));
}

#[tokio::test(start_paused = true)]
async fn independent_steps_run_concurrently_up_to_the_bound() {
    let steps = (0..6).map(|i| step(&format!("s{i}"), &[], 100)).collect();
    let (report, j, _) = run(steps, Operation::Ensure, 4).await;
    assert_eq!(*j.max_running.lock().unwrap(), 4);
    // Two rounds of 100 ms: 4 then 2.
    assert_eq!(report.wall, Duration::from_millis(200));
}

#[tokio::test(start_paused = true)]
async fn a_step_waiting_on_dependencies_holds_no_slot() {
    // With 2 slots: `slow` runs; `after` waits on it; `x` and `y` must still
    // get the second slot one after the other while `after` waits.
    let (report, j, _) = run(
        vec![
            step("slow", &[], 100),
            step("after", &["slow"], 10),
            step("x", &[], 10),
            step("y", &[], 10),
        ],
        Operation::Ensure,
        2,
    )
    .await;
    assert!(j.position("end y") < j.position("end slow"));
    assert_eq!(report.wall, Duration::from_millis(110));
}

/// More steps ready than slots: the head of the longest chain goes first,
/// whatever the registry order, so a crowd of leaves does not delay it.
#[tokio::test(start_paused = true)]
async fn when_slots_are_short_the_longest_chain_starts_first() {
    let mut steps: Vec<_> = (0..4)
        .map(|i| step(&format!("alarm{i}"), &[], 100))
        .collect();
    steps.extend([
        step("cluster", &[], 100),
        step("instance", &["cluster"], 100),
        step("parameters", &["instance"], 100),
    ]);
    let (report, j, _) = run(steps, Operation::Ensure, 1).await;
    assert_eq!(j.events()[0], "start cluster");
    // Registry order among equals: the alarms after the chain, in order.
    assert!(j.position("start alarm0") < j.position("start alarm1"));
    assert_eq!(report.wall, Duration::from_millis(700));

    // Reversed for destroy: the chain's other end heads it then.
    let mut steps: Vec<_> = (0..4)
        .map(|i| step(&format!("alarm{i}"), &[], 100))
        .collect();
    steps.extend([
        step("cluster", &[], 100),
        step("instance", &["cluster"], 100),
        step("parameters", &["instance"], 100),
    ]);
    let (_, j, _) = run(steps, Operation::Destroy, 1).await;
    assert_eq!(j.events()[0], "start parameters");
}

/// Weighted by what a step's kind typically takes: one slow step heading
/// a short chain goes before a longer chain of quick ones.
#[tokio::test(start_paused = true)]
async fn a_slow_step_outweighs_a_longer_chain_of_quick_ones() {
    let mut cluster = Fake {
        id: "cluster".into(),
        kind: "test:slow",
        deps: Vec::new(),
        work: Duration::from_millis(10),
        fail: false,
    };
    let steps = |cluster| {
        vec![
            step("a", &[], 10),
            step("b", &["a"], 10),
            step("c", &["b"], 10),
            Box::new(cluster) as Box<dyn Step<Journal>>,
        ]
    };
    let weigh = |kind: &'static str| if kind == "test:slow" { 600.0 } else { 1.0 };
    let first = |steps, weight| async move {
        let graph = Graph::new(steps).unwrap();
        let journal = Journal::default();
        let (cancel, previous) = (CancelFlag::new(), BTreeMap::new());
        walk(
            &graph,
            &journal,
            WalkOptions {
                operation: Operation::Ensure,
                parallelism: 1,
                previous: &previous,
                cancel: &cancel,
                weight,
            },
            &Recorder::default(),
        )
        .await;
        journal.events()[0].clone()
    };
    assert_eq!(first(steps(cluster), Some(&weigh)).await, "start cluster");
    cluster = Fake {
        id: "cluster".into(),
        kind: "test:slow",
        deps: Vec::new(),
        work: Duration::from_millis(10),
        fail: false,
    };
    assert_eq!(first(steps(cluster), None).await, "start a", "unit weights");
}

#[tokio::test(start_paused = true)]
async fn failure_skips_dependents_reports_root_cause_and_independent_branches_go_on() {
    let (report, j, recorder) = run(
        vec![
            step("vpc", &[], 10),
            failing("subnets", &["vpc"]),
            step("nat", &["subnets"], 10),
            step("routes", &["nat"], 10),
            step("kms", &[], 50),
            step("bucket", &["kms"], 10),
        ],
        Operation::Ensure,
        8,
    )
    .await;
    assert!(!report.succeeded());
    let failures: Vec<_> = report.failures().map(|s| s.id.to_string()).collect();
    assert_eq!(failures, ["subnets"]);
    // Transitive skip names the root cause, not the intermediate step.
    assert_eq!(
        report.get("routes").unwrap().outcome,
        Outcome::Skipped {
            because: vec!["subnets".into()]
        }
    );
    assert!(matches!(
        report.get("nat").unwrap().outcome,
        Outcome::Skipped { .. }
    ));
    assert_eq!(report.get("bucket").unwrap().outcome, Outcome::Created);
    assert!(!j.events().iter().any(|e| e.contains("nat")));
    // Skipped steps are reported to the observer too (so state can say so).
    assert!(
        recorder
            .finished
            .lock()
            .unwrap()
            .contains(&"routes skipped".to_string())
    );
    match &report.get("subnets").unwrap().outcome {
        Outcome::Failed { error } => assert_eq!(error, "subnets broke"),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_step_skipped_by_two_failures_names_both() {
    let (report, _, _) = run(
        vec![
            failing("a", &[]),
            failing("b", &[]),
            step("c", &["a", "b"], 10),
        ],
        Operation::Ensure,
        8,
    )
    .await;
    assert_eq!(
        report.get("c").unwrap().outcome,
        Outcome::Skipped {
            because: vec!["a".into(), "b".into()]
        }
    );
}

#[tokio::test(start_paused = true)]
async fn destroy_walks_the_graph_in_reverse() {
    let (report, j, _) = run(
        vec![
            step("vpc", &[], 10),
            step("subnets", &["vpc"], 10),
            step("nat", &["subnets"], 10),
        ],
        Operation::Destroy,
        8,
    )
    .await;
    assert!(report.succeeded());
    assert!(j.position("end nat") < j.position("start subnets"));
    assert!(j.position("end subnets") < j.position("start vpc"));
    assert_eq!(report.get("vpc").unwrap().outcome, Outcome::Deleted);
}

#[tokio::test(start_paused = true)]
async fn a_failed_destroy_keeps_what_it_depends_on() {
    let (report, j, _) = run(
        vec![step("vpc", &[], 10), failing("subnets", &["vpc"])],
        Operation::Destroy,
        8,
    )
    .await;
    assert!(matches!(
        report.get("vpc").unwrap().outcome,
        Outcome::Skipped { .. }
    ));
    assert!(!j.events().contains(&"start vpc".to_string()));
}

#[tokio::test(start_paused = true)]
async fn a_step_sees_only_its_declared_dependencies() {
    let (_, j, _) = run(
        vec![
            step("a", &[], 10),
            step("b", &[], 10),
            step("c", &["a"], 10),
        ],
        Operation::Ensure,
        8,
    )
    .await;
    let seen = j.seen_inputs.lock().unwrap();
    assert_eq!(seen["c"], ["a"]);
}

#[tokio::test(start_paused = true)]
async fn critical_path_is_the_heaviest_dependency_chain() {
    let (report, _, _) = run(
        vec![
            step("a", &[], 10),
            step("b", &["a"], 30),
            step("c", &[], 25),
            step("d", &["c"], 1),
        ],
        Operation::Ensure,
        8,
    )
    .await;
    let path: Vec<_> = report
        .critical_path
        .steps
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(path, ["a", "b"]);
    assert_eq!(report.critical_path.total, Duration::from_millis(40));
    assert_eq!(report.wall, Duration::from_millis(40));
}

#[tokio::test(start_paused = true)]
async fn cancel_starts_nothing_new_and_lets_running_steps_finish() {
    let graph = Graph::new(vec![
        step("a", &[], 100),
        step("b", &["a"], 10),
        step("c", &[], 100),
    ])
    .unwrap();
    let journal = Journal::default();
    let recorder = Recorder::default();
    let cancel = CancelFlag::new();
    let previous = BTreeMap::new();
    let walking = walk(
        &graph,
        &journal,
        WalkOptions {
            operation: Operation::Ensure,
            parallelism: 8,
            previous: &previous,
            cancel: &cancel,
            weight: None,
        },
        &recorder,
    );
    let canceller = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        cancel.cancel();
    };
    let (report, ()) = tokio::join!(walking, canceller);
    assert!(report.cancelled);
    assert_eq!(report.get("a").unwrap().outcome, Outcome::Created);
    assert_eq!(report.get("c").unwrap().outcome, Outcome::Created);
    assert_eq!(report.get("b").unwrap().outcome, Outcome::Cancelled);
    assert!(!report.succeeded());
}

#[test]
fn graph_rejects_cycles_unknown_dependencies_and_duplicate_ids() {
    let cycle = Graph::new(vec![
        step("a", &["c"], 1),
        step("b", &["a"], 1),
        step("c", &["b"], 1),
    ]);
    match cycle {
        Err(GraphError::Cycle(path)) => {
            assert_eq!(path.first(), path.last());
            assert_eq!(path.len(), 4);
        }
        other => panic!("expected a cycle, got {:?}", other.err()),
    }
    assert_eq!(
        Graph::new(vec![step("a", &["zz"], 1)]).err(),
        Some(GraphError::UnknownDependency {
            step: "a".into(),
            on: "zz".into()
        })
    );
    assert_eq!(
        Graph::new(vec![step("a", &[], 1), step("a", &[], 1)]).err(),
        Some(GraphError::DuplicateId("a".into()))
    );
}

#[test]
fn error_chain_prints_every_cause_once() {
    #[derive(Debug, thiserror::Error)]
    #[error("creating subnet")]
    struct Outer(#[source] std::io::Error);
    let e = Outer(std::io::Error::other("throttled"));
    assert_eq!(error_chain(&e), "creating subnet: throttled");
}
