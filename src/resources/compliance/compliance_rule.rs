//! The env's rule on AWS Config's compliance changes: on the account's
//! default bus (AWS service events reach only that one
//! [EB:eb-encryption-event-bus-cmkey]), for a change to NON_COMPLIANT of
//! one of the env's Config rules, to two targets: the remediation function
//! (which fixes what it safely can and reports) and the env's alerts topic
//! (system-errors: the finding reaches whoever is on call even when the
//! function cannot run). A step = the rule, its targets and the function's
//! permission for it: none of them means anything without the others.
//!
//! The pattern lists the env's rule names exactly (`payops-<env>-<check>`),
//! not a `payops-<env>-` prefix: env `pr1`'s prefix is also the start of env
//! `pr1-x`'s rule names. Config puts the rule's name in
//! `detail.configRuleName` and the new result in
//! `detail.newEvaluationResult.complianceType` [EBR:events-ref-config];
//! `messageType` keeps out the other notifications of the same detail-type.
//!
//! Real-AWS rules encoded here (emulators ignore them):
//! - EventBridge invokes a function only if the function's policy lets
//!   `events.amazonaws.com` do so, best scoped with the rule's ARN as
//!   aws:SourceArn [EB:eb-use-resource-based, "Lambda permissions"]; the
//!   topic's policy (data/sns_topic.rs) and the logs key's policy let the
//!   rule publish to the encrypted topic.
//! - PutTargets and RemoveTargets answer 200 with FailedEntryCount > 0 when
//!   an entry failed: an error. DeleteRule refuses a rule with targets:
//!   RemoveTargets first (sdk/events.rs).
//! - RetryPolicy within MaximumEventAgeInSeconds 60-86,400 and
//!   MaximumRetryAttempts 0-185 [API_RetryPolicy]. No dead-letter queue:
//!   the env's events DLQ exists only with the event backbone, and Config's
//!   delivery to EventBridge is best effort anyway [EBR:events-ref-config]:
//!   the next evaluation (periodic, or the next change) sends it again.

use std::collections::BTreeSet;
use std::fmt;

use async_trait::async_trait;
use aws_sdk_eventbridge::types::{RetryPolicy, RuleState, Target};
use serde_json::{Value, json};

use crate::aws::{AwsError, OpResult, absent_on, built};
use crate::engine::{Record, StepCx};
use crate::naming::{NameKind, Names};
use crate::tags::{TagMap, describe_tag_fix};

use crate::resources::context::Context;
use crate::resources::model::Function;
use crate::resources::resource::Resource;
use crate::resources::sdk::{events, lambda};

use super::config_rules;

pub const STEP: &str = "event-rule:compliance-change";
pub const SOURCE: &str = "aws.config";
pub const DETAIL_TYPE: &str = "Config Rules Compliance Change";
/// The topic the raw finding goes to (and the function's reports).
pub const TOPIC_INPUT: (&str, &str) = ("sns-topic:system-errors", "SystemErrorsTopicArn");
/// The function's policy statement for this rule.
const STATEMENT_ID: &str = "EnvComplianceRuleInvokes";
const PRINCIPAL: &str = "events.amazonaws.com";
const BUS: &str = "default";

/// A finding an hour late is still worth fixing; after that the next
/// periodic evaluation sends it again.
const MAX_AGE_S: i32 = 3_600;
const ATTEMPTS: i32 = 24;
const _: () = assert!(MAX_AGE_S >= 60 && MAX_AGE_S <= 86_400);
const _: () = assert!(ATTEMPTS >= 0 && ATTEMPTS <= 185);

/// The rule's event pattern: NON_COMPLIANT results of the env's rules only.
pub fn event_pattern(names: &Names) -> Value {
    json!({
        "source": [SOURCE],
        "detail-type": [DETAIL_TYPE],
        "detail": {
            "messageType": ["ComplianceChangeNotification"],
            "configRuleName": config_rules::rule_names(names),
            "newEvaluationResult": { "complianceType": ["NON_COMPLIANT"] }
        }
    })
}

fn function_input() -> (String, String) {
    let f = Function::Remediation;
    (f.step_id(), f.arn_output())
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct FoundTarget {
    id: String,
    arn: String,
    retry: Option<(i32, i32)>,
}

impl FoundTarget {
    fn from_sdk(t: &Target) -> Self {
        Self {
            id: t.id().to_owned(),
            arn: t.arn().to_owned(),
            retry: t.retry_policy().map(|r| {
                (
                    r.maximum_event_age_in_seconds().unwrap_or(86_400),
                    r.maximum_retry_attempts().unwrap_or(185),
                )
            }),
        }
    }

    fn to_sdk(&self) -> Result<Target, AwsError> {
        let mut b = Target::builder().id(&self.id).arn(&self.arn);
        if let Some((age, attempts)) = self.retry {
            b = b.retry_policy(
                RetryPolicy::builder()
                    .maximum_event_age_in_seconds(age)
                    .maximum_retry_attempts(attempts)
                    .build(),
            );
        }
        built("events:PutTargets", b.build())
    }
}

fn desired_targets(step: &StepCx<'_>) -> Result<Vec<FoundTarget>, AwsError> {
    let (from, key) = function_input();
    Ok(vec![
        FoundTarget {
            id: "remediation".into(),
            arn: step.output(&from, &key)?.to_owned(),
            retry: Some((MAX_AGE_S, ATTEMPTS)),
        },
        FoundTarget {
            id: "alerts-topic".into(),
            arn: step.output(TOPIC_INPUT.0, TOPIC_INPUT.1)?.to_owned(),
            retry: Some((MAX_AGE_S, ATTEMPTS)),
        },
    ])
}

pub struct ComplianceRule;

pub struct FoundRule {
    name: String,
    arn: String,
    pattern: Option<String>,
    state: Option<String>,
    description: Option<String>,
    targets: Vec<FoundTarget>,
    tags: TagMap,
    permitted: bool,
}

pub enum Fix {
    Tags(TagMap),
    Rule { what: Vec<&'static str> },
    Targets { ids: Vec<String> },
    RemoveTargets { ids: Vec<String> },
    Permission,
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tags(t) => f.write_str(&describe_tag_fix(t)),
            Self::Rule { what } => write!(f, "set {}", what.join(", ")),
            Self::Targets { ids } => write!(f, "put targets {}", ids.join(", ")),
            Self::RemoveTargets { ids } => write!(f, "remove targets {}", ids.join(", ")),
            Self::Permission => {
                f.write_str("let EventBridge invoke the remediation function for this rule")
            }
        }
    }
}

fn same_pattern(found: Option<&str>, want: &Value) -> bool {
    found
        .and_then(|f| serde_json::from_str::<Value>(f).ok())
        .is_some_and(|f| &f == want)
}

impl ComplianceRule {
    fn name(cx: &Context) -> Result<String, AwsError> {
        let name = cx.names.compliance_rule();
        NameKind::EventRule
            .check(&name)
            .map_err(AwsError::Conflict)?;
        Ok(name)
    }

    fn description(cx: &Context) -> String {
        format!(
            "payops env {}: Config rule NON_COMPLIANT -> remediation, system-errors topic",
            cx.env()
        )
    }

    async fn put_rule(cx: &Context, tags: Option<&TagMap>) -> Result<Option<String>, AwsError> {
        const OP: &str = "events:PutRule";
        let tags = tags.map(|t| events::tags(OP, t)).transpose()?;
        let out = cx
            .clients
            .events
            .put_rule()
            .name(Self::name(cx)?)
            .event_bus_name(BUS)
            .event_pattern(event_pattern(&cx.names).to_string())
            .state(RuleState::Enabled)
            .description(Self::description(cx))
            .set_tags(tags)
            .send()
            .await
            .op(OP)?;
        Ok(out.rule_arn().map(str::to_owned))
    }

    async fn targets(cx: &Context, name: &str) -> Result<Vec<FoundTarget>, AwsError> {
        const OP: &str = "events:ListTargetsByRule";
        let mut found = Vec::new();
        let mut token = None;
        loop {
            let out = cx
                .clients
                .events
                .list_targets_by_rule()
                .rule(name)
                .event_bus_name(BUS)
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

    async fn permitted(cx: &Context, rule: &str) -> Result<bool, AwsError> {
        let function = Function::Remediation.name(cx);
        lambda::grants(cx, &function, None, STATEMENT_ID, PRINCIPAL, rule).await
    }

    async fn remove_permission(cx: &Context) -> Result<(), AwsError> {
        let removed = cx
            .clients
            .lambda
            .remove_permission()
            .function_name(Function::Remediation.name(cx))
            .statement_id(STATEMENT_ID)
            .send()
            .await
            .op("lambda:RemovePermission");
        absent_on(removed, &["ResourceNotFoundException"]).map(drop)
    }
}

#[async_trait]
impl Resource for ComplianceRule {
    type Found = FoundRule;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "events:rule"
    }

    async fn find(&self, cx: &Context, _step: &StepCx<'_>) -> Result<Vec<FoundRule>, AwsError> {
        let name = Self::name(cx)?;
        let out = cx
            .clients
            .events
            .describe_rule()
            .name(&name)
            .event_bus_name(BUS)
            .send()
            .await
            .op("events:DescribeRule");
        let Some(out) = absent_on(out, &events::NOT_FOUND)? else {
            return Ok(Vec::new());
        };
        let arn = out
            .arn()
            .map(str::to_owned)
            .unwrap_or_else(|| cx.compliance_rule_arn());
        let tags = events::tags_of(cx, &arn).await?;
        cx.check_ours(format!("EventBridge rule {name}"), &tags)?;
        let targets = Self::targets(cx, &name).await?;
        let permitted = Self::permitted(cx, &arn).await?;
        Ok(vec![FoundRule {
            name,
            arn,
            pattern: out.event_pattern().map(str::to_owned),
            state: out.state().map(|s| s.as_str().to_owned()),
            description: out.description().map(str::to_owned),
            targets,
            tags,
            permitted,
        }])
    }

    fn describe(&self, found: &FoundRule) -> String {
        found.name.clone()
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<FoundRule, AwsError> {
        let tags = cx.tagger.for_create(step.id().as_str());
        let arn = Self::put_rule(cx, Some(&tags))
            .await?
            .unwrap_or_else(|| cx.compliance_rule_arn());
        step.remember("rule", &arn);
        // Targets and the permission follow in `fix`, right after.
        Ok(FoundRule {
            name: Self::name(cx)?,
            arn,
            pattern: Some(event_pattern(&cx.names).to_string()),
            state: Some(RuleState::Enabled.as_str().to_owned()),
            description: Some(Self::description(cx)),
            targets: Vec::new(),
            tags,
            permitted: false,
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
        if !same_pattern(rule.pattern.as_deref(), &event_pattern(&cx.names)) {
            what.push("EventPattern");
        }
        if rule.state.as_deref() != Some(RuleState::Enabled.as_str()) {
            what.push("State");
        }
        if rule.description.as_deref() != Some(Self::description(cx).as_str()) {
            what.push("Description");
        }
        if !what.is_empty() {
            fixes.push(Fix::Rule { what });
        }
        let want = desired_targets(step)?;
        let put: Vec<String> = want
            .iter()
            .filter(|t| !rule.targets.contains(t))
            .map(|t| t.id.clone())
            .collect();
        if !put.is_empty() {
            fixes.push(Fix::Targets { ids: put });
        }
        let extra: BTreeSet<String> = rule
            .targets
            .iter()
            .filter(|t| want.iter().all(|w| w.id != t.id))
            .map(|t| t.id.clone())
            .collect();
        if !extra.is_empty() {
            fixes.push(Fix::RemoveTargets {
                ids: extra.into_iter().collect(),
            });
        }
        if !rule.permitted {
            fixes.push(Fix::Permission);
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
                Self::put_rule(cx, None).await?;
                rule.pattern = Some(event_pattern(&cx.names).to_string());
                rule.state = Some(RuleState::Enabled.as_str().to_owned());
                rule.description = Some(Self::description(cx));
            }
            Fix::Targets { ids } => {
                const OP: &str = "events:PutTargets";
                let want: Vec<FoundTarget> = desired_targets(step)?
                    .into_iter()
                    .filter(|t| ids.contains(&t.id))
                    .collect();
                let out = cx
                    .clients
                    .events
                    .put_targets()
                    .rule(&rule.name)
                    .event_bus_name(BUS)
                    .set_targets(Some(
                        want.iter()
                            .map(FoundTarget::to_sdk)
                            .collect::<Result<_, _>>()?,
                    ))
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
                rule.targets.retain(|t| !ids.contains(&t.id));
                rule.targets.extend(want);
            }
            Fix::RemoveTargets { ids } => {
                events::remove_targets(cx, BUS, &rule.name, ids.clone()).await?;
                rule.targets.retain(|t| !ids.contains(&t.id));
            }
            Fix::Permission => {
                // A statement of ours with another source is replaced.
                Self::remove_permission(cx).await?;
                let added = cx
                    .clients
                    .lambda
                    .add_permission()
                    .function_name(Function::Remediation.name(cx))
                    .statement_id(STATEMENT_ID)
                    .action("lambda:InvokeFunction")
                    .principal(PRINCIPAL)
                    .source_arn(&rule.arn)
                    .send()
                    .await
                    .op("lambda:AddPermission");
                match added {
                    Ok(_) => {}
                    // The retry of an AddPermission whose answer was lost
                    // meets the statement its first attempt added.
                    Err(e)
                        if e.is_code(&["ResourceConflictException"])
                            && Self::permitted(cx, &rule.arn).await? => {}
                    Err(e) => return Err(e),
                }
                rule.permitted = true;
            }
        }
        Ok(())
    }

    fn record(&self, _cx: &Context, rule: &FoundRule) -> Record {
        Record::default()
            .resource("rule", &rule.arn)
            .output("ComplianceChangeRuleArn", &rule.arn)
    }

    async fn delete(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        rule: FoundRule,
    ) -> Result<Vec<String>, AwsError> {
        events::delete_rule(cx, BUS, &rule.name).await?;
        // The function goes right after; its permission with it, but a
        // `down` stopped between the two would leave a statement naming a
        // rule that no longer exists.
        Self::remove_permission(cx).await?;
        Ok(Vec::new())
    }
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
    use aws_sdk_lambda::operation::add_permission::AddPermissionOutput;
    use aws_sdk_lambda::operation::get_policy::{GetPolicyError, GetPolicyOutput};
    use aws_sdk_lambda::operation::remove_permission::{
        RemovePermissionError, RemovePermissionOutput,
    };
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    use super::*;
    use crate::engine::{Change, Record, Removed};
    use crate::naming::EnvName;
    use crate::resources::testing;

    const NAME: &str = "payops-pr1-compliance-change";
    const ARN: &str = "arn:aws:events:us-east-1:123456789012:rule/payops-pr1-compliance-change";
    const FUNCTION: &str =
        "arn:aws:lambda:us-east-1:123456789012:function:payops-pr1-config-remediation";
    const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:payops-pr1-system-errors";

    fn names(env: &str) -> Names {
        Names::new(EnvName::parse(env).unwrap(), "123456789012", "us-east-1")
    }

    /// EventBridge's matching for what the pattern uses: every key of the
    /// pattern in the event, a list of values matching the event's value.
    fn matches(pattern: &Value, event: &Value) -> bool {
        match pattern {
            Value::Object(fields) => fields
                .iter()
                .all(|(k, p)| event.get(k).is_some_and(|e| matches(p, e))),
            Value::Array(allowed) => allowed.contains(event),
            _ => false,
        }
    }

    /// AWS's sample "Config Rules Compliance Change" event (EventBridge
    /// events reference, "AWS Config events"; the notification's fields as
    /// in the Config developer guide's example compliance change
    /// notification), with a rule name and result put in. The remediation
    /// handler's tests and tests/baseline.rs read the same file.
    fn change_event(rule: &str, compliance: &str) -> Value {
        let mut e: Value = serde_json::from_str(include_str!(
            "../../../lambda/tests/events/config-compliance-change.json"
        ))
        .expect("the sample event is JSON");
        let detail = &mut e["detail"];
        detail["configRuleName"] = rule.into();
        detail["newEvaluationResult"]["evaluationResultIdentifier"]["evaluationResultQualifier"]
            ["configRuleName"] = rule.into();
        detail["newEvaluationResult"]["complianceType"] = compliance.into();
        e
    }

    #[test]
    fn the_pattern_takes_non_compliant_changes_of_the_envs_rules_only() {
        let p = event_pattern(&names("pr1"));
        for name in config_rules::rule_names(&names("pr1")) {
            assert!(matches(&p, &change_event(&name, "NON_COMPLIANT")), "{name}");
            assert!(!matches(&p, &change_event(&name, "COMPLIANT")), "{name}");
            assert!(
                !matches(&p, &change_event(&name, "NOT_APPLICABLE")),
                "{name}"
            );
        }
        // Env pr1-x's rules start with pr1's `payops-pr1-`: exact names, so
        // no prefix of one env takes another's findings.
        assert!(!matches(
            &p,
            &change_event("payops-pr1-x-vpc-flow-logs-enabled", "NON_COMPLIANT")
        ));
        assert!(!matches(
            &p,
            &change_event("securityhub-vpc-flow-logs-enabled-abc", "NON_COMPLIANT")
        ));
        // Only Config's events, on the default bus (its ARN has no bus).
        assert_eq!(p["source"], json!(["aws.config"]));
        let cx = testing::context(testing::clients());
        assert_eq!(cx.compliance_rule_arn(), ARN);
    }

    fn inputs() -> Vec<(&'static str, Record)> {
        let (from, key) = function_input();
        vec![
            (
                Box::leak(from.into_boxed_str()),
                Record::default().output(key, FUNCTION),
            ),
            (
                TOPIC_INPUT.0,
                Record::default().output(TOPIC_INPUT.1, TOPIC),
            ),
        ]
    }

    fn cx_with(events: &[&Rule], lambda: &[&Rule]) -> Context {
        let mut clients = testing::clients();
        clients.events = mock_client!(aws_sdk_eventbridge, RuleMode::MatchAny, events);
        clients.lambda = mock_client!(aws_sdk_lambda, RuleMode::MatchAny, lambda);
        testing::context(clients)
    }

    fn missing() -> Rule {
        mock!(Client::describe_rule).then_error(|| {
            DescribeRuleError::generic(testing::error_meta("ResourceNotFoundException"))
        })
    }

    fn described() -> Rule {
        mock!(Client::describe_rule)
            .match_requests(|r| r.name() == Some(NAME) && r.event_bus_name() == Some("default"))
            .then_output(|| {
                DescribeRuleOutput::builder()
                    .name(NAME)
                    .arn(ARN)
                    .event_pattern(event_pattern(&names("pr1")).to_string())
                    .state(RuleState::Enabled)
                    .description(
                        "payops env pr1: Config rule NON_COMPLIANT -> remediation, \
                         system-errors topic",
                    )
                    .build()
            })
    }

    fn tagged(tags: TagMap) -> Rule {
        mock!(Client::list_tags_for_resource).then_output(move || {
            ListTagsForResourceOutput::builder()
                .set_tags(Some(
                    tags.iter()
                        .map(|(k, v)| Tag::builder().key(k).value(v).build().unwrap())
                        .collect(),
                ))
                .build()
        })
    }

    fn listed(targets: Vec<Target>) -> Rule {
        mock!(Client::list_targets_by_rule).then_output(move || {
            ListTargetsByRuleOutput::builder()
                .set_targets(Some(targets.clone()))
                .build()
        })
    }

    fn both_targets() -> Vec<Target> {
        [("remediation", FUNCTION), ("alerts-topic", TOPIC)]
            .iter()
            .map(|(id, arn)| {
                FoundTarget {
                    id: (*id).into(),
                    arn: (*arn).into(),
                    retry: Some((MAX_AGE_S, ATTEMPTS)),
                }
                .to_sdk()
                .unwrap()
            })
            .collect()
    }

    fn policy(source: &'static str) -> Rule {
        mock!(aws_sdk_lambda::Client::get_policy).then_output(move || {
            GetPolicyOutput::builder()
                .policy(
                    json!({"Statement": [{
                        "Sid": STATEMENT_ID,
                        "Effect": "Allow",
                        "Principal": {"Service": PRINCIPAL},
                        "Action": "lambda:InvokeFunction",
                        "Condition": {"ArnLike": {"AWS:SourceArn": source}}
                    }]})
                    .to_string(),
                )
                .build()
        })
    }

    #[tokio::test]
    async fn creates_the_rule_on_the_default_bus_with_both_targets_and_the_functions_permission() {
        let put_rule = mock!(Client::put_rule)
            .match_requests(|r| {
                let pattern: Value = serde_json::from_str(r.event_pattern().unwrap()).unwrap();
                r.name() == Some(NAME)
                    && r.event_bus_name() == Some("default")
                    && pattern == event_pattern(&names("pr1"))
                    && r.tags()
                        .iter()
                        .any(|t| t.key() == "payops:env" && t.value() == "pr1")
            })
            .then_output(|| PutRuleOutput::builder().rule_arn(ARN).build());
        let put_targets = mock!(Client::put_targets)
            .match_requests(|r| {
                let t = r.targets();
                t.len() == 2
                    && t[0].arn() == FUNCTION
                    && t[1].arn() == TOPIC
                    && t.iter().all(|t| {
                        t.retry_policy().and_then(|r| r.maximum_retry_attempts()) == Some(ATTEMPTS)
                    })
            })
            .then_output(|| PutTargetsOutput::builder().failed_entry_count(0).build());
        let remove = mock!(aws_sdk_lambda::Client::remove_permission).then_error(|| {
            RemovePermissionError::generic(testing::error_meta("ResourceNotFoundException"))
        });
        let add = mock!(aws_sdk_lambda::Client::add_permission)
            .match_requests(|r| {
                r.function_name() == Some("payops-pr1-config-remediation")
                    && r.principal() == Some(PRINCIPAL)
                    && r.source_arn() == Some(ARN)
                    && r.statement_id() == Some(STATEMENT_ID)
            })
            .then_output(|| AddPermissionOutput::builder().build());
        let get = missing();
        let cx = cx_with(&[&get, &put_rule, &put_targets], &[&remove, &add]);
        let applied = testing::ensure(&cx, STEP, ComplianceRule, &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created, "{:?}", applied.notes);
        assert_eq!(put_rule.num_calls(), 1);
        assert_eq!(put_targets.num_calls(), 1);
        assert_eq!(add.num_calls(), 1);
        assert_eq!(applied.record.outputs["ComplianceChangeRuleArn"], ARN);
    }

    #[tokio::test]
    async fn a_converged_rule_makes_no_mutating_call() {
        let (get, tags, list, pol) = (
            described(),
            tagged(testing::our_tags(STEP)),
            listed(both_targets()),
            policy(ARN),
        );
        let cx = cx_with(&[&get, &tags, &list], &[&pol]);
        let applied = testing::ensure(&cx, STEP, ComplianceRule, &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Unchanged, "{:?}", applied.notes);
    }

    #[tokio::test]
    async fn a_permission_for_another_source_and_a_foreign_target_are_drift() {
        let (get, tags, pol) = (
            described(),
            tagged(testing::our_tags(STEP)),
            policy("arn:x"),
        );
        let mut targets = both_targets();
        targets.push(
            Target::builder()
                .id("exfil")
                .arn("arn:aws:sqs:us-east-1:999999999999:q")
                .build()
                .unwrap(),
        );
        let list = listed(targets);
        let cx = cx_with(&[&get, &tags, &list], &[&pol]);
        let observed = testing::observe(&cx, STEP, ComplianceRule, &inputs())
            .await
            .unwrap();
        let crate::engine::Observation::Present { drift, .. } = observed else {
            panic!("{observed:?}")
        };
        assert_eq!(
            drift,
            [
                "remove targets exfil",
                "let EventBridge invoke the remediation function for this rule"
            ]
        );
    }

    #[tokio::test]
    async fn down_removes_the_targets_the_rule_and_the_permission() {
        let (get, tags, list) = (
            described(),
            tagged(testing::our_tags(STEP)),
            listed(both_targets()),
        );
        let pol = policy(ARN);
        let remove_targets = mock!(Client::remove_targets)
            .then_output(|| RemoveTargetsOutput::builder().failed_entry_count(0).build());
        let delete = mock!(Client::delete_rule).then_output(|| DeleteRuleOutput::builder().build());
        let unpermit = mock!(aws_sdk_lambda::Client::remove_permission)
            .match_requests(|r| r.statement_id() == Some(STATEMENT_ID))
            .then_output(|| RemovePermissionOutput::builder().build());
        let cx = cx_with(
            &[&get, &tags, &list, &remove_targets, &delete],
            &[&pol, &unpermit],
        );
        let removed = testing::destroy(&cx, STEP, ComplianceRule).await.unwrap();
        assert!(matches!(removed, Removed::Deleted { .. }));
        assert_eq!(remove_targets.num_calls(), 1);
        assert_eq!(delete.num_calls(), 1);
        assert_eq!(unpermit.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_same_named_rule_of_someone_else_is_refused() {
        let (get, tags) = (
            described(),
            tagged(TagMap::from([("team".into(), "security".into())])),
        );
        let none = mock!(aws_sdk_lambda::Client::get_policy).then_error(|| {
            GetPolicyError::generic(testing::error_meta("ResourceNotFoundException"))
        });
        let cx = cx_with(&[&get, &tags], &[&none]);
        let err = testing::ensure(&cx, STEP, ComplianceRule, &inputs())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("EventBridge rule {NAME}")), "{err}");
    }

    #[test]
    fn the_retry_policy_is_within_aws_limits() {
        assert!((60..=86_400).contains(&MAX_AGE_S));
        assert!((0..=185).contains(&ATTEMPTS));
    }
}
