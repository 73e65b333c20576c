//! The env's CloudWatch alarms, one step each (`alarm:<slug>`), named
//! `payops-<env>-<slug>`, notifying an SNS topic of the env when they fire
//! and when they recover.
//!
//! Every alarm is defined in one table ([`Alarm::definition`]): what it
//! watches, when it fires, what missing data means for it (and why), which
//! topic hears of it, and whether it gates `payops shift`. The request-path
//! alarms (API p99 latency and 5XX rate, transaction errors and throttles,
//! ALB 5XX) carry the tag `payops:shift-gate=true`: `payops shift` stops and
//! sends traffic back to blue when one of them is in ALARM.
//!
//! PutMetricAlarm overwrites the whole alarm, so `fix` simply puts the
//! definition again; `diff` compares every field payops sets with what
//! DescribeAlarms answers. Tags are accepted by PutMetricAlarm only when it
//! creates the alarm, so they are repaired with TagResource, and checked with
//! ListTagsForResource before an alarm of our name is adopted. PutMetricAlarm
//! has no create-only mode: an alarm someone creates under our name between
//! `find` and `create` would be overwritten (a window of milliseconds).
//!
//! Real-AWS rules encoded here (emulators accept their violations): a metric
//! alarm watches either a Statistic or an ExtendedStatistic, never both; an
//! alarm on metric math references at most 10 metrics and returns exactly one
//! series; EvaluationPeriods x Period is at most one day; DatapointsToAlarm is
//! at most EvaluationPeriods.

use std::fmt;

use async_trait::async_trait;
use aws_sdk_cloudwatch::types::{
    AlarmType, ComparisonOperator, Dimension, Metric, MetricAlarm, MetricDataQuery, MetricStat,
    Statistic,
};

use crate::aws::{AwsError, OpResult, absent_on};
use crate::engine::{Record, StepCx};
use crate::tags::TagMap;

use crate::resources::context::Context;
use crate::resources::model::{DELIVERY_BUFFER_INTERVAL_S, Function, SHIFT_GATE};
use crate::resources::observability::monitoring::{
    self, ALB_INPUT, DYNAMODB_OPERATIONS, MAINTENANCE_ALB_INPUT,
};
use crate::resources::resource::Resource;
use crate::resources::sdk::cloudwatch;
use crate::tags::describe_tag_fix;

/// DeleteAlarms' answer for a name that is not there.
const NOT_FOUND: [&str; 2] = ["ResourceNotFound", "ResourceNotFoundException"];

/// The topic an alarm notifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topic {
    FailedTransactions,
    SystemErrors,
}

impl Topic {
    /// The step that makes it and the output holding its ARN.
    pub fn input(self) -> (&'static str, &'static str) {
        match self {
            Self::FailedTransactions => (
                "sns-topic:failed-transactions",
                "FailedTransactionsTopicArn",
            ),
            Self::SystemErrors => ("sns-topic:system-errors", "SystemErrorsTopicArn"),
        }
    }
}

/// The namespace of the metrics the payment functions write themselves (as
/// embedded-metric log lines): `METRICS_NAMESPACE` in
/// lambda/transaction_processing.py.
const PAYMENT_METRICS_NAMESPACE: &str = "payops";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alarm {
    ApiP99Latency,
    Api5xxRate,
    TransactionErrors,
    TransactionThrottles,
    AuroraCpu,
    AuroraReplicaLag,
    AuroraAcuUtilization,
    TransactionsTableThrottles,
    FraudRulesTableThrottles,
    Alb5xx,
    WafBlockedSpike,
    ProcessingDlqNotEmpty,
    AnalyticsDlqNotEmpty,
    ProcessingOldestMessage,
    PaymentEventsFailed,
    EventsDlqNotEmpty,
    QueueConsumerErrors,
    TransactionLogFreshness,
    SettlementRequestsFailed,
    TransactionLogRecordsFailed,
    /// The batch tier's instances (`--batch on`): CPU and memory used.
    BatchCpuHigh,
    BatchMemoryHigh,
    /// The health check of the payments PRIMARY record (Route 53 cannot
    /// probe an internal ALB: `dns::health_check`).
    DnsPrimary,
    /// The health check of the maintenance SECONDARY record.
    DnsMaintenance,
}

/// What missing data means to an alarm (PutMetricAlarm's TreatMissingData).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missing {
    NotBreaching,
    Breaching,
}

impl Missing {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotBreaching => "notBreaching",
            Self::Breaching => "breaching",
        }
    }
}

/// One metric: namespace, name, dimensions (sorted by name).
#[derive(Clone, Debug, PartialEq)]
pub struct MetricId {
    pub namespace: String,
    pub name: String,
    pub dimensions: Vec<(String, String)>,
}

impl MetricId {
    fn new(namespace: &str, name: &str, dims: &[(&str, &str)]) -> Self {
        let mut dimensions: Vec<(String, String)> = dims
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        dimensions.sort();
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            dimensions,
        }
    }

    fn sdk_dimensions(&self) -> Vec<Dimension> {
        self.dimensions
            .iter()
            .map(|(k, v)| Dimension::builder().name(k).value(v).build())
            .collect()
    }

    fn from_sdk(namespace: Option<&str>, name: Option<&str>, dims: &[Dimension]) -> Self {
        let mut dimensions: Vec<(String, String)> = dims
            .iter()
            .map(|d| {
                (
                    d.name().unwrap_or_default().to_owned(),
                    d.value().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        dimensions.sort();
        Self {
            namespace: namespace.unwrap_or_default().to_owned(),
            name: name.unwrap_or_default().to_owned(),
            dimensions,
        }
    }
}

/// One entry of a metric-math alarm: a metric (with its period and
/// statistic) or an expression over them.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    pub id: String,
    pub metric: Option<(MetricId, i32, String)>,
    pub expression: Option<String>,
    pub return_data: bool,
}

/// What an alarm watches.
#[derive(Clone, Debug, PartialEq)]
pub enum Watch {
    /// One metric. Desired definitions set exactly one of `statistic` and
    /// `extended_statistic`; what AWS answers may (on an emulator) have both.
    Metric {
        metric: MetricId,
        statistic: Option<Statistic>,
        extended_statistic: Option<String>,
        period: i32,
    },
    /// Metric math: the entry with `return_data` is what the alarm watches.
    Math(Vec<Query>),
}

/// Everything payops sets on an alarm, in a form that compares equal to what
/// DescribeAlarms answers for it.
#[derive(Clone, Debug, PartialEq)]
pub struct Definition {
    pub description: String,
    pub watch: Watch,
    pub comparison: ComparisonOperator,
    pub threshold: f64,
    pub evaluation_periods: i32,
    pub datapoints_to_alarm: Option<i32>,
    pub treat_missing_data: Option<String>,
    /// Only for percentiles: what to do with too few samples to compute one.
    pub evaluate_low_sample_count_percentile: Option<String>,
    pub actions_enabled: bool,
    /// Sorted.
    pub alarm_actions: Vec<String>,
    pub ok_actions: Vec<String>,
    pub insufficient_data_actions: Vec<String>,
}

/// How an alarm fires, in [`Alarm::definition`]'s table.
struct Rule {
    comparison: ComparisonOperator,
    threshold: f64,
    period: i32,
    evaluation_periods: i32,
    datapoints_to_alarm: i32,
    missing: Missing,
}

impl Rule {
    /// Fires on a single occurrence in a minute and clears with a clean
    /// minute; no data is nothing to report (notBreaching).
    fn at_least_once_in_a_minute() -> Self {
        Self {
            comparison: ComparisonOperator::GreaterThanOrEqualToThreshold,
            threshold: 1.0,
            period: 60,
            evaluation_periods: 1,
            datapoints_to_alarm: 1,
            missing: Missing::NotBreaching,
        }
    }
}

fn single(metric: MetricId, stat: Statistic, period: i32) -> Watch {
    Watch::Metric {
        metric,
        statistic: Some(stat),
        extended_statistic: None,
        period,
    }
}

fn percentile(metric: MetricId, p: &str, period: i32) -> Watch {
    Watch::Metric {
        metric,
        statistic: None,
        extended_statistic: Some(p.to_owned()),
        period,
    }
}

/// The sum of `metrics` (each summed per period): one series, as an alarm
/// needs. SUM over METRICS() adds whatever series have data in a period, so
/// a metric with no data (no throttles on Scan) does not blank the sum.
fn sum_of(metrics: Vec<MetricId>, period: i32) -> Watch {
    let mut queries: Vec<Query> = metrics
        .into_iter()
        .enumerate()
        .map(|(i, m)| Query {
            id: format!("m{i}"),
            metric: Some((m, period, "Sum".to_owned())),
            expression: None,
            return_data: false,
        })
        .collect();
    queries.push(Query {
        id: "total".to_owned(),
        metric: None,
        expression: Some("SUM(METRICS())".to_owned()),
        return_data: true,
    });
    Watch::Math(queries)
}

impl Alarm {
    pub const ALL: [Alarm; 24] = [
        Self::ApiP99Latency,
        Self::Api5xxRate,
        Self::TransactionErrors,
        Self::TransactionThrottles,
        Self::AuroraCpu,
        Self::AuroraReplicaLag,
        Self::AuroraAcuUtilization,
        Self::TransactionsTableThrottles,
        Self::FraudRulesTableThrottles,
        Self::Alb5xx,
        Self::WafBlockedSpike,
        Self::ProcessingDlqNotEmpty,
        Self::AnalyticsDlqNotEmpty,
        Self::ProcessingOldestMessage,
        Self::PaymentEventsFailed,
        Self::EventsDlqNotEmpty,
        Self::QueueConsumerErrors,
        Self::TransactionLogFreshness,
        Self::SettlementRequestsFailed,
        Self::TransactionLogRecordsFailed,
        Self::BatchCpuHigh,
        Self::BatchMemoryHigh,
        Self::DnsPrimary,
        Self::DnsMaintenance,
    ];

    pub fn slug(self) -> &'static str {
        match self {
            Self::ApiP99Latency => "api-p99-latency",
            Self::Api5xxRate => "api-5xx-rate",
            Self::TransactionErrors => "transaction-errors",
            Self::TransactionThrottles => "transaction-throttles",
            Self::AuroraCpu => "aurora-cpu",
            Self::AuroraReplicaLag => "aurora-replica-lag",
            Self::AuroraAcuUtilization => "aurora-acu-utilization",
            Self::TransactionsTableThrottles => "transactions-table-throttles",
            Self::FraudRulesTableThrottles => "fraud-rules-table-throttles",
            Self::Alb5xx => "alb-5xx",
            Self::WafBlockedSpike => "waf-blocked-spike",
            Self::ProcessingDlqNotEmpty => "payments-processing-dlq-not-empty",
            Self::AnalyticsDlqNotEmpty => "payments-analytics-dlq-not-empty",
            Self::ProcessingOldestMessage => "payments-processing-oldest-message",
            Self::PaymentEventsFailed => "payment-events-failed",
            Self::EventsDlqNotEmpty => "payments-events-dlq-not-empty",
            Self::QueueConsumerErrors => "queue-consumer-errors",
            Self::TransactionLogFreshness => "transaction-log-freshness",
            Self::SettlementRequestsFailed => "settlement-requests-failed",
            Self::TransactionLogRecordsFailed => "transaction-log-records-failed",
            Self::BatchCpuHigh => "batch-cpu-high",
            Self::BatchMemoryHigh => "batch-memory-high",
            Self::DnsPrimary => "dns-primary",
            Self::DnsMaintenance => "dns-maintenance",
        }
    }

    pub fn step_id(self) -> String {
        format!("alarm:{}", self.slug())
    }

    /// The flat output holding the alarm's name (`ApiP99LatencyAlarmName`).
    pub fn output_key(self) -> String {
        let camel: String = self
            .slug()
            .split('-')
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            })
            .collect();
        format!("{camel}AlarmName")
    }

    pub fn name(self, cx: &Context) -> String {
        cx.names.resource(self.slug())
    }

    pub fn topic(self) -> Topic {
        match self {
            Self::ApiP99Latency
            | Self::Api5xxRate
            | Self::TransactionErrors
            | Self::TransactionThrottles => Topic::FailedTransactions,
            Self::AuroraCpu
            | Self::AuroraReplicaLag
            | Self::AuroraAcuUtilization
            | Self::TransactionsTableThrottles
            | Self::FraudRulesTableThrottles
            | Self::Alb5xx
            | Self::WafBlockedSpike
            | Self::ProcessingDlqNotEmpty
            | Self::AnalyticsDlqNotEmpty
            | Self::ProcessingOldestMessage
            | Self::PaymentEventsFailed
            | Self::EventsDlqNotEmpty
            | Self::QueueConsumerErrors
            | Self::TransactionLogFreshness
            | Self::SettlementRequestsFailed
            | Self::TransactionLogRecordsFailed
            | Self::BatchCpuHigh
            | Self::BatchMemoryHigh => Topic::SystemErrors,
            Self::DnsPrimary | Self::DnsMaintenance => Topic::SystemErrors,
        }
    }

    /// Whether `payops shift` stops on it: the alarms of the request path,
    /// which a bad release on green would set off.
    pub fn shift_gate(self) -> bool {
        matches!(
            self,
            Self::ApiP99Latency
                | Self::Api5xxRate
                | Self::TransactionErrors
                | Self::TransactionThrottles
                | Self::Alb5xx
        )
    }

    /// Whether the env's spec wants it. The replica-lag alarm treats missing
    /// data as breaching (see [`Alarm::definition`]); with no readers
    /// (`--db-readers 0`, which the spec allows) RDS publishes no
    /// `AuroraReplicaLag` for `Role=READER` at all, so the alarm could never
    /// leave ALARM and would mail system-errors forever. It is not wanted
    /// then: `up` deletes it (reported `deleted`) and creates it again once
    /// readers are added. The step stays in the graph either way (step ids
    /// never depend on the spec).
    pub fn wanted(self, cx: &Context) -> bool {
        match self {
            Self::AuroraReplicaLag => cx.spec.database.readers > 0,
            // Provisioned instances publish no ACU metrics.
            Self::AuroraAcuUtilization => cx.spec.database.capacity.is_some(),
            // The queues exist only with the event backbone (`--events`).
            Self::ProcessingDlqNotEmpty
            | Self::AnalyticsDlqNotEmpty
            | Self::ProcessingOldestMessage
            | Self::PaymentEventsFailed
            | Self::EventsDlqNotEmpty
            | Self::QueueConsumerErrors
            | Self::TransactionLogFreshness
            | Self::SettlementRequestsFailed
            | Self::TransactionLogRecordsFailed => cx.spec.events,
            Self::BatchCpuHigh | Self::BatchMemoryHigh => cx.spec.batch.on,
            // The private zone's health checks (`--dns`).
            Self::DnsPrimary | Self::DnsMaintenance => cx.spec.dns,
            _ => true,
        }
    }

    /// The (step, output) of the ARN of the load balancer it watches.
    pub fn alb_input(self) -> Option<(&'static str, &'static str)> {
        match self {
            Self::Alb5xx | Self::DnsPrimary => Some(ALB_INPUT),
            Self::DnsMaintenance => Some(MAINTENANCE_ALB_INPUT),
            _ => None,
        }
    }

    /// The table: what each alarm watches and when it fires. `alb_arn` is the
    /// ALB's ARN for the alarms that need it.
    pub fn definition(
        self,
        cx: &Context,
        topic_arn: &str,
        alb_arn: Option<&str>,
    ) -> Result<Definition, AwsError> {
        let env = cx.env();
        let api = monitoring::api_name(cx);
        let api_dims = [("ApiName", api.as_str()), ("Stage", monitoring::API_STAGE)];
        let transaction = Function::Transaction.name(cx);
        let cluster = monitoring::aurora_cluster(cx);
        use ComparisonOperator::{
            GreaterThanOrEqualToThreshold as AtLeast, GreaterThanThreshold as Above,
        };
        let (what, watch, rule) = match self {
            // Payments should answer within a second at p99. Latency is
            // only measured on requests: no requests, nothing to judge, and
            // an idle env must not block a shift (notBreaching). Too few
            // requests for a meaningful p99 leave the state as it is.
            Self::ApiP99Latency => (
                "API p99 latency above 1 s in 3 of 5 minutes",
                percentile(
                    MetricId::new("AWS/ApiGateway", "Latency", &api_dims),
                    "p99",
                    60,
                ),
                Rule {
                    comparison: Above,
                    threshold: 1000.0,
                    period: 60,
                    evaluation_periods: 5,
                    datapoints_to_alarm: 3,
                    missing: Missing::NotBreaching,
                },
            ),
            // 5XXError's Average is the share of requests answered 5XX. No
            // requests means no errors (notBreaching).
            Self::Api5xxRate => (
                "more than 1% of API requests answered 5XX in 2 of 3 minutes",
                single(
                    MetricId::new("AWS/ApiGateway", "5XXError", &api_dims),
                    Statistic::Average,
                    60,
                ),
                Rule {
                    comparison: Above,
                    threshold: 0.01,
                    period: 60,
                    evaluation_periods: 3,
                    datapoints_to_alarm: 2,
                    missing: Missing::NotBreaching,
                },
            ),
            // Every error of transaction processing is a payment that failed:
            // one is enough, and a clean minute clears it. No invocations
            // means no errors (notBreaching).
            Self::TransactionErrors => (
                "transaction processing failed at least once in a minute",
                single(
                    MetricId::new("AWS/Lambda", "Errors", &[("FunctionName", &transaction)]),
                    Statistic::Sum,
                    60,
                ),
                Rule::at_least_once_in_a_minute(),
            ),
            // A throttled invocation is a payment refused: its reserved
            // concurrency is exhausted. No invocations, no throttles.
            Self::TransactionThrottles => (
                "transaction processing was throttled at least once in a minute (reserved \
                 concurrency exhausted)",
                single(
                    MetricId::new("AWS/Lambda", "Throttles", &[("FunctionName", &transaction)]),
                    Statistic::Sum,
                    60,
                ),
                Rule::at_least_once_in_a_minute(),
            ),
            // The writer takes every payment write. Role metrics follow the
            // writer across failovers. A writer that stops reporting is not a
            // CPU problem: the request-path alarms report its effect
            // (notBreaching).
            // The batch group's instances, averaged over the group: the
            // target-tracking policies should keep them near 60% / 70%;
            // staying far above for 15 minutes means the group is at its
            // maximum (or the report is stuck). Single metrics with a
            // standard statistic. No instances (desired 0): no data, fine.
            Self::BatchCpuHigh | Self::BatchMemoryHigh => {
                let group = cx.names.resource("batch");
                let dims = [("AutoScalingGroupName", group.as_str())];
                let (what, metric, threshold) = if self == Self::BatchCpuHigh {
                    (
                        "batch instances' CPU above 90% for 15 minutes",
                        MetricId::new("AWS/EC2", "CPUUtilization", &dims),
                        90.0,
                    )
                } else {
                    (
                        "batch instances' memory above 90% for 15 minutes",
                        MetricId::new("CWAgent", "mem_used_percent", &dims),
                        90.0,
                    )
                };
                (
                    what,
                    single(metric, Statistic::Average, 300),
                    Rule {
                        comparison: Above,
                        threshold,
                        period: 300,
                        evaluation_periods: 3,
                        datapoints_to_alarm: 3,
                        missing: Missing::NotBreaching,
                    },
                )
            }
            Self::AuroraCpu => (
                "Aurora writer CPU above 80% for 15 minutes",
                single(
                    MetricId::new(
                        "AWS/RDS",
                        "CPUUtilization",
                        &[("DBClusterIdentifier", &cluster), ("Role", "WRITER")],
                    ),
                    Statistic::Maximum,
                    300,
                ),
                Rule {
                    comparison: Above,
                    threshold: 80.0,
                    period: 300,
                    evaluation_periods: 3,
                    datapoints_to_alarm: 3,
                    missing: Missing::NotBreaching,
                },
            ),
            // Every reader reports its lag every minute whatever the load, so
            // missing data means no reader is reporting: the cluster has lost
            // its failover targets and its read capacity, which must be heard
            // of (breaching). `missing` would keep a stale OK instead. A new
            // env sees it too, for the minutes before its first reader is
            // available: it has no replica then. An env with no readers at
            // all has no such alarm ([`Alarm::wanted`]).
            Self::AuroraReplicaLag => (
                "Aurora replica lag above 1 s for 5 minutes, or no reader reporting",
                single(
                    MetricId::new(
                        "AWS/RDS",
                        "AuroraReplicaLag",
                        &[("DBClusterIdentifier", &cluster), ("Role", "READER")],
                    ),
                    Statistic::Maximum,
                    60,
                ),
                Rule {
                    comparison: Above,
                    threshold: 1000.0,
                    period: 60,
                    evaluation_periods: 5,
                    datapoints_to_alarm: 5,
                    missing: Missing::Breaching,
                },
            ),
            // ACUUtilization is capacity as a share of the range's maximum:
            // near 100% for long, the database is at its ceiling and
            // queries queue (raise --db-capacity's MAX or tune). The cluster
            // series (no Role) is the one AWS documents for both roles;
            // readers of promotion tier 0-1 follow the writer's capacity, so
            // it tracks the writer. A paused instance (MIN 0) reports
            // nothing, which is not a ceiling (notBreaching).
            Self::AuroraAcuUtilization => (
                "Aurora Serverless v2 above 90% of its maximum capacity for 15 minutes",
                single(
                    MetricId::new(
                        "AWS/RDS",
                        "ACUUtilization",
                        &[("DBClusterIdentifier", &cluster)],
                    ),
                    Statistic::Maximum,
                    300,
                ),
                Rule {
                    comparison: Above,
                    threshold: 90.0,
                    period: 300,
                    evaluation_periods: 3,
                    datapoints_to_alarm: 3,
                    missing: Missing::NotBreaching,
                },
            ),
            // DynamoDB publishes ThrottledRequests per table and operation
            // only: the alarm sums every operation. No requests, no
            // throttles (notBreaching).
            Self::TransactionsTableThrottles | Self::FraudRulesTableThrottles => {
                let suffix = if self == Self::TransactionsTableThrottles {
                    "transactions"
                } else {
                    "fraud-rules"
                };
                let table = monitoring::table_name(cx, suffix);
                (
                    if suffix == "transactions" {
                        "requests to the transactions table throttled in 2 of 5 minutes"
                    } else {
                        "requests to the fraud-rules table throttled in 2 of 5 minutes"
                    },
                    sum_of(
                        DYNAMODB_OPERATIONS
                            .iter()
                            .map(|op| {
                                MetricId::new(
                                    "AWS/DynamoDB",
                                    "ThrottledRequests",
                                    &[("TableName", &table), ("Operation", op)],
                                )
                            })
                            .collect(),
                        60,
                    ),
                    Rule {
                        comparison: AtLeast,
                        threshold: 1.0,
                        period: 60,
                        evaluation_periods: 5,
                        datapoints_to_alarm: 2,
                        missing: Missing::NotBreaching,
                    },
                )
            }
            // 5XX answered by the targets (the functions behind blue and
            // green) and by the ALB itself (no healthy target, timeouts). The
            // NLB forwards TCP and has no HTTP codes. No requests, no errors.
            Self::Alb5xx => {
                let alb = alb_arn.ok_or_else(|| {
                    AwsError::Conflict(format!("alarm {}: the ALB's ARN is needed", self.slug()))
                })?;
                let lb = monitoring::load_balancer_dimension(alb)?;
                let dims = [("LoadBalancer", lb.as_str())];
                (
                    "the ALB answered 5XX (from the targets or itself) at least once in a minute",
                    sum_of(
                        vec![
                            MetricId::new("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", &dims),
                            MetricId::new("AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", &dims),
                        ],
                        60,
                    ),
                    Rule::at_least_once_in_a_minute(),
                )
            }
            // A burst of blocked requests is an attack or a client gone
            // wrong: someone should look (the WAF logs say which rule and
            // who). Not a shift gate: a release does not make the WAF block.
            // No requests, nothing blocked (notBreaching).
            Self::WafBlockedSpike => {
                let acl = cx.names.web_acl();
                (
                    "the WAF blocked more than 100 requests in 5 minutes",
                    single(
                        MetricId::new(
                            "AWS/WAFV2",
                            "BlockedRequests",
                            &[
                                ("WebACL", acl.as_str()),
                                ("Region", cx.region.as_str()),
                                ("Rule", "ALL"),
                            ],
                        ),
                        Statistic::Sum,
                        300,
                    ),
                    Rule {
                        comparison: Above,
                        threshold: 100.0,
                        period: 300,
                        evaluation_periods: 1,
                        datapoints_to_alarm: 1,
                        missing: Missing::NotBreaching,
                    },
                )
            }
            // A message in a dead-letter queue is a payment event no consumer
            // could handle after every retry: someone must look, however
            // few. SQS publishes queue metrics every minute while a queue is
            // active, and a queue holding messages is active: missing data
            // means an empty, idle queue (notBreaching).
            // The events DLQ holds what EventBridge could not deliver to a
            // rule's target (or the bus could not decrypt): an event lost
            // to its consumers, which retries cannot bring back.
            Self::ProcessingDlqNotEmpty | Self::AnalyticsDlqNotEmpty | Self::EventsDlqNotEmpty => {
                let (dlq, what) = match self {
                    Self::ProcessingDlqNotEmpty => (
                        "payments-processing-dlq",
                        "the payments-processing dead-letter queue holds a message",
                    ),
                    Self::AnalyticsDlqNotEmpty => (
                        "payments-analytics-dlq",
                        "the payments-analytics dead-letter queue holds a message",
                    ),
                    _ => (
                        "payments-events-dlq",
                        "the payment events dead-letter queue holds an event EventBridge could \
                         not deliver",
                    ),
                };
                let dlq = cx.names.queue(dlq);
                (
                    what,
                    single(
                        MetricId::new(
                            "AWS/SQS",
                            "ApproximateNumberOfMessagesVisible",
                            &[("QueueName", dlq.as_str())],
                        ),
                        Statistic::Maximum,
                        60,
                    ),
                    Rule {
                        comparison: Above,
                        threshold: 0.0,
                        period: 60,
                        evaluation_periods: 1,
                        datapoints_to_alarm: 1,
                        missing: Missing::NotBreaching,
                    },
                )
            }
            // Consumers falling behind (or gone): a message may legitimately
            // wait through MAX_RECEIVE_COUNT (5) visibility timeouts of 3
            // minutes before it is dead-lettered, so older than 15 minutes
            // for 3 minutes running means the queue is not being drained.
            // An idle queue publishes nothing (notBreaching).
            Self::ProcessingOldestMessage => {
                let queue = cx.names.queue("payments-processing");
                (
                    "the oldest message in the payments-processing queue is older than 15 \
                     minutes for 3 minutes",
                    single(
                        MetricId::new(
                            "AWS/SQS",
                            "ApproximateAgeOfOldestMessage",
                            &[("QueueName", queue.as_str())],
                        ),
                        Statistic::Maximum,
                        60,
                    ),
                    Rule {
                        comparison: Above,
                        threshold: 900.0,
                        period: 60,
                        evaluation_periods: 3,
                        datapoints_to_alarm: 3,
                        missing: Missing::NotBreaching,
                    },
                )
            }
            // A payment whose event never reached the bus: analytics and
            // alerting will not hear of it, although the payment itself was
            // answered. Transaction processing counts each such publish in
            // an embedded-metric log line (lambda/transaction_processing.py);
            // none counted, nothing to report (notBreaching).
            Self::PaymentEventsFailed => (
                "a payment event could not be put on the env's bus at least once in a minute",
                single(
                    MetricId::new(
                        PAYMENT_METRICS_NAMESPACE,
                        "PaymentEventsFailed",
                        &[("Env", env.as_str())],
                    ),
                    Statistic::Sum,
                    60,
                ),
                Rule::at_least_once_in_a_minute(),
            ),
            // A processed payment whose settlement request never reached
            // the processing queue: nobody settles it until a client's
            // retry sends it again (settling is idempotent). Counted like
            // the events above; none counted, nothing to report.
            Self::SettlementRequestsFailed => (
                "a processed payment's settlement request could not be sent to the processing \
                 queue at least once in a minute",
                single(
                    MetricId::new(
                        PAYMENT_METRICS_NAMESPACE,
                        "SettlementRequestsFailed",
                        &[("Env", env.as_str())],
                    ),
                    Statistic::Sum,
                    60,
                ),
                Rule::at_least_once_in_a_minute(),
            ),
            // A payment missing from the transaction log: Firehose refused
            // the producer's PutRecord (throttled, the stream or its key
            // unusable). Records the transform rejects are not counted here:
            // Firehose keeps them under the error prefix and logs them to
            // the stream's error log, and a stuck delivery sets off the
            // freshness alarm. None counted, nothing lost.
            // A Route 53 health check follows it (`dns::health_check`), so
            // it must be what Route 53 accepts there: one standard-resolution
            // metric with a standard statistic (no metric math, hence not
            // `alb-5xx`'s sum of two; no percentile). The ALB's own 5XX
            // answers (no healthy target, a target failing or timing out):
            // 10 a minute in 2 of 3 minutes fails the PRIMARY over; no
            // requests is no failure (notBreaching).
            Self::DnsPrimary | Self::DnsMaintenance => {
                let alb = alb_arn.ok_or_else(|| {
                    AwsError::Conflict(format!("alarm {}: the ALB's ARN is needed", self.slug()))
                })?;
                let lb = monitoring::load_balancer_dimension(alb)?;
                let dims = [("LoadBalancer", lb.as_str())];
                if self == Self::DnsPrimary {
                    (
                        "the ALB itself answered 5XX at least 10 times a minute in 2 of 3 \
                         minutes (Route 53 fails payments over to the maintenance answer)",
                        single(
                            MetricId::new("AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", &dims),
                            Statistic::Sum,
                            60,
                        ),
                        Rule {
                            comparison: AtLeast,
                            threshold: 10.0,
                            period: 60,
                            evaluation_periods: 3,
                            datapoints_to_alarm: 2,
                            missing: Missing::NotBreaching,
                        },
                    )
                } else {
                    // The maintenance ALB answers a fixed 503 by design, so
                    // its 5XX count says nothing; connections it rejected
                    // (no capacity) do.
                    (
                        "the maintenance ALB rejected connections in a minute",
                        single(
                            MetricId::new("AWS/ApplicationELB", "RejectedConnectionCount", &dims),
                            Statistic::Sum,
                            60,
                        ),
                        Rule::at_least_once_in_a_minute(),
                    )
                }
            }
            Self::TransactionLogRecordsFailed => (
                "a payment's record could not be put on the transaction log at least once in a \
                 minute",
                single(
                    MetricId::new(
                        PAYMENT_METRICS_NAMESPACE,
                        "TransactionLogRecordsFailed",
                        &[("Env", env.as_str())],
                    ),
                    Statistic::Sum,
                    60,
                ),
                Rule::at_least_once_in_a_minute(),
            ),
            // Lambda counts as Errors only an invocation that failed as a
            // whole (an exception, a timeout, the configuration unreadable):
            // the batch comes back entire. A message the consumer could not
            // settle is reported in batchItemFailures instead and ends in
            // the processing DLQ (its own alarm). No invocations, no errors.
            Self::QueueConsumerErrors => {
                let consumer = Function::QueueConsumer.name(cx);
                (
                    "the payment queue consumer failed a whole batch at least once in a minute",
                    single(
                        MetricId::new("AWS/Lambda", "Errors", &[("FunctionName", &consumer)]),
                        Statistic::Sum,
                        60,
                    ),
                    Rule::at_least_once_in_a_minute(),
                )
            }
            // The age of the oldest record not yet in S3. Firehose holds a
            // record up to the S3 buffer interval (5 minutes) plus the
            // transform's buffer (1 minute) by design; three intervals
            // means delivery is failing (the role, the key, the bucket or
            // the transform) and records are waiting on retries (Firehose
            // keeps them 24 hours, then writes them to the error prefix).
            // An idle stream publishes nothing (notBreaching).
            Self::TransactionLogFreshness => {
                let stream = cx.names.delivery_stream();
                (
                    "the oldest transaction log record not yet delivered to S3 is older than 15 \
                     minutes for 15 minutes",
                    single(
                        MetricId::new(
                            "AWS/Firehose",
                            "DeliveryToS3.DataFreshness",
                            &[("DeliveryStreamName", stream.as_str())],
                        ),
                        Statistic::Maximum,
                        300,
                    ),
                    Rule {
                        comparison: Above,
                        threshold: f64::from(3 * DELIVERY_BUFFER_INTERVAL_S),
                        period: 300,
                        evaluation_periods: 3,
                        datapoints_to_alarm: 3,
                        missing: Missing::NotBreaching,
                    },
                )
            }
        };
        debug_assert!(match &watch {
            Watch::Metric { period, .. } => *period == rule.period,
            Watch::Math(_) => true,
        });
        let gate = if self.shift_gate() {
            " Gates `payops shift`: in ALARM, traffic goes back to blue."
        } else {
            ""
        };
        let percentile = matches!(
            &watch,
            Watch::Metric {
                extended_statistic: Some(_),
                ..
            }
        );
        Ok(Definition {
            description: format!("payops env {env}: {what}.{gate}"),
            watch,
            comparison: rule.comparison,
            threshold: rule.threshold,
            evaluation_periods: rule.evaluation_periods,
            datapoints_to_alarm: Some(rule.datapoints_to_alarm),
            treat_missing_data: Some(rule.missing.as_str().to_owned()),
            evaluate_low_sample_count_percentile: percentile.then(|| "ignore".to_owned()),
            actions_enabled: true,
            alarm_actions: vec![topic_arn.to_owned()],
            ok_actions: vec![topic_arn.to_owned()],
            insufficient_data_actions: Vec::new(),
        })
    }
}

/// AWS's rules for PutMetricAlarm that emulators do not enforce; `Err` says
/// which one a definition breaks.
pub fn validate(def: &Definition) -> Result<(), String> {
    let period_ok = |p: i32| matches!(p, 10 | 20 | 30) || (p >= 60 && p % 60 == 0);
    let periods: Vec<i32> = match &def.watch {
        Watch::Metric {
            statistic,
            extended_statistic,
            period,
            ..
        } => {
            match (statistic, extended_statistic) {
                (Some(_), Some(_)) => {
                    return Err("an alarm takes Statistic or ExtendedStatistic, not both".into());
                }
                (None, None) => return Err("an alarm needs Statistic or ExtendedStatistic".into()),
                (None, Some(p)) => {
                    let ok = p.strip_prefix('p').is_some_and(|n| {
                        n.parse::<f64>().is_ok_and(|v| (0.0..=100.0).contains(&v))
                    });
                    if !ok {
                        return Err(format!("{p:?} is not a percentile such as p99"));
                    }
                }
                (Some(_), None) => {
                    if def.evaluate_low_sample_count_percentile.is_some() {
                        return Err(
                            "EvaluateLowSampleCountPercentile applies to percentiles only".into(),
                        );
                    }
                }
            }
            vec![*period]
        }
        Watch::Math(queries) => {
            let metrics = queries.iter().filter(|q| q.metric.is_some()).count();
            let expressions = queries.iter().filter(|q| q.expression.is_some()).count();
            if metrics > 10 {
                return Err(format!(
                    "a metric-math alarm references at most 10 metrics, not {metrics}"
                ));
            }
            if expressions > 10 || queries.len() > 20 {
                return Err("a metric-math alarm has at most 10 expressions, 20 entries".into());
            }
            if queries.iter().filter(|q| q.return_data).count() != 1 {
                return Err("exactly one entry of a metric-math alarm returns data".into());
            }
            for q in queries {
                if q.metric.is_some() == q.expression.is_some() {
                    return Err(format!("entry {} needs a metric or an expression", q.id));
                }
                let id_ok = q.id.starts_with(|c: char| c.is_ascii_lowercase())
                    && q.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !id_ok {
                    return Err(format!("metric id {:?}: a lowercase letter first", q.id));
                }
            }
            if def.evaluate_low_sample_count_percentile.is_some() {
                return Err("EvaluateLowSampleCountPercentile applies to percentiles only".into());
            }
            queries
                .iter()
                .filter_map(|q| q.metric.as_ref().map(|(_, p, _)| *p))
                .collect()
        }
    };
    for p in &periods {
        if !period_ok(*p) {
            return Err(format!(
                "period {p}: 10, 20, 30 or a multiple of 60 seconds"
            ));
        }
        if i64::from(*p) * i64::from(def.evaluation_periods) > 86_400 {
            return Err(format!(
                "{} periods of {p} s: an alarm evaluates at most one day",
                def.evaluation_periods
            ));
        }
    }
    if def.evaluation_periods < 1 {
        return Err("EvaluationPeriods is at least 1".into());
    }
    if let Some(d) = def.datapoints_to_alarm
        && !(1..=def.evaluation_periods).contains(&d)
    {
        return Err(format!(
            "DatapointsToAlarm {d} must be 1 to EvaluationPeriods ({})",
            def.evaluation_periods
        ));
    }
    if let Some(t) = &def.treat_missing_data
        && !["breaching", "notBreaching", "ignore", "missing"].contains(&t.as_str())
    {
        return Err(format!("TreatMissingData {t:?}"));
    }
    for actions in [
        &def.alarm_actions,
        &def.ok_actions,
        &def.insufficient_data_actions,
    ] {
        if actions.len() > 5 {
            return Err("at most 5 actions per state".into());
        }
    }
    if def.description.len() > 1024 {
        return Err("AlarmDescription is at most 1024 characters".into());
    }
    Ok(())
}

impl Definition {
    /// Reads an alarm as DescribeAlarms answers it.
    pub fn from_alarm(a: &MetricAlarm) -> Self {
        let watch = if a.metrics().is_empty() {
            Watch::Metric {
                metric: MetricId::from_sdk(a.namespace(), a.metric_name(), a.dimensions()),
                statistic: a.statistic().cloned(),
                extended_statistic: a
                    .extended_statistic()
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
                period: a.period().unwrap_or_default(),
            }
        } else {
            Watch::Math(
                a.metrics()
                    .iter()
                    .map(|q| Query {
                        id: q.id().unwrap_or_default().to_owned(),
                        metric: q.metric_stat().map(|s| {
                            let m = s.metric();
                            (
                                MetricId::from_sdk(
                                    m.and_then(Metric::namespace),
                                    m.and_then(Metric::metric_name),
                                    m.map(Metric::dimensions).unwrap_or_default(),
                                ),
                                s.period().unwrap_or_default(),
                                s.stat().unwrap_or_default().to_owned(),
                            )
                        }),
                        expression: q.expression().filter(|e| !e.is_empty()).map(str::to_owned),
                        return_data: q.return_data() == Some(true),
                    })
                    .collect(),
            )
        };
        let sorted = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v
        };
        Self {
            description: a.alarm_description().unwrap_or_default().to_owned(),
            watch,
            comparison: a
                .comparison_operator()
                .cloned()
                .unwrap_or(ComparisonOperator::GreaterThanThreshold),
            threshold: a.threshold().unwrap_or(f64::NAN),
            evaluation_periods: a.evaluation_periods().unwrap_or_default(),
            datapoints_to_alarm: a.datapoints_to_alarm(),
            treat_missing_data: a
                .treat_missing_data()
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            evaluate_low_sample_count_percentile: a
                .evaluate_low_sample_count_percentile()
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            actions_enabled: a.actions_enabled().unwrap_or(true),
            alarm_actions: sorted(a.alarm_actions()),
            ok_actions: sorted(a.ok_actions()),
            insufficient_data_actions: sorted(a.insufficient_data_actions()),
        }
    }

    /// The fields where `self` (desired) and `actual` differ.
    pub fn differences(&self, actual: &Definition) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut check = |same: bool, field: &'static str| {
            if !same {
                out.push(field);
            }
        };
        check(self.description == actual.description, "description");
        match (&self.watch, &actual.watch) {
            (
                Watch::Metric {
                    metric,
                    statistic,
                    extended_statistic,
                    period,
                },
                Watch::Metric {
                    metric: m2,
                    statistic: s2,
                    extended_statistic: e2,
                    period: p2,
                },
            ) => {
                check(metric == m2, "metric");
                check(statistic == s2 && extended_statistic == e2, "statistic");
                check(period == p2, "period");
            }
            (a, b) => check(a == b, "metric math"),
        }
        check(self.comparison == actual.comparison, "comparison");
        check(self.threshold == actual.threshold, "threshold");
        check(
            self.evaluation_periods == actual.evaluation_periods
                && self.datapoints_to_alarm == actual.datapoints_to_alarm,
            "evaluation periods",
        );
        check(
            self.treat_missing_data == actual.treat_missing_data,
            "missing data",
        );
        check(
            self.evaluate_low_sample_count_percentile
                == actual.evaluate_low_sample_count_percentile,
            "low sample count",
        );
        check(
            self.actions_enabled == actual.actions_enabled
                && self.alarm_actions == actual.alarm_actions
                && self.ok_actions == actual.ok_actions
                && self.insufficient_data_actions == actual.insufficient_data_actions,
            "actions",
        );
        out
    }
}

/// The PutMetricAlarm request for `def` (tags only when creating: AWS
/// ignores them on an update).
fn put_request(
    cx: &Context,
    name: &str,
    def: &Definition,
    tags: Option<&TagMap>,
) -> aws_sdk_cloudwatch::operation::put_metric_alarm::builders::PutMetricAlarmFluentBuilder {
    let mut req = cx
        .clients
        .cloudwatch
        .put_metric_alarm()
        .alarm_name(name)
        .alarm_description(&def.description)
        .actions_enabled(def.actions_enabled)
        .set_alarm_actions(Some(def.alarm_actions.clone()))
        .set_ok_actions(Some(def.ok_actions.clone()))
        .comparison_operator(def.comparison.clone())
        .threshold(def.threshold)
        .evaluation_periods(def.evaluation_periods)
        .set_datapoints_to_alarm(def.datapoints_to_alarm)
        .set_treat_missing_data(def.treat_missing_data.clone())
        .set_evaluate_low_sample_count_percentile(def.evaluate_low_sample_count_percentile.clone());
    // An empty list would go out as one empty action on the query protocol:
    // leave it unset (PutMetricAlarm clears what it is not given).
    if !def.insufficient_data_actions.is_empty() {
        req = req.set_insufficient_data_actions(Some(def.insufficient_data_actions.clone()));
    }
    match &def.watch {
        Watch::Metric {
            metric,
            statistic,
            extended_statistic,
            period,
        } => {
            req = req
                .namespace(&metric.namespace)
                .metric_name(&metric.name)
                .set_dimensions(Some(metric.sdk_dimensions()))
                .period(*period)
                // `validate` guarantees exactly one of the two is set.
                .set_statistic(statistic.clone())
                .set_extended_statistic(extended_statistic.clone());
        }
        Watch::Math(queries) => {
            for q in queries {
                let mut b = MetricDataQuery::builder()
                    .id(&q.id)
                    .return_data(q.return_data)
                    .set_expression(q.expression.clone());
                if let Some((m, period, stat)) = &q.metric {
                    b = b.metric_stat(
                        MetricStat::builder()
                            .metric(
                                Metric::builder()
                                    .namespace(&m.namespace)
                                    .metric_name(&m.name)
                                    .set_dimensions(Some(m.sdk_dimensions()))
                                    .build(),
                            )
                            .period(*period)
                            .stat(stat)
                            .build(),
                    );
                }
                req = req.metrics(b.build());
            }
        }
    }
    if let Some(tags) = tags {
        req = req.set_tags(Some(cloudwatch::tags(tags)));
    }
    req
}

pub struct AlarmStep {
    alarm: Alarm,
}

impl AlarmStep {
    pub fn new(alarm: Alarm) -> Self {
        Self { alarm }
    }

    fn desired(&self, cx: &Context, step: &StepCx<'_>) -> Result<Definition, AwsError> {
        let (topic_step, topic_key) = self.alarm.topic().input();
        let topic = step.output(topic_step, topic_key)?;
        let alb = match self.alarm.alb_input() {
            Some((lb_step, key)) => Some(step.output(lb_step, key)?),
            None => None,
        };
        let def = self.alarm.definition(cx, topic, alb)?;
        validate(&def).map_err(|why| {
            AwsError::Conflict(format!(
                "alarm {}: AWS would refuse it: {why} (a payops bug)",
                self.alarm.slug()
            ))
        })?;
        Ok(def)
    }

    /// Our tags, plus the shift-gate tag on the alarms that gate shifts.
    fn tags_for_create(&self, cx: &Context, step: &StepCx<'_>) -> TagMap {
        let mut tags = cx.tagger.for_create(step.id().as_str());
        if self.alarm.shift_gate() {
            tags.insert(SHIFT_GATE.into(), "true".into());
        }
        tags
    }
}

pub struct FoundAlarm {
    name: String,
    arn: String,
    definition: Definition,
    tags: TagMap,
}

pub enum Fix {
    Definition { fields: Vec<&'static str> },
    Tags(TagMap),
    Untag(Vec<String>),
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Definition { fields } => write!(f, "update the alarm's {}", fields.join(", ")),
            Self::Tags(t) => f.write_str(&describe_tag_fix(t)),
            Self::Untag(keys) => write!(f, "remove tags {}", keys.join(", ")),
        }
    }
}

/// Alarms of this env still there (the final sweep): named `payops-<env>-...`
/// and tagged for the env (the prefix alone also matches env `<env>-2`'s).
pub async fn leftovers(cx: &Context) -> Result<Vec<String>, AwsError> {
    let all = env_alarms(cx).await?;
    let named = all
        .metric
        .iter()
        .map(|a| (a.alarm_name(), a.alarm_arn()))
        .chain(
            all.composite
                .iter()
                .map(|(name, arn)| (Some(name.as_str()), arn.as_deref())),
        );
    let mut left = Vec::new();
    for (name, arn) in named {
        if let (Some(name), Some(arn)) = (name, arn)
            && cx.is_ours(&cloudwatch::tags_of(cx, arn).await?)
        {
            left.push(format!("cloudwatch alarm {name}"));
        }
    }
    Ok(left)
}

#[async_trait]
impl Resource for AlarmStep {
    type Found = FoundAlarm;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "cloudwatch:alarm"
    }

    fn wanted(&self, cx: &Context) -> bool {
        self.alarm.wanted(cx)
    }

    async fn find(&self, cx: &Context, _step: &StepCx<'_>) -> Result<Vec<FoundAlarm>, AwsError> {
        let name = self.alarm.name(cx);
        // All of the env's alarms in one read its alarm steps share.
        let out = cx
            .shared_read("cloudwatch:DescribeAlarms", || env_alarms(cx))
            .await?;
        if out.has_composite(&name) {
            return Err(AwsError::Conflict(format!(
                "a composite alarm named {name} exists: payops needs that name for a metric alarm"
            )));
        }
        let Some(alarm) = out
            .metric_alarms()
            .iter()
            .find(|a| a.alarm_name() == Some(name.as_str()))
        else {
            return Ok(Vec::new());
        };
        let arn = alarm
            .alarm_arn()
            .map(str::to_owned)
            .unwrap_or_else(|| cx.arn("cloudwatch", &format!("alarm:{name}")));
        let tags = cloudwatch::tags_of(cx, &arn).await?;
        cx.check_ours(format!("CloudWatch alarm {name}"), &tags)?;
        Ok(vec![FoundAlarm {
            definition: Definition::from_alarm(alarm),
            name,
            arn,
            tags,
        }])
    }

    fn describe(&self, found: &FoundAlarm) -> String {
        found.name.clone()
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<FoundAlarm, AwsError> {
        let name = self.alarm.name(cx);
        let definition = self.desired(cx, step)?;
        let tags = self.tags_for_create(cx, step);
        put_request(cx, &name, &definition, Some(&tags))
            .send()
            .await
            .op("cloudwatch:PutMetricAlarm")?;
        let arn = cx.arn("cloudwatch", &format!("alarm:{name}"));
        step.remember("alarm", &arn);
        Ok(FoundAlarm {
            name,
            arn,
            definition,
            tags,
        })
    }

    async fn diff(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: &FoundAlarm,
    ) -> Result<Vec<Fix>, AwsError> {
        let want = self.desired(cx, step)?;
        let mut fixes = Vec::new();
        let fields = want.differences(&found.definition);
        if !fields.is_empty() {
            fixes.push(Fix::Definition { fields });
        }
        let mut missing = cx.tagger.missing(step.id().as_str(), &found.tags);
        let gate = found.tags.get(SHIFT_GATE).map(String::as_str);
        if self.alarm.shift_gate() {
            if gate != Some("true") {
                missing.insert(SHIFT_GATE.into(), "true".into());
            }
        } else if gate.is_some() {
            fixes.push(Fix::Untag(vec![SHIFT_GATE.to_owned()]));
        }
        if !missing.is_empty() {
            fixes.push(Fix::Tags(missing));
        }
        Ok(fixes)
    }

    async fn fix(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: &mut FoundAlarm,
        fix: Fix,
    ) -> Result<(), AwsError> {
        let cw = &cx.clients.cloudwatch;
        match fix {
            Fix::Definition { .. } => {
                let want = self.desired(cx, step)?;
                put_request(cx, &found.name, &want, None)
                    .send()
                    .await
                    .op("cloudwatch:PutMetricAlarm")?;
                found.definition = want;
            }
            Fix::Tags(tags) => {
                cw.tag_resource()
                    .resource_arn(&found.arn)
                    .set_tags(Some(cloudwatch::tags(&tags)))
                    .send()
                    .await
                    .op("cloudwatch:TagResource")?;
                found.tags.extend(tags);
            }
            Fix::Untag(keys) => {
                cw.untag_resource()
                    .resource_arn(&found.arn)
                    .set_tag_keys(Some(keys.clone()))
                    .send()
                    .await
                    .op("cloudwatch:UntagResource")?;
                for k in keys {
                    found.tags.remove(&k);
                }
            }
        }
        Ok(())
    }

    fn record(&self, _cx: &Context, found: &FoundAlarm) -> Record {
        Record::default()
            .resource("alarm", &found.arn)
            .output(self.alarm.output_key(), &found.name)
    }

    async fn delete(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        found: FoundAlarm,
    ) -> Result<Vec<String>, AwsError> {
        // DeleteAlarms is synchronous: once it answers, the alarm is gone.
        let deleted = cx
            .clients
            .cloudwatch
            .delete_alarms()
            .alarm_names(&found.name)
            .send()
            .await
            .op("cloudwatch:DeleteAlarms");
        absent_on(deleted, &NOT_FOUND)?;
        Ok(Vec::new())
    }
}

/// Every alarm whose name has the env's prefix, metric and composite
/// (without AlarmTypes, DescribeAlarms lists metric alarms only).
async fn env_alarms(cx: &Context) -> Result<EnvAlarms, AwsError> {
    let pages: Vec<_> = cx
        .clients
        .cloudwatch
        .describe_alarms()
        .alarm_name_prefix(cx.names.resource(""))
        .alarm_types(AlarmType::MetricAlarm)
        .alarm_types(AlarmType::CompositeAlarm)
        .into_paginator()
        .send()
        .collect()
        .await;
    let mut all = EnvAlarms::default();
    for page in pages {
        let page = page.op("cloudwatch:DescribeAlarms")?;
        all.metric.extend(page.metric_alarms().iter().cloned());
        all.composite.extend(
            page.composite_alarms().iter().filter_map(|a| {
                Some((a.alarm_name()?.to_owned(), a.alarm_arn().map(str::to_owned)))
            }),
        );
    }
    Ok(all)
}

#[derive(Default)]
struct EnvAlarms {
    metric: Vec<aws_sdk_cloudwatch::types::MetricAlarm>,
    /// (name, ARN) of each composite alarm.
    composite: Vec<(String, Option<String>)>,
}

impl EnvAlarms {
    fn has_composite(&self, name: &str) -> bool {
        self.composite.iter().any(|(n, _)| n == name)
    }

    fn metric_alarms(&self) -> &[aws_sdk_cloudwatch::types::MetricAlarm] {
        &self.metric
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_cloudwatch::Client;
    use aws_sdk_cloudwatch::operation::delete_alarms::{DeleteAlarmsError, DeleteAlarmsOutput};
    use aws_sdk_cloudwatch::operation::describe_alarms::DescribeAlarmsOutput;
    use aws_sdk_cloudwatch::operation::list_tags_for_resource::ListTagsForResourceOutput;
    use aws_sdk_cloudwatch::operation::put_metric_alarm::PutMetricAlarmOutput;
    use aws_sdk_cloudwatch::operation::tag_resource::TagResourceOutput;
    use aws_sdk_cloudwatch::operation::untag_resource::UntagResourceOutput;
    use aws_sdk_cloudwatch::types::Tag;
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    use super::*;
    use crate::engine::{Change, Observation, Removed};
    use crate::resources::testing;

    const FAILED: &str = "arn:aws:sns:us-east-1:123456789012:payops-pr1-failed-transactions";
    const SYSTEM: &str = "arn:aws:sns:us-east-1:123456789012:payops-pr1-system-errors";
    const ALB: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/payops-pr1-alb/50dc6c495c0c9188";

    /// An env with every optional part (the batch tier is off by default).
    fn cx() -> Context {
        let mut cx = testing::context(testing::clients());
        cx.spec.batch.on = true;
        cx.spec.dns = true;
        cx
    }

    fn cx_with(rules: &[&Rule]) -> Context {
        let mut clients = testing::clients();
        clients.cloudwatch = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, rules);
        let mut cx = testing::context(clients);
        cx.spec.batch.on = true;
        cx.spec.dns = true;
        cx
    }

    fn topic_arn(alarm: Alarm) -> &'static str {
        match alarm.topic() {
            Topic::FailedTransactions => FAILED,
            Topic::SystemErrors => SYSTEM,
        }
    }

    fn inputs() -> Vec<(&'static str, Record)> {
        testing::outputs(&[
            (
                "sns-topic:failed-transactions",
                "FailedTransactionsTopicArn",
                FAILED,
            ),
            ("sns-topic:system-errors", "SystemErrorsTopicArn", SYSTEM),
            ("load-balancer:alb", "AlbArn", ALB),
            // The same ARN: `definition` below gives every alarm that one.
            ("load-balancer:maintenance", "MaintenanceAlbArn", ALB),
        ])
    }

    fn definition(alarm: Alarm) -> Definition {
        alarm
            .definition(&cx(), topic_arn(alarm), Some(ALB))
            .unwrap()
    }

    fn arn(alarm: Alarm) -> String {
        format!(
            "arn:aws:cloudwatch:us-east-1:123456789012:alarm:payops-pr1-{}",
            alarm.slug()
        )
    }

    /// The alarm as DescribeAlarms answers for `def`.
    fn echo(alarm: Alarm, def: &Definition) -> MetricAlarm {
        let mut a = MetricAlarm::builder()
            .alarm_name(format!("payops-pr1-{}", alarm.slug()))
            .alarm_arn(arn(alarm))
            .alarm_description(&def.description)
            .actions_enabled(def.actions_enabled)
            .set_alarm_actions(Some(def.alarm_actions.clone()))
            .set_ok_actions(Some(def.ok_actions.clone()))
            .set_insufficient_data_actions(Some(Vec::new()))
            .comparison_operator(def.comparison.clone())
            .threshold(def.threshold)
            .evaluation_periods(def.evaluation_periods)
            .set_datapoints_to_alarm(def.datapoints_to_alarm)
            .set_treat_missing_data(def.treat_missing_data.clone())
            .set_evaluate_low_sample_count_percentile(
                def.evaluate_low_sample_count_percentile.clone(),
            );
        match &def.watch {
            Watch::Metric {
                metric,
                statistic,
                extended_statistic,
                period,
            } => {
                // Dimensions in another order than payops sends them.
                let mut dims = metric.sdk_dimensions();
                dims.reverse();
                a = a
                    .namespace(&metric.namespace)
                    .metric_name(&metric.name)
                    .set_dimensions(Some(dims))
                    .set_statistic(statistic.clone())
                    .set_extended_statistic(extended_statistic.clone())
                    .period(*period);
            }
            Watch::Math(queries) => {
                for q in queries {
                    a = a.metrics(
                        MetricDataQuery::builder()
                            .id(&q.id)
                            .return_data(q.return_data)
                            .set_expression(q.expression.clone())
                            .set_metric_stat(q.metric.as_ref().map(|(m, p, s)| {
                                MetricStat::builder()
                                    .metric(
                                        Metric::builder()
                                            .namespace(&m.namespace)
                                            .metric_name(&m.name)
                                            .set_dimensions(Some(m.sdk_dimensions()))
                                            .build(),
                                    )
                                    .period(*p)
                                    .stat(s)
                                    .build()
                            }))
                            .build(),
                    );
                }
            }
        }
        a.build()
    }

    fn describe(alarms: Vec<MetricAlarm>) -> Rule {
        mock!(Client::describe_alarms).then_output(move || {
            DescribeAlarmsOutput::builder()
                .set_metric_alarms(Some(alarms.clone()))
                .build()
        })
    }

    fn tagged(tags: TagMap) -> Rule {
        mock!(Client::list_tags_for_resource).then_output(move || {
            ListTagsForResourceOutput::builder()
                .set_tags(Some(cloudwatch::tags(&tags)))
                .build()
        })
    }

    fn our_tags(alarm: Alarm) -> TagMap {
        let mut tags = testing::our_tags(&alarm.step_id());
        if alarm.shift_gate() {
            tags.insert(SHIFT_GATE.into(), "true".into());
        }
        tags
    }

    #[test]
    fn every_alarm_is_one_aws_would_accept() {
        for alarm in Alarm::ALL {
            let def = definition(alarm);
            validate(&def).unwrap_or_else(|e| panic!("{}: {e}", alarm.slug()));
            assert!(def.description.starts_with("payops env pr1: "), "{def:?}");
        }
    }

    #[test]
    fn p99_latency_is_an_extended_statistic_only() {
        let def = definition(Alarm::ApiP99Latency);
        let Watch::Metric {
            metric,
            statistic,
            extended_statistic,
            ..
        } = &def.watch
        else {
            panic!("a metric alarm");
        };
        assert_eq!(statistic, &None);
        assert_eq!(extended_statistic.as_deref(), Some("p99"));
        assert_eq!(
            metric.dimensions,
            [
                ("ApiName".to_owned(), "payops-pr1-api".to_owned()),
                ("Stage".to_owned(), "v1".to_owned())
            ]
        );
        assert_eq!(
            def.evaluate_low_sample_count_percentile.as_deref(),
            Some("ignore")
        );
    }

    #[test]
    fn what_aws_rejects_and_emulators_accept_is_refused() {
        let mut both = definition(Alarm::ApiP99Latency);
        if let Watch::Metric { statistic, .. } = &mut both.watch {
            *statistic = Some(Statistic::Average);
        }
        assert!(validate(&both).unwrap_err().contains("not both"));

        let mut too_many = definition(Alarm::TransactionsTableThrottles);
        if let Watch::Math(queries) = &mut too_many.watch {
            let extra = queries[0].clone();
            queries.insert(
                0,
                Query {
                    id: "m10".into(),
                    ..extra
                },
            );
        }
        assert!(
            validate(&too_many)
                .unwrap_err()
                .contains("at most 10 metrics")
        );

        let mut two_results = definition(Alarm::Alb5xx);
        if let Watch::Math(queries) = &mut two_results.watch {
            queries[0].return_data = true;
        }
        assert!(validate(&two_results).unwrap_err().contains("exactly one"));

        let mut long = definition(Alarm::AuroraCpu);
        long.evaluation_periods = 289; // x 300 s > one day
        long.datapoints_to_alarm = Some(3);
        assert!(validate(&long).unwrap_err().contains("one day"));

        let mut datapoints = definition(Alarm::Api5xxRate);
        datapoints.datapoints_to_alarm = Some(4);
        assert!(
            validate(&datapoints)
                .unwrap_err()
                .contains("DatapointsToAlarm")
        );
    }

    #[test]
    fn actions_notify_the_right_topic_when_firing_and_recovering() {
        for alarm in Alarm::ALL {
            let def = definition(alarm);
            let topic = topic_arn(alarm);
            assert_eq!(def.alarm_actions, [topic], "{}", alarm.slug());
            assert_eq!(def.ok_actions, [topic], "{}", alarm.slug());
            assert!(def.insufficient_data_actions.is_empty());
            assert!(def.actions_enabled);
        }
        let failed: Vec<&str> = Alarm::ALL
            .iter()
            .filter(|a| a.topic() == Topic::FailedTransactions)
            .map(|a| a.slug())
            .collect();
        assert_eq!(
            failed,
            [
                "api-p99-latency",
                "api-5xx-rate",
                "transaction-errors",
                "transaction-throttles"
            ]
        );
    }

    #[test]
    fn missing_data_is_treated_per_alarm() {
        for alarm in Alarm::ALL {
            let expected = match alarm {
                // No reader reporting is the failure the alarm exists for.
                Alarm::AuroraReplicaLag => "breaching",
                // No requests: no errors, no throttles, no latency to judge.
                _ => "notBreaching",
            };
            assert_eq!(
                definition(alarm).treat_missing_data.as_deref(),
                Some(expected),
                "{}",
                alarm.slug()
            );
        }
    }

    #[test]
    fn the_request_path_alarms_gate_shifts_and_the_others_do_not() {
        let gates: Vec<&str> = Alarm::ALL
            .iter()
            .filter(|a| a.shift_gate())
            .map(|a| a.slug())
            .collect();
        assert_eq!(
            gates,
            [
                "api-p99-latency",
                "api-5xx-rate",
                "transaction-errors",
                "transaction-throttles",
                "alb-5xx"
            ]
        );
    }

    #[test]
    fn dimensions_name_the_envs_resources() {
        let Watch::Math(alb) = definition(Alarm::Alb5xx).watch else {
            panic!("metric math");
        };
        let names: Vec<&str> = alb
            .iter()
            .filter_map(|q| q.metric.as_ref().map(|(m, _, _)| m.name.as_str()))
            .collect();
        assert_eq!(
            names,
            ["HTTPCode_Target_5XX_Count", "HTTPCode_ELB_5XX_Count"]
        );
        for q in alb.iter().filter_map(|q| q.metric.as_ref()) {
            assert_eq!(
                q.0.dimensions,
                [(
                    "LoadBalancer".to_owned(),
                    "app/payops-pr1-alb/50dc6c495c0c9188".to_owned()
                )]
            );
        }
        let Watch::Math(table) = definition(Alarm::FraudRulesTableThrottles).watch else {
            panic!("metric math");
        };
        assert_eq!(table.len(), 11);
        assert!(
            table
                .iter()
                .filter_map(|q| q.metric.as_ref())
                .all(|(m, _, s)| {
                    m.name == "ThrottledRequests"
                        && s == "Sum"
                        && m.dimensions
                            .contains(&("TableName".into(), "payops-pr1-fraud-rules".into()))
                })
        );
        let Watch::Metric { metric, .. } = definition(Alarm::AuroraReplicaLag).watch else {
            panic!("a metric alarm");
        };
        assert!(
            metric
                .dimensions
                .contains(&("DBClusterIdentifier".into(), "payops-pr1-aurora".into()))
        );
        let Watch::Metric { metric, .. } = definition(Alarm::TransactionErrors).watch else {
            panic!("a metric alarm");
        };
        assert_eq!(
            metric.dimensions,
            [(
                "FunctionName".to_owned(),
                "payops-pr1-transaction-processing".to_owned()
            )]
        );
        assert_eq!(Alarm::ApiP99Latency.output_key(), "ApiP99LatencyAlarmName");
        assert_eq!(Alarm::Alb5xx.output_key(), "Alb5xxAlarmName");
    }

    #[tokio::test]
    async fn creates_the_p99_alarm_with_extended_statistic_only_and_its_tags() {
        let put = mock!(Client::put_metric_alarm)
            .match_requests(|r| {
                let tag = |k: &str| {
                    r.tags()
                        .iter()
                        .find(|t| t.key() == Some(k))
                        .and_then(|t| t.value())
                        .map(str::to_owned)
                };
                r.alarm_name() == Some("payops-pr1-api-p99-latency")
                    && r.statistic().is_none()
                    && r.extended_statistic() == Some("p99")
                    && r.metric_name() == Some("Latency")
                    && r.alarm_actions() == [FAILED]
                    && r.ok_actions() == [FAILED]
                    && r.insufficient_data_actions().is_empty()
                    && r.treat_missing_data() == Some("notBreaching")
                    && r.metrics().is_empty()
                    && tag(SHIFT_GATE).as_deref() == Some("true")
                    && tag("payops:env").as_deref() == Some("pr1")
                    && tag("payops:step").as_deref() == Some("alarm:api-p99-latency")
            })
            .then_output(|| PutMetricAlarmOutput::builder().build());
        let cx = cx_with(&[&describe(vec![]), &put]);
        let applied = testing::ensure(
            &cx,
            "alarm:api-p99-latency",
            AlarmStep::new(Alarm::ApiP99Latency),
            &inputs(),
        )
        .await
        .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(put.num_calls(), 1);
        assert_eq!(
            applied.record.outputs["ApiP99LatencyAlarmName"],
            "payops-pr1-api-p99-latency"
        );
        assert_eq!(applied.record.resources["alarm"], arn(Alarm::ApiP99Latency));
    }

    #[tokio::test]
    async fn metric_math_alarms_send_no_top_level_metric_fields() {
        let put = mock!(Client::put_metric_alarm)
            .match_requests(|r| {
                r.metric_name().is_none()
                    && r.namespace().is_none()
                    && r.statistic().is_none()
                    && r.extended_statistic().is_none()
                    && r.period().is_none()
                    && r.metrics().len() == 3
                    && r.metrics()
                        .iter()
                        .filter(|q| q.return_data() == Some(true))
                        .count()
                        == 1
                    && r.alarm_actions() == [SYSTEM]
            })
            .then_output(|| PutMetricAlarmOutput::builder().build());
        let cx = cx_with(&[&describe(vec![]), &put]);
        testing::ensure(
            &cx,
            "alarm:alb-5xx",
            AlarmStep::new(Alarm::Alb5xx),
            &inputs(),
        )
        .await
        .unwrap();
        assert_eq!(put.num_calls(), 1);
    }

    #[tokio::test]
    async fn converged_alarms_make_no_mutating_call() {
        for alarm in Alarm::ALL {
            // No Put/Tag/Untag rule: any of them would fail the test.
            let cx = cx_with(&[
                &describe(vec![echo(alarm, &definition(alarm))]),
                &tagged(our_tags(alarm)),
            ]);
            let applied = testing::ensure(&cx, &alarm.step_id(), AlarmStep::new(alarm), &inputs())
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", alarm.slug()));
            assert_eq!(applied.change, Change::Unchanged, "{}", alarm.slug());
            assert!(
                applied.notes.is_empty(),
                "{}: {:?}",
                alarm.slug(),
                applied.notes
            );
        }
    }

    #[tokio::test]
    async fn an_alarm_of_our_name_without_our_tags_is_refused() {
        let alarm = Alarm::TransactionErrors;
        let cx = cx_with(&[
            &describe(vec![echo(alarm, &definition(alarm))]),
            &tagged(TagMap::from([("team".into(), "payments".into())])),
        ]);
        let err = testing::ensure(&cx, &alarm.step_id(), AlarmStep::new(alarm), &inputs())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("CloudWatch alarm payops-pr1-transaction-errors exists but is not tagged"),
            "{err}"
        );
        assert!(
            testing::destroy(&cx, &alarm.step_id(), AlarmStep::new(alarm))
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn drift_is_reported_then_put_back_and_the_gate_tag_added() {
        let alarm = Alarm::Api5xxRate;
        let mut drifted = definition(alarm);
        drifted.threshold = 0.5;
        drifted.alarm_actions.clear();
        // What an emulator keeps when given both: also drift.
        if let Watch::Metric {
            extended_statistic, ..
        } = &mut drifted.watch
        {
            *extended_statistic = Some("p99".into());
        }
        let mut tags = our_tags(alarm);
        tags.remove(SHIFT_GATE);
        let rules = [describe(vec![echo(alarm, &drifted)]), tagged(tags)];
        let cx = cx_with(&[&rules[0], &rules[1]]);
        let Observation::Present { drift, .. } =
            testing::observe(&cx, &alarm.step_id(), AlarmStep::new(alarm), &inputs())
                .await
                .unwrap()
        else {
            panic!("present");
        };
        assert_eq!(
            drift,
            [
                "update the alarm's statistic, threshold, actions",
                "add tags payops:shift-gate"
            ]
        );
        let put = mock!(Client::put_metric_alarm)
            .match_requests(|r| {
                r.threshold() == Some(0.01)
                    && r.statistic() == Some(&Statistic::Average)
                    && r.extended_statistic().is_none()
                    && r.tags().is_empty()
            })
            .then_output(|| PutMetricAlarmOutput::builder().build());
        let tag = mock!(Client::tag_resource)
            .match_requests(|r| {
                r.resource_arn() == Some(arn(Alarm::Api5xxRate).as_str())
                    && r.tags().len() == 1
                    && r.tags()[0].key() == Some(SHIFT_GATE)
            })
            .then_output(|| TagResourceOutput::builder().build());
        let cx = cx_with(&[&rules[0], &rules[1], &put, &tag]);
        let applied = testing::ensure(&cx, &alarm.step_id(), AlarmStep::new(alarm), &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Updated);
        assert_eq!((put.num_calls(), tag.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn a_composite_alarm_holding_our_name_is_a_conflict_not_a_create() {
        use aws_sdk_cloudwatch::types::{AlarmType, CompositeAlarm};
        // No PutMetricAlarm rule.
        let describe = mock!(Client::describe_alarms)
            .match_requests(|r| {
                r.alarm_types().contains(&AlarmType::MetricAlarm)
                    && r.alarm_types().contains(&AlarmType::CompositeAlarm)
            })
            .then_output(|| {
                DescribeAlarmsOutput::builder()
                    .composite_alarms(
                        CompositeAlarm::builder()
                            .alarm_name("payops-pr1-alb-5xx")
                            .build(),
                    )
                    .build()
            });
        let cx = cx_with(&[&describe]);
        let err = testing::ensure(
            &cx,
            "alarm:alb-5xx",
            AlarmStep::new(Alarm::Alb5xx),
            &inputs(),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("a composite alarm named payops-pr1-alb-5xx"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn the_sweep_names_alarms_of_the_env_left_behind_only() {
        use aws_sdk_cloudwatch::types::StateValue;
        let describe = mock!(Client::describe_alarms)
            .match_requests(|r| r.alarm_name_prefix() == Some("payops-pr1-"))
            .then_output(|| {
                let a = |n: &str| {
                    MetricAlarm::builder()
                        .alarm_name(n)
                        .alarm_arn(format!(
                            "arn:aws:cloudwatch:us-east-1:123456789012:alarm:{n}"
                        ))
                        .state_value(StateValue::Ok)
                        .build()
                };
                DescribeAlarmsOutput::builder()
                    .metric_alarms(a("payops-pr1-renamed"))
                    .metric_alarms(a("payops-pr1-2-api-5xx-rate"))
                    .build()
            });
        let tags = mock!(Client::list_tags_for_resource).then_compute_output(|r| {
            let env = if r.resource_arn().unwrap().ends_with("payops-pr1-renamed") {
                "pr1"
            } else {
                "pr1-2"
            };
            ListTagsForResourceOutput::builder()
                .tags(Tag::builder().key("payops:env").value(env).build())
                .tags(
                    Tag::builder()
                        .key("payops:managed-by")
                        .value("payops")
                        .build(),
                )
                .build()
        });
        let cx = cx_with(&[&describe, &tags]);
        assert_eq!(
            leftovers(&cx).await.unwrap(),
            ["cloudwatch alarm payops-pr1-renamed"]
        );
    }

    #[tokio::test]
    async fn an_alarm_that_no_longer_gates_shifts_loses_the_tag() {
        let alarm = Alarm::AuroraCpu;
        let mut tags = our_tags(alarm);
        tags.insert(SHIFT_GATE.into(), "true".into());
        let untag = mock!(Client::untag_resource)
            .match_requests(|r| r.tag_keys() == [SHIFT_GATE])
            .then_output(|| UntagResourceOutput::builder().build());
        let cx = cx_with(&[
            &describe(vec![echo(alarm, &definition(alarm))]),
            &tagged(tags),
            &untag,
        ]);
        let applied = testing::ensure(&cx, &alarm.step_id(), AlarmStep::new(alarm), &inputs())
            .await
            .unwrap();
        assert_eq!(applied.notes, ["remove tags payops:shift-gate"]);
        assert_eq!(untag.num_calls(), 1);
    }

    #[tokio::test]
    async fn destroy_deletes_and_tolerates_the_alarm_vanishing() {
        let alarm = Alarm::AuroraReplicaLag;
        let delete = mock!(Client::delete_alarms)
            .match_requests(|r| r.alarm_names() == ["payops-pr1-aurora-replica-lag"])
            .sequence()
            .output(|| DeleteAlarmsOutput::builder().build())
            .error(|| DeleteAlarmsError::generic(testing::error_meta("ResourceNotFound")))
            .build();
        let cx = cx_with(&[
            &describe(vec![echo(alarm, &definition(alarm))]),
            &tagged(our_tags(alarm)),
            &delete,
        ]);
        for _ in 0..2 {
            let removed = testing::destroy(&cx, &alarm.step_id(), AlarmStep::new(alarm))
                .await
                .unwrap();
            assert!(matches!(removed, Removed::Deleted { .. }));
        }
        let cx = cx_with(&[&describe(vec![])]);
        assert_eq!(
            testing::destroy(&cx, &alarm.step_id(), AlarmStep::new(alarm))
                .await
                .unwrap(),
            Removed::AlreadyAbsent
        );
    }

    fn with_readers(mut cx: Context, readers: u8) -> Context {
        cx.spec.database.readers = readers;
        cx
    }

    #[test]
    fn without_readers_only_the_replica_lag_alarm_is_unwanted() {
        let none = with_readers(cx(), 0);
        let unwanted: Vec<&str> = Alarm::ALL
            .iter()
            .filter(|a| !a.wanted(&none))
            .map(|a| a.slug())
            .collect();
        assert_eq!(unwanted, ["aurora-replica-lag"]);
        let one = with_readers(cx(), 1);
        assert!(Alarm::ALL.iter().all(|a| a.wanted(&one)));
    }

    #[test]
    fn the_acu_alarm_is_wanted_only_with_serverless_v2_and_watches_the_clusters_ceiling() {
        let mut provisioned = cx();
        provisioned.spec.database.capacity = None;
        let unwanted: Vec<&str> = Alarm::ALL
            .iter()
            .filter(|a| !a.wanted(&provisioned))
            .map(|a| a.slug())
            .collect();
        assert_eq!(unwanted, ["aurora-acu-utilization"]);
        assert!(Alarm::AuroraAcuUtilization.wanted(&cx()));
        let def = definition(Alarm::AuroraAcuUtilization);
        let Watch::Metric {
            metric, statistic, ..
        } = &def.watch
        else {
            panic!("a metric alarm");
        };
        assert_eq!(metric.name, "ACUUtilization");
        assert_eq!(
            metric.dimensions,
            [("DBClusterIdentifier".into(), "payops-pr1-aurora".into())]
        );
        assert_eq!(*statistic, Some(Statistic::Maximum));
        assert_eq!(def.threshold, 90.0);
        assert_eq!(def.treat_missing_data.as_deref(), Some("notBreaching"));
        assert_eq!(Alarm::AuroraAcuUtilization.topic(), Topic::SystemErrors);
        assert!(!Alarm::AuroraAcuUtilization.shift_gate());
    }

    #[test]
    fn without_the_event_backbone_only_its_alarms_are_unwanted() {
        let mut off = cx();
        off.spec.events = false;
        let unwanted: Vec<&str> = Alarm::ALL
            .iter()
            .filter(|a| !a.wanted(&off))
            .map(|a| a.slug())
            .collect();
        assert_eq!(
            unwanted,
            [
                "payments-processing-dlq-not-empty",
                "payments-analytics-dlq-not-empty",
                "payments-processing-oldest-message",
                "payment-events-failed",
                "payments-events-dlq-not-empty",
                "queue-consumer-errors",
                "transaction-log-freshness",
                "settlement-requests-failed",
                "transaction-log-records-failed"
            ]
        );
    }

    #[test]
    fn the_events_dlq_and_the_consumers_whole_batch_failures_are_alarmed() {
        let c = cx();
        let Watch::Metric {
            metric, statistic, ..
        } = Alarm::EventsDlqNotEmpty
            .definition(&c, "t", None)
            .unwrap()
            .watch
        else {
            panic!("a single metric");
        };
        assert_eq!(metric.namespace, "AWS/SQS");
        assert_eq!(metric.name, "ApproximateNumberOfMessagesVisible");
        assert_eq!(
            metric.dimensions,
            [(
                "QueueName".to_owned(),
                "payops-pr1-payments-events-dlq".to_owned()
            )]
        );
        assert_eq!(statistic, Some(Statistic::Maximum));
        let Watch::Metric { metric, .. } = Alarm::QueueConsumerErrors
            .definition(&c, "t", None)
            .unwrap()
            .watch
        else {
            panic!("a single metric");
        };
        assert_eq!(
            (metric.namespace.as_str(), metric.name.as_str()),
            ("AWS/Lambda", "Errors")
        );
        assert_eq!(
            metric.dimensions,
            [(
                "FunctionName".to_owned(),
                "payops-pr1-payment-queue-consumer".to_owned()
            )]
        );
    }

    #[test]
    fn failed_payment_events_are_counted_per_env_in_the_namespace_the_handler_writes() {
        let d = Alarm::PaymentEventsFailed
            .definition(&cx(), "t", None)
            .unwrap();
        let Watch::Metric {
            metric, statistic, ..
        } = &d.watch
        else {
            panic!("{d:?}");
        };
        let handler = include_str!("../../../lambda/transaction_processing.py");
        assert!(
            handler.contains(&format!("METRICS_NAMESPACE = \"{}\"", metric.namespace)),
            "the handler writes PaymentEventsFailed to another namespace than {}",
            metric.namespace
        );
        assert!(handler.contains(&format!("\"{}\"", metric.name)));
        assert_eq!(metric.dimensions, [("Env".to_owned(), "pr1".to_owned())]);
        assert_eq!(statistic.as_ref(), Some(&Statistic::Sum));
        assert_eq!(Alarm::PaymentEventsFailed.topic(), Topic::SystemErrors);
    }

    #[test]
    fn failed_settlement_requests_and_log_records_are_alarmed_on_the_names_the_handler_counts() {
        let handler = include_str!("../../../lambda/transaction_processing.py");
        for (alarm, name) in [
            (Alarm::SettlementRequestsFailed, "SettlementRequestsFailed"),
            (
                Alarm::TransactionLogRecordsFailed,
                "TransactionLogRecordsFailed",
            ),
        ] {
            let d = alarm.definition(&cx(), SYSTEM, None).unwrap();
            let Watch::Metric {
                metric,
                statistic,
                period,
                ..
            } = &d.watch
            else {
                panic!("{d:?}");
            };
            assert_eq!(metric.namespace, PAYMENT_METRICS_NAMESPACE);
            assert_eq!(metric.name, name);
            // The very call that counts it, so a rename breaks this test.
            assert!(
                handler.contains(&format!("count_failure(lib.env_name(), \"{name}\")")),
                "the handler no longer counts {name}"
            );
            assert_eq!(metric.dimensions, [("Env".to_owned(), "pr1".to_owned())]);
            assert_eq!(
                (
                    statistic.as_ref(),
                    *period,
                    d.threshold,
                    d.evaluation_periods
                ),
                (Some(&Statistic::Sum), 60, 1.0, 1)
            );
            assert_eq!(d.treat_missing_data.as_deref(), Some("notBreaching"));
            assert_eq!(d.alarm_actions, [SYSTEM]);
            assert_eq!(d.ok_actions, [SYSTEM]);
            assert_eq!(alarm.topic(), Topic::SystemErrors);
            assert!(!alarm.shift_gate());
            assert!(validate(&d).is_ok());
        }
    }

    #[test]
    fn the_queue_alarms_watch_the_queues_by_name_and_tell_system_errors() {
        let c = cx();
        let dlq = Alarm::ProcessingDlqNotEmpty
            .definition(&c, "t", None)
            .unwrap();
        let Watch::Metric {
            metric, statistic, ..
        } = &dlq.watch
        else {
            panic!("{dlq:?}");
        };
        assert_eq!(metric.namespace, "AWS/SQS");
        assert_eq!(metric.name, "ApproximateNumberOfMessagesVisible");
        assert_eq!(
            metric.dimensions,
            [(
                "QueueName".to_owned(),
                "payops-pr1-payments-processing-dlq".to_owned()
            )]
        );
        assert_eq!(*statistic, Some(Statistic::Maximum));
        assert_eq!(dlq.threshold, 0.0);
        assert_eq!(dlq.comparison, ComparisonOperator::GreaterThanThreshold);
        let analytics = Alarm::AnalyticsDlqNotEmpty
            .definition(&c, "t", None)
            .unwrap();
        let Watch::Metric { metric, .. } = &analytics.watch else {
            panic!("{analytics:?}");
        };
        assert_eq!(metric.dimensions[0].1, "payops-pr1-payments-analytics-dlq");
        let age = Alarm::ProcessingOldestMessage
            .definition(&c, "t", None)
            .unwrap();
        let Watch::Metric { metric, .. } = &age.watch else {
            panic!("{age:?}");
        };
        assert_eq!(metric.name, "ApproximateAgeOfOldestMessage");
        assert_eq!(metric.dimensions[0].1, "payops-pr1-payments-processing");
        for a in [
            Alarm::ProcessingDlqNotEmpty,
            Alarm::AnalyticsDlqNotEmpty,
            Alarm::ProcessingOldestMessage,
        ] {
            assert_eq!(a.topic(), Topic::SystemErrors);
            assert!(!a.shift_gate());
        }
    }

    #[tokio::test]
    async fn without_readers_up_deletes_the_replica_lag_alarm_and_creates_none() {
        let alarm = Alarm::AuroraReplicaLag;
        // An env created with readers, now converged with --db-readers 0.
        // No PutMetricAlarm rule: creating or updating it would fail the test.
        let delete = mock!(Client::delete_alarms)
            .match_requests(|r| r.alarm_names() == ["payops-pr1-aurora-replica-lag"])
            .then_output(|| DeleteAlarmsOutput::builder().build());
        let rules = [
            describe(vec![echo(alarm, &definition(alarm))]),
            tagged(our_tags(alarm)),
        ];
        let cx = with_readers(cx_with(&[&rules[0], &rules[1]]), 0);
        let observed = testing::observe(&cx, &alarm.step_id(), AlarmStep::new(alarm), &inputs())
            .await
            .unwrap();
        assert!(
            matches!(observed, Observation::Unwanted { .. }),
            "{observed:?}"
        );
        let cx = with_readers(cx_with(&[&rules[0], &rules[1], &delete]), 0);
        let applied = testing::ensure(&cx, &alarm.step_id(), AlarmStep::new(alarm), &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Deleted);
        assert_eq!(delete.num_calls(), 1);
        assert!(
            !applied
                .record
                .outputs
                .contains_key("AuroraReplicaLagAlarmName")
        );

        // Gone: the next `up` finds nothing and creates nothing.
        let cx = with_readers(cx_with(&[&describe(vec![])]), 0);
        let applied = testing::ensure(&cx, &alarm.step_id(), AlarmStep::new(alarm), &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Unchanged);
        assert!(applied.notes.is_empty(), "{:?}", applied.notes);
    }

    #[tokio::test]
    async fn with_readers_the_replica_lag_alarm_is_created_again() {
        let alarm = Alarm::AuroraReplicaLag;
        let put = mock!(Client::put_metric_alarm)
            .match_requests(|r| {
                r.alarm_name() == Some("payops-pr1-aurora-replica-lag")
                    && r.metric_name() == Some("AuroraReplicaLag")
                    && r.treat_missing_data() == Some("breaching")
                    && r.alarm_actions() == [SYSTEM]
            })
            .then_output(|| PutMetricAlarmOutput::builder().build());
        let cx = with_readers(cx_with(&[&describe(vec![]), &put]), 2);
        let applied = testing::ensure(&cx, &alarm.step_id(), AlarmStep::new(alarm), &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(put.num_calls(), 1);
        assert_eq!(
            applied.record.outputs["AuroraReplicaLagAlarmName"],
            "payops-pr1-aurora-replica-lag"
        );
        // And the other Aurora alarm does not depend on readers.
        let cpu = Alarm::AuroraCpu;
        let cx = with_readers(
            cx_with(&[
                &describe(vec![echo(cpu, &definition(cpu))]),
                &tagged(our_tags(cpu)),
            ]),
            0,
        );
        let applied = testing::ensure(&cx, &cpu.step_id(), AlarmStep::new(cpu), &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Unchanged);
    }
}
