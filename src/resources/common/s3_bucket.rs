//! The env's buckets: the audit-log bucket (versioned, encrypted with the
//! env's S3 key, closed to the public, reachable over TLS only, kept for seven
//! years) and the ALB access-log bucket, configured the same way except for
//! two things ELB imposes: access logs can only be written to a bucket whose
//! default encryption is SSE-S3 (ELB's log delivery cannot use a KMS key),
//! and the bucket policy must let the region's ELB log delivery write under
//! the log prefix. S3 default encryption is per bucket, with no per-prefix
//! exception, so the logs get a bucket of their own rather than weakening the
//! audit bucket's encryption.
//!
//! S3 bucket names are global across every account, so the name alone proves
//! nothing: a bucket answering to our name is ours only if HeadBucket lets us
//! in (another account's bucket answers 403) and it carries our tags. Every
//! call also passes `ExpectedBucketOwner`, so S3 itself refuses to act on a
//! bucket of another account even if the name changed hands in between.

use std::fmt;

use async_trait::async_trait;
use aws_sdk_s3::operation::head_bucket::HeadBucketError;
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, BucketLocationConstraint,
    BucketVersioningStatus, CreateBucketConfiguration, Delete, ExpirationStatus,
    LifecycleExpiration, LifecycleRule, LifecycleRuleFilter, NoncurrentVersionExpiration,
    ObjectIdentifier, ObjectOwnership, OwnershipControls, OwnershipControlsRule,
    PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule, Tagging, Transition,
    TransitionDefaultMinimumObjectSize, TransitionStorageClass, VersioningConfiguration,
};
use aws_smithy_runtime_api::client::result::SdkError;

use crate::aws::{AwsError, OpResult, absent_on, policy};
use crate::engine::{Record, StepCx};
use crate::tags::TagMap;

use crate::resources::context::Context;
use crate::resources::resource::Resource;
use crate::resources::sdk::s3;
use crate::tags::describe_tag_fix;

/// Audit objects move to Glacier once they are rarely read (those of
/// 128 KB or more: see [`transition_minimum`]).
const GLACIER_AFTER_DAYS: i32 = 90;
/// Seven years: the retention auditors ask of payment audit logs.
const EXPIRE_AFTER_DAYS: i32 = 2555;
/// Access logs: the year PCI DSS asks for, plus a margin.
const ALB_LOGS_EXPIRE_AFTER_DAYS: i32 = 400;
/// The transaction log: a year of analytics, plus a margin.
const TRANSACTION_LOG_EXPIRE_AFTER_DAYS: i32 = 400;
/// The key prefix ALB access logs are written under (ELB appends
/// `AWSLogs/<account>/elasticloadbalancing/...`).
pub const ALB_LOG_PREFIX: &str = "alb";
/// Overwritten or deleted versions are kept long enough to undo a mistake.
const NONCURRENT_EXPIRE_DAYS: i32 = 90;
/// Abandoned multipart uploads are billed but invisible: clean them up.
const ABORT_MULTIPART_DAYS: i32 = 7;
const LIFECYCLE_RULE_ID: &str = "payops-audit-retention";
/// DeleteObjects takes at most 1000 keys per call.
const DELETE_BATCH: usize = 1000;
/// Writers (Lambdas, log shippers) may land new objects while we empty the
/// bucket; after this many rounds something keeps writing and a person must
/// stop it.
const DELETE_ATTEMPTS: u32 = 5;
const KEY_INPUT: (&str, &str) = ("kms-key:s3", "S3KmsKeyArn");

/// What a bucket is for; everything that differs between the two follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    Audit,
    AlbLogs,
    WafLogs,
    /// The transaction log Firehose writes (GZIP'd JSON lines).
    TransactionLog,
}

/// Where the lifecycle moves objects: Glacier after 90 days (records kept
/// for years, rarely read), or S3 Intelligent-Tiering from the first day
/// (the transaction log: read by analytics now and then, with no pattern
/// to plan a fixed transition on; Intelligent-Tiering moves each object
/// between access tiers itself, without retrieval fees).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    Glacier,
    IntelligentTiering,
}

impl Tier {
    fn days(self) -> i32 {
        match self {
            Self::Glacier => GLACIER_AFTER_DAYS,
            Self::IntelligentTiering => 0,
        }
    }

    fn class(self) -> TransitionStorageClass {
        match self {
            Self::Glacier => TransitionStorageClass::Glacier,
            Self::IntelligentTiering => TransitionStorageClass::IntelligentTiering,
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Glacier => write!(f, "Glacier after {GLACIER_AFTER_DAYS} days"),
            Self::IntelligentTiering => f.write_str("Intelligent-Tiering from day 0"),
        }
    }
}

pub struct Bucket {
    purpose: Purpose,
}

impl Bucket {
    /// `s3-bucket:audit`: audit records, SSE-KMS with the env's S3 key.
    pub fn audit() -> Self {
        Self {
            purpose: Purpose::Audit,
        }
    }

    /// `s3-bucket:alb-logs`: the internal ALB's access logs, SSE-S3.
    pub fn alb_logs() -> Self {
        Self {
            purpose: Purpose::AlbLogs,
        }
    }

    /// `s3-bucket:waf-logs`: the web ACL's logs of blocked requests,
    /// SSE-KMS with the env's S3 key (WAF's log delivery supports customer
    /// managed keys, not AWS managed ones).
    pub fn waf_logs() -> Self {
        Self {
            purpose: Purpose::WafLogs,
        }
    }

    /// `s3-bucket:transaction-log`: Firehose's transaction log, SSE-KMS
    /// with the env's S3 key, Intelligent-Tiering; part of the event
    /// backbone.
    pub fn transaction_log() -> Self {
        Self {
            purpose: Purpose::TransactionLog,
        }
    }

    fn tier(&self) -> Tier {
        match self.purpose {
            Purpose::TransactionLog => Tier::IntelligentTiering,
            _ => Tier::Glacier,
        }
    }

    fn name(&self, cx: &Context) -> String {
        match self.purpose {
            Purpose::Audit => cx.names.audit_bucket(),
            Purpose::AlbLogs => cx.names.alb_logs_bucket(),
            Purpose::WafLogs => cx.names.waf_logs_bucket(),
            Purpose::TransactionLog => cx.names.transaction_log_bucket(),
        }
    }

    fn expire_after_days(&self) -> i32 {
        match self.purpose {
            Purpose::Audit => EXPIRE_AFTER_DAYS,
            // Logs of requests: the same year (and margin) as access logs.
            Purpose::AlbLogs | Purpose::WafLogs => ALB_LOGS_EXPIRE_AFTER_DAYS,
            // Analytics data: the audit bucket holds the 7-year record.
            Purpose::TransactionLog => TRANSACTION_LOG_EXPIRE_AFTER_DAYS,
        }
    }

    /// The KMS key to encrypt with, or None for SSE-S3.
    fn key_arn<'a>(&self, step: &'a StepCx<'_>) -> Result<Option<&'a str>, AwsError> {
        Ok(match self.purpose {
            Purpose::Audit | Purpose::WafLogs | Purpose::TransactionLog => {
                Some(step.output(KEY_INPUT.0, KEY_INPUT.1)?)
            }
            Purpose::AlbLogs => None,
        })
    }

    fn policy(&self, cx: &Context, name: &str, key_arn: Option<&str>) -> String {
        match (self.purpose, key_arn) {
            (Purpose::Audit, Some(key)) => audit_policy(cx, name, key),
            (Purpose::Audit, None) => tls_only_policy(cx, name),
            (Purpose::AlbLogs, _) => alb_logs_policy(cx, name),
            (Purpose::WafLogs, _) => waf_logs_policy(cx, name),
            // Its one writer, Firehose, writes with a role of this account
            // (whose policy names this bucket): nothing to add to TLS-only.
            (Purpose::TransactionLog, _) => tls_only_policy(cx, name),
        }
    }
}

pub struct FoundBucket {
    name: String,
    tags: TagMap,
}

pub enum Fix {
    /// PutBucketTagging replaces the whole set, so the fix carries the merged
    /// set (`all`) and, for display, what it adds.
    Tags {
        added: TagMap,
        all: TagMap,
    },
    Ownership,
    Versioning,
    /// `None`: SSE-S3.
    Encryption {
        key_arn: Option<String>,
    },
    PublicAccessBlock,
    Policy,
    Lifecycle {
        expire_after_days: i32,
        tier: Tier,
    },
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tags { added, .. } => f.write_str(&describe_tag_fix(added)),
            Self::Ownership => f.write_str("disable ACLs (object ownership BucketOwnerEnforced)"),
            Self::Versioning => f.write_str("enable versioning"),
            Self::Encryption { key_arn: Some(_) } => f.write_str(
                "encrypt new objects with the env's S3 KMS key (SSE-KMS, bucket key on)",
            ),
            Self::Encryption { key_arn: None } => f.write_str(
                "encrypt new objects with S3-managed keys (SSE-S3, what ELB access logs need)",
            ),
            Self::PublicAccessBlock => f.write_str("block all public access"),
            Self::Policy => f.write_str("set the TLS-only bucket policy"),
            Self::Lifecycle {
                expire_after_days,
                tier,
            } => write!(
                f,
                "set the retention lifecycle ({tier} for objects \
                 of 128 KB or more, expire after {expire_after_days} days, noncurrent versions \
                 after {NONCURRENT_EXPIRE_DAYS} days, abort uploads after \
                 {ABORT_MULTIPART_DAYS} days)"
            ),
        }
    }
}

fn bucket_arn(cx: &Context, name: &str) -> String {
    format!("arn:{}:s3:::{name}", cx.partition())
}

fn what(name: &str) -> String {
    format!("S3 bucket {name}")
}

/// Denies every request that does not use TLS, whoever makes it.
pub fn tls_only_policy(cx: &Context, name: &str) -> String {
    let arn = bucket_arn(cx, name);
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [arn.clone(), format!("{arn}/*")],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}
        }]
    })
    .to_string()
}

/// The audit bucket's policy: TLS only, and no object written under any key
/// but the env's own. Request headers override the bucket's default
/// encryption: a PutObject that says SSE-KMS without a key id gets the
/// AWS-managed `aws/s3` key, one that names another key or SSE-S3 escapes the
/// env's key policy. A put without encryption headers gets the bucket default
/// (the env's key) and stays allowed. `Null` guards each condition: a negated
/// operator is true when its key is absent from the request.
pub fn audit_policy(cx: &Context, name: &str, key_arn: &str) -> String {
    let mut doc: serde_json::Value =
        serde_json::from_str(&tls_only_policy(cx, name)).expect("our own JSON");
    let objects = format!("{}/*", bucket_arn(cx, name));
    let deny_put = |sid: &str, condition: serde_json::Value| {
        serde_json::json!({
            "Sid": sid,
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:PutObject",
            "Resource": objects,
            "Condition": condition,
        })
    };
    let statements = doc["Statement"].as_array_mut().expect("a statement list");
    statements.push(deny_put(
        "DenyEncryptionOtherThanKms",
        serde_json::json!({
            "StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"},
            "Null": {"s3:x-amz-server-side-encryption": "false"}
        }),
    ));
    statements.push(deny_put(
        "DenyKmsWithoutTheEnvsKey",
        serde_json::json!({
            "StringEquals": {"s3:x-amz-server-side-encryption": "aws:kms"},
            "Null": {"s3:x-amz-server-side-encryption-aws-kms-key-id": "true"}
        }),
    ));
    statements.push(deny_put(
        "DenyOtherKmsKeys",
        serde_json::json!({
            "StringNotEquals": {"s3:x-amz-server-side-encryption-aws-kms-key-id": key_arn},
            "Null": {"s3:x-amz-server-side-encryption-aws-kms-key-id": "false"}
        }),
    ));
    doc.to_string()
}

/// The account ELB delivers access logs from, in the regions that opened
/// before August 2022 (AWS's published list); newer regions deliver through
/// the `logdelivery.elasticloadbalancing.amazonaws.com` service principal.
fn elb_log_account(region: &str) -> Option<&'static str> {
    Some(match region {
        "us-east-1" => "127311923021",
        "us-east-2" => "033677994240",
        "us-west-1" => "027434742980",
        "us-west-2" => "797873946194",
        "af-south-1" => "098369216593",
        "ap-east-1" => "754344448648",
        "ap-southeast-3" => "589379963580",
        "ap-south-1" => "718504428378",
        "ap-northeast-3" => "383597477331",
        "ap-northeast-2" => "600734575887",
        "ap-southeast-1" => "114774131450",
        "ap-southeast-2" => "783225319266",
        "ap-northeast-1" => "582318560864",
        "ca-central-1" => "985666609251",
        "eu-central-1" => "054676820928",
        "eu-west-1" => "156460612806",
        "eu-west-2" => "652711504416",
        "eu-south-1" => "635631232127",
        "eu-west-3" => "009996457667",
        "eu-north-1" => "897822967062",
        "me-south-1" => "076674570225",
        "sa-east-1" => "507241528517",
        "us-gov-west-1" => "048591011584",
        "us-gov-east-1" => "190560391635",
        "cn-north-1" => "638102146993",
        "cn-northwest-1" => "037604701340",
        _ => return None,
    })
}

/// Who writes ALB access logs in `cx`'s region, as a policy principal.
fn elb_log_principal(cx: &Context) -> serde_json::Value {
    match elb_log_account(&cx.region) {
        Some(account) => serde_json::json!({
            "AWS": format!("arn:{}:iam::{account}:root", cx.partition())
        }),
        None => serde_json::json!({ "Service": "logdelivery.elasticloadbalancing.amazonaws.com" }),
    }
}

/// The TLS-only policy plus ELB's log delivery, which may put objects under
/// this account's log prefix and nothing else.
pub fn alb_logs_policy(cx: &Context, name: &str) -> String {
    let mut policy: serde_json::Value =
        serde_json::from_str(&tls_only_policy(cx, name)).expect("our own JSON");
    let logs = format!(
        "{}/{ALB_LOG_PREFIX}/AWSLogs/{}/*",
        bucket_arn(cx, name),
        cx.account_id
    );
    if let Some(statements) = policy["Statement"].as_array_mut() {
        statements.push(serde_json::json!({
            "Sid": "ElbAccessLogDelivery",
            "Effect": "Allow",
            "Principal": elb_log_principal(cx),
            "Action": "s3:PutObject",
            "Resource": logs
        }));
    }
    policy.to_string()
}

/// The TLS-only policy plus the log delivery service that writes AWS WAF's
/// logs: PutObject under this account's `AWSLogs/` prefix with the
/// bucket-owner-full-control ACL, and the ACL check it makes first, both
/// only on behalf of this account's log sources (CloudWatch Logs user guide,
/// "Logs sent to Amazon S3": the policy AWS itself would add when the caller
/// may not; confused-deputy conditions aws:SourceAccount and aws:SourceArn).
pub fn waf_logs_policy(cx: &Context, name: &str) -> String {
    let mut policy: serde_json::Value =
        serde_json::from_str(&tls_only_policy(cx, name)).expect("our own JSON");
    let arn = bucket_arn(cx, name);
    let source = serde_json::json!({
        "StringEquals": {"aws:SourceAccount": cx.account_id},
        "ArnLike": {"aws:SourceArn": cx.arn("logs", "*")}
    });
    let mut write_condition = source.clone();
    write_condition["StringEquals"]["s3:x-amz-acl"] = "bucket-owner-full-control".into();
    if let Some(statements) = policy["Statement"].as_array_mut() {
        statements.push(serde_json::json!({
            "Sid": "AWSLogDeliveryWrite",
            "Effect": "Allow",
            "Principal": {"Service": "delivery.logs.amazonaws.com"},
            "Action": "s3:PutObject",
            "Resource": format!("{arn}/AWSLogs/{}/*", cx.account_id),
            "Condition": write_condition
        }));
        statements.push(serde_json::json!({
            "Sid": "AWSLogDeliveryAclCheck",
            "Effect": "Allow",
            "Principal": {"Service": "delivery.logs.amazonaws.com"},
            "Action": ["s3:GetBucketAcl", "s3:ListBucket"],
            "Resource": arn,
            "Condition": source
        }));
    }
    policy.to_string()
}

/// Which objects the Glacier transition skips, set explicitly on every
/// PutBucketLifecycleConfiguration and compared by `diff`: objects under
/// 128 KB stay in S3 Standard until they expire.
///
/// Since September 2024 S3 does not transition objects smaller than 128 KB
/// unless told otherwise: `TransitionDefaultMinimumObjectSize` defaults to
/// `all_storage_classes_128K` for every new or changed lifecycle
/// configuration (S3 API reference, PutBucketLifecycleConfiguration, header
/// `x-amz-transition-default-minimum-object-size`; S3 User Guide,
/// "Transitioning objects using Amazon S3 Lifecycle"). Audit records are a few
/// hundred bytes, so the Glacier rule never applies to them, and it should
/// not: S3 Glacier Flexible Retrieval bills about 40 KB more for every object
/// it holds, 32 KB at Glacier rates (index) plus 8 KB at Standard rates (name
/// and metadata) (S3 User Guide, "Understanding archival storage in S3
/// Glacier Flexible Retrieval and S3 Glacier Deep Archive", cost
/// considerations), and each transition is a billed request. With us-east-1
/// list prices (Standard $0.023 and Glacier Flexible Retrieval $0.0036 per
/// GB-month, transitions $0.03 per 1,000), a 500-byte record costs about 27
/// times more per month in Glacier than in Standard, and its transition alone
/// costs as much as roughly 230 years of Standard storage for it; over the 81
/// months left of a 7-year retention a million such records cost about $0.9 in
/// Standard and about $53 moved to Glacier. Glacier only pays for objects above
/// roughly 36 KB. `varies_by_storage_class` (which lets Glacier take small
/// objects) would make the audit bucket more expensive, so payops keeps the
/// 128 KB floor, on purpose and explicitly rather than by S3's default. Larger
/// objects (an export, an ALB log file of a busy hour) still move after
/// 90 days; expiry (the 7 years, noncurrent versions, uploads) applies to
/// every object whatever its size.
///
/// Emulators: LocalStack stores and echoes the value. moto 5.2.5 ignores it
/// on Put and always answers `all_storage_classes_128K`, the value payops
/// sets, so both converge (on moto this setting cannot drift). An answer
/// without the value is drift: payops cannot tell which minimum applies, and
/// AWS always sends it.
fn transition_minimum() -> TransitionDefaultMinimumObjectSize {
    TransitionDefaultMinimumObjectSize::AllStorageClasses128K
}

#[cfg(test)]
fn lifecycle_rule(expire_after_days: i32) -> Result<LifecycleRule, AwsError> {
    tiered_lifecycle_rule(expire_after_days, Tier::Glacier)
}

fn tiered_lifecycle_rule(expire_after_days: i32, tier: Tier) -> Result<LifecycleRule, AwsError> {
    const OP: &str = "s3:PutBucketLifecycleConfiguration";
    s3::built(
        OP,
        LifecycleRule::builder()
            .id(LIFECYCLE_RULE_ID)
            .status(ExpirationStatus::Enabled)
            .filter(LifecycleRuleFilter::builder().prefix("").build())
            .transitions(
                Transition::builder()
                    .days(tier.days())
                    .storage_class(tier.class())
                    .build(),
            )
            .expiration(
                LifecycleExpiration::builder()
                    .days(expire_after_days)
                    .build(),
            )
            .noncurrent_version_expiration(
                NoncurrentVersionExpiration::builder()
                    .noncurrent_days(NONCURRENT_EXPIRE_DAYS)
                    .build(),
            )
            .abort_incomplete_multipart_upload(
                AbortIncompleteMultipartUpload::builder()
                    .days_after_initiation(ABORT_MULTIPART_DAYS)
                    .build(),
            )
            .build(),
    )
}

/// Whether the bucket's lifecycle is exactly our one retention rule. Compared
/// field by field because AWS echoes an empty filter in several shapes.
// Rules written by older tools carry the legacy top-level Prefix, which the
// SDK marks deprecated but AWS still returns.
#[cfg(test)]
fn lifecycle_in_sync(rules: &[LifecycleRule], expire_after_days: i32) -> bool {
    tiered_lifecycle_in_sync(rules, expire_after_days, Tier::Glacier)
}

#[allow(deprecated)]
fn tiered_lifecycle_in_sync(rules: &[LifecycleRule], expire_after_days: i32, tier: Tier) -> bool {
    let [rule] = rules else {
        return false;
    };
    let whole_bucket = match rule.filter() {
        None => rule.prefix().unwrap_or_default().is_empty(),
        Some(f) => {
            f.prefix().unwrap_or_default().is_empty()
                && f.tag().is_none()
                && f.and().is_none()
                && f.object_size_greater_than().is_none()
                && f.object_size_less_than().is_none()
        }
    };
    let transitions_ok = matches!(
        rule.transitions(),
        [t] if t.days() == Some(tier.days())
            && t.date().is_none()
            && t.storage_class() == Some(&tier.class())
    );
    let expiration_ok = rule.expiration().is_some_and(|e| {
        e.days() == Some(expire_after_days)
            && e.date().is_none()
            && e.expired_object_delete_marker() != Some(true)
    });
    let noncurrent_ok = rule.noncurrent_version_expiration().is_some_and(|n| {
        n.noncurrent_days() == Some(NONCURRENT_EXPIRE_DAYS)
            && n.newer_noncurrent_versions().is_none()
    });
    let abort_ok = rule
        .abort_incomplete_multipart_upload()
        .is_some_and(|a| a.days_after_initiation() == Some(ABORT_MULTIPART_DAYS));
    rule.status() == &ExpirationStatus::Enabled
        && whole_bucket
        && transitions_ok
        && rule.noncurrent_version_transitions().is_empty()
        && expiration_ok
        && noncurrent_ok
        && abort_ok
}

/// What HeadBucket says about a name.
enum Head {
    Missing,
    /// It exists and this account may look at it (tags decide whose it is).
    Exists,
    /// 403: the bucket exists in another account (or our credentials may not
    /// look at it); either way it is not ours to touch.
    Denied,
    /// 301: the bucket exists in another region; ours would be in this one.
    Elsewhere(String),
}

async fn head(cx: &Context, name: &str) -> Result<Head, AwsError> {
    let result = cx
        .clients
        .s3
        .head_bucket()
        .bucket(name)
        .expected_bucket_owner(&cx.account_id)
        .send()
        .await;
    // HEAD responses have no body, hence no error code beyond 404's
    // NotFound: the status says the rest.
    if let Err(SdkError::ServiceError(e)) = &result {
        let status = e.raw().status().as_u16();
        if matches!(e.err(), HeadBucketError::NotFound(_)) || status == 404 {
            return Ok(Head::Missing);
        }
        if status == 403 {
            return Ok(Head::Denied);
        }
        if status == 301 {
            let region = e.raw().headers().get("x-amz-bucket-region");
            return Ok(Head::Elsewhere(
                region.unwrap_or("another region").to_owned(),
            ));
        }
    }
    result.map(|_| Head::Exists).op("s3:HeadBucket")
}

/// `recorded`: the state file says payops created this very bucket.
async fn lookup(cx: &Context, name: &str, recorded: bool) -> Result<Option<FoundBucket>, AwsError> {
    match head(cx, name).await? {
        Head::Missing => return Ok(None),
        Head::Denied => {
            return Err(AwsError::NotOurs {
                what: what(name),
                owner: "another AWS account owns it (HeadBucket answered 403)".into(),
            });
        }
        Head::Elsewhere(region) => {
            return Err(AwsError::NotOurs {
                what: what(name),
                owner: format!(
                    "it lives in {region}, and this env's bucket would be in {}",
                    cx.region
                ),
            });
        }
        Head::Exists => {}
    }
    let Some(tags) = s3::bucket_tags(cx, name).await? else {
        return Ok(None);
    };
    // A bucket payops recorded creating that has no tags at all: the run was
    // cut off between CreateBucket and tagging (emulators ignore tags at
    // creation). It is ours; `diff` tags it. Any other tagless bucket is not.
    if !(recorded && tags.is_empty()) {
        cx.check_ours(what(name), &tags)?;
    }
    Ok(Some(FoundBucket {
        name: name.to_owned(),
        tags,
    }))
}

/// The reads `diff` compares; each `None` means "not configured at all".
struct Settings {
    ownership: Option<ObjectOwnership>,
    versioning: Option<BucketVersioningStatus>,
    encryption: Option<ServerSideEncryptionRule>,
    public_access: Option<PublicAccessBlockConfiguration>,
    policy: Option<String>,
    lifecycle: Vec<LifecycleRule>,
    /// The lifecycle's `TransitionDefaultMinimumObjectSize` (a response
    /// header of GetBucketLifecycleConfiguration).
    transition_minimum: Option<TransitionDefaultMinimumObjectSize>,
}

async fn settings(cx: &Context, name: &str) -> Result<Settings, AwsError> {
    let s3 = &cx.clients.s3;
    let owner = cx.account_id.as_str();
    let ownership = async {
        let out = s3
            .get_bucket_ownership_controls()
            .bucket(name)
            .expected_bucket_owner(owner)
            .send()
            .await
            .op("s3:GetBucketOwnershipControls");
        Ok::<_, AwsError>(
            absent_on(out, &["OwnershipControlsNotFoundError"])?.and_then(|o| {
                o.ownership_controls()?
                    .rules()
                    .first()
                    .map(|r| r.object_ownership().clone())
            }),
        )
    };
    let versioning = async {
        let out = s3
            .get_bucket_versioning()
            .bucket(name)
            .expected_bucket_owner(owner)
            .send()
            .await
            .op("s3:GetBucketVersioning")?;
        Ok::<_, AwsError>(out.status().cloned())
    };
    let encryption = async {
        let out = s3
            .get_bucket_encryption()
            .bucket(name)
            .expected_bucket_owner(owner)
            .send()
            .await
            .op("s3:GetBucketEncryption");
        Ok::<_, AwsError>(
            absent_on(out, &["ServerSideEncryptionConfigurationNotFoundError"])?.and_then(|o| {
                o.server_side_encryption_configuration()?
                    .rules()
                    .first()
                    .cloned()
            }),
        )
    };
    let public_access = async {
        let out = s3
            .get_public_access_block()
            .bucket(name)
            .expected_bucket_owner(owner)
            .send()
            .await
            .op("s3:GetPublicAccessBlock");
        Ok::<_, AwsError>(
            absent_on(out, &["NoSuchPublicAccessBlockConfiguration"])?
                .and_then(|o| o.public_access_block_configuration().cloned()),
        )
    };
    let policy = async {
        let out = s3
            .get_bucket_policy()
            .bucket(name)
            .expected_bucket_owner(owner)
            .send()
            .await
            .op("s3:GetBucketPolicy");
        Ok::<_, AwsError>(
            absent_on(out, &["NoSuchBucketPolicy"])?.and_then(|o| o.policy().map(str::to_owned)),
        )
    };
    let lifecycle = async {
        let out = s3
            .get_bucket_lifecycle_configuration()
            .bucket(name)
            .expected_bucket_owner(owner)
            .send()
            .await
            .op("s3:GetBucketLifecycleConfiguration");
        Ok::<_, AwsError>(
            absent_on(out, &["NoSuchLifecycleConfiguration"])?
                .map(|o| {
                    (
                        o.rules().to_vec(),
                        o.transition_default_minimum_object_size().cloned(),
                    )
                })
                .unwrap_or_default(),
        )
    };
    let (ownership, versioning, encryption, public_access, policy, (lifecycle, transition_minimum)) =
        tokio::try_join!(
            ownership,
            versioning,
            encryption,
            public_access,
            policy,
            lifecycle
        )?;
    Ok(Settings {
        ownership,
        versioning,
        encryption,
        public_access,
        policy,
        lifecycle,
        transition_minimum,
    })
}

fn encryption_in_sync(rule: Option<&ServerSideEncryptionRule>, key_arn: &str) -> bool {
    rule.is_some_and(|r| {
        r.bucket_key_enabled() == Some(true)
            && r.apply_server_side_encryption_by_default()
                .is_some_and(|d| {
                    d.sse_algorithm() == &ServerSideEncryption::AwsKms
                        && d.kms_master_key_id() == Some(key_arn)
                })
    })
}

/// SSE-S3 (AES256), with no KMS key.
fn sse_s3_in_sync(rule: Option<&ServerSideEncryptionRule>) -> bool {
    rule.is_some_and(|r| {
        r.apply_server_side_encryption_by_default()
            .is_some_and(|d| {
                d.sse_algorithm() == &ServerSideEncryption::Aes256
                    && d.kms_master_key_id().is_none()
            })
    })
}

fn public_access_blocked(config: Option<&PublicAccessBlockConfiguration>) -> bool {
    config.is_some_and(|c| {
        c.block_public_acls() == Some(true)
            && c.ignore_public_acls() == Some(true)
            && c.block_public_policy() == Some(true)
            && c.restrict_public_buckets() == Some(true)
    })
}

/// Deletes every object version and delete marker; returns how many.
async fn empty(cx: &Context, step: &StepCx<'_>, name: &str) -> Result<usize, AwsError> {
    let mut deleted = 0;
    let mut key_marker: Option<String> = None;
    let mut version_marker: Option<String> = None;
    loop {
        let page = cx
            .clients
            .s3
            .list_object_versions()
            .bucket(name)
            .expected_bucket_owner(&cx.account_id)
            .set_key_marker(key_marker.clone())
            .set_version_id_marker(version_marker.clone())
            .send()
            .await
            .op("s3:ListObjectVersions")?;
        let versions = page.versions().iter().map(|v| (v.key(), v.version_id()));
        let markers = page
            .delete_markers()
            .iter()
            .map(|m| (m.key(), m.version_id()));
        let ids = versions
            .chain(markers)
            .filter_map(|(key, version)| Some((key?, version)))
            .map(|(key, version)| {
                s3::built(
                    "s3:DeleteObjects",
                    ObjectIdentifier::builder()
                        .key(key)
                        .set_version_id(version.map(str::to_owned))
                        .build(),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        for batch in ids.chunks(DELETE_BATCH) {
            delete_batch(cx, name, batch).await?;
            deleted += batch.len();
            step.progress(format!("emptying {name}: {deleted} versions deleted"));
        }
        key_marker = page.next_key_marker().map(str::to_owned);
        version_marker = page.next_version_id_marker().map(str::to_owned);
        // A truncated page without markers would list the same page forever.
        if page.is_truncated() != Some(true) || (key_marker.is_none() && version_marker.is_none()) {
            return Ok(deleted);
        }
    }
}

async fn delete_batch(
    cx: &Context,
    name: &str,
    batch: &[ObjectIdentifier],
) -> Result<(), AwsError> {
    let delete = s3::built(
        "s3:DeleteObjects",
        Delete::builder()
            .set_objects(Some(batch.to_vec()))
            .quiet(true)
            .build(),
    )?;
    let out = cx
        .clients
        .s3
        .delete_objects()
        .bucket(name)
        .expected_bucket_owner(&cx.account_id)
        .delete(delete)
        .send()
        .await
        .op("s3:DeleteObjects")?;
    // DeleteObjects answers 200 even when it deleted nothing: per-key errors
    // are in the body.
    match out.errors() {
        [] => Ok(()),
        errors @ [first, ..] => Err(AwsError::Api {
            op: "s3:DeleteObjects",
            code: first.code().map(str::to_owned),
            message: format!(
                "{} of {} objects not deleted, e.g. {}: {}",
                errors.len(),
                batch.len(),
                first.key().unwrap_or("?"),
                first.message().unwrap_or("no message")
            ),
        }),
    }
}

#[async_trait]
impl Resource for Bucket {
    type Found = FoundBucket;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "s3:bucket"
    }

    /// The transaction log belongs to the event backbone (`--events off`
    /// leaves it out); the other buckets are always wanted.
    fn wanted(&self, cx: &Context) -> bool {
        self.purpose != Purpose::TransactionLog || cx.spec.events
    }

    /// CreateBucket outside us-east-1 meets the bucket its lost first attempt made (see the trait).
    fn already_exists(&self) -> &'static [&'static str] {
        &["BucketAlreadyOwnedByYou"]
    }

    async fn find(&self, cx: &Context, step: &StepCx<'_>) -> Result<Vec<FoundBucket>, AwsError> {
        let name = self.name(cx);
        let recorded = step.previous_resource("bucket") == Some(name.as_str());
        Ok(lookup(cx, &name, recorded).await?.into_iter().collect())
    }

    fn describe(&self, found: &FoundBucket) -> String {
        found.name.clone()
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<FoundBucket, AwsError> {
        const OP: &str = "s3:CreateBucket";
        // Fail before creating anything if the key is not there to encrypt with.
        self.key_arn(step)?;
        let name = self.name(cx);
        // us-east-1 is S3's default and refuses to be named as a constraint.
        let constraint =
            (cx.region != "us-east-1").then(|| BucketLocationConstraint::from(cx.region.as_str()));
        let config = CreateBucketConfiguration::builder()
            .set_location_constraint(constraint)
            .set_tags(Some(s3::tags(
                OP,
                &cx.tagger.for_create(step.id().as_str()),
            )?))
            .build();
        // Recorded before the call: a run killed while CreateBucket is in
        // flight must still recognise the bucket when an endpoint dropped the
        // tags sent with it (find adopts a recorded bucket only while it has
        // no tags at all, and our name embeds env, account and region).
        step.remember("bucket", &name);
        let result = cx
            .clients
            .s3
            .create_bucket()
            .bucket(&name)
            .create_bucket_configuration(config)
            .object_ownership(ObjectOwnership::BucketOwnerEnforced)
            .send()
            .await
            .op(OP);
        match result {
            Ok(_) => {}
            // Created by us a moment ago (a concurrent or interrupted run):
            // it is ours only if its tags say so.
            Err(e) if e.is_code(&["BucketAlreadyOwnedByYou"]) => {
                let recorded = step.previous_resource("bucket") == Some(name.as_str());
                let found = lookup(cx, &name, recorded).await?.ok_or_else(|| {
                    AwsError::Conflict(format!(
                        "S3 says bucket {name} already belongs to this account but it cannot be \
                         found; run `payops up` again"
                    ))
                })?;
                return Ok(found);
            }
            Err(e) if e.is_code(&["BucketAlreadyExists"]) => {
                return Err(AwsError::Conflict(format!(
                    "the S3 bucket name {name} is taken by another AWS account (bucket names are \
                     global); payops includes the account id and region in it, so someone \
                     created it on purpose: use another env name"
                )));
            }
            Err(e) => return Err(e),
        }
        // Read the tags back rather than trust the request: an endpoint that
        // ignores tags at creation (moto 5.2 does) leaves a gap that the tag
        // fix then closes.
        let tags = s3::bucket_tags(cx, &name).await?.unwrap_or_default();
        Ok(FoundBucket { name, tags })
    }

    async fn diff(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        bucket: &FoundBucket,
    ) -> Result<Vec<Fix>, AwsError> {
        let key_arn = self.key_arn(step)?;
        let mut fixes = Vec::new();
        let added = cx.tagger.missing(step.id().as_str(), &bucket.tags);
        if !added.is_empty() {
            let mut all = bucket.tags.clone();
            all.extend(added.clone());
            fixes.push(Fix::Tags { added, all });
        }
        let s = settings(cx, &bucket.name).await?;
        if s.ownership != Some(ObjectOwnership::BucketOwnerEnforced) {
            fixes.push(Fix::Ownership);
        }
        if s.versioning != Some(BucketVersioningStatus::Enabled) {
            fixes.push(Fix::Versioning);
        }
        let encrypted = match key_arn {
            Some(key) => encryption_in_sync(s.encryption.as_ref(), key),
            None => sse_s3_in_sync(s.encryption.as_ref()),
        };
        if !encrypted {
            fixes.push(Fix::Encryption {
                key_arn: key_arn.map(str::to_owned),
            });
        }
        if !public_access_blocked(s.public_access.as_ref()) {
            fixes.push(Fix::PublicAccessBlock);
        }
        let want = self.policy(cx, &bucket.name, key_arn);
        if !s.policy.as_deref().is_some_and(|p| policy::same(p, &want)) {
            fixes.push(Fix::Policy);
        }
        if !tiered_lifecycle_in_sync(&s.lifecycle, self.expire_after_days(), self.tier())
            || s.transition_minimum != Some(transition_minimum())
        {
            fixes.push(Fix::Lifecycle {
                expire_after_days: self.expire_after_days(),
                tier: self.tier(),
            });
        }
        Ok(fixes)
    }

    async fn fix(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        bucket: &mut FoundBucket,
        fix: Fix,
    ) -> Result<(), AwsError> {
        let s3 = &cx.clients.s3;
        let name = bucket.name.as_str();
        let owner = cx.account_id.as_str();
        match fix {
            Fix::Tags { all, .. } => {
                const OP: &str = "s3:PutBucketTagging";
                let tagging = s3::built(
                    OP,
                    Tagging::builder()
                        .set_tag_set(Some(s3::tags(OP, &all)?))
                        .build(),
                )?;
                s3.put_bucket_tagging()
                    .bucket(name)
                    .expected_bucket_owner(owner)
                    .tagging(tagging)
                    .send()
                    .await
                    .op(OP)?;
                bucket.tags = all;
            }
            Fix::Ownership => {
                const OP: &str = "s3:PutBucketOwnershipControls";
                let rule = s3::built(
                    OP,
                    OwnershipControlsRule::builder()
                        .object_ownership(ObjectOwnership::BucketOwnerEnforced)
                        .build(),
                )?;
                let controls = s3::built(OP, OwnershipControls::builder().rules(rule).build())?;
                s3.put_bucket_ownership_controls()
                    .bucket(name)
                    .expected_bucket_owner(owner)
                    .ownership_controls(controls)
                    .send()
                    .await
                    .op(OP)?;
            }
            Fix::Versioning => {
                s3.put_bucket_versioning()
                    .bucket(name)
                    .expected_bucket_owner(owner)
                    .versioning_configuration(
                        VersioningConfiguration::builder()
                            .status(BucketVersioningStatus::Enabled)
                            .build(),
                    )
                    .send()
                    .await
                    .op("s3:PutBucketVersioning")?;
            }
            Fix::Encryption { key_arn } => {
                const OP: &str = "s3:PutBucketEncryption";
                let algorithm = if key_arn.is_some() {
                    ServerSideEncryption::AwsKms
                } else {
                    ServerSideEncryption::Aes256
                };
                let default = s3::built(
                    OP,
                    ServerSideEncryptionByDefault::builder()
                        .sse_algorithm(algorithm)
                        .set_kms_master_key_id(key_arn.clone())
                        .build(),
                )?;
                // The bucket key cuts KMS requests (and their cost and
                // throttling) by caching a data key per bucket.
                let rule = ServerSideEncryptionRule::builder()
                    .apply_server_side_encryption_by_default(default)
                    .set_bucket_key_enabled(key_arn.is_some().then_some(true))
                    .build();
                let config = s3::built(
                    OP,
                    ServerSideEncryptionConfiguration::builder()
                        .rules(rule)
                        .build(),
                )?;
                s3.put_bucket_encryption()
                    .bucket(name)
                    .expected_bucket_owner(owner)
                    .server_side_encryption_configuration(config)
                    .send()
                    .await
                    .op(OP)?;
            }
            Fix::PublicAccessBlock => {
                s3.put_public_access_block()
                    .bucket(name)
                    .expected_bucket_owner(owner)
                    .public_access_block_configuration(
                        PublicAccessBlockConfiguration::builder()
                            .block_public_acls(true)
                            .ignore_public_acls(true)
                            .block_public_policy(true)
                            .restrict_public_buckets(true)
                            .build(),
                    )
                    .send()
                    .await
                    .op("s3:PutPublicAccessBlock")?;
            }
            Fix::Policy => {
                s3.put_bucket_policy()
                    .bucket(name)
                    .expected_bucket_owner(owner)
                    .policy(self.policy(cx, name, self.key_arn(step)?))
                    .send()
                    .await
                    .op("s3:PutBucketPolicy")?;
            }
            Fix::Lifecycle {
                expire_after_days,
                tier,
            } => {
                const OP: &str = "s3:PutBucketLifecycleConfiguration";
                let config = s3::built(
                    OP,
                    BucketLifecycleConfiguration::builder()
                        .rules(tiered_lifecycle_rule(expire_after_days, tier)?)
                        .build(),
                )?;
                s3.put_bucket_lifecycle_configuration()
                    .bucket(name)
                    .expected_bucket_owner(owner)
                    .lifecycle_configuration(config)
                    .transition_default_minimum_object_size(transition_minimum())
                    .send()
                    .await
                    .op(OP)?;
            }
        }
        Ok(())
    }

    fn record(&self, cx: &Context, bucket: &FoundBucket) -> Record {
        let prefix = match self.purpose {
            Purpose::Audit => "Audit",
            Purpose::AlbLogs => "AlbLogs",
            Purpose::WafLogs => "WafLog",
            Purpose::TransactionLog => "TransactionLog",
        };
        Record::default()
            .resource("bucket", &bucket.name)
            .output(format!("{prefix}BucketName"), &bucket.name)
            .output(format!("{prefix}BucketArn"), bucket_arn(cx, &bucket.name))
    }

    async fn delete(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        bucket: FoundBucket,
    ) -> Result<Vec<String>, AwsError> {
        let name = bucket.name.as_str();
        let mut notes = Vec::new();
        let mut deleted = 0;
        let mut policy_removed = false;
        for attempt in 1..=DELETE_ATTEMPTS {
            deleted += match empty(cx, step, name).await {
                Err(e) if e.is_code(&["AccessDenied"]) && !policy_removed => {
                    // moto enforces our TLS-only Deny without its
                    // aws:SecureTransport condition, so on a plain-http
                    // emulator every object call is refused. Real AWS over
                    // HTTPS never gets here. The bucket is going away, so
                    // dropping its policy loses nothing; retry once.
                    step.progress(format!(
                        "emptying {name}: access denied, removing the bucket policy and retrying"
                    ));
                    cx.clients
                        .s3
                        .delete_bucket_policy()
                        .bucket(name)
                        .expected_bucket_owner(&cx.account_id)
                        .send()
                        .await
                        .op("s3:DeleteBucketPolicy")?;
                    policy_removed = true;
                    notes.push(format!(
                        "removed the bucket policy of {name}: object deletes were denied"
                    ));
                    empty(cx, step, name).await?
                }
                other => other?,
            };
            let result = cx
                .clients
                .s3
                .delete_bucket()
                .bucket(name)
                .expected_bucket_owner(&cx.account_id)
                .send()
                .await
                .op("s3:DeleteBucket");
            match result {
                Ok(_) => break,
                Err(e) if e.is_code(&["NoSuchBucket"]) => break,
                Err(e) if e.is_code(&["BucketNotEmpty"]) => {
                    if attempt == DELETE_ATTEMPTS {
                        return Err(AwsError::Conflict(format!(
                            "S3 bucket {name} was still not empty after {DELETE_ATTEMPTS} rounds \
                             of emptying: something keeps writing to it; stop the writers and \
                             run `payops down` again"
                        )));
                    }
                    step.progress(format!(
                        "{name} received new objects while being emptied; emptying again"
                    ));
                }
                Err(e) => return Err(e),
            }
        }
        if deleted > 0 {
            notes.insert(
                0,
                format!("deleted {deleted} object versions and delete markers"),
            );
        }
        Ok(notes)
    }
}

#[cfg(test)]
mod tests {
    use crate::tags;
    use aws_sdk_s3::Client;
    use aws_sdk_s3::operation::create_bucket::{CreateBucketError, CreateBucketOutput};
    use aws_sdk_s3::operation::delete_bucket::{DeleteBucketError, DeleteBucketOutput};
    use aws_sdk_s3::operation::delete_bucket_policy::DeleteBucketPolicyOutput;
    use aws_sdk_s3::operation::delete_objects::DeleteObjectsOutput;
    use aws_sdk_s3::operation::get_bucket_encryption::GetBucketEncryptionOutput;
    use aws_sdk_s3::operation::get_bucket_lifecycle_configuration::GetBucketLifecycleConfigurationOutput;
    use aws_sdk_s3::operation::get_bucket_ownership_controls::GetBucketOwnershipControlsOutput;
    use aws_sdk_s3::operation::get_bucket_policy::{GetBucketPolicyError, GetBucketPolicyOutput};
    use aws_sdk_s3::operation::get_bucket_tagging::{
        GetBucketTaggingError, GetBucketTaggingOutput,
    };
    use aws_sdk_s3::operation::get_bucket_versioning::GetBucketVersioningOutput;
    use aws_sdk_s3::operation::get_public_access_block::GetPublicAccessBlockOutput;
    use aws_sdk_s3::operation::head_bucket::HeadBucketOutput;
    use aws_sdk_s3::operation::list_object_versions::ListObjectVersionsOutput;
    use aws_sdk_s3::operation::put_bucket_policy::PutBucketPolicyOutput;
    use aws_sdk_s3::operation::put_bucket_tagging::PutBucketTaggingOutput;
    use aws_sdk_s3::operation::put_bucket_versioning::PutBucketVersioningOutput;
    use aws_sdk_s3::types::{DeleteMarkerEntry, Error as S3Error, ObjectVersion};
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    use super::*;
    use crate::engine::{Change, Observation, Removed};
    use crate::naming::{EnvName, Names};
    use crate::resources::testing::{self, ACCOUNT};
    use crate::tags::Tagger;

    const STEP: &str = "s3-bucket:audit";
    const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/s3-key";
    const NAME: &str = "payops-pr1-audit-123456789012-us-east-1";

    fn inputs() -> [(&'static str, Record); 1] {
        [("kms-key:s3", Record::default().output("S3KmsKeyArn", KEY))]
    }

    fn our_tags() -> TagMap {
        Tagger::new(EnvName::parse("pr1").unwrap(), "payments", testing::NOW).for_create(STEP)
    }

    fn tag_output(tags: &TagMap) -> GetBucketTaggingOutput {
        GetBucketTaggingOutput::builder()
            .set_tag_set(Some(s3::tags("test", tags).unwrap()))
            .build()
            .unwrap()
    }

    fn head_ok() -> Rule {
        mock!(Client::head_bucket)
            .match_requests(|r| {
                r.bucket() == Some(NAME) && r.expected_bucket_owner() == Some(ACCOUNT)
            })
            .then_output(|| HeadBucketOutput::builder().build())
    }

    fn head_missing() -> Rule {
        mock!(Client::head_bucket).then_http_response(|| {
            aws_smithy_runtime_api::http::Response::new(
                404.try_into().unwrap(),
                aws_smithy_types::body::SdkBody::empty(),
            )
        })
    }

    fn tagged(tags: TagMap) -> Rule {
        mock!(Client::get_bucket_tagging).then_output(move || tag_output(&tags))
    }

    fn good_lifecycle() -> GetBucketLifecycleConfigurationOutput {
        lifecycle_answer(Some(
            TransitionDefaultMinimumObjectSize::AllStorageClasses128K,
        ))
    }

    /// Our rule, with `minimum` as the answer's
    /// `x-amz-transition-default-minimum-object-size`.
    fn lifecycle_answer(
        minimum: Option<TransitionDefaultMinimumObjectSize>,
    ) -> GetBucketLifecycleConfigurationOutput {
        GetBucketLifecycleConfigurationOutput::builder()
            .rules(lifecycle_rule(EXPIRE_AFTER_DAYS).unwrap())
            .set_transition_default_minimum_object_size(minimum)
            .build()
    }

    /// Every setting read, answering "as desired".
    fn in_sync_settings() -> Vec<Rule> {
        vec![
            mock!(Client::get_bucket_ownership_controls).then_output(|| {
                GetBucketOwnershipControlsOutput::builder()
                    .ownership_controls(
                        OwnershipControls::builder()
                            .rules(
                                OwnershipControlsRule::builder()
                                    .object_ownership(ObjectOwnership::BucketOwnerEnforced)
                                    .build()
                                    .unwrap(),
                            )
                            .build()
                            .unwrap(),
                    )
                    .build()
            }),
            mock!(Client::get_bucket_versioning).then_output(|| {
                GetBucketVersioningOutput::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build()
            }),
            mock!(Client::get_bucket_encryption).then_output(|| {
                let default = ServerSideEncryptionByDefault::builder()
                    .sse_algorithm(ServerSideEncryption::AwsKms)
                    .kms_master_key_id(KEY)
                    .build()
                    .unwrap();
                GetBucketEncryptionOutput::builder()
                    .server_side_encryption_configuration(
                        ServerSideEncryptionConfiguration::builder()
                            .rules(
                                ServerSideEncryptionRule::builder()
                                    .apply_server_side_encryption_by_default(default)
                                    .bucket_key_enabled(true)
                                    .build(),
                            )
                            .build()
                            .unwrap(),
                    )
                    .build()
            }),
            mock!(Client::get_public_access_block).then_output(|| {
                GetPublicAccessBlockOutput::builder()
                    .public_access_block_configuration(
                        PublicAccessBlockConfiguration::builder()
                            .block_public_acls(true)
                            .ignore_public_acls(true)
                            .block_public_policy(true)
                            .restrict_public_buckets(true)
                            .build(),
                    )
                    .build()
            }),
            // Echoed reformatted, as AWS does: compared by meaning.
            mock!(Client::get_bucket_policy).then_output(|| {
                let arn = format!("arn:aws:s3:::{NAME}");
                // The audit bucket's statements about its key, after the
                // TLS-only one AWS reformatted.
                let ours: serde_json::Value = serde_json::from_str(&audit_policy(
                    &testing::context(testing::clients()),
                    NAME,
                    KEY,
                ))
                .unwrap();
                let key_statements: Vec<String> = ours["Statement"].as_array().unwrap()[1..]
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                GetBucketPolicyOutput::builder()
                    .policy(format!(
                        r#"{{"Statement":[{{"Condition":{{"Bool":{{"aws:SecureTransport":"false"}}}},"Resource":["{arn}/*","{arn}"],"Action":"s3:*","Principal":"*","Effect":"Deny","Sid":"DenyInsecureTransport"}},{}],"Version":"2012-10-17"}}"#,
                        key_statements.join(",")
                    ))
                    .build()
            }),
            mock!(Client::get_bucket_lifecycle_configuration).then_output(good_lifecycle),
        ]
    }

    fn client(rules: &[&Rule]) -> Client {
        mock_client!(aws_sdk_s3, RuleMode::MatchAny, rules)
    }

    fn cx_with(rules: &[&Rule]) -> Context {
        let mut clients = testing::clients();
        clients.s3 = client(rules);
        testing::context(clients)
    }

    #[tokio::test]
    async fn creates_the_bucket_tagged_with_acls_off_then_converges_it() {
        let created_tags = our_tags();
        let create = mock!(Client::create_bucket)
            .match_requests(|r| {
                let config = r.create_bucket_configuration();
                r.bucket() == Some(NAME)
                    && r.object_ownership() == Some(&ObjectOwnership::BucketOwnerEnforced)
                    // us-east-1 must not be named as a location constraint.
                    && config.is_some_and(|c| c.location_constraint().is_none())
                    && config.is_some_and(|c| {
                        c.tags().iter().any(|t| t.key() == "payops:step" && t.value() == STEP)
                            && c.tags().iter().any(|t| t.key() == "payops:env" && t.value() == "pr1")
                    })
            })
            .then_output(|| CreateBucketOutput::builder().build());
        let tags = tagged(created_tags);
        // A fresh bucket: nothing configured but what S3 defaults to.
        let ownership = mock!(Client::get_bucket_ownership_controls)
            .then_error(|| {
                aws_sdk_s3::operation::get_bucket_ownership_controls::GetBucketOwnershipControlsError::generic(
                    testing::error_meta("OwnershipControlsNotFoundError"),
                )
            });
        let versioning = mock!(Client::get_bucket_versioning)
            .then_output(|| GetBucketVersioningOutput::builder().build());
        let encryption = mock!(Client::get_bucket_encryption).then_error(|| {
            aws_sdk_s3::operation::get_bucket_encryption::GetBucketEncryptionError::generic(
                testing::error_meta("ServerSideEncryptionConfigurationNotFoundError"),
            )
        });
        let pab = mock!(Client::get_public_access_block).then_error(|| {
            aws_sdk_s3::operation::get_public_access_block::GetPublicAccessBlockError::generic(
                testing::error_meta("NoSuchPublicAccessBlockConfiguration"),
            )
        });
        let policy = mock!(Client::get_bucket_policy).then_error(|| {
            GetBucketPolicyError::generic(testing::error_meta("NoSuchBucketPolicy"))
        });
        let lifecycle = mock!(Client::get_bucket_lifecycle_configuration).then_error(|| {
            aws_sdk_s3::operation::get_bucket_lifecycle_configuration::GetBucketLifecycleConfigurationError::generic(
                testing::error_meta("NoSuchLifecycleConfiguration"),
            )
        });
        let put_ownership = mock!(Client::put_bucket_ownership_controls)
            .match_requests(|r| {
                r.ownership_controls().is_some_and(|c| {
                    c.rules()[0].object_ownership() == &ObjectOwnership::BucketOwnerEnforced
                })
            })
            .then_output(|| {
                aws_sdk_s3::operation::put_bucket_ownership_controls::PutBucketOwnershipControlsOutput::builder().build()
            });
        let put_versioning = mock!(Client::put_bucket_versioning)
            .match_requests(|r| {
                r.versioning_configuration().and_then(|v| v.status())
                    == Some(&BucketVersioningStatus::Enabled)
            })
            .then_output(|| PutBucketVersioningOutput::builder().build());
        let put_encryption = mock!(Client::put_bucket_encryption)
            .match_requests(|r| {
                encryption_in_sync(
                    r.server_side_encryption_configuration()
                        .and_then(|c| c.rules().first()),
                    KEY,
                )
            })
            .then_output(|| {
                aws_sdk_s3::operation::put_bucket_encryption::PutBucketEncryptionOutput::builder()
                    .build()
            });
        let put_pab = mock!(Client::put_public_access_block)
            .match_requests(|r| public_access_blocked(r.public_access_block_configuration()))
            .then_output(|| {
                aws_sdk_s3::operation::put_public_access_block::PutPublicAccessBlockOutput::builder(
                )
                .build()
            });
        let put_policy = mock!(Client::put_bucket_policy)
            .match_requests(|r| {
                let v: serde_json::Value = serde_json::from_str(r.policy().unwrap()).unwrap();
                let s = &v["Statement"][0];
                s["Effect"] == "Deny"
                    && s["Principal"] == "*"
                    && s["Action"] == "s3:*"
                    && s["Condition"]["Bool"]["aws:SecureTransport"] == "false"
                    && s["Resource"]
                        == serde_json::json!([
                            format!("arn:aws:s3:::{NAME}"),
                            format!("arn:aws:s3:::{NAME}/*")
                        ])
            })
            .then_output(|| PutBucketPolicyOutput::builder().build());
        let put_lifecycle = mock!(Client::put_bucket_lifecycle_configuration)
            .match_requests(|r| {
                r.lifecycle_configuration()
                    .is_some_and(|c| lifecycle_in_sync(c.rules(), EXPIRE_AFTER_DAYS))
                    // Explicit, not S3's default.
                    && r.transition_default_minimum_object_size()
                        == Some(&TransitionDefaultMinimumObjectSize::AllStorageClasses128K)
            })
            .then_output(|| {
                aws_sdk_s3::operation::put_bucket_lifecycle_configuration::PutBucketLifecycleConfigurationOutput::builder().build()
            });
        let head = head_missing();
        let cx = cx_with(&[
            &head,
            &create,
            &tags,
            &ownership,
            &versioning,
            &encryption,
            &pab,
            &policy,
            &lifecycle,
            &put_ownership,
            &put_versioning,
            &put_encryption,
            &put_pab,
            &put_policy,
            &put_lifecycle,
        ]);
        let applied = testing::ensure(&cx, STEP, Bucket::audit(), &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(applied.record.outputs["AuditBucketName"], NAME);
        assert_eq!(
            applied.record.outputs["AuditBucketArn"],
            format!("arn:aws:s3:::{NAME}")
        );
        assert_eq!(applied.record.resources["bucket"], NAME);
        for rule in [
            &create,
            &put_ownership,
            &put_versioning,
            &put_encryption,
            &put_pab,
            &put_policy,
            &put_lifecycle,
        ] {
            assert_eq!(rule.num_calls(), 1);
        }
        assert_eq!(applied.notes.len(), 7, "{:?}", applied.notes);
    }

    #[tokio::test]
    async fn outside_us_east_1_the_region_is_the_location_constraint() {
        let create = mock!(Client::create_bucket)
            .match_requests(|r| {
                r.bucket() == Some("payops-pr1-audit-123456789012-eu-west-2")
                    && r.create_bucket_configuration()
                        .and_then(|c| c.location_constraint())
                        == Some(&BucketLocationConstraint::EuWest2)
            })
            .then_output(|| CreateBucketOutput::builder().build());
        let tags = tagged(our_tags());
        let mut clients = testing::clients();
        clients.s3 = client(&[&create, &tags]);
        let mut cx = testing::context(clients);
        cx.region = "eu-west-2".into();
        cx.names = Names::new(EnvName::parse("pr1").unwrap(), ACCOUNT, "eu-west-2");
        let id = crate::engine::StepId::from(STEP);
        let events = testing::Events::default();
        let step = testing::step_cx(
            &id,
            inputs().into_iter().map(|(k, r)| (k.into(), r)).collect(),
            &events,
        );
        let found = Bucket::audit().create(&cx, &step).await.unwrap();
        assert_eq!(found.name, "payops-pr1-audit-123456789012-eu-west-2");
        assert_eq!(create.num_calls(), 1);
        assert_eq!(
            *events.remembered.lock().unwrap(),
            [("bucket".to_owned(), found.name.clone())]
        );
    }

    #[tokio::test]
    async fn an_owned_bucket_in_sync_is_adopted_without_mutating_calls() {
        let head = head_ok();
        let tags = tagged(our_tags());
        let settings = in_sync_settings();
        let mut rules: Vec<&Rule> = vec![&head, &tags];
        rules.extend(settings.iter());
        // No rule for any Put/Create/Delete: such a call would fail the test.
        let cx = cx_with(&rules);
        let applied = testing::ensure(&cx, STEP, Bucket::audit(), &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Unchanged);
        assert!(applied.notes.is_empty(), "{:?}", applied.notes);
        assert_eq!(head.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_same_named_bucket_without_our_tags_is_refused() {
        let head = head_ok();
        let tags = mock!(Client::get_bucket_tagging)
            .then_error(|| GetBucketTaggingError::generic(testing::error_meta("NoSuchTagSet")));
        let cx = cx_with(&[&head, &tags]);
        let err = testing::ensure(&cx, STEP, Bucket::audit(), &inputs())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("not tagged as this env's"), "{err}");
        assert!(err.contains(NAME), "{err}");
        // And `down` must not delete it: no delete rules, the error is reported.
        let err = testing::destroy(&cx, STEP, Bucket::audit())
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("no payops ownership tags"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_bucket_of_another_account_answers_403_and_is_never_touched() {
        let head = mock!(Client::head_bucket).then_http_response(|| {
            aws_smithy_runtime_api::http::Response::new(
                403.try_into().unwrap(),
                aws_smithy_types::body::SdkBody::empty(),
            )
        });
        let cx = cx_with(&[&head]);
        let err = testing::ensure(&cx, STEP, Bucket::audit(), &inputs())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("another AWS account owns it"), "{err}");
        assert!(testing::destroy(&cx, STEP, Bucket::audit()).await.is_err());
    }

    #[tokio::test]
    async fn a_globally_taken_name_is_a_clear_error() {
        let head = head_missing();
        let create = mock!(Client::create_bucket)
            .then_error(|| CreateBucketError::generic(testing::error_meta("BucketAlreadyExists")));
        let cx = cx_with(&[&head, &create]);
        let err = testing::ensure(&cx, STEP, Bucket::audit(), &inputs())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("taken by another AWS account"), "{err}");
    }

    #[tokio::test]
    async fn already_owned_by_you_re_finds_and_still_checks_the_tags() {
        // HeadBucket said missing, then CreateBucket says we own it: it was
        // created meanwhile, but not necessarily by payops.
        let head = mock!(Client::head_bucket)
            .sequence()
            .http_status(404, None)
            .output(|| HeadBucketOutput::builder().build())
            .build();
        let create = mock!(Client::create_bucket).then_error(|| {
            CreateBucketError::generic(testing::error_meta("BucketAlreadyOwnedByYou"))
        });
        let mut foreign = our_tags();
        foreign.insert(tags::ENV.into(), "pr2".into());
        let tags = tagged(foreign);
        let cx = cx_with(&[&head, &create, &tags]);
        let err = testing::ensure(&cx, STEP, Bucket::audit(), &inputs())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("belongs to payops env pr2"), "{err}");
        assert_eq!(head.num_calls(), 2);
    }

    #[tokio::test]
    async fn drift_is_reported_by_observe_and_repaired_by_ensure() {
        let head = head_ok();
        // Someone removed a cost tag and suspended versioning, and added a tag
        // of their own that must survive the tag repair.
        let mut existing = our_tags();
        existing.remove("CostCenter");
        existing.insert("team".into(), "risk".into());
        let tags = tagged(existing);
        let suspended = mock!(Client::get_bucket_versioning).then_output(|| {
            GetBucketVersioningOutput::builder()
                .status(BucketVersioningStatus::Suspended)
                .build()
        });
        let settings = in_sync_settings();
        let mut rules: Vec<&Rule> = vec![&head, &tags, &suspended];
        rules.extend(settings.iter());
        let cx = cx_with(&rules);
        let observed = testing::observe(&cx, STEP, Bucket::audit(), &inputs())
            .await
            .unwrap();
        let Observation::Present { drift, .. } = observed else {
            panic!("expected present, got {observed:?}");
        };
        assert_eq!(drift, ["add tags CostCenter", "enable versioning"]);

        let put_tags = mock!(Client::put_bucket_tagging)
            .match_requests(|r| {
                let set = r.tagging().map(|t| t.tag_set()).unwrap_or_default();
                // The whole set: ours plus theirs, since S3 replaces it.
                set.len() == our_tags().len() + 1
                    && set.iter().any(|t| t.key() == "team" && t.value() == "risk")
                    && set
                        .iter()
                        .any(|t| t.key() == "CostCenter" && t.value() == "payments")
            })
            .then_output(|| PutBucketTaggingOutput::builder().build());
        let put_versioning = mock!(Client::put_bucket_versioning)
            .match_requests(|r| {
                r.versioning_configuration().and_then(|v| v.status())
                    == Some(&BucketVersioningStatus::Enabled)
            })
            .then_output(|| PutBucketVersioningOutput::builder().build());
        rules.push(&put_tags);
        rules.push(&put_versioning);
        let cx = cx_with(&rules);
        let applied = testing::ensure(&cx, STEP, Bucket::audit(), &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Updated);
        assert_eq!(put_tags.num_calls(), 1);
        assert_eq!(put_versioning.num_calls(), 1);
    }

    #[tokio::test]
    async fn small_objects_stay_in_standard_by_an_explicit_minimum_size() {
        // The rule itself is ours; what differs is which objects Glacier
        // takes: `varies_by_storage_class` (a configuration put before
        // September 2024, or by hand) would move every sub-KB audit record,
        // at ~40 KB of billed overhead each; an answer without the value
        // says nothing about what applies.
        for minimum in [
            Some(TransitionDefaultMinimumObjectSize::VariesByStorageClass),
            None,
        ] {
            let head = head_ok();
            let tags = tagged(our_tags());
            let answer = lifecycle_answer(minimum.clone());
            let lifecycle = mock!(Client::get_bucket_lifecycle_configuration)
                .then_output(move || answer.clone());
            let settings = in_sync_settings();
            let mut rules: Vec<&Rule> = vec![&head, &tags, &lifecycle];
            rules.extend(settings.iter());
            let cx = cx_with(&rules);
            let Observation::Present { drift, .. } =
                testing::observe(&cx, STEP, Bucket::audit(), &inputs())
                    .await
                    .unwrap()
            else {
                panic!("expected present");
            };
            assert_eq!(drift.len(), 1, "{minimum:?}: {drift:?}");
            assert!(
                drift[0].contains("Glacier after 90 days for objects of 128 KB or more"),
                "{drift:?}"
            );

            let put = mock!(Client::put_bucket_lifecycle_configuration)
                .match_requests(|r| {
                    r.transition_default_minimum_object_size()
                        == Some(&TransitionDefaultMinimumObjectSize::AllStorageClasses128K)
                        && r.lifecycle_configuration()
                            .is_some_and(|c| lifecycle_in_sync(c.rules(), EXPIRE_AFTER_DAYS))
                })
                .then_output(|| {
                    aws_sdk_s3::operation::put_bucket_lifecycle_configuration::PutBucketLifecycleConfigurationOutput::builder().build()
                });
            rules.push(&put);
            let cx = cx_with(&rules);
            let applied = testing::ensure(&cx, STEP, Bucket::audit(), &inputs())
                .await
                .unwrap();
            assert_eq!(applied.change, Change::Updated, "{minimum:?}");
            assert_eq!(put.num_calls(), 1, "{minimum:?}");
        }
    }

    /// IAM's condition semantics for the operators the audit policy uses:
    /// `Null: true` holds when the key is absent; `StringEquals` is false and
    /// `StringNotEquals` true for an absent key; conditions are ANDed.
    fn denies(statement: &serde_json::Value, request: &[(&str, &str)]) -> bool {
        let value = |k: &str| request.iter().find(|(rk, _)| *rk == k).map(|(_, v)| *v);
        statement["Condition"]
            .as_object()
            .unwrap()
            .iter()
            .all(|(op, pairs)| {
                pairs.as_object().unwrap().iter().all(|(k, want)| {
                    let want = want.as_str().unwrap();
                    match op.as_str() {
                        "Null" => (value(k).is_none()) == (want == "true"),
                        "StringEquals" => value(k) == Some(want),
                        "StringNotEquals" => value(k) != Some(want),
                        "Bool" => value(k) == Some(want),
                        other => panic!("operator {other} not modelled"),
                    }
                })
            })
    }

    #[test]
    fn audit_objects_can_be_written_only_under_the_envs_key() {
        let cx = testing::context(testing::clients());
        let doc: serde_json::Value = serde_json::from_str(&audit_policy(&cx, "b", KEY)).unwrap();
        let puts: Vec<&serde_json::Value> = doc["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["Action"] == "s3:PutObject")
            .collect();
        assert!(
            puts.iter()
                .all(|s| s["Effect"] == "Deny" && s["Resource"] == "arn:aws:s3:::b/*")
        );
        let denied = |request: &[(&str, &str)]| puts.iter().any(|s| denies(s, request));
        let sse = "s3:x-amz-server-side-encryption";
        let key = "s3:x-amz-server-side-encryption-aws-kms-key-id";
        // No header: the bucket's default, the env's key.
        assert!(!denied(&[("aws:SecureTransport", "true")]));
        assert!(!denied(&[(sse, "aws:kms"), (key, KEY)]));
        // aws:kms without a key id means aws/s3; another key or SSE-S3 escape
        // the env's key policy.
        assert!(denied(&[(sse, "aws:kms")]));
        assert!(denied(&[
            (sse, "aws:kms"),
            (key, "arn:aws:kms:us-east-1:1:key/other")
        ]));
        assert!(denied(&[(sse, "AES256")]));
        // TLS only, as for every bucket.
        assert_eq!(doc["Statement"][0]["Sid"], "DenyInsecureTransport");
    }

    #[tokio::test]
    async fn a_policy_that_allows_plain_http_is_replaced() {
        let head = head_ok();
        let tags = tagged(our_tags());
        let loose = mock!(Client::get_bucket_policy).then_output(|| {
            GetBucketPolicyOutput::builder()
                .policy(r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"*"}]}"#)
                .build()
        });
        let put_policy = mock!(Client::put_bucket_policy)
            .then_output(|| PutBucketPolicyOutput::builder().build());
        let settings = in_sync_settings();
        let mut rules: Vec<&Rule> = vec![&head, &tags, &loose, &put_policy];
        rules.extend(settings.iter());
        let cx = cx_with(&rules);
        let applied = testing::ensure(&cx, STEP, Bucket::audit(), &inputs())
            .await
            .unwrap();
        assert_eq!(applied.notes, ["set the TLS-only bucket policy"]);
        assert_eq!(put_policy.num_calls(), 1);
    }

    #[tokio::test]
    async fn encryption_with_another_key_or_without_bucket_key_is_drift() {
        let other = ServerSideEncryptionRule::builder()
            .apply_server_side_encryption_by_default(
                ServerSideEncryptionByDefault::builder()
                    .sse_algorithm(ServerSideEncryption::AwsKms)
                    .kms_master_key_id("arn:aws:kms:us-east-1:123456789012:key/other")
                    .build()
                    .unwrap(),
            )
            .bucket_key_enabled(true)
            .build();
        assert!(!encryption_in_sync(Some(&other), KEY));
        let no_bucket_key = ServerSideEncryptionRule::builder()
            .apply_server_side_encryption_by_default(
                ServerSideEncryptionByDefault::builder()
                    .sse_algorithm(ServerSideEncryption::AwsKms)
                    .kms_master_key_id(KEY)
                    .build()
                    .unwrap(),
            )
            .build();
        assert!(!encryption_in_sync(Some(&no_bucket_key), KEY));
        let s3_managed = ServerSideEncryptionRule::builder()
            .apply_server_side_encryption_by_default(
                ServerSideEncryptionByDefault::builder()
                    .sse_algorithm(ServerSideEncryption::Aes256)
                    .build()
                    .unwrap(),
            )
            .bucket_key_enabled(true)
            .build();
        assert!(!encryption_in_sync(Some(&s3_managed), KEY));
        assert!(!encryption_in_sync(None, KEY));
    }

    #[test]
    fn lifecycle_is_seven_years_with_glacier_and_noncurrent_expiry() {
        let rule = lifecycle_rule(EXPIRE_AFTER_DAYS).unwrap();
        assert_eq!(rule.expiration().unwrap().days(), Some(7 * 365));
        assert!(lifecycle_in_sync(
            std::slice::from_ref(&rule),
            EXPIRE_AFTER_DAYS
        ));
        // A second rule, a shorter expiry or a prefix filter are all drift.
        assert!(!lifecycle_in_sync(
            &[rule.clone(), rule.clone()],
            EXPIRE_AFTER_DAYS
        ));
        let mut shorter = rule.clone();
        shorter.expiration = Some(LifecycleExpiration::builder().days(30).build());
        assert!(!lifecycle_in_sync(&[shorter], EXPIRE_AFTER_DAYS));
        let mut prefixed = rule.clone();
        prefixed.filter = Some(LifecycleRuleFilter::builder().prefix("logs/").build());
        assert!(!lifecycle_in_sync(&[prefixed], EXPIRE_AFTER_DAYS));
        let mut disabled = rule;
        disabled.status = ExpirationStatus::Disabled;
        assert!(!lifecycle_in_sync(&[disabled], EXPIRE_AFTER_DAYS));
        assert!(!lifecycle_in_sync(&[], EXPIRE_AFTER_DAYS));
    }

    fn versions(prefix: &str, n: usize) -> Vec<ObjectVersion> {
        (0..n)
            .map(|i| {
                ObjectVersion::builder()
                    .key(format!("{prefix}{i}"))
                    .version_id(format!("v{i}"))
                    .build()
            })
            .collect()
    }

    #[tokio::test]
    async fn destroy_empties_every_version_in_batches_of_1000_then_deletes() {
        let head = head_ok();
        let tags = tagged(our_tags());
        // Page 1 (1000 versions) is truncated; page 2 has versions and delete
        // markers, more than one batch of them (AWS pages hold at most 1000,
        // but nothing should rely on it): 2200 deletions in all.
        let page1 = mock!(Client::list_object_versions)
            .match_requests(|r| {
                r.key_marker().is_none() && r.expected_bucket_owner() == Some(ACCOUNT)
            })
            .then_output(|| {
                ListObjectVersionsOutput::builder()
                    .set_versions(Some(versions("a/", 1000)))
                    .is_truncated(true)
                    .next_key_marker("a/999")
                    .next_version_id_marker("v999")
                    .build()
            });
        let page2 = mock!(Client::list_object_versions)
            .match_requests(|r| {
                r.key_marker() == Some("a/999") && r.version_id_marker() == Some("v999")
            })
            .then_output(|| {
                ListObjectVersionsOutput::builder()
                    .set_versions(Some(versions("b/", 300)))
                    .set_delete_markers(Some(
                        (0..900)
                            .map(|i| {
                                DeleteMarkerEntry::builder()
                                    .key(format!("c/{i}"))
                                    .version_id(format!("m{i}"))
                                    .build()
                            })
                            .collect(),
                    ))
                    .is_truncated(false)
                    .build()
            });
        let delete_full = mock!(Client::delete_objects)
            .match_requests(|r| {
                let d = r.delete().unwrap();
                d.quiet() == Some(true)
                    && d.objects().len() == 1000
                    && d.objects().iter().all(|o| o.version_id().is_some())
            })
            .then_output(|| DeleteObjectsOutput::builder().build());
        let delete_rest = mock!(Client::delete_objects)
            .match_requests(|r| {
                let d = r.delete().unwrap();
                d.quiet() == Some(true)
                    && d.objects().len() == 200
                    && d.objects()
                        .iter()
                        .any(|o| o.key() == "c/899" && o.version_id() == Some("m899"))
            })
            .then_output(|| DeleteObjectsOutput::builder().build());
        let delete_bucket = mock!(Client::delete_bucket)
            .match_requests(|r| r.bucket() == Some(NAME))
            .then_output(|| DeleteBucketOutput::builder().build());
        let cx = cx_with(&[
            &head,
            &tags,
            &page1,
            &page2,
            &delete_full,
            &delete_rest,
            &delete_bucket,
        ]);
        let removed = testing::destroy(&cx, STEP, Bucket::audit()).await.unwrap();
        let Removed::Deleted { notes } = removed else {
            panic!("expected deleted");
        };
        assert_eq!(delete_full.num_calls(), 2);
        assert_eq!(delete_rest.num_calls(), 1);
        assert_eq!(delete_bucket.num_calls(), 1);
        assert!(notes[0].contains("2200"), "{notes:?}");
    }

    #[tokio::test]
    async fn destroy_retries_bucket_not_empty_after_emptying_again() {
        let head = head_ok();
        let tags = tagged(our_tags());
        // A writer lands one object after the first pass.
        let list = mock!(Client::list_object_versions)
            .sequence()
            .output(|| ListObjectVersionsOutput::builder().build())
            .output(|| {
                ListObjectVersionsOutput::builder()
                    .set_versions(Some(versions("late/", 1)))
                    .build()
            })
            .build();
        let delete_objects =
            mock!(Client::delete_objects).then_output(|| DeleteObjectsOutput::builder().build());
        let delete_bucket = mock!(Client::delete_bucket)
            .sequence()
            .error(|| DeleteBucketError::generic(testing::error_meta("BucketNotEmpty")))
            .output(|| DeleteBucketOutput::builder().build())
            .build();
        let cx = cx_with(&[&head, &tags, &list, &delete_objects, &delete_bucket]);
        let removed = testing::destroy(&cx, STEP, Bucket::audit()).await.unwrap();
        assert!(matches!(removed, Removed::Deleted { .. }));
        assert_eq!(list.num_calls(), 2);
        assert_eq!(delete_objects.num_calls(), 1);
        assert_eq!(delete_bucket.num_calls(), 2);
    }

    #[tokio::test]
    async fn destroy_gives_up_on_a_bucket_that_never_stays_empty() {
        let head = head_ok();
        let tags = tagged(our_tags());
        let list = mock!(Client::list_object_versions)
            .then_output(|| ListObjectVersionsOutput::builder().build());
        let delete_bucket = mock!(Client::delete_bucket)
            .then_error(|| DeleteBucketError::generic(testing::error_meta("BucketNotEmpty")));
        let cx = cx_with(&[&head, &tags, &list, &delete_bucket]);
        let err = testing::destroy(&cx, STEP, Bucket::audit())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("keeps writing"), "{err}");
        assert_eq!(delete_bucket.num_calls(), DELETE_ATTEMPTS as usize);
    }

    #[tokio::test]
    async fn denied_object_deletes_drop_the_policy_and_retry_once() {
        // moto over plain http: the TLS-only policy denies every key.
        let head = head_ok();
        let tags = tagged(our_tags());
        let list = mock!(Client::list_object_versions)
            .sequence()
            .output(|| {
                ListObjectVersionsOutput::builder()
                    .set_versions(Some(versions("k", 2)))
                    .build()
            })
            .times(2)
            .build();
        let delete_objects = mock!(Client::delete_objects)
            .sequence()
            .output(|| {
                DeleteObjectsOutput::builder()
                    .errors(
                        S3Error::builder()
                            .key("k0")
                            .code("AccessDenied")
                            .message("Access Denied")
                            .build(),
                    )
                    .build()
            })
            .output(|| DeleteObjectsOutput::builder().build())
            .build();
        let delete_policy = mock!(Client::delete_bucket_policy)
            .match_requests(|r| r.bucket() == Some(NAME))
            .then_output(|| DeleteBucketPolicyOutput::builder().build());
        let delete_bucket =
            mock!(Client::delete_bucket).then_output(|| DeleteBucketOutput::builder().build());
        let cx = cx_with(&[
            &head,
            &tags,
            &list,
            &delete_objects,
            &delete_policy,
            &delete_bucket,
        ]);
        let removed = testing::destroy(&cx, STEP, Bucket::audit()).await.unwrap();
        let Removed::Deleted { notes } = removed else {
            panic!("expected deleted");
        };
        assert_eq!(delete_policy.num_calls(), 1);
        assert_eq!(delete_objects.num_calls(), 2);
        assert!(
            notes
                .iter()
                .any(|n| n.contains("removed the bucket policy")),
            "{notes:?}"
        );
    }

    #[tokio::test]
    async fn access_denied_twice_is_reported_not_looped() {
        let head = head_ok();
        let tags = tagged(our_tags());
        let list = mock!(Client::list_object_versions).then_error(|| {
            aws_sdk_s3::operation::list_object_versions::ListObjectVersionsError::generic(
                testing::error_meta("AccessDenied"),
            )
        });
        let delete_policy = mock!(Client::delete_bucket_policy)
            .then_output(|| DeleteBucketPolicyOutput::builder().build());
        let cx = cx_with(&[&head, &tags, &list, &delete_policy]);
        let err = testing::destroy(&cx, STEP, Bucket::audit())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("AccessDenied"), "{err}");
        assert_eq!(delete_policy.num_calls(), 1);
        assert_eq!(list.num_calls(), 2);
    }

    #[tokio::test]
    async fn destroy_of_a_missing_bucket_is_success() {
        let head = head_missing();
        let cx = cx_with(&[&head]);
        let removed = testing::destroy(&cx, STEP, Bucket::audit()).await.unwrap();
        assert_eq!(removed, Removed::AlreadyAbsent);
    }

    #[tokio::test]
    async fn a_bucket_gone_during_delete_is_success() {
        let head = head_ok();
        let tags = tagged(our_tags());
        let list = mock!(Client::list_object_versions)
            .then_output(|| ListObjectVersionsOutput::builder().build());
        let delete_bucket = mock!(Client::delete_bucket)
            .then_error(|| DeleteBucketError::generic(testing::error_meta("NoSuchBucket")));
        let cx = cx_with(&[&head, &tags, &list, &delete_bucket]);
        let removed = testing::destroy(&cx, STEP, Bucket::audit()).await.unwrap();
        assert!(matches!(removed, Removed::Deleted { .. }));
        assert_eq!(delete_bucket.num_calls(), 1);
    }

    #[test]
    fn alb_log_delivery_may_write_only_under_this_accounts_log_prefix() {
        let cx = testing::context(testing::clients());
        let policy: serde_json::Value =
            serde_json::from_str(&alb_logs_policy(&cx, "logs-bucket")).unwrap();
        let statements = policy["Statement"].as_array().unwrap();
        assert_eq!(statements.len(), 2);
        // Still TLS-only for everyone.
        assert_eq!(statements[0]["Sid"], "DenyInsecureTransport");
        let delivery = &statements[1];
        assert_eq!(delivery["Effect"], "Allow");
        assert_eq!(
            delivery["Principal"]["AWS"], "arn:aws:iam::127311923021:root",
            "us-east-1's ELB log account"
        );
        assert_eq!(delivery["Action"], "s3:PutObject");
        assert_eq!(
            delivery["Resource"],
            "arn:aws:s3:::logs-bucket/alb/AWSLogs/123456789012/*"
        );
    }

    #[test]
    fn regions_newer_than_the_elb_account_list_use_the_log_delivery_service() {
        let env = EnvName::parse("pr1").unwrap();
        let cx = Context::new(
            Names::new(env.clone(), testing::ACCOUNT, "ap-southeast-5"),
            Tagger::new(env, "payments", testing::NOW),
            crate::spec::EnvSpec::default(),
            testing::clients(),
            testing::ACCOUNT,
            "ap-southeast-5",
        );
        let policy: serde_json::Value = serde_json::from_str(&alb_logs_policy(&cx, "b")).unwrap();
        assert_eq!(
            policy["Statement"][1]["Principal"]["Service"],
            "logdelivery.elasticloadbalancing.amazonaws.com"
        );
        assert_eq!(elb_log_account("eu-west-1"), Some("156460612806"));
    }

    #[test]
    fn waf_log_delivery_may_write_only_this_accounts_logs_with_the_owner_acl() {
        let cx = testing::context(testing::clients());
        let name = cx.names.waf_logs_bucket();
        assert!(name.starts_with("aws-waf-logs-"), "WAF refuses other names");
        let policy: serde_json::Value = serde_json::from_str(&waf_logs_policy(&cx, &name)).unwrap();
        let s = policy["Statement"].as_array().unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0]["Sid"], "DenyInsecureTransport");
        let write = &s[1];
        assert_eq!(write["Principal"]["Service"], "delivery.logs.amazonaws.com");
        assert_eq!(write["Action"], "s3:PutObject");
        assert_eq!(
            write["Resource"],
            format!("arn:aws:s3:::{name}/AWSLogs/123456789012/*")
        );
        let cond = &write["Condition"];
        assert_eq!(
            cond["StringEquals"]["s3:x-amz-acl"],
            "bucket-owner-full-control"
        );
        assert_eq!(cond["StringEquals"]["aws:SourceAccount"], "123456789012");
        assert_eq!(
            cond["ArnLike"]["aws:SourceArn"],
            "arn:aws:logs:us-east-1:123456789012:*"
        );
        assert_eq!(s[2]["Resource"], format!("arn:aws:s3:::{name}"));
        assert!(
            s[2]["Condition"]["StringEquals"]
                .get("s3:x-amz-acl")
                .is_none()
        );
        let bucket = Bucket::waf_logs();
        assert_eq!(bucket.expire_after_days(), 400);
    }

    #[test]
    fn access_log_buckets_must_use_s3_managed_keys() {
        let s3_managed = ServerSideEncryptionRule::builder()
            .apply_server_side_encryption_by_default(
                ServerSideEncryptionByDefault::builder()
                    .sse_algorithm(ServerSideEncryption::Aes256)
                    .build()
                    .unwrap(),
            )
            .build();
        assert!(sse_s3_in_sync(Some(&s3_managed)));
        let kms = ServerSideEncryptionRule::builder()
            .apply_server_side_encryption_by_default(
                ServerSideEncryptionByDefault::builder()
                    .sse_algorithm(ServerSideEncryption::AwsKms)
                    .kms_master_key_id(KEY)
                    .build()
                    .unwrap(),
            )
            .build();
        // ELB's log delivery cannot write to an SSE-KMS bucket.
        assert!(!sse_s3_in_sync(Some(&kms)));
        assert!(!sse_s3_in_sync(None));
        assert_eq!(Bucket::alb_logs().expire_after_days(), 400);
    }
}
