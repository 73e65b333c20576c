//! Region and zones: EC2 answers in the region and it has the three
//! availability zones the env spreads over, by zone ID, skipping zones a
//! service the env uses does not run in (`resources::zones`), or the env keeps
//! the zones an earlier run chose. The steps then use the same answer
//! (cached in the context).

use crate::aws::AwsError;
use crate::resources::context::Context;
use crate::resources::zones::describe;

use super::Check;

pub const NAME: &str = "region-zones";

pub async fn check(cx: &Context) -> Check {
    match cx.zones().await {
        Ok(zones) => {
            let kept = if cx.spec.zone_ids.is_empty() {
                ""
            } else {
                " (kept from the env's first run)"
            };
            Check::ok(
                NAME,
                format!("{}: zones {}{kept}", cx.region, describe(zones)),
            )
        }
        Err(AwsError::Conflict(why)) => Check::problem(
            NAME,
            why,
            "choose a region with three zones that run Lambda in a VPC and RDS Proxy \
             (--region); an env whose zone is gone: `payops down`, then `up` again",
        ),
        Err(e) => Check::problem(
            NAME,
            format!("EC2 did not answer in {}: {e}", cx.region),
            "check --region, and that the region is enabled for the account",
        ),
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_ec2::Client;
    use aws_sdk_ec2::operation::describe_availability_zones::DescribeAvailabilityZonesOutput;
    use aws_sdk_ec2::types::AvailabilityZone;
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    use super::*;
    use crate::resources::preflight::Status;
    use crate::resources::testing;

    /// AWS's answer to DescribeAvailabilityZones (state=available).
    fn zones(zones: &'static [(&'static str, &'static str)]) -> Rule {
        mock!(Client::describe_availability_zones)
            .match_requests(|r| {
                r.filters()
                    .iter()
                    .any(|f| f.name() == Some("state") && f.values() == ["available"])
            })
            .then_output(move || {
                let mut out = DescribeAvailabilityZonesOutput::builder();
                for (id, name) in zones {
                    out = out.availability_zones(
                        AvailabilityZone::builder()
                            .zone_id(*id)
                            .zone_name(*name)
                            .zone_type("availability-zone")
                            .state("available".into())
                            .build(),
                    );
                }
                out.build()
            })
    }

    fn context(rule: &Rule) -> Context {
        let mut clients = testing::clients();
        clients.ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [rule]);
        testing::context(clients)
    }

    /// An account whose us-east-1a..e map to these IDs.
    const US_EAST_1: &[(&str, &str)] = &[
        ("use1-az2", "us-east-1a"),
        ("use1-az3", "us-east-1b"),
        ("use1-az1", "us-east-1c"),
        ("use1-az6", "us-east-1d"),
        ("use1-az4", "us-east-1e"),
    ];

    #[tokio::test]
    async fn zones_are_chosen_by_id_skipping_use1_az3() {
        let rule = zones(US_EAST_1);
        let cx = context(&rule);
        let c = check(&cx).await;
        assert_eq!(c.status, Status::Ok);
        assert_eq!(
            c.detail,
            "us-east-1: zones use1-az1 (us-east-1c), use1-az2 (us-east-1a), use1-az4 (us-east-1e)"
        );
        // The steps get the names, in the same order.
        assert_eq!(
            cx.availability_zones().await.unwrap(),
            ["us-east-1c", "us-east-1a", "us-east-1e"]
        );
    }

    #[tokio::test]
    async fn an_env_keeps_the_zones_its_state_recorded() {
        let rule = zones(US_EAST_1);
        let mut cx = context(&rule);
        // Chosen before the account had use1-az1.
        cx.spec.zone_ids = vec!["use1-az2".into(), "use1-az4".into(), "use1-az6".into()];
        let c = check(&cx).await;
        assert_eq!(c.status, Status::Ok);
        assert_eq!(
            c.detail,
            "us-east-1: zones use1-az2 (us-east-1a), use1-az4 (us-east-1e), use1-az6 \
             (us-east-1d) (kept from the env's first run)"
        );
    }

    #[tokio::test]
    async fn a_region_with_fewer_than_three_usable_zones_is_refused() {
        let rule = zones(&[
            ("use1-az1", "us-east-1a"),
            ("use1-az3", "us-east-1b"),
            ("use1-az2", "us-east-1c"),
        ]);
        let c = check(&context(&rule)).await;
        assert_eq!(c.status, Status::Problem);
        assert!(
            c.detail.contains("2 usable availability zones"),
            "{}",
            c.detail
        );
        assert!(c.detail.contains("skipping use1-az3"), "{}", c.detail);
        assert!(c.remedy.unwrap().contains("--region"));
    }
}
