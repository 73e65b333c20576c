//! Everything payops creates, by domain, and the registry that puts it in
//! one graph.
//!
//! The layout is the architecture:
//!
//! - foundation: `resource` (the contract every step kind implements),
//!   `context` (what a step sees), `connect` (opening AWS), `registry`,
//!   `model` (the shared vocabulary: functions, security groups, traffic
//!   colours, ports), `sdk` (per-service helpers), `traffic` (blue/green
//!   weights, read and set by `up`, `shift` and `status`);
//! - `common`: step kinds several domains instantiate (IAM role, log group,
//!   S3 bucket);
//! - the domains, in registry order: `security`, `network`, `data`,
//!   `events`, `database`, `compute`, `edge`, `observability`, `dns`,
//!   `compliance`, `config`. Each holds one
//!   file per step kind and registers its own steps (`register`);
//! - `baseline`: the account-and-region singletons every env shares
//!   (GuardDuty's detector), adopted or created, outside any env's graph;
//! - `inventory`: whole-account reads across domains (env discovery, the
//!   final sweep);
//! - `preflight`: what an env needs of the account (quotas, Lambda's
//!   concurrency pool, zones, credentials), checked before `up` creates
//!   anything.
//!
//! A domain imports the foundation, `common` and its own files, never another
//! domain's: what it needs of another domain's resources it reads through the
//! step context's outputs (a guard test below enforces this).

pub mod baseline;
mod common;
pub mod connect;
pub mod context;
pub mod durations;
pub mod inventory;
mod model;
pub mod preflight;
mod registry;
mod resource;
mod sdk;
pub mod traffic;
pub mod zones;

mod batch;
mod compliance;
mod compute;
mod config;
mod data;
mod database;
mod dns;
mod edge;
mod events;
mod network;
mod observability;
mod security;

#[cfg(test)]
mod layout_tests;
#[cfg(test)]
mod testing;

use crate::engine::{Graph, GraphError};
use crate::spec::EnvSpec;

/// The env's route for AWS Config's NON_COMPLIANT findings (tests ask
/// EventBridge itself whether it matches).
pub use compliance::compliance_rule::event_pattern as compliance_event_pattern;
pub use connect::{Aws, now};
pub use context::{Budgets, Context};
pub use inventory::{discovery, sweep};
pub use network::vpc::recorded_shape;
use registry::Registry;

/// The env's graph for `spec`. `down` builds it with the widest spec (a NAT
/// gateway per AZ) so that it removes whatever any spec could have created.
pub fn graph(spec: &EnvSpec) -> Result<Graph<Context>, GraphError> {
    Graph::new(registry(spec).into_steps())
}

/// Every domain's steps, in registry order (the order of reports).
fn registry(spec: &EnvSpec) -> Registry {
    let mut r = Registry::default();
    // Customer-managed keys first: everything below that stores data
    // encrypts it with one of them.
    r.domain("security", security::register);
    r.domain("network", |r| network::register(r, spec));
    r.domain("data", data::register);
    // The event backbone's queues: after the keys, before anything that
    // will produce to or consume from them.
    r.domain("events", events::register);
    r.domain("database", database::register);
    r.domain("compute", compute::register);
    // The batch tier: after the data it reads and writes and the network it
    // runs in.
    r.domain("batch", batch::register);
    // The transaction log's stream needs its transform function.
    r.domain("events", events::register_transaction_log);
    r.domain("database", database::register_rotation);
    r.domain("edge", |r| edge::register(r, spec));
    r.domain("observability", observability::register);
    // The private zone's failover records: after the ALBs they alias and
    // the alarms their health checks follow.
    r.domain("dns", dns::register);
    // AWS Config's rules and their remediation: after the function and the
    // topic they route to.
    r.domain("compliance", compliance::register);
    // Published last, from everything above.
    r.domain("config", config::register);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::model::Function;
    use crate::spec::NatMode;

    #[test]
    fn the_registry_is_a_valid_graph_in_both_nat_modes() {
        for nat in [NatMode::PerAz, NatMode::Single] {
            let spec = EnvSpec {
                nat,
                ..EnvSpec::default()
            };
            let g = graph(&spec).unwrap_or_else(|e| panic!("{nat:?}: {e}"));
            assert_eq!(g.len(), 173);
        }
    }

    /// The steps wanted with a shape option on but not with it off, sorted.
    fn left_out_by(set: fn(&mut EnvSpec, bool)) -> Vec<String> {
        let unwanted = |on: bool| -> Vec<String> {
            let mut cx = testing::context(testing::clients());
            set(&mut cx.spec, on);
            registry(&cx.spec)
                .into_steps()
                .iter()
                .filter(|s| !s.wanted(&cx))
                .map(|s| s.id().to_string())
                .collect()
        };
        let always = unwanted(true);
        let mut off: Vec<String> = unwanted(false)
            .into_iter()
            .filter(|s| !always.contains(s))
            .collect();
        off.sort();
        off
    }

    /// `--events off` leaves out the whole backbone, the transaction log
    /// with it (its stream, bucket, error log, role, transform function with
    /// its role and log group, and alarms), the queue consumer likewise, and
    /// nothing else; on, the default spec wants every step but
    /// those another shape option leaves out.
    #[test]
    fn the_event_backbone_off_leaves_out_exactly_its_steps() {
        assert_eq!(
            left_out_by(|spec, on| spec.events = on),
            [
                "alarm:payment-events-failed",
                "alarm:payments-analytics-dlq-not-empty",
                "alarm:payments-events-dlq-not-empty",
                "alarm:payments-processing-dlq-not-empty",
                "alarm:payments-processing-oldest-message",
                "alarm:queue-consumer-errors",
                "alarm:settlement-requests-failed",
                "alarm:transaction-log-freshness",
                "alarm:transaction-log-records-failed",
                "event-bus:payments",
                "event-rule:db-failover",
                "event-rule:payment-failed",
                "event-rule:payment-succeeded",
                "event-source-mapping:payments-processing",
                "firehose-stream:transaction-log",
                "iam-role:payment-queue-consumer",
                "iam-role:transaction-log-delivery",
                "iam-role:transaction-log-transform",
                "lambda-function:payment-queue-consumer",
                "lambda-function:transaction-log-transform",
                "log-group:payment-queue-consumer",
                "log-group:transaction-log-delivery",
                "log-group:transaction-log-transform",
                "s3-bucket:transaction-log",
                "sqs-queue:payments-analytics",
                "sqs-queue:payments-analytics-dlq",
                "sqs-queue:payments-events-dlq",
                "sqs-queue:payments-processing",
                "sqs-queue:payments-processing-dlq",
            ]
        );
    }

    /// `--batch off` (the default) leaves out the whole tier: the group, its
    /// template, profile, role, log group, security group, scaling
    /// policies and alarms, the EBS key and Auto Scaling's service-linked
    /// role, and the domain's parameters step; nothing else.
    #[test]
    fn batch_off_leaves_out_exactly_its_steps() {
        assert_eq!(
            left_out_by(|spec, on| spec.batch.on = on),
            [
                "alarm:batch-cpu-high",
                "alarm:batch-memory-high",
                "autoscaling-group:batch",
                "iam-role:batch",
                "instance-profile:batch",
                "kms-key:ebs",
                "launch-template:batch",
                "log-group:batch",
                "scaling-policy:batch-cpu",
                "scaling-policy:batch-memory",
                "security-group:batch",
                "service-linked-role:autoscaling",
                "ssm-parameters:batch",
            ]
        );
    }

    /// `--dns off` leaves out the private zone, its records, health checks
    /// and their alarms, the maintenance ALB the SECONDARY points at, and
    /// the domain's parameters step (else it would "create" an empty set on
    /// every `up`); nothing else.
    #[test]
    fn dns_off_leaves_out_exactly_its_steps() {
        assert_eq!(
            left_out_by(|spec, on| spec.dns = on),
            [
                "alarm:dns-maintenance",
                "alarm:dns-primary",
                "dns-records:payments",
                "health-check:payments-maintenance",
                "health-check:payments-primary",
                "hosted-zone:private",
                "listener:maintenance",
                "load-balancer:maintenance",
                "ssm-parameters:dns",
            ]
        );
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
        // Published as configuration like every other output, by the
        // observability domain's own step.
        let ssm = deps("ssm-parameters:observability");
        for id in [
            "dashboard",
            "alarm:api-5xx-rate",
            "alert-emails:failed-transactions",
        ] {
            assert!(ssm.iter().any(|d| d == id), "{id}");
        }
    }

    /// Each domain's outputs are published as soon as that domain is done:
    /// no parameters step waits for another domain's steps (so none waits
    /// for the slowest chain, the database's instances, unless it is the
    /// database's own).
    #[test]
    fn each_domains_parameters_wait_only_for_that_domain() {
        let r = registry(&EnvSpec::default());
        let domain_of: std::collections::HashMap<String, &str> = r
            .catalog()
            .into_iter()
            .map(|(id, _, domain)| (id.as_str().to_owned(), domain))
            .collect();
        let g = graph(&EnvSpec::default()).unwrap();
        let publishers: Vec<_> = g
            .steps()
            .filter(|s| s.id().as_str().starts_with("ssm-parameters:"))
            .collect();
        assert_eq!(publishers.len(), 11, "one per domain");
        for step in publishers {
            let domain = step.id().as_str().trim_start_matches("ssm-parameters:");
            for d in step.dependencies() {
                // The one exception, declared in config/mod.rs: the
                // card-hash key moves to the parameters key only once its
                // reader may decrypt with it.
                if step.id().as_str() == "ssm-parameters:security"
                    && d.on.as_str() == Function::Transaction.role_step()
                {
                    continue;
                }
                assert_eq!(
                    domain_of[d.on.as_str()],
                    domain,
                    "{} -> {}",
                    step.id(),
                    d.on
                );
            }
        }
    }

    /// A function caches the configuration it read (a missing name too) for
    /// the life of its container: whatever lets traffic reach a function
    /// waits until the parameters it reads are published.
    #[test]
    fn traffic_reaches_the_functions_only_after_their_configuration_is_published() {
        let g = graph(&EnvSpec::default()).unwrap();
        for entry in [
            "target-group:blue",
            "target-group:green",
            "rest-api:payments",
            "event-source-mapping:payments-processing",
        ] {
            let step = g.steps().find(|s| s.id().as_str() == entry).unwrap();
            for domain in model::FUNCTION_CONFIG_DOMAINS {
                let publisher = model::parameters_step(domain);
                assert!(
                    step.dependencies()
                        .iter()
                        .any(|d| d.on.as_str() == publisher),
                    "{entry} does not wait for {publisher}"
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
