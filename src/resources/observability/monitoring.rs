//! What the dashboard and the alarms share: which CloudWatch metrics describe
//! the env, and under which dimension values. Names that are deterministic
//! come from `cx.names`; the load balancer dimensions exist only once AWS
//! assigned the ids, so they are read from the ARNs the ELB steps recorded.

use crate::aws::AwsError;

use crate::resources::context::Context;

/// The steps (and their output keys) whose ARNs give the ALB dimensions.
pub const ALB_INPUT: (&str, &str) = ("load-balancer:alb", "AlbArn");
/// The maintenance ALB the payments SECONDARY record points at (`--dns`).
pub const MAINTENANCE_ALB_INPUT: (&str, &str) = ("load-balancer:maintenance", "MaintenanceAlbArn");
pub const BLUE_INPUT: (&str, &str) = ("target-group:blue", "BlueTargetGroupArn");
pub const GREEN_INPUT: (&str, &str) = ("target-group:green", "GreenTargetGroupArn");

/// The env's DynamoDB tables: (name suffix, label).
pub const TABLES: [(&str, &str); 2] = [
    ("transactions", "transactions"),
    ("fraud-rules", "fraud rules"),
];

/// DynamoDB publishes ThrottledRequests and SuccessfulRequestLatency per
/// table *and operation* only (no table-wide series): these are the data-plane
/// operations it publishes them for. An alarm on metric math may reference at
/// most 10 metrics (a hard limit), which this list fills exactly.
pub const DYNAMODB_OPERATIONS: [&str; 10] = [
    "GetItem",
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "Query",
    "Scan",
    "BatchGetItem",
    "BatchWriteItem",
    "TransactGetItems",
    "TransactWriteItems",
];

/// API Gateway's `ApiName` dimension: the REST API's name (`rest_api.rs`).
pub fn api_name(cx: &Context) -> String {
    cx.names.rest_api()
}

/// API Gateway's `Stage` dimension.
pub use crate::resources::model::API_STAGE;

/// RDS's `DBClusterIdentifier`: the Aurora cluster's identifier is
/// deterministic, so the dashboard and alarms need no edge to its step (and
/// show no data until it exists).
pub fn aurora_cluster(cx: &Context) -> String {
    cx.names.resource("aurora")
}

pub fn table_name(cx: &Context, suffix: &str) -> String {
    cx.names.table(suffix)
}

/// ELB's `LoadBalancer` dimension, `app/<name>/<id>`, from the ALB's ARN
/// (`arn:aws:elasticloadbalancing:<region>:<account>:loadbalancer/app/<name>/<id>`).
pub fn load_balancer_dimension(arn: &str) -> Result<String, AwsError> {
    arn.split_once(":loadbalancer/")
        .map(|(_, d)| d)
        .filter(|d| d.split('/').count() == 3 && !d.split('/').any(str::is_empty))
        .map(str::to_owned)
        .ok_or_else(|| {
            AwsError::Conflict(format!(
                "{arn:?} is not a load balancer ARN (…:loadbalancer/app/<name>/<id>)"
            ))
        })
}

/// ELB's `TargetGroup` dimension, `targetgroup/<name>/<id>`, from a target
/// group's ARN (`arn:aws:elasticloadbalancing:…:targetgroup/<name>/<id>`).
pub fn target_group_dimension(arn: &str) -> Result<String, AwsError> {
    arn.rsplit_once(':')
        .map(|(_, d)| d)
        .filter(|d| {
            let parts: Vec<&str> = d.split('/').collect();
            parts.len() == 3 && parts[0] == "targetgroup" && parts.iter().all(|p| !p.is_empty())
        })
        .map(str::to_owned)
        .ok_or_else(|| {
            AwsError::Conflict(format!(
                "{arn:?} is not a target group ARN (…:targetgroup/<name>/<id>)"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elb_dimensions_are_the_tails_of_the_arns() {
        assert_eq!(
            load_balancer_dimension(
                "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/payops-pr1-alb/50dc6c495c0c9188"
            )
            .unwrap(),
            "app/payops-pr1-alb/50dc6c495c0c9188"
        );
        assert_eq!(
            target_group_dimension(
                "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/payops-pr1-blue/73e2d6bc24d8a067"
            )
            .unwrap(),
            "targetgroup/payops-pr1-blue/73e2d6bc24d8a067"
        );
        for bad in [
            "",
            "arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/app/x",
            "arn:aws:sns:us-east-1:1:topic",
        ] {
            assert!(load_balancer_dimension(bad).is_err(), "{bad}");
            assert!(target_group_dimension(bad).is_err(), "{bad}");
        }
    }
}
