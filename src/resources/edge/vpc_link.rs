//! The REST API's VPC link (`payops-<env>-vpc-link`) to the internal NLB.
//!
//! A REST API (v1) VPC link accepts only Network Load Balancers: emulators
//! take an ALB, AWS refuses it. That is why the path to the ALB is VPC link ->
//! NLB -> target group of type alb -> ALB, and why the target's type is
//! checked here before anything is created.
//!
//! On AWS a VPC link takes 8-12 minutes to become AVAILABLE (and minutes to
//! go), so it depends on the NLB only and starts as soon as the NLB exists.

use std::collections::HashMap;
use std::fmt;

use async_trait::async_trait;
use aws_sdk_apigateway::types::VpcLinkStatus;
use aws_sdk_elasticloadbalancingv2::types::LoadBalancerTypeEnum;

use crate::aws::{AwsError, OpResult, Poll, absent_on, poll_until, required, wait_until_gone};
use crate::engine::{Record, StepCx};
use crate::tags::TagMap;

use crate::resources::context::Context;
use crate::resources::resource::{Resource, recorded_first};
use crate::tags::describe_tag_fix;

pub struct VpcLink;

pub struct FoundVpcLink {
    id: String,
    name: String,
    targets: Vec<String>,
    status: Option<VpcLinkStatus>,
    tags: TagMap,
}

pub enum Fix {
    /// A run stopped while AWS was still setting it up.
    WaitAvailable,
    Tags(TagMap),
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WaitAvailable => f.write_str("wait for it to become AVAILABLE"),
            Self::Tags(t) => f.write_str(&describe_tag_fix(t)),
        }
    }
}

/// The real-AWS rule: a REST API VPC link targets Network Load Balancers
/// only (terraform-provider-aws#30910).
pub fn check_target(arn: &str, lb_type: Option<&LoadBalancerTypeEnum>) -> Result<(), AwsError> {
    match lb_type {
        Some(LoadBalancerTypeEnum::Network) => Ok(()),
        other => Err(AwsError::Conflict(format!(
            "a REST API VPC link accepts only Network Load Balancers, and {arn} is {}: put an \
             internal NLB in front of it (target group of type alb) and link to the NLB",
            match other {
                Some(t) => format!("a load balancer of type {}", t.as_str()),
                None => "not a load balancer payops can see".to_owned(),
            }
        ))),
    }
}

fn api_gateway_tags_arn(cx: &Context, id: &str) -> String {
    format!(
        "arn:{}:apigateway:{}::/vpclinks/{id}",
        cx.partition(),
        cx.region
    )
}

impl VpcLink {
    fn target<'a>(step: &'a StepCx<'_>) -> Result<&'a str, AwsError> {
        Ok(step.output("load-balancer:nlb", "NlbArn")?)
    }

    /// Asks ELB what the target is, rather than trusting its ARN's shape.
    async fn check(&self, cx: &Context, arn: &str) -> Result<(), AwsError> {
        let out = cx
            .clients
            .elb
            .describe_load_balancers()
            .load_balancer_arns(arn)
            .send()
            .await
            .op("elbv2:DescribeLoadBalancers");
        let lb_type = absent_on(out, &["LoadBalancerNotFound"])?.and_then(|o| {
            o.load_balancers()
                .iter()
                .find(|lb| lb.load_balancer_arn() == Some(arn))
                .and_then(|lb| lb.r#type().cloned())
        });
        check_target(arn, lb_type.as_ref())
    }

    fn found(
        cx: &Context,
        id: Option<&str>,
        name: Option<&str>,
        targets: &[String],
        status: Option<&VpcLinkStatus>,
        tags: Option<&HashMap<String, String>>,
    ) -> Result<FoundVpcLink, AwsError> {
        let id = required(id, "apigateway:GetVpcLink", "id")?;
        let tags: TagMap = tags
            .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        cx.check_ours(format!("VPC link {id}"), &tags)?;
        Ok(FoundVpcLink {
            id: id.to_owned(),
            name: name.unwrap_or_default().to_owned(),
            targets: targets.to_vec(),
            status: status.cloned(),
            tags,
        })
    }

    async fn wait_available(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        id: &str,
    ) -> Result<(), AwsError> {
        let progress = |m: String| step.progress(m);
        poll_until(
            format!("VPC link {id} to become AVAILABLE (8-12 minutes on AWS)"),
            cx.budgets.vpc_link,
            &progress,
            || async {
                let out = cx
                    .clients
                    .apigateway
                    .get_vpc_link()
                    .vpc_link_id(id)
                    .send()
                    .await
                    .op("apigateway:GetVpcLink")?;
                match out.status() {
                    Some(VpcLinkStatus::Available) => Ok(Poll::Ready(())),
                    Some(VpcLinkStatus::Failed) => Err(AwsError::Conflict(format!(
                        "VPC link {id} failed: {}",
                        out.status_message().unwrap_or("no reason given")
                    ))),
                    other => Ok(Poll::Pending(
                        other.map_or("unknown", |s| s.as_str()).to_owned(),
                    )),
                }
            },
        )
        .await
    }
}

#[async_trait]
impl Resource for VpcLink {
    type Found = FoundVpcLink;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "apigateway:vpc-link"
    }

    /// Every link of the env's name (a retried create can have made two),
    /// the recorded one first: `down` removes them all.
    async fn find(&self, cx: &Context, step: &StepCx<'_>) -> Result<Vec<FoundVpcLink>, AwsError> {
        let name = cx.names.vpc_link();
        let pages: Vec<_> = cx
            .clients
            .apigateway
            .get_vpc_links()
            .into_paginator()
            .send()
            .collect()
            .await;
        let mut found = Vec::new();
        for page in pages {
            let page = page.op("apigateway:GetVpcLinks")?;
            for l in page.items() {
                // Gone or going: nothing left to own.
                if l.name() != Some(name.as_str()) || l.status() == Some(&VpcLinkStatus::Deleting) {
                    continue;
                }
                found.push(Self::found(
                    cx,
                    l.id(),
                    l.name(),
                    l.target_arns(),
                    l.status(),
                    l.tags(),
                )?);
            }
        }
        recorded_first(&mut found, step.previous_resource("vpc_link"), |l| &l.id);
        Ok(found)
    }

    /// CreateVpcLink has no idempotency token and names are not unique: a
    /// retried create whose first answer was lost leaves a second link.
    fn create_may_duplicate(&self) -> bool {
        true
    }

    /// The recorded one (listed first), or either right after a create (both
    /// are fresh). Which link the API's integrations use is the API's step to
    /// know; should the guess be wrong, AWS refuses to delete a link an
    /// integration references (BadRequestException), so nothing in use goes.
    fn keep_of_duplicates(&self, found: &[FoundVpcLink]) -> Option<usize> {
        (!found.is_empty()).then_some(0)
    }

    fn describe(&self, found: &FoundVpcLink) -> String {
        format!("{} ({})", found.id, found.name)
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<FoundVpcLink, AwsError> {
        let target = Self::target(step)?;
        self.check(cx, target).await?;
        let name = cx.names.vpc_link();
        let tags = cx.tagger.for_create(step.id().as_str());
        let out = cx
            .clients
            .apigateway
            .create_vpc_link()
            .name(&name)
            .description("payops: API Gateway to the internal NLB")
            .target_arns(target)
            .set_tags(Some(tags.clone().into_iter().collect()))
            .send()
            .await
            .op("apigateway:CreateVpcLink")?;
        let id = required(out.id(), "apigateway:CreateVpcLink", "id")?.to_owned();
        step.remember("vpc_link", &id);
        self.wait_available(cx, step, &id).await?;
        Ok(FoundVpcLink {
            id,
            name,
            targets: vec![target.to_owned()],
            status: Some(VpcLinkStatus::Available),
            tags,
        })
    }

    async fn diff(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: &FoundVpcLink,
    ) -> Result<Vec<Fix>, AwsError> {
        let target = Self::target(step)?;
        if found.targets != [target] {
            return Err(AwsError::Conflict(format!(
                "VPC link {} targets {:?}, not the env's NLB {target}; a VPC link's targets \
                 cannot change: run `payops down` first",
                found.id, found.targets
            )));
        }
        let mut fixes = Vec::new();
        match &found.status {
            Some(VpcLinkStatus::Available) => {}
            Some(VpcLinkStatus::Failed) => {
                return Err(AwsError::Conflict(format!(
                    "VPC link {} is FAILED; run `payops down` and `payops up` to build a new one",
                    found.id
                )));
            }
            _ => fixes.push(Fix::WaitAvailable),
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
        step: &StepCx<'_>,
        found: &mut FoundVpcLink,
        fix: Fix,
    ) -> Result<(), AwsError> {
        match fix {
            Fix::WaitAvailable => {
                self.wait_available(cx, step, &found.id).await?;
                found.status = Some(VpcLinkStatus::Available);
            }
            Fix::Tags(tags) => {
                cx.clients
                    .apigateway
                    .tag_resource()
                    .resource_arn(api_gateway_tags_arn(cx, &found.id))
                    .set_tags(Some(tags.clone().into_iter().collect()))
                    .send()
                    .await
                    .op("apigateway:TagResource")?;
                found.tags.extend(tags);
            }
        }
        Ok(())
    }

    fn record(&self, _cx: &Context, found: &FoundVpcLink) -> Record {
        Record::default()
            .resource("vpc_link", &found.id)
            .output("VpcLinkId", &found.id)
    }

    async fn delete(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: FoundVpcLink,
    ) -> Result<Vec<String>, AwsError> {
        let deleted = cx
            .clients
            .apigateway
            .delete_vpc_link()
            .vpc_link_id(&found.id)
            .send()
            .await
            .op("apigateway:DeleteVpcLink");
        if absent_on(deleted, &["NotFoundException"])?.is_none() {
            return Ok(Vec::new());
        }
        // The NLB cannot go while the link's endpoint service still uses it.
        let progress = |m: String| step.progress(m);
        wait_until_gone(
            format!("VPC link {} to be deleted", found.id),
            cx.budgets.vpc_link,
            &progress,
            &["NotFoundException"],
            || async {
                cx.clients
                    .apigateway
                    .get_vpc_link()
                    .vpc_link_id(&found.id)
                    .send()
                    .await
                    .op("apigateway:GetVpcLink")
            },
            |l| l.status().map_or("unknown", |s| s.as_str()).to_owned(),
        )
        .await?;
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use aws_sdk_apigateway::Client;
    use aws_sdk_apigateway::operation::{
        create_vpc_link::CreateVpcLinkOutput,
        delete_vpc_link::{DeleteVpcLinkError, DeleteVpcLinkOutput},
        get_vpc_link::{GetVpcLinkError, GetVpcLinkOutput},
        get_vpc_links::GetVpcLinksOutput,
        tag_resource::TagResourceOutput,
    };
    use aws_sdk_apigateway::types::VpcLink as ApiVpcLink;
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    use super::*;
    use crate::engine::{Change, Removed, Step, StepEvents, StepId};
    use crate::resources::resource::Node;
    use crate::resources::testing;
    use crate::resources::testing::elb as fake;

    const STEP: &str = "vpc-link";

    fn inputs(target: &str) -> Vec<(&'static str, Record)> {
        vec![(
            "load-balancer:nlb",
            Record::default().output("NlbArn", target),
        )]
    }

    fn link(status: VpcLinkStatus, tags: TagMap) -> ApiVpcLink {
        ApiVpcLink::builder()
            .id("vl-1")
            .name("payops-pr1-vpc-link")
            .target_arns(fake::NLB)
            .status(status)
            .set_tags(Some(tags.into_iter().collect()))
            .build()
    }

    fn listed(l: ApiVpcLink) -> Rule {
        mock!(Client::get_vpc_links).then_output(move || {
            GetVpcLinksOutput::builder()
                .items(l.clone())
                // Another env's link is not ours to look at.
                .items(
                    ApiVpcLink::builder()
                        .id("vl-9")
                        .name("payops-pr2-vpc-link")
                        .build(),
                )
                .build()
        })
    }

    fn context(api: &[&Rule], elb: &[&Rule]) -> Context {
        let mut clients = testing::clients();
        clients.apigateway = mock_client!(aws_sdk_apigateway, RuleMode::MatchAny, api);
        clients.elb = mock_client!(aws_sdk_elasticloadbalancingv2, RuleMode::MatchAny, elb);
        testing::context(clients)
    }

    #[test]
    fn only_network_load_balancers_can_be_linked() {
        assert!(check_target(fake::NLB, Some(&LoadBalancerTypeEnum::Network)).is_ok());
        let err = check_target(fake::ALB, Some(&LoadBalancerTypeEnum::Application))
            .unwrap_err()
            .to_string();
        assert!(err.contains("accepts only Network Load Balancers"), "{err}");
        assert!(err.contains("type application"), "{err}");
        assert!(err.contains("target group of type alb"), "{err}");
        assert!(check_target(fake::ALB, None).is_err());
    }

    #[tokio::test]
    async fn a_link_to_an_alb_is_refused_before_anything_is_created() {
        let none =
            mock!(Client::get_vpc_links).then_output(|| GetVpcLinksOutput::builder().build());
        // No CreateVpcLink is mocked: calling it would fail differently.
        let cx = context(&[&none], &[&fake::describe_load_balancers()]);
        let err = testing::ensure(&cx, STEP, VpcLink, &inputs(fake::ALB))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("accepts only Network Load Balancers"), "{err}");
    }

    #[derive(Default)]
    struct Progress(Mutex<Vec<String>>);
    impl StepEvents for Progress {
        fn progress(&self, _: &StepId, m: &str) {
            self.0.lock().unwrap().push(m.to_owned());
        }
        fn remember(&self, _: &StepId, _: &str, _: &str) {}
    }

    #[tokio::test(start_paused = true)]
    async fn creates_a_tagged_link_to_the_nlb_and_waits_until_available() {
        let none =
            mock!(Client::get_vpc_links).then_output(|| GetVpcLinksOutput::builder().build());
        let create = mock!(Client::create_vpc_link)
            .match_requests(|r| {
                r.name() == Some("payops-pr1-vpc-link")
                    && r.target_arns() == [fake::NLB]
                    && r.tags().is_some_and(|t| t["payops:step"] == STEP)
            })
            .then_output(|| {
                CreateVpcLinkOutput::builder()
                    .id("vl-1")
                    .status(VpcLinkStatus::Pending)
                    .build()
            });
        let status = mock!(Client::get_vpc_link)
            .sequence()
            .output(|| {
                GetVpcLinkOutput::builder()
                    .status(VpcLinkStatus::Pending)
                    .build()
            })
            .times(3)
            .output(|| {
                GetVpcLinkOutput::builder()
                    .status(VpcLinkStatus::Available)
                    .build()
            })
            .build();
        let cx = context(
            &[&none, &create, &status],
            &[&fake::describe_load_balancers()],
        );
        let id = StepId::from(STEP);
        let events = Progress::default();
        let step = crate::engine::StepCx::standalone(
            &id,
            inputs(fake::NLB)
                .into_iter()
                .map(|(k, r)| (StepId::from(k), r))
                .collect(),
            None,
            &events,
        );
        let found = VpcLink.create(&cx, &step).await.unwrap();
        assert_eq!(found.id, "vl-1");
        assert_eq!(status.num_calls(), 4);
        let progress = events.0.lock().unwrap();
        assert!(
            progress
                .iter()
                .any(|m| m.contains("8-12 minutes on AWS") && m.contains("PENDING")),
            "{progress:?}"
        );
    }

    #[tokio::test]
    async fn an_owned_available_link_is_adopted_without_mutating_calls() {
        let cx = context(
            &[&listed(link(
                VpcLinkStatus::Available,
                testing::our_tags(STEP),
            ))],
            &[],
        );
        let applied = testing::ensure(&cx, STEP, VpcLink, &inputs(fake::NLB))
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Unchanged, "{:?}", applied.notes);
        assert_eq!(applied.record.outputs["VpcLinkId"], "vl-1");
    }

    #[tokio::test]
    async fn a_link_with_our_name_but_not_our_tags_is_refused() {
        let cx = context(
            &[&listed(link(VpcLinkStatus::Available, TagMap::new()))],
            &[],
        );
        let err = testing::ensure(&cx, STEP, VpcLink, &inputs(fake::NLB))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not tagged"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_link_left_pending_is_waited_for_and_missing_tags_added() {
        let mut tags = testing::our_tags(STEP);
        tags.remove("CostCenter");
        let status = mock!(Client::get_vpc_link).then_output(|| {
            GetVpcLinkOutput::builder()
                .status(VpcLinkStatus::Available)
                .build()
        });
        let tag = mock!(Client::tag_resource)
            .match_requests(|r| {
                r.resource_arn() == Some("arn:aws:apigateway:us-east-1::/vpclinks/vl-1")
                    && r.tags().is_some_and(|t| t.len() == 1)
            })
            .then_output(|| TagResourceOutput::builder().build());
        let cx = context(
            &[&listed(link(VpcLinkStatus::Pending, tags)), &status, &tag],
            &[],
        );
        let applied = testing::ensure(&cx, STEP, VpcLink, &inputs(fake::NLB))
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Updated);
        assert_eq!((status.num_calls(), tag.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn a_link_to_another_target_is_a_conflict() {
        let mut other = link(VpcLinkStatus::Available, testing::our_tags(STEP));
        other.target_arns = Some(vec![fake::ALB.to_owned()]);
        let cx = context(&[&listed(other)], &[]);
        let err = testing::ensure(&cx, STEP, VpcLink, &inputs(fake::NLB))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("cannot change"), "{err}");
    }

    /// CreateVpcLink has no client token and names are not unique: a create
    /// whose answer was lost and that the SDK retried leaves a second link.
    /// The recorded one is kept (its id is what the API's integrations were
    /// given), the other deleted; `down` deletes both.
    #[tokio::test(start_paused = true)]
    async fn of_two_links_the_recorded_one_is_kept_and_down_removes_both() {
        let two = mock!(Client::get_vpc_links).then_output(|| {
            let l = |id: &str| {
                let mut l = link(VpcLinkStatus::Available, testing::our_tags(STEP));
                l.id = Some(id.to_owned());
                l
            };
            GetVpcLinksOutput::builder()
                .items(l("vl-extra"))
                .items(l("vl-recorded"))
                .build()
        });
        let delete =
            mock!(Client::delete_vpc_link).then_output(|| DeleteVpcLinkOutput::builder().build());
        let gone = mock!(Client::get_vpc_link)
            .then_error(|| GetVpcLinkError::generic(testing::error_meta("NotFoundException")));
        let cx = context(&[&two, &delete, &gone], &[]);
        let id = StepId::from(STEP);
        let events = Progress::default();
        let step = crate::engine::StepCx::standalone(
            &id,
            Default::default(),
            Some(Record::default().resource("vpc_link", "vl-recorded")),
            &events,
        );
        let found = VpcLink.find(&cx, &step).await.unwrap();
        let keep = VpcLink.keep_of_duplicates(&found).unwrap();
        assert_eq!(found[keep].id, "vl-recorded");
        let removed = Node::new(STEP, VpcLink, vec![])
            .destroy(&cx, &step)
            .await
            .unwrap();
        assert!(matches!(removed, Removed::Deleted { .. }));
        assert_eq!(delete.num_calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn delete_waits_until_the_link_is_gone() {
        let delete =
            mock!(Client::delete_vpc_link).then_output(|| DeleteVpcLinkOutput::builder().build());
        let status = mock!(Client::get_vpc_link)
            .sequence()
            .output(|| {
                GetVpcLinkOutput::builder()
                    .status(VpcLinkStatus::Deleting)
                    .build()
            })
            .error(|| GetVpcLinkError::generic(testing::error_meta("NotFoundException")))
            .build();
        let cx = context(
            &[
                &listed(link(VpcLinkStatus::Available, testing::our_tags(STEP))),
                &delete,
                &status,
            ],
            &[],
        );
        let removed = testing::destroy(&cx, STEP, VpcLink).await.unwrap();
        assert!(matches!(removed, Removed::Deleted { .. }));
        assert_eq!(status.num_calls(), 2);
        let gone = mock!(Client::delete_vpc_link)
            .then_error(|| DeleteVpcLinkError::generic(testing::error_meta("NotFoundException")));
        let cx = context(
            &[
                &listed(link(VpcLinkStatus::Available, testing::our_tags(STEP))),
                &gone,
            ],
            &[],
        );
        assert!(testing::destroy(&cx, STEP, VpcLink).await.is_ok());
        let none =
            mock!(Client::get_vpc_links).then_output(|| GetVpcLinksOutput::builder().build());
        let cx = context(&[&none], &[]);
        assert_eq!(
            testing::destroy(&cx, STEP, VpcLink).await.unwrap(),
            Removed::AlreadyAbsent
        );
    }
}
