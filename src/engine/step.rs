//! The step contract: what a resource must offer for the engine to walk it.
//!
//! The engine knows nothing of AWS. A step is generic over a context `C` that
//! the caller owns (for payops, the AWS clients and the env's settings), so the
//! engine can be tested and benchmarked with synthetic steps.

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Any error a step returns; the engine only displays it (with its chain).
pub type StepError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A stable step id such as `vpc`, `subnets:public` or `kms-key:s3`.
///
/// Ids are recorded in state files, so renaming one is a migration.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StepId(String);

impl StepId {
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StepId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, so `{:<26}` aligns columns.
        f.pad(&self.0)
    }
}

impl From<&str> for StepId {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl From<String> for StepId {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl PartialEq<str> for StepId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

tokio::task_local! {
    /// The step whose operation the current future runs (set by the walk).
    static CURRENT_STEP: StepId;
}

/// The step the caller runs inside of, if any: lets call accounting outside
/// the engine attribute work to a step without the step passing its id.
pub fn current_step() -> Option<StepId> {
    CURRENT_STEP.try_with(StepId::clone).ok()
}

/// Runs `future` as the work of step `id` (see [`current_step`]).
pub async fn in_step<F: std::future::Future>(id: StepId, future: F) -> F::Output {
    CURRENT_STEP.scope(id, future).await
}

/// An edge of the graph: this step needs `on` to exist first. The reason is
/// part of the contract: edges without one drift into folklore.
#[derive(Clone, Debug)]
pub struct Dependency {
    pub on: StepId,
    pub reason: &'static str,
}

impl Dependency {
    pub fn on(on: impl Into<StepId>, reason: &'static str) -> Self {
        Self {
            on: on.into(),
            reason,
        }
    }
}

/// What a step made, as recorded in state and passed to its dependents.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Physical ids of what the step manages, keyed by a name local to the step
    /// (`vpc`, `subnet:a`, `eip:a`, ...). Used to find resources again.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resources: BTreeMap<String, String>,
    /// Values other steps and other teams read: these are the flat outputs
    /// (`VpcId`, `PublicSubnetIds`, ...). Never a secret.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, String>,
}

impl Record {
    pub fn resource(mut self, key: impl Into<String>, id: impl Into<String>) -> Self {
        self.resources.insert(key.into(), id.into());
        self
    }

    pub fn output(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.outputs.insert(key.into(), value.into());
        self
    }
}

/// Result of looking at a step's resources without changing anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observation {
    /// Nothing of this step exists (and it should).
    Missing,
    /// It exists; `drift` lists what `ensure` would change (empty = in sync).
    Present { record: Record, drift: Vec<String> },
    /// It exists but is no longer wanted (e.g. a NAT gateway after `--nat single`).
    Unwanted { record: Record },
    /// It does not exist and is not wanted: nothing to do.
    NotWanted,
}

/// What `ensure` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    Created,
    Updated,
    Unchanged,
    /// The step removed something no longer wanted.
    Deleted,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub change: Change,
    pub record: Record,
    /// Human notes on what was repaired or decided, e.g. "re-enabled versioning".
    pub notes: Vec<String>,
}

impl Applied {
    pub fn new(change: Change, record: Record) -> Self {
        Self {
            change,
            record,
            notes: Vec::new(),
        }
    }

    pub fn with_notes(mut self, notes: Vec<String>) -> Self {
        self.notes = notes;
        self
    }
}

/// What `destroy` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Removed {
    Deleted {
        notes: Vec<String>,
    },
    /// Nothing was there: destroy is idempotent.
    AlreadyAbsent,
}

/// What a running step can tell the engine while it works.
pub trait StepEvents: Send + Sync {
    /// A short, human progress message (e.g. "waiting for nat-0abc to be available").
    fn progress(&self, step: &StepId, message: &str);
    /// A physical id is known before the step finishes: persist it now, so a
    /// run killed a moment later can find the resource again.
    fn remember(&self, step: &StepId, key: &str, id: &str);
}

/// Everything a step sees while it runs, besides the caller's context.
pub struct StepCx<'a> {
    pub(crate) id: &'a StepId,
    /// Records of the steps this one depends on (only those: reading anything
    /// else would be an undeclared edge).
    pub(crate) inputs: BTreeMap<StepId, Record>,
    /// What the state file recorded for this step on an earlier run, if any.
    pub(crate) previous: Option<Record>,
    pub(crate) events: &'a dyn StepEvents,
}

impl<'a> StepCx<'a> {
    /// A context for driving one step outside a walk (unit tests, tools).
    pub fn standalone(
        id: &'a StepId,
        inputs: BTreeMap<StepId, Record>,
        previous: Option<Record>,
        events: &'a dyn StepEvents,
    ) -> Self {
        Self {
            id,
            inputs,
            previous,
            events,
        }
    }

    pub fn id(&self) -> &StepId {
        self.id
    }

    /// The record of a dependency, if it ran (or was observed) in this walk.
    pub fn input(&self, step: &str) -> Option<&Record> {
        self.inputs.get(&StepId::from(step))
    }

    pub fn inputs(&self) -> impl Iterator<Item = (&StepId, &Record)> {
        self.inputs.iter()
    }

    /// The output `key` of dependency `step`, or an error naming both.
    pub fn output(&self, step: &str, key: &str) -> Result<&str, MissingInput> {
        self.input(step)
            .and_then(|r| r.outputs.get(key))
            .map(String::as_str)
            .ok_or_else(|| MissingInput {
                step: step.to_owned(),
                key: key.to_owned(),
            })
    }

    /// The physical id `key` recorded by dependency `step`.
    pub fn input_resource(&self, step: &str, key: &str) -> Result<&str, MissingInput> {
        self.input(step)
            .and_then(|r| r.resources.get(key))
            .map(String::as_str)
            .ok_or_else(|| MissingInput {
                step: step.to_owned(),
                key: key.to_owned(),
            })
    }

    pub fn previous(&self) -> Option<&Record> {
        self.previous.as_ref()
    }

    /// A resource id recorded by an earlier run (a hint, never the truth).
    pub fn previous_resource(&self, key: &str) -> Option<&str> {
        self.previous
            .as_ref()
            .and_then(|r| r.resources.get(key))
            .map(String::as_str)
    }

    pub fn progress(&self, message: impl AsRef<str>) {
        self.events.progress(self.id, message.as_ref());
    }

    pub fn remember(&self, key: &str, id: &str) {
        self.events.remember(self.id, key, id);
    }
}

/// A dependency's output was not available: a bug in the graph (missing edge)
/// or a dependency that produced less than promised.
#[derive(Debug, thiserror::Error)]
#[error("input {key} from step {step} is not available (is {step} a declared dependency?)")]
pub struct MissingInput {
    pub step: String,
    pub key: String,
}

/// One node of the graph. Every operation must be idempotent and safe to
/// cancel at any `.await`: a later run resumes from whatever exists.
#[async_trait]
pub trait Step<C: ?Sized + Sync>: Send + Sync {
    fn id(&self) -> &StepId;

    /// A short type name for display, e.g. `ec2:vpc`.
    fn kind(&self) -> &'static str;

    fn dependencies(&self) -> &[Dependency];

    /// Whether the env's spec wants what this step makes (false: `up`
    /// removes it). What `observe` and `ensure` decide by; listed on its own
    /// so that a test can name the steps a shape option leaves out.
    #[cfg_attr(not(test), allow(dead_code))]
    fn wanted(&self, _cx: &C) -> bool {
        true
    }

    /// Find the resources (recorded id first, then deterministic name or
    /// ownership tags) and report how they differ from the desired shape.
    async fn observe(&self, cx: &C, step: &StepCx<'_>) -> Result<Observation, StepError>;

    /// Create what is missing, repair what drifted, wait until usable.
    async fn ensure(&self, cx: &C, step: &StepCx<'_>) -> Result<Applied, StepError>;

    /// Remove everything this step owns; "already gone" is success. Returns
    /// only once the resources are really gone (or provably going).
    async fn destroy(&self, cx: &C, step: &StepCx<'_>) -> Result<Removed, StepError>;

    /// What of this step still exists (`Missing` when nothing does), found by
    /// recorded id, names and tags alone and never compared with the desired
    /// shape: the final sweep after `down`, when the steps whose outputs a
    /// comparison reads are gone.
    async fn remains(&self, cx: &C, step: &StepCx<'_>) -> Result<Observation, StepError> {
        self.observe(cx, step).await
    }
}
