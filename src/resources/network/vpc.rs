//! The env's VPC, with DNS support and hostnames on (needed by interface
//! endpoints and by Aurora's DNS names).

use std::fmt;

use async_trait::async_trait;
use aws_sdk_ec2::types::{AttributeBooleanValue, Filter, ResourceType, Vpc as Ec2Vpc};

use crate::aws::{AwsError, OpResult, absent_on, required};
use crate::engine::{Record, StepCx};
use crate::tags::TagMap;

use crate::resources::context::Context;
use crate::resources::resource::{Resource, keep_the_one_in_use, recorded_first};
use crate::resources::sdk::ec2;

pub struct Vpc;

/// The NAT mode, recorded on the VPC: AWS keeps the env's shape, so a machine
/// without the state file converges to the same one (a later `up` without
/// `--nat` must not add NAT gateways a `--nat single` env never had).
pub const NAT_TAG: &str = "payops:nat";
/// The ALB's certificate (`self-signed` or the operator's ACM ARN) and the
/// functions' reserved concurrency, recorded the same way: a later `up`
/// without the flags must not swap the certificate or the reservations.
pub const CERTIFICATE_TAG: &str = "payops:certificate";
pub const CONCURRENCY_TAG: &str = "payops:reserved-concurrency";
/// The Aurora shape and where its credentials come from, likewise.
pub const DATABASE_TAG: &str = "payops:database";
pub const DB_SECRET_TAG: &str = "payops:db-secret";
/// Who may call the payments API (`iam 10.0.0.0/8`), likewise.
pub const API_ACCESS_TAG: &str = "payops:api-access";
/// The zone IDs the env spreads over (`use1-az1 use1-az2 use1-az4`), so a
/// run without the state file keeps them too.
pub const ZONES_TAG: &str = "payops:zone-ids";
/// Whether the env has the event backbone (`on`/`off`), likewise.
pub const EVENTS_TAG: &str = "payops:events";
/// The batch tier (`on t4g.small 0-0-2`), likewise.
pub const BATCH_TAG: &str = "payops:batch";
/// Whether the env has its private zone and failover records, likewise.
pub const DNS_TAG: &str = "payops:dns";

fn shape_tags(cx: &Context) -> TagMap {
    let mut tags = TagMap::from([
        (NAT_TAG.to_owned(), cx.spec.nat.as_str().to_owned()),
        (CERTIFICATE_TAG.to_owned(), cx.spec.certificate.to_string()),
        // Spaces, not commas: what every tagging API accepts.
        (
            CONCURRENCY_TAG.to_owned(),
            cx.spec.concurrency.to_string().replace(',', " "),
        ),
        (DATABASE_TAG.to_owned(), cx.spec.database.to_string()),
        (DB_SECRET_TAG.to_owned(), cx.spec.db_secret.to_string()),
        (
            API_ACCESS_TAG.to_owned(),
            cx.spec.api.to_string().replace(',', " "),
        ),
        (
            EVENTS_TAG.to_owned(),
            crate::spec::events_str(cx.spec.events).to_owned(),
        ),
        (
            BATCH_TAG.to_owned(),
            cx.spec.batch.to_string().replace(',', " "),
        ),
        (
            DNS_TAG.to_owned(),
            crate::spec::events_str(cx.spec.dns).to_owned(),
        ),
    ]);
    if !cx.spec.zone_ids.is_empty() {
        tags.insert(ZONES_TAG.to_owned(), cx.spec.zone_ids.join(" "));
    }
    tags
}

/// The shape settings an env's VPC records (`vpc_cidr`, `nat`,
/// `cost_center`), in the form the state file keeps them; empty when the env
/// has no VPC.
pub async fn recorded_shape(
    clients: &crate::aws::Clients,
    env: &crate::naming::EnvName,
) -> Result<std::collections::BTreeMap<String, String>, AwsError> {
    let out = clients
        .ec2
        .describe_vpcs()
        .filters(ec2::tag_filter(
            crate::tags::MANAGED_BY,
            crate::tags::MANAGER,
        ))
        .filters(ec2::tag_filter(crate::tags::ENV, env.as_str()))
        .filters(ec2::tag_filter(crate::tags::STEP, "vpc"))
        .send()
        .await
        .op("ec2:DescribeVpcs")?;
    let mut shape = std::collections::BTreeMap::new();
    // Exactly one VPC, or no opinion: `up` reports the ambiguity itself.
    if let [vpc] = out.vpcs()
        && let Some(found) = found(vpc)
        && crate::tags::ownership(&found.tags, env) == crate::tags::Ownership::Ours
    {
        shape.insert("vpc_cidr".to_owned(), found.cidr);
        for (key, tag) in [
            ("nat", NAT_TAG),
            ("cost_center", "CostCenter"),
            ("certificate", CERTIFICATE_TAG),
            ("reserved_concurrency", CONCURRENCY_TAG),
            ("database", DATABASE_TAG),
            ("db_secret", DB_SECRET_TAG),
            ("api_access", API_ACCESS_TAG),
            ("zone_ids", ZONES_TAG),
            ("events", EVENTS_TAG),
            ("batch", BATCH_TAG),
            ("dns", DNS_TAG),
            ("protect", crate::tags::PROTECTED),
        ] {
            if let Some(v) = found.tags.get(tag) {
                shape.insert(key.to_owned(), v.replace(' ', ","));
            }
        }
    }
    Ok(shape)
}

pub struct FoundVpc {
    id: String,
    cidr: String,
    tags: TagMap,
    /// Has subnets (looked up only when `find` sees more than one VPC).
    in_use: bool,
}

pub enum Fix {
    Tags(TagMap),
    DnsSupport,
    DnsHostnames,
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tags(t) => f.write_str(&crate::tags::describe_tag_fix(t)),
            Self::DnsSupport => f.write_str("enable DNS support"),
            Self::DnsHostnames => f.write_str("enable DNS hostnames"),
        }
    }
}

fn found(vpc: &Ec2Vpc) -> Option<FoundVpc> {
    Some(FoundVpc {
        id: vpc.vpc_id()?.to_owned(),
        cidr: vpc.cidr_block().unwrap_or_default().to_owned(),
        tags: ec2::tag_map(vpc.tags()),
        in_use: false,
    })
}

async fn has_subnets(cx: &Context, vpc: &str) -> Result<bool, AwsError> {
    let out = cx
        .clients
        .ec2
        .describe_subnets()
        .filters(Filter::builder().name("vpc-id").values(vpc).build())
        .send()
        .await
        .op("ec2:DescribeSubnets")?;
    Ok(!out.subnets().is_empty())
}

impl Vpc {
    async fn attribute(
        &self,
        cx: &Context,
        vpc: &str,
        attribute: aws_sdk_ec2::types::VpcAttributeName,
    ) -> Result<bool, AwsError> {
        let out = cx
            .clients
            .ec2
            .describe_vpc_attribute()
            .vpc_id(vpc)
            .attribute(attribute.clone())
            .send()
            .await
            .op("ec2:DescribeVpcAttribute")?;
        let value = match attribute {
            aws_sdk_ec2::types::VpcAttributeName::EnableDnsHostnames => out.enable_dns_hostnames(),
            _ => out.enable_dns_support(),
        };
        Ok(value
            .and_then(AttributeBooleanValue::value)
            .unwrap_or(false))
    }
}

#[async_trait]
impl Resource for Vpc {
    type Found = FoundVpc;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "ec2:vpc"
    }

    async fn find(&self, cx: &Context, step: &StepCx<'_>) -> Result<Vec<FoundVpc>, AwsError> {
        let mut vpcs: Vec<FoundVpc> =
            ec2::find_owned!(cx, step, describe_vpcs, "ec2:DescribeVpcs", vpcs, found)?;
        if vpcs.len() > 1 {
            recorded_first(&mut vpcs, step.previous_resource("vpc"), |v| &v.id);
            for vpc in &mut vpcs {
                vpc.in_use = has_subnets(cx, &vpc.id).await?;
            }
        }
        Ok(vpcs)
    }

    fn describe(&self, found: &FoundVpc) -> String {
        found.id.clone()
    }

    /// CreateVpc has no idempotency token: a retried create whose first
    /// answer was lost leaves a second VPC tagged for the step.
    fn create_may_duplicate(&self) -> bool {
        true
    }

    /// The one with subnets; an extra from a retried create has none.
    fn keep_of_duplicates(&self, found: &[FoundVpc]) -> Option<usize> {
        keep_the_one_in_use(found, |v| v.in_use)
    }

    /// One DeleteVpc, without `delete`'s patience: an extra is empty, and one
    /// that is not (DependencyViolation) is not an extra.
    async fn delete_duplicate(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        vpc: FoundVpc,
    ) -> Result<Vec<String>, AwsError> {
        let deleted = cx
            .clients
            .ec2
            .delete_vpc()
            .vpc_id(&vpc.id)
            .send()
            .await
            .op("ec2:DeleteVpc");
        absent_on(deleted, &["InvalidVpcID.NotFound"])?;
        Ok(Vec::new())
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<FoundVpc, AwsError> {
        let name = cx.names.resource("vpc");
        let out = cx
            .clients
            .ec2
            .create_vpc()
            .cidr_block(cx.spec.vpc_cidr.to_string())
            .tag_specifications(ec2::tag_spec_with(
                cx,
                ResourceType::Vpc,
                step.id().as_str(),
                &name,
                &shape_tags(cx),
            ))
            .send()
            .await
            .op("ec2:CreateVpc")?;
        let vpc = required(out.vpc(), "ec2:CreateVpc", "Vpc")?;
        let found = required(found(vpc), "ec2:CreateVpc", "VpcId")?;
        step.remember("vpc", &found.id);
        Ok(found)
    }

    async fn diff(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        vpc: &FoundVpc,
    ) -> Result<Vec<Fix>, AwsError> {
        let want = cx.spec.vpc_cidr.to_string();
        if vpc.cidr != want {
            return Err(AwsError::Conflict(format!(
                "VPC {} has CIDR {} but the env wants {want}; a VPC's CIDR cannot change: \
                 run `payops down` first, or keep --vpc-cidr {}",
                vpc.id, vpc.cidr, vpc.cidr
            )));
        }
        let mut fixes = Vec::new();
        let mut missing =
            ec2::missing_tags(cx, step.id().as_str(), &cx.names.resource("vpc"), &vpc.tags);
        for (k, v) in shape_tags(cx) {
            if vpc.tags.get(&k) != Some(&v) {
                missing.insert(k, v);
            }
        }
        if !missing.is_empty() {
            fixes.push(Fix::Tags(missing));
        }
        use aws_sdk_ec2::types::VpcAttributeName as A;
        let (support, hostnames) = tokio::try_join!(
            self.attribute(cx, &vpc.id, A::EnableDnsSupport),
            self.attribute(cx, &vpc.id, A::EnableDnsHostnames),
        )?;
        if !support {
            fixes.push(Fix::DnsSupport);
        }
        if !hostnames {
            fixes.push(Fix::DnsHostnames);
        }
        Ok(fixes)
    }

    async fn fix(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        vpc: &mut FoundVpc,
        fix: Fix,
    ) -> Result<(), AwsError> {
        let on = AttributeBooleanValue::builder().value(true).build();
        // ModifyVpcAttribute takes one attribute per call.
        match fix {
            Fix::Tags(tags) => ec2::add_tags(cx, &vpc.id, &tags).await,
            Fix::DnsSupport => cx
                .clients
                .ec2
                .modify_vpc_attribute()
                .vpc_id(&vpc.id)
                .enable_dns_support(on)
                .send()
                .await
                .op("ec2:ModifyVpcAttribute")
                .map(drop),
            Fix::DnsHostnames => cx
                .clients
                .ec2
                .modify_vpc_attribute()
                .vpc_id(&vpc.id)
                .enable_dns_hostnames(on)
                .send()
                .await
                .op("ec2:ModifyVpcAttribute")
                .map(drop),
        }
    }

    fn record(&self, _cx: &Context, vpc: &FoundVpc) -> Record {
        Record::default()
            .resource("vpc", &vpc.id)
            .output("VpcId", &vpc.id)
            .output("VpcCidr", &vpc.cidr)
    }

    async fn delete(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        vpc: FoundVpc,
    ) -> Result<Vec<String>, AwsError> {
        ec2::delete_patiently(
            cx,
            step,
            &format!("deleting {}", vpc.id),
            &["DependencyViolation"],
            &["InvalidVpcID.NotFound"],
            || async {
                cx.clients
                    .ec2
                    .delete_vpc()
                    .vpc_id(&vpc.id)
                    .send()
                    .await
                    .op("ec2:DeleteVpc")
            },
        )
        .await?;
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use aws_sdk_ec2::Client;
    use aws_sdk_ec2::operation::delete_vpc::{DeleteVpcError, DeleteVpcOutput};
    use aws_sdk_ec2::operation::{
        create_vpc::CreateVpcOutput, describe_subnets::DescribeSubnetsOutput,
        describe_vpc_attribute::DescribeVpcAttributeOutput, describe_vpcs::DescribeVpcsOutput,
    };
    use aws_sdk_ec2::types::{AttributeBooleanValue, Subnet, Vpc as Ec2Vpc, VpcAttributeName};
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    use super::*;
    use crate::engine::{Change, Removed, Step, StepId};
    use crate::resources::resource::Node;
    use crate::resources::testing::{self, Events};

    fn vpc(id: &str) -> Ec2Vpc {
        let mut tags = testing::ec2_tags("vpc");
        for (key, value) in [
            (NAT_TAG, "per-az"),
            (CERTIFICATE_TAG, "self-signed"),
            (CONCURRENCY_TAG, "validation=5 fraud=5 transaction=10"),
            (
                DATABASE_TAG,
                "version=16.6 class=db.r6g.large readers=2 backup-days=7 capacity=0.5-4",
            ),
            (DB_SECRET_TAG, "generated"),
            (API_ACCESS_TAG, "iam"),
            (EVENTS_TAG, "on"),
            (BATCH_TAG, "off t4g.small 0-0-2"),
            (DNS_TAG, "off"),
        ] {
            tags.push(
                aws_sdk_ec2::types::Tag::builder()
                    .key(key)
                    .value(value)
                    .build(),
            );
        }
        Ec2Vpc::builder()
            .vpc_id(id)
            .cidr_block("10.0.0.0/16")
            .set_tags(Some(tags))
            .build()
    }

    fn attributes_on() -> [aws_smithy_mocks::Rule; 2] {
        let on = || AttributeBooleanValue::builder().value(true).build();
        [
            mock!(Client::describe_vpc_attribute)
                .match_requests(|r| r.attribute() == Some(&VpcAttributeName::EnableDnsSupport))
                .then_output(move || {
                    DescribeVpcAttributeOutput::builder()
                        .enable_dns_support(on())
                        .build()
                }),
            mock!(Client::describe_vpc_attribute)
                .match_requests(|r| r.attribute() == Some(&VpcAttributeName::EnableDnsHostnames))
                .then_output(move || {
                    DescribeVpcAttributeOutput::builder()
                        .enable_dns_hostnames(on())
                        .build()
                }),
        ]
    }

    #[tokio::test]
    async fn creates_a_tagged_vpc_when_none_is_found() {
        let describe = mock!(Client::describe_vpcs)
            .match_requests(|r| {
                r.filters()
                    .iter()
                    .any(|f| f.name() == Some("tag:payops:env") && f.values() == ["pr1"])
            })
            .then_output(|| DescribeVpcsOutput::builder().build());
        let create = mock!(Client::create_vpc)
            .match_requests(|r| {
                let tags = &r.tag_specifications()[0];
                r.cidr_block() == Some("10.0.0.0/16")
                    && tags
                        .tags()
                        .iter()
                        .any(|t| t.key() == Some("payops:step") && t.value() == Some("vpc"))
            })
            .then_output(|| CreateVpcOutput::builder().vpc(vpc("vpc-1")).build());
        let [support, hostnames] = attributes_on();
        let mut clients = testing::clients();
        clients.ec2 = mock_client!(
            aws_sdk_ec2,
            RuleMode::MatchAny,
            [&describe, &create, &support, &hostnames]
        );
        let cx = testing::context(clients);
        let events = Events::default();
        let id = StepId::from("vpc");
        let step = testing::step_cx(&id, BTreeMap::new(), &events);
        let applied = Node::new("vpc", Vpc, vec![])
            .ensure(&cx, &step)
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(applied.record.outputs["VpcId"], "vpc-1");
        assert_eq!(create.num_calls(), 1);
        // The id is persisted as soon as it exists, before any wait.
        assert_eq!(
            *events.remembered.lock().unwrap(),
            [("vpc".to_owned(), "vpc-1".to_owned())]
        );
    }

    #[tokio::test]
    async fn an_owned_vpc_in_sync_is_adopted_without_mutating_calls() {
        let describe = mock!(Client::describe_vpcs)
            .then_output(|| DescribeVpcsOutput::builder().vpcs(vpc("vpc-1")).build());
        let [support, hostnames] = attributes_on();
        let mut clients = testing::clients();
        // Any create or modify call would find no rule and fail the test.
        clients.ec2 = mock_client!(
            aws_sdk_ec2,
            RuleMode::MatchAny,
            [&describe, &support, &hostnames]
        );
        let cx = testing::context(clients);
        let applied = testing::ensure(&cx, "vpc", Vpc, &[]).await.unwrap();
        assert_eq!(applied.change, Change::Unchanged);
        assert!(applied.notes.is_empty());
    }

    #[tokio::test]
    async fn two_vpcs_in_use_for_one_step_are_refused_not_guessed() {
        let describe = mock!(Client::describe_vpcs).then_output(|| {
            DescribeVpcsOutput::builder()
                .vpcs(vpc("vpc-1"))
                .vpcs(vpc("vpc-2"))
                .build()
        });
        let subnets = mock!(Client::describe_subnets).then_output(|| {
            DescribeSubnetsOutput::builder()
                .subnets(Subnet::builder().subnet_id("subnet-1").build())
                .build()
        });
        let mut clients = testing::clients();
        clients.ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&describe, &subnets]);
        let cx = testing::context(clients);
        let err = testing::ensure(&cx, "vpc", Vpc, &[])
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("vpc-1, vpc-2"), "{err}");
    }

    /// CreateVpc has no client token: a create whose answer was lost and
    /// that the SDK retried leaves an empty second VPC tagged for the step.
    #[tokio::test]
    async fn an_empty_extra_vpc_from_a_retried_create_is_deleted_and_the_used_one_kept() {
        let describe = mock!(Client::describe_vpcs).then_output(|| {
            DescribeVpcsOutput::builder()
                .vpcs(vpc("vpc-extra"))
                .vpcs(vpc("vpc-used"))
                .build()
        });
        let used = mock!(Client::describe_subnets)
            .match_requests(|r| r.filters()[0].values() == ["vpc-used"])
            .then_output(|| {
                DescribeSubnetsOutput::builder()
                    .subnets(Subnet::builder().subnet_id("subnet-1").build())
                    .build()
            });
        let empty = mock!(Client::describe_subnets)
            .then_output(|| DescribeSubnetsOutput::builder().build());
        let delete = mock!(Client::delete_vpc)
            .match_requests(|r| r.vpc_id() == Some("vpc-extra"))
            .then_output(|| DeleteVpcOutput::builder().build());
        let [support, hostnames] = attributes_on();
        let mut clients = testing::clients();
        clients.ec2 = mock_client!(
            aws_sdk_ec2,
            RuleMode::MatchAny,
            [&describe, &used, &empty, &delete, &support, &hostnames]
        );
        let cx = testing::context(clients);
        let applied = testing::ensure(&cx, "vpc", Vpc, &[]).await.unwrap();
        assert_eq!(applied.record.outputs["VpcId"], "vpc-used");
        assert_eq!(delete.num_calls(), 1);
        assert!(
            applied
                .notes
                .iter()
                .any(|n| n.contains("removed vpc-extra")),
            "{:?}",
            applied.notes
        );
    }

    #[tokio::test(start_paused = true)]
    async fn delete_retries_dependency_violation_then_succeeds() {
        let describe = mock!(Client::describe_vpcs)
            .then_output(|| DescribeVpcsOutput::builder().vpcs(vpc("vpc-1")).build());
        let delete = mock!(Client::delete_vpc)
            .sequence()
            .error(|| DeleteVpcError::generic(testing::error_meta("DependencyViolation")))
            .times(2)
            .output(|| DeleteVpcOutput::builder().build())
            .build();
        let mut clients = testing::clients();
        clients.ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&describe, &delete]);
        let cx = testing::context(clients);
        let removed = testing::destroy(&cx, "vpc", Vpc).await.unwrap();
        assert!(matches!(removed, Removed::Deleted { .. }));
        assert_eq!(delete.num_calls(), 3);
    }

    #[tokio::test]
    async fn destroy_of_a_missing_vpc_is_success() {
        let describe =
            mock!(Client::describe_vpcs).then_output(|| DescribeVpcsOutput::builder().build());
        let mut clients = testing::clients();
        clients.ec2 = mock_client!(aws_sdk_ec2, [&describe]);
        let cx = testing::context(clients);
        let removed = testing::destroy(&cx, "vpc", Vpc).await.unwrap();
        assert_eq!(removed, Removed::AlreadyAbsent);
    }

    #[tokio::test]
    async fn a_changed_cidr_is_a_conflict_with_advice() {
        let describe = mock!(Client::describe_vpcs)
            .then_output(|| DescribeVpcsOutput::builder().vpcs(vpc("vpc-1")).build());
        let mut clients = testing::clients();
        clients.ec2 = mock_client!(aws_sdk_ec2, [&describe]);
        let mut cx = testing::context(clients);
        cx.spec.vpc_cidr = "10.9.0.0/16".parse().unwrap();
        let err = testing::ensure(&cx, "vpc", Vpc, &[])
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot change"), "{err}");
    }

    #[tokio::test]
    async fn the_vpc_tells_a_machine_without_state_the_envs_shape() {
        let mut tagged = vpc("vpc-1");
        tagged = Ec2Vpc::builder()
            .vpc_id("vpc-1")
            .cidr_block("10.7.0.0/16")
            .set_tags(Some(
                tagged
                    .tags()
                    .iter()
                    .map(|t| {
                        if t.key() == Some(NAT_TAG) {
                            aws_sdk_ec2::types::Tag::builder()
                                .key(NAT_TAG)
                                .value("single")
                                .build()
                        } else {
                            t.clone()
                        }
                    })
                    .collect(),
            ))
            .build();
        let describe = mock!(Client::describe_vpcs)
            .then_output(move || DescribeVpcsOutput::builder().vpcs(tagged.clone()).build());
        let mut clients = testing::clients();
        clients.ec2 = mock_client!(aws_sdk_ec2, [&describe]);
        let shape = recorded_shape(&clients, &crate::naming::EnvName::parse("pr1").unwrap())
            .await
            .unwrap();
        assert_eq!(shape["nat"], "single");
        assert_eq!(shape["vpc_cidr"], "10.7.0.0/16");
        assert_eq!(shape["cost_center"], "payments");
        assert_eq!(shape["certificate"], "self-signed");
        assert_eq!(shape["events"], "on");
        assert_eq!(
            shape["reserved_concurrency"],
            "validation=5,fraud=5,transaction=10"
        );
    }
}
