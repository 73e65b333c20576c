//! The env's alarm topics (failed transactions, system errors): encrypted
//! with the env's logs key, publishable by this account's CloudWatch alarms.
//!
//! A topic's ARN follows from its name, so payops looks it up with
//! GetTopicAttributes on that ARN. CreateTopic is never used as a lookup:
//! given an existing name it answers with that topic's ARN, which would adopt
//! a topic payops did not make.

// Not yet in `graph()` (the lead registers it); until then only the tests
// use it. Remove this once registered.

use std::collections::HashMap;
use std::fmt;

use async_trait::async_trait;

use crate::aws::{AwsError, OpResult, absent_on, policy, required};
use crate::engine::{Record, StepCx};
use crate::naming::EventRule;
use crate::tags::TagMap;

use crate::resources::context::Context;
use crate::resources::resource::Resource;
use crate::resources::sdk::sns;
use crate::tags::describe_tag_fix;

const KEY_INPUT: (&str, &str) = ("kms-key:logs", "LogsKmsKeyArn");
const KMS_ATTRIBUTE: &str = "KmsMasterKeyId";
const POLICY_ATTRIBUTE: &str = "Policy";

/// What the account itself may do with its topics: SNS's default set.
const ACCOUNT_ACTIONS: [&str; 8] = [
    "SNS:GetTopicAttributes",
    "SNS:SetTopicAttributes",
    "SNS:AddPermission",
    "SNS:RemovePermission",
    "SNS:DeleteTopic",
    "SNS:Subscribe",
    "SNS:ListSubscriptionsByTopic",
    "SNS:Publish",
];

pub struct Topic {
    /// The name's suffix (`payops-<env>-<name>`).
    name: &'static str,
    /// Prefix of the output keys (`FailedTransactionsTopicArn`, ...).
    outputs: &'static str,
    /// The env's EventBridge rule that publishes to the topic.
    event_rule: EventRule,
}

impl Topic {
    pub fn failed_transactions() -> Self {
        Self {
            name: "failed-transactions",
            outputs: "FailedTransactions",
            event_rule: EventRule::PaymentFailed,
        }
    }

    pub fn system_errors() -> Self {
        Self {
            name: "system-errors",
            outputs: "SystemErrors",
            event_rule: EventRule::DbFailover,
        }
    }
}

pub struct FoundTopic {
    name: String,
    arn: String,
    attributes: HashMap<String, String>,
    tags: TagMap,
}

pub enum Fix {
    Tags(TagMap),
    Encryption { key_arn: String },
    Policy,
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tags(t) => f.write_str(&describe_tag_fix(t)),
            Self::Encryption { .. } => f.write_str("encrypt with the env's logs KMS key"),
            Self::Policy => f.write_str(
                "set the topic policy (account administers; CloudWatch alarms of this account \
                 publish)",
            ),
        }
    }
}

/// The account administers and publishes; CloudWatch may publish only for
/// this account's alarms (the conditions stop a confused deputy: another
/// account's alarm naming our topic); EventBridge only for the env's rule
/// that targets the topic (EventBridge user guide, eb-use-resource-based:
/// an SNS target needs sns:Publish for events.amazonaws.com, best scoped by
/// aws:SourceArn to the rule). The rule's ARN follows from its name, so the
/// statement is there whether or not the env has its event backbone: it
/// grants nothing while no such rule exists.
pub fn topic_policy(cx: &Context, topic_arn: &str, rule: EventRule) -> String {
    // The system-errors topic is also where the env's compliance rule sends
    // AWS Config's NON_COMPLIANT findings (default bus, like db-failover).
    let sources = if rule == EventRule::DbFailover {
        serde_json::json!([cx.event_rule_arn(rule), cx.compliance_rule_arn()])
    } else {
        serde_json::json!(cx.event_rule_arn(rule))
    };
    let alarms = format!(
        "arn:{}:cloudwatch:{}:{}:alarm:*",
        cx.partition(),
        cx.region,
        cx.account_id
    );
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AccountAdministers",
                "Effect": "Allow",
                "Principal": {"AWS": cx.account_root_arn()},
                "Action": ACCOUNT_ACTIONS,
                "Resource": topic_arn
            },
            {
                "Sid": "CloudWatchAlarmsPublish",
                "Effect": "Allow",
                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                "Action": "sns:Publish",
                "Resource": topic_arn,
                "Condition": {
                    "StringEquals": {"aws:SourceAccount": cx.account_id},
                    "ArnLike": {"aws:SourceArn": alarms}
                }
            },
            {
                "Sid": "EnvEventRulePublishes",
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sns:Publish",
                "Resource": topic_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": sources}}
            }
        ]
    })
    .to_string()
}

impl Topic {
    async fn set_attribute(
        &self,
        cx: &Context,
        topic: &mut FoundTopic,
        name: &str,
        value: String,
    ) -> Result<(), AwsError> {
        cx.clients
            .sns
            .set_topic_attributes()
            .topic_arn(&topic.arn)
            .attribute_name(name)
            .attribute_value(&value)
            .send()
            .await
            .op("sns:SetTopicAttributes")?;
        topic.attributes.insert(name.to_owned(), value);
        Ok(())
    }
}

#[async_trait]
impl Resource for Topic {
    type Found = FoundTopic;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "sns:topic"
    }

    async fn find(&self, cx: &Context, _step: &StepCx<'_>) -> Result<Vec<FoundTopic>, AwsError> {
        let name = cx.names.topic(self.name);
        let arn = cx.arn("sns", &name);
        let out = cx
            .clients
            .sns
            .get_topic_attributes()
            .topic_arn(&arn)
            .send()
            .await
            .op("sns:GetTopicAttributes");
        let Some(out) = absent_on(out, &["NotFound"])? else {
            return Ok(Vec::new());
        };
        let tags = sns::tags_of(cx, &arn).await?;
        cx.check_ours(format!("SNS topic {name}"), &tags)?;
        Ok(vec![FoundTopic {
            name,
            arn,
            attributes: out.attributes().cloned().unwrap_or_default(),
            tags,
        }])
    }

    fn describe(&self, found: &FoundTopic) -> String {
        found.name.clone()
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<FoundTopic, AwsError> {
        const OP: &str = "sns:CreateTopic";
        let key_arn = step.output(KEY_INPUT.0, KEY_INPUT.1)?;
        let name = cx.names.topic(self.name);
        let expected = cx.arn("sns", &name);
        let tags = cx.tagger.for_create(step.id().as_str());
        let attributes = HashMap::from([
            (KMS_ATTRIBUTE.to_owned(), key_arn.to_owned()),
            (
                POLICY_ATTRIBUTE.to_owned(),
                topic_policy(cx, &expected, self.event_rule),
            ),
        ]);
        // Tags in the request also guard a race: if a same-named topic
        // appeared since `find`, SNS refuses tags that differ from its own
        // instead of handing back its ARN.
        let out = cx
            .clients
            .sns
            .create_topic()
            .name(&name)
            .set_attributes(Some(attributes.clone()))
            .set_tags(Some(sns::tags(OP, &tags)?))
            .send()
            .await
            .op(OP)?;
        let arn = required(out.topic_arn(), OP, "TopicArn")?.to_owned();
        step.remember("topic", &arn);
        if arn != expected {
            return Err(AwsError::Conflict(format!(
                "SNS created topic {arn} but payops expected {expected}: check the region and \
                 account of the credentials"
            )));
        }
        Ok(FoundTopic {
            name,
            arn,
            attributes,
            tags,
        })
    }

    async fn diff(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        topic: &FoundTopic,
    ) -> Result<Vec<Fix>, AwsError> {
        let key_arn = step.output(KEY_INPUT.0, KEY_INPUT.1)?;
        let mut fixes = Vec::new();
        let missing = cx.tagger.missing(step.id().as_str(), &topic.tags);
        if !missing.is_empty() {
            fixes.push(Fix::Tags(missing));
        }
        if topic.attributes.get(KMS_ATTRIBUTE).map(String::as_str) != Some(key_arn) {
            fixes.push(Fix::Encryption {
                key_arn: key_arn.to_owned(),
            });
        }
        let want = topic_policy(cx, &topic.arn, self.event_rule);
        let policy_ok = topic
            .attributes
            .get(POLICY_ATTRIBUTE)
            .is_some_and(|p| policy::same(p, &want));
        if !policy_ok {
            fixes.push(Fix::Policy);
        }
        Ok(fixes)
    }

    async fn fix(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        topic: &mut FoundTopic,
        fix: Fix,
    ) -> Result<(), AwsError> {
        match fix {
            Fix::Tags(missing) => {
                cx.clients
                    .sns
                    .tag_resource()
                    .resource_arn(&topic.arn)
                    .set_tags(Some(sns::tags("sns:TagResource", &missing)?))
                    .send()
                    .await
                    .op("sns:TagResource")?;
                topic.tags.extend(missing);
                Ok(())
            }
            Fix::Encryption { key_arn } => {
                self.set_attribute(cx, topic, KMS_ATTRIBUTE, key_arn).await
            }
            Fix::Policy => {
                let policy = topic_policy(cx, &topic.arn, self.event_rule);
                self.set_attribute(cx, topic, POLICY_ATTRIBUTE, policy)
                    .await
            }
        }
    }

    fn record(&self, _cx: &Context, topic: &FoundTopic) -> Record {
        let p = self.outputs;
        Record::default()
            .resource("topic", &topic.arn)
            .output(format!("{p}TopicArn"), &topic.arn)
            .output(format!("{p}TopicName"), &topic.name)
    }

    async fn delete(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        topic: FoundTopic,
    ) -> Result<Vec<String>, AwsError> {
        // DeleteTopic is synchronous: once it answers, the topic and its
        // subscriptions are gone.
        let result = cx
            .clients
            .sns
            .delete_topic()
            .topic_arn(&topic.arn)
            .send()
            .await
            .op("sns:DeleteTopic");
        absent_on(result, &["NotFound"])?;
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_sns::Client;
    use aws_sdk_sns::operation::create_topic::CreateTopicOutput;
    use aws_sdk_sns::operation::delete_topic::{DeleteTopicError, DeleteTopicOutput};
    use aws_sdk_sns::operation::get_topic_attributes::{
        GetTopicAttributesError, GetTopicAttributesOutput,
    };
    use aws_sdk_sns::operation::list_tags_for_resource::ListTagsForResourceOutput;
    use aws_sdk_sns::operation::set_topic_attributes::SetTopicAttributesOutput;
    use aws_sdk_sns::operation::tag_resource::TagResourceOutput;
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
    use serde_json::Value;

    use super::*;
    use crate::engine::{Change, Observation, Removed};
    use crate::naming::EnvName;
    use crate::resources::testing;
    use crate::tags::Tagger;

    const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/logs-key";
    const STEP: &str = "sns-topic:failed-transactions";
    const NAME: &str = "payops-pr1-failed-transactions";
    const ARN: &str = "arn:aws:sns:us-east-1:123456789012:payops-pr1-failed-transactions";

    fn inputs() -> [(&'static str, Record); 1] {
        [(
            "kms-key:logs",
            Record::default().output("LogsKmsKeyArn", KEY),
        )]
    }

    fn our_tags() -> TagMap {
        Tagger::new(EnvName::parse("pr1").unwrap(), "payments", testing::NOW).for_create(STEP)
    }

    fn cx_with(rules: &[&Rule]) -> Context {
        let mut clients = testing::clients();
        clients.sns = mock_client!(aws_sdk_sns, RuleMode::MatchAny, rules);
        testing::context(clients)
    }

    fn attributes(kms: Option<&str>, policy: String) -> Rule {
        let kms = kms.map(str::to_owned);
        mock!(Client::get_topic_attributes)
            .match_requests(|r| r.topic_arn() == Some(ARN))
            .then_output(move || {
                let mut out = GetTopicAttributesOutput::builder()
                    .attributes("TopicArn", ARN)
                    .attributes("Policy", policy.clone());
                if let Some(kms) = &kms {
                    out = out.attributes("KmsMasterKeyId", kms.clone());
                }
                out.build()
            })
    }

    fn missing() -> Rule {
        mock!(Client::get_topic_attributes)
            .then_error(|| GetTopicAttributesError::generic(testing::error_meta("NotFound")))
    }

    fn tagged(tags: TagMap) -> Rule {
        mock!(Client::list_tags_for_resource)
            .match_requests(|r| r.resource_arn() == Some(ARN))
            .then_output(move || {
                ListTagsForResourceOutput::builder()
                    .set_tags(Some(sns::tags("test", &tags).unwrap()))
                    .build()
            })
    }

    /// Our policy as SNS might echo it: keys reordered, arrays reordered.
    fn echoed_policy() -> String {
        let cx = testing::context(testing::clients());
        let mut v: Value =
            serde_json::from_str(&topic_policy(&cx, ARN, EventRule::PaymentFailed)).unwrap();
        v["Statement"].as_array_mut().unwrap().reverse();
        // The account's statement, now last, lists its actions reordered.
        v["Statement"][2]["Action"]
            .as_array_mut()
            .unwrap()
            .reverse();
        v.to_string()
    }

    #[tokio::test]
    async fn creates_an_encrypted_tagged_topic_that_alarms_may_publish_to() {
        let get = missing();
        let create = mock!(Client::create_topic)
            .match_requests(|r| {
                let attrs = r.attributes().cloned().unwrap_or_default();
                let policy: Value = serde_json::from_str(&attrs["Policy"]).unwrap();
                let statements = policy["Statement"].as_array().unwrap();
                let cloudwatch = statements
                    .iter()
                    .find(|s| s["Principal"]["Service"] == "cloudwatch.amazonaws.com")
                    .unwrap();
                let account = statements
                    .iter()
                    .find(|s| s["Principal"]["AWS"] == "arn:aws:iam::123456789012:root")
                    .unwrap();
                r.name() == Some(NAME)
                    && attrs["KmsMasterKeyId"] == KEY
                    && cloudwatch["Action"] == "sns:Publish"
                    && cloudwatch["Resource"] == ARN
                    && cloudwatch["Condition"]["StringEquals"]["aws:SourceAccount"]
                        == testing::ACCOUNT
                    && cloudwatch["Condition"]["ArnLike"]["aws:SourceArn"]
                        == "arn:aws:cloudwatch:us-east-1:123456789012:alarm:*"
                    && account["Action"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|a| a == "SNS:Publish")
                    && r.tags()
                        .iter()
                        .any(|t| t.key() == "payops:step" && t.value() == STEP)
                    && r.tags()
                        .iter()
                        .any(|t| t.key() == "payops:env" && t.value() == "pr1")
            })
            .then_output(|| CreateTopicOutput::builder().topic_arn(ARN).build());
        let cx = cx_with(&[&get, &create]);
        let applied = testing::ensure(&cx, STEP, Topic::failed_transactions(), &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(create.num_calls(), 1);
        // Created as desired: no repair calls follow (none are mocked).
        assert_eq!(applied.notes, [format!("created {NAME}")]);
        assert_eq!(applied.record.outputs["FailedTransactionsTopicArn"], ARN);
        assert_eq!(applied.record.outputs["FailedTransactionsTopicName"], NAME);
        assert_eq!(applied.record.resources["topic"], ARN);
    }

    #[tokio::test]
    async fn an_owned_topic_in_sync_is_adopted_without_mutating_calls() {
        let get = attributes(Some(KEY), echoed_policy());
        let tags = tagged(our_tags());
        let cx = cx_with(&[&get, &tags]);
        let applied = testing::ensure(&cx, STEP, Topic::failed_transactions(), &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Unchanged);
        assert!(applied.notes.is_empty(), "{:?}", applied.notes);
        assert_eq!(get.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_same_named_topic_of_someone_else_is_refused_never_created_over() {
        // No CreateTopic rule: using it as a lookup would fail the test.
        let get = attributes(Some(KEY), echoed_policy());
        let tags = tagged(TagMap::from([("team".into(), "alerts".into())]));
        let cx = cx_with(&[&get, &tags]);
        let err = testing::ensure(&cx, STEP, Topic::failed_transactions(), &inputs())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("SNS topic {NAME}")), "{err}");
        assert!(err.contains("not tagged as this env's"), "{err}");
        let err = testing::destroy(&cx, STEP, Topic::failed_transactions())
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("no payops ownership tags"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn drift_is_reported_by_observe_and_repaired_by_ensure() {
        // Unencrypted, with SNS's default policy, and a cost tag removed.
        let default_policy = format!(
            r#"{{"Version":"2008-10-17","Id":"__default_policy_ID","Statement":[{{"Sid":"__default_statement_ID","Effect":"Allow","Principal":{{"AWS":"*"}},"Action":"SNS:Publish","Resource":"{ARN}","Condition":{{"StringEquals":{{"AWS:SourceOwner":"123456789012"}}}}}}]}}"#
        );
        let get = attributes(None, default_policy);
        let mut tags = our_tags();
        tags.remove("Project");
        let tags = tagged(tags);
        let cx = cx_with(&[&get, &tags]);
        let observed = testing::observe(&cx, STEP, Topic::failed_transactions(), &inputs())
            .await
            .unwrap();
        let Observation::Present { drift, .. } = observed else {
            panic!("expected present, got {observed:?}");
        };
        assert_eq!(drift.len(), 3, "{drift:?}");
        assert_eq!(drift[0], "add tags Project");
        assert_eq!(drift[1], "encrypt with the env's logs KMS key");

        let tag = mock!(Client::tag_resource)
            .match_requests(|r| {
                r.resource_arn() == Some(ARN)
                    && r.tags().len() == 1
                    && r.tags()[0].key() == "Project"
                    && r.tags()[0].value() == "payops"
            })
            .then_output(|| TagResourceOutput::builder().build());
        let set_kms = mock!(Client::set_topic_attributes)
            .match_requests(|r| {
                r.topic_arn() == Some(ARN)
                    && r.attribute_name() == Some("KmsMasterKeyId")
                    && r.attribute_value() == Some(KEY)
            })
            .then_output(|| SetTopicAttributesOutput::builder().build());
        let set_policy = mock!(Client::set_topic_attributes)
            .match_requests(|r| {
                let cx = testing::context(testing::clients());
                r.attribute_name() == Some("Policy")
                    && policy::same(
                        r.attribute_value().unwrap(),
                        &topic_policy(&cx, ARN, EventRule::PaymentFailed),
                    )
            })
            .then_output(|| SetTopicAttributesOutput::builder().build());
        let cx = cx_with(&[&get, &tags, &tag, &set_kms, &set_policy]);
        let applied = testing::ensure(&cx, STEP, Topic::failed_transactions(), &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Updated);
        assert_eq!(tag.num_calls(), 1);
        assert_eq!(set_kms.num_calls(), 1);
        assert_eq!(set_policy.num_calls(), 1);
    }

    #[test]
    fn alarm_source_arns_use_the_region_partition() {
        let mut cx = testing::context(testing::clients());
        cx.region = "cn-north-1".into();
        let policy: Value = serde_json::from_str(&topic_policy(
            &cx,
            "arn:aws-cn:sns:cn-north-1:1:t",
            EventRule::DbFailover,
        ))
        .unwrap();
        let cloudwatch = &policy["Statement"][1];
        assert_eq!(
            cloudwatch["Condition"]["ArnLike"]["aws:SourceArn"],
            "arn:aws-cn:cloudwatch:cn-north-1:123456789012:alarm:*"
        );
        assert_eq!(
            policy["Statement"][0]["Principal"]["AWS"],
            "arn:aws-cn:iam::123456789012:root"
        );
        // The database failover rule is on the default bus: its ARN has no
        // bus segment.
        // So is the compliance rule, which sends AWS Config's findings to
        // the same system-errors topic.
        assert_eq!(
            policy["Statement"][2]["Condition"]["ArnEquals"]["aws:SourceArn"],
            serde_json::json!([
                "arn:aws-cn:events:cn-north-1:123456789012:rule/payops-pr1-db-failover",
                "arn:aws-cn:events:cn-north-1:123456789012:rule/payops-pr1-compliance-change"
            ])
        );
    }

    #[test]
    fn only_the_env_rule_that_targets_the_topic_may_publish_through_eventbridge() {
        let cx = testing::context(testing::clients());
        let policy: Value =
            serde_json::from_str(&topic_policy(&cx, ARN, EventRule::PaymentFailed)).unwrap();
        let events = &policy["Statement"][2];
        assert_eq!(events["Principal"]["Service"], "events.amazonaws.com");
        assert_eq!(events["Action"], "sns:Publish");
        assert_eq!(events["Resource"], ARN);
        assert_eq!(
            events["Condition"]["ArnEquals"]["aws:SourceArn"],
            "arn:aws:events:us-east-1:123456789012:rule/payops-pr1-payments/payops-pr1-payment-failed"
        );
    }

    #[tokio::test]
    async fn destroy_deletes_the_topic_by_its_arn() {
        let get = attributes(Some(KEY), echoed_policy());
        let tags = tagged(our_tags());
        let delete = mock!(Client::delete_topic)
            .match_requests(|r| r.topic_arn() == Some(ARN))
            .then_output(|| DeleteTopicOutput::builder().build());
        let cx = cx_with(&[&get, &tags, &delete]);
        let removed = testing::destroy(&cx, STEP, Topic::failed_transactions())
            .await
            .unwrap();
        assert!(matches!(removed, Removed::Deleted { .. }));
        assert_eq!(delete.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_topic_gone_during_delete_is_success() {
        let get = attributes(Some(KEY), echoed_policy());
        let tags = tagged(our_tags());
        let delete = mock!(Client::delete_topic)
            .then_error(|| DeleteTopicError::generic(testing::error_meta("NotFound")));
        let cx = cx_with(&[&get, &tags, &delete]);
        let removed = testing::destroy(&cx, STEP, Topic::failed_transactions())
            .await
            .unwrap();
        assert!(matches!(removed, Removed::Deleted { .. }));
    }

    #[tokio::test]
    async fn destroy_of_a_missing_topic_is_success() {
        let get = missing();
        let cx = cx_with(&[&get]);
        let removed = testing::destroy(&cx, STEP, Topic::failed_transactions())
            .await
            .unwrap();
        assert_eq!(removed, Removed::AlreadyAbsent);
    }

    #[test]
    fn the_two_topics_have_distinct_names_and_output_keys() {
        let cx = testing::context(testing::clients());
        let record = |t: Topic| {
            let found = FoundTopic {
                name: cx.names.topic(t.name),
                arn: cx.arn("sns", &cx.names.topic(t.name)),
                attributes: HashMap::new(),
                tags: TagMap::new(),
            };
            t.record(&cx, &found)
        };
        let failed = record(Topic::failed_transactions());
        let errors = record(Topic::system_errors());
        assert_eq!(failed.outputs["FailedTransactionsTopicName"], NAME);
        assert_eq!(
            errors.outputs["SystemErrorsTopicArn"],
            "arn:aws:sns:us-east-1:123456789012:payops-pr1-system-errors"
        );
        assert_eq!(
            errors.outputs["SystemErrorsTopicName"],
            "payops-pr1-system-errors"
        );
    }
}
