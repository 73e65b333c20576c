//! The state file: a record of what payops made for one env, never the truth.
//!
//! Every command works without it (resources are found by deterministic names
//! and ownership tags); with it, lookups start from recorded ids and `status`
//! can say how the last run ended.

mod local;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::engine::{Record, StepId};

pub use local::{LocalStore, StateLock};

/// Bumped when the format changes incompatibly.
pub const FORMAT: u32 = 1;

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct EnvState {
    pub format: u32,
    pub env: String,
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub account_id: String,
    #[serde(default)]
    pub updated_at: String,
    /// The settings the last `up` used, so `status` and `plan` compare against
    /// the same shape when no flag overrides them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<LastRun>,
    #[serde(default)]
    pub steps: BTreeMap<StepId, StepState>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LastRun {
    pub command: String,
    /// running | succeeded | failed | cancelled
    pub result: String,
    pub started_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct StepState {
    #[serde(flatten)]
    pub record: Record,
    #[serde(default)]
    pub updated_at: String,
}

impl EnvState {
    pub fn new(env: &str, region: &str, account_id: &str) -> Self {
        Self {
            format: FORMAT,
            env: env.to_owned(),
            region: region.to_owned(),
            account_id: account_id.to_owned(),
            ..Self::default()
        }
    }

    /// Refuses a state recorded for another account or region: its ids would
    /// point at the wrong resources (or at a production account).
    pub fn check_location(
        &self,
        path: &str,
        account: &str,
        region: &str,
    ) -> Result<(), StateError> {
        let recorded = format!("{}/{}", self.account_id, self.region);
        let current = format!("{account}/{region}");
        if self.account_id.is_empty() || recorded == current {
            Ok(())
        } else {
            Err(StateError::Mismatch {
                path: path.to_owned(),
                env: self.env.clone(),
                recorded,
                current,
            })
        }
    }

    /// Recorded records, as hints for the next walk.
    pub fn records(&self) -> BTreeMap<StepId, Record> {
        self.steps
            .iter()
            .map(|(id, s)| (id.clone(), s.record.clone()))
            .collect()
    }

    /// All recorded outputs, merged (keys are unique across steps).
    pub fn outputs(&self) -> BTreeMap<String, String> {
        self.steps
            .values()
            .flat_map(|s| s.record.outputs.clone())
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(
        "state file {path} cannot be read: {reason}.\n  payops never overwrites a state file it \
         cannot read. Move it aside (mv {path} {path}.broken) and run again: without it, payops \
         finds the env's resources by their names and ownership tags"
    )]
    Corrupt { path: String, reason: String },
    #[error(
        "env {env} is locked by another payops ({holder}); wait for it to finish and run again \
         (the lock is released when that process ends, even if it is killed)"
    )]
    Locked { env: String, holder: String },
    #[error(
        "state file {path} records env {env} in account {recorded}, but the credentials are for \
         {current}; check AWS_PROFILE / --region, or move the file aside if it is stale"
    )]
    Mismatch {
        path: String,
        env: String,
        recorded: String,
        current: String,
    },
    #[error("state file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}
