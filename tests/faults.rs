//! `up` and `down` through the project's fault proxy (scripts/fault-proxy.py):
//! a seeded share of mutating calls is throttled, or applied by the emulator
//! and then answered 503, so the SDK retries a call that already happened.
//! Each run must converge in one go, leave no duplicate (a second `up`
//! finds exactly one of everything and changes nothing) and `down` must
//! leave nothing.
//!
//! The same proxy can answer as a new AWS account (a Lambda concurrency
//! limit of 10, which leaves nothing to reserve), where `up` must refuse
//! before its first change.
//!
//! ```sh
//! PAYOPS_TEST_ENDPOINT=http://127.0.0.1:5199 PAYOPS_TEST_EMULATOR=moto \
//!     cargo nextest run --test faults --run-ignored only
//! ```

mod common;

use std::path::{Path, PathBuf};

use common::{Aws, FUNCTIONS, FaultProxy, TestEnv, assert_no_mutation, remaining};

/// Fixed, so a failure replays the same faults (`--seed` of the proxy; the
/// calls it meets still vary with the order of concurrent steps).
const SEED: &str = "7";

/// The proxy with a log of what it did, stopped when dropped.
struct Proxy {
    inner: FaultProxy,
    log: PathBuf,
}

impl Proxy {
    fn start(dir: &Path, args: &[&str]) -> Self {
        let log = dir.join("faults.log");
        let log_arg = log.to_str().expect("a UTF-8 path");
        let mut all = vec!["--seed", SEED, "--log", log_arg];
        all.extend_from_slice(args);
        Self {
            inner: FaultProxy::start(&all),
            log,
        }
    }

    fn url(&self) -> &str {
        &self.inner.url
    }

    /// (throttled, lost) so far.
    fn faults(&self) -> (usize, usize) {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let count = |kind: &str| text.lines().filter(|l| l.starts_with(kind)).count();
        (count("throttle "), count("lost "))
    }

    /// Every mutating call the proxy forwarded, as `service Operation (status)`.
    fn mutating(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter_map(|l| l.strip_prefix("mutating "))
            .map(str::to_owned)
            .collect()
    }
}

/// `up`, a second `up` and `down` through the proxy with these fault shares.
async fn converge_through(throttle: &str, lost: &str) {
    let aws = Aws::connect().await;
    let plain = TestEnv::new();
    let proxy = Proxy::start(plain.dir(), &["--throttle", throttle, "--lost", lost]);
    let mut env = plain.with_var("AWS_ENDPOINT_URL", proxy.url());

    // One run, whatever the faults.
    env.up_json(&["--nat", "single"]);
    let (throttled, lost_answers) = proxy.faults();
    assert!(
        throttled > 0 && lost_answers > 0,
        "the proxy injected too few faults ({throttled} throttled, {lost_answers} lost): the \
         test shows nothing"
    );

    // Exactly one of everything: no step finds two (it would refuse), and
    // none has anything left to do.
    let (_, again) = env.up_json(&["--nat", "single"]);
    assert_no_mutation(&again, "second up after a faulty first one");

    env.down().assert_success();
    let left = remaining(&aws, &env.name).await;
    assert!(left.is_empty(), "left behind by down: {left:#?}");
    let (throttled, lost) = proxy.faults();
    eprintln!("fault proxy: {throttled} throttled, {lost} applied and answered 503");
}

/// Throttled calls (never applied) and lost answers (applied, then 503):
/// every create either carries a client token the emulator honours, or
/// looks again on the conflict its retry meets, or removes the extra a
/// tokenless retry made (REST API, VPC link, VPC, internet gateway, KMS key,
/// certificate). Part of the suite on both emulators; `make bench-faults`
/// repeats it over several seeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an AWS emulator: make test-integration"]
async fn up_and_down_converge_through_throttling_and_lost_answers() {
    converge_through("0.05", "0.05").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an AWS emulator: make test-integration"]
async fn a_new_accounts_lambda_limit_stops_up_before_any_change_and_none_goes_without() {
    let aws = Aws::connect().await;
    let plain = TestEnv::new();
    let proxy = Proxy::start(
        plain.dir(),
        &[
            "--throttle",
            "0",
            "--lost",
            "0",
            "--lambda-concurrency",
            "10",
        ],
    );
    let mut env = plain.with_var("AWS_ENDPOINT_URL", proxy.url());

    // The default reservations (5 + 5 + 10) cannot fit in a limit of 10,
    // all of which AWS keeps unreserved: refused, exit 4, nothing changed.
    let refused = env.run_env("up", &["--nat", "single"]);
    refused.assert_code(4);
    for says in ["account limit 10", "--reserved-concurrency"] {
        assert!(refused.stderr.contains(says), "{}", refused.describe());
    }
    assert_eq!(
        proxy.mutating(),
        Vec::<String>::new(),
        "a refused up changed something"
    );

    // The operator's way out: no reservations.
    env.up_json(&["--nat", "single", "--reserved-concurrency", "none"]);
    for slug in FUNCTIONS {
        let name = format!("payops-{}-{slug}", env.name);
        let reserved = aws
            .c
            .lambda
            .get_function_concurrency()
            .function_name(&name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GetFunctionConcurrency {name}: {e:?}"))
            .reserved_concurrent_executions();
        assert_eq!(reserved, None, "{name} reserves nothing");
    }
    env.down().assert_success();
}

/// The proxy as a new account on its own (moto's per-request account): an
/// Elastic IP quota of 5 that AllocateAddress enforces, and Lambda refusing
/// subnets in use1-az3 (moto's us-east-1e). Two envs hold 4 addresses; a
/// third with a NAT gateway per AZ needs 3 more and is refused before any
/// change, while `--nat single` (1 more) fits and converges in zones Lambda
/// runs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an AWS emulator: make test-integration"]
async fn a_third_env_on_a_5_eip_account_is_refused_with_per_az_nat_and_fits_with_nat_single() {
    if common::emulator() != common::Emulator::Moto {
        eprintln!("skipped: the per-request account is moto's");
        return;
    }
    let first = TestEnv::new();
    let proxy = Proxy::start(
        first.dir(),
        &[
            "--throttle",
            "0",
            "--lost",
            "0",
            // Unique per run: a rerun on the same emulator starts empty.
            "--account-id",
            &format!("3{:011}", std::process::id()),
            "--elastic-ip-quota",
            "5",
            "--lambda-unsupported-zone",
            "use1-az3",
        ],
    );
    let strict = |env: TestEnv| {
        env.with_var("AWS_ENDPOINT_URL", proxy.url())
            // What the account says (EC2's vpc-max-elastic-ips), not the suite's override.
            .without_var("PAYOPS_QUOTA_ELASTIC_IPS")
    };
    let mut a = strict(first);
    let mut b = strict(TestEnv::new());
    let mut c = strict(TestEnv::new());
    a.up_json(&[]); // 3 addresses
    b.up_json(&["--nat", "single"]); // 4

    let before = proxy.mutating().len();
    let refused = c.run_env("up", &[]);
    refused.assert_code(4);
    for says in [
        "elastic-ips",
        "3 needed (--nat per-az)",
        "4 of 5 in use",
        "--nat single",
    ] {
        assert!(refused.stderr.contains(says), "{}", refused.describe());
    }
    assert_eq!(
        proxy.mutating()[before..].to_vec(),
        Vec::<String>::new(),
        "a refused up changed something"
    );

    // One address more fits; the functions' subnets avoid use1-az3.
    c.up_json(&["--nat", "single"]);
    let aws = Aws::connect_to(proxy.url()).await;
    let sixth = aws
        .c
        .ec2
        .allocate_address()
        .domain("vpc".into())
        .send()
        .await;
    assert_eq!(
        sixth.as_ref().err().and_then(common::error_code),
        Some("AddressLimitExceeded"),
        "the sixth address: {sixth:?}"
    );
    for env in [&mut a, &mut b, &mut c] {
        env.down().assert_success();
        let left = remaining(&aws, &env.name).await;
        assert!(left.is_empty(), "left behind by down: {left:#?}");
    }
}

/// The rule a retried CreateLoadBalancer relies on (its first answer lost,
/// the balancer made): AWS returns the existing balancer when the settings
/// are the same, so a name never holds two. moto checked duplicates by a
/// random ARN and made a second NLB that `down` then left behind; the
/// project's emulator patch (`patch_elbv2_load_balancer_idempotency`) makes
/// both emulators answer as AWS does, and this keeps it so.
#[tokio::test]
#[ignore = "needs an AWS emulator: make test-integration"]
async fn a_second_create_of_a_load_balancer_returns_the_same_one() {
    if common::acceptance() {
        return; // an AWS rule, not the emulator's: nothing to check on AWS itself
    }
    let aws = Aws::connect().await;
    let ec2 = &aws.c.ec2;
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.91.0.0/16")
        .send()
        .await
        .expect("ec2:CreateVpc");
    let vpc_id = vpc
        .vpc()
        .and_then(|v| v.vpc_id())
        .expect("a VPC id")
        .to_owned();
    let zones = ec2
        .describe_availability_zones()
        .send()
        .await
        .expect("ec2:DescribeAvailabilityZones");
    let mut subnets = Vec::new();
    for (i, zone) in zones.availability_zones().iter().take(2).enumerate() {
        let subnet = ec2
            .create_subnet()
            .vpc_id(&vpc_id)
            .cidr_block(format!("10.91.{i}.0/24"))
            .availability_zone(zone.zone_name().unwrap_or_default())
            .send()
            .await
            .expect("ec2:CreateSubnet");
        subnets.push(
            subnet
                .subnet()
                .and_then(|s| s.subnet_id())
                .expect("a subnet id")
                .to_owned(),
        );
    }
    let name = format!("rule-{}", std::process::id());
    let create = || {
        aws.c
            .elb
            .create_load_balancer()
            .name(&name)
            .r#type(aws_sdk_elasticloadbalancingv2::types::LoadBalancerTypeEnum::Network)
            .scheme(aws_sdk_elasticloadbalancingv2::types::LoadBalancerSchemeEnum::Internal)
            .set_subnets(Some(subnets.clone()))
            .send()
    };
    let arn = |out: aws_sdk_elasticloadbalancingv2::operation::create_load_balancer::CreateLoadBalancerOutput| {
        out.load_balancers()[0].load_balancer_arn().expect("an ARN").to_owned()
    };
    let first = arn(create().await.expect("elbv2:CreateLoadBalancer"));
    let second = create().await.map(arn);
    let listed = aws
        .c
        .elb
        .describe_load_balancers()
        .names(&name)
        .send()
        .await
        .map(|out| out.load_balancers().len());
    let _ = aws
        .c
        .elb
        .delete_load_balancer()
        .load_balancer_arn(&first)
        .send()
        .await;
    if let Ok(ref other) = second {
        let _ = aws
            .c
            .elb
            .delete_load_balancer()
            .load_balancer_arn(other)
            .send()
            .await;
    }
    for subnet in &subnets {
        let _ = ec2.delete_subnet().subnet_id(subnet).send().await;
    }
    let _ = ec2.delete_vpc().vpc_id(&vpc_id).send().await;
    assert_eq!(
        second.expect("a second, identical CreateLoadBalancer succeeds"),
        first
    );
    assert_eq!(
        listed.expect("elbv2:DescribeLoadBalancers"),
        1,
        "one balancer of the name"
    );
}
