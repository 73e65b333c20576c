//! The request path from the edge in: API Gateway -> VPC link -> internal
//! NLB -> internal ALB (its certificate, log bucket and listeners) ->
//! blue/green target groups -> the transaction function's aliases; and the
//! AWS WAF web ACL in front of the API stage and the ALB, with its log
//! bucket.

pub mod api_account;
pub mod api_definition;
pub mod api_usage_plan;
pub mod certificate;
pub mod listener;
pub mod load_balancer;
pub mod rest_api;
pub mod target_group;
pub mod vpc_link;
pub mod waf_logging;
pub mod web_acl;
pub mod web_acl_association;

use crate::spec::{Certificate, EnvSpec};

use super::common::{log_group, s3_bucket};
use super::model::Function;
use super::registry::{Registry, dep, function_config_deps};
use listener::ListenerKind;
use load_balancer::LbKind;
use target_group::TgKind;
use web_acl_association::Target;

pub fn register(r: &mut Registry, spec: &EnvSpec) {
    // Traffic: API Gateway -> VPC link -> internal NLB -> internal ALB ->
    // blue/green target groups -> the transaction function's aliases.
    r.add("s3-bucket:alb-logs", s3_bucket::Bucket::alb_logs(), vec![]);
    r.add(
        "load-balancer:alb",
        load_balancer::LoadBalancer::new(LbKind::Alb),
        vec![
            dep(
                "subnets:private",
                "the internal ALB lives in the private subnets",
            ),
            dep("security-group:alb", "the ALB uses the ALB security group"),
            dep(
                "s3-bucket:alb-logs",
                "access logs go to this bucket, whose policy must let ELB write before they are \
                 turned on",
            ),
        ],
    );
    let self_signed = spec.certificate == Certificate::SelfSigned;
    r.add(
        "acm-certificate:alb",
        certificate::SelfSignedCertificate,
        if self_signed {
            vec![]
        } else {
            vec![
                dep(
                    "listener:alb-https",
                    "with --certificate-arn the listener moves to the operator's certificate \
                     before payops' self-signed one is removed",
                ),
                dep(
                    "listener:maintenance",
                    "with --certificate-arn the maintenance listener moves to the operator's \
                     certificate before payops' self-signed one is removed",
                ),
            ]
        },
    );
    for kind in [TgKind::Blue, TgKind::Green] {
        let id = if kind == TgKind::Blue {
            "target-group:blue"
        } else {
            "target-group:green"
        };
        let mut deps = vec![dep(
            Function::Transaction.step_id(),
            "the group's only target is the transaction function's alias of the same name",
        )];
        deps.extend(function_config_deps());
        r.add(id, target_group::TargetGroup::new(kind), deps);
    }
    let mut listener_deps = vec![
        dep("load-balancer:alb", "the listener belongs to the ALB"),
        dep(
            "target-group:blue",
            "the listener forwards to the blue target group",
        ),
        dep(
            "target-group:green",
            "the listener forwards to the green target group",
        ),
    ];
    if self_signed {
        listener_deps.push(dep(
            "acm-certificate:alb",
            "the HTTPS listener presents this certificate",
        ));
    }
    r.add(
        "listener:alb-https",
        listener::Listener::new(ListenerKind::AlbHttps),
        listener_deps,
    );
    // The payments SECONDARY record's target (`dns`): an ALB that answers
    // a fixed 503, sharing nothing with the Lambdas behind the main one.
    r.add(
        "load-balancer:maintenance",
        load_balancer::LoadBalancer::new(LbKind::Maintenance),
        vec![
            dep(
                "subnets:private",
                "the internal maintenance ALB lives in the private subnets",
            ),
            dep(
                "security-group:alb",
                "it takes the ALB's group: the same clients on the same port",
            ),
        ],
    );
    let mut maintenance_deps = vec![dep(
        "load-balancer:maintenance",
        "the listener belongs to the maintenance ALB",
    )];
    if self_signed {
        maintenance_deps.push(dep(
            "acm-certificate:alb",
            "the maintenance listener presents the ALB's certificate",
        ));
    }
    r.add(
        "listener:maintenance",
        listener::Listener::new(ListenerKind::MaintenanceHttps),
        maintenance_deps,
    );
    r.add(
        "load-balancer:nlb",
        load_balancer::LoadBalancer::new(LbKind::Nlb),
        vec![
            dep(
                "subnets:private",
                "the internal NLB lives in the private subnets",
            ),
            dep("security-group:nlb", "the NLB uses the NLB security group"),
        ],
    );
    r.add(
        "target-group:alb",
        target_group::TargetGroup::new(TgKind::Alb),
        vec![
            dep("vpc", "a target group of type alb belongs to the VPC"),
            dep("load-balancer:alb", "the group's only target is the ALB"),
            dep(
                "listener:alb-https",
                "AWS registers an ALB as a target only once it listens on the group's port",
            ),
        ],
    );
    r.add(
        "listener:nlb-tcp",
        listener::Listener::new(ListenerKind::NlbTcp),
        vec![
            dep("load-balancer:nlb", "the listener belongs to the NLB"),
            dep(
                "target-group:alb",
                "the listener forwards to the ALB's target group",
            ),
        ],
    );
    r.add(
        "vpc-link",
        vpc_link::VpcLink,
        vec![dep(
            "load-balancer:nlb",
            "a REST API VPC link targets an NLB; it takes ~12 minutes on AWS, so it starts as \
             soon as the NLB exists",
        )],
    );
    r.add(
        "log-group:api-access",
        log_group::LogGroup::new("api-gateway/access", 365, "ApiAccess"),
        vec![dep(
            "kms-key:logs",
            "the group is encrypted with the logs key, whose policy lets CloudWatch Logs use it",
        )],
    );
    r.add(
        "rest-api:payments",
        rest_api::RestApi,
        vec![
            dep(
                Function::Validation.step_id(),
                "POST /payments/validate invokes the validation function",
            ),
            dep(
                Function::Fraud.step_id(),
                "POST /payments/fraud-check invokes the fraud detection function",
            ),
            dep("vpc-link", "POST /payments goes through the VPC link"),
            dep(
                "load-balancer:nlb",
                "the integration URI names the NLB (and on teardown the API goes first)",
            ),
            dep(
                "listener:nlb-tcp",
                "requests through the VPC link need the NLB's listener",
            ),
            dep(
                "log-group:api-access",
                "stage v1 writes its access logs to this group",
            ),
        ]
        .into_iter()
        .chain(function_config_deps())
        .collect(),
    );
    r.add(
        "usage-plan:payments",
        api_usage_plan::UsagePlan,
        vec![dep(
            "rest-api:payments",
            "the plan admits its keys to the API's stage v1, which must exist first (and goes \
             after the plan on teardown)",
        )],
    );
    register_waf(r);
}

/// The web ACL, where it logs, and what it protects.
fn register_waf(r: &mut Registry) {
    r.add(
        "s3-bucket:waf-logs",
        s3_bucket::Bucket::waf_logs(),
        vec![dep(
            "kms-key:s3",
            "default encryption is SSE-KMS with the S3 key, whose policy lets the log delivery \
             service use it",
        )],
    );
    r.add("web-acl", web_acl::WebAcl, vec![]);
    r.add(
        "waf-logging",
        waf_logging::WafLogging,
        vec![
            dep(
                "web-acl",
                "the logging configuration belongs to the web ACL",
            ),
            dep(
                "s3-bucket:waf-logs",
                "blocked requests are logged to this bucket, whose policy must let the log \
                 delivery service write first",
            ),
        ],
    );
    for (target, on, reason) in [
        (
            Target::ApiStage,
            "rest-api:payments",
            "the ACL protects the API's stage v1 (and on teardown lets go of it before the API \
             goes)",
        ),
        (
            Target::Alb,
            "load-balancer:alb",
            "the ACL protects the internal ALB (and on teardown lets go of it before the ALB \
             goes)",
        ),
    ] {
        r.add(
            target.step_id(),
            web_acl_association::Association::new(target),
            vec![
                dep(
                    "web-acl",
                    "associates this web ACL, and is removed before it (WAF refuses to delete an \
                     associated ACL)",
                ),
                dep(on, reason),
            ],
        );
    }
}
