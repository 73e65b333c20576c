//! DNS: the env's private Route 53 zone `<env>.payops.internal`, associated
//! with its VPC, and in it the payments endpoint with failover:
//!
//! - `payments.<zone>` PRIMARY: an alias to the internal ALB, healthy while
//!   the alarm `alarm:dns-primary` (the ALB's own 5XX answers) is not in
//!   ALARM;
//! - `payments.<zone>` SECONDARY: an alias to the maintenance ALB, whose
//!   only listener answers a fixed 503 `{"error":"MAINTENANCE"}`, healthy
//!   while `alarm:dns-maintenance` (connections it rejected) is not in ALARM;
//! - `alb.<zone>`: a plain alias to the ALB (the name its certificate has).
//!
//! Why a maintenance ALB as SECONDARY: DNS cannot change the Host header or
//! the port, so a fallback on the same ALB (the green target path) fails
//! with it; a fixed-response ALB shares nothing with the Lambdas behind the
//! main one and answers a fast, explicit 503 clients can retry on, instead
//! of a timeout. It costs an ALB-hour (~$16/month), so PR envs may leave
//! DNS out (`--dns off`).
//!
//! Health checks: Route 53's checkers live outside the VPC and cannot reach
//! a private address or an internal ALB (DG dns-failover-private-hosted-
//! zones), so both checks are CLOUDWATCH_METRIC checks on an alarm
//! (`health_check`).
//!
//! Route 53 is global: zones and checks are tagged `payops:region` and only
//! the env's own region's are adopted (see `sdk::route53`).

pub mod health_check;
pub mod hosted_zone;
pub mod records;

use aws_sdk_route53::types::TagResourceType;

use crate::aws::AwsError;
use crate::resources::context::Context;
use crate::resources::sdk::route53 as sdk;
use crate::tags::{self, TagMap};

use super::registry::{Registry, dep};

/// `pr1.payops.internal`: the env's private zone (the ALB's certificate is
/// for `alb.<zone>`, see `Names::certificate_domain`).
pub fn zone_name(cx: &Context) -> String {
    format!("{}.payops.internal", cx.env())
}

/// Route 53 answers names with the trailing dot, lowercase.
pub fn fqdn(name: &str) -> String {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    format!("{name}.")
}

/// The tags a zone or check of this step should carry and lacks: the env's,
/// and the region it serves (Route 53 is global).
pub fn missing_tags(cx: &Context, step: &str, existing: &TagMap) -> TagMap {
    let mut missing = cx.tagger.missing(step, existing);
    if existing.get(tags::REGION) != Some(&cx.region) {
        missing.insert(tags::REGION.to_owned(), cx.region.clone());
    }
    missing
}

/// The tags to create with: the env's, and its region.
pub fn create_tags(cx: &Context, step: &str) -> TagMap {
    let mut tags = cx.tagger.for_create(step);
    tags.insert(tags::REGION.to_owned(), cx.region.clone());
    tags
}

/// `payops-<env>-<region>-<what>`: the CallerReference prefix that marks a
/// zone or check as the env's when a crash left it untagged.
pub fn reference_prefix(cx: &Context, what: &str) -> String {
    format!("payops-{}-{}-{what}", cx.env(), cx.region)
}

/// The env's zones and health checks still there (this region's), by
/// listing them directly: Route 53 is global, and the tagging API lists its
/// resources only in us-east-1, so the final sweep of `down` (and of
/// `destroy-all`) asks Route 53 itself.
pub async fn leftovers(cx: &Context) -> Result<Vec<String>, AwsError> {
    let route53 = &cx.clients.route53;
    let mut left = Vec::new();
    let ours = |t: &TagMap| {
        tags::global_ownership(t, cx.env(), &cx.region) == tags::Ownership::Ours
            && t.get(tags::REGION) == Some(&cx.region)
    };
    let zones = sdk::hosted_zones(route53).await?;
    let ids: Vec<String> = zones
        .iter()
        .map(|z| sdk::bare_id(z.id()).to_owned())
        .collect();
    let zone_tags = sdk::tags_of_many(route53, TagResourceType::Hostedzone, &ids).await?;
    for zone in &zones {
        let id = sdk::bare_id(zone.id());
        if zone_tags.get(id).is_some_and(ours) {
            left.push(format!("route53 hosted zone {} ({id})", zone.name()));
        }
    }
    let checks = sdk::health_checks(route53).await?;
    let ids: Vec<String> = checks.iter().map(|c| c.id().to_owned()).collect();
    let check_tags = sdk::tags_of_many(route53, TagResourceType::Healthcheck, &ids).await?;
    for check in &checks {
        if check_tags.get(check.id()).is_some_and(ours) {
            left.push(format!("route53 health check {}", check.id()));
        }
    }
    Ok(left)
}

pub fn register(r: &mut Registry) {
    r.add(
        hosted_zone::STEP,
        hosted_zone::HostedZone,
        vec![dep(
            "vpc",
            "a private zone is created associated with the env's VPC, and answers only inside it",
        )],
    );
    for check in health_check::Check::ALL {
        r.add(
            check.step_id(),
            health_check::HealthCheck::new(check),
            vec![dep(
                check.alarm_step(),
                "the check is healthy while this alarm is not in ALARM (AlarmIdentifier names it)",
            )],
        );
    }
    r.add(
        records::STEP,
        records::Records,
        vec![
            dep(
                hosted_zone::STEP,
                "the records live in the env's private zone",
            ),
            dep(
                "load-balancer:alb",
                "PRIMARY and alb.<zone> alias the ALB's DNS name and canonical hosted zone id",
            ),
            dep(
                "load-balancer:maintenance",
                "SECONDARY aliases the maintenance ALB's DNS name and canonical hosted zone id",
            ),
            dep(
                health_check::Check::Primary.step_id(),
                "PRIMARY carries this health check (deleted after the record: HealthCheckInUse)",
            ),
            dep(
                health_check::Check::Maintenance.step_id(),
                "SECONDARY carries this health check (deleted after the record: HealthCheckInUse)",
            ),
        ],
    );
}

/// Mocked Route 53 for the domain's tests.
#[cfg(test)]
pub mod fake {
    use aws_sdk_route53::Client;
    use aws_sdk_route53::operation::change_tags_for_resource::ChangeTagsForResourceOutput;
    use aws_sdk_route53::operation::get_change::GetChangeOutput;
    use aws_sdk_route53::operation::list_tags_for_resource::ListTagsForResourceOutput;
    use aws_sdk_route53::operation::list_tags_for_resources::ListTagsForResourcesOutput;
    use aws_sdk_route53::types::{ChangeInfo, ChangeStatus, ResourceTagSet, Tag, TagResourceType};
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    use crate::resources::context::Context;
    use crate::resources::testing;
    use crate::tags::{self, TagMap};

    pub fn context(rules: &[&Rule]) -> Context {
        let mut clients = testing::clients();
        clients.route53 = mock_client!(aws_sdk_route53, RuleMode::MatchAny, rules);
        // `--dns on` (off by default for now): else `up` removes the steps.
        let mut cx = testing::context(clients);
        cx.spec.dns = true;
        cx
    }

    /// The env's tags for `step`, with its region.
    pub fn ours(step: &str, region: &str) -> TagMap {
        let mut t = testing::our_tags(step);
        t.insert(tags::REGION.into(), region.into());
        t
    }

    fn sdk_tags(t: &TagMap) -> Vec<Tag> {
        t.iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect()
    }

    pub fn change_info(id: &str) -> ChangeInfo {
        ChangeInfo::builder()
            .id(format!("/change/{id}"))
            .status(ChangeStatus::Pending)
            .submitted_at(aws_smithy_types::DateTime::from_secs(0))
            .build()
            .unwrap()
    }

    pub fn in_sync() -> Rule {
        mock!(Client::get_change).then_output(|| {
            GetChangeOutput::builder()
                .change_info(
                    ChangeInfo::builder()
                        .id("/change/C1")
                        .status(ChangeStatus::Insync)
                        .submitted_at(aws_smithy_types::DateTime::from_secs(0))
                        .build()
                        .unwrap(),
                )
                .build()
        })
    }

    pub fn tagged_zone(t: TagMap) -> Rule {
        mock!(Client::list_tags_for_resource).then_output(move || {
            ListTagsForResourceOutput::builder()
                .resource_tag_set(
                    ResourceTagSet::builder()
                        .resource_type(TagResourceType::Hostedzone)
                        .set_tags(Some(sdk_tags(&t)))
                        .build(),
                )
                .build()
        })
    }

    /// ListTagsForResources answering `(id, tags)` for the ids asked.
    pub fn tagged_many(kind: TagResourceType, sets: Vec<(String, TagMap)>) -> Rule {
        mock!(Client::list_tags_for_resources).then_output(move || {
            let mut out = ListTagsForResourcesOutput::builder().set_resource_tag_sets(Some(vec![]));
            for (id, t) in &sets {
                out = out.resource_tag_sets(
                    ResourceTagSet::builder()
                        .resource_type(kind.clone())
                        .resource_id(id)
                        .set_tags(Some(sdk_tags(t)))
                        .build(),
                );
            }
            out.build().unwrap()
        })
    }

    /// ChangeTagsForResource that refuses more than 10 tags, as AWS does.
    pub fn tagging() -> Rule {
        mock!(Client::change_tags_for_resource)
            .match_requests(|r| r.add_tags().len() <= 10)
            .then_output(|| ChangeTagsForResourceOutput::builder().build())
    }
}
