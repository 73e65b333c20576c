//! What a walk tells its caller: one report per step, and the critical path.

use std::time::Duration;

use serde::Serialize;

use super::graph::{Direction, Graph};
use super::step::{Change, Record, StepId};

/// How one step ended in one walk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    // ensure / destroy
    Created,
    Updated,
    Unchanged,
    Deleted,
    AlreadyAbsent,
    // observe
    InSync,
    Missing,
    Drifted {
        drift: Vec<String>,
    },
    Unwanted,
    NotWanted,
    // any operation
    Failed {
        error: String,
    },
    /// Not run because a step it waits on failed; `because` names the root
    /// causes (failed steps), never intermediate skipped ones.
    Skipped {
        because: Vec<StepId>,
    },
    /// Not started because the run was interrupted.
    Cancelled,
}

impl Outcome {
    pub fn from_change(change: Change) -> Self {
        match change {
            Change::Created => Self::Created,
            Change::Updated => Self::Updated,
            Change::Unchanged => Self::Unchanged,
            Change::Deleted => Self::Deleted,
        }
    }

    /// Did the step finish its work (whatever it was)?
    pub fn is_success(&self) -> bool {
        !matches!(
            self,
            Self::Failed { .. } | Self::Skipped { .. } | Self::Cancelled
        )
    }

    pub fn label(&self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Unchanged => "unchanged",
            Self::Deleted => "deleted",
            Self::AlreadyAbsent => "absent",
            Self::InSync => "in sync",
            Self::Missing => "missing",
            Self::Drifted { .. } => "drifted",
            Self::Unwanted => "unwanted",
            Self::NotWanted => "not wanted",
            Self::Failed { .. } => "failed",
            Self::Skipped { .. } => "skipped",
            Self::Cancelled => "cancelled",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct StepReport {
    pub id: StepId,
    pub kind: &'static str,
    #[serde(flatten)]
    pub outcome: Outcome,
    /// When the step started, from the start of the walk (None: never ran).
    #[serde(rename = "started_ms", serialize_with = "ser_opt_ms")]
    pub started: Option<Duration>,
    #[serde(rename = "duration_ms", serialize_with = "ser_ms")]
    pub duration: Duration,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<Record>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The calls the step made, filled in by the caller that counts them
    /// (None: not counted, or the step never ran).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calls: Option<StepCalls>,
}

/// How many calls to the outside world a step made, split by whether they
/// only read (the engine knows no more of them than this).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StepCalls {
    pub read: u64,
    pub mutating: u64,
}

impl std::ops::Sub for StepCalls {
    type Output = Self;
    fn sub(self, rhs: Self) -> Self {
        Self {
            read: self.read.saturating_sub(rhs.read),
            mutating: self.mutating.saturating_sub(rhs.mutating),
        }
    }
}

impl StepReport {
    pub fn finished(&self) -> Option<Duration> {
        self.started.map(|s| s + self.duration)
    }
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

fn ser_opt_ms<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&(d.as_millis() as u64)),
        None => s.serialize_none(),
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct WalkReport {
    /// Reports in registry order.
    pub steps: Vec<StepReport>,
    #[serde(rename = "wall_ms", serialize_with = "ser_ms")]
    pub wall: Duration,
    pub critical_path: CriticalPath,
    pub cancelled: bool,
}

impl WalkReport {
    pub fn succeeded(&self) -> bool {
        !self.cancelled && self.steps.iter().all(|s| s.outcome.is_success())
    }

    /// Failed steps: the root causes (skipped steps are their consequences).
    pub fn failures(&self) -> impl Iterator<Item = &StepReport> {
        self.steps
            .iter()
            .filter(|s| matches!(s.outcome, Outcome::Failed { .. }))
    }

    pub fn get(&self, id: &str) -> Option<&StepReport> {
        self.steps.iter().find(|s| s.id == *id)
    }
}

/// The chain of dependent steps whose durations add up to the most: with
/// unbounded parallelism no run can be faster than this.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CriticalPath {
    pub steps: Vec<StepId>,
    #[serde(rename = "total_ms", serialize_with = "ser_ms")]
    pub total: Duration,
}

impl CriticalPath {
    /// Longest duration-weighted path through the steps that ran, following
    /// the walk's own direction.
    pub fn compute<C: ?Sized + Sync>(
        graph: &Graph<C>,
        direction: Direction,
        reports: &[StepReport],
    ) -> Self {
        let order = {
            let mut o = graph.topological_order();
            if direction == Direction::Reverse {
                o.reverse();
            }
            o
        };
        // best[i]: (length of the heaviest path ending at i, predecessor on it).
        let mut best: Vec<(Duration, Option<usize>)> = vec![(Duration::ZERO, None); graph.len()];
        for &i in &order {
            let own = if reports[i].started.is_some() {
                reports[i].duration
            } else {
                Duration::ZERO
            };
            let (pre_len, pre) = graph
                .predecessors(i, direction)
                .iter()
                .map(|&p| (best[p].0, Some(p)))
                .max_by_key(|(len, _)| *len)
                .unwrap_or((Duration::ZERO, None));
            best[i] = (pre_len + own, pre);
        }
        let Some(end) = (0..graph.len()).max_by_key(|&i| best[i].0) else {
            return Self::default();
        };
        let total = best[end].0;
        let mut steps = Vec::new();
        let mut cur = Some(end);
        while let Some(i) = cur {
            if reports[i].started.is_some() {
                steps.push(reports[i].id.clone());
            }
            cur = best[i].1;
        }
        steps.reverse();
        Self { steps, total }
    }
}
