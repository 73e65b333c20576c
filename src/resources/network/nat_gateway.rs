//! One AZ slot's NAT gateway and the Elastic IP it uses.
//!
//! Real AWS order: the EIP exists before the NAT, the NAT is `available`
//! before any route points at it, and on teardown the NAT is `deleted` before
//! its EIP is released (and both before the internet gateway is detached).
//! With `--nat single` only slot a has one; the other slots' steps remove
//! theirs once the route tables stopped using them.

use std::fmt;

use async_trait::async_trait;
use aws_sdk_ec2::client::Waiters;
use aws_sdk_ec2::types::{Address, DomainType, NatGateway as Nat, NatGatewayState, ResourceType};

use crate::aws::{AwsError, OpResult, absent_on, client_token, required, waited};
use crate::engine::{Record, StepCx};
use crate::spec::AZ_LABELS;
use crate::tags::TagMap;

use crate::resources::context::Context;
use crate::resources::resource::Resource;
use crate::resources::sdk::ec2;

pub struct NatGateway {
    slot: usize,
}

impl NatGateway {
    pub fn new(slot: usize) -> Self {
        Self { slot }
    }

    fn label(&self) -> &'static str {
        AZ_LABELS[self.slot]
    }

    fn name(&self, cx: &Context) -> String {
        cx.names.resource(&format!("nat-{}", self.label()))
    }

    fn suffix(&self) -> String {
        self.label().to_ascii_uppercase()
    }
}

pub struct Eip {
    allocation_id: String,
    public_ip: String,
    tags: TagMap,
    /// Held by a NAT gateway (or anything else).
    associated: bool,
}

pub struct FoundNat {
    id: String,
    state: NatGatewayState,
    subnet: String,
    tags: TagMap,
}

/// What this slot owns: normally one EIP and one NAT gateway.
#[derive(Default)]
pub struct NatSet {
    eips: Vec<Eip>,
    nats: Vec<FoundNat>,
}

pub enum Fix {
    AllocateEip,
    ReleaseExtraEips(Vec<String>),
    CreateNat,
    WaitAvailable(String),
    EipTags(TagMap),
    NatTags(TagMap),
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AllocateEip => f.write_str("allocate an Elastic IP"),
            Self::ReleaseExtraEips(ids) => write!(
                f,
                "release {}, allocated by a retried call and held by nothing",
                ids.join(", ")
            ),
            Self::CreateNat => f.write_str("create the NAT gateway"),
            Self::WaitAvailable(id) => write!(f, "wait for {id} to become available"),
            Self::EipTags(t) => write!(f, "Elastic IP: {}", crate::tags::describe_tag_fix(t)),
            Self::NatTags(t) => write!(f, "NAT gateway: {}", crate::tags::describe_tag_fix(t)),
        }
    }
}

fn eip(a: &Address) -> Option<Eip> {
    Some(Eip {
        allocation_id: a.allocation_id()?.to_owned(),
        public_ip: a.public_ip().unwrap_or_default().to_owned(),
        tags: ec2::tag_map(a.tags()),
        associated: a.association_id().is_some(),
    })
}

/// AllocateAddress has no idempotency token: a retried allocation whose
/// first answer was lost leaves a second address tagged for the slot. Of
/// several, the one a NAT gateway holds is kept (else the first); the
/// others, held by nothing, are extras to release. None: more than one is
/// held, which payops will not guess about.
fn extra_eips(eips: &[Eip]) -> Option<Vec<String>> {
    let held = eips.iter().filter(|e| e.associated).count();
    if held > 1 {
        return None;
    }
    let keep = eips.iter().position(|e| e.associated).unwrap_or(0);
    Some(
        eips.iter()
            .enumerate()
            .filter(|(i, _)| *i != keep)
            .map(|(_, e)| e.allocation_id.clone())
            .collect(),
    )
}

fn nat(n: &Nat) -> Option<FoundNat> {
    Some(FoundNat {
        id: n.nat_gateway_id()?.to_owned(),
        state: n.state()?.clone(),
        subnet: n.subnet_id().unwrap_or_default().to_owned(),
        tags: ec2::tag_map(n.tags()),
    })
}

impl NatGateway {
    async fn allocate_eip(&self, cx: &Context, step: &StepCx<'_>) -> Result<Eip, AwsError> {
        let out = cx
            .clients
            .ec2
            .allocate_address()
            .domain(DomainType::Vpc)
            .tag_specifications(ec2::tag_spec(
                cx,
                ResourceType::ElasticIp,
                step.id().as_str(),
                &self.name(cx),
            ))
            .send()
            .await
            .op("ec2:AllocateAddress")?;
        let allocation_id = required(out.allocation_id(), "ec2:AllocateAddress", "AllocationId")?;
        step.remember("eip", allocation_id);
        // What a lost first answer allocated is released at once, so the
        // next run finds one address.
        let owned = cx
            .clients
            .ec2
            .describe_addresses()
            .set_filters(Some(ec2::owned_by(cx, step.id().as_str())))
            .send()
            .await
            .op("ec2:DescribeAddresses")?;
        let extras: Vec<String> = owned
            .addresses()
            .iter()
            .filter_map(eip)
            .filter(|e| e.allocation_id != allocation_id && !e.associated)
            .filter(|e| ec2::is_owned_by(cx, step.id().as_str(), &e.tags))
            .map(|e| e.allocation_id)
            .collect();
        self.release(cx, &extras).await?;
        Ok(Eip {
            allocation_id: allocation_id.to_owned(),
            public_ip: out.public_ip().unwrap_or_default().to_owned(),
            tags: ec2::desired_tags(cx, step.id().as_str(), &self.name(cx)),
            associated: false,
        })
    }

    async fn release(&self, cx: &Context, allocations: &[String]) -> Result<(), AwsError> {
        for id in allocations {
            let released = cx
                .clients
                .ec2
                .release_address()
                .allocation_id(id)
                .send()
                .await
                .op("ec2:ReleaseAddress");
            absent_on(released, &["InvalidAllocationID.NotFound"])?;
        }
        Ok(())
    }

    async fn create_nat(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        allocation_id: &str,
    ) -> Result<FoundNat, AwsError> {
        let subnet = step.input_resource("subnets:public", &format!("subnet:{}", self.label()))?;
        // Same subnet + EIP = same request: a create retried after a crash
        // returns the NAT gateway it already made instead of a second one.
        let token = client_token(&[cx.env().as_str(), self.label(), subnet, allocation_id]);
        let out = cx
            .clients
            .ec2
            .create_nat_gateway()
            .subnet_id(subnet)
            .allocation_id(allocation_id)
            .client_token(token)
            .tag_specifications(ec2::tag_spec(
                cx,
                ResourceType::Natgateway,
                step.id().as_str(),
                &self.name(cx),
            ))
            .send()
            .await
            .op("ec2:CreateNatGateway")?;
        let found = required(
            out.nat_gateway().and_then(nat),
            "ec2:CreateNatGateway",
            "NatGateway",
        )?;
        step.remember("nat", &found.id);
        self.wait_available(cx, step, &found.id).await?;
        Ok(FoundNat {
            state: NatGatewayState::Available,
            ..found
        })
    }

    async fn wait_available(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        id: &str,
    ) -> Result<(), AwsError> {
        step.progress(format!(
            "waiting for {id} to become available (1-5 minutes on AWS)"
        ));
        let max = cx.budgets.nat_gateway;
        waited(
            cx.clients
                .ec2
                .wait_until_nat_gateway_available()
                .nat_gateway_ids(id)
                .wait(max)
                .await,
            &format!("NAT gateway {id} to become available"),
            max,
        )?;
        Ok(())
    }
}

#[async_trait]
impl Resource for NatGateway {
    type Found = NatSet;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "ec2:nat-gateway"
    }

    /// The client token makes a retried CreateNatGateway return the first
    /// one on AWS; where a token is not honoured (emulators), the retry
    /// finds the address taken by the NAT gateway the first attempt made.
    fn already_exists(&self) -> &'static [&'static str] {
        &["Resource.AlreadyAssociated"]
    }

    fn wanted(&self, cx: &Context) -> bool {
        cx.spec.nat.wants_nat(self.slot)
    }

    async fn find(&self, cx: &Context, step: &StepCx<'_>) -> Result<Vec<NatSet>, AwsError> {
        // The env's addresses and gateways in reads the AZs' steps share;
        // each keeps its own below.
        let owned = ec2::env_owned(cx);
        let mut live = owned.clone();
        // Deleted and failed NAT gateways stay visible for about an hour.
        live.push(ec2::filter("state", ["pending", "available"]));
        let (addresses, nats) = tokio::try_join!(
            cx.shared_read("ec2:DescribeAddresses", || async {
                cx.clients
                    .ec2
                    .describe_addresses()
                    .set_filters(Some(owned.clone()))
                    .send()
                    .await
                    .op("ec2:DescribeAddresses")
            }),
            cx.shared_read("ec2:DescribeNatGateways (live)", || async {
                cx.clients
                    .ec2
                    .describe_nat_gateways()
                    .set_filter(Some(live.clone()))
                    .send()
                    .await
                    .op("ec2:DescribeNatGateways")
            }),
        )?;
        let set = NatSet {
            eips: addresses
                .addresses()
                .iter()
                .filter_map(eip)
                .filter(|e| ec2::is_owned_by(cx, step.id().as_str(), &e.tags))
                .collect(),
            nats: nats
                .nat_gateways()
                .iter()
                .filter_map(nat)
                // Emulators may ignore the state filter.
                .filter(|n| {
                    matches!(
                        n.state,
                        NatGatewayState::Pending | NatGatewayState::Available
                    )
                })
                .filter(|n| ec2::is_owned_by(cx, step.id().as_str(), &n.tags))
                .collect(),
        };
        Ok(if set.eips.is_empty() && set.nats.is_empty() {
            Vec::new()
        } else {
            vec![set]
        })
    }

    fn describe(&self, set: &NatSet) -> String {
        set.nats
            .iter()
            .map(|n| n.id.as_str())
            .chain(set.eips.iter().map(|e| e.allocation_id.as_str()))
            .collect::<Vec<_>>()
            .join(",")
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<NatSet, AwsError> {
        let eip = self.allocate_eip(cx, step).await?;
        let nat = self.create_nat(cx, step, &eip.allocation_id).await?;
        Ok(NatSet {
            eips: vec![eip],
            nats: vec![nat],
        })
    }

    async fn diff(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        set: &NatSet,
    ) -> Result<Vec<Fix>, AwsError> {
        let mut fixes = Vec::new();
        let mut eips: Vec<&Eip> = set.eips.iter().collect();
        if set.eips.len() > 1 {
            let extras = extra_eips(&set.eips).ok_or_else(|| AwsError::Ambiguous {
                what: "Elastic IPs held by NAT gateways".into(),
                ids: set.eips.iter().map(|e| e.allocation_id.clone()).collect(),
            })?;
            eips.retain(|e| !extras.contains(&e.allocation_id));
            fixes.push(Fix::ReleaseExtraEips(extras));
        }
        if set.nats.len() > 1 {
            return Err(AwsError::Ambiguous {
                what: "NAT gateways".into(),
                ids: set.nats.iter().map(|n| n.id.clone()).collect(),
            });
        }
        let name = self.name(cx);
        match eips.first() {
            None => fixes.push(Fix::AllocateEip),
            Some(e) => {
                let missing = ec2::missing_tags(cx, step.id().as_str(), &name, &e.tags);
                if !missing.is_empty() {
                    fixes.push(Fix::EipTags(missing));
                }
            }
        }
        match set.nats.first() {
            None => fixes.push(Fix::CreateNat),
            Some(n) => {
                if let Ok(subnet) =
                    step.input_resource("subnets:public", &format!("subnet:{}", self.label()))
                    && n.subnet != subnet
                {
                    return Err(AwsError::Conflict(format!(
                        "NAT gateway {} is in {} instead of public subnet {subnet}; run `payops down` first",
                        n.id, n.subnet
                    )));
                }
                if n.state == NatGatewayState::Pending {
                    fixes.push(Fix::WaitAvailable(n.id.clone()));
                }
                let missing = ec2::missing_tags(cx, step.id().as_str(), &name, &n.tags);
                if !missing.is_empty() {
                    fixes.push(Fix::NatTags(missing));
                }
            }
        }
        Ok(fixes)
    }

    async fn fix(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        set: &mut NatSet,
        fix: Fix,
    ) -> Result<(), AwsError> {
        match fix {
            Fix::AllocateEip => {
                let eip = self.allocate_eip(cx, step).await?;
                set.eips = vec![eip];
            }
            Fix::ReleaseExtraEips(ids) => {
                self.release(cx, &ids).await?;
                set.eips.retain(|e| !ids.contains(&e.allocation_id));
            }
            Fix::CreateNat => {
                let allocation =
                    required(set.eips.first(), "ec2:CreateNatGateway", "AllocationId")?
                        .allocation_id
                        .clone();
                let nat = self.create_nat(cx, step, &allocation).await?;
                set.nats = vec![nat];
            }
            Fix::WaitAvailable(id) => {
                self.wait_available(cx, step, &id).await?;
                if let Some(n) = set.nats.first_mut() {
                    n.state = NatGatewayState::Available;
                }
            }
            Fix::EipTags(tags) => ec2::add_tags(cx, &set.eips[0].allocation_id, &tags).await?,
            Fix::NatTags(tags) => ec2::add_tags(cx, &set.nats[0].id, &tags).await?,
        }
        Ok(())
    }

    fn record(&self, _cx: &Context, set: &NatSet) -> Record {
        let mut record = Record::default();
        let suffix = self.suffix();
        if let Some(n) = set.nats.first() {
            record = record
                .resource("nat", &n.id)
                .output(format!("NatGatewayId{suffix}"), &n.id);
        }
        if let Some(e) = set.eips.first() {
            record = record
                .resource("eip", &e.allocation_id)
                .output(format!("NatPublicIp{suffix}"), &e.public_ip);
        }
        record
    }

    async fn delete(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        set: NatSet,
    ) -> Result<Vec<String>, AwsError> {
        let max = cx.budgets.nat_gateway;
        for n in &set.nats {
            match cx
                .clients
                .ec2
                .delete_nat_gateway()
                .nat_gateway_id(&n.id)
                .send()
                .await
                .op("ec2:DeleteNatGateway")
            {
                Err(e) if e.is_code(&["NatGatewayNotFound", "InvalidNatGatewayID.NotFound"]) => {
                    continue;
                }
                other => {
                    other?;
                }
            }
            // The EIP stays associated (and the IGW undetachable) until the
            // NAT gateway is really gone.
            step.progress(format!(
                "waiting for {} to be deleted (about a minute on AWS)",
                n.id
            ));
            waited(
                cx.clients
                    .ec2
                    .wait_until_nat_gateway_deleted()
                    .nat_gateway_ids(&n.id)
                    .wait(max)
                    .await,
                &format!("NAT gateway {} to be deleted", n.id),
                max,
            )?;
        }
        for e in &set.eips {
            // AWS refuses to release an address a deleting NAT still holds.
            ec2::delete_patiently(
                cx,
                step,
                &format!("releasing {}", e.allocation_id),
                &["InvalidIPAddress.InUse", "AuthFailure"],
                &["InvalidAllocationID.NotFound"],
                || async {
                    cx.clients
                        .ec2
                        .release_address()
                        .allocation_id(&e.allocation_id)
                        .send()
                        .await
                        .op("ec2:ReleaseAddress")
                },
            )
            .await?;
        }
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_ec2::Client;
    use aws_sdk_ec2::operation::release_address::{ReleaseAddressError, ReleaseAddressOutput};
    use aws_sdk_ec2::operation::{
        allocate_address::AllocateAddressOutput, create_nat_gateway::CreateNatGatewayOutput,
        delete_nat_gateway::DeleteNatGatewayOutput, describe_addresses::DescribeAddressesOutput,
        describe_nat_gateways::DescribeNatGatewaysOutput,
    };
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    use super::*;
    use crate::engine::{Change, Removed};
    use crate::resources::testing;
    use crate::spec::NatMode;

    fn tags(step: &str) -> Vec<aws_sdk_ec2::types::Tag> {
        let mut tags = testing::ec2_tags(step);
        tags.retain(|t| t.key() != Some("Name"));
        tags.push(
            aws_sdk_ec2::types::Tag::builder()
                .key("Name")
                .value("payops-pr1-nat-a")
                .build(),
        );
        tags
    }

    fn nat_gw(state: NatGatewayState) -> Nat {
        nat_of("nat-gateway:a", state)
    }

    fn nat_of(step: &str, state: NatGatewayState) -> Nat {
        Nat::builder()
            .nat_gateway_id("nat-1")
            .subnet_id("subnet-pa")
            .state(state)
            .set_tags(Some(tags(step)))
            .build()
    }

    fn address(step: &str) -> Address {
        Address::builder()
            .allocation_id("eipalloc-1")
            .public_ip("203.0.113.7")
            .set_tags(Some(tags(step)))
            .build()
    }

    fn public_subnets() -> (&'static str, Record) {
        (
            "subnets:public",
            Record::default().resource("subnet:a", "subnet-pa"),
        )
    }

    fn describe(addresses: bool, nats: Vec<Nat>) -> [Rule; 2] {
        describe_for("nat-gateway:a", addresses, nats)
    }

    fn describe_for(step: &'static str, addresses: bool, nats: Vec<Nat>) -> [Rule; 2] {
        [
            mock!(Client::describe_addresses).then_output(move || {
                let mut out = DescribeAddressesOutput::builder();
                if addresses {
                    out = out.addresses(address(step));
                }
                out.build()
            }),
            mock!(Client::describe_nat_gateways).then_output(move || {
                DescribeNatGatewaysOutput::builder()
                    .set_nat_gateways(Some(nats.clone()))
                    .build()
            }),
        ]
    }

    #[tokio::test(start_paused = true)]
    async fn allocates_the_eip_first_then_creates_the_nat_with_a_client_token_and_waits() {
        let [addrs, nats_empty] = describe(false, vec![]);
        let allocate = mock!(Client::allocate_address).then_output(|| {
            AllocateAddressOutput::builder()
                .allocation_id("eipalloc-1")
                .public_ip("203.0.113.7")
                .build()
        });
        let create = mock!(Client::create_nat_gateway)
            .match_requests(|r| {
                r.allocation_id() == Some("eipalloc-1")
                    && r.subnet_id() == Some("subnet-pa")
                    && r.client_token().is_some_and(|t| t.len() == 32)
            })
            .then_output(|| {
                CreateNatGatewayOutput::builder()
                    .nat_gateway(nat_gw(NatGatewayState::Pending))
                    .build()
            });
        // The waiter polls DescribeNatGateways filtered by id; the find polls
        // by tags. Pending first, then available.
        let poll = mock!(Client::describe_nat_gateways)
            .match_requests(|r| r.nat_gateway_ids() == ["nat-1"])
            .sequence()
            .output(|| {
                DescribeNatGatewaysOutput::builder()
                    .nat_gateways(nat_gw(NatGatewayState::Pending))
                    .build()
            })
            .output(|| {
                DescribeNatGatewaysOutput::builder()
                    .nat_gateways(nat_gw(NatGatewayState::Available))
                    .build()
            })
            .build();
        let mut clients = testing::clients();
        clients.ec2 = mock_client!(
            aws_sdk_ec2,
            RuleMode::MatchAny,
            [&poll, &addrs, &nats_empty, &allocate, &create]
        );
        let cx = testing::context(clients);
        let applied = testing::ensure(
            &cx,
            "nat-gateway:a",
            NatGateway::new(0),
            &[public_subnets()],
        )
        .await
        .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(applied.record.outputs["NatGatewayIdA"], "nat-1");
        assert_eq!(applied.record.outputs["NatPublicIpA"], "203.0.113.7");
        assert_eq!(poll.num_calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_nat_made_by_a_retried_create_is_adopted_not_an_address_conflict() {
        // Nothing at first; after the lost answer, the address and the NAT
        // gateway its first attempt made.
        let addrs = mock!(Client::describe_addresses)
            .sequence()
            .output(|| DescribeAddressesOutput::builder().build())
            .output(|| {
                DescribeAddressesOutput::builder()
                    .addresses(address("nat-gateway:a"))
                    .build()
            })
            .repeatedly()
            .build();
        let nats = mock!(Client::describe_nat_gateways)
            .sequence()
            .output(|| DescribeNatGatewaysOutput::builder().build())
            .output(|| {
                DescribeNatGatewaysOutput::builder()
                    .nat_gateways(nat_gw(NatGatewayState::Available))
                    .build()
            })
            .repeatedly()
            .build();
        let allocate = mock!(Client::allocate_address).then_output(|| {
            AllocateAddressOutput::builder()
                .allocation_id("eipalloc-1")
                .public_ip("203.0.113.7")
                .build()
        });
        // A retry the client token did not make idempotent (emulators ignore
        // it): the address is already the first NAT gateway's.
        let create = mock!(Client::create_nat_gateway).then_error(|| {
            aws_sdk_ec2::operation::create_nat_gateway::CreateNatGatewayError::generic(
                aws_smithy_types::error::ErrorMetadata::builder()
                    .code("Resource.AlreadyAssociated")
                    .message("Elastic IP address [eipalloc-1] is already associated")
                    .build(),
            )
        });
        let mut clients = testing::clients();
        clients.ec2 = mock_client!(
            aws_sdk_ec2,
            RuleMode::MatchAny,
            [&addrs, &nats, &allocate, &create]
        );
        let cx = testing::context(clients);
        let applied = testing::ensure(
            &cx,
            "nat-gateway:a",
            NatGateway::new(0),
            &[public_subnets()],
        )
        .await
        .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(applied.record.outputs["NatGatewayIdA"], "nat-1");
        assert_eq!((allocate.num_calls(), create.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn an_available_owned_nat_is_left_alone() {
        let [addrs, nats] = describe(true, vec![nat_gw(NatGatewayState::Available)]);
        let mut clients = testing::clients();
        clients.ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&addrs, &nats]);
        let cx = testing::context(clients);
        let applied = testing::ensure(
            &cx,
            "nat-gateway:a",
            NatGateway::new(0),
            &[public_subnets()],
        )
        .await
        .unwrap();
        assert_eq!(applied.change, Change::Unchanged);
    }

    #[tokio::test(start_paused = true)]
    async fn teardown_deletes_the_nat_waits_for_deleted_then_releases_the_eip() {
        let [addrs, nats] = describe(true, vec![nat_gw(NatGatewayState::Available)]);
        let delete = mock!(Client::delete_nat_gateway).then_output(|| {
            DeleteNatGatewayOutput::builder()
                .nat_gateway_id("nat-1")
                .build()
        });
        let deleted = mock!(Client::describe_nat_gateways)
            .match_requests(|r| r.nat_gateway_ids() == ["nat-1"])
            .then_output(|| {
                DescribeNatGatewaysOutput::builder()
                    .nat_gateways(nat_gw(NatGatewayState::Deleted))
                    .build()
            });
        // AWS refuses to release an EIP still associated to a deleting NAT.
        let release = mock!(Client::release_address)
            .sequence()
            .error(|| ReleaseAddressError::generic(testing::error_meta("InvalidIPAddress.InUse")))
            .output(|| ReleaseAddressOutput::builder().build())
            .build();
        let mut clients = testing::clients();
        clients.ec2 = mock_client!(
            aws_sdk_ec2,
            RuleMode::MatchAny,
            [&deleted, &addrs, &nats, &delete, &release]
        );
        let cx = testing::context(clients);
        let removed = testing::destroy(&cx, "nat-gateway:a", NatGateway::new(0))
            .await
            .unwrap();
        assert!(matches!(removed, Removed::Deleted { .. }));
        assert_eq!(deleted.num_calls(), 1, "waited for the NAT to be deleted");
        assert_eq!(release.num_calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn with_a_single_nat_the_other_slots_remove_theirs() {
        let [addrs, nats] = describe_for(
            "nat-gateway:b",
            true,
            vec![nat_of("nat-gateway:b", NatGatewayState::Available)],
        );
        let delete = mock!(Client::delete_nat_gateway)
            .then_output(|| DeleteNatGatewayOutput::builder().build());
        let deleted = mock!(Client::describe_nat_gateways)
            .match_requests(|r| r.nat_gateway_ids() == ["nat-1"])
            .then_output(|| {
                DescribeNatGatewaysOutput::builder()
                    .nat_gateways(nat_gw(NatGatewayState::Deleted))
                    .build()
            });
        let release =
            mock!(Client::release_address).then_output(|| ReleaseAddressOutput::builder().build());
        let mut clients = testing::clients();
        clients.ec2 = mock_client!(
            aws_sdk_ec2,
            RuleMode::MatchAny,
            [&deleted, &addrs, &nats, &delete, &release]
        );
        let mut cx = testing::context(clients);
        cx.spec.nat = NatMode::Single;
        let applied = testing::ensure(&cx, "nat-gateway:b", NatGateway::new(1), &[])
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Deleted);
        assert_eq!(delete.num_calls(), 1);
    }

    #[test]
    fn of_several_addresses_the_held_one_stays_and_free_extras_go() {
        let e = |id: &str, associated: bool| Eip {
            allocation_id: id.into(),
            public_ip: String::new(),
            tags: TagMap::new(),
            associated,
        };
        assert_eq!(
            extra_eips(&[e("eipalloc-1", false), e("eipalloc-2", true)]),
            Some(vec!["eipalloc-1".to_owned()])
        );
        assert_eq!(
            extra_eips(&[e("eipalloc-1", false), e("eipalloc-2", false)]),
            Some(vec!["eipalloc-2".to_owned()])
        );
        assert_eq!(
            extra_eips(&[e("eipalloc-1", true), e("eipalloc-2", true)]),
            None
        );
    }
}
