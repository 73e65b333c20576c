//! The env's X-Ray sampling rule `payops-<env>-payments`: every request to
//! the payments API's stage is traced (FixedRate 1.0), not X-Ray's default
//! of one a second and 5% of the rest, so every payment has its trace.
//!
//! What it reaches, and what it cannot:
//! - API Gateway (REST APIs, stage `TracingEnabled`, which `rest-api:payments`
//!   sets) samples by the rules that match ServiceName `{api-name}/{stage}`
//!   and ServiceType `AWS::ApiGateway::Stage` (API Gateway developer guide,
//!   apigateway-configuring-xray-sampling-rules; X-Ray developer guide,
//!   xray-services-apigateway). Its decision travels in the trace header to
//!   the functions it invokes, which record the sampled requests.
//! - Lambda ignores sampling rules: with Active tracing it samples requests
//!   that arrive without a decision at its own rate, which cannot be changed
//!   (Lambda developer guide, services-xray).
//! - The ALB has no X-Ray tracing: it only adds an `X-Amzn-Trace-Id` header
//!   (ELB user guide, load-balancer-request-tracing), so no rule applies to it.
//!
//! Rules of the API (tfaws xray/sampling_rule.go, API_SamplingRule):
//! RuleName 1-32 characters (see `Names::sampling_rule`); Priority 1-9999,
//! lowest first (`Default` is 10000); FixedRate 0-1; ReservoirSize per
//! second for the whole fleet; ResourceARN, Host, HTTPMethod, URLPath are
//! required (`*` matches anything); Version is 1 and cannot change.
//! Found by name (GetSamplingRules lists them all), owned by its tags;
//! CreateSamplingRule has no idempotency token: the retry of a create whose
//! answer was lost meets the name it took, which X-Ray refuses with
//! InvalidRequestException (unconfirmed: X-Ray documents no finer code), and
//! then the step looks again. An account holds 25 rules besides `Default`
//! (X-Ray quotas): beyond that AWS answers RuleLimitExceededException.

use std::fmt;

use async_trait::async_trait;
use aws_sdk_xray::types::{SamplingRule as Rule, SamplingRuleUpdate};

use crate::aws::{AwsError, OpResult, built};
use crate::engine::{Record, StepCx};
use crate::resources::model::API_STAGE;
use crate::tags::{TagMap, describe_tag_fix};

use crate::resources::context::Context;
use crate::resources::resource::Resource;
use crate::resources::sdk::xray as sdk;

pub const STEP: &str = "xray-sampling-rule:payments";

/// Every matching request is traced.
pub const FIXED_RATE: f64 = 1.0;
/// Requests a second taken before the rate applies; with a rate of 1.0 it
/// changes nothing, and 1 is what X-Ray's own `Default` keeps.
pub const RESERVOIR_SIZE: i32 = 1;
/// Ahead of any catch-all rule another team may add (lower wins): the rule
/// matches only this env's stage, so winning never takes anyone's traffic.
pub const PRIORITY: i32 = 1;
/// The only version X-Ray has.
const VERSION: i32 = 1;
pub const SERVICE_TYPE: &str = "AWS::ApiGateway::Stage";

pub struct SamplingRule;

pub struct FoundRule {
    name: String,
    arn: String,
    settings: Settings,
    tags: TagMap,
}

/// What payops sets on the rule, as GetSamplingRules answers it.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    service_name: String,
    service_type: String,
    resource_arn: String,
    host: String,
    http_method: String,
    url_path: String,
    priority: i32,
    fixed_rate: f64,
    reservoir_size: i32,
}

impl Settings {
    fn desired(cx: &Context) -> Self {
        Self {
            service_name: service_name(cx),
            service_type: SERVICE_TYPE.into(),
            resource_arn: "*".into(),
            host: "*".into(),
            http_method: "*".into(),
            url_path: "*".into(),
            priority: PRIORITY,
            fixed_rate: FIXED_RATE,
            reservoir_size: RESERVOIR_SIZE,
        }
    }

    fn of(rule: &Rule) -> Self {
        Self {
            service_name: rule.service_name().to_owned(),
            service_type: rule.service_type().to_owned(),
            resource_arn: rule.resource_arn().to_owned(),
            host: rule.host().to_owned(),
            http_method: rule.http_method().to_owned(),
            url_path: rule.url_path().to_owned(),
            priority: rule.priority(),
            fixed_rate: rule.fixed_rate(),
            reservoir_size: rule.reservoir_size(),
        }
    }

    /// The fields that differ, by X-Ray's name.
    fn drifted(&self, want: &Self) -> Vec<&'static str> {
        let mut what = Vec::new();
        let mut differ = |differs: bool, field: &'static str| {
            if differs {
                what.push(field);
            }
        };
        differ(self.service_name != want.service_name, "ServiceName");
        differ(self.service_type != want.service_type, "ServiceType");
        differ(self.resource_arn != want.resource_arn, "ResourceARN");
        differ(self.host != want.host, "Host");
        differ(self.http_method != want.http_method, "HTTPMethod");
        differ(self.url_path != want.url_path, "URLPath");
        differ(self.priority != want.priority, "Priority");
        // A JSON number read back: compare as numbers, not bits.
        differ(
            (self.fixed_rate - want.fixed_rate).abs() > 1e-9,
            "FixedRate",
        );
        differ(self.reservoir_size != want.reservoir_size, "ReservoirSize");
        what
    }
}

/// `payops-<env>-api/v1`: how API Gateway names the stage's service to X-Ray.
pub fn service_name(cx: &Context) -> String {
    format!("{}/{API_STAGE}", cx.names.rest_api())
}

pub enum Fix {
    Tags(TagMap),
    /// One UpdateSamplingRule with every field payops sets.
    Settings {
        what: Vec<&'static str>,
    },
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tags(t) => f.write_str(&describe_tag_fix(t)),
            Self::Settings { what } => write!(f, "set {}", what.join(", ")),
        }
    }
}

#[async_trait]
impl Resource for SamplingRule {
    type Found = FoundRule;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "xray:sampling-rule"
    }

    async fn find(&self, cx: &Context, _step: &StepCx<'_>) -> Result<Vec<FoundRule>, AwsError> {
        let name = cx.names.sampling_rule();
        let Some(rule) = sdk::sampling_rule(&cx.clients.xray, &name).await? else {
            return Ok(Vec::new());
        };
        let arn = match rule.rule_arn() {
            Some(arn) => arn.to_owned(),
            None => cx.arn("xray", &format!("sampling-rule/{name}")),
        };
        let tags = sdk::tags_of(&cx.clients.xray, &arn).await?;
        cx.check_ours(format!("X-Ray sampling rule {name}"), &tags)?;
        Ok(vec![FoundRule {
            settings: Settings::of(&rule),
            name,
            arn,
            tags,
        }])
    }

    fn describe(&self, found: &FoundRule) -> String {
        found.name.clone()
    }

    fn already_exists(&self) -> &'static [&'static str] {
        &sdk::INVALID_REQUEST
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<FoundRule, AwsError> {
        const OP: &str = "xray:CreateSamplingRule";
        let name = cx.names.sampling_rule();
        let want = Settings::desired(cx);
        let tags = cx.tagger.for_create(step.id().as_str());
        let rule = built(
            OP,
            Rule::builder()
                .rule_name(&name)
                .resource_arn(&want.resource_arn)
                .priority(want.priority)
                .fixed_rate(want.fixed_rate)
                .reservoir_size(want.reservoir_size)
                .service_name(&want.service_name)
                .service_type(&want.service_type)
                .host(&want.host)
                .http_method(&want.http_method)
                .url_path(&want.url_path)
                .version(VERSION)
                .build(),
        )?;
        let out = cx
            .clients
            .xray
            .create_sampling_rule()
            .sampling_rule(rule)
            .set_tags(Some(sdk::tags(OP, &tags)?))
            .send()
            .await
            .op(OP);
        let out = match out {
            Err(e) if e.is_code(&["RuleLimitExceededException"]) => {
                return Err(AwsError::Conflict(format!(
                    "{e}: the account holds 25 X-Ray sampling rules per region besides \
                     Default (X-Ray quotas), one per env here; remove envs or unused rules \
                     (`aws xray get-sampling-rules`)"
                )));
            }
            other => other?,
        };
        let arn = out
            .sampling_rule_record()
            .and_then(|r| r.sampling_rule())
            .and_then(|r| r.rule_arn())
            .map_or_else(
                || cx.arn("xray", &format!("sampling-rule/{name}")),
                str::to_owned,
            );
        step.remember("sampling-rule", &arn);
        Ok(FoundRule {
            name,
            arn,
            settings: want,
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
        let what = rule.settings.drifted(&Settings::desired(cx));
        if !what.is_empty() {
            fixes.push(Fix::Settings { what });
        }
        Ok(fixes)
    }

    async fn fix(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        rule: &mut FoundRule,
        fix: Fix,
    ) -> Result<(), AwsError> {
        match fix {
            Fix::Tags(missing) => {
                sdk::tag(&cx.clients.xray, &rule.arn, &missing).await?;
                rule.tags.extend(missing);
            }
            Fix::Settings { .. } => {
                let want = Settings::desired(cx);
                cx.clients
                    .xray
                    .update_sampling_rule()
                    .sampling_rule_update(
                        SamplingRuleUpdate::builder()
                            .rule_name(&rule.name)
                            .resource_arn(&want.resource_arn)
                            .priority(want.priority)
                            .fixed_rate(want.fixed_rate)
                            .reservoir_size(want.reservoir_size)
                            .service_name(&want.service_name)
                            .service_type(&want.service_type)
                            .host(&want.host)
                            .http_method(&want.http_method)
                            .url_path(&want.url_path)
                            .build(),
                    )
                    .send()
                    .await
                    .op("xray:UpdateSamplingRule")?;
                rule.settings = want;
            }
        }
        Ok(())
    }

    /// No outputs: the name is deterministic, and each output would be one
    /// more Parameter Store write per env.
    fn record(&self, _cx: &Context, rule: &FoundRule) -> Record {
        Record::default().resource("sampling-rule", &rule.arn)
    }

    async fn delete(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        rule: FoundRule,
    ) -> Result<Vec<String>, AwsError> {
        // A rule already gone answers an error X-Ray does not document
        // finely: the engine looks again and takes "gone" as deleted.
        cx.clients
            .xray
            .delete_sampling_rule()
            .rule_name(&rule.name)
            .send()
            .await
            .op("xray:DeleteSamplingRule")?;
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_xray::Client;
    use aws_sdk_xray::operation::create_sampling_rule::{
        CreateSamplingRuleError, CreateSamplingRuleOutput,
    };
    use aws_sdk_xray::operation::delete_sampling_rule::DeleteSamplingRuleOutput;
    use aws_sdk_xray::operation::get_sampling_rules::GetSamplingRulesOutput;
    use aws_sdk_xray::operation::list_tags_for_resource::ListTagsForResourceOutput;
    use aws_sdk_xray::operation::tag_resource::TagResourceOutput;
    use aws_sdk_xray::operation::update_sampling_rule::UpdateSamplingRuleOutput;
    use aws_sdk_xray::types::{SamplingRuleRecord, Tag};
    use aws_smithy_mocks::{Rule as Mock, RuleMode, mock, mock_client};

    use super::*;
    use crate::engine::{Change, Observation, Removed};
    use crate::resources::testing;

    const NAME: &str = "payops-pr1-payments";
    const ARN: &str = "arn:aws:xray:us-east-1:123456789012:sampling-rule/payops-pr1-payments";

    fn cx_with(rules: &[&Mock]) -> Context {
        let mut clients = testing::clients();
        clients.xray = mock_client!(aws_sdk_xray, RuleMode::MatchAny, rules);
        testing::context(clients)
    }

    fn rule(fixed_rate: f64, service: &str) -> aws_sdk_xray::types::SamplingRule {
        Rule::builder()
            .rule_name(NAME)
            .rule_arn(ARN)
            .resource_arn("*")
            .priority(PRIORITY)
            .fixed_rate(fixed_rate)
            .reservoir_size(RESERVOIR_SIZE)
            .service_name(service)
            .service_type(SERVICE_TYPE)
            .host("*")
            .http_method("*")
            .url_path("*")
            .version(1)
            .build()
            .unwrap()
    }

    /// GetSamplingRules with X-Ray's `Default` and, if given, our rule.
    fn listed(ours: Option<aws_sdk_xray::types::SamplingRule>) -> Mock {
        mock!(Client::get_sampling_rules).then_output(move || {
            let default = Rule::builder()
                .rule_name("Default")
                .resource_arn("*")
                .priority(10000)
                .fixed_rate(0.05)
                .reservoir_size(1)
                .service_name("*")
                .service_type("*")
                .host("*")
                .http_method("*")
                .url_path("*")
                .version(1)
                .build()
                .unwrap();
            let mut out = GetSamplingRulesOutput::builder().sampling_rule_records(
                SamplingRuleRecord::builder().sampling_rule(default).build(),
            );
            if let Some(r) = ours.clone() {
                out = out
                    .sampling_rule_records(SamplingRuleRecord::builder().sampling_rule(r).build());
            }
            out.build()
        })
    }

    fn tagged(tags: TagMap) -> Mock {
        mock!(Client::list_tags_for_resource)
            .match_requests(|r| r.resource_arn() == Some(ARN))
            .then_output(move || {
                let mut out = ListTagsForResourceOutput::builder();
                for (k, v) in &tags {
                    out = out.tags(Tag::builder().key(k).value(v).build().unwrap());
                }
                out.build()
            })
    }

    fn mutations() -> [Mock; 4] {
        [
            mock!(Client::create_sampling_rule)
                .then_output(|| CreateSamplingRuleOutput::builder().build()),
            mock!(Client::update_sampling_rule)
                .then_output(|| UpdateSamplingRuleOutput::builder().build()),
            mock!(Client::tag_resource).then_output(|| TagResourceOutput::builder().build()),
            mock!(Client::delete_sampling_rule)
                .then_output(|| DeleteSamplingRuleOutput::builder().build()),
        ]
    }

    #[test]
    fn the_rule_traces_every_request_of_the_envs_api_stage() {
        let cx = testing::context(testing::clients());
        let want = Settings::desired(&cx);
        assert_eq!(want.service_name, "payops-pr1-api/v1");
        assert_eq!(want.service_type, "AWS::ApiGateway::Stage");
        assert_eq!(want.fixed_rate, 1.0);
        assert!((1..=9999).contains(&want.priority));
        assert!(want.reservoir_size >= 0);
        assert_eq!(cx.names.sampling_rule(), NAME);
    }

    #[tokio::test]
    async fn no_rule_creates_one_tagged_for_the_env() {
        let create = mock!(Client::create_sampling_rule)
            .match_requests(|r| {
                let rule = r.sampling_rule().unwrap();
                let tags: Vec<(&str, &str)> =
                    r.tags().iter().map(|t| (t.key(), t.value())).collect();
                rule.rule_name() == Some(NAME)
                    && rule.fixed_rate() == 1.0
                    && rule.service_name() == "payops-pr1-api/v1"
                    && rule.service_type() == SERVICE_TYPE
                    && rule.version() == 1
                    && tags.contains(&(crate::tags::ENV, "pr1"))
            })
            .then_output(|| {
                CreateSamplingRuleOutput::builder()
                    .sampling_rule_record(
                        SamplingRuleRecord::builder()
                            .sampling_rule(rule(1.0, "payops-pr1-api/v1"))
                            .build(),
                    )
                    .build()
            });
        let cx = cx_with(&[&listed(None), &create]);
        let applied = testing::ensure(&cx, STEP, SamplingRule, &[]).await.unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(applied.record.resources["sampling-rule"], ARN);
        assert_eq!(create.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_converged_rule_takes_no_mutating_call_and_drift_is_put_back() {
        let m = mutations();
        let cx = cx_with(&[
            &listed(Some(rule(1.0, "payops-pr1-api/v1"))),
            &tagged(testing::our_tags(STEP)),
            &m[0],
            &m[1],
            &m[2],
            &m[3],
        ]);
        let applied = testing::ensure(&cx, STEP, SamplingRule, &[]).await.unwrap();
        assert_eq!(applied.change, Change::Unchanged);
        let calls: Vec<usize> = m.iter().map(Mock::num_calls).collect();
        assert_eq!(calls, [0, 0, 0, 0]);

        // Someone lowered the rate and pointed it elsewhere: drift, put back.
        let update = mock!(Client::update_sampling_rule)
            .match_requests(|r| {
                let u = r.sampling_rule_update().unwrap();
                u.rule_name() == Some(NAME)
                    && u.fixed_rate() == Some(1.0)
                    && u.service_name() == Some("payops-pr1-api/v1")
            })
            .then_output(|| UpdateSamplingRuleOutput::builder().build());
        let drifted = || {
            cx_with(&[
                &listed(Some(rule(0.05, "other-api/v1"))),
                &tagged(testing::our_tags(STEP)),
                &update,
            ])
        };
        let Observation::Present { drift, .. } =
            testing::observe(&drifted(), STEP, SamplingRule, &[])
                .await
                .unwrap()
        else {
            panic!("present");
        };
        assert_eq!(drift, ["set ServiceName, FixedRate"]);
        let applied = testing::ensure(&drifted(), STEP, SamplingRule, &[])
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Updated);
        assert_eq!(update.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_rule_of_that_name_without_the_envs_tags_is_refused_and_never_deleted() {
        let m = mutations();
        let foreign = TagMap::from([("team".to_owned(), "edge".to_owned())]);
        let cx = cx_with(&[
            &listed(Some(rule(0.1, "payops-pr1-api/v1"))),
            &tagged(foreign),
            &m[1],
            &m[3],
        ]);
        let err = testing::ensure(&cx, STEP, SamplingRule, &[])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not"), "{err}");
        assert!(testing::destroy(&cx, STEP, SamplingRule).await.is_err());
        assert_eq!((m[1].num_calls(), m[3].num_calls()), (0, 0));
    }

    #[tokio::test]
    async fn a_lost_create_answer_finds_the_rule_its_first_attempt_made() {
        let listing = mock!(Client::get_sampling_rules)
            .sequence()
            .output(|| GetSamplingRulesOutput::builder().build())
            .output(|| {
                GetSamplingRulesOutput::builder()
                    .sampling_rule_records(
                        SamplingRuleRecord::builder()
                            .sampling_rule(rule(1.0, "payops-pr1-api/v1"))
                            .build(),
                    )
                    .build()
            })
            .build();
        let create = mock!(Client::create_sampling_rule).then_error(|| {
            CreateSamplingRuleError::generic(testing::error_meta("InvalidRequestException"))
        });
        let cx = cx_with(&[&listing, &create, &tagged(testing::our_tags(STEP))]);
        let applied = testing::ensure(&cx, STEP, SamplingRule, &[]).await.unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(applied.record.resources["sampling-rule"], ARN);
    }

    #[tokio::test]
    async fn down_deletes_the_envs_rule_and_a_missing_one_is_done() {
        let delete = mock!(Client::delete_sampling_rule)
            .match_requests(|r| r.rule_name() == Some(NAME))
            .then_output(|| DeleteSamplingRuleOutput::builder().build());
        let cx = cx_with(&[
            &listed(Some(rule(1.0, "payops-pr1-api/v1"))),
            &tagged(testing::our_tags(STEP)),
            &delete,
        ]);
        let removed = testing::destroy(&cx, STEP, SamplingRule).await.unwrap();
        assert!(matches!(removed, Removed::Deleted { .. }), "{removed:?}");
        assert_eq!(delete.num_calls(), 1);
        let cx = cx_with(&[&listed(None)]);
        let removed = testing::destroy(&cx, STEP, SamplingRule).await.unwrap();
        assert!(matches!(removed, Removed::AlreadyAbsent), "{removed:?}");
    }
}
