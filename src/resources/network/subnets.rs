//! The three subnets of one tier (public, private or database), one per AZ.
//!
//! No subnet maps public IPs on launch, not even public ones: nothing of the
//! env should get a public address by accident (NAT gateways use EIPs).

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use aws_sdk_ec2::types::{AttributeBooleanValue, ResourceType, Subnet};
use futures_util::future::try_join_all;

use crate::aws::{AwsError, OpResult, required};
use crate::engine::{Record, StepCx};
use crate::spec::{AZ_COUNT, AZ_LABELS, Tier};
use crate::tags::TagMap;

use crate::resources::context::Context;
use crate::resources::resource::Resource;
use crate::resources::sdk::ec2;

pub struct Subnets {
    tier: Tier,
}

impl Subnets {
    pub fn new(tier: Tier) -> Self {
        Self { tier }
    }

    fn name(&self, cx: &Context, slot: usize) -> String {
        cx.names
            .resource(&format!("{}-{}", self.tier.as_str(), AZ_LABELS[slot]))
    }

    /// `PublicSubnetIds` etc.
    fn output_prefix(&self) -> &'static str {
        match self.tier {
            Tier::Public => "Public",
            Tier::Private => "Private",
            Tier::Database => "Database",
        }
    }
}

pub struct FoundSubnet {
    id: String,
    az: String,
    cidr: String,
    public_ip_on_launch: bool,
    tags: TagMap,
}

/// The tier's subnets, by AZ slot; `stray` ones are ours but in no slot.
#[derive(Default)]
pub struct SubnetSet {
    by_slot: BTreeMap<usize, FoundSubnet>,
    stray: Vec<FoundSubnet>,
}

pub enum Fix {
    Create(usize),
    Tags(usize, TagMap),
    NoPublicIp(usize),
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Create(slot) => write!(f, "create the subnet of AZ slot {}", AZ_LABELS[*slot]),
            Self::Tags(slot, t) => write!(
                f,
                "subnet {}: {}",
                AZ_LABELS[*slot],
                crate::tags::describe_tag_fix(t)
            ),
            Self::NoPublicIp(slot) => write!(
                f,
                "subnet {}: stop mapping public IPs on launch",
                AZ_LABELS[*slot]
            ),
        }
    }
}

fn found(s: &Subnet) -> Option<FoundSubnet> {
    Some(FoundSubnet {
        id: s.subnet_id()?.to_owned(),
        az: s.availability_zone()?.to_owned(),
        cidr: s.cidr_block().unwrap_or_default().to_owned(),
        public_ip_on_launch: s.map_public_ip_on_launch().unwrap_or(false),
        tags: ec2::tag_map(s.tags()),
    })
}

impl Subnets {
    async fn create_one(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        slot: usize,
    ) -> Result<FoundSubnet, AwsError> {
        let vpc = step.output("vpc", "VpcId")?;
        let az = &cx.availability_zones().await?[slot];
        let out = cx
            .clients
            .ec2
            .create_subnet()
            .vpc_id(vpc)
            .availability_zone(az)
            .cidr_block(cx.spec.vpc_cidr.subnet(self.tier, slot).to_string())
            .tag_specifications(ec2::tag_spec(
                cx,
                ResourceType::Subnet,
                step.id().as_str(),
                &self.name(cx, slot),
            ))
            .send()
            .await
            .op("ec2:CreateSubnet")?;
        let subnet = required(out.subnet().and_then(found), "ec2:CreateSubnet", "Subnet")?;
        step.remember(&format!("subnet:{}", AZ_LABELS[slot]), &subnet.id);
        Ok(subnet)
    }
}

#[async_trait]
impl Resource for Subnets {
    type Found = SubnetSet;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "ec2:subnet"
    }

    /// A retried CreateSubnet meets the subnet its lost first attempt made
    /// (same VPC and CIDR): `InvalidSubnet.Conflict`.
    fn already_exists(&self) -> &'static [&'static str] {
        &["InvalidSubnet.Conflict"]
    }

    async fn find(&self, cx: &Context, step: &StepCx<'_>) -> Result<Vec<SubnetSet>, AwsError> {
        // All the env's subnets in one read the three tiers share.
        let out = cx
            .shared_read("ec2:DescribeSubnets", || async {
                cx.clients
                    .ec2
                    .describe_subnets()
                    .set_filters(Some(ec2::env_owned(cx)))
                    .send()
                    .await
                    .op("ec2:DescribeSubnets")
            })
            .await?;
        let subnets: Vec<FoundSubnet> = out
            .subnets()
            .iter()
            .filter_map(found)
            .filter(|s| ec2::is_owned_by(cx, step.id().as_str(), &s.tags))
            .collect();
        if subnets.is_empty() {
            return Ok(Vec::new());
        }
        let azs = cx.availability_zones().await?;
        let mut set = SubnetSet::default();
        for s in subnets {
            match azs.iter().position(|az| *az == s.az) {
                Some(slot) if !set.by_slot.contains_key(&slot) => {
                    set.by_slot.insert(slot, s);
                }
                _ => set.stray.push(s),
            }
        }
        Ok(vec![set])
    }

    fn describe(&self, set: &SubnetSet) -> String {
        set.by_slot
            .values()
            .chain(&set.stray)
            .map(|s| s.id.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<SubnetSet, AwsError> {
        let created =
            try_join_all((0..AZ_COUNT).map(|slot| self.create_one(cx, step, slot))).await?;
        Ok(SubnetSet {
            by_slot: created.into_iter().enumerate().collect(),
            stray: Vec::new(),
        })
    }

    async fn diff(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        set: &SubnetSet,
    ) -> Result<Vec<Fix>, AwsError> {
        if !set.stray.is_empty() {
            return Err(AwsError::Conflict(format!(
                "{} {} subnet(s) of this env are outside its AZs ({}); remove them or run `payops down`",
                set.stray.len(),
                self.tier.as_str(),
                set.stray
                    .iter()
                    .map(|s| s.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let mut fixes = Vec::new();
        for slot in 0..AZ_COUNT {
            let Some(subnet) = set.by_slot.get(&slot) else {
                fixes.push(Fix::Create(slot));
                continue;
            };
            let want = cx.spec.vpc_cidr.subnet(self.tier, slot).to_string();
            if subnet.cidr != want {
                return Err(AwsError::Conflict(format!(
                    "subnet {} has CIDR {} but the env wants {want}; subnets cannot change CIDR: \
                     run `payops down` first or keep the VPC CIDR it was created with",
                    subnet.id, subnet.cidr
                )));
            }
            let missing =
                ec2::missing_tags(cx, step.id().as_str(), &self.name(cx, slot), &subnet.tags);
            if !missing.is_empty() {
                fixes.push(Fix::Tags(slot, missing));
            }
            if subnet.public_ip_on_launch {
                fixes.push(Fix::NoPublicIp(slot));
            }
        }
        Ok(fixes)
    }

    async fn fix(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        set: &mut SubnetSet,
        fix: Fix,
    ) -> Result<(), AwsError> {
        match fix {
            Fix::Create(slot) => {
                let subnet = self.create_one(cx, step, slot).await?;
                set.by_slot.insert(slot, subnet);
            }
            Fix::Tags(slot, tags) => ec2::add_tags(cx, &set.by_slot[&slot].id, &tags).await?,
            Fix::NoPublicIp(slot) => {
                cx.clients
                    .ec2
                    .modify_subnet_attribute()
                    .subnet_id(&set.by_slot[&slot].id)
                    .map_public_ip_on_launch(AttributeBooleanValue::builder().value(false).build())
                    .send()
                    .await
                    .op("ec2:ModifySubnetAttribute")?;
            }
        }
        Ok(())
    }

    fn record(&self, _cx: &Context, set: &SubnetSet) -> Record {
        let mut record = Record::default();
        for (slot, subnet) in &set.by_slot {
            record = record.resource(format!("subnet:{}", AZ_LABELS[*slot]), &subnet.id);
        }
        let ids: Vec<&str> = set.by_slot.values().map(|s| s.id.as_str()).collect();
        let azs: Vec<&str> = set.by_slot.values().map(|s| s.az.as_str()).collect();
        let prefix = self.output_prefix();
        record = record.output(format!("{prefix}SubnetIds"), ids.join(","));
        if self.tier == Tier::Public {
            record = record.output("AvailabilityZones", azs.join(","));
        }
        record
    }

    async fn delete(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        set: SubnetSet,
    ) -> Result<Vec<String>, AwsError> {
        let subnets: Vec<FoundSubnet> = set.by_slot.into_values().chain(set.stray).collect();
        try_join_all(subnets.iter().map(|s| {
            // ENIs left by Lambda functions keep a subnet busy for up to 45
            // minutes after the functions are gone.
            ec2::delete_patiently(
                cx,
                step,
                format!("deleting subnet {}", s.id),
                &["DependencyViolation"],
                &["InvalidSubnetID.NotFound"],
                move || async move {
                    cx.clients
                        .ec2
                        .delete_subnet()
                        .subnet_id(&s.id)
                        .send()
                        .await
                        .op("ec2:DeleteSubnet")
                },
            )
        }))
        .await?;
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_ec2::Client;
    use aws_sdk_ec2::operation::{
        create_subnet::CreateSubnetOutput,
        describe_availability_zones::DescribeAvailabilityZonesOutput,
        describe_subnets::DescribeSubnetsOutput,
    };
    use aws_sdk_ec2::types::AvailabilityZone;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    use super::*;
    use crate::engine::{Change, Observation};
    use crate::resources::testing;

    const AZS: [&str; 4] = ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d"];

    fn azs_rule() -> aws_smithy_mocks::Rule {
        mock!(Client::describe_availability_zones).then_output(|| {
            let mut out = DescribeAvailabilityZonesOutput::builder();
            // Unsorted on purpose: payops picks the first three by name.
            for az in [AZS[3], AZS[1], AZS[0], AZS[2]] {
                out = out.availability_zones(AvailabilityZone::builder().zone_name(az).build());
            }
            out.build()
        })
    }

    fn subnet(slot: usize, public_ip: bool) -> Subnet {
        let cidr = crate::spec::EnvSpec::default()
            .vpc_cidr
            .subnet(Tier::Private, slot)
            .to_string();
        let mut tags = testing::ec2_tags("subnets:private");
        for t in &mut tags {
            if t.key() == Some("Name") {
                *t = aws_sdk_ec2::types::Tag::builder()
                    .key("Name")
                    .value(format!("payops-pr1-private-{}", AZ_LABELS[slot]))
                    .build();
            }
        }
        Subnet::builder()
            .subnet_id(format!("subnet-{slot}"))
            .availability_zone(AZS[slot])
            .cidr_block(cidr)
            .map_public_ip_on_launch(public_ip)
            .set_tags(Some(tags))
            .build()
    }

    /// CreateSubnet's answer: the subnet of the requested AZ's slot.
    fn created(r: &aws_sdk_ec2::operation::create_subnet::CreateSubnetInput) -> CreateSubnetOutput {
        let slot = AZS
            .iter()
            .position(|az| Some(*az) == r.availability_zone())
            .unwrap();
        CreateSubnetOutput::builder()
            .subnet(subnet(slot, false))
            .build()
    }

    fn vpc_input() -> (&'static str, Record) {
        ("vpc", Record::default().output("VpcId", "vpc-1"))
    }

    #[tokio::test]
    async fn creates_one_subnet_per_az_with_the_planned_cidrs() {
        let none = mock!(Client::describe_subnets)
            .then_output(|| DescribeSubnetsOutput::builder().build());
        let create = mock!(Client::create_subnet)
            .match_requests(|r| {
                let slot = AZS
                    .iter()
                    .position(|az| Some(*az) == r.availability_zone())
                    .unwrap();
                r.vpc_id() == Some("vpc-1")
                    && r.cidr_block()
                        == Some(
                            &crate::spec::EnvSpec::default()
                                .vpc_cidr
                                .subnet(Tier::Private, slot)
                                .to_string(),
                        )
            })
            .then_compute_output(created);
        let mut clients = testing::clients();
        clients.ec2 = mock_client!(
            aws_sdk_ec2,
            RuleMode::MatchAny,
            [&none, &create, &azs_rule()]
        );
        let cx = testing::context(clients);
        let applied = testing::ensure(
            &cx,
            "subnets:private",
            Subnets::new(Tier::Private),
            &[vpc_input()],
        )
        .await
        .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(create.num_calls(), 3);
        assert_eq!(
            applied.record.outputs["PrivateSubnetIds"],
            "subnet-0,subnet-1,subnet-2"
        );
        assert_eq!(applied.record.resources["subnet:b"], "subnet-1");
    }

    #[tokio::test]
    async fn a_subnet_made_by_a_retried_create_is_adopted_not_a_conflict() {
        // Nothing at first; then the three subnets, one of them made by the
        // attempt whose answer was lost.
        let describe = mock!(Client::describe_subnets)
            .sequence()
            .output(|| DescribeSubnetsOutput::builder().build())
            .output(|| {
                DescribeSubnetsOutput::builder()
                    .subnets(subnet(0, false))
                    .subnets(subnet(1, false))
                    .subnets(subnet(2, false))
                    .build()
            })
            .repeatedly()
            .build();
        let create = mock!(Client::create_subnet).then_compute_output(created);
        let conflict = mock!(Client::create_subnet)
            .match_requests(|r| r.availability_zone() == Some(AZS[1]))
            .then_error(|| {
                aws_sdk_ec2::operation::create_subnet::CreateSubnetError::generic(
                    aws_smithy_types::error::ErrorMetadata::builder()
                        .code("InvalidSubnet.Conflict")
                        .message("The CIDR '10.0.16.0/20' conflicts with another subnet")
                        .build(),
                )
            });
        let mut clients = testing::clients();
        clients.ec2 = mock_client!(
            aws_sdk_ec2,
            RuleMode::MatchAny,
            [&describe, &conflict, &create, &azs_rule()]
        );
        let cx = testing::context(clients);
        let applied = testing::ensure(
            &cx,
            "subnets:private",
            Subnets::new(Tier::Private),
            &[vpc_input()],
        )
        .await
        .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(conflict.num_calls(), 1);
        assert_eq!(
            applied.record.outputs["PrivateSubnetIds"],
            "subnet-0,subnet-1,subnet-2"
        );
    }

    #[tokio::test]
    async fn a_missing_subnet_and_a_public_ip_setting_are_drift() {
        let partial = mock!(Client::describe_subnets).then_output(|| {
            DescribeSubnetsOutput::builder()
                .subnets(subnet(0, false))
                .subnets(subnet(1, true))
                .build()
        });
        let mut clients = testing::clients();
        clients.ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&partial, &azs_rule()]);
        let cx = testing::context(clients);
        let observed = testing::observe(
            &cx,
            "subnets:private",
            Subnets::new(Tier::Private),
            &[vpc_input()],
        )
        .await
        .unwrap();
        let Observation::Present { drift, .. } = observed else {
            panic!("expected drift, got {observed:?}");
        };
        assert_eq!(
            drift,
            [
                "subnet b: stop mapping public IPs on launch",
                "create the subnet of AZ slot c"
            ]
        );
    }

    #[tokio::test]
    async fn owned_subnets_in_sync_need_no_mutating_call() {
        let all = mock!(Client::describe_subnets).then_output(|| {
            DescribeSubnetsOutput::builder()
                .subnets(subnet(0, false))
                .subnets(subnet(1, false))
                .subnets(subnet(2, false))
                .build()
        });
        let mut clients = testing::clients();
        clients.ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&all, &azs_rule()]);
        let cx = testing::context(clients);
        let applied = testing::ensure(
            &cx,
            "subnets:private",
            Subnets::new(Tier::Private),
            &[vpc_input()],
        )
        .await
        .unwrap();
        assert_eq!(applied.change, Change::Unchanged);
    }
}
