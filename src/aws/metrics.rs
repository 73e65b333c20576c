//! Counts every API call payops makes, per service and operation, through an
//! SDK interceptor: the proof that a converged `up` mutates nothing, and the
//! figures the summary and benchmarks print.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use serde::Serialize;

use crate::engine::{StepCalls, StepId, current_step};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OpCount {
    /// Operations started (a retried call counts once here).
    pub calls: u64,
    /// HTTP attempts, including retries.
    pub attempts: u64,
    /// Operations that ended in an error (after retries).
    pub errors: u64,
}

#[derive(Clone, Default)]
pub struct ApiCounter {
    counts: Arc<Mutex<BTreeMap<(String, String), OpCount>>>,
    /// Calls made inside a step of a walk (see `engine::current_step`), by step.
    per_step: Arc<Mutex<BTreeMap<StepId, StepCalls>>>,
    /// Bumped when a step's mutating call starts and when it ends: a read
    /// made while it stayed the same saw no change of ours (see `RunCache`).
    generation: Arc<AtomicU64>,
    /// Whether this counter is the interceptor of the clients it came with
    /// (see `tracks_changes`).
    attached: bool,
}

impl std::fmt::Debug for ApiCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiCounter").finish_non_exhaustive()
    }
}

/// Operations that only read. Everything else counts as mutating, so a new
/// read verb errs on the side of "mutating" and fails the no-op test loudly.
pub fn is_read_only(operation: &str) -> bool {
    const READ_PREFIXES: [&str; 6] = ["Describe", "List", "Get", "Head", "Lookup", "Search"];
    READ_PREFIXES.iter().any(|p| operation.starts_with(p))
        || matches!(operation, "GenerateRandom" | "Query" | "Scan")
}

impl ApiCounter {
    pub fn new() -> Self {
        Self::default()
    }

    fn bump(&self, cfg: &ConfigBag, f: impl FnOnce(&mut OpCount)) {
        if let Some(md) = cfg.load::<Metadata>() {
            let mut counts = self.counts.lock().expect("counter lock");
            f(counts
                .entry((md.service().to_owned(), md.name().to_owned()))
                .or_default());
        }
    }

    /// Changes whenever a mutating call of a step starts or ends.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// This counter, known to be installed on every client it is handed
    /// out with (`Clients::new`).
    pub fn attached(&self) -> Self {
        Self {
            attached: true,
            ..self.clone()
        }
    }

    /// Whether every mutating call shows in `generation`: only then may
    /// what was read be reused (clients built by hand, like test mocks,
    /// do not count their calls here).
    pub fn tracks_changes(&self) -> bool {
        self.attached
    }

    /// A step changed something: what was read before may be out of date.
    pub fn note_change(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Calls made so far inside each step (cumulative over the process:
    /// a caller wanting one walk's figures subtracts the counts before it).
    pub fn per_step(&self) -> BTreeMap<StepId, StepCalls> {
        self.per_step.lock().expect("counter lock").clone()
    }

    pub fn snapshot(&self) -> ApiCalls {
        let counts = self.counts.lock().expect("counter lock").clone();
        let mut summary = ApiCalls::default();
        for ((service, operation), count) in counts {
            let mutating = !is_read_only(&operation);
            summary.total += count.calls;
            summary.retries += count.attempts.saturating_sub(count.calls);
            summary.errors += count.errors;
            if mutating {
                summary.mutating += count.calls;
            } else {
                summary.read += count.calls;
            }
            summary.operations.push(OperationCalls {
                service,
                operation,
                mutating,
                count,
            });
        }
        summary
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ApiCalls {
    pub total: u64,
    pub mutating: u64,
    pub read: u64,
    pub retries: u64,
    pub errors: u64,
    pub operations: Vec<OperationCalls>,
}

#[derive(Clone, Debug, Serialize)]
pub struct OperationCalls {
    pub service: String,
    pub operation: String,
    pub mutating: bool,
    #[serde(flatten)]
    pub count: OpCount,
}

impl ApiCalls {
    pub fn mutating_operations(&self) -> impl Iterator<Item = &OperationCalls> {
        self.operations.iter().filter(|o| o.mutating)
    }
}

fn operation_name(cfg: &ConfigBag) -> Option<&str> {
    cfg.load::<Metadata>().map(Metadata::name)
}

impl Intercept for ApiCounter {
    fn name(&self) -> &'static str {
        "payops::ApiCounter"
    }

    fn read_before_execution(
        &self,
        _context: &aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef<'_>,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // Only a step's own changes invalidate what steps cached: the state
        // file written between steps changes nothing they read.
        if operation_name(cfg).is_some_and(|op| !is_read_only(op)) && current_step().is_some() {
            self.note_change();
        }
        Ok(())
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.bump(cfg, |c| c.attempts += 1);
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // Counted at the end: the operation's metadata is in the config bag
        // by then, and each operation ends exactly once however often it was
        // attempted.
        let failed = matches!(context.output_or_error(), Some(Err(_)));
        self.bump(cfg, |c| {
            c.calls += 1;
            c.errors += u64::from(failed);
        });
        if let (Some(op), Some(step)) = (operation_name(cfg), current_step()) {
            let mutating = !is_read_only(op);
            if mutating {
                self.note_change();
            }
            let mut per_step = self.per_step.lock().expect("counter lock");
            let calls = per_step.entry(step).or_default();
            if mutating {
                calls.mutating += 1;
            } else {
                calls.read += 1;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_recognised_and_everything_else_is_mutating() {
        for read in [
            "DescribeVpcs",
            "ListAliases",
            "GetBucketPolicy",
            "HeadBucket",
            "GetParametersByPath",
        ] {
            assert!(is_read_only(read), "{read}");
        }
        for write in [
            "CreateVpc",
            "PutBucketPolicy",
            "TagResource",
            "DeleteObjects",
            "ScheduleKeyDeletion",
            "AuthorizeSecurityGroupIngress",
        ] {
            assert!(!is_read_only(write), "{write}");
        }
    }
}
