//! The bucket GuardDuty exports findings to: SSE-KMS with the findings key,
//! public access blocked, TLS only, findings expired after 90 days.
//!
//! AWS rules encoded here (GuardDuty user guide, guardduty_exportfindings,
//! "Attach a policy to your Amazon S3 bucket"):
//! - `guardduty.amazonaws.com` needs `s3:PutObject` on the objects and
//!   `s3:GetBucketLocation` on the bucket, each with `aws:SourceAccount` and
//!   `aws:SourceArn` = the detector's ARN, so no other account's detector can
//!   write here (the confused deputy).
//! - It also denies GuardDuty's PutObject without SSE-KMS, or with another
//!   key than the findings key, and every request without TLS.
//! - The key and bucket must be in the detector's region (both are the
//!   baseline's of this region).
//! - Bucket names are global: a name taken by another account answers
//!   BucketAlreadyExists; one this account holds, BucketAlreadyOwnedByYou.
//! - DeleteBucket fails with BucketNotEmpty until every object (version) is
//!   deleted.

use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, BucketLocationConstraint,
    BucketVersioningStatus, CreateBucketConfiguration, Delete, ExpirationStatus,
    LifecycleExpiration, LifecycleRule, LifecycleRuleFilter, NoncurrentVersionExpiration,
    ObjectIdentifier, ObjectOwnership, PublicAccessBlockConfiguration, ServerSideEncryption,
    ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    Tagging, VersioningConfiguration,
};
use serde_json::{Value, json};

use crate::aws::{AwsError, OpResult, absent_on, built, policy};
use crate::resources::sdk::s3 as sdk;
use crate::tags::{self, TagMap};

use super::{Account, ItemReport, Owner, check_ours, missing_tags, owner_of};

pub const ITEM: &str = "findings-bucket";
/// Findings older than this are deleted (issue 17: 90 days).
pub const EXPIRE_AFTER_DAYS: i32 = 90;
const LIFECYCLE_RULE_ID: &str = "payops-findings-expiry";
/// Uploads a service abandoned are cleaned up after a week (both buckets).
const ABORT_MULTIPART_DAYS: i32 = 7;

/// The bucket policy GuardDuty's export needs, and no more.
pub fn bucket_policy(acct: &Account<'_>, key_arn: &str, detector_id: &str) -> Value {
    let bucket = acct.findings_bucket_arn();
    let objects = format!("{bucket}/*");
    let from_this_detector = json!({ "StringEquals": {
        "aws:SourceAccount": acct.id,
        "aws:SourceArn": acct.detector_arn(detector_id)
    } });
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [bucket, objects],
                "Condition": { "Bool": { "aws:SecureTransport": "false" } }
            },
            {
                "Sid": "DenyFindingsWithAnotherKey",
                "Effect": "Deny",
                "Principal": { "Service": "guardduty.amazonaws.com" },
                "Action": "s3:PutObject",
                "Resource": objects,
                "Condition": { "StringNotEquals": {
                    "s3:x-amz-server-side-encryption-aws-kms-key-id": key_arn
                } }
            },
            {
                "Sid": "DenyUnencryptedFindings",
                "Effect": "Deny",
                "Principal": { "Service": "guardduty.amazonaws.com" },
                "Action": "s3:PutObject",
                "Resource": objects,
                "Condition": { "StringNotEquals": {
                    "s3:x-amz-server-side-encryption": "aws:kms"
                } }
            },
            {
                "Sid": "GuardDutyWritesFindings",
                "Effect": "Allow",
                "Principal": { "Service": "guardduty.amazonaws.com" },
                "Action": "s3:PutObject",
                "Resource": objects,
                "Condition": from_this_detector
            },
            {
                "Sid": "GuardDutyLocatesTheBucket",
                "Effect": "Allow",
                "Principal": { "Service": "guardduty.amazonaws.com" },
                "Action": "s3:GetBucketLocation",
                "Resource": bucket,
                "Condition": from_this_detector
            }
        ]
    })
}

/// A baseline bucket's one lifecycle rule: what expires after how long.
#[derive(Clone, Copy)]
pub(super) struct Retention {
    pub rule_id: &'static str,
    pub expires: Expires,
}

#[derive(Clone, Copy)]
pub(super) enum Expires {
    /// Objects, this many days after they were written.
    Objects(i32),
    /// Only versions replaced or deleted, this many days after that.
    NoncurrentVersions(i32),
}

const RETENTION: Retention = Retention {
    rule_id: LIFECYCLE_RULE_ID,
    expires: Expires::Objects(EXPIRE_AFTER_DAYS),
};

/// The lifecycle configuration of `retention`, which also cleans up
/// abandoned multipart uploads.
pub(super) fn lifecycle(retention: Retention) -> Result<BucketLifecycleConfiguration, AwsError> {
    const OP: &str = "s3:PutBucketLifecycleConfiguration";
    let rule = LifecycleRule::builder()
        .id(retention.rule_id)
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix("").build())
        .abort_incomplete_multipart_upload(
            AbortIncompleteMultipartUpload::builder()
                .days_after_initiation(ABORT_MULTIPART_DAYS)
                .build(),
        );
    let rule = match retention.expires {
        Expires::Objects(days) => {
            rule.expiration(LifecycleExpiration::builder().days(days).build())
        }
        Expires::NoncurrentVersions(days) => rule.noncurrent_version_expiration(
            NoncurrentVersionExpiration::builder()
                .noncurrent_days(days)
                .build(),
        ),
    };
    let rule = built(OP, rule.build())?;
    built(
        OP,
        BucketLifecycleConfiguration::builder().rules(rule).build(),
    )
}

/// Whether `rules` hold `retention`'s rule, enabled, expiring what it does
/// when it does.
pub(super) fn lifecycle_in_sync(retention: Retention, rules: &[LifecycleRule]) -> bool {
    rules.iter().any(|r| {
        r.id() == Some(retention.rule_id)
            && r.status() == &ExpirationStatus::Enabled
            && match retention.expires {
                Expires::Objects(days) => {
                    r.expiration().and_then(LifecycleExpiration::days) == Some(days)
                }
                Expires::NoncurrentVersions(days) => {
                    r.noncurrent_version_expiration()
                        .and_then(NoncurrentVersionExpiration::noncurrent_days)
                        == Some(days)
                }
            }
    })
}

fn encryption_in_sync(rules: &[ServerSideEncryptionRule], key_arn: &str) -> bool {
    rules.iter().any(|r| {
        r.apply_server_side_encryption_by_default()
            .is_some_and(|d| {
                d.sse_algorithm() == &ServerSideEncryption::AwsKms
                    && d.kms_master_key_id() == Some(key_arn)
            })
    })
}

fn public_access_blocked(c: Option<&PublicAccessBlockConfiguration>) -> bool {
    c.is_some_and(|c| {
        c.block_public_acls() == Some(true)
            && c.ignore_public_acls() == Some(true)
            && c.block_public_policy() == Some(true)
            && c.restrict_public_buckets() == Some(true)
    })
}

/// The bucket's tags; `None` when there is no such bucket.
async fn find(acct: &Account<'_>, name: &str) -> Result<Option<TagMap>, AwsError> {
    let got = acct
        .clients
        .s3
        .get_bucket_tagging()
        .bucket(name)
        .expected_bucket_owner(&acct.id)
        .send()
        .await
        .op("s3:GetBucketTagging");
    match got {
        Ok(out) => Ok(Some(tags::to_map(out.tag_set(), |t| {
            (Some(t.key()), Some(t.value()))
        }))),
        Err(e) if e.is_code(&["NoSuchTagSet"]) => Ok(Some(TagMap::new())),
        Err(e) if e.is_code(&["NoSuchBucket"]) => Ok(None),
        Err(e) => Err(e),
    }
}

async fn put_tags(acct: &Account<'_>, name: &str, tags: &TagMap) -> Result<(), AwsError> {
    const OP: &str = "s3:PutBucketTagging";
    let tagging = built(
        OP,
        Tagging::builder()
            .set_tag_set(Some(sdk::tags(OP, tags)?))
            .build(),
    )?;
    acct.clients
        .s3
        .put_bucket_tagging()
        .bucket(name)
        .expected_bucket_owner(&acct.id)
        .tagging(tagging)
        .send()
        .await
        .op(OP)
        .map(drop)
}

/// Makes sure the bucket exists with its encryption, public access block,
/// policy, lifecycle and tags.
pub async fn ensure(
    acct: &Account<'_>,
    key_arn: &str,
    detector_id: &str,
) -> Result<ItemReport, AwsError> {
    let shape = Shape {
        item: ITEM,
        name: acct.findings_bucket(),
        policy: bucket_policy(acct, key_arn, detector_id).to_string(),
        retention: RETENTION,
        versioned: false,
    };
    ensure_shape(acct, key_arn, &shape).await
}

/// What a baseline bucket must look like; the findings bucket and Config's
/// snapshots bucket differ only in these.
pub(super) struct Shape {
    pub item: &'static str,
    pub name: String,
    pub policy: String,
    pub retention: Retention,
    pub versioned: bool,
}

/// Makes sure the bucket `shape` names exists like that, SSE-KMS with
/// `key_arn`, public access blocked, tagged as the baseline's.
pub(super) async fn ensure_shape(
    acct: &Account<'_>,
    key_arn: &str,
    shape: &Shape,
) -> Result<ItemReport, AwsError> {
    let name = shape.name.clone();
    let s3 = &acct.clients.s3;
    let existing = match find(acct, &name).await? {
        Some(tags) => {
            check_ours(format!("S3 bucket {name}"), &tags)?;
            Some(tags)
        }
        None => {
            create(acct, &name).await?;
            None
        }
    };
    let created = existing.is_none();
    let mut fixed = Vec::new();

    if shape.versioned {
        let v = s3
            .get_bucket_versioning()
            .bucket(&name)
            .expected_bucket_owner(&acct.id)
            .send()
            .await
            .op("s3:GetBucketVersioning")?;
        if v.status() != Some(&BucketVersioningStatus::Enabled) {
            s3.put_bucket_versioning()
                .bucket(&name)
                .expected_bucket_owner(&acct.id)
                .versioning_configuration(
                    VersioningConfiguration::builder()
                        .status(BucketVersioningStatus::Enabled)
                        .build(),
                )
                .send()
                .await
                .op("s3:PutBucketVersioning")?;
            fixed.push("versioning");
        }
    }

    let pab = absent_on(
        s3.get_public_access_block()
            .bucket(&name)
            .expected_bucket_owner(&acct.id)
            .send()
            .await
            .op("s3:GetPublicAccessBlock"),
        &["NoSuchPublicAccessBlockConfiguration"],
    )?;
    if !public_access_blocked(
        pab.as_ref()
            .and_then(|o| o.public_access_block_configuration()),
    ) {
        s3.put_public_access_block()
            .bucket(&name)
            .expected_bucket_owner(&acct.id)
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
        fixed.push("public access block");
    }

    let encryption = absent_on(
        s3.get_bucket_encryption()
            .bucket(&name)
            .expected_bucket_owner(&acct.id)
            .send()
            .await
            .op("s3:GetBucketEncryption"),
        &["ServerSideEncryptionConfigurationNotFoundError"],
    )?;
    let rules = encryption
        .as_ref()
        .and_then(|o| o.server_side_encryption_configuration())
        .map(|c| c.rules())
        .unwrap_or_default();
    if !encryption_in_sync(rules, key_arn) {
        const OP: &str = "s3:PutBucketEncryption";
        let by_default = built(
            OP,
            ServerSideEncryptionByDefault::builder()
                .sse_algorithm(ServerSideEncryption::AwsKms)
                .kms_master_key_id(key_arn)
                .build(),
        )?;
        let config = built(
            OP,
            ServerSideEncryptionConfiguration::builder()
                .rules(
                    ServerSideEncryptionRule::builder()
                        .apply_server_side_encryption_by_default(by_default)
                        // One data key per bucket, not per object: far fewer
                        // KMS calls (and costs) for the same protection.
                        .bucket_key_enabled(true)
                        .build(),
                )
                .build(),
        )?;
        s3.put_bucket_encryption()
            .bucket(&name)
            .expected_bucket_owner(&acct.id)
            .server_side_encryption_configuration(config)
            .send()
            .await
            .op(OP)?;
        fixed.push("encryption");
    }

    let desired = shape.policy.clone();
    let current = absent_on(
        s3.get_bucket_policy()
            .bucket(&name)
            .expected_bucket_owner(&acct.id)
            .send()
            .await
            .op("s3:GetBucketPolicy"),
        &["NoSuchBucketPolicy"],
    )?;
    if !current
        .as_ref()
        .and_then(|o| o.policy())
        .is_some_and(|p| policy::same(p, &desired))
    {
        s3.put_bucket_policy()
            .bucket(&name)
            .expected_bucket_owner(&acct.id)
            .policy(desired)
            .send()
            .await
            .op("s3:PutBucketPolicy")?;
        fixed.push("policy");
    }

    let lifecycle_now = absent_on(
        s3.get_bucket_lifecycle_configuration()
            .bucket(&name)
            .expected_bucket_owner(&acct.id)
            .send()
            .await
            .op("s3:GetBucketLifecycleConfiguration"),
        &["NoSuchLifecycleConfiguration"],
    )?;
    if !lifecycle_in_sync(
        shape.retention,
        lifecycle_now
            .as_ref()
            .map(|o| o.rules())
            .unwrap_or_default(),
    ) {
        s3.put_bucket_lifecycle_configuration()
            .bucket(&name)
            .expected_bucket_owner(&acct.id)
            .lifecycle_configuration(lifecycle(shape.retention)?)
            .send()
            .await
            .op("s3:PutBucketLifecycleConfiguration")?;
        fixed.push("lifecycle");
    }

    if let Some(tags) = &existing {
        let missing = missing_tags(acct, tags);
        if !missing.is_empty() {
            // PutBucketTagging replaces the set: others' tags go with ours.
            let mut all = tags.clone();
            all.extend(missing);
            put_tags(acct, &name, &all).await?;
            fixed.push("tags");
        }
    }
    let item = shape.item;
    Ok(if created {
        ItemReport::ours(item, &name, "created")
    } else if fixed.is_empty() {
        ItemReport::ours(item, &name, "in-sync")
    } else {
        ItemReport::ours(item, &name, "updated")
            .with_note(format!("put back: {}", fixed.join(", ")))
    })
}

async fn create(acct: &Account<'_>, name: &str) -> Result<(), AwsError> {
    const OP: &str = "s3:CreateBucket";
    // us-east-1 is S3's default and refuses to be named as a constraint.
    let constraint =
        (acct.region != "us-east-1").then(|| BucketLocationConstraint::from(acct.region.as_str()));
    let result = acct
        .clients
        .s3
        .create_bucket()
        .bucket(name)
        .create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .set_location_constraint(constraint)
                .build(),
        )
        .object_ownership(ObjectOwnership::BucketOwnerEnforced)
        .send()
        .await
        .op(OP);
    match result {
        Ok(_) => {}
        // Another run (a second env's `up`) made it a moment ago: ours only
        // if its tags say so.
        Err(e) if e.is_code(&["BucketAlreadyOwnedByYou"]) => {
            let tags = find(acct, name).await?.unwrap_or_default();
            return check_ours(format!("S3 bucket {name}"), &tags);
        }
        Err(e) if e.is_code(&["BucketAlreadyExists"]) => {
            return Err(AwsError::Conflict(format!(
                "the S3 bucket name {name} is taken by another AWS account (bucket names are \
                 global, and payops puts this account's id and region in it): remove it there"
            )));
        }
        Err(e) => return Err(e),
    }
    put_tags(acct, name, &acct.tags()).await
}

pub async fn observe(acct: &Account<'_>) -> Result<ItemReport, AwsError> {
    observe_named(acct, ITEM, &acct.findings_bucket()).await
}

pub(super) async fn observe_named(
    acct: &Account<'_>,
    item: &'static str,
    name: &str,
) -> Result<ItemReport, AwsError> {
    Ok(match find(acct, name).await? {
        None => ItemReport::absent(item, "observed"),
        Some(tags) => ItemReport {
            owner: Some(owner_of(&tags)),
            ..ItemReport::ours(item, name, "observed")
        },
    })
}

/// Empties and deletes the bucket if payops created it.
pub async fn destroy(acct: &Account<'_>) -> Result<ItemReport, AwsError> {
    destroy_named(acct, ITEM, &acct.findings_bucket(), "exported finding").await
}

/// Empties (every version) and deletes bucket `name` if payops created it;
/// `what` names its objects in the report.
pub(super) async fn destroy_named(
    acct: &Account<'_>,
    item: &'static str,
    name: &str,
    what: &str,
) -> Result<ItemReport, AwsError> {
    let name = name.to_owned();
    let Some(tags) = find(acct, &name).await? else {
        return Ok(ItemReport::absent(item, "absent"));
    };
    if owner_of(&tags) == Owner::Adopted {
        return Ok(ItemReport {
            owner: Some(Owner::Adopted),
            ..ItemReport::ours(item, &name, "kept")
        }
        .with_note("not tagged as payops' baseline bucket: never deleted"));
    }
    let s3 = &acct.clients.s3;
    // The bucket is going: its TLS-only policy goes first, so that an
    // endpoint without TLS (an emulator) can still empty it.
    absent_on(
        s3.delete_bucket_policy()
            .bucket(&name)
            .expected_bucket_owner(&acct.id)
            .send()
            .await
            .op("s3:DeleteBucketPolicy"),
        &["NoSuchBucket"],
    )?;
    let deleted = empty(acct, &name).await?;
    absent_on(
        s3.delete_bucket()
            .bucket(&name)
            .expected_bucket_owner(&acct.id)
            .send()
            .await
            .op("s3:DeleteBucket"),
        &["NoSuchBucket"],
    )?;
    let report = ItemReport {
        state: "absent".into(),
        ..ItemReport::ours(item, &name, "deleted")
    };
    Ok(if deleted > 0 {
        report.with_note(format!("{deleted} {what} object(s) deleted with it"))
    } else {
        report
    })
}

/// Deletes every object version and delete marker; how many.
async fn empty(acct: &Account<'_>, name: &str) -> Result<usize, AwsError> {
    let s3 = &acct.clients.s3;
    let mut deleted = 0;
    let (mut key_marker, mut version_marker): (Option<String>, Option<String>) = (None, None);
    loop {
        let page = s3
            .list_object_versions()
            .bucket(name)
            .expected_bucket_owner(&acct.id)
            .set_key_marker(key_marker.take())
            .set_version_id_marker(version_marker.take())
            .send()
            .await
            .op("s3:ListObjectVersions")?;
        let ids = page
            .versions()
            .iter()
            .map(|v| (v.key(), v.version_id()))
            .chain(
                page.delete_markers()
                    .iter()
                    .map(|m| (m.key(), m.version_id())),
            )
            .filter_map(|(key, version)| Some((key?, version)))
            .map(|(key, version)| {
                built(
                    "s3:DeleteObjects",
                    ObjectIdentifier::builder()
                        .key(key)
                        .set_version_id(version.map(str::to_owned))
                        .build(),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        // A page holds at most 1000 entries, as many as DeleteObjects takes.
        if !ids.is_empty() {
            let count = ids.len();
            let out = s3
                .delete_objects()
                .bucket(name)
                .expected_bucket_owner(&acct.id)
                .delete(built(
                    "s3:DeleteObjects",
                    Delete::builder().set_objects(Some(ids)).quiet(true).build(),
                )?)
                .send()
                .await
                .op("s3:DeleteObjects")?;
            if let [first, ..] = out.errors() {
                return Err(AwsError::Api {
                    op: "s3:DeleteObjects",
                    code: first.code().map(str::to_owned),
                    message: format!(
                        "{} of {count} objects not deleted, e.g. {}: {}",
                        out.errors().len(),
                        first.key().unwrap_or("?"),
                        first.message().unwrap_or("no message")
                    ),
                });
            }
            deleted += count;
        }
        key_marker = page.next_key_marker().map(str::to_owned);
        version_marker = page.next_version_id_marker().map(str::to_owned);
        if page.is_truncated() != Some(true) || (key_marker.is_none() && version_marker.is_none()) {
            return Ok(deleted);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testing;

    const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/k1";

    #[test]
    fn guardduty_may_write_and_locate_only_for_this_detector_with_the_findings_key_over_tls() {
        let c = testing::clients();
        let p = bucket_policy(&testing::account(&c), KEY, "d1");
        let s = p["Statement"].as_array().unwrap();
        let by_sid = |sid: &str| s.iter().find(|st| st["Sid"] == sid).unwrap().clone();
        let bucket = "arn:aws:s3:::payops-baseline-findings-123456789012-us-east-1";

        let tls = by_sid("DenyInsecureTransport");
        assert_eq!(tls["Effect"], "Deny");
        assert_eq!(tls["Condition"]["Bool"]["aws:SecureTransport"], "false");
        assert_eq!(tls["Resource"], json!([bucket, format!("{bucket}/*")]));

        for sid in ["GuardDutyWritesFindings", "GuardDutyLocatesTheBucket"] {
            let st = by_sid(sid);
            assert_eq!(st["Effect"], "Allow");
            assert_eq!(st["Principal"]["Service"], "guardduty.amazonaws.com");
            assert_eq!(
                st["Condition"]["StringEquals"]["aws:SourceArn"],
                "arn:aws:guardduty:us-east-1:123456789012:detector/d1",
                "{sid}"
            );
            assert_eq!(
                st["Condition"]["StringEquals"]["aws:SourceAccount"], "123456789012",
                "{sid}"
            );
        }
        assert_eq!(by_sid("GuardDutyWritesFindings")["Action"], "s3:PutObject");
        assert_eq!(
            by_sid("GuardDutyWritesFindings")["Resource"],
            format!("{bucket}/*")
        );
        assert_eq!(
            by_sid("GuardDutyLocatesTheBucket")["Action"],
            "s3:GetBucketLocation"
        );
        assert_eq!(by_sid("GuardDutyLocatesTheBucket")["Resource"], bucket);
        assert_eq!(
            by_sid("DenyFindingsWithAnotherKey")["Condition"]["StringNotEquals"]["s3:x-amz-server-side-encryption-aws-kms-key-id"],
            KEY
        );
        assert_eq!(
            by_sid("DenyUnencryptedFindings")["Condition"]["StringNotEquals"]["s3:x-amz-server-side-encryption"],
            "aws:kms"
        );
        // Only these five: nothing else is allowed to anyone.
        assert_eq!(s.len(), 5);
        assert_eq!(
            s.iter().filter(|st| st["Effect"] == "Allow").count(),
            2,
            "{p:#}"
        );
    }

    #[test]
    fn findings_expire_after_ninety_days() {
        let l = lifecycle(RETENTION).unwrap();
        assert!(lifecycle_in_sync(RETENTION, l.rules()));
        assert_eq!(l.rules()[0].expiration().unwrap().days(), Some(90));
        let shorter = LifecycleRule::builder()
            .id(LIFECYCLE_RULE_ID)
            .status(ExpirationStatus::Enabled)
            .expiration(LifecycleExpiration::builder().days(30).build())
            .build()
            .unwrap();
        assert!(!lifecycle_in_sync(RETENTION, &[shorter]));
    }

    #[test]
    fn the_bucket_name_fits_s3_and_no_env_can_make_it() {
        let c = testing::clients();
        let mut a = testing::account(&c);
        a.region = "ap-southeast-2".into();
        let name = a.findings_bucket();
        assert!(name.len() <= 63, "{name}");
        assert!(name.starts_with("payops-baseline-"));
        assert!(crate::naming::EnvName::parse("baseline").is_err());
        assert!(crate::naming::EnvName::parse("baseline-findings").is_err());
    }
}
