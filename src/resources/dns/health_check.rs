//! The failover records' health checks, one per record.
//!
//! Route 53's health checkers run outside the VPC: they cannot reach a
//! private address or an internal ALB (DG dns-failover-private-hosted-zones,
//! "health checkers are outside the VPC"). A check on an endpoint here would
//! always fail, and the PRIMARY would never serve. So each check is of Type
//! CLOUDWATCH_METRIC: healthy while its CloudWatch alarm (in the env's
//! region, same account, on one standard-resolution metric with a standard
//! statistic: no metric math, no percentiles; API AlarmIdentifier) is not
//! in ALARM. [`desired`] enforces that type for every check payops makes.
//!
//! When the alarm has too little data (an idle env, a fresh one):
//! - PRIMARY keeps its last known status (`LastKnownStatus`): no traffic is
//!   not a failure, and a flap to SECONDARY for want of data would send
//!   payments to the maintenance answer;
//! - the maintenance check counts as healthy: it is the last resort, and
//!   with no requests there is nothing to say against it.
//!
//! Found by ListHealthChecks + ListTagsForResources (10 ids a call) on the
//! env's, region's and step's tags; an untagged check whose CallerReference
//! carries the step's prefix is one a crash left before tagging. A repeated
//! CallerReference with the same config returns the first check (the SDK's
//! retry of a lost answer); another config answers HealthCheckAlreadyExists
//! (also for days after a check of that reference was deleted), after which
//! the step looks again. Each create has a fresh reference.

use std::fmt;

use async_trait::async_trait;
use aws_sdk_route53::types::{
    AlarmIdentifier, CloudWatchRegion, HealthCheckConfig, HealthCheckType,
    InsufficientDataHealthStatus, TagResourceType,
};

use crate::aws::{AwsError, OpResult, absent_on, built, required};
use crate::engine::{Record, StepCx};
use crate::tags::{self, TagMap, describe_tag_fix};

use crate::resources::context::Context;
use crate::resources::resource::Resource;
use crate::resources::sdk::route53 as sdk;

use super::{create_tags, missing_tags, reference_prefix};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// The internal ALB (PRIMARY).
    Primary,
    /// The maintenance ALB (SECONDARY).
    Maintenance,
}

impl Check {
    pub const ALL: [Check; 2] = [Self::Primary, Self::Maintenance];

    pub fn slug(self) -> &'static str {
        match self {
            Self::Primary => "payments-primary",
            Self::Maintenance => "payments-maintenance",
        }
    }

    pub fn step_id(self) -> String {
        format!("health-check:{}", self.slug())
    }

    /// The alarm the check follows (the observability domain's step).
    pub fn alarm_step(self) -> &'static str {
        match self {
            Self::Primary => "alarm:dns-primary",
            Self::Maintenance => "alarm:dns-maintenance",
        }
    }

    fn alarm_output(self) -> &'static str {
        match self {
            Self::Primary => "DnsPrimaryAlarmName",
            Self::Maintenance => "DnsMaintenanceAlarmName",
        }
    }

    /// `PaymentsPrimaryHealthCheckId`.
    pub fn output_key(self) -> &'static str {
        match self {
            Self::Primary => "PaymentsPrimaryHealthCheckId",
            Self::Maintenance => "PaymentsMaintenanceHealthCheckId",
        }
    }

    fn insufficient_data(self) -> InsufficientDataHealthStatus {
        match self {
            Self::Primary => InsufficientDataHealthStatus::LastKnownStatus,
            Self::Maintenance => InsufficientDataHealthStatus::Healthy,
        }
    }
}

/// What payops sets on a check, as ListHealthChecks answers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub kind: HealthCheckType,
    /// (region, alarm name).
    pub alarm: Option<(String, String)>,
    pub insufficient_data: Option<InsufficientDataHealthStatus>,
}

impl Settings {
    fn of(config: Option<&HealthCheckConfig>) -> Self {
        Self {
            kind: config.map_or(HealthCheckType::from("unknown"), |c| c.r#type().clone()),
            alarm: config
                .and_then(|c| c.alarm_identifier())
                .map(|a| (a.region().as_str().to_owned(), a.name().to_owned())),
            insufficient_data: config.and_then(|c| c.insufficient_data_health_status().cloned()),
        }
    }
}

/// The desired settings: always a CLOUDWATCH_METRIC check on the alarm
/// (never a probe of an endpoint, which checkers outside the VPC cannot
/// reach).
pub fn desired(cx: &Context, check: Check, alarm_name: &str) -> Settings {
    Settings {
        kind: HealthCheckType::CloudwatchMetric,
        alarm: Some((cx.region.clone(), alarm_name.to_owned())),
        insufficient_data: Some(check.insufficient_data()),
    }
}

fn sdk_alarm(cx: &Context, alarm_name: &str) -> Result<AlarmIdentifier, AwsError> {
    built(
        "route53:CreateHealthCheck",
        AlarmIdentifier::builder()
            .region(CloudWatchRegion::from(cx.region.as_str()))
            .name(alarm_name)
            .build(),
    )
}

pub struct HealthCheck {
    check: Check,
}

impl HealthCheck {
    pub fn new(check: Check) -> Self {
        Self { check }
    }

    fn alarm_name<'a>(&self, step: &'a StepCx<'_>) -> Result<&'a str, AwsError> {
        Ok(step.output(self.check.alarm_step(), self.check.alarm_output())?)
    }

    fn prefix(&self, cx: &Context) -> String {
        format!("{}-", reference_prefix(cx, self.check.slug()))
    }
}

#[derive(Debug)]
pub struct FoundCheck {
    pub id: String,
    version: i64,
    settings: Settings,
    tags: TagMap,
}

pub enum Fix {
    Tags(TagMap),
    /// The alarm or the insufficient-data status differ: one
    /// UpdateHealthCheck with both.
    Settings,
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tags(t) => f.write_str(&describe_tag_fix(t)),
            Self::Settings => f.write_str("set AlarmIdentifier, InsufficientDataHealthStatus"),
        }
    }
}

#[async_trait]
impl Resource for HealthCheck {
    type Found = FoundCheck;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "route53:health-check"
    }

    fn wanted(&self, cx: &Context) -> bool {
        cx.spec.dns
    }

    async fn find(&self, cx: &Context, step: &StepCx<'_>) -> Result<Vec<FoundCheck>, AwsError> {
        let all = sdk::health_checks(&cx.clients.route53).await?;
        let ids: Vec<String> = all.iter().map(|c| c.id().to_owned()).collect();
        let tags =
            sdk::tags_of_many(&cx.clients.route53, TagResourceType::Healthcheck, &ids).await?;
        let prefix = self.prefix(cx);
        let mut found = Vec::new();
        for check in &all {
            let tags = tags.get(check.id()).cloned().unwrap_or_default();
            let ours = tags::global_ownership(&tags, cx.env(), &cx.region) == tags::Ownership::Ours
                && tags.get(tags::REGION) == Some(&cx.region)
                && tags.get(tags::STEP).map(String::as_str) == Some(step.id().as_str());
            let crashed_before_tagging =
                tags.is_empty() && check.caller_reference().starts_with(&prefix);
            if ours || crashed_before_tagging {
                found.push(FoundCheck {
                    id: check.id().to_owned(),
                    version: check.health_check_version(),
                    settings: Settings::of(check.health_check_config()),
                    tags,
                });
            }
        }
        Ok(found)
    }

    fn describe(&self, found: &FoundCheck) -> String {
        format!("health check {}", found.id)
    }

    fn already_exists(&self) -> &'static [&'static str] {
        &["HealthCheckAlreadyExists"]
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<FoundCheck, AwsError> {
        const OP: &str = "route53:CreateHealthCheck";
        let alarm = self.alarm_name(step)?;
        let want = desired(cx, self.check, alarm);
        let out = cx
            .clients
            .route53
            .create_health_check()
            .caller_reference(sdk::caller_reference(&reference_prefix(
                cx,
                self.check.slug(),
            )))
            .health_check_config(built(
                OP,
                HealthCheckConfig::builder()
                    .r#type(want.kind.clone())
                    .alarm_identifier(sdk_alarm(cx, alarm)?)
                    .insufficient_data_health_status(self.check.insufficient_data())
                    .build(),
            )?)
            .send()
            .await
            .op(OP)?;
        let check = required(out.health_check(), OP, "HealthCheck")?;
        let id = check.id().to_owned();
        step.remember("health_check", &id);
        let tags = create_tags(cx, step.id().as_str());
        sdk::add_tags(
            &cx.clients.route53,
            TagResourceType::Healthcheck,
            &id,
            &tags,
        )
        .await?;
        Ok(FoundCheck {
            id,
            version: check.health_check_version(),
            settings: want,
            tags,
        })
    }

    async fn diff(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: &FoundCheck,
    ) -> Result<Vec<Fix>, AwsError> {
        let mut fixes = Vec::new();
        let missing = missing_tags(cx, step.id().as_str(), &found.tags);
        if !missing.is_empty() {
            fixes.push(Fix::Tags(missing));
        }
        let want = desired(cx, self.check, self.alarm_name(step)?);
        if found.settings.kind != want.kind {
            // The type of a check cannot change (UpdateHealthCheck has no
            // Type): say so rather than update something else.
            return Err(AwsError::Conflict(format!(
                "health check {} is of type {}, not CLOUDWATCH_METRIC: delete it (payops makes \
                 a new one on the next up)",
                found.id,
                found.settings.kind.as_str()
            )));
        }
        if found.settings != want {
            fixes.push(Fix::Settings);
        }
        Ok(fixes)
    }

    async fn fix(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: &mut FoundCheck,
        fix: Fix,
    ) -> Result<(), AwsError> {
        match fix {
            Fix::Tags(missing) => {
                sdk::add_tags(
                    &cx.clients.route53,
                    TagResourceType::Healthcheck,
                    &found.id,
                    &missing,
                )
                .await?;
                found.tags.extend(missing);
            }
            Fix::Settings => {
                let alarm = self.alarm_name(step)?;
                // HealthCheckVersion: Route 53 refuses the update
                // (HealthCheckVersionMismatch) if someone changed it since.
                cx.clients
                    .route53
                    .update_health_check()
                    .health_check_id(&found.id)
                    .health_check_version(found.version)
                    .alarm_identifier(sdk_alarm(cx, alarm)?)
                    .insufficient_data_health_status(self.check.insufficient_data())
                    .send()
                    .await
                    .op("route53:UpdateHealthCheck")?;
                found.settings = desired(cx, self.check, alarm);
            }
        }
        Ok(())
    }

    fn record(&self, _cx: &Context, found: &FoundCheck) -> Record {
        Record::default()
            .resource("health_check", &found.id)
            .output(self.check.output_key(), &found.id)
    }

    async fn delete(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        found: FoundCheck,
    ) -> Result<Vec<String>, AwsError> {
        // HealthCheckInUse while a record names it: the records step, which
        // depends on this one, is removed first.
        let deleted = cx
            .clients
            .route53
            .delete_health_check()
            .health_check_id(&found.id)
            .send()
            .await
            .op("route53:DeleteHealthCheck");
        absent_on(deleted, &["NoSuchHealthCheck"])?;
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_route53::Client;
    use aws_sdk_route53::operation::create_health_check::{
        CreateHealthCheckError, CreateHealthCheckOutput,
    };
    use aws_sdk_route53::operation::delete_health_check::DeleteHealthCheckOutput;
    use aws_sdk_route53::operation::list_health_checks::ListHealthChecksOutput;
    use aws_sdk_route53::operation::update_health_check::UpdateHealthCheckOutput;
    use aws_sdk_route53::types::HealthCheck as Sdk;
    use aws_smithy_mocks::{Rule, mock};

    use super::*;
    use crate::engine::Change;
    use crate::resources::dns::fake;
    use crate::resources::testing;

    const STEP: &str = "health-check:payments-primary";
    const ALARM: &str = "payops-pr1-dns-primary";

    fn inputs() -> Vec<(&'static str, Record)> {
        testing::outputs(&[("alarm:dns-primary", "DnsPrimaryAlarmName", ALARM)])
    }

    fn check(id: &str, reference: &str, alarm: &str, status: InsufficientDataHealthStatus) -> Sdk {
        Sdk::builder()
            .id(id)
            .caller_reference(reference)
            .health_check_version(3)
            .health_check_config(
                HealthCheckConfig::builder()
                    .r#type(HealthCheckType::CloudwatchMetric)
                    .alarm_identifier(
                        AlarmIdentifier::builder()
                            .region(CloudWatchRegion::UsEast1)
                            .name(alarm)
                            .build()
                            .unwrap(),
                    )
                    .insufficient_data_health_status(status)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    }

    fn listed(checks: Vec<Sdk>) -> Rule {
        mock!(Client::list_health_checks).then_output(move || {
            ListHealthChecksOutput::builder()
                .set_health_checks(Some(checks.clone()))
                .marker("")
                .is_truncated(false)
                .max_items(100)
                .build()
                .unwrap()
        })
    }

    fn mutations() -> [Rule; 3] {
        [
            mock!(Client::create_health_check)
                .then_output(|| CreateHealthCheckOutput::builder().build().unwrap()),
            mock!(Client::update_health_check)
                .then_output(|| UpdateHealthCheckOutput::builder().build()),
            fake::tagging(),
        ]
    }

    /// Route 53's checkers are outside the VPC and cannot reach an internal
    /// ALB: every check payops makes follows a CloudWatch alarm in the
    /// env's region, never probes an endpoint.
    #[test]
    fn every_check_follows_an_alarm_never_the_private_endpoint() {
        let cx = testing::context(testing::clients());
        for c in Check::ALL {
            let want = desired(&cx, c, "a");
            assert_eq!(want.kind, HealthCheckType::CloudwatchMetric);
            assert_eq!(want.alarm, Some(("us-east-1".into(), "a".into())));
        }
        assert_eq!(
            desired(&cx, Check::Primary, "a").insufficient_data,
            Some(InsufficientDataHealthStatus::LastKnownStatus)
        );
        assert_eq!(
            desired(&cx, Check::Maintenance, "a").insufficient_data,
            Some(InsufficientDataHealthStatus::Healthy)
        );
    }

    #[tokio::test]
    async fn no_check_creates_one_on_the_alarm_with_a_fresh_reference_then_tags_it() {
        let create = mock!(Client::create_health_check)
            .match_requests(|r| {
                let c = r.health_check_config().unwrap();
                r.caller_reference()
                    .is_some_and(|x| x.starts_with("payops-pr1-us-east-1-payments-primary-"))
                    && c.r#type() == &HealthCheckType::CloudwatchMetric
                    && c.alarm_identifier().map(|a| a.name()) == Some(ALARM)
                    && c.ip_address().is_none()
                    && c.insufficient_data_health_status()
                        == Some(&InsufficientDataHealthStatus::LastKnownStatus)
            })
            .then_output(|| {
                CreateHealthCheckOutput::builder()
                    .health_check(check(
                        "hc-1",
                        "payops-pr1-us-east-1-payments-primary-1",
                        ALARM,
                        InsufficientDataHealthStatus::LastKnownStatus,
                    ))
                    .location("x")
                    .build()
                    .unwrap()
            });
        let tag = fake::tagging();
        let cx = fake::context(&[
            &listed(vec![]),
            &fake::tagged_many(TagResourceType::Healthcheck, vec![]),
            &create,
            &tag,
        ]);
        let applied = testing::ensure(&cx, STEP, HealthCheck::new(Check::Primary), &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(
            applied.record.outputs["PaymentsPrimaryHealthCheckId"],
            "hc-1"
        );
        assert_eq!((create.num_calls(), tag.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn a_converged_check_takes_no_mutating_call_and_a_drifted_one_is_updated() {
        let ours = check(
            "hc-1",
            "r",
            ALARM,
            InsufficientDataHealthStatus::LastKnownStatus,
        );
        let m = mutations();
        let cx = fake::context(&[
            &listed(vec![ours.clone()]),
            &fake::tagged_many(
                TagResourceType::Healthcheck,
                vec![("hc-1".into(), fake::ours(STEP, "us-east-1"))],
            ),
            &m[0],
            &m[1],
            &m[2],
        ]);
        let applied = testing::ensure(&cx, STEP, HealthCheck::new(Check::Primary), &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Unchanged);
        assert_eq!(m.iter().map(Rule::num_calls).sum::<usize>(), 0);

        let update = mock!(Client::update_health_check)
            .match_requests(|r| {
                r.health_check_id() == Some("hc-1")
                    && r.health_check_version() == Some(3)
                    && r.alarm_identifier().map(|a| a.name()) == Some(ALARM)
            })
            .then_output(|| UpdateHealthCheckOutput::builder().build());
        let cx = fake::context(&[
            &listed(vec![check(
                "hc-1",
                "r",
                "other",
                InsufficientDataHealthStatus::Unhealthy,
            )]),
            &fake::tagged_many(
                TagResourceType::Healthcheck,
                vec![("hc-1".into(), fake::ours(STEP, "us-east-1"))],
            ),
            &update,
        ]);
        let applied = testing::ensure(&cx, STEP, HealthCheck::new(Check::Primary), &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Updated);
        assert_eq!(update.num_calls(), 1);
    }

    /// Health checks are account-wide: the same env name's checks in
    /// another region, another step's and untagged ones of another prefix
    /// are never taken.
    #[tokio::test]
    async fn only_this_regions_and_steps_checks_are_the_envs() {
        let checks = vec![
            check(
                "west",
                "r",
                ALARM,
                InsufficientDataHealthStatus::LastKnownStatus,
            ),
            check(
                "maint",
                "r",
                ALARM,
                InsufficientDataHealthStatus::LastKnownStatus,
            ),
            check(
                "crashed",
                "payops-pr1-us-east-1-payments-primary-5",
                ALARM,
                InsufficientDataHealthStatus::LastKnownStatus,
            ),
            check(
                "someone",
                "terraform-123",
                ALARM,
                InsufficientDataHealthStatus::LastKnownStatus,
            ),
        ];
        let cx = fake::context(&[
            &listed(checks),
            &fake::tagged_many(
                TagResourceType::Healthcheck,
                vec![
                    ("west".into(), fake::ours(STEP, "us-west-2")),
                    (
                        "maint".into(),
                        fake::ours("health-check:payments-maintenance", "us-east-1"),
                    ),
                ],
            ),
        ]);
        let events = testing::Events::default();
        let id = crate::engine::StepId::from(STEP);
        let step = testing::step_cx(&id, Default::default(), &events);
        let found = HealthCheck::new(Check::Primary)
            .find(&cx, &step)
            .await
            .unwrap();
        let ids: Vec<&str> = found.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(
            ids,
            ["crashed"],
            "untagged with the step's prefix: a crash before tagging"
        );
    }

    #[tokio::test]
    async fn a_lost_create_answer_is_found_again_and_down_deletes_it() {
        let listing = mock!(Client::list_health_checks)
            .sequence()
            .output(|| {
                ListHealthChecksOutput::builder()
                    .set_health_checks(Some(vec![]))
                    .marker("")
                    .is_truncated(false)
                    .max_items(100)
                    .build()
                    .unwrap()
            })
            .output(|| {
                ListHealthChecksOutput::builder()
                    .health_checks(check(
                        "hc-1",
                        "payops-pr1-us-east-1-payments-primary-1",
                        ALARM,
                        InsufficientDataHealthStatus::LastKnownStatus,
                    ))
                    .marker("")
                    .is_truncated(false)
                    .max_items(100)
                    .build()
                    .unwrap()
            })
            .build();
        let create = mock!(Client::create_health_check).then_error(|| {
            CreateHealthCheckError::generic(testing::error_meta("HealthCheckAlreadyExists"))
        });
        let cx = fake::context(&[
            &listing,
            &fake::tagged_many(TagResourceType::Healthcheck, vec![]),
            &create,
            &fake::tagging(),
        ]);
        let applied = testing::ensure(&cx, STEP, HealthCheck::new(Check::Primary), &inputs())
            .await
            .unwrap();
        assert_eq!(applied.record.resources["health_check"], "hc-1");

        let delete = mock!(Client::delete_health_check)
            .match_requests(|r| r.health_check_id() == Some("hc-1"))
            .then_output(|| DeleteHealthCheckOutput::builder().build());
        let cx = fake::context(&[
            &listed(vec![check(
                "hc-1",
                "r",
                ALARM,
                InsufficientDataHealthStatus::LastKnownStatus,
            )]),
            &fake::tagged_many(
                TagResourceType::Healthcheck,
                vec![("hc-1".into(), fake::ours(STEP, "us-east-1"))],
            ),
            &delete,
        ]);
        testing::destroy(&cx, STEP, HealthCheck::new(Check::Primary))
            .await
            .unwrap();
        assert_eq!(delete.num_calls(), 1);
    }
}
