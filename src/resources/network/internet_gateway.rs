//! The internet gateway of the public subnets, attached to the env's VPC.

use std::fmt;

use async_trait::async_trait;
use aws_sdk_ec2::types::{InternetGateway as Igw, ResourceType};

use crate::aws::{AwsError, OpResult, absent_on, required};
use crate::engine::{Record, StepCx};
use crate::tags::TagMap;

use crate::resources::context::Context;
use crate::resources::resource::{Resource, keep_the_one_in_use, recorded_first};
use crate::resources::sdk::ec2;

pub struct InternetGateway;

pub struct FoundIgw {
    id: String,
    attached_to: Vec<String>,
    tags: TagMap,
}

pub enum Fix {
    Attach(String),
    Tags(TagMap),
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Attach(vpc) => write!(f, "attach to {vpc}"),
            Self::Tags(t) => f.write_str(&crate::tags::describe_tag_fix(t)),
        }
    }
}

fn found(igw: &Igw) -> Option<FoundIgw> {
    Some(FoundIgw {
        id: igw.internet_gateway_id()?.to_owned(),
        attached_to: igw
            .attachments()
            .iter()
            .filter_map(|a| a.vpc_id().map(str::to_owned))
            .collect(),
        tags: ec2::tag_map(igw.tags()),
    })
}

#[async_trait]
impl Resource for InternetGateway {
    type Found = FoundIgw;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "ec2:internet-gateway"
    }

    /// AttachInternetGateway meets the attachment its lost first attempt made (see the trait).
    fn already_exists(&self) -> &'static [&'static str] {
        &["Resource.AlreadyAssociated"]
    }

    async fn find(&self, cx: &Context, step: &StepCx<'_>) -> Result<Vec<FoundIgw>, AwsError> {
        let mut igws: Vec<FoundIgw> = ec2::find_owned!(
            cx,
            step,
            describe_internet_gateways,
            "ec2:DescribeInternetGateways",
            internet_gateways,
            found
        )?;
        recorded_first(&mut igws, step.previous_resource("igw"), |g| &g.id);
        Ok(igws)
    }

    /// CreateInternetGateway has no idempotency token: a retried create
    /// whose first answer was lost leaves a second gateway tagged for the
    /// step.
    fn create_may_duplicate(&self) -> bool {
        true
    }

    /// The attached one; an extra from a retried create was never attached.
    fn keep_of_duplicates(&self, found: &[FoundIgw]) -> Option<usize> {
        keep_the_one_in_use(found, |g| !g.attached_to.is_empty())
    }

    fn describe(&self, igw: &FoundIgw) -> String {
        igw.id.clone()
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<FoundIgw, AwsError> {
        let out = cx
            .clients
            .ec2
            .create_internet_gateway()
            .tag_specifications(ec2::tag_spec(
                cx,
                ResourceType::InternetGateway,
                step.id().as_str(),
                &cx.names.resource("igw"),
            ))
            .send()
            .await
            .op("ec2:CreateInternetGateway")?;
        let igw = required(
            out.internet_gateway().and_then(found),
            "ec2:CreateInternetGateway",
            "InternetGateway",
        )?;
        step.remember("igw", &igw.id);
        Ok(igw)
    }

    async fn diff(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        igw: &FoundIgw,
    ) -> Result<Vec<Fix>, AwsError> {
        let mut fixes = Vec::new();
        let missing =
            ec2::missing_tags(cx, step.id().as_str(), &cx.names.resource("igw"), &igw.tags);
        if !missing.is_empty() {
            fixes.push(Fix::Tags(missing));
        }
        // Unknown during `plan` on a missing VPC: it will be attached once created.
        let vpc = step.output("vpc", "VpcId").ok();
        match (vpc, igw.attached_to.as_slice()) {
            (Some(vpc), [attached]) if attached == vpc => {}
            (_, [other, ..]) => {
                return Err(AwsError::Conflict(format!(
                    "internet gateway {} is attached to {other}, not to this env's VPC; \
                     detach it or run `payops down`",
                    igw.id
                )));
            }
            (vpc, []) => fixes.push(Fix::Attach(vpc.unwrap_or("the new VPC").to_owned())),
        }
        Ok(fixes)
    }

    async fn fix(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        igw: &mut FoundIgw,
        fix: Fix,
    ) -> Result<(), AwsError> {
        match fix {
            Fix::Tags(tags) => ec2::add_tags(cx, &igw.id, &tags).await,
            Fix::Attach(vpc) => {
                cx.clients
                    .ec2
                    .attach_internet_gateway()
                    .internet_gateway_id(&igw.id)
                    .vpc_id(&vpc)
                    .send()
                    .await
                    .op("ec2:AttachInternetGateway")?;
                igw.attached_to = vec![vpc];
                Ok(())
            }
        }
    }

    fn record(&self, _cx: &Context, igw: &FoundIgw) -> Record {
        Record::default()
            .resource("igw", &igw.id)
            .output("InternetGatewayId", &igw.id)
    }

    async fn delete(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        igw: FoundIgw,
    ) -> Result<Vec<String>, AwsError> {
        for vpc in &igw.attached_to {
            // Detaching fails while NAT gateways still hold public addresses
            // in the VPC; the NAT steps release them first, this covers the lag.
            ec2::delete_patiently(
                cx,
                step,
                &format!("detaching {} from {vpc}", igw.id),
                &["DependencyViolation"],
                &["Gateway.NotAttached"],
                || async {
                    cx.clients
                        .ec2
                        .detach_internet_gateway()
                        .internet_gateway_id(&igw.id)
                        .vpc_id(vpc)
                        .send()
                        .await
                        .op("ec2:DetachInternetGateway")
                },
            )
            .await?;
        }
        absent_on(
            cx.clients
                .ec2
                .delete_internet_gateway()
                .internet_gateway_id(&igw.id)
                .send()
                .await
                .op("ec2:DeleteInternetGateway"),
            &["InvalidInternetGatewayID.NotFound"],
        )?;
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_ec2::Client;
    use aws_sdk_ec2::operation::detach_internet_gateway::{
        DetachInternetGatewayError, DetachInternetGatewayOutput,
    };
    use aws_sdk_ec2::operation::{
        attach_internet_gateway::AttachInternetGatewayOutput,
        create_internet_gateway::CreateInternetGatewayOutput,
        delete_internet_gateway::DeleteInternetGatewayOutput,
        describe_internet_gateways::DescribeInternetGatewaysOutput,
    };
    use aws_sdk_ec2::types::InternetGatewayAttachment;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    use super::*;
    use crate::engine::{Change, Removed};
    use crate::resources::testing;

    fn igw(attached: Option<&str>) -> Igw {
        igw_with_id("igw-1", attached)
    }

    fn igw_with_id(id: &str, attached: Option<&str>) -> Igw {
        let mut tags = testing::ec2_tags("internet-gateway");
        tags.retain(|t| t.key() != Some("Name"));
        tags.push(
            aws_sdk_ec2::types::Tag::builder()
                .key("Name")
                .value("payops-pr1-igw")
                .build(),
        );
        let mut b = Igw::builder().internet_gateway_id(id).set_tags(Some(tags));
        if let Some(vpc) = attached {
            b = b.attachments(InternetGatewayAttachment::builder().vpc_id(vpc).build());
        }
        b.build()
    }

    fn vpc() -> (&'static str, Record) {
        ("vpc", Record::default().output("VpcId", "vpc-1"))
    }

    #[tokio::test]
    async fn creates_and_attaches_to_the_env_vpc() {
        let none = mock!(Client::describe_internet_gateways)
            .then_output(|| DescribeInternetGatewaysOutput::builder().build());
        let create = mock!(Client::create_internet_gateway).then_output(|| {
            CreateInternetGatewayOutput::builder()
                .internet_gateway(igw(None))
                .build()
        });
        let attach = mock!(Client::attach_internet_gateway)
            .match_requests(|r| {
                r.vpc_id() == Some("vpc-1") && r.internet_gateway_id() == Some("igw-1")
            })
            .then_output(|| AttachInternetGatewayOutput::builder().build());
        let mut clients = testing::clients();
        clients.ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&none, &create, &attach]);
        let cx = testing::context(clients);
        let applied = testing::ensure(&cx, "internet-gateway", InternetGateway, &[vpc()])
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(attach.num_calls(), 1);
    }

    /// CreateInternetGateway has no client token: a create whose answer was
    /// lost and that the SDK retried leaves a second gateway. The extra goes
    /// right away and only the kept one is attached.
    #[tokio::test]
    async fn an_extra_gateway_from_a_retried_create_is_deleted_before_attaching() {
        let describe = mock!(Client::describe_internet_gateways)
            .sequence()
            .output(|| DescribeInternetGatewaysOutput::builder().build())
            .output(|| {
                DescribeInternetGatewaysOutput::builder()
                    .internet_gateways(igw_with_id("igw-1", None))
                    .internet_gateways(igw_with_id("igw-2", None))
                    .build()
            })
            .build();
        let create = mock!(Client::create_internet_gateway).then_output(|| {
            CreateInternetGatewayOutput::builder()
                .internet_gateway(igw_with_id("igw-2", None))
                .build()
        });
        let delete = mock!(Client::delete_internet_gateway)
            .match_requests(|r| r.internet_gateway_id() == Some("igw-2"))
            .then_output(|| DeleteInternetGatewayOutput::builder().build());
        let attach = mock!(Client::attach_internet_gateway)
            .match_requests(|r| r.internet_gateway_id() == Some("igw-1"))
            .then_output(|| AttachInternetGatewayOutput::builder().build());
        let mut clients = testing::clients();
        clients.ec2 = mock_client!(
            aws_sdk_ec2,
            RuleMode::MatchAny,
            [&describe, &create, &delete, &attach]
        );
        let cx = testing::context(clients);
        let applied = testing::ensure(&cx, "internet-gateway", InternetGateway, &[vpc()])
            .await
            .unwrap();
        assert_eq!(applied.record.outputs["InternetGatewayId"], "igw-1");
        assert_eq!((delete.num_calls(), attach.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn an_attach_retried_after_a_lost_answer_adopts_what_it_attached() {
        // Detached at the first look, attached at the next: the retried
        // AttachInternetGateway met the attachment its lost first attempt
        // made, and EC2 answers `Resource.AlreadyAssociated`.
        let describe = mock!(Client::describe_internet_gateways)
            .sequence()
            .output(|| {
                DescribeInternetGatewaysOutput::builder()
                    .internet_gateways(igw(None))
                    .build()
            })
            .output(|| {
                DescribeInternetGatewaysOutput::builder()
                    .internet_gateways(igw(Some("vpc-1")))
                    .build()
            })
            .repeatedly()
            .build();
        let attach = mock!(Client::attach_internet_gateway).then_error(|| {
            aws_sdk_ec2::operation::attach_internet_gateway::AttachInternetGatewayError::generic(
                testing::error_meta("Resource.AlreadyAssociated"),
            )
        });
        let mut clients = testing::clients();
        clients.ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&describe, &attach]);
        let cx = testing::context(clients);
        let applied = testing::ensure(&cx, "internet-gateway", InternetGateway, &[vpc()])
            .await
            .unwrap();
        assert_eq!(applied.record.outputs["InternetGatewayId"], "igw-1");
        assert_eq!(attach.num_calls(), 1);
        assert_eq!(describe.num_calls(), 2, "looked again after the conflict");
    }

    #[test]
    fn of_two_gateways_the_attached_one_is_kept() {
        let found = |id: &str, vpc: Option<&str>| FoundIgw {
            id: id.to_owned(),
            attached_to: vpc.into_iter().map(str::to_owned).collect(),
            tags: TagMap::new(),
        };
        let r = InternetGateway;
        let two = [found("igw-1", None), found("igw-2", Some("vpc-1"))];
        assert_eq!(r.keep_of_duplicates(&two), Some(1));
        let both = [found("igw-1", Some("vpc-1")), found("igw-2", Some("vpc-2"))];
        assert_eq!(r.keep_of_duplicates(&both), None);
    }

    #[tokio::test]
    async fn attached_to_another_vpc_is_a_conflict() {
        let found = mock!(Client::describe_internet_gateways).then_output(|| {
            DescribeInternetGatewaysOutput::builder()
                .internet_gateways(igw(Some("vpc-9")))
                .build()
        });
        let mut clients = testing::clients();
        clients.ec2 = mock_client!(aws_sdk_ec2, [&found]);
        let cx = testing::context(clients);
        let err = testing::ensure(&cx, "internet-gateway", InternetGateway, &[vpc()])
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("vpc-9"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn detach_waits_out_mapped_public_addresses_then_deletes() {
        let found = mock!(Client::describe_internet_gateways).then_output(|| {
            DescribeInternetGatewaysOutput::builder()
                .internet_gateways(igw(Some("vpc-1")))
                .build()
        });
        let detach = mock!(Client::detach_internet_gateway)
            .sequence()
            .error(|| {
                DetachInternetGatewayError::generic(testing::error_meta("DependencyViolation"))
            })
            .output(|| DetachInternetGatewayOutput::builder().build())
            .build();
        let delete = mock!(Client::delete_internet_gateway)
            .then_output(|| DeleteInternetGatewayOutput::builder().build());
        let mut clients = testing::clients();
        clients.ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&found, &detach, &delete]);
        let cx = testing::context(clients);
        let removed = testing::destroy(&cx, "internet-gateway", InternetGateway)
            .await
            .unwrap();
        assert!(matches!(removed, Removed::Deleted { .. }));
        assert_eq!(detach.num_calls(), 2);
        assert_eq!(delete.num_calls(), 1);
    }
}
