//! Integration test of the env's private DNS (issue 20): the private zone in
//! the env's VPC, the payments failover records (PRIMARY the ALB, SECONDARY
//! the maintenance ALB's fixed 503) with their CloudWatch-alarm health
//! checks, `alb.<zone>`, a converged second `up` without a mutating call,
//! a zone holding a record payops did not create left in place by `down`,
//! and `down` leaving nothing (zones and checks listed in Route 53 itself).
//!
//! ```sh
//! PAYOPS_TEST_ENDPOINT=http://127.0.0.1:5421 PAYOPS_TEST_EMULATOR=moto \
//!     cargo nextest run --test dns --run-ignored only
//! ```
//!
//! Emulator gaps, covered by unit tests instead: neither emulator resolves
//! names (LocalStack runs without its DNS server here) or evaluates health
//! checks, so failover itself is not exercised; alias targets are not
//! validated (moto's ALBs have the canonical zone `Z2P70J7EXAMPLE`); the
//! rules that a health check on a private endpoint must follow an alarm, at
//! most 10 tags a call, and the exact DELETE are unit tests.

mod common;

use aws_sdk_route53::types::{Change, HealthCheckType, InsufficientDataHealthStatus};
use aws_sdk_route53::types::{
    ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, ResourceRecordSetFailover, RrType,
};

use common::{Aws, TestEnv, assert_no_mutation, output, remaining, route53_remaining};

fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.').to_ascii_lowercase())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an AWS emulator: make test-integration"]
async fn up_builds_the_private_zone_with_failover_records_on_alarm_checks_and_down_removes_them() {
    let mut env = TestEnv::new();
    let aws = Aws::connect().await;
    env.up_json(&["--dns", "on"]);
    let outputs = env.outputs();
    let name = env.name.clone();
    let r53 = &aws.c.route53;

    // The zone: private, in the env's VPC.
    let zone_id = output(&outputs, "PrivateHostedZoneId").to_owned();
    assert_eq!(
        output(&outputs, "PrivateHostedZoneName"),
        format!("{name}.payops.internal")
    );
    let zone = r53
        .get_hosted_zone()
        .id(&zone_id)
        .send()
        .await
        .expect("route53:GetHostedZone");
    assert!(zone.hosted_zone().unwrap().config().unwrap().private_zone());
    let vpcs: Vec<&str> = zone.vpcs().iter().filter_map(|v| v.vpc_id()).collect();
    assert_eq!(vpcs, [output(&outputs, "VpcId")]);

    // The health checks: alarm-based (Route 53 cannot probe the internal
    // ALBs), each on its alarm, which exists.
    let checks = r53
        .list_health_checks()
        .send()
        .await
        .expect("route53:ListHealthChecks");
    for (key, alarm, status) in [
        (
            "PaymentsPrimaryHealthCheckId",
            "dns-primary",
            InsufficientDataHealthStatus::LastKnownStatus,
        ),
        (
            "PaymentsMaintenanceHealthCheckId",
            "dns-maintenance",
            InsufficientDataHealthStatus::Healthy,
        ),
    ] {
        let id = output(&outputs, key);
        let check = checks
            .health_checks()
            .iter()
            .find(|c| c.id() == id)
            .unwrap_or_else(|| panic!("health check {id} ({key}) is listed"));
        let config = check.health_check_config().unwrap();
        assert_eq!(config.r#type(), &HealthCheckType::CloudwatchMetric, "{key}");
        let alarm_name = format!("payops-{name}-{alarm}");
        let identifier = config.alarm_identifier().expect("an AlarmIdentifier");
        assert_eq!(identifier.name(), alarm_name);
        assert_eq!(identifier.region().as_str(), common::REGION);
        assert_eq!(config.insufficient_data_health_status(), Some(&status));
        let alarms = aws
            .c
            .cloudwatch
            .describe_alarms()
            .alarm_names(&alarm_name)
            .send()
            .await
            .expect("cloudwatch:DescribeAlarms");
        assert_eq!(alarms.metric_alarms().len(), 1, "{alarm_name}");
        let a = &alarms.metric_alarms()[0];
        assert!(a.metrics().is_empty(), "{alarm_name}: one metric, no math");
        assert!(
            a.statistic().is_some(),
            "{alarm_name}: a standard statistic"
        );
    }

    // The records: PRIMARY -> ALB, SECONDARY -> maintenance ALB, alb.<zone>.
    let sets = r53
        .list_resource_record_sets()
        .hosted_zone_id(&zone_id)
        .send()
        .await
        .expect("route53:ListResourceRecordSets");
    let payments = fqdn(&format!("payments.{name}.payops.internal"));
    let find = |n: &str, failover: Option<ResourceRecordSetFailover>| -> ResourceRecordSet {
        sets.resource_record_sets()
            .iter()
            .find(|s| fqdn(s.name()) == n && s.failover() == failover.as_ref())
            .unwrap_or_else(|| panic!("record {n} {failover:?} in {sets:#?}"))
            .clone()
    };
    for (set, lb, check) in [
        (
            find(&payments, Some(ResourceRecordSetFailover::Primary)),
            "Alb",
            Some("PaymentsPrimaryHealthCheckId"),
        ),
        (
            find(&payments, Some(ResourceRecordSetFailover::Secondary)),
            "MaintenanceAlb",
            Some("PaymentsMaintenanceHealthCheckId"),
        ),
        (
            find(&fqdn(&format!("alb.{name}.payops.internal")), None),
            "Alb",
            None,
        ),
    ] {
        assert_eq!(set.r#type(), &RrType::A);
        let alias = set.alias_target().expect("an alias");
        assert_eq!(
            fqdn(alias.dns_name()),
            fqdn(output(&outputs, &format!("{lb}DnsName")))
        );
        assert_eq!(
            alias.hosted_zone_id(),
            output(&outputs, &format!("{lb}CanonicalHostedZoneId"))
        );
        assert!(!alias.evaluate_target_health());
        assert_eq!(set.health_check_id(), check.map(|k| output(&outputs, k)));
    }

    // The maintenance ALB answers one fixed 503.
    let listeners = aws
        .c
        .elb
        .describe_listeners()
        .load_balancer_arn(output(&outputs, "MaintenanceAlbArn"))
        .send()
        .await
        .expect("elbv2:DescribeListeners");
    let [listener] = listeners.listeners() else {
        panic!("one maintenance listener: {listeners:#?}");
    };
    let [action] = listener.default_actions() else {
        panic!("one action: {listener:#?}");
    };
    let fixed = action.fixed_response_config().expect("a fixed response");
    assert_eq!(fixed.status_code(), Some("503"));
    assert!(fixed.message_body().unwrap().contains("MAINTENANCE"));

    // Converged: a second `up` (the recorded `--dns on` kept) makes no
    // mutating call.
    let (_, report) = env.up_json(&[]);
    assert_no_mutation(&report, "second up");

    // Someone else's record in the zone: `down` leaves the zone (and says
    // so), and removes it once the record is gone.
    let foreign = ResourceRecordSet::builder()
        .name(format!("db.{name}.payops.internal"))
        .r#type(RrType::Cname)
        .ttl(60)
        .resource_records(
            ResourceRecord::builder()
                .value("db.example.com")
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let change = |action: ChangeAction| {
        ChangeBatch::builder()
            .changes(
                Change::builder()
                    .action(action)
                    .resource_record_set(foreign.clone())
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    };
    r53.change_resource_record_sets()
        .hosted_zone_id(&zone_id)
        .change_batch(change(ChangeAction::Create))
        .send()
        .await
        .expect("route53:ChangeResourceRecordSets (create)");
    let run = env.down();
    assert_ne!(run.code(), Some(0), "{}", run.describe());
    assert!(
        run.describe().contains("did not create"),
        "{}",
        run.describe()
    );
    let left = route53_remaining(&aws, &name).await;
    assert_eq!(left.len(), 1, "only the zone is left: {left:?}");
    assert!(left[0].contains("hosted zone"), "{left:?}");
    r53.change_resource_record_sets()
        .hosted_zone_id(&zone_id)
        .change_batch(change(ChangeAction::Delete))
        .send()
        .await
        .expect("route53:ChangeResourceRecordSets (delete)");

    env.down().assert_success();
    let left = remaining(&aws, &name).await;
    assert!(left.is_empty(), "left after down: {left:#?}");
}
