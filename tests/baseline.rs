//! The account baseline on an emulator: an env's `up` creates or adopts
//! GuardDuty's detector, the HIGH-findings alerts (key, topic, rule), the
//! findings export (key, bucket, publishing destination), AWS Config's
//! recorder (key, versioned bucket, role, recorder + channel) and X-Ray's
//! encryption setting (key, setting); `plan` shows what `up` would do to
//! them first; a second env
//! reuses them; a second `up` changes nothing; `baseline down` removes only
//! what payops created, only once no env is left in the region.
//!
//! A detector is one per account and region, and the suite runs many tests
//! at once on one emulator: each test here talks to its own moto account
//! through the project's fault proxy (`--account-id`, no faults injected)
//! and runs its steps in order inside one function; the rest of the suite
//! runs with `PAYOPS_NO_BASELINE=1` (tests/common). On LocalStack these
//! skip (the per-request account is moto's); the pattern test runs on both,
//! and LocalStack (GuardDuty from its moto with the same patches,
//! `patch_guardduty_one_detector` and `patch_guardduty_publishing_destinations`)
//! gets `on_localstack_the_baseline_converges_and_goes`.
//!
//! ```sh
//! PAYOPS_TEST_ENDPOINT=http://127.0.0.1:5199 PAYOPS_TEST_EMULATOR=moto \
//!     cargo nextest run --test baseline --run-ignored only
//! ```

mod common;

use serde_json::Value;

use common::{Aws, FaultProxy, Run, TestEnv};

/// The fault proxy as an account of its own (no faults), stopped when
/// dropped. `prefix` keeps the tests of this file apart from each other (and
/// from tests/faults.rs's accounts); the pid, a rerun from an earlier one.
fn account(prefix: u8) -> FaultProxy {
    let account = format!("{prefix}{:011}", std::process::id());
    FaultProxy::start(&["--throttle", "0", "--lost", "0", "--account-id", &account])
}

fn moto_only() -> bool {
    if common::emulator() != common::Emulator::Moto {
        eprintln!("skipped: a per-test account is moto's (x-moto-account-id)");
        return false;
    }
    true
}

/// The baseline's items, in the order `baseline up` settles them.
const ITEMS: [&str; 13] = [
    "guardduty-detector",
    "alerts-key",
    "alerts-topic",
    "high-findings-rule",
    "findings-key",
    "findings-bucket",
    "findings-export",
    "config-key",
    "config-bucket",
    "config-role",
    "config-recorder",
    "xray-key",
    "xray-encryption",
];
/// payops' AWS Config recorder and delivery channel (both named so).
const RECORDER: &str = "payops-baseline";
const TOPIC: &str = "payops-baseline-security-alerts";
const RULE: &str = "payops-baseline-guardduty-high";

/// An env whose runs talk to `account` with the baseline on (the suite
/// turns it off for every other test, see tests/common).
fn env_in(account: &FaultProxy) -> TestEnv {
    TestEnv::new()
        .with_var("AWS_ENDPOINT_URL", &account.url)
        .without_var("PAYOPS_NO_BASELINE")
}

/// `payops --output json baseline <args>`, which must succeed.
#[track_caller]
fn baseline(env: &TestEnv, args: &[&str]) -> (Run, Value) {
    let mut all = vec!["--output", "json", "baseline"];
    all.extend_from_slice(args);
    let run = env.run(&all);
    run.assert_success();
    let doc = run.json();
    (run, doc)
}

/// item name -> (action, owner) of a report's baseline items.
fn actions(items: &Value) -> Vec<(String, String, String)> {
    items
        .as_array()
        .unwrap_or_else(|| panic!("items: {items:#}"))
        .iter()
        .map(|i| {
            (
                i["item"].as_str().unwrap().to_owned(),
                i["action"].as_str().unwrap().to_owned(),
                i["owner"].as_str().unwrap_or("-").to_owned(),
            )
        })
        .collect()
}

fn all_are(items: &Value, action: &str, owner: &str) -> bool {
    let got = actions(items);
    got.len() == ITEMS.len()
        && got
            .iter()
            .zip(ITEMS)
            .all(|((item, a, o), want)| item == want && a == action && o == owner)
}

async fn detector_ids(aws: &Aws) -> Vec<String> {
    aws.c
        .guardduty
        .list_detectors()
        .send()
        .await
        .expect("guardduty:ListDetectors")
        .detector_ids()
        .to_vec()
}

async fn recorder_names(aws: &Aws) -> Vec<String> {
    aws.c
        .config
        .describe_configuration_recorders()
        .send()
        .await
        .expect("config:DescribeConfigurationRecorders")
        .configuration_recorders()
        .iter()
        .filter_map(|r| r.name().map(str::to_owned))
        .collect()
}

/// X-Ray's encryption setting: (type, key, status).
async fn xray_encryption(aws: &Aws) -> (String, Option<String>, String) {
    let out = aws
        .c
        .xray
        .get_encryption_config()
        .send()
        .await
        .expect("xray:GetEncryptionConfig");
    let c = out.encryption_config().expect("a setting");
    (
        c.r#type()
            .map(|t| t.as_str().to_owned())
            .unwrap_or_default(),
        c.key_id().map(str::to_owned),
        c.status()
            .map(|t| t.as_str().to_owned())
            .unwrap_or_default(),
    )
}

/// The env's AWS Config rules (`payops-<env>-<check>`) that exist.
const CONFIG_CHECKS: [&str; 5] = [
    "encrypted-volumes",
    "rds-storage-encrypted",
    "vpc-flow-logs-enabled",
    "s3-bucket-ssl-requests-only",
    "s3-bucket-level-public-access-prohibited",
];

async fn env_config_rules(aws: &Aws, env: &str) -> Vec<aws_sdk_config::types::ConfigRule> {
    let mut found = Vec::new();
    for check in CONFIG_CHECKS {
        if let Ok(out) = aws
            .c
            .config
            .describe_config_rules()
            .config_rule_names(format!("payops-{env}-{check}"))
            .send()
            .await
        {
            found.extend(out.config_rules().iter().cloned());
        }
    }
    found
}

async fn topic_exists(aws: &Aws) -> bool {
    aws.c
        .sns
        .get_topic_attributes()
        .topic_arn(format!(
            "arn:aws:sns:{}:{}:{TOPIC}",
            aws.region, aws.account
        ))
        .send()
        .await
        .is_ok()
}

/// A fresh account: the first env's `up` creates the whole baseline (tagged
/// as payops'), a second env reuses it, a second `up` changes nothing,
/// `baseline down` is refused while envs exist, env `down` never touches the
/// baseline, and `baseline down` then removes all of it, dependents first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an AWS emulator: make test-integration"]
async fn the_first_env_creates_the_baseline_a_second_reuses_it_and_only_baseline_down_removes_it() {
    if !moto_only() {
        return;
    }
    let account = account(4);
    let mut first = env_in(&account);
    let mut second = env_in(&account);
    let aws = Aws::connect_to(&account.url).await;
    assert_eq!(
        detector_ids(&aws).await,
        Vec::<String>::new(),
        "a fresh account"
    );

    // `plan` shows the baseline `up` would make first, changing nothing.
    let plan = first.plan_json();
    let planned: Vec<(&str, &str)> = plan["baseline"]
        .as_array()
        .unwrap_or_else(|| panic!("{plan:#}"))
        .iter()
        .map(|i| (i["item"].as_str().unwrap(), i["action"].as_str().unwrap()))
        .collect();
    assert_eq!(planned, ITEMS.map(|i| (i, "create")), "{plan:#}");
    assert_eq!(
        detector_ids(&aws).await,
        Vec::<String>::new(),
        "plan made one"
    );
    assert_eq!(xray_encryption(&aws).await.0, "NONE");

    let (_, up) = first.up_json(&["--nat", "single"]);
    assert!(
        all_are(&up["baseline"], "created", "payops"),
        "{:#}",
        up["baseline"]
    );
    // X-Ray encrypts with the baseline key, and `up` waited for ACTIVE.
    let key = aws
        .c
        .kms
        .describe_key()
        .key_id("alias/payops-baseline/xray-traces")
        .send()
        .await
        .expect("kms:DescribeKey");
    let key_arn = key.key_metadata().and_then(|m| m.arn()).unwrap().to_owned();
    assert_eq!(
        xray_encryption(&aws).await,
        ("KMS".into(), Some(key_arn.clone()), "ACTIVE".into())
    );
    let detectors = detector_ids(&aws).await;
    assert_eq!(detectors.len(), 1);
    let id = &detectors[0];
    let got = aws
        .c
        .guardduty
        .get_detector()
        .detector_id(id)
        .send()
        .await
        .expect("guardduty:GetDetector");
    assert_eq!(
        got.finding_publishing_frequency().map(|f| f.as_str()),
        Some("SIX_HOURS")
    );
    let tags = got.tags().cloned().unwrap_or_default();
    assert_eq!(
        tags.get("payops:scope").map(String::as_str),
        Some("account-baseline"),
        "the record of who created it, in AWS: {tags:?}"
    );
    assert!(!tags.contains_key("payops:env"), "no env owns it: {tags:?}");

    // The alerts: an encrypted topic only the rule may publish to, and the
    // rule sending findings of severity 7 and above to it, with retries.
    let topic_arn = format!("arn:aws:sns:{}:{}:{TOPIC}", aws.region, aws.account);
    let attrs = aws
        .c
        .sns
        .get_topic_attributes()
        .topic_arn(&topic_arn)
        .send()
        .await
        .expect("sns:GetTopicAttributes");
    let attrs = attrs.attributes().cloned().unwrap_or_default();
    let key = attrs.get("KmsMasterKeyId").expect("an encrypted topic");
    assert!(key.contains(":key/"), "a customer-managed key's ARN: {key}");
    let policy: Value = serde_json::from_str(&attrs["Policy"]).unwrap();
    assert!(
        policy.to_string().contains(&format!(
            "arn:aws:events:{}:{}:rule/{RULE}",
            aws.region, aws.account
        )),
        "{policy:#}"
    );
    let rule = aws
        .c
        .events
        .describe_rule()
        .name(RULE)
        .send()
        .await
        .expect("events:DescribeRule");
    let pattern: Value = serde_json::from_str(rule.event_pattern().unwrap()).unwrap();
    assert_eq!(
        pattern["detail"]["severity"],
        serde_json::json!([{"numeric": [">=", 7]}])
    );
    let targets = aws
        .c
        .events
        .list_targets_by_rule()
        .rule(RULE)
        .send()
        .await
        .expect("events:ListTargetsByRule");
    let target = &targets.targets()[0];
    assert_eq!(target.arn(), topic_arn);
    assert_eq!(
        target
            .retry_policy()
            .and_then(|r| r.maximum_retry_attempts()),
        Some(185)
    );

    // The export: the detector publishes to the baseline bucket with its key.
    let dest = aws
        .c
        .guardduty
        .list_publishing_destinations()
        .detector_id(id)
        .send()
        .await
        .expect("guardduty:ListPublishingDestinations");
    assert_eq!(dest.destinations().len(), 1);
    let bucket = format!("payops-baseline-findings-{}-{}", aws.account, aws.region);
    let described = aws
        .c
        .guardduty
        .describe_publishing_destination()
        .detector_id(id)
        .destination_id(dest.destinations()[0].destination_id().unwrap())
        .send()
        .await
        .expect("guardduty:DescribePublishingDestination");
    let props = described.destination_properties().unwrap();
    assert_eq!(
        props.destination_arn(),
        Some(format!("arn:aws:s3:::{bucket}").as_str())
    );
    assert!(props.kms_key_arn().is_some_and(|k| k.contains(":key/")));
    let lifecycle = aws
        .c
        .s3
        .get_bucket_lifecycle_configuration()
        .bucket(&bucket)
        .send()
        .await
        .expect("s3:GetBucketLifecycleConfiguration");
    assert_eq!(
        lifecycle.rules()[0].expiration().and_then(|e| e.days()),
        Some(90)
    );

    // AWS Config: payops' recorder records every supported type with the
    // baseline role, and delivers to the versioned, KMS-encrypted bucket.
    let recorders = aws
        .c
        .config
        .describe_configuration_recorders()
        .send()
        .await
        .expect("config:DescribeConfigurationRecorders");
    let recorder = &recorders.configuration_recorders()[0];
    assert_eq!(recorders.configuration_recorders().len(), 1);
    assert_eq!(recorder.name(), Some(RECORDER));
    assert!(
        recorder
            .role_arn()
            .is_some_and(|r| r.ends_with(":role/payops-baseline-config-us-east-1")),
        "{recorder:?}"
    );
    assert!(
        recorder
            .recording_group()
            .is_some_and(|g| g.all_supported())
    );
    let status = aws
        .c
        .config
        .describe_configuration_recorder_status()
        .send()
        .await
        .expect("config:DescribeConfigurationRecorderStatus");
    assert!(status.configuration_recorders_status()[0].recording());
    let channels = aws
        .c
        .config
        .describe_delivery_channels()
        .send()
        .await
        .expect("config:DescribeDeliveryChannels");
    let config_bucket = format!("payops-baseline-config-{}-{}", aws.account, aws.region);
    let channel = &channels.delivery_channels()[0];
    assert_eq!(channel.s3_bucket_name(), Some(config_bucket.as_str()));
    assert!(
        channel
            .s3_kms_key_arn()
            .is_some_and(|k| k.contains(":key/"))
    );
    let versioning = aws
        .c
        .s3
        .get_bucket_versioning()
        .bucket(&config_bucket)
        .send()
        .await
        .expect("s3:GetBucketVersioning");
    assert_eq!(versioning.status().map(|s| s.as_str()), Some("Enabled"));

    // The env's compliance (a recorder is there): its AWS Config rules,
    // scoped to its tag, and the route of their NON_COMPLIANT results to the
    // remediation function and the system-errors topic.
    let rules = env_config_rules(&aws, &first.name).await;
    assert_eq!(rules.len(), CONFIG_CHECKS.len(), "{rules:?}");
    for rule in &rules {
        let name = rule.config_rule_name().unwrap();
        let tags = aws
            .c
            .config
            .list_tags_for_resource()
            .resource_arn(rule.config_rule_arn().unwrap())
            .send()
            .await
            .expect("config:ListTagsForResource");
        assert!(
            tags.tags()
                .iter()
                .any(|t| t.key() == Some("payops:env") && t.value() == Some(first.name.as_str())),
            "{name}: {tags:?}"
        );
        if !name.ends_with("vpc-flow-logs-enabled") {
            let scope = rule.scope().expect("scoped to the env's tag");
            assert_eq!(scope.tag_value(), Some(first.name.as_str()), "{name}");
        }
    }
    let route = format!("payops-{}-compliance-change", first.name);
    let targets = aws
        .c
        .events
        .list_targets_by_rule()
        .rule(&route)
        .send()
        .await
        .expect("events:ListTargetsByRule");
    let arns: Vec<&str> = targets.targets().iter().map(|t| t.arn()).collect();
    assert_eq!(arns.len(), 2, "{arns:?}");
    assert!(arns[0].ends_with(&format!(
        ":function:payops-{}-config-remediation",
        first.name
    )));
    assert!(arns[1].ends_with(&format!(":payops-{}-system-errors", first.name)));
    let function_policy = aws
        .c
        .lambda
        .get_policy()
        .function_name(format!("payops-{}-config-remediation", first.name))
        .send()
        .await
        .expect("lambda:GetPolicy");
    assert!(
        function_policy
            .policy()
            .unwrap_or_default()
            .contains(&format!("rule/{route}")),
        "{function_policy:?}"
    );

    // A second env in the account: the same baseline, nothing new (and
    // nothing for `plan` to do to it).
    let plan = second.plan_json();
    assert!(
        plan["baseline"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["action"] == "in-sync"),
        "{plan:#}"
    );
    let (_, up) = second.up_json(&["--nat", "single"]);
    assert!(
        all_are(&up["baseline"], "in-sync", "payops"),
        "{:#}",
        up["baseline"]
    );
    assert_eq!(detector_ids(&aws).await, detectors, "no second detector");

    // A second `up` of the first env: no mutating call at all.
    let (_, again) = first.up_json(&["--nat", "single"]);
    assert!(
        all_are(&again["baseline"], "in-sync", "payops"),
        "{:#}",
        again["baseline"]
    );
    assert_eq!(
        again["api_calls"]["mutating"], 0,
        "{:#}",
        again["api_calls"]
    );

    let refused = first.run(&["baseline", "down", "--yes"]);
    refused.assert_code(4);
    assert!(
        refused.stderr.contains("baseline down refused")
            && refused.stderr.contains(&first.name)
            && refused.stderr.contains(&second.name),
        "{}",
        refused.describe()
    );

    first.down().assert_success();
    assert_eq!(
        env_config_rules(&aws, &first.name).await.len(),
        0,
        "down removes the env's Config rules"
    );
    // The nightly sweep takes the other env, and nothing of the baseline.
    first.run(&["destroy-all", "--yes"]).assert_success();
    second.forget();
    let left = first.run(&["--output", "json", "status"]);
    left.assert_success();
    assert_eq!(
        left.json()["envs"],
        serde_json::json!([]),
        "{}",
        left.describe()
    );
    assert_eq!(detector_ids(&aws).await, detectors, "env down keeps it");
    assert!(topic_exists(&aws).await, "env down keeps the alerts topic");

    let (_, status) = baseline(&first, &["status"]);
    assert!(
        all_are(&status["items"], "observed", "payops"),
        "{status:#}"
    );
    assert_eq!(status["api_calls"]["mutating"], 0, "{status:#}");

    let (_, down) = baseline(&first, &["down", "--yes"]);
    let order: Vec<String> = actions(&down["items"]).into_iter().map(|a| a.0).collect();
    let mut reversed = ITEMS.map(str::to_owned).to_vec();
    reversed.reverse();
    // Dependents first: the recorder before its role, bucket and key, the
    // export before its bucket and key, the rule before its topic, the
    // topic before its key, the detector last.
    assert_eq!(
        order,
        [
            "xray-encryption",
            "xray-key",
            "config-recorder",
            "config-role",
            "config-bucket",
            "config-key",
            "findings-export",
            "findings-bucket",
            "findings-key",
            "high-findings-rule",
            "alerts-topic",
            "alerts-key",
            "guardduty-detector"
        ]
    );
    assert!(
        actions(&down["items"])
            .iter()
            .all(|(_, a, _)| a == "deleted"),
        "{down:#}"
    );
    assert_eq!(detector_ids(&aws).await, Vec::<String>::new());
    assert!(!topic_exists(&aws).await);
    assert_eq!(recorder_names(&aws).await, Vec::<String>::new());
    // X-Ray's default encryption back before its key was scheduled.
    assert_eq!(xray_encryption(&aws).await.0, "NONE");
    // Gone already: nothing to do, not an error.
    let (_, again) = baseline(&first, &["down", "--yes"]);
    assert!(
        actions(&again["items"])
            .iter()
            .all(|(_, a, _)| a == "absent"),
        "{again:#}"
    );
    assert_eq!(again["api_calls"]["mutating"], 0, "{again:#}");
}

/// Another team's detector, exporting to their own bucket: an env's `up`
/// adopts both (no second detector, no tag, no change, no bucket of
/// payops'), adds only the alerts, and neither env `down` nor `baseline
/// down` touches what it adopted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an AWS emulator: make test-integration"]
async fn a_detector_and_export_made_outside_payops_are_adopted_and_survive_every_down() {
    if !moto_only() {
        return;
    }
    let account = account(5);
    let mut env = env_in(&account);
    let aws = Aws::connect_to(&account.url).await;
    let theirs = aws
        .c
        .guardduty
        .create_detector()
        .enable(true)
        .finding_publishing_frequency(
            aws_sdk_guardduty::types::FindingPublishingFrequency::FifteenMinutes,
        )
        .tags("team", "security")
        .send()
        .await
        .expect("guardduty:CreateDetector")
        .detector_id()
        .expect("an id")
        .to_owned();
    let their_bucket = "arn:aws:s3:::security-team-findings";
    let their_export = aws
        .c
        .guardduty
        .create_publishing_destination()
        .detector_id(&theirs)
        .destination_type(aws_sdk_guardduty::types::DestinationType::S3)
        .destination_properties(
            aws_sdk_guardduty::types::DestinationProperties::builder()
                .destination_arn(their_bucket)
                .kms_key_arn("arn:aws:kms:us-east-1:111122223333:key/theirs")
                .build(),
        )
        .send()
        .await
        .expect("guardduty:CreatePublishingDestination")
        .destination_id()
        .expect("an id")
        .to_owned();

    // And their AWS Config recorder (one per region), not recording.
    aws.c
        .config
        .put_configuration_recorder()
        .configuration_recorder(
            aws_sdk_config::types::ConfigurationRecorder::builder()
                .name("security-team")
                .role_arn(format!("arn:aws:iam::{}:role/their-config", aws.account))
                .build(),
        )
        .send()
        .await
        .expect("config:PutConfigurationRecorder");

    // And their X-Ray encryption, with a key of their central account.
    let their_key = "arn:aws:kms:us-east-1:111122223333:key/their-traces";
    aws.c
        .xray
        .put_encryption_config()
        .r#type(aws_sdk_xray::types::EncryptionType::Kms)
        .key_id(their_key)
        .send()
        .await
        .expect("xray:PutEncryptionConfig");

    let (_, up) = env.up_json(&["--nat", "single"]);
    let got = actions(&up["baseline"]);
    let by_item = |item: &str| {
        got.iter()
            .find(|(i, _, _)| i == item)
            .map(|(_, a, o)| (a.as_str(), o.as_str()))
    };
    assert_eq!(
        by_item("guardduty-detector"),
        Some(("adopted", "adopted")),
        "{got:?}"
    );
    assert_eq!(
        by_item("findings-export"),
        Some(("adopted", "adopted")),
        "{got:?}"
    );
    assert_eq!(
        by_item("findings-bucket"),
        Some(("not-needed", "-")),
        "{got:?}"
    );
    assert_eq!(
        by_item("findings-key"),
        Some(("not-needed", "-")),
        "{got:?}"
    );
    assert_eq!(
        by_item("alerts-topic"),
        Some(("created", "payops")),
        "{got:?}"
    );
    assert_eq!(
        by_item("config-recorder"),
        Some(("adopted", "adopted")),
        "{got:?}"
    );
    for item in ["config-key", "config-bucket", "config-role", "xray-key"] {
        assert_eq!(by_item(item), Some(("not-needed", "-")), "{item}: {got:?}");
    }
    assert_eq!(
        by_item("xray-encryption"),
        Some(("adopted", "adopted")),
        "{got:?}"
    );
    assert_eq!(
        by_item("high-findings-rule"),
        Some(("created", "payops")),
        "{got:?}"
    );
    assert_eq!(
        detector_ids(&aws).await,
        std::slice::from_ref(&theirs),
        "no second detector"
    );

    env.down().assert_success();
    let (_, down) = baseline(&env, &["down", "--yes"]);
    let got = actions(&down["items"]);
    assert!(
        got.contains(&("guardduty-detector".into(), "kept".into(), "adopted".into()))
            && got.contains(&("findings-export".into(), "kept".into(), "adopted".into()))
            && got.contains(&("alerts-topic".into(), "deleted".into(), "payops".into()))
            && got.contains(&("config-recorder".into(), "kept".into(), "adopted".into()))
            && got.contains(&("xray-encryption".into(), "kept".into(), "adopted".into())),
        "{got:?}"
    );
    assert_eq!(
        xray_encryption(&aws).await.1.as_deref(),
        Some(their_key),
        "their setting is never changed or reverted"
    );
    assert_eq!(
        recorder_names(&aws).await,
        ["security-team"],
        "theirs stays"
    );
    let status = aws
        .c
        .config
        .describe_configuration_recorder_status()
        .send()
        .await
        .expect("config:DescribeConfigurationRecorderStatus");
    assert!(
        !status.configuration_recorders_status()[0].recording(),
        "never started by payops"
    );
    let _ = aws
        .c
        .config
        .delete_configuration_recorder()
        .configuration_recorder_name("security-team")
        .send()
        .await;
    let detector = aws
        .c
        .guardduty
        .get_detector()
        .detector_id(&theirs)
        .send()
        .await
        .expect("their detector is still there");
    assert_eq!(
        detector.finding_publishing_frequency().map(|f| f.as_str()),
        Some("FIFTEEN_MINUTES"),
        "their setting stays theirs"
    );
    let tags = detector.tags().cloned().unwrap_or_default();
    assert!(
        tags.keys().all(|k| !k.starts_with("payops:")),
        "never tagged: {tags:?}"
    );
    let export = aws
        .c
        .guardduty
        .describe_publishing_destination()
        .detector_id(&theirs)
        .destination_id(&their_export)
        .send()
        .await
        .expect("their export is still there");
    assert_eq!(
        export
            .destination_properties()
            .and_then(|p| p.destination_arn()),
        Some(their_bucket)
    );
    let _ = aws
        .c
        .guardduty
        .delete_detector()
        .detector_id(&theirs)
        .send()
        .await;
}

/// A GuardDuty finding as EventBridge delivers it (GuardDuty user guide,
/// "Creating custom responses to GuardDuty findings with Amazon
/// EventBridge": the sample event; finding fields abridged).
fn finding_event(severity: f64, kind: &str) -> Value {
    serde_json::json!({
        "version": "0",
        "id": "c8c4daa7-a20c-2f03-0070-b7393dd542ad",
        "detail-type": "GuardDuty Finding",
        "source": "aws.guardduty",
        "account": "123456789012",
        "time": "2026-12-06T12:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "schemaVersion": "2.0",
            "accountId": "123456789012",
            "region": "us-east-1",
            "partition": "aws",
            "id": "16afba5c5c43e07c9e3e5e2e544e95df",
            "arn": "arn:aws:guardduty:us-east-1:123456789012:detector/123456789012/finding/16afba5c5c43e07c9e3e5e2e544e95df",
            "type": kind,
            "resource": {"resourceType": "Instance", "instanceDetails": {"instanceId": "i-99999999"}},
            "service": {
                "serviceName": "guardduty",
                "detectorId": "123456789012",
                "action": {"actionType": "NETWORK_CONNECTION"},
                "resourceRole": "TARGET",
                "count": 1
            },
            "severity": severity,
            "createdAt": "2026-12-06T11:58:00.000Z",
            "updatedAt": "2026-12-06T11:58:00.000Z",
            "title": "Sample finding",
            "description": "Sample finding"
        }
    })
}

/// The rule's pattern, asked of EventBridge itself (TestEventPattern; the
/// project's moto patch answers with moto's own matcher, LocalStack
/// natively): a HIGH finding matches, a MEDIUM one does not. The unit test
/// in src/resources/baseline/guardduty.rs checks the same with an
/// in-process matcher.
#[tokio::test]
#[ignore = "needs an AWS emulator: make test-integration"]
async fn eventbridge_matches_high_findings_and_not_medium_ones() {
    if common::acceptance() {
        return;
    }
    let aws = Aws::connect_to(&common::endpoint_url().expect("an emulator")).await;
    let pattern = payops::resources::baseline::guardduty::high_findings_pattern().to_string();
    let test = |event: Value| {
        let pattern = pattern.clone();
        let events = aws.c.events.clone();
        async move {
            events
                .test_event_pattern()
                .event_pattern(pattern)
                .event(event.to_string())
                .send()
                .await
                .expect("events:TestEventPattern")
                .result()
        }
    };
    assert!(
        test(finding_event(8.0, "Backdoor:EC2/C&CActivity.B!DNS")).await,
        "HIGH"
    );
    assert!(
        test(finding_event(7.0, "CryptoCurrency:EC2/BitcoinTool.B!DNS")).await,
        "HIGH at 7.0"
    );
    assert!(
        !test(finding_event(5.0, "Recon:EC2/PortProbeUnprotectedPort")).await,
        "MEDIUM"
    );
    assert!(
        !test(finding_event(6.9, "UnauthorizedAccess:EC2/SSHBruteForce")).await,
        "MEDIUM at 6.9"
    );
}

/// AWS's sample "Config Rules Compliance Change" event (EventBridge events
/// reference, "AWS Config events"; lambda/tests/events/, which the handler's
/// tests read too), for `rule` turning `compliance`.
fn compliance_event(rule: &str, compliance: &str) -> Value {
    let mut e: Value = serde_json::from_str(include_str!(
        "../lambda/tests/events/config-compliance-change.json"
    ))
    .expect("the sample event is JSON");
    let detail = &mut e["detail"];
    detail["configRuleName"] = rule.into();
    detail["newEvaluationResult"]["evaluationResultIdentifier"]["evaluationResultQualifier"]["configRuleName"] =
        rule.into();
    detail["newEvaluationResult"]["complianceType"] = compliance.into();
    e
}

/// The env's compliance route, asked of EventBridge itself
/// (TestEventPattern): a NON_COMPLIANT change of one of the env's rules
/// matches; a COMPLIANT one, and another env's rule whose name starts with
/// this env's prefix, do not. The unit test in
/// src/resources/compliance/compliance_rule.rs checks the same in-process.
#[tokio::test]
#[ignore = "needs an AWS emulator: make test-integration"]
async fn eventbridge_routes_non_compliant_changes_of_the_envs_rules_only() {
    if common::acceptance() {
        return;
    }
    let aws = Aws::connect_to(&common::endpoint_url().expect("an emulator")).await;
    let names = payops::naming::Names::new(
        payops::naming::EnvName::parse("pr1").unwrap(),
        &aws.account,
        &aws.region,
    );
    let pattern = payops::resources::compliance_event_pattern(&names).to_string();
    let test = |event: Value| {
        let pattern = pattern.clone();
        let events = aws.c.events.clone();
        async move {
            events
                .test_event_pattern()
                .event_pattern(pattern)
                .event(event.to_string())
                .send()
                .await
                .expect("events:TestEventPattern")
                .result()
        }
    };
    let rule = "payops-pr1-vpc-flow-logs-enabled";
    assert!(
        test(compliance_event(rule, "NON_COMPLIANT")).await,
        "NON_COMPLIANT"
    );
    assert!(
        test(compliance_event(
            "payops-pr1-rds-storage-encrypted",
            "NON_COMPLIANT"
        ))
        .await,
        "another of the env's rules"
    );
    assert!(
        !test(compliance_event(rule, "COMPLIANT")).await,
        "COMPLIANT"
    );
    assert!(
        !test(compliance_event(
            "payops-pr1-x-vpc-flow-logs-enabled",
            "NON_COMPLIANT"
        ))
        .await,
        "env pr1-x's rule"
    );
}

/// The AWS rule payops relies on to never make a second detector: one per
/// account and region, a second CreateDetector refused. moto made a second
/// one; the project's emulator patch (`patch_guardduty_one_detector`) makes
/// both emulators answer as AWS does, and this keeps it so.
#[tokio::test]
#[ignore = "needs an AWS emulator: make test-integration"]
async fn a_second_detector_in_a_region_is_refused() {
    if common::acceptance() || !moto_only() {
        return;
    }
    let account = account(6);
    let aws = Aws::connect_to(&account.url).await;
    let create = || aws.c.guardduty.create_detector().enable(true).send();
    let first = create().await.expect("guardduty:CreateDetector");
    let second = create().await;
    let listed = detector_ids(&aws).await;
    for id in &listed {
        let _ = aws
            .c
            .guardduty
            .delete_detector()
            .detector_id(id)
            .send()
            .await;
    }
    let err = second.expect_err("a second detector in one region");
    assert_eq!(
        common::error_code(&err),
        Some("BadRequestException"),
        "{err:?}"
    );
    assert!(
        format!("{err:?}").contains("a detector already exists for the current account"),
        "{err:?}"
    );
    assert_eq!(listed, [first.detector_id().unwrap().to_owned()]);
}

/// The LocalStack baseline test's region.
const LOCALSTACK_REGION: &str = "us-west-2";

/// LocalStack (its own S3, KMS, SNS and EventBridge; GuardDuty from its moto
/// with the project's patches): `baseline up` creates all eleven items, a
/// second changes nothing, `status` sees them. LocalStack has one account
/// here, shared with the suite's envs (which never touch the baseline), so
/// `baseline down` would be refused while they run: the items go through
/// the library's removal, which `baseline down` calls once no env is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an AWS emulator: make test-integration"]
async fn on_localstack_the_baseline_converges_and_goes() {
    if common::emulator() != common::Emulator::LocalStack {
        eprintln!("skipped: moto runs the fuller tests above, each in its own account");
        return;
    }
    // In a region of its own: the suite's envs (in us-east-1) would
    // otherwise see a recorder come and go under them, and an env whose
    // second `up` met a new one would create its Config rules then.
    let env = TestEnv::new()
        .without_var("PAYOPS_NO_BASELINE")
        .with_var("AWS_REGION", LOCALSTACK_REGION);
    let aws = Aws::connect_in(LOCALSTACK_REGION).await;
    let acct = payops::resources::baseline::Account {
        clients: &aws.c,
        id: aws.account.clone(),
        region: aws.region.clone(),
        now: "2026-12-06T00:00:00Z".into(),
    };
    let before = payops::resources::baseline::observe(&acct)
        .await
        .expect("observe");
    assert!(
        before.iter().all(|i| i.owner.is_none()),
        "a clean account: {before:?}"
    );
    let (_, up) = baseline(&env, &["up"]);
    assert!(all_are(&up["items"], "created", "payops"), "{up:#}");
    let (_, again) = baseline(&env, &["up"]);
    assert!(all_are(&again["items"], "in-sync", "payops"), "{again:#}");
    assert_eq!(again["api_calls"]["mutating"], 0, "{again:#}");
    let (_, status) = baseline(&env, &["status"]);
    assert!(
        all_are(&status["items"], "observed", "payops"),
        "{status:#}"
    );
    let gone = payops::resources::baseline::destroy(&acct)
        .await
        .expect("destroy");
    assert!(gone.iter().all(|i| i.action == "deleted"), "{gone:?}");
    assert_eq!(detector_ids(&aws).await, Vec::<String>::new());
}
