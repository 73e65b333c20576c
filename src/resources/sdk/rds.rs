//! RDS: tags in RDS's shape, read and added by ARN.

use aws_sdk_rds::types::Tag;

use crate::aws::{AwsError, OpResult, Poll};
use crate::tags::{self, TagMap};

use crate::resources::context::Context;

pub fn rds_tags(tags: &TagMap) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

pub fn tag_map(tags: &[Tag]) -> TagMap {
    tags::to_map(tags, |t| (t.key(), t.value()))
}

/// Tags of a resource RDS names by ARN (subnet and parameter groups do not
/// return theirs in Describe*).
pub async fn list_tags(cx: &Context, arn: &str) -> Result<TagMap, AwsError> {
    if let Some(tags) = cx.listed_tags(arn).await {
        return Ok(tags);
    }
    let out = cx
        .clients
        .rds
        .list_tags_for_resource()
        .resource_name(arn)
        .send()
        .await
        .op("rds:ListTagsForResource")?;
    Ok(tag_map(out.tag_list()))
}

pub async fn add_tags(cx: &Context, arn: &str, missing: &TagMap) -> Result<(), AwsError> {
    cx.clients
        .rds
        .add_tags_to_resource()
        .resource_name(arn)
        .set_tags(Some(rds_tags(missing)))
        .send()
        .await
        .op("rds:AddTagsToResource")?;
    Ok(())
}

/// An RDS status for progress while it is being deleted (a describe that
/// names no status: still `deleting`).
pub fn status_or_deleting(status: Option<&str>) -> String {
    status.unwrap_or("deleting").to_owned()
}

/// Manual snapshots of `cluster` encrypted with the key `key_arn`: KMS cannot
/// decrypt data under a deleted key, so the key must outlive them.
pub async fn snapshots_encrypted_with(
    cx: &Context,
    cluster: &str,
    key_arn: &str,
) -> Result<Vec<String>, AwsError> {
    let pages: Vec<_> = cx
        .clients
        .rds
        .describe_db_cluster_snapshots()
        .db_cluster_identifier(cluster)
        .snapshot_type("manual")
        .into_paginator()
        .send()
        .collect()
        .await;
    let key_id = super::kms::key_id_of(key_arn);
    let mut ids = Vec::new();
    for page in pages {
        let page = page.op("rds:DescribeDBClusterSnapshots")?;
        for s in page.db_cluster_snapshots() {
            // RDS names the key by ARN; accept its id too.
            let uses_key = s
                .kms_key_id()
                .is_some_and(|k| k == key_arn || k.rsplit('/').next() == Some(key_id));
            if uses_key && let Some(id) = s.db_cluster_snapshot_identifier() {
                ids.push(id.to_owned());
            }
        }
    }
    ids.sort();
    Ok(ids)
}

/// Statuses from which an Aurora cluster or instance does not become
/// `available` by itself, so waiting for it only burns the budget. The SDK's
/// own waiters (`DBClusterAvailable`, `DBInstanceAvailable`) fail on
/// deleted, deleting, failed, incompatible-restore and incompatible-parameters;
/// the RDS user guide's status tables ("Viewing Amazon Aurora DB cluster
/// status", "Viewing DB instance status") add the ones that need the operator:
/// a network or key problem, full storage, a bad option group.
const NEVER_AVAILABLE: [&str; 10] = [
    "deleted",
    "deleting",
    "failed",
    "incompatible-restore",
    "incompatible-parameters",
    "incompatible-network",
    "incompatible-option-group",
    "inaccessible-encryption-credentials",
    "inaccessible-encryption-credentials-recoverable",
    "storage-full",
];

/// The verdict of one poll of a cluster or instance being waited for:
/// `available` is ready, a status in [`NEVER_AVAILABLE`] ends the wait at once
/// with AWS's status in the error, anything else is still pending.
pub fn availability<T>(what: &str, status: Option<&str>, found: T) -> Result<Poll<T>, AwsError> {
    availability_among(
        what,
        status,
        &NEVER_AVAILABLE,
        "see its events in the RDS console or `aws rds describe-events`",
        found,
    )
}

/// [`availability`] for a resource with statuses of its own (a proxy, a
/// proxy endpoint): `never` are those it does not leave by itself, `hint`
/// where the operator looks next.
pub fn availability_among<T>(
    what: &str,
    status: Option<&str>,
    never: &[&str],
    hint: &str,
    found: T,
) -> Result<Poll<T>, AwsError> {
    match status {
        Some("available") => Ok(Poll::Ready(found)),
        Some(s) if never.contains(&s) => Err(AwsError::Conflict(format!(
            "{what} is {s}: it will not become available by itself ({hint})"
        ))),
        other => Ok(Poll::Pending(other.unwrap_or("unknown").to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_available_is_ready_and_terminal_statuses_end_the_wait() {
        assert!(matches!(
            availability("x", Some("available"), 1),
            Ok(Poll::Ready(1))
        ));
        for pending in [
            "creating",
            "backing-up",
            "modifying",
            "configuring-log-exports",
        ] {
            assert!(matches!(
                availability("x", Some(pending), ()),
                Ok(Poll::Pending(s)) if s == pending
            ));
        }
        assert!(matches!(availability("x", None, ()), Ok(Poll::Pending(_))));
        let err = availability(
            "Aurora instance payops-pr1-aurora-1",
            Some("storage-full"),
            (),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("payops-pr1-aurora-1 is storage-full"), "{err}");
    }
}
