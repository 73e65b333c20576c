//! Engine benchmark: walks graphs whose steps only sleep, and compares the
//! wall time with the critical path (the lower bound for any schedule) and
//! with the sum of all steps (a sequential run). `real-env` is the registry's
//! own graph with real-AWS durations per step kind scaled from seconds to
//! milliseconds (a model: the emulators finish everything at once);
//! `layered` a wide synthetic graph that stresses the scheduler.
//!
//!     cargo run --example engine_bench      (or: make bench-engine)
//!
//! `-- --critical-path SCALE` prints instead, as JSON, the critical path and
//! the sum of the real env's graph for `up` and `down` under the same
//! durations times SCALE: what scripts/bench-timing compares its runs with.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use payops::engine::{
    Applied, CancelFlag, Change, Dependency, Direction, Graph, Observation, Operation, Record,
    Removed, Step, StepCx, StepError, StepEvents, StepId, StepReport, WalkObserver, WalkOptions,
    walk,
};
use payops::resources::durations::typical_seconds;

struct Sleep {
    id: StepId,
    deps: Vec<Dependency>,
    work: Duration,
    /// The work of `destroy`, when it differs.
    undo: Duration,
}

#[async_trait]
impl Step<()> for Sleep {
    fn id(&self) -> &StepId {
        &self.id
    }
    fn kind(&self) -> &'static str {
        "bench:sleep"
    }
    fn dependencies(&self) -> &[Dependency] {
        &self.deps
    }
    async fn observe(&self, _: &(), _: &StepCx<'_>) -> Result<Observation, StepError> {
        tokio::time::sleep(self.work).await;
        Ok(Observation::Missing)
    }
    async fn ensure(&self, _: &(), _: &StepCx<'_>) -> Result<Applied, StepError> {
        tokio::time::sleep(self.work).await;
        Ok(Applied::new(Change::Created, Record::default()))
    }
    async fn destroy(&self, _: &(), _: &StepCx<'_>) -> Result<Removed, StepError> {
        tokio::time::sleep(self.undo).await;
        Ok(Removed::AlreadyAbsent)
    }
}

struct Quiet;

impl StepEvents for Quiet {
    fn progress(&self, _: &StepId, _: &str) {}
    fn remember(&self, _: &StepId, _: &str, _: &str) {}
}

#[async_trait]
impl WalkObserver for Quiet {
    fn step_started(&self, _: &StepId, _: &'static str) {}
    async fn step_finished(&self, _: &StepReport) {}
}

fn step(id: &str, deps: &[&str], ms: u64) -> Box<dyn Step<()>> {
    Box::new(Sleep {
        id: id.into(),
        deps: deps.iter().map(|d| Dependency::on(*d, "bench")).collect(),
        work: Duration::from_millis(ms),
        undo: Duration::from_millis(ms),
    })
}

/// The real env's graph (the registry payops walks, default spec).
fn registry() -> Graph<payops::resources::Context> {
    payops::resources::graph(&payops::spec::EnvSpec::default()).expect("the registry")
}

/// The real env's graph, each step sleeping its kind's real-AWS duration
/// scaled from seconds to milliseconds.
fn real_env() -> Vec<Box<dyn Step<()>>> {
    let ms = |s: f64| Duration::from_secs_f64(s / 1e3);
    registry()
        .steps()
        .map(|s| {
            Box::new(Sleep {
                id: s.id().clone(),
                deps: s.dependencies().to_vec(),
                work: ms(typical_seconds(s.kind(), Operation::Ensure)),
                undo: ms(typical_seconds(s.kind(), Operation::Destroy)),
            }) as Box<dyn Step<()>>
        })
        .collect()
}

/// The longest chain of the registry's graph for `operation` and the sum of
/// all its steps, in seconds times `scale`, computed from the graph (no walk).
fn critical_path(operation: Operation, scale: f64) -> serde_json::Value {
    let graph = registry();
    let direction = match operation {
        Operation::Destroy => Direction::Reverse,
        _ => Direction::Forward,
    };
    let mut order = graph.topological_order();
    if direction == Direction::Reverse {
        order.reverse();
    }
    let mut finish = vec![0.0_f64; graph.len()];
    let mut via: Vec<Option<usize>> = vec![None; graph.len()];
    for &i in &order {
        let before = graph
            .predecessors(i, direction)
            .iter()
            .copied()
            .max_by(|a, b| finish[*a].total_cmp(&finish[*b]));
        via[i] = before;
        finish[i] =
            before.map_or(0.0, |p| finish[p]) + typical_seconds(graph.step(i).kind(), operation);
    }
    let last = (0..graph.len())
        .max_by(|a, b| finish[*a].total_cmp(&finish[*b]))
        .expect("steps");
    let mut path = vec![graph.step(last).id().to_string()];
    let mut at = last;
    while let Some(p) = via[at] {
        path.push(graph.step(p).id().to_string());
        at = p;
    }
    path.reverse();
    let sum: f64 = graph
        .steps()
        .map(|s| typical_seconds(s.kind(), operation))
        .sum();
    serde_json::json!({
        "critical_path_s": finish[last] * scale,
        "sum_s": sum * scale,
        "path": path,
    })
}

/// A wide layered graph: 20 layers of 25 steps, each depending on 3 steps of
/// the layer before; stresses the scheduler rather than the sleeps.
fn layered() -> Vec<Box<dyn Step<()>>> {
    let mut s = vec![];
    for layer in 0..20 {
        for i in 0..25 {
            let deps: Vec<String> = if layer == 0 {
                vec![]
            } else {
                (0..3)
                    .map(|k| format!("l{}-{}", layer - 1, (i * 7 + k * 5) % 25))
                    .collect()
            };
            let refs: Vec<&str> = deps.iter().map(String::as_str).collect();
            s.push(step(&format!("l{layer}-{i}"), &refs, 1 + (i as u64 % 4)));
        }
    }
    s
}

async fn measure(
    name: &str,
    make: fn() -> Vec<Box<dyn Step<()>>>,
    operation: Operation,
    parallelism: usize,
) {
    let graph = Graph::new(make()).expect("valid graph");
    let cancel = CancelFlag::new();
    let previous = BTreeMap::new();
    let report = walk(
        &graph,
        &(),
        WalkOptions {
            operation,
            parallelism,
            previous: &previous,
            cancel: &cancel,
            weight: Some(&|kind| typical_seconds(kind, operation)),
        },
        &Quiet,
    )
    .await;
    if parallelism == 8 && name.starts_with("real-env") {
        let path: Vec<&str> = report
            .critical_path
            .steps
            .iter()
            .map(|s| s.as_str())
            .collect();
        println!("{name}: critical path {}", path.join(" -> "));
    }
    let sum: Duration = report.steps.iter().map(|s| s.duration).sum();
    let cp = report.critical_path.total;
    let wall = report.wall;
    println!(
        "{name:<10} {:>5} {parallelism:>5} {:>9.1} {:>9.1} {:>9.1} {:>8.2}x {:>8.1}x",
        graph.len(),
        sum.as_secs_f64() * 1e3,
        cp.as_secs_f64() * 1e3,
        wall.as_secs_f64() * 1e3,
        wall.as_secs_f64() / cp.as_secs_f64(),
        sum.as_secs_f64() / wall.as_secs_f64(),
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, scale] = args.as_slice()
        && flag == "--critical-path"
    {
        let scale: f64 = scale.parse().expect("--critical-path SCALE: a number");
        let out = serde_json::json!({
            "up": critical_path(Operation::Ensure, scale),
            "down": critical_path(Operation::Destroy, scale),
        });
        println!("{out}");
        return;
    }
    println!(
        "{:<10} {:>5} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "graph", "steps", "par", "sum ms", "crit ms", "wall ms", "wall/crit", "speed-up"
    );
    for p in [1, 2, 4, 8, 16, 64] {
        measure("real-env", real_env, Operation::Ensure, p).await;
    }
    for p in [1, 8, 64] {
        measure("real-down", real_env, Operation::Destroy, p).await;
    }
    for p in [1, 8, 64, 512] {
        measure("layered", layered, Operation::Ensure, p).await;
    }
}
