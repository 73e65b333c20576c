//! The event backbone: SQS queues (payment processing, analytics), each with
//! its dead-letter queue; the env's encrypted EventBridge bus and the rules
//! that route payment and database events to the analytics queue and the
//! alarm topics, with a dead-letter queue for what cannot be delivered.
//! Optional per env (`--events off`): its steps stay in the graph and are
//! simply not wanted then (`up` removes them). The transaction log goes to
//! S3 through a Firehose stream, part of the backbone too.

pub mod delivery_role;
pub mod delivery_stream;
pub mod event_bus;
pub mod event_rule;
pub mod queue;

use crate::naming::EventRule;
use crate::resources::common::{log_group, s3_bucket};

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

/// The transaction log: its bucket, the log group Firehose writes its errors
/// to, the role Firehose delivers with, and the stream (after compute: the
/// stream runs the transform function).
pub fn register_transaction_log(r: &mut Registry) {
    use delivery_stream as ds;
    r.add(
        ds::BUCKET_INPUT.0,
        s3_bucket::Bucket::transaction_log(),
        vec![dep(
            ds::OBJECT_KEY_INPUT.0,
            "the bucket's default encryption is the env's S3 key",
        )],
    );
    r.add(
        ds::LOG_GROUP_INPUT.0,
        // A year, as the API's access log: delivery errors are part of the
        // payment trail an audit asks for.
        log_group::LogGroup::new("firehose/transaction-log", 365, "TransactionLogDelivery")
            .with_stream(ds::LOG_STREAM)
            .wanted_when(|cx| cx.spec.events),
        vec![dep(
            "kms-key:logs",
            "the group is encrypted with the logs key, whose policy lets CloudWatch Logs use it",
        )],
    );
    r.add(
        delivery_role::STEP,
        delivery_role::role(),
        vec![
            dep(
                ds::LOG_GROUP_INPUT.0,
                "the role may write only to the error log's stream (the group's ARN is in the \
                 policy)",
            ),
            dep(
                ds::BUCKET_INPUT.0,
                "the role may write only under the stream's prefixes of this bucket (its ARN \
                 is in the policy)",
            ),
            dep(
                ds::OBJECT_KEY_INPUT.0,
                "the role may use the S3 key through S3 for this bucket only",
            ),
            dep(
                ds::TRANSFORM_INPUT.0,
                "the role may invoke only the transform function (its ARN is in the policy)",
            ),
        ],
    );
    r.add(
        ds::STEP,
        ds::DeliveryStream,
        vec![
            dep(
                ds::ROLE_INPUT.0,
                "Firehose delivers with this role (and down deletes the stream before it)",
            ),
            dep(
                ds::BUCKET_INPUT.0,
                "the stream's destination (and down deletes the stream, waiting until it is \
                 gone, before the bucket)",
            ),
            dep(
                ds::TRANSFORM_INPUT.0,
                "the stream's records pass through this function before they are stored",
            ),
            dep(
                ds::OBJECT_KEY_INPUT.0,
                "the stream writes objects encrypted with the S3 key",
            ),
            dep(
                ds::LOG_GROUP_INPUT.0,
                "the stream logs delivery and transform errors to this group's stream, which \
                 must exist (Firehose makes neither through the API)",
            ),
            dep(
                ds::STREAM_KEY_INPUT.0,
                "the stream is encrypted at rest with the events key (Firehose takes a grant \
                 on it)",
            ),
        ],
    );
}
