//! The transaction log: a Firehose stream `payops-<env>-transaction-log`
//! (DirectPut) that transaction processing puts each payment's record on,
//! delivered to the env's transaction-log bucket as GZIP'd JSON lines under
//! `transactions/YYYY/MM/DD/`, after the transform function redacted and
//! normalised each record. What Firehose cannot deliver or the transform
//! marks ProcessingFailed lands under `errors/<error type>/YYYY/MM/DD/`.
//! Objects are SSE-KMS with the env's S3 key; the stream itself is encrypted
//! at rest with the env's events key (CUSTOMER_MANAGED_CMK).
//!
//! Fed directly by the producer rather than by a function forwarding the
//! transactions table's stream: one PutRecord from a function that already
//! holds the record, no second function, event source mapping and role to
//! run and pay for, and no stream shard iterator to fall behind. The cost is
//! that the producer must not let a failed put fail the payment (it logs and
//! counts it, as for PutEvents).
//!
//! Found by name (DescribeDeliveryStream: one read), owned by its tags
//! (ListTagsForDeliveryStream: the second). Drift is on the destination
//! (repaired by one UpdateDestination with the stream's current version id
//! and destination id) and on the stream's encryption
//! (StartDeliveryStreamEncryption).
//!
//! Real-AWS rules encoded here (emulators ignore them):
//! - A role created a moment ago makes CreateDeliveryStream fail with
//!   InvalidArgumentException "Firehose is unable to assume role ...": IAM
//!   is eventually consistent. Retried for a bounded time on that message
//!   only (terraform-provider-aws, firehose/delivery_stream.go); every other
//!   InvalidArgumentException is a real error.
//! - CreateDeliveryStream is asynchronous: the stream is CREATING, then
//!   ACTIVE (or CREATING_FAILED with a FailureDescription); PutRecord and
//!   UpdateDestination need ACTIVE (Terraform waits up to 20 minutes).
//! - DeleteDeliveryStream is asynchronous too: DELETING until
//!   DescribeDeliveryStream answers ResourceNotFoundException (or
//!   DELETING_FAILED). `down` waits until it is gone, so the bucket and the
//!   role it writes with go only after it.
//! - UpdateDestination needs the current VersionId and DestinationId; a
//!   stale version id is refused (ConcurrentModificationException):
//!   re-read and retry.
//! - CUSTOMER_MANAGED_CMK: Firehose calls KMS CreateGrant on the key with
//!   the caller's credentials and manages that grant; the key must be
//!   symmetric, and one key serves at most 500 streams. The env keys'
//!   policies let the account's IAM policies govern them, so the caller
//!   needs kms:CreateGrant and kms:DescribeKey on the events key, nothing
//!   in the key policy for a service principal
//!   (API_DeliveryStreamEncryptionConfigurationInput).
//! - A Prefix with `!{timestamp:...}` expressions needs an ErrorOutputPrefix,
//!   which should carry `!{firehose:error-output-type}` (s3-prefixes).
//! - Error logging (CloudWatchLoggingOptions, on the S3 destination: it
//!   covers delivery and the transform's invocation failures alike) names
//!   a log group and a log stream that must exist: only the console makes
//!   them, the API does not (Firehose then logs nothing, silently). The
//!   group is its own step (`log-group:transaction-log-delivery`, which
//!   keeps the stream there), and the delivery role may PutLogEvents only
//!   to that stream (monitoring-with-cloudwatch-logs, controlling-access).
//! - Transform: BufferSizeInMBs 0.2-3, BufferIntervalInSeconds 0-900; S3
//!   buffering SizeInMBs 1-128, IntervalInSeconds 0-900 (checked when payops
//!   is compiled, below).
//!   [API_CreateDeliveryStream, API_UpdateDestination,
//!   API_DeleteDeliveryStream, data-transformation]

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_firehose::types::{
    BufferingHints, CloudWatchLoggingOptions, CompressionFormat, DeliveryStreamDescription,
    DeliveryStreamEncryptionConfigurationInput, DeliveryStreamEncryptionStatus,
    DeliveryStreamStatus, DeliveryStreamType, EncryptionConfiguration,
    ExtendedS3DestinationConfiguration, ExtendedS3DestinationDescription,
    ExtendedS3DestinationUpdate, KeyType, KmsEncryptionConfig, ProcessingConfiguration, Processor,
    ProcessorParameter, ProcessorParameterName, ProcessorType, Tag,
};

use crate::aws::wait::{Poll, poll_until, retry_attempts, wait_until_gone};
use crate::aws::{AwsError, Budget, OpResult, absent_on, built};
use crate::engine::{Record, StepCx};
use crate::naming::NameKind;
use crate::tags::{self, TagMap, describe_tag_fix};

use crate::resources::context::Context;
use crate::resources::model::DELIVERY_BUFFER_INTERVAL_S;
use crate::resources::resource::Resource;

pub const STEP: &str = "firehose-stream:transaction-log";
pub const BUCKET_INPUT: (&str, &str) = ("s3-bucket:transaction-log", "TransactionLogBucketArn");
pub const ROLE_INPUT: (&str, &str) = (
    "iam-role:transaction-log-delivery",
    "TransactionLogDeliveryRoleArn",
);
pub const TRANSFORM_INPUT: (&str, &str) = (
    "lambda-function:transaction-log-transform",
    "LogTransformFunctionArn",
);
/// The objects' key (the bucket's): SSE-KMS, through S3.
pub const OBJECT_KEY_INPUT: (&str, &str) = ("kms-key:s3", "S3KmsKeyArn");
/// The stream's own encryption at rest.
pub const STREAM_KEY_INPUT: (&str, &str) = ("kms-key:events", "EventsKmsKeyArn");
/// Where Firehose logs what it could not deliver or transform: the group's
/// name and the stream it holds (see [`LOG_STREAM`]).
pub const LOG_GROUP_INPUT: (&str, &str) = (
    "log-group:transaction-log-delivery",
    "TransactionLogDeliveryLogGroupName",
);
/// The group's ARN, for the delivery role's policy.
pub const LOG_GROUP_ARN_OUTPUT: &str = "TransactionLogDeliveryLogGroupArn";
/// The stream Firehose writes its S3 delivery errors to (the name the
/// console uses for it).
pub const LOG_STREAM: &str = "DestinationDelivery";
pub const NAME_OUTPUT: &str = "TransactionLogStreamName";
pub const ARN_OUTPUT: &str = "TransactionLogStreamArn";

/// Where delivered records go, by day (UTC).
pub const PREFIX: &str = "transactions/!{timestamp:yyyy/MM/dd}/";
/// Where Firehose puts what it could not deliver or the transform failed,
/// by kind (`processing-failed`, ...) and day.
pub const ERROR_PREFIX: &str = "errors/!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd}/";
/// The key prefixes the delivery role may write under (the prefixes above,
/// up to their first expression).
pub const WRITTEN_PREFIXES: [&str; 2] = ["transactions/", "errors/"];

/// S3 buffering: AWS's defaults (5 MB or 5 minutes, whichever first). The
/// data-freshness alarm is derived from the interval.
pub const BUFFER_SIZE_MB: i32 = 5;
pub const BUFFER_INTERVAL_S: i32 = DELIVERY_BUFFER_INTERVAL_S;
/// The transform's buffer: Firehose's default 1 MB, but a minute at most.
const TRANSFORM_BUFFER_MB: &str = "1";
const TRANSFORM_BUFFER_S: &str = "60";
const _: () = assert!(BUFFER_SIZE_MB >= 1 && BUFFER_SIZE_MB <= 128);
const _: () = assert!(BUFFER_INTERVAL_S >= 0 && BUFFER_INTERVAL_S <= 900);

/// IAM propagation: Terraform retries for a minute; a little more here.
const ROLE_PROPAGATION: Budget = Budget {
    total: Duration::from_secs(120),
    first_delay: Duration::from_secs(2),
    max_delay: Duration::from_secs(15),
};
/// CREATING -> ACTIVE, DELETING -> gone: Terraform allows 20 minutes each.
const STATUS_CHANGE: Budget = Budget {
    total: Duration::from_secs(20 * 60),
    first_delay: Duration::from_secs(5),
    max_delay: Duration::from_secs(30),
};

const NOT_FOUND: [&str; 1] = ["ResourceNotFoundException"];
/// CreateDeliveryStream of a name that exists.
const IN_USE: [&str; 1] = ["ResourceInUseException"];
const STALE_VERSION: [&str; 1] = ["ConcurrentModificationException"];

/// Whether CreateDeliveryStream failed only because the role it was given
/// is not yet usable by Firehose (IAM propagation); nothing in the code
/// tells it apart from other invalid arguments, only the message.
pub fn role_not_yet_assumable(e: &AwsError) -> bool {
    e.is_code(&["InvalidArgumentException"])
        && e.to_string().contains("Firehose is unable to assume role")
}

pub struct DeliveryStream;

/// What payops sets on the destination, as DescribeDeliveryStream answers
/// it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    role: String,
    bucket: String,
    prefix: Option<String>,
    error_prefix: Option<String>,
    buffer_mb: Option<i32>,
    buffer_s: Option<i32>,
    gzip: bool,
    object_key: Option<String>,
    /// The Lambda processor's parameters payops sets, by name; `None`: no
    /// enabled Lambda processor.
    transform: Option<Vec<(String, String)>>,
    /// (log group, log stream) of enabled error logging; `None`: off.
    logging: Option<(String, String)>,
}

pub struct FoundStream {
    name: String,
    arn: String,
    version_id: String,
    destination_id: String,
    destination: Option<Destination>,
    /// (key type, key ARN) of the stream's encryption, when enabled.
    encryption: Option<(String, Option<String>)>,
    /// Whether the answer had an encryption configuration at all. AWS
    /// always sends one (Status DISABLED when off); LocalStack 4.14 sends
    /// none and does not serve StartDeliveryStreamEncryption, so an absent
    /// one is "cannot tell", not drift.
    encryption_reported: bool,
    /// CREATING_FAILED, with Firehose's reason: only `down` can help.
    failed: Option<String>,
    tags: TagMap,
}

pub enum Fix {
    Tags(TagMap),
    Destination { what: Vec<&'static str> },
    Encryption,
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tags(t) => f.write_str(&describe_tag_fix(t)),
            Self::Destination { what } => write!(f, "set {}", what.join(", ")),
            Self::Encryption => f.write_str("encrypt the stream with the env's events key"),
        }
    }
}

impl DeliveryStream {
    fn name(cx: &Context) -> Result<String, AwsError> {
        let name = cx.names.delivery_stream();
        NameKind::DeliveryStream
            .check(&name)
            .map_err(AwsError::Conflict)?;
        Ok(name)
    }

    fn desired(step: &StepCx<'_>) -> Result<Destination, AwsError> {
        Ok(Destination {
            role: step.output(ROLE_INPUT.0, ROLE_INPUT.1)?.to_owned(),
            bucket: step.output(BUCKET_INPUT.0, BUCKET_INPUT.1)?.to_owned(),
            prefix: Some(PREFIX.to_owned()),
            error_prefix: Some(ERROR_PREFIX.to_owned()),
            buffer_mb: Some(BUFFER_SIZE_MB),
            buffer_s: Some(BUFFER_INTERVAL_S),
            gzip: true,
            object_key: Some(
                step.output(OBJECT_KEY_INPUT.0, OBJECT_KEY_INPUT.1)?
                    .to_owned(),
            ),
            transform: Some(transform_parameters(
                step.output(TRANSFORM_INPUT.0, TRANSFORM_INPUT.1)?,
            )),
            logging: Some((
                step.output(LOG_GROUP_INPUT.0, LOG_GROUP_INPUT.1)?
                    .to_owned(),
                LOG_STREAM.to_owned(),
            )),
        })
    }

    /// The destination settings that differ, by API name.
    fn drifted(found: Option<&Destination>, want: &Destination) -> Vec<&'static str> {
        let Some(found) = found else {
            return vec!["ExtendedS3DestinationConfiguration"];
        };
        let mut what = Vec::new();
        if found.role != want.role {
            what.push("RoleARN");
        }
        if found.bucket != want.bucket {
            what.push("BucketARN");
        }
        if found.prefix != want.prefix || found.error_prefix != want.error_prefix {
            what.push("Prefix, ErrorOutputPrefix");
        }
        if (found.buffer_mb, found.buffer_s) != (want.buffer_mb, want.buffer_s) {
            what.push("BufferingHints");
        }
        if found.gzip != want.gzip {
            what.push("CompressionFormat");
        }
        if found.object_key != want.object_key {
            what.push("EncryptionConfiguration");
        }
        if found.transform != want.transform {
            what.push("ProcessingConfiguration");
        }
        if found.logging != want.logging {
            what.push("CloudWatchLoggingOptions");
        }
        what
    }
}

/// The Lambda processor's parameters, sorted by name. Only those payops
/// sets are compared: AWS echoes defaults it adds (NumberOfRetries, RoleArn)
/// that payops never sent (as Terraform's flattening filters them).
fn transform_parameters(function_arn: &str) -> Vec<(String, String)> {
    let mut v = vec![
        (
            ProcessorParameterName::LambdaArn.as_str().to_owned(),
            function_arn.to_owned(),
        ),
        (
            ProcessorParameterName::BufferSizeInMb.as_str().to_owned(),
            TRANSFORM_BUFFER_MB.to_owned(),
        ),
        (
            ProcessorParameterName::BufferIntervalInSeconds
                .as_str()
                .to_owned(),
            TRANSFORM_BUFFER_S.to_owned(),
        ),
    ];
    v.sort();
    v
}

const SET_PARAMETERS: [ProcessorParameterName; 3] = [
    ProcessorParameterName::LambdaArn,
    ProcessorParameterName::BufferSizeInMb,
    ProcessorParameterName::BufferIntervalInSeconds,
];

fn observed_destination(d: &ExtendedS3DestinationDescription) -> Destination {
    let transform = d
        .processing_configuration()
        .filter(|p| p.enabled() == Some(true))
        .and_then(|p| {
            p.processors()
                .iter()
                .find(|p| p.r#type() == &ProcessorType::Lambda)
        })
        .map(|p| {
            let mut v: Vec<(String, String)> = p
                .parameters()
                .iter()
                .filter(|p| SET_PARAMETERS.contains(p.parameter_name()))
                .map(|p| {
                    (
                        p.parameter_name().as_str().to_owned(),
                        p.parameter_value().to_owned(),
                    )
                })
                .collect();
            v.sort();
            v
        });
    Destination {
        role: d.role_arn().to_owned(),
        bucket: d.bucket_arn().to_owned(),
        prefix: d.prefix().map(str::to_owned),
        error_prefix: d.error_output_prefix().map(str::to_owned),
        buffer_mb: d.buffering_hints().and_then(BufferingHints::size_in_mbs),
        buffer_s: d
            .buffering_hints()
            .and_then(BufferingHints::interval_in_seconds),
        gzip: d.compression_format() == &CompressionFormat::Gzip,
        object_key: d
            .encryption_configuration()
            .and_then(EncryptionConfiguration::kms_encryption_config)
            .map(|k| k.awskms_key_arn().to_owned()),
        transform,
        logging: d
            .cloud_watch_logging_options()
            .filter(|l| l.enabled() == Some(true))
            .map(|l| {
                (
                    l.log_group_name().unwrap_or_default().to_owned(),
                    l.log_stream_name().unwrap_or_default().to_owned(),
                )
            }),
    }
}

/// The pieces of the destination, as the API takes them.
struct Parts {
    hints: BufferingHints,
    encryption: EncryptionConfiguration,
    processing: ProcessingConfiguration,
    logging: CloudWatchLoggingOptions,
}

fn parts(op: &'static str, want: &Destination) -> Result<Parts, AwsError> {
    let mut processor = Processor::builder().r#type(ProcessorType::Lambda);
    for (name, value) in want.transform.iter().flatten() {
        processor = processor.parameters(built(
            op,
            ProcessorParameter::builder()
                .parameter_name(ProcessorParameterName::from(name.as_str()))
                .parameter_value(value)
                .build(),
        )?);
    }
    let key = want.object_key.clone().unwrap_or_default();
    Ok(Parts {
        hints: BufferingHints::builder()
            .set_size_in_mbs(want.buffer_mb)
            .set_interval_in_seconds(want.buffer_s)
            .build(),
        encryption: EncryptionConfiguration::builder()
            .kms_encryption_config(built(
                op,
                KmsEncryptionConfig::builder().awskms_key_arn(key).build(),
            )?)
            .build(),
        processing: ProcessingConfiguration::builder()
            .enabled(true)
            .processors(built(op, processor.build())?)
            .build(),
        logging: match &want.logging {
            Some((group, stream)) => CloudWatchLoggingOptions::builder()
                .enabled(true)
                .log_group_name(group)
                .log_stream_name(stream)
                .build(),
            None => CloudWatchLoggingOptions::builder().enabled(false).build(),
        },
    })
}

/// The stream's SSE input: the env's events key, customer managed.
fn sse(
    op: &'static str,
    key: &str,
) -> Result<DeliveryStreamEncryptionConfigurationInput, AwsError> {
    built(
        op,
        DeliveryStreamEncryptionConfigurationInput::builder()
            .key_type(KeyType::CustomerManagedCmk)
            .key_arn(key)
            .build(),
    )
}

fn stream_tags(op: &'static str, tags: &TagMap) -> Result<Vec<Tag>, AwsError> {
    tags.iter()
        .map(|(k, v)| built(op, Tag::builder().key(k).value(v).build()))
        .collect()
}

async fn describe(cx: &Context, name: &str) -> Result<DeliveryStreamDescription, AwsError> {
    const OP: &str = "firehose:DescribeDeliveryStream";
    let out = cx
        .clients
        .firehose
        .describe_delivery_stream()
        .delivery_stream_name(name)
        .send()
        .await
        .op(OP)?;
    out.delivery_stream_description.ok_or(AwsError::Incomplete {
        op: OP,
        field: "DeliveryStreamDescription",
    })
}

fn failure(d: &DeliveryStreamDescription) -> String {
    d.failure_description()
        .map(|f| format!("{}: {}", f.r#type().as_str(), f.details()))
        .unwrap_or_else(|| "no failure description".to_owned())
}

/// Waits until the stream is ACTIVE; CREATING_FAILED is an error with
/// Firehose's reason.
async fn wait_active(
    cx: &Context,
    step: &StepCx<'_>,
    name: &str,
) -> Result<DeliveryStreamDescription, AwsError> {
    let progress = |m: String| step.progress(m);
    poll_until(
        format!("Firehose stream {name} to be ACTIVE"),
        STATUS_CHANGE,
        &progress,
        || async {
            let d = describe(cx, name).await?;
            match d.delivery_stream_status() {
                DeliveryStreamStatus::Active => Ok(Poll::Ready(d)),
                DeliveryStreamStatus::CreatingFailed => Err(AwsError::Conflict(format!(
                    "Firehose stream {name} failed to create ({}); `payops down` removes it, \
                     then `payops up` creates it again",
                    failure(&d)
                ))),
                other => Ok(Poll::Pending(other.as_str().to_owned())),
            }
        },
    )
    .await
}

async fn tags_of(cx: &Context, name: &str) -> Result<TagMap, AwsError> {
    let out = cx
        .clients
        .firehose
        .list_tags_for_delivery_stream()
        .delivery_stream_name(name)
        // Firehose allows 50 tags per stream: one page holds them all.
        .limit(50)
        .send()
        .await
        .op("firehose:ListTagsForDeliveryStream")?;
    Ok(tags::to_map(out.tags(), |t| (Some(t.key()), t.value())))
}

fn found_from(d: &DeliveryStreamDescription, tags: TagMap) -> FoundStream {
    let destination = d.destinations().first();
    FoundStream {
        name: d.delivery_stream_name().to_owned(),
        arn: d.delivery_stream_arn().to_owned(),
        version_id: d.version_id().to_owned(),
        destination_id: destination
            .map(|x| x.destination_id().to_owned())
            .unwrap_or_default(),
        destination: destination
            .and_then(|x| x.extended_s3_destination_description())
            .map(observed_destination),
        encryption: d.delivery_stream_encryption_configuration().and_then(|e| {
            // Disabled (or disabling): not encrypted. An answer without a
            // status (emulators echo the create input) with a key type is.
            let off = matches!(
                e.status(),
                Some(
                    DeliveryStreamEncryptionStatus::Disabled
                        | DeliveryStreamEncryptionStatus::Disabling
                )
            );
            let key_type = e.key_type()?.as_str().to_owned();
            (!off).then(|| (key_type, e.key_arn().map(str::to_owned)))
        }),
        encryption_reported: d.delivery_stream_encryption_configuration().is_some(),
        failed: (d.delivery_stream_status() == &DeliveryStreamStatus::CreatingFailed)
            .then(|| failure(d)),
        tags,
    }
}

#[async_trait]
impl Resource for DeliveryStream {
    type Found = FoundStream;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "firehose:delivery-stream"
    }

    fn wanted(&self, cx: &Context) -> bool {
        cx.spec.events
    }

    async fn find(&self, cx: &Context, step: &StepCx<'_>) -> Result<Vec<FoundStream>, AwsError> {
        let name = Self::name(cx)?;
        let Some(mut d) = absent_on(describe(cx, &name).await, &NOT_FOUND)? else {
            return Ok(Vec::new());
        };
        let tags = tags_of(cx, &name).await?;
        cx.check_ours(format!("Firehose stream {name}"), &tags)?;
        match d.delivery_stream_status() {
            DeliveryStreamStatus::Creating => d = wait_active(cx, step, &name).await?,
            // Being deleted (a `down` cut short): let it go, then it is
            // missing and `up` creates it again.
            DeliveryStreamStatus::Deleting => {
                wait_gone(cx, step, &name).await?;
                return Ok(Vec::new());
            }
            _ => {}
        }
        Ok(vec![found_from(&d, tags)])
    }

    fn describe(&self, found: &FoundStream) -> String {
        found.name.clone()
    }

    fn already_exists(&self) -> &'static [&'static str] {
        &IN_USE
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<FoundStream, AwsError> {
        const OP: &str = "firehose:CreateDeliveryStream";
        let name = Self::name(cx)?;
        let want = Self::desired(step)?;
        let stream_key = step.output(STREAM_KEY_INPUT.0, STREAM_KEY_INPUT.1)?;
        let p = parts(OP, &want)?;
        let destination = built(
            OP,
            ExtendedS3DestinationConfiguration::builder()
                .role_arn(&want.role)
                .bucket_arn(&want.bucket)
                .set_prefix(want.prefix.clone())
                .set_error_output_prefix(want.error_prefix.clone())
                .buffering_hints(p.hints)
                .compression_format(CompressionFormat::Gzip)
                .encryption_configuration(p.encryption)
                .processing_configuration(p.processing)
                .cloud_watch_logging_options(p.logging)
                .build(),
        )?;
        let tags = cx.tagger.for_create(step.id().as_str());
        let request = cx
            .clients
            .firehose
            .create_delivery_stream()
            .delivery_stream_name(&name)
            .delivery_stream_type(DeliveryStreamType::DirectPut)
            .extended_s3_destination_configuration(destination)
            .delivery_stream_encryption_configuration_input(sse(OP, stream_key)?)
            .set_tags(Some(stream_tags(OP, &tags)?));
        let progress = |m: String| step.progress(m);
        retry_attempts(
            &format!("Firehose stream {name} (its role is new to IAM)"),
            role_not_yet_assumable,
            |_| "Firehose cannot assume the role yet".to_owned(),
            ROLE_PROPAGATION,
            &progress,
            |_| {
                let request = request.clone();
                async move { request.send().await.op(OP) }
            },
        )
        .await?;
        step.remember("delivery-stream", &name);
        let d = wait_active(cx, step, &name).await?;
        Ok(found_from(&d, tags))
    }

    async fn diff(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        stream: &FoundStream,
    ) -> Result<Vec<Fix>, AwsError> {
        // A stream that failed to create cannot be updated, only deleted
        // (and created again).
        if let Some(why) = &stream.failed {
            return Err(AwsError::Conflict(format!(
                "Firehose stream {} failed to create ({why}); `payops down` removes it, then \
                 `payops up` creates it again",
                stream.name
            )));
        }
        let mut fixes = Vec::new();
        let missing = cx.tagger.missing(step.id().as_str(), &stream.tags);
        if !missing.is_empty() {
            fixes.push(Fix::Tags(missing));
        }
        let what = Self::drifted(stream.destination.as_ref(), &Self::desired(step)?);
        if !what.is_empty() {
            fixes.push(Fix::Destination { what });
        }
        let key = step.output(STREAM_KEY_INPUT.0, STREAM_KEY_INPUT.1)?;
        let want = (
            KeyType::CustomerManagedCmk.as_str().to_owned(),
            Some(key.to_owned()),
        );
        if stream.encryption_reported && stream.encryption.as_ref() != Some(&want) {
            fixes.push(Fix::Encryption);
        }
        Ok(fixes)
    }

    async fn fix(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        stream: &mut FoundStream,
        fix: Fix,
    ) -> Result<(), AwsError> {
        let firehose = &cx.clients.firehose;
        match fix {
            Fix::Tags(missing) => {
                const OP: &str = "firehose:TagDeliveryStream";
                firehose
                    .tag_delivery_stream()
                    .delivery_stream_name(&stream.name)
                    .set_tags(Some(stream_tags(OP, &missing)?))
                    .send()
                    .await
                    .op(OP)?;
                stream.tags.extend(missing);
            }
            Fix::Destination { .. } => {
                const OP: &str = "firehose:UpdateDestination";
                let want = Self::desired(step)?;
                let p = parts(OP, &want)?;
                let update = ExtendedS3DestinationUpdate::builder()
                    .role_arn(&want.role)
                    .bucket_arn(&want.bucket)
                    .set_prefix(want.prefix.clone())
                    .set_error_output_prefix(want.error_prefix.clone())
                    .buffering_hints(p.hints)
                    .compression_format(CompressionFormat::Gzip)
                    .encryption_configuration(p.encryption)
                    .processing_configuration(p.processing)
                    .cloud_watch_logging_options(p.logging)
                    .build();
                let mut version = stream.version_id.clone();
                let mut destination = stream.destination_id.clone();
                // Once more with a fresh version id if someone changed the
                // stream since it was read.
                for attempt in 0..2 {
                    let result = firehose
                        .update_destination()
                        .delivery_stream_name(&stream.name)
                        .current_delivery_stream_version_id(&version)
                        .destination_id(&destination)
                        .extended_s3_destination_update(update.clone())
                        .send()
                        .await
                        .op(OP);
                    match result {
                        Ok(_) => break,
                        Err(e) if attempt == 0 && e.is_code(&STALE_VERSION) => {
                            let d = describe(cx, &stream.name).await?;
                            version = d.version_id().to_owned();
                            if let Some(first) = d.destinations().first() {
                                destination = first.destination_id().to_owned();
                            }
                        }
                        Err(e) => return Err(e),
                    }
                }
                stream.destination = Some(want);
            }
            Fix::Encryption => {
                const OP: &str = "firehose:StartDeliveryStreamEncryption";
                let key = step.output(STREAM_KEY_INPUT.0, STREAM_KEY_INPUT.1)?;
                firehose
                    .start_delivery_stream_encryption()
                    .delivery_stream_name(&stream.name)
                    .delivery_stream_encryption_configuration_input(sse(OP, key)?)
                    .send()
                    .await
                    .op(OP)?;
                stream.encryption = Some((
                    KeyType::CustomerManagedCmk.as_str().to_owned(),
                    Some(key.to_owned()),
                ));
            }
        }
        Ok(())
    }

    fn record(&self, _cx: &Context, stream: &FoundStream) -> Record {
        Record::default()
            .resource("delivery-stream", &stream.name)
            .output(NAME_OUTPUT, &stream.name)
            .output(ARN_OUTPUT, &stream.arn)
    }

    async fn delete(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        stream: FoundStream,
    ) -> Result<Vec<String>, AwsError> {
        let result = cx
            .clients
            .firehose
            .delete_delivery_stream()
            .delivery_stream_name(&stream.name)
            .send()
            .await
            .op("firehose:DeleteDeliveryStream");
        if absent_on(result, &NOT_FOUND)?.is_none() {
            return Ok(Vec::new());
        }
        wait_gone(cx, step, &stream.name).await?;
        Ok(Vec::new())
    }
}

/// "Requested is not done": DELETING until Firehose no longer knows the
/// name; DELETING_FAILED is an error with its reason.
async fn wait_gone(cx: &Context, step: &StepCx<'_>, name: &str) -> Result<(), AwsError> {
    let progress = |m: String| step.progress(m);
    wait_until_gone(
        format!("Firehose stream {name} to be deleted"),
        STATUS_CHANGE,
        &progress,
        &NOT_FOUND,
        || async {
            let d = describe(cx, name).await?;
            if d.delivery_stream_status() == &DeliveryStreamStatus::DeletingFailed {
                return Err(AwsError::Conflict(format!(
                    "Firehose could not delete stream {name} ({})",
                    failure(&d)
                )));
            }
            Ok(d)
        },
        |d| d.delivery_stream_status().as_str().to_owned(),
    )
    .await
}

#[cfg(test)]
mod tests {
    use aws_sdk_firehose::Client;
    use aws_sdk_firehose::operation::create_delivery_stream::{
        CreateDeliveryStreamError, CreateDeliveryStreamOutput,
    };
    use aws_sdk_firehose::operation::delete_delivery_stream::DeleteDeliveryStreamOutput;
    use aws_sdk_firehose::operation::describe_delivery_stream::{
        DescribeDeliveryStreamError, DescribeDeliveryStreamOutput,
    };
    use aws_sdk_firehose::operation::list_tags_for_delivery_stream::ListTagsForDeliveryStreamOutput;
    use aws_sdk_firehose::operation::start_delivery_stream_encryption::StartDeliveryStreamEncryptionOutput;
    use aws_sdk_firehose::operation::update_destination::{
        UpdateDestinationError, UpdateDestinationOutput,
    };
    use aws_sdk_firehose::types::{
        DeliveryStreamEncryptionConfiguration, DeliveryStreamFailureType, DestinationDescription,
        FailureDescription,
    };
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    use super::*;
    use crate::engine::{Change, Observation, Removed};
    use crate::resources::testing;

    const NAME: &str = "payops-pr1-transaction-log";
    const ARN: &str =
        "arn:aws:firehose:us-east-1:123456789012:deliverystream/payops-pr1-transaction-log";
    const ROLE: &str =
        "arn:aws:iam::123456789012:role/payops-pr1-us-east-1-transaction-log-delivery";
    const BUCKET: &str = "arn:aws:s3:::payops-pr1-txlog-123456789012-us-east-1";
    const FUNCTION: &str =
        "arn:aws:lambda:us-east-1:123456789012:function:payops-pr1-transaction-log-transform";
    const S3_KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/s3-key";
    const EVENTS_KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/events-key";
    const LOG_GROUP: &str = "/payops/pr1/firehose/transaction-log";
    /// What Firehose answers while IAM has not propagated a new role
    /// (terraform-provider-aws firehose/delivery_stream.go retries on it).
    const ROLE_NOT_YET: &str = "Firehose is unable to assume role \
        arn:aws:iam::123456789012:role/payops-pr1-us-east-1-transaction-log-delivery. Please \
        check the role provided.";

    fn inputs() -> Vec<(&'static str, Record)> {
        testing::outputs(&[
            (ROLE_INPUT.0, ROLE_INPUT.1, ROLE),
            (BUCKET_INPUT.0, BUCKET_INPUT.1, BUCKET),
            (TRANSFORM_INPUT.0, TRANSFORM_INPUT.1, FUNCTION),
            (OBJECT_KEY_INPUT.0, OBJECT_KEY_INPUT.1, S3_KEY),
            (STREAM_KEY_INPUT.0, STREAM_KEY_INPUT.1, EVENTS_KEY),
            (LOG_GROUP_INPUT.0, LOG_GROUP_INPUT.1, LOG_GROUP),
        ])
    }

    fn cx_with(rules: &[&Rule]) -> Context {
        let mut clients = testing::clients();
        clients.firehose = mock_client!(aws_sdk_firehose, RuleMode::MatchAny, rules);
        testing::context(clients)
    }

    fn error(code: &str, message: &str) -> aws_smithy_types::error::ErrorMetadata {
        aws_smithy_types::error::ErrorMetadata::builder()
            .code(code)
            .message(message)
            .build()
    }

    /// The destination as AWS describes what payops creates, with the
    /// processor parameters AWS adds itself.
    fn destination(prefix: &str) -> ExtendedS3DestinationDescription {
        let param = |n: ProcessorParameterName, v: &str| {
            ProcessorParameter::builder()
                .parameter_name(n)
                .parameter_value(v)
                .build()
                .unwrap()
        };
        ExtendedS3DestinationDescription::builder()
            .role_arn(ROLE)
            .bucket_arn(BUCKET)
            .prefix(prefix)
            .error_output_prefix(ERROR_PREFIX)
            .buffering_hints(
                BufferingHints::builder()
                    .size_in_mbs(5)
                    .interval_in_seconds(300)
                    .build(),
            )
            .compression_format(CompressionFormat::Gzip)
            .encryption_configuration(
                EncryptionConfiguration::builder()
                    .kms_encryption_config(
                        KmsEncryptionConfig::builder()
                            .awskms_key_arn(S3_KEY)
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .processing_configuration(
                ProcessingConfiguration::builder()
                    .enabled(true)
                    .processors(
                        Processor::builder()
                            .r#type(ProcessorType::Lambda)
                            .parameters(param(ProcessorParameterName::LambdaArn, FUNCTION))
                            .parameters(param(ProcessorParameterName::LambdaNumberOfRetries, "3"))
                            .parameters(param(ProcessorParameterName::RoleArn, ROLE))
                            .parameters(param(ProcessorParameterName::BufferSizeInMb, "1"))
                            .parameters(param(
                                ProcessorParameterName::BufferIntervalInSeconds,
                                "60",
                            ))
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .cloud_watch_logging_options(
                CloudWatchLoggingOptions::builder()
                    .enabled(true)
                    .log_group_name(LOG_GROUP)
                    .log_stream_name(LOG_STREAM)
                    .build(),
            )
            .build()
            .unwrap()
    }

    fn description(
        status: DeliveryStreamStatus,
        prefix: &str,
        encryption: Option<DeliveryStreamEncryptionStatus>,
    ) -> DescribeDeliveryStreamOutput {
        let sse = encryption.map(|s| {
            DeliveryStreamEncryptionConfiguration::builder()
                .key_type(KeyType::CustomerManagedCmk)
                .key_arn(EVENTS_KEY)
                .status(s)
                .build()
        });
        DescribeDeliveryStreamOutput::builder()
            .delivery_stream_description(
                DeliveryStreamDescription::builder()
                    .delivery_stream_name(NAME)
                    .delivery_stream_arn(ARN)
                    .delivery_stream_status(status)
                    .delivery_stream_type(DeliveryStreamType::DirectPut)
                    .version_id("7")
                    .destinations(
                        DestinationDescription::builder()
                            .destination_id("destinationId-000000000001")
                            .extended_s3_destination_description(destination(prefix))
                            .build()
                            .unwrap(),
                    )
                    .set_delivery_stream_encryption_configuration(sse)
                    .has_more_destinations(false)
                    .build()
                    .unwrap(),
            )
            .build()
    }

    fn active() -> DescribeDeliveryStreamOutput {
        description(
            DeliveryStreamStatus::Active,
            PREFIX,
            Some(DeliveryStreamEncryptionStatus::Enabled),
        )
    }

    fn not_found() -> DescribeDeliveryStreamError {
        DescribeDeliveryStreamError::generic(error(
            "ResourceNotFoundException",
            "Firehose payops-pr1-transaction-log under account 123456789012 not found.",
        ))
    }

    fn tagged(tags: TagMap) -> Rule {
        mock!(Client::list_tags_for_delivery_stream)
            .match_requests(|r| r.delivery_stream_name() == Some(NAME))
            .then_output(move || {
                ListTagsForDeliveryStreamOutput::builder()
                    .set_tags(Some(
                        tags.iter()
                            .map(|(k, v)| Tag::builder().key(k).value(v).build().unwrap())
                            .collect(),
                    ))
                    .has_more_tags(false)
                    .build()
                    .unwrap()
            })
    }

    #[test]
    fn only_the_role_propagation_message_is_retried() {
        let api = |code: &str, message: &str| AwsError::Api {
            op: "firehose:CreateDeliveryStream",
            code: Some(code.to_owned()),
            message: message.to_owned(),
        };
        assert!(role_not_yet_assumable(&api(
            "InvalidArgumentException",
            ROLE_NOT_YET
        )));
        // A real mistake in the request is not waited on.
        assert!(!role_not_yet_assumable(&api(
            "InvalidArgumentException",
            "BufferingHints.SizeInMBs must be between 1 and 128"
        )));
        assert!(!role_not_yet_assumable(&api(
            "AccessDeniedException",
            ROLE_NOT_YET
        )));
    }

    #[tokio::test(start_paused = true)]
    async fn creates_a_gzip_transformed_encrypted_stream_once_iam_lets_firehose_assume_the_role() {
        let describe = mock!(Client::describe_delivery_stream)
            .sequence()
            .error(not_found)
            .output(|| description(DeliveryStreamStatus::Creating, PREFIX, None))
            .output(active)
            .build();
        let create = mock!(Client::create_delivery_stream)
            .sequence()
            .error(|| {
                CreateDeliveryStreamError::generic(error("InvalidArgumentException", ROLE_NOT_YET))
            })
            .times(2)
            .output(|| {
                CreateDeliveryStreamOutput::builder()
                    .delivery_stream_arn(ARN)
                    .build()
            })
            .build();
        let cx = cx_with(&[&describe, &create]);
        let applied = testing::ensure(&cx, STEP, DeliveryStream, &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(create.num_calls(), 3);
        // CREATING, then ACTIVE: waited for.
        assert_eq!(describe.num_calls(), 3);
        assert_eq!(applied.record.outputs[ARN_OUTPUT], ARN);
        assert_eq!(applied.record.outputs[NAME_OUTPUT], NAME);
    }

    #[tokio::test]
    async fn the_create_request_carries_every_setting() {
        let describe = mock!(Client::describe_delivery_stream)
            .sequence()
            .error(not_found)
            .output(active)
            .build();
        let create = mock!(Client::create_delivery_stream)
            .match_requests(|r| {
                let d = r.extended_s3_destination_configuration().unwrap();
                let sse = r.delivery_stream_encryption_configuration_input().unwrap();
                let params: Vec<(String, String)> =
                    d.processing_configuration().unwrap().processors()[0]
                        .parameters()
                        .iter()
                        .map(|p| {
                            (
                                p.parameter_name().as_str().to_owned(),
                                p.parameter_value().to_owned(),
                            )
                        })
                        .collect();
                let tags: TagMap = r
                    .tags()
                    .iter()
                    .map(|t| (t.key().to_owned(), t.value().unwrap_or("").to_owned()))
                    .collect();
                r.delivery_stream_name() == Some(NAME)
                    && r.delivery_stream_type() == Some(&DeliveryStreamType::DirectPut)
                    && d.role_arn() == ROLE
                    && d.bucket_arn() == BUCKET
                    && d.prefix() == Some(PREFIX)
                    && d.error_output_prefix() == Some(ERROR_PREFIX)
                    && d.compression_format() == Some(&CompressionFormat::Gzip)
                    && d.encryption_configuration()
                        .and_then(|e| e.kms_encryption_config())
                        .map(|k| k.awskms_key_arn())
                        == Some(S3_KEY)
                    && params.contains(&("LambdaArn".to_owned(), FUNCTION.to_owned()))
                    && d.cloud_watch_logging_options().is_some_and(|l| {
                        l.enabled() == Some(true)
                            && l.log_group_name() == Some(LOG_GROUP)
                            && l.log_stream_name() == Some(LOG_STREAM)
                    })
                    && sse.key_type() == &KeyType::CustomerManagedCmk
                    && sse.key_arn() == Some(EVENTS_KEY)
                    && tags.get("payops:step").map(String::as_str) == Some(STEP)
            })
            .then_output(|| CreateDeliveryStreamOutput::builder().build());
        let cx = cx_with(&[&describe, &create]);
        testing::ensure(&cx, STEP, DeliveryStream, &inputs())
            .await
            .unwrap();
        assert_eq!(create.num_calls(), 1);
    }

    #[tokio::test]
    async fn another_invalid_argument_fails_at_once() {
        let describe = mock!(Client::describe_delivery_stream).then_error(not_found);
        let create = mock!(Client::create_delivery_stream).then_error(|| {
            CreateDeliveryStreamError::generic(error(
                "InvalidArgumentException",
                "Bucket arn:aws:s3:::nope does not exist",
            ))
        });
        let cx = cx_with(&[&describe, &create]);
        let err = testing::ensure(&cx, STEP, DeliveryStream, &inputs())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
        assert_eq!(create.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_stream_in_sync_is_adopted_with_two_reads_and_no_change() {
        let describe = mock!(Client::describe_delivery_stream).then_output(active);
        let tags = tagged(testing::our_tags(STEP));
        let cx = cx_with(&[&describe, &tags]);
        let applied = testing::ensure(&cx, STEP, DeliveryStream, &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Unchanged, "{:?}", applied.notes);
        assert_eq!(describe.num_calls() + tags.num_calls(), 2);
    }

    #[tokio::test]
    async fn a_stream_tagged_for_someone_else_is_refused() {
        let describe = mock!(Client::describe_delivery_stream).then_output(active);
        let tags = tagged(TagMap::from([("team".to_owned(), "data".to_owned())]));
        let cx = cx_with(&[&describe, &tags]);
        let err = testing::ensure(&cx, STEP, DeliveryStream, &inputs())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("not tagged as this env's"), "{err}");
    }

    #[tokio::test]
    async fn drift_is_repaired_with_the_current_version_id_and_encryption_restarted() {
        // Someone changed the prefix and turned the stream's SSE off.
        let drifted = || {
            description(
                DeliveryStreamStatus::Active,
                "raw/",
                Some(DeliveryStreamEncryptionStatus::Disabled),
            )
        };
        let describe = mock!(Client::describe_delivery_stream).then_output(drifted);
        let tags = tagged(testing::our_tags(STEP));
        let cx = cx_with(&[&describe, &tags]);
        let observed = testing::observe(&cx, STEP, DeliveryStream, &inputs())
            .await
            .unwrap();
        let Observation::Present { drift, .. } = observed else {
            panic!("expected present, got {observed:?}");
        };
        assert_eq!(
            drift,
            [
                "set Prefix, ErrorOutputPrefix",
                "encrypt the stream with the env's events key"
            ]
        );

        // The first UpdateDestination meets a concurrent change: re-read
        // the version id, then it goes through.
        let describe = mock!(Client::describe_delivery_stream)
            .sequence()
            .output(drifted)
            .output(drifted)
            .build();
        let update = mock!(Client::update_destination)
            .sequence()
            .error(|| {
                UpdateDestinationError::generic(error(
                    "ConcurrentModificationException",
                    "Cannot update firehose: payops-pr1-transaction-log since the current \
                     version id: 8 and specified version id: 7 do not match",
                ))
            })
            .output(|| UpdateDestinationOutput::builder().build())
            .build();
        let sse = mock!(Client::start_delivery_stream_encryption)
            .match_requests(|r| {
                r.delivery_stream_encryption_configuration_input()
                    .is_some_and(|i| {
                        i.key_type() == &KeyType::CustomerManagedCmk
                            && i.key_arn() == Some(EVENTS_KEY)
                    })
            })
            .then_output(|| StartDeliveryStreamEncryptionOutput::builder().build());
        let cx = cx_with(&[&describe, &tags, &update, &sse]);
        let applied = testing::ensure(&cx, STEP, DeliveryStream, &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Updated);
        assert_eq!(update.num_calls(), 2);
        assert_eq!(sse.num_calls(), 1);
    }

    #[tokio::test]
    async fn error_logging_turned_off_out_of_band_is_drift_and_turned_back_on() {
        let unlogged = || {
            let mut out = description(
                DeliveryStreamStatus::Active,
                PREFIX,
                Some(DeliveryStreamEncryptionStatus::Enabled),
            );
            let d = out.delivery_stream_description.as_mut().unwrap();
            let dest = d.destinations[0]
                .extended_s3_destination_description
                .as_mut()
                .unwrap();
            dest.cloud_watch_logging_options = Some(
                CloudWatchLoggingOptions::builder()
                    .enabled(false)
                    .log_group_name(LOG_GROUP)
                    .log_stream_name(LOG_STREAM)
                    .build(),
            );
            out
        };
        let describe = mock!(Client::describe_delivery_stream).then_output(unlogged);
        let tags = tagged(testing::our_tags(STEP));
        let cx = cx_with(&[&describe, &tags]);
        let observed = testing::observe(&cx, STEP, DeliveryStream, &inputs())
            .await
            .unwrap();
        let Observation::Present { drift, .. } = observed else {
            panic!("expected present, got {observed:?}");
        };
        assert_eq!(drift, ["set CloudWatchLoggingOptions"]);
        let update = mock!(Client::update_destination)
            .match_requests(|r| {
                r.current_delivery_stream_version_id() == Some("7")
                    && r.extended_s3_destination_update()
                        .and_then(|u| u.cloud_watch_logging_options())
                        .is_some_and(|l| {
                            l.enabled() == Some(true)
                                && l.log_group_name() == Some(LOG_GROUP)
                                && l.log_stream_name() == Some(LOG_STREAM)
                        })
            })
            .then_output(|| UpdateDestinationOutput::builder().build());
        let cx = cx_with(&[&describe, &tags, &update]);
        let applied = testing::ensure(&cx, STEP, DeliveryStream, &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Updated);
        assert_eq!(update.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_stream_that_failed_to_create_says_why_and_how_to_recover() {
        let failed = || {
            let mut out = description(DeliveryStreamStatus::CreatingFailed, PREFIX, None);
            let d = out.delivery_stream_description.take().unwrap();
            out.delivery_stream_description = Some(
                DeliveryStreamDescription::builder()
                    .delivery_stream_name(d.delivery_stream_name())
                    .delivery_stream_arn(d.delivery_stream_arn())
                    .delivery_stream_status(DeliveryStreamStatus::CreatingFailed)
                    .delivery_stream_type(DeliveryStreamType::DirectPut)
                    .version_id("1")
                    .set_destinations(Some(d.destinations().to_vec()))
                    .has_more_destinations(false)
                    .failure_description(
                        FailureDescription::builder()
                            .r#type(DeliveryStreamFailureType::InvalidKmsKey)
                            .details("The key is disabled")
                            .build()
                            .unwrap(),
                    )
                    .build()
                    .unwrap(),
            );
            out
        };
        let describe = mock!(Client::describe_delivery_stream).then_output(failed);
        let tags = tagged(testing::our_tags(STEP));
        let cx = cx_with(&[&describe, &tags]);
        let err = testing::ensure(&cx, STEP, DeliveryStream, &inputs())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("INVALID_KMS_KEY: The key is disabled"),
            "{err}"
        );
        assert!(err.contains("payops down"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn destroy_waits_until_the_stream_is_gone() {
        let deleting = || {
            description(
                DeliveryStreamStatus::Deleting,
                PREFIX,
                Some(DeliveryStreamEncryptionStatus::Enabled),
            )
        };
        let describe = mock!(Client::describe_delivery_stream)
            .sequence()
            .output(active)
            .output(deleting)
            .output(deleting)
            .error(not_found)
            .build();
        let tags = tagged(testing::our_tags(STEP));
        let delete = mock!(Client::delete_delivery_stream)
            .match_requests(|r| r.delivery_stream_name() == Some(NAME))
            .then_output(|| DeleteDeliveryStreamOutput::builder().build());
        let cx = cx_with(&[&describe, &tags, &delete]);
        let removed = testing::destroy(&cx, STEP, DeliveryStream).await.unwrap();
        assert!(matches!(removed, Removed::Deleted { .. }), "{removed:?}");
        assert_eq!(delete.num_calls(), 1);
        // Requested is not done: read until Firehose no longer knows it.
        assert_eq!(describe.num_calls(), 4);
    }

    #[tokio::test]
    async fn destroy_of_a_missing_stream_is_success() {
        let describe = mock!(Client::describe_delivery_stream).then_error(not_found);
        let cx = cx_with(&[&describe]);
        let removed = testing::destroy(&cx, STEP, DeliveryStream).await.unwrap();
        assert!(matches!(removed, Removed::AlreadyAbsent), "{removed:?}");
    }

    #[test]
    fn failed_records_go_under_an_error_prefix_by_kind() {
        // A prefix with expressions needs an error prefix, which names the
        // kind of failure (processing-failed, ...).
        assert!(PREFIX.contains("!{timestamp:"));
        assert!(ERROR_PREFIX.starts_with("errors/"));
        assert!(ERROR_PREFIX.contains("!{firehose:error-output-type}"));
        for p in [PREFIX, ERROR_PREFIX] {
            assert!(
                WRITTEN_PREFIXES.iter().any(|w| p.starts_with(w)),
                "{p} is outside what the role may write"
            );
        }
    }
}
