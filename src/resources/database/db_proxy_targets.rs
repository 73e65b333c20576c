//! The proxy's default target group: the Aurora cluster registered as its
//! target (RegisterDBProxyTargets with the cluster: RDS then tracks the
//! cluster's writer and readers as they come and go, failovers included),
//! and its connection pool settings.
//!
//! Connection pool, chosen for Lambda in front of a small Aurora:
//! - MaxConnectionsPercent 90: the proxy may use 90% of the database's
//!   max_connections; the rest stays free for an operator's or a migration's
//!   direct session and for the rotation's check of a new password.
//! - MaxIdleConnectionsPercent 10: a PR env is idle most of the time, and idle
//!   pooled connections hold memory that would keep Serverless v2 from
//!   scaling down; a burst opens new ones in milliseconds behind the proxy.
//! - ConnectionBorrowTimeout 5 s: a function waits at most 5 s for a pooled
//!   connection and then fails with a clear error, well inside payment
//!   validation's 10 s timeout (AWS's default, 120 s, would outlast every
//!   function and API Gateway's 29 s).
//! - No session pinning filters: the one AWS offers
//!   (EXCLUDE_VARIABLE_SETS) is for MySQL only.
//!
//! Real AWS: RegisterDBProxyTargets refuses a cluster whose instances are
//! still being created (InvalidDBInstanceStateFault "... CREATING";
//! Terraform retries it 5 minutes) or a proxy or cluster not yet available:
//! retried within the Aurora instance budget. The step depends on the
//! cluster, not on the instances, so that the proxy (minutes to create) is
//! made while the instances are; the registration then lands as soon as
//! AWS accepts it.

use std::collections::BTreeSet;
use std::fmt;

use async_trait::async_trait;
use aws_sdk_rds::types::{
    ConnectionPoolConfiguration, ConnectionPoolConfigurationInfo, TargetType,
};

use crate::aws::{AwsError, OpResult, absent_on, retry_on_codes};
use crate::engine::{Record, StepCx};

use crate::resources::context::Context;
use crate::resources::database::db_proxy;
use crate::resources::resource::Resource;
use crate::resources::sdk::rds;

pub const STEP: &str = "db-proxy-targets";
const TARGET_GROUP: &str = "default";
const MAX_CONNECTIONS_PERCENT: i32 = 90;
const MAX_IDLE_CONNECTIONS_PERCENT: i32 = 10;
const CONNECTION_BORROW_TIMEOUT_S: i32 = 5;
/// What RegisterDBProxyTargets answers while the proxy, the cluster or one
/// of its instances is not ready for it.
const NOT_READY: [&str; 3] = [
    "InvalidDBInstanceStateFault",
    "InvalidDBClusterStateFault",
    "InvalidDBProxyStateFault",
];
const GONE: [&str; 3] = [
    "DBProxyNotFoundFault",
    "DBProxyTargetGroupNotFoundFault",
    "DBProxyTargetNotFoundFault",
];

pub struct DbProxyTargets;

pub struct FoundTargets {
    proxy: String,
    /// The clusters registered (tracked) in the default target group.
    clusters: BTreeSet<String>,
    pool: Option<ConnectionPoolConfigurationInfo>,
}

pub enum Fix {
    Register(String),
    Deregister(String),
    Pool,
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Register(c) => write!(f, "register cluster {c} as the proxy's target"),
            Self::Deregister(c) => write!(f, "deregister cluster {c}, not the env's"),
            Self::Pool => write!(
                f,
                "set the connection pool (max {MAX_CONNECTIONS_PERCENT}% of connections, \
                 {MAX_IDLE_CONNECTIONS_PERCENT}% idle, borrow timeout \
                 {CONNECTION_BORROW_TIMEOUT_S}s)"
            ),
        }
    }
}

fn pool_drifted(pool: Option<&ConnectionPoolConfigurationInfo>) -> bool {
    pool.is_none_or(|p| {
        p.max_connections_percent() != Some(MAX_CONNECTIONS_PERCENT)
            || p.max_idle_connections_percent() != Some(MAX_IDLE_CONNECTIONS_PERCENT)
            || p.connection_borrow_timeout() != Some(CONNECTION_BORROW_TIMEOUT_S)
    })
}

impl DbProxyTargets {
    /// The env's proxy, ownership checked: by the ARN the proxy step handed
    /// over (its tags usually come with the run's one tagging listing, so a
    /// converged `up` reads no more than the target group and its targets),
    /// else (a `down` without state) by describing it.
    async fn proxy(&self, cx: &Context, step: &StepCx<'_>) -> Result<Option<String>, AwsError> {
        let name = cx.names.db_proxy();
        if let Some(arn) = step
            .input(db_proxy::STEP)
            .and_then(|r| r.outputs.get("DbProxyArn"))
        {
            let tags = absent_on(rds::list_tags(cx, arn).await, &GONE)?;
            return match tags {
                Some(tags) => {
                    cx.check_ours(format!("RDS Proxy {name}"), &tags)?;
                    Ok(Some(name))
                }
                None => Ok(None),
            };
        }
        Ok(db_proxy::get(cx).await?.map(|p| p.name))
    }

    /// The default target group of the env's proxy (ownership checked on the
    /// proxy), or None when there is no proxy.
    async fn get(&self, cx: &Context, step: &StepCx<'_>) -> Result<Option<FoundTargets>, AwsError> {
        let Some(proxy) = self.proxy(cx, step).await? else {
            return Ok(None);
        };
        let groups = cx
            .clients
            .rds
            .describe_db_proxy_target_groups()
            .db_proxy_name(&proxy)
            .target_group_name(TARGET_GROUP)
            .send()
            .await
            .op("rds:DescribeDBProxyTargetGroups");
        let Some(groups) = absent_on(groups, &GONE)? else {
            return Ok(None);
        };
        let targets = cx
            .clients
            .rds
            .describe_db_proxy_targets()
            .db_proxy_name(&proxy)
            .target_group_name(TARGET_GROUP)
            .send()
            .await
            .op("rds:DescribeDBProxyTargets");
        let Some(targets) = absent_on(targets, &GONE)? else {
            return Ok(None);
        };
        Ok(Some(FoundTargets {
            proxy,
            clusters: targets
                .targets()
                .iter()
                .filter(|t| t.r#type() == Some(&TargetType::TrackedCluster))
                .filter_map(|t| t.rds_resource_id().map(str::to_owned))
                .collect(),
            pool: groups
                .target_groups()
                .iter()
                .find(|g| g.target_group_name() == Some(TARGET_GROUP))
                .and_then(|g| g.connection_pool_config())
                .cloned(),
        }))
    }

    async fn register(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        proxy: &str,
        cluster: &str,
    ) -> Result<(), AwsError> {
        let progress = |m: String| step.progress(m);
        let registered = retry_on_codes(
            format!("registering cluster {cluster} with RDS Proxy {proxy}"),
            &NOT_READY,
            cx.budgets.aurora_instance,
            &progress,
            || async {
                cx.clients
                    .rds
                    .register_db_proxy_targets()
                    .db_proxy_name(proxy)
                    .target_group_name(TARGET_GROUP)
                    .db_cluster_identifiers(cluster)
                    .send()
                    .await
                    .op("rds:RegisterDBProxyTargets")
            },
        )
        .await;
        // Registered by a first attempt whose answer was lost: the goal is met.
        absent_on(registered, &["DBProxyTargetAlreadyRegisteredFault"]).map(drop)
    }

    async fn deregister(&self, cx: &Context, proxy: &str, cluster: &str) -> Result<(), AwsError> {
        let out = cx
            .clients
            .rds
            .deregister_db_proxy_targets()
            .db_proxy_name(proxy)
            .target_group_name(TARGET_GROUP)
            .db_cluster_identifiers(cluster)
            .send()
            .await
            .op("rds:DeregisterDBProxyTargets");
        absent_on(out, &GONE).map(drop)
    }
}

#[async_trait]
impl Resource for DbProxyTargets {
    type Found = FoundTargets;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "rds:db-proxy-targets"
    }

    /// Found once a cluster is registered: before that, the step is missing
    /// (and `create` registers the env's cluster).
    async fn find(&self, cx: &Context, step: &StepCx<'_>) -> Result<Vec<FoundTargets>, AwsError> {
        Ok(self
            .get(cx, step)
            .await?
            .filter(|t| !t.clusters.is_empty())
            .into_iter()
            .collect())
    }

    fn describe(&self, found: &FoundTargets) -> String {
        format!("{}/{TARGET_GROUP}", found.proxy)
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<FoundTargets, AwsError> {
        let Some(mut found) = self.get(cx, step).await? else {
            // Only reachable if the proxy vanished after its step succeeded.
            return Err(AwsError::Conflict(format!(
                "RDS Proxy {} was not found; run `payops up` again",
                cx.names.db_proxy()
            )));
        };
        let cluster = cx.names.db_cluster();
        self.register(cx, step, &found.proxy, &cluster).await?;
        found.clusters.insert(cluster);
        Ok(found)
    }

    async fn diff(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        found: &FoundTargets,
    ) -> Result<Vec<Fix>, AwsError> {
        let cluster = cx.names.db_cluster();
        let mut fixes = Vec::new();
        if !found.clusters.contains(&cluster) {
            fixes.push(Fix::Register(cluster.clone()));
        }
        fixes.extend(
            found
                .clusters
                .iter()
                .filter(|c| **c != cluster)
                .map(|c| Fix::Deregister(c.clone())),
        );
        if pool_drifted(found.pool.as_ref()) {
            fixes.push(Fix::Pool);
        }
        Ok(fixes)
    }

    async fn fix(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: &mut FoundTargets,
        fix: Fix,
    ) -> Result<(), AwsError> {
        match fix {
            Fix::Register(cluster) => {
                self.register(cx, step, &found.proxy, &cluster).await?;
                found.clusters.insert(cluster);
            }
            Fix::Deregister(cluster) => {
                self.deregister(cx, &found.proxy, &cluster).await?;
                found.clusters.remove(&cluster);
            }
            Fix::Pool => {
                let out = cx
                    .clients
                    .rds
                    .modify_db_proxy_target_group()
                    .db_proxy_name(&found.proxy)
                    .target_group_name(TARGET_GROUP)
                    .connection_pool_config(
                        ConnectionPoolConfiguration::builder()
                            .max_connections_percent(MAX_CONNECTIONS_PERCENT)
                            .max_idle_connections_percent(MAX_IDLE_CONNECTIONS_PERCENT)
                            .connection_borrow_timeout(CONNECTION_BORROW_TIMEOUT_S)
                            .build(),
                    )
                    .send()
                    .await
                    .op("rds:ModifyDBProxyTargetGroup")?;
                found.pool = out
                    .db_proxy_target_group()
                    .and_then(|g| g.connection_pool_config())
                    .cloned();
            }
        }
        Ok(())
    }

    fn record(&self, _cx: &Context, found: &FoundTargets) -> Record {
        Record::default().output(
            "DbProxyTargetClusters",
            found.clusters.iter().cloned().collect::<Vec<_>>().join(","),
        )
    }

    /// Before the cluster goes (this step depends on it): RDS would
    /// otherwise keep tracking a cluster being deleted.
    async fn delete(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        found: FoundTargets,
    ) -> Result<Vec<String>, AwsError> {
        for cluster in &found.clusters {
            self.deregister(cx, &found.proxy, cluster).await?;
        }
        Ok(vec![format!(
            "deregistered {} from {}",
            found
                .clusters
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            found.proxy
        )])
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_rds::Client;
    use aws_sdk_rds::operation::deregister_db_proxy_targets::DeregisterDbProxyTargetsOutput;
    use aws_sdk_rds::operation::describe_db_proxies::DescribeDbProxiesOutput;
    use aws_sdk_rds::operation::describe_db_proxy_target_groups::DescribeDbProxyTargetGroupsOutput;
    use aws_sdk_rds::operation::describe_db_proxy_targets::DescribeDbProxyTargetsOutput;
    use aws_sdk_rds::operation::list_tags_for_resource::ListTagsForResourceOutput;
    use aws_sdk_rds::operation::modify_db_proxy_target_group::ModifyDbProxyTargetGroupOutput;
    use aws_sdk_rds::operation::register_db_proxy_targets::{
        RegisterDBProxyTargetsError, RegisterDbProxyTargetsOutput,
    };
    use aws_sdk_rds::types::{DbProxy, DbProxyStatus, DbProxyTarget, DbProxyTargetGroup};
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    use super::*;
    use crate::engine::{Change, Removed};
    use crate::resources::testing;

    fn proxy_rules() -> Vec<Rule> {
        let list = rds::rds_tags(&testing::our_tags(db_proxy::STEP));
        vec![
            mock!(Client::describe_db_proxies).then_output(|| {
                DescribeDbProxiesOutput::builder()
                    .db_proxies(
                        DbProxy::builder()
                            .db_proxy_name("payops-pr1-db-proxy")
                            .db_proxy_arn("arn:aws:rds:us-east-1:123456789012:db-proxy:prx-1")
                            .status(DbProxyStatus::Available)
                            .build(),
                    )
                    .build()
            }),
            mock!(Client::list_tags_for_resource).then_output(move || {
                ListTagsForResourceOutput::builder()
                    .set_tag_list(Some(list.clone()))
                    .build()
            }),
        ]
    }

    fn groups(pool: (i32, i32, i32)) -> Rule {
        mock!(Client::describe_db_proxy_target_groups).then_output(move || {
            DescribeDbProxyTargetGroupsOutput::builder()
                .target_groups(
                    DbProxyTargetGroup::builder()
                        .target_group_name("default")
                        .connection_pool_config(
                            ConnectionPoolConfigurationInfo::builder()
                                .max_connections_percent(pool.0)
                                .max_idle_connections_percent(pool.1)
                                .connection_borrow_timeout(pool.2)
                                .build(),
                        )
                        .build(),
                )
                .build()
        })
    }

    fn tracked(cluster: &str) -> DbProxyTarget {
        DbProxyTarget::builder()
            .r#type(TargetType::TrackedCluster)
            .rds_resource_id(cluster)
            .build()
    }

    const POOL: (i32, i32, i32) = (
        MAX_CONNECTIONS_PERCENT,
        MAX_IDLE_CONNECTIONS_PERCENT,
        CONNECTION_BORROW_TIMEOUT_S,
    );

    fn cx_with(extra: &[&Rule]) -> Context {
        let base = proxy_rules();
        let rules: Vec<&Rule> = base.iter().chain(extra.iter().copied()).collect();
        let mut clients = testing::clients();
        clients.rds = mock_client!(aws_sdk_rds, RuleMode::MatchAny, rules.as_slice());
        testing::context(clients)
    }

    #[tokio::test]
    async fn a_registered_cluster_with_the_pool_makes_no_mutating_call() {
        let g = groups(POOL);
        let targets = mock!(Client::describe_db_proxy_targets).then_output(|| {
            DescribeDbProxyTargetsOutput::builder()
                .targets(tracked("payops-pr1-aurora"))
                .build()
        });
        let cx = cx_with(&[&g, &targets]);
        let applied = testing::ensure(&cx, STEP, DbProxyTargets, &[])
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Unchanged);
    }

    #[tokio::test]
    async fn with_the_proxys_arn_from_its_step_the_proxy_is_not_described_again() {
        let g = groups(POOL);
        let targets = mock!(Client::describe_db_proxy_targets).then_output(|| {
            DescribeDbProxyTargetsOutput::builder()
                .targets(tracked("payops-pr1-aurora"))
                .build()
        });
        let base = proxy_rules();
        let mut clients = testing::clients();
        clients.rds = mock_client!(
            aws_sdk_rds,
            RuleMode::MatchAny,
            [&base[0], &base[1], &g, &targets]
        );
        let cx = testing::context(clients);
        let inputs = testing::outputs(&[(
            db_proxy::STEP,
            "DbProxyArn",
            "arn:aws:rds:us-east-1:123456789012:db-proxy:prx-1",
        )]);
        let applied = testing::ensure(&cx, STEP, DbProxyTargets, &inputs)
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Unchanged);
        assert_eq!(base[0].num_calls(), 0, "DescribeDBProxies");
        assert_eq!(base[1].num_calls(), 1, "the ownership check");
    }

    #[tokio::test(start_paused = true)]
    async fn registers_the_cluster_once_its_instances_are_past_creating_and_sets_the_pool() {
        // AWS's default pool (100% / 50% / 120 s) on a fresh proxy.
        let g = groups((100, 50, 120));
        let targets = mock!(Client::describe_db_proxy_targets)
            .then_output(|| DescribeDbProxyTargetsOutput::builder().build());
        let register = mock!(Client::register_db_proxy_targets)
            .sequence()
            .error(|| {
                RegisterDBProxyTargetsError::generic(
                    aws_smithy_types::error::ErrorMetadata::builder()
                        .code("InvalidDBInstanceStateFault")
                        .message("DB instance payops-pr1-aurora-1 is in CREATING state")
                        .build(),
                )
            })
            .output(|| RegisterDbProxyTargetsOutput::builder().build())
            .build();
        let pool = mock!(Client::modify_db_proxy_target_group)
            .match_requests(|r| {
                let c = r.connection_pool_config().unwrap();
                c.max_connections_percent() == Some(90)
                    && c.max_idle_connections_percent() == Some(10)
                    && c.connection_borrow_timeout() == Some(5)
            })
            .then_output(|| ModifyDbProxyTargetGroupOutput::builder().build());
        let cx = cx_with(&[&g, &targets, &register, &pool]);
        let applied = testing::ensure(&cx, STEP, DbProxyTargets, &[])
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(register.num_calls(), 2, "retried past CREATING");
        assert_eq!(pool.num_calls(), 1);
        assert_eq!(
            applied.record.outputs["DbProxyTargetClusters"],
            "payops-pr1-aurora"
        );
    }

    #[tokio::test]
    async fn teardown_deregisters_the_cluster() {
        let g = groups(POOL);
        let targets = mock!(Client::describe_db_proxy_targets).then_output(|| {
            DescribeDbProxyTargetsOutput::builder()
                .targets(tracked("payops-pr1-aurora"))
                .build()
        });
        let deregister = mock!(Client::deregister_db_proxy_targets)
            .match_requests(|r| r.db_cluster_identifiers() == ["payops-pr1-aurora"])
            .then_output(|| DeregisterDbProxyTargetsOutput::builder().build());
        let cx = cx_with(&[&g, &targets, &deregister]);
        let removed = testing::destroy(&cx, STEP, DbProxyTargets).await.unwrap();
        assert!(matches!(removed, Removed::Deleted { .. }));
        assert_eq!(deregister.num_calls(), 1);
    }
}
