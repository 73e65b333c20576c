//! Engine benchmark: walks synthetic graphs whose steps only sleep, and
//! compares the wall time with the critical path (the lower bound for any
//! schedule) and with the sum of all steps (a sequential run).
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

/// The shape of the real env, with each step's typical real-AWS duration
/// scaled from seconds to milliseconds (NAT gateways ~2 min -> 120 ms).
fn env_like() -> Vec<Box<dyn Step<()>>> {
    let mut s = vec![];
    for k in ["kms-db", "kms-ddb", "kms-s3", "kms-logs"] {
        s.push(step(k, &[], 1));
    }
    s.push(step("vpc", &[], 2));
    for t in ["sub-pub", "sub-priv", "sub-db"] {
        s.push(step(t, &["vpc"], 3));
    }
    s.push(step("igw", &["vpc"], 2));
    for n in ["nat-a", "nat-b", "nat-c"] {
        s.push(step(n, &["sub-pub", "igw"], 120));
    }
    s.push(step("rt-pub", &["igw", "sub-pub"], 2));
    for (rt, nat) in [("rt-a", "nat-a"), ("rt-b", "nat-b"), ("rt-c", "nat-c")] {
        s.push(step(rt, &["sub-priv", nat], 2));
    }
    s.push(step("rt-db", &["sub-db"], 2));
    for e in ["vpce-s3", "vpce-ddb"] {
        s.push(step(e, &["rt-a", "rt-b", "rt-c", "rt-db"], 5));
    }
    for g in ["sg-alb", "sg-nlb", "sg-lambda", "sg-db"] {
        s.push(step(g, &["vpc"], 1));
    }
    s.push(step(
        "sg-rules",
        &["sg-alb", "sg-nlb", "sg-lambda", "sg-db"],
        3,
    ));
    s.push(step("lg-flow", &["kms-logs"], 1));
    s.push(step("role-flow", &["lg-flow"], 2));
    s.push(step("flow-log", &["vpc", "lg-flow", "role-flow"], 2));
    s.push(step("bucket", &["kms-s3"], 6));
    s.push(step("tbl-tx", &["kms-ddb"], 15));
    s.push(step("tbl-fraud", &["kms-ddb"], 15));
    s.push(step("topic-failed", &["kms-logs"], 1));
    s.push(step("topic-errors", &["kms-logs"], 1));
    let all: Vec<String> = s.iter().map(|x| x.id().to_string()).collect();
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    s.push(step("ssm", &refs, 4));
    s
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
        measure("env-like", env_like, p).await;
    }
    for p in [1, 8, 64, 512] {
        measure("layered", layered, p).await;
    }
}
