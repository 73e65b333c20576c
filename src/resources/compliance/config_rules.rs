//! The env's AWS Config rules: AWS managed rules named `payops-<env>-<check>`,
//! tagged for the env, that watch what PCI asks of its resources: encrypted
//! EBS volumes and RDS storage (with the env's database key), VPC flow logs
//! on, and S3 buckets that refuse plain HTTP and are not public.
//!
//! One step for the set (a tightly bound group: one recorder check, one
//! describe, one teardown wait), and not a `Resource`: a rule needs the
//! region's configuration recorder, which is the account baseline's (or
//! another team's), not the env's. Without one, PutConfigRule fails with
//! NoAvailableConfigurationRecorderException ("There are no customer managed
//! configuration recorders available to record your resources")
//! [CA:API_PutConfigRule], and a rule would evaluate nothing anyway (a
//! change-triggered rule sees only what a recorder records
//! [CG:evaluate-config_use-managed-rules]). So `up` then creates nothing and
//! says so in a note, instead of failing the env: that is the case of
//! `--no-baseline` in an account without Config. `status` shows the step as
//! not wanted then.
//!
//! AWS rules encoded here (docs/aws-rules-new-services: AWS Config):
//! - Scope is one of: resource types, one TagKey (+ TagValue), or one type
//!   and one resource id [CA:API_Scope]. The change-triggered rules are
//!   scoped to `payops:env=<env>`, so another env's resources never trigger
//!   them. A scope only decides which configuration changes trigger an
//!   evaluation; a periodic rule evaluates on its schedule whatever the
//!   scope [CG:evaluate-config-rules, "Trigger types"], so the periodic
//!   VPC_FLOW_LOGS_ENABLED gets none and evaluates every VPC of the region:
//!   the remediation touches only the env's own VPC and reports the others.
//! - MaximumExecutionFrequency is for periodic rules only.
//! - PutConfigRule right after the recorder's role was made may answer
//!   InsufficientPermissionsException until IAM has propagated, and
//!   ResourceInUseException while the rule evaluates: both retried
//!   [tfaws configservice/config_rule.go].
//! - Tags are set by PutConfigRule only when it creates the rule; later,
//!   TagResource [CA:API_PutConfigRule].
//! - DeleteConfigRule answers ResourceInUseException while the rule
//!   evaluates or is being deleted: retried, then polled until
//!   NoSuchConfigRuleException (states DELETING, DELETING_RESULTS)
//!   [tfaws configservice/config_rule.go].

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_config::types::{
    ConfigRule, ConfigRuleState, MaximumExecutionFrequency, Owner, Scope, Source, Tag,
};
use serde_json::{Value, json};

use crate::aws::{AwsError, Budget, OpResult, Poll, absent_on, poll_until, retry_on_codes};
use crate::engine::{
    Applied, Change, Dependency, Observation, Record, Removed, Step, StepCx, StepError, StepId,
};
use crate::naming::{NameKind, Names};
use crate::tags::{self, TagMap};

use crate::resources::context::Context;
use crate::resources::model::FLOW_LOGS_CHECK;

pub const STEP: &str = "config-rules";
/// The env's database key: RDS storage must be encrypted with it.
pub const DB_KEY_INPUT: (&str, &str) = ("kms-key:database", "DatabaseKmsKeyArn");

/// Config's answers for a rule that is not there, and for no recorder.
const NO_SUCH_RULE: [&str; 1] = ["NoSuchConfigRuleException"];
const NO_RECORDER: [&str; 1] = ["NoAvailableConfigurationRecorderException"];
/// PutConfigRule's answers while IAM propagates or the rule evaluates.
const PUT_TRANSIENT: [&str; 2] = ["InsufficientPermissionsException", "ResourceInUseException"];
const PUT_BUDGET: Budget = Budget {
    total: Duration::from_secs(180),
    first_delay: Duration::from_secs(2),
    max_delay: Duration::from_secs(20),
};
/// A rule being deleted takes its evaluation results with it: minutes.
const DELETE_BUDGET: Budget = Budget {
    total: Duration::from_secs(15 * 60),
    first_delay: Duration::from_secs(2),
    max_delay: Duration::from_secs(20),
};

/// What `up` says when the region has no recorder.
pub const NO_RECORDER_NOTE: &str = "no AWS Config configuration recorder in this region: the \
     env's Config rules are not created (PutConfigRule needs one, and rules would evaluate \
     nothing); run `payops baseline up` or enable AWS Config, then `up` again";

/// When a rule evaluates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// On every recorded change of a resource in scope (the env's tag).
    Changes,
    /// On a schedule, whatever the scope.
    Periodic,
}

/// One of the env's checks: an AWS managed rule.
#[derive(Clone, Copy, Debug)]
pub struct Check {
    /// `payops-<env>-<slug>`.
    pub slug: &'static str,
    /// The managed rule's SourceIdentifier.
    pub identifier: &'static str,
    pub trigger: Trigger,
    what: &'static str,
}

/// The env's checks. The S3 ones beside the three PCI asks for by name:
/// cardholder data must travel encrypted (TLS-only bucket policies) and
/// never be public (PCI DSS 1.3, 4.1).
pub const CHECKS: [Check; 5] = [
    Check {
        slug: "encrypted-volumes",
        identifier: "ENCRYPTED_VOLUMES",
        trigger: Trigger::Changes,
        what: "attached EBS volumes are encrypted",
    },
    Check {
        slug: "rds-storage-encrypted",
        identifier: "RDS_STORAGE_ENCRYPTED",
        trigger: Trigger::Changes,
        what: "RDS storage is encrypted with the env's database key",
    },
    Check {
        slug: FLOW_LOGS_CHECK,
        identifier: "VPC_FLOW_LOGS_ENABLED",
        trigger: Trigger::Periodic,
        what: "VPCs have flow logs of all traffic (periodic: every VPC of the region)",
    },
    Check {
        slug: "s3-bucket-ssl-requests-only",
        identifier: "S3_BUCKET_SSL_REQUESTS_ONLY",
        trigger: Trigger::Changes,
        what: "buckets refuse requests without TLS",
    },
    Check {
        slug: "s3-bucket-level-public-access-prohibited",
        identifier: "S3_BUCKET_LEVEL_PUBLIC_ACCESS_PROHIBITED",
        trigger: Trigger::Changes,
        what: "buckets block public access",
    },
];

/// How often the periodic rule runs. Periodic evaluations are billed per
/// rule and resource, and each env's rule evaluates every VPC of the region:
/// six hours keeps a missing flow log from going unnoticed for a day at a
/// quarter of the cost of hourly runs.
pub const PERIODIC_FREQUENCY: MaximumExecutionFrequency = MaximumExecutionFrequency::SixHours;

/// The env's rule names, in check order (the compliance rule's pattern
/// lists them).
pub fn rule_names(names: &Names) -> Vec<String> {
    CHECKS.iter().map(|c| names.config_rule(c.slug)).collect()
}

/// A rule as payops wants it.
#[derive(Clone, Debug, PartialEq)]
struct Desired {
    name: String,
    identifier: &'static str,
    parameters: Option<Value>,
    /// The env's tag, for change-triggered rules.
    scope: Option<(String, String)>,
    frequency: Option<MaximumExecutionFrequency>,
    description: String,
}

fn desired(cx: &Context, step: &StepCx<'_>, check: &Check) -> Result<Desired, AwsError> {
    let name = cx.names.config_rule(check.slug);
    NameKind::ConfigRule
        .check(&name)
        .map_err(AwsError::Conflict)?;
    let parameters = match check.identifier {
        // The env's Aurora storage is encrypted with its database key.
        "RDS_STORAGE_ENCRYPTED" => Some(json!({
            "kmsKeyId": step.output(DB_KEY_INPUT.0, DB_KEY_INPUT.1)?
        })),
        // Flow logs of rejected traffic only would pass without it.
        "VPC_FLOW_LOGS_ENABLED" => Some(json!({ "trafficType": "ALL" })),
        // No volume is the env's yet (no key of its own to pin): any
        // encryption passes.
        _ => None,
    };
    let periodic = check.trigger == Trigger::Periodic;
    Ok(Desired {
        name,
        identifier: check.identifier,
        parameters,
        scope: (!periodic).then(|| (tags::ENV.to_owned(), cx.env().to_string())),
        frequency: periodic.then_some(PERIODIC_FREQUENCY),
        description: format!("payops env {}: {}", cx.env(), check.what),
    })
}

impl Desired {
    fn to_sdk(&self) -> Result<ConfigRule, AwsError> {
        let source = Source::builder()
            .owner(Owner::Aws)
            .source_identifier(self.identifier)
            .build()
            .map_err(|e| AwsError::Api {
                op: "config:PutConfigRule",
                code: None,
                message: e.to_string(),
            })?;
        Ok(ConfigRule::builder()
            .config_rule_name(&self.name)
            .description(&self.description)
            .source(source)
            .set_scope(
                self.scope
                    .as_ref()
                    .map(|(k, v)| Scope::builder().tag_key(k).tag_value(v).build()),
            )
            .set_input_parameters(self.parameters.as_ref().map(Value::to_string))
            .set_maximum_execution_frequency(self.frequency.clone())
            .build())
    }
}

/// A rule of the env, as Config describes it.
#[derive(Clone, Debug)]
struct Found {
    name: String,
    arn: String,
    rule: ConfigRule,
    tags: TagMap,
}

impl Found {
    fn state(&self) -> Option<&ConfigRuleState> {
        self.rule.config_rule_state()
    }

    fn going(&self) -> bool {
        matches!(
            self.state(),
            Some(ConfigRuleState::Deleting | ConfigRuleState::DeletingResults)
        )
    }
}

/// What of the rule differs from `want` (reads only).
fn drift(found: &ConfigRule, want: &Desired) -> Vec<&'static str> {
    let mut what = Vec::new();
    let source = found.source();
    if source.map(|s| s.owner()) != Some(&Owner::Aws)
        || source.and_then(|s| s.source_identifier()) != Some(want.identifier)
    {
        what.push("source");
    }
    let params: Option<Value> = found
        .input_parameters()
        .filter(|p| !p.trim().is_empty())
        .and_then(|p| serde_json::from_str(p).ok())
        .filter(|p: &Value| p.as_object().is_none_or(|o| !o.is_empty()));
    if params != want.parameters {
        what.push("input parameters");
    }
    let scope = found.scope();
    let tag = scope.and_then(|s| s.tag_key()).map(|k| {
        (
            k.to_owned(),
            scope
                .and_then(|s| s.tag_value())
                .unwrap_or_default()
                .to_owned(),
        )
    });
    let narrowed = scope.is_some_and(|s| {
        !s.compliance_resource_types().is_empty() || s.compliance_resource_id().is_some()
    });
    if tag != want.scope || narrowed {
        what.push("scope");
    }
    if found.maximum_execution_frequency() != want.frequency.as_ref() && want.frequency.is_some() {
        what.push("frequency");
    }
    if found.description() != Some(want.description.as_str()) {
        what.push("description");
    }
    what
}

/// The region's customer-managed recorder's name, if any. Service-linked
/// recorders (ServicePrincipal set) record for their service, not for rules.
async fn recorder(cx: &Context) -> Result<Option<String>, AwsError> {
    let out = cx
        .clients
        .config
        .describe_configuration_recorders()
        .send()
        .await
        .op("config:DescribeConfigurationRecorders")?;
    Ok(out
        .configuration_recorders()
        .iter()
        .filter(|r| r.service_principal().is_none())
        .find_map(|r| r.name().map(str::to_owned)))
}

async fn describe(cx: &Context, names: Vec<String>) -> Result<Vec<ConfigRule>, AwsError> {
    let out = cx
        .clients
        .config
        .describe_config_rules()
        .set_config_rule_names(Some(names))
        .send()
        .await
        .op("config:DescribeConfigRules")?;
    Ok(out.config_rules().to_vec())
}

/// Every rule of the region (DescribeConfigRules without names, paged).
async fn all_rules(cx: &Context) -> Result<Vec<ConfigRule>, AwsError> {
    let mut rules = Vec::new();
    let mut token = None;
    loop {
        let out = cx
            .clients
            .config
            .describe_config_rules()
            .set_next_token(token)
            .send()
            .await
            .op("config:DescribeConfigRules")?;
        rules.extend(out.config_rules().iter().cloned());
        token = out.next_token().map(str::to_owned);
        if token.is_none() {
            return Ok(rules);
        }
    }
}

async fn tags_of(cx: &Context, arn: &str) -> Result<TagMap, AwsError> {
    let out = cx
        .clients
        .config
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .op("config:ListTagsForResource")?;
    Ok(tags::to_map(out.tags(), |t| (t.key(), t.value())))
}

/// The env's rules that exist, by name, ownership checked: a rule under one
/// of the env's names that payops did not make is refused, never adopted.
async fn find(cx: &Context) -> Result<BTreeMap<String, Found>, AwsError> {
    let names = rule_names(&cx.names);
    // One call for all when all exist (a converged env); Config refuses the
    // whole call when one name is unknown, then the region's rules, by
    // pages of 25 (one page in most accounts), filtered on the names.
    let rules = match describe(cx, names.clone()).await {
        Ok(rules) => rules,
        Err(e) if e.is_code(&NO_SUCH_RULE) => all_rules(cx)
            .await?
            .into_iter()
            .filter(|r| {
                r.config_rule_name()
                    .is_some_and(|n| names.iter().any(|m| m == n))
            })
            .collect(),
        Err(e) => return Err(e),
    };
    let mut found = BTreeMap::new();
    for rule in rules {
        let (Some(name), Some(arn)) = (rule.config_rule_name(), rule.config_rule_arn()) else {
            continue;
        };
        let tags = tags_of(cx, arn).await?;
        cx.check_ours(format!("AWS Config rule {name}"), &tags)?;
        found.insert(
            name.to_owned(),
            Found {
                name: name.to_owned(),
                arn: arn.to_owned(),
                rule: rule.clone(),
                tags,
            },
        );
    }
    Ok(found)
}

fn record(found: &BTreeMap<String, Found>, status: &str) -> Record {
    let mut record = found.values().fold(Record::default(), |r, f| {
        r.resource(format!("rule:{}", f.name), &f.arn)
    });
    if !found.is_empty() {
        record = record.output(
            "ConfigRuleNames",
            found.keys().cloned().collect::<Vec<_>>().join(","),
        );
    }
    record.output("ConfigRulesStatus", status)
}

/// What `up` would do to each rule (`status` and `plan` show these).
fn fixes(
    cx: &Context,
    step: &StepCx<'_>,
    found: &BTreeMap<String, Found>,
) -> Result<Vec<String>, AwsError> {
    let mut out = Vec::new();
    for check in &CHECKS {
        let want = desired(cx, step, check)?;
        match found.get(&want.name) {
            None => out.push(format!("create {} ({})", want.name, want.identifier)),
            Some(f) if f.going() => out.push(format!("re-create {} (being deleted)", want.name)),
            Some(f) => {
                let missing = cx.tagger.missing(STEP, &f.tags);
                if !missing.is_empty() {
                    out.push(format!(
                        "{}: {}",
                        want.name,
                        tags::describe_tag_fix(&missing)
                    ));
                }
                let what = drift(&f.rule, &want);
                if !what.is_empty() {
                    out.push(format!("{}: set {}", want.name, what.join(", ")));
                }
            }
        }
    }
    Ok(out)
}

pub struct ConfigRules {
    id: StepId,
    deps: Vec<Dependency>,
}

impl ConfigRules {
    pub fn new(deps: Vec<Dependency>) -> Self {
        Self {
            id: StepId::from(STEP),
            deps,
        }
    }

    /// PutConfigRule, retried while IAM propagates or the rule evaluates;
    /// tags only on a create (Config ignores them on an update).
    async fn put(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        want: &Desired,
        tags: Option<&TagMap>,
    ) -> Result<(), AwsError> {
        const OP: &str = "config:PutConfigRule";
        let rule = want.to_sdk()?;
        let tags: Option<Vec<Tag>> = tags.map(|t| {
            t.iter()
                .map(|(k, v)| Tag::builder().key(k).value(v).build())
                .collect()
        });
        let progress = |m: String| step.progress(m);
        retry_on_codes(
            format!("creating AWS Config rule {}", want.name),
            &PUT_TRANSIENT,
            PUT_BUDGET,
            &progress,
            || async {
                cx.clients
                    .config
                    .put_config_rule()
                    .config_rule(rule.clone())
                    .set_tags(tags.clone())
                    .send()
                    .await
                    .op(OP)
                    .map(|_| ())
            },
        )
        .await
    }

    async fn tag(&self, cx: &Context, arn: &str, missing: &TagMap) -> Result<(), AwsError> {
        cx.clients
            .config
            .tag_resource()
            .resource_arn(arn)
            .set_tags(Some(
                missing
                    .iter()
                    .map(|(k, v)| Tag::builder().key(k).value(v).build())
                    .collect(),
            ))
            .send()
            .await
            .op("config:TagResource")?;
        Ok(())
    }

    /// DeleteConfigRule (retried while Config is busy with the rule), then
    /// wait until Config no longer knows it.
    async fn delete(&self, cx: &Context, step: &StepCx<'_>, name: &str) -> Result<(), AwsError> {
        let progress = |m: String| step.progress(m);
        let deleted = retry_on_codes(
            format!("deleting AWS Config rule {name}"),
            &["ResourceInUseException"],
            DELETE_BUDGET,
            &progress,
            || async {
                cx.clients
                    .config
                    .delete_config_rule()
                    .config_rule_name(name)
                    .send()
                    .await
                    .op("config:DeleteConfigRule")
                    .map(|_| ())
            },
        )
        .await;
        absent_on(deleted, &NO_SUCH_RULE)?;
        self.wait_gone(cx, step, name).await
    }

    async fn wait_gone(&self, cx: &Context, step: &StepCx<'_>, name: &str) -> Result<(), AwsError> {
        let progress = |m: String| step.progress(m);
        poll_until(
            format!("AWS Config rule {name} to be deleted"),
            DELETE_BUDGET,
            &progress,
            || async {
                let left = absent_on(describe(cx, vec![name.to_owned()]).await, &NO_SUCH_RULE)?;
                Ok(match left.as_deref() {
                    None | Some([]) => Poll::Ready(()),
                    Some([rule, ..]) => Poll::Pending(
                        rule.config_rule_state()
                            .map_or("present", |s| s.as_str())
                            .to_owned(),
                    ),
                })
            },
        )
        .await
    }

    /// Create, repair and re-tag the env's rules; `Ok(None)` when Config
    /// answered that the region has no recorder after all.
    async fn converge(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: &mut BTreeMap<String, Found>,
    ) -> Result<Option<(Change, Vec<String>)>, AwsError> {
        let had_any = !found.is_empty();
        let mut notes = Vec::new();
        let mut created = 0usize;
        for check in &CHECKS {
            let want = desired(cx, step, check)?;
            let existing = found.get(&want.name).cloned();
            let put = match &existing {
                Some(f) if f.going() => {
                    // A `down` that stopped mid-way: Config refuses a put
                    // while the rule is being deleted.
                    self.wait_gone(cx, step, &want.name).await?;
                    Some(Some(cx.tagger.for_create(STEP)))
                }
                None => Some(Some(cx.tagger.for_create(STEP))),
                Some(f) => {
                    let missing = cx.tagger.missing(STEP, &f.tags);
                    if !missing.is_empty() {
                        step.progress(format!("tagging {}", want.name));
                        self.tag(cx, &f.arn, &missing).await?;
                        notes.push(format!(
                            "{}: {}",
                            want.name,
                            tags::describe_tag_fix(&missing)
                        ));
                    }
                    let what = drift(&f.rule, &want);
                    if what.is_empty() {
                        None
                    } else {
                        notes.push(format!("{}: set {}", want.name, what.join(", ")));
                        Some(None)
                    }
                }
            };
            let Some(create_tags) = put else {
                continue;
            };
            step.progress(format!("putting AWS Config rule {}", want.name));
            match self.put(cx, step, &want, create_tags.as_ref()).await {
                Ok(()) => {}
                Err(e) if e.is_code(&NO_RECORDER) => return Ok(None),
                Err(e) => return Err(e),
            }
            if create_tags.is_some() {
                created += 1;
                notes.push(format!("created {} ({})", want.name, want.identifier));
            }
            // PutConfigRule answers nothing: read the rule (and its ARN) back.
            let rule = describe(cx, vec![want.name.clone()])
                .await?
                .into_iter()
                .next()
                .ok_or(AwsError::Incomplete {
                    op: "config:DescribeConfigRules",
                    field: "ConfigRules",
                })?;
            let arn = rule.config_rule_arn().unwrap_or_default().to_owned();
            if let Some(arn) = rule.config_rule_arn() {
                step.remember(&format!("rule:{}", want.name), arn);
            }
            found.insert(
                want.name.clone(),
                Found {
                    name: want.name.clone(),
                    arn,
                    rule,
                    tags: existing
                        .filter(|f| !f.going())
                        .map(|f| f.tags)
                        .unwrap_or_else(|| cx.tagger.for_create(STEP)),
                },
            );
        }
        let change = if notes.is_empty() {
            Change::Unchanged
        } else if !had_any && created == CHECKS.len() {
            Change::Created
        } else {
            Change::Updated
        };
        Ok(Some((change, notes)))
    }
}

#[async_trait]
impl Step<Context> for ConfigRules {
    fn id(&self) -> &StepId {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "config:rules"
    }

    fn dependencies(&self) -> &[Dependency] {
        &self.deps
    }

    /// Without a recorder and without rules: not wanted (there is nothing
    /// `up` would do). Rules left from when there was one are shown as they
    /// are.
    async fn observe(&self, cx: &Context, step: &StepCx<'_>) -> Result<Observation, StepError> {
        let found = find(cx).await?;
        let recorder = recorder(cx).await?;
        Ok(match (recorder, found.is_empty()) {
            (None, true) => Observation::NotWanted,
            (Some(_), true) => Observation::Missing,
            (None, false) => Observation::Present {
                record: record(&found, "no-recorder"),
                drift: Vec::new(),
            },
            (Some(_), false) => Observation::Present {
                record: record(&found, "evaluating"),
                drift: fixes(cx, step, &found)?,
            },
        })
    }

    async fn ensure(&self, cx: &Context, step: &StepCx<'_>) -> Result<Applied, StepError> {
        let mut found = find(cx).await?;
        // Nothing found, nothing recorded: what `observe` (not wanted)
        // reports too, so the compliance parameters agree with `status`.
        let no_recorder = |found: &BTreeMap<String, Found>, mut notes: Vec<String>| -> Applied {
            notes.push(NO_RECORDER_NOTE.to_owned());
            let record = if found.is_empty() {
                Record::default()
            } else {
                record(found, "no-recorder")
            };
            Applied::new(Change::Unchanged, record).with_notes(notes)
        };
        if recorder(cx).await?.is_none() {
            return Ok(no_recorder(&found, Vec::new()));
        }
        match self.converge(cx, step, &mut found).await? {
            Some((change, notes)) => {
                Ok(Applied::new(change, record(&found, "evaluating")).with_notes(notes))
            }
            None => Ok(no_recorder(&found, Vec::new())),
        }
    }

    async fn destroy(&self, cx: &Context, step: &StepCx<'_>) -> Result<Removed, StepError> {
        let found = find(cx).await?;
        if found.is_empty() {
            return Ok(Removed::AlreadyAbsent);
        }
        let mut notes = Vec::new();
        for name in found.keys() {
            step.progress(format!("deleting AWS Config rule {name}"));
            self.delete(cx, step, name).await?;
            notes.push(format!("deleted {name}"));
        }
        Ok(Removed::Deleted { notes })
    }

    /// The final sweep: what of the env's rules is left, by name alone.
    async fn remains(&self, cx: &Context, _step: &StepCx<'_>) -> Result<Observation, StepError> {
        let found = find(cx).await?;
        Ok(if found.is_empty() {
            Observation::Missing
        } else {
            Observation::Unwanted {
                record: record(&found, "left"),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use aws_sdk_config::Client;
    use aws_sdk_config::operation::delete_config_rule::{
        DeleteConfigRuleError, DeleteConfigRuleOutput,
    };
    use aws_sdk_config::operation::describe_config_rules::{
        DescribeConfigRulesError, DescribeConfigRulesOutput,
    };
    use aws_sdk_config::operation::describe_configuration_recorders::DescribeConfigurationRecordersOutput;
    use aws_sdk_config::operation::list_tags_for_resource::ListTagsForResourceOutput;
    use aws_sdk_config::operation::put_config_rule::{PutConfigRuleError, PutConfigRuleOutput};
    use aws_sdk_config::types::ConfigurationRecorder;
    use aws_smithy_mocks::{MockResponse, Rule, RuleMode, mock, mock_client};

    use super::*;
    use crate::resources::testing;

    type Rules = Arc<Mutex<BTreeMap<String, (ConfigRule, TagMap)>>>;

    /// A builder holding `rule`'s fields (the SDK has no `to_builder`).
    fn builder_of(rule: &ConfigRule) -> aws_sdk_config::types::builders::ConfigRuleBuilder {
        ConfigRule::builder()
            .set_config_rule_name(rule.config_rule_name().map(str::to_owned))
            .set_config_rule_arn(rule.config_rule_arn().map(str::to_owned))
            .set_config_rule_state(rule.config_rule_state().cloned())
            .set_description(rule.description().map(str::to_owned))
            .set_source(rule.source().cloned())
            .set_scope(rule.scope().cloned())
            .set_input_parameters(rule.input_parameters().map(str::to_owned))
            .set_maximum_execution_frequency(rule.maximum_execution_frequency().cloned())
    }

    fn arn_of(name: &str) -> String {
        format!("arn:aws:config:us-east-1:123456789012:config-rule/config-rule-{name}")
    }

    /// Config's rules as a map: describe, put, tags, delete.
    fn fake_config(rules: &Rules) -> Vec<Rule> {
        let r = rules.clone();
        let describe = mock!(Client::describe_config_rules).then_compute_response(move |req| {
            let rules = r.lock().unwrap();
            let mut out = Vec::new();
            if req.config_rule_names().is_empty() {
                out.extend(rules.values().map(|(rule, _)| rule.clone()));
            }
            for name in req.config_rule_names() {
                match rules.get(name) {
                    Some((rule, _)) => out.push(rule.clone()),
                    None => {
                        return MockResponse::Error(DescribeConfigRulesError::generic(
                            testing::error_meta("NoSuchConfigRuleException"),
                        ));
                    }
                }
            }
            MockResponse::Output(
                DescribeConfigRulesOutput::builder()
                    .set_config_rules(Some(out))
                    .build(),
            )
        });
        let r = rules.clone();
        let put = mock!(Client::put_config_rule).then_compute_output(move |req| {
            let rule = req.config_rule().unwrap().clone();
            let name = rule.config_rule_name().unwrap().to_owned();
            let mut rules = r.lock().unwrap();
            let tags: TagMap = match rules.get(&name) {
                Some((_, tags)) => tags.clone(),
                None => tags::to_map(req.tags(), |t| (t.key(), t.value())),
            };
            let stored = ConfigRule::builder()
                .config_rule_name(&name)
                .config_rule_arn(arn_of(&name))
                .config_rule_state(ConfigRuleState::Active)
                .set_description(rule.description().map(str::to_owned))
                .set_source(rule.source().cloned())
                .set_scope(rule.scope().cloned())
                .set_input_parameters(rule.input_parameters().map(str::to_owned))
                .set_maximum_execution_frequency(rule.maximum_execution_frequency().cloned())
                .build();
            rules.insert(name, (stored, tags));
            PutConfigRuleOutput::builder().build()
        });
        let r = rules.clone();
        let tags = mock!(Client::list_tags_for_resource).then_compute_output(move |req| {
            let rules = r.lock().unwrap();
            let tags = rules
                .values()
                .find(|(rule, _)| rule.config_rule_arn() == req.resource_arn())
                .map(|(_, t)| t.clone())
                .unwrap_or_default();
            ListTagsForResourceOutput::builder()
                .set_tags(Some(
                    tags.iter()
                        .map(|(k, v)| Tag::builder().key(k).value(v).build())
                        .collect(),
                ))
                .build()
        });
        let r = rules.clone();
        let delete = mock!(Client::delete_config_rule).then_compute_response(move |req| {
            match r.lock().unwrap().remove(req.config_rule_name().unwrap()) {
                Some(_) => MockResponse::Output(DeleteConfigRuleOutput::builder().build()),
                None => MockResponse::Error(DeleteConfigRuleError::generic(testing::error_meta(
                    "NoSuchConfigRuleException",
                ))),
            }
        });
        vec![describe, put, tags, delete]
    }

    fn recorders(names: &[&'static str]) -> Rule {
        let names = names.to_vec();
        mock!(Client::describe_configuration_recorders).then_output(move || {
            DescribeConfigurationRecordersOutput::builder()
                .set_configuration_recorders(Some(
                    names
                        .iter()
                        .map(|n| ConfigurationRecorder::builder().name(*n).build())
                        .collect(),
                ))
                .build()
        })
    }

    fn cx_with(rules: &[&Rule]) -> Context {
        let mut clients = testing::clients();
        clients.config = mock_client!(aws_sdk_config, RuleMode::MatchAny, rules);
        testing::context(clients)
    }

    const DB_KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/db";

    /// Runs one of the step's operations with the database key as input.
    macro_rules! run {
        ($cx:expr, $op:ident) => {{
            let events = testing::Events::default();
            let id = StepId::from(STEP);
            let step = testing::step_cx(
                &id,
                [(
                    StepId::from(DB_KEY_INPUT.0),
                    Record::default().output(DB_KEY_INPUT.1, DB_KEY),
                )]
                .into(),
                &events,
            );
            ConfigRules::new(Vec::new()).$op(&$cx, &step).await
        }};
    }

    #[tokio::test]
    async fn without_a_recorder_up_creates_nothing_and_says_so() {
        let rules = Rules::default();
        let fake = fake_config(&rules);
        let none = recorders(&[]);
        let mut all: Vec<&Rule> = fake.iter().collect();
        all.push(&none);
        let cx = cx_with(&all);
        let applied = run!(cx, ensure).unwrap();
        assert_eq!(applied.change, Change::Unchanged);
        assert_eq!(applied.notes, [NO_RECORDER_NOTE]);
        // Nothing recorded: `status` shows the step not wanted, and no
        // output is published for it.
        assert_eq!(applied.record, Record::default());
        assert!(rules.lock().unwrap().is_empty());
        assert_eq!(fake[1].num_calls(), 0, "no PutConfigRule");
        let observed = run!(cx, observe).unwrap();
        assert_eq!(observed, Observation::NotWanted);
    }

    #[tokio::test]
    async fn a_service_linked_recorder_is_not_one_rules_can_use() {
        let rules = Rules::default();
        let fake = fake_config(&rules);
        let linked = mock!(Client::describe_configuration_recorders).then_output(|| {
            DescribeConfigurationRecordersOutput::builder()
                .configuration_recorders(
                    ConfigurationRecorder::builder()
                        .name("AWSConfigurationRecorderForSecurityHub")
                        .service_principal("securityhub.amazonaws.com")
                        .build(),
                )
                .build()
        });
        let mut all: Vec<&Rule> = fake.iter().collect();
        all.push(&linked);
        let cx = cx_with(&all);
        let applied = run!(cx, ensure).unwrap();
        assert_eq!(applied.notes, [NO_RECORDER_NOTE]);
        assert!(rules.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn with_a_recorder_up_creates_each_rule_tagged_scoped_and_a_second_up_changes_nothing() {
        let rules = Rules::default();
        let fake = fake_config(&rules);
        let one = recorders(&["payops-baseline"]);
        let mut all: Vec<&Rule> = fake.iter().collect();
        all.push(&one);
        let cx = cx_with(&all);
        let applied = run!(cx, ensure).unwrap();
        assert_eq!(applied.change, Change::Created, "{:?}", applied.notes);
        assert_eq!(fake[1].num_calls(), CHECKS.len());
        assert_eq!(
            applied.record.outputs["ConfigRuleNames"],
            "payops-pr1-encrypted-volumes,payops-pr1-rds-storage-encrypted,\
             payops-pr1-s3-bucket-level-public-access-prohibited,\
             payops-pr1-s3-bucket-ssl-requests-only,payops-pr1-vpc-flow-logs-enabled"
        );
        {
            let rules = rules.lock().unwrap();
            for check in &CHECKS {
                let name = format!("payops-pr1-{}", check.slug);
                let (rule, tags) = &rules[&name];
                assert_eq!(tags[tags::ENV], "pr1", "{name}");
                assert_eq!(tags[tags::STEP], STEP, "{name}");
                let source = rule.source().unwrap();
                assert_eq!(source.owner(), &Owner::Aws);
                assert_eq!(source.source_identifier(), Some(check.identifier));
                match check.trigger {
                    // Changes of the env's resources only.
                    Trigger::Changes => {
                        let scope = rule.scope().unwrap();
                        assert_eq!(scope.tag_key(), Some(tags::ENV), "{name}");
                        assert_eq!(scope.tag_value(), Some("pr1"), "{name}");
                        assert!(scope.compliance_resource_types().is_empty(), "{name}");
                        assert_eq!(rule.maximum_execution_frequency(), None, "{name}");
                    }
                    // A scope would not narrow a periodic rule: none.
                    Trigger::Periodic => {
                        assert!(rule.scope().is_none(), "{name}");
                        assert_eq!(
                            rule.maximum_execution_frequency(),
                            Some(&MaximumExecutionFrequency::SixHours)
                        );
                    }
                }
            }
            let rds = &rules["payops-pr1-rds-storage-encrypted"].0;
            let params: Value = serde_json::from_str(rds.input_parameters().unwrap()).unwrap();
            assert_eq!(params, json!({ "kmsKeyId": DB_KEY }));
            let vpc = &rules["payops-pr1-vpc-flow-logs-enabled"].0;
            let params: Value = serde_json::from_str(vpc.input_parameters().unwrap()).unwrap();
            assert_eq!(params, json!({ "trafficType": "ALL" }));
        }
        // Converged: no mutating call, nothing to report.
        let again = run!(cx, ensure).unwrap();
        assert_eq!(again.change, Change::Unchanged, "{:?}", again.notes);
        assert_eq!(fake[1].num_calls(), CHECKS.len(), "no second PutConfigRule");
        let observed = run!(cx, observe).unwrap();
        let Observation::Present { drift, .. } = observed else {
            panic!("{observed:?}")
        };
        assert!(drift.is_empty(), "{drift:?}");
    }

    #[tokio::test]
    async fn a_widened_rule_is_drift_and_put_back_without_new_tags() {
        let rules = Rules::default();
        let fake = fake_config(&rules);
        let one = recorders(&["someone-elses-recorder"]);
        let mut all: Vec<&Rule> = fake.iter().collect();
        all.push(&one);
        let cx = cx_with(&all);
        run!(cx, ensure).unwrap();
        // Out of band: the RDS rule's key pin and scope removed.
        {
            let mut rules = rules.lock().unwrap();
            let (rule, _) = rules.get_mut("payops-pr1-rds-storage-encrypted").unwrap();
            *rule = builder_of(rule)
                .set_input_parameters(None)
                .set_scope(None)
                .build();
        }
        let observed = run!(cx, observe).unwrap();
        let Observation::Present { drift, .. } = observed else {
            panic!("{observed:?}")
        };
        assert_eq!(
            drift,
            ["payops-pr1-rds-storage-encrypted: set input parameters, scope"]
        );
        let applied = run!(cx, ensure).unwrap();
        assert_eq!(applied.change, Change::Updated);
        assert_eq!(fake[1].num_calls(), CHECKS.len() + 1);
        let rules = rules.lock().unwrap();
        assert!(
            rules["payops-pr1-rds-storage-encrypted"]
                .0
                .scope()
                .is_some()
        );
    }

    #[tokio::test]
    async fn a_rule_under_the_envs_name_made_by_someone_else_is_refused() {
        let rules = Rules::default();
        rules.lock().unwrap().insert(
            "payops-pr1-encrypted-volumes".into(),
            (
                ConfigRule::builder()
                    .config_rule_name("payops-pr1-encrypted-volumes")
                    .config_rule_arn(arn_of("payops-pr1-encrypted-volumes"))
                    .build(),
                TagMap::from([("team".into(), "security".into())]),
            ),
        );
        let fake = fake_config(&rules);
        let one = recorders(&["payops-baseline"]);
        let mut all: Vec<&Rule> = fake.iter().collect();
        all.push(&one);
        let cx = cx_with(&all);
        let err = run!(cx, ensure).unwrap_err().to_string();
        assert!(
            err.contains("AWS Config rule payops-pr1-encrypted-volumes"),
            "{err}"
        );
        let err = run!(cx, destroy).unwrap_err().to_string();
        assert!(err.contains("not tagged as this env's"), "{err}");
        assert_eq!(fake[3].num_calls(), 0, "never deleted");
    }

    #[tokio::test(start_paused = true)]
    async fn put_is_retried_while_iam_propagates_and_no_recorder_after_all_is_a_note() {
        let describe = mock!(Client::describe_config_rules)
            .match_requests(|r| !r.config_rule_names().is_empty())
            .then_error(|| {
                DescribeConfigRulesError::generic(testing::error_meta("NoSuchConfigRuleException"))
            });
        let listed = mock!(Client::describe_config_rules)
            .match_requests(|r| r.config_rule_names().is_empty())
            .then_output(|| DescribeConfigRulesOutput::builder().build());
        let one = recorders(&["payops-baseline"]);
        let put = mock!(Client::put_config_rule)
            .sequence()
            .error(|| {
                PutConfigRuleError::generic(testing::error_meta("InsufficientPermissionsException"))
            })
            .times(2)
            .error(|| {
                PutConfigRuleError::generic(testing::error_meta(
                    "NoAvailableConfigurationRecorderException",
                ))
            })
            .build();
        let cx = cx_with(&[&describe, &listed, &one, &put]);
        let applied = run!(cx, ensure).unwrap();
        assert_eq!(put.num_calls(), 3);
        assert_eq!(applied.notes, [NO_RECORDER_NOTE]);
    }

    #[tokio::test(start_paused = true)]
    async fn down_retries_a_rule_in_use_then_waits_until_config_no_longer_knows_it() {
        let rules = Rules::default();
        let fake = fake_config(&rules);
        let one = recorders(&["payops-baseline"]);
        let mut all: Vec<&Rule> = fake.iter().collect();
        all.push(&one);
        let cx = cx_with(&all);
        run!(cx, ensure).unwrap();
        // AWS: ResourceInUseException while the rule evaluates, then the
        // rule lingers as DELETING for a while.
        let snapshot = rules.lock().unwrap().clone();
        let describe_calls = Arc::new(Mutex::new(0usize));
        let calls = describe_calls.clone();
        let lingering = snapshot.clone();
        let describe = mock!(Client::describe_config_rules).then_compute_response(move |req| {
            let mut n = calls.lock().unwrap();
            *n += 1;
            // The first read (find) sees them all; each rule's wait sees
            // it DELETING once, then gone.
            if *n == 1 {
                return MockResponse::Output(
                    DescribeConfigRulesOutput::builder()
                        .set_config_rules(Some(
                            lingering.values().map(|(r, _)| r.clone()).collect(),
                        ))
                        .build(),
                );
            }
            if (*n).is_multiple_of(2) {
                let name = &req.config_rule_names()[0];
                let rule = builder_of(&lingering[name].0)
                    .config_rule_state(ConfigRuleState::Deleting)
                    .build();
                return MockResponse::Output(
                    DescribeConfigRulesOutput::builder()
                        .config_rules(rule)
                        .build(),
                );
            }
            MockResponse::Error(DescribeConfigRulesError::generic(testing::error_meta(
                "NoSuchConfigRuleException",
            )))
        });
        let delete = mock!(Client::delete_config_rule)
            .sequence()
            .error(|| DeleteConfigRuleError::generic(testing::error_meta("ResourceInUseException")))
            .output(|| DeleteConfigRuleOutput::builder().build())
            .repeatedly()
            .build();
        let cx = cx_with(&[&describe, &fake[2], &delete]);
        let removed = run!(cx, destroy).unwrap();
        let Removed::Deleted { notes } = removed else {
            panic!("{removed:?}")
        };
        assert_eq!(notes.len(), CHECKS.len());
        assert_eq!(delete.num_calls(), CHECKS.len() + 1);
        assert_eq!(*describe_calls.lock().unwrap(), 1 + 2 * CHECKS.len());
    }

    #[tokio::test]
    async fn nothing_left_is_already_absent_and_the_sweep_finds_nothing() {
        let rules = Rules::default();
        let fake = fake_config(&rules);
        let all: Vec<&Rule> = fake.iter().collect();
        let cx = cx_with(&all);
        let removed = run!(cx, destroy).unwrap();
        assert_eq!(removed, Removed::AlreadyAbsent);
        let remains = run!(cx, remains).unwrap();
        assert_eq!(remains, Observation::Missing);
    }
}
