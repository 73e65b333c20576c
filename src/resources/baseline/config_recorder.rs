//! AWS Config's configuration recorder, its delivery channel and its
//! recording: one customer-managed recorder and one channel per account and
//! region, adopted when they exist.
//!
//! AWS rules encoded here (docs/aws-rules-new-services: AWS Config):
//! - One customer-managed recorder per region: a second name fails with
//!   MaxNumberOfConfigurationRecordersExceededException
//!   [CA:API_PutConfigurationRecorder]. So DescribeConfigurationRecorders
//!   comes first, and a recorder under another name is someone else's: it
//!   is adopted as it is, never changed, stopped or deleted. Service-linked
//!   recorders (ServicePrincipal set) are other services' and not that one.
//! - Likewise one delivery channel per region
//!   (MaxNumberOfDeliveryChannelsExceededException).
//! - Order: PutConfigurationRecorder, then PutDeliveryChannel (else
//!   NoAvailableConfigurationRecorderException), then
//!   StartConfigurationRecorder (else NoAvailableDeliveryChannelException)
//!   [CA:API_PutDeliveryChannel, tfaws configservice/delivery_channel.go].
//! - PutDeliveryChannel checks the bucket policy and the role: a fresh role
//!   or policy answers InsufficientDeliveryPolicyException (or
//!   InsufficientPermissionsException / InvalidRoleException) until IAM
//!   has propagated: retried [tfaws configservice/delivery_channel.go].
//! - Teardown is the reverse: StopConfigurationRecorder (a channel cannot
//!   be deleted while the recorder records:
//!   LastDeliveryChannelDeleteFailedException), DeleteDeliveryChannel,
//!   DeleteConfigurationRecorder.
//!
//! Recorders and channels carry no tags payops can rely on, so payops'
//! record of ownership is the name, `payops-baseline`, which no env can make
//! and which no one else has reason to use.

use std::time::Duration;

use aws_sdk_config::Client;
use aws_sdk_config::types::{ConfigurationRecorder, DeliveryChannel, RecordingGroup};

use crate::aws::{AwsError, Budget, OpResult, absent_on, retry_on_codes};

use super::{Account, ItemReport, Owner};

pub const ITEM: &str = "config-recorder";
/// payops' recorder and delivery channel (both named so).
pub const NAME: &str = "payops-baseline";

/// How long a fresh role and bucket policy may take to satisfy Config.
const PROPAGATION: Budget = Budget {
    total: Duration::from_secs(120),
    first_delay: Duration::from_secs(2),
    max_delay: Duration::from_secs(15),
};
const PROPAGATING: [&str; 3] = [
    "InsufficientDeliveryPolicyException",
    "InsufficientPermissionsException",
    "InvalidRoleException",
];

/// The region's customer-managed recorder, as payops reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorder {
    pub name: String,
    pub owner: Owner,
    pub role_arn: Option<String>,
    pub all_supported: bool,
    pub recording: bool,
    /// The region's delivery channel, if any: (name, bucket, key ARN).
    pub channel: Option<Channel>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Channel {
    pub name: String,
    pub bucket: Option<String>,
    pub key_arn: Option<String>,
}

fn owner_of(name: &str) -> Owner {
    if name == NAME {
        Owner::Payops
    } else {
        Owner::Adopted
    }
}

async fn channel(cfg: &Client) -> Result<Option<Channel>, AwsError> {
    let out = cfg
        .describe_delivery_channels()
        .send()
        .await
        .op("config:DescribeDeliveryChannels")?;
    Ok(out.delivery_channels().first().map(|c| Channel {
        name: c.name().unwrap_or_default().to_owned(),
        bucket: c.s3_bucket_name().map(str::to_owned),
        key_arn: c.s3_kms_key_arn().map(str::to_owned),
    }))
}

/// The region's customer-managed recorder with its channel and status.
pub async fn find(cfg: &Client) -> Result<Option<Recorder>, AwsError> {
    let out = cfg
        .describe_configuration_recorders()
        .send()
        .await
        .op("config:DescribeConfigurationRecorders")?;
    let Some(r) = out
        .configuration_recorders()
        .iter()
        .find(|r| r.service_principal().is_none())
    else {
        return Ok(None);
    };
    let name = r.name().unwrap_or_default().to_owned();
    let status = absent_on(
        cfg.describe_configuration_recorder_status()
            .configuration_recorder_names(&name)
            .send()
            .await
            .op("config:DescribeConfigurationRecorderStatus"),
        &["NoSuchConfigurationRecorderException"],
    )?;
    let recording = status.is_some_and(|s| {
        s.configuration_recorders_status()
            .iter()
            .any(|s| s.recording())
    });
    Ok(Some(Recorder {
        owner: owner_of(&name),
        role_arn: r.role_arn().map(str::to_owned),
        all_supported: r
            .recording_group()
            .is_some_and(RecordingGroup::all_supported),
        recording,
        channel: channel(cfg).await?,
        name,
    }))
}

fn report(r: &Recorder, action: &'static str) -> ItemReport {
    let mut notes = Vec::new();
    match &r.channel {
        Some(c) => notes.push(format!(
            "delivery channel {} to s3://{}",
            c.name,
            c.bucket.as_deref().unwrap_or("?")
        )),
        None => notes.push("no delivery channel".into()),
    }
    if r.owner == Owner::Adopted && !r.recording {
        notes.push(
            "another team's recorder is not recording: payops leaves it as it is; the env's \
             change-triggered Config rules see nothing until it records"
                .into(),
        );
    }
    ItemReport {
        item: ITEM,
        id: Some(r.name.clone()),
        owner: Some(r.owner),
        state: if r.recording { "recording" } else { "stopped" }.into(),
        action,
        notes,
    }
}

/// The report of a recorder someone else made: used as it is.
pub fn adopted(r: &Recorder) -> ItemReport {
    report(r, "adopted")
}

/// Makes sure payops' recorder exists with `role_arn`, recording every
/// supported resource type, delivering to the snapshots bucket with
/// `key_arn`, and recording. `existing` is what `find` said (none, or
/// payops' own: the caller adopts anyone else's).
pub async fn ensure(
    acct: &Account<'_>,
    role_arn: &str,
    bucket: &str,
    key_arn: &str,
    existing: Option<Recorder>,
) -> Result<ItemReport, AwsError> {
    let cfg = &acct.clients.config;
    let quiet = |_: String| {};
    let mut fixed = Vec::new();
    let recorder_ok = existing
        .as_ref()
        .is_some_and(|r| r.role_arn.as_deref() == Some(role_arn) && r.all_supported);
    if !recorder_ok {
        // Every supported type: an env uses EC2, RDS, S3, Lambda, KMS, IAM,
        // ... and Config's managed rules see only what is recorded. Global
        // types (IAM) are left to one region's recorder: recording them in
        // every region bills them once per region.
        let recorder = ConfigurationRecorder::builder()
            .name(NAME)
            .role_arn(role_arn)
            .recording_group(
                RecordingGroup::builder()
                    .all_supported(true)
                    .include_global_resource_types(false)
                    .build(),
            )
            .build();
        retry_on_codes(
            "putting the Config recorder",
            &PROPAGATING,
            PROPAGATION,
            &quiet,
            || async {
                cfg.put_configuration_recorder()
                    .configuration_recorder(recorder.clone())
                    .send()
                    .await
                    .op("config:PutConfigurationRecorder")
                    .map(drop)
            },
        )
        .await?;
        fixed.push("recorder");
    }

    let channel_now = existing.as_ref().and_then(|r| r.channel.clone());
    match &channel_now {
        Some(c) if c.name != NAME => {
            return Err(AwsError::Conflict(format!(
                "the region already has AWS Config delivery channel {} (one per region) but \
                 no recorder of its own; payops does not replace another team's channel: \
                 delete it or give it a recorder, then run again",
                c.name
            )));
        }
        Some(c) if c.bucket.as_deref() == Some(bucket) && c.key_arn.as_deref() == Some(key_arn) => {
        }
        _ => {
            let channel = DeliveryChannel::builder()
                .name(NAME)
                .s3_bucket_name(bucket)
                .s3_kms_key_arn(key_arn)
                .build();
            retry_on_codes(
                "putting the Config delivery channel",
                &PROPAGATING,
                PROPAGATION,
                &quiet,
                || async {
                    cfg.put_delivery_channel()
                        .delivery_channel(channel.clone())
                        .send()
                        .await
                        .op("config:PutDeliveryChannel")
                        .map(drop)
                },
            )
            .await?;
            fixed.push("delivery channel");
        }
    }

    if !existing.as_ref().is_some_and(|r| r.recording) {
        cfg.start_configuration_recorder()
            .configuration_recorder_name(NAME)
            .send()
            .await
            .op("config:StartConfigurationRecorder")?;
        fixed.push("recording");
    }

    let now = Recorder {
        name: NAME.into(),
        owner: Owner::Payops,
        role_arn: Some(role_arn.into()),
        all_supported: true,
        recording: true,
        channel: Some(Channel {
            name: NAME.into(),
            bucket: Some(bucket.into()),
            key_arn: Some(key_arn.into()),
        }),
    };
    Ok(match (existing.is_some(), fixed.is_empty()) {
        (false, _) => report(&now, "created"),
        (true, true) => report(&now, "in-sync"),
        (true, false) => {
            report(&now, "updated").with_note(format!("put back: {}", fixed.join(", ")))
        }
    })
}

/// What `status` shows.
pub async fn observe(cfg: &Client) -> Result<ItemReport, AwsError> {
    Ok(match find(cfg).await? {
        Some(r) => report(&r, "observed"),
        None => ItemReport::absent(ITEM, "observed"),
    })
}

/// Stops and deletes payops' recorder and channel; anyone else's stays.
pub async fn destroy(cfg: &Client) -> Result<ItemReport, AwsError> {
    let Some(r) = find(cfg).await? else {
        return Ok(ItemReport::absent(ITEM, "absent"));
    };
    if r.owner == Owner::Adopted {
        return Ok(report(&r, "kept")
            .with_note("not payops' recorder (another name): never stopped or deleted"));
    }
    if r.recording {
        absent_on(
            cfg.stop_configuration_recorder()
                .configuration_recorder_name(NAME)
                .send()
                .await
                .op("config:StopConfigurationRecorder"),
            &["NoSuchConfigurationRecorderException"],
        )?;
    }
    if r.channel.as_ref().is_some_and(|c| c.name == NAME) {
        absent_on(
            cfg.delete_delivery_channel()
                .delivery_channel_name(NAME)
                .send()
                .await
                .op("config:DeleteDeliveryChannel"),
            &["NoSuchDeliveryChannelException"],
        )?;
    }
    absent_on(
        cfg.delete_configuration_recorder()
            .configuration_recorder_name(NAME)
            .send()
            .await
            .op("config:DeleteConfigurationRecorder"),
        &["NoSuchConfigurationRecorderException"],
    )?;
    Ok(ItemReport {
        state: "absent".into(),
        ..ItemReport::ours(ITEM, NAME, "deleted")
    })
}

#[cfg(test)]
mod tests {
    use aws_sdk_config::operation::delete_configuration_recorder::DeleteConfigurationRecorderOutput;
    use aws_sdk_config::operation::delete_delivery_channel::DeleteDeliveryChannelOutput;
    use aws_sdk_config::operation::describe_configuration_recorder_status::DescribeConfigurationRecorderStatusOutput;
    use aws_sdk_config::operation::describe_configuration_recorders::DescribeConfigurationRecordersOutput;
    use aws_sdk_config::operation::describe_delivery_channels::DescribeDeliveryChannelsOutput;
    use aws_sdk_config::operation::put_configuration_recorder::PutConfigurationRecorderOutput;
    use aws_sdk_config::operation::put_delivery_channel::{
        PutDeliveryChannelError, PutDeliveryChannelOutput,
    };
    use aws_sdk_config::operation::start_configuration_recorder::StartConfigurationRecorderOutput;
    use aws_sdk_config::operation::stop_configuration_recorder::StopConfigurationRecorderOutput;
    use aws_sdk_config::types::ConfigurationRecorderStatus;
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
    use aws_smithy_types::error::ErrorMetadata;

    use super::*;
    use crate::resources::testing;

    const ROLE: &str = "arn:aws:iam::123456789012:role/payops-baseline-config-us-east-1";
    const BUCKET: &str = "payops-baseline-config-123456789012-us-east-1";
    const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/k";

    fn with_config(rules: &[&Rule]) -> crate::aws::Clients {
        let mut c = testing::clients();
        c.config = mock_client!(aws_sdk_config, RuleMode::MatchAny, rules);
        c
    }

    fn recorders(name: Option<&'static str>) -> Rule {
        mock!(Client::describe_configuration_recorders).then_output(move || {
            let mut out = DescribeConfigurationRecordersOutput::builder();
            if let Some(name) = name {
                out = out.configuration_recorders(
                    ConfigurationRecorder::builder()
                        .name(name)
                        .role_arn(ROLE)
                        .recording_group(RecordingGroup::builder().all_supported(true).build())
                        .build(),
                );
            }
            out.build()
        })
    }

    fn status(recording: bool) -> Rule {
        mock!(Client::describe_configuration_recorder_status).then_output(move || {
            DescribeConfigurationRecorderStatusOutput::builder()
                .configuration_recorders_status(
                    ConfigurationRecorderStatus::builder()
                        .recording(recording)
                        .build(),
                )
                .build()
        })
    }

    fn channels(name: Option<&'static str>) -> Rule {
        mock!(Client::describe_delivery_channels).then_output(move || {
            let mut out = DescribeDeliveryChannelsOutput::builder();
            if let Some(name) = name {
                out = out.delivery_channels(
                    DeliveryChannel::builder()
                        .name(name)
                        .s3_bucket_name(BUCKET)
                        .s3_kms_key_arn(KEY)
                        .build(),
                );
            }
            out.build()
        })
    }

    /// Put recorder, put channel, start, stop, delete channel, delete
    /// recorder.
    fn mutations() -> [Rule; 6] {
        [
            mock!(Client::put_configuration_recorder)
                .match_requests(|r| {
                    r.configuration_recorder().is_some_and(|c| {
                        c.name() == Some(NAME)
                            && c.role_arn() == Some(ROLE)
                            && c.recording_group()
                                .is_some_and(RecordingGroup::all_supported)
                    })
                })
                .then_output(|| PutConfigurationRecorderOutput::builder().build()),
            mock!(Client::put_delivery_channel)
                .match_requests(|r| {
                    r.delivery_channel().is_some_and(|c| {
                        c.name() == Some(NAME)
                            && c.s3_bucket_name() == Some(BUCKET)
                            && c.s3_kms_key_arn() == Some(KEY)
                    })
                })
                .then_output(|| PutDeliveryChannelOutput::builder().build()),
            mock!(Client::start_configuration_recorder)
                .match_requests(|r| r.configuration_recorder_name() == Some(NAME))
                .then_output(|| StartConfigurationRecorderOutput::builder().build()),
            mock!(Client::stop_configuration_recorder)
                .then_output(|| StopConfigurationRecorderOutput::builder().build()),
            mock!(Client::delete_delivery_channel)
                .then_output(|| DeleteDeliveryChannelOutput::builder().build()),
            mock!(Client::delete_configuration_recorder)
                .then_output(|| DeleteConfigurationRecorderOutput::builder().build()),
        ]
    }

    fn calls(m: &[Rule; 6]) -> [usize; 6] {
        m.each_ref().map(Rule::num_calls)
    }

    #[tokio::test]
    async fn no_recorder_puts_it_then_the_channel_then_starts_it() {
        let m = mutations();
        let c = with_config(&[&recorders(None), &channels(None), &m[0], &m[1], &m[2]]);
        let existing = find(&c.config).await.unwrap();
        assert_eq!(existing, None);
        let r = ensure(&testing::account(&c), ROLE, BUCKET, KEY, existing)
            .await
            .unwrap();
        assert_eq!((r.action, r.owner), ("created", Some(Owner::Payops)));
        assert_eq!(r.state, "recording");
        assert_eq!(calls(&m), [1, 1, 1, 0, 0, 0]);
    }

    #[tokio::test]
    async fn a_converged_recorder_takes_no_mutating_call() {
        let m = mutations();
        let c = with_config(&[
            &recorders(Some(NAME)),
            &status(true),
            &channels(Some(NAME)),
            &m[0],
            &m[1],
            &m[2],
        ]);
        let existing = find(&c.config).await.unwrap();
        let r = ensure(&testing::account(&c), ROLE, BUCKET, KEY, existing)
            .await
            .unwrap();
        assert_eq!(r.action, "in-sync");
        assert_eq!(calls(&m), [0; 6]);
    }

    #[tokio::test]
    async fn payops_stopped_recorder_is_started_again_and_nothing_else() {
        let m = mutations();
        let c = with_config(&[
            &recorders(Some(NAME)),
            &status(false),
            &channels(Some(NAME)),
            &m[2],
        ]);
        let existing = find(&c.config).await.unwrap();
        let r = ensure(&testing::account(&c), ROLE, BUCKET, KEY, existing)
            .await
            .unwrap();
        assert_eq!(r.action, "updated");
        assert_eq!(calls(&m), [0, 0, 1, 0, 0, 0]);
    }

    #[tokio::test]
    async fn another_teams_recorder_is_adopted_and_never_stopped_or_deleted() {
        let m = mutations();
        let c = with_config(&[
            &recorders(Some("default")),
            &status(false),
            &channels(None),
            &m[3],
            &m[4],
            &m[5],
        ]);
        let found = find(&c.config).await.unwrap().unwrap();
        assert_eq!(found.owner, Owner::Adopted);
        let r = adopted(&found);
        assert_eq!((r.action, r.state.as_str()), ("adopted", "stopped"));
        assert!(r.notes.iter().any(|n| n.contains("not recording")), "{r:?}");
        let r = destroy(&c.config).await.unwrap();
        assert_eq!((r.action, r.owner), ("kept", Some(Owner::Adopted)));
        assert_eq!(calls(&m), [0; 6]);
    }

    #[tokio::test]
    async fn another_teams_channel_without_a_recorder_is_refused_not_replaced() {
        let m = mutations();
        let c = with_config(&[&m[0], &m[1], &m[2]]);
        let existing = Some(Recorder {
            name: NAME.into(),
            owner: Owner::Payops,
            role_arn: Some(ROLE.into()),
            all_supported: true,
            recording: false,
            channel: Some(Channel {
                name: "default".into(),
                bucket: Some("theirs".into()),
                key_arn: None,
            }),
        });
        let err = ensure(&testing::account(&c), ROLE, BUCKET, KEY, existing)
            .await
            .unwrap_err();
        assert!(matches!(err, AwsError::Conflict(_)), "{err}");
        assert_eq!(calls(&m), [0; 6]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_channel_refused_while_the_bucket_policy_propagates_is_retried() {
        let m = mutations();
        let put = mock!(Client::put_delivery_channel)
            .sequence()
            .error(|| {
                PutDeliveryChannelError::generic(
                    ErrorMetadata::builder()
                        .code("InsufficientDeliveryPolicyException")
                        .message("Insufficient delivery policy to s3 bucket: payops-baseline-config-123456789012-us-east-1, unable to write to bucket, provided s3 key prefix is 'null', provided kms key is 'arn:aws:kms:us-east-1:123456789012:key/k'.")
                        .build(),
                )
            })
            .output(|| PutDeliveryChannelOutput::builder().build())
            .build();
        let c = with_config(&[&m[0], &put, &m[2]]);
        let r = ensure(&testing::account(&c), ROLE, BUCKET, KEY, None)
            .await
            .unwrap();
        assert_eq!(r.action, "created");
        assert_eq!(put.num_calls(), 2);
    }

    #[tokio::test]
    async fn destroy_stops_then_deletes_the_channel_then_the_recorder() {
        let m = mutations();
        let c = with_config(&[
            &recorders(Some(NAME)),
            &status(true),
            &channels(Some(NAME)),
            &m[3],
            &m[4],
            &m[5],
        ]);
        let r = destroy(&c.config).await.unwrap();
        assert_eq!((r.action, r.state.as_str()), ("deleted", "absent"));
        assert_eq!(calls(&m), [0, 0, 0, 1, 1, 1]);
    }
}
