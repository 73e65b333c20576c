//! The env's customer-managed KMS keys, one per purpose (database, DynamoDB,
//! S3, logs, events, parameters, ebs), each symmetric, rotating yearly, reachable
//! by a stable alias.
//!
//! The parameters key's policy names no service: Parameter Store calls KMS
//! with its caller's permissions (Encrypt on put, Decrypt on read), so the
//! grants are the callers' IAM policies, through `ssm` only and for one
//! parameter's ARN as encryption context (KMS developer guide,
//! services-parameter-store).
//!
//! Aliases cannot carry tags, so an alias is trusted only through the key it
//! names: an alias with our name that points at a key not tagged as this env's
//! is someone else's, and "alias already exists" is never taken as success
//! without looking at its key [pulumi-aws-native#1138].
//!
//! Keys cannot be deleted, only scheduled for deletion; `down` deletes the
//! alias first so that a re-created env can take the name again
//! [aws-cdk#4336], and a key pending deletion counts as gone.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_kms::types::{KeySpec, KeyState, KeyUsageType};
use aws_sdk_resourcegroupstagging::types::TagFilter;
use serde_json::{Value, json};

use crate::aws::{AwsError, Budget, OpResult, absent_on, policy, required, retry_on_codes};
use crate::engine::{Record, StepCx};
use crate::naming::NameKind;
use crate::tags::{self, TagMap};

use crate::resources::context::Context;
use crate::resources::resource::{Resource, keep_the_one_in_use};
use crate::resources::sdk::kms::key_id_of;
use crate::resources::sdk::{kms, rds};
use crate::tags::describe_tag_fix;

/// The shortest window AWS allows: the key stays recoverable for a week.
const PENDING_WINDOW_DAYS: i32 = 7;

/// KMS is eventually consistent: a key just created may be unknown to the
/// next call for a few seconds.
const NEW_KEY_VISIBILITY: Budget = Budget {
    total: Duration::from_secs(60),
    first_delay: Duration::from_secs(1),
    max_delay: Duration::from_secs(10),
};

/// IAM is eventually consistent: the Auto Scaling service-linked role the
/// EBS key's policy names may be unknown to KMS for a while after it is
/// created, and KMS refuses a policy naming a principal it cannot resolve
/// (MalformedPolicyDocumentException "... invalid principals").
const NEW_PRINCIPAL_VISIBILITY: Budget = Budget {
    total: Duration::from_secs(120),
    first_delay: Duration::from_secs(2),
    max_delay: Duration::from_secs(15),
};

/// The step whose role the EBS key's policy names (it must exist first).
pub const AUTOSCALING_SLR_STEP: &str = "service-linked-role:autoscaling";

pub struct KmsKey {
    purpose: &'static str,
}

impl KmsKey {
    /// A key for one of `naming::KEY_PURPOSES`; its step id is `kms-key:<purpose>`.
    pub fn new(purpose: &'static str) -> Self {
        debug_assert!(
            crate::naming::KEY_PURPOSES.contains(&purpose),
            "unknown key purpose {purpose}"
        );
        Self { purpose }
    }

    fn alias(&self, cx: &Context) -> Result<String, AwsError> {
        let alias = cx.names.kms_alias(self.purpose);
        NameKind::KmsAlias
            .check(&alias)
            .map_err(AwsError::Conflict)?;
        Ok(alias)
    }

    fn description(&self, cx: &Context) -> String {
        format!("payops {}: {} encryption key", cx.env(), self.purpose)
    }

    /// `Database`, `DynamoDb`, `S3`, `Logs`: the prefix of the step's outputs.
    fn output_prefix(&self) -> String {
        match self.purpose {
            "database" => "Database".into(),
            "dynamodb" => "DynamoDb".into(),
            "s3" => "S3".into(),
            "logs" => "Logs".into(),
            "events" => "Events".into(),
            "parameters" => "Parameters".into(),
            other => {
                let mut chars = other.chars();
                chars
                    .next()
                    .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                    .unwrap_or_default()
            }
        }
    }
}

/// CloudWatch Logs is a regional principal (and `.amazonaws.com.cn` in China).
fn logs_principal(cx: &Context) -> String {
    let suffix = if cx.partition() == "aws-cn" {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("logs.{}.{suffix}", cx.region)
}

/// The account's EC2 Auto Scaling service-linked role (IAM is global).
pub fn autoscaling_slr_arn(cx: &Context) -> String {
    format!(
        "arn:{}:iam::{}:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling",
        cx.partition(),
        cx.account_id
    )
}

/// Runs `op` (a call that sends the key policy); for the EBS key, retries it
/// while KMS cannot yet resolve the just-created service-linked role.
async fn while_principal_propagates<T, F, Fut>(
    step: &StepCx<'_>,
    purpose: &str,
    what: &str,
    mut op: F,
) -> Result<T, AwsError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, AwsError>>,
{
    if purpose != "ebs" {
        return op().await;
    }
    let progress = |m: String| step.progress(m);
    retry_on_codes(
        what,
        &["MalformedPolicyDocumentException"],
        NEW_PRINCIPAL_VISIBILITY,
        &progress,
        op,
    )
    .await
}

/// The key policy of the `purpose` key. In a key policy `"Resource": "*"`
/// means "this key": AWS requires exactly that there.
pub fn key_policy(cx: &Context, purpose: &str) -> Value {
    let mut statements = vec![json!({
        // Without it no IAM policy can grant access to the key and the account
        // could lose control of it for good; KMS refuses policies that lock
        // the caller out.
        "Sid": "AccountAdministersTheKey",
        "Effect": "Allow",
        "Principal": { "AWS": cx.account_root_arn() },
        "Action": "kms:*",
        "Resource": "*"
    })];
    if purpose == "logs" {
        statements.push(json!({
            // Only for this env's log groups: CloudWatch Logs passes the log
            // group's ARN as encryption context.
            "Sid": "CloudWatchLogsEncryptsThisEnvsLogGroups",
            "Effect": "Allow",
            "Principal": { "Service": logs_principal(cx) },
            "Action": [
                "kms:Encrypt*",
                "kms:Decrypt*",
                "kms:ReEncrypt*",
                "kms:GenerateDataKey*",
                "kms:Describe*"
            ],
            "Resource": "*",
            "Condition": {
                "ArnLike": {
                    "kms:EncryptionContext:aws:logs:arn": [
                        cx.arn("logs", &format!("log-group:{}*", cx.names.log_group(""))),
                        // RDS names the group of the cluster's exported log.
                        cx.arn("logs", &format!("log-group:{}", cx.names.db_log_group())),
                    ]
                }
            }
        }));
        statements.push(json!({
            // Alarms publish to encrypted SNS topics: CloudWatch and SNS need
            // a data key, and only on behalf of this account.
            "Sid": "AlarmsPublishToEncryptedTopics",
            "Effect": "Allow",
            "Principal": { "Service": ["sns.amazonaws.com", "cloudwatch.amazonaws.com"] },
            "Action": ["kms:GenerateDataKey*", "kms:Decrypt"],
            "Resource": "*",
            "Condition": { "StringEquals": { "aws:SourceAccount": cx.account_id } }
        }));
    }
    if purpose == "s3" {
        statements.push(json!({
            // AWS WAF's logs reach the env's SSE-KMS log bucket through the
            // log delivery service, which needs a data key of the bucket's
            // key, on behalf of this account's web ACLs only (CloudWatch
            // Logs user guide, "Logs sent to Amazon S3", SSE-KMS).
            "Sid": "LogDeliveryWritesWafLogs",
            "Effect": "Allow",
            "Principal": { "Service": "delivery.logs.amazonaws.com" },
            "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"],
            "Resource": "*",
            "Condition": {
                "StringEquals": { "aws:SourceAccount": cx.account_id },
                "ArnLike": { "aws:SourceArn": cx.arn("logs", "*") }
            }
        }));
    }
    if purpose == "logs" {
        statements.push(json!({
            // EventBridge rules (payment failed, database failover) publish
            // to the env's encrypted alarm topics: the publisher of an
            // SSE-KMS topic needs a data key of the topic's key, and
            // EventBridge is a service principal, so only the key policy can
            // grant it; without it the only symptom is FailedInvocations
            // (SNS developer guide, sns-key-management; cdk#10996).
            "Sid": "EventBridgePublishesToEncryptedTopics",
            "Effect": "Allow",
            "Principal": { "Service": "events.amazonaws.com" },
            "Action": ["kms:GenerateDataKey*", "kms:Decrypt"],
            "Resource": "*",
            "Condition": { "StringEquals": { "aws:SourceAccount": cx.account_id } }
        }));
    }
    if purpose == "ebs" {
        // The batch group's volumes are encrypted with this key, and EC2 Auto
        // Scaling launches the instances as its service-linked role: without
        // these two statements every launch fails (Client.InternalError)
        // (EC2 Auto Scaling user guide, key-policy-requirements-EBS-encryption).
        let slr = autoscaling_slr_arn(cx);
        statements.push(json!({
            "Sid": "AutoScalingUsesTheKey",
            "Effect": "Allow",
            "Principal": { "AWS": slr },
            "Action": [
                "kms:Encrypt",
                "kms:Decrypt",
                "kms:ReEncrypt*",
                "kms:GenerateDataKey*",
                "kms:DescribeKey"
            ],
            "Resource": "*"
        }));
        statements.push(json!({
            // The grant EC2 makes for each attached volume, only for AWS
            // resources.
            "Sid": "AutoScalingAttachesPersistentResources",
            "Effect": "Allow",
            "Principal": { "AWS": slr },
            "Action": ["kms:CreateGrant"],
            "Resource": "*",
            "Condition": { "Bool": { "kms:GrantIsForAWSResource": true } }
        }));
    }
    if purpose == "events" {
        let bus = cx.event_bus_arn();
        statements.push(json!({
            // The env's custom bus is encrypted with this key: EventBridge
            // generates data keys for its events, patterns and targets and
            // decrypts them to match, always with the bus's ARN as
            // encryption context, so the grant is for that bus only
            // (EventBridge user guide, eb-encryption-key-policy).
            "Sid": "EventBridgeEncryptsTheEnvsBus",
            "Effect": "Allow",
            "Principal": { "Service": "events.amazonaws.com" },
            "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
            "Resource": "*",
            "Condition": { "StringEquals": {
                "aws:SourceArn": bus,
                "kms:EncryptionContext:aws:events:event-bus:arn": bus
            } }
        }));
        statements.push(json!({
            // EventBridge checks that the bus key is symmetric. DescribeKey
            // carries no encryption context, so it is scoped to the account.
            "Sid": "EventBridgeDescribesTheKey",
            "Effect": "Allow",
            "Principal": { "Service": "events.amazonaws.com" },
            "Action": "kms:DescribeKey",
            "Resource": "*",
            "Condition": { "StringEquals": { "aws:SourceAccount": cx.account_id } }
        }));
        statements.push(json!({
            // Rule targets and dead-letter queues are SSE-KMS queues of this
            // key: SQS asks KMS for a data key on behalf of the producer,
            // EventBridge, with the queue's ARN as encryption context; an
            // AWS managed key (alias/aws/sqs) could never allow this, and the
            // only symptom would be FailedInvocations (SQS developer guide,
            // sqs-key-management).
            "Sid": "EventBridgeSendsToThisEnvsQueues",
            "Effect": "Allow",
            "Principal": { "Service": "events.amazonaws.com" },
            "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
            "Resource": "*",
            "Condition": {
                "StringEquals": { "aws:SourceAccount": cx.account_id },
                "ArnLike": {
                    "kms:EncryptionContext:aws:sqs:arn": cx.arn("sqs", &cx.names.queue("*"))
                }
            }
        }));
    }
    json!({ "Version": "2012-10-17", "Statement": statements })
}

#[derive(Clone)]
struct KeyInfo {
    id: String,
    arn: String,
    state: Option<KeyState>,
    description: String,
    spec: Option<KeySpec>,
    usage: Option<KeyUsageType>,
    tags: TagMap,
}

impl KeyInfo {
    /// Keys pending deletion or disabled are on their way out: never adopted.
    fn enabled(&self) -> bool {
        self.state == Some(KeyState::Enabled)
    }

    /// A key `down` kept for a final snapshot belongs to that snapshot now:
    /// a new env of the same name gets a key of its own.
    fn usable_for(&self, step: &str) -> bool {
        self.enabled()
            && !tags::is_retained(&self.tags)
            && self.tags.get(tags::STEP).map(String::as_str) == Some(step)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum AliasTarget {
    ThisKey,
    Missing,
    /// Another key of this env (e.g. one pending deletion).
    Other(String),
}

pub struct FoundKey {
    key: KeyInfo,
    alias: String,
    alias_target: AliasTarget,
}

pub enum Fix {
    CreateAlias,
    RepointAlias { from: String },
    Rotation,
    Policy,
    Description,
    Tags(TagMap),
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CreateAlias => f.write_str("create the alias"),
            Self::RepointAlias { from } => {
                write!(f, "point the alias at this key (it named key {from})")
            }
            Self::Rotation => f.write_str("enable automatic key rotation"),
            Self::Policy => f.write_str("restore the key policy"),
            Self::Description => f.write_str("update the description"),
            Self::Tags(t) => f.write_str(&describe_tag_fix(t)),
        }
    }
}

/// The key `key_ref` (id, ARN or alias) names, without its tags; `None` when
/// there is no such key or alias.
async fn describe_key(cx: &Context, key_ref: &str) -> Result<Option<KeyInfo>, AwsError> {
    let described = cx
        .clients
        .kms
        .describe_key()
        .key_id(key_ref)
        .send()
        .await
        .op("kms:DescribeKey");
    let Some(out) = absent_on(described, &["NotFoundException"])? else {
        return Ok(None);
    };
    let md = required(out.key_metadata(), "kms:DescribeKey", "KeyMetadata")?;
    Ok(Some(KeyInfo {
        id: md.key_id().to_owned(),
        arn: required(md.arn(), "kms:DescribeKey", "Arn")?.to_owned(),
        state: md.key_state().cloned(),
        description: md.description().unwrap_or_default().to_owned(),
        spec: md.key_spec().cloned(),
        usage: md.key_usage().cloned(),
        tags: TagMap::new(),
    }))
}

/// The enabled key `key_ref` names, refused if it is not this env's.
async fn owned_enabled_key(cx: &Context, key_ref: &str) -> Result<Option<KeyInfo>, AwsError> {
    let Some(mut key) = describe_key(cx, key_ref).await? else {
        return Ok(None);
    };
    if !key.enabled() {
        return Ok(None);
    }
    key.tags = kms::tags_of(cx, &key.id).await?;
    cx.check_ours(format!("KMS key {}", key.id), &key.tags)?;
    Ok(Some(key))
}

/// The key `alias` points at, whatever its state; an error if that key is not
/// this env's, since the alias then is not ours to use, move or delete.
async fn resolve_alias(cx: &Context, alias: &str) -> Result<Option<KeyInfo>, AwsError> {
    let Some(mut key) = describe_key(cx, alias).await? else {
        return Ok(None);
    };
    key.tags = kms::tags_of(cx, &key.id).await?;
    cx.check_ours(
        format!("KMS alias {alias} (pointing at key {})", key.id),
        &key.tags,
    )?;
    Ok(Some(key))
}

/// ARNs of the keys tagged as this env's `step`, whatever their state.
async fn tagged_keys(cx: &Context, step: &str) -> Result<Vec<String>, AwsError> {
    // The env's listing, when there is one to trust, is this same query.
    if let Some(arns) = cx
        .listed_where(|arn, t| {
            arn.contains(":kms:")
                && arn.contains(":key/")
                && t.get(tags::MANAGED_BY).map(String::as_str) == Some(tags::MANAGER)
                && t.get(tags::STEP).map(String::as_str) == Some(step)
        })
        .await
    {
        return Ok(arns);
    }
    let filter = |k: &str, v: &str| TagFilter::builder().key(k).values(v).build();
    let mut arns = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let out = cx
            .clients
            .tagging
            .get_resources()
            .resource_type_filters("kms:key")
            .tag_filters(filter(tags::MANAGED_BY, tags::MANAGER))
            .tag_filters(filter(tags::ENV, cx.env().as_str()))
            .tag_filters(filter(tags::STEP, step))
            .set_pagination_token(token.take())
            .send()
            .await
            .op("tagging:GetResources")?;
        arns.extend(
            out.resource_tag_mapping_list()
                .iter()
                .filter_map(|m| m.resource_arn().map(str::to_owned)),
        );
        match out.pagination_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_owned()),
            _ => return Ok(arns),
        }
    }
}

/// `arn:aws:kms:<region>:<account>:key/<id>` -> `<id>`.
/// Makes `alias` name `key_id`. An alias that already exists is moved only
/// after its current key proved to be this env's.
async fn point_alias(cx: &Context, alias: &str, key_id: &str) -> Result<(), AwsError> {
    let kms = &cx.clients.kms;
    let created = kms
        .create_alias()
        .alias_name(alias)
        .target_key_id(key_id)
        .send()
        .await
        .op("kms:CreateAlias");
    match created {
        Ok(_) => Ok(()),
        Err(e) if e.is_code(&["AlreadyExistsException"]) => {
            match resolve_alias(cx, alias).await? {
                Some(current) if current.id == key_id => Ok(()),
                Some(_) => kms
                    .update_alias()
                    .alias_name(alias)
                    .target_key_id(key_id)
                    .send()
                    .await
                    .op("kms:UpdateAlias")
                    .map(drop),
                // Deleted in between: the next run creates it.
                None => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// Keeps `key` for the snapshots that need it: under an alias of its own
/// (`alias/payops-retained/<snapshot>`, out of the env's alias namespace so a
/// new env of the same name makes its own key) and tagged `payops:retained`,
/// so that no env adopts it and no sweep removes it. Its env alias is already
/// gone (deleted just before, like any key's).
async fn retain(
    cx: &Context,
    key: &KeyInfo,
    snapshot: &str,
    snapshots: &[String],
    mut notes: Vec<String>,
) -> Result<Vec<String>, AwsError> {
    let alias = retained_alias(snapshot);
    point_alias(cx, &alias, &key.id).await?;
    let why = format!("final snapshot {}", snapshots.join(" "));
    // KMS tag values are at most 256 characters.
    let why: String = why.chars().take(256).collect();
    cx.clients
        .kms
        .tag_resource()
        .key_id(&key.id)
        .set_tags(Some(kms::tags(&TagMap::from([(
            tags::RETAINED.to_owned(),
            why,
        )]))))
        .send()
        .await
        .op("kms:TagResource")?;
    notes.push(format!(
        "kept KMS key {} as {alias}: snapshot {} is encrypted with it and cannot be \
         restored without it (a key costs about $1 a month; docs/runbook.md says how to \
         restore the snapshot and when to schedule the key's deletion)",
        key.id,
        snapshots.join(", ")
    ));
    Ok(notes)
}

/// The alias of a key kept for `snapshot` (an RDS identifier: letters,
/// digits and hyphens, all valid in an alias name).
pub fn retained_alias(snapshot: &str) -> String {
    format!("alias/payops-retained/{snapshot}")
}

async fn while_key_propagates<T, F, Fut>(
    step: &StepCx<'_>,
    what: &str,
    op: F,
) -> Result<T, AwsError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, AwsError>>,
{
    let progress = |m: String| step.progress(m);
    retry_on_codes(
        what,
        &["NotFoundException"],
        NEW_KEY_VISIBILITY,
        &progress,
        op,
    )
    .await
}

#[async_trait]
impl Resource for KmsKey {
    type Found = FoundKey;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "kms:key"
    }

    /// The EBS key only with the batch tier, whose volumes are its only use.
    fn wanted(&self, cx: &Context) -> bool {
        self.purpose != "ebs" || cx.spec.batch.on
    }

    /// CreateAlias meets the alias its lost first attempt made (see the trait).
    fn already_exists(&self) -> &'static [&'static str] {
        &["AlreadyExistsException"]
    }

    async fn find(&self, cx: &Context, step: &StepCx<'_>) -> Result<Vec<FoundKey>, AwsError> {
        let alias = self.alias(cx)?;
        let step_id = step.id().as_str();
        let target = resolve_alias(cx, &alias).await?;
        let mut seen = BTreeSet::new();
        let mut keys = Vec::new();
        if let Some(t) = &target {
            seen.insert(t.id.clone());
            if t.usable_for(step_id) {
                keys.push(t.clone());
            }
        }
        let recorded = step.previous_resource("key").map(str::to_owned);
        let tagged = tagged_keys(cx, step_id).await?;
        for key_ref in recorded.iter().chain(&tagged) {
            if !seen.insert(key_id_of(key_ref).to_owned()) {
                continue;
            }
            if let Some(key) = owned_enabled_key(cx, key_ref).await?
                && key.usable_for(step_id)
            {
                keys.push(key);
            }
        }
        Ok(keys
            .into_iter()
            .map(|key| FoundKey {
                alias_target: match &target {
                    None => AliasTarget::Missing,
                    Some(t) if t.id == key.id => AliasTarget::ThisKey,
                    Some(t) => AliasTarget::Other(t.id.clone()),
                },
                alias: alias.clone(),
                key,
            })
            .collect())
    }

    fn describe(&self, found: &FoundKey) -> String {
        found.key.id.clone()
    }

    fn create_may_duplicate(&self) -> bool {
        true
    }

    /// CreateKey has no idempotency token: a retried create whose first
    /// answer was lost makes a second key tagged for the step. The one the
    /// alias names is the one in use (or, before any alias, the recorded one,
    /// which `find` lists first); an extra was never handed to anything.
    fn keep_of_duplicates(&self, found: &[FoundKey]) -> Option<usize> {
        keep_the_one_in_use(found, |f| f.alias_target == AliasTarget::ThisKey)
    }

    /// Only the extra key is scheduled: the alias is the kept key's.
    async fn delete_duplicate(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        found: FoundKey,
    ) -> Result<Vec<String>, AwsError> {
        let scheduled = cx
            .clients
            .kms
            .schedule_key_deletion()
            .key_id(&found.key.id)
            .pending_window_in_days(PENDING_WINDOW_DAYS)
            .send()
            .await
            .op("kms:ScheduleKeyDeletion");
        absent_on(
            scheduled,
            &["NotFoundException", "KMSInvalidStateException"],
        )?;
        Ok(Vec::new())
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<FoundKey, AwsError> {
        let alias = self.alias(cx)?;
        let tags = cx.tagger.for_create(step.id().as_str());
        let description = self.description(cx);
        let kms = &cx.clients.kms;
        let policy = key_policy(cx, self.purpose).to_string();
        let out = while_principal_propagates(step, self.purpose, "creating the key", || async {
            kms.create_key()
                .description(&description)
                .key_spec(KeySpec::SymmetricDefault)
                .key_usage(KeyUsageType::EncryptDecrypt)
                .policy(&policy)
                .set_tags(Some(kms::tags(&tags)))
                .send()
                .await
                .op("kms:CreateKey")
        })
        .await?;
        let md = required(out.key_metadata(), "kms:CreateKey", "KeyMetadata")?;
        let id = md.key_id().to_owned();
        step.remember("key", &id);
        let arn = required(md.arn(), "kms:CreateKey", "Arn")?.to_owned();
        while_key_propagates(step, &format!("enabling rotation of {id}"), || async {
            kms.enable_key_rotation()
                .key_id(&id)
                .send()
                .await
                .op("kms:EnableKeyRotation")
                .map(drop)
        })
        .await?;
        while_key_propagates(step, &format!("pointing {alias} at {id}"), || {
            point_alias(cx, &alias, &id)
        })
        .await?;
        Ok(FoundKey {
            key: KeyInfo {
                id,
                arn,
                state: Some(KeyState::Enabled),
                description,
                spec: Some(KeySpec::SymmetricDefault),
                usage: Some(KeyUsageType::EncryptDecrypt),
                tags,
            },
            alias,
            alias_target: AliasTarget::ThisKey,
        })
    }

    async fn diff(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: &FoundKey,
    ) -> Result<Vec<Fix>, AwsError> {
        let key = &found.key;
        let wrong_spec = key
            .spec
            .as_ref()
            .is_some_and(|s| *s != KeySpec::SymmetricDefault);
        let wrong_usage = key
            .usage
            .as_ref()
            .is_some_and(|u| *u != KeyUsageType::EncryptDecrypt);
        if wrong_spec || wrong_usage {
            return Err(AwsError::Conflict(format!(
                "KMS key {} is not a symmetric encrypt/decrypt key and a key's spec cannot \
                 change: schedule its deletion (payops down) and run up again",
                key.id
            )));
        }
        let mut fixes = Vec::new();
        match &found.alias_target {
            AliasTarget::ThisKey => {}
            AliasTarget::Missing => fixes.push(Fix::CreateAlias),
            AliasTarget::Other(from) => fixes.push(Fix::RepointAlias { from: from.clone() }),
        }
        let kms = &cx.clients.kms;
        let (rotation, current_policy) = tokio::try_join!(
            async {
                kms.get_key_rotation_status()
                    .key_id(&key.id)
                    .send()
                    .await
                    .op("kms:GetKeyRotationStatus")
            },
            async {
                kms.get_key_policy()
                    .key_id(&key.id)
                    .policy_name("default")
                    .send()
                    .await
                    .op("kms:GetKeyPolicy")
            },
        )?;
        if !rotation.key_rotation_enabled() {
            fixes.push(Fix::Rotation);
        }
        let desired = key_policy(cx, self.purpose).to_string();
        if !policy::same(current_policy.policy().unwrap_or_default(), &desired) {
            fixes.push(Fix::Policy);
        }
        if key.description != self.description(cx) {
            fixes.push(Fix::Description);
        }
        let missing = cx.tagger.missing(step.id().as_str(), &key.tags);
        if !missing.is_empty() {
            fixes.push(Fix::Tags(missing));
        }
        Ok(fixes)
    }

    async fn fix(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: &mut FoundKey,
        fix: Fix,
    ) -> Result<(), AwsError> {
        let kms = &cx.clients.kms;
        let id = found.key.id.clone();
        match fix {
            Fix::CreateAlias => {
                point_alias(cx, &found.alias, &id).await?;
                found.alias_target = AliasTarget::ThisKey;
            }
            // `find` already proved the key it named is this env's.
            Fix::RepointAlias { .. } => {
                kms.update_alias()
                    .alias_name(&found.alias)
                    .target_key_id(&id)
                    .send()
                    .await
                    .op("kms:UpdateAlias")?;
                found.alias_target = AliasTarget::ThisKey;
            }
            Fix::Rotation => {
                kms.enable_key_rotation()
                    .key_id(&id)
                    .send()
                    .await
                    .op("kms:EnableKeyRotation")?;
            }
            Fix::Policy => {
                let policy = key_policy(cx, self.purpose).to_string();
                while_principal_propagates(
                    step,
                    self.purpose,
                    "setting the key policy",
                    || async {
                        kms.put_key_policy()
                            .key_id(&id)
                            .policy_name("default")
                            .policy(&policy)
                            .send()
                            .await
                            .op("kms:PutKeyPolicy")
                    },
                )
                .await?;
            }
            Fix::Description => {
                let description = self.description(cx);
                kms.update_key_description()
                    .key_id(&id)
                    .description(&description)
                    .send()
                    .await
                    .op("kms:UpdateKeyDescription")?;
                found.key.description = description;
            }
            Fix::Tags(tags) => {
                kms.tag_resource()
                    .key_id(&id)
                    .set_tags(Some(kms::tags(&tags)))
                    .send()
                    .await
                    .op("kms:TagResource")?;
                found.key.tags.extend(tags);
            }
        }
        Ok(())
    }

    fn record(&self, _cx: &Context, found: &FoundKey) -> Record {
        let p = self.output_prefix();
        Record::default()
            .resource("key", &found.key.id)
            .resource("alias", &found.alias)
            .output(format!("{p}KmsKeyArn"), &found.key.arn)
            .output(format!("{p}KmsKeyId"), &found.key.id)
            .output(format!("{p}KmsAlias"), &found.alias)
    }

    async fn delete(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        found: FoundKey,
    ) -> Result<Vec<String>, AwsError> {
        let kms = &cx.clients.kms;
        let id = &found.key.id;
        let mut notes = Vec::new();
        // A snapshot kept by `down --final-snapshot` (or taken by hand) is
        // encrypted with the database key, and data under a deleted KMS key
        // is unrecoverable: such a key is kept, never scheduled.
        let needed_by = if self.purpose == "database" {
            rds::snapshots_encrypted_with(cx, &cx.names.db_cluster(), &found.key.arn).await?
        } else {
            Vec::new()
        };
        if found.alias_target != AliasTarget::Missing {
            let deleted = kms
                .delete_alias()
                .alias_name(&found.alias)
                .send()
                .await
                .op("kms:DeleteAlias");
            if absent_on(deleted, &["NotFoundException"])?.is_some() {
                notes.push(format!("deleted alias {}", found.alias));
            }
        }
        if let Some(snapshot) = needed_by.first() {
            return retain(cx, &found.key, snapshot, &needed_by, notes).await;
        }
        let scheduled = kms
            .schedule_key_deletion()
            .key_id(id)
            .pending_window_in_days(PENDING_WINDOW_DAYS)
            .send()
            .await
            .op("kms:ScheduleKeyDeletion");
        match scheduled {
            Ok(_) => notes.push(format!(
                "KMS keys cannot be deleted at once: {id} is scheduled for deletion in \
                 {PENDING_WINDOW_DAYS} days"
            )),
            Err(e) if e.is_code(&["NotFoundException"]) => {}
            // Scheduled by someone else meanwhile: as gone as a key gets.
            Err(e) if e.is_code(&["KMSInvalidStateException"]) => {
                let state = describe_key(cx, id).await?.and_then(|k| k.state);
                if state != Some(KeyState::PendingDeletion) {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
        Ok(notes)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use aws_sdk_kms::Client;
    use aws_sdk_kms::operation::{
        create_alias::{CreateAliasError, CreateAliasOutput},
        create_key::CreateKeyOutput,
        delete_alias::DeleteAliasOutput,
        describe_key::{DescribeKeyError, DescribeKeyOutput},
        enable_key_rotation::{EnableKeyRotationError, EnableKeyRotationOutput},
        get_key_policy::GetKeyPolicyOutput,
        get_key_rotation_status::GetKeyRotationStatusOutput,
        list_resource_tags::ListResourceTagsOutput,
        put_key_policy::PutKeyPolicyOutput,
        schedule_key_deletion::{ScheduleKeyDeletionError, ScheduleKeyDeletionOutput},
        tag_resource::TagResourceOutput,
        update_alias::UpdateAliasOutput,
        update_key_description::UpdateKeyDescriptionOutput,
    };
    use aws_sdk_kms::types::KeyMetadata;
    use aws_sdk_resourcegroupstagging::operation::get_resources::GetResourcesOutput;
    use aws_sdk_resourcegroupstagging::types::ResourceTagMapping;
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    use super::*;
    use crate::engine::{Change, Observation, Removed, Step, StepId};
    use crate::naming::{EnvName, KEY_PURPOSES};
    use crate::resources::resource::Node;
    use crate::resources::testing::{self, ACCOUNT, Events, NOW};
    use crate::tags::Tagger;

    const STEP: &str = "kms-key:logs";
    const ALIAS: &str = "alias/payops/pr1/logs";
    const DESCRIPTION: &str = "payops pr1: logs encryption key";

    fn arn(id: &str) -> String {
        format!("arn:aws:kms:us-east-1:{ACCOUNT}:key/{id}")
    }

    fn metadata(id: &str, state: KeyState) -> KeyMetadata {
        KeyMetadata::builder()
            .key_id(id)
            .arn(arn(id))
            .enabled(state == KeyState::Enabled)
            .key_state(state)
            .description(DESCRIPTION)
            .key_spec(KeySpec::SymmetricDefault)
            .key_usage(KeyUsageType::EncryptDecrypt)
            .build()
            .unwrap()
    }

    fn describe(key_ref: impl Into<String>, id: &'static str, state: KeyState) -> Rule {
        let key_ref = key_ref.into();
        mock!(Client::describe_key)
            .match_requests(move |r| r.key_id() == Some(key_ref.as_str()))
            .then_output(move || {
                DescribeKeyOutput::builder()
                    .key_metadata(metadata(id, state.clone()))
                    .build()
            })
    }

    fn no_alias() -> Rule {
        mock!(Client::describe_key)
            .match_requests(|r| r.key_id() == Some(ALIAS))
            .then_error(|| DescribeKeyError::generic(testing::error_meta("NotFoundException")))
    }

    fn our_tags(step: &str) -> TagMap {
        Tagger::new(EnvName::parse("pr1").unwrap(), "payments", NOW).for_create(step)
    }

    fn tags_of(id: &'static str, tags: TagMap) -> Rule {
        mock!(Client::list_resource_tags)
            .match_requests(move |r| r.key_id() == Some(id))
            .then_output(move || {
                ListResourceTagsOutput::builder()
                    .set_tags(Some(kms::tags(&tags)))
                    .build()
            })
    }

    fn tagged(ids: &'static [&'static str]) -> Rule {
        mock!(aws_sdk_resourcegroupstagging::Client::get_resources)
            .match_requests(|r| {
                r.resource_type_filters() == ["kms:key"]
                    && r.tag_filters()
                        .iter()
                        .any(|f| f.key() == Some(tags::STEP) && f.values() == [STEP])
                    && r.tag_filters()
                        .iter()
                        .any(|f| f.key() == Some(tags::ENV) && f.values() == ["pr1"])
            })
            .then_output(move || {
                GetResourcesOutput::builder()
                    .set_resource_tag_mapping_list(Some(
                        ids.iter()
                            .map(|id| ResourceTagMapping::builder().resource_arn(arn(id)).build())
                            .collect(),
                    ))
                    .build()
            })
    }

    fn rotation(on: bool) -> Rule {
        mock!(Client::get_key_rotation_status).then_output(move || {
            GetKeyRotationStatusOutput::builder()
                .key_rotation_enabled(on)
                .build()
        })
    }

    fn desired_policy() -> String {
        key_policy(&testing::context(testing::clients()), "logs").to_string()
    }

    fn current_policy(policy: String) -> Rule {
        mock!(Client::get_key_policy)
            .match_requests(|r| r.policy_name() == Some("default"))
            .then_output(move || {
                GetKeyPolicyOutput::builder()
                    .policy(policy.clone())
                    .policy_name("default")
                    .build()
            })
    }

    fn context(kms: &[&Rule], tagging: &[&Rule]) -> Context {
        let mut clients = testing::clients();
        clients.kms = mock_client!(aws_sdk_kms, RuleMode::MatchAny, kms);
        let listing = testing::no_tagging_listing();
        let tagging: Vec<&Rule> = std::iter::once(&listing)
            .chain(tagging.iter().copied())
            .collect();
        clients.tagging = mock_client!(aws_sdk_resourcegroupstagging, RuleMode::MatchAny, tagging);
        testing::context(clients)
    }

    #[tokio::test]
    async fn creates_a_rotating_key_with_its_policy_tags_and_alias() {
        let create = mock!(Client::create_key)
            .match_requests(|r| {
                let policy: Value = serde_json::from_str(r.policy().unwrap()).unwrap();
                r.description() == Some(DESCRIPTION)
                    && r.key_spec() == Some(&KeySpec::SymmetricDefault)
                    && r.key_usage() == Some(&KeyUsageType::EncryptDecrypt)
                    && policy["Statement"][1]["Principal"]["Service"]
                        == "logs.us-east-1.amazonaws.com"
                    && r.tags()
                        .iter()
                        .any(|t| t.tag_key() == tags::STEP && t.tag_value() == STEP)
            })
            .then_output(|| {
                CreateKeyOutput::builder()
                    .key_metadata(metadata("k-new", KeyState::Enabled))
                    .build()
            });
        let enable = mock!(Client::enable_key_rotation)
            .match_requests(|r| r.key_id() == Some("k-new"))
            .then_output(|| EnableKeyRotationOutput::builder().build());
        let alias = mock!(Client::create_alias)
            .match_requests(|r| r.alias_name() == Some(ALIAS) && r.target_key_id() == Some("k-new"))
            .then_output(|| CreateAliasOutput::builder().build());
        let cx = context(
            &[
                &no_alias(),
                &create,
                &enable,
                &alias,
                &rotation(true),
                &current_policy(desired_policy()),
            ],
            &[&tagged(&[])],
        );
        let events = Events::default();
        let id = StepId::from(STEP);
        let step = testing::step_cx(&id, BTreeMap::new(), &events);
        let applied = Node::new(STEP, KmsKey::new("logs"), vec![])
            .ensure(&cx, &step)
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(applied.record.outputs["LogsKmsKeyArn"], arn("k-new"));
        assert_eq!(applied.record.outputs["LogsKmsKeyId"], "k-new");
        assert_eq!(applied.record.outputs["LogsKmsAlias"], ALIAS);
        assert_eq!(
            (create.num_calls(), enable.num_calls(), alias.num_calls()),
            (1, 1, 1)
        );
        assert_eq!(
            *events.remembered.lock().unwrap(),
            [("key".to_owned(), "k-new".to_owned())]
        );
    }

    #[tokio::test]
    async fn an_owned_key_in_sync_is_adopted_without_mutating_calls() {
        let by_alias = describe(ALIAS, "k-1", KeyState::Enabled);
        let cx = context(
            &[
                &by_alias,
                &tags_of("k-1", our_tags(STEP)),
                &rotation(true),
                &current_policy(desired_policy()),
            ],
            // The tagging API lists the same key: not described twice.
            &[&tagged(&["k-1"])],
        );
        let applied = testing::ensure(&cx, STEP, KmsKey::new("logs"), &[])
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Unchanged);
        assert!(applied.notes.is_empty(), "{:?}", applied.notes);
        assert_eq!(by_alias.num_calls(), 1);
    }

    #[tokio::test]
    async fn an_alias_pointing_at_a_foreign_key_is_refused_not_reused() {
        let foreign = TagMap::from([("team".into(), "other".into())]);
        let cx = context(
            &[
                &describe(ALIAS, "k-foreign", KeyState::Enabled),
                &tags_of("k-foreign", foreign),
            ],
            &[&tagged(&[])],
        );
        let err = testing::ensure(&cx, STEP, KmsKey::new("logs"), &[])
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("KMS alias alias/payops/pr1/logs (pointing at key k-foreign) exists but is not tagged"),
            "{err}"
        );
        let err = testing::destroy(&cx, STEP, KmsKey::new("logs"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not tagged"), "{err}");
    }

    #[tokio::test]
    async fn alias_already_exists_is_not_success_until_its_key_is_checked() {
        // The alias appears between find and create, naming someone else's key.
        let alias_lookup = mock!(Client::describe_key)
            .match_requests(|r| r.key_id() == Some(ALIAS))
            .sequence()
            .error(|| DescribeKeyError::generic(testing::error_meta("NotFoundException")))
            .output(|| {
                DescribeKeyOutput::builder()
                    .key_metadata(metadata("k-foreign", KeyState::Enabled))
                    .build()
            })
            .build();
        let create = mock!(Client::create_key).then_output(|| {
            CreateKeyOutput::builder()
                .key_metadata(metadata("k-new", KeyState::Enabled))
                .build()
        });
        let enable = mock!(Client::enable_key_rotation)
            .then_output(|| EnableKeyRotationOutput::builder().build());
        let alias = mock!(Client::create_alias).then_error(|| {
            CreateAliasError::generic(testing::error_meta("AlreadyExistsException"))
        });
        let cx = context(
            &[
                &alias_lookup,
                &create,
                &enable,
                &alias,
                &tags_of("k-foreign", TagMap::new()),
            ],
            &[&tagged(&[])],
        );
        let err = testing::ensure(&cx, STEP, KmsKey::new("logs"), &[])
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("pointing at key k-foreign"), "{err}");
        assert!(err.contains("not tagged"), "{err}");
    }

    #[tokio::test]
    async fn keys_pending_deletion_or_disabled_are_not_adopted() {
        let cx = context(
            &[
                &no_alias(),
                &describe(arn("k-leaving"), "k-leaving", KeyState::PendingDeletion),
                &describe("k-off", "k-off", KeyState::Disabled),
            ],
            &[&tagged(&["k-leaving"])],
        );
        // The state file remembers the disabled one.
        let events = Events::default();
        let id = StepId::from(STEP);
        let previous = Record::default().resource("key", "k-off");
        let step = StepCx::standalone(&id, BTreeMap::new(), Some(previous), &events);
        let observation = Node::new(STEP, KmsKey::new("logs"), vec![])
            .observe(&cx, &step)
            .await
            .unwrap();
        assert_eq!(observation, Observation::Missing);
    }

    #[tokio::test]
    async fn a_recreated_env_takes_back_the_alias_from_its_leaving_key() {
        // `down` was interrupted after scheduling the key deletion but the alias
        // survived (or was re-pointed by hand): the new key takes it over.
        let update = mock!(Client::update_alias)
            .match_requests(|r| r.alias_name() == Some(ALIAS) && r.target_key_id() == Some("k-new"))
            .then_output(|| UpdateAliasOutput::builder().build());
        let create = mock!(Client::create_key).then_output(|| {
            CreateKeyOutput::builder()
                .key_metadata(metadata("k-new", KeyState::Enabled))
                .build()
        });
        let cx = context(
            &[
                &describe(ALIAS, "k-old", KeyState::PendingDeletion),
                &tags_of("k-old", our_tags(STEP)),
                &create,
                &mock!(Client::enable_key_rotation)
                    .then_output(|| EnableKeyRotationOutput::builder().build()),
                &mock!(Client::create_alias).then_error(|| {
                    CreateAliasError::generic(testing::error_meta("AlreadyExistsException"))
                }),
                &update,
                &rotation(true),
                &current_policy(desired_policy()),
            ],
            &[&tagged(&["k-old"])],
        );
        let applied = testing::ensure(&cx, STEP, KmsKey::new("logs"), &[])
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(applied.record.outputs["LogsKmsKeyId"], "k-new");
        assert_eq!(update.num_calls(), 1);
    }

    fn drifted() -> Vec<Rule> {
        let mut tags = our_tags(STEP);
        tags.remove("CostCenter");
        let mut md = metadata("k-1", KeyState::Enabled);
        md.description = Some("hand edited".into());
        vec![
            no_alias(),
            mock!(Client::describe_key)
                .match_requests(|r| r.key_id() == Some(arn("k-1").as_str()))
                .then_output(move || {
                    DescribeKeyOutput::builder()
                        .key_metadata(md.clone())
                        .build()
                }),
            tags_of("k-1", tags),
            rotation(false),
            // Someone dropped the CloudWatch Logs statement.
            current_policy(
                key_policy(&testing::context(testing::clients()), "database").to_string(),
            ),
        ]
    }

    #[tokio::test]
    async fn observe_reports_drift_without_repairing_it() {
        let rules = drifted();
        let refs: Vec<&Rule> = rules.iter().collect();
        let cx = context(&refs, &[&tagged(&["k-1"])]);
        let Observation::Present { drift, .. } =
            testing::observe(&cx, STEP, KmsKey::new("logs"), &[])
                .await
                .unwrap()
        else {
            panic!("expected the key to be present");
        };
        assert_eq!(
            drift,
            [
                "create the alias",
                "enable automatic key rotation",
                "restore the key policy",
                "update the description",
                "add tags CostCenter",
            ]
        );
    }

    #[tokio::test]
    async fn ensure_repairs_alias_rotation_policy_description_and_tags() {
        let alias = mock!(Client::create_alias)
            .match_requests(|r| r.alias_name() == Some(ALIAS) && r.target_key_id() == Some("k-1"))
            .then_output(|| CreateAliasOutput::builder().build());
        let enable = mock!(Client::enable_key_rotation)
            .match_requests(|r| r.key_id() == Some("k-1"))
            .then_output(|| EnableKeyRotationOutput::builder().build());
        let policy = mock!(Client::put_key_policy)
            .match_requests(|r| {
                r.policy_name() == Some("default")
                    && policy::same(r.policy().unwrap(), &desired_policy())
            })
            .then_output(|| PutKeyPolicyOutput::builder().build());
        let description = mock!(Client::update_key_description)
            .match_requests(|r| r.description() == Some(DESCRIPTION))
            .then_output(|| UpdateKeyDescriptionOutput::builder().build());
        let tag = mock!(Client::tag_resource)
            .match_requests(|r| r.tags().len() == 1 && r.tags()[0].tag_key() == "CostCenter")
            .then_output(|| TagResourceOutput::builder().build());
        let mut rules = drifted();
        rules.extend([
            alias.clone(),
            enable.clone(),
            policy.clone(),
            description.clone(),
            tag.clone(),
        ]);
        let refs: Vec<&Rule> = rules.iter().collect();
        let cx = context(&refs, &[&tagged(&["k-1"])]);
        let applied = testing::ensure(&cx, STEP, KmsKey::new("logs"), &[])
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Updated);
        for rule in [&alias, &enable, &policy, &description, &tag] {
            assert_eq!(rule.num_calls(), 1);
        }
    }

    #[tokio::test]
    async fn destroy_deletes_the_alias_then_schedules_the_key_for_deletion() {
        let order = Arc::new(Mutex::new(Vec::new()));
        let (o1, o2) = (order.clone(), order.clone());
        let delete_alias = mock!(Client::delete_alias)
            .match_requests(move |r| {
                o1.lock().unwrap().push("DeleteAlias");
                r.alias_name() == Some(ALIAS)
            })
            .then_output(|| DeleteAliasOutput::builder().build());
        let schedule = mock!(Client::schedule_key_deletion)
            .match_requests(move |r| {
                o2.lock().unwrap().push("ScheduleKeyDeletion");
                r.key_id() == Some("k-1") && r.pending_window_in_days() == Some(7)
            })
            .then_output(|| ScheduleKeyDeletionOutput::builder().key_id("k-1").build());
        let cx = context(
            &[
                &describe(ALIAS, "k-1", KeyState::Enabled),
                &tags_of("k-1", our_tags(STEP)),
                &delete_alias,
                &schedule,
            ],
            &[&tagged(&["k-1"])],
        );
        let removed = testing::destroy(&cx, STEP, KmsKey::new("logs"))
            .await
            .unwrap();
        let Removed::Deleted { notes } = removed else {
            panic!("expected a deletion");
        };
        assert!(
            notes
                .iter()
                .any(|n| n.contains("scheduled for deletion in 7 days")),
            "{notes:?}"
        );
        assert_eq!(
            *order.lock().unwrap(),
            ["DeleteAlias", "ScheduleKeyDeletion"]
        );
    }

    /// The database key with a kept final snapshot encrypted under it.
    fn database_key_with_snapshots(snapshots: &'static [&'static str]) -> (Context, [Rule; 4]) {
        const DB_ALIAS: &str = "alias/payops/pr1/database";
        let delete_alias = mock!(Client::delete_alias)
            .match_requests(|r| r.alias_name() == Some(DB_ALIAS))
            .then_output(|| DeleteAliasOutput::builder().build());
        let create_alias = mock!(Client::create_alias)
            .match_requests(|r| {
                r.alias_name() == Some("alias/payops-retained/payops-pr1-aurora-final-20261206")
                    && r.target_key_id() == Some("k-db")
            })
            .then_output(|| CreateAliasOutput::builder().build());
        let retain = mock!(Client::tag_resource)
            .match_requests(|r| {
                r.key_id() == Some("k-db")
                    && r.tags().iter().any(|t| {
                        t.tag_key() == tags::RETAINED
                            && t.tag_value() == "final snapshot payops-pr1-aurora-final-20261206"
                    })
            })
            .then_output(|| TagResourceOutput::builder().build());
        let schedule = mock!(Client::schedule_key_deletion)
            .then_output(|| ScheduleKeyDeletionOutput::builder().key_id("k-db").build());
        let snapshots_of_the_cluster = mock!(aws_sdk_rds::Client::describe_db_cluster_snapshots)
            .match_requests(|r| {
                r.db_cluster_identifier() == Some("payops-pr1-aurora")
                    && r.snapshot_type() == Some("manual")
            })
            .then_output(move || {
                let mut out =
                    aws_sdk_rds::operation::describe_db_cluster_snapshots::DescribeDbClusterSnapshotsOutput::builder();
                for id in snapshots {
                    out = out.db_cluster_snapshots(
                        aws_sdk_rds::types::DbClusterSnapshot::builder()
                            .db_cluster_snapshot_identifier(*id)
                            .kms_key_id(arn("k-db"))
                            .build(),
                    );
                }
                // Another key's snapshot does not hold this one.
                out.db_cluster_snapshots(
                    aws_sdk_rds::types::DbClusterSnapshot::builder()
                        .db_cluster_snapshot_identifier("payops-pr1-aurora-by-hand")
                        .kms_key_id(arn("k-other"))
                        .build(),
                )
                .build()
            });
        let no_more_tagged = mock!(aws_sdk_resourcegroupstagging::Client::get_resources)
            .then_output(|| {
                aws_sdk_resourcegroupstagging::operation::get_resources::GetResourcesOutput::builder()
                    .build()
            });
        let mut clients = testing::clients();
        clients.kms = mock_client!(
            aws_sdk_kms,
            RuleMode::MatchAny,
            [
                &describe(DB_ALIAS, "k-db", KeyState::Enabled),
                &tags_of("k-db", our_tags("kms-key:database")),
                &delete_alias,
                &create_alias,
                &retain,
                &schedule,
            ]
        );
        clients.tagging = mock_client!(
            aws_sdk_resourcegroupstagging,
            RuleMode::MatchAny,
            [&testing::no_tagging_listing(), &no_more_tagged]
        );
        clients.rds = mock_client!(aws_sdk_rds, RuleMode::MatchAny, [&snapshots_of_the_cluster]);
        (
            testing::context(clients),
            [delete_alias, create_alias, retain, schedule],
        )
    }

    #[tokio::test]
    async fn a_key_a_kept_snapshot_needs_is_kept_under_its_own_alias_not_scheduled() {
        let (cx, [delete_alias, create_alias, retain, schedule]) =
            database_key_with_snapshots(&["payops-pr1-aurora-final-20261206"]);
        let removed = testing::destroy(&cx, "kms-key:database", KmsKey::new("database"))
            .await
            .unwrap();
        let Removed::Deleted { notes } = removed else {
            panic!("expected the env's key to be let go of");
        };
        assert_eq!(
            schedule.num_calls(),
            0,
            "the snapshot would be unrestorable"
        );
        assert_eq!(delete_alias.num_calls(), 1, "a new env needs the alias");
        assert_eq!(create_alias.num_calls(), 1);
        assert_eq!(retain.num_calls(), 1);
        assert!(
            notes.iter().any(|n| n.contains("kept KMS key k-db")
                && n.contains("payops-pr1-aurora-final-20261206")),
            "{notes:?}"
        );
    }

    #[tokio::test]
    async fn the_database_key_without_kept_snapshots_is_scheduled_as_usual() {
        let (cx, [_, create_alias, retain, schedule]) = database_key_with_snapshots(&[]);
        testing::destroy(&cx, "kms-key:database", KmsKey::new("database"))
            .await
            .unwrap();
        assert_eq!(schedule.num_calls(), 1);
        assert_eq!(create_alias.num_calls() + retain.num_calls(), 0);
    }

    #[test]
    fn a_retained_key_is_never_adopted() {
        let mut key = KeyInfo {
            id: "k-db".into(),
            arn: arn("k-db"),
            state: Some(KeyState::Enabled),
            description: DESCRIPTION.into(),
            spec: Some(KeySpec::SymmetricDefault),
            usage: Some(KeyUsageType::EncryptDecrypt),
            tags: our_tags("kms-key:database"),
        };
        assert!(key.usable_for("kms-key:database"));
        key.tags
            .insert(tags::RETAINED.into(), "final snapshot s-1".into());
        assert!(!key.usable_for("kms-key:database"));
    }

    #[tokio::test]
    async fn destroy_when_nothing_exists_is_success() {
        let cx = context(&[&no_alias()], &[&tagged(&[])]);
        let removed = testing::destroy(&cx, STEP, KmsKey::new("logs"))
            .await
            .unwrap();
        assert_eq!(removed, Removed::AlreadyAbsent);
    }

    #[tokio::test]
    async fn a_key_scheduled_for_deletion_meanwhile_counts_as_gone() {
        let by_id = mock!(Client::describe_key)
            .match_requests(|r| r.key_id() != Some(ALIAS))
            .sequence()
            .output(|| {
                DescribeKeyOutput::builder()
                    .key_metadata(metadata("k-1", KeyState::Enabled))
                    .build()
            })
            .output(|| {
                DescribeKeyOutput::builder()
                    .key_metadata(metadata("k-1", KeyState::PendingDeletion))
                    .build()
            })
            .build();
        let schedule = mock!(Client::schedule_key_deletion).then_error(|| {
            ScheduleKeyDeletionError::generic(testing::error_meta("KMSInvalidStateException"))
        });
        let cx = context(
            &[
                &no_alias(),
                &by_id,
                &tags_of("k-1", our_tags(STEP)),
                &schedule,
            ],
            &[&tagged(&["k-1"])],
        );
        let removed = testing::destroy(&cx, STEP, KmsKey::new("logs"))
            .await
            .unwrap();
        assert!(matches!(removed, Removed::Deleted { .. }));
        assert_eq!(by_id.num_calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn rotation_is_retried_while_a_new_key_is_not_yet_visible() {
        let enable = mock!(Client::enable_key_rotation)
            .sequence()
            .error(|| EnableKeyRotationError::generic(testing::error_meta("NotFoundException")))
            .times(2)
            .output(|| EnableKeyRotationOutput::builder().build())
            .build();
        let cx = context(
            &[
                &no_alias(),
                &mock!(Client::create_key).then_output(|| {
                    CreateKeyOutput::builder()
                        .key_metadata(metadata("k-new", KeyState::Enabled))
                        .build()
                }),
                &enable,
                &mock!(Client::create_alias).then_output(|| CreateAliasOutput::builder().build()),
                &rotation(true),
                &current_policy(desired_policy()),
            ],
            &[&tagged(&[])],
        );
        let applied = testing::ensure(&cx, STEP, KmsKey::new("logs"), &[])
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(enable.num_calls(), 3);
    }

    #[test]
    fn every_key_lets_the_account_administer_it_and_only_the_logs_s3_and_events_keys_serve_services()
     {
        let cx = testing::context(testing::clients());
        for purpose in KEY_PURPOSES {
            let policy = key_policy(&cx, purpose);
            let statements = policy["Statement"].as_array().unwrap();
            assert_eq!(
                statements[0]["Principal"]["AWS"],
                "arn:aws:iam::123456789012:root"
            );
            assert_eq!(statements[0]["Action"], "kms:*");
            for s in statements {
                assert_ne!(s["Action"], "*", "{purpose}: {s}");
            }
            let expected = match purpose {
                "logs" => 4,
                "events" => 4,
                "s3" => 2,
                "ebs" => 3,
                _ => 1,
            };
            assert_eq!(statements.len(), expected, "{purpose}");
        }
        let logs = key_policy(&cx, "logs");
        let s = &logs["Statement"];
        assert_eq!(
            s[1]["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"],
            json!([
                "arn:aws:logs:us-east-1:123456789012:log-group:/payops/pr1/*",
                "arn:aws:logs:us-east-1:123456789012:log-group:/aws/rds/cluster/payops-pr1-aurora/postgresql"
            ])
        );
        assert_eq!(
            s[2]["Principal"]["Service"],
            json!(["sns.amazonaws.com", "cloudwatch.amazonaws.com"])
        );
        assert_eq!(
            s[2]["Action"],
            json!(["kms:GenerateDataKey*", "kms:Decrypt"])
        );
        assert_eq!(
            s[2]["Condition"]["StringEquals"]["aws:SourceAccount"],
            ACCOUNT
        );
        let s3 = key_policy(&cx, "s3");
        let delivery = &s3["Statement"][1];
        assert_eq!(
            delivery["Principal"]["Service"],
            "delivery.logs.amazonaws.com"
        );
        assert_eq!(
            delivery["Condition"]["StringEquals"]["aws:SourceAccount"],
            ACCOUNT
        );
        assert_eq!(
            delivery["Condition"]["ArnLike"]["aws:SourceArn"],
            "arn:aws:logs:us-east-1:123456789012:*"
        );
        // EventBridge publishes to the encrypted topics of the logs key.
        assert_eq!(s[3]["Principal"]["Service"], "events.amazonaws.com");
        assert_eq!(
            s[3]["Condition"]["StringEquals"]["aws:SourceAccount"],
            ACCOUNT
        );
        let events = key_policy(&cx, "events");
        let s = &events["Statement"];
        // The bus: only with its own ARN as source and encryption context.
        let bus = "arn:aws:events:us-east-1:123456789012:event-bus/payops-pr1-payments";
        assert_eq!(s[1]["Principal"]["Service"], "events.amazonaws.com");
        assert_eq!(
            s[1]["Action"],
            json!(["kms:GenerateDataKey", "kms:Decrypt"])
        );
        assert_eq!(s[1]["Condition"]["StringEquals"]["aws:SourceArn"], bus);
        assert_eq!(
            s[1]["Condition"]["StringEquals"]["kms:EncryptionContext:aws:events:event-bus:arn"],
            bus
        );
        // DescribeKey has no encryption context: a condition on one would
        // never match, so it is scoped to the account.
        assert_eq!(s[2]["Action"], "kms:DescribeKey");
        assert!(
            s[2]["Condition"]["StringEquals"]
                .get("kms:EncryptionContext:aws:events:event-bus:arn")
                .is_none()
        );
        // Queues: SQS asks for the producer's data key with the queue's ARN
        // as encryption context; only this env's queues.
        assert_eq!(
            s[3]["Action"],
            json!(["kms:GenerateDataKey", "kms:Decrypt"])
        );
        assert_eq!(
            s[3]["Condition"]["ArnLike"]["kms:EncryptionContext:aws:sqs:arn"],
            "arn:aws:sqs:us-east-1:123456789012:payops-pr1-*"
        );
        assert_eq!(
            s[3]["Condition"]["StringEquals"]["aws:SourceAccount"],
            ACCOUNT
        );
    }

    #[test]
    fn outputs_are_named_by_purpose_and_aliases_follow_kms_rules() {
        let cx = testing::context(testing::clients());
        let prefixes = [
            "Database",
            "DynamoDb",
            "S3",
            "Logs",
            "Events",
            "Parameters",
            "Ebs",
        ];
        for (purpose, prefix) in KEY_PURPOSES.into_iter().zip(prefixes) {
            let key = KmsKey::new(purpose);
            let alias = key.alias(&cx).unwrap();
            assert!(alias.starts_with("alias/") && !alias.starts_with("alias/aws/"));
            let found = FoundKey {
                key: KeyInfo {
                    id: "k-1".into(),
                    arn: arn("k-1"),
                    state: Some(KeyState::Enabled),
                    description: String::new(),
                    spec: None,
                    usage: None,
                    tags: TagMap::new(),
                },
                alias: alias.clone(),
                alias_target: AliasTarget::ThisKey,
            };
            let outputs = key.record(&cx, &found).outputs;
            assert_eq!(outputs[&format!("{prefix}KmsKeyArn")], arn("k-1"));
            assert_eq!(outputs[&format!("{prefix}KmsKeyId")], "k-1");
            assert_eq!(outputs[&format!("{prefix}KmsAlias")], alias);
            assert_eq!(outputs.len(), 3);
        }
    }

    #[test]
    fn of_two_keys_for_one_step_the_alias_target_is_kept_else_the_recorded_one() {
        let found = |id: &str, target: AliasTarget| FoundKey {
            key: KeyInfo {
                id: id.into(),
                arn: arn(id),
                state: Some(KeyState::Enabled),
                description: String::new(),
                spec: None,
                usage: None,
                tags: TagMap::new(),
            },
            alias: "alias/payops/pr1/s3".into(),
            alias_target: target,
        };
        let key = KmsKey::new("s3");
        let two = [
            found("k-extra", AliasTarget::Other("k-used".into())),
            found("k-used", AliasTarget::ThisKey),
        ];
        assert_eq!(key.keep_of_duplicates(&two), Some(1));
        // No alias yet (a run stopped before it): nothing used either; `find`
        // lists the recorded key first.
        let two = [
            found("k-recorded", AliasTarget::Missing),
            found("k-extra", AliasTarget::Missing),
        ];
        assert_eq!(key.keep_of_duplicates(&two), Some(0));
    }
}
