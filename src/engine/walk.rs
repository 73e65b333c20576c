//! The concurrent walk: a step starts once everything it waits on is done,
//! at most `parallelism` steps run at once, and a failure skips only what
//! depends on it.
//!
//! Like Terraform's walker, a step waiting on dependencies holds no slot.
//! Unlike it, when more steps are ready than slots are free, the one with
//! the longest chain of steps still to run after it starts first (see
//! [`Ready`]): slow waits (NAT gateways, load balancers) hold slots for
//! minutes on AWS, and a step heading a long chain (the database's cluster,
//! then its instances) must not queue behind a crowd of alarms that nothing
//! waits for.
//! Unlike it, all steps run as futures of one task (`FuturesUnordered`): the
//! work is I/O-bound and this keeps borrowing simple and scheduling
//! deterministic.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use async_trait::async_trait;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tracing::Instrument;

use super::cancel::CancelFlag;
use super::graph::{Direction, Graph};
use super::report::{CriticalPath, Outcome, StepReport, WalkReport};
use super::step::{Observation, Record, Removed, StepCx, StepError, StepEvents, StepId, in_step};

/// Which operation a walk applies to every step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Observe,
    Ensure,
    Destroy,
    /// What still exists after `down` (see `Step::remains`).
    Sweep,
}

impl Operation {
    pub fn direction(self) -> Direction {
        match self {
            Self::Observe | Self::Ensure | Self::Sweep => Direction::Forward,
            Self::Destroy => Direction::Reverse,
        }
    }
}

/// Receives the walk's events: live progress and, after every step, the
/// chance to persist its result before the walk goes on.
#[async_trait]
pub trait WalkObserver: StepEvents {
    fn step_started(&self, id: &StepId, kind: &'static str);
    async fn step_finished(&self, report: &StepReport);
}

pub struct WalkOptions<'a> {
    pub operation: Operation,
    pub parallelism: usize,
    /// Records from the state file, handed to each step as a hint.
    pub previous: &'a BTreeMap<StepId, Record>,
    pub cancel: &'a CancelFlag,
    /// How long a step of a kind typically takes, in any unit (the walk's
    /// priority, see [`Ready`]); `None` weighs every step the same.
    pub weight: Option<&'a (dyn Fn(&'static str) -> f64 + Sync)>,
}

struct Finished {
    index: usize,
    started: Duration,
    duration: Duration,
    result: Result<Done, StepError>,
}

struct Done {
    outcome: Outcome,
    record: Option<Record>,
    notes: Vec<String>,
}

pub async fn walk<C: ?Sized + Sync>(
    graph: &Graph<C>,
    cx: &C,
    options: WalkOptions<'_>,
    observer: &dyn WalkObserver,
) -> WalkReport {
    let direction = options.operation.direction();
    let parallelism = options.parallelism.max(1);
    let n = graph.len();
    let t0 = Instant::now();

    let mut waiting_on: Vec<usize> = (0..n)
        .map(|i| graph.predecessors(i, direction).len())
        .collect();
    let mut blocked_by: Vec<BTreeSet<StepId>> = vec![BTreeSet::new(); n];
    let mut reports: Vec<Option<StepReport>> = (0..n).map(|_| None).collect();
    let mut records: Vec<Option<Record>> = vec![None; n];
    let mut ready = Ready::new(graph, direction, options.weight);
    for i in (0..n).filter(|&i| waiting_on[i] == 0) {
        ready.push(i);
    }
    let mut running = FuturesUnordered::new();

    loop {
        while !options.cancel.is_cancelled() && running.len() < parallelism {
            let Some(i) = ready.pop() else { break };
            let step = graph.step(i);
            // Forward walks hand a step its dependencies' fresh records;
            // destroy finds its resources itself.
            let inputs = match direction {
                Direction::Forward => graph
                    .predecessors(i, direction)
                    .iter()
                    .filter_map(|&p| records[p].clone().map(|r| (graph.step(p).id().clone(), r)))
                    .collect(),
                Direction::Reverse => BTreeMap::new(),
            };
            let step_cx = StepCx {
                id: step.id(),
                inputs,
                previous: options.previous.get(step.id()).cloned(),
                events: observer,
            };
            observer.step_started(step.id(), step.kind());
            let span = tracing::info_span!("step", step = %step.id(), op = ?options.operation);
            let operation = options.operation;
            running.push(
                async move {
                    let started = t0.elapsed();
                    // Scoped to the step, so whoever counts calls knows whose they are.
                    let result = in_step(
                        step.id().clone(),
                        run_operation(step, cx, &step_cx, operation),
                    )
                    .await;
                    Finished {
                        index: i,
                        started,
                        duration: t0.elapsed() - started,
                        result,
                    }
                }
                .instrument(span),
            );
        }

        if running.is_empty() {
            break;
        }
        let finished = tokio::select! {
            Some(f) = running.next() => f,
            // Wake up to stop scheduling; running steps still finish.
            () = options.cancel.cancelled(), if !options.cancel.is_cancelled() => continue,
        };

        let i = finished.index;
        let step = graph.step(i);
        let (outcome, record, notes) = match finished.result {
            Ok(done) => (done.outcome, done.record, done.notes),
            Err(e) => (
                Outcome::Failed {
                    error: error_chain(e.as_ref()),
                },
                None,
                Vec::new(),
            ),
        };
        let failed = !outcome.is_success();
        records[i] = record.clone();
        let report = StepReport {
            id: step.id().clone(),
            kind: step.kind(),
            outcome,
            started: Some(finished.started),
            duration: finished.duration,
            record,
            notes,
            calls: None,
        };
        observer.step_finished(&report).await;
        reports[i] = Some(report);

        let roots = if failed {
            BTreeSet::from([step.id().clone()])
        } else {
            BTreeSet::new()
        };
        release_successors(
            graph,
            direction,
            i,
            roots,
            &mut waiting_on,
            &mut blocked_by,
            &mut reports,
            &mut ready,
            observer,
        )
        .await;
    }

    let cancelled = options.cancel.is_cancelled();
    let steps: Vec<StepReport> = reports
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.unwrap_or_else(|| StepReport {
                id: graph.step(i).id().clone(),
                kind: graph.step(i).kind(),
                outcome: Outcome::Cancelled,
                started: None,
                duration: Duration::ZERO,
                record: None,
                notes: Vec::new(),
                calls: None,
            })
        })
        .collect();
    let critical_path = CriticalPath::compute(graph, direction, &steps);
    WalkReport {
        steps,
        wall: t0.elapsed(),
        critical_path,
        cancelled,
    }
}

/// The steps ready to start, longest chain first: a step's height is the
/// weight of the heaviest path from it to the end of the walk (in the
/// walk's direction), itself included, each step weighing what its kind
/// typically takes (or 1). Equal heights keep registry order, so a walk
/// stays deterministic.
struct Ready {
    /// In thousandths of the weight's unit, to order them as integers.
    height: Vec<u64>,
    heap: BinaryHeap<(u64, Reverse<usize>)>,
}

impl Ready {
    fn new<C: ?Sized + Sync>(
        graph: &Graph<C>,
        direction: Direction,
        weight: Option<&(dyn Fn(&'static str) -> f64 + Sync)>,
    ) -> Self {
        let mut order = graph.topological_order();
        if direction == Direction::Reverse {
            order.reverse();
        }
        let own = |i: usize| {
            let w = weight.map_or(1.0, |w| w(graph.step(i).kind()));
            (w.max(0.0) * 1000.0) as u64
        };
        // Successors come later in `order`: fill heights from the end.
        let mut height = vec![0; graph.len()];
        for &i in order.iter().rev() {
            height[i] = own(i)
                + graph
                    .successors(i, direction)
                    .iter()
                    .map(|&s| height[s])
                    .max()
                    .unwrap_or(0);
        }
        Self {
            height,
            heap: BinaryHeap::new(),
        }
    }

    fn push(&mut self, i: usize) {
        self.heap.push((self.height[i], Reverse(i)));
    }

    fn pop(&mut self) -> Option<usize> {
        self.heap.pop().map(|(_, Reverse(i))| i)
    }
}

/// Step `i` is done: count it off its successors, queue those now ready and
/// skip (transitively) those that wait on a failure.
#[allow(clippy::too_many_arguments)]
async fn release_successors<C: ?Sized + Sync>(
    graph: &Graph<C>,
    direction: Direction,
    i: usize,
    roots: BTreeSet<StepId>,
    waiting_on: &mut [usize],
    blocked_by: &mut [BTreeSet<StepId>],
    reports: &mut [Option<StepReport>],
    ready: &mut Ready,
    observer: &dyn WalkObserver,
) {
    let mut queue = VecDeque::from([(i, roots)]);
    while let Some((done, roots)) = queue.pop_front() {
        for &s in graph.successors(done, direction) {
            blocked_by[s].extend(roots.iter().cloned());
            waiting_on[s] -= 1;
            if waiting_on[s] > 0 {
                continue;
            }
            if blocked_by[s].is_empty() {
                ready.push(s);
                continue;
            }
            let because: Vec<StepId> = blocked_by[s].iter().cloned().collect();
            let report = StepReport {
                id: graph.step(s).id().clone(),
                kind: graph.step(s).kind(),
                outcome: Outcome::Skipped { because },
                started: None,
                duration: Duration::ZERO,
                record: None,
                notes: Vec::new(),
                calls: None,
            };
            observer.step_finished(&report).await;
            reports[s] = Some(report);
            queue.push_back((s, blocked_by[s].clone()));
        }
    }
}

async fn run_operation<C: ?Sized + Sync>(
    step: &dyn super::step::Step<C>,
    cx: &C,
    step_cx: &StepCx<'_>,
    operation: Operation,
) -> Result<Done, StepError> {
    Ok(match operation {
        Operation::Ensure => {
            let applied = step.ensure(cx, step_cx).await?;
            Done {
                outcome: Outcome::from_change(applied.change),
                record: Some(applied.record),
                notes: applied.notes,
            }
        }
        Operation::Observe => observed(step.observe(cx, step_cx).await?),
        Operation::Sweep => observed(step.remains(cx, step_cx).await?),
        Operation::Destroy => match step.destroy(cx, step_cx).await? {
            Removed::Deleted { notes } => Done {
                outcome: Outcome::Deleted,
                record: None,
                notes,
            },
            Removed::AlreadyAbsent => Done {
                outcome: Outcome::AlreadyAbsent,
                record: None,
                notes: Vec::new(),
            },
        },
    })
}

fn observed(observation: Observation) -> Done {
    let (outcome, record) = match observation {
        Observation::Missing => (Outcome::Missing, None),
        Observation::NotWanted => (Outcome::NotWanted, None),
        Observation::Unwanted { record } => (Outcome::Unwanted, Some(record)),
        Observation::Present { record, drift } => (
            if drift.is_empty() {
                Outcome::InSync
            } else {
                Outcome::Drifted { drift }
            },
            Some(record),
        ),
    };
    Done {
        outcome,
        record,
        notes: Vec::new(),
    }
}

/// "outer: inner: innermost", as ripgrep and anyhow print errors.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let s = e.to_string();
        // SDK errors often repeat their source's text; don't print it twice.
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        source = e.source();
    }
    out
}
