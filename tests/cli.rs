//! The command line without AWS: help, input validation, confirmation, state
//! and lock errors. Every refusal here must happen before any AWS call, so
//! the endpoint points at a closed port: reaching it would fail differently.

use std::fs;
use std::path::Path;
use std::process::Output;

use assert_cmd::Command;

/// A port nothing listens on: a command that tried to call AWS would fail
/// with a connection error instead of the refusal under test.
const DEAD_ENDPOINT: &str = "http://127.0.0.1:9";

fn payops(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("payops").expect("binary");
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_ENDPOINT_URL", DEAD_ENDPOINT)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        // One attempt: a command that reaches the dead endpoint fails at once.
        .env("PAYOPS_MAX_ATTEMPTS", "1")
        .env("NO_COLOR", "1");
    cmd
}

fn run(dir: &Path, args: &[&str]) -> Output {
    payops(dir).args(args).output().expect("runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn help_names_every_command_and_the_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["-h"]);
    assert!(out.status.success());
    insta::assert_snapshot!("help", stdout(&out));
}

#[test]
fn up_help_explains_its_flags() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["up", "-h"]);
    assert!(out.status.success());
    insta::assert_snapshot!("up_help", stdout(&out));
}

#[test]
fn bad_env_names_are_refused_with_the_rule_before_anything_happens() {
    let dir = tempfile::tempdir().unwrap();
    for (name, why) in [
        ("PR123", "try \"pr123\""),
        ("pr_1", "'_' is not allowed"),
        ("1pr", "must start with a letter"),
        ("pr-", "must not end with a hyphen"),
        ("a-very-long-env-name", "at most 16"),
        ("pr--1", "two hyphens in a row"),
    ] {
        for command in ["up", "down", "status", "plan", "outputs"] {
            let out = run(dir.path(), &[command, "--env", name, "--yes"]);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{command} {name}: {}",
                stderr(&out)
            );
            let err = stderr(&out);
            assert!(err.contains(why), "{command} {name}: {err}");
            assert!(err.contains("1-16 characters"), "{command} {name}: {err}");
        }
    }
    assert!(
        !dir.path().join(".payops").exists(),
        "nothing may be written"
    );
}

#[test]
fn bad_env_name_message_is_stable() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["up", "--env", "PR-1"]);
    insta::assert_snapshot!("bad_env_name", stderr(&out));
}

#[test]
fn down_without_yes_and_without_a_terminal_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // assert_cmd gives the child no terminal on stdin.
    let out = run(dir.path(), &["down", "--env", "pr1"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("pass --yes"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nothing was changed"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.path().join(".payops").exists());
}

#[test]
fn baseline_down_without_yes_and_without_a_terminal_is_refused_before_any_call() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["baseline", "down"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("pass --yes"), "{}", stderr(&out));
    // With --yes it gets as far as AWS (the dead endpoint): the refusal above
    // came before any call.
    let out = run(dir.path(), &["baseline", "down", "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot reach AWS"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn with_yes_down_does_try_to_reach_aws() {
    // The counterpart of the test above: proves the dead endpoint is what a
    // command that gets past input checks runs into.
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["down", "--env", "pr1", "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot reach AWS"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_corrupt_state_file_is_reported_with_a_way_out_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join(".payops");
    fs::create_dir_all(&state).unwrap();
    fs::write(state.join("pr1.json"), "{ half a file").unwrap();
    for command in ["up", "status", "plan", "outputs"] {
        let out = run(dir.path(), &[command, "--env", "pr1"]);
        assert_eq!(out.status.code(), Some(2), "{command}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("not valid JSON"), "{command}: {err}");
        assert!(
            err.contains("mv .payops/pr1.json .payops/pr1.json.broken"),
            "{command}: {err}"
        );
    }
    assert_eq!(
        fs::read_to_string(state.join("pr1.json")).unwrap(),
        "{ half a file"
    );
}

#[test]
fn a_second_payops_on_a_locked_env_fails_fast_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    // States and locks are per region: the same env name in another region
    // is another env.
    let state = dir.path().join(".payops/us-east-1");
    fs::create_dir_all(&state).unwrap();
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(state.join("pr1.lock"))
        .unwrap();
    lock.lock().unwrap();
    fs::write(state.join("pr1.lock"), "pid 4242 on ci-runner-7: up").unwrap();
    for command in ["up", "down"] {
        let out = run(dir.path(), &[command, "--env", "pr1", "--yes"]);
        assert_eq!(out.status.code(), Some(3), "{command}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("locked by another payops (pid 4242 on ci-runner-7: up)"),
            "{command}: {}",
            stderr(&out)
        );
    }
    // Another env is not blocked by it (it gets as far as AWS).
    let out = run(dir.path(), &["up", "--env", "pr2", "--parallelism", "1"]);
    assert_ne!(out.status.code(), Some(3), "{}", stderr(&out));
    // Nor is the env of the same name in another region.
    let out = run(
        dir.path(),
        &[
            "up",
            "--env",
            "pr1",
            "--region",
            "us-west-2",
            "--parallelism",
            "1",
        ],
    );
    assert_ne!(out.status.code(), Some(3), "{}", stderr(&out));
    drop(lock);
}

#[test]
fn bad_shape_flags_and_regions_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (
            &["up", "--env", "pr1", "--vpc-cidr", "10.0.0.0/8"],
            "/16 to /24",
        ),
        (
            &["up", "--env", "pr1", "--nat", "none"],
            "possible values: per-az, single",
        ),
        (
            &["status", "--env", "pr1", "--region", "moon-1"],
            "invalid region",
        ),
        (
            &["up", "--env", "pr1", "--parallelism", "0"],
            "--parallelism",
        ),
    ];
    for (args, why) in cases {
        let out = run(dir.path(), args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(why), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn preflight_help_lists_its_checks() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["preflight", "-h"]);
    assert!(out.status.success());
    insta::assert_snapshot!("preflight_help", stdout(&out));
}

#[test]
fn bad_reserved_concurrency_and_quota_values_are_refused_before_any_aws_call() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["up", "--env", "pr1", "--reserved-concurrency", "some"][..],
        &["preflight", "--env", "pr1", "--reserved-concurrency", "0"][..],
    ] {
        let out = run(dir.path(), args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("auto or none"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let out = payops(dir.path())
        .env("PAYOPS_QUOTA_VPCS", "lots")
        .args(["preflight", "--env", "pr1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("PAYOPS_QUOTA_VPCS=\"lots\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn preflight_without_working_credentials_is_a_refusal_with_the_remedy() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["preflight", "--env", "pr1"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("credentials: PROBLEM: "), "{text}");
    assert!(text.contains("AWS_PROFILE"), "{text}");
    assert_eq!(text.lines().count(), 1, "{text}");
    let out = run(
        dir.path(),
        &["preflight", "--env", "pr1", "--output", "json"],
    );
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["result"], "refused");
    assert_eq!(json["checks"][0]["name"], "credentials");
    assert_eq!(json["checks"][0]["status"], "problem");
}

#[test]
fn a_bad_env_prefix_is_a_usage_error_before_any_aws_call() {
    let dir = tempfile::tempdir().unwrap();
    for (prefix, why) in [
        ("PR", "'P' is not allowed"),
        ("pr_", "'_' is not allowed"),
        ("1pr", "must start with a letter"),
        ("", "leave out --env-prefix"),
    ] {
        // --yes: the refusal must come before the sweep, not from the dry run.
        let out = run(
            dir.path(),
            &["destroy-all", "--env-prefix", prefix, "--yes"],
        );
        assert_eq!(out.status.code(), Some(2), "{prefix:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("invalid env prefix"), "{prefix:?}: {err}");
        assert!(err.contains(why), "{prefix:?}: {err}");
        assert!(!err.contains("cannot reach AWS"), "{prefix:?}: {err}");
    }
    // A bad never_destroy entry in payops.toml is refused the same way.
    fs::write(
        dir.path().join("payops.toml"),
        "never_destroy = [\"Prod\"]\n",
    )
    .unwrap();
    let out = run(dir.path(), &["destroy-all", "--env-prefix", "pr", "--yes"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("never_destroy"), "{}", stderr(&out));
    assert!(
        !dir.path().join(".payops").exists(),
        "nothing may be written"
    );
}

#[test]
fn an_unknown_key_in_payops_toml_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("payops.toml"), "natt = \"single\"\n").unwrap();
    let out = run(dir.path(), &["status", "--env", "pr1"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("payops.toml"), "{}", stderr(&out));
    assert!(stderr(&out).contains("unknown field"), "{}", stderr(&out));
}

#[test]
fn graph_lists_every_step_with_the_reason_for_each_edge() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["graph"]);
    assert!(out.status.success(), "{}", stderr(&out));
    insta::assert_snapshot!("graph", stdout(&out));
}

#[test]
fn graph_as_json_is_machine_readable() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["graph", "--output", "json"]);
    let steps: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let steps = steps.as_array().unwrap();
    assert_eq!(steps.len(), 173);
    let vpc_dependents = steps
        .iter()
        .filter(|s| {
            s["depends_on"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["step"] == "vpc" && !d["reason"].as_str().unwrap().is_empty())
        })
        .count();
    assert!(vpc_dependents >= 10, "{vpc_dependents}");
}

// ------------------------------------------------ the acceptance run's refusals

/// `scripts/test-aws` with nothing of the machine's AWS setup: no
/// credentials, no config files (HOME is a temp dir), no instance metadata.
fn test_aws(dir: &Path, vars: &[(&str, &str)]) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/test-aws");
    let mut cmd = std::process::Command::new(script);
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("PAYOPS_MAX_ATTEMPTS", "1")
        .env(
            "PAYOPS_BIN",
            assert_cmd::cargo::cargo_bin("payops").as_os_str(),
        );
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.output().expect("scripts/test-aws runs")
}

#[test]
fn the_acceptance_run_refuses_without_its_variable_in_ci_or_on_an_emulator() {
    let dir = tempfile::tempdir().unwrap();
    let out = test_aws(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Set PAYOPS_ACCEPTANCE=1"),
        "{}",
        stderr(&out)
    );

    let out = test_aws(dir.path(), &[("PAYOPS_ACCEPTANCE", "1"), ("CI", "true")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("never in CI"), "{}", stderr(&out));

    let out = test_aws(
        dir.path(),
        &[
            ("PAYOPS_ACCEPTANCE", "1"),
            ("PAYOPS_TEST_ENDPOINT", "http://127.0.0.1:9"),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("emulator endpoint"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_acceptance_run_refuses_without_credentials_before_its_estimate() {
    let dir = tempfile::tempdir().unwrap();
    let out = test_aws(dir.path(), &[("PAYOPS_ACCEPTANCE", "1")]);
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("no working AWS credentials"), "{text}");
    assert!(text.contains("AWS_PROFILE"), "{text}");
    // Refused before it says what it would cost or sweeps anything.
    assert!(!text.contains("estimate"), "{text}");
    assert!(!text.contains("final sweep"), "{text}");
}

#[test]
fn up_without_working_credentials_is_a_preflight_refusal() {
    // Exit 4 as `preflight`, with its line and remedy.
    let dir = tempfile::tempdir().unwrap();
    let out = payops(dir.path())
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_ENDPOINT_URL")
        .env("HOME", dir.path())
        .args(["up", "--env", "pr1"])
        .output()
        .expect("runs");
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{text}");
    assert!(text.contains("stopped before its first change"), "{text}");
    assert!(text.contains("credentials: PROBLEM: "), "{text}");
    assert!(text.contains("no usable AWS credentials"), "{text}");
    assert!(text.contains("AWS_PROFILE"), "{text}");
}

#[test]
fn payops_no_baseline_takes_the_usual_spellings_of_yes_and_no() {
    let dir = tempfile::tempdir().unwrap();
    for value in ["1", "true", "yes", "0", "false"] {
        let out = payops(dir.path())
            .env("AWS_REGION", "us-east-1")
            .env("PAYOPS_NO_BASELINE", value)
            .args(["up", "--env", "pr1"])
            .output()
            .expect("runs");
        // Parsed, so it got as far as AWS (the dead endpoint: exit 4).
        assert_eq!(out.status.code(), Some(4), "{value}: {}", stderr(&out));
        assert!(!stderr(&out).contains("invalid value"), "{}", stderr(&out));
    }
}
