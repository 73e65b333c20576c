//! The state file: a record of what payops made for one env, never the truth.
//!
//! Every command works without it (resources are found by deterministic names
//! and ownership tags); with it, lookups start from recorded ids and `status`
//! can say how the last run ended. It lives in a backend: local files by
//! default, or an S3 prefix shared by CI runners; both lock one env at a time.

mod local;
mod s3;

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::engine::{Record, StepId};

pub use local::LocalStore;
pub use s3::{LockRecord, S3Store};

/// Where env states live and how an env is locked.
#[async_trait]
pub trait StateBackend: Send + Sync {
    /// Where the env's state lives, for messages.
    fn location(&self, env: &str) -> String;
    async fn load(&self, env: &str) -> Result<Option<EnvState>, StateError>;
    async fn save(&self, state: &EnvState) -> Result<(), StateError>;
    async fn remove(&self, env: &str) -> Result<(), StateError>;
    /// Takes the env's lock, or fails at once naming the holder.
    async fn lock(&self, env: &str, holder: &str) -> Result<Box<dyn EnvLock>, StateError>;
    /// Breaks the env's lock (`payops unlock --force`); returns who held it.
    async fn unlock(&self, env: &str) -> Result<Option<String>, StateError>;
    /// Every env with a state here.
    async fn envs(&self) -> Result<Vec<String>, StateError>;
}

/// A held env lock; dropping it without `release` leaves a shared lock to
/// expire, so commands release it explicitly.
#[async_trait]
pub trait EnvLock: Send + Sync {
    async fn release(self: Box<Self>);
}

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
         cannot read. Move it aside ({way_out}) and run again: without it, payops finds the \
         env's resources by their names and ownership tags"
    )]
    Corrupt {
        path: String,
        reason: String,
        /// The command that moves it aside.
        way_out: String,
    },
    #[error(
        "env {env} is locked by another payops ({holder}); wait for it to finish and run again"
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
    #[error("state backend {location}: {source}")]
    Backend {
        location: String,
        #[source]
        source: crate::aws::AwsError,
    },
    #[error("invalid --state {0:?}: expected s3://BUCKET[/PREFIX]")]
    BadUrl(String),
    #[error("state file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Whether a state an older, region-blind version wrote is `region`'s (one
/// that recorded no region predates the field and is taken as the reader's,
/// as `check_location` does).
pub(crate) fn of_region(state: &EnvState, region: &str) -> bool {
    state.region.is_empty() || state.region == region
}

/// Parses and checks a state file's text (shared by every backend).
pub fn parse(text: &str, env: &str, path: &str, way_out: String) -> Result<EnvState, StateError> {
    let corrupt = |reason: String| StateError::Corrupt {
        path: path.to_owned(),
        reason,
        way_out: way_out.clone(),
    };
    let state: EnvState =
        serde_json::from_str(text).map_err(|e| corrupt(format!("not valid JSON ({e})")))?;
    if state.format > FORMAT {
        return Err(corrupt(format!(
            "format {} was written by a newer payops (this one reads format {FORMAT})",
            state.format
        )));
    }
    if state.env != env {
        return Err(corrupt(format!(
            "it records env {:?}, not {env:?}",
            state.env
        )));
    }
    Ok(state)
}

/// The backend `--state` names: `s3://BUCKET/PREFIX/<region>/`, or local
/// files in `<dir>/<region>/`: the same env name in two regions is two envs.
pub fn backend(
    url: Option<&str>,
    dir: &std::path::Path,
    s3: &aws_sdk_s3::Client,
    region: &str,
) -> Result<Box<dyn StateBackend>, StateError> {
    match url {
        None => Ok(Box::new(LocalStore::regional(dir, region))),
        Some(url) => {
            let rest = url
                .strip_prefix("s3://")
                .ok_or_else(|| StateError::BadUrl(url.to_owned()))?;
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(StateError::BadUrl(url.to_owned()));
            }
            Ok(Box::new(S3Store::regional(s3, bucket, prefix, region)))
        }
    }
}
