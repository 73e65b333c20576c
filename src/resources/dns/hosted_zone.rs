//! The env's private hosted zone `<env>.payops.internal`, associated with
//! its VPC at creation (a private zone needs one; the VPC has DNS support
//! and hostnames on, which private zones require).
//!
//! Found by name (ListHostedZonesByName: it needs no VPC id, so `down`
//! without a state file finds it too), owned by its tags, which Route 53
//! only takes after the create (ChangeTagsForResource). A zone that a crash
//! left untagged is the env's when its CallerReference carries the env's
//! prefix (`payops-<env>-<region>-zone-`), and is tagged then.
//!
//! CreateHostedZone has CallerReference, not a client token: the same
//! reference again answers HostedZoneAlreadyExists (the SDK's retry of a
//! lost answer), a second private zone of the name in the VPC
//! ConflictingDomainExists; the step then looks again.
//!
//! `down` deletes the zone only when it holds nothing but its apex SOA and
//! NS (AWS answers HostedZoneNotEmpty otherwise): the records step removes
//! payops' records first, and a record payops did not create means someone
//! else uses the zone, so payops leaves it (and says so).

use std::fmt;

use async_trait::async_trait;
use aws_sdk_route53::types::{
    HostedZoneConfig, ResourceRecordSet, RrType, TagResourceType, Vpc, VpcRegion,
};

use crate::aws::{AwsError, OpResult, absent_on, required};
use crate::engine::{Record, StepCx};
use crate::tags::{TagMap, describe_tag_fix};

use crate::resources::context::Context;
use crate::resources::resource::Resource;
use crate::resources::sdk::route53 as sdk;

use super::{create_tags, fqdn, missing_tags, reference_prefix, zone_name};

pub const STEP: &str = "hosted-zone:private";

pub struct HostedZone;

#[derive(Debug)]
pub struct FoundZone {
    /// Bare (`Z123`).
    pub id: String,
    pub name: String,
    tags: TagMap,
}

pub enum Fix {
    Tags(TagMap),
    /// The zone no longer answers in the env's VPC.
    Associate(String),
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tags(t) => f.write_str(&describe_tag_fix(t)),
            Self::Associate(vpc) => write!(f, "associate with VPC {vpc}"),
        }
    }
}

fn vpc_id<'a>(step: &'a StepCx<'_>) -> Result<&'a str, AwsError> {
    Ok(step.output("vpc", "VpcId")?)
}

/// Whether a zone's record sets are only what Route 53 made with it: the
/// apex SOA and NS. Anything else is someone's record.
pub fn foreign_records(zone: &str, sets: &[ResourceRecordSet]) -> Vec<String> {
    let apex = fqdn(zone);
    sets.iter()
        .filter(|s| !(fqdn(s.name()) == apex && matches!(s.r#type(), RrType::Soa | RrType::Ns)))
        .map(|s| format!("{} {}", s.name(), s.r#type().as_str()))
        .collect()
}

/// The env's zone(s) by name, ownership checked (see the module doc);
/// the records step finds its zone this way too, with or without state.
pub async fn env_zones(cx: &Context) -> Result<Vec<FoundZone>, AwsError> {
    let name = fqdn(&zone_name(cx));
    let out = cx
        .clients
        .route53
        .list_hosted_zones_by_name()
        .dns_name(&name)
        .max_items(100)
        .send()
        .await
        .op("route53:ListHostedZonesByName")?;
    let mut found = Vec::new();
    for zone in out.hosted_zones() {
        // Listed from the name on, in order: others follow ours.
        if fqdn(zone.name()) != name || !zone.config().is_some_and(|c| c.private_zone()) {
            continue;
        }
        let id = sdk::bare_id(zone.id()).to_owned();
        let tags = sdk::tags_of(&cx.clients.route53, TagResourceType::Hostedzone, &id).await?;
        let crashed_before_tagging = tags.is_empty()
            && zone
                .caller_reference()
                .starts_with(&format!("{}-", reference_prefix(cx, "zone")));
        if !crashed_before_tagging {
            match cx.check_ours_global(format!("private hosted zone {name} ({id})"), &tags) {
                Ok(()) => {}
                // The twin env of another region, or a team's own zone of
                // that name: not ours, never touched, and not in the way
                // (each is associated with its own VPC; a zone of the
                // name in ours makes the create answer
                // ConflictingDomainExists, which is reported).
                Err(AwsError::NotOurs { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        found.push(FoundZone {
            id,
            name: name.clone(),
            tags,
        });
    }
    Ok(found)
}

#[async_trait]
impl Resource for HostedZone {
    type Found = FoundZone;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "route53:private-hosted-zone"
    }

    fn wanted(&self, cx: &Context) -> bool {
        cx.spec.dns
    }

    async fn find(&self, cx: &Context, _step: &StepCx<'_>) -> Result<Vec<FoundZone>, AwsError> {
        env_zones(cx).await
    }

    fn describe(&self, found: &FoundZone) -> String {
        format!("{} ({})", found.name, found.id)
    }

    fn already_exists(&self) -> &'static [&'static str] {
        &["HostedZoneAlreadyExists", "ConflictingDomainExists"]
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<FoundZone, AwsError> {
        const OP: &str = "route53:CreateHostedZone";
        let name = zone_name(cx);
        let out = cx
            .clients
            .route53
            .create_hosted_zone()
            .name(&name)
            .caller_reference(sdk::caller_reference(&reference_prefix(cx, "zone")))
            .vpc(
                Vpc::builder()
                    .vpc_id(vpc_id(step)?)
                    .vpc_region(VpcRegion::from(cx.region.as_str()))
                    .build(),
            )
            .hosted_zone_config(
                HostedZoneConfig::builder()
                    .private_zone(true)
                    .comment(format!("payops env {} ({})", cx.env(), cx.region))
                    .build(),
            )
            .send()
            .await
            .op(OP)?;
        let zone = required(out.hosted_zone(), OP, "HostedZone")?;
        let id = sdk::bare_id(zone.id()).to_owned();
        step.remember("hosted_zone", &id);
        let tags = create_tags(cx, step.id().as_str());
        sdk::add_tags(&cx.clients.route53, TagResourceType::Hostedzone, &id, &tags).await?;
        if let Some(change) = out.change_info() {
            sdk::wait_in_sync(&cx.clients.route53, change.id()).await?;
        }
        Ok(FoundZone {
            id,
            name: fqdn(&name),
            tags,
        })
    }

    async fn diff(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        zone: &FoundZone,
    ) -> Result<Vec<Fix>, AwsError> {
        let mut fixes = Vec::new();
        let missing = missing_tags(cx, step.id().as_str(), &zone.tags);
        if !missing.is_empty() {
            fixes.push(Fix::Tags(missing));
        }
        if let Ok(vpc) = vpc_id(step) {
            let out = cx
                .clients
                .route53
                .get_hosted_zone()
                .id(&zone.id)
                .send()
                .await
                .op("route53:GetHostedZone")?;
            if !out.vpcs().iter().any(|v| v.vpc_id() == Some(vpc)) {
                fixes.push(Fix::Associate(vpc.to_owned()));
            }
        }
        Ok(fixes)
    }

    async fn fix(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        zone: &mut FoundZone,
        fix: Fix,
    ) -> Result<(), AwsError> {
        match fix {
            Fix::Tags(missing) => {
                sdk::add_tags(
                    &cx.clients.route53,
                    TagResourceType::Hostedzone,
                    &zone.id,
                    &missing,
                )
                .await?;
                zone.tags.extend(missing);
            }
            Fix::Associate(vpc) => {
                let out = cx
                    .clients
                    .route53
                    .associate_vpc_with_hosted_zone()
                    .hosted_zone_id(&zone.id)
                    .vpc(
                        Vpc::builder()
                            .vpc_id(vpc)
                            .vpc_region(VpcRegion::from(cx.region.as_str()))
                            .build(),
                    )
                    .send()
                    .await
                    .op("route53:AssociateVPCWithHostedZone")?;
                if let Some(change) = out.change_info() {
                    sdk::wait_in_sync(&cx.clients.route53, change.id()).await?;
                }
            }
        }
        Ok(())
    }

    fn record(&self, _cx: &Context, zone: &FoundZone) -> Record {
        Record::default()
            .resource("hosted_zone", &zone.id)
            .output("PrivateHostedZoneId", &zone.id)
            .output("PrivateHostedZoneName", zone.name.trim_end_matches('.'))
    }

    async fn delete(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        zone: FoundZone,
    ) -> Result<Vec<String>, AwsError> {
        let listed = cx
            .clients
            .route53
            .list_resource_record_sets()
            .hosted_zone_id(&zone.id)
            .send()
            .await
            .op("route53:ListResourceRecordSets");
        let Some(listed) = absent_on(listed, &["NoSuchHostedZone"])? else {
            return Ok(Vec::new());
        };
        let foreign = foreign_records(&zone.name, listed.resource_record_sets());
        if !foreign.is_empty() {
            return Err(AwsError::Conflict(format!(
                "private hosted zone {} ({}) holds records payops did not create ({}): someone \
                 uses it, so payops leaves it; remove those records and run down again",
                zone.name,
                zone.id,
                foreign.join(", ")
            )));
        }
        let deleted = cx
            .clients
            .route53
            .delete_hosted_zone()
            .id(&zone.id)
            .send()
            .await
            .op("route53:DeleteHostedZone");
        absent_on(deleted, &["NoSuchHostedZone"])?;
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_route53::Client;
    use aws_sdk_route53::operation::create_hosted_zone::CreateHostedZoneOutput;
    use aws_sdk_route53::operation::delete_hosted_zone::DeleteHostedZoneOutput;
    use aws_sdk_route53::operation::get_hosted_zone::GetHostedZoneOutput;
    use aws_sdk_route53::operation::list_hosted_zones_by_name::ListHostedZonesByNameOutput;
    use aws_sdk_route53::operation::list_resource_record_sets::ListResourceRecordSetsOutput;
    use aws_sdk_route53::types::{HostedZone as Sdk, ResourceRecord};
    use aws_smithy_mocks::{Rule, mock};

    use super::*;
    use crate::engine::Change;
    use crate::resources::dns::fake;
    use crate::resources::testing;

    fn zone(reference: &str) -> Sdk {
        Sdk::builder()
            .id("/hostedzone/Z1")
            .name("pr1.payops.internal.")
            .caller_reference(reference)
            .config(HostedZoneConfig::builder().private_zone(true).build())
            .build()
            .unwrap()
    }

    fn listed(zones: Vec<Sdk>) -> Rule {
        mock!(Client::list_hosted_zones_by_name).then_output(move || {
            ListHostedZonesByNameOutput::builder()
                .set_hosted_zones(Some(zones.clone()))
                .is_truncated(false)
                .max_items(100)
                .build()
                .unwrap()
        })
    }

    fn associated(vpc: &'static str) -> Rule {
        mock!(Client::get_hosted_zone).then_output(move || {
            GetHostedZoneOutput::builder()
                .hosted_zone(zone("r"))
                .vpcs(
                    Vpc::builder()
                        .vpc_id(vpc)
                        .vpc_region(VpcRegion::UsEast1)
                        .build(),
                )
                .build()
        })
    }

    fn inputs() -> Vec<(&'static str, Record)> {
        testing::outputs(&[("vpc", "VpcId", "vpc-1")])
    }

    fn set(name: &str, kind: RrType) -> ResourceRecordSet {
        ResourceRecordSet::builder()
            .name(name)
            .r#type(kind)
            .ttl(300)
            .resource_records(ResourceRecord::builder().value("x").build().unwrap())
            .build()
            .unwrap()
    }

    fn records(sets: Vec<ResourceRecordSet>) -> Rule {
        mock!(Client::list_resource_record_sets).then_output(move || {
            ListResourceRecordSetsOutput::builder()
                .set_resource_record_sets(Some(sets.clone()))
                .is_truncated(false)
                .max_items(100)
                .build()
                .unwrap()
        })
    }

    #[tokio::test]
    async fn creates_a_private_zone_in_the_envs_vpc_tags_it_and_waits_for_it() {
        let create = mock!(Client::create_hosted_zone)
            .match_requests(|r| {
                r.name() == Some("pr1.payops.internal")
                    && r.vpc().and_then(|v| v.vpc_id()) == Some("vpc-1")
                    && r.vpc().and_then(|v| v.vpc_region()) == Some(&VpcRegion::UsEast1)
                    && r.hosted_zone_config().is_some_and(|c| c.private_zone())
                    && r.caller_reference()
                        .is_some_and(|c| c.starts_with("payops-pr1-us-east-1-zone-"))
            })
            .then_output(|| {
                CreateHostedZoneOutput::builder()
                    .hosted_zone(zone("payops-pr1-us-east-1-zone-1"))
                    .change_info(fake::change_info("C1"))
                    .location("x")
                    .build()
                    .unwrap()
            });
        let tag = fake::tagging();
        let sync = fake::in_sync();
        let cx = fake::context(&[&listed(vec![]), &create, &tag, &sync, &associated("vpc-1")]);
        let applied = testing::ensure(&cx, STEP, HostedZone, &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(applied.record.outputs["PrivateHostedZoneId"], "Z1");
        assert_eq!(
            applied.record.outputs["PrivateHostedZoneName"],
            "pr1.payops.internal"
        );
        assert_eq!((tag.num_calls(), sync.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn a_converged_zone_takes_no_mutating_call_and_a_foreign_one_is_not_ours() {
        let tag = fake::tagging();
        let cx = fake::context(&[
            &listed(vec![zone("r")]),
            &fake::tagged_zone(fake::ours(STEP, "us-east-1")),
            &associated("vpc-1"),
            &tag,
        ]);
        let applied = testing::ensure(&cx, STEP, HostedZone, &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Unchanged);
        assert_eq!(tag.num_calls(), 0);
        // The same env name's zone of another region (Route 53 is global).
        let cx = fake::context(&[
            &listed(vec![zone("r")]),
            &fake::tagged_zone(fake::ours(STEP, "eu-west-1")),
        ]);
        let events = testing::Events::default();
        let id = crate::engine::StepId::from(STEP);
        let step = testing::step_cx(&id, Default::default(), &events);
        assert!(HostedZone.find(&cx, &step).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_zone_with_records_payops_did_not_create_is_never_deleted() {
        let delete = mock!(Client::delete_hosted_zone).then_output(|| {
            DeleteHostedZoneOutput::builder()
                .change_info(fake::change_info("C2"))
                .build()
        });
        let cx = fake::context(&[
            &listed(vec![zone("r")]),
            &fake::tagged_zone(fake::ours(STEP, "us-east-1")),
            &records(vec![
                set("pr1.payops.internal.", RrType::Soa),
                set("pr1.payops.internal.", RrType::Ns),
                set("db.pr1.payops.internal.", RrType::Cname),
            ]),
            &delete,
        ]);
        let err = testing::destroy(&cx, STEP, HostedZone).await.unwrap_err();
        assert!(err.to_string().contains("db.pr1.payops.internal."), "{err}");
        assert_eq!(delete.num_calls(), 0);

        let cx = fake::context(&[
            &listed(vec![zone("r")]),
            &fake::tagged_zone(fake::ours(STEP, "us-east-1")),
            &records(vec![
                set("pr1.payops.internal.", RrType::Soa),
                set("pr1.payops.internal.", RrType::Ns),
            ]),
            &delete,
        ]);
        testing::destroy(&cx, STEP, HostedZone).await.unwrap();
        assert_eq!(delete.num_calls(), 1);
    }
}
