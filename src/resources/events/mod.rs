//! The event backbone: SQS queues (payment processing, analytics), each with
//! its dead-letter queue. Optional per env (`--events off`): its steps stay
//! in the graph and are simply not wanted then (`up` removes them).

pub mod queue;

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
}
