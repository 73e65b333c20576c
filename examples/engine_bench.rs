//! Engine benchmark: walks graphs whose steps only sleep, and compares the
//! wall time with the critical path (the lower bound for any schedule) and
//! with the sum of all steps (a sequential run). `real-env` is the registry's
//! own graph with real-AWS durations per step kind scaled from seconds to
//! milliseconds (a model: the emulators finish everything at once);
//! `layered` a wide synthetic graph that stresses the scheduler.
//!
//!     cargo run --example engine_bench      (or: make bench-engine)

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use payops::engine::{
    Applied, CancelFlag, Change, Dependency, Graph, Observation, Operation, Record, Removed, Step,
    StepCx, StepError, StepEvents, StepId, StepReport, WalkObserver, WalkOptions, walk,
};

struct Sleep {
    id: StepId,
    deps: Vec<Dependency>,
    work: Duration,
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
        tokio::time::sleep(self.work).await;
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
    })
}

/// Typical real-AWS durations of one step's work, by step kind, in seconds:
/// what the step waits for (a NAT gateway becoming available, an Aurora
/// instance, a load balancer leaving `provisioning`), plus its few API calls.
/// Not measured here: the figures AWS documents or payops' own progress
/// messages state ("about 10 minutes" for an Aurora instance, "3-4 minutes"
/// for its cluster). Every kind not listed is a handful of API calls: 1 s.
const AWS_SECONDS: &[(&str, u64)] = &[
    ("rds:db-instance", 600),
    ("apigateway:vpc-link", 300),
    ("rds:db-cluster", 240),
    ("elbv2:network-load-balancer", 180),
    ("elbv2:application-load-balancer", 180),
    ("ec2:nat-gateway", 120),
    ("lambda:function", 45),
    ("dynamodb:table", 20),
    // ~120 PutParameter calls at Parameter Store's standard throughput.
    ("ssm:parameters", 12),
    ("s3:bucket", 3),
];

fn aws_seconds(kind: &str) -> u64 {
    AWS_SECONDS
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or(1, |(_, s)| *s)
}

/// The real env's graph (the registry payops walks, default spec), each step
/// sleeping its kind's real-AWS duration scaled from seconds to milliseconds.
fn real_env() -> Vec<Box<dyn Step<()>>> {
    let graph = payops::resources::graph(&payops::spec::EnvSpec::default()).expect("the registry");
    graph
        .steps()
        .map(|s| {
            Box::new(Sleep {
                id: s.id().clone(),
                deps: s.dependencies().to_vec(),
                work: Duration::from_millis(aws_seconds(s.kind())),
            }) as Box<dyn Step<()>>
        })
        .collect()
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

async fn measure(name: &str, make: fn() -> Vec<Box<dyn Step<()>>>, parallelism: usize) {
    let graph = Graph::new(make()).expect("valid graph");
    let cancel = CancelFlag::new();
    let previous = BTreeMap::new();
    let report = walk(
        &graph,
        &(),
        WalkOptions {
            operation: Operation::Ensure,
            parallelism,
            previous: &previous,
            cancel: &cancel,
        },
        &Quiet,
    )
    .await;
    if parallelism == 8 && name == "real-env" {
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
    println!(
        "{:<10} {:>5} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "graph", "steps", "par", "sum ms", "crit ms", "wall ms", "wall/crit", "speed-up"
    );
    for p in [1, 2, 4, 8, 16, 64] {
        measure("real-env", real_env, p).await;
    }
    for p in [1, 8, 64, 512] {
        measure("layered", layered, p).await;
    }
}
