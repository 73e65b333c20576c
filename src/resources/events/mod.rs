//! The event backbone: SQS queues (payment processing, analytics), each with
//! its dead-letter queue; the env's encrypted EventBridge bus and the rules
//! that route payment and database events to the analytics queue and the
//! alarm topics, with a dead-letter queue for what cannot be delivered.
//! Optional per env (`--events off`): its steps stay in the graph and are
//! simply not wanted then (`up` removes them).

pub mod event_bus;
pub mod event_rule;
pub mod queue;

use crate::naming::EventRule;

use super::registry::{Registry, dep};

pub fn register(r: &mut Registry) {
    for (dlq, main) in [
        (
            queue::Queue::payments_processing_dlq(),
            queue::Queue::payments_processing(),
        ),
        (
            queue::Queue::payments_analytics_dlq(),
            queue::Queue::payments_analytics(),
        ),
    ] {
        let key = || {
            dep(
                queue::KEY_INPUT.0,
                "the queue is encrypted with the events key (SSE-KMS)",
            )
        };
        r.add(dlq.step_id(), dlq, vec![key()]);
        let dlq_step = main.dead_letter_step().expect("a main queue has a DLQ");
        r.add(
            main.step_id(),
            main,
            vec![
                key(),
                dep(
                    dlq_step,
                    "the redrive policy names the dead-letter queue's ARN (and down deletes the \
                     source queue first)",
                ),
            ],
        );
    }
    let events_dlq = queue::Queue::payments_events_dlq();
    r.add(
        events_dlq.step_id(),
        events_dlq,
        vec![dep(
            queue::KEY_INPUT.0,
            "the queue is encrypted with the events key (SSE-KMS)",
        )],
    );
    r.add(
        event_bus::STEP,
        event_bus::EventBus,
        vec![
            dep(
                event_bus::KEY_INPUT.0,
                "the bus is encrypted with the events key, whose policy lets EventBridge use it \
                 for this bus",
            ),
            dep(
                event_bus::DLQ_INPUT.0,
                "the bus's dead-letter queue takes the events it cannot decrypt",
            ),
        ],
    );
    for rule in EventRule::ALL {
        let rule = event_rule::RoutingRule::new(rule);
        let mut deps = vec![
            dep(
                rule.target_step(),
                "the rule's target; down removes the target from the rule before the target goes",
            ),
            dep(
                event_rule::RoutingRule::dead_letter_step(),
                "the target's dead-letter queue",
            ),
        ];
        if let Some(bus) = rule.bus_step() {
            deps.push(dep(
                bus,
                "the rule is on the env's bus (and down deletes rules before their bus)",
            ));
        }
        r.add(rule.step_id(), rule, deps);
    }
}
