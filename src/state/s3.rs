//! The shared backend: `s3://BUCKET/PREFIX/<region>/<env>.json`, and a lock
//! per env in `<env>.lock` beside it (the region is part of the key: the same
//! env name in two regions is two envs; an older version's
//! `PREFIX/<env>.json` is moved under its region when that region reads it), taken with a conditional write (`If-None-Match: *`) so two
//! runners can never both hold it. The lock carries its owner and a lease that
//! the holder renews; a lock whose lease expired (its runner died) is taken
//! over with `If-Match` on the expired object, so only one taker wins.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::aws::AwsError;
use crate::aws::objects::{ObjectStore, PRECONDITION_FAILED, Precondition};

use super::{EnvLock, EnvState, StateBackend, StateError};

/// Long enough to ride out a slow API call, short enough that a dead
/// runner's lock frees itself before the next CI job gives up.
pub const LEASE: Duration = Duration::from_secs(10 * 60);

/// What the lock object says (also what `unlock` reports).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LockRecord {
    pub owner: String,
    pub acquired_at: String,
    pub lease_expires_at: String,
    /// Tells this holder's lock from a later one with the same owner text.
    pub token: String,
}

impl LockRecord {
    fn expires(&self) -> Option<SystemTime> {
        DateTime::from_str(&self.lease_expires_at, Format::DateTime)
            .ok()
            .and_then(|d| SystemTime::try_from(d).ok())
    }

    fn expired(&self, now: SystemTime) -> bool {
        // An unreadable expiry is treated as expired rather than as a lock
        // nobody could ever take again.
        self.expires().is_none_or(|e| e <= now)
    }

    fn describe(&self) -> String {
        format!("{}, lease until {}", self.owner, self.lease_expires_at)
    }
}

fn timestamp(t: SystemTime) -> String {
    DateTime::from(t).fmt(Format::DateTime).unwrap_or_default()
}

fn new_token() -> String {
    let mut bytes = [0u8; 12];
    // Without randomness the token only needs to differ between holders.
    let _ = getrandom::getrandom(&mut bytes);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!(
        "{}-{nanos:x}-{}",
        std::process::id(),
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

#[derive(Clone, Debug)]
pub struct S3Store {
    objects: ObjectStore,
    /// Where older versions kept the region's states (`PREFIX/<env>.json`),
    /// and the region they must record to be this store's.
    legacy: Option<(ObjectStore, String)>,
    lease: Duration,
}

impl S3Store {
    pub fn new(objects: ObjectStore) -> Self {
        Self {
            objects,
            legacy: None,
            lease: LEASE,
        }
    }

    /// The states of `region` under `s3://bucket/prefix/<region>/`, taking
    /// over the region's states an older version kept under the prefix.
    pub fn regional(client: &aws_sdk_s3::Client, bucket: &str, prefix: &str, region: &str) -> Self {
        let prefix = prefix.trim_matches('/');
        let regional = if prefix.is_empty() {
            region.to_owned()
        } else {
            format!("{prefix}/{region}")
        };
        Self {
            objects: ObjectStore::new(client.clone(), bucket, &regional),
            legacy: Some((
                ObjectStore::new(client.clone(), bucket, prefix),
                region.to_owned(),
            )),
            lease: LEASE,
        }
    }

    /// `<env>.json` of `objects`, parsed; None when there is none.
    async fn read(&self, objects: &ObjectStore, env: &str) -> Result<Option<EnvState>, StateError> {
        let name = format!("{env}.json");
        let url = objects.url(&name);
        let Some(object) = objects
            .get(&name)
            .await
            .map_err(|source| StateError::Backend {
                location: url.clone(),
                source,
            })?
        else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&object.body);
        super::parse(&text, env, &url, format!("aws s3 mv {url} {url}.broken")).map(Some)
    }

    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    fn backend_error(&self, env: &str) -> impl FnOnce(AwsError) -> StateError + '_ {
        let location = self.objects.url(&format!("{env}.json"));
        move |source| StateError::Backend { location, source }
    }

    fn record(&self, owner: &str, token: &str) -> LockRecord {
        let now = SystemTime::now();
        LockRecord {
            owner: owner.to_owned(),
            acquired_at: timestamp(now),
            lease_expires_at: timestamp(now + self.lease),
            token: token.to_owned(),
        }
    }

    async fn read_lock(&self, env: &str) -> Result<Option<(LockRecord, String)>, StateError> {
        let name = format!("{env}.lock");
        let Some(object) = self
            .objects
            .get(&name)
            .await
            .map_err(self.backend_error(env))?
        else {
            return Ok(None);
        };
        // A lock object payops cannot read is still a lock: report it whole.
        let record = serde_json::from_slice(&object.body).unwrap_or_else(|_| LockRecord {
            owner: String::from_utf8_lossy(&object.body).into_owned(),
            acquired_at: String::new(),
            lease_expires_at: String::new(),
            token: String::new(),
        });
        Ok(Some((record, object.etag)))
    }

    /// Tries once to write our lock over `precondition`.
    async fn claim(
        &self,
        env: &str,
        record: &LockRecord,
        precondition: Precondition,
    ) -> Result<Option<String>, StateError> {
        let body = serde_json::to_vec_pretty(record).expect("a lock record serialises");
        match self
            .objects
            .put(&format!("{env}.lock"), body, precondition)
            .await
        {
            Ok(etag) => Ok(Some(etag)),
            Err(e) if e.is_code(PRECONDITION_FAILED) => Ok(None),
            Err(e) => Err(self.backend_error(env)(e)),
        }
    }
}

#[async_trait]
impl StateBackend for S3Store {
    fn location(&self, env: &str) -> String {
        self.objects.url(&format!("{env}.json"))
    }

    async fn load(&self, env: &str) -> Result<Option<EnvState>, StateError> {
        if let Some(state) = self.read(&self.objects, env).await? {
            return Ok(Some(state));
        }
        let Some((legacy, region)) = &self.legacy else {
            return Ok(None);
        };
        // An older version's state: this region's is moved here (written
        // first, so a run stopped in between still finds it), another
        // region's is that region's to take.
        match self.read(legacy, env).await? {
            Some(state) if super::of_region(&state, region) => {
                self.save(&state).await?;
                legacy
                    .delete(&format!("{env}.json"))
                    .await
                    .map_err(self.backend_error(env))?;
                Ok(Some(state))
            }
            _ => Ok(None),
        }
    }

    async fn save(&self, state: &EnvState) -> Result<(), StateError> {
        let mut body = serde_json::to_vec_pretty(state).expect("state serialises");
        body.push(b'\n');
        // S3 replaces an object atomically: readers see the old or the new.
        self.objects
            .put(&format!("{}.json", state.env), body, Precondition::None)
            .await
            .map_err(self.backend_error(&state.env))?;
        Ok(())
    }

    async fn remove(&self, env: &str) -> Result<(), StateError> {
        self.objects
            .delete(&format!("{env}.json"))
            .await
            .map_err(self.backend_error(env))
    }

    async fn lock(&self, env: &str, holder: &str) -> Result<Box<dyn EnvLock>, StateError> {
        let token = new_token();
        let record = self.record(holder, &token);
        // Two rounds: a lock deleted between our failed create and our read
        // is simply created on the second.
        for _ in 0..2 {
            if let Some(etag) = self.claim(env, &record, Precondition::Absent).await? {
                return Ok(Box::new(S3Lock::hold(self.clone(), env, record, etag)));
            }
            let Some((current, etag)) = self.read_lock(env).await? else {
                continue;
            };
            if !current.expired(SystemTime::now()) {
                return Err(StateError::Locked {
                    env: env.to_owned(),
                    holder: format!(
                        "{}; if that runner is gone: payops unlock --env {env} --force",
                        current.describe()
                    ),
                });
            }
            // Only one of several takers can match the expired object's ETag.
            if let Some(etag) = self
                .claim(env, &record, Precondition::Matches(etag))
                .await?
            {
                tracing::warn!(env, previous = %current.describe(), "took over an expired lock");
                return Ok(Box::new(S3Lock::hold(self.clone(), env, record, etag)));
            }
        }
        let holder = self
            .read_lock(env)
            .await?
            .map_or_else(|| "holder unknown".to_owned(), |(r, _)| r.describe());
        Err(StateError::Locked {
            env: env.to_owned(),
            holder,
        })
    }

    async fn unlock(&self, env: &str) -> Result<Option<String>, StateError> {
        let Some((record, _)) = self.read_lock(env).await? else {
            return Ok(None);
        };
        self.objects
            .delete(&format!("{env}.lock"))
            .await
            .map_err(self.backend_error(env))?;
        Ok(Some(record.describe()))
    }

    async fn envs(&self) -> Result<Vec<String>, StateError> {
        let names = self
            .objects
            .list(".json")
            .await
            .map_err(|source| StateError::Backend {
                location: self.objects.url(""),
                source,
            })?;
        let mut envs: Vec<String> = names
            .into_iter()
            .filter_map(|n| n.strip_suffix(".json").map(str::to_owned))
            .collect();
        // An older version's states of this region (not yet moved).
        if let Some((legacy, region)) = &self.legacy {
            let names = legacy
                .list(".json")
                .await
                .map_err(|source| StateError::Backend {
                    location: legacy.url(""),
                    source,
                })?;
            for env in names.iter().filter_map(|n| n.strip_suffix(".json")) {
                if let Ok(Some(state)) = self.read(legacy, env).await
                    && super::of_region(&state, region)
                {
                    envs.push(env.to_owned());
                }
            }
        }
        envs.sort();
        envs.dedup();
        Ok(envs)
    }
}

/// A held S3 lock: a background task renews its lease until it is released.
struct S3Lock {
    store: S3Store,
    env: String,
    token: String,
    renewer: tokio::task::JoinHandle<()>,
}

impl S3Lock {
    fn hold(store: S3Store, env: &str, record: LockRecord, etag: String) -> Self {
        let token = record.token.clone();
        let etag = Arc::new(Mutex::new(etag));
        let renewer = tokio::spawn({
            let store = store.clone();
            let env = env.to_owned();
            async move {
                loop {
                    tokio::time::sleep(store.lease / 3).await;
                    let renewed = store.record(&record.owner, &record.token);
                    let current = etag.lock().await.clone();
                    match store
                        .claim(&env, &renewed, Precondition::Matches(current))
                        .await
                    {
                        Ok(Some(new)) => *etag.lock().await = new,
                        Ok(None) => {
                            eprintln!(
                                "warning: the lock on env {env} was taken by someone else \
                                 (unlock --force?); this run no longer holds it"
                            );
                            return;
                        }
                        // A transient error: the lease has two more periods to go.
                        Err(e) => tracing::warn!(env, error = %e, "could not renew the lock"),
                    }
                }
            }
        });
        Self {
            store,
            env: env.to_owned(),
            token,
            renewer,
        }
    }
}

#[async_trait]
impl EnvLock for S3Lock {
    async fn release(self: Box<Self>) {
        self.renewer.abort();
        // Delete only our own lock: after an unlock --force, another runner's
        // lock may stand there now.
        match self.store.read_lock(&self.env).await {
            Ok(Some((record, _))) if record.token == self.token => {
                if let Err(e) = self
                    .store
                    .objects
                    .delete(&format!("{}.lock", self.env))
                    .await
                {
                    tracing::warn!(env = %self.env, error = %e, "could not release the lock");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(env = %self.env, error = %e, "could not release the lock"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_in_the_past_or_unreadable_is_expired() {
        let now = SystemTime::now();
        let record = |expires: String| LockRecord {
            owner: "pid 1 on ci".into(),
            acquired_at: String::new(),
            lease_expires_at: expires,
            token: "t".into(),
        };
        assert!(record(timestamp(now - Duration::from_secs(1))).expired(now));
        assert!(!record(timestamp(now + Duration::from_secs(60))).expired(now));
        assert!(record("yesterday".into()).expired(now));
    }

    #[test]
    fn tokens_differ_between_holders() {
        assert_ne!(new_token(), new_token());
    }

    mod lock {
        use aws_sdk_s3::Client;
        use aws_sdk_s3::operation::get_object::GetObjectOutput;
        use aws_sdk_s3::operation::put_object::{PutObjectError, PutObjectOutput};
        use aws_sdk_s3::primitives::ByteStream;
        use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
        use aws_smithy_types::error::ErrorMetadata;

        use super::super::*;

        fn store(rules: &[&Rule]) -> S3Store {
            let client = mock_client!(aws_sdk_s3, RuleMode::MatchAny, rules);
            S3Store::new(ObjectStore::new(client, "state-bucket", "ci"))
        }

        fn lost() -> PutObjectError {
            PutObjectError::generic(
                ErrorMetadata::builder()
                    .code("PreconditionFailed")
                    .message("At least one of the pre-conditions you specified did not hold")
                    .build(),
            )
        }

        fn held_by(owner: &str, expires: SystemTime) -> Rule {
            let body = serde_json::to_vec(&LockRecord {
                owner: owner.into(),
                acquired_at: timestamp(SystemTime::now()),
                lease_expires_at: timestamp(expires),
                token: "theirs".into(),
            })
            .unwrap();
            mock!(Client::get_object)
                .match_requests(|r| r.key() == Some("ci/pr1.lock"))
                .then_output(move || {
                    GetObjectOutput::builder()
                        .e_tag("\"etag-theirs\"")
                        .body(ByteStream::from(body.clone()))
                        .build()
                })
        }

        #[tokio::test]
        async fn a_free_env_is_locked_with_a_conditional_create() {
            let create = mock!(Client::put_object)
                .match_requests(|r| {
                    r.key() == Some("ci/pr1.lock") && r.if_none_match() == Some("*")
                })
                .then_output(|| PutObjectOutput::builder().e_tag("\"etag-1\"").build());
            let lock = store(&[&create]).lock("pr1", "pid 1 on ci: up").await;
            assert!(lock.is_ok());
            assert_eq!(create.num_calls(), 1);
        }

        #[tokio::test]
        async fn a_live_lock_fails_at_once_naming_its_owner() {
            let create = mock!(Client::put_object).then_error(lost);
            let current = held_by(
                "pid 7 on ci-3: up",
                SystemTime::now() + Duration::from_secs(300),
            );
            let err = store(&[&create, &current])
                .lock("pr1", "pid 1 on ci: up")
                .await
                .err()
                .expect("locked");
            let text = err.to_string();
            assert!(matches!(err, StateError::Locked { .. }), "{text}");
            assert!(text.contains("pid 7 on ci-3: up"), "{text}");
            assert!(text.contains("unlock --env pr1 --force"), "{text}");
            assert_eq!(create.num_calls(), 1, "no takeover of a live lock");
        }

        #[tokio::test]
        async fn an_expired_lease_is_taken_over_only_through_its_etag() {
            let create = mock!(Client::put_object)
                .match_requests(|r| r.if_none_match() == Some("*"))
                .then_error(lost);
            let take_over = mock!(Client::put_object)
                .match_requests(|r| r.if_match() == Some("\"etag-theirs\""))
                .then_output(|| PutObjectOutput::builder().e_tag("\"etag-mine\"").build());
            let current = held_by(
                "pid 9 on dead-runner: up",
                SystemTime::now() - Duration::from_secs(1),
            );
            let lock = store(&[&create, &take_over, &current])
                .lock("pr1", "pid 1 on ci: up")
                .await;
            assert!(lock.is_ok());
            assert_eq!(take_over.num_calls(), 1);
        }

        #[tokio::test]
        async fn losing_the_takeover_race_reports_the_winner() {
            let any_put = mock!(Client::put_object).then_error(lost);
            let current = held_by(
                "pid 9 on dead-runner: up",
                SystemTime::now() - Duration::from_secs(1),
            );
            let err = store(&[&any_put, &current])
                .lock("pr1", "pid 1 on ci: up")
                .await
                .err()
                .expect("locked");
            assert!(matches!(err, StateError::Locked { .. }), "{err}");
        }
    }

    mod regions {
        use aws_sdk_s3::Client;
        use aws_sdk_s3::operation::delete_object::DeleteObjectOutput;
        use aws_sdk_s3::operation::get_object::{GetObjectError, GetObjectOutput};
        use aws_sdk_s3::operation::put_object::PutObjectOutput;
        use aws_sdk_s3::primitives::ByteStream;
        use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

        use super::super::*;

        fn absent(key: &'static str) -> Rule {
            mock!(Client::get_object)
                .match_requests(move |r| r.key() == Some(key))
                .then_error(|| {
                    GetObjectError::generic(
                        aws_smithy_types::error::ErrorMetadata::builder()
                            .code("NoSuchKey")
                            .build(),
                    )
                })
        }

        /// `ci/pr1.json` as an older version wrote it, for `region`.
        fn legacy(region: &'static str) -> Rule {
            mock!(Client::get_object)
                .match_requests(|r| r.key() == Some("ci/pr1.json"))
                .then_output(move || {
                    let state = EnvState::new("pr1", region, "123456789012");
                    GetObjectOutput::builder()
                        .e_tag("\"e1\"")
                        .body(ByteStream::from(serde_json::to_vec(&state).unwrap()))
                        .build()
                })
        }

        #[tokio::test]
        async fn an_older_versions_state_moves_under_its_region_and_no_other() {
            let put = mock!(Client::put_object)
                .match_requests(|r| r.key() == Some("ci/us-east-1/pr1.json"))
                .then_output(|| PutObjectOutput::builder().e_tag("\"e2\"").build());
            let delete = mock!(Client::delete_object)
                .match_requests(|r| r.key() == Some("ci/pr1.json"))
                .then_output(|| DeleteObjectOutput::builder().build());
            let rules = [
                absent("ci/us-east-1/pr1.json"),
                absent("ci/us-west-2/pr1.json"),
                legacy("us-east-1"),
                put.clone(),
                delete.clone(),
            ];
            let client = mock_client!(aws_sdk_s3, RuleMode::MatchAny, &rules);
            // us-west-2's env pr1 is another env: the file is not its.
            let west = S3Store::regional(&client, "state-bucket", "ci/", "us-west-2");
            assert_eq!(west.load("pr1").await.unwrap(), None);
            assert_eq!((put.num_calls(), delete.num_calls()), (0, 0));
            assert_eq!(
                west.location("pr1"),
                "s3://state-bucket/ci/us-west-2/pr1.json"
            );
            let east = S3Store::regional(&client, "state-bucket", "ci/", "us-east-1");
            let state = east.load("pr1").await.unwrap().unwrap();
            assert_eq!(state.region, "us-east-1");
            assert_eq!((put.num_calls(), delete.num_calls()), (1, 1));
        }
    }
}
