//! The customer database: Aurora PostgreSQL in the database subnets, its
//! subnet and parameter groups, its master secret and rotation, and the RDS
//! Proxy the functions reach it through.

pub mod aurora_cluster;
pub mod aurora_instance;
pub mod db_parameter_group;
pub mod db_proxy;
pub mod db_proxy_endpoint;
pub mod db_proxy_role;
pub mod db_proxy_targets;
pub mod db_schema;
pub mod db_secret;
pub mod db_subnet_group;
pub mod secret_rotation;

use super::common::log_group;
use super::model::{Function, SgRole};
use super::registry::{Registry, dep};
use crate::naming::Names;

pub fn register(r: &mut Registry) {
    // The customer database: Aurora PostgreSQL in the database subnets, from
    // master credentials in Secrets Manager.
    r.add(
        "db-subnet-group",
        db_subnet_group::DbSubnetGroup,
        vec![dep(
            "subnets:database",
            "the group is the database subnets, which have no internet route",
        )],
    );
    r.add(
        "db-parameter-group",
        db_parameter_group::DbParameterGroup,
        vec![],
    );
    r.add(
        db_secret::MASTER_STEP,
        db_secret::GeneratedSecret::master(),
        vec![dep(
            "kms-key:logs",
            "the secret is encrypted with the logs/secrets key",
        )],
    );
    r.add(
        db_secret::APP_STEP,
        db_secret::GeneratedSecret::app(),
        vec![dep(
            "kms-key:logs",
            "the secret is encrypted with the logs/secrets key, like the master's",
        )],
    );
    r.add(
        "log-group:aurora",
        log_group::LogGroup::for_service(Names::db_log_group, 365, "AuroraPostgresql"),
        vec![dep(
            "kms-key:logs",
            "the group is encrypted with the logs key, whose policy names this group",
        )],
    );
    r.add(
        "aurora-cluster",
        aurora_cluster::AuroraCluster,
        vec![
            dep(
                "log-group:aurora",
                "RDS exports the postgresql log here; made first, or RDS makes it unencrypted \
                 and never expiring (and it outlives the env)",
            ),
            dep(
                "db-subnet-group",
                "the cluster's instances live in the group's subnets",
            ),
            dep(
                "db-parameter-group",
                "the parameter group forces TLS on every connection",
            ),
            dep(
                "kms-key:database",
                "storage is encrypted with the database key",
            ),
            dep(
                SgRole::Database.step_id(),
                "the cluster uses the database security group",
            ),
            dep(
                "secret:db-master",
                "the cluster is created from the secret's credentials (and on teardown the \
                 secret outlives the cluster)",
            ),
        ],
    );
    for slot in 0..=usize::from(crate::spec::Database::MAX_READERS) {
        r.add(
            aurora_instance::AuroraInstance::step_id(slot),
            aurora_instance::AuroraInstance::new(slot),
            vec![
                dep(
                    "aurora-cluster",
                    "an instance joins the cluster; AWS deletes a cluster only once its \
                     instances are gone",
                ),
                // Not a dependency of the cluster: a cluster accepts no connection,
                // its instances do, and the cluster takes minutes on AWS while the
                // rules take seconds, so waiting for them there only lengthened
                // the env's longest chain (make bench-timing).
                dep(
                    "security-group-rules",
                    "an instance is what accepts connections: by then only the RDS Proxy may \
                     reach PostgreSQL",
                ),
            ],
        );
    }
    register_proxy(r);
}

/// The RDS Proxy: its role, the proxy, its targets and its read-only
/// endpoint. The proxy needs no cluster to exist (AWS creates one without
/// targets), so it is made while the cluster and its instances are; only the
/// registration of the cluster waits for it.
fn register_proxy(r: &mut Registry) {
    let proxy_group = SgRole::Proxy.step_id();
    r.add(
        db_proxy_role::STEP,
        db_proxy_role::role(),
        vec![
            dep(
                "secret:db-master",
                "the role may read the master secret (its ARN is in the policy)",
            ),
            dep(
                db_secret::APP_STEP,
                "the role may read payops_app's secret (its ARN is in the policy)",
            ),
            dep(
                "kms-key:logs",
                "the role may decrypt with the secrets' key, through Secrets Manager only",
            ),
        ],
    );
    r.add(
        db_proxy::STEP,
        db_proxy::DbProxy,
        vec![
            dep(
                db_proxy_role::STEP,
                "RDS reads the secret with this role (and on teardown the role outlives the \
                 proxy)",
            ),
            dep(
                "secret:db-master",
                "the proxy logs in to the database with the master secret",
            ),
            dep(
                db_secret::APP_STEP,
                "the proxy logs in as payops_app with its secret (one secret per database \
                 user); on teardown the secret outlives the proxy",
            ),
            dep(
                "subnets:database",
                "the proxy lives in the database subnets (at least two zones)",
            ),
            dep(
                proxy_group.clone(),
                "the proxy uses its own security group (deleted only once the proxy is gone)",
            ),
            dep(
                "security-group-rules",
                "only the functions may reach the proxy, and only the proxy the database",
            ),
        ],
    );
    r.add(
        db_proxy_targets::STEP,
        db_proxy_targets::DbProxyTargets,
        vec![
            dep(
                db_proxy::STEP,
                "the targets are the proxy's default target group's",
            ),
            dep(
                "aurora-cluster",
                "the cluster is the target (not its instances: RDS tracks them, so the \
                 proxy's creation overlaps theirs); on teardown it is deregistered before \
                 the cluster goes",
            ),
        ],
    );
    r.add(
        db_proxy_endpoint::STEP,
        db_proxy_endpoint::DbProxyReadOnlyEndpoint,
        vec![
            dep(
                db_proxy::STEP,
                "the endpoint is the proxy's (and on teardown goes before it)",
            ),
            dep(
                "subnets:database",
                "the endpoint lives in the database subnets, like the proxy",
            ),
            dep(proxy_group, "the endpoint uses the proxy's security group"),
        ],
    );
}

/// The rotation schedule ties the secret to the rotation function, and the
/// schema step invokes the migration function, so they are registered after
/// compute (registry order is report order).
pub fn register_rotation(r: &mut Registry) {
    r.add(
        db_schema::STEP,
        db_schema::DbSchema,
        vec![
            dep(
                Function::Migration.step_id(),
                "the step invokes the migration function (active, with this payops' code) and \
                 records the version in its tag",
            ),
            dep(
                db_proxy_targets::STEP,
                "the migration connects through the proxy, which reaches the database only \
                 once the cluster is its registered target",
            ),
            dep(db_proxy::STEP, "the migration is told the proxy's endpoint"),
            dep(
                db_secret::APP_STEP,
                "the migration sets payops_app's password from this secret (told its ARN), and \
                 the tag records which version it set",
            ),
            dep(
                "aurora-cluster",
                "the schema is the cluster's (its resource id, database and master user)",
            ),
            dep(
                aurora_instance::AuroraInstance::step_id(0),
                "the writer must be available for DDL",
            ),
        ],
    );
    r.add(
        "secret-rotation:db-master",
        secret_rotation::SecretRotation,
        vec![
            dep("secret:db-master", "the rotation is the secret's"),
            dep(
                Function::Rotation.step_id(),
                "Secrets Manager invokes the rotation function",
            ),
            dep(
                "aurora-cluster",
                "a rotation sets the cluster's master password, so the cluster must exist",
            ),
        ],
    );
}
