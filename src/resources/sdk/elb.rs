//! Helpers the Elastic Load Balancing resources share: finding load balancers
//! and target groups by their deterministic names, and their tags.

use aws_sdk_elasticloadbalancingv2::types::{LoadBalancer, Tag, TargetGroup};

use crate::aws::{AwsError, OpResult, absent_on};
use crate::tags::{self, TagMap};

use crate::resources::context::Context;
use crate::resources::model::{BLUE, GREEN};

/// Tags as ELB takes them.
pub fn tag_list(tags: &TagMap) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// The tags of one load balancer, target group or listener.
pub async fn tags_of(cx: &Context, arn: &str) -> Result<TagMap, AwsError> {
    if let Some(tags) = cx.listed_tags(arn).await {
        return Ok(tags);
    }
    let out = cx
        .clients
        .elb
        .describe_tags()
        .resource_arns(arn)
        .send()
        .await
        .op("elbv2:DescribeTags")?;
    Ok(out
        .tag_descriptions()
        .iter()
        .filter(|d| d.resource_arn() == Some(arn))
        .flat_map(|d| tags::to_map(d.tags(), |t| (t.key(), t.value())))
        .collect())
}

pub async fn add_tags(cx: &Context, arn: &str, tags: &TagMap) -> Result<(), AwsError> {
    cx.clients
        .elb
        .add_tags()
        .resource_arns(arn)
        .set_tags(Some(tag_list(tags)))
        .send()
        .await
        .op("elbv2:AddTags")?;
    Ok(())
}

/// The load balancer named `name`, if any (ownership not checked).
pub async fn load_balancer(cx: &Context, name: &str) -> Result<Option<LoadBalancer>, AwsError> {
    // Both of the env's in one read its steps share; when one is missing
    // the batch is refused (LoadBalancerNotFound) and each is read alone.
    let ours = [cx.names.load_balancer("alb"), cx.names.load_balancer("nlb")];
    // (Only where reads are shared at all: alone, a batch is no gain.)
    if cx.clients.counter.tracks_changes() && ours.iter().any(|n| n == name) {
        let both = cx
            .shared_read("elbv2:DescribeLoadBalancers", || async {
                let out = cx
                    .clients
                    .elb
                    .describe_load_balancers()
                    .set_names(Some(ours.to_vec()))
                    .send()
                    .await
                    .op("elbv2:DescribeLoadBalancers");
                Ok(absent_on(out, &["LoadBalancerNotFound"])?.map(|o| o.load_balancers().to_vec()))
            })
            .await?;
        if let Some(lbs) = both.as_ref() {
            return Ok(lbs
                .iter()
                .find(|lb| lb.load_balancer_name() == Some(name))
                .cloned());
        }
    }
    let out = cx
        .clients
        .elb
        .describe_load_balancers()
        .names(name)
        .send()
        .await
        .op("elbv2:DescribeLoadBalancers");
    Ok(absent_on(out, &["LoadBalancerNotFound"])?.and_then(|o| {
        o.load_balancers()
            .iter()
            .find(|lb| lb.load_balancer_name() == Some(name))
            .cloned()
    }))
}

/// The target group named `name`, if any (ownership not checked).
pub async fn target_group(cx: &Context, name: &str) -> Result<Option<TargetGroup>, AwsError> {
    // The env's three in one read, as for load balancers.
    let ours = [BLUE, GREEN, "alb"].map(|t| cx.names.target_group(t));
    if cx.clients.counter.tracks_changes() && ours.iter().any(|n| n == name) {
        let all = cx
            .shared_read("elbv2:DescribeTargetGroups", || async {
                let out = cx
                    .clients
                    .elb
                    .describe_target_groups()
                    .set_names(Some(ours.to_vec()))
                    .send()
                    .await
                    .op("elbv2:DescribeTargetGroups");
                Ok(absent_on(out, &["TargetGroupNotFound"])?.map(|o| o.target_groups().to_vec()))
            })
            .await?;
        if let Some(tgs) = all.as_ref() {
            return Ok(tgs
                .iter()
                .find(|tg| tg.target_group_name() == Some(name))
                .cloned());
        }
    }
    let out = cx
        .clients
        .elb
        .describe_target_groups()
        .names(name)
        .send()
        .await
        .op("elbv2:DescribeTargetGroups");
    Ok(absent_on(out, &["TargetGroupNotFound"])?.and_then(|o| {
        o.target_groups()
            .iter()
            .find(|tg| tg.target_group_name() == Some(name))
            .cloned()
    }))
}
