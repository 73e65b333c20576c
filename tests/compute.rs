//! Integration tests of the request path (issue 3): functions, load
//! balancers, VPC link, REST API, and `payops shift`, each checked through
//! the AWS SDK against a local emulator (see tests/common/mod.rs).
//!
//! ```sh
//! PAYOPS_TEST_ENDPOINT=http://127.0.0.1:5199 PAYOPS_TEST_EMULATOR=moto \
//!     cargo nextest run --test compute --run-ignored only
//! ```

mod common;

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_apigateway::types::{ConnectionType, EndpointType, IntegrationType};
use aws_sdk_elasticloadbalancingv2::types::{
    LoadBalancerSchemeEnum, LoadBalancerTypeEnum, ProtocolEnum, TargetTypeEnum,
};
use aws_sdk_lambda::types::{LogFormat, TracingMode};
use aws_sdk_wafv2::types::{ActionValue, FilterBehavior, ResourceType, Scope};
use serde_json::Value;

use common::{
    Aws, FUNCTIONS, REGION, STEP_COUNT, TestEnv, assert_no_mutation, assert_payops_tags,
    compute_remaining, not_equal_to, outcomes, output, remaining, strings,
};

/// Outputs of the request path other teams read.
const OUTPUTS: [&str; 13] = [
    "ValidationFunctionArn",
    "FraudFunctionArn",
    "TransactionFunctionArn",
    "AlbArn",
    "AlbDnsName",
    "BlueTargetGroupArn",
    "GreenTargetGroupArn",
    "NlbArn",
    "VpcLinkId",
    "RestApiId",
    "ApiEndpoint",
    "WebAclArn",
    "WafLogBucketName",
];

fn statements(policy: &Value) -> Vec<Value> {
    match &policy["Statement"] {
        Value::Array(s) => s.clone(),
        s @ Value::Object(_) => vec![s.clone()],
        _ => Vec::new(),
    }
}

fn tags(map: Option<&std::collections::HashMap<String, String>>) -> common::Tags {
    map.map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// The listener's weights by target group ARN.
async fn weights(aws: &Aws, outputs: &BTreeMap<String, String>) -> (i32, i32) {
    let listeners = aws
        .c
        .elb
        .describe_listeners()
        .load_balancer_arn(output(outputs, "AlbArn"))
        .send()
        .await
        .expect("DescribeListeners");
    let listener = listeners
        .listeners()
        .iter()
        .find(|l| l.port() == Some(443))
        .expect("an HTTPS listener on 443");
    let groups = listener.default_actions()[0]
        .forward_config()
        .expect("a weighted forward")
        .target_groups();
    let weight = |key: &str| {
        groups
            .iter()
            .find(|g| g.target_group_arn() == Some(output(outputs, key)))
            .and_then(|g| g.weight())
            .unwrap_or_else(|| panic!("{key} is not in the forward: {groups:?}"))
    };
    (weight("BlueTargetGroupArn"), weight("GreenTargetGroupArn"))
}

async fn alias_version(aws: &Aws, env: &str, alias: &str) -> String {
    aws.c
        .lambda
        .get_alias()
        .function_name(format!("payops-{env}-transaction-processing"))
        .name(alias)
        .send()
        .await
        .expect("GetAlias")
        .function_version()
        .expect("alias version")
        .to_owned()
}

// ===================================================================== 1

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an AWS emulator: make test-integration"]
async fn up_builds_the_request_path_as_specified() {
    let env = TestEnv::new();
    let aws = Aws::connect().await;
    env.up_json(&[]);
    let outputs = env.outputs();
    let name = env.name.as_str();
    for key in OUTPUTS {
        assert!(!output(&outputs, key).is_empty(), "output {key} is empty");
    }
    assert_eq!(
        output(&outputs, "ApiEndpoint"),
        format!(
            "https://{}.execute-api.{REGION}.amazonaws.com/v1",
            output(&outputs, "RestApiId")
        )
    );

    check_functions(&aws, name, &outputs).await;
    check_roles(&aws, name).await;
    check_load_balancers(&aws, name, &outputs).await;
    check_target_groups_and_listeners(&aws, name, &outputs).await;
    check_vpc_link(&aws, name, &outputs).await;
    check_rest_api(&aws, name, &outputs).await;
    check_access_log_bucket(&aws, name, &outputs).await;
    check_waf(&aws, name, &outputs).await;

    // Every output is also a configuration parameter.
    for key in OUTPUTS {
        let parameter = format!("/payops/{name}/{key}");
        let got = aws
            .c
            .ssm
            .get_parameter()
            .name(&parameter)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{parameter}: {e:?}"));
        assert_eq!(
            got.parameter().and_then(|p| p.value()),
            Some(output(&outputs, key)),
            "{parameter}"
        );
    }
}

async fn check_functions(aws: &Aws, env: &str, outputs: &BTreeMap<String, String>) {
    let private: BTreeSet<&str> = output(outputs, "PrivateSubnetIds").split(',').collect();
    let lambda_sg = output(outputs, "LambdaSecurityGroupId");
    let logs_key = output(outputs, "LogsKmsKeyArn");
    for (slug, reserved) in [
        ("payment-validation", 5),
        ("fraud-detection", 5),
        ("transaction-processing", 10),
    ] {
        let name = format!("payops-{env}-{slug}");
        let got = aws
            .c
            .lambda
            .get_function()
            .function_name(&name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GetFunction {name}: {e:?}"));
        let c = got.configuration().expect("configuration");
        assert_eq!(
            c.runtime().map(|r| r.as_str()),
            Some("python3.12"),
            "{name}"
        );
        let vpc = c.vpc_config().expect("a VPC configuration");
        let subnets: BTreeSet<&str> = vpc.subnet_ids().iter().map(String::as_str).collect();
        assert_eq!(subnets, private, "{name} runs in the private subnets");
        assert_eq!(vpc.security_group_ids(), [lambda_sg], "{name}");
        assert_eq!(
            c.tracing_config().and_then(|t| t.mode()),
            Some(&TracingMode::Active),
            "{name}"
        );
        let log_group = format!("/payops/{env}/lambda/{slug}");
        let logging = c.logging_config().expect("logging configuration");
        assert_eq!(logging.log_group(), Some(log_group.as_str()), "{name}");
        assert_eq!(logging.log_format(), Some(&LogFormat::Json), "{name}");
        // Only the configuration path comes in the environment.
        let variables = c
            .environment()
            .and_then(|e| e.variables())
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            variables,
            [("PAYOPS_CONFIG_PATH".to_owned(), format!("/payops/{env}/"))].into(),
            "{name}"
        );
        let concurrency = aws
            .c
            .lambda
            .get_function_concurrency()
            .function_name(&name)
            .send()
            .await
            .expect("GetFunctionConcurrency");
        assert_eq!(
            concurrency.reserved_concurrent_executions(),
            Some(reserved),
            "{name}"
        );
        assert_payops_tags(
            &name,
            &tags(got.tags()),
            env,
            &format!("lambda-function:{slug}"),
        );

        // Its log group was made by payops: KMS and bounded retention.
        let groups = aws
            .c
            .logs
            .describe_log_groups()
            .log_group_name_prefix(&log_group)
            .send()
            .await
            .expect("DescribeLogGroups");
        let group = groups
            .log_groups()
            .iter()
            .find(|g| g.log_group_name() == Some(log_group.as_str()))
            .unwrap_or_else(|| panic!("log group {log_group} exists"));
        assert_eq!(group.kms_key_id(), Some(logs_key), "{log_group}");
        assert_eq!(group.retention_in_days(), Some(90), "{log_group}");
    }
    let transaction = format!("payops-{env}-transaction-processing");
    for alias in ["blue", "green"] {
        assert_eq!(
            alias_version(aws, env, alias).await,
            "1",
            "{transaction}:{alias} starts at the first version"
        );
    }
    assert_eq!(
        output(outputs, "TransactionFunctionArn"),
        format!(
            "arn:aws:lambda:{REGION}:{}:function:{transaction}",
            aws.account
        )
    );
}

async fn check_roles(aws: &Aws, env: &str) {
    for slug in FUNCTIONS {
        let role = format!("payops-{env}-{REGION}-{slug}");
        let got = aws
            .c
            .iam
            .get_role()
            .role_name(&role)
            .send()
            .await
            .expect("GetRole");
        let trust = got
            .role()
            .and_then(|r| r.assume_role_policy_document())
            .expect("trust policy");
        let trust: Value = serde_json::from_str(
            &percent_encoding::percent_decode_str(trust)
                .decode_utf8()
                .expect("utf-8"),
        )
        .expect("trust policy JSON");
        assert_eq!(
            statements(&trust)[0]["Principal"]["Service"],
            "lambda.amazonaws.com",
            "{role}"
        );
        let attached = aws
            .c
            .iam
            .list_attached_role_policies()
            .role_name(&role)
            .send()
            .await
            .expect("ListAttachedRolePolicies");
        assert!(
            attached.attached_policies().is_empty(),
            "{role}: managed policies"
        );
        let names = aws
            .c
            .iam
            .list_role_policies()
            .role_name(&role)
            .send()
            .await
            .expect("ListRolePolicies");
        assert!(
            !names.policy_names().is_empty(),
            "{role} has inline policies"
        );
        for policy in names.policy_names() {
            let doc = aws
                .c
                .iam
                .get_role_policy()
                .role_name(&role)
                .policy_name(policy)
                .send()
                .await
                .expect("GetRolePolicy");
            let doc: Value = serde_json::from_str(
                &percent_encoding::percent_decode_str(doc.policy_document())
                    .decode_utf8()
                    .expect("utf-8"),
            )
            .expect("policy JSON");
            for s in statements(&doc) {
                let actions = strings(&s["Action"]);
                assert!(
                    actions.iter().all(|a| a != "*" && !a.ends_with(":*")),
                    "{role}/{policy}: a wildcard action in {s}"
                );
                if strings(&s["Resource"]).iter().any(|r| r == "*") {
                    assert!(
                        actions
                            .iter()
                            .all(|a| a.starts_with("ec2:") || a.starts_with("xray:")),
                        "{role}/{policy}: `*` resource for {actions:?}"
                    );
                }
            }
        }
    }
}

async fn check_load_balancers(aws: &Aws, env: &str, outputs: &BTreeMap<String, String>) {
    let private: BTreeSet<&str> = output(outputs, "PrivateSubnetIds").split(',').collect();
    for (kind, lb_type, group) in [
        (
            "alb",
            LoadBalancerTypeEnum::Application,
            "AlbSecurityGroupId",
        ),
        ("nlb", LoadBalancerTypeEnum::Network, "NlbSecurityGroupId"),
    ] {
        let name = format!("payops-{env}-{kind}");
        let out = aws
            .c
            .elb
            .describe_load_balancers()
            .names(&name)
            .send()
            .await
            .expect("DescribeLoadBalancers");
        let lb = &out.load_balancers()[0];
        assert_eq!(lb.r#type(), Some(&lb_type), "{name}");
        assert_eq!(
            lb.scheme(),
            Some(&LoadBalancerSchemeEnum::Internal),
            "{name}"
        );
        let subnets: BTreeSet<&str> = lb
            .availability_zones()
            .iter()
            .filter_map(|z| z.subnet_id())
            .collect();
        assert_eq!(subnets, private, "{name} is in the private subnets");
        assert_eq!(lb.security_groups(), [output(outputs, group)], "{name}");
        if kind == "nlb" {
            // The VPC link reaches the NLB over PrivateLink: filtering that
            // traffic by the group (AWS's default, which the emulators are
            // patched to reproduce) would drop every POST /payments.
            assert_eq!(
                lb.enforce_security_group_inbound_rules_on_private_link_traffic(),
                Some("off"),
                "{name}"
            );
        }
        let arn_key = if kind == "alb" { "AlbArn" } else { "NlbArn" };
        assert_eq!(lb.load_balancer_arn(), Some(output(outputs, arn_key)));
    }
    let attributes = aws
        .c
        .elb
        .describe_load_balancer_attributes()
        .load_balancer_arn(output(outputs, "AlbArn"))
        .send()
        .await
        .expect("DescribeLoadBalancerAttributes");
    let attr = |key: &str| {
        attributes
            .attributes()
            .iter()
            .find(|a| a.key() == Some(key))
            .and_then(|a| a.value())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(attr("access_logs.s3.enabled"), "true");
    assert_eq!(
        attr("access_logs.s3.bucket"),
        output(outputs, "AlbLogsBucketName")
    );
    assert_eq!(attr("access_logs.s3.prefix"), "alb");
}

async fn check_target_groups_and_listeners(
    aws: &Aws,
    env: &str,
    outputs: &BTreeMap<String, String>,
) {
    let transaction = output(outputs, "TransactionFunctionArn");
    for (slot, key) in [
        ("blue", "BlueTargetGroupArn"),
        ("green", "GreenTargetGroupArn"),
    ] {
        let arn = output(outputs, key);
        let out = aws
            .c
            .elb
            .describe_target_groups()
            .target_group_arns(arn)
            .send()
            .await
            .expect("DescribeTargetGroups");
        let tg = &out.target_groups()[0];
        assert_eq!(tg.target_type(), Some(&TargetTypeEnum::Lambda), "{slot}");
        assert_eq!(
            tg.target_group_name(),
            Some(format!("payops-{env}-{slot}").as_str())
        );
        let health = aws
            .c
            .elb
            .describe_target_health()
            .target_group_arn(arn)
            .send()
            .await
            .expect("DescribeTargetHealth");
        let targets: Vec<&str> = health
            .target_health_descriptions()
            .iter()
            .filter_map(|d| d.target().and_then(|t| t.id()))
            .collect();
        assert_eq!(
            targets,
            [format!("{transaction}:{slot}")],
            "{slot}'s target is its alias"
        );
    }
    assert_eq!(
        weights(aws, outputs).await,
        (100, 0),
        "blue 100 / green 0 at creation"
    );

    let listeners = aws
        .c
        .elb
        .describe_listeners()
        .load_balancer_arn(output(outputs, "AlbArn"))
        .send()
        .await
        .expect("DescribeListeners");
    let https = &listeners.listeners()[0];
    assert_eq!(https.protocol(), Some(&ProtocolEnum::Https));
    assert_eq!(
        https.ssl_policy(),
        Some("ELBSecurityPolicy-TLS13-1-2-2021-06")
    );
    let certificate = output(outputs, "AlbCertificateArn");
    assert_eq!(https.certificates()[0].certificate_arn(), Some(certificate));
    let cert_tags = aws
        .c
        .acm
        .list_tags_for_certificate()
        .certificate_arn(certificate)
        .send()
        .await
        .expect("ListTagsForCertificate");
    let cert_tags: common::Tags = cert_tags
        .tags()
        .iter()
        .map(|t| (t.key().to_owned(), t.value().unwrap_or_default().to_owned()))
        .collect();
    assert_payops_tags("ALB certificate", &cert_tags, env, "acm-certificate:alb");

    // The NLB forwards TCP 443 to a target group of type alb holding the ALB.
    let nlb_group = aws
        .c
        .elb
        .describe_target_groups()
        .names(format!("payops-{env}-alb"))
        .send()
        .await
        .expect("DescribeTargetGroups");
    let to_alb = &nlb_group.target_groups()[0];
    assert_eq!(to_alb.target_type(), Some(&TargetTypeEnum::Alb));
    assert_eq!(
        (to_alb.protocol(), to_alb.port()),
        (Some(&ProtocolEnum::Tcp), Some(443))
    );
    let health = aws
        .c
        .elb
        .describe_target_health()
        .target_group_arn(to_alb.target_group_arn().unwrap())
        .send()
        .await
        .expect("DescribeTargetHealth");
    assert_eq!(
        health.target_health_descriptions()[0]
            .target()
            .and_then(|t| t.id()),
        Some(output(outputs, "AlbArn"))
    );
    let nlb_listeners = aws
        .c
        .elb
        .describe_listeners()
        .load_balancer_arn(output(outputs, "NlbArn"))
        .send()
        .await
        .expect("DescribeListeners");
    let tcp = &nlb_listeners.listeners()[0];
    assert_eq!(
        (tcp.protocol(), tcp.port()),
        (Some(&ProtocolEnum::Tcp), Some(443))
    );
    assert_eq!(
        tcp.default_actions()[0].target_group_arn(),
        to_alb.target_group_arn()
    );
}

async fn check_vpc_link(aws: &Aws, env: &str, outputs: &BTreeMap<String, String>) {
    let link = aws
        .c
        .apigateway
        .get_vpc_link()
        .vpc_link_id(output(outputs, "VpcLinkId"))
        .send()
        .await
        .expect("GetVpcLink");
    assert_eq!(
        link.target_arns(),
        [output(outputs, "NlbArn")],
        "the link targets the NLB"
    );
    assert_eq!(link.status().map(|s| s.as_str()), Some("AVAILABLE"));
    assert_payops_tags("VPC link", &tags(link.tags()), env, "vpc-link");
}

async fn check_rest_api(aws: &Aws, env: &str, outputs: &BTreeMap<String, String>) {
    let gw = &aws.c.apigateway;
    let id = output(outputs, "RestApiId");
    let api = gw
        .get_rest_api()
        .rest_api_id(id)
        .send()
        .await
        .expect("GetRestApi");
    assert_eq!(
        api.endpoint_configuration().map(|e| e.types()),
        Some(&[EndpointType::Regional][..])
    );
    assert_payops_tags("REST API", &tags(api.tags()), env, "rest-api:payments");
    let validators = gw
        .get_request_validators()
        .rest_api_id(id)
        .send()
        .await
        .expect("GetRequestValidators");
    let validator = validators
        .items()
        .iter()
        .find(|v| v.validate_request_body() && v.validate_request_parameters())
        .expect("a validator of bodies and parameters");
    let resources = gw
        .get_resources()
        .rest_api_id(id)
        .limit(500)
        .send()
        .await
        .expect("GetResources");
    let resource = |path: &str| {
        resources
            .items()
            .iter()
            .find(|r| r.path() == Some(path))
            .and_then(|r| r.id())
            .unwrap_or_else(|| panic!("resource {path}"))
            .to_owned()
    };
    for (path, model, integration) in [
        ("/payments/validate", "Payment", IntegrationType::AwsProxy),
        (
            "/payments/fraud-check",
            "FraudCheck",
            IntegrationType::AwsProxy,
        ),
        ("/payments", "Payment", IntegrationType::HttpProxy),
    ] {
        let rid = resource(path);
        let method = gw
            .get_method()
            .rest_api_id(id)
            .resource_id(&rid)
            .http_method("POST")
            .send()
            .await
            .unwrap_or_else(|e| panic!("GetMethod POST {path}: {e:?}"));
        assert_eq!(method.request_validator_id(), validator.id(), "POST {path}");
        // Secure by default: only SigV4-signed calls get through.
        assert_eq!(method.authorization_type(), Some("AWS_IAM"), "POST {path}");
        assert_eq!(method.api_key_required(), Some(false), "POST {path}");
        assert_eq!(
            method
                .request_models()
                .and_then(|m| m.get("application/json"))
                .map(String::as_str),
            Some(model),
            "POST {path}"
        );
        let i = gw
            .get_integration()
            .rest_api_id(id)
            .resource_id(&rid)
            .http_method("POST")
            .send()
            .await
            .unwrap_or_else(|e| panic!("GetIntegration POST {path}: {e:?}"));
        assert_eq!(i.r#type(), Some(&integration), "POST {path}");
        match path {
            "/payments" => {
                assert_eq!(i.connection_type(), Some(&ConnectionType::VpcLink));
                assert_eq!(i.connection_id(), Some(output(outputs, "VpcLinkId")));
            }
            "/payments/validate" => assert!(
                i.uri()
                    .unwrap_or_default()
                    .contains(output(outputs, "ValidationFunctionArn")),
                "{:?}",
                i.uri()
            ),
            _ => assert!(
                i.uri()
                    .unwrap_or_default()
                    .contains(output(outputs, "FraudFunctionArn")),
                "{:?}",
                i.uri()
            ),
        }
    }
    let stage = gw
        .get_stage()
        .rest_api_id(id)
        .stage_name("v1")
        .send()
        .await
        .expect("GetStage");
    assert!(stage.tracing_enabled(), "X-Ray on stage v1");
    let access = stage.access_log_settings().expect("access logs");
    assert_eq!(
        access.destination_arn(),
        Some(output(outputs, "ApiAccessLogGroupArn"))
    );
    let all = stage
        .method_settings()
        .and_then(|m| m.get("*/*"))
        .expect("stage-wide method settings");
    assert!(all.metrics_enabled());
    assert!(all.throttling_burst_limit() > 0 && all.throttling_rate_limit() > 0.0);
    assert!(!all.data_trace_enabled(), "no request bodies in the logs");
}

async fn check_access_log_bucket(aws: &Aws, env: &str, outputs: &BTreeMap<String, String>) {
    let bucket = output(outputs, "AlbLogsBucketName");
    assert_eq!(
        bucket,
        format!("payops-{env}-alb-logs-{}-{REGION}", aws.account)
    );
    let encryption = aws
        .c
        .s3
        .get_bucket_encryption()
        .bucket(bucket)
        .send()
        .await
        .expect("GetBucketEncryption");
    let rule = &encryption
        .server_side_encryption_configuration()
        .expect("encryption")
        .rules()[0];
    assert_eq!(
        rule.apply_server_side_encryption_by_default()
            .map(|d| d.sse_algorithm().as_str()),
        Some("AES256"),
        "ELB access logs need SSE-S3"
    );
    let policy = aws
        .c
        .s3
        .get_bucket_policy()
        .bucket(bucket)
        .send()
        .await
        .expect("GetBucketPolicy");
    let policy: Value = serde_json::from_str(policy.policy().unwrap()).unwrap();
    assert!(
        statements(&policy).iter().any(|s| {
            s["Effect"] == "Allow"
                && s["Principal"]["AWS"] == "arn:aws:iam::127311923021:root"
                && strings(&s["Resource"])
                    .iter()
                    .any(|r| r.ends_with(&format!("/alb/AWSLogs/{}/*", aws.account)))
        }),
        "us-east-1's ELB account may write the logs: {policy:#}"
    );
}

// ===================================================================== 2

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an AWS emulator: make test-integration"]
async fn shifted_weights_survive_up_and_a_converged_up_changes_nothing() {
    let env = TestEnv::new();
    let aws = Aws::connect().await;
    env.up_json(&[]);
    let outputs = env.outputs();

    let (_, again) = env.up_json(&[]);
    assert_no_mutation(&again, "second up");
    assert_eq!(outcomes(&again).len(), STEP_COUNT);
    assert_eq!(
        not_equal_to(&outcomes(&again), "unchanged"),
        vec![],
        "second up"
    );

    let shift = env.run_env("shift", &["--green", "30", "--output", "json"]);
    shift.assert_success();
    let doc = shift.json();
    assert_eq!(doc["result"], "shifted", "{}", shift.describe());
    assert_eq!(weights(&aws, &outputs).await, (70, 30));

    // The weights are the operator's: up keeps them, and has nothing to do.
    let (_, after) = env.up_json(&[]);
    assert_no_mutation(&after, "up after a shift");
    assert_eq!(weights(&aws, &outputs).await, (70, 30));
    let status = env.status_json();
    assert_eq!(status["summary"], "converged", "{status:#}");
    assert_eq!(status["traffic"]["weights"]["green"], 30, "{status:#}");

    // In steps, the rest of the way; then promote: green's version becomes
    // blue's and blue serves everything again.
    let steps = env.run_env(
        "shift",
        &[
            "--green",
            "100",
            "--step",
            "35",
            "--interval",
            "1s",
            "--output",
            "json",
        ],
    );
    steps.assert_success();
    assert_eq!(steps.json()["steps"], serde_json::json!([65, 100]));
    assert_eq!(weights(&aws, &outputs).await, (0, 100));
    env.run_env("shift", &["--rollback"]).assert_success();
    assert_eq!(weights(&aws, &outputs).await, (100, 0));
    let promote = env.run_env("shift", &["--promote", "--output", "json"]);
    promote.assert_success();
    assert_eq!(promote.json()["result"], "promoted");
    assert_eq!(weights(&aws, &outputs).await, (100, 0));
    assert_eq!(
        alias_version(&aws, &env.name, "blue").await,
        alias_version(&aws, &env.name, "green").await
    );
}

/// (authorization type, API key required) of every payments method.
async fn method_auth(aws: &Aws, api: &str) -> BTreeSet<(String, String, bool)> {
    let gw = &aws.c.apigateway;
    let resources = gw
        .get_resources()
        .rest_api_id(api)
        .limit(500)
        .send()
        .await
        .expect("GetResources");
    let mut out = BTreeSet::new();
    for r in resources.items() {
        let path = r.path().unwrap_or_default();
        if !path.starts_with("/payments") {
            continue;
        }
        let m = gw
            .get_method()
            .rest_api_id(api)
            .resource_id(r.id().unwrap())
            .http_method("POST")
            .send()
            .await
            .unwrap_or_else(|e| panic!("GetMethod POST {path}: {e:?}"));
        out.insert((
            path.to_owned(),
            m.authorization_type().unwrap_or_default().to_owned(),
            m.api_key_required().unwrap_or(false),
        ));
    }
    out
}

/// The API's resource policy, unescaped as API Gateway's echo needs.
async fn api_policy(aws: &Aws, api: &str) -> Option<Value> {
    let got = aws
        .c
        .apigateway
        .get_rest_api()
        .rest_api_id(api)
        .send()
        .await
        .expect("GetRestApi");
    let raw = got.policy().filter(|p| !p.is_empty())?;
    Some(serde_json::from_str(raw).unwrap_or_else(|_| {
        let unescaped: String =
            serde_json::from_str(&format!("\"{raw}\"")).expect("an escaped policy");
        serde_json::from_str(&unescaped).expect("a policy document")
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an AWS emulator: make test-integration"]
async fn api_access_converges_to_the_configured_mode_and_callers() {
    let env = TestEnv::new();
    let aws = Aws::connect().await;
    let allow = ["--api-auth", "api-key", "--api-allow", "10.0.0.0/8"];
    env.up_json(&allow);
    let outputs = env.outputs();
    let api = output(&outputs, "RestApiId").to_owned();
    let paths = ["/payments", "/payments/fraud-check", "/payments/validate"];
    let keyed: BTreeSet<_> = paths
        .iter()
        .map(|p| (p.to_string(), "NONE".to_owned(), true))
        .collect();
    assert_eq!(method_auth(&aws, &api).await, keyed);
    let policy = api_policy(&aws, &api).await.expect("a resource policy");
    assert!(
        policy.to_string().contains("10.0.0.0/8") && policy.to_string().contains("Deny"),
        "{policy:#}"
    );

    // The key is on the plan, the plan on the stage; its value is nowhere.
    let key_id = output(&outputs, "ApiKeyId").to_owned();
    let plan_id = output(&outputs, "ApiUsagePlanId").to_owned();
    let plan = aws
        .c
        .apigateway
        .get_usage_plan()
        .usage_plan_id(&plan_id)
        .send()
        .await
        .expect("GetUsagePlan");
    assert_eq!(
        plan.api_stages()
            .iter()
            .map(|s| (
                s.api_id().unwrap_or_default(),
                s.stage().unwrap_or_default()
            ))
            .collect::<Vec<_>>(),
        [(api.as_str(), "v1")]
    );
    assert!(plan.throttle().is_some_and(|t| t.rate_limit() > 0.0));
    assert!(plan.quota().is_some_and(|q| q.limit() > 0));
    let plan_keys = aws
        .c
        .apigateway
        .get_usage_plan_keys()
        .usage_plan_id(&plan_id)
        .send()
        .await
        .expect("GetUsagePlanKeys");
    assert_eq!(
        plan_keys
            .items()
            .iter()
            .filter_map(|k| k.id())
            .collect::<Vec<_>>(),
        [key_id.as_str()]
    );
    let key = aws
        .c
        .apigateway
        .get_api_key()
        .api_key(&key_id)
        .include_value(true)
        .send()
        .await
        .expect("GetApiKey");
    let value = key.value().expect("the key's value");
    assert!(!env.state_text().contains(value), "key value in state");
    let flat = std::fs::read_to_string(env.outputs_file()).unwrap();
    assert!(!flat.contains(value), "key value in outputs");

    // A client without the key is refused; with it, it gets past API
    // Gateway (LocalStack enforces keys; moto serves no stage URLs).
    if common::emulator() == common::Emulator::LocalStack {
        let path = format!("/restapis/{api}/v1/_user_request_/payments/fraud-check");
        let body = r#"{"transactionId":"t1","customerId":"c1","amount":5,"currency":"USD"}"#;
        assert_eq!(common::post_to_api(&path, &[], body), 403, "no key");
        assert_eq!(
            common::post_to_api(&path, &[("x-api-key", "not-the-key")], body),
            403,
            "a wrong key"
        );
        let status = common::post_to_api(&path, &[("x-api-key", value)], body);
        assert_ne!(status, 403, "the env's key is let through");
    }

    let (_, again) = env.up_json(&allow);
    assert_no_mutation(&again, "second up in api-key mode");

    // Back to IAM, no caller list: signed methods, no policy, no plan, no key.
    env.up_json(&["--api-auth", "iam", "--api-allow", "any"]);
    let signed: BTreeSet<_> = paths
        .iter()
        .map(|p| (p.to_string(), "AWS_IAM".to_owned(), false))
        .collect();
    assert_eq!(method_auth(&aws, &api).await, signed);
    assert_eq!(api_policy(&aws, &api).await, None);
    let plan = aws
        .c
        .apigateway
        .get_usage_plan()
        .usage_plan_id(&plan_id)
        .send()
        .await;
    assert!(plan.is_err(), "the usage plan is gone: {plan:?}");
    let key = aws.c.apigateway.get_api_key().api_key(&key_id).send().await;
    assert!(key.is_err(), "the API key is gone: {key:?}");
    assert!(!env.outputs().contains_key("ApiKeyId"));
    let (_, again) = env.up_json(&[]);
    assert_no_mutation(&again, "second up in IAM mode, from the recorded shape");
}

// ===================================================================== 3

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an AWS emulator: make test-integration"]
async fn green_takes_new_code_only_while_it_carries_no_traffic() {
    let env = TestEnv::new();
    let aws = Aws::connect().await;
    env.up_json(&[]);
    let function = format!("payops-{}-transaction-processing", env.name);

    // Someone releases other code to green by hand, and green takes traffic.
    let empty_zip = {
        let mut z = vec![0x50, 0x4b, 0x05, 0x06];
        z.extend([0u8; 18]);
        z
    };
    aws.c
        .lambda
        .update_function_code()
        .function_name(&function)
        .zip_file(aws_smithy_types::Blob::new(empty_zip))
        .send()
        .await
        .expect("UpdateFunctionCode");
    let by_hand = aws
        .c
        .lambda
        .publish_version()
        .function_name(&function)
        .send()
        .await
        .expect("PublishVersion")
        .version()
        .expect("version")
        .to_owned();
    aws.c
        .lambda
        .update_alias()
        .function_name(&function)
        .name("green")
        .function_version(&by_hand)
        .send()
        .await
        .expect("UpdateAlias");
    env.run_env("shift", &["--green", "20"]).assert_success();

    // up restores $LATEST but will not move green under traffic.
    let blocked = env.run_env("up", &[]);
    blocked.assert_code(1);
    assert!(
        format!("{}{}", blocked.stdout, blocked.stderr)
            .contains("finish the release in progress first"),
        "{}",
        blocked.describe()
    );
    assert_eq!(alias_version(&aws, &env.name, "green").await, by_hand);
    let outputs = env.outputs();
    assert_eq!(
        weights(&aws, &outputs).await,
        (80, 20),
        "up never moves weights"
    );

    // Once green is idle again, up releases payops' code to it; blue stays.
    env.run_env("shift", &["--rollback"]).assert_success();
    env.up_json(&[]);
    let green = alias_version(&aws, &env.name, "green").await;
    assert_ne!(green, by_hand);
    assert_eq!(alias_version(&aws, &env.name, "blue").await, "1");
    let (_, again) = env.up_json(&[]);
    assert_no_mutation(&again, "up after the release");
}

// ===================================================================== 4

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an AWS emulator: make test-integration"]
async fn a_firing_alarm_stops_the_shift_and_sends_traffic_back_to_blue() {
    let env = TestEnv::new();
    let aws = Aws::connect().await;
    env.up_json(&[]);
    let outputs = env.outputs();
    // payops' own alarms: one on the request path (a shift gate), one on the
    // database (not a gate: it says nothing about the release on green). The
    // gate is the ALB's 5XX alarm: LocalStack does not evaluate metric-math
    // alarms, so the state set here is not overwritten by an evaluation of
    // the (empty) metrics in the middle of the test.
    let gate = format!("payops-{}-alb-5xx", env.name);
    let not_a_gate = format!("payops-{}-aurora-replica-lag", env.name);
    let set_state = |alarm: &str, state: aws_sdk_cloudwatch::types::StateValue| {
        aws.c
            .cloudwatch
            .set_alarm_state()
            .alarm_name(alarm)
            .state_value(state)
            .state_reason("integration test")
            .send()
    };
    set_state(&gate, aws_sdk_cloudwatch::types::StateValue::Ok)
        .await
        .expect("SetAlarmState OK");
    set_state(&not_a_gate, aws_sdk_cloudwatch::types::StateValue::Alarm)
        .await
        .expect("SetAlarmState ALARM");
    // Healthy request path: the shift goes through, whatever the database says.
    env.run_env("shift", &["--green", "10"]).assert_success();
    assert_eq!(weights(&aws, &outputs).await, (90, 10));

    set_state(&gate, aws_sdk_cloudwatch::types::StateValue::Alarm)
        .await
        .expect("SetAlarmState ALARM");
    let stopped = env.run_env(
        "shift",
        &[
            "--green",
            "50",
            "--step",
            "10",
            "--interval",
            "1s",
            "--output",
            "json",
        ],
    );
    stopped.assert_code(1);
    let doc = stopped.json();
    assert_eq!(doc["result"], "stopped-by-alarm", "{}", stopped.describe());
    assert!(stopped.stderr.contains(&gate), "{}", stopped.describe());
    assert!(
        !stopped.stderr.contains(&not_a_gate),
        "{}",
        stopped.describe()
    );
    assert_eq!(weights(&aws, &outputs).await, (100, 0), "all back on blue");
}

/// The web ACL: every rule, in front of the stage and the ALB, logging
/// blocked requests to its bucket.
async fn check_waf(aws: &Aws, env: &str, outputs: &BTreeMap<String, String>) {
    let summary = common::web_acl(aws, env).await.expect("the env's web ACL");
    let arn = output(outputs, "WebAclArn");
    assert_eq!(summary.arn(), Some(arn));
    let waf = &aws.c.wafv2;
    let got = waf
        .get_web_acl()
        .scope(Scope::Regional)
        .name(summary.name().unwrap())
        .id(summary.id().unwrap())
        .send()
        .await
        .expect("wafv2:GetWebACL");
    let acl = got.web_acl().unwrap();
    let rules: BTreeMap<&str, &aws_sdk_wafv2::types::Rule> =
        acl.rules().iter().map(|r| (r.name(), r)).collect();
    assert_eq!(
        rules.keys().copied().collect::<Vec<_>>(),
        [
            "aws-common-rule-set",
            "aws-sqli-rule-set",
            "payments-body-and-type",
            "rate-limit-per-ip"
        ],
        "no geo rule without countries"
    );
    let rate = rules["rate-limit-per-ip"]
        .statement()
        .and_then(|s| s.rate_based_statement())
        .expect("a rate-based rule");
    assert_eq!((rate.limit(), rate.evaluation_window_sec()), (1000, 300));
    for (name, group) in [
        ("aws-common-rule-set", "AWSManagedRulesCommonRuleSet"),
        ("aws-sqli-rule-set", "AWSManagedRulesSQLiRuleSet"),
    ] {
        let r = rules[name];
        let m = r
            .statement()
            .and_then(|s| s.managed_rule_group_statement())
            .expect("a managed group");
        assert_eq!((m.vendor_name(), m.name()), ("AWS", group));
        assert!(r.override_action().is_some_and(|o| o.none().is_some()));
        assert!(r.action().is_none(), "{name}: groups take OverrideAction");
    }
    for r in acl.rules() {
        let v = r.visibility_config().unwrap();
        assert!(v.cloud_watch_metrics_enabled() && v.sampled_requests_enabled());
        assert_eq!(v.metric_name(), r.name());
    }
    let tags = waf
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .expect("wafv2:ListTagsForResource");
    let tags: common::Tags = tags
        .tag_info_for_resource()
        .unwrap()
        .tag_list()
        .iter()
        .map(|t| (t.key().to_owned(), t.value().to_owned()))
        .collect();
    assert_payops_tags("web ACL", &tags, env, "web-acl");

    let stage = format!(
        "arn:aws:apigateway:{REGION}::/restapis/{}/stages/v1",
        output(outputs, "RestApiId")
    );
    for resource in [output(outputs, "AlbArn"), stage.as_str()] {
        let protected = waf
            .get_web_acl_for_resource()
            .resource_arn(resource)
            .send()
            .await
            .expect("wafv2:GetWebACLForResource");
        assert_eq!(
            protected.web_acl().map(|a| a.arn()),
            Some(arn),
            "{resource}"
        );
    }
    let listed = waf
        .list_resources_for_web_acl()
        .web_acl_arn(arn)
        .resource_type(ResourceType::ApiGateway)
        .send()
        .await
        .expect("wafv2:ListResourcesForWebACL");
    assert_eq!(listed.resource_arns(), std::slice::from_ref(&stage));

    let bucket = output(outputs, "WafLogBucketName");
    assert!(bucket.starts_with("aws-waf-logs-"), "{bucket}");
    let logging = waf
        .get_logging_configuration()
        .resource_arn(arn)
        .send()
        .await
        .expect("wafv2:GetLoggingConfiguration");
    let logging = logging.logging_configuration().unwrap();
    assert_eq!(
        logging.log_destination_configs(),
        [format!("arn:aws:s3:::{bucket}")]
    );
    let filter = logging.logging_filter().expect("a logging filter");
    assert_eq!(filter.default_behavior(), &FilterBehavior::Drop);
    assert_eq!(
        filter.filters()[0].conditions()[0]
            .action_condition()
            .map(|c| c.action()),
        Some(&ActionValue::Block)
    );
    let encryption = aws
        .c
        .s3
        .get_bucket_encryption()
        .bucket(bucket)
        .send()
        .await
        .expect("s3:GetBucketEncryption");
    let rule = &encryption
        .server_side_encryption_configuration()
        .unwrap()
        .rules()[0];
    assert_eq!(
        rule.apply_server_side_encryption_by_default()
            .and_then(|d| d.kms_master_key_id()),
        Some(output(outputs, "S3KmsKeyArn"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an AWS emulator: make test-integration"]
async fn a_waf_rule_removed_out_of_band_is_drift_that_up_repairs() {
    let env = TestEnv::new();
    let aws = Aws::connect().await;
    env.up(&["--waf-block-countries", "ru,cn"]);
    let summary = common::web_acl(&aws, &env.name).await.unwrap();
    let waf = &aws.c.wafv2;
    let read = || async {
        let got = waf
            .get_web_acl()
            .scope(Scope::Regional)
            .name(summary.name().unwrap())
            .id(summary.id().unwrap())
            .send()
            .await
            .expect("wafv2:GetWebACL");
        (
            got.web_acl().unwrap().clone(),
            got.lock_token().unwrap().to_owned(),
        )
    };
    let (acl, token) = read().await;
    let names = |acl: &aws_sdk_wafv2::types::WebAcl| -> Vec<String> {
        acl.rules().iter().map(|r| r.name().to_owned()).collect()
    };
    assert!(names(&acl).contains(&"block-countries".to_owned()));
    let geo = acl
        .rules()
        .iter()
        .find_map(|r| r.statement()?.geo_match_statement())
        .unwrap();
    assert_eq!(
        geo.country_codes()
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>(),
        ["CN", "RU"]
    );

    // Out of band: someone drops the SQL injection rule.
    waf.update_web_acl()
        .scope(Scope::Regional)
        .name(acl.name())
        .id(acl.id())
        .lock_token(token)
        .set_default_action(acl.default_action().cloned())
        .set_visibility_config(acl.visibility_config().cloned())
        .set_rules(Some(
            acl.rules()
                .iter()
                .filter(|r| r.name() != "aws-sqli-rule-set")
                .cloned()
                .collect(),
        ))
        .send()
        .await
        .expect("wafv2:UpdateWebACL");

    let status = env.status_json();
    let row = status["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "web-acl")
        .unwrap_or_else(|| panic!("{status:#}"));
    assert!(
        row.to_string()
            .contains("restore WAF rules aws-sqli-rule-set"),
        "{row:#}"
    );

    // `up` (with the settings recorded) puts it back and keeps the countries.
    let (_, report) = env.up_json(&[]);
    assert_eq!(outcomes(&report)["web-acl"], "updated", "{report:#}");
    let (acl, _) = read().await;
    let mut got = names(&acl);
    got.sort();
    assert_eq!(
        got,
        [
            "aws-common-rule-set",
            "aws-sqli-rule-set",
            "block-countries",
            "payments-body-and-type",
            "rate-limit-per-ip"
        ]
    );
    // The geo rule goes when the list is emptied.
    env.up(&["--waf-block-countries", ""]);
    let (acl, _) = read().await;
    assert!(!names(&acl).contains(&"block-countries".to_owned()));
}

// ===================================================================== 5

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an AWS emulator: make test-integration"]
async fn down_removes_the_request_path_and_leaves_nothing_tagged() {
    let mut env = TestEnv::new();
    let aws = Aws::connect().await;
    env.up_json(&[]);
    assert_eq!(compute_remaining(&aws, &env.name).await.len(), 14);
    let down = env.down_json();
    down.assert_success();
    let steps = outcomes(&down.json());
    for step in [
        "rest-api:payments",
        "vpc-link",
        "load-balancer:nlb",
        "load-balancer:alb",
        "lambda-function:transaction-processing",
        "acm-certificate:alb",
        "web-acl",
        "web-acl-association:alb",
        "web-acl-association:api-stage",
        "waf-logging",
        "s3-bucket:waf-logs",
    ] {
        assert_eq!(steps[step], "deleted", "{step}: {steps:?}");
    }
    let left = remaining(&aws, &env.name).await;
    assert!(left.is_empty(), "left behind by down: {left:#?}");
}
