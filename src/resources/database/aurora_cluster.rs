//! The Aurora PostgreSQL cluster: in the database subnets behind the
//! database security group, encrypted with the env's database key, TLS
//! forced by its parameter group, automated backups, postgresql logs
//! exported to CloudWatch, IAM database authentication, and deletion
//! protection when the env is protected (`up --protect`).
//!
//! Its master password comes from the env's secret (generated, or the
//! operator's `--db-secret-arn`); payops reads it only to create the cluster
//! and never records it. For a generated secret the cluster's step also
//! writes the endpoint into the secret (`host`), which AWS's rotation
//! convention expects.
//!
//! Real AWS: the cluster takes 3-4 minutes; it can only be deleted once its
//! instances are gone (their steps depend on this one, so `down` removes them
//! first) and with deletion protection off; `down --final-snapshot` keeps a
//! snapshot, otherwise the data goes with it (SkipFinalSnapshot).

use std::collections::BTreeSet;
use std::fmt;

use async_trait::async_trait;
use aws_sdk_rds::types::{
    CloudwatchLogsExportConfiguration, DbCluster, ServerlessV2ScalingConfiguration,
};
use serde_json::Value;

use crate::aws::{AwsError, OpResult, Poll, absent_on, poll_until, required, wait_until_gone};
use crate::engine::{Record, StepCx};
use crate::spec::{Capacity, DbSecret};
use crate::tags::{self, FINAL_SNAPSHOT as FINAL_SNAPSHOT_TAG, TagMap};

use crate::resources::context::Context;
use crate::resources::database::db_secret::{MASTER_USERNAME, master_credentials};
use crate::resources::model::{DB_ENGINE, DB_NAME, DB_PORT};
use crate::resources::resource::Resource;
use crate::resources::sdk::rds;
use crate::tags::describe_tag_fix;

const KEY_INPUT: (&str, &str) = ("kms-key:database", "DatabaseKmsKeyArn");
const SG_INPUT: (&str, &str) = ("security-group:database", "DatabaseSecurityGroupId");
const SUBNET_GROUP_INPUT: (&str, &str) = ("db-subnet-group", "DbSubnetGroupName");
const PARAMETER_GROUP_INPUT: (&str, &str) = ("db-parameter-group", "DbClusterParameterGroupName");
const SECRET_INPUT: (&str, &str) = ("secret:db-master", "DbSecretArn");
/// Nightly, before the maintenance window; both in UTC.
const BACKUP_WINDOW: &str = "03:00-04:00";
const MAINTENANCE_WINDOW: &str = "sun:04:30-sun:05:30";
const LOG_EXPORTS: [&str; 1] = ["postgresql"];
pub struct AuroraCluster;

pub struct FoundCluster {
    cluster: DbCluster,
    id: String,
    arn: String,
    tags: TagMap,
}

#[derive(Debug)]
pub enum Fix {
    /// Settings ModifyDBCluster can change in place, by name.
    Modify(Vec<&'static str>),
    EngineVersion {
        from: String,
        to: String,
    },
    /// The Serverless v2 range differs (or is not set): ModifyDBCluster,
    /// on its own so that `plan` names it, before any instance becomes
    /// db.serverless (their steps come after this one).
    Capacity {
        from: Option<String>,
        to: Capacity,
    },
    Tags(TagMap),
    /// The generated secret does not name the cluster's endpoint yet.
    SecretHost,
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Modify(fields) => write!(f, "update {}", fields.join(", ")),
            Self::EngineVersion { from, to } => write!(f, "upgrade the engine from {from} to {to}"),
            Self::Capacity { from: None, to } => {
                write!(f, "set the Serverless v2 capacity to {to} ACUs")
            }
            Self::Capacity {
                from: Some(from),
                to,
            } => write!(
                f,
                "change the Serverless v2 capacity from {from} to {to} ACUs"
            ),
            Self::Tags(t) => f.write_str(&describe_tag_fix(t)),
            Self::SecretHost => f.write_str("write the cluster endpoint into the master secret"),
        }
    }
}

/// What the cluster should be, from the spec and the step's inputs.
struct Desired {
    security_group: String,
    parameter_group: String,
    /// `None`: leave deletion protection as it is (no `--protect` given).
    deletion_protection: Option<bool>,
    backup_days: i32,
    engine_version: String,
    /// `None`: provisioned; a range the cluster already has stays (it is
    /// harmless without db.serverless instances, and keeps a switch back
    /// cheap).
    capacity: Option<Capacity>,
}

fn desired(cx: &Context, step: &StepCx<'_>) -> Result<Desired, AwsError> {
    Ok(Desired {
        security_group: step.output(SG_INPUT.0, SG_INPUT.1)?.to_owned(),
        parameter_group: step
            .output(PARAMETER_GROUP_INPUT.0, PARAMETER_GROUP_INPUT.1)?
            .to_owned(),
        deletion_protection: cx.spec.protect,
        backup_days: i32::from(cx.spec.database.backup_days),
        engine_version: cx.spec.database.engine_version.clone(),
        capacity: cx.spec.database.capacity,
    })
}

/// The cluster's Serverless v2 range as AWS answers it (`0.5-4`), if any.
fn current_capacity(c: &DbCluster) -> Option<String> {
    let info = c.serverless_v2_scaling_configuration()?;
    match (info.min_capacity(), info.max_capacity()) {
        (Some(min), Some(max)) => Some(format!("{min}-{max}")),
        _ => None,
    }
}

/// The capacity fix, if the cluster's range is not the wanted one.
fn capacity_drift(c: &DbCluster, wanted: Option<Capacity>) -> Option<Fix> {
    let to = wanted?;
    let info = c.serverless_v2_scaling_configuration();
    let same = info.is_some_and(|i| to.matches(i.min_capacity(), i.max_capacity()));
    (!same).then(|| Fix::Capacity {
        from: current_capacity(c),
        to,
    })
}

fn scaling(c: Capacity) -> ServerlessV2ScalingConfiguration {
    ServerlessV2ScalingConfiguration::builder()
        .min_capacity(c.min())
        .max_capacity(c.max())
        .build()
}

/// `16.10` is newer than `16.6`: versions compare number by number.
pub fn version_newer(a: &str, than: &str) -> bool {
    let parts = |v: &str| -> Vec<u32> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    parts(a) > parts(than)
}

/// The in-place settings that differ from `d`. AWS applies minor upgrades on
/// its own (auto minor version upgrade), so only an older engine is drift.
fn drift(c: &DbCluster, d: &Desired) -> (Vec<&'static str>, Option<(String, String)>) {
    let mut fields = Vec::new();
    if let Some(protect) = d.deletion_protection
        && c.deletion_protection() != Some(protect)
    {
        fields.push("deletion protection");
    }
    if c.backup_retention_period() != Some(d.backup_days) {
        fields.push("backup retention");
    }
    if c.preferred_backup_window() != Some(BACKUP_WINDOW) {
        fields.push("backup window");
    }
    let exports: BTreeSet<&str> = c
        .enabled_cloudwatch_logs_exports()
        .iter()
        .map(String::as_str)
        .collect();
    if !LOG_EXPORTS.iter().all(|l| exports.contains(l)) {
        fields.push("log exports");
    }
    if c.iam_database_authentication_enabled() != Some(true) {
        fields.push("IAM database authentication");
    }
    if c.db_cluster_parameter_group() != Some(d.parameter_group.as_str()) {
        fields.push("parameter group");
    }
    let groups: BTreeSet<&str> = c
        .vpc_security_groups()
        .iter()
        .filter_map(|g| g.vpc_security_group_id())
        .collect();
    if groups != BTreeSet::from([d.security_group.as_str()]) {
        fields.push("security groups");
    }
    let current = c.engine_version().unwrap_or_default();
    let upgrade = version_newer(&d.engine_version, current)
        .then(|| (current.to_owned(), d.engine_version.clone()));
    (fields, upgrade)
}

/// Refuses what only a new cluster could change: payops never replaces a
/// database on its own.
fn immutable(c: &DbCluster, key_arn: &str) -> Result<(), AwsError> {
    let id = c.db_cluster_identifier().unwrap_or_default();
    if c.storage_encrypted() != Some(true) {
        return Err(AwsError::Conflict(format!(
            "Aurora cluster {id} is not encrypted, and encryption cannot be turned on in place: \
             restore a snapshot into an encrypted cluster (payops never replaces a database)"
        )));
    }
    if let Some(k) = c.kms_key_id()
        && k != key_arn
    {
        return Err(AwsError::Conflict(format!(
            "Aurora cluster {id} is encrypted with {k}, not the env's database key {key_arn}: \
             the key of a cluster cannot change in place"
        )));
    }
    Ok(())
}

/// Why a protected cluster is not deleted, and what to do.
pub fn protected_error(cx: &Context, id: &str) -> AwsError {
    AwsError::Conflict(format!(
        "Aurora cluster {id} has deletion protection on (the env was brought up with --protect): \
         lift it with `payops up --env {} --protect=false`, then run `payops down` again",
        cx.env()
    ))
}

/// `payops-<env>-aurora-final-20261123101500`: unique per `down`, a valid
/// RDS identifier.
pub fn final_snapshot_id(cx: &Context, now: &str) -> String {
    let digits: String = now.chars().filter(char::is_ascii_digit).take(14).collect();
    format!("{}-final-{digits}", cx.names.db_cluster())
}

impl AuroraCluster {
    async fn get(&self, cx: &Context) -> Result<Option<FoundCluster>, AwsError> {
        const OP: &str = "rds:DescribeDBClusters";
        let id = cx.names.db_cluster();
        let out = cx
            .clients
            .rds
            .describe_db_clusters()
            .db_cluster_identifier(&id)
            .send()
            .await
            .op(OP);
        let Some(out) = absent_on(out, &["DBClusterNotFoundFault"])? else {
            return Ok(None);
        };
        let Some(cluster) = out.db_clusters().first() else {
            return Ok(None);
        };
        let tags = rds::tag_map(cluster.tag_list());
        cx.check_ours(format!("Aurora cluster {id}"), &tags)?;
        Ok(Some(FoundCluster {
            arn: required(cluster.db_cluster_arn(), OP, "DBClusterArn")?.to_owned(),
            id,
            cluster: cluster.clone(),
            tags,
        }))
    }

    /// Waits until the cluster is `available` (after create or modify).
    async fn wait_available(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
    ) -> Result<FoundCluster, AwsError> {
        let id = cx.names.db_cluster();
        let progress = |m: String| step.progress(m);
        poll_until(
            format!("Aurora cluster {id} to become available"),
            cx.budgets.aurora,
            &progress,
            || async {
                match self.get(cx).await? {
                    Some(f) => {
                        let status = f.cluster.status().map(str::to_owned);
                        rds::availability(&format!("Aurora cluster {id}"), status.as_deref(), f)
                    }
                    None => Ok(Poll::Pending("not listed yet".to_owned())),
                }
            },
        )
        .await
    }

    /// The secret the cluster is created from.
    fn secret_arn<'a>(&self, cx: &'a Context, step: &'a StepCx<'_>) -> Result<&'a str, AwsError> {
        Ok(match &cx.spec.db_secret {
            DbSecret::Existing(arn) => arn,
            DbSecret::Generated => step.output(SECRET_INPUT.0, SECRET_INPUT.1)?,
        })
    }

    /// Whether the generated secret already names the cluster's endpoint.
    async fn secret_has_host(
        &self,
        cx: &Context,
        secret: &str,
        endpoint: &str,
    ) -> Result<bool, AwsError> {
        let out = cx
            .clients
            .secrets
            .get_secret_value()
            .secret_id(secret)
            .send()
            .await
            .op("secretsmanager:GetSecretValue")?;
        let value: Value =
            serde_json::from_str(out.secret_string().unwrap_or("{}")).unwrap_or(Value::Null);
        Ok(value["host"].as_str() == Some(endpoint))
    }

    async fn write_secret_host(
        &self,
        cx: &Context,
        secret: &str,
        endpoint: &str,
    ) -> Result<(), AwsError> {
        let out = cx
            .clients
            .secrets
            .get_secret_value()
            .secret_id(secret)
            .send()
            .await
            .op("secretsmanager:GetSecretValue")?;
        let mut value: Value = serde_json::from_str(out.secret_string().unwrap_or("{}"))
            .map_err(|_| AwsError::Conflict(format!("secret {secret} does not hold JSON")))?;
        value["host"] = Value::from(endpoint);
        value["port"] = Value::from(DB_PORT);
        cx.clients
            .secrets
            .put_secret_value()
            .secret_id(secret)
            .secret_string(value.to_string())
            .send()
            .await
            .op("secretsmanager:PutSecretValue")?;
        Ok(())
    }
}

#[async_trait]
impl Resource for AuroraCluster {
    type Found = FoundCluster;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "rds:db-cluster"
    }

    /// CreateDBCluster meets the cluster its lost first attempt made (see the trait).
    fn already_exists(&self) -> &'static [&'static str] {
        &["DBClusterAlreadyExistsFault"]
    }

    async fn find(&self, cx: &Context, _step: &StepCx<'_>) -> Result<Vec<FoundCluster>, AwsError> {
        Ok(self.get(cx).await?.into_iter().collect())
    }

    fn describe(&self, found: &FoundCluster) -> String {
        found.id.clone()
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<FoundCluster, AwsError> {
        const OP: &str = "rds:CreateDBCluster";
        let d = desired(cx, step)?;
        let key = step.output(KEY_INPUT.0, KEY_INPUT.1)?;
        let subnet_group = step.output(SUBNET_GROUP_INPUT.0, SUBNET_GROUP_INPUT.1)?;
        let (username, password) = master_credentials(cx, self.secret_arn(cx, step)?).await?;
        let id = cx.names.db_cluster();
        let tags = cx.tagger.for_create(step.id().as_str());
        let created = cx
            .clients
            .rds
            .create_db_cluster()
            .db_cluster_identifier(&id)
            .engine(DB_ENGINE)
            .engine_version(&d.engine_version)
            .database_name(DB_NAME)
            .port(DB_PORT)
            .master_username(username)
            .master_user_password(password)
            .db_subnet_group_name(subnet_group)
            .vpc_security_group_ids(&d.security_group)
            .db_cluster_parameter_group_name(&d.parameter_group)
            .storage_encrypted(true)
            .kms_key_id(key)
            .backup_retention_period(d.backup_days)
            .preferred_backup_window(BACKUP_WINDOW)
            .preferred_maintenance_window(MAINTENANCE_WINDOW)
            .set_enable_cloudwatch_logs_exports(Some(
                LOG_EXPORTS.iter().map(|s| (*s).to_owned()).collect(),
            ))
            .enable_iam_database_authentication(true)
            .deletion_protection(d.deletion_protection.unwrap_or(false))
            .copy_tags_to_snapshot(true)
            // Before any db.serverless instance: AWS refuses one in a
            // cluster without it (InvalidDBClusterStateFault).
            .set_serverless_v2_scaling_configuration(d.capacity.map(scaling))
            .set_tags(Some(rds::rds_tags(&tags)))
            .send()
            .await
            .op(OP);
        match created {
            Ok(out) => {
                let arn = required(out.db_cluster(), OP, "DBCluster")?
                    .db_cluster_arn()
                    .unwrap_or_default()
                    .to_owned();
                step.remember("cluster", &arn);
            }
            // Made by a concurrent or killed run: `get` (in the wait) checks it is ours.
            Err(e) if e.is_code(&["DBClusterAlreadyExistsFault"]) => {}
            Err(e) => return Err(e),
        }
        step.progress(format!("waiting for {id} (3-4 minutes on AWS)"));
        self.wait_available(cx, step).await
    }

    async fn diff(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: &FoundCluster,
    ) -> Result<Vec<Fix>, AwsError> {
        immutable(&found.cluster, step.output(KEY_INPUT.0, KEY_INPUT.1)?)?;
        let d = desired(cx, step)?;
        let (fields, upgrade) = drift(&found.cluster, &d);
        let mut fixes = Vec::new();
        if !fields.is_empty() {
            fixes.push(Fix::Modify(fields));
        }
        if let Some((from, to)) = upgrade {
            fixes.push(Fix::EngineVersion { from, to });
        }
        fixes.extend(capacity_drift(&found.cluster, d.capacity));
        let missing = cx.tagger.missing(step.id().as_str(), &found.tags);
        if !missing.is_empty() {
            fixes.push(Fix::Tags(missing));
        }
        if cx.spec.db_secret == DbSecret::Generated
            && let Some(endpoint) = found.cluster.endpoint()
            && !self
                .secret_has_host(cx, self.secret_arn(cx, step)?, endpoint)
                .await?
        {
            fixes.push(Fix::SecretHost);
        }
        Ok(fixes)
    }

    async fn fix(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: &mut FoundCluster,
        fix: Fix,
    ) -> Result<(), AwsError> {
        match fix {
            Fix::Modify(_) => {
                let d = desired(cx, step)?;
                cx.clients
                    .rds
                    .modify_db_cluster()
                    .db_cluster_identifier(&found.id)
                    .apply_immediately(true)
                    .set_deletion_protection(d.deletion_protection)
                    .backup_retention_period(d.backup_days)
                    .preferred_backup_window(BACKUP_WINDOW)
                    .cloudwatch_logs_export_configuration(
                        CloudwatchLogsExportConfiguration::builder()
                            .set_enable_log_types(Some(
                                LOG_EXPORTS.iter().map(|s| (*s).to_owned()).collect(),
                            ))
                            .build(),
                    )
                    .enable_iam_database_authentication(true)
                    .db_cluster_parameter_group_name(&d.parameter_group)
                    .vpc_security_group_ids(&d.security_group)
                    .send()
                    .await
                    .op("rds:ModifyDBCluster")?;
                *found = self.wait_available(cx, step).await?;
            }
            Fix::EngineVersion { from, to } => {
                let major = |v: &str| v.split('.').next().unwrap_or_default().to_owned();
                cx.clients
                    .rds
                    .modify_db_cluster()
                    .db_cluster_identifier(&found.id)
                    .apply_immediately(true)
                    .engine_version(&to)
                    .allow_major_version_upgrade(major(&from) != major(&to))
                    .db_cluster_parameter_group_name(desired(cx, step)?.parameter_group)
                    .send()
                    .await
                    .op("rds:ModifyDBCluster")?;
                *found = self.wait_available(cx, step).await?;
            }
            Fix::Capacity { to, .. } => {
                cx.clients
                    .rds
                    .modify_db_cluster()
                    .db_cluster_identifier(&found.id)
                    .apply_immediately(true)
                    .serverless_v2_scaling_configuration(scaling(to))
                    .send()
                    .await
                    .op("rds:ModifyDBCluster")?;
                *found = self.wait_available(cx, step).await?;
            }
            Fix::Tags(missing) => {
                rds::add_tags(cx, &found.arn, &missing).await?;
                found.tags.extend(missing);
            }
            Fix::SecretHost => {
                let endpoint = required(
                    found.cluster.endpoint(),
                    "rds:DescribeDBClusters",
                    "Endpoint",
                )?;
                self.write_secret_host(cx, self.secret_arn(cx, step)?, endpoint)
                    .await?;
            }
        }
        Ok(())
    }

    fn record(&self, cx: &Context, found: &FoundCluster) -> Record {
        let c = &found.cluster;
        let mut r = Record::default()
            .resource("cluster", &found.arn)
            .output("AuroraClusterArn", &found.arn)
            .output("AuroraClusterIdentifier", &found.id)
            .output("AuroraClusterEndpoint", c.endpoint().unwrap_or_default())
            .output(
                "AuroraReaderEndpoint",
                c.reader_endpoint().unwrap_or_default(),
            )
            .output("AuroraPort", c.port().unwrap_or(DB_PORT).to_string())
            .output("AuroraDatabaseName", DB_NAME)
            // `cluster-...`: a replaced cluster gets a new one (the schema
            // step migrates it again).
            .output(
                "AuroraClusterResourceId",
                c.db_cluster_resource_id().unwrap_or_default(),
            )
            // What the migration logs in as (its `rds-db:connect` names it).
            .output(
                "DbMasterUsername",
                c.master_username().unwrap_or(MASTER_USERNAME),
            );
        if let DbSecret::Existing(arn) = &cx.spec.db_secret {
            r = r.output("DbSecretArn", arn);
        }
        r
    }

    async fn delete(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: FoundCluster,
    ) -> Result<Vec<String>, AwsError> {
        if found.cluster.deletion_protection() == Some(true) {
            return Err(protected_error(cx, &found.id));
        }
        let snapshot = cx
            .spec
            .final_snapshot
            .then(|| final_snapshot_id(cx, &crate::resources::now()));
        if found.cluster.status() != Some("deleting") {
            let deleted = cx
                .clients
                .rds
                .delete_db_cluster()
                .db_cluster_identifier(&found.id)
                .skip_final_snapshot(snapshot.is_none())
                // The automated backups go too: a PR env's data is not kept
                // unless asked for (the final snapshot).
                .delete_automated_backups(true)
                .set_final_db_snapshot_identifier(snapshot.clone())
                .send()
                .await
                .op("rds:DeleteDBCluster");
            absent_on(deleted, &["DBClusterNotFoundFault"])?;
        }
        let progress = |m: String| step.progress(m);
        wait_until_gone(
            format!("Aurora cluster {} to be deleted", found.id),
            cx.budgets.aurora,
            &progress,
            &["DBClusterNotFoundFault"],
            || async {
                cx.clients
                    .rds
                    .describe_db_clusters()
                    .db_cluster_identifier(&found.id)
                    .send()
                    .await
                    .op("rds:DescribeDBClusters")
            },
            |o| rds::status_or_deleting(o.db_clusters().first().and_then(|c| c.status())),
        )
        .await?;
        let Some(snapshot) = snapshot else {
            return Ok(vec![format!(
                "deleted {} without a final snapshot",
                found.id
            )]);
        };
        // The snapshot carries the cluster's tags (CopyTagsToSnapshot); this
        // one says it was kept on purpose, so the final sweep leaves it.
        let arn = cx.arn("rds", &format!("cluster-snapshot:{snapshot}"));
        rds::add_tags(
            cx,
            &arn,
            &TagMap::from([
                (FINAL_SNAPSHOT_TAG.to_owned(), "true".to_owned()),
                (
                    tags::RETAINED.to_owned(),
                    format!("final snapshot of {}", found.id),
                ),
            ]),
        )
        .await?;
        Ok(vec![format!(
            "deleted {}, keeping final snapshot {snapshot} (tagged {FINAL_SNAPSHOT_TAG}=true)",
            found.id
        )])
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_rds::Client;
    use aws_sdk_rds::operation::add_tags_to_resource::AddTagsToResourceOutput;
    use aws_sdk_rds::operation::create_db_cluster::CreateDbClusterOutput;
    use aws_sdk_rds::operation::delete_db_cluster::DeleteDbClusterOutput;
    use aws_sdk_rds::operation::describe_db_clusters::{
        DescribeDBClustersError, DescribeDbClustersOutput,
    };
    use aws_sdk_rds::operation::modify_db_cluster::ModifyDbClusterOutput;
    use aws_sdk_rds::types::{ServerlessV2ScalingConfigurationInfo, VpcSecurityGroupMembership};
    use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueOutput;
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    use super::*;
    use crate::engine::{Change, Removed};
    use crate::resources::testing;

    const STEP: &str = "aurora-cluster";
    const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/db";
    const SECRET: &str =
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:payops/pr1/db-master-AbCdEf";
    const PASSWORD: &str = "s3cret-Pa55word-never-shown";
    const ENDPOINT: &str = "payops-pr1-aurora.cluster-abc.us-east-1.rds.amazonaws.com";

    fn inputs() -> Vec<(&'static str, Record)> {
        testing::outputs(&[
            (KEY_INPUT.0, KEY_INPUT.1, KEY),
            (SG_INPUT.0, SG_INPUT.1, "sg-db"),
            (SUBNET_GROUP_INPUT.0, SUBNET_GROUP_INPUT.1, "payops-pr1-db"),
            (
                PARAMETER_GROUP_INPUT.0,
                PARAMETER_GROUP_INPUT.1,
                "payops-pr1-aurora-pg16",
            ),
            (SECRET_INPUT.0, SECRET_INPUT.1, SECRET),
        ])
    }

    fn cluster(protected: bool, status: &str) -> DbCluster {
        DbCluster::builder()
            .db_cluster_identifier("payops-pr1-aurora")
            .db_cluster_arn("arn:aws:rds:us-east-1:123456789012:cluster:payops-pr1-aurora")
            .status(status)
            .endpoint(ENDPOINT)
            .reader_endpoint("payops-pr1-aurora.cluster-ro-abc.us-east-1.rds.amazonaws.com")
            .port(5432)
            .engine_version("16.6")
            .storage_encrypted(true)
            .kms_key_id(KEY)
            .deletion_protection(protected)
            .backup_retention_period(7)
            .preferred_backup_window(BACKUP_WINDOW)
            .enabled_cloudwatch_logs_exports("postgresql")
            .iam_database_authentication_enabled(true)
            .db_cluster_parameter_group("payops-pr1-aurora-pg16")
            .vpc_security_groups(
                VpcSecurityGroupMembership::builder()
                    .vpc_security_group_id("sg-db")
                    .build(),
            )
            .serverless_v2_scaling_configuration(
                ServerlessV2ScalingConfigurationInfo::builder()
                    .min_capacity(0.5)
                    .max_capacity(4.0)
                    .build(),
            )
            .set_tag_list(Some(rds::rds_tags(&testing::our_tags(STEP))))
            .build()
    }

    fn described(c: DbCluster) -> DescribeDbClustersOutput {
        DescribeDbClustersOutput::builder().db_clusters(c).build()
    }

    fn not_found() -> DescribeDBClustersError {
        DescribeDBClustersError::generic(testing::error_meta("DBClusterNotFoundFault"))
    }

    fn secret_value(host: Option<&str>) -> Rule {
        let mut v = serde_json::json!({"username": "payops_admin", "password": PASSWORD});
        if let Some(h) = host {
            v["host"] = h.into();
        }
        let v = v.to_string();
        mock!(aws_sdk_secretsmanager::Client::get_secret_value)
            .then_output(move || GetSecretValueOutput::builder().secret_string(&v).build())
    }

    fn cx_with(rds: &[&Rule], secrets: &[&Rule], final_snapshot: bool) -> Context {
        let mut clients = testing::clients();
        clients.rds = mock_client!(aws_sdk_rds, RuleMode::MatchAny, rds);
        clients.secrets = mock_client!(aws_sdk_secretsmanager, RuleMode::MatchAny, secrets);
        let mut cx = testing::context(clients);
        cx.spec.final_snapshot = final_snapshot;
        cx
    }

    #[tokio::test]
    async fn a_converged_cluster_makes_no_mutating_call() {
        let describe = mock!(Client::describe_db_clusters)
            .then_output(|| described(cluster(false, "available")));
        let secret = secret_value(Some(ENDPOINT));
        let cx = cx_with(&[&describe], &[&secret], false);
        let applied = testing::ensure(&cx, STEP, AuroraCluster, &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Unchanged);
        let r = &applied.record;
        assert_eq!(r.outputs["AuroraClusterEndpoint"], ENDPOINT);
        assert_eq!(r.outputs["AuroraPort"], "5432");
        assert!(
            !r.outputs.contains_key("DbSecretArn"),
            "the secret step's output"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn creates_an_encrypted_cluster_from_the_secret_and_writes_its_host_back() {
        let describe = mock!(Client::describe_db_clusters)
            .sequence()
            .error(not_found)
            .output(|| described(cluster(false, "creating")))
            .output(|| described(cluster(false, "available")))
            .repeatedly()
            .build();
        let create = mock!(Client::create_db_cluster)
            .match_requests(|r| {
                r.master_user_password() == Some(PASSWORD)
                    && r.master_username() == Some("payops_admin")
                    && r.storage_encrypted() == Some(true)
                    && r.kms_key_id() == Some(KEY)
                    && r.deletion_protection() == Some(false)
                    && r.backup_retention_period() == Some(7)
                    && r.enable_iam_database_authentication() == Some(true)
                    && r.enable_cloudwatch_logs_exports() == ["postgresql"]
                    && r.db_cluster_parameter_group_name() == Some("payops-pr1-aurora-pg16")
                    && r.vpc_security_group_ids() == ["sg-db"]
                    && r.engine() == Some("aurora-postgresql")
                    && r.serverless_v2_scaling_configuration().is_some_and(|c| {
                        c.min_capacity() == Some(0.5) && c.max_capacity() == Some(4.0)
                    })
            })
            .then_output(|| {
                CreateDbClusterOutput::builder()
                    .db_cluster(cluster(false, "creating"))
                    .build()
            });
        let secret = secret_value(None);
        let put = mock!(aws_sdk_secretsmanager::Client::put_secret_value)
            .match_requests(|r| {
                let v: Value = serde_json::from_str(r.secret_string().unwrap()).unwrap();
                v["host"] == ENDPOINT && v["password"] == PASSWORD
            })
            .then_output(|| {
                aws_sdk_secretsmanager::operation::put_secret_value::PutSecretValueOutput::builder()
                    .build()
            });
        let cx = cx_with(&[&describe, &create], &[&secret, &put], false);
        let applied = testing::ensure(&cx, STEP, AuroraCluster, &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(create.num_calls(), 1);
        assert_eq!(put.num_calls(), 1);
        // The password is nowhere in what payops keeps or prints.
        let shown = format!("{:?} {:?}", applied.record, applied.notes);
        assert!(!shown.contains(PASSWORD), "{shown}");
    }

    /// Nothing at the first look, then `then` (what the lost first attempt
    /// made); the retried CreateDBCluster (no client token) meets it:
    /// `DBClusterAlreadyExistsFault`.
    fn retried_create(then: DbCluster) -> [Rule; 2] {
        let describe = mock!(Client::describe_db_clusters)
            .sequence()
            .error(not_found)
            .output(move || described(then.clone()))
            .repeatedly()
            .build();
        let create = mock!(Client::create_db_cluster).then_error(|| {
            aws_sdk_rds::operation::create_db_cluster::CreateDBClusterError::generic(
                testing::error_meta("DBClusterAlreadyExistsFault"),
            )
        });
        [describe, create]
    }

    #[tokio::test(start_paused = true)]
    async fn a_create_retried_after_a_lost_answer_adopts_what_it_made() {
        let [describe, create] = retried_create(cluster(false, "available"));
        let secret = secret_value(Some(ENDPOINT));
        let cx = cx_with(&[&describe, &create], &[&secret], false);
        let applied = testing::ensure(&cx, STEP, AuroraCluster, &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(applied.record.outputs["AuroraClusterEndpoint"], ENDPOINT);
        assert_eq!(create.num_calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_create_conflict_with_a_cluster_not_ours_is_refused() {
        let mut foreign = cluster(false, "available");
        foreign.tag_list = None;
        let [describe, create] = retried_create(foreign);
        let cx = cx_with(&[&describe, &create], &[&secret_value(None)], false);
        let err = testing::ensure(&cx, STEP, AuroraCluster, &inputs())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not tagged"), "{err}");
        assert_eq!(create.num_calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cluster_that_cannot_become_available_ends_the_wait_at_once() {
        for status in [
            "incompatible-network",
            "inaccessible-encryption-credentials",
            "failed",
        ] {
            let describe = mock!(Client::describe_db_clusters)
                .sequence()
                .error(not_found)
                .output(move || described(cluster(false, "creating")))
                .output(move || described(cluster(false, status)))
                .repeatedly()
                .build();
            let create = mock!(Client::create_db_cluster).then_output(|| {
                CreateDbClusterOutput::builder()
                    .db_cluster(cluster(false, "creating"))
                    .build()
            });
            let cx = cx_with(&[&describe, &create], &[&secret_value(None)], false);
            let err = testing::ensure(&cx, STEP, AuroraCluster, &inputs())
                .await
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("payops-pr1-aurora is {status}")),
                "{err}"
            );
            // Not found, one pending poll, then the terminal one: no more
            // polls for the rest of the 30-minute budget.
            assert_eq!(describe.num_calls(), 3, "{status}");
        }
    }

    fn with_capacity(mut c: DbCluster, range: Option<(f64, f64)>) -> DbCluster {
        c.serverless_v2_scaling_configuration = range.map(|(min, max)| {
            ServerlessV2ScalingConfigurationInfo::builder()
                .min_capacity(min)
                .max_capacity(max)
                .build()
        });
        c
    }

    #[tokio::test(start_paused = true)]
    async fn a_drifted_or_missing_serverless_range_is_set_by_modify_db_cluster_alone() {
        for (now, shown) in [
            (
                Some((0.5, 16.0)),
                "change the Serverless v2 capacity from 0.5-16 to 0-8 ACUs",
            ),
            // A provisioned env switched to Serverless v2: the range comes
            // first, the instances' class after (their steps follow this one).
            (None, "set the Serverless v2 capacity to 0-8 ACUs"),
        ] {
            let describe = mock!(Client::describe_db_clusters)
                .sequence()
                .output(move || described(with_capacity(cluster(false, "available"), now)))
                .output(|| described(with_capacity(cluster(false, "available"), Some((0.0, 8.0)))))
                .repeatedly()
                .build();
            let modify = mock!(Client::modify_db_cluster)
                .match_requests(|r| {
                    r.serverless_v2_scaling_configuration().is_some_and(|c| {
                        c.min_capacity() == Some(0.0) && c.max_capacity() == Some(8.0)
                    }) && r.apply_immediately() == Some(true)
                        // Nothing else rides along.
                        && r.backup_retention_period().is_none()
                        && r.vpc_security_group_ids().is_empty()
                })
                .then_output(|| ModifyDbClusterOutput::builder().build());
            let secret = secret_value(Some(ENDPOINT));
            let mut cx = cx_with(&[&describe, &modify], &[&secret], false);
            cx.spec.database.capacity = Some("0-8".parse().unwrap());
            let applied = testing::ensure(&cx, STEP, AuroraCluster, &inputs())
                .await
                .unwrap();
            assert_eq!(modify.num_calls(), 1, "{shown}");
            assert!(
                applied.notes.iter().any(|n| n.contains(shown)),
                "{:?}",
                applied.notes
            );
        }
    }

    #[tokio::test]
    async fn a_provisioned_env_leaves_a_range_the_cluster_has_alone() {
        let describe = mock!(Client::describe_db_clusters)
            .then_output(|| described(cluster(false, "available")));
        let secret = secret_value(Some(ENDPOINT));
        let mut cx = cx_with(&[&describe], &[&secret], false);
        cx.spec.database.capacity = None;
        let applied = testing::ensure(&cx, STEP, AuroraCluster, &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Unchanged);
    }

    #[tokio::test(start_paused = true)]
    async fn a_provisioned_env_creates_its_cluster_without_a_range() {
        let describe = mock!(Client::describe_db_clusters)
            .sequence()
            .error(not_found)
            .output(|| described(with_capacity(cluster(false, "available"), None)))
            .repeatedly()
            .build();
        let create = mock!(Client::create_db_cluster)
            .match_requests(|r| r.serverless_v2_scaling_configuration().is_none())
            .then_output(|| {
                CreateDbClusterOutput::builder()
                    .db_cluster(cluster(false, "creating"))
                    .build()
            });
        let secret = secret_value(Some(ENDPOINT));
        let mut cx = cx_with(&[&describe, &create], &[&secret], false);
        cx.spec.database.capacity = None;
        testing::ensure(&cx, STEP, AuroraCluster, &inputs())
            .await
            .unwrap();
        assert_eq!(create.num_calls(), 1);
    }

    #[tokio::test]
    async fn protection_follows_the_protect_flag_and_is_otherwise_left_alone() {
        let unprotected = cluster(false, "available");
        let mut cx = cx_with(&[], &[], false);
        let d = |cx: &Context| Desired {
            security_group: "sg-db".into(),
            parameter_group: "payops-pr1-aurora-pg16".into(),
            deletion_protection: cx.spec.protect,
            backup_days: 7,
            engine_version: "16.6".into(),
            capacity: None,
        };
        assert!(drift(&unprotected, &d(&cx)).0.is_empty());
        cx.spec.protect = Some(true);
        assert_eq!(drift(&unprotected, &d(&cx)).0, ["deletion protection"]);
        cx.spec.protect = None;
        assert!(drift(&cluster(true, "available"), &d(&cx)).0.is_empty());
    }

    #[tokio::test]
    async fn a_protected_cluster_is_not_deleted_and_the_error_says_how_to_lift_it() {
        let describe = mock!(Client::describe_db_clusters)
            .then_output(|| described(cluster(true, "available")));
        let delete = mock!(Client::delete_db_cluster)
            .then_output(|| DeleteDbClusterOutput::builder().build());
        let cx = cx_with(&[&describe, &delete], &[], false);
        let err = testing::destroy(&cx, STEP, AuroraCluster)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("--protect=false"), "{err}");
        assert_eq!(delete.num_calls(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn down_skips_the_final_snapshot_and_waits_until_the_cluster_is_gone() {
        let describe = mock!(Client::describe_db_clusters)
            .sequence()
            .output(|| described(cluster(false, "available")))
            .output(|| described(cluster(false, "deleting")))
            .error(not_found)
            .build();
        let delete = mock!(Client::delete_db_cluster)
            .match_requests(|r| {
                r.skip_final_snapshot() == Some(true) && r.final_db_snapshot_identifier().is_none()
            })
            .then_output(|| DeleteDbClusterOutput::builder().build());
        let cx = cx_with(&[&describe, &delete], &[], false);
        let removed = testing::destroy(&cx, STEP, AuroraCluster).await.unwrap();
        assert!(matches!(removed, Removed::Deleted { .. }));
        assert_eq!(delete.num_calls(), 1);
        assert_eq!(describe.num_calls(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn down_with_final_snapshot_keeps_one_and_tags_it() {
        let describe = mock!(Client::describe_db_clusters)
            .sequence()
            .output(|| described(cluster(false, "available")))
            .error(not_found)
            .build();
        let delete = mock!(Client::delete_db_cluster)
            .match_requests(|r| {
                r.skip_final_snapshot() == Some(false)
                    && r.final_db_snapshot_identifier()
                        .is_some_and(|s| s.starts_with("payops-pr1-aurora-final-"))
            })
            .then_output(|| DeleteDbClusterOutput::builder().build());
        let tag = mock!(Client::add_tags_to_resource)
            .match_requests(|r| {
                r.resource_name()
                    .is_some_and(|n| n.contains(":cluster-snapshot:payops-pr1-aurora-final-"))
                    && r.tags().iter().any(|t| t.key() == Some(FINAL_SNAPSHOT_TAG))
            })
            .then_output(|| AddTagsToResourceOutput::builder().build());
        let cx = cx_with(&[&describe, &delete, &tag], &[], true);
        testing::destroy(&cx, STEP, AuroraCluster).await.unwrap();
        assert_eq!(delete.num_calls(), 1);
        assert_eq!(tag.num_calls(), 1);
    }

    #[test]
    fn only_an_older_engine_is_drift_since_aws_applies_minor_upgrades_itself() {
        assert!(version_newer("16.10", "16.6"));
        assert!(version_newer("17.1", "16.9"));
        assert!(!version_newer("16.6", "16.6"));
        assert!(!version_newer("16.4", "16.6"));
    }

    #[test]
    fn an_unencrypted_or_rekeyed_cluster_is_refused_not_replaced() {
        let mut c = cluster(false, "available");
        assert!(immutable(&c, KEY).is_ok());
        assert!(immutable(&c, "arn:aws:kms:us-east-1:123456789012:key/other").is_err());
        c.storage_encrypted = Some(false);
        assert!(immutable(&c, KEY).is_err());
    }

    #[test]
    fn final_snapshot_ids_are_valid_rds_identifiers() {
        let cx = testing::context(testing::clients());
        let id = final_snapshot_id(&cx, "2026-11-23T10:15:00Z");
        assert_eq!(id, "payops-pr1-aurora-final-20261123101500");
        crate::naming::NameKind::RdsIdentifier.check(&id).unwrap();
    }
}
