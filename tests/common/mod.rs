//! Harness of the integration suite: runs the real `payops` binary against a
//! local AWS emulator (moto or LocalStack) and looks at what it did through
//! the AWS SDK.
//!
//! Every test gets its own env name (`it-` + 8 random characters) and its own
//! temp dir (current dir, state dir, outputs file), so tests run in parallel
//! against one emulator without seeing each other. A [`TestEnv`] runs a
//! best-effort `down --yes` when dropped, so a failed test does not leave its
//! env behind in the emulator (set `PAYOPS_TEST_KEEP=1` to keep it for
//! debugging).

// Each test binary (integration, fleet, ...) uses a different part of this.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_ec2::types::{Filter, NatGatewayState, Tag};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use payops::aws::{ApiCounter, Clients};
use serde_json::Value;

pub const REGION: &str = "us-east-1";

/// The ownership and cost tags payops puts on everything it creates.
pub const TAG_ENV: &str = "payops:env";
pub const TAG_STEP: &str = "payops:step";
pub const TAG_MANAGED_BY: &str = "payops:managed-by";
pub const TAG_CREATED_AT: &str = "payops:created-at";

/// The keys of a default env (the batch tier's `ebs` key only with `--batch on`).
pub const KEY_PURPOSES: [&str; 6] = ["database", "dynamodb", "s3", "logs", "events", "parameters"];
/// Steps of one env (`payops graph` lists them).
pub const STEP_COUNT: usize = 173;
/// Steps with nothing to manage unless asked: `status` shows them "not
/// wanted", and they count as no resource of the env. The alert emails
/// (none given), and the Aurora instance slots beyond the default 2 readers
/// (payops registers slots for up to 4).
pub const NOT_WANTED_BY_DEFAULT: [&str; 30] = [
    // The batch tier: off unless --batch on (tests/batch.rs has it).
    "alarm:batch-cpu-high",
    "alarm:batch-memory-high",
    "autoscaling-group:batch",
    "iam-role:batch",
    "instance-profile:batch",
    "kms-key:ebs",
    "launch-template:batch",
    "log-group:batch",
    "scaling-policy:batch-cpu",
    "scaling-policy:batch-memory",
    "security-group:batch",
    "service-linked-role:autoscaling",
    "ssm-parameters:batch",
    "alert-emails:failed-transactions",
    "alert-emails:system-errors",
    "aurora-instance:4",
    "aurora-instance:5",
    // No AWS Config recorder in the suite's account (it runs with
    // --no-baseline): no Config rules (tests/baseline.rs has them).
    "config-rules",
    // Retired: the rotation function's group, only in envs an older payops made.
    "security-group:rotation",
    // Retired: the single parameters step, only in envs an older payops made.
    "ssm-parameters",
    // Only with --api-auth api-key.
    "usage-plan:payments",
    // Only with --dns on (off by default for now; tests/dns.rs turns it on).
    "alarm:dns-maintenance",
    "alarm:dns-primary",
    "dns-records:payments",
    "health-check:payments-maintenance",
    "health-check:payments-primary",
    "hosted-zone:private",
    "ssm-parameters:dns",
    "listener:maintenance",
    "load-balancer:maintenance",
];
/// The payment functions, by their name suffix (`payops-<env>-<slug>`).
pub const FUNCTIONS: [&str; 3] = [
    "payment-validation",
    "fraud-detection",
    "transaction-processing",
];
/// The processing queue's consumer (`payops-<env>-payment-queue-consumer`):
/// a function of the event backbone, not of the request path.
pub const QUEUE_CONSUMER: &str = "payment-queue-consumer";
/// Firehose's transform of the transaction log: the event backbone's too.
pub const TRANSACTION_LOG_TRANSFORM: &str = "transaction-log-transform";
pub const AZ_LABELS: [&str; 3] = ["a", "b", "c"];
pub const TIERS: [&str; 3] = ["public", "private", "database"];

pub type Tags = BTreeMap<String, String>;

// ------------------------------------------------------------------ emulator

/// The emulator's endpoint, from `PAYOPS_TEST_ENDPOINT`.
pub fn endpoint() -> String {
    match std::env::var("PAYOPS_TEST_ENDPOINT") {
        Ok(url) if !url.trim().is_empty() => url.trim().to_owned(),
        _ => panic!(
            "PAYOPS_TEST_ENDPOINT is not set: the integration tests run payops against a local \
             AWS emulator. Start one and point the tests at it, e.g.\n  \
             scripts/emulator start moto --port 5199\n  \
             PAYOPS_TEST_ENDPOINT=http://127.0.0.1:5199 PAYOPS_TEST_EMULATOR=moto \
             cargo nextest run --test integration --run-ignored only\n\
             or let scripts/test-integration <moto|localstack> do both"
        ),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emulator {
    Moto,
    LocalStack,
    /// Not an emulator: an acceptance run against a real account
    /// (`PAYOPS_ACCEPTANCE=1 make test-aws`).
    Aws,
}

/// An acceptance run: `PAYOPS_ACCEPTANCE=1` and no emulator endpoint, so
/// payops and the tests use AWS's own endpoints and the operator's
/// credentials (scripts/test-aws refuses to start without either).
pub fn acceptance() -> bool {
    std::env::var("PAYOPS_ACCEPTANCE").as_deref() == Ok("1")
        && std::env::var("PAYOPS_TEST_ENDPOINT").is_err()
}

/// The emulator's endpoint, or `None` on real AWS (an acceptance run).
pub fn endpoint_url() -> Option<String> {
    if acceptance() { None } else { Some(endpoint()) }
}

/// Which emulator answers, from `PAYOPS_TEST_EMULATOR`. Tests use it only
/// where the emulators really differ, and say what differs.
pub fn emulator() -> Emulator {
    if acceptance() {
        return Emulator::Aws;
    }
    match std::env::var("PAYOPS_TEST_EMULATOR").as_deref() {
        Ok("moto") => Emulator::Moto,
        Ok("localstack") => Emulator::LocalStack,
        Ok(other) => panic!("PAYOPS_TEST_EMULATOR={other:?}: expected moto or localstack"),
        Err(_) => panic!(
            "PAYOPS_TEST_EMULATOR is not set: say which emulator PAYOPS_TEST_ENDPOINT is \
             (moto or localstack)"
        ),
    }
}

/// POSTs `body` to `path` on the emulator as a client of a deployed REST API
/// would (LocalStack serves stages at `/restapis/<id>/<stage>/_user_request_`),
/// and returns the HTTP status. Plain HTTP over std: the emulator is local.
pub fn post_to_api(path: &str, headers: &[(&str, &str)], body: &str) -> u16 {
    use std::io::{Read, Write};
    let url = endpoint();
    let host = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let mut stream = std::net::TcpStream::connect(&host).expect("connect to the emulator");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream
        .write_all(request.as_bytes())
        .expect("send the request");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {answer:?}"))
}

/// A fresh env name: `it-` and 8 random lowercase letters and digits.
pub fn random_env_name() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    // An acceptance run names every env `<run prefix>-...`, so its final
    // sweep (`destroy-all --env-prefix`) takes exactly this run's envs.
    let prefix = std::env::var("PAYOPS_TEST_ENV_PREFIX").unwrap_or_else(|_| "it".into());
    // 16: payops' longest env name.
    let mut bytes = vec![0u8; 16usize.saturating_sub(prefix.len() + 1).min(8)];
    getrandom::getrandom(&mut bytes).expect("the OS has randomness");
    let suffix: String = bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect();
    format!("{prefix}-{suffix}")
}

// ------------------------------------------------------------------ running payops

/// One finished run of the binary.
#[derive(Debug)]
pub struct Run {
    pub args: Vec<String>,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Everything a failure message needs to be useful.
    pub fn describe(&self) -> String {
        format!(
            "payops {}\nexit: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.args.join(" "),
            self.status,
            self.stdout,
            self.stderr
        )
    }

    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code(),
            Some(code),
            "expected exit code {code}\n{}",
            self.describe()
        );
        self
    }

    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        self.assert_code(0)
    }

    /// stdout as JSON (for `--output json` runs).
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{}", self.describe()))
    }
}

/// How a run that the test meant to kill ended.
#[derive(Debug)]
pub struct KilledRun {
    /// The step lines payops printed on stderr before it died.
    pub finished_lines: Vec<String>,
    /// True when SIGKILL ended it (false: it exited on its own first).
    pub killed: bool,
    pub status: ExitStatus,
}

/// One env of one test: a unique name and a temp dir holding its state and
/// outputs; `down --yes` on drop.
pub struct TestEnv {
    pub name: String,
    dir: tempfile::TempDir,
    /// `None`: real AWS (an acceptance run).
    endpoint: Option<String>,
    /// Extra environment for every run (e.g. `PAYOPS_STATE`).
    vars: Vec<(String, String)>,
    /// Environment removed from every run (e.g. a `PAYOPS_QUOTA_*` default).
    removed: Vec<String>,
    /// Set once a `down` succeeded: nothing left for the drop to clean.
    clean: bool,
}

impl TestEnv {
    pub fn new() -> Self {
        Self::named(random_env_name())
    }

    /// An env with a chosen name (fleet tests group envs by a prefix).
    pub fn named(name: String) -> Self {
        // Both settings are checked up front, so a misconfigured run fails
        // at once with a clear message rather than halfway through a test.
        let endpoint = endpoint_url();
        emulator();
        let dir = tempfile::Builder::new()
            .prefix(&format!("payops-{name}-"))
            .tempdir()
            .expect("a temp dir");
        // Empty AWS config and credentials files: nothing of the machine's own.
        for file in ["aws-config", "aws-credentials"] {
            std::fs::write(dir.path().join(file), "").expect("write an empty AWS file");
        }
        Self {
            name,
            dir,
            endpoint,
            vars: Vec::new(),
            removed: Vec::new(),
            clean: false,
        }
    }

    /// Removed by other means (e.g. `destroy-all`): nothing for the drop to clean.
    pub fn forget(&mut self) {
        self.clean = true;
    }

    /// Sets an environment variable for every later run of this env.
    pub fn with_var(mut self, key: &str, value: &str) -> Self {
        self.vars.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Removes an environment variable the runs would otherwise get (the
    /// quota overrides: a test of a quota lets payops read the account's).
    pub fn without_var(mut self, key: &str) -> Self {
        self.removed.push(key.to_owned());
        self
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir().join("state")
    }

    /// States are kept per region (`<dir>/<region>/<env>.json`).
    pub fn state_file(&self) -> PathBuf {
        self.state_dir()
            .join(REGION)
            .join(format!("{}.json", self.name))
    }

    pub fn outputs_file(&self) -> PathBuf {
        self.dir().join("cfn-outputs/flat-outputs.json")
    }

    /// `payops` with this env's environment: the emulator, static test
    /// credentials, its own state dir and outputs file, nothing inherited
    /// that could point it elsewhere.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_payops"));
        cmd.current_dir(self.dir())
            .stdin(Stdio::null())
            .env("PAYOPS_STATE_DIR", self.state_dir())
            .env("PAYOPS_OUTPUTS_FILE", self.outputs_file())
            .env("NO_COLOR", "1");
        let Some(endpoint) = &self.endpoint else {
            // Real AWS: the operator's credentials (us-east-1, where the
            // tests' names expect it, and use1-az3 is), and the
            // account's own quotas (the strict rules, checked for real).
            cmd.env("AWS_REGION", REGION);
            for var in [
                "AWS_ENDPOINT_URL",
                "PAYOPS_QUOTA_ELASTIC_IPS",
                "PAYOPS_QUOTA_VPCS",
            ] {
                cmd.env_remove(var);
            }
            cmd.env_remove("PAYOPS_QUOTA_INTERNET_GATEWAYS");
            // The operator's account keeps its own baseline (GuardDuty is
            // billed): only tests/baseline.rs asks for it.
            cmd.env("PAYOPS_NO_BASELINE", "1");
            for (k, v) in &self.vars {
                cmd.env(k, v);
            }
            for k in &self.removed {
                cmd.env_remove(k);
            }
            return cmd;
        };
        cmd.env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", REGION)
            // No shared config or credentials file of the machine running the tests.
            .env("AWS_CONFIG_FILE", self.dir().join("aws-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                self.dir().join("aws-credentials"),
            )
            // Tests run many envs at once in one emulator, which states AWS's
            // quotas of a new account (5 addresses) but enforces none.
            .env("PAYOPS_QUOTA_ELASTIC_IPS", "1000")
            .env("PAYOPS_QUOTA_VPCS", "1000")
            .env("PAYOPS_QUOTA_INTERNET_GATEWAYS", "1000")
            // Many envs come up at once in one emulator account: the
            // account baseline they would share is tested in
            // tests/baseline.rs, each test in an account of its own
            // (`without_var("PAYOPS_NO_BASELINE")`).
            .env("PAYOPS_NO_BASELINE", "1");
        for var in [
            "AWS_PROFILE",
            "AWS_DEFAULT_PROFILE",
            "AWS_SESSION_TOKEN",
            "AWS_DEFAULT_REGION",
            "PAYOPS_ENV",
            "PAYOPS_CONFIG",
            "PAYOPS_OUTPUT",
            "PAYOPS_PARALLELISM",
            "PAYOPS_COST_CENTER",
            "PAYOPS_LOG",
            "PAYOPS_MAX_ATTEMPTS",
            "PAYOPS_STATE",
            "CLICOLOR_FORCE",
        ] {
            cmd.env_remove(var);
        }
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
        for k in &self.removed {
            cmd.env_remove(k);
        }
        cmd
    }

    /// Runs `payops <args>` to completion.
    pub fn run(&self, args: &[&str]) -> Run {
        let out = self
            .command()
            .args(args)
            .output()
            .expect("the payops binary runs");
        Run {
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `payops <command> --env <name> <extra>`.
    pub fn run_env(&self, command: &str, extra: &[&str]) -> Run {
        let mut args = vec![command, "--env", &self.name];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    /// `up` in text mode, which must succeed.
    #[track_caller]
    pub fn up(&self, extra: &[&str]) -> Run {
        let run = self.run_env("up", extra);
        run.assert_success();
        run
    }

    /// `up --output json`, which must succeed; its run and report.
    #[track_caller]
    pub fn up_json(&self, extra: &[&str]) -> (Run, Value) {
        let mut args = vec!["--output", "json"];
        args.extend_from_slice(extra);
        let run = self.run_env("up", &args);
        run.assert_success();
        let report = run.json();
        assert_eq!(report["result"], "succeeded", "{}", run.describe());
        (run, report)
    }

    /// `status --output json`, which must exit 0.
    #[track_caller]
    pub fn status_json(&self) -> Value {
        let run = self.run_env("status", &["--output", "json"]);
        run.assert_success();
        run.json()
    }

    /// `plan --output json`, which must exit 0.
    #[track_caller]
    pub fn plan_json(&self) -> Value {
        let run = self.run_env("plan", &["--output", "json"]);
        run.assert_success();
        run.json()
    }

    /// `down --yes` (text mode: its stdout names the final sweep's verdict).
    pub fn down(&mut self) -> Run {
        self.down_with(&[])
    }

    /// `down --yes` with more flags (e.g. `--final-snapshot`).
    pub fn down_with(&mut self, extra: &[&str]) -> Run {
        let mut args = vec!["--yes"];
        args.extend_from_slice(extra);
        let run = self.run_env("down", &args);
        if run.code() == Some(0) {
            self.clean = true;
        }
        run
    }

    /// `down --yes --output json`.
    pub fn down_json(&mut self) -> Run {
        self.down_with(&["--output", "json"])
    }

    /// The flat outputs file: must be one JSON object of string values.
    #[track_caller]
    pub fn outputs(&self) -> BTreeMap<String, String> {
        let path = self.outputs_file();
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        flat_string_map(&text, &path.display().to_string())
    }

    /// The state file's text (empty when there is none).
    pub fn state_text(&self) -> String {
        std::fs::read_to_string(self.state_file()).unwrap_or_default()
    }

    /// Starts `up` (text mode, so stderr has one line per finished step when
    /// it is not a terminal) and SIGKILLs it right after the `k`-th step line.
    pub fn up_killed_after(&self, k: usize) -> KilledRun {
        let mut child = self
            .command()
            .args(["up", "--env", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the payops binary starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let mut finished_lines = Vec::new();
        let mut sent_kill = false;
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if is_step_line(&line) {
                finished_lines.push(line);
                if finished_lines.len() == k {
                    // std's kill is SIGKILL on Unix: no handler, no cleanup.
                    child.kill().expect("SIGKILL the child");
                    sent_kill = true;
                    break;
                }
            }
        }
        let status = child.wait().expect("reap the child");
        KilledRun {
            finished_lines,
            killed: sent_kill && status.signal() == Some(9),
            status,
        }
    }
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if self.clean || std::env::var_os("PAYOPS_TEST_KEEP").is_some() {
            return;
        }
        // Best effort: the emulator should not fill up with failed tests' envs.
        let run = self.run_env("down", &["--yes", "--quiet"]);
        if run.code() != Some(0) {
            eprintln!(
                "cleanup of env {} did not succeed:\n{}",
                self.name,
                run.describe()
            );
        }
    }
}

/// A line payops prints on stderr when a step finishes (non-TTY mode):
/// `  ✓ created    vpc   1.2s  created vpc-0abc`.
pub fn is_step_line(line: &str) -> bool {
    let line = strip_ansi(line);
    let mut words = line.split_whitespace();
    let (Some(mark), Some(label)) = (words.next(), words.next()) else {
        return false;
    };
    line.starts_with("  ")
        && ["✓", "✗", "-"].contains(&mark)
        && [
            "created",
            "updated",
            "unchanged",
            "deleted",
            "absent",
            "failed",
            "skipped",
            "cancelled",
        ]
        .contains(&label)
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ ... final byte in @..~
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Parses `text` as one flat JSON object of strings, or panics saying why.
#[track_caller]
pub fn flat_string_map(text: &str, what: &str) -> BTreeMap<String, String> {
    let value: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{what} is not JSON: {e}\n{text}"));
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("{what} is not a JSON object:\n{text}"));
    object
        .iter()
        .map(|(k, v)| {
            let v = v
                .as_str()
                .unwrap_or_else(|| panic!("{what}: {k} is not a string but {v}"));
            (k.clone(), v.to_owned())
        })
        .collect()
}

// ------------------------------------------------------------------ reading reports

/// step id -> `outcome` of an `up`/`down --output json` report.
#[track_caller]
pub fn outcomes(report: &Value) -> BTreeMap<String, String> {
    let steps = report["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("no steps[] in report:\n{report:#}"));
    steps
        .iter()
        .map(|s| {
            (
                s["id"].as_str().expect("step id").to_owned(),
                s["outcome"].as_str().expect("step outcome").to_owned(),
            )
        })
        .collect()
}

/// step id -> `status` of a `status --output json` document.
pub fn statuses(doc: &Value) -> BTreeMap<String, String> {
    by_step(doc, "status")
}

/// step id -> `action` of a `plan --output json` document.
pub fn actions(doc: &Value) -> BTreeMap<String, String> {
    by_step(doc, "action")
}

#[track_caller]
fn by_step(doc: &Value, field: &str) -> BTreeMap<String, String> {
    doc["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("no steps[] in:\n{doc:#}"))
        .iter()
        .map(|s| {
            (
                s["step"].as_str().expect("step").to_owned(),
                s[field].as_str().unwrap_or("<none>").to_owned(),
            )
        })
        .collect()
}

/// The mutating operations of a report's `api_calls`, as `service:Operation xN`.
pub fn mutating_operations(report: &Value) -> Vec<String> {
    report["api_calls"]["operations"]
        .as_array()
        .map(|ops| {
            ops.iter()
                .filter(|o| o["mutating"] == true)
                .map(|o| format!("{}:{} x{}", o["service"], o["operation"], o["calls"]))
                .collect()
        })
        .unwrap_or_default()
}

/// Asserts a report made no mutating call, naming the offending operations.
#[track_caller]
pub fn assert_no_mutation(report: &Value, context: &str) {
    let mutating = report["api_calls"]["mutating"].as_u64();
    assert_eq!(
        mutating,
        Some(0),
        "{context}: expected no mutating AWS call, got {mutating:?}: {:?}\nsteps: {:?}",
        mutating_operations(report),
        outcomes(report)
    );
    assert!(
        report["api_calls"]["total"].as_u64().unwrap_or(0) > 0,
        "{context}: the report counted no API call at all: {:#}",
        report["api_calls"]
    );
}

/// Steps whose value is not `expected`, for assertion messages.
pub fn not_equal_to<'a>(
    map: &'a BTreeMap<String, String>,
    expected: &str,
) -> Vec<(&'a str, &'a str)> {
    map.iter()
        .filter(|(_, v)| v.as_str() != expected)
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

// ------------------------------------------------------------------ AWS SDK

/// SDK clients for checking what payops did, and the emulator's account.
pub struct Aws {
    pub c: Clients,
    pub account: String,
    pub region: String,
}

impl Aws {
    pub async fn connect() -> Self {
        Self::connect_in(REGION).await
    }

    /// Clients for a region of the emulator's account (of real AWS in an
    /// acceptance run).
    pub async fn connect_in(region: &str) -> Self {
        match endpoint_url() {
            Some(url) => Self::emulator(&url, region).await,
            None => Self::real(region).await,
        }
    }

    /// Real AWS (an acceptance run): the operator's credential chain.
    async fn real(region: &str) -> Self {
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region.to_owned()))
            .retry_config(RetryConfig::standard().with_max_attempts(5))
            .load()
            .await;
        Self::with_sdk(&sdk, "real AWS").await
    }

    /// Clients of another endpoint (e.g. the fault proxy in front of the
    /// emulator).
    pub async fn connect_to(url: &str) -> Self {
        Self::emulator(url, REGION).await
    }

    async fn emulator(url: &str, region: &str) -> Self {
        let credentials =
            aws_sdk_sts::config::Credentials::new("test", "test", None, None, "payops-tests");
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region.to_owned()))
            .endpoint_url(url)
            .credentials_provider(credentials)
            .retry_config(RetryConfig::standard().with_max_attempts(5))
            .load()
            .await;
        Self::with_sdk(&sdk, "the emulator").await
    }

    async fn with_sdk(sdk: &aws_config::SdkConfig, what: &str) -> Self {
        let c = Clients::new(sdk, &ApiCounter::new(), true);
        let identity = c
            .sts
            .get_caller_identity()
            .send()
            .await
            .unwrap_or_else(|e| panic!("sts:GetCallerIdentity on {what}: {e:?}"));
        let account = identity
            .account()
            .expect("GetCallerIdentity names the account")
            .to_owned();
        Self {
            c,
            account,
            region: sdk.region().map_or(REGION, |r| r.as_ref()).to_owned(),
        }
    }

    pub fn bucket_name(&self, env: &str) -> String {
        format!("payops-{env}-audit-{}-{}", self.account, self.region)
    }

    pub fn transaction_log_bucket(&self, env: &str) -> String {
        format!("payops-{env}-txlog-{}-{}", self.account, self.region)
    }
}

/// The error code of an SDK error, if the service sent one.
pub fn error_code<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> Option<&str> {
    match e {
        SdkError::ServiceError(se) => se.err().code(),
        _ => None,
    }
}

pub fn ec2_tags(tags: &[Tag]) -> Tags {
    tags.iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_owned(),
                t.value().unwrap_or_default().to_owned(),
            ))
        })
        .collect()
}

pub fn tag_filter(key: &str, value: &str) -> Filter {
    Filter::builder()
        .name(format!("tag:{key}"))
        .values(value)
        .build()
}

pub fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

/// Asserts `tags` carry payops' ownership and cost tags for `env` and `step`.
#[track_caller]
pub fn assert_payops_tags(what: &str, tags: &Tags, env: &str, step: &str) {
    let expect = [
        (TAG_ENV, env),
        (TAG_STEP, step),
        (TAG_MANAGED_BY, "payops"),
        ("Project", "payops"),
        ("Environment", env),
        ("CostCenter", "payments"),
    ];
    for (key, value) in expect {
        assert_eq!(
            tags.get(key).map(String::as_str),
            Some(value),
            "{what}: tag {key} should be {value:?}; tags: {tags:?}"
        );
    }
    let created = tags.get(TAG_CREATED_AT).map(String::as_str).unwrap_or("");
    // RFC 3339 UTC, e.g. 2026-11-23T07:48:45Z
    assert!(
        created.len() >= 20 && created.as_bytes()[4] == b'-' && created.contains('T'),
        "{what}: tag {TAG_CREATED_AT} should be an RFC 3339 time, got {created:?}; tags: {tags:?}"
    );
}

fn is_ours(tags: &Tags, env: &str) -> bool {
    tags.get(TAG_ENV).map(String::as_str) == Some(env)
}

/// What EC2 holds for an env, found by the `payops:env` tag (checked again
/// client-side: emulators ignore some tag filters).
#[derive(Debug, Default)]
pub struct Ec2Inventory {
    pub vpcs: Vec<(String, Tags)>,
    pub subnets: Vec<(String, Tags)>,
    pub internet_gateways: Vec<(String, Tags)>,
    /// Not deleted or failed.
    pub nat_gateways: Vec<(String, Tags)>,
    pub elastic_ips: Vec<(String, Tags)>,
    pub route_tables: Vec<(String, Tags)>,
    pub security_groups: Vec<(String, Tags)>,
    /// Not deleted.
    pub vpc_endpoints: Vec<(String, Tags)>,
    pub flow_logs: Vec<(String, Tags)>,
}

impl Ec2Inventory {
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        BTreeMap::from([
            ("vpc", self.vpcs.len()),
            ("subnet", self.subnets.len()),
            ("internet-gateway", self.internet_gateways.len()),
            ("nat-gateway", self.nat_gateways.len()),
            ("elastic-ip", self.elastic_ips.len()),
            ("route-table", self.route_tables.len()),
            ("security-group", self.security_groups.len()),
            ("vpc-endpoint", self.vpc_endpoints.len()),
            ("flow-log", self.flow_logs.len()),
        ])
    }

    pub fn all(&self) -> Vec<String> {
        let groups = [
            ("vpc", &self.vpcs),
            ("subnet", &self.subnets),
            ("internet-gateway", &self.internet_gateways),
            ("nat-gateway", &self.nat_gateways),
            ("elastic-ip", &self.elastic_ips),
            ("route-table", &self.route_tables),
            ("security-group", &self.security_groups),
            ("vpc-endpoint", &self.vpc_endpoints),
            ("flow-log", &self.flow_logs),
        ];
        groups
            .iter()
            .flat_map(|(kind, items)| items.iter().map(move |(id, _)| format!("ec2 {kind} {id}")))
            .collect()
    }

    /// Ids of the items of `items` tagged as `step`.
    pub fn with_step<'a>(items: &'a [(String, Tags)], step: &str) -> Vec<&'a str> {
        items
            .iter()
            .filter(|(_, t)| t.get(TAG_STEP).map(String::as_str) == Some(step))
            .map(|(id, _)| id.as_str())
            .collect()
    }
}

/// Lists every EC2 resource tagged for `env`.
pub async fn ec2_inventory(aws: &Aws, env: &str) -> Ec2Inventory {
    let ec2 = &aws.c.ec2;
    let by_env = || tag_filter(TAG_ENV, env);
    let keep = |id: Option<&str>, tags: &[Tag]| -> Option<(String, Tags)> {
        let tags = ec2_tags(tags);
        is_ours(&tags, env).then(|| (id.unwrap_or("?").to_owned(), tags))
    };
    let mut inv = Ec2Inventory::default();

    let out = ec2
        .describe_vpcs()
        .filters(by_env())
        .send()
        .await
        .expect("DescribeVpcs");
    inv.vpcs = out
        .vpcs()
        .iter()
        .filter_map(|v| keep(v.vpc_id(), v.tags()))
        .collect();

    let out = ec2
        .describe_subnets()
        .filters(by_env())
        .send()
        .await
        .expect("DescribeSubnets");
    inv.subnets = out
        .subnets()
        .iter()
        .filter_map(|s| keep(s.subnet_id(), s.tags()))
        .collect();

    let out = ec2
        .describe_internet_gateways()
        .filters(by_env())
        .send()
        .await
        .expect("DescribeInternetGateways");
    inv.internet_gateways = out
        .internet_gateways()
        .iter()
        .filter_map(|g| keep(g.internet_gateway_id(), g.tags()))
        .collect();

    let out = ec2
        .describe_nat_gateways()
        .filter(by_env())
        .send()
        .await
        .expect("DescribeNatGateways");
    inv.nat_gateways = out
        .nat_gateways()
        .iter()
        .filter(|n| {
            !matches!(
                n.state(),
                Some(NatGatewayState::Deleted | NatGatewayState::Failed)
            )
        })
        .filter_map(|n| keep(n.nat_gateway_id(), n.tags()))
        .collect();

    let out = ec2
        .describe_addresses()
        .filters(by_env())
        .send()
        .await
        .expect("DescribeAddresses");
    inv.elastic_ips = out
        .addresses()
        .iter()
        .filter_map(|a| keep(a.allocation_id(), a.tags()))
        .collect();

    let out = ec2
        .describe_route_tables()
        .filters(by_env())
        .send()
        .await
        .expect("DescribeRouteTables");
    inv.route_tables = out
        .route_tables()
        .iter()
        .filter_map(|t| keep(t.route_table_id(), t.tags()))
        .collect();

    let out = ec2
        .describe_security_groups()
        .filters(by_env())
        .send()
        .await
        .expect("DescribeSecurityGroups");
    inv.security_groups = out
        .security_groups()
        .iter()
        .filter(|g| g.group_name() != Some("default"))
        .filter_map(|g| keep(g.group_id(), g.tags()))
        .collect();

    let out = ec2
        .describe_vpc_endpoints()
        .filters(by_env())
        .send()
        .await
        .expect("DescribeVpcEndpoints");
    inv.vpc_endpoints = out
        .vpc_endpoints()
        .iter()
        .filter(|e| {
            // Compared as text: the SDK's enum spells these `Deleted`, AWS `deleted`.
            let state = e.state().map(|s| s.as_str().to_ascii_lowercase());
            !matches!(state.as_deref(), Some("deleted" | "failed"))
        })
        .filter_map(|e| keep(e.vpc_endpoint_id(), e.tags()))
        .collect();

    let out = ec2
        .describe_flow_logs()
        .filter(by_env())
        .send()
        .await
        .expect("DescribeFlowLogs");
    inv.flow_logs = out
        .flow_logs()
        .iter()
        .filter_map(|f| keep(f.flow_log_id(), f.tags()))
        .collect();

    inv
}

/// KMS aliases under `alias/payops/<env>/`, with the key each names.
pub async fn kms_aliases(aws: &Aws, env: &str) -> Vec<(String, Option<String>)> {
    let prefix = format!("alias/payops/{env}/");
    let mut aliases = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let out = aws
            .c
            .kms
            .list_aliases()
            .set_marker(marker.take())
            .send()
            .await
            .expect("kms:ListAliases");
        aliases.extend(
            out.aliases()
                .iter()
                .filter(|a| a.alias_name().is_some_and(|n| n.starts_with(&prefix)))
                .map(|a| {
                    (
                        a.alias_name().unwrap_or_default().to_owned(),
                        a.target_key_id().map(str::to_owned),
                    )
                }),
        );
        match out.next_marker() {
            Some(m) if out.truncated() && !m.is_empty() => marker = Some(m.to_owned()),
            _ => return aliases,
        }
    }
}

/// Ids of the enabled KMS keys tagged for `env` (every key of the account is
/// looked at: LocalStack's tagging API does not see its KMS keys).
pub async fn enabled_keys_of(aws: &Aws, env: &str) -> Vec<(String, Tags)> {
    let kms = &aws.c.kms;
    let mut ids = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let out = kms
            .list_keys()
            .set_marker(marker.take())
            .send()
            .await
            .expect("kms:ListKeys");
        ids.extend(
            out.keys()
                .iter()
                .filter_map(|k| k.key_id().map(str::to_owned)),
        );
        match out.next_marker() {
            Some(m) if out.truncated() && !m.is_empty() => marker = Some(m.to_owned()),
            _ => break,
        }
    }
    let mut keys = Vec::new();
    for id in ids {
        let Ok(tags) = kms.list_resource_tags().key_id(&id).send().await else {
            continue;
        };
        let tags: Tags = tags
            .tags()
            .iter()
            .map(|t| (t.tag_key().to_owned(), t.tag_value().to_owned()))
            .collect();
        if !is_ours(&tags, env) {
            continue;
        }
        let described = kms
            .describe_key()
            .key_id(&id)
            .send()
            .await
            .expect("kms:DescribeKey");
        let enabled = described
            .key_metadata()
            .and_then(|m| m.key_state())
            .is_some_and(|s| *s == aws_sdk_kms::types::KeyState::Enabled);
        if enabled {
            keys.push((id, tags));
        }
    }
    keys
}

/// Everything still tagged or named for `env`, by direct describes of every
/// kind payops makes and by the Resource Groups Tagging API. Empty when the
/// env is really gone (KMS keys pending deletion and NAT gateways in state
/// `deleted` count as gone: AWS keeps showing them for a while).
/// The env's saved Logs Insights queries (`payops/<env>/...`): name -> (query, log groups).
pub async fn saved_queries(aws: &Aws, env: &str) -> BTreeMap<String, (String, Vec<String>)> {
    let prefix = format!("payops/{env}/");
    let out = aws
        .c
        .logs
        .describe_query_definitions()
        .query_definition_name_prefix(&prefix)
        .send()
        .await
        .expect("logs:DescribeQueryDefinitions");
    out.query_definitions()
        .iter()
        .map(|d| {
            (
                d.name().unwrap_or_default().to_owned(),
                (
                    d.query_string().unwrap_or_default().to_owned(),
                    d.log_group_names().to_vec(),
                ),
            )
        })
        .collect()
}

/// The env's X-Ray sampling rule (`payops-<env>-payments`), if any.
pub async fn sampling_rule(aws: &Aws, env: &str) -> Option<aws_sdk_xray::types::SamplingRule> {
    let name = format!("payops-{env}-payments");
    let out = aws
        .c
        .xray
        .get_sampling_rules()
        .send()
        .await
        .expect("xray:GetSamplingRules");
    out.sampling_rule_records()
        .iter()
        .filter_map(|r| r.sampling_rule())
        .find(|r| r.rule_name() == Some(name.as_str()))
        .cloned()
}

pub async fn remaining(aws: &Aws, env: &str) -> Vec<String> {
    let mut left = ec2_inventory(aws, env).await.all();

    for name in saved_queries(aws, env).await.keys() {
        left.push(format!("saved query {name}"));
    }

    if let Some(rule) = sampling_rule(aws, env).await {
        left.push(format!("x-ray sampling rule {:?}", rule.rule_name()));
    }

    left.extend(route53_remaining(aws, env).await);

    for (alias, key) in kms_aliases(aws, env).await {
        left.push(format!("kms alias {alias} -> {key:?}"));
    }

    let bucket = aws.bucket_name(env);
    match aws.c.s3.head_bucket().bucket(&bucket).send().await {
        Ok(_) => left.push(format!("s3 bucket {bucket}")),
        Err(SdkError::ServiceError(e)) if e.raw().status().as_u16() == 404 => {}
        Err(e) => panic!("s3:HeadBucket {bucket}: {e:?}"),
    }

    for table in ["transactions", "fraud-rules"] {
        let name = format!("payops-{env}-{table}");
        match aws
            .c
            .dynamodb
            .describe_table()
            .table_name(&name)
            .send()
            .await
        {
            Ok(out) => left.push(format!(
                "dynamodb table {name} ({:?})",
                out.table().and_then(|t| t.table_status())
            )),
            Err(e) if error_code(&e) == Some("ResourceNotFoundException") => {}
            Err(e) => panic!("dynamodb:DescribeTable {name}: {e:?}"),
        }
    }

    let topic_prefix = format!(":payops-{env}-");
    let mut token: Option<String> = None;
    loop {
        let out = aws
            .c
            .sns
            .list_topics()
            .set_next_token(token.take())
            .send()
            .await
            .expect("sns:ListTopics");
        for t in out.topics() {
            if let Some(arn) = t.topic_arn().filter(|a| a.contains(&topic_prefix)) {
                left.push(format!("sns topic {arn}"));
            }
        }
        match out.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_owned()),
            _ => break,
        }
    }

    let path = format!("/payops/{env}/");
    let mut token: Option<String> = None;
    loop {
        let out = aws
            .c
            .ssm
            .get_parameters_by_path()
            .path(&path)
            .recursive(true)
            .set_next_token(token.take())
            .send()
            .await
            .expect("ssm:GetParametersByPath");
        for p in out.parameters() {
            left.push(format!("ssm parameter {}", p.name().unwrap_or("?")));
        }
        match out.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_owned()),
            _ => break,
        }
    }

    let out = aws
        .c
        .logs
        .describe_log_groups()
        .log_group_name_prefix(&path)
        .send()
        .await
        .expect("logs:DescribeLogGroups");
    for g in out.log_groups() {
        left.push(format!("log group {}", g.log_group_name().unwrap_or("?")));
    }
    // The group RDS names, which payops makes first and removes.
    let rds = format!("/aws/rds/cluster/payops-{env}-aurora/postgresql");
    let out = aws
        .c
        .logs
        .describe_log_groups()
        .log_group_name_prefix(&rds)
        .send()
        .await
        .expect("logs:DescribeLogGroups");
    for g in out.log_groups() {
        left.push(format!("log group {}", g.log_group_name().unwrap_or("?")));
    }

    let roles = ["flow-logs", "secret-rotation"]
        .into_iter()
        .chain(FUNCTIONS);
    // This region's names, and the region-blind ones of older versions (a
    // role of the twin env in another region would show here too: the tests
    // that make one look at both regions).
    let names = roles.flat_map(|r| {
        [
            format!("payops-{env}-{}-{r}", aws.region),
            format!("payops-{env}-{r}"),
        ]
    });
    for role in names {
        match aws.c.iam.get_role().role_name(&role).send().await {
            Ok(_) => left.push(format!("iam role {role}")),
            Err(e) if error_code(&e) == Some("NoSuchEntity") => {}
            Err(e) => panic!("iam:GetRole {role}: {e:?}"),
        }
    }
    left.extend(compute_remaining(aws, env).await);
    left.extend(database_remaining(aws, env).await);
    left.extend(events_remaining(aws, env).await);

    for arn in tagged_arns(aws, env).await {
        if !gone_for_good(aws, &arn).await {
            left.push(format!("tagged {arn}"));
        }
    }
    left.sort();
    left.dedup();
    left
}

/// What is left of the env's event backbone: queues, the bus, and rules on
/// the bus or the default bus, by name (neither emulator's tagging API lists
/// them all).
pub async fn events_remaining(aws: &Aws, env: &str) -> Vec<String> {
    let mut left = Vec::new();
    let prefix = format!("payops-{env}-");
    let queues = aws
        .c
        .sqs
        .list_queues()
        .queue_name_prefix(&prefix)
        .send()
        .await
        .expect("sqs:ListQueues");
    for url in queues.queue_urls() {
        left.push(format!("sqs queue {url}"));
    }
    let buses = aws
        .c
        .events
        .list_event_buses()
        .name_prefix(&prefix)
        .send()
        .await
        .expect("events:ListEventBuses");
    for b in buses.event_buses() {
        left.push(format!("event bus {}", b.name().unwrap_or("?")));
        let rules = aws
            .c
            .events
            .list_rules()
            .event_bus_name(b.name().unwrap_or_default())
            .send()
            .await
            .expect("events:ListRules");
        for r in rules.rules() {
            left.push(format!("event rule {}", r.arn().unwrap_or("?")));
        }
    }
    let rules = aws
        .c
        .events
        .list_rules()
        .name_prefix(&prefix)
        .send()
        .await
        .expect("events:ListRules");
    for r in rules.rules() {
        left.push(format!("event rule {}", r.arn().unwrap_or("?")));
    }
    // The consumer's mapping, by its queue (a mapping outlives both its
    // function and its queue), and the consumer itself.
    let mappings = aws
        .c
        .lambda
        .list_event_source_mappings()
        .event_source_arn(format!(
            "arn:aws:sqs:{}:{}:payops-{env}-payments-processing",
            aws.region, aws.account
        ))
        .send()
        .await
        .expect("lambda:ListEventSourceMappings");
    for m in mappings.event_source_mappings() {
        left.push(format!(
            "event source mapping {} ({})",
            m.uuid().unwrap_or("?"),
            m.state().unwrap_or("?")
        ));
    }
    let function = format!("payops-{env}-{QUEUE_CONSUMER}");
    function_left(aws, &function, &mut left).await;
    left.extend(transaction_log_remaining(aws, env).await);
    left
}

/// The transaction log's stream, bucket, roles and transform function, by
/// name.
pub async fn transaction_log_remaining(aws: &Aws, env: &str) -> Vec<String> {
    let mut left = Vec::new();
    let stream = format!("payops-{env}-transaction-log");
    match aws
        .c
        .firehose
        .describe_delivery_stream()
        .delivery_stream_name(&stream)
        .send()
        .await
    {
        Ok(_) => left.push(format!("firehose stream {stream}")),
        Err(e) if error_code(&e) == Some("ResourceNotFoundException") => {}
        Err(e) => panic!("firehose:DescribeDeliveryStream {stream}: {e:?}"),
    }
    let bucket = aws.transaction_log_bucket(env);
    match aws.c.s3.head_bucket().bucket(&bucket).send().await {
        Ok(_) => left.push(format!("s3 bucket {bucket}")),
        Err(SdkError::ServiceError(e)) if e.raw().status().as_u16() == 404 => {}
        Err(e) => panic!("s3:HeadBucket {bucket}: {e:?}"),
    }
    for role in [TRANSACTION_LOG_TRANSFORM, "transaction-log-delivery"] {
        let role = format!("payops-{env}-{}-{role}", aws.region);
        match aws.c.iam.get_role().role_name(&role).send().await {
            Ok(_) => left.push(format!("iam role {role}")),
            Err(e) if error_code(&e) == Some("NoSuchEntity") => {}
            Err(e) => panic!("iam:GetRole {role}: {e:?}"),
        }
    }
    let function = format!("payops-{env}-{TRANSACTION_LOG_TRANSFORM}");
    function_left(aws, &function, &mut left).await;
    left
}

/// What is left of the env's request path: functions, load balancers, target
/// groups, VPC link, REST API, certificate, access-log bucket. Looked up by
/// name: the tagging API of either emulator misses several of these kinds.
pub async fn compute_remaining(aws: &Aws, env: &str) -> Vec<String> {
    let mut left = Vec::new();
    for f in FUNCTIONS {
        let name = format!("payops-{env}-{f}");
        function_left(aws, &name, &mut left).await;
    }
    for lb in ["alb", "nlb"] {
        let name = format!("payops-{env}-{lb}");
        match aws
            .c
            .elb
            .describe_load_balancers()
            .names(&name)
            .send()
            .await
        {
            Ok(out) if !out.load_balancers().is_empty() => {
                left.push(format!("load balancer {name}"))
            }
            Ok(_) => {}
            Err(e) if error_code(&e) == Some("LoadBalancerNotFound") => {}
            Err(e) => panic!("elbv2:DescribeLoadBalancers {name}: {e:?}"),
        }
    }
    for tg in ["blue", "green", "alb"] {
        let name = format!("payops-{env}-{tg}");
        match aws.c.elb.describe_target_groups().names(&name).send().await {
            Ok(out) if !out.target_groups().is_empty() => left.push(format!("target group {name}")),
            Ok(_) => {}
            Err(e) if error_code(&e) == Some("TargetGroupNotFound") => {}
            Err(e) => panic!("elbv2:DescribeTargetGroups {name}: {e:?}"),
        }
    }
    let links = aws
        .c
        .apigateway
        .get_vpc_links()
        .limit(500)
        .send()
        .await
        .expect("apigateway:GetVpcLinks");
    for l in links.items() {
        if l.name() == Some(format!("payops-{env}-vpc-link").as_str()) {
            left.push(format!("vpc link {:?}", l.id()));
        }
    }
    let apis = aws
        .c
        .apigateway
        .get_rest_apis()
        .limit(500)
        .send()
        .await
        .expect("apigateway:GetRestApis");
    for a in apis.items() {
        if a.name() == Some(format!("payops-{env}-api").as_str()) {
            left.push(format!("rest api {:?}", a.id()));
        }
    }
    let certs = aws
        .c
        .acm
        .list_certificates()
        .includes(
            aws_sdk_acm::types::Filters::builder()
                .key_types(aws_sdk_acm::types::KeyAlgorithm::EcPrime256v1)
                .build(),
        )
        .send()
        .await
        .expect("acm:ListCertificates");
    for c in certs.certificate_summary_list() {
        if c.domain_name() == Some(format!("alb.{env}.payops.internal").as_str()) {
            left.push(format!("acm certificate {:?}", c.certificate_arn()));
        }
    }
    for bucket in [
        format!("payops-{env}-alb-logs-{}-{}", aws.account, aws.region),
        format!("aws-waf-logs-{env}-{}-{}", aws.account, aws.region),
    ] {
        match aws.c.s3.head_bucket().bucket(&bucket).send().await {
            Ok(_) => left.push(format!("s3 bucket {bucket}")),
            Err(SdkError::ServiceError(e)) if e.raw().status().as_u16() == 404 => {}
            Err(e) => panic!("s3:HeadBucket {bucket}: {e:?}"),
        }
    }
    if let Some(acl) = web_acl(aws, env).await {
        left.push(format!("waf web acl {:?}", acl.arn));
    }
    left
}

/// The env's web ACL as ListWebACLs names it.
pub async fn web_acl(aws: &Aws, env: &str) -> Option<aws_sdk_wafv2::types::WebAclSummary> {
    let out = aws
        .c
        .wafv2
        .list_web_acls()
        .scope(aws_sdk_wafv2::types::Scope::Regional)
        .limit(100)
        .send()
        .await
        .expect("wafv2:ListWebACLs");
    out.web_acls()
        .iter()
        .find(|a| a.name() == Some(format!("payops-{env}-waf").as_str()))
        .cloned()
}

/// ARNs the Resource Groups Tagging API lists with `payops:env=<env>`.
pub async fn tagged_arns(aws: &Aws, env: &str) -> BTreeSet<String> {
    let mut arns = BTreeSet::new();
    let mut token: Option<String> = None;
    loop {
        let out = aws
            .c
            .tagging
            .get_resources()
            .tag_filters(
                aws_sdk_resourcegroupstagging::types::TagFilter::builder()
                    .key(TAG_ENV)
                    .values(env)
                    .build(),
            )
            .set_pagination_token(token.take())
            .send()
            .await
            .expect("tagging:GetResources");
        for m in out.resource_tag_mapping_list() {
            // Checked again: the filter is the emulator's to honour.
            let ours = m
                .tags()
                .iter()
                .any(|t| t.key() == TAG_ENV && t.value() == env);
            // moto lists every region's S3 buckets; payops' bucket names
            // end with their region.
            let elsewhere = m.resource_arn().is_some_and(|a| {
                a.starts_with("arn:aws:s3:::") && !a.ends_with(&format!("-{}", aws.region))
            });
            if let (Some(arn), true, false) = (m.resource_arn(), ours, elsewhere) {
                arns.insert(arn.to_owned());
            }
        }
        match out.pagination_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_owned()),
            _ => return arns,
        }
    }
}

/// KMS keys pending deletion and NAT gateways in state `deleted` stay listed
/// for days (keys) or an hour (NAT) on AWS: they are gone as far as an env is
/// concerned.
async fn gone_for_good(aws: &Aws, arn: &str) -> bool {
    if arn.contains(":kms:") && arn.contains(":key/") {
        return match aws.c.kms.describe_key().key_id(arn).send().await {
            Ok(out) => out
                .key_metadata()
                .and_then(|m| m.key_state())
                .is_some_and(|s| *s == aws_sdk_kms::types::KeyState::PendingDeletion),
            Err(e) => error_code(&e) == Some("NotFoundException"),
        };
    }
    // Secrets deleted a moment ago, and the automated snapshots of a deleted
    // cluster (AWS removes them with it; moto keeps them).
    if arn.contains(":secretsmanager:") {
        return match aws.c.secrets.describe_secret().secret_id(arn).send().await {
            Ok(out) => out.deleted_date().is_some(),
            Err(e) => error_code(&e) == Some("ResourceNotFoundException"),
        };
    }
    if arn.contains(":cluster-snapshot:rds:") {
        return true;
    }
    // Terminated instances (the batch group's) stay listed for a while.
    if let Some(id) = arn.split(":instance/").nth(1) {
        return match aws.c.ec2.describe_instances().instance_ids(id).send().await {
            Ok(out) => out
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .all(|i| {
                    matches!(
                        i.state().and_then(|s| s.name()),
                        Some(
                            aws_sdk_ec2::types::InstanceStateName::Terminated
                                | aws_sdk_ec2::types::InstanceStateName::ShuttingDown
                        )
                    )
                }),
            Err(e) => error_code(&e) == Some("InvalidInstanceID.NotFound"),
        };
    }
    if let Some(id) = arn.split(":natgateway/").nth(1) {
        return match aws
            .c
            .ec2
            .describe_nat_gateways()
            .nat_gateway_ids(id)
            .send()
            .await
        {
            Ok(out) => out
                .nat_gateways()
                .iter()
                .all(|n| n.state() == Some(&NatGatewayState::Deleted)),
            Err(e) => error_code(&e) == Some("NatGatewayNotFound"),
        };
    }
    false
}

/// What is left of the env's database: cluster, instances, RDS Proxy and
/// its read-only endpoint, subnet and parameter groups, the generated
/// secret, the rotation function. Looked up
/// by name (the emulators' tagging APIs miss several of these).
pub async fn database_remaining(aws: &Aws, env: &str) -> Vec<String> {
    let mut left = Vec::new();
    let rds = &aws.c.rds;
    let cluster = format!("payops-{env}-aurora");
    match rds
        .describe_db_clusters()
        .db_cluster_identifier(&cluster)
        .send()
        .await
    {
        Ok(out) if !out.db_clusters().is_empty() => left.push(format!("aurora cluster {cluster}")),
        Ok(_) => {}
        Err(e) if error_code(&e) == Some("DBClusterNotFoundFault") => {}
        Err(e) => panic!("rds:DescribeDBClusters {cluster}: {e:?}"),
    }
    let out = rds
        .describe_db_instances()
        .send()
        .await
        .expect("rds:DescribeDBInstances");
    for i in out.db_instances() {
        let id = i.db_instance_identifier().unwrap_or_default();
        if id.starts_with(&format!("{cluster}-")) {
            left.push(format!("aurora instance {id}"));
        }
    }
    let proxy = format!("payops-{env}-db-proxy");
    match rds.describe_db_proxies().db_proxy_name(&proxy).send().await {
        Ok(out) if !out.db_proxies().is_empty() => left.push(format!("rds proxy {proxy}")),
        Ok(_) => {}
        Err(e) if error_code(&e) == Some("DBProxyNotFoundFault") => {}
        Err(e) => panic!("rds:DescribeDBProxies {proxy}: {e:?}"),
    }
    let endpoint = format!("payops-{env}-db-proxy-ro");
    match rds
        .describe_db_proxy_endpoints()
        .db_proxy_endpoint_name(&endpoint)
        .send()
        .await
    {
        Ok(out) if !out.db_proxy_endpoints().is_empty() => {
            left.push(format!("rds proxy endpoint {endpoint}"))
        }
        Ok(_) => {}
        Err(e)
            if matches!(
                error_code(&e),
                Some("DBProxyEndpointNotFoundFault" | "DBProxyNotFoundFault")
            ) => {}
        Err(e) => panic!("rds:DescribeDBProxyEndpoints {endpoint}: {e:?}"),
    }
    let group = format!("payops-{env}-db");
    match rds
        .describe_db_subnet_groups()
        .db_subnet_group_name(&group)
        .send()
        .await
    {
        Ok(out) if !out.db_subnet_groups().is_empty() => {
            left.push(format!("db subnet group {group}"))
        }
        Ok(_) => {}
        Err(e) if error_code(&e) == Some("DBSubnetGroupNotFoundFault") => {}
        Err(e) => panic!("rds:DescribeDBSubnetGroups {group}: {e:?}"),
    }
    let out = rds
        .describe_db_cluster_parameter_groups()
        .send()
        .await
        .expect("rds:DescribeDBClusterParameterGroups");
    for g in out.db_cluster_parameter_groups() {
        let name = g.db_cluster_parameter_group_name().unwrap_or_default();
        if name.starts_with(&format!("payops-{env}-")) {
            left.push(format!("db cluster parameter group {name}"));
        }
    }
    for secret in [
        format!("payops/{env}/db-master"),
        format!("payops/{env}/db-app"),
    ] {
        match aws
            .c
            .secrets
            .describe_secret()
            .secret_id(&secret)
            .send()
            .await
        {
            Ok(out) if out.deleted_date().is_none() => left.push(format!("secret {secret}")),
            Ok(_) => {}
            Err(e) if error_code(&e) == Some("ResourceNotFoundException") => {}
            Err(e) => panic!("secretsmanager:DescribeSecret {secret}: {e:?}"),
        }
    }
    let function = format!("payops-{env}-secret-rotation");
    function_left(aws, &function, &mut left).await;
    left
}

/// The project's fault proxy (scripts/fault-proxy.py) in front of the
/// emulator, with `args` (faults, a per-test account, ...); stopped when
/// dropped.
pub struct FaultProxy {
    child: Child,
    pub url: String,
}

impl FaultProxy {
    pub fn start(args: &[&str]) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fault-proxy.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--upstream", &endpoint(), "--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 scripts/fault-proxy.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("the proxy's stdout"))
            .read_line(&mut line)
            .expect("the proxy's address");
        assert!(line.starts_with("http://"), "fault proxy said {line:?}");
        Self {
            child,
            url: line.trim().to_owned(),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Adds the Lambda function `name` to `left` if it still exists.
async fn function_left(aws: &Aws, name: &str, left: &mut Vec<String>) {
    match aws.c.lambda.get_function().function_name(name).send().await {
        Ok(_) => left.push(format!("lambda function {name}")),
        Err(e) if error_code(&e) == Some("ResourceNotFoundException") => {}
        Err(e) => panic!("lambda:GetFunction {name}: {e:?}"),
    }
}

/// The output `key`, or a panic naming what the outputs hold.
#[track_caller]
pub fn output<'a>(outputs: &'a BTreeMap<String, String>, key: &str) -> &'a str {
    outputs
        .get(key)
        .unwrap_or_else(|| panic!("outputs have no {key}: {outputs:?}"))
}

/// A policy value that may be one string or a list, as a list.
pub fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// The env's private zone (by name) and its health checks (by the env's
/// tag) still in Route 53, listed directly: Route 53 is global, and the
/// tagging API does not list it everywhere.
pub async fn route53_remaining(aws: &Aws, env: &str) -> Vec<String> {
    use aws_sdk_route53::types::TagResourceType;
    let mut left = Vec::new();
    let zone = format!("{env}.payops.internal.");
    let zones = aws
        .c
        .route53
        .list_hosted_zones_by_name()
        .dns_name(&zone)
        .send()
        .await
        .expect("route53:ListHostedZonesByName");
    for z in zones.hosted_zones() {
        if z.name() == zone {
            left.push(format!("route53 hosted zone {} ({})", z.name(), z.id()));
        }
    }
    let checks = aws
        .c
        .route53
        .list_health_checks()
        .send()
        .await
        .expect("route53:ListHealthChecks");
    for c in checks.health_checks() {
        let tags = aws
            .c
            .route53
            .list_tags_for_resource()
            .resource_type(TagResourceType::Healthcheck)
            .resource_id(c.id())
            .send()
            .await
            .expect("route53:ListTagsForResource");
        let ours = tags.resource_tag_set().is_some_and(|t| {
            t.tags()
                .iter()
                .any(|t| t.key() == Some(TAG_ENV) && t.value() == Some(env))
        });
        if ours {
            left.push(format!("route53 health check {}", c.id()));
        }
    }
    left
}
