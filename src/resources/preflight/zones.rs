//! Region and zones: EC2 answers in the region and it has the three
//! availability zones the env spreads over (the zones steps then use: the
//! answer is cached in the context).

use crate::aws::AwsError;
use crate::resources::context::Context;

use super::Check;

pub const NAME: &str = "region-zones";

pub async fn check(cx: &Context) -> Check {
    match cx.availability_zones().await {
        Ok(zones) => Check::ok(NAME, format!("{}: zones {}", cx.region, zones.join(", "))),
        Err(AwsError::Conflict(why)) => Check::problem(
            NAME,
            why,
            "choose a region with three available zones (--region)",
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
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    use super::*;
    use crate::resources::preflight::Status;
    use crate::resources::testing;

    fn zone(name: &str) -> AvailabilityZone {
        AvailabilityZone::builder()
            .zone_name(name)
            .zone_type("availability-zone")
            .build()
    }

    #[tokio::test]
    async fn a_region_with_two_zones_is_refused() {
        let two = mock!(Client::describe_availability_zones).then_output(|| {
            DescribeAvailabilityZonesOutput::builder()
                .availability_zones(zone("xx-1b"))
                .availability_zones(zone("xx-1a"))
                .build()
        });
        let mut clients = testing::clients();
        clients.ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&two]);
        let c = check(&testing::context(clients)).await;
        assert_eq!(c.status, Status::Problem);
        assert!(c.detail.contains("2 available zones"), "{}", c.detail);

        let three = mock!(Client::describe_availability_zones).then_output(|| {
            DescribeAvailabilityZonesOutput::builder()
                .availability_zones(zone("us-east-1c"))
                .availability_zones(zone("us-east-1a"))
                .availability_zones(zone("us-east-1b"))
                .build()
        });
        let mut clients = testing::clients();
        clients.ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&three]);
        let c = check(&testing::context(clients)).await;
        assert_eq!(c.status, Status::Ok);
        assert_eq!(
            c.detail,
            "us-east-1: zones us-east-1a, us-east-1b, us-east-1c"
        );
    }
}
