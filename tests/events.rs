//! Integration tests of the event backbone's EventBridge part (issue 18): the
//! env's encrypted bus, its routing rules with their targets' retry policies
//! and dead-letter queue, the policies that let EventBridge deliver, drift on
//! a rule and on a queue's redrive policy repaired by `up`, `--events off`,
//! the transaction log (its stream, error log and bucket), and teardown,
//! each checked
//! through the AWS SDK against a local emulator (see tests/common/mod.rs).
//!
//! ```sh
//! PAYOPS_TEST_ENDPOINT=http://127.0.0.1:5255 PAYOPS_TEST_EMULATOR=moto \
//!     cargo nextest run --test events --run-ignored only
//! ```
//!
//! Emulator gaps, covered by unit tests instead: neither emulator checks key
//! or queue policies, so delivery to an SSE-KMS queue succeeds here whatever
//! the policies say; moto has no UpdateEventBus (the bus's key drift is a
//! unit test), and LocalStack's bus keeps its key only through our extension.
//! moto's EventBridge does not deliver to SNS targets: a failed payment's
//! event reaching its topic is shown on LocalStack only.

mod common;

use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::{Value, json};

use common::{
    Aws, QUEUE_CONSUMER, TestEnv, assert_no_mutation, assert_payops_tags, error_code, outcomes,
    output, remaining, statuses, strings,
};

/// Each rule: (step, rule name suffix, on the env's bus, target output,
/// target id, max event age, retry attempts).
const RULES: [(&str, &str, bool, &str, &str, i32, i32); 3] = [
    (
        "event-rule:payment-succeeded",
        "payment-succeeded",
        true,
        "PaymentsAnalyticsQueueArn",
        "analytics-queue",
        86_400,
        185,
    ),
    (
        "event-rule:payment-failed",
        "payment-failed",
        true,
        "FailedTransactionsTopicArn",
        "failed-transactions-topic",
        3_600,
        24,
    ),
    (
        "event-rule:db-failover",
        "db-failover",
        false,
        "SystemErrorsTopicArn",
        "system-errors-topic",
        3_600,
        24,
    ),
];

fn bus_of(env: &str, on_env_bus: bool) -> String {
    if on_env_bus {
        format!("payops-{env}-payments")
    } else {
        "default".to_owned()
    }
}

async fn queue_policy(aws: &Aws, queue_arn: &str) -> Value {
    let name = queue_arn.rsplit(':').next().unwrap();
    let url = aws
        .c
        .sqs
        .get_queue_url()
        .queue_name(name)
        .send()
        .await
        .expect("sqs:GetQueueUrl")
        .queue_url()
        .unwrap()
        .to_owned();
    let attrs = aws
        .c
        .sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::Policy)
        .send()
        .await
        .expect("sqs:GetQueueAttributes");
    let text = attrs
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::Policy))
        .expect("a queue policy");
    serde_json::from_str(text).expect("the queue policy is JSON")
}

/// The statement of `policy` for `events.amazonaws.com`.
fn eventbridge_statement(policy: &Value) -> &Value {
    policy["Statement"]
        .as_array()
        .and_then(|s| {
            s.iter()
                .find(|s| s["Principal"]["Service"] == "events.amazonaws.com")
        })
        .unwrap_or_else(|| panic!("no EventBridge statement in {policy:#}"))
}

// ===================================================================== 1

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an AWS emulator: make test-integration"]
async fn up_builds_an_encrypted_bus_and_rules_whose_targets_retry_and_dead_letter() {
    let env = TestEnv::new();
    let aws = Aws::connect().await;
    env.up_json(&[]);
    let outputs = env.outputs();
    let name = env.name.as_str();
    let dlq = output(&outputs, "PaymentsEventsDlqArn");

    // The bus: the events key, the events DLQ, our tags.
    let bus_name = format!("payops-{name}-payments");
    let bus = aws
        .c
        .events
        .describe_event_bus()
        .name(&bus_name)
        .send()
        .await
        .expect("events:DescribeEventBus");
    let bus_arn = bus.arn().expect("a bus ARN").to_owned();
    assert_eq!(output(&outputs, "EventBusArn"), bus_arn);
    assert_eq!(output(&outputs, "EventBusName"), bus_name);
    assert_eq!(
        bus.kms_key_identifier(),
        Some(output(&outputs, "EventsKmsKeyArn"))
    );
    assert_eq!(bus.dead_letter_config().and_then(|d| d.arn()), Some(dlq));
    let tags = aws
        .c
        .events
        .list_tags_for_resource()
        .resource_arn(&bus_arn)
        .send()
        .await
        .expect("events:ListTagsForResource");
    let tags = tags
        .tags()
        .iter()
        .map(|t| (t.key().to_owned(), t.value().to_owned()))
        .collect();
    assert_payops_tags(&bus_name, &tags, name, "event-bus:payments");

    // Each rule: enabled, its pattern, one target with retries and the DLQ.
    for (step, suffix, on_env_bus, target, id, age, attempts) in RULES {
        let rule_name = format!("payops-{name}-{suffix}");
        let bus = bus_of(name, on_env_bus);
        let rule = aws
            .c
            .events
            .describe_rule()
            .name(&rule_name)
            .event_bus_name(&bus)
            .send()
            .await
            .unwrap_or_else(|e| panic!("events:DescribeRule {rule_name}: {e:?}"));
        assert_eq!(
            rule.state().map(|s| s.as_str()),
            Some("ENABLED"),
            "{rule_name}"
        );
        let pattern: Value = serde_json::from_str(rule.event_pattern().unwrap()).unwrap();
        let rule_arn = rule.arn().expect("a rule ARN").to_owned();
        let tags = aws
            .c
            .events
            .list_tags_for_resource()
            .resource_arn(&rule_arn)
            .send()
            .await
            .expect("events:ListTagsForResource");
        let tags = tags
            .tags()
            .iter()
            .map(|t| (t.key().to_owned(), t.value().to_owned()))
            .collect();
        assert_payops_tags(&rule_name, &tags, name, step);
        let targets = aws
            .c
            .events
            .list_targets_by_rule()
            .rule(&rule_name)
            .event_bus_name(&bus)
            .send()
            .await
            .expect("events:ListTargetsByRule");
        let [t] = targets.targets() else {
            panic!("{rule_name}: expected one target, got {targets:?}");
        };
        assert_eq!(t.id(), id);
        assert_eq!(t.arn(), output(&outputs, target), "{rule_name}");
        let retry = t.retry_policy().expect("a retry policy");
        assert_eq!(
            retry.maximum_event_age_in_seconds(),
            Some(age),
            "{rule_name}"
        );
        assert_eq!(
            retry.maximum_retry_attempts(),
            Some(attempts),
            "{rule_name}"
        );
        assert_eq!(t.dead_letter_config().and_then(|d| d.arn()), Some(dlq));

        match suffix {
            "payment-succeeded" | "payment-failed" => {
                assert_eq!(pattern["source"], json!(["payops.payments"]), "{rule_name}");
            }
            _ => {
                assert_eq!(pattern["source"], json!(["aws.rds"]));
                assert!(
                    strings(&pattern["detail"]["SourceIdentifier"])
                        .contains(&format!("payops-{name}-aurora"))
                );
            }
        }

        // The target lets EventBridge deliver for this rule only.
        if target.ends_with("QueueArn") {
            let policy = queue_policy(&aws, output(&outputs, target)).await;
            let s = eventbridge_statement(&policy);
            assert_eq!(s["Action"], "sqs:SendMessage");
            assert_eq!(
                strings(&s["Condition"]["ArnEquals"]["aws:SourceArn"]),
                std::slice::from_ref(&rule_arn)
            );
        } else {
            let attrs = aws
                .c
                .sns
                .get_topic_attributes()
                .topic_arn(output(&outputs, target))
                .send()
                .await
                .expect("sns:GetTopicAttributes");
            let policy: Value =
                serde_json::from_str(&attrs.attributes().unwrap()["Policy"]).unwrap();
            let s = eventbridge_statement(&policy);
            assert_eq!(s["Action"], "sns:Publish");
            // The system-errors topic also takes the compliance route's
            // findings (compliance_rule.rs): the env's own rules only.
            let sources = strings(&s["Condition"]["ArnEquals"]["aws:SourceArn"]);
            assert!(sources.contains(&rule_arn), "{sources:?}");
            let env_rules = rule_arn.replace(&format!("-{suffix}"), "-");
            assert!(
                sources.iter().all(|arn| arn.starts_with(&env_rules)),
                "{sources:?}"
            );
        }
    }

    // The DLQ takes what the bus and each rule cannot deliver.
    let policy = queue_policy(&aws, dlq).await;
    let senders =
        strings(&eventbridge_statement(&policy)["Condition"]["ArnEquals"]["aws:SourceArn"]);
    assert_eq!(senders.len(), 4, "{senders:?}");
    assert!(senders.contains(&bus_arn), "{senders:?}");

    // The events key lets EventBridge use it for this bus only.
    let key_policy = aws
        .c
        .kms
        .get_key_policy()
        .key_id(output(&outputs, "EventsKmsKeyArn"))
        .policy_name("default")
        .send()
        .await
        .expect("kms:GetKeyPolicy");
    let key_policy: Value = serde_json::from_str(key_policy.policy().unwrap()).unwrap();
    let bus_statement = key_policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Sid"] == "EventBridgeEncryptsTheEnvsBus")
        .expect("the bus statement");
    assert_eq!(
        bus_statement["Condition"]["StringEquals"]["kms:EncryptionContext:aws:events:event-bus:arn"],
        bus_arn
    );

    // A payment-succeeded event on the bus lands in the analytics queue,
    // where the emulator delivers rule targets.
    let put = aws
        .c
        .events
        .put_events()
        .entries(
            PutEventsRequestEntry::builder()
                .event_bus_name(&bus_name)
                .source("payops.payments")
                .detail_type("Payment Succeeded")
                .detail(r#"{"transactionId":"txn-it-1","amount":"12.50"}"#)
                .build(),
        )
        .send()
        .await
        .expect("events:PutEvents");
    assert_eq!(put.failed_entry_count(), 0, "{put:?}");
    let analytics = output(&outputs, "PaymentsAnalyticsQueueUrl");
    let mut bodies = Vec::new();
    // Delivery is asynchronous: a bounded number of long polls.
    for _ in 0..10 {
        let got = aws
            .c
            .sqs
            .receive_message()
            .queue_url(analytics)
            .wait_time_seconds(1)
            .max_number_of_messages(10)
            .send()
            .await
            .expect("sqs:ReceiveMessage");
        bodies.extend(
            got.messages()
                .iter()
                .filter_map(|m| m.body().map(str::to_owned)),
        );
        if !bodies.is_empty() {
            break;
        }
    }
    let event: Value = serde_json::from_str(
        bodies
            .first()
            .unwrap_or_else(|| panic!("no event reached the analytics queue")),
    )
    .unwrap();
    assert_eq!(event["detail-type"], "Payment Succeeded");
    assert_eq!(event["detail"]["transactionId"], "txn-it-1");

    // A payment-failed event reaches the failed-transactions topic, seen
    // through a queue the test subscribes to it. LocalStack only: moto's
    // EventBridge delivers to SQS, log group and bus targets, not to SNS
    // (there the rule's target and the topic's policy are checked above,
    // and the handler's publish by lambda/tests/test_transaction.py).
    if common::emulator() == common::Emulator::LocalStack {
        let topic = output(&outputs, "FailedTransactionsTopicArn");
        let seen_url = aws
            .c
            .sqs
            .create_queue()
            .queue_name(format!("it-{name}-failed-seen"))
            .send()
            .await
            .expect("sqs:CreateQueue")
            .queue_url()
            .unwrap()
            .to_owned();
        let seen_arn = aws
            .c
            .sqs
            .get_queue_attributes()
            .queue_url(&seen_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("sqs:GetQueueAttributes")
            .attributes()
            .unwrap()[&QueueAttributeName::QueueArn]
            .clone();
        let subscription = aws
            .c
            .sns
            .subscribe()
            .topic_arn(topic)
            .protocol("sqs")
            .endpoint(&seen_arn)
            .attributes("RawMessageDelivery", "true")
            .return_subscription_arn(true)
            .send()
            .await
            .expect("sns:Subscribe")
            .subscription_arn()
            .unwrap()
            .to_owned();
        let put = aws
            .c
            .events
            .put_events()
            .entries(
                PutEventsRequestEntry::builder()
                    .event_bus_name(&bus_name)
                    .source("payops.payments")
                    .detail_type("Payment Failed")
                    .detail(r#"{"transactionId":"txn-it-2","reason":"CARD_DECLINED"}"#)
                    .build(),
            )
            .send()
            .await
            .expect("events:PutEvents");
        assert_eq!(put.failed_entry_count(), 0, "{put:?}");
        let mut bodies = Vec::new();
        for _ in 0..10 {
            let got = aws
                .c
                .sqs
                .receive_message()
                .queue_url(&seen_url)
                .wait_time_seconds(1)
                .max_number_of_messages(10)
                .send()
                .await
                .expect("sqs:ReceiveMessage");
            bodies.extend(
                got.messages()
                    .iter()
                    .filter_map(|m| m.body().map(str::to_owned)),
            );
            if !bodies.is_empty() {
                break;
            }
        }
        aws.c
            .sns
            .unsubscribe()
            .subscription_arn(&subscription)
            .send()
            .await
            .expect("sns:Unsubscribe");
        aws.c
            .sqs
            .delete_queue()
            .queue_url(&seen_url)
            .send()
            .await
            .expect("sqs:DeleteQueue");
        let event: Value = serde_json::from_str(
            bodies
                .first()
                .unwrap_or_else(|| panic!("no event reached the failed-transactions topic")),
        )
        .unwrap();
        assert_eq!(event["detail-type"], "Payment Failed");
        assert_eq!(event["detail"]["reason"], "CARD_DECLINED");
    }
}

// ===================================================================== 2

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an AWS emulator: make test-integration"]
async fn a_rule_changed_out_of_band_is_drift_that_up_repairs_then_changes_nothing() {
    let env = TestEnv::new();
    let aws = Aws::connect().await;
    env.up_json(&[]);
    let outputs = env.outputs();
    let name = env.name.as_str();
    let bus = format!("payops-{name}-payments");
    let succeeded = format!("payops-{name}-payment-succeeded");
    let failed = format!("payops-{name}-payment-failed");

    // Out of band: the succeeded rule's target now goes elsewhere with no
    // retry policy, an extra target appears, the failed rule's pattern is
    // widened to every payment event, and the processing queue's redrive
    // policy lets a poison message be received 50 times before it is
    // dead-lettered.
    let elsewhere = output(&outputs, "PaymentsProcessingQueueArn");
    let processing = output(&outputs, "PaymentsProcessingQueueUrl");
    let dlq_arn = output(&outputs, "PaymentsProcessingDlqArn");
    aws.c
        .sqs
        .set_queue_attributes()
        .queue_url(processing)
        .attributes(
            QueueAttributeName::RedrivePolicy,
            json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 50}).to_string(),
        )
        .send()
        .await
        .expect("sqs:SetQueueAttributes");
    aws.c
        .events
        .put_targets()
        .rule(&succeeded)
        .event_bus_name(&bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("analytics-queue")
                .arn(elsewhere)
                .build()
                .unwrap(),
        )
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("sneaky")
                .arn(elsewhere)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("events:PutTargets");
    aws.c
        .events
        .put_rule()
        .name(&failed)
        .event_bus_name(&bus)
        .event_pattern(r#"{"source":["payops.payments"]}"#)
        .send()
        .await
        .expect("events:PutRule");

    let status = env.status_json();
    let rows = statuses(&status);
    for step in [
        "event-rule:payment-succeeded",
        "event-rule:payment-failed",
        "sqs-queue:payments-processing",
    ] {
        assert_eq!(rows[step], "drifted", "status of {step}: {status:#}");
    }
    assert_eq!(
        rows["sqs-queue:payments-analytics"], "in sync",
        "{status:#}"
    );
    assert_eq!(rows["event-rule:db-failover"], "in sync", "{status:#}");
    assert_eq!(rows["event-bus:payments"], "in sync", "{status:#}");

    let (_, report) = env.up_json(&[]);
    let steps = outcomes(&report);
    assert_eq!(
        steps["event-rule:payment-succeeded"], "updated",
        "{steps:?}"
    );
    assert_eq!(steps["event-rule:payment-failed"], "updated", "{steps:?}");
    assert_eq!(
        steps["sqs-queue:payments-processing"], "updated",
        "{steps:?}"
    );
    let attrs = aws
        .c
        .sqs
        .get_queue_attributes()
        .queue_url(processing)
        .attribute_names(QueueAttributeName::RedrivePolicy)
        .send()
        .await
        .expect("sqs:GetQueueAttributes");
    let redrive: Value =
        serde_json::from_str(&attrs.attributes().unwrap()[&QueueAttributeName::RedrivePolicy])
            .unwrap();
    assert_eq!(redrive["deadLetterTargetArn"], dlq_arn, "{redrive}");
    // SQS answers the count as a number or a string, per emulator.
    assert_eq!(
        redrive["maxReceiveCount"].to_string().trim_matches('"'),
        "5"
    );
    let targets = aws
        .c
        .events
        .list_targets_by_rule()
        .rule(&succeeded)
        .event_bus_name(&bus)
        .send()
        .await
        .expect("events:ListTargetsByRule");
    let [t] = targets.targets() else {
        panic!("expected the one target back, got {targets:?}");
    };
    assert_eq!(t.arn(), output(&outputs, "PaymentsAnalyticsQueueArn"));
    assert!(t.retry_policy().is_some());
    let rule = aws
        .c
        .events
        .describe_rule()
        .name(&failed)
        .event_bus_name(&bus)
        .send()
        .await
        .expect("events:DescribeRule");
    let pattern: Value = serde_json::from_str(rule.event_pattern().unwrap()).unwrap();
    assert_eq!(pattern["detail-type"], json!(["Payment Failed"]));

    let (_, again) = env.up_json(&[]);
    assert_no_mutation(&again, "up after the repair");
}

// ===================================================================== 3

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an AWS emulator: make test-integration"]
async fn events_off_removes_the_rules_and_the_bus_and_down_leaves_nothing() {
    let mut env = TestEnv::new();
    let aws = Aws::connect().await;
    env.up_json(&[]);
    let name = env.name.clone();
    let bus = format!("payops-{name}-payments");

    let (_, report) = env.up_json(&["--events", "off"]);
    let steps = outcomes(&report);
    // `up` walks forward: the bus goes first and takes its rules along
    // (targets first); the failover rule, on the default bus, goes itself.
    for step in [
        "event-rule:db-failover",
        "event-bus:payments",
        "sqs-queue:payments-events-dlq",
        // The transaction log is part of the backbone.
        "firehose-stream:transaction-log",
        "s3-bucket:transaction-log",
        "iam-role:transaction-log-delivery",
        "lambda-function:transaction-log-transform",
        "log-group:transaction-log-delivery",
        "alarm:transaction-log-records-failed",
    ] {
        assert_eq!(steps[step], "deleted", "{step}: {steps:?}");
    }
    let left = common::transaction_log_remaining(&aws, &name).await;
    assert!(left.is_empty(), "left by --events off: {left:#?}");
    for suffix in ["payment-succeeded", "payment-failed"] {
        let rule = aws
            .c
            .events
            .describe_rule()
            .name(format!("payops-{name}-{suffix}"))
            .event_bus_name(&bus)
            .send()
            .await;
        assert_eq!(
            rule.as_ref().err().and_then(error_code),
            Some("ResourceNotFoundException"),
            "{rule:?}"
        );
    }
    let gone = aws.c.events.describe_event_bus().name(&bus).send().await;
    assert_eq!(
        gone.as_ref().err().and_then(error_code),
        Some("ResourceNotFoundException"),
        "{gone:?}"
    );
    let failover = aws
        .c
        .events
        .describe_rule()
        .name(format!("payops-{name}-db-failover"))
        .send()
        .await;
    assert_eq!(
        failover.as_ref().err().and_then(error_code),
        Some("ResourceNotFoundException"),
        "{failover:?}"
    );
    // A later up without the flag keeps it off.
    let (_, again) = env.up_json(&[]);
    assert_no_mutation(&again, "up after --events off");

    // Back on, then down: nothing left, the rules before the bus.
    env.up_json(&["--events", "on"]);
    let down = env.down_json();
    down.assert_success();
    let steps = outcomes(&down.json());
    for step in [
        "event-rule:payment-succeeded",
        "event-rule:db-failover",
        "event-bus:payments",
    ] {
        assert_eq!(steps[step], "deleted", "{step}: {steps:?}");
    }
    let left = remaining(&aws, &name).await;
    assert!(left.is_empty(), "left behind by down: {left:#?}");
    let buses = aws
        .c
        .events
        .list_event_buses()
        .name_prefix(&bus)
        .send()
        .await
        .expect("events:ListEventBuses");
    assert!(buses.event_buses().is_empty(), "{buses:?}");
}

// ===================================================================== 4

/// The consumer's mappings of the processing queue, as Lambda lists them.
async fn consumer_mappings(
    aws: &Aws,
    queue_arn: &str,
) -> Vec<aws_sdk_lambda::types::EventSourceMappingConfiguration> {
    aws.c
        .lambda
        .list_event_source_mappings()
        .event_source_arn(queue_arn)
        .send()
        .await
        .expect("lambda:ListEventSourceMappings")
        .event_source_mappings()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an AWS emulator: make test-integration"]
async fn the_queue_consumer_reads_the_processing_queue_reporting_partial_batch_failures() {
    let mut env = TestEnv::new();
    let aws = Aws::connect().await;
    env.up_json(&[]);
    let outputs = env.outputs();
    let name = env.name.clone();
    let queue_arn = output(&outputs, "PaymentsProcessingQueueArn").to_owned();
    let consumer = format!("payops-{name}-{QUEUE_CONSUMER}");

    // The consumer: in the VPC, traced, with its own role, its timeout
    // within the queue's visibility timeout (Lambda refuses the mapping
    // otherwise).
    let config = aws
        .c
        .lambda
        .get_function_configuration()
        .function_name(&consumer)
        .send()
        .await
        .expect("lambda:GetFunctionConfiguration");
    assert_eq!(
        config.handler(),
        Some("payment_queue_consumer.handler"),
        "{config:?}"
    );
    assert!(
        config
            .vpc_config()
            .is_some_and(|v| !v.subnet_ids().is_empty()),
        "{config:?}"
    );
    assert_eq!(
        config
            .tracing_config()
            .and_then(|t| t.mode())
            .map(|m| m.as_str()),
        Some("Active")
    );
    assert!(
        config
            .role()
            .is_some_and(|r| r.ends_with(&format!("-{QUEUE_CONSUMER}"))),
        "{config:?}"
    );
    let queue_url = output(&outputs, "PaymentsProcessingQueueUrl").to_owned();
    let visibility: i32 = aws
        .c
        .sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(QueueAttributeName::VisibilityTimeout)
        .send()
        .await
        .expect("sqs:GetQueueAttributes")
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::VisibilityTimeout))
        .and_then(|v| v.parse().ok())
        .expect("a visibility timeout");
    assert!(
        visibility >= 6 * config.timeout().unwrap_or(i32::MAX),
        "visibility {visibility} s for a function timeout of {:?} s",
        config.timeout()
    );

    // The mapping: one, to the consumer, reporting partial batch failures.
    let mappings = consumer_mappings(&aws, &queue_arn).await;
    assert_eq!(mappings.len(), 1, "{mappings:#?}");
    let m = &mappings[0];
    assert!(
        m.function_arn()
            .is_some_and(|f| f.ends_with(&format!(":function:{consumer}"))),
        "{m:?}"
    );
    assert_eq!(
        m.function_response_types()
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>(),
        ["ReportBatchItemFailures"]
    );
    assert_eq!(m.batch_size(), Some(10));
    assert_eq!(
        output(&outputs, "QueueConsumerMappingUuid"),
        m.uuid().unwrap()
    );
    // The rule a retried create relies on (its first answer lost, the
    // mapping made): AWS refuses a second mapping of the same queue and
    // function with ResourceConflictException, on which the step looks again
    // and adopts. The project's emulator patch
    // (`patch_lambda_one_mapping_per_source`) makes both emulators answer so.
    let again = aws
        .c
        .lambda
        .create_event_source_mapping()
        .function_name(&consumer)
        .event_source_arn(&queue_arn)
        .send()
        .await;
    assert_eq!(
        again.as_ref().err().and_then(common::error_code),
        Some("ResourceConflictException"),
        "{again:?}"
    );
    assert_eq!(consumer_mappings(&aws, &queue_arn).await.len(), 1);

    // Out of band: smaller batches, no partial failures, disabled. Status
    // shows it, up repairs it, and a second up changes nothing (below).
    aws.c
        .lambda
        .update_event_source_mapping()
        .uuid(m.uuid().unwrap())
        .batch_size(1)
        .set_function_response_types(Some(Vec::new()))
        .enabled(false)
        .send()
        .await
        .expect("lambda:UpdateEventSourceMapping");
    // A poison message (the consumer reports it failed, so it is never
    // deleted) leaves the queue for its DLQ after maxReceiveCount receives.
    // Received by hand while the mapping is disabled: moto hands each sent
    // message to the mapping at once, and without Docker its invocation
    // "succeeds" and deletes the message whatever the handler would report
    // (the handler's batchItemFailures are covered by lambda/tests).
    aws.c
        .sqs
        .send_message()
        .queue_url(&queue_url)
        .message_body("not json {")
        .send()
        .await
        .expect("sqs:SendMessage");
    for _ in 0..6 {
        aws.c
            .sqs
            .receive_message()
            .queue_url(&queue_url)
            .visibility_timeout(0)
            .max_number_of_messages(10)
            .send()
            .await
            .expect("sqs:ReceiveMessage");
    }
    let dlq_url = output(&outputs, "PaymentsProcessingDlqUrl");
    let dead = aws
        .c
        .sqs
        .receive_message()
        .queue_url(dlq_url)
        .max_number_of_messages(10)
        .send()
        .await
        .expect("sqs:ReceiveMessage");
    assert_eq!(
        dead.messages()
            .iter()
            .filter_map(|m| m.body())
            .collect::<Vec<_>>(),
        ["not json {"],
        "the poison message is in the DLQ"
    );

    let step = "event-source-mapping:payments-processing";
    let status = env.status_json();
    assert_eq!(statuses(&status)[step], "drifted", "{status:#}");
    let (_, report) = env.up_json(&[]);
    assert_eq!(outcomes(&report)[step], "updated", "{report:#}");
    let m = &consumer_mappings(&aws, &queue_arn).await[0];
    assert_eq!(m.batch_size(), Some(10));
    assert_eq!(m.function_response_types().len(), 1, "{m:?}");
    let (_, again) = env.up_json(&[]);
    assert_no_mutation(&again, "up after repairing the mapping");

    // Without the backbone, the mapping goes with the consumer.
    let (_, report) = env.up_json(&["--events", "off"]);
    let steps = outcomes(&report);
    for step in [step, "lambda-function:payment-queue-consumer"] {
        assert_eq!(steps[step], "deleted", "{step}: {steps:?}");
    }
    assert!(consumer_mappings(&aws, &queue_arn).await.is_empty());

    // Back on, then down: the mapping goes before the function and nothing
    // is left.
    env.up_json(&["--events", "on"]);
    assert_eq!(consumer_mappings(&aws, &queue_arn).await.len(), 1);
    let down = env.down_json();
    down.assert_success();
    let steps = outcomes(&down.json());
    assert_eq!(steps[step], "deleted", "{steps:?}");
    assert!(consumer_mappings(&aws, &queue_arn).await.is_empty());
    let left = remaining(&aws, &name).await;
    assert!(left.is_empty(), "left behind by down: {left:#?}");
}

// ===================================================================== 5

/// The transaction log (issue 18, item 4): the stream exists with its
/// settings, a record put through it lands in the bucket where the emulator
/// delivers, a second `up` changes nothing and `down` leaves nothing.
///
/// Emulator gaps: neither runs the transform function here (Lambda needs
/// Docker), so what lands is the record as put: moto writes each PutRecord
/// straight to the destination bucket under the prefix (it does not expand
/// `!{timestamp:...}` expressions, compress or buffer); LocalStack's
/// delivery (checked when it serves Firehose) depends on its Lambda for the
/// processor. The transform's contract is covered by lambda/tests, the
/// stream's AWS rules (role propagation, CREATING/DELETING waits, version
/// ids) by unit tests with AWS's answers.
#[tokio::test]
#[ignore = "needs an emulator: PAYOPS_TEST_ENDPOINT"]
async fn the_transaction_log_stream_delivers_to_its_bucket_and_goes_with_down() {
    let mut env = TestEnv::new();
    let aws = Aws::connect().await;
    let (_, report) = env.up_json(&[]);
    let steps = outcomes(&report);
    for step in [
        "s3-bucket:transaction-log",
        "log-group:transaction-log-delivery",
        "iam-role:transaction-log-delivery",
        "lambda-function:transaction-log-transform",
        "firehose-stream:transaction-log",
        "alarm:transaction-log-freshness",
        "alarm:transaction-log-records-failed",
        "alarm:settlement-requests-failed",
    ] {
        assert_eq!(steps[step], "created", "{step}: {steps:?}");
    }
    let name = env.name.clone();
    let outs = env.outputs();
    let stream = output(&outs, "TransactionLogStreamName").to_owned();
    assert_eq!(stream, format!("payops-{name}-transaction-log"));
    let described = aws
        .c
        .firehose
        .describe_delivery_stream()
        .delivery_stream_name(&stream)
        .send()
        .await
        .expect("firehose:DescribeDeliveryStream");
    let d = described.delivery_stream_description().unwrap();
    assert_eq!(d.delivery_stream_status().as_str(), "ACTIVE");
    assert_eq!(d.delivery_stream_type().as_str(), "DirectPut");
    let dest = d.destinations()[0]
        .extended_s3_destination_description()
        .expect("an extended S3 destination");
    assert_eq!(dest.bucket_arn(), output(&outs, "TransactionLogBucketArn"));
    assert_eq!(
        dest.role_arn(),
        output(&outs, "TransactionLogDeliveryRoleArn")
    );
    assert_eq!(dest.compression_format().as_str(), "GZIP");
    assert!(dest.prefix().unwrap_or("").starts_with("transactions/"));
    assert!(
        dest.error_output_prefix()
            .unwrap_or("")
            .starts_with("errors/")
    );
    let processor = &dest.processing_configuration().unwrap().processors()[0];
    assert!(
        processor
            .parameters()
            .iter()
            .any(|p| p.parameter_value() == output(&outs, "LogTransformFunctionArn")),
        "{processor:?}"
    );
    // Delivery and transform errors go to the env's log group, whose stream
    // payops made (Firehose makes neither through the API).
    let log_group = output(&outs, "TransactionLogDeliveryLogGroupName").to_owned();
    assert_eq!(
        log_group,
        format!("/payops/{name}/firehose/transaction-log")
    );
    let logging = dest
        .cloud_watch_logging_options()
        .expect("CloudWatchLoggingOptions");
    assert_eq!(logging.enabled(), Some(true), "{logging:?}");
    assert_eq!(logging.log_group_name(), Some(log_group.as_str()));
    assert_eq!(logging.log_stream_name(), Some("DestinationDelivery"));
    let log_streams = || async {
        aws.c
            .logs
            .describe_log_streams()
            .log_group_name(&log_group)
            .send()
            .await
            .expect("logs:DescribeLogStreams")
            .log_streams()
            .iter()
            .filter_map(|s| s.log_stream_name().map(str::to_owned))
            .collect::<Vec<_>>()
    };
    assert_eq!(log_streams().await, ["DestinationDelivery"]);
    // LocalStack 4.14 answers no encryption configuration (a gap: AWS always
    // does); moto echoes what was asked.
    if let Some(sse) = d.delivery_stream_encryption_configuration() {
        assert_eq!(sse.key_type().unwrap().as_str(), "CUSTOMER_MANAGED_CMK");
        assert_eq!(sse.key_arn(), Some(output(&outs, "EventsKmsKeyArn")));
    } else {
        assert_eq!(common::emulator(), common::Emulator::LocalStack);
    }

    // A record through the stream, where the emulator delivers it.
    let line = json!({"transactionId": "tx-log-1", "status": "PROCESSED", "amount": "1.00"});
    let put = aws
        .c
        .firehose
        .put_record()
        .delivery_stream_name(&stream)
        .record(
            aws_sdk_firehose::types::Record::builder()
                .data(aws_smithy_types::Blob::new(format!("{line}\n")))
                .build()
                .unwrap(),
        )
        .send()
        .await;
    let bucket = output(&outs, "TransactionLogBucketName").to_owned();
    if common::emulator() == common::Emulator::Moto {
        put.expect("firehose:PutRecord");
        let listed = aws
            .c
            .s3
            .list_objects_v2()
            .bucket(&bucket)
            .prefix("transactions/")
            .send()
            .await
            .expect("s3:ListObjectsV2");
        let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
        assert_eq!(keys.len(), 1, "{keys:?}");
        let body = aws
            .c
            .s3
            .get_object()
            .bucket(&bucket)
            .key(keys[0])
            .send()
            .await
            .expect("s3:GetObject")
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes();
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("tx-log-1"), "{text}");
    } else {
        // LocalStack runs the processor's Lambda, which cannot start
        // offline: the put may be refused; delivery is not checked there.
        eprintln!("firehose:PutRecord on {:?}: {put:?}", common::emulator());
    }

    let (_, again) = env.up_json(&[]);
    assert_no_mutation(&again, "second up with the transaction log");

    // The error log's stream deleted out of band: Firehose would log
    // nothing, silently. `status` says so and `up` makes it again.
    aws.c
        .logs
        .delete_log_stream()
        .log_group_name(&log_group)
        .log_stream_name("DestinationDelivery")
        .send()
        .await
        .expect("logs:DeleteLogStream");
    let step = "log-group:transaction-log-delivery";
    let status = env.status_json();
    assert_eq!(statuses(&status)[step], "drifted", "{status:#}");
    let (_, report) = env.up_json(&[]);
    assert_eq!(outcomes(&report)[step], "updated", "{report:#}");
    assert_eq!(log_streams().await, ["DestinationDelivery"]);

    let down = env.down_json();
    down.assert_success();
    let steps = outcomes(&down.json());
    assert_eq!(
        steps["firehose-stream:transaction-log"], "deleted",
        "{steps:?}"
    );
    let left = common::transaction_log_remaining(&aws, &name).await;
    assert!(left.is_empty(), "left behind by down: {left:#?}");
    let left = remaining(&aws, &name).await;
    assert!(left.is_empty(), "left behind by down: {left:#?}");
}
