//! The env's CloudWatch dashboard `payops-<env>-<region>`: API latency and errors,
//! the payment functions, blue vs green behind the ALB, Aurora and DynamoDB,
//! each widget naming the env's real resources.
//!
//! Dashboards cannot be tagged, so ownership lives in the body: the first
//! widget is a text widget that says `payops:managed-by=payops` and
//! `payops:env=<env>` and `payops:region=<region>`. A dashboard of our name
//! without that marker (or with another env's) is someone else's: never
//! adopted, overwritten or deleted.
//!
//! Dashboards are account-wide ("All dashboards in your account are global,
//! not region-specific": PutDashboard API reference), so the name and the
//! marker carry the region: the env of the same name in another region (a
//! DR twin) has its own. Older versions named it `payops-<env>` with no
//! region in the marker: such a dashboard is moved to the new name when it
//! is provably this region's (every graph reads this region's metrics), and
//! otherwise left to the region it shows.
//!
//! The body is generated deterministically (fixed widget order and layout)
//! and compared as parsed JSON, so a converged `up` makes no PutDashboard.
//! PutDashboard has no create-only mode: a dashboard someone creates under our
//! name between `find` and `create` would be overwritten (a window of
//! milliseconds, on a name that is ours by convention).

use std::fmt;

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::aws::{AwsError, OpResult, absent_on};
use crate::engine::{Record, StepCx};
use crate::naming::EventRule;
use crate::tags::{self, TagMap};

use crate::resources::context::Context;
use crate::resources::model::Function;
use crate::resources::observability::monitoring::{
    self, ALB_INPUT, BLUE_INPUT, GREEN_INPUT, TABLES,
};
use crate::resources::resource::Resource;

/// What GetDashboard and DeleteDashboards answer for a dashboard that is not
/// there (emulators use the longer form).
const NOT_FOUND: [&str; 2] = ["ResourceNotFound", "ResourceNotFoundException"];
/// Every graph aggregates per minute: the alarms evaluate the same periods.
const PERIOD: i64 = 60;
const ROW: i64 = 6;

pub struct Dashboard;

pub struct FoundDashboard {
    name: String,
    /// None when the body is not JSON (someone broke it): `diff` rewrites it.
    body: Option<Value>,
}

pub enum Fix {
    Body {
        widgets: Vec<String>,
    },
    /// From the region-blind name of an older version to this region's.
    Move {
        from: String,
        to: String,
    },
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Body { widgets } if widgets.is_empty() => {
                f.write_str("rewrite the dashboard body (it differs from the env's resources)")
            }
            Self::Body { widgets } => write!(f, "update widgets {}", widgets.join(", ")),
            Self::Move { from, to } => write!(
                f,
                "move dashboard {from} to {to} (dashboards are account-wide: the name carries \
                 the region)"
            ),
        }
    }
}

/// `payops-<env>-<region>`.
pub fn name(cx: &Context) -> String {
    cx.names.dashboard()
}

/// The text of the marker widget: readable for people, and the ownership
/// tokens payops looks for.
fn marker(cx: &Context) -> String {
    let env = cx.env();
    format!(
        "## payops env {env}\nPayments API, functions, blue/green traffic, Aurora and DynamoDB of \
         env {env}. Managed by payops: `payops up` overwrites edits, `payops down` deletes it.\n\n\
         `{}={}` `{}={env}` `{}={}`",
        tags::MANAGED_BY,
        tags::MANAGER,
        tags::ENV,
        tags::REGION,
        cx.region
    )
}

/// The regions a body's graphs read their metrics from.
fn body_regions(body: Option<&Value>) -> std::collections::BTreeSet<String> {
    body.and_then(|b| b["widgets"].as_array())
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .filter_map(|w| w["properties"]["region"].as_str())
        .map(str::to_owned)
        .collect()
}

/// Whose a dashboard is, by its marker; a marker of an older version names
/// no region, and then only a body whose every graph reads this region's
/// metrics proves it this region's env's.
fn owner(cx: &Context, marker: &TagMap, body: Option<&Value>) -> tags::Ownership {
    match tags::global_ownership(marker, cx.env(), &cx.region) {
        tags::Ownership::Ours if !marker.contains_key(tags::REGION) => {
            let regions = body_regions(body);
            if regions.len() == 1 && regions.contains(&cx.region) {
                tags::Ownership::Ours
            } else {
                let shown: Vec<&str> = regions.iter().map(String::as_str).collect();
                tags::Ownership::OtherRegion(if shown.is_empty() {
                    "unknown".into()
                } else {
                    shown.join(", ")
                })
            }
        }
        other => other,
    }
}

/// The ownership tokens (`payops:<key>=<value>`) of a body's text widgets.
fn marker_tags(body: &Value) -> TagMap {
    let mut found = TagMap::new();
    let widgets = body["widgets"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    for w in widgets.iter().filter(|w| w["type"] == "text") {
        let text = w["properties"]["markdown"].as_str().unwrap_or_default();
        for token in text.replace('`', " ").split_whitespace() {
            if let Some((k, v)) = token.split_once('=')
                && k.starts_with("payops:")
            {
                found.insert(k.to_owned(), v.to_owned());
            }
        }
    }
    found
}

/// One line of a metric widget: `[namespace, metric, dim, value, ..., {options}]`.
fn metric(namespace: &str, metric: &str, dims: &[(&str, &str)], options: Value) -> Value {
    let mut line = vec![json!(namespace), json!(metric)];
    for (k, v) in dims {
        line.push(json!(k));
        line.push(json!(v));
    }
    line.push(options);
    Value::Array(line)
}

struct Layout {
    x: i64,
    y: i64,
    region: String,
    widgets: Vec<Value>,
}

impl Layout {
    /// Places a graph `width` columns wide (of 24), wrapping to a new row.
    fn graph(&mut self, width: i64, title: &str, stat: &str, metrics: Vec<Value>) {
        if self.x + width > 24 {
            self.x = 0;
            self.y += ROW;
        }
        self.widgets.push(json!({
            "type": "metric",
            "x": self.x,
            "y": self.y,
            "width": width,
            "height": ROW,
            "properties": {
                "title": title,
                "view": "timeSeries",
                "stacked": false,
                "region": self.region,
                "period": PERIOD,
                "stat": stat,
                "metrics": metrics,
            }
        }));
        self.x += width;
    }
}

/// The dashboard body for the env, from its names and the ALB and target
/// group ARNs (whose ids only AWS knows).
pub fn body(
    cx: &Context,
    alb_arn: &str,
    blue_arn: &str,
    green_arn: &str,
) -> Result<Value, AwsError> {
    let lb = monitoring::load_balancer_dimension(alb_arn)?;
    let slots = [
        ("blue", monitoring::target_group_dimension(blue_arn)?),
        ("green", monitoring::target_group_dimension(green_arn)?),
    ];
    let api = monitoring::api_name(cx);
    let api_dims = [("ApiName", api.as_str()), ("Stage", monitoring::API_STAGE)];
    let functions: Vec<(&str, String)> = Function::ALL
        .iter()
        .filter(|f| f.wanted(cx))
        .map(|f| (f.slug(), f.name(cx)))
        .collect();
    let cluster = monitoring::aurora_cluster(cx);
    let role = |r: &'static str| [("DBClusterIdentifier", cluster.clone()), ("Role", r.into())];
    let tables: Vec<(&str, String)> = TABLES
        .iter()
        .map(|(suffix, label)| (*label, monitoring::table_name(cx, suffix)))
        .collect();

    let mut l = Layout {
        x: 0,
        y: 0,
        region: cx.region.clone(),
        widgets: vec![json!({
            "type": "text",
            "x": 0,
            "y": 0,
            "width": 24,
            "height": 2,
            "properties": { "markdown": marker(cx) }
        })],
    };
    l.y = 2;

    // The request path, as clients see it.
    const API: &str = "AWS/ApiGateway";
    l.graph(
        12,
        "API latency (ms)",
        "p99",
        vec![
            metric(
                API,
                "Latency",
                &api_dims,
                json!({"stat": "p50", "label": "p50"}),
            ),
            metric(
                API,
                "Latency",
                &api_dims,
                json!({"stat": "p99", "label": "p99"}),
            ),
        ],
    );
    l.graph(
        12,
        "API errors (per minute)",
        "Sum",
        vec![
            metric(API, "4XXError", &api_dims, json!({"label": "4XX"})),
            metric(API, "5XXError", &api_dims, json!({"label": "5XX"})),
        ],
    );

    // The payment functions.
    const LAMBDA: &str = "AWS/Lambda";
    for (title, metric_name, stat) in [
        ("Lambda invocations", "Invocations", "Sum"),
        ("Lambda errors", "Errors", "Sum"),
        ("Lambda duration p99 (ms)", "Duration", "p99"),
        ("Lambda throttles", "Throttles", "Sum"),
    ] {
        let lines = functions
            .iter()
            .map(|(slug, name)| {
                metric(
                    LAMBDA,
                    metric_name,
                    &[("FunctionName", name)],
                    json!({"label": slug}),
                )
            })
            .collect();
        l.graph(6, title, stat, lines);
    }

    // Blue vs green behind the ALB.
    const ELB: &str = "AWS/ApplicationELB";
    let per_slot = |metric_name: &str| -> Vec<Value> {
        slots
            .iter()
            .map(|(slot, tg)| {
                metric(
                    ELB,
                    metric_name,
                    &[("LoadBalancer", &lb), ("TargetGroup", tg)],
                    json!({"label": slot}),
                )
            })
            .collect()
    };
    l.graph(
        12,
        "ALB target response time p99, blue vs green (s)",
        "p99",
        per_slot("TargetResponseTime"),
    );
    let mut errors = per_slot("HTTPCode_Target_5XX_Count");
    errors.push(metric(
        ELB,
        "HTTPCode_ELB_5XX_Count",
        &[("LoadBalancer", &lb)],
        json!({"label": "ALB itself"}),
    ));
    l.graph(12, "ALB 5XX, blue vs green (per minute)", "Sum", errors);

    // Aurora, by role: an instance's role changes on failover, the role
    // series follow the cluster (AWS's advice for Aurora alarms and graphs).
    const RDS: &str = "AWS/RDS";
    let by_role = |metric_name: &str, roles: &[&'static str]| -> Vec<Value> {
        roles
            .iter()
            .map(|r| {
                let dims = role(r);
                let dims: Vec<(&str, &str)> = dims.iter().map(|(k, v)| (*k, v.as_str())).collect();
                metric(RDS, metric_name, &dims, json!({"label": r.to_lowercase()}))
            })
            .collect()
    };
    l.graph(
        6,
        "Aurora CPU (%)",
        "Maximum",
        by_role("CPUUtilization", &["WRITER", "READER"]),
    );
    l.graph(
        6,
        "Aurora connections",
        "Maximum",
        by_role("DatabaseConnections", &["WRITER", "READER"]),
    );
    let mut latency = Vec::new();
    for (metric_name, short) in [("ReadLatency", "read"), ("WriteLatency", "write")] {
        for r in ["WRITER", "READER"] {
            let dims = role(r);
            let dims: Vec<(&str, &str)> = dims.iter().map(|(k, v)| (*k, v.as_str())).collect();
            latency.push(metric(
                RDS,
                metric_name,
                &dims,
                json!({"label": format!("{short} {}", r.to_lowercase())}),
            ));
        }
    }
    l.graph(6, "Aurora read/write latency (s)", "Average", latency);
    l.graph(
        6,
        "Aurora replica lag (ms)",
        "Maximum",
        by_role("AuroraReplicaLag", &["READER"]),
    );
    // Serverless v2 only (provisioned instances publish no ACU metrics): the
    // capacity each instance holds (cluster series: the average of the
    // instances, and the busiest), and its share of the range's maximum.
    if let Some(capacity) = cx.spec.database.capacity {
        let cluster_dims = [("DBClusterIdentifier", cluster.as_str())];
        l.graph(
            6,
            &format!("Aurora Serverless v2 capacity (ACUs, range {capacity})"),
            "Maximum",
            vec![
                metric(
                    RDS,
                    "ServerlessDatabaseCapacity",
                    &cluster_dims,
                    json!({"label": "busiest instance", "stat": "Maximum"}),
                ),
                metric(
                    RDS,
                    "ServerlessDatabaseCapacity",
                    &cluster_dims,
                    json!({"label": "average", "stat": "Average"}),
                ),
            ],
        );
        l.graph(
            6,
            "Aurora ACU utilization (% of max)",
            "Maximum",
            vec![metric(
                RDS,
                "ACUUtilization",
                &cluster_dims,
                json!({"label": "cluster"}),
            )],
        );
    }

    // DynamoDB: capacity per table; throttles and latency are published per
    // table and operation only, so a search per table gathers every operation.
    const DDB: &str = "AWS/DynamoDB";
    let mut capacity = Vec::new();
    for (label, table) in &tables {
        for (metric_name, short) in [
            ("ConsumedReadCapacityUnits", "read"),
            ("ConsumedWriteCapacityUnits", "write"),
        ] {
            capacity.push(metric(
                DDB,
                metric_name,
                &[("TableName", table)],
                json!({"label": format!("{label} {short}")}),
            ));
        }
    }
    l.graph(
        8,
        "DynamoDB consumed capacity (units per minute)",
        "Sum",
        capacity,
    );
    let search = |metric_name: &str, table: &str, stat: &str| {
        format!(
            "SEARCH('{{{DDB},Operation,TableName}} MetricName=\"{metric_name}\" TableName=\"{table}\"', '{stat}', {PERIOD})"
        )
    };
    let throttles = tables
        .iter()
        .enumerate()
        .map(|(i, (label, table))| {
            json!([{
                "expression": format!("SUM({})", search("ThrottledRequests", table, "Sum")),
                "label": label,
                "id": format!("throttles{i}"),
            }])
        })
        .collect();
    l.graph(8, "DynamoDB throttled requests", "Sum", throttles);
    let latency = tables
        .iter()
        .enumerate()
        .map(|(i, (label, table))| {
            json!([{
                "expression": search("SuccessfulRequestLatency", table, "Average"),
                "label": label,
                "id": format!("latency{i}"),
            }])
        })
        .collect();
    l.graph(
        8,
        "DynamoDB successful request latency by operation (ms)",
        "Average",
        latency,
    );

    // Every rule of the web ACL, by name, as WAF publishes them (`Rule=ALL`
    // is the total), so a rule added later shows without a change here.
    let acl = cx.names.web_acl();
    let waf = |metric_name: &str| {
        format!(
            "SEARCH('{{AWS/WAFV2,Region,Rule,WebACL}} MetricName=\"{metric_name}\" WebACL=\"{acl}\"', 'Sum', {PERIOD})"
        )
    };
    l.graph(
        12,
        "WAF blocked requests by rule",
        "Sum",
        vec![json!([{ "expression": waf("BlockedRequests"), "id": "wafblocked" }])],
    );
    l.graph(
        12,
        "WAF allowed requests by rule",
        "Sum",
        vec![json!([{ "expression": waf("AllowedRequests"), "id": "wafallowed" }])],
    );

    // The event backbone, when the env has it: what waits in the queues,
    // what no consumer could handle (the dead-letter queues, each alarmed),
    // and what EventBridge could not deliver to a rule's target.
    if cx.spec.events {
        const SQS: &str = "AWS/SQS";
        let queues = |names: &[&str], metric_name: &str| -> Vec<Value> {
            names
                .iter()
                .map(|q| {
                    metric(
                        SQS,
                        metric_name,
                        &[("QueueName", &cx.names.queue(q))],
                        json!({"label": q}),
                    )
                })
                .collect()
        };
        let main = ["payments-processing", "payments-analytics"];
        l.graph(
            8,
            "SQS queue depth (visible messages)",
            "Maximum",
            queues(&main, "ApproximateNumberOfMessagesVisible"),
        );
        l.graph(
            8,
            "SQS oldest message age (s)",
            "Maximum",
            queues(&main, "ApproximateAgeOfOldestMessage"),
        );
        l.graph(
            8,
            "SQS dead-letter queues (messages)",
            "Maximum",
            queues(
                &[
                    "payments-processing-dlq",
                    "payments-analytics-dlq",
                    "payments-events-dlq",
                ],
                "ApproximateNumberOfMessagesVisible",
            ),
        );
        // EventBridge publishes rule metrics by RuleName (rule names are the
        // env's own, on either bus).
        let rules = EventRule::ALL
            .iter()
            .map(|r| {
                metric(
                    "AWS/Events",
                    "FailedInvocations",
                    &[("RuleName", &cx.names.event_rule(*r))],
                    json!({"label": r.suffix()}),
                )
            })
            .collect();
        l.graph(12, "EventBridge failed invocations by rule", "Sum", rules);
        // The transaction log: how old the oldest undelivered record is
        // (alarmed), what share of S3 deliveries and of transform
        // invocations succeed (1 = all; below it, records wait on retries
        // or go to the error prefix).
        const FIREHOSE: &str = "AWS/Firehose";
        let stream = cx.names.delivery_stream();
        let dims = [("DeliveryStreamName", stream.as_str())];
        l.graph(
            12,
            "Transaction log data freshness (s)",
            "Maximum",
            vec![metric(
                FIREHOSE,
                "DeliveryToS3.DataFreshness",
                &dims,
                json!({"label": "oldest record not in S3"}),
            )],
        );
        l.graph(
            12,
            "Transaction log delivery and transform success",
            "Average",
            vec![
                metric(
                    FIREHOSE,
                    "DeliveryToS3.Success",
                    &dims,
                    json!({"label": "delivery to S3"}),
                ),
                metric(
                    FIREHOSE,
                    "ExecuteProcessing.Success",
                    &dims,
                    json!({"label": "transform invocations"}),
                ),
            ],
        );
        // What a payment could not hand on, counted by transaction
        // processing itself (each alarmed): the event to the bus, the
        // settlement request to the processing queue, the record to the
        // transaction log. The payment was answered either way.
        let env = cx.env();
        let counted = [
            ("PaymentEventsFailed", "events not on the bus"),
            ("SettlementRequestsFailed", "settlement requests not queued"),
            (
                "TransactionLogRecordsFailed",
                "records not on the transaction log",
            ),
        ]
        .iter()
        .map(|(name, label)| {
            metric(
                "payops",
                name,
                &[("Env", env.as_str())],
                json!({"label": label}),
            )
        })
        .collect();
        l.graph(12, "Payment hand-offs that failed", "Sum", counted);
    }

    Ok(json!({ "start": "-PT3H", "widgets": l.widgets }))
}

fn desired(cx: &Context, step: &StepCx<'_>) -> Result<Value, AwsError> {
    body(
        cx,
        step.output(ALB_INPUT.0, ALB_INPUT.1)?,
        step.output(BLUE_INPUT.0, BLUE_INPUT.1)?,
        step.output(GREEN_INPUT.0, GREEN_INPUT.1)?,
    )
}

/// The titles of the widgets that differ, when both bodies have the same
/// widgets in number (empty: no finer answer than "the body differs").
fn differing_widgets(want: &Value, have: Option<&Value>) -> Vec<String> {
    let (Some(want), Some(have)) = (
        want["widgets"].as_array(),
        have.and_then(|h| h["widgets"].as_array()),
    ) else {
        return Vec::new();
    };
    if want.len() != have.len() {
        return Vec::new();
    }
    want.iter()
        .zip(have)
        .filter(|(w, h)| w != h)
        .map(|(w, _)| {
            w["properties"]["title"]
                .as_str()
                .unwrap_or("marker")
                .to_owned()
        })
        .collect()
}

/// Reads dashboard `name`, if it exists, and says whose it is.
async fn get(cx: &Context, name: &str) -> Result<Option<(FoundDashboard, TagMap)>, AwsError> {
    let out = cx
        .clients
        .cloudwatch
        .get_dashboard()
        .dashboard_name(name)
        .send()
        .await
        .op("cloudwatch:GetDashboard");
    let Some(out) = absent_on(out, &NOT_FOUND)? else {
        return Ok(None);
    };
    let body: Option<Value> = out
        .dashboard_body()
        .and_then(|b| serde_json::from_str(b).ok());
    let marker = body.as_ref().map(marker_tags).unwrap_or_default();
    Ok(Some((
        FoundDashboard {
            name: name.to_owned(),
            body,
        },
        marker,
    )))
}

fn check_marker(cx: &Context, name: &str, marker: &TagMap) -> Result<(), AwsError> {
    let what = format!("CloudWatch dashboard {name}");
    match tags::global_ownership(marker, cx.env(), &cx.region) {
        tags::Ownership::OtherRegion(region) => Err(AwsError::NotOurs {
            what,
            owner: format!(
                "its marker widget names the env of the same name in region {region} \
                 (dashboards are account-wide)"
            ),
        }),
        tags::Ownership::Ours => Ok(()),
        tags::Ownership::OtherEnv(env) => Err(AwsError::NotOurs {
            what,
            owner: format!("its marker widget names payops env {env}"),
        }),
        tags::Ownership::Foreign => Err(AwsError::NotOurs {
            what,
            owner: "its body has no payops marker widget; dashboards cannot be tagged".into(),
        }),
    }
}

async fn put(cx: &Context, name: &str, body: &Value) -> Result<(), AwsError> {
    let out = cx
        .clients
        .cloudwatch
        .put_dashboard()
        .dashboard_name(name)
        .dashboard_body(body.to_string())
        .send()
        .await
        .op("cloudwatch:PutDashboard")?;
    // CloudWatch keeps a dashboard it has remarks about: the body is
    // generated, so any remark is a payops bug worth failing loudly on.
    let messages: Vec<String> = out
        .dashboard_validation_messages()
        .iter()
        .map(|m| {
            format!(
                "{}: {}",
                m.data_path().unwrap_or("body"),
                m.message().unwrap_or_default()
            )
        })
        .collect();
    if messages.is_empty() {
        Ok(())
    } else {
        Err(AwsError::Conflict(format!(
            "CloudWatch saved dashboard {name} but reported problems with its body (a payops \
             bug): {}",
            messages.join("; ")
        )))
    }
}

/// Dashboards of this env still there (the final sweep): any dashboard named
/// `payops-<env>...` whose marker says it is this env's in this region.
pub async fn leftovers(cx: &Context) -> Result<Vec<String>, AwsError> {
    let pages: Vec<_> = cx
        .clients
        .cloudwatch
        .list_dashboards()
        .dashboard_name_prefix(cx.names.legacy_dashboard())
        .into_paginator()
        .send()
        .collect()
        .await;
    let mut left = Vec::new();
    for page in pages {
        for entry in page.op("cloudwatch:ListDashboards")?.dashboard_entries() {
            let Some(n) = entry.dashboard_name() else {
                continue;
            };
            if let Some((found, marker)) = get(cx, n).await?
                && owner(cx, &marker, found.body.as_ref()) == tags::Ownership::Ours
            {
                left.push(format!("cloudwatch dashboard {n}"));
            }
        }
    }
    Ok(left)
}

#[async_trait]
impl Resource for Dashboard {
    type Found = FoundDashboard;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "cloudwatch:dashboard"
    }

    async fn find(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
    ) -> Result<Vec<FoundDashboard>, AwsError> {
        let name = name(cx);
        let legacy = cx.names.legacy_dashboard();
        let (current, old) = tokio::try_join!(get(cx, &name), get(cx, &legacy))?;
        let mut found = Vec::new();
        if let Some((dashboard, marker)) = current {
            check_marker(cx, &name, &marker)?;
            found.push(dashboard);
        }
        // The region-blind name of an older version: this env's only if
        // provably this region's; anything else there is left alone.
        if let Some((dashboard, marker)) = old
            && owner(cx, &marker, dashboard.body.as_ref()) == tags::Ownership::Ours
        {
            found.push(dashboard);
        }
        Ok(found)
    }

    /// Both names present (an interrupted move): keep this region's name;
    /// the region-blind one, provably this region's, goes.
    fn keep_of_duplicates(&self, found: &[FoundDashboard]) -> Option<usize> {
        (found.len() == 2).then_some(0)
    }

    fn describe(&self, found: &FoundDashboard) -> String {
        found.name.clone()
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<FoundDashboard, AwsError> {
        let name = name(cx);
        let body = desired(cx, step)?;
        put(cx, &name, &body).await?;
        step.remember("dashboard", &name);
        Ok(FoundDashboard {
            name,
            body: Some(body),
        })
    }

    async fn diff(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: &FoundDashboard,
    ) -> Result<Vec<Fix>, AwsError> {
        let want = desired(cx, step)?;
        let name = name(cx);
        if found.name != name {
            return Ok(vec![Fix::Move {
                from: found.name.clone(),
                to: name,
            }]);
        }
        // Parsed JSON equality: CloudWatch may reorder keys or reformat.
        Ok(if found.body.as_ref() == Some(&want) {
            Vec::new()
        } else {
            vec![Fix::Body {
                widgets: differing_widgets(&want, found.body.as_ref()),
            }]
        })
    }

    async fn fix(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: &mut FoundDashboard,
        fix: Fix,
    ) -> Result<(), AwsError> {
        match fix {
            Fix::Body { .. } => {
                let body = desired(cx, step)?;
                put(cx, &found.name, &body).await?;
                found.body = Some(body);
            }
            // Written under the new name first: a run stopped in between
            // leaves both, and the next finds and finishes it.
            Fix::Move { from, to } => {
                let body = desired(cx, step)?;
                put(cx, &to, &body).await?;
                step.remember("dashboard", &to);
                delete(cx, &from).await?;
                found.name = to;
                found.body = Some(body);
            }
        }
        Ok(())
    }

    fn record(&self, _cx: &Context, found: &FoundDashboard) -> Record {
        Record::default()
            .resource("dashboard", &found.name)
            .output("DashboardName", &found.name)
    }

    async fn delete(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        found: FoundDashboard,
    ) -> Result<Vec<String>, AwsError> {
        delete(cx, &found.name).await?;
        Ok(Vec::new())
    }
}

/// DeleteDashboards is synchronous: once it answers, the dashboard is gone.
async fn delete(cx: &Context, name: &str) -> Result<(), AwsError> {
    let deleted = cx
        .clients
        .cloudwatch
        .delete_dashboards()
        .dashboard_names(name)
        .send()
        .await
        .op("cloudwatch:DeleteDashboards");
    absent_on(deleted, &NOT_FOUND)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use aws_sdk_cloudwatch::Client;
    use aws_sdk_cloudwatch::operation::delete_dashboards::{
        DeleteDashboardsError, DeleteDashboardsOutput,
    };
    use aws_sdk_cloudwatch::operation::get_dashboard::{GetDashboardError, GetDashboardOutput};
    use aws_sdk_cloudwatch::operation::put_dashboard::PutDashboardOutput;
    use aws_sdk_cloudwatch::types::DashboardValidationMessage;
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    use super::*;
    use crate::engine::{Change, Observation, Removed};
    use crate::resources::testing;

    const STEP: &str = "dashboard";
    const NAME: &str = "payops-pr1-us-east-1";
    /// The region-blind name of older versions.
    const LEGACY: &str = "payops-pr1";
    const ALB: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/payops-pr1-alb/50dc6c495c0c9188";
    const BLUE: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/payops-pr1-blue/73e2d6bc24d8a067";
    const GREEN: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/payops-pr1-green/2453ed029918f21f";

    fn inputs() -> Vec<(&'static str, Record)> {
        testing::outputs(&[
            ("load-balancer:alb", "AlbArn", ALB),
            ("target-group:blue", "BlueTargetGroupArn", BLUE),
            ("target-group:green", "GreenTargetGroupArn", GREEN),
        ])
    }

    /// Any dashboard not mocked before is not there (the legacy name, mostly).
    fn cx_with(rules: &[&Rule]) -> Context {
        let mut clients = testing::clients();
        let absent = missing();
        let mut rules = rules.to_vec();
        rules.push(&absent);
        clients.cloudwatch = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, &rules);
        testing::context(clients)
    }

    fn our_body() -> Value {
        body(&testing::context(testing::clients()), ALB, BLUE, GREEN).unwrap()
    }

    /// Every string anywhere in a JSON value.
    fn strings(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
            Value::Object(o) => o.values().for_each(|v| strings(v, out)),
            _ => {}
        }
    }

    /// The metric lines of the widget titled `title`.
    fn lines(body: &Value, title: &str) -> Vec<Value> {
        body["widgets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["properties"]["title"] == title)
            .unwrap_or_else(|| panic!("no widget {title:?}"))["properties"]["metrics"]
            .as_array()
            .unwrap()
            .clone()
    }

    fn get(body: String) -> Rule {
        get_named(NAME, body)
    }

    fn get_named(name: &'static str, body: String) -> Rule {
        mock!(Client::get_dashboard)
            .match_requests(move |r| r.dashboard_name() == Some(name))
            .then_output(move || {
                GetDashboardOutput::builder()
                    .dashboard_name(name)
                    .dashboard_arn(format!("arn:aws:cloudwatch::123456789012:dashboard/{name}"))
                    .dashboard_body(body.clone())
                    .build()
            })
    }

    fn missing() -> Rule {
        mock!(Client::get_dashboard)
            .then_error(|| GetDashboardError::generic(testing::error_meta("ResourceNotFound")))
    }

    #[test]
    fn serverless_v2_adds_the_capacity_graphs_and_provisioned_has_none() {
        let body = our_body();
        let capacity = lines(&body, "Aurora Serverless v2 capacity (ACUs, range 0.5-4)");
        assert_eq!(
            capacity[0],
            json!(["AWS/RDS", "ServerlessDatabaseCapacity", "DBClusterIdentifier",
                   "payops-pr1-aurora", {"label": "busiest instance", "stat": "Maximum"}])
        );
        let utilization = lines(&body, "Aurora ACU utilization (% of max)");
        assert_eq!(utilization[0][1], "ACUUtilization");

        let mut cx = testing::context(testing::clients());
        cx.spec.database.capacity = None;
        let provisioned = super::body(&cx, ALB, BLUE, GREEN).unwrap();
        let mut all = Vec::new();
        strings(&provisioned, &mut all);
        assert!(
            !all.iter()
                .any(|s| s == "ServerlessDatabaseCapacity" || s == "ACUUtilization"),
            "provisioned instances publish no ACU metrics"
        );
    }

    #[test]
    fn the_body_names_the_envs_real_resources() {
        let body = our_body();
        let mut all = Vec::new();
        strings(&body, &mut all);
        for name in [
            "payops-pr1-api",
            "payops-pr1-payment-validation",
            "payops-pr1-fraud-detection",
            "payops-pr1-transaction-processing",
            "app/payops-pr1-alb/50dc6c495c0c9188",
            "targetgroup/payops-pr1-blue/73e2d6bc24d8a067",
            "targetgroup/payops-pr1-green/2453ed029918f21f",
            "payops-pr1-aurora",
            "payops-pr1-transactions",
            "payops-pr1-fraud-rules",
        ] {
            assert!(all.iter().any(|s| s == name), "{name} is not in the body");
        }
        // API latency: p50 and p99 of the REST API's stage v1.
        let latency = lines(&body, "API latency (ms)");
        assert_eq!(
            latency[1],
            json!(["AWS/ApiGateway", "Latency", "ApiName", "payops-pr1-api", "Stage", "v1",
                   {"stat": "p99", "label": "p99"}])
        );
        // Blue vs green: the ALB and each target group, as ELB names them.
        let blue_green = lines(&body, "ALB target response time p99, blue vs green (s)");
        assert_eq!(
            blue_green[1],
            json!(["AWS/ApplicationELB", "TargetResponseTime",
                   "LoadBalancer", "app/payops-pr1-alb/50dc6c495c0c9188",
                   "TargetGroup", "targetgroup/payops-pr1-green/2453ed029918f21f",
                   {"label": "green"}])
        );
        let aurora = lines(&body, "Aurora replica lag (ms)");
        assert_eq!(
            aurora[0],
            json!(["AWS/RDS", "AuroraReplicaLag", "DBClusterIdentifier", "payops-pr1-aurora",
                   "Role", "READER", {"label": "reader"}])
        );
        let throttles = lines(&body, "DynamoDB throttled requests");
        assert!(
            throttles[0][0]["expression"]
                .as_str()
                .unwrap()
                .contains(r#"TableName="payops-pr1-transactions""#),
            "{throttles:?}"
        );
        // Grid: nothing wider than 24 columns, nothing overlapping.
        let mut cells = std::collections::BTreeSet::new();
        for w in body["widgets"].as_array().unwrap() {
            let (x, y, wd, h) = (
                w["x"].as_i64().unwrap(),
                w["y"].as_i64().unwrap(),
                w["width"].as_i64().unwrap(),
                w["height"].as_i64().unwrap(),
            );
            assert!(x + wd <= 24, "{w}");
            for cx in x..x + wd {
                for cy in y..y + h {
                    assert!(cells.insert((cx, cy)), "widgets overlap at {cx},{cy}");
                }
            }
        }
    }

    #[test]
    fn the_body_is_deterministic_and_carries_the_marker_first() {
        assert_eq!(our_body().to_string(), our_body().to_string());
        let body = our_body();
        assert_eq!(body["widgets"][0]["type"], "text");
        let marker = marker_tags(&body);
        assert_eq!(marker["payops:env"], "pr1");
        assert_eq!(marker["payops:managed-by"], "payops");
        assert_eq!(marker["payops:region"], "us-east-1");
    }

    #[tokio::test]
    async fn creates_the_dashboard_and_records_its_name() {
        let put = mock!(Client::put_dashboard)
            .match_requests(|r| {
                r.dashboard_name() == Some(NAME)
                    && serde_json::from_str::<Value>(r.dashboard_body().unwrap()).unwrap()
                        == our_body()
            })
            .then_output(|| PutDashboardOutput::builder().build());
        let cx = cx_with(&[&missing(), &put]);
        let applied = testing::ensure(&cx, STEP, Dashboard, &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(put.num_calls(), 1);
        assert_eq!(applied.record.outputs["DashboardName"], NAME);
    }

    #[tokio::test]
    async fn a_converged_dashboard_makes_no_call_even_if_cloudwatch_reformats_it() {
        // Keys in another order and pretty-printed: the same JSON.
        let mut echoed = our_body();
        let widgets = echoed["widgets"].take();
        let start = echoed["start"].take();
        let reordered = json!({"widgets": widgets, "start": start});
        let cx = cx_with(&[&get(serde_json::to_string_pretty(&reordered).unwrap())]);
        let applied = testing::ensure(&cx, STEP, Dashboard, &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Unchanged);
        assert!(applied.notes.is_empty(), "{:?}", applied.notes);
    }

    #[tokio::test]
    async fn a_foreign_dashboard_of_our_name_is_never_adopted_overwritten_or_deleted() {
        // No PutDashboard or DeleteDashboards rule: either would fail the test.
        let foreign = json!({"widgets": [{"type": "text", "x": 0, "y": 0, "width": 6,
            "height": 2, "properties": {"markdown": "team dashboard"}}]});
        let cx = cx_with(&[&get(foreign.to_string())]);
        let err = testing::ensure(&cx, STEP, Dashboard, &inputs())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("CloudWatch dashboard payops-pr1"), "{err}");
        assert!(err.contains("no payops marker"), "{err}");
        assert!(testing::destroy(&cx, STEP, Dashboard).await.is_err());

        // Another env's marker: also not ours.
        let other = our_body()
            .to_string()
            .replace("payops:env=pr1", "payops:env=pr2");
        let cx = cx_with(&[&get(other)]);
        let err = testing::ensure(&cx, STEP, Dashboard, &inputs())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("payops env pr2"), "{err}");
    }

    #[tokio::test]
    async fn an_edited_widget_is_drift_that_ensure_puts_back() {
        let mut edited = our_body();
        edited["widgets"][1]["properties"]["metrics"][1][6]["stat"] = json!("p90");
        let edited = edited.to_string();
        let cx = cx_with(&[&get(edited.clone())]);
        let Observation::Present { drift, .. } = testing::observe(&cx, STEP, Dashboard, &inputs())
            .await
            .unwrap()
        else {
            panic!("expected present");
        };
        assert_eq!(drift, ["update widgets API latency (ms)"]);

        let put =
            mock!(Client::put_dashboard).then_output(|| PutDashboardOutput::builder().build());
        let cx = cx_with(&[&get(edited), &put]);
        let applied = testing::ensure(&cx, STEP, Dashboard, &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Updated);
        assert_eq!(put.num_calls(), 1);
    }

    #[tokio::test]
    async fn validation_remarks_from_cloudwatch_fail_the_step() {
        let put = mock!(Client::put_dashboard).then_output(|| {
            PutDashboardOutput::builder()
                .dashboard_validation_messages(
                    DashboardValidationMessage::builder()
                        .data_path("/widgets/3")
                        .message("Should NOT have additional properties")
                        .build(),
                )
                .build()
        });
        let cx = cx_with(&[&missing(), &put]);
        let err = testing::ensure(&cx, STEP, Dashboard, &inputs())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("/widgets/3: Should NOT have"), "{err}");
    }

    #[tokio::test]
    async fn destroy_deletes_ours_and_tolerates_it_vanishing() {
        let delete = mock!(Client::delete_dashboards)
            .match_requests(|r| r.dashboard_names() == [NAME])
            .sequence()
            .output(|| DeleteDashboardsOutput::builder().build())
            .error(|| DeleteDashboardsError::generic(testing::error_meta("ResourceNotFound")))
            .build();
        let cx = cx_with(&[&get(our_body().to_string()), &delete]);
        for _ in 0..2 {
            let removed = testing::destroy(&cx, STEP, Dashboard).await.unwrap();
            assert!(matches!(removed, Removed::Deleted { .. }));
        }
        let cx = cx_with(&[&missing()]);
        assert_eq!(
            testing::destroy(&cx, STEP, Dashboard).await.unwrap(),
            Removed::AlreadyAbsent
        );
    }

    /// The body an older version wrote for the env in `region`: no region in
    /// the marker, every graph reading that region's metrics.
    fn legacy_body(region: &str) -> String {
        our_body()
            .to_string()
            .replace(" `payops:region=us-east-1`", "")
            .replace("us-east-1", region)
    }

    #[tokio::test]
    async fn a_region_blind_dashboard_of_this_region_moves_to_the_regions_name() {
        let cx = cx_with(&[&get_named(LEGACY, legacy_body("us-east-1"))]);
        let Observation::Present { drift, .. } = testing::observe(&cx, STEP, Dashboard, &inputs())
            .await
            .unwrap()
        else {
            panic!("expected present");
        };
        assert_eq!(
            drift,
            [
                "move dashboard payops-pr1 to payops-pr1-us-east-1 (dashboards are account-wide: \
              the name carries the region)"
            ]
        );
        let put = mock!(Client::put_dashboard)
            .match_requests(|r| {
                r.dashboard_name() == Some(NAME)
                    && serde_json::from_str::<Value>(r.dashboard_body().unwrap()).unwrap()
                        == our_body()
            })
            .then_output(|| PutDashboardOutput::builder().build());
        let delete = mock!(Client::delete_dashboards)
            .match_requests(|r| r.dashboard_names() == [LEGACY])
            .then_output(|| DeleteDashboardsOutput::builder().build());
        let cx = cx_with(&[&get_named(LEGACY, legacy_body("us-east-1")), &put, &delete]);
        let applied = testing::ensure(&cx, STEP, Dashboard, &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Updated);
        assert_eq!((put.num_calls(), delete.num_calls()), (1, 1));
        assert_eq!(applied.record.outputs["DashboardName"], NAME);
    }

    #[tokio::test]
    async fn the_twin_envs_region_blind_dashboard_is_left_to_its_region() {
        // Env pr1 in us-west-2, made by an older version, has `payops-pr1`.
        let put = mock!(Client::put_dashboard)
            .match_requests(|r| r.dashboard_name() == Some(NAME))
            .then_output(|| PutDashboardOutput::builder().build());
        let delete = mock!(Client::delete_dashboards)
            .then_output(|| DeleteDashboardsOutput::builder().build());
        let twin = get_named(LEGACY, legacy_body("us-west-2"));
        let cx = cx_with(&[&twin, &put, &delete]);
        let applied = testing::ensure(&cx, STEP, Dashboard, &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(applied.record.outputs["DashboardName"], NAME);
        let cx = cx_with(&[&twin, &delete]);
        assert_eq!(
            testing::destroy(&cx, STEP, Dashboard).await.unwrap(),
            Removed::AlreadyAbsent
        );
        assert_eq!(delete.num_calls(), 0, "the twin's dashboard is untouched");
    }

    #[tokio::test]
    async fn down_removes_a_region_blind_dashboard_of_this_region() {
        let delete = mock!(Client::delete_dashboards)
            .match_requests(|r| r.dashboard_names() == [LEGACY])
            .then_output(|| DeleteDashboardsOutput::builder().build());
        let cx = cx_with(&[&get_named(LEGACY, legacy_body("us-east-1")), &delete]);
        let removed = testing::destroy(&cx, STEP, Dashboard).await.unwrap();
        assert!(matches!(removed, Removed::Deleted { .. }));
        assert_eq!(delete.num_calls(), 1);
    }

    #[tokio::test]
    async fn the_final_sweep_counts_no_dashboard_of_the_twin_env() {
        use aws_sdk_cloudwatch::operation::list_dashboards::ListDashboardsOutput;
        use aws_sdk_cloudwatch::types::DashboardEntry;
        let list = mock!(Client::list_dashboards)
            .match_requests(|r| r.dashboard_name_prefix() == Some(LEGACY))
            .then_output(|| {
                let entry = |n: &str| DashboardEntry::builder().dashboard_name(n).build();
                ListDashboardsOutput::builder()
                    .dashboard_entries(entry(NAME))
                    .dashboard_entries(entry("payops-pr1-us-west-2"))
                    .dashboard_entries(entry(LEGACY))
                    .build()
            });
        let twin = our_body().to_string().replace("us-east-1", "us-west-2");
        let cx = cx_with(&[
            &list,
            &get(our_body().to_string()),
            &get_named("payops-pr1-us-west-2", twin),
            &get_named(LEGACY, legacy_body("us-west-2")),
        ]);
        assert_eq!(
            leftovers(&cx).await.unwrap(),
            ["cloudwatch dashboard payops-pr1-us-east-1"]
        );
    }
}
