//! The EventBridge rule that sends GuardDuty's HIGH and CRITICAL findings
//! (severity 7.0 and above) to the security alerts topic.
//!
//! AWS rules encoded here:
//! - GuardDuty sends findings to the region's default bus only
//!   [EBR:events-ref-guardduty], so the rule lives there.
//! - `detail.severity` is a number: a string pattern never fires, so the
//!   pattern compares numerically (`guardduty::high_findings_pattern`).
//! - A failed delivery is retried per the target's RetryPolicy (at most 185
//!   attempts, events at most 24 h old) [EB:eb-rule-dlq]; payops asks for
//!   the maximum, said explicitly, since an alert must not be dropped.
//! - DeleteRule fails while the rule has targets: RemoveTargets first.
//!   PutTargets answers 200 with FailedEntryCount > 0 for entries it refused.

use aws_sdk_eventbridge::types::{RetryPolicy, RuleState, Target};

use crate::aws::{AwsError, OpResult, absent_on, built};
use crate::resources::sdk::events::{self as sdk, NOT_FOUND};
use crate::tags::{self, TagMap};

use super::guardduty::high_findings_pattern;
use super::{Account, HIGH_FINDINGS_RULE, ItemReport, Owner, check_ours, missing_tags, owner_of};

pub const ITEM: &str = "high-findings-rule";
/// The id of the topic target on the rule.
pub const TARGET_ID: &str = "security-alerts-topic";
/// EventBridge's maxima: retry for a day, up to 185 times.
pub const RETRY_ATTEMPTS: i32 = 185;
pub const RETRY_MAX_AGE_S: i32 = 86_400;

const DESCRIPTION: &str = "payops account baseline: GuardDuty findings of severity HIGH or above to the security alerts topic";

struct Found {
    pattern: Option<String>,
    enabled: bool,
    tags: TagMap,
    /// (id, arn, retry attempts, max age) of each target.
    targets: Vec<(String, String, Option<i32>, Option<i32>)>,
}

impl Found {
    fn pattern_matches(&self) -> bool {
        self.pattern
            .as_deref()
            .and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok())
            .is_some_and(|p| p == high_findings_pattern())
    }

    fn target_in_sync(&self, topic_arn: &str) -> bool {
        self.targets.iter().any(|(id, arn, attempts, age)| {
            id == TARGET_ID
                && arn == topic_arn
                && *attempts == Some(RETRY_ATTEMPTS)
                && *age == Some(RETRY_MAX_AGE_S)
        })
    }
}

async fn find(acct: &Account<'_>) -> Result<Option<Found>, AwsError> {
    let events = &acct.clients.events;
    let described = events
        .describe_rule()
        .name(HIGH_FINDINGS_RULE)
        .send()
        .await
        .op("events:DescribeRule");
    let Some(out) = absent_on(described, &NOT_FOUND)? else {
        return Ok(None);
    };
    let arn = out.arn().map_or_else(|| acct.rule_arn(), str::to_owned);
    let tags = events
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .op("events:ListTagsForResource")?;
    let tags = tags::to_map(tags.tags(), |t| (Some(t.key()), Some(t.value())));
    let mut found = Found {
        pattern: out.event_pattern().map(str::to_owned),
        enabled: out.state() == Some(&RuleState::Enabled),
        tags,
        targets: Vec::new(),
    };
    // A rule not ours is refused before its targets are read.
    if owner_of(&found.tags) == Owner::Adopted {
        return Ok(Some(found));
    }
    // Five targets at most per rule: one page.
    let listed = events
        .list_targets_by_rule()
        .rule(HIGH_FINDINGS_RULE)
        .send()
        .await
        .op("events:ListTargetsByRule")?;
    found.targets = listed
        .targets()
        .iter()
        .map(|t| {
            let retry = t.retry_policy();
            (
                t.id().to_owned(),
                t.arn().to_owned(),
                retry.and_then(RetryPolicy::maximum_retry_attempts),
                retry.and_then(RetryPolicy::maximum_event_age_in_seconds),
            )
        })
        .collect();
    Ok(Some(found))
}

/// Makes sure the rule exists, enabled, with its pattern, its topic target
/// (with its retry policy) and tags.
pub async fn ensure(acct: &Account<'_>, topic_arn: &str) -> Result<ItemReport, AwsError> {
    let events = &acct.clients.events;
    let arn = acct.rule_arn();
    let found = find(acct).await?;
    if let Some(f) = &found {
        check_ours(format!("EventBridge rule {arn}"), &f.tags)?;
    }
    let mut fixed = Vec::new();
    let rule_ok = found
        .as_ref()
        .is_some_and(|f| f.enabled && f.pattern_matches());
    if !rule_ok {
        const OP: &str = "events:PutRule";
        let mut put = events
            .put_rule()
            .name(HIGH_FINDINGS_RULE)
            .event_pattern(high_findings_pattern().to_string())
            .state(RuleState::Enabled)
            .description(DESCRIPTION);
        // PutRule applies tags only when it creates the rule.
        if found.is_none() {
            put = put.set_tags(Some(sdk::tags(OP, &acct.tags())?));
        } else {
            fixed.push("pattern or state");
        }
        put.send().await.op(OP)?;
    }
    if !found.as_ref().is_some_and(|f| f.target_in_sync(topic_arn)) {
        const OP: &str = "events:PutTargets";
        let target = built(
            OP,
            Target::builder()
                .id(TARGET_ID)
                .arn(topic_arn)
                .retry_policy(
                    RetryPolicy::builder()
                        .maximum_retry_attempts(RETRY_ATTEMPTS)
                        .maximum_event_age_in_seconds(RETRY_MAX_AGE_S)
                        .build(),
                )
                .build(),
        )?;
        let out = events
            .put_targets()
            .rule(HIGH_FINDINGS_RULE)
            .targets(target)
            .send()
            .await
            .op(OP)?;
        sdk::failed_entries(
            OP,
            out.failed_entry_count(),
            out.failed_entries()
                .iter()
                .map(|e| (e.target_id(), e.error_code(), e.error_message())),
        )?;
        if found.is_some() {
            fixed.push("topic target");
        }
    }
    if let Some(f) = &found {
        let missing = missing_tags(acct, &f.tags);
        if !missing.is_empty() {
            const OP: &str = "events:TagResource";
            events
                .tag_resource()
                .resource_arn(&arn)
                .set_tags(Some(sdk::tags(OP, &missing)?))
                .send()
                .await
                .op(OP)?;
            fixed.push("tags");
        }
    }
    Ok(match (found, fixed.is_empty()) {
        (None, _) => ItemReport::ours(ITEM, &arn, "created"),
        (Some(_), true) => ItemReport::ours(ITEM, &arn, "in-sync"),
        (Some(_), false) => ItemReport::ours(ITEM, &arn, "updated")
            .with_note(format!("put back: {}", fixed.join(", "))),
    })
}

pub async fn observe(acct: &Account<'_>) -> Result<ItemReport, AwsError> {
    Ok(match find(acct).await? {
        None => ItemReport::absent(ITEM, "observed"),
        Some(f) => ItemReport {
            owner: Some(owner_of(&f.tags)),
            state: if f.enabled { "enabled" } else { "disabled" }.into(),
            ..ItemReport::ours(ITEM, acct.rule_arn(), "observed")
        },
    })
}

/// Removes the rule's targets, then the rule, if payops created it.
pub async fn destroy(acct: &Account<'_>) -> Result<ItemReport, AwsError> {
    let Some(found) = find(acct).await? else {
        return Ok(ItemReport::absent(ITEM, "absent"));
    };
    let arn = acct.rule_arn();
    if owner_of(&found.tags) == Owner::Adopted {
        return Ok(ItemReport {
            owner: Some(Owner::Adopted),
            ..ItemReport::ours(ITEM, &arn, "kept")
        }
        .with_note("not tagged as payops' baseline rule: never deleted"));
    }
    let events = &acct.clients.events;
    if !found.targets.is_empty() {
        const OP: &str = "events:RemoveTargets";
        let out = events
            .remove_targets()
            .rule(HIGH_FINDINGS_RULE)
            .set_ids(Some(found.targets.iter().map(|t| t.0.clone()).collect()))
            .send()
            .await
            .op(OP);
        if let Some(out) = absent_on(out, &NOT_FOUND)? {
            sdk::failed_entries(
                OP,
                out.failed_entry_count(),
                out.failed_entries()
                    .iter()
                    .map(|e| (e.target_id(), e.error_code(), e.error_message())),
            )?;
        }
    }
    absent_on(
        events
            .delete_rule()
            .name(HIGH_FINDINGS_RULE)
            .send()
            .await
            .op("events:DeleteRule"),
        &NOT_FOUND,
    )?;
    Ok(ItemReport {
        state: "absent".into(),
        ..ItemReport::ours(ITEM, &arn, "deleted")
    })
}

#[cfg(test)]
mod tests {
    use aws_sdk_eventbridge::Client;
    use aws_sdk_eventbridge::operation::delete_rule::DeleteRuleOutput;
    use aws_sdk_eventbridge::operation::describe_rule::{DescribeRuleError, DescribeRuleOutput};
    use aws_sdk_eventbridge::operation::list_tags_for_resource::ListTagsForResourceOutput;
    use aws_sdk_eventbridge::operation::list_targets_by_rule::ListTargetsByRuleOutput;
    use aws_sdk_eventbridge::operation::put_rule::PutRuleOutput;
    use aws_sdk_eventbridge::operation::put_targets::PutTargetsOutput;
    use aws_sdk_eventbridge::operation::remove_targets::RemoveTargetsOutput;
    use aws_sdk_eventbridge::types::Tag;
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    use super::*;
    use crate::resources::testing;

    const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:payops-baseline-security-alerts";

    fn with_events(rules: &[&Rule]) -> crate::aws::Clients {
        let mut c = testing::clients();
        c.events = mock_client!(aws_sdk_eventbridge, RuleMode::MatchAny, rules);
        c
    }

    fn put_rule() -> Rule {
        mock!(Client::put_rule)
            .match_requests(|r| {
                r.state() == Some(&RuleState::Enabled)
                    && r.event_pattern().is_some_and(|p| {
                        serde_json::from_str::<serde_json::Value>(p).unwrap()
                            == high_findings_pattern()
                    })
            })
            .then_output(|| PutRuleOutput::builder().rule_arn("arn").build())
    }

    fn put_targets() -> Rule {
        mock!(Client::put_targets)
            .match_requests(|r| {
                let t = &r.targets()[0];
                let retry = t.retry_policy().unwrap();
                r.targets().len() == 1
                    && t.arn() == TOPIC
                    && retry.maximum_retry_attempts() == Some(185)
                    && retry.maximum_event_age_in_seconds() == Some(86_400)
            })
            .then_output(|| PutTargetsOutput::builder().failed_entry_count(0).build())
    }

    fn existing(pattern: String, attempts: i32) -> [Rule; 3] {
        [
            mock!(Client::describe_rule).then_output(move || {
                DescribeRuleOutput::builder()
                    .arn(
                        "arn:aws:events:us-east-1:123456789012:rule/payops-baseline-guardduty-high",
                    )
                    .event_pattern(pattern.clone())
                    .state(RuleState::Enabled)
                    .build()
            }),
            mock!(Client::list_tags_for_resource).then_output(|| {
                let c = testing::clients();
                ListTagsForResourceOutput::builder()
                    .set_tags(Some(
                        testing::account(&c)
                            .tags()
                            .iter()
                            .map(|(k, v)| Tag::builder().key(k).value(v).build().unwrap())
                            .collect(),
                    ))
                    .build()
            }),
            mock!(Client::list_targets_by_rule).then_output(move || {
                ListTargetsByRuleOutput::builder()
                    .targets(
                        Target::builder()
                            .id(TARGET_ID)
                            .arn(TOPIC)
                            .retry_policy(
                                RetryPolicy::builder()
                                    .maximum_retry_attempts(attempts)
                                    .maximum_event_age_in_seconds(86_400)
                                    .build(),
                            )
                            .build()
                            .unwrap(),
                    )
                    .build()
            }),
        ]
    }

    #[tokio::test]
    async fn no_rule_creates_it_on_the_default_bus_with_its_retrying_topic_target() {
        let missing = mock!(Client::describe_rule).then_error(|| {
            DescribeRuleError::generic(testing::error_meta("ResourceNotFoundException"))
        });
        let (put_rule, put_targets) = (put_rule(), put_targets());
        let c = with_events(&[&missing, &put_rule, &put_targets]);
        let r = ensure(&testing::account(&c), TOPIC).await.unwrap();
        assert_eq!(r.action, "created");
        assert_eq!((put_rule.num_calls(), put_targets.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn a_converged_rule_is_left_alone_whatever_the_pattern_spelling() {
        // AWS echoes the pattern as stored; key order and spacing differ.
        let spelled = r#"{"detail":{"severity":[{"numeric":[">=",7]}]},"detail-type":["GuardDuty Finding"],"source":["aws.guardduty"]}"#;
        let [get, tags, targets] = existing(spelled.into(), 185);
        let (put_rule, put_targets) = (put_rule(), put_targets());
        let c = with_events(&[&get, &tags, &targets, &put_rule, &put_targets]);
        let r = ensure(&testing::account(&c), TOPIC).await.unwrap();
        assert_eq!(r.action, "in-sync");
        assert_eq!((put_rule.num_calls(), put_targets.num_calls()), (0, 0));
    }

    #[tokio::test]
    async fn a_string_severity_pattern_or_a_dropped_retry_policy_is_put_back() {
        let wrong = r#"{"source":["aws.guardduty"],"detail-type":["GuardDuty Finding"],"detail":{"severity":["7.0"]}}"#;
        let [get, tags, targets] = existing(wrong.into(), 0);
        let (put_rule, put_targets) = (put_rule(), put_targets());
        let c = with_events(&[&get, &tags, &targets, &put_rule, &put_targets]);
        let r = ensure(&testing::account(&c), TOPIC).await.unwrap();
        assert_eq!(r.action, "updated");
        assert_eq!((put_rule.num_calls(), put_targets.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn destroy_removes_the_targets_before_the_rule() {
        let [get, tags, targets] = existing(high_findings_pattern().to_string(), 185);
        let remove = mock!(Client::remove_targets)
            .match_requests(|r| r.ids() == [TARGET_ID])
            .then_output(|| RemoveTargetsOutput::builder().failed_entry_count(0).build());
        let delete = mock!(Client::delete_rule).then_output(|| DeleteRuleOutput::builder().build());
        let c = with_events(&[&get, &tags, &targets, &remove, &delete]);
        let r = destroy(&testing::account(&c)).await.unwrap();
        assert_eq!(r.action, "deleted");
        assert_eq!((remove.num_calls(), delete.num_calls()), (1, 1));
    }
}
