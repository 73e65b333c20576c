//! The env's AWS WAF v2 web ACL (`payops-<env>-waf`, REGIONAL), put in front
//! of the REST API stage and the internal ALB by the association steps.
//!
//! Its rules ([`wanted_rules`], priorities fixed so that a rule keeps its
//! place whatever the settings):
//!
//! 0. `block-countries` (only with `--waf-block-countries`): a geo match
//!    statement needs at least one country code (WAF API reference,
//!    GeoMatchStatement: CountryCodes, minimum 1 item), so with an empty list
//!    the rule is left out rather than sent empty.
//! 1. `rate-limit-per-ip`: at most `--waf-rate-limit` (default and ceiling
//!    1000) requests per client IP per 5 minutes (EvaluationWindowSec 300;
//!    AWS accepts 60, 120, 300 or 600, and a limit of 10 or more). Scoped
//!    down to paths under the stage (`/v1/...`): the stage sees the client's
//!    address, while the internal ALB sees only the VPC link's private
//!    addresses behind the NLB, so an IP rate limit there would throttle all
//!    clients together (an inference from the request path: the stage's
//!    requests carry the stage in their path, the ALB's do not).
//! 2. `payments-body-and-type`: `POST /payments*` (at the stage or the ALB)
//!    must say `Content-Type: application/json` and carry a body of at most
//!    8 KB, the most WAF inspects of an ALB's body; a larger one matches
//!    through OversizeHandling MATCH rather than slipping past uninspected.
//! 3. `aws-common-rule-set`: AWSManagedRulesCommonRuleSet, which holds the
//!    cross-site scripting rules (CrossSiteScripting_BODY, _QUERYARGUMENTS,
//!    _COOKIE, _URIPATH); AWS has no separate XSS group (WAF developer
//!    guide, "Baseline rule groups").
//! 4. `aws-sqli-rule-set`: AWSManagedRulesSQLiRuleSet.
//!
//! A rule that references a rule group takes an OverrideAction (None: the
//! group's own actions apply), every other rule an Action; both kinds need a
//! VisibilityConfig, as does the ACL. Metric names equal rule names, so the
//! `Rule` dimension of the `AWS/WAFV2` metrics is the rule's name.
//!
//! The ACL is found by name among the account's REGIONAL ACLs and adopted
//! only with this env's ownership tags. UpdateWebACL replaces the whole rule
//! list, so any drift (a rule removed, changed or added out of band) is
//! repaired by writing the wanted list back, with a fresh lock token.

use std::fmt;

use async_trait::async_trait;
use aws_sdk_wafv2::types::{
    AllowAction, AndStatement, BlockAction, Body, ByteMatchStatement, ComparisonOperator,
    CountryCode, DefaultAction, FieldToMatch, GeoMatchStatement, ManagedRuleGroupStatement,
    Method, NotStatement, OrStatement, OverrideAction, OversizeHandling, PositionalConstraint,
    RateBasedStatement, RateBasedStatementAggregateKeyType, ResourceType, Rule, RuleAction,
    SingleHeader, SizeConstraintStatement, Statement, TextTransformation, TextTransformationType,
    UriPath, VisibilityConfig, WebAcl as SdkWebAcl,
};
use aws_smithy_types::Blob;

use crate::aws::{AwsError, OpResult, absent_on, required, retry_on_codes};
use crate::engine::{Record, StepCx};
use crate::spec::Waf;
use crate::tags::{TagMap, describe_tag_fix};

use crate::resources::context::Context;
use crate::resources::model::API_STAGE;
use crate::resources::resource::Resource;
use crate::resources::sdk::wafv2::{self, AclRef, NONEXISTENT, SCOPE, built};

const OP: &str = "wafv2:CreateWebACL";
/// The window AWS WAF counts a rate-based rule over, in seconds (the
/// default; the "per 5 minutes").
const RATE_WINDOW_SEC: i64 = 300;
/// The most WAF inspects of an ALB's request body (8 KB; API Gateway's
/// default is 16 KB): a larger body is refused on the payment paths.
pub const MAX_PAYMENT_BODY: i64 = 8 * 1024;
/// WAF answers this while an association (or its removal) has not settled.
const STILL_ASSOCIATED: &str = "WAFAssociatedItemException";

pub const BLOCK_COUNTRIES: &str = "block-countries";
pub const RATE_LIMIT: &str = "rate-limit-per-ip";
pub const PAYMENTS: &str = "payments-body-and-type";
pub const COMMON: &str = "aws-common-rule-set";
pub const SQLI: &str = "aws-sqli-rule-set";

pub struct WebAcl;

pub struct FoundAcl {
    acl: AclRef,
    rules: Vec<Rule>,
    default_action: Option<DefaultAction>,
    visibility: Option<VisibilityConfig>,
    tags: TagMap,
}

pub enum Fix {
    /// Rules (and the ACL's default action and metrics) back to the wanted
    /// set; the names say which rules differ.
    Rules {
        restore: Vec<String>,
        remove: Vec<String>,
    },
    Tags(TagMap),
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rules { restore, remove } => {
                let mut parts = Vec::new();
                if !restore.is_empty() {
                    parts.push(format!("restore WAF rules {}", restore.join(", ")));
                }
                if !remove.is_empty() {
                    parts.push(format!("remove WAF rules {}", remove.join(", ")));
                }
                if parts.is_empty() {
                    parts.push("restore the web ACL's default action and metrics".into());
                }
                f.write_str(&parts.join("; "))
            }
            Self::Tags(t) => f.write_str(&describe_tag_fix(t)),
        }
    }
}

fn visibility(metric: &str) -> Result<VisibilityConfig, AwsError> {
    built(
        OP,
        VisibilityConfig::builder()
            .sampled_requests_enabled(true)
            .cloud_watch_metrics_enabled(true)
            .metric_name(metric)
            .build(),
    )
}

fn block() -> RuleAction {
    RuleAction::builder()
        .block(BlockAction::builder().build())
        .build()
}

fn allow() -> DefaultAction {
    DefaultAction::builder()
        .allow(AllowAction::builder().build())
        .build()
}

fn transformation(kind: TextTransformationType) -> Result<TextTransformation, AwsError> {
    built(
        OP,
        TextTransformation::builder()
            .priority(0)
            .r#type(kind)
            .build(),
    )
}

/// `field` starts with / equals `text`, compared in lower case.
fn byte_match(
    field: FieldToMatch,
    constraint: PositionalConstraint,
    text: &str,
) -> Result<Statement, AwsError> {
    Ok(Statement::builder()
        .byte_match_statement(built(
            OP,
            ByteMatchStatement::builder()
                .search_string(Blob::new(text.as_bytes()))
                .field_to_match(field)
                .text_transformations(transformation(TextTransformationType::Lowercase)?)
                .positional_constraint(constraint)
                .build(),
        )?)
        .build())
}

fn path_starts_with(prefix: &str) -> Result<Statement, AwsError> {
    byte_match(
        FieldToMatch::builder()
            .uri_path(UriPath::builder().build())
            .build(),
        PositionalConstraint::StartsWith,
        prefix,
    )
}

fn any_of(statements: Vec<Statement>) -> Result<Statement, AwsError> {
    Ok(Statement::builder()
        .or_statement(built(
            OP,
            OrStatement::builder()
                .set_statements(Some(statements))
                .build(),
        )?)
        .build())
}

fn all_of(statements: Vec<Statement>) -> Result<Statement, AwsError> {
    Ok(Statement::builder()
        .and_statement(built(
            OP,
            AndStatement::builder()
                .set_statements(Some(statements))
                .build(),
        )?)
        .build())
}

fn rule(name: &str, priority: i32, statement: Statement, managed: bool) -> Result<Rule, AwsError> {
    let rule = Rule::builder()
        .name(name)
        .priority(priority)
        .statement(statement)
        .visibility_config(visibility(name)?);
    // A rule-group reference takes OverrideAction, any other rule Action;
    // WAF refuses the other combination.
    let rule = if managed {
        rule.override_action(
            OverrideAction::builder()
                .none(aws_sdk_wafv2::types::NoneAction::builder().build())
                .build(),
        )
    } else {
        rule.action(block())
    };
    built(OP, rule.build())
}

fn managed_group(name: &str) -> Result<Statement, AwsError> {
    Ok(Statement::builder()
        .managed_rule_group_statement(built(
            OP,
            ManagedRuleGroupStatement::builder()
                .vendor_name("AWS")
                .name(name)
                .build(),
        )?)
        .build())
}

/// Refuses a code the SDK's list of WAF country codes does not have, before
/// any call (WAF would answer WAFInvalidParameterException).
fn country_codes(codes: &[String]) -> Result<Vec<CountryCode>, AwsError> {
    codes
        .iter()
        .map(|c| {
            if CountryCode::values().contains(&c.as_str()) {
                Ok(CountryCode::from(c.as_str()))
            } else {
                Err(AwsError::Conflict(format!(
                    "AWS WAF has no country code {c:?}: use an ISO 3166-1 alpha-2 code it lists, \
                     such as CN or RU"
                )))
            }
        })
        .collect()
}

/// The POST-to-payments rule: wrong content type or too large a body.
fn payments_statement() -> Result<Statement, AwsError> {
    let post = byte_match(
        FieldToMatch::builder()
            .method(Method::builder().build())
            .build(),
        PositionalConstraint::Exactly,
        "post",
    )?;
    // `/payments` at the ALB, `/v1/payments` at the stage.
    let payments = any_of(vec![
        path_starts_with("/payments")?,
        path_starts_with(&format!("/{API_STAGE}/payments"))?,
    ])?;
    let json = byte_match(
        FieldToMatch::builder()
            .single_header(built(OP, SingleHeader::builder().name("content-type").build())?)
            .build(),
        PositionalConstraint::StartsWith,
        "application/json",
    )?;
    let not_json = Statement::builder()
        .not_statement(NotStatement::builder().statement(json).build())
        .build();
    let too_large = Statement::builder()
        .size_constraint_statement(built(
            OP,
            SizeConstraintStatement::builder()
                .field_to_match(
                    FieldToMatch::builder()
                        .body(
                            Body::builder()
                                .oversize_handling(OversizeHandling::Match)
                                .build(),
                        )
                        .build(),
                )
                .comparison_operator(ComparisonOperator::Gt)
                .size(MAX_PAYMENT_BODY)
                .text_transformations(transformation(TextTransformationType::None)?)
                .build(),
        )?)
        .build();
    all_of(vec![post, payments, any_of(vec![not_json, too_large])?])
}

/// Every rule the env's web ACL should have, by priority.
pub fn wanted_rules(waf: &Waf) -> Result<Vec<Rule>, AwsError> {
    let mut rules = Vec::new();
    if !waf.block_countries.is_empty() {
        let geo = GeoMatchStatement::builder()
            .set_country_codes(Some(country_codes(&waf.block_countries)?))
            .build();
        rules.push(rule(
            BLOCK_COUNTRIES,
            0,
            Statement::builder().geo_match_statement(geo).build(),
            false,
        )?);
    }
    let rate = built(
        OP,
        RateBasedStatement::builder()
            .limit(i64::from(waf.rate_limit.min(Waf::MAX_RATE_LIMIT)))
            .evaluation_window_sec(RATE_WINDOW_SEC)
            .aggregate_key_type(RateBasedStatementAggregateKeyType::Ip)
            .scope_down_statement(path_starts_with(&format!("/{API_STAGE}/"))?)
            .build(),
    )?;
    rules.push(rule(
        RATE_LIMIT,
        1,
        Statement::builder().rate_based_statement(rate).build(),
        false,
    )?);
    rules.push(rule(PAYMENTS, 2, payments_statement()?, false)?);
    rules.push(rule(
        COMMON,
        3,
        managed_group("AWSManagedRulesCommonRuleSet")?,
        true,
    )?);
    rules.push(rule(SQLI, 4, managed_group("AWSManagedRulesSQLiRuleSet")?, true)?);
    Ok(rules)
}

/// AWS may echo a rule-group statement's optional lists as empty rather
/// than absent; both mean "none".
fn normalised(rule: &Rule) -> Rule {
    let mut rule = rule.clone();
    if let Some(m) = rule
        .statement
        .as_mut()
        .and_then(|s| s.managed_rule_group_statement.as_mut())
    {
        if m.excluded_rules.as_ref().is_some_and(Vec::is_empty) {
            m.excluded_rules = None;
        }
        if m.rule_action_overrides.as_ref().is_some_and(Vec::is_empty) {
            m.rule_action_overrides = None;
        }
        if m.managed_rule_group_configs.as_ref().is_some_and(Vec::is_empty) {
            m.managed_rule_group_configs = None;
        }
    }
    if rule.rule_labels.as_ref().is_some_and(Vec::is_empty) {
        rule.rule_labels = None;
    }
    rule
}

/// (rules to restore, rules to remove), by name.
pub fn rule_drift(wanted: &[Rule], found: &[Rule]) -> (Vec<String>, Vec<String>) {
    let restore = wanted
        .iter()
        .filter(|w| {
            !found
                .iter()
                .any(|f| f.name() == w.name() && normalised(f) == normalised(w))
        })
        .map(|w| w.name().to_owned())
        .collect();
    let remove = found
        .iter()
        .filter(|f| !wanted.iter().any(|w| w.name() == f.name()))
        .map(|f| f.name().to_owned())
        .collect();
    (restore, remove)
}

fn found_from(acl: AclRef, web_acl: SdkWebAcl, tags: TagMap) -> FoundAcl {
    FoundAcl {
        acl,
        rules: web_acl.rules().to_vec(),
        default_action: web_acl.default_action().cloned(),
        visibility: web_acl.visibility_config().cloned(),
        tags,
    }
}

fn description() -> &'static str {
    "payops: protects the payments API stage and the internal ALB"
}

/// Resource types an ACL of payops' can be associated with.
const ASSOCIATED_TYPES: [ResourceType; 2] =
    [ResourceType::ApplicationLoadBalancer, ResourceType::ApiGateway];

/// Lets go of every resource the ACL protects: DeleteWebACL refuses an ACL
/// that is still associated (WAFAssociatedItemException). The association
/// steps normally did this already; this covers a run without them.
async fn disassociate_all(cx: &Context, arn: &str) -> Result<Vec<String>, AwsError> {
    let mut released = Vec::new();
    for kind in ASSOCIATED_TYPES {
        let listed = cx
            .clients
            .wafv2
            .list_resources_for_web_acl()
            .web_acl_arn(arn)
            .resource_type(kind)
            .send()
            .await
            .op("wafv2:ListResourcesForWebACL");
        let Some(out) = absent_on(listed, &[NONEXISTENT])? else {
            return Ok(released);
        };
        for resource in out.resource_arns() {
            let done = cx
                .clients
                .wafv2
                .disassociate_web_acl()
                .resource_arn(resource)
                .send()
                .await
                .op("wafv2:DisassociateWebACL");
            absent_on(done, &[NONEXISTENT])?;
            released.push(resource.clone());
        }
    }
    Ok(released)
}

#[async_trait]
impl Resource for WebAcl {
    type Found = FoundAcl;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "wafv2:web-acl"
    }

    async fn find(&self, cx: &Context, _step: &StepCx<'_>) -> Result<Vec<FoundAcl>, AwsError> {
        let name = cx.names.web_acl();
        let mut found = Vec::new();
        for acl in wafv2::web_acls(cx).await? {
            if acl.name != name {
                continue;
            }
            // Gone between the list and now: nothing to own.
            let Some(tags) = wafv2::tags_of(cx, &acl.arn).await? else {
                continue;
            };
            cx.check_ours(format!("WAF web ACL {} ({})", acl.name, acl.id), &tags)?;
            if let Some((web_acl, _)) = wafv2::get(cx, &acl).await? {
                found.push(found_from(acl, web_acl, tags));
            }
        }
        Ok(found)
    }

    fn describe(&self, found: &FoundAcl) -> String {
        format!("{} ({})", found.acl.name, found.acl.id)
    }

    fn already_exists(&self) -> &'static [&'static str] {
        // CreateWebACL has no idempotency token: a retried create whose first
        // answer was lost meets its own ACL by name.
        &["WAFDuplicateItemException"]
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<FoundAcl, AwsError> {
        let name = cx.names.web_acl();
        let rules = wanted_rules(&cx.spec.waf)?;
        let tags = cx.tagger.for_create(step.id().as_str());
        let out = cx
            .clients
            .wafv2
            .create_web_acl()
            .name(&name)
            .scope(SCOPE)
            .description(description())
            .default_action(allow())
            .set_rules(Some(rules))
            .visibility_config(visibility(&name)?)
            .set_tags(Some(wafv2::tag_list(OP, &tags)?))
            .send()
            .await
            .op(OP)?;
        let summary = required(out.summary(), OP, "Summary")?;
        let acl = AclRef {
            name,
            id: required(summary.id(), OP, "Summary.Id")?.to_owned(),
            arn: required(summary.arn(), OP, "Summary.ARN")?.to_owned(),
        };
        // Read back rather than trust the request: `diff` compares what WAF
        // stored.
        let (web_acl, _) = wafv2::get(cx, &acl).await?.ok_or_else(|| {
            AwsError::Conflict(format!(
                "WAF web ACL {} vanished right after it was created",
                acl.name
            ))
        })?;
        Ok(found_from(acl, web_acl, tags))
    }

    async fn diff(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: &FoundAcl,
    ) -> Result<Vec<Fix>, AwsError> {
        let mut fixes = Vec::new();
        let wanted = wanted_rules(&cx.spec.waf)?;
        let (restore, remove) = rule_drift(&wanted, &found.rules);
        let shape_ok = found.default_action.as_ref() == Some(&allow())
            && found.visibility.as_ref() == Some(&visibility(&found.acl.name)?);
        if !restore.is_empty() || !remove.is_empty() || !shape_ok {
            fixes.push(Fix::Rules { restore, remove });
        }
        let missing = cx.tagger.missing(step.id().as_str(), &found.tags);
        if !missing.is_empty() {
            fixes.push(Fix::Tags(missing));
        }
        Ok(fixes)
    }

    async fn fix(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        found: &mut FoundAcl,
        fix: Fix,
    ) -> Result<(), AwsError> {
        match fix {
            Fix::Rules { .. } => {
                let rules = wanted_rules(&cx.spec.waf)?;
                let acl = &found.acl;
                let updated = wafv2::with_lock(cx, acl, |_, token| {
                    let rules = rules.clone();
                    async move {
                        cx.clients
                            .wafv2
                            .update_web_acl()
                            .name(&acl.name)
                            .id(&acl.id)
                            .scope(SCOPE)
                            .lock_token(token)
                            .description(description())
                            .default_action(allow())
                            .set_rules(Some(rules))
                            .visibility_config(visibility(&acl.name)?)
                            .send()
                            .await
                            .op("wafv2:UpdateWebACL")
                    }
                })
                .await?;
                if updated.is_none() {
                    return Err(AwsError::Conflict(format!(
                        "WAF web ACL {} was deleted while payops repaired it; run `payops up` \
                         again",
                        acl.name
                    )));
                }
                found.rules = rules;
                found.default_action = Some(allow());
                found.visibility = Some(visibility(&found.acl.name)?);
            }
            Fix::Tags(tags) => {
                wafv2::add_tags(cx, &found.acl.arn, &tags).await?;
                found.tags.extend(tags);
            }
        }
        Ok(())
    }

    fn record(&self, _cx: &Context, found: &FoundAcl) -> Record {
        Record::default()
            .resource("web_acl", &found.acl.arn)
            .output("WebAclArn", &found.acl.arn)
            .output("WebAclId", &found.acl.id)
            .output("WebAclName", &found.acl.name)
    }

    async fn delete(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: FoundAcl,
    ) -> Result<Vec<String>, AwsError> {
        let mut notes: Vec<String> = disassociate_all(cx, &found.acl.arn)
            .await?
            .into_iter()
            .map(|r| format!("disassociated {r}"))
            .collect();
        let acl = &found.acl;
        let progress = |m: String| step.progress(m);
        // A removal a moment ago may not have reached every WAF host yet.
        retry_on_codes(
            format!("WAF web ACL {} to be released", acl.name),
            &[STILL_ASSOCIATED],
            cx.budgets.waf_propagation,
            &progress,
            || {
                wafv2::with_lock(cx, acl, |_, token| async move {
                    let deleted = cx
                        .clients
                        .wafv2
                        .delete_web_acl()
                        .name(&acl.name)
                        .id(&acl.id)
                        .scope(SCOPE)
                        .lock_token(token)
                        .send()
                        .await
                        .op("wafv2:DeleteWebACL");
                    absent_on(deleted, &[NONEXISTENT]).map(|_| ())
                })
            },
        )
        .await?;
        if !notes.is_empty() {
            notes.insert(0, format!("deleted {}", self.describe(&found)));
        }
        Ok(notes)
    }
}
