//! The final sweep of `down`: besides each step looking for its own
//! resources again, ask the Resource Groups Tagging API for anything still
//! tagged for the env, so a resource no step knows about is not missed.

use std::time::Duration;

use aws_sdk_resourcegroupstagging::types::TagFilter;

use crate::aws::{AwsError, OpResult};
use crate::tags;

use crate::resources::context::Context;
use crate::resources::sdk::tagging;

/// The tagging API is eventually consistent: a resource deleted a moment ago
/// may still be listed. Ask again a few times before calling it a leftover.
const SETTLE_ROUNDS: u32 = 4;
const SETTLE_DELAY: Duration = Duration::from_secs(5);

/// CloudWatch alarms and dashboards of the env still there, by name and
/// ownership (alarm tags, dashboard marker): the tagging API does not list
/// dashboards at all, nor alarms on LocalStack, and an alarm no step knows
/// any more (a renamed one) is found this way too.
///
/// Also the env's Auto Scaling groups, by their tags: the tagging API does
/// not list groups at all.
pub async fn cloudwatch_leftovers(cx: &Context) -> Result<Vec<String>, AwsError> {
    let mut left = crate::resources::observability::alarms::leftovers(cx).await?;
    left.extend(crate::resources::observability::dashboard::leftovers(cx).await?);
    left.extend(
        crate::resources::batch::autoscaling_group::owned_groups(&cx.clients, cx.env())
            .await?
            .into_iter()
            .map(|g| format!("auto scaling group {g}")),
    );
    Ok(left)
}

/// Route 53 zones and health checks of the env still there, listed
/// directly (see `dns::leftovers`).
pub async fn route53_leftovers(cx: &Context) -> Result<Vec<String>, AwsError> {
    crate::resources::dns::leftovers(cx).await
}

/// ARNs still tagged for the env that really exist.
pub async fn tagged_leftovers(cx: &Context) -> Result<Vec<String>, AwsError> {
    let mut remaining = tagged(cx).await?;
    for _ in 1..SETTLE_ROUNDS {
        remaining = verify(cx, remaining).await?;
        if remaining.is_empty() {
            break;
        }
        tokio::time::sleep(SETTLE_DELAY).await;
        let again = tagged(cx).await?;
        remaining.retain(|arn| again.contains(arn));
    }
    Ok(remaining)
}

async fn tagged(cx: &Context) -> Result<Vec<String>, AwsError> {
    let pages: Vec<_> = cx
        .clients
        .tagging
        .get_resources()
        .tag_filters(
            TagFilter::builder()
                .key(tags::ENV)
                .values(cx.env().as_str())
                .build(),
        )
        .tag_filters(
            TagFilter::builder()
                .key(tags::MANAGED_BY)
                .values(tags::MANAGER)
                .build(),
        )
        .into_paginator()
        .send()
        .collect()
        .await;
    let mut arns = Vec::new();
    for page in pages {
        let page = page.op("tagging:GetResources")?;
        arns.extend(
            page.resource_tag_mapping_list()
                .iter()
                // Kept on purpose (a final snapshot, the key it needs), and
                // the twin env's roles in other regions (IAM is global).
                .filter(|m| {
                    let tags = tagging::tags_of(m);
                    !tags::is_retained(&tags)
                        && !m
                            .resource_arn()
                            .is_some_and(|a| tagging::global_elsewhere(a, &tags, &cx.region))
                })
                .filter_map(|m| m.resource_arn().map(str::to_owned)),
        );
    }
    Ok(arns)
}

/// Drops what is on its way out: KMS keys pending deletion (AWS keeps them
/// for the waiting period) and NAT gateways that are deleted but still listed.
async fn verify(cx: &Context, arns: Vec<String>) -> Result<Vec<String>, AwsError> {
    let mut alive = Vec::new();
    for arn in arns {
        if arn.contains(":kms:") && arn.contains(":key/") {
            let out = cx
                .clients
                .kms
                .describe_key()
                .key_id(&arn)
                .send()
                .await
                .op("kms:DescribeKey");
            match out {
                Ok(k) => {
                    let leaving = k
                        .key_metadata()
                        .and_then(|m| m.key_state())
                        .is_some_and(|s| {
                            matches!(
                                s,
                                aws_sdk_kms::types::KeyState::PendingDeletion
                                    | aws_sdk_kms::types::KeyState::PendingReplicaDeletion
                            )
                        });
                    if leaving {
                        continue;
                    }
                }
                Err(e) if e.is_code(&["NotFoundException"]) => continue,
                Err(e) => return Err(e),
            }
        } else if let Some(id) = arn.split(":instance/").nth(1) {
            // Terminated instances (the batch group's) stay listed, and
            // tagged, for about an hour after they are gone.
            let out = cx
                .clients
                .ec2
                .describe_instances()
                .instance_ids(id)
                .send()
                .await
                .op("ec2:DescribeInstances");
            match out {
                Ok(o) => {
                    let live = o
                        .reservations()
                        .iter()
                        .flat_map(|r| r.instances())
                        .any(|i| {
                            !matches!(
                                i.state().and_then(|s| s.name()),
                                Some(
                                    aws_sdk_ec2::types::InstanceStateName::Terminated
                                        | aws_sdk_ec2::types::InstanceStateName::ShuttingDown
                                )
                            )
                        });
                    if !live {
                        continue;
                    }
                }
                Err(e) if e.is_code(&["InvalidInstanceID.NotFound"]) => continue,
                Err(e) => return Err(e),
            }
        } else if let Some(id) = arn.split(":natgateway/").nth(1) {
            let out = cx
                .clients
                .ec2
                .describe_nat_gateways()
                .nat_gateway_ids(id)
                .send()
                .await
                .op("ec2:DescribeNatGateways");
            match out {
                Ok(o) => {
                    let live = o.nat_gateways().iter().any(|n| {
                        !matches!(
                            n.state(),
                            Some(
                                aws_sdk_ec2::types::NatGatewayState::Deleted
                                    | aws_sdk_ec2::types::NatGatewayState::Failed
                            )
                        )
                    });
                    if !live {
                        continue;
                    }
                }
                Err(e) if e.is_code(&["NatGatewayNotFound"]) => continue,
                Err(e) => return Err(e),
            }
        }
        if !rds_or_secret_alive(cx, &arn).await? {
            continue;
        }
        alive.push(arn);
    }
    Ok(alive)
}

/// RDS and Secrets Manager keep listing what is on its way out: clusters and
/// instances being deleted, a cluster's automated snapshots (AWS removes them
/// with the cluster), secrets deleted a moment ago. A final snapshot that
/// `down --final-snapshot` kept is there on purpose. Anything else is alive.
async fn rds_or_secret_alive(cx: &Context, arn: &str) -> Result<bool, AwsError> {
    let rds = &cx.clients.rds;
    // arn:aws:rds:<region>:<account>:<type>:<name>; automated snapshot names
    // contain `rds:` themselves.
    if let Some(id) = arn
        .split_once(":rds:")
        .map(|(_, rest)| rest.splitn(4, ':').collect::<Vec<_>>())
    {
        // [region, account, type, name]
        let (kind, name) = match id.as_slice() {
            [_, _, kind, name] => (*kind, *name),
            _ => return Ok(true),
        };
        let gone = |r: Result<bool, AwsError>, codes: &[&str]| match r {
            Ok(live) => Ok(live),
            Err(e) if e.is_code(codes) => Ok(false),
            Err(e) => Err(e),
        };
        return match kind {
            "cluster" => gone(
                rds.describe_db_clusters()
                    .db_cluster_identifier(name)
                    .send()
                    .await
                    .op("rds:DescribeDBClusters")
                    .map(|o| {
                        o.db_clusters()
                            .iter()
                            .any(|c| c.status() != Some("deleting"))
                    }),
                &["DBClusterNotFoundFault"],
            ),
            "db" => gone(
                rds.describe_db_instances()
                    .db_instance_identifier(name)
                    .send()
                    .await
                    .op("rds:DescribeDBInstances")
                    .map(|o| {
                        o.db_instances()
                            .iter()
                            .any(|i| i.db_instance_status() != Some("deleting"))
                    }),
                &["DBInstanceNotFound", "DBInstanceNotFoundFault"],
            ),
            "cluster-snapshot"
                if name.starts_with(&format!("{}-final-", cx.names.db_cluster())) =>
            {
                Ok(false)
            }
            "cluster-snapshot" => gone(
                rds.describe_db_cluster_snapshots()
                    .db_cluster_snapshot_identifier(name)
                    .send()
                    .await
                    .op("rds:DescribeDBClusterSnapshots")
                    .map(|o| {
                        // Automated snapshots go with their cluster.
                        o.db_cluster_snapshots().iter().any(|s| {
                            s.snapshot_type() != Some("automated")
                                || s.db_cluster_identifier()
                                    .is_some_and(|c| c != cx.names.db_cluster())
                        })
                    }),
                &["DBClusterSnapshotNotFoundFault"],
            ),
            _ => Ok(true),
        };
    }
    if arn.contains(":secretsmanager:") {
        return match cx
            .clients
            .secrets
            .describe_secret()
            .secret_id(arn)
            .send()
            .await
            .op("secretsmanager:DescribeSecret")
        {
            Ok(s) => Ok(s.deleted_date().is_none()),
            Err(e) if e.is_code(&["ResourceNotFoundException"]) => Ok(false),
            Err(e) => Err(e),
        };
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use aws_sdk_ec2::operation::describe_nat_gateways::DescribeNatGatewaysOutput;
    use aws_sdk_ec2::types::{NatGateway, NatGatewayState};
    use aws_sdk_kms::operation::describe_key::DescribeKeyOutput;
    use aws_sdk_kms::types::{KeyMetadata, KeyState};
    use aws_sdk_resourcegroupstagging::operation::get_resources::GetResourcesOutput;
    use aws_sdk_resourcegroupstagging::types::ResourceTagMapping;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    use super::*;
    use crate::resources::testing;

    const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/k-1";
    const NAT: &str = "arn:aws:ec2:us-east-1:123456789012:natgateway/nat-1";
    const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:payops-pr1-stray";

    #[tokio::test(start_paused = true)]
    async fn what_down_kept_on_purpose_and_the_twin_envs_roles_are_no_leftover() {
        let tagged =
            mock!(aws_sdk_resourcegroupstagging::Client::get_resources).then_output(|| {
                let tag = |k: &str, v: &str| {
                    aws_sdk_resourcegroupstagging::types::Tag::builder()
                        .key(k)
                        .value(v)
                        .build()
                        .unwrap()
                };
                GetResourcesOutput::builder()
                    .resource_tag_mapping_list(
                        ResourceTagMapping::builder()
                            .resource_arn("arn:aws:rds:us-east-1:123456789012:cluster-snapshot:s-1")
                            .tags(tag(tags::RETAINED, "final snapshot of payops-pr1-aurora"))
                            .build(),
                    )
                    .resource_tag_mapping_list(
                        ResourceTagMapping::builder()
                            .resource_arn(TOPIC)
                            .tags(tag(tags::ENV, "pr1"))
                            .build(),
                    )
                    // The role of env pr1 in us-west-2 (IAM is global).
                    .resource_tag_mapping_list(
                        ResourceTagMapping::builder()
                            .resource_arn("arn:aws:iam::123456789012:role/payops-pr1-us-west-2-x")
                            .tags(tag(tags::ENV, "pr1"))
                            .tags(tag(tags::REGION, "us-west-2"))
                            .build(),
                    )
                    .build()
            });
        let mut clients = testing::clients();
        clients.tagging =
            mock_client!(aws_sdk_resourcegroupstagging, RuleMode::MatchAny, [&tagged]);
        let left = tagged_leftovers(&testing::context(clients)).await.unwrap();
        assert_eq!(left, [TOPIC]);
    }

    #[tokio::test(start_paused = true)]
    async fn keys_pending_deletion_and_deleted_nats_are_not_leftovers_but_the_rest_is() {
        let tagged =
            mock!(aws_sdk_resourcegroupstagging::Client::get_resources).then_output(|| {
                let mut out = GetResourcesOutput::builder();
                for arn in [KEY, NAT, TOPIC] {
                    out = out.resource_tag_mapping_list(
                        ResourceTagMapping::builder().resource_arn(arn).build(),
                    );
                }
                out.build()
            });
        let key = mock!(aws_sdk_kms::Client::describe_key).then_output(|| {
            DescribeKeyOutput::builder()
                .key_metadata(
                    KeyMetadata::builder()
                        .key_id("k-1")
                        .key_state(KeyState::PendingDeletion)
                        .build()
                        .unwrap(),
                )
                .build()
        });
        let nat = mock!(aws_sdk_ec2::Client::describe_nat_gateways).then_output(|| {
            DescribeNatGatewaysOutput::builder()
                .nat_gateways(
                    NatGateway::builder()
                        .nat_gateway_id("nat-1")
                        .state(NatGatewayState::Deleted)
                        .build(),
                )
                .build()
        });
        let mut clients = testing::clients();
        clients.tagging =
            mock_client!(aws_sdk_resourcegroupstagging, RuleMode::MatchAny, [&tagged]);
        clients.kms = mock_client!(aws_sdk_kms, RuleMode::MatchAny, [&key]);
        clients.ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&nat]);
        let cx = testing::context(clients);
        let left = tagged_leftovers(&cx).await.unwrap();
        assert_eq!(left, [TOPIC]);
        // A real leftover is asked about again before it is reported.
        assert_eq!(tagged.num_calls(), SETTLE_ROUNDS as usize);
    }
}
