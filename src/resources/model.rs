//! The env's shared vocabulary: the functions, the security groups, the
//! traffic colours and the constants several domains name.
//!
//! Nothing here is a step and nothing here imports a step: a domain that
//! needs to name another domain's resource (its step id, its output key, its
//! port) names it through these types, and reads its values through the step
//! context's outputs, never by importing the other domain's files.

use super::context::Context;
use crate::spec::Reserve;

/// The blue/green aliases of transaction processing, and the ALB target
/// groups named after them.
pub const BLUE: &str = "blue";
pub const GREEN: &str = "green";

/// Tag on the alarms `payops shift` watches before and while it moves
/// traffic (`true`).
pub const SHIFT_GATE: &str = "payops:shift-gate";

/// The HTTPS port the ALB listens on (and the NLB forwards).
pub const HTTPS_PORT: i32 = 443;

/// The REST API's one stage (also CloudWatch's `Stage` dimension).
pub const API_STAGE: &str = "v1";

/// The engine every payops database runs.
pub const DB_ENGINE: &str = "aurora-postgresql";
/// The database created in the cluster, and the port it listens on.
pub const DB_NAME: &str = "payments";
pub const DB_PORT: i32 = 5432;
/// The database user the payment functions connect as, through the RDS
/// Proxy with IAM authentication (their `rds-db:connect` grants name it).
/// Not the master user: the schema's migration gives it only what the
/// functions read.
pub const DB_APP_USER: &str = "payops_app";

/// The card-hash key: a SecureString under the env's parameter path, made
/// by the security domain's parameters step, read by transaction processing.
pub const PAN_HASH_KEY: &str = "secure/PanHashKey";

/// The step that publishes `domain`'s outputs as configuration parameters
/// (registered by the config domain, one per domain).
pub fn parameters_step(domain: &str) -> String {
    format!("ssm-parameters:{domain}")
}

/// The domains whose parameters the functions read at run time (the tables,
/// bucket, topic and keys of `lambda/*.py`'s `config(...)` calls, the bus,
/// and the PAN hash key the security domain's step generates). A function
/// caches what it read for the life of its container, a missing name
/// included, so every step that lets traffic reach a function depends on
/// these steps: its configuration is complete before the first request.
pub const FUNCTION_CONFIG_DOMAINS: [&str; 3] = ["security", "data", "events"];

/// The env's Lambda functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Function {
    Validation,
    Fraud,
    Transaction,
    /// Secrets Manager's rotation function for the Aurora master secret.
    Rotation,
    /// Settles payments from the processing queue (through an event source
    /// mapping); part of the event backbone, so only with `--events on`.
    QueueConsumer,
    /// Firehose's transformation of the transaction log (redacts and
    /// normalises records before they land in S3); part of the event
    /// backbone.
    LogTransform,
    /// The customer database's schema migration, invoked by `up` (step
    /// `db-schema`) and by nothing else.
    Migration,
    /// AWS Config's remediation: invoked by the env's compliance rule when
    /// one of the env's Config rules turns NON_COMPLIANT; re-creates the
    /// env's flow log, reports what it cannot fix (lambda/config_remediation.py).
    Remediation,
}

/// The remediation function's reserved executions. Config sends one event
/// per rule and resource whose compliance changes, in bursts when a rule is
/// first evaluated: two are enough (the fix is idempotent and a throttled
/// asynchronous invocation is retried by Lambda for up to six hours), and a
/// cap keeps a burst from taking the payment functions' pool.
pub const REMEDIATION_RESERVED: u32 = 2;
/// What the remediation function is told in its environment, by variable:
/// (step, output). The env's VPC is the only one it may fix, with the env's
/// flow-log group and role (the `flow-logs` step's), and it reports to the
/// system-errors topic, where the env's alerts go.
pub const REMEDIATION_INPUTS: [(&str, (&str, &str)); 4] = [
    ("PAYOPS_VPC_ID", ("vpc", "VpcId")),
    (
        "PAYOPS_FLOW_LOG_GROUP",
        ("log-group:flow-logs", "FlowLogsLogGroupName"),
    ),
    (
        "PAYOPS_FLOW_LOGS_ROLE_ARN",
        ("iam-role:flow-logs", "FlowLogsRoleArn"),
    ),
    (
        "PAYOPS_COMPLIANCE_TOPIC_ARN",
        ("sns-topic:system-errors", "SystemErrorsTopicArn"),
    ),
];
/// The env's Config rule the remediation fixes (`payops-<env>-<check>`,
/// managed rule VPC_FLOW_LOGS_ENABLED).
pub const FLOW_LOGS_CHECK: &str = "vpc-flow-logs-enabled";

/// The remediation's function timeout, in seconds: a DescribeFlowLogs, a
/// CreateFlowLogs and an SNS publish.
pub const REMEDIATION_TIMEOUT_S: i32 = 60;

/// The migration's reserved executions: one. Migrations are serialised
/// anyway (an advisory lock), and a cap of one keeps a stray invocation
/// from ever holding more than one proxy connection as the master user.
pub const MIGRATION_RESERVED: u32 = 1;
/// The migration's function timeout, in seconds: DDL may wait for locks that
/// a lookup never takes, and `up` waits for the answer (RequestResponse).
pub const MIGRATION_TIMEOUT_S: i32 = 120;

/// The transform function's reserved executions. Firehose invokes it
/// synchronously, at most a few invocations at a time per stream; a cap
/// keeps a burst of a busy stream from taking the payment functions' pool.
pub const LOG_TRANSFORM_RESERVED: u32 = 5;
/// The transform's function timeout, in seconds: Firehose allows at most
/// 5 minutes (300 s) for a transform (Firehose developer guide,
/// data-transformation), and a buffer of at most 1 MB of small records takes
/// well under a second.
pub const LOG_TRANSFORM_TIMEOUT_S: i32 = 60;
const _: () = assert!(LOG_TRANSFORM_TIMEOUT_S <= 300);
/// The transaction log stream's S3 buffer interval, in seconds (AWS's
/// default; 0-900 allowed): its data-freshness alarm is derived from it.
pub const DELIVERY_BUFFER_INTERVAL_S: i32 = 300;

/// The queue consumer's function timeout, in seconds. Lambda refuses an
/// event source mapping whose queue's visibility timeout is below the
/// function's ("Queue visibility timeout: 60 seconds is less than Function
/// timeout: 120 seconds"), and AWS advises six times the function timeout
/// plus the batching window, so the processing queue's visibility timeout is
/// derived from this one number.
pub const QUEUE_CONSUMER_TIMEOUT_S: i32 = 30;
/// The queue consumer's reserved executions (see `reserved_concurrency`).
pub const QUEUE_CONSUMER_RESERVED: u32 = 5;
/// The consumer mapping's batching window, in seconds (see the mapping).
pub const QUEUE_CONSUMER_BATCH_WINDOW_S: i32 = 0;
/// The processing queue's visibility timeout: AWS's advice of six function
/// timeouts plus the batching window.
pub const PROCESSING_VISIBILITY_TIMEOUT_S: i32 =
    6 * QUEUE_CONSUMER_TIMEOUT_S + QUEUE_CONSUMER_BATCH_WINDOW_S;
const _: () = assert!(PROCESSING_VISIBILITY_TIMEOUT_S >= QUEUE_CONSUMER_TIMEOUT_S);

impl Function {
    pub const ALL: [Function; 8] = [
        Self::Validation,
        Self::Fraud,
        Self::Transaction,
        Self::Rotation,
        Self::QueueConsumer,
        Self::LogTransform,
        Self::Migration,
        Self::Remediation,
    ];

    /// Names the function, its role and its log group: `payment-validation`.
    pub fn slug(self) -> &'static str {
        match self {
            Self::Validation => "payment-validation",
            Self::Fraud => "fraud-detection",
            Self::Transaction => "transaction-processing",
            Self::Rotation => "secret-rotation",
            Self::QueueConsumer => "payment-queue-consumer",
            Self::LogTransform => "transaction-log-transform",
            Self::Migration => "db-migration",
            Self::Remediation => "config-remediation",
        }
    }

    pub fn step_id(self) -> String {
        format!("lambda-function:{}", self.slug())
    }

    pub fn role_step(self) -> String {
        format!("iam-role:{}", self.slug())
    }

    pub fn log_step(self) -> String {
        format!("log-group:{}", self.slug())
    }

    /// `Validation`: outputs are `ValidationFunctionArn`, `ValidationRoleArn`, ...
    pub fn output_prefix(self) -> &'static str {
        match self {
            Self::Validation => "Validation",
            Self::Fraud => "Fraud",
            Self::Transaction => "Transaction",
            Self::Rotation => "Rotation",
            Self::QueueConsumer => "QueueConsumer",
            Self::LogTransform => "LogTransform",
            Self::Migration => "DbMigration",
            Self::Remediation => "ConfigRemediation",
        }
    }

    pub fn arn_output(self) -> String {
        format!("{}FunctionArn", self.output_prefix())
    }

    pub fn name(self, cx: &Context) -> String {
        cx.names.function(self.slug())
    }

    /// Whether the env's spec wants this function (and its role and log
    /// group): the queue consumer only with the event backbone.
    pub fn wanted(self, cx: &Context) -> bool {
        match self {
            Self::QueueConsumer | Self::LogTransform => cx.spec.events,
            _ => true,
        }
    }

    /// The security group of its network interfaces in the private subnets,
    /// or `None`: the function runs outside the VPC. Rotation calls only the
    /// Secrets Manager and RDS control-plane APIs (no database driver, see
    /// lambda/secret_rotation.py), so it needs no VPC; out of it, Lambda holds
    /// no network interfaces for it, which on teardown would keep the
    /// database subnets and a group in use for up to 45 minutes.
    pub fn security_group(self) -> Option<SgRole> {
        match self {
            // The transform makes no network call at all: Firehose hands it
            // the records and takes its answer. The remediation calls only
            // the EC2 and SNS APIs.
            Self::Rotation | Self::LogTransform | Self::Remediation => None,
            // The migration logs in as the master user and reads
            // payops_app's secret: its own group, so that the proxy's
            // ingress names it apart and nothing else shares its egress.
            Self::Migration => Some(SgRole::Migration),
            _ => Some(SgRole::Lambda),
        }
    }

    /// The executions this function reserves, if any. Rotation reserves
    /// none: Secrets Manager runs one rotation of a secret at a time (a second
    /// one is refused while the first is in progress), so there is nothing to
    /// cap, and a reservation of its own would only take from an account's
    /// pool (new accounts cannot reserve at all). The payment functions
    /// reserve the spec's numbers unless the operator said `none`, or said
    /// `auto` and preflight found the account cannot hold them.
    pub fn reserved_concurrency(self, cx: &Context) -> Option<u32> {
        let c = cx.spec.concurrency;
        let reserve = match c.reserve {
            Reserve::Always => true,
            Reserve::IfItFits => cx.auto_reservations_fit,
            Reserve::Never => false,
        };
        match self {
            _ if !reserve => None,
            Self::Validation => Some(c.validation),
            Self::Fraud => Some(c.fraud),
            Self::Transaction => Some(c.transaction),
            // Not one of the spec's numbers (those size the request path):
            // the least AWS advises for a function behind an SQS mapping,
            // whose pollers start at five concurrent batches (fewer
            // throttles them, and throttled batches count as receives
            // towards the DLQ). It also caps how fast a backlog is written
            // into the transactions table.
            Self::QueueConsumer => Some(QUEUE_CONSUMER_RESERVED),
            Self::LogTransform => Some(LOG_TRANSFORM_RESERVED),
            Self::Migration => Some(MIGRATION_RESERVED),
            Self::Remediation => Some(REMEDIATION_RESERVED),
            Self::Rotation => None,
        }
    }

    /// Only transaction processing sits behind the blue/green target groups.
    pub fn has_slots(self) -> bool {
        self == Self::Transaction
    }
}

/// The env's security groups, by what uses them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SgRole {
    Alb,
    Nlb,
    Lambda,
    Database,
    /// The RDS Proxy: the functions reach the database only through it.
    Proxy,
    /// The schema migration function's own group: the proxy and Secrets
    /// Manager (through the NAT gateways), nothing the payment functions
    /// reach, and a peer the proxy group admits by name.
    Migration,
    /// Retired: the rotation function's group from when it ran in the VPC.
    /// Envs made by an older payops still have it (with the database group's
    /// ingress rule from it, and Lambda's interfaces while the function is
    /// attached): `up` and `down` remove it, no step creates it.
    Rotation,
    /// The batch tier's instances: no inbound rule at all (SSM Session
    /// Manager instead of SSH), HTTPS out only.
    Batch,
}

impl SgRole {
    pub const ALL: [SgRole; 8] = [
        Self::Alb,
        Self::Nlb,
        Self::Lambda,
        Self::Database,
        Self::Proxy,
        Self::Migration,
        Self::Rotation,
        Self::Batch,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alb => "alb",
            Self::Nlb => "nlb",
            Self::Lambda => "lambda",
            Self::Database => "database",
            Self::Proxy => "db-proxy",
            Self::Migration => "db-migration",
            Self::Rotation => "rotation",
            Self::Batch => "batch",
        }
    }

    pub fn step_id(self) -> String {
        format!("security-group:{}", self.as_str())
    }

    /// A group payops no longer creates, kept in the graph only so that `up`
    /// and `down` remove it from envs made before.
    pub fn retired(self) -> bool {
        self == Self::Rotation
    }

    /// Every group in which Lambda may hold network interfaces for a function
    /// of the env: the groups the functions use, and the retired groups a
    /// function used before (the rotation function's, in an env made by an
    /// older payops). `down` waits for those interfaces to go before any
    /// function's role, and before the groups and subnets.
    pub fn of_functions() -> Vec<SgRole> {
        let mut roles: Vec<SgRole> = Function::ALL
            .iter()
            .filter_map(|f| f.security_group())
            .chain([Self::Rotation])
            .collect();
        roles.sort();
        roles.dedup();
        roles
    }

    pub fn output_key(self) -> &'static str {
        match self {
            Self::Alb => "AlbSecurityGroupId",
            Self::Nlb => "NlbSecurityGroupId",
            Self::Lambda => "LambdaSecurityGroupId",
            Self::Database => "DatabaseSecurityGroupId",
            Self::Proxy => "DbProxySecurityGroupId",
            Self::Migration => "DbMigrationSecurityGroupId",
            Self::Rotation => "RotationSecurityGroupId",
            Self::Batch => "BatchSecurityGroupId",
        }
    }
}
