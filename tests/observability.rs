//! Integration tests of the env's observability (issue 4): the CloudWatch
//! dashboard, the alarms and their SNS actions, `--alert-email`, and their
//! teardown, each checked through the AWS SDK against a local emulator (see
//! tests/common/mod.rs).
//!
//! ```sh
//! PAYOPS_TEST_ENDPOINT=http://127.0.0.1:5255 PAYOPS_TEST_EMULATOR=moto \
//!     cargo nextest run --test observability --run-ignored only
//! ```

mod common;

use std::collections::BTreeMap;

use aws_sdk_cloudwatch::types::{MetricAlarm, Statistic};
use serde_json::{Value, json};

use common::{
    Aws, FUNCTIONS, REGION, Tags, TestEnv, actions, assert_no_mutation, assert_payops_tags,
    error_code, outcomes, output, remaining, sampling_rule, saved_queries,
};

/// Every alarm: (slug, output key, topic output, shift gate, treat missing data).
const ALARMS: [(&str, &str, &str, bool, &str); 20] = [
    (
        "api-p99-latency",
        "ApiP99LatencyAlarmName",
        "FailedTransactionsTopicArn",
        true,
        "notBreaching",
    ),
    (
        "api-5xx-rate",
        "Api5xxRateAlarmName",
        "FailedTransactionsTopicArn",
        true,
        "notBreaching",
    ),
    (
        "transaction-errors",
        "TransactionErrorsAlarmName",
        "FailedTransactionsTopicArn",
        true,
        "notBreaching",
    ),
    (
        "transaction-throttles",
        "TransactionThrottlesAlarmName",
        "FailedTransactionsTopicArn",
        true,
        "notBreaching",
    ),
    (
        "aurora-cpu",
        "AuroraCpuAlarmName",
        "SystemErrorsTopicArn",
        false,
        "notBreaching",
    ),
    (
        "aurora-replica-lag",
        "AuroraReplicaLagAlarmName",
        "SystemErrorsTopicArn",
        false,
        "breaching",
    ),
    // A new env runs Aurora Serverless v2 (--db-capacity 0.5-4).
    (
        "aurora-acu-utilization",
        "AuroraAcuUtilizationAlarmName",
        "SystemErrorsTopicArn",
        false,
        "notBreaching",
    ),
    (
        "transactions-table-throttles",
        "TransactionsTableThrottlesAlarmName",
        "SystemErrorsTopicArn",
        false,
        "notBreaching",
    ),
    (
        "fraud-rules-table-throttles",
        "FraudRulesTableThrottlesAlarmName",
        "SystemErrorsTopicArn",
        false,
        "notBreaching",
    ),
    (
        "alb-5xx",
        "Alb5xxAlarmName",
        "SystemErrorsTopicArn",
        true,
        "notBreaching",
    ),
    (
        "waf-blocked-spike",
        "WafBlockedSpikeAlarmName",
        "SystemErrorsTopicArn",
        false,
        "notBreaching",
    ),
    (
        "payments-processing-dlq-not-empty",
        "PaymentsProcessingDlqNotEmptyAlarmName",
        "SystemErrorsTopicArn",
        false,
        "notBreaching",
    ),
    (
        "payments-analytics-dlq-not-empty",
        "PaymentsAnalyticsDlqNotEmptyAlarmName",
        "SystemErrorsTopicArn",
        false,
        "notBreaching",
    ),
    (
        "payments-processing-oldest-message",
        "PaymentsProcessingOldestMessageAlarmName",
        "SystemErrorsTopicArn",
        false,
        "notBreaching",
    ),
    (
        "payment-events-failed",
        "PaymentEventsFailedAlarmName",
        "SystemErrorsTopicArn",
        false,
        "notBreaching",
    ),
    (
        "payments-events-dlq-not-empty",
        "PaymentsEventsDlqNotEmptyAlarmName",
        "SystemErrorsTopicArn",
        false,
        "notBreaching",
    ),
    (
        "queue-consumer-errors",
        "QueueConsumerErrorsAlarmName",
        "SystemErrorsTopicArn",
        false,
        "notBreaching",
    ),
    (
        "transaction-log-freshness",
        "TransactionLogFreshnessAlarmName",
        "SystemErrorsTopicArn",
        false,
        "notBreaching",
    ),
    (
        "settlement-requests-failed",
        "SettlementRequestsFailedAlarmName",
        "SystemErrorsTopicArn",
        false,
        "notBreaching",
    ),
    (
        "transaction-log-records-failed",
        "TransactionLogRecordsFailedAlarmName",
        "SystemErrorsTopicArn",
        false,
        "notBreaching",
    ),
];

/// Every string anywhere in a JSON value.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
        Value::Object(o) => o.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

/// The dashboard's body, or None when there is no such dashboard.
async fn dashboard(aws: &Aws, name: &str) -> Option<Value> {
    match aws
        .c
        .cloudwatch
        .get_dashboard()
        .dashboard_name(name)
        .send()
        .await
    {
        Ok(out) => Some(
            serde_json::from_str(out.dashboard_body().expect("a dashboard body"))
                .expect("the body is JSON"),
        ),
        Err(e)
            if matches!(
                error_code(&e),
                Some("ResourceNotFound" | "ResourceNotFoundException")
            ) =>
        {
            None
        }
        Err(e) => panic!("cloudwatch:GetDashboard {name}: {e:?}"),
    }
}

/// The metric alarms named `payops-<env>-...`, by name.
async fn alarms(aws: &Aws, env: &str) -> BTreeMap<String, MetricAlarm> {
    let out = aws
        .c
        .cloudwatch
        .describe_alarms()
        .alarm_name_prefix(format!("payops-{env}-"))
        .max_records(100)
        .send()
        .await
        .expect("cloudwatch:DescribeAlarms");
    out.metric_alarms()
        .iter()
        .map(|a| (a.alarm_name().unwrap().to_owned(), a.clone()))
        .collect()
}

async fn alarm_tags(aws: &Aws, arn: &str) -> Tags {
    aws.c
        .cloudwatch
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .expect("cloudwatch:ListTagsForResource")
        .tags()
        .iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_owned(),
                t.value().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Email subscriptions of a topic: endpoint -> subscription ARN.
async fn email_subscriptions(aws: &Aws, topic_arn: &str) -> BTreeMap<String, String> {
    aws.c
        .sns
        .list_subscriptions_by_topic()
        .topic_arn(topic_arn)
        .send()
        .await
        .expect("sns:ListSubscriptionsByTopic")
        .subscriptions()
        .iter()
        .filter(|s| s.protocol() == Some("email"))
        .map(|s| {
            (
                s.endpoint().unwrap_or_default().to_owned(),
                s.subscription_arn().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

// ===================================================================== 1

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an AWS emulator: make test-integration"]
async fn up_builds_a_dashboard_of_the_envs_real_resources() {
    let env = TestEnv::new();
    let aws = Aws::connect().await;
    env.up_json(&[]);
    let outputs = env.outputs();
    let name = env.name.as_str();
    assert_eq!(
        output(&outputs, "DashboardName"),
        format!("payops-{name}-{REGION}")
    );

    let body = dashboard(&aws, &format!("payops-{name}-{REGION}"))
        .await
        .expect("the dashboard exists");
    let mut all = Vec::new();
    strings(&body, &mut all);
    let has = |s: &str| all.iter().any(|x| x == s);
    let alb = output(&outputs, "AlbArn");
    let lb_dimension = alb.split_once(":loadbalancer/").expect("an ALB ARN").1;
    let mut expected = vec![
        format!("payops-{name}-api"),
        lb_dimension.to_owned(),
        format!("payops-{name}-aurora"),
        format!("payops-{name}-transactions"),
        format!("payops-{name}-fraud-rules"),
    ];
    for f in FUNCTIONS {
        expected.push(format!("payops-{name}-{f}"));
    }
    for key in ["BlueTargetGroupArn", "GreenTargetGroupArn"] {
        let tg = output(&outputs, key).rsplit_once(':').expect("a TG ARN").1;
        assert!(tg.starts_with("targetgroup/"), "{tg}");
        expected.push(tg.to_owned());
    }
    for s in &expected {
        assert!(has(s), "the dashboard does not name {s}: {body:#}");
    }
    // A run of consecutive items of some metric line of the body.
    let text = body.to_string();
    let has_run = |items: Value| {
        let run = items.to_string();
        text.contains(run.trim_matches(['[', ']']))
    };
    // The ALB widgets pair the ALB with each target group, blue vs green.
    assert!(
        has_run(json!(["LoadBalancer", lb_dimension, "TargetGroup"])),
        "{body:#}"
    );
    // API latency of stage v1, at p99 among others.
    assert!(
        has_run(json!([
            "Latency",
            "ApiName",
            format!("payops-{name}-api"),
            "Stage",
            "v1"
        ])),
        "{body:#}"
    );
    assert!(has_run(json!({"stat": "p99", "label": "p99"})), "{body:#}");
    // A new env runs Aurora Serverless v2: its capacity and ACU utilization.
    for metric in ["ServerlessDatabaseCapacity", "ACUUtilization"] {
        assert!(
            has_run(json!([
                metric,
                "DBClusterIdentifier",
                format!("payops-{name}-aurora")
            ])),
            "{metric}: {body:#}"
        );
    }
    // Ownership marker: dashboards cannot be tagged.
    let marker = body["widgets"][0]["properties"]["markdown"]
        .as_str()
        .unwrap_or_default();
    assert!(marker.contains(&format!("payops:env={name}")), "{marker}");
    assert!(marker.contains("payops:managed-by=payops"), "{marker}");

    // Published to SSM like every output.
    let param = aws
        .c
        .ssm
        .get_parameter()
        .name(format!("/payops/{name}/DashboardName"))
        .send()
        .await
        .expect("ssm:GetParameter DashboardName");
    assert_eq!(
        param.parameter().and_then(|p| p.value()),
        Some(format!("payops-{name}-{REGION}").as_str())
    );
}

// ===================================================================== 2

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an AWS emulator: make test-integration"]
async fn every_alarm_exists_with_its_statistic_topic_and_tags() {
    let env = TestEnv::new();
    let aws = Aws::connect().await;
    env.up_json(&[]);
    let outputs = env.outputs();
    let name = env.name.as_str();
    let found = alarms(&aws, name).await;
    assert_eq!(found.len(), ALARMS.len(), "{:?}", found.keys());

    for (slug, key, topic_key, gate, missing) in ALARMS {
        let alarm_name = format!("payops-{name}-{slug}");
        assert_eq!(output(&outputs, key), alarm_name);
        let a = found
            .get(&alarm_name)
            .unwrap_or_else(|| panic!("no alarm {alarm_name}"));
        let topic = output(&outputs, topic_key);
        assert_eq!(a.alarm_actions(), [topic], "{alarm_name}");
        assert_eq!(a.ok_actions(), [topic], "{alarm_name}");
        assert_eq!(a.treat_missing_data(), Some(missing), "{alarm_name}");
        assert_eq!(a.actions_enabled(), Some(true), "{alarm_name}");

        let tags = alarm_tags(&aws, a.alarm_arn().expect("an alarm ARN")).await;
        assert_payops_tags(&alarm_name, &tags, name, &format!("alarm:{slug}"));
        assert_eq!(
            tags.get("payops:shift-gate").map(String::as_str),
            gate.then_some("true"),
            "{alarm_name}: {tags:?}"
        );
    }

    // p99 through ExtendedStatistic, and nothing else.
    let p99 = &found[&format!("payops-{name}-api-p99-latency")];
    assert_eq!(p99.extended_statistic(), Some("p99"));
    assert_eq!(p99.statistic(), None);
    assert_eq!(p99.namespace(), Some("AWS/ApiGateway"));
    assert_eq!(p99.metric_name(), Some("Latency"));
    let dims: BTreeMap<&str, &str> = p99
        .dimensions()
        .iter()
        .map(|d| (d.name().unwrap(), d.value().unwrap()))
        .collect();
    assert_eq!(
        dims,
        BTreeMap::from([
            ("ApiName", format!("payops-{name}-api").as_str()),
            ("Stage", "v1")
        ])
    );
    let rate = &found[&format!("payops-{name}-api-5xx-rate")];
    assert_eq!(rate.statistic(), Some(&Statistic::Average));
    assert_eq!(rate.extended_statistic(), None);

    // The ALB alarm adds target and ALB 5XX of the env's ALB.
    let alb = &found[&format!("payops-{name}-alb-5xx")];
    let lb_dimension = output(&outputs, "AlbArn")
        .split_once(":loadbalancer/")
        .unwrap()
        .1;
    let watched: Vec<(&str, &str)> = alb
        .metrics()
        .iter()
        .filter_map(|q| q.metric_stat().and_then(|s| s.metric()))
        .map(|m| (m.metric_name().unwrap(), m.dimensions()[0].value().unwrap()))
        .collect();
    assert_eq!(
        watched,
        [
            ("HTTPCode_Target_5XX_Count", lb_dimension),
            ("HTTPCode_ELB_5XX_Count", lb_dimension)
        ]
    );

    // A second up has nothing to do.
    let (_, again) = env.up_json(&[]);
    assert_no_mutation(&again, "second up");
    let steps = outcomes(&again);
    assert_eq!(steps["dashboard"], "unchanged");
    assert_eq!(steps["alarm:api-p99-latency"], "unchanged");
}

// ===================================================================== 3

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an AWS emulator: make test-integration"]
async fn alert_emails_subscribe_both_topics_and_follow_the_list() {
    let env = TestEnv::new();
    let aws = Aws::connect().await;

    // Checked before anything else: nothing is created, exit 2.
    let bad = env.run_env("up", &["--alert-email", "oncall"]);
    bad.assert_code(2);
    assert!(
        bad.stderr.contains("invalid alert email"),
        "{}",
        bad.describe()
    );
    assert!(env.state_text().is_empty(), "no state was written");

    env.up_json(&[
        "--alert-email",
        "oncall@example.com",
        "--alert-email",
        "payments@example.com",
    ]);
    let outputs = env.outputs();
    let topics = [
        output(&outputs, "FailedTransactionsTopicArn"),
        output(&outputs, "SystemErrorsTopicArn"),
    ];
    for topic in topics {
        let subs = email_subscriptions(&aws, topic).await;
        assert_eq!(
            subs.keys().collect::<Vec<_>>(),
            ["oncall@example.com", "payments@example.com"],
            "{topic}"
        );
    }

    // Recorded: the next up without the flags keeps them and does nothing.
    let (_, again) = env.up_json(&[]);
    assert_no_mutation(&again, "up without --alert-email");

    // One address less: confirmed subscriptions are removed; pending ones
    // cannot be (SNS has no ARN for them) and go with the topic.
    let before = email_subscriptions(&aws, topics[0]).await;
    env.up_json(&["--alert-email", "oncall@example.com"]);
    for topic in topics {
        let subs = email_subscriptions(&aws, topic).await;
        assert!(subs.contains_key("oncall@example.com"), "{subs:?}");
        let pending = before["payments@example.com"] == "PendingConfirmation";
        assert_eq!(
            subs.contains_key("payments@example.com"),
            pending,
            "{topic}: {subs:?}"
        );
    }
    let (_, again) = env.up_json(&[]);
    assert_no_mutation(&again, "up after removing an address");
}

// ===================================================================== 4

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an AWS emulator: make test-integration"]
async fn a_dashboard_of_the_envs_name_without_the_marker_is_never_taken_over() {
    let mut env = TestEnv::new();
    let aws = Aws::connect().await;
    let name = format!("payops-{}-{REGION}", env.name);
    let foreign = json!({"widgets": [{"type": "text", "x": 0, "y": 0, "width": 12, "height": 3,
        "properties": {"markdown": "the payments team's own dashboard"}}]});
    aws.c
        .cloudwatch
        .put_dashboard()
        .dashboard_name(&name)
        .dashboard_body(foreign.to_string())
        .send()
        .await
        .expect("PutDashboard");

    let up = env.run_env("up", &["--output", "json"]);
    up.assert_code(1);
    let report = up.json();
    let steps = outcomes(&report);
    assert_eq!(steps["dashboard"], "failed", "{}", up.describe());
    assert!(up.stdout.contains("no payops marker"), "{}", up.describe());
    // Everything else went on.
    assert_eq!(steps["alarm:api-p99-latency"], "created");
    assert_eq!(
        dashboard(&aws, &name).await,
        Some(foreign.clone()),
        "untouched"
    );

    // down refuses it too, and leaves it.
    let down = env.down_json();
    down.assert_code(1);
    assert_eq!(dashboard(&aws, &name).await, Some(foreign), "untouched");

    aws.c
        .cloudwatch
        .delete_dashboards()
        .dashboard_names(&name)
        .send()
        .await
        .expect("DeleteDashboards");
    env.down_json().assert_success();
}

// ===================================================================== 5

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an AWS emulator: make test-integration"]
async fn down_leaves_no_alarm_dashboard_or_subscription() {
    let mut env = TestEnv::new();
    let aws = Aws::connect().await;
    env.up_json(&["--alert-email", "oncall@example.com"]);
    let name = env.name.clone();
    assert_eq!(alarms(&aws, &name).await.len(), ALARMS.len());

    // The saved security queries, each marked as the env's and naming log
    // groups that exist.
    let queries = saved_queries(&aws, &name).await;
    let names: Vec<&str> = queries.keys().map(String::as_str).collect();
    let want: Vec<String> = [
        "failed-payments",
        "rejected-flows",
        "rejected-requests",
        "rotation-failures",
    ]
    .iter()
    .map(|q| format!("payops/{name}/{q}"))
    .collect();
    assert_eq!(names, want);
    for (query_name, (query, groups)) in &queries {
        assert!(
            query.starts_with(&format!("# payops:managed-by=payops payops:env={name} ")),
            "{query_name}: {query}"
        );
        assert!(!groups.is_empty(), "{query_name} names no log group");
        for group in groups {
            let found = aws
                .c
                .logs
                .describe_log_groups()
                .log_group_name_prefix(group)
                .send()
                .await
                .expect("logs:DescribeLogGroups");
            assert!(
                found
                    .log_groups()
                    .iter()
                    .any(|g| g.log_group_name() == Some(group.as_str())),
                "{query_name} names {group}, which does not exist"
            );
        }
    }

    // Every request of the env's API stage traced, by a rule tagged as the
    // env's; a rate someone lowered is drift that `plan` shows.
    let rule = sampling_rule(&aws, &name).await.expect("the sampling rule");
    assert_eq!(rule.fixed_rate(), 1.0);
    assert_eq!(rule.service_name(), format!("payops-{name}-api/v1"));
    assert_eq!(rule.service_type(), "AWS::ApiGateway::Stage");
    let rule_tags = aws
        .c
        .xray
        .list_tags_for_resource()
        .resource_arn(rule.rule_arn().unwrap())
        .send()
        .await
        .expect("xray:ListTagsForResource");
    assert!(
        rule_tags
            .tags()
            .iter()
            .any(|t| t.key() == "payops:env" && t.value() == name),
        "{rule_tags:?}"
    );
    aws.c
        .xray
        .update_sampling_rule()
        .sampling_rule_update(
            aws_sdk_xray::types::SamplingRuleUpdate::builder()
                .rule_name(rule.rule_name().unwrap())
                .fixed_rate(0.05)
                .build(),
        )
        .send()
        .await
        .expect("xray:UpdateSamplingRule");
    let plan = env.plan_json();
    // The suite runs with PAYOPS_NO_BASELINE=1: the plan leaves it out.
    assert!(plan.get("baseline").is_none(), "{plan:#}");
    let planned = actions(&plan);
    assert_eq!(planned["xray-sampling-rule:payments"], "update", "{plan:#}");

    let down = env.down_json();
    down.assert_success();
    let steps = outcomes(&down.json());
    for step in [
        "dashboard",
        "alarm:api-p99-latency",
        "alarm:alb-5xx",
        "query-definition:failed-payments",
        "xray-sampling-rule:payments",
    ] {
        assert_eq!(steps[step], "deleted", "{step}: {steps:?}");
    }
    assert!(
        alarms(&aws, &name).await.is_empty(),
        "alarms left: {:?}",
        alarms(&aws, &name).await.keys()
    );
    assert_eq!(
        dashboard(&aws, &format!("payops-{name}-{REGION}")).await,
        None
    );
    let listed = aws
        .c
        .cloudwatch
        .list_dashboards()
        .dashboard_name_prefix(format!("payops-{name}"))
        .send()
        .await
        .expect("ListDashboards");
    assert!(listed.dashboard_entries().is_empty(), "{listed:?}");
    let left = remaining(&aws, &name).await;
    assert!(left.is_empty(), "left behind by down: {left:#?}");
}
