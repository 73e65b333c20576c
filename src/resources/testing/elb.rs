//! A small ELB world for tests: the env's load balancers, target groups and
//! listeners, all tagged as pr1's.
//! (Test scaffolding may name every domain: it builds what their steps made.)

use aws_sdk_elasticloadbalancingv2::Client;
use aws_sdk_elasticloadbalancingv2::operation::describe_listeners::DescribeListenersOutput;
use aws_sdk_elasticloadbalancingv2::operation::describe_load_balancers::DescribeLoadBalancersOutput;
use aws_sdk_elasticloadbalancingv2::operation::describe_tags::DescribeTagsOutput;
use aws_sdk_elasticloadbalancingv2::operation::describe_target_groups::DescribeTargetGroupsOutput;
use aws_sdk_elasticloadbalancingv2::types::{
    AvailabilityZone, Certificate, Listener, LoadBalancer, LoadBalancerSchemeEnum,
    LoadBalancerState, LoadBalancerStateEnum, LoadBalancerTypeEnum, ProtocolEnum, TagDescription,
    TargetGroup, TargetTypeEnum,
};
use aws_smithy_mocks::{Rule, mock};

use crate::resources::testing;
use crate::resources::traffic::{self, Weights};

pub const ALB: &str =
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/payops-pr1-alb/a1";
pub const NLB: &str =
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/payops-pr1-nlb/n1";
pub const BLUE: &str =
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/payops-pr1-blue/b1";
pub const GREEN: &str =
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/payops-pr1-green/g1";
pub const TO_ALB: &str =
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/payops-pr1-alb/t1";
pub const HTTPS: &str =
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/payops-pr1-alb/a1/l1";
pub const TCP: &str =
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/net/payops-pr1-nlb/n1/l2";
pub const CERT: &str = "arn:aws:acm:us-east-1:123456789012:certificate/c1";

/// The step that made the resource behind `arn`.
fn step_of(arn: &str) -> &'static str {
    match arn {
        ALB => "load-balancer:alb",
        NLB => "load-balancer:nlb",
        BLUE => "target-group:blue",
        GREEN => "target-group:green",
        TO_ALB => "target-group:alb",
        HTTPS => "listener:alb-https",
        TCP => "listener:nlb-tcp",
        _ => "unknown",
    }
}

pub fn tags(step: &str) -> Vec<aws_sdk_elasticloadbalancingv2::types::Tag> {
    crate::resources::sdk::elb::tag_list(&testing::our_tags(step))
}

/// DescribeTags answering each ARN with its step's payops tags.
pub fn describe_tags() -> Rule {
    mock!(Client::describe_tags).then_compute_output(|req| {
        let mut out = DescribeTagsOutput::builder();
        for arn in req.resource_arns() {
            out = out.tag_descriptions(
                TagDescription::builder()
                    .resource_arn(arn)
                    .set_tags(Some(tags(step_of(arn))))
                    .build(),
            );
        }
        out.build()
    })
}

pub fn load_balancer(kind: &str) -> LoadBalancer {
    let (arn, lb_type) = if kind == "alb" {
        (ALB, LoadBalancerTypeEnum::Application)
    } else {
        (NLB, LoadBalancerTypeEnum::Network)
    };
    let mut lb = LoadBalancer::builder()
        .load_balancer_arn(arn)
        .load_balancer_name(format!("payops-pr1-{kind}"))
        .dns_name(format!(
            "internal-payops-pr1-{kind}-1.us-east-1.elb.amazonaws.com"
        ))
        .r#type(lb_type)
        .scheme(LoadBalancerSchemeEnum::Internal)
        .state(
            LoadBalancerState::builder()
                .code(LoadBalancerStateEnum::Active)
                .build(),
        )
        .security_groups(format!("sg-{kind}"));
    if kind == "nlb" {
        // As payops leaves it: the VPC link's PrivateLink traffic not filtered.
        lb = lb.enforce_security_group_inbound_rules_on_private_link_traffic("off");
    }
    for subnet in ["subnet-a", "subnet-b", "subnet-c"] {
        lb = lb.availability_zones(AvailabilityZone::builder().subnet_id(subnet).build());
    }
    lb.build()
}

/// DescribeLoadBalancers by name or ARN, for the env's ALB and NLB.
pub fn describe_load_balancers() -> Rule {
    mock!(Client::describe_load_balancers).then_compute_output(|req| {
        let mut out = DescribeLoadBalancersOutput::builder();
        for kind in ["alb", "nlb"] {
            let lb = load_balancer(kind);
            let by_name = req
                .names()
                .contains(&lb.load_balancer_name().unwrap().to_owned());
            let by_arn = req
                .load_balancer_arns()
                .contains(&lb.load_balancer_arn().unwrap().to_owned());
            if by_name || by_arn {
                out = out.load_balancers(lb);
            }
        }
        out.build()
    })
}

pub fn target_group(name: &str) -> TargetGroup {
    let (arn, kind) = match name {
        "blue" => (BLUE, TargetTypeEnum::Lambda),
        "green" => (GREEN, TargetTypeEnum::Lambda),
        _ => (TO_ALB, TargetTypeEnum::Alb),
    };
    TargetGroup::builder()
        .target_group_arn(arn)
        .target_group_name(format!("payops-pr1-{name}"))
        .target_type(kind)
        .build()
}

pub fn describe_target_groups() -> Rule {
    mock!(Client::describe_target_groups).then_compute_output(|req| {
        let mut out = DescribeTargetGroupsOutput::builder();
        for name in ["blue", "green", "alb"] {
            if req.names().contains(&format!("payops-pr1-{name}")) {
                out = out.target_groups(target_group(name));
            }
        }
        out.build()
    })
}

pub fn https_listener(w: Weights) -> Listener {
    Listener::builder()
        .listener_arn(HTTPS)
        .load_balancer_arn(ALB)
        .port(443)
        .protocol(ProtocolEnum::Https)
        .ssl_policy(crate::resources::edge::listener::SSL_POLICY)
        .certificates(Certificate::builder().certificate_arn(CERT).build())
        .default_actions(traffic::forward(BLUE, GREEN, w))
        .build()
}

/// DescribeListeners: the ALB's HTTPS listener at weights `w`.
pub fn describe_listeners(w: Weights) -> Rule {
    mock!(Client::describe_listeners)
        .match_requests(|r| r.load_balancer_arn() == Some(ALB))
        .then_output(move || {
            DescribeListenersOutput::builder()
                .listeners(https_listener(w))
                .build()
        })
}

/// Everything `traffic::weights` reads, at weights `w`.
pub fn traffic(w: Weights) -> Vec<Rule> {
    vec![
        describe_load_balancers(),
        describe_tags(),
        describe_target_groups(),
        describe_listeners(w),
    ]
}
