//! The event source mapping that feeds the payments-processing queue to the
//! queue consumer function: Lambda polls the queue with the function's role
//! and invokes it with batches of up to [`BATCH_SIZE`] messages, as soon as
//! they arrive (no batching window), and the function reports the messages
//! it could not settle (`ReportBatchItemFailures`), so that only those come
//! back and, after the queue's maxReceiveCount, go to its dead-letter queue.
//!
//! A mapping is found by queue and function (ListEventSourceMappings of the
//! queue, kept for the env's function): Lambda allows one mapping per SQS
//! queue and function, and both are the env's own (their tags are checked by
//! their steps), so a mapping between the two is the env's. It is tagged at
//! creation (Lambda accepts Tags on CreateEventSourceMapping, and
//! ListTags/TagResource take a mapping's ARN: Lambda developer guide,
//! tags-esm; the caller needs lambda:TagResource for it), but not found by
//! tag: mappings made before have none, and moto's tagging API does not list
//! them.
//!
//! Real-AWS rules encoded here (emulators ignore them):
//! - CreateEventSourceMapping refuses a queue whose visibility timeout is
//!   below the function's timeout (InvalidParameterValueException "Queue
//!   visibility timeout: 60 seconds is less than Function timeout: 120
//!   seconds"); the model derives the processing queue's from the
//!   consumer's, and the error, if it comes anyway (the queue changed out of
//!   band), says what to fix.
//! - AWS checks the execution role before it creates the mapping
//!   (InvalidParameterValueException "The provided execution role does not
//!   have permissions to call ReceiveMessage on SQS"): right after the role
//!   or its policy was written, that is IAM propagating, retried within the
//!   env's IAM budget.
//! - Create, update and delete are asynchronous (State Creating, Updating,
//!   Enabling, Disabling, Deleting): each waits for the mapping to settle,
//!   and a mapping that is still changing refuses another change
//!   (ResourceInUseException), retried.
//! - A batch of more than 10 messages from a standard queue needs a
//!   batching window of at least 1 s (Lambda developer guide,
//!   services-sqs-configure).

use std::fmt;

use async_trait::async_trait;
use aws_sdk_lambda::types::{EventSourceMappingConfiguration, FunctionResponseType};

use crate::aws::{
    AwsError, Budget, OpResult, Poll, absent_on, poll_until, required, retry_on_codes,
};
use crate::engine::{Record, StepCx};

use crate::resources::context::Context;
use crate::resources::model::{Function, QUEUE_CONSUMER_BATCH_WINDOW_S};
use crate::resources::resource::{Resource, recorded_first};
use crate::resources::sdk::iam::{retry_while_propagating, role_not_yet_usable};

/// Named after the queue it reads (the function is the queue consumer).
pub const STEP: &str = "event-source-mapping:payments-processing";
/// The queue the mapping reads (an output of the events domain).
pub const QUEUE_INPUT: (&str, &str) = (
    "sqs-queue:payments-processing",
    "PaymentsProcessingQueueArn",
);

/// Messages per invocation: SQS's largest receive, so no batching window is
/// needed (above 10 Lambda requires one), and ten settlements (a GetItem and
/// an UpdateItem each, tens of milliseconds) fit well in the consumer's 30 s.
/// A poison message costs only itself: the others of its batch are reported
/// done.
pub const BATCH_SIZE: i32 = 10;
/// Seconds to gather a batch: none, so a payment is settled as soon as it is
/// queued; the queue's visibility timeout (6 x the function's timeout plus
/// this) stays AWS's advice.
pub const BATCH_WINDOW_S: i32 = QUEUE_CONSUMER_BATCH_WINDOW_S;
const _: () = assert!(BATCH_SIZE >= 1 && BATCH_SIZE <= 10_000);
const _: () = assert!(BATCH_SIZE <= 10 || BATCH_WINDOW_S >= 1);
const _: () = assert!(BATCH_WINDOW_S >= 0 && BATCH_WINDOW_S <= 300);

const REPORT_FAILURES: &str = "ReportBatchItemFailures";
/// What Lambda answers for a mapping, or a function, that is not there.
const NOT_FOUND: [&str; 1] = ["ResourceNotFoundException"];
/// A mapping still changing refuses the next change.
const IN_USE: [&str; 1] = ["ResourceInUseException"];

pub struct QueueConsumerMapping;

#[derive(Clone, Debug)]
pub struct FoundMapping {
    uuid: String,
    arn: Option<String>,
    state: String,
    batch_size: Option<i32>,
    window: Option<i32>,
    response_types: Vec<String>,
}

/// The fields payops reads, which Lambda's list and get answers share.
macro_rules! found_mapping {
    ($m:expr) => {{
        let m = $m;
        m.uuid().map(|uuid| FoundMapping {
            uuid: uuid.to_owned(),
            arn: m.event_source_mapping_arn().map(str::to_owned),
            state: m.state().unwrap_or("Enabled").to_owned(),
            batch_size: m.batch_size(),
            window: m.maximum_batching_window_in_seconds(),
            response_types: m
                .function_response_types()
                .iter()
                .map(|t| t.as_str().to_owned())
                .collect(),
        })
    }};
}

impl FoundMapping {
    fn from(m: &EventSourceMappingConfiguration) -> Option<Self> {
        found_mapping!(m)
    }

    /// Enabled, or on its way there.
    fn enabled(&self) -> bool {
        !matches!(self.state.as_str(), "Disabled" | "Disabling")
    }
}

/// Settings that differ, set in one UpdateEventSourceMapping.
#[derive(Debug, PartialEq, Eq)]
pub struct Fix(Vec<&'static str>);

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "update {}", self.0.join(", "))
    }
}

fn settle_budget(cx: &Context) -> Budget {
    Budget::new(cx.budgets.lambda)
}

/// The visibility-timeout refusal, in terms an operator can act on.
fn visibility_refused(e: AwsError) -> AwsError {
    match &e {
        AwsError::Api { message, .. }
            if e.is_code(&["InvalidParameterValueException"])
                && message.to_ascii_lowercase().contains("visibility timeout") =>
        {
            AwsError::Conflict(format!(
                "Lambda refused the queue consumer's event source mapping: {message}. The \
                 processing queue's VisibilityTimeout must be at least the function's timeout \
                 (AWS advises six times it); `payops up` sets it, so it was changed out of \
                 band or the function's timeout was raised"
            ))
        }
        _ => e,
    }
}

impl QueueConsumerMapping {
    fn function_name(cx: &Context) -> String {
        Function::QueueConsumer.name(cx)
    }

    /// The queue's ARN follows from its name: `find` needs no input, so
    /// `down` finds the mapping on a machine without state.
    fn queue_arn(cx: &Context) -> String {
        cx.arn("sqs", &cx.names.queue("payments-processing"))
    }

    async fn get(cx: &Context, uuid: &str) -> Result<Option<FoundMapping>, AwsError> {
        let got = cx
            .clients
            .lambda
            .get_event_source_mapping()
            .uuid(uuid)
            .send()
            .await
            .op("lambda:GetEventSourceMapping");
        Ok(absent_on(got, &NOT_FOUND)?.and_then(|m| found_mapping!(&m)))
    }

    /// Waits until the mapping is no longer changing (Creating, Updating,
    /// Enabling, Disabling): Lambda refuses changes meanwhile, and a mapping
    /// only polls once Enabled.
    async fn settle(cx: &Context, step: &StepCx<'_>, uuid: &str) -> Result<FoundMapping, AwsError> {
        let progress = |m: String| step.progress(m);
        poll_until(
            format!("event source mapping {uuid}"),
            settle_budget(cx),
            &progress,
            || async {
                match Self::get(cx, uuid).await? {
                    None => Err(AwsError::Conflict(format!(
                        "event source mapping {uuid} disappeared while it was being set up"
                    ))),
                    Some(m)
                        if matches!(
                            m.state.as_str(),
                            "Creating" | "Updating" | "Enabling" | "Disabling"
                        ) =>
                    {
                        Ok(Poll::Pending(m.state))
                    }
                    Some(m) => Ok(Poll::Ready(m)),
                }
            },
        )
        .await
    }
}

#[async_trait]
impl Resource for QueueConsumerMapping {
    type Found = FoundMapping;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "lambda:event-source-mapping"
    }

    fn wanted(&self, cx: &Context) -> bool {
        Function::QueueConsumer.wanted(cx)
    }

    async fn find(&self, cx: &Context, step: &StepCx<'_>) -> Result<Vec<FoundMapping>, AwsError> {
        // Listed by queue, then kept for the env's function: by function
        // name, Lambda answers ResourceNotFoundException once the function
        // is gone, while a mapping outlives its function (DeleteFunction
        // leaves it), and the final sweep must still see it.
        let function = Self::function_name(cx);
        let ours = |arn: &str| {
            arn.split(":function:")
                .nth(1)
                .and_then(|rest| rest.split(':').next())
                == Some(function.as_str())
        };
        let mut found = Vec::new();
        let mut pages = cx
            .clients
            .lambda
            .list_event_source_mappings()
            .event_source_arn(Self::queue_arn(cx))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let Some(page) = absent_on(page.op("lambda:ListEventSourceMappings"), &NOT_FOUND)?
            else {
                return Ok(Vec::new());
            };
            found.extend(
                page.event_source_mappings()
                    .iter()
                    .filter(|m| m.function_arn().is_some_and(ours))
                    .filter_map(FoundMapping::from),
            );
        }
        recorded_first(
            &mut found,
            step.previous_resource("event-source-mapping"),
            |m| &m.uuid,
        );
        Ok(found)
    }

    /// AWS refuses a second mapping of the same queue and function
    /// (ResourceConflictException, which `ensure` meets as "already
    /// exists"; the project's emulators are patched to answer so), but an
    /// emulator without the patch accepts it, and a create retried after a
    /// lost answer would leave two there: look again right after creating.
    fn create_may_duplicate(&self) -> bool {
        true
    }

    /// The recorded one (listed first), or the first right after a create:
    /// the mappings are interchangeable, and the extra's messages go back to
    /// the queue for the one kept.
    fn keep_of_duplicates(&self, found: &[FoundMapping]) -> Option<usize> {
        (!found.is_empty()).then_some(0)
    }

    fn describe(&self, found: &FoundMapping) -> String {
        format!("event source mapping {}", found.uuid)
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<FoundMapping, AwsError> {
        const OP: &str = "lambda:CreateEventSourceMapping";
        let queue = step.output(QUEUE_INPUT.0, QUEUE_INPUT.1)?.to_owned();
        let function = step
            .output(
                &Function::QueueConsumer.step_id(),
                &Function::QueueConsumer.arn_output(),
            )?
            .to_owned();
        let tags = cx.tagger.for_create(step.id().as_str());
        let progress = |m: String| step.progress(m);
        let out = retry_while_propagating(
            cx,
            "creating the queue consumer's event source mapping",
            &progress,
            role_not_yet_usable,
            |_| async {
                cx.clients
                    .lambda
                    .create_event_source_mapping()
                    .function_name(&function)
                    .event_source_arn(&queue)
                    .batch_size(BATCH_SIZE)
                    .maximum_batching_window_in_seconds(BATCH_WINDOW_S)
                    .function_response_types(FunctionResponseType::ReportBatchItemFailures)
                    .enabled(true)
                    .set_tags(Some(tags.clone().into_iter().collect()))
                    .send()
                    .await
                    .op(OP)
            },
        )
        .await
        .map_err(visibility_refused)?;
        let uuid = required(out.uuid(), OP, "UUID")?.to_owned();
        step.remember("event-source-mapping", &uuid);
        Self::settle(cx, step, &uuid).await
    }

    /// Lambda refuses a second mapping of the same queue and function.
    fn already_exists(&self) -> &'static [&'static str] {
        &["ResourceConflictException"]
    }

    async fn diff(
        &self,
        _cx: &Context,
        _step: &StepCx<'_>,
        found: &FoundMapping,
    ) -> Result<Vec<Fix>, AwsError> {
        let mut fields = Vec::new();
        if found.batch_size != Some(BATCH_SIZE) {
            fields.push("batch size");
        }
        // Lambda leaves the window out when it is 0.
        if found.window.unwrap_or(0) != BATCH_WINDOW_S {
            fields.push("batching window");
        }
        if found.response_types != [REPORT_FAILURES] {
            fields.push("function response types");
        }
        if !found.enabled() {
            fields.push("enabled");
        }
        Ok(if fields.is_empty() {
            Vec::new()
        } else {
            vec![Fix(fields)]
        })
    }

    async fn fix(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: &mut FoundMapping,
        _fix: Fix,
    ) -> Result<(), AwsError> {
        let progress = |m: String| step.progress(m);
        // UpdateEventSourceMapping takes the whole setting each time: all of
        // payops' are sent, so one call repairs whatever drifted.
        retry_on_codes(
            format!("updating event source mapping {}", found.uuid),
            &IN_USE,
            settle_budget(cx),
            &progress,
            || async {
                cx.clients
                    .lambda
                    .update_event_source_mapping()
                    .uuid(&found.uuid)
                    .batch_size(BATCH_SIZE)
                    .maximum_batching_window_in_seconds(BATCH_WINDOW_S)
                    .function_response_types(FunctionResponseType::ReportBatchItemFailures)
                    .enabled(true)
                    .send()
                    .await
                    .op("lambda:UpdateEventSourceMapping")
            },
        )
        .await?;
        *found = Self::settle(cx, step, &found.uuid).await?;
        Ok(())
    }

    fn record(&self, _cx: &Context, found: &FoundMapping) -> Record {
        let record = Record::default()
            .resource("event-source-mapping", &found.uuid)
            .output("QueueConsumerMappingUuid", &found.uuid);
        match &found.arn {
            Some(arn) => record.output("QueueConsumerMappingArn", arn),
            None => record,
        }
    }

    async fn delete(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        found: FoundMapping,
    ) -> Result<Vec<String>, AwsError> {
        let uuid = found.uuid;
        let progress = |m: String| step.progress(m);
        let deleted = retry_on_codes(
            format!("deleting event source mapping {uuid}"),
            &IN_USE,
            settle_budget(cx),
            &progress,
            || async {
                cx.clients
                    .lambda
                    .delete_event_source_mapping()
                    .uuid(&uuid)
                    .send()
                    .await
                    .op("lambda:DeleteEventSourceMapping")
            },
        )
        .await;
        absent_on(deleted, &NOT_FOUND)?;
        // Deleting: the function must not go while Lambda still polls for it.
        poll_until(
            format!("event source mapping {uuid} to be deleted"),
            settle_budget(cx),
            &progress,
            || async {
                Ok(match Self::get(cx, &uuid).await? {
                    None => Poll::Ready(()),
                    Some(m) => Poll::Pending(m.state),
                })
            },
        )
        .await?;
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_lambda::Client;
    use aws_sdk_lambda::operation::create_event_source_mapping::{
        CreateEventSourceMappingError, CreateEventSourceMappingOutput,
    };
    use aws_sdk_lambda::operation::delete_event_source_mapping::{
        DeleteEventSourceMappingError, DeleteEventSourceMappingOutput,
    };
    use aws_sdk_lambda::operation::get_event_source_mapping::{
        GetEventSourceMappingError, GetEventSourceMappingOutput,
    };
    use aws_sdk_lambda::operation::list_event_source_mappings::ListEventSourceMappingsOutput;
    use aws_sdk_lambda::operation::update_event_source_mapping::UpdateEventSourceMappingOutput;
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    use super::*;
    use crate::engine::{Change, Observation, Removed};
    use crate::resources::testing;

    const UUID: &str = "6f1c1f4e-0000-4000-8000-000000000001";
    const QUEUE_ARN: &str = "arn:aws:sqs:us-east-1:123456789012:payops-pr1-payments-processing";
    const FUNCTION_ARN: &str =
        "arn:aws:lambda:us-east-1:123456789012:function:payops-pr1-payment-queue-consumer";
    const MAPPING_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:event-source-mapping:6f1c1f4e-0000-4000-8000-000000000001";

    fn inputs() -> Vec<(&'static str, Record)> {
        testing::outputs(&[
            (QUEUE_INPUT.0, QUEUE_INPUT.1, QUEUE_ARN),
            (
                "lambda-function:payment-queue-consumer",
                "QueueConsumerFunctionArn",
                FUNCTION_ARN,
            ),
        ])
    }

    fn cx_with(rules: &[&Rule]) -> Context {
        let mut clients = testing::clients();
        clients.lambda = mock_client!(aws_sdk_lambda, RuleMode::MatchAny, rules);
        testing::context(clients)
    }

    /// A mapping as Lambda describes it (window 0 is left out, as Lambda does).
    fn mapping(
        function: &str,
        state: &str,
        batch: i32,
        report: bool,
    ) -> EventSourceMappingConfiguration {
        EventSourceMappingConfiguration::builder()
            .uuid(if function == FUNCTION_ARN {
                UUID
            } else {
                "other-uuid"
            })
            .event_source_mapping_arn(MAPPING_ARN)
            .event_source_arn(QUEUE_ARN)
            .function_arn(function)
            .state(state)
            .batch_size(batch)
            .set_function_response_types(
                report.then(|| vec![FunctionResponseType::ReportBatchItemFailures]),
            )
            .build()
    }

    fn listed(mappings: Vec<EventSourceMappingConfiguration>) -> Rule {
        mock!(Client::list_event_source_mappings)
            .match_requests(|r| {
                r.event_source_arn() == Some(QUEUE_ARN) && r.function_name().is_none()
            })
            .then_output(move || {
                ListEventSourceMappingsOutput::builder()
                    .set_event_source_mappings(Some(mappings.clone()))
                    .build()
            })
    }

    fn got(state: &str) -> GetEventSourceMappingOutput {
        GetEventSourceMappingOutput::builder()
            .uuid(UUID)
            .event_source_mapping_arn(MAPPING_ARN)
            .state(state)
            .batch_size(BATCH_SIZE)
            .function_response_types(FunctionResponseType::ReportBatchItemFailures)
            .build()
    }

    fn lambda_error(code: &str, message: &str) -> aws_smithy_types::error::ErrorMetadata {
        aws_smithy_types::error::ErrorMetadata::builder()
            .code(code)
            .message(message)
            .build()
    }

    fn created_as_desired() -> Rule {
        mock!(Client::create_event_source_mapping)
            .match_requests(|r| {
                let tags = r.tags().cloned().unwrap_or_default();
                r.function_name() == Some(FUNCTION_ARN)
                    && r.event_source_arn() == Some(QUEUE_ARN)
                    && r.batch_size() == Some(10)
                    && r.maximum_batching_window_in_seconds() == Some(0)
                    && r.function_response_types()
                        == [FunctionResponseType::ReportBatchItemFailures]
                    && r.enabled() == Some(true)
                    && tags.get("payops:step").map(String::as_str) == Some(STEP)
                    && tags.get("payops:env").map(String::as_str) == Some("pr1")
            })
            .then_output(|| {
                CreateEventSourceMappingOutput::builder()
                    .uuid(UUID)
                    .state("Creating")
                    .build()
            })
    }

    #[tokio::test(start_paused = true)]
    async fn creates_the_mapping_with_partial_batch_failures_and_waits_until_it_is_enabled() {
        // Another function's mapping of the same queue is not ours.
        let list = listed(vec![mapping(
            "arn:aws:lambda:us-east-1:123456789012:function:someone-else",
            "Enabled",
            10,
            true,
        )]);
        let create = created_as_desired();
        let get = mock!(Client::get_event_source_mapping)
            .sequence()
            .output(|| got("Creating"))
            .output(|| got("Enabled"))
            .repeatedly()
            .build();
        let cx = cx_with(&[&list, &create, &get]);
        let applied = testing::ensure(&cx, STEP, QueueConsumerMapping, &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created, "{:?}", applied.notes);
        assert_eq!(create.num_calls(), 1);
        assert!(get.num_calls() >= 2, "waited through Creating");
        assert_eq!(applied.record.outputs["QueueConsumerMappingUuid"], UUID);
        assert_eq!(
            applied.record.outputs["QueueConsumerMappingArn"],
            MAPPING_ARN
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_role_lambda_cannot_use_yet_to_receive_is_iam_propagating_and_retried() {
        // AWS validates the role's SQS permissions before it creates the
        // mapping; right after the policy is written IAM may not show it.
        let list = listed(vec![]);
        let create = mock!(Client::create_event_source_mapping)
            .sequence()
            .error(|| {
                CreateEventSourceMappingError::generic(lambda_error(
                    "InvalidParameterValueException",
                    "The provided execution role does not have permissions to call \
                     ReceiveMessage on SQS",
                ))
            })
            .times(2)
            .output(|| {
                CreateEventSourceMappingOutput::builder()
                    .uuid(UUID)
                    .state("Creating")
                    .build()
            })
            .build();
        let get = mock!(Client::get_event_source_mapping).then_output(|| got("Enabled"));
        let cx = cx_with(&[&list, &create, &get]);
        let applied = testing::ensure(&cx, STEP, QueueConsumerMapping, &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(create.num_calls(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_queue_visibility_timeout_below_the_functions_is_explained_not_retried() {
        let list = listed(vec![]);
        let create = mock!(Client::create_event_source_mapping).then_error(|| {
            CreateEventSourceMappingError::generic(lambda_error(
                "InvalidParameterValueException",
                "Queue visibility timeout: 20 seconds is less than Function timeout: 30 seconds",
            ))
        });
        let cx = cx_with(&[&list, &create]);
        let err = testing::ensure(&cx, STEP, QueueConsumerMapping, &inputs())
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(create.num_calls(), 1);
        assert!(
            err.contains("Queue visibility timeout: 20 seconds"),
            "{err}"
        );
        assert!(err.contains("VisibilityTimeout must be at least"), "{err}");
    }

    #[tokio::test]
    async fn a_mapping_in_sync_is_adopted_without_mutating_calls() {
        let list = listed(vec![mapping(FUNCTION_ARN, "Enabled", 10, true)]);
        let cx = cx_with(&[&list]);
        let applied = testing::ensure(&cx, STEP, QueueConsumerMapping, &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Unchanged, "{:?}", applied.notes);
        // A qualified function ARN (an alias or version) is the function too.
        let list = listed(vec![mapping(
            &format!("{FUNCTION_ARN}:live"),
            "Enabled",
            10,
            true,
        )]);
        let cx = cx_with(&[&list]);
        let observed = testing::observe(&cx, STEP, QueueConsumerMapping, &inputs())
            .await
            .unwrap();
        assert!(
            matches!(observed, Observation::Present { .. }),
            "{observed:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn drift_on_batch_size_enabled_and_response_types_is_reported_and_repaired_in_one_call() {
        let list = listed(vec![mapping(FUNCTION_ARN, "Disabled", 100, false)]);
        let cx = cx_with(&[&list]);
        let observed = testing::observe(&cx, STEP, QueueConsumerMapping, &inputs())
            .await
            .unwrap();
        let Observation::Present { drift, .. } = observed else {
            panic!("expected present, got {observed:?}");
        };
        assert_eq!(
            drift,
            ["update batch size, function response types, enabled"]
        );

        let update = mock!(Client::update_event_source_mapping)
            .match_requests(|r| {
                r.uuid() == Some(UUID)
                    && r.batch_size() == Some(BATCH_SIZE)
                    && r.maximum_batching_window_in_seconds() == Some(BATCH_WINDOW_S)
                    && r.function_response_types()
                        == [FunctionResponseType::ReportBatchItemFailures]
                    && r.enabled() == Some(true)
            })
            .then_output(|| UpdateEventSourceMappingOutput::builder().uuid(UUID).build());
        let get = mock!(Client::get_event_source_mapping)
            .sequence()
            .output(|| got("Updating"))
            .output(|| got("Enabled"))
            .repeatedly()
            .build();
        let cx = cx_with(&[&list, &update, &get]);
        let applied = testing::ensure(&cx, STEP, QueueConsumerMapping, &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Updated);
        assert_eq!(update.num_calls(), 1);
        assert!(get.num_calls() >= 2, "waited through Updating");
    }

    #[tokio::test(start_paused = true)]
    async fn delete_retries_while_the_mapping_is_changing_and_waits_until_it_is_gone() {
        let list = listed(vec![mapping(FUNCTION_ARN, "Updating", 10, true)]);
        let delete = mock!(Client::delete_event_source_mapping)
            .sequence()
            .error(|| {
                DeleteEventSourceMappingError::generic(lambda_error(
                    "ResourceInUseException",
                    "Cannot update the event source mapping because it is in use.",
                ))
            })
            .output(|| {
                DeleteEventSourceMappingOutput::builder()
                    .uuid(UUID)
                    .state("Deleting")
                    .build()
            })
            .build();
        let get = mock!(Client::get_event_source_mapping)
            .sequence()
            .output(|| got("Deleting"))
            .error(|| {
                GetEventSourceMappingError::generic(testing::error_meta(
                    "ResourceNotFoundException",
                ))
            })
            .build();
        let cx = cx_with(&[&list, &delete, &get]);
        let removed = testing::destroy(&cx, STEP, QueueConsumerMapping)
            .await
            .unwrap();
        assert!(matches!(removed, Removed::Deleted { .. }), "{removed:?}");
        assert_eq!(delete.num_calls(), 2);
        assert_eq!(get.num_calls(), 2);
    }

    #[tokio::test]
    async fn nothing_to_delete_when_the_function_and_its_mapping_are_gone() {
        let list = listed(vec![]);
        let cx = cx_with(&[&list]);
        let removed = testing::destroy(&cx, STEP, QueueConsumerMapping)
            .await
            .unwrap();
        assert!(matches!(removed, Removed::AlreadyAbsent), "{removed:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_extra_mapping_an_emulator_let_a_retried_create_make_is_removed() {
        let mut extra = mapping(FUNCTION_ARN, "Enabled", 10, true);
        extra.uuid = Some("extra-uuid".to_owned());
        let list = listed(vec![mapping(FUNCTION_ARN, "Enabled", 10, true), extra]);
        let delete = mock!(Client::delete_event_source_mapping)
            .match_requests(|r| r.uuid() == Some("extra-uuid"))
            .then_output(|| DeleteEventSourceMappingOutput::builder().build());
        let get = mock!(Client::get_event_source_mapping)
            .match_requests(|r| r.uuid() == Some("extra-uuid"))
            .then_error(|| {
                GetEventSourceMappingError::generic(testing::error_meta(
                    "ResourceNotFoundException",
                ))
            });
        let cx = cx_with(&[&list, &delete, &get]);
        let applied = testing::ensure(&cx, STEP, QueueConsumerMapping, &inputs())
            .await
            .unwrap();
        assert_eq!(delete.num_calls(), 1);
        assert_eq!(applied.record.outputs["QueueConsumerMappingUuid"], UUID);
    }

    #[test]
    fn wanted_only_with_the_event_backbone() {
        let mut cx = testing::context(testing::clients());
        assert!(QueueConsumerMapping.wanted(&cx));
        cx.spec.events = false;
        assert!(!QueueConsumerMapping.wanted(&cx));
    }
}
