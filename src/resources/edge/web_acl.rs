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
    CountryCode, DefaultAction, FieldToMatch, GeoMatchStatement, ManagedRuleGroupStatement, Method,
    NotStatement, OrStatement, OverrideAction, OversizeHandling, PositionalConstraint,
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
            .single_header(built(
                OP,
                SingleHeader::builder().name("content-type").build(),
            )?)
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
    rules.push(rule(
        SQLI,
        4,
        managed_group("AWSManagedRulesSQLiRuleSet")?,
        true,
    )?);
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
        if m.managed_rule_group_configs
            .as_ref()
            .is_some_and(Vec::is_empty)
        {
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
const ASSOCIATED_TYPES: [ResourceType; 2] = [
    ResourceType::ApplicationLoadBalancer,
    ResourceType::ApiGateway,
];

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

#[cfg(test)]
mod tests {
    use aws_sdk_wafv2::Client;
    use aws_sdk_wafv2::operation::{
        delete_web_acl::{DeleteWebACLError, DeleteWebAclOutput},
        disassociate_web_acl::DisassociateWebAclOutput,
        get_web_acl::GetWebAclOutput,
        list_resources_for_web_acl::ListResourcesForWebAclOutput,
        list_tags_for_resource::ListTagsForResourceOutput,
        list_web_acls::ListWebAcLsOutput,
        update_web_acl::{UpdateWebACLError, UpdateWebAclOutput},
    };
    use aws_sdk_wafv2::types::{TagInfoForResource, WebAclSummary};
    use aws_smithy_mocks::{Rule as Mock, RuleMode, mock, mock_client};

    use super::*;
    use crate::engine::{Change, Observation, Removed};
    use crate::resources::testing;

    const STEP: &str = "web-acl";
    const ARN: &str = "arn:aws:wafv2:us-east-1:123456789012:regional/webacl/payops-pr1-waf/a-1";
    const ALB: &str =
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/payops-pr1-alb/1";

    /// AWS's own words for the errors payops handles.
    fn waf_error(code: &str) -> aws_smithy_types::error::ErrorMetadata {
        let message = match code {
            "WAFOptimisticLockException" => {
                "AWS WAF couldn’t save your changes because someone changed the resource after \
                 you started to edit it. Reapply your changes."
            }
            "WAFAssociatedItemException" => {
                "AWS WAF couldn’t perform the operation because your resource is being used by \
                 another resource or it’s associated with another resource."
            }
            _ => "AWS WAF couldn’t perform the operation because your resource doesn’t exist.",
        };
        aws_smithy_types::error::ErrorMetadata::builder()
            .code(code)
            .message(message)
            .build()
    }

    fn listed() -> Mock {
        mock!(Client::list_web_acls).then_output(|| {
            ListWebAcLsOutput::builder()
                .web_acls(
                    WebAclSummary::builder()
                        .name("payops-pr1-waf")
                        .id("a-1")
                        .arn(ARN)
                        .build(),
                )
                // Another env's ACL is not looked at.
                .web_acls(
                    WebAclSummary::builder()
                        .name("payops-pr2-waf")
                        .id("a-2")
                        .arn("arn:other")
                        .build(),
                )
                .build()
        })
    }

    fn tagged(tags: TagMap) -> Mock {
        mock!(Client::list_tags_for_resource)
            .match_requests(|r| r.resource_arn() == Some(ARN))
            .then_output(move || {
                ListTagsForResourceOutput::builder()
                    .tag_info_for_resource(
                        TagInfoForResource::builder()
                            .resource_arn(ARN)
                            .set_tag_list(Some(wafv2::tag_list(OP, &tags).unwrap()))
                            .build(),
                    )
                    .build()
            })
    }

    fn acl(rules: Vec<Rule>) -> SdkWebAcl {
        SdkWebAcl::builder()
            .name("payops-pr1-waf")
            .id("a-1")
            .arn(ARN)
            .default_action(allow())
            .set_rules(Some(rules))
            .visibility_config(visibility("payops-pr1-waf").unwrap())
            .build()
            .unwrap()
    }

    fn got(rules: Vec<Rule>, token: &'static str) -> GetWebAclOutput {
        GetWebAclOutput::builder()
            .web_acl(acl(rules))
            .lock_token(token)
            .build()
    }

    fn without_sqli() -> Vec<Rule> {
        wanted_rules(&Waf::default())
            .unwrap()
            .into_iter()
            .filter(|r| r.name() != SQLI)
            .collect()
    }

    fn context(rules: &[&Mock]) -> Context {
        let mut clients = testing::clients();
        clients.wafv2 = mock_client!(aws_sdk_wafv2, RuleMode::MatchAny, rules);
        testing::context(clients)
    }

    #[test]
    fn default_rules_rate_limit_managed_groups_and_payments_without_a_geo_rule() {
        let rules = wanted_rules(&Waf::default()).unwrap();
        let names: Vec<&str> = rules.iter().map(Rule::name).collect();
        assert_eq!(names, [RATE_LIMIT, PAYMENTS, COMMON, SQLI]);
        let mut priorities: Vec<i32> = rules.iter().map(Rule::priority).collect();
        priorities.dedup();
        assert_eq!(priorities.len(), rules.len(), "priorities are unique");
        let rate = rules[0]
            .statement()
            .and_then(Statement::rate_based_statement)
            .unwrap();
        assert_eq!((rate.limit(), rate.evaluation_window_sec()), (1000, 300));
        assert_eq!(
            rate.aggregate_key_type(),
            &RateBasedStatementAggregateKeyType::Ip
        );
        assert!(rate.scope_down_statement().is_some(), "only at the stage");
        for r in &rules {
            let managed = r
                .statement()
                .is_some_and(|s| s.managed_rule_group_statement().is_some());
            // Groups take OverrideAction None, other rules an Action.
            assert_eq!(r.override_action().is_some(), managed, "{}", r.name());
            assert_eq!(r.action().is_some(), !managed, "{}", r.name());
            let v = r.visibility_config().unwrap();
            assert!(v.cloud_watch_metrics_enabled() && v.sampled_requests_enabled());
            assert_eq!(v.metric_name(), r.name());
        }
        let groups: Vec<&str> = rules
            .iter()
            .filter_map(|r| r.statement()?.managed_rule_group_statement())
            .map(|m| m.name())
            .collect();
        assert_eq!(
            groups,
            ["AWSManagedRulesCommonRuleSet", "AWSManagedRulesSQLiRuleSet"]
        );
    }

    #[test]
    fn countries_add_a_geo_rule_first_and_unknown_codes_are_refused() {
        let waf = Waf {
            rate_limit: 100,
            block_countries: vec!["CN".into(), "RU".into()],
        };
        let rules = wanted_rules(&waf).unwrap();
        assert_eq!(rules[0].name(), BLOCK_COUNTRIES);
        assert_eq!(rules[0].priority(), 0);
        let geo = rules[0]
            .statement()
            .and_then(Statement::geo_match_statement)
            .unwrap();
        assert_eq!(geo.country_codes(), [CountryCode::Cn, CountryCode::Ru]);
        let rate = rules[1]
            .statement()
            .and_then(Statement::rate_based_statement)
            .unwrap();
        assert_eq!(rate.limit(), 100);
        let bad = Waf {
            block_countries: vec!["XX".into()],
            ..Waf::default()
        };
        let err = wanted_rules(&bad).unwrap_err().to_string();
        assert!(err.contains("no country code \"XX\""), "{err}");
    }

    #[test]
    fn drift_names_removed_changed_and_foreign_rules_and_ignores_empty_lists() {
        let wanted = wanted_rules(&Waf::default()).unwrap();
        assert_eq!(rule_drift(&wanted, &wanted), (vec![], vec![]));
        // AWS echoing an empty ExcludedRules list is no drift.
        let mut echoed = wanted.clone();
        echoed[2]
            .statement
            .as_mut()
            .unwrap()
            .managed_rule_group_statement
            .as_mut()
            .unwrap()
            .excluded_rules = Some(vec![]);
        assert_eq!(rule_drift(&wanted, &echoed), (vec![], vec![]));
        let mut changed = without_sqli();
        changed[0] = rule(RATE_LIMIT, 1, managed_group("x").unwrap(), true).unwrap();
        changed.push(rule("someone-elses", 9, managed_group("y").unwrap(), true).unwrap());
        assert_eq!(
            rule_drift(&wanted, &changed),
            (
                vec![RATE_LIMIT.to_owned(), SQLI.to_owned()],
                vec!["someone-elses".to_owned()]
            )
        );
    }

    #[tokio::test]
    async fn a_removed_rule_is_drift_in_status_without_any_write() {
        let get = mock!(Client::get_web_acl).then_output(|| got(without_sqli(), "t1"));
        let cx = context(&[&listed(), &tagged(testing::our_tags(STEP)), &get]);
        let Observation::Present { drift, record } =
            testing::observe(&cx, STEP, WebAcl, &[]).await.unwrap()
        else {
            panic!("expected present");
        };
        assert_eq!(drift, ["restore WAF rules aws-sqli-rule-set"]);
        assert_eq!(record.outputs["WebAclArn"], ARN);
    }

    #[tokio::test]
    async fn repair_rereads_and_retries_with_a_fresh_token_when_someone_wrote_in_between() {
        let get = mock!(Client::get_web_acl)
            .sequence()
            .output(|| got(without_sqli(), "t1"))
            .times(2)
            .output(|| got(without_sqli(), "t2"))
            .build();
        let stale = mock!(Client::update_web_acl)
            .match_requests(|r| r.lock_token() == Some("t1"))
            .then_error(|| UpdateWebACLError::generic(waf_error("WAFOptimisticLockException")));
        let fresh = mock!(Client::update_web_acl)
            .match_requests(|r| {
                r.lock_token() == Some("t2")
                    && r.scope() == Some(&SCOPE)
                    && r.rules().iter().any(|rule| rule.name() == SQLI)
            })
            .then_output(|| UpdateWebAclOutput::builder().next_lock_token("t3").build());
        let cx = context(&[
            &listed(),
            &tagged(testing::our_tags(STEP)),
            &get,
            &stale,
            &fresh,
        ]);
        let applied = testing::ensure(&cx, STEP, WebAcl, &[]).await.unwrap();
        assert_eq!(applied.change, Change::Updated);
        assert_eq!((stale.num_calls(), fresh.num_calls()), (1, 1));
    }

    /// No ACL listed at the first look, ours at the next; the retried
    /// CreateWebACL (no idempotency token) meets it by name:
    /// `WAFDuplicateItemException`.
    fn retried_create() -> [Mock; 2] {
        let list = mock!(Client::list_web_acls)
            .sequence()
            .output(|| ListWebAcLsOutput::builder().build())
            .output(|| {
                ListWebAcLsOutput::builder()
                    .web_acls(
                        WebAclSummary::builder()
                            .name("payops-pr1-waf")
                            .id("a-1")
                            .arn(ARN)
                            .build(),
                    )
                    .build()
            })
            .repeatedly()
            .build();
        let create = mock!(Client::create_web_acl).then_error(|| {
            aws_sdk_wafv2::operation::create_web_acl::CreateWebACLError::generic(
                testing::error_meta("WAFDuplicateItemException"),
            )
        });
        [list, create]
    }

    #[tokio::test]
    async fn a_create_retried_after_a_lost_answer_adopts_what_it_made() {
        let [list, create] = retried_create();
        let get = mock!(Client::get_web_acl)
            .then_output(|| got(wanted_rules(&Waf::default()).unwrap(), "t1"));
        let cx = context(&[&list, &create, &tagged(testing::our_tags(STEP)), &get]);
        let applied = testing::ensure(&cx, STEP, WebAcl, &[]).await.unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(applied.record.outputs["WebAclArn"], ARN);
        assert_eq!(create.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_create_conflict_with_an_acl_not_ours_is_refused() {
        let [list, create] = retried_create();
        let cx = context(&[&list, &create, &tagged(TagMap::new())]);
        let err = testing::ensure(&cx, STEP, WebAcl, &[])
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("not tagged"), "{err}");
        assert_eq!(create.num_calls(), 1);
    }

    #[tokio::test]
    async fn an_acl_of_our_name_without_our_tags_is_never_adopted() {
        let cx = context(&[&listed(), &tagged(TagMap::new())]);
        let err = testing::ensure(&cx, STEP, WebAcl, &[])
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("not tagged"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn delete_lets_go_of_what_it_protects_first_and_waits_out_the_release() {
        let get = mock!(Client::get_web_acl).then_output(|| got(without_sqli(), "t1"));
        let albs = mock!(Client::list_resources_for_web_acl)
            .match_requests(|r| r.resource_type() == Some(&ResourceType::ApplicationLoadBalancer))
            .then_output(|| {
                ListResourcesForWebAclOutput::builder()
                    .resource_arns(ALB)
                    .build()
            });
        let stages = mock!(Client::list_resources_for_web_acl)
            .match_requests(|r| r.resource_type() == Some(&ResourceType::ApiGateway))
            .then_output(|| ListResourcesForWebAclOutput::builder().build());
        let release = mock!(Client::disassociate_web_acl)
            .match_requests(|r| r.resource_arn() == Some(ALB))
            .then_output(|| DisassociateWebAclOutput::builder().build());
        let delete = mock!(Client::delete_web_acl)
            .sequence()
            .error(|| DeleteWebACLError::generic(waf_error("WAFAssociatedItemException")))
            .output(|| DeleteWebAclOutput::builder().build())
            .build();
        let cx = context(&[
            &listed(),
            &tagged(testing::our_tags(STEP)),
            &get,
            &albs,
            &stages,
            &release,
            &delete,
        ]);
        let Removed::Deleted { notes } = testing::destroy(&cx, STEP, WebAcl).await.unwrap() else {
            panic!("expected deleted");
        };
        assert_eq!((release.num_calls(), delete.num_calls()), (1, 2));
        assert!(notes.iter().any(|n| n.contains(ALB)), "{notes:?}");
        // Gone already: success, no call.
        let none =
            mock!(Client::list_web_acls).then_output(|| ListWebAcLsOutput::builder().build());
        let cx = context(&[&none]);
        assert_eq!(
            testing::destroy(&cx, STEP, WebAcl).await.unwrap(),
            Removed::AlreadyAbsent
        );
    }
}
