//! The account baseline (`payops baseline up | status | down`) on an
//! emulator: GuardDuty's detector is created or adopted, never duplicated,
//! and `baseline down` removes only what payops created, only once no env is
//! left in the region.
//!
//! A detector is one per account and region, and the suite runs many tests
//! at once on one emulator: each test here talks to its own moto account
//! through the project's fault proxy (`--account-id`, no faults injected)
//! and runs its steps in order inside one function. On LocalStack they skip
//! (the per-request account is moto's); LocalStack serves GuardDuty from its
//! moto with the same patch (`patch_guardduty_one_detector`), checked by
//! hand: `baseline up` twice (created, then 0 mutating calls), `status`,
//! `baseline down`, and a second CreateDetector refused.
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

/// `payops --output json baseline <args>`: the run and its one item.
#[track_caller]
fn baseline(env: &TestEnv, args: &[&str]) -> (Run, Value) {
    let mut all = vec!["--output", "json", "baseline"];
    all.extend_from_slice(args);
    let run = env.run(&all);
    run.assert_success();
    let doc = run.json();
    let items = doc["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{doc:#}");
    let item = items[0].clone();
    assert_eq!(item["item"], "guardduty-detector", "{doc:#}");
    (run, doc)
}

fn item(doc: &Value) -> &Value {
    &doc["items"][0]
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

/// A fresh account: `baseline up` creates the detector (tagged as payops'),
/// a second one changes nothing, `baseline down` is refused while an env is
/// up and never touched by that env's `down`, then removes the detector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an AWS emulator: make test-integration"]
async fn a_created_detector_outlives_envs_and_goes_with_baseline_down_only() {
    if !moto_only() {
        return;
    }
    let plain = TestEnv::new();
    let account = account(4);
    let mut env = plain.with_var("AWS_ENDPOINT_URL", &account.url);
    let aws = Aws::connect_to(&account.url).await;
    assert_eq!(
        detector_ids(&aws).await,
        Vec::<String>::new(),
        "a fresh account"
    );

    let (_, first) = baseline(&env, &["up"]);
    assert_eq!(item(&first)["action"], "created", "{first:#}");
    assert_eq!(item(&first)["owner"], "payops", "{first:#}");
    let id = item(&first)["id"].as_str().expect("an id").to_owned();
    assert_eq!(detector_ids(&aws).await, std::slice::from_ref(&id));
    let got = aws
        .c
        .guardduty
        .get_detector()
        .detector_id(&id)
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

    let (_, second) = baseline(&env, &["up"]);
    assert_eq!(item(&second)["action"], "in-sync", "{second:#}");
    assert_eq!(second["api_calls"]["mutating"], 0, "{second:#}");

    // An env in the region: the baseline stays, whatever is asked.
    env.up_json(&["--nat", "single"]);
    let refused = env.run(&["baseline", "down", "--yes"]);
    refused.assert_code(4);
    assert!(
        refused.stderr.contains("baseline down refused") && refused.stderr.contains(&env.name),
        "{}",
        refused.describe()
    );
    assert_eq!(
        detector_ids(&aws).await,
        std::slice::from_ref(&id),
        "refused: kept"
    );

    env.down().assert_success();
    assert_eq!(
        detector_ids(&aws).await,
        std::slice::from_ref(&id),
        "env down keeps it"
    );

    let (_, status) = baseline(&env, &["status"]);
    assert_eq!(item(&status)["owner"], "payops", "{status:#}");
    assert_eq!(status["api_calls"]["mutating"], 0, "{status:#}");

    let (_, down) = baseline(&env, &["down", "--yes"]);
    assert_eq!(item(&down)["action"], "deleted", "{down:#}");
    assert_eq!(detector_ids(&aws).await, Vec::<String>::new());
    // Gone already: nothing to do, not an error.
    let (_, again) = baseline(&env, &["down", "--yes"]);
    assert_eq!(item(&again)["action"], "absent", "{again:#}");
}

/// Another team's detector: adopted (no second one, no tag, no change) and
/// still there after `baseline down`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an AWS emulator: make test-integration"]
async fn a_detector_made_outside_payops_is_adopted_and_survives_baseline_down() {
    if !moto_only() {
        return;
    }
    let plain = TestEnv::new();
    let account = account(5);
    let mut env = plain.with_var("AWS_ENDPOINT_URL", &account.url);
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

    let (_, up) = baseline(&env, &["up"]);
    assert_eq!(item(&up)["action"], "adopted", "{up:#}");
    assert_eq!(item(&up)["owner"], "adopted", "{up:#}");
    assert_eq!(item(&up)["id"], theirs.as_str(), "{up:#}");
    assert_eq!(
        up["api_calls"]["mutating"], 0,
        "adopting changes nothing: {up:#}"
    );
    assert_eq!(
        detector_ids(&aws).await,
        std::slice::from_ref(&theirs),
        "no second detector"
    );

    let (_, down) = baseline(&env, &["down", "--yes"]);
    assert_eq!(item(&down)["action"], "kept", "{down:#}");
    assert_eq!(down["api_calls"]["mutating"], 0, "{down:#}");
    let got = aws
        .c
        .guardduty
        .get_detector()
        .detector_id(&theirs)
        .send()
        .await
        .expect("their detector is still there");
    assert_eq!(
        got.finding_publishing_frequency().map(|f| f.as_str()),
        Some("FIFTEEN_MINUTES"),
        "their setting stays theirs"
    );
    let tags = got.tags().cloned().unwrap_or_default();
    assert!(
        tags.keys().all(|k| !k.starts_with("payops:")),
        "never tagged: {tags:?}"
    );
    let _ = aws
        .c
        .guardduty
        .delete_detector()
        .detector_id(&theirs)
        .send()
        .await;
    env.forget(); // no env was brought up
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
