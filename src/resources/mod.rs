//! Everything payops creates, one file per resource type, and the registry:
//! the readable list of steps and why each depends on what it does.

pub mod connect;
pub mod context;
pub mod discovery;
mod dynamodb_table;
mod ec2;
mod flow_log;
mod iam_role;
mod internet_gateway;
mod kms_key;
mod log_group;
mod nat_gateway;
mod resource;
mod route_table;
mod s3_bucket;
mod security_group;
mod security_group_rules;
mod sns_topic;
mod ssm_parameters;
mod subnets;
pub mod sweep;
mod vpc;
mod vpc_endpoint;

#[cfg(test)]
mod testing;

use crate::engine::{Dependency, Graph, GraphError, Step, StepId};
use crate::naming::KEY_PURPOSES;
use crate::spec::{AZ_COUNT, AZ_LABELS, EnvSpec, Tier};

pub use connect::{Aws, now};
pub use context::{Budgets, Context};
use resource::{Node, Resource};
use route_table::RouteTable;
use security_group::SgRole;
pub use vpc::recorded_shape;

fn dep(on: impl Into<StepId>, reason: &'static str) -> Dependency {
    Dependency::on(on, reason)
}

/// Collects the steps in registry order (which is also the order of reports).
#[derive(Default)]
struct Registry {
    steps: Vec<Box<dyn Step<Context>>>,
}

impl Registry {
    fn add(&mut self, id: impl Into<StepId>, resource: impl Resource, deps: Vec<Dependency>) {
        self.steps.push(Box::new(Node::new(id, resource, deps)));
    }

    fn ids(&self) -> Vec<StepId> {
        self.steps.iter().map(|s| s.id().clone()).collect()
    }
}

/// The env's graph for `spec`. `down` builds it with the widest spec (a NAT
/// gateway per AZ) so that it removes whatever any spec could have created.
pub fn graph(spec: &EnvSpec) -> Result<Graph<Context>, GraphError> {
    let mut r = Registry::default();

    // Customer-managed keys, one per purpose: everything below that stores
    // data encrypts it with one of them.
    for purpose in KEY_PURPOSES {
        r.add(
            format!("kms-key:{purpose}"),
            kms_key::KmsKey::new(purpose),
            vec![],
        );
    }

    // Network.
    r.add("vpc", vpc::Vpc, vec![]);
    for tier in Tier::ALL {
        r.add(
            format!("subnets:{}", tier.as_str()),
            subnets::Subnets::new(tier),
            vec![dep("vpc", "subnets are carved out of the VPC")],
        );
    }
    r.add(
        "internet-gateway",
        internet_gateway::InternetGateway,
        vec![dep("vpc", "the gateway is attached to the VPC")],
    );
    for (slot, label) in AZ_LABELS.iter().enumerate() {
        let mut deps = vec![
            dep(
                "subnets:public",
                "a NAT gateway lives in its AZ's public subnet",
            ),
            dep(
                "internet-gateway",
                "a public NAT gateway fails without an internet gateway on its VPC",
            ),
        ];
        if !spec.nat.wants_nat(slot) {
            deps.push(dep(
                RouteTable::Private(slot).step_id(),
                "the AZ's route table must stop using this NAT gateway before it is removed",
            ));
        }
        r.add(
            format!("nat-gateway:{label}"),
            nat_gateway::NatGateway::new(slot),
            deps,
        );
    }
    r.add(
        RouteTable::Public.step_id(),
        RouteTable::Public,
        vec![
            dep("vpc", "route tables belong to the VPC"),
            dep(
                "internet-gateway",
                "the default route targets the internet gateway",
            ),
            dep(
                "subnets:public",
                "the table is associated with the public subnets",
            ),
        ],
    );
    for slot in 0..AZ_COUNT {
        r.add(
            RouteTable::Private(slot).step_id(),
            RouteTable::Private(slot),
            vec![
                dep("vpc", "route tables belong to the VPC"),
                dep(
                    "subnets:private",
                    "the table is associated with its AZ's private subnet",
                ),
                dep(
                    RouteTable::nat_step(slot, spec.nat),
                    "the default route targets an available NAT gateway",
                ),
            ],
        );
    }
    r.add(
        RouteTable::Database.step_id(),
        RouteTable::Database,
        vec![
            dep("vpc", "route tables belong to the VPC"),
            dep(
                "subnets:database",
                "the table is associated with the database subnets",
            ),
        ],
    );
    let endpoint_tables: Vec<String> = (0..AZ_COUNT)
        .map(|slot| RouteTable::Private(slot).step_id())
        .chain([RouteTable::Database.step_id()])
        .collect();
    for service in ["s3", "dynamodb"] {
        let mut deps = vec![dep("vpc", "the endpoint belongs to the VPC")];
        deps.extend(endpoint_tables.iter().map(|t| {
            dep(
                t.clone(),
                "the gateway endpoint adds its routes to the private and database tables",
            )
        }));
        r.add(
            format!("vpc-endpoint:{service}"),
            vpc_endpoint::GatewayEndpoint::new(service, endpoint_tables.clone()),
            deps,
        );
    }
    for role in SgRole::ALL {
        r.add(
            role.step_id(),
            security_group::SecurityGroup::new(role),
            vec![dep("vpc", "security groups belong to the VPC")],
        );
    }
    r.add(
        "security-group-rules",
        security_group_rules::SecurityGroupRules,
        SgRole::ALL
            .iter()
            .map(|role| {
                dep(
                    role.step_id(),
                    "rules reference the groups, so every group must exist first (and on \
                     teardown the rules go before any group)",
                )
            })
            .collect(),
    );

    // VPC flow logs to an encrypted log group, delivered by a role that may
    // write to that group only.
    r.add(
        "log-group:flow-logs",
        log_group::LogGroup::flow_logs(),
        vec![dep(
            "kms-key:logs",
            "the group is encrypted with the logs key, whose policy lets CloudWatch Logs use it",
        )],
    );
    r.add(
        "iam-role:flow-logs",
        flow_log::flow_logs_role(),
        vec![dep(
            "log-group:flow-logs",
            "the role's policy is scoped to the log group's ARN",
        )],
    );
    r.add(
        "flow-log",
        flow_log::FlowLog,
        vec![
            dep("vpc", "the flow log captures the VPC's traffic"),
            dep(
                "log-group:flow-logs",
                "records are delivered to this log group",
            ),
            dep(
                "iam-role:flow-logs",
                "CloudWatch Logs delivery assumes this role",
            ),
        ],
    );

    // Data stores.
    r.add(
        "s3-bucket:audit",
        s3_bucket::AuditBucket,
        vec![dep(
            "kms-key:s3",
            "default encryption is SSE-KMS with the S3 key",
        )],
    );
    for (id, table) in [
        (
            "dynamodb-table:transactions",
            dynamodb_table::Table::transactions(),
        ),
        (
            "dynamodb-table:fraud-rules",
            dynamodb_table::Table::fraud_rules(),
        ),
    ] {
        r.add(
            id,
            table,
            vec![dep(
                "kms-key:dynamodb",
                "the table is encrypted with the DynamoDB key",
            )],
        );
    }
    for (id, topic) in [
        (
            "sns-topic:failed-transactions",
            sns_topic::Topic::failed_transactions(),
        ),
        ("sns-topic:system-errors", sns_topic::Topic::system_errors()),
    ] {
        r.add(
            id,
            topic,
            vec![dep(
                "kms-key:logs",
                "the topic is encrypted with the logs key, whose policy lets CloudWatch alarms publish",
            )],
        );
    }

    // Configuration: published last, from everything above.
    let everything = r.ids();
    r.add(
        "ssm-parameters",
        ssm_parameters::Parameters,
        everything
            .into_iter()
            .map(|id| dep(id, "its outputs are published as configuration parameters"))
            .collect(),
    );

    Graph::new(r.steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::NatMode;

    #[test]
    fn the_registry_is_a_valid_graph_in_both_nat_modes() {
        for nat in [NatMode::PerAz, NatMode::Single] {
            let spec = EnvSpec {
                nat,
                ..EnvSpec::default()
            };
            let g = graph(&spec).unwrap_or_else(|e| panic!("{nat:?}: {e}"));
            assert_eq!(g.len(), 33);
        }
    }

    #[test]
    fn every_edge_says_why() {
        let g = graph(&EnvSpec::default()).unwrap();
        for step in g.steps() {
            for d in step.dependencies() {
                assert!(
                    d.reason.len() > 10,
                    "{} -> {}: {:?}",
                    step.id(),
                    d.on,
                    d.reason
                );
            }
        }
    }

    #[test]
    fn database_route_table_never_depends_on_a_way_out() {
        let g = graph(&EnvSpec::default()).unwrap();
        let db = g
            .steps()
            .find(|s| s.id().as_str() == "route-table:database")
            .unwrap();
        assert!(
            db.dependencies()
                .iter()
                .all(|d| !d.on.as_str().starts_with("nat-gateway")
                    && d.on.as_str() != "internet-gateway")
        );
    }
}
