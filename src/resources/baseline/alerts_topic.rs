//! The security alerts topic: where the baseline rule sends GuardDuty's
//! HIGH findings. People and tools subscribe to it; only the rule publishes.
//!
//! AWS rules encoded here:
//! - A topic encrypted with a customer-managed key (`KmsMasterKeyId`): the
//!   AWS managed `alias/aws/sns` key's policy cannot be edited, so a service
//!   publisher (EventBridge) could never use it (SNS developer guide,
//!   sns-key-management); the alerts key's policy lets the rule (see
//!   `kms_key`).
//! - EventBridge is a service principal: it may publish only if the topic
//!   policy says so; `aws:SourceArn` = the rule's ARN keeps any other rule,
//!   of any account, out (EventBridge user guide, eb-resource-based:
//!   "Amazon SNS permissions").
//! - A topic policy replaces the default one whole, so it says what the
//!   account's own principals may do too.

use std::collections::HashMap;

use aws_sdk_sns::types::Tag;
use serde_json::{Value, json};

use crate::aws::{AwsError, OpResult, absent_on, built, policy};
use crate::tags::{self, TagMap};

use super::{Account, ItemReport, Owner, check_ours, missing_tags, owner_of};

pub const ITEM: &str = "alerts-topic";

/// SNS answers NotFound for a topic that does not exist.
const NOT_FOUND: [&str; 1] = ["NotFound"];

/// The topic's access policy.
pub fn topic_policy(acct: &Account<'_>) -> Value {
    let topic = acct.topic_arn();
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                // What the default policy gives the owner, bar Publish: the
                // account's principals publish only if IAM lets them.
                "Sid": "AccountManagesTheTopic",
                "Effect": "Allow",
                "Principal": { "AWS": acct.root_arn() },
                "Action": [
                    "sns:GetTopicAttributes",
                    "sns:SetTopicAttributes",
                    "sns:AddPermission",
                    "sns:RemovePermission",
                    "sns:DeleteTopic",
                    "sns:Subscribe",
                    "sns:ListSubscriptionsByTopic"
                ],
                "Resource": topic
            },
            {
                "Sid": "OnlyTheBaselineRulePublishes",
                "Effect": "Allow",
                "Principal": { "Service": "events.amazonaws.com" },
                "Action": "sns:Publish",
                "Resource": topic,
                "Condition": { "ArnEquals": { "aws:SourceArn": acct.rule_arn() } }
            }
        ]
    })
}

struct Found {
    attributes: HashMap<String, String>,
    tags: TagMap,
}

async fn find(acct: &Account<'_>) -> Result<Option<Found>, AwsError> {
    let sns = &acct.clients.sns;
    let arn = acct.topic_arn();
    let got = sns
        .get_topic_attributes()
        .topic_arn(&arn)
        .send()
        .await
        .op("sns:GetTopicAttributes");
    let Some(out) = absent_on(got, &NOT_FOUND)? else {
        return Ok(None);
    };
    let tags = sns
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .op("sns:ListTagsForResource")?;
    Ok(Some(Found {
        attributes: out.attributes().cloned().unwrap_or_default(),
        tags: tags::to_map(tags.tags(), |t| (Some(t.key()), Some(t.value()))),
    }))
}

fn sns_tags(op: &'static str, tags: &TagMap) -> Result<Vec<Tag>, AwsError> {
    tags.iter()
        .map(|(k, v)| built(op, Tag::builder().key(k).value(v).build()))
        .collect()
}

/// Makes sure the topic exists, encrypted with `key_arn`, with its policy
/// and tags; its report and ARN.
pub async fn ensure(acct: &Account<'_>, key_arn: &str) -> Result<(ItemReport, String), AwsError> {
    let sns = &acct.clients.sns;
    let arn = acct.topic_arn();
    let desired_policy = topic_policy(acct).to_string();
    let found = match find(acct).await? {
        Some(found) => found,
        None => {
            const OP: &str = "sns:CreateTopic";
            let created = sns
                .create_topic()
                .name(super::ALERTS_TOPIC)
                .attributes("KmsMasterKeyId", key_arn)
                .attributes("Policy", &desired_policy)
                .set_tags(Some(sns_tags(OP, &acct.tags())?))
                .send()
                .await
                .op(OP);
            match created {
                Ok(out) => {
                    let arn = out.topic_arn().map_or(arn, str::to_owned);
                    return Ok((ItemReport::ours(ITEM, &arn, "created"), arn));
                }
                // CreateTopic of a name that exists is idempotent only with
                // the same attributes and tags ("Topic already exists with
                // different tags"): another run (its own created-at) made it
                // a moment ago; it is checked and reconciled as found.
                Err(e) if e.is_code(&["InvalidParameter"]) => find(acct).await?.ok_or(e)?,
                Err(e) => return Err(e),
            }
        }
    };
    check_ours(format!("SNS topic {arn}"), &found.tags)?;
    let mut fixed = Vec::new();
    let attr = |k: &str| found.attributes.get(k).map(String::as_str);
    if attr("KmsMasterKeyId") != Some(key_arn) {
        set(acct, "KmsMasterKeyId", key_arn).await?;
        fixed.push("encryption key");
    }
    if !attr("Policy").is_some_and(|p| policy::same(p, &desired_policy)) {
        set(acct, "Policy", &desired_policy).await?;
        fixed.push("policy");
    }
    let missing = missing_tags(acct, &found.tags);
    if !missing.is_empty() {
        const OP: &str = "sns:TagResource";
        sns.tag_resource()
            .resource_arn(&arn)
            .set_tags(Some(sns_tags(OP, &missing)?))
            .send()
            .await
            .op(OP)?;
        fixed.push("tags");
    }
    let report = if fixed.is_empty() {
        ItemReport::ours(ITEM, &arn, "in-sync")
    } else {
        ItemReport::ours(ITEM, &arn, "updated").with_note(format!("put back: {}", fixed.join(", ")))
    };
    Ok((report, arn))
}

async fn set(acct: &Account<'_>, name: &str, value: &str) -> Result<(), AwsError> {
    acct.clients
        .sns
        .set_topic_attributes()
        .topic_arn(acct.topic_arn())
        .attribute_name(name)
        .attribute_value(value)
        .send()
        .await
        .op("sns:SetTopicAttributes")
        .map(drop)
}

pub async fn observe(acct: &Account<'_>) -> Result<ItemReport, AwsError> {
    Ok(match find(acct).await? {
        None => ItemReport::absent(ITEM, "observed"),
        Some(found) => ItemReport {
            owner: Some(owner_of(&found.tags)),
            ..ItemReport::ours(ITEM, acct.topic_arn(), "observed")
        },
    })
}

/// Deletes the topic (and so its subscriptions) if payops created it.
pub async fn destroy(acct: &Account<'_>) -> Result<ItemReport, AwsError> {
    let Some(found) = find(acct).await? else {
        return Ok(ItemReport::absent(ITEM, "absent"));
    };
    let arn = acct.topic_arn();
    if owner_of(&found.tags) == Owner::Adopted {
        return Ok(ItemReport {
            owner: Some(Owner::Adopted),
            ..ItemReport::ours(ITEM, &arn, "kept")
        }
        .with_note("not tagged as payops' baseline topic: never deleted"));
    }
    acct.clients
        .sns
        .delete_topic()
        .topic_arn(&arn)
        .send()
        .await
        .op("sns:DeleteTopic")?;
    Ok(ItemReport {
        state: "absent".into(),
        ..ItemReport::ours(ITEM, &arn, "deleted")
    })
}

#[cfg(test)]
mod tests {
    use aws_sdk_sns::Client;
    use aws_sdk_sns::operation::create_topic::CreateTopicOutput;
    use aws_sdk_sns::operation::get_topic_attributes::{
        GetTopicAttributesError, GetTopicAttributesOutput,
    };
    use aws_sdk_sns::operation::list_tags_for_resource::ListTagsForResourceOutput;
    use aws_sdk_sns::operation::set_topic_attributes::SetTopicAttributesOutput;
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
    use aws_smithy_types::error::ErrorMetadata;

    use super::*;
    use crate::resources::testing;

    const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/k1";

    fn with_sns(rules: &[&Rule]) -> crate::aws::Clients {
        let mut c = testing::clients();
        c.sns = mock_client!(aws_sdk_sns, RuleMode::MatchAny, rules);
        c
    }

    #[test]
    fn only_events_from_the_baseline_rule_may_publish() {
        let c = testing::clients();
        let p = topic_policy(&testing::account(&c));
        let s = p["Statement"].as_array().unwrap();
        let publishers: Vec<&Value> = s
            .iter()
            .filter(|st| {
                st["Effect"] == "Allow" && st["Action"].to_string().contains("sns:Publish")
            })
            .collect();
        assert_eq!(publishers.len(), 1, "{p:#}");
        assert_eq!(
            publishers[0]["Principal"]["Service"],
            "events.amazonaws.com"
        );
        assert_eq!(
            publishers[0]["Condition"]["ArnEquals"]["aws:SourceArn"],
            "arn:aws:events:us-east-1:123456789012:rule/payops-baseline-guardduty-high"
        );
        // The account manages it, and nothing is open to everyone.
        assert_eq!(s[0]["Principal"]["AWS"], "arn:aws:iam::123456789012:root");
        assert!(!p.to_string().contains(r#""Principal":"*""#), "{p}");
    }

    #[tokio::test]
    async fn no_topic_creates_it_encrypted_with_the_alerts_key_its_policy_and_tags() {
        let missing = mock!(Client::get_topic_attributes).then_error(|| {
            GetTopicAttributesError::generic(
                ErrorMetadata::builder()
                    .code("NotFound")
                    .message("Topic does not exist")
                    .build(),
            )
        });
        let create = mock!(Client::create_topic)
            .match_requests(|r| {
                let a = r.attributes().cloned().unwrap_or_default();
                r.name() == Some("payops-baseline-security-alerts")
                    && a.get("KmsMasterKeyId").map(String::as_str) == Some(KEY)
                    && a.get("Policy").is_some_and(|p| p.contains("aws:SourceArn"))
                    && r.tags().iter().any(|t| t.key() == "payops:scope")
            })
            .then_output(|| {
                CreateTopicOutput::builder()
                    .topic_arn("arn:aws:sns:us-east-1:123456789012:payops-baseline-security-alerts")
                    .build()
            });
        let c = with_sns(&[&missing, &create]);
        let (r, arn) = ensure(&testing::account(&c), KEY).await.unwrap();
        assert_eq!(r.action, "created");
        assert!(arn.ends_with(":payops-baseline-security-alerts"));
        assert_eq!(create.num_calls(), 1);
    }

    fn existing(key: &'static str, ours: bool) -> [Rule; 2] {
        let c = testing::clients();
        let policy = topic_policy(&testing::account(&c)).to_string();
        let tags = if ours {
            testing::account(&c).tags()
        } else {
            TagMap::new()
        };
        [
            mock!(Client::get_topic_attributes).then_output(move || {
                GetTopicAttributesOutput::builder()
                    .attributes("KmsMasterKeyId", key)
                    .attributes("Policy", policy.clone())
                    .build()
            }),
            mock!(Client::list_tags_for_resource).then_output(move || {
                ListTagsForResourceOutput::builder()
                    .set_tags(Some(
                        tags.iter()
                            .map(|(k, v)| Tag::builder().key(k).value(v).build().unwrap())
                            .collect(),
                    ))
                    .build()
            }),
        ]
    }

    #[tokio::test]
    async fn a_converged_topic_is_left_alone_and_a_changed_key_is_put_back() {
        let set = mock!(Client::set_topic_attributes)
            .match_requests(|r| {
                r.attribute_name() == Some("KmsMasterKeyId") && r.attribute_value() == Some(KEY)
            })
            .then_output(|| SetTopicAttributesOutput::builder().build());
        let [get, tags] = existing(KEY, true);
        let c = with_sns(&[&get, &tags, &set]);
        let (r, _) = ensure(&testing::account(&c), KEY).await.unwrap();
        assert_eq!((r.action, set.num_calls()), ("in-sync", 0));

        let [get, tags] = existing("alias/aws/sns", true);
        let c = with_sns(&[&get, &tags, &set]);
        let (r, _) = ensure(&testing::account(&c), KEY).await.unwrap();
        assert_eq!((r.action, set.num_calls()), ("updated", 1));
    }

    #[tokio::test]
    async fn a_create_that_meets_a_topic_another_run_just_made_reconciles_it() {
        use aws_sdk_sns::operation::create_topic::CreateTopicError;
        let c = testing::clients();
        let policy = topic_policy(&testing::account(&c)).to_string();
        let get = mock!(Client::get_topic_attributes)
            .sequence()
            .error(|| {
                GetTopicAttributesError::generic(ErrorMetadata::builder().code("NotFound").build())
            })
            .output(move || {
                GetTopicAttributesOutput::builder()
                    .attributes("KmsMasterKeyId", KEY)
                    .attributes("Policy", policy.clone())
                    .build()
            })
            .build();
        let create = mock!(Client::create_topic).then_error(|| {
            CreateTopicError::generic(
                ErrorMetadata::builder()
                    .code("InvalidParameter")
                    .message(
                        "Invalid parameter: Tags Reason: Topic already exists with different tags",
                    )
                    .build(),
            )
        });
        let [_, tags] = existing(KEY, true);
        let c = with_sns(&[&get, &create, &tags]);
        let (r, _) = ensure(&testing::account(&c), KEY).await.unwrap();
        assert_eq!(r.action, "in-sync");
        assert_eq!(create.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_topic_of_that_name_payops_did_not_tag_is_refused_and_kept() {
        let [get, tags] = existing(KEY, false);
        let c = with_sns(&[&get, &tags]);
        let err = ensure(&testing::account(&c), KEY).await.unwrap_err();
        assert!(matches!(err, AwsError::NotOurs { .. }), "{err}");
        let r = destroy(&testing::account(&c)).await.unwrap();
        assert_eq!((r.action, r.owner), ("kept", Some(Owner::Adopted)));
    }
}
