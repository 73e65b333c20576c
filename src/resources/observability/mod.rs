//! Observability: the dashboard, the alarms and who hears of them, the
//! saved queries, and the X-Ray sampling rule that traces every payment.

pub mod alarms;
pub mod alert_subscriptions;
pub mod dashboard;
pub mod monitoring;
pub mod query_definitions;
pub mod sampling_rule;

use super::registry::{Registry, dep};

pub fn register(r: &mut Registry) {
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
        if let Some((lb, _)) = alarm.alb_input() {
            deps.push(dep(
                lb,
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
    // Every request of the payments API's stage traced. No edge: the rule
    // matches the stage by its deterministic service name
    // (`payops-<env>-api/v1`), and a rule for a stage not there yet matches
    // nothing.
    r.add(sampling_rule::STEP, sampling_rule::SamplingRule, vec![]);
    // Saved Logs Insights queries for security analysis, each after the log
    // groups it names.
    for query in query_definitions::Query::ALL {
        let deps = query
            .log_groups()
            .into_iter()
            .map(|(group, _)| {
                dep(
                    group,
                    "the saved query names this log group: made after it, removed before it",
                )
            })
            .collect();
        r.add(
            query.step_id(),
            query_definitions::QueryDefinition::new(query),
            deps,
        );
    }
}
