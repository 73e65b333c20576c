//! Network: the VPC and its subnets, gateways and route tables, the
//! gateway endpoints, the security groups and their rules, and VPC flow logs.

pub mod flow_log;
pub mod internet_gateway;
pub mod nat_gateway;
pub mod retired_security_group;
pub mod route_table;
pub mod security_group;
pub mod security_group_rules;
pub mod subnets;
pub mod vpc;
pub mod vpc_endpoint;

use crate::spec::{AZ_COUNT, AZ_LABELS, EnvSpec, Tier};

use super::common::log_group;
use super::model::SgRole;
use super::registry::{Registry, dep};
use route_table::RouteTable;

pub fn register(r: &mut Registry, spec: &EnvSpec) {
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
        let deps = vec![dep("vpc", "security groups belong to the VPC")];
        if role.retired() {
            // Found and removed in envs made before, never created.
            r.add_step(retired_security_group::RetiredSecurityGroup::new(
                role, deps,
            ));
        } else {
            r.add(
                role.step_id(),
                security_group::SecurityGroup::new(role),
                deps,
            );
        }
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
}
