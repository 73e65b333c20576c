//! Fleet operations against an emulator: `status` across envs, `destroy-all`
//! (dry run, filters, protection, foreign look-alikes), and the S3 state
//! backend with its lock. Run with `make test-integration`.

mod common;

use std::collections::BTreeMap;
use std::thread;
use std::time::Instant;

use serde_json::Value;

use common::{Aws, NOT_WANTED_BY_DEFAULT, STEP_COUNT, TestEnv, remaining};

/// A fresh prefix for one test's envs: `f` and 6 random characters, so
/// `destroy-all --env-prefix` never reaches another test's envs.
fn prefix() -> String {
    let name = common::random_env_name(); // it-xxxxxxxx
    format!("f{}", &name[3..9])
}

/// How the envs of a flow keep their state.
#[derive(Clone, Copy, Debug, PartialEq)]
enum StateMode {
    /// Each env its own local state dir (the default backend).
    Local,
    /// One S3 prefix shared by every run (`--state s3://...`).
    S3,
    /// State files deleted before the fleet commands: tags only.
    None,
}

/// A bucket for the shared state backend.
async fn state_bucket(aws: &Aws, prefix: &str) -> String {
    let bucket = format!("{prefix}-payops-state");
    aws.c
        .s3
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create the state bucket");
    bucket
}

fn env_named(name: String, state: Option<&str>) -> TestEnv {
    let env = TestEnv::named(name);
    match state {
        Some(url) => env.with_var("PAYOPS_STATE", url),
        None => env,
    }
}

/// Resources with payops' name patterns for env `name`, none of them tagged
/// as payops': `destroy-all` must neither list that env nor touch them.
async fn foreign_lookalikes(aws: &Aws, name: &str) -> Vec<String> {
    let c = &aws.c;
    let bucket = aws.bucket_name(name);
    c.s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("foreign bucket");
    let table = format!("payops-{name}-transactions");
    c.dynamodb
        .create_table()
        .table_name(&table)
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .attribute_definitions(
            aws_sdk_dynamodb::types::AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            aws_sdk_dynamodb::types::KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(aws_sdk_dynamodb::types::KeyType::Hash)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("foreign table");
    let parameter = format!("/payops/{name}/VpcId");
    c.ssm
        .put_parameter()
        .name(&parameter)
        .value("vpc-not-payops")
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .expect("foreign parameter");
    let key = c
        .kms
        .create_key()
        .description("not payops'")
        .send()
        .await
        .expect("foreign key");
    let key_id = key.key_metadata().unwrap().key_id().to_owned();
    let alias = format!("alias/payops/{name}/s3");
    c.kms
        .create_alias()
        .alias_name(&alias)
        .target_key_id(&key_id)
        .send()
        .await
        .expect("foreign alias");
    let vpc = c
        .ec2
        .create_vpc()
        .cidr_block("10.99.0.0/16")
        .tag_specifications(
            aws_sdk_ec2::types::TagSpecification::builder()
                .resource_type(aws_sdk_ec2::types::ResourceType::Vpc)
                .tags(
                    aws_sdk_ec2::types::Tag::builder()
                        .key("Name")
                        .value(format!("payops-{name}-vpc"))
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("foreign vpc");
    let vpc_id = vpc.vpc().unwrap().vpc_id().unwrap().to_owned();
    vec![
        format!("bucket {bucket}"),
        format!("table {table}"),
        format!("parameter {parameter}"),
        format!("alias {alias}"),
        format!("vpc {vpc_id}"),
    ]
}

/// Which of the look-alikes still exist.
async fn still_there(aws: &Aws, name: &str, vpc_id: &str) -> Vec<&'static str> {
    let c = &aws.c;
    let mut found = Vec::new();
    if c.s3
        .head_bucket()
        .bucket(aws.bucket_name(name))
        .send()
        .await
        .is_ok()
    {
        found.push("bucket");
    }
    if c.dynamodb
        .describe_table()
        .table_name(format!("payops-{name}-transactions"))
        .send()
        .await
        .is_ok()
    {
        found.push("table");
    }
    if c.ssm
        .get_parameter()
        .name(format!("/payops/{name}/VpcId"))
        .send()
        .await
        .is_ok()
    {
        found.push("parameter");
    }
    let aliases = c.kms.list_aliases().send().await.expect("list aliases");
    if aliases
        .aliases()
        .iter()
        .any(|a| a.alias_name() == Some(&format!("alias/payops/{name}/s3")))
    {
        found.push("alias");
    }
    let vpcs = c
        .ec2
        .describe_vpcs()
        .vpc_ids(vpc_id)
        .send()
        .await
        .expect("describe vpcs");
    if !vpcs.vpcs().is_empty() {
        found.push("vpc");
    }
    found
}

/// The rows of `status --output json` for envs starting with `prefix`.
fn fleet_rows(run: &common::Run, prefix: &str) -> BTreeMap<String, Value> {
    run.assert_success();
    run.json()["envs"]
        .as_array()
        .expect("envs")
        .iter()
        .filter(|r| r["env"].as_str().unwrap().starts_with(prefix))
        .map(|r| (r["env"].as_str().unwrap().to_owned(), r.clone()))
        .collect()
}

fn names(values: &Value, key: &str) -> Vec<String> {
    let mut names: Vec<String> = values
        .as_array()
        .unwrap_or_else(|| panic!("{key} is not an array"))
        .iter()
        .map(|v| v[key].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

/// The whole nightly flow for one way of keeping state.
async fn destroy_all_flow(mode: StateMode) {
    let aws = Aws::connect().await;
    let p = prefix();
    let state = match mode {
        StateMode::S3 => Some(format!("s3://{}/runs", state_bucket(&aws, &p).await)),
        _ => None,
    };
    let started = Instant::now();
    let mut a = env_named(format!("{p}-a"), state.as_deref());
    let mut b = env_named(format!("{p}-b"), state.as_deref());
    let mut keep = env_named(format!("{p}-keep"), state.as_deref());
    // Up in parallel, like CI jobs of different pull requests.
    thread::scope(|s| {
        s.spawn(|| a.up(&["--nat", "single"]));
        s.spawn(|| b.up(&[]));
        s.spawn(|| keep.up(&["--protect"]));
    });
    let foreign = format!("{p}-x");
    let lookalikes = foreign_lookalikes(&aws, &foreign).await;
    let foreign_vpc = lookalikes[4].trim_start_matches("vpc ").to_owned();
    // A parameter of someone else's under a target env's path.
    aws.c
        .ssm
        .put_parameter()
        .name(format!("/payops/{}/TheirNote", a.name))
        .value("not payops'")
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .expect("foreign parameter under a payops path");
    if mode == StateMode::None {
        for env in [&a, &b, &keep] {
            std::fs::remove_file(env.state_file()).expect("remove the state file");
        }
    }

    // Status lists the three envs with their ages, counts and protection.
    let rows = fleet_rows(&a.run(&["status", "--output", "json"]), &p);
    assert_eq!(
        rows.keys().cloned().collect::<Vec<_>>(),
        [a.name.clone(), b.name.clone(), keep.name.clone()],
        "the look-alike env {foreign} must not be listed"
    );
    let elapsed = started.elapsed().as_secs();
    for (name, row) in &rows {
        let age = row["age_seconds"].as_u64().expect("an age");
        assert!(
            age <= elapsed + 1,
            "{name}: age {age}s > {elapsed}s since the test began"
        );
        // Every step but those the env's shape does not want: the alert
        // emails (none given), and with --nat single the NAT gateways of
        // slots b and c.
        let single_nat = if name == &a.name { 2 } else { 0 };
        let expected = STEP_COUNT - NOT_WANTED_BY_DEFAULT.len() - single_nat;
        assert_eq!(row["resources_present"], expected, "{name}: {row}");
        assert_eq!(row["resources_expected"], expected, "{name}: {row}");
        assert_eq!(row["protected"], *name == keep.name, "{name}: {row}");
        if mode == StateMode::None {
            assert!(
                row.get("last_run").is_none(),
                "{name}: no state, no last run"
            );
        }
    }
    if mode == StateMode::S3 {
        // Every run reads the shared backend: the last runs are known to all.
        for row in rows.values() {
            assert_eq!(row["last_run"]["result"], "succeeded", "{row}");
        }
    }

    // The dry run names exactly the two unprotected envs and changes nothing.
    let dry = a.run(&[
        "destroy-all",
        "--env-prefix",
        &p,
        "--older-than",
        "0s",
        "--output",
        "json",
    ]);
    dry.assert_success();
    let plan = dry.json();
    assert_eq!(plan["dry_run"], true);
    assert_eq!(
        names(&plan["envs"], "env"),
        [a.name.clone(), b.name.clone()]
    );
    assert_eq!(names(&plan["kept"], "env"), [keep.name.clone()]);
    let a_plan = &plan["envs"][0];
    assert!(
        a_plan["present"].as_array().unwrap().len() >= 30,
        "the dry run lists what it would remove: {a_plan}"
    );
    assert!(
        remaining(&aws, &a.name).await.len() > 10,
        "a dry run removes nothing"
    );

    // Too young: nothing goes.
    let young = a.run(&[
        "destroy-all",
        "--env-prefix",
        &p,
        "--older-than",
        "24h",
        "--yes",
    ]);
    young.assert_success();
    assert!(
        young.stdout.contains("younger than"),
        "{}",
        young.describe()
    );
    assert!(remaining(&aws, &b.name).await.len() > 10);

    // The real thing.
    let report = a.dir().join("destroy-all.json");
    let run = a.run(&[
        "destroy-all",
        "--env-prefix",
        &p,
        "--older-than",
        "0s",
        "--yes",
        "--report",
        report.to_str().unwrap(),
    ]);
    run.assert_success();
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("the report file"))
            .expect("the report is JSON");
    let results: BTreeMap<String, String> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["env"].as_str().unwrap().to_owned(),
                r["result"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        results,
        BTreeMap::from([
            (a.name.clone(), "removed".to_owned()),
            (b.name.clone(), "removed".to_owned()),
        ]),
        "{}",
        run.describe()
    );
    for env in [&a, &b] {
        let left: Vec<String> = remaining(&aws, &env.name)
            .await
            .into_iter()
            .filter(|r| !r.ends_with("/TheirNote"))
            .collect();
        assert_eq!(left, Vec::<String>::new(), "{} must be gone", env.name);
    }
    // Nothing that was not payops' was touched, whatever its name.
    assert_eq!(
        still_there(&aws, &foreign, &foreign_vpc).await,
        ["bucket", "table", "parameter", "alias", "vpc"],
        "look-alikes: {lookalikes:?}"
    );
    assert!(
        aws.c
            .ssm
            .get_parameter()
            .name(format!("/payops/{}/TheirNote", a.name))
            .send()
            .await
            .is_ok(),
        "someone else's parameter under a removed env's path stays"
    );
    // The protected env is whole.
    let kept = keep.status_json();
    assert_eq!(kept["summary"], "converged", "{kept}");

    // Cleanup: `down` refuses a protected env before touching anything; once
    // the protection is lifted it can be removed explicitly.
    let refused = keep.down();
    refused.assert_code(2);
    assert!(
        refused.stdout.contains("--protect=false") || refused.stderr.contains("--protect=false"),
        "{}",
        refused.describe()
    );
    assert_eq!(
        keep.status_json()["summary"],
        "converged",
        "nothing was removed"
    );
    keep.up(&["--protect=false"]);
    let run = keep.down();
    run.assert_success();
    a.forget();
    b.forget();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an AWS emulator: make test-integration"]
async fn destroy_all_with_local_state() {
    destroy_all_flow(StateMode::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an AWS emulator: make test-integration"]
async fn destroy_all_with_the_s3_state_backend() {
    destroy_all_flow(StateMode::S3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an AWS emulator: make test-integration"]
async fn destroy_all_with_no_state_at_all() {
    destroy_all_flow(StateMode::None).await;
}

/// Issue 14: `--env-prefix pr` reaches `pr7` but never `prod` or `prx`
/// (the prefix matches at a name boundary only), and payops.toml's
/// `never_destroy` keeps an env even from `--yes`. The three names share a
/// random stem, so this sweep cannot reach another test's envs on a shared
/// emulator; the stem ends in `pr`, so the cases are those of the issue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an AWS emulator: make test-integration"]
async fn destroy_all_prefix_stops_at_a_name_boundary() {
    let aws = Aws::connect().await;
    let pr = format!("{}pr", prefix());
    let mut pr7 = env_named(format!("{pr}7"), None);
    let mut prod = env_named(format!("{pr}od"), None);
    let mut prx = env_named(format!("{pr}x"), None);
    // The cheapest whole envs: one NAT gateway, no Aurora readers.
    thread::scope(|s| {
        for env in [&pr7, &prod, &prx] {
            s.spawn(move || env.up(&["--nat", "single", "--db-readers", "0"]));
        }
    });
    // "Whole" is judged by inventory, not by `status` being converged: what
    // an emulator reports as drift right after `up` is no concern of a sweep.
    let mut before = BTreeMap::new();
    for env in [&prod, &prx] {
        let found = remaining(&aws, &env.name).await;
        assert!(found.len() > 10, "{} is up: {found:?}", env.name);
        before.insert(env.name.clone(), found);
    }
    let sweep = |env: &TestEnv, extra: &[&str]| {
        let mut args = vec![
            "destroy-all",
            "--env-prefix",
            &pr,
            "--older-than",
            "0s",
            "--yes",
            "--output",
            "json",
        ];
        args.extend_from_slice(extra);
        let run = env.run(&args);
        run.assert_success();
        (run.json(), run.describe())
    };

    // never_destroy (from the file, so always applied) keeps pr7 even with --yes.
    let config = pr7.dir().join("never.toml");
    std::fs::write(&config, format!("never_destroy = [\"{}\"]\n", pr7.name))
        .expect("write the config");
    let (report, run) = sweep(&pr7, &["--config", config.to_str().unwrap()]);
    assert_eq!(report["envs"], serde_json::json!([]), "{run}");
    assert!(
        report.get("results").is_none(),
        "nothing was removed: {run}"
    );
    assert_eq!(
        report["kept"],
        serde_json::json!([{
            "env": pr7.name,
            "reason": format!("never_destroy in {}", config.display()),
        }]),
        "{run}"
    );
    assert!(remaining(&aws, &pr7.name).await.len() > 10, "{run}");

    // Without it, the sweep removes pr7 only: prod and prx are outside the
    // prefix, so not even listed as kept.
    let (report, run) = sweep(&pr7, &[]);
    assert_eq!(
        names(&report["results"], "env"),
        [pr7.name.clone()],
        "{run}"
    );
    assert_eq!(report["results"][0]["result"], "removed", "{run}");
    assert_eq!(report["kept"], serde_json::json!([]), "{run}");
    assert_eq!(
        remaining(&aws, &pr7.name).await,
        Vec::<String>::new(),
        "{} must be gone",
        pr7.name
    );
    pr7.forget();
    for env in [&prod, &prx] {
        assert_eq!(
            remaining(&aws, &env.name).await,
            before[&env.name],
            "{} must be whole",
            env.name
        );
    }
    for env in [&mut prod, &mut prx] {
        env.down().assert_success();
    }
}

/// Writes a lock object as another runner would have.
async fn plant_lock(aws: &Aws, bucket: &str, env: &str, owner: &str, expires: &str) {
    let body = serde_json::json!({
        "owner": owner,
        "acquired_at": "2026-01-01T00:00:00Z",
        "lease_expires_at": expires,
        "token": "someone-else",
    });
    aws.c
        .s3
        .put_object()
        .bucket(bucket)
        .key(format!("runs/{}/{env}.lock", aws.region))
        .body(body.to_string().into_bytes().into())
        .send()
        .await
        .expect("plant a lock");
}

async fn lock_exists(aws: &Aws, bucket: &str, env: &str) -> bool {
    match aws
        .c
        .s3
        .head_object()
        .bucket(bucket)
        .key(format!("runs/{}/{env}.lock", aws.region))
        .send()
        .await
    {
        Ok(_) => true,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => false,
        Err(e) => panic!("head lock: {e:?}"),
    }
}

/// Sends `sig` (e.g. `-STOP`) to a child process.
fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "kill {sig} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an AWS emulator: make test-integration"]
async fn the_s3_lock_names_its_holder_expires_and_can_be_broken() {
    let aws = Aws::connect().await;
    let p = prefix();
    let bucket = state_bucket(&aws, &p).await;
    let url = format!("s3://{bucket}/runs");
    let mut env = env_named(format!("{p}-l"), Some(&url));
    let other = env_named(format!("{p}-o"), Some(&url));

    // A live lock from another runner: `up` fails at once, naming it.
    plant_lock(
        &aws,
        &bucket,
        &env.name,
        "pid 7 on ci-runner-3: up",
        "2999-01-01T00:00:00Z",
    )
    .await;
    let run = env.run_env("up", &[]);
    run.assert_code(3);
    assert!(
        run.stderr.contains("pid 7 on ci-runner-3: up"),
        "{}",
        run.describe()
    );
    assert!(run.stderr.contains("unlock --env"), "{}", run.describe());
    // ... while another env runs side by side.
    other.up(&["--nat", "single"]);

    // `unlock` without --force explains; with it, breaks the lock.
    env.run_env("unlock", &[]).assert_code(2);
    let run = env.run_env("unlock", &["--force"]);
    run.assert_success();
    assert!(
        run.stdout.contains("pid 7 on ci-runner-3"),
        "{}",
        run.describe()
    );
    assert!(!lock_exists(&aws, &bucket, &env.name).await);

    // A lock whose lease expired (its runner died) is taken over.
    plant_lock(
        &aws,
        &bucket,
        &env.name,
        "pid 9 on dead-runner: up",
        "2020-01-01T00:00:00Z",
    )
    .await;
    env.up(&["--nat", "single"]);
    assert!(
        !lock_exists(&aws, &bucket, &env.name).await,
        "the run released the lock it took over"
    );

    // Two runs of one env at once: the second fails fast naming the first.
    // The first is paused (SIGSTOP) once it holds the lock, so the overlap is
    // certain however fast the emulator is.
    let mut first = env
        .command()
        .args(["up", "--env", &env.name])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the first up");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(
        first.stderr.take().expect("stderr"),
    ));
    // The lock is taken before the first step line.
    assert!(
        lines
            .by_ref()
            .map_while(Result::ok)
            .any(|l| common::is_step_line(&l)),
        "the first up printed no step line"
    );
    signal(first.id(), "-STOP");
    let second = env.run_env("up", &[]);
    signal(first.id(), "-CONT");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = first.wait().expect("the first up ends");
    assert!(status.success(), "the first up failed: {rest:?}");
    second.assert_code(3);
    assert!(
        second.stderr.contains(": up (since"),
        "{}",
        second.describe()
    );

    env.down().assert_success();
    let mut other = other;
    other.down().assert_success();
}
