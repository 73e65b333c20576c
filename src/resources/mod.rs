//! Everything payops creates, one file per resource type, and the registry:
//! the readable list of steps and why each depends on what it does.

mod alarms;
mod alert_subscriptions;
mod api_account;
mod api_definition;
mod aurora_cluster;
mod aurora_instance;
mod certificate;
pub mod connect;
pub mod context;
mod dashboard;
mod db_parameter_group;
mod db_secret;
mod db_subnet_group;
pub mod discovery;
mod dynamodb_table;
mod ec2;
mod elb;
mod flow_log;
mod function_roles;
mod iam_role;
mod internet_gateway;
mod kms_key;
mod lambda_code;
mod lambda_enis;
mod lambda_function;
mod listener;
mod load_balancer;
mod log_group;
mod monitoring;
mod nat_gateway;
mod rds;
mod resource;
mod rest_api;
mod route_table;
mod s3_bucket;
mod secret_rotation;
mod security_group;
mod security_group_rules;
mod sns_topic;
mod ssm_parameters;
mod subnets;
pub mod sweep;
mod target_group;
pub mod traffic;
mod vpc;
mod vpc_endpoint;
mod vpc_link;

#[cfg(test)]
mod testing;

use crate::engine::{Dependency, Graph, GraphError, Step, StepId};
use crate::naming::KEY_PURPOSES;
use crate::spec::{AZ_COUNT, AZ_LABELS, Certificate, EnvSpec, Tier};

pub use connect::{Aws, now};
pub use context::{Budgets, Context};
use lambda_function::Function;
use listener::ListenerKind;
use load_balancer::LbKind;
use resource::{Node, Resource};
use route_table::RouteTable;
use security_group::SgRole;
use target_group::TgKind;
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

    /// A step that is not a resource (a wait between resources).
    fn add_step(&mut self, step: impl Step<Context> + 'static) {
        self.steps.push(Box::new(step));
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
        s3_bucket::Bucket::audit(),
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
        "secret:db-master",
        db_secret::GeneratedSecret,
        vec![dep(
            "kms-key:logs",
            "the secret is encrypted with the logs/secrets key",
        )],
    );
    r.add(
        "aurora-cluster",
        aurora_cluster::AuroraCluster,
        vec![
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
                "security-group-rules",
                "only the functions and the rotation function may reach PostgreSQL",
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
            vec![dep(
                "aurora-cluster",
                "an instance joins the cluster; AWS deletes a cluster only once its instances \
                 are gone",
            )],
        );
    }

    // Compute: the payment functions. Each gets a log group payops creates
    // first (so its retention and KMS key are ours, not Lambda's defaults) and
    // a role allowed exactly what the function touches.
    for f in Function::ALL {
        r.add(
            f.log_step(),
            f.log_group(),
            vec![dep(
                "kms-key:logs",
                "the group is encrypted with the logs key, whose policy lets CloudWatch Logs use it",
            )],
        );
    }
    let own_log_group = |f: Function| {
        dep(
            f.log_step(),
            "the role may write only to the function's own log group (its ARN is in the policy)",
        )
    };
    r.add(
        Function::Validation.role_step(),
        function_roles::role(Function::Validation),
        vec![own_log_group(Function::Validation)],
    );
    r.add(
        Function::Fraud.role_step(),
        function_roles::role(Function::Fraud),
        vec![
            own_log_group(Function::Fraud),
            dep(
                "dynamodb-table:fraud-rules",
                "the role may read the fraud-rules table (its ARN is in the policy)",
            ),
            dep(
                "dynamodb-table:transactions",
                "the role may query the transactions table's customer index only",
            ),
            dep(
                "kms-key:dynamodb",
                "the role may decrypt with the tables' key, through DynamoDB only",
            ),
        ],
    );
    r.add(
        Function::Transaction.role_step(),
        function_roles::role(Function::Transaction),
        vec![
            own_log_group(Function::Transaction),
            dep(
                "dynamodb-table:transactions",
                "the role may write transactions (the table's ARN is in the policy)",
            ),
            dep(
                "s3-bucket:audit",
                "the role may write audit records under the bucket's audit prefix",
            ),
            dep(
                "sns-topic:failed-transactions",
                "the role may publish failed payments to this topic",
            ),
            dep(
                "kms-key:dynamodb",
                "the role may use the tables' key, through DynamoDB only",
            ),
            dep(
                "kms-key:s3",
                "the role may encrypt audit records with the bucket's key, through S3 only",
            ),
            dep(
                "kms-key:logs",
                "the topic and the card-hash SecureString are encrypted with the logs key",
            ),
        ],
    );
    r.add(
        Function::Rotation.role_step(),
        function_roles::role(Function::Rotation),
        vec![
            own_log_group(Function::Rotation),
            dep(
                "kms-key:logs",
                "the role may decrypt and encrypt the secret's values with the logs/secrets key",
            ),
        ],
    );
    let mut eni_deps = vec![
        dep(
            "security-group:lambda",
            "the functions' network interfaces use this group: on teardown it can go only \
             after Lambda released them (20-45 minutes on AWS)",
        ),
        dep(
            SgRole::Rotation.step_id(),
            "the rotation function's network interfaces use this group: on teardown it can go \
             only after Lambda released them",
        ),
        dep(
            "subnets:private",
            "the functions' network interfaces are in these subnets: on teardown they can go \
             only after Lambda released them",
        ),
    ];
    eni_deps.extend(Function::ALL.map(|f| {
        dep(
            f.role_step(),
            "Lambda releases the network interfaces with the function's role: on teardown the \
             roles stay until the interfaces are gone",
        )
    }));
    r.add_step(lambda_enis::LambdaEnis::new("lambda-enis", eni_deps));
    for f in Function::ALL {
        r.add(
            f.step_id(),
            lambda_function::LambdaFunction::new(f),
            vec![
                dep(f.role_step(), "the function runs with this role"),
                dep(
                    f.log_step(),
                    "the function logs to this group, which must exist (with retention and \
                     KMS) before Lambda would create one of its own",
                ),
                dep(
                    "subnets:private",
                    "the function's network interfaces go in the private subnets",
                ),
                dep(
                    f.security_group().step_id(),
                    "the function's network interfaces use its security group",
                ),
                dep(
                    "security-group-rules",
                    "the group's egress rules let the function reach the AWS APIs it calls",
                ),
                dep(
                    "lambda-enis",
                    "on teardown the functions go first, then the wait for their network \
                     interfaces",
                ),
            ],
        );
    }

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

    // Traffic: API Gateway -> VPC link -> internal NLB -> internal ALB ->
    // blue/green target groups -> the transaction function's aliases.
    r.add("s3-bucket:alb-logs", s3_bucket::Bucket::alb_logs(), vec![]);
    r.add(
        "load-balancer:alb",
        load_balancer::LoadBalancer::new(LbKind::Alb),
        vec![
            dep(
                "subnets:private",
                "the internal ALB lives in the private subnets",
            ),
            dep("security-group:alb", "the ALB uses the ALB security group"),
            dep(
                "s3-bucket:alb-logs",
                "access logs go to this bucket, whose policy must let ELB write before they are \
                 turned on",
            ),
        ],
    );
    let self_signed = spec.certificate == Certificate::SelfSigned;
    r.add(
        "acm-certificate:alb",
        certificate::SelfSignedCertificate,
        if self_signed {
            vec![]
        } else {
            vec![dep(
                "listener:alb-https",
                "with --certificate-arn the listener moves to the operator's certificate before \
                 payops' self-signed one is removed",
            )]
        },
    );
    for kind in [TgKind::Blue, TgKind::Green] {
        let id = if kind == TgKind::Blue {
            "target-group:blue"
        } else {
            "target-group:green"
        };
        r.add(
            id,
            target_group::TargetGroup::new(kind),
            vec![dep(
                Function::Transaction.step_id(),
                "the group's only target is the transaction function's alias of the same name",
            )],
        );
    }
    let mut listener_deps = vec![
        dep("load-balancer:alb", "the listener belongs to the ALB"),
        dep(
            "target-group:blue",
            "the listener forwards to the blue target group",
        ),
        dep(
            "target-group:green",
            "the listener forwards to the green target group",
        ),
    ];
    if self_signed {
        listener_deps.push(dep(
            "acm-certificate:alb",
            "the HTTPS listener presents this certificate",
        ));
    }
    r.add(
        "listener:alb-https",
        listener::Listener::new(ListenerKind::AlbHttps),
        listener_deps,
    );
    r.add(
        "load-balancer:nlb",
        load_balancer::LoadBalancer::new(LbKind::Nlb),
        vec![
            dep(
                "subnets:private",
                "the internal NLB lives in the private subnets",
            ),
            dep("security-group:nlb", "the NLB uses the NLB security group"),
        ],
    );
    r.add(
        "target-group:alb",
        target_group::TargetGroup::new(TgKind::Alb),
        vec![
            dep("vpc", "a target group of type alb belongs to the VPC"),
            dep("load-balancer:alb", "the group's only target is the ALB"),
            dep(
                "listener:alb-https",
                "AWS registers an ALB as a target only once it listens on the group's port",
            ),
        ],
    );
    r.add(
        "listener:nlb-tcp",
        listener::Listener::new(ListenerKind::NlbTcp),
        vec![
            dep("load-balancer:nlb", "the listener belongs to the NLB"),
            dep(
                "target-group:alb",
                "the listener forwards to the ALB's target group",
            ),
        ],
    );
    r.add(
        "vpc-link",
        vpc_link::VpcLink,
        vec![dep(
            "load-balancer:nlb",
            "a REST API VPC link targets an NLB; it takes ~12 minutes on AWS, so it starts as \
             soon as the NLB exists",
        )],
    );
    r.add(
        "log-group:api-access",
        log_group::LogGroup::new("api-gateway/access", 365, "ApiAccess"),
        vec![dep(
            "kms-key:logs",
            "the group is encrypted with the logs key, whose policy lets CloudWatch Logs use it",
        )],
    );
    r.add(
        "rest-api:payments",
        rest_api::RestApi,
        vec![
            dep(
                Function::Validation.step_id(),
                "POST /payments/validate invokes the validation function",
            ),
            dep(
                Function::Fraud.step_id(),
                "POST /payments/fraud-check invokes the fraud detection function",
            ),
            dep("vpc-link", "POST /payments goes through the VPC link"),
            dep(
                "load-balancer:nlb",
                "the integration URI names the NLB (and on teardown the API goes first)",
            ),
            dep(
                "listener:nlb-tcp",
                "requests through the VPC link need the NLB's listener",
            ),
            dep(
                "log-group:api-access",
                "stage v1 writes its access logs to this group",
            ),
        ],
    );

    // Observability: the dashboard, the alarms and who hears of them. Names
    // that are deterministic (API, functions, tables, the Aurora cluster
    // `payops-<env>-aurora`) need no edge: graphs and alarms of a resource
    // that does not exist yet simply show no data.
    r.add(
        "dashboard",
        dashboard::Dashboard,
        vec![
            dep(
                monitoring::ALB_INPUT.0,
                "the ALB graphs' LoadBalancer dimension (app/<name>/<id>) comes from the ALB's ARN",
            ),
            dep(
                monitoring::BLUE_INPUT.0,
                "the blue graphs' TargetGroup dimension (targetgroup/<name>/<id>) comes from its ARN",
            ),
            dep(
                monitoring::GREEN_INPUT.0,
                "the green graphs' TargetGroup dimension (targetgroup/<name>/<id>) comes from its ARN",
            ),
        ],
    );
    for alarm in alarms::Alarm::ALL {
        let mut deps = vec![dep(
            alarm.topic().input().0,
            "the alarm notifies this topic (AlarmActions and OKActions are its ARN)",
        )];
        if alarm.needs_alb() {
            deps.push(dep(
                monitoring::ALB_INPUT.0,
                "the alarm's LoadBalancer dimension (app/<name>/<id>) comes from the ALB's ARN",
            ));
        }
        r.add(alarm.step_id(), alarms::AlarmStep::new(alarm), deps);
    }
    for topic in ["failed-transactions", "system-errors"] {
        r.add(
            alert_subscriptions::AlertSubscriptions::step_id(topic),
            alert_subscriptions::AlertSubscriptions::new(topic),
            vec![dep(
                format!("sns-topic:{topic}"),
                "the email subscriptions belong to the topic (and payops checks it is the env's)",
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
            assert_eq!(g.len(), 81);
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
    fn observability_steps_wait_for_what_their_dimensions_and_actions_name() {
        let g = graph(&EnvSpec::default()).unwrap();
        let deps = |id: &str| -> Vec<String> {
            g.steps()
                .find(|s| s.id().as_str() == id)
                .unwrap_or_else(|| panic!("no step {id}"))
                .dependencies()
                .iter()
                .map(|d| d.on.as_str().to_owned())
                .collect()
        };
        assert_eq!(
            deps("dashboard"),
            [
                "load-balancer:alb",
                "target-group:blue",
                "target-group:green"
            ]
        );
        assert_eq!(
            deps("alarm:api-p99-latency"),
            ["sns-topic:failed-transactions"]
        );
        assert_eq!(
            deps("alarm:alb-5xx"),
            ["sns-topic:system-errors", "load-balancer:alb"]
        );
        assert_eq!(
            deps("alert-emails:system-errors"),
            ["sns-topic:system-errors"]
        );
        // The Aurora cluster is found by its deterministic identifier.
        assert!(
            deps("alarm:aurora-replica-lag")
                .iter()
                .all(|d| !d.contains("aurora"))
        );
        // Published as configuration like every other output.
        let ssm = deps("ssm-parameters");
        for id in [
            "dashboard",
            "alarm:api-5xx-rate",
            "alert-emails:failed-transactions",
        ] {
            assert!(ssm.iter().any(|d| d == id), "{id}");
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

    #[test]
    fn down_removes_every_aurora_instance_before_the_cluster_and_the_cluster_before_its_secret() {
        let g = graph(&EnvSpec::default()).unwrap();
        let deps = |id: &str| -> Vec<String> {
            g.steps()
                .find(|s| s.id().as_str() == id)
                .unwrap_or_else(|| panic!("no step {id}"))
                .dependencies()
                .iter()
                .map(|d| d.on.as_str().to_owned())
                .collect()
        };
        // `down` walks the graph in reverse: a step goes before what it depends on.
        let instances: Vec<_> = g
            .steps()
            .filter(|s| s.id().as_str().starts_with("aurora-instance:"))
            .collect();
        assert_eq!(
            instances.len(),
            usize::from(crate::spec::Database::MAX_READERS) + 1
        );
        for i in instances {
            assert!(deps(i.id().as_str()).contains(&"aurora-cluster".to_owned()));
        }
        let cluster = deps("aurora-cluster");
        for needed in [
            "secret:db-master",
            "db-subnet-group",
            "db-parameter-group",
            "security-group:database",
        ] {
            assert!(cluster.contains(&needed.to_owned()), "{needed}");
        }
        assert!(deps("secret-rotation:db-master").contains(&"aurora-cluster".to_owned()));
    }
}
