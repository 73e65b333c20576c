//! GuardDuty's findings export: the detector's publishing destination (S3,
//! the baseline's findings bucket and key).
//!
//! AWS rules encoded here (GuardDuty API reference,
//! CreatePublishingDestination; user guide, guardduty_exportfindings):
//! - A destination belongs to a detector; DestinationType `S3` with the
//!   bucket's ARN (optionally `/prefix`) and a KMS key ARN. GuardDuty checks
//!   that it may use both when it creates or updates the destination, so the
//!   bucket and key policies come first.
//! - How often updated findings are exported follows the detector's
//!   FindingPublishingFrequency (SIX_HOURS; new findings within ~5 min).
//! - An existing destination is adopted, never changed, unless payops
//!   created it (its tags say so); payops creates one only when the detector
//!   has none. Deleting the detector deletes its destinations.

use aws_sdk_guardduty::Client;
use aws_sdk_guardduty::types::{DestinationProperties, DestinationType};

use crate::aws::{AwsError, OpResult, client_token};
use crate::tags::TagMap;

use super::{Account, ItemReport, Owner, owner_of};

pub const ITEM: &str = "findings-export";

/// One publishing destination of the detector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    pub id: String,
    pub destination_arn: Option<String>,
    pub kms_key_arn: Option<String>,
    pub status: Option<String>,
    pub owner: Owner,
}

impl Destination {
    fn report(&self, action: &'static str) -> ItemReport {
        ItemReport {
            item: ITEM,
            id: Some(self.id.clone()),
            owner: Some(self.owner),
            state: self
                .status
                .clone()
                .unwrap_or_else(|| "present".into())
                .to_lowercase(),
            action,
            notes: Vec::new(),
        }
    }
}

/// The detector's destination: payops' if it has one, else the first one
/// someone else made; `None` when it exports nowhere.
pub async fn find(gd: &Client, detector_id: &str) -> Result<Option<Destination>, AwsError> {
    let mut ids = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let out = gd
            .list_publishing_destinations()
            .detector_id(detector_id)
            .set_next_token(token.take())
            .send()
            .await
            .op("guardduty:ListPublishingDestinations")?;
        ids.extend(
            out.destinations()
                .iter()
                .filter_map(|d| d.destination_id().map(str::to_owned)),
        );
        match out.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_owned()),
            _ => break,
        }
    }
    let mut found = Vec::new();
    for id in ids {
        let out = gd
            .describe_publishing_destination()
            .detector_id(detector_id)
            .destination_id(&id)
            .send()
            .await
            .op("guardduty:DescribePublishingDestination")?;
        let props = out.destination_properties();
        let tags: TagMap = out
            .tags()
            .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        found.push(Destination {
            id,
            destination_arn: props.and_then(|p| p.destination_arn()).map(str::to_owned),
            kms_key_arn: props.and_then(|p| p.kms_key_arn()).map(str::to_owned),
            status: out.status().map(|s| s.as_str().to_owned()),
            owner: owner_of(&tags),
        });
    }
    Ok(found
        .iter()
        .position(|d| d.owner == Owner::Payops)
        .or(if found.is_empty() { None } else { Some(0) })
        .map(|i| found.swap_remove(i)))
}

/// The report of a destination someone else made: adopted as it is.
pub fn adopted(d: &Destination) -> ItemReport {
    let mut r = d.report("adopted");
    r.notes.push(format!(
        "findings already export to {} (not payops'): left as its owner set it",
        d.destination_arn.as_deref().unwrap_or("?")
    ));
    r
}

/// Makes sure the detector exports to the baseline bucket with the findings
/// key: creates the destination, or puts payops' own back. `existing` is
/// what `find` saw (never another's: the caller adopts those).
pub async fn ensure(
    acct: &Account<'_>,
    detector_id: &str,
    key_arn: &str,
    existing: Option<Destination>,
) -> Result<ItemReport, AwsError> {
    let gd = &acct.clients.guardduty;
    let bucket = acct.findings_bucket_arn();
    let props = DestinationProperties::builder()
        .destination_arn(&bucket)
        .kms_key_arn(key_arn)
        .build();
    match existing {
        None => {
            let out = gd
                .create_publishing_destination()
                .detector_id(detector_id)
                .destination_type(DestinationType::S3)
                .destination_properties(props)
                .set_tags(Some(acct.tags().into_iter().collect()))
                // Retried after a lost answer, the same request makes no
                // second destination.
                .client_token(client_token(&["findings-export", detector_id, &bucket]))
                .send()
                .await
                .op("guardduty:CreatePublishingDestination")?;
            let id = crate::aws::required(
                out.destination_id(),
                "guardduty:CreatePublishingDestination",
                "DestinationId",
            )?;
            Ok(ItemReport::ours(ITEM, id, "created"))
        }
        Some(d) if d.owner == Owner::Adopted => Ok(adopted(&d)),
        Some(d)
            if d.destination_arn.as_deref() == Some(bucket.as_str())
                && d.kms_key_arn.as_deref() == Some(key_arn) =>
        {
            Ok(d.report("in-sync"))
        }
        Some(d) => {
            gd.update_publishing_destination()
                .detector_id(detector_id)
                .destination_id(&d.id)
                .destination_properties(props)
                .send()
                .await
                .op("guardduty:UpdatePublishingDestination")?;
            let mut r = d.report("updated");
            r.notes
                .push("put back: the baseline bucket and findings key".into());
            Ok(r)
        }
    }
}

pub async fn observe(gd: &Client, detector_id: &str) -> Result<ItemReport, AwsError> {
    Ok(match find(gd, detector_id).await? {
        None => ItemReport::absent(ITEM, "observed"),
        Some(d) => d.report("observed"),
    })
}

/// Deletes payops' destination; another's is kept.
pub async fn destroy(gd: &Client, detector_id: &str) -> Result<ItemReport, AwsError> {
    let Some(d) = find(gd, detector_id).await? else {
        return Ok(ItemReport::absent(ITEM, "absent"));
    };
    if d.owner == Owner::Adopted {
        let mut r = d.report("kept");
        r.notes
            .push("not created by payops (no payops:scope tag): never deleted".into());
        return Ok(r);
    }
    gd.delete_publishing_destination()
        .detector_id(detector_id)
        .destination_id(&d.id)
        .send()
        .await
        .op("guardduty:DeletePublishingDestination")?;
    // Requested is not done: look again.
    if let Some(left) = find(gd, detector_id).await?
        && left.id == d.id
    {
        return Err(AwsError::Conflict(format!(
            "guardduty:DeletePublishingDestination answered but destination {} is still listed",
            d.id
        )));
    }
    let mut r = d.report("deleted");
    r.state = "absent".into();
    Ok(r)
}

#[cfg(test)]
mod tests {
    use aws_sdk_guardduty::operation::create_publishing_destination::CreatePublishingDestinationOutput;
    use aws_sdk_guardduty::operation::delete_publishing_destination::DeletePublishingDestinationOutput;
    use aws_sdk_guardduty::operation::describe_publishing_destination::DescribePublishingDestinationOutput;
    use aws_sdk_guardduty::operation::list_publishing_destinations::ListPublishingDestinationsOutput;
    use aws_sdk_guardduty::operation::update_publishing_destination::UpdatePublishingDestinationOutput;
    use aws_sdk_guardduty::types::{Destination as Listed, PublishingStatus};
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    use super::*;
    use crate::resources::baseline::{SCOPE, SCOPE_TAG};
    use crate::resources::testing;
    use crate::tags;

    const DETECTOR: &str = "d1";
    const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/k1";
    const OURS: &str = "arn:aws:s3:::payops-baseline-findings-123456789012-us-east-1";

    fn with_gd(rules: &[&Rule]) -> crate::aws::Clients {
        let mut c = testing::clients();
        c.guardduty = mock_client!(aws_sdk_guardduty, RuleMode::MatchAny, rules);
        c
    }

    fn listed(ids: &'static [&'static str]) -> Rule {
        mock!(Client::list_publishing_destinations).then_output(move || {
            ListPublishingDestinationsOutput::builder()
                .set_destinations(Some(
                    ids.iter()
                        .map(|id| {
                            Listed::builder()
                                .destination_id(*id)
                                .destination_type(DestinationType::S3)
                                .status(PublishingStatus::Publishing)
                                .build()
                        })
                        .collect(),
                ))
                .build()
        })
    }

    fn described(id: &'static str, bucket: &'static str, ours: bool) -> Rule {
        mock!(Client::describe_publishing_destination)
            .match_requests(move |r| r.destination_id() == Some(id))
            .then_output(move || {
                let mut out = DescribePublishingDestinationOutput::builder()
                    .destination_id(id)
                    .destination_type(DestinationType::S3)
                    .status(PublishingStatus::Publishing)
                    .publishing_failure_start_timestamp(0)
                    .destination_properties(
                        DestinationProperties::builder()
                            .destination_arn(bucket)
                            .kms_key_arn(KEY)
                            .build(),
                    );
                if ours {
                    out = out
                        .tags(tags::MANAGED_BY, tags::MANAGER)
                        .tags(SCOPE_TAG, SCOPE);
                }
                out.build()
            })
    }

    fn mutations() -> [Rule; 3] {
        [
            mock!(Client::create_publishing_destination).then_output(|| {
                CreatePublishingDestinationOutput::builder()
                    .destination_id("new")
                    .build()
            }),
            mock!(Client::update_publishing_destination)
                .then_output(|| UpdatePublishingDestinationOutput::builder().build()),
            mock!(Client::delete_publishing_destination)
                .then_output(|| DeletePublishingDestinationOutput::builder().build()),
        ]
    }

    #[tokio::test]
    async fn no_destination_creates_one_to_the_baseline_bucket_with_the_findings_key_tagged() {
        let create = mock!(Client::create_publishing_destination)
            .match_requests(|r| {
                let p = r.destination_properties().unwrap();
                r.detector_id() == Some(DETECTOR)
                    && r.destination_type() == Some(&DestinationType::S3)
                    && p.destination_arn() == Some(OURS)
                    && p.kms_key_arn() == Some(KEY)
                    && r.tags()
                        .is_some_and(|t| t.get(SCOPE_TAG).map(String::as_str) == Some(SCOPE))
                    && r.client_token().is_some()
            })
            .then_output(|| {
                CreatePublishingDestinationOutput::builder()
                    .destination_id("new")
                    .build()
            });
        let c = with_gd(&[&listed(&[]), &create]);
        let existing = find(&c.guardduty, DETECTOR).await.unwrap();
        assert_eq!(existing, None);
        let r = ensure(&testing::account(&c), DETECTOR, KEY, existing)
            .await
            .unwrap();
        assert_eq!((r.action, r.id.as_deref()), ("created", Some("new")));
        assert_eq!(create.num_calls(), 1);
    }

    #[tokio::test]
    async fn another_teams_destination_is_adopted_unchanged_and_survives_destroy() {
        let [create, update, delete] = mutations();
        let c = with_gd(&[
            &listed(&["theirs"]),
            &described("theirs", "arn:aws:s3:::security-team-findings", false),
            &create,
            &update,
            &delete,
        ]);
        let existing = find(&c.guardduty, DETECTOR).await.unwrap().unwrap();
        assert_eq!(existing.owner, Owner::Adopted);
        let r = ensure(&testing::account(&c), DETECTOR, KEY, Some(existing))
            .await
            .unwrap();
        assert_eq!((r.action, r.owner), ("adopted", Some(Owner::Adopted)));
        let r = destroy(&c.guardduty, DETECTOR).await.unwrap();
        assert_eq!(r.action, "kept");
        assert_eq!(
            (create.num_calls(), update.num_calls(), delete.num_calls()),
            (0, 0, 0)
        );
    }

    #[tokio::test]
    async fn payops_destination_is_preferred_kept_in_sync_and_put_back_when_changed() {
        let [create, update, delete] = mutations();
        let c = with_gd(&[
            &listed(&["theirs", "ours"]),
            &described("theirs", "arn:aws:s3:::security-team-findings", false),
            &described("ours", OURS, true),
            &create,
            &update,
            &delete,
        ]);
        let existing = find(&c.guardduty, DETECTOR).await.unwrap().unwrap();
        assert_eq!(
            (existing.id.as_str(), existing.owner),
            ("ours", Owner::Payops)
        );
        let r = ensure(&testing::account(&c), DETECTOR, KEY, Some(existing.clone()))
            .await
            .unwrap();
        assert_eq!(r.action, "in-sync");
        let other_key = "arn:aws:kms:us-east-1:123456789012:key/rotated";
        let r = ensure(&testing::account(&c), DETECTOR, other_key, Some(existing))
            .await
            .unwrap();
        assert_eq!(r.action, "updated");
        assert_eq!((create.num_calls(), update.num_calls()), (0, 1));
    }

    #[tokio::test]
    async fn destroy_deletes_payops_destination_and_looks_again() {
        let list = mock!(Client::list_publishing_destinations)
            .sequence()
            .output(|| {
                ListPublishingDestinationsOutput::builder()
                    .destinations(
                        Listed::builder()
                            .destination_id("ours")
                            .destination_type(DestinationType::S3)
                            .status(PublishingStatus::Publishing)
                            .build(),
                    )
                    .build()
            })
            .output(|| {
                ListPublishingDestinationsOutput::builder()
                    .set_destinations(Some(vec![]))
                    .build()
            })
            .build();
        let delete = mock!(Client::delete_publishing_destination)
            .match_requests(|r| r.destination_id() == Some("ours"))
            .then_output(|| DeletePublishingDestinationOutput::builder().build());
        let c = with_gd(&[&list, &described("ours", OURS, true), &delete]);
        let r = destroy(&c.guardduty, DETECTOR).await.unwrap();
        assert_eq!((r.action, r.state.as_str()), ("deleted", "absent"));
        assert_eq!(delete.num_calls(), 1);
    }
}
