//! Route 53: tags (only through ChangeTagsForResource, at most 10 a call),
//! ids (outputs keep `/hostedzone/`, `/change/`; the SDK trims them from
//! inputs), caller references, and the wait for a change to reach every
//! Route 53 server.
//!
//! Route 53 is global: the SDK's endpoint rules send every commercial region
//! to `route53.amazonaws.com`, signed for us-east-1, so the env's regional
//! client serves it. Zones and health checks are account-wide, so payops
//! tags them with `payops:region` and only adopts its own region's (as IAM
//! roles, see `tags::global_ownership`).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_route53::Client;
use aws_sdk_route53::client::Waiters;
use aws_sdk_route53::types::{Tag, TagResourceType};

use crate::aws::{AwsError, OpResult, waited};
use crate::tags::{self, TagMap};

/// At most 10 tags per ChangeTagsForResource (API_ChangeTagsForResource:
/// AddTags "You can add a maximum of 10 tags").
pub const MAX_TAGS_PER_CALL: usize = 10;
/// At most 10 resource ids per ListTagsForResources.
pub const MAX_IDS_PER_LISTING: usize = 10;
/// Route 53 applies a change to all its servers within about 60 s
/// (API_GetChange); generous, since a change is never lost.
pub const CHANGE_SYNC: Duration = Duration::from_secs(10 * 60);

/// `Z123` of `/hostedzone/Z123`, `C1` of `/change/C1`.
pub fn bare_id(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
}

/// A fresh CallerReference: Route 53 remembers one per create for days
/// (a zone's repeat answers HostedZoneAlreadyExists, a deleted check's
/// HealthCheckAlreadyExists), so each create needs a new one. The SDK's
/// retry of a create whose answer was lost resends the same request, the
/// same reference with it: Route 53 then answers as for a repeat, and the
/// step looks again. The prefix says whose it is.
pub fn caller_reference(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{prefix}-{nanos:x}")
}

fn sdk_tags(tags: &TagMap) -> Result<Vec<Tag>, AwsError> {
    Ok(tags
        .iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect())
}

/// Adds (or overwrites) `tags` on a zone or health check, 10 per call.
pub async fn add_tags(
    route53: &Client,
    kind: TagResourceType,
    id: &str,
    tags: &TagMap,
) -> Result<(), AwsError> {
    let all = sdk_tags(tags)?;
    for chunk in all.chunks(MAX_TAGS_PER_CALL) {
        route53
            .change_tags_for_resource()
            .resource_type(kind.clone())
            .resource_id(bare_id(id))
            .set_add_tags(Some(chunk.to_vec()))
            .send()
            .await
            .op("route53:ChangeTagsForResource")?;
    }
    Ok(())
}

/// The tags of one zone or health check.
pub async fn tags_of(
    route53: &Client,
    kind: TagResourceType,
    id: &str,
) -> Result<TagMap, AwsError> {
    let out = route53
        .list_tags_for_resource()
        .resource_type(kind)
        .resource_id(bare_id(id))
        .send()
        .await
        .op("route53:ListTagsForResource")?;
    Ok(out.resource_tag_set().map_or_else(TagMap::new, |set| {
        tags::to_map(set.tags(), |t| (t.key(), t.value()))
    }))
}

/// The tags of many health checks (or zones), by bare id, 10 ids per call.
pub async fn tags_of_many(
    route53: &Client,
    kind: TagResourceType,
    ids: &[String],
) -> Result<BTreeMap<String, TagMap>, AwsError> {
    let mut all = BTreeMap::new();
    for chunk in ids.chunks(MAX_IDS_PER_LISTING) {
        let out = route53
            .list_tags_for_resources()
            .resource_type(kind.clone())
            .set_resource_ids(Some(chunk.iter().map(|i| bare_id(i).to_owned()).collect()))
            .send()
            .await
            .op("route53:ListTagsForResources")?;
        for set in out.resource_tag_sets() {
            if let Some(id) = set.resource_id() {
                all.insert(
                    bare_id(id).to_owned(),
                    tags::to_map(set.tags(), |t| (t.key(), t.value())),
                );
            }
        }
    }
    Ok(all)
}

/// Waits until a change (`/change/C1` or `C1`) is INSYNC.
pub async fn wait_in_sync(route53: &Client, change_id: &str) -> Result<(), AwsError> {
    waited(
        route53
            .wait_until_resource_record_sets_changed()
            .id(bare_id(change_id))
            .wait(CHANGE_SYNC)
            .await,
        &format!("Route 53 change {change_id} to be INSYNC"),
        CHANGE_SYNC,
    )?;
    Ok(())
}

/// Every health check of the account (one page of up to 1000 each call).
pub async fn health_checks(
    route53: &Client,
) -> Result<Vec<aws_sdk_route53::types::HealthCheck>, AwsError> {
    let mut all = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let out = route53
            .list_health_checks()
            .set_marker(marker.clone())
            .send()
            .await
            .op("route53:ListHealthChecks")?;
        all.extend(out.health_checks().iter().cloned());
        match out.next_marker() {
            Some(next) if out.is_truncated() && Some(next) != marker.as_deref() => {
                marker = Some(next.to_owned());
            }
            _ => return Ok(all),
        }
    }
}

/// Every hosted zone of the account.
pub async fn hosted_zones(
    route53: &Client,
) -> Result<Vec<aws_sdk_route53::types::HostedZone>, AwsError> {
    let mut all = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let out = route53
            .list_hosted_zones()
            .set_marker(marker.clone())
            .send()
            .await
            .op("route53:ListHostedZones")?;
        all.extend(out.hosted_zones().iter().cloned());
        match out.next_marker() {
            Some(next) if out.is_truncated() && Some(next) != marker.as_deref() => {
                marker = Some(next.to_owned());
            }
            _ => return Ok(all),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_lose_their_prefix_and_references_are_fresh() {
        assert_eq!(bare_id("/hostedzone/Z1"), "Z1");
        assert_eq!(bare_id("/change/C1"), "C1");
        assert_eq!(bare_id("Z1"), "Z1");
        let a = caller_reference("payops-pr1-us-east-1-zone");
        assert!(a.starts_with("payops-pr1-us-east-1-zone-"));
        assert!(a.len() <= 128, "CallerReference is at most 128 characters");
    }
}

#[cfg(test)]
mod tag_tests {
    use aws_sdk_route53::operation::change_tags_for_resource::ChangeTagsForResourceOutput;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    use super::*;

    /// Route 53 takes at most 10 tags per ChangeTagsForResource; payops'
    /// ownership and cost tags plus the region are 8-9 today, and more
    /// must still work.
    #[tokio::test]
    async fn tags_go_ten_to_a_call() {
        let call = mock!(Client::change_tags_for_resource)
            .match_requests(|r| {
                r.add_tags().len() <= MAX_TAGS_PER_CALL && r.resource_id() == Some("Z1")
            })
            .then_output(|| ChangeTagsForResourceOutput::builder().build());
        let client = mock_client!(aws_sdk_route53, RuleMode::MatchAny, [&call]);
        let many: TagMap = (0..12)
            .map(|i| (format!("k{i:02}"), "v".to_owned()))
            .collect();
        add_tags(
            &client,
            TagResourceType::Hostedzone,
            "/hostedzone/Z1",
            &many,
        )
        .await
        .unwrap();
        assert_eq!(call.num_calls(), 2);
        let mut ours = crate::resources::testing::our_tags("hosted-zone:private");
        ours.insert(tags::REGION.into(), "us-east-1".into());
        assert!(ours.len() <= MAX_TAGS_PER_CALL, "{ours:?}: one call today");
    }
}
