//! The env's EventBridge rules, each with its one target (a step = the rule
//! and its targets, which cannot live without it):
//! - `payment-succeeded` on the env's bus -> the analytics queue;
//! - `payment-failed` on the env's bus -> the failed-transactions topic;
//! - `db-failover` on the account's default bus (AWS service events reach
//!   only that one) -> the system-errors topic, for failover and failure
//!   events of the env's Aurora cluster and its instances only.
//!
//! Every target has an explicit retry policy and the events dead-letter
//! queue. The permissions a target needs are in the target's own policies
//! (queue and topic policies name the rule's ARN as aws:SourceArn) and in the
//! key policies (the events key for SSE-KMS queues, the logs key for the
//! topics): see `queue.rs`, `data/sns_topic.rs`, `security/kms_key.rs`.
//!
//! Found by name on its bus (DescribeRule), owned by its tags; drift is on
//! the pattern, the state, the description and the targets (any target that
//! is not payops' is removed: the rule is the env's). PutRule and PutTargets
//! are upserts, which is why `create` is only ever called when `find` saw no
//! rule of that name: PutRule would rewrite someone else's.
//!
//! Real-AWS rules encoded here (emulators ignore them):
//! - DeleteRule refuses a rule that still has targets (ValidationException
//!   "Rule can't be deleted since it has targets"): RemoveTargets first.
//! - PutTargets and RemoveTargets answer 200 with FailedEntryCount > 0 when
//!   an entry failed: that is an error, not success.
//! - RetryPolicy: MaximumEventAgeInSeconds 60-86,400, MaximumRetryAttempts
//!   0-185. A target's dead-letter queue must be a standard SQS queue whose
//!   policy lets events.amazonaws.com SendMessage for this rule; permission
//!   errors skip retries and go straight to the DLQ (EventBridge user guide,
//!   eb-rule-dlq).
//!   [API_PutRule, API_PutTargets, API_RemoveTargets, API_DeleteRule]

use std::collections::BTreeSet;
use std::fmt;

use async_trait::async_trait;
use aws_sdk_eventbridge::types::{DeadLetterConfig, RetryPolicy, RuleState, Target};
use serde_json::{Value, json};

use crate::aws::{AwsError, OpResult, absent_on, built};
use crate::engine::{Record, StepCx};
use crate::naming::{EventRule, NameKind, Names};
use crate::spec::Database;
use crate::tags::{TagMap, describe_tag_fix};

use crate::resources::context::Context;
use crate::resources::resource::Resource;
use crate::resources::sdk::events;

/// The `source` of the payment events the transaction processing function
/// will publish to the env's bus (the producer comes later).
pub const PAYMENT_SOURCE: &str = "payops.payments";
pub const PAYMENT_SUCCEEDED: &str = "Payment Succeeded";
pub const PAYMENT_FAILED: &str = "Payment Failed";

/// A bus or rule event input: (step, output).
type Input = (&'static str, &'static str);
const DLQ_INPUT: Input = ("sqs-queue:payments-events-dlq", "PaymentsEventsDlqArn");
const BUS_INPUT: Input = ("event-bus:payments", "EventBusName");

/// How long EventBridge keeps trying one target, per AWS's limits
/// (MaximumEventAgeInSeconds 60-86,400; MaximumRetryAttempts 0-185).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    pub max_age_s: i32,
    pub attempts: i32,
}

/// Analytics wants every event, however late: AWS's maximum (a day, 185
/// attempts), then the dead-letter queue.
pub const ANALYTICS_RETRY: Retry = Retry {
    max_age_s: 86_400,
    attempts: 185,
};
/// An alert an hour late is noise for whoever is on call: an hour of
/// retries, then the dead-letter queue keeps it 14 days for the record.
pub const ALERT_RETRY: Retry = Retry {
    max_age_s: 3_600,
    attempts: 24,
};

const _: () = assert!(ANALYTICS_RETRY.max_age_s >= 60 && ANALYTICS_RETRY.max_age_s <= 86_400);
const _: () = assert!(ANALYTICS_RETRY.attempts >= 0 && ANALYTICS_RETRY.attempts <= 185);
const _: () = assert!(ALERT_RETRY.max_age_s >= 60 && ALERT_RETRY.max_age_s <= 86_400);
const _: () = assert!(ALERT_RETRY.attempts >= 0 && ALERT_RETRY.attempts <= 185);
// Alerts give up sooner than analytics.
const _: () = assert!(ALERT_RETRY.max_age_s < ANALYTICS_RETRY.max_age_s);

/// The event pattern of `rule`, a pure function of the env's names.
pub fn event_pattern(names: &Names, rule: EventRule) -> Value {
    match rule {
        EventRule::PaymentSucceeded => json!({
            "source": [PAYMENT_SOURCE],
            "detail-type": [PAYMENT_SUCCEEDED]
        }),
        EventRule::PaymentFailed => json!({
            "source": [PAYMENT_SOURCE],
            "detail-type": [PAYMENT_FAILED]
        }),
        EventRule::DbFailover => {
            // RDS names the cluster (cluster events) or the instance
            // (instance events) in detail.SourceIdentifier: exact names,
            // not a prefix, which another env's longer name could share.
            let mut sources = vec![names.db_cluster()];
            sources.extend((0..=usize::from(Database::MAX_READERS)).map(|s| names.db_instance(s)));
            json!({
                "source": ["aws.rds"],
                "detail-type": ["RDS DB Cluster Event", "RDS DB Instance Event"],
                "detail": {
                    "EventCategories": ["failover", "failure"],
                    "SourceIdentifier": sources
                }
            })
        }
    }
}

/// The one target of each rule.
struct TargetSpec {
    id: &'static str,
    /// The target's ARN: an output of its step.
    arn: Input,
    retry: Retry,
}

fn target_spec(rule: EventRule) -> TargetSpec {
    match rule {
        EventRule::PaymentSucceeded => TargetSpec {
            id: "analytics-queue",
            arn: ("sqs-queue:payments-analytics", "PaymentsAnalyticsQueueArn"),
            retry: ANALYTICS_RETRY,
        },
        EventRule::PaymentFailed => TargetSpec {
            id: "failed-transactions-topic",
            arn: (
                "sns-topic:failed-transactions",
                "FailedTransactionsTopicArn",
            ),
            retry: ALERT_RETRY,
        },
        EventRule::DbFailover => TargetSpec {
            id: "system-errors-topic",
            arn: ("sns-topic:system-errors", "SystemErrorsTopicArn"),
            retry: ALERT_RETRY,
        },
    }
}

pub struct RoutingRule {
    rule: EventRule,
}

impl RoutingRule {
    pub fn new(rule: EventRule) -> Self {
        Self { rule }
    }

    pub fn step_id(&self) -> String {
        format!("event-rule:{}", self.rule.suffix())
    }

    /// The step whose output is the target's ARN (a dependency).
    pub fn target_step(&self) -> &'static str {
        target_spec(self.rule).arn.0
    }

    pub fn dead_letter_step() -> &'static str {
        DLQ_INPUT.0
    }

    pub fn bus_step(&self) -> Option<&'static str> {
        (!self.rule.on_default_bus()).then_some(BUS_INPUT.0)
    }

    fn name(&self, cx: &Context) -> Result<String, AwsError> {
        let name = cx.names.event_rule(self.rule);
        NameKind::EventRule
            .check(&name)
            .map_err(AwsError::Conflict)?;
        Ok(name)
    }

    /// The bus the rule is on, as the API takes it.
    fn bus(&self, cx: &Context) -> String {
        if self.rule.on_default_bus() {
            "default".to_owned()
        } else {
            cx.names.event_bus()
        }
    }

    fn description(&self, cx: &Context) -> String {
        let what = match self.rule {
            EventRule::PaymentSucceeded => "payment succeeded -> analytics queue",
            EventRule::PaymentFailed => "payment failed -> failed-transactions topic",
            EventRule::DbFailover => "Aurora failover/failure -> system-errors topic",
        };
        format!("payops env {}: {what}", cx.env())
    }

    fn desired_target(&self, step: &StepCx<'_>) -> Result<FoundTarget, AwsError> {
        let spec = target_spec(self.rule);
        Ok(FoundTarget {
            id: spec.id.to_owned(),
            arn: step.output(spec.arn.0, spec.arn.1)?.to_owned(),
            retry: Some(spec.retry),
            dead_letter_arn: Some(step.output(DLQ_INPUT.0, DLQ_INPUT.1)?.to_owned()),
        })
    }

    async fn put_rule(
        &self,
        cx: &Context,
        tags: Option<&TagMap>,
    ) -> Result<Option<String>, AwsError> {
        const OP: &str = "events:PutRule";
        let tags = tags.map(|t| events::tags(OP, t)).transpose()?;
        let out = cx
            .clients
            .events
            .put_rule()
            .name(self.name(cx)?)
            .event_bus_name(self.bus(cx))
            .event_pattern(event_pattern(&cx.names, self.rule).to_string())
            .state(RuleState::Enabled)
            .description(self.description(cx))
            .set_tags(tags)
            .send()
            .await
            .op(OP)?;
        Ok(out.rule_arn().map(str::to_owned))
    }

    async fn targets(&self, cx: &Context, name: &str) -> Result<Vec<FoundTarget>, AwsError> {
        const OP: &str = "events:ListTargetsByRule";
        let mut found = Vec::new();
        let mut token = None;
        loop {
            let out = cx
                .clients
                .events
                .list_targets_by_rule()
                .rule(name)
                .event_bus_name(self.bus(cx))
                .set_next_token(token)
                .send()
                .await
                .op(OP)?;
            found.extend(out.targets().iter().map(FoundTarget::from_sdk));
            token = out.next_token().map(str::to_owned);
            if token.is_none() {
                return Ok(found);
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundTarget {
    id: String,
    arn: String,
    retry: Option<Retry>,
    dead_letter_arn: Option<String>,
}

impl FoundTarget {
    fn from_sdk(t: &Target) -> Self {
        Self {
            id: t.id().to_owned(),
            arn: t.arn().to_owned(),
            retry: t.retry_policy().map(|r| Retry {
                max_age_s: r.maximum_event_age_in_seconds().unwrap_or(86_400),
                attempts: r.maximum_retry_attempts().unwrap_or(185),
            }),
            dead_letter_arn: t
                .dead_letter_config()
                .and_then(|d| d.arn())
                .map(str::to_owned),
        }
    }

    fn to_sdk(&self) -> Result<Target, AwsError> {
        let mut b = Target::builder()
            .id(&self.id)
            .arn(&self.arn)
            .set_dead_letter_config(
                self.dead_letter_arn
                    .as_ref()
                    .map(|a| DeadLetterConfig::builder().arn(a).build()),
            );
        if let Some(r) = self.retry {
            b = b.retry_policy(
                RetryPolicy::builder()
                    .maximum_event_age_in_seconds(r.max_age_s)
                    .maximum_retry_attempts(r.attempts)
                    .build(),
            );
        }
        built("events:PutTargets", b.build())
    }
}

pub struct FoundRule {
    name: String,
    arn: String,
    pattern: Option<String>,
    state: Option<String>,
    description: Option<String>,
    targets: Vec<FoundTarget>,
    tags: TagMap,
}

pub enum Fix {
    Tags(TagMap),
    /// PutRule with the pattern, state and description (it sets them all).
    Rule {
        what: Vec<&'static str>,
    },
    /// PutTargets of the target (missing or changed).
    Target {
        id: String,
    },
    /// Targets that are not payops': the rule is the env's.
    RemoveTargets {
        ids: Vec<String>,
    },
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tags(t) => f.write_str(&describe_tag_fix(t)),
            Self::Rule { what } => write!(f, "set {}", what.join(", ")),
            Self::Target { id } => write!(f, "put target {id}"),
            Self::RemoveTargets { ids } => write!(f, "remove targets {}", ids.join(", ")),
        }
    }
}

/// Whether two event patterns say the same (EventBridge may echo the JSON
/// reformatted).
fn same_pattern(found: Option<&str>, want: &Value) -> bool {
    found
        .and_then(|f| serde_json::from_str::<Value>(f).ok())
        .is_some_and(|f| &f == want)
}

#[async_trait]
impl Resource for RoutingRule {
    type Found = FoundRule;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "events:rule"
    }

    fn wanted(&self, cx: &Context) -> bool {
        cx.spec.events
    }

    async fn find(&self, cx: &Context, _step: &StepCx<'_>) -> Result<Vec<FoundRule>, AwsError> {
        const OP: &str = "events:DescribeRule";
        let name = self.name(cx)?;
        let out = cx
            .clients
            .events
            .describe_rule()
            .name(&name)
            .event_bus_name(self.bus(cx))
            .send()
            .await
            .op(OP);
        let Some(out) = absent_on(out, &events::NOT_FOUND)? else {
            return Ok(Vec::new());
        };
        let arn = match out.arn() {
            Some(arn) => arn.to_owned(),
            None => cx.event_rule_arn(self.rule),
        };
        let tags = events::tags_of(cx, &arn).await?;
        cx.check_ours(format!("EventBridge rule {name}"), &tags)?;
        let targets = self.targets(cx, &name).await?;
        Ok(vec![FoundRule {
            name,
            arn,
            pattern: out.event_pattern().map(str::to_owned),
            state: out.state().map(|s| s.as_str().to_owned()),
            description: out.description().map(str::to_owned),
            targets,
            tags,
        }])
    }

    fn describe(&self, found: &FoundRule) -> String {
        found.name.clone()
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<FoundRule, AwsError> {
        let name = self.name(cx)?;
        let tags = cx.tagger.for_create(step.id().as_str());
        let arn = self
            .put_rule(cx, Some(&tags))
            .await?
            .unwrap_or_else(|| cx.event_rule_arn(self.rule));
        step.remember("rule", &arn);
        // The target follows in `fix`, which `ensure` runs right after.
        Ok(FoundRule {
            name,
            arn,
            pattern: Some(event_pattern(&cx.names, self.rule).to_string()),
            state: Some(RuleState::Enabled.as_str().to_owned()),
            description: Some(self.description(cx)),
            targets: Vec::new(),
            tags,
        })
    }

    async fn diff(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        rule: &FoundRule,
    ) -> Result<Vec<Fix>, AwsError> {
        let mut fixes = Vec::new();
        let missing = cx.tagger.missing(step.id().as_str(), &rule.tags);
        if !missing.is_empty() {
            fixes.push(Fix::Tags(missing));
        }
        let mut what = Vec::new();
        if !same_pattern(
            rule.pattern.as_deref(),
            &event_pattern(&cx.names, self.rule),
        ) {
            what.push("EventPattern");
        }
        if rule.state.as_deref() != Some(RuleState::Enabled.as_str()) {
            what.push("State");
        }
        if rule.description.as_deref() != Some(self.description(cx).as_str()) {
            what.push("Description");
        }
        if !what.is_empty() {
            fixes.push(Fix::Rule { what });
        }
        let want = self.desired_target(step)?;
        if !rule.targets.contains(&want) {
            fixes.push(Fix::Target {
                id: want.id.clone(),
            });
        }
        let extra: BTreeSet<String> = rule
            .targets
            .iter()
            .filter(|t| t.id != want.id)
            .map(|t| t.id.clone())
            .collect();
        if !extra.is_empty() {
            fixes.push(Fix::RemoveTargets {
                ids: extra.into_iter().collect(),
            });
        }
        Ok(fixes)
    }

    async fn fix(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        rule: &mut FoundRule,
        fix: Fix,
    ) -> Result<(), AwsError> {
        match fix {
            Fix::Tags(missing) => {
                events::tag(cx, &rule.arn, &missing).await?;
                rule.tags.extend(missing);
            }
            Fix::Rule { .. } => {
                // Without tags: PutRule of an existing rule leaves them.
                self.put_rule(cx, None).await?;
                rule.pattern = Some(event_pattern(&cx.names, self.rule).to_string());
                rule.state = Some(RuleState::Enabled.as_str().to_owned());
                rule.description = Some(self.description(cx));
            }
            Fix::Target { .. } => {
                const OP: &str = "events:PutTargets";
                let want = self.desired_target(step)?;
                let out = cx
                    .clients
                    .events
                    .put_targets()
                    .rule(&rule.name)
                    .event_bus_name(self.bus(cx))
                    .targets(want.to_sdk()?)
                    .send()
                    .await
                    .op(OP)?;
                events::failed_entries(
                    OP,
                    out.failed_entry_count(),
                    out.failed_entries()
                        .iter()
                        .map(|e| (e.target_id(), e.error_code(), e.error_message())),
                )?;
                rule.targets.retain(|t| t.id != want.id);
                rule.targets.push(want);
            }
            Fix::RemoveTargets { ids } => {
                events::remove_targets(cx, &self.bus(cx), &rule.name, ids.clone()).await?;
                rule.targets.retain(|t| !ids.contains(&t.id));
            }
        }
        Ok(())
    }

    fn record(&self, _cx: &Context, rule: &FoundRule) -> Record {
        Record::default()
            .resource("rule", &rule.arn)
            .output(format!("{}RuleArn", output_prefix(self.rule)), &rule.arn)
    }

    async fn delete(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        rule: FoundRule,
    ) -> Result<Vec<String>, AwsError> {
        // Targets first (AWS refuses DeleteRule while a rule has any),
        // listed again: what `find` saw may be stale.
        events::delete_rule(cx, &self.bus(cx), &rule.name).await?;
        Ok(Vec::new())
    }
}

fn output_prefix(rule: EventRule) -> &'static str {
    match rule {
        EventRule::PaymentSucceeded => "PaymentSucceeded",
        EventRule::PaymentFailed => "PaymentFailed",
        EventRule::DbFailover => "DbFailover",
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use aws_sdk_eventbridge::Client;
    use aws_sdk_eventbridge::operation::delete_rule::{DeleteRuleError, DeleteRuleOutput};
    use aws_sdk_eventbridge::operation::describe_rule::{DescribeRuleError, DescribeRuleOutput};
    use aws_sdk_eventbridge::operation::list_tags_for_resource::ListTagsForResourceOutput;
    use aws_sdk_eventbridge::operation::list_targets_by_rule::ListTargetsByRuleOutput;
    use aws_sdk_eventbridge::operation::put_rule::PutRuleOutput;
    use aws_sdk_eventbridge::operation::put_targets::PutTargetsOutput;
    use aws_sdk_eventbridge::operation::remove_targets::RemoveTargetsOutput;
    use aws_sdk_eventbridge::types::{PutTargetsResultEntry, Tag};
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    use super::*;
    use crate::engine::{Change, Observation, Removed};
    use crate::resources::testing;

    const STEP: &str = "event-rule:payment-succeeded";
    const NAME: &str = "payops-pr1-payment-succeeded";
    const BUS: &str = "payops-pr1-payments";
    const ARN: &str = "arn:aws:events:us-east-1:123456789012:rule/payops-pr1-payments/payops-pr1-payment-succeeded";
    const QUEUE: &str = "arn:aws:sqs:us-east-1:123456789012:payops-pr1-payments-analytics";
    const DLQ: &str = "arn:aws:sqs:us-east-1:123456789012:payops-pr1-payments-events-dlq";

    /// EventBridge's matching, for the parts of the pattern language the
    /// rules use: every pattern key must be in the event; a list of values
    /// matches when the event's value (or one of its values, for a list)
    /// equals one, or starts with a `{"prefix": ...}`.
    fn matches(pattern: &Value, event: &Value) -> bool {
        match pattern {
            Value::Object(fields) => fields
                .iter()
                .all(|(k, p)| event.get(k).is_some_and(|e| matches(p, e))),
            Value::Array(allowed) => {
                let values: Vec<&Value> = match event {
                    Value::Array(vs) => vs.iter().collect(),
                    v => vec![v],
                };
                values.iter().any(|v| {
                    allowed.iter().any(|a| match a {
                        Value::Object(o) if o.contains_key("prefix") => v
                            .as_str()
                            .zip(o["prefix"].as_str())
                            .is_some_and(|(v, p)| v.starts_with(p)),
                        a => a == *v,
                    })
                })
            }
            _ => false,
        }
    }

    fn names() -> Names {
        testing::context(testing::clients()).names
    }

    fn payment_event(detail_type: &str) -> Value {
        json!({
            "version": "0",
            "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
            "detail-type": detail_type,
            "source": "payops.payments",
            "account": "123456789012",
            "time": "2026-12-06T12:00:00Z",
            "region": "us-east-1",
            "resources": [],
            "detail": {"transactionId": "txn-1", "amount": "12.50", "currency": "EUR"}
        })
    }

    /// An RDS event as EventBridge delivers it (RDS user guide,
    /// rds-cloud-watch-events: "RDS DB Cluster Event" example).
    fn rds_event(detail_type: &str, source_id: &str, category: &str) -> Value {
        let kind = if detail_type.contains("Cluster") {
            "cluster"
        } else {
            "db"
        };
        json!({
            "version": "0",
            "id": "844e2571-85d4-695f-b930-0153b71dcb42",
            "detail-type": detail_type,
            "source": "aws.rds",
            "account": "123456789012",
            "time": "2026-12-06T12:00:00Z",
            "region": "us-east-1",
            "resources": [format!("arn:aws:rds:us-east-1:123456789012:{kind}:{source_id}")],
            "detail": {
                "EventCategories": [category],
                "SourceType": if kind == "cluster" { "CLUSTER" } else { "DB_INSTANCE" },
                "SourceArn": format!("arn:aws:rds:us-east-1:123456789012:{kind}:{source_id}"),
                "Date": "2026-12-06T12:00:00.000Z",
                "Message": "A failover for the DB cluster has completed.",
                "SourceIdentifier": source_id,
                "EventID": "RDS-EVENT-0071"
            }
        })
    }

    #[test]
    fn payment_patterns_route_each_outcome_to_its_rule_only() {
        let n = names();
        let ok = event_pattern(&n, EventRule::PaymentSucceeded);
        let failed = event_pattern(&n, EventRule::PaymentFailed);
        assert!(matches(&ok, &payment_event(PAYMENT_SUCCEEDED)));
        assert!(!matches(&ok, &payment_event(PAYMENT_FAILED)));
        assert!(matches(&failed, &payment_event(PAYMENT_FAILED)));
        assert!(!matches(&failed, &payment_event(PAYMENT_SUCCEEDED)));
        // Another source with the same detail-type is not a payment.
        let mut other = payment_event(PAYMENT_SUCCEEDED);
        other["source"] = json!("someone.else");
        assert!(!matches(&ok, &other));
    }

    #[test]
    fn the_failover_pattern_matches_the_envs_cluster_and_instances_only() {
        let n = names();
        let p = event_pattern(&n, EventRule::DbFailover);
        assert!(matches(
            &p,
            &rds_event("RDS DB Cluster Event", "payops-pr1-aurora", "failover")
        ));
        assert!(matches(
            &p,
            &rds_event("RDS DB Instance Event", "payops-pr1-aurora-3", "failure")
        ));
        // Another env's cluster, even one whose name extends ours.
        assert!(!matches(
            &p,
            &rds_event("RDS DB Cluster Event", "payops-pr2-aurora", "failover")
        ));
        assert!(!matches(
            &p,
            &rds_event(
                "RDS DB Cluster Event",
                "payops-pr1-aurora-x-aurora",
                "failover"
            )
        ));
        // Not a failover or failure: a backup notification.
        assert!(!matches(
            &p,
            &rds_event("RDS DB Cluster Event", "payops-pr1-aurora", "backup")
        ));
        // AWS service events: on the default bus, source aws.rds.
        assert!(EventRule::DbFailover.on_default_bus());
        assert_eq!(p["source"], json!(["aws.rds"]));
    }

    #[test]
    fn retry_policies_are_within_aws_limits() {
        for r in [ANALYTICS_RETRY, ALERT_RETRY] {
            assert!((60..=86_400).contains(&r.max_age_s));
            assert!((0..=185).contains(&r.attempts));
        }
    }

    fn inputs() -> Vec<(&'static str, Record)> {
        testing::outputs(&[
            (
                "sqs-queue:payments-analytics",
                "PaymentsAnalyticsQueueArn",
                QUEUE,
            ),
            (DLQ_INPUT.0, DLQ_INPUT.1, DLQ),
            (BUS_INPUT.0, BUS_INPUT.1, BUS),
        ])
    }

    fn cx_with(rules: &[&Rule]) -> Context {
        let mut clients = testing::clients();
        clients.events = mock_client!(aws_sdk_eventbridge, RuleMode::MatchAny, rules);
        testing::context(clients)
    }

    fn rule() -> RoutingRule {
        RoutingRule::new(EventRule::PaymentSucceeded)
    }

    fn missing() -> Rule {
        mock!(Client::describe_rule).then_error(|| {
            DescribeRuleError::generic(testing::error_meta("ResourceNotFoundException"))
        })
    }

    fn described(pattern: String) -> Rule {
        mock!(Client::describe_rule)
            .match_requests(|r| r.name() == Some(NAME) && r.event_bus_name() == Some(BUS))
            .then_output(move || {
                DescribeRuleOutput::builder()
                    .name(NAME)
                    .arn(ARN)
                    .event_bus_name(BUS)
                    .event_pattern(pattern.clone())
                    .state(RuleState::Enabled)
                    .description("payops env pr1: payment succeeded -> analytics queue")
                    .build()
            })
    }

    /// The pattern as EventBridge may echo it: reformatted, keys reordered.
    fn echoed_pattern() -> String {
        r#"{ "detail-type": ["Payment Succeeded"], "source": ["payops.payments"] }"#.to_owned()
    }

    fn tagged(tags: TagMap) -> Rule {
        mock!(Client::list_tags_for_resource)
            .match_requests(|r| r.resource_arn() == Some(ARN))
            .then_output(move || {
                ListTagsForResourceOutput::builder()
                    .set_tags(Some(
                        tags.iter()
                            .map(|(k, v)| Tag::builder().key(k).value(v).build().unwrap())
                            .collect(),
                    ))
                    .build()
            })
    }

    fn target(id: &str, arn: &str, retry: Retry) -> Target {
        FoundTarget {
            id: id.into(),
            arn: arn.into(),
            retry: Some(retry),
            dead_letter_arn: Some(DLQ.into()),
        }
        .to_sdk()
        .unwrap()
    }

    fn listed(targets: Vec<Target>) -> Rule {
        mock!(Client::list_targets_by_rule)
            .match_requests(|r| r.rule() == Some(NAME) && r.event_bus_name() == Some(BUS))
            .then_output(move || {
                ListTargetsByRuleOutput::builder()
                    .set_targets(Some(targets.clone()))
                    .build()
            })
    }

    fn put_ok() -> Rule {
        mock!(Client::put_targets)
            .match_requests(|r| {
                let t = &r.targets()[0];
                let retry = t.retry_policy().unwrap();
                r.rule() == Some(NAME)
                    && r.event_bus_name() == Some(BUS)
                    && r.targets().len() == 1
                    && t.id() == "analytics-queue"
                    && t.arn() == QUEUE
                    && retry.maximum_event_age_in_seconds() == Some(86_400)
                    && retry.maximum_retry_attempts() == Some(185)
                    && t.dead_letter_config().and_then(|d| d.arn()) == Some(DLQ)
            })
            .then_output(|| PutTargetsOutput::builder().failed_entry_count(0).build())
    }

    #[tokio::test]
    async fn creates_the_rule_on_the_env_bus_then_its_target_with_retries_and_a_dlq() {
        let get = missing();
        let put_rule = mock!(Client::put_rule)
            .match_requests(|r| {
                let pattern: Value = serde_json::from_str(r.event_pattern().unwrap()).unwrap();
                let tags: TagMap = r
                    .tags()
                    .iter()
                    .map(|t| (t.key().to_owned(), t.value().to_owned()))
                    .collect();
                r.name() == Some(NAME)
                    && r.event_bus_name() == Some(BUS)
                    && r.state() == Some(&RuleState::Enabled)
                    && pattern["detail-type"] == json!(["Payment Succeeded"])
                    && tags.get("payops:step").map(String::as_str) == Some(STEP)
            })
            .then_output(|| PutRuleOutput::builder().rule_arn(ARN).build());
        let put_targets = put_ok();
        let cx = cx_with(&[&get, &put_rule, &put_targets]);
        let applied = testing::ensure(&cx, STEP, rule(), &inputs()).await.unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(put_rule.num_calls(), 1);
        assert_eq!(put_targets.num_calls(), 1);
        assert_eq!(applied.record.outputs["PaymentSucceededRuleArn"], ARN);
    }

    #[tokio::test]
    async fn a_rule_in_sync_is_adopted_without_mutating_calls() {
        let get = described(echoed_pattern());
        let tags = tagged(testing::our_tags(STEP));
        let list = listed(vec![target("analytics-queue", QUEUE, ANALYTICS_RETRY)]);
        let cx = cx_with(&[&get, &tags, &list]);
        let applied = testing::ensure(&cx, STEP, rule(), &inputs()).await.unwrap();
        assert_eq!(applied.change, Change::Unchanged, "{:?}", applied.notes);
    }

    #[tokio::test]
    async fn a_changed_pattern_a_retargeted_rule_and_a_foreign_target_are_drift_and_repaired() {
        // Out of band: the pattern widened to every payops event, the
        // target pointed at another queue, and a second target added.
        let get = described(r#"{"source":["payops.payments"]}"#.to_owned());
        let tags = tagged(testing::our_tags(STEP));
        let list = listed(vec![
            target(
                "analytics-queue",
                "arn:aws:sqs:us-east-1:123456789012:elsewhere",
                ANALYTICS_RETRY,
            ),
            target(
                "sneaky",
                "arn:aws:sqs:us-east-1:999999999999:exfil",
                ANALYTICS_RETRY,
            ),
        ]);
        let cx = cx_with(&[&get, &tags, &list]);
        let observed = testing::observe(&cx, STEP, rule(), &inputs())
            .await
            .unwrap();
        let Observation::Present { drift, .. } = observed else {
            panic!("expected present, got {observed:?}");
        };
        assert_eq!(
            drift,
            [
                "set EventPattern",
                "put target analytics-queue",
                "remove targets sneaky"
            ]
        );

        let put_rule = mock!(Client::put_rule)
            .match_requests(|r| {
                r.name() == Some(NAME)
                    && r.tags().is_empty()
                    && same_pattern(
                        r.event_pattern(),
                        &event_pattern(&names(), EventRule::PaymentSucceeded),
                    )
            })
            .then_output(|| PutRuleOutput::builder().rule_arn(ARN).build());
        let put_targets = put_ok();
        let remove = mock!(Client::remove_targets)
            .match_requests(|r| r.ids() == ["sneaky"] && r.event_bus_name() == Some(BUS))
            .then_output(|| RemoveTargetsOutput::builder().failed_entry_count(0).build());
        let cx = cx_with(&[&get, &tags, &list, &put_rule, &put_targets, &remove]);
        let applied = testing::ensure(&cx, STEP, rule(), &inputs()).await.unwrap();
        assert_eq!(applied.change, Change::Updated);
        assert_eq!(put_rule.num_calls(), 1);
        assert_eq!(put_targets.num_calls(), 1);
        assert_eq!(remove.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_target_whose_retry_policy_was_dropped_is_drift() {
        let get = described(echoed_pattern());
        let tags = tagged(testing::our_tags(STEP));
        let bare = Target::builder()
            .id("analytics-queue")
            .arn(QUEUE)
            .dead_letter_config(DeadLetterConfig::builder().arn(DLQ).build())
            .build()
            .unwrap();
        let list = listed(vec![bare]);
        let cx = cx_with(&[&get, &tags, &list]);
        let observed = testing::observe(&cx, STEP, rule(), &inputs())
            .await
            .unwrap();
        let Observation::Present { drift, .. } = observed else {
            panic!("expected present, got {observed:?}");
        };
        assert_eq!(drift, ["put target analytics-queue"]);
    }

    #[tokio::test]
    async fn put_targets_with_failed_entries_is_an_error_not_success() {
        // PutTargets answers 200 with FailedEntryCount when an entry fails.
        let get = missing();
        let put_rule =
            mock!(Client::put_rule).then_output(|| PutRuleOutput::builder().rule_arn(ARN).build());
        let put_targets = mock!(Client::put_targets).then_output(|| {
            PutTargetsOutput::builder()
                .failed_entry_count(1)
                .failed_entries(
                    PutTargetsResultEntry::builder()
                        .target_id("analytics-queue")
                        .error_code("ValidationException")
                        .error_message("Invalid arn")
                        .build(),
                )
                .build()
        });
        let cx = cx_with(&[&get, &put_rule, &put_targets]);
        let err = testing::ensure(&cx, STEP, rule(), &inputs())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("1 entries failed: analytics-queue: ValidationException"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn destroy_removes_the_targets_before_the_rule() {
        let get = described(echoed_pattern());
        let tags = tagged(testing::our_tags(STEP));
        let list = listed(vec![target("analytics-queue", QUEUE, ANALYTICS_RETRY)]);
        let removed_first = Arc::new(AtomicBool::new(false));
        let flag = removed_first.clone();
        let remove = mock!(Client::remove_targets)
            .match_requests(move |r| {
                flag.store(true, Ordering::SeqCst);
                r.ids() == ["analytics-queue"]
            })
            .then_output(|| RemoveTargetsOutput::builder().failed_entry_count(0).build());
        let flag = removed_first.clone();
        // AWS refuses DeleteRule while targets remain: this mock only
        // answers once RemoveTargets has been called.
        let delete = mock!(Client::delete_rule)
            .match_requests(move |r| {
                flag.load(Ordering::SeqCst)
                    && r.name() == Some(NAME)
                    && r.event_bus_name() == Some(BUS)
            })
            .then_output(|| DeleteRuleOutput::builder().build());
        let cx = cx_with(&[&get, &tags, &list, &remove, &delete]);
        let removed = testing::destroy(&cx, STEP, rule()).await.unwrap();
        assert!(matches!(removed, Removed::Deleted { .. }));
        assert_eq!(remove.num_calls(), 1);
        assert_eq!(delete.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_rule_gone_during_delete_or_missing_is_success() {
        let get = described(echoed_pattern());
        let tags = tagged(testing::our_tags(STEP));
        let list = listed(Vec::new());
        let gone = mock!(Client::delete_rule).then_error(|| {
            DeleteRuleError::generic(testing::error_meta("ResourceNotFoundException"))
        });
        let cx = cx_with(&[&get, &tags, &list, &gone]);
        let removed = testing::destroy(&cx, STEP, rule()).await.unwrap();
        assert!(matches!(removed, Removed::Deleted { .. }));

        let cx = cx_with(&[&missing()]);
        let removed = testing::destroy(&cx, STEP, rule()).await.unwrap();
        assert_eq!(removed, Removed::AlreadyAbsent);
    }

    #[tokio::test]
    async fn a_same_named_rule_of_someone_else_is_refused_never_rewritten() {
        // PutRule is an upsert: calling it here would take the rule over.
        let get = described(echoed_pattern());
        let tags = tagged(TagMap::from([("team".into(), "billing".into())]));
        let cx = cx_with(&[&get, &tags]);
        let err = testing::ensure(&cx, STEP, rule(), &inputs())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("EventBridge rule {NAME}")), "{err}");
    }

    #[tokio::test]
    async fn the_failover_rule_lives_on_the_default_bus() {
        let get = mock!(Client::describe_rule)
            .match_requests(|r| {
                r.name() == Some("payops-pr1-db-failover") && r.event_bus_name() == Some("default")
            })
            .then_error(|| {
                DescribeRuleError::generic(testing::error_meta("ResourceNotFoundException"))
            });
        let cx = cx_with(&[&get]);
        let removed = testing::destroy(
            &cx,
            "event-rule:db-failover",
            RoutingRule::new(EventRule::DbFailover),
        )
        .await
        .unwrap();
        assert_eq!(removed, Removed::AlreadyAbsent);
        assert_eq!(get.num_calls(), 1);
        assert_eq!(
            cx.event_rule_arn(EventRule::DbFailover),
            "arn:aws:events:us-east-1:123456789012:rule/payops-pr1-db-failover"
        );
    }

    #[tokio::test]
    async fn with_events_off_up_removes_targets_and_the_rule() {
        let get = described(echoed_pattern());
        let tags = tagged(testing::our_tags(STEP));
        let list = listed(vec![target("analytics-queue", QUEUE, ANALYTICS_RETRY)]);
        let remove = mock!(Client::remove_targets)
            .then_output(|| RemoveTargetsOutput::builder().failed_entry_count(0).build());
        let delete = mock!(Client::delete_rule).then_output(|| DeleteRuleOutput::builder().build());
        let mut cx = cx_with(&[&get, &tags, &list, &remove, &delete]);
        cx.spec.events = false;
        let applied = testing::ensure(&cx, STEP, rule(), &inputs()).await.unwrap();
        assert_eq!(applied.change, Change::Deleted);
        assert_eq!(remove.num_calls(), 1);
        assert_eq!(delete.num_calls(), 1);
    }
}
