//! The bucket AWS Config's delivery channel writes configuration snapshots
//! and history to: versioned, SSE-KMS with the baseline's Config key,
//! public access blocked, TLS only, old versions expired.
//!
//! AWS rules encoded here (Config developer guide, s3-bucket-policy,
//! "Permissions for the Amazon S3 Bucket"):
//! - `config.amazonaws.com` checks the bucket with `s3:GetBucketAcl` and
//!   `s3:ListBucket` on the bucket, and writes with `s3:PutObject` on
//!   `{bucket}/[prefix/]AWSLogs/{account}/Config/*` with
//!   `s3:x-amz-acl = bucket-owner-full-control`; each statement is scoped
//!   with `AWS:SourceAccount` so no other account's Config can deliver here
//!   (the confused deputy).
//! - PutDeliveryChannel checks this policy and answers
//!   InsufficientDeliveryPolicyException when it is short (see
//!   `config_recorder`).
//! - The bucket is versioned, so deleting it means deleting every version
//!   and delete marker first (BucketNotEmpty otherwise).

use serde_json::{Value, json};

use crate::aws::AwsError;

use super::findings_bucket::{self, Expires, Retention, Shape};
use super::{Account, ItemReport};

pub const ITEM: &str = "config-bucket";
/// Versions replaced or deleted are kept this long, then expire: enough to
/// recover from a mistaken overwrite, without keeping every history file's
/// every version for ever. Current objects stay (Config's own retention
/// decides what it still needs).
pub const NONCURRENT_DAYS: i32 = 90;
const LIFECYCLE_RULE_ID: &str = "payops-config-noncurrent-expiry";

/// The bucket's name: S3 names are global, so account and region make it
/// unique, and no env name makes `payops-baseline-...` (see `naming`).
pub fn name(acct: &Account<'_>) -> String {
    format!("payops-baseline-config-{}-{}", acct.id, acct.region)
}

pub fn arn(acct: &Account<'_>) -> String {
    format!("arn:{}:s3:::{}", acct.partition(), name(acct))
}

/// Where Config writes, with no key prefix on the delivery channel.
pub fn delivery_objects(acct: &Account<'_>) -> String {
    format!("{}/AWSLogs/{}/Config/*", arn(acct), acct.id)
}

/// The bucket policy Config's delivery needs, and no more.
pub fn bucket_policy(acct: &Account<'_>) -> Value {
    let bucket = arn(acct);
    let objects = format!("{bucket}/*");
    let this_account = json!({ "StringEquals": { "AWS:SourceAccount": acct.id } });
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
                "Sid": "AWSConfigBucketPermissionsCheck",
                "Effect": "Allow",
                "Principal": { "Service": "config.amazonaws.com" },
                "Action": "s3:GetBucketAcl",
                "Resource": bucket,
                "Condition": this_account
            },
            {
                "Sid": "AWSConfigBucketExistenceCheck",
                "Effect": "Allow",
                "Principal": { "Service": "config.amazonaws.com" },
                "Action": "s3:ListBucket",
                "Resource": bucket,
                "Condition": this_account
            },
            {
                "Sid": "AWSConfigBucketDelivery",
                "Effect": "Allow",
                "Principal": { "Service": "config.amazonaws.com" },
                "Action": "s3:PutObject",
                "Resource": delivery_objects(acct),
                "Condition": { "StringEquals": {
                    "s3:x-amz-acl": "bucket-owner-full-control",
                    "AWS:SourceAccount": acct.id
                } }
            }
        ]
    })
}

const RETENTION: Retention = Retention {
    rule_id: LIFECYCLE_RULE_ID,
    expires: Expires::NoncurrentVersions(NONCURRENT_DAYS),
};

/// Makes sure the bucket exists, versioned, with its encryption, public
/// access block, policy, lifecycle and tags.
pub async fn ensure(acct: &Account<'_>, key_arn: &str) -> Result<ItemReport, AwsError> {
    let shape = Shape {
        item: ITEM,
        name: name(acct),
        policy: bucket_policy(acct).to_string(),
        retention: RETENTION,
        versioned: true,
    };
    findings_bucket::ensure_shape(acct, key_arn, &shape).await
}

pub async fn observe(acct: &Account<'_>) -> Result<ItemReport, AwsError> {
    findings_bucket::observe_named(acct, ITEM, &name(acct)).await
}

/// Empties (every version) and deletes the bucket if payops created it.
pub async fn destroy(acct: &Account<'_>) -> Result<ItemReport, AwsError> {
    findings_bucket::destroy_named(acct, ITEM, &name(acct), "Config snapshot").await
}

#[cfg(test)]
mod tests {
    use aws_sdk_s3::types::{ExpirationStatus, LifecycleRule};

    use super::*;
    use crate::resources::testing;

    #[test]
    fn config_may_check_the_bucket_and_write_only_under_its_prefix_for_this_account() {
        let c = testing::clients();
        let p = bucket_policy(&testing::account(&c));
        let s = p["Statement"].as_array().unwrap();
        let by_sid = |sid: &str| s.iter().find(|st| st["Sid"] == sid).unwrap().clone();
        let bucket = "arn:aws:s3:::payops-baseline-config-123456789012-us-east-1";

        let tls = by_sid("DenyInsecureTransport");
        assert_eq!(tls["Effect"], "Deny");
        assert_eq!(tls["Condition"]["Bool"]["aws:SecureTransport"], "false");

        let acl = by_sid("AWSConfigBucketPermissionsCheck");
        assert_eq!(
            (acl["Action"].as_str(), acl["Resource"].as_str()),
            (Some("s3:GetBucketAcl"), Some(bucket))
        );
        let list = by_sid("AWSConfigBucketExistenceCheck");
        assert_eq!(
            (list["Action"].as_str(), list["Resource"].as_str()),
            (Some("s3:ListBucket"), Some(bucket))
        );
        let put = by_sid("AWSConfigBucketDelivery");
        assert_eq!(put["Action"], "s3:PutObject");
        assert_eq!(
            put["Resource"],
            format!("{bucket}/AWSLogs/123456789012/Config/*")
        );
        assert_eq!(
            put["Condition"]["StringEquals"]["s3:x-amz-acl"],
            "bucket-owner-full-control"
        );
        for st in s.iter().filter(|st| st["Effect"] == "Allow") {
            assert_eq!(st["Principal"]["Service"], "config.amazonaws.com");
            assert_eq!(
                st["Condition"]["StringEquals"]["AWS:SourceAccount"], "123456789012",
                "{st:#}"
            );
        }
        assert_eq!(s.len(), 4, "{p:#}");
    }

    #[test]
    fn old_versions_expire_and_current_snapshots_stay() {
        let l = findings_bucket::lifecycle(RETENTION).unwrap();
        assert!(findings_bucket::lifecycle_in_sync(RETENTION, l.rules()));
        let r = &l.rules()[0];
        assert_eq!(
            r.noncurrent_version_expiration().unwrap().noncurrent_days(),
            Some(NONCURRENT_DAYS)
        );
        assert!(r.expiration().is_none());
        let other = LifecycleRule::builder()
            .id(LIFECYCLE_RULE_ID)
            .status(ExpirationStatus::Disabled)
            .build()
            .unwrap();
        assert!(!findings_bucket::lifecycle_in_sync(RETENTION, &[other]));
    }

    #[test]
    fn the_bucket_name_fits_s3_and_no_env_can_make_it() {
        let c = testing::clients();
        let mut a = testing::account(&c);
        a.region = "ap-southeast-2".into();
        let n = name(&a);
        assert!(n.len() <= 63, "{n}");
        assert!(n.starts_with("payops-baseline-"));
    }
}
