//! The env's custom EventBridge bus (`payops-<env>-payments`) for the
//! payment lifecycle, encrypted with the env's events key, its undecryptable
//! events sent to the events dead-letter queue.
//!
//! Found by name (DescribeEventBus), owned by its tags; drift is on the key,
//! the dead-letter queue and the description, all repaired by one
//! UpdateEventBus (which sets each of them: one left out is reset).
//!
//! Real-AWS rules encoded here (emulators ignore them):
//! - A customer managed key encrypts the bus's custom events, its rules'
//!   patterns and its targets' settings; EventBridge uses it only if the key
//!   policy lets `events.amazonaws.com` GenerateDataKey/Decrypt with the
//!   bus's ARN as encryption context (the events key's policy does, see
//!   `security/kms_key.rs`), and only symmetric keys. AWS service events
//!   (`aws.rds`) never reach a custom bus: their rule is on the default bus
//!   (EventBridge user guide, eb-encryption-event-bus-cmkey).
//! - With a customer managed key, events that meet a KMS error that retries
//!   cannot fix (key disabled, policy broken) are dropped unless the bus has
//!   a dead-letter queue (eb-encryption-event-bus-dlq).
//! - DeleteEventBus of the `default` bus is refused; payops only ever deletes
//!   its own named bus, after its rules (the graph orders it).
//!   [API_CreateEventBus, API_UpdateEventBus, API_DeleteEventBus]

use std::fmt;

use async_trait::async_trait;
use aws_sdk_eventbridge::types::DeadLetterConfig;

use crate::aws::{AwsError, OpResult, absent_on, required};
use crate::engine::{Record, StepCx};
use crate::tags::{TagMap, describe_tag_fix};

use crate::resources::context::Context;
use crate::resources::resource::Resource;
use crate::resources::sdk::events;

pub const STEP: &str = "event-bus:payments";
pub const KEY_INPUT: (&str, &str) = ("kms-key:events", "EventsKmsKeyArn");
pub const DLQ_INPUT: (&str, &str) = ("sqs-queue:payments-events-dlq", "PaymentsEventsDlqArn");
pub const NAME_OUTPUT: &str = "EventBusName";
pub const ARN_OUTPUT: &str = "EventBusArn";

pub struct EventBus;

pub struct FoundBus {
    name: String,
    arn: String,
    settings: Settings,
    tags: TagMap,
}

/// What payops sets on the bus, as DescribeEventBus answers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    kms_key: Option<String>,
    dead_letter_arn: Option<String>,
    description: Option<String>,
}

pub enum Fix {
    Tags(TagMap),
    /// One UpdateEventBus with every setting (what it omits it resets).
    Settings {
        what: Vec<&'static str>,
    },
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tags(t) => f.write_str(&describe_tag_fix(t)),
            Self::Settings { what } => write!(f, "set {}", what.join(", ")),
        }
    }
}

fn description(cx: &Context) -> String {
    format!("payops env {}: payment lifecycle events", cx.env())
}

impl EventBus {
    fn desired(cx: &Context, step: &StepCx<'_>) -> Result<Settings, AwsError> {
        Ok(Settings {
            kms_key: Some(step.output(KEY_INPUT.0, KEY_INPUT.1)?.to_owned()),
            dead_letter_arn: Some(step.output(DLQ_INPUT.0, DLQ_INPUT.1)?.to_owned()),
            description: Some(description(cx)),
        })
    }

    /// The settings that differ, by name (KmsKeyIdentifier,
    /// DeadLetterConfig, Description).
    fn drifted(found: &Settings, want: &Settings) -> Vec<&'static str> {
        let mut what = Vec::new();
        if found.kms_key != want.kms_key {
            what.push("KmsKeyIdentifier");
        }
        if found.dead_letter_arn != want.dead_letter_arn {
            what.push("DeadLetterConfig");
        }
        if found.description != want.description {
            what.push("Description");
        }
        what
    }
}

fn dead_letter(arn: Option<&String>) -> Option<DeadLetterConfig> {
    arn.map(|a| DeadLetterConfig::builder().arn(a).build())
}

#[async_trait]
impl Resource for EventBus {
    type Found = FoundBus;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "events:event-bus"
    }

    fn wanted(&self, cx: &Context) -> bool {
        cx.spec.events
    }

    async fn find(&self, cx: &Context, _step: &StepCx<'_>) -> Result<Vec<FoundBus>, AwsError> {
        const OP: &str = "events:DescribeEventBus";
        let name = cx.names.event_bus();
        let out = cx
            .clients
            .events
            .describe_event_bus()
            .name(&name)
            .send()
            .await
            .op(OP);
        let Some(out) = absent_on(out, &events::NOT_FOUND)? else {
            return Ok(Vec::new());
        };
        let arn = required(out.arn(), OP, "Arn")?.to_owned();
        let tags = events::tags_of(cx, &arn).await?;
        cx.check_ours(format!("EventBridge bus {name}"), &tags)?;
        Ok(vec![FoundBus {
            name,
            arn,
            settings: Settings {
                kms_key: out.kms_key_identifier().map(str::to_owned),
                dead_letter_arn: out
                    .dead_letter_config()
                    .and_then(|d| d.arn())
                    .map(str::to_owned),
                description: out.description().map(str::to_owned),
            },
            tags,
        }])
    }

    fn describe(&self, found: &FoundBus) -> String {
        found.name.clone()
    }

    fn already_exists(&self) -> &'static [&'static str] {
        &events::ALREADY_EXISTS
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<FoundBus, AwsError> {
        const OP: &str = "events:CreateEventBus";
        let name = cx.names.event_bus();
        let settings = Self::desired(cx, step)?;
        let tags = cx.tagger.for_create(step.id().as_str());
        let out = cx
            .clients
            .events
            .create_event_bus()
            .name(&name)
            .set_kms_key_identifier(settings.kms_key.clone())
            .set_dead_letter_config(dead_letter(settings.dead_letter_arn.as_ref()))
            .set_description(settings.description.clone())
            .set_tags(Some(events::tags(OP, &tags)?))
            .send()
            .await
            .op(OP)?;
        let arn = match out.event_bus_arn() {
            Some(arn) => arn.to_owned(),
            None => cx.event_bus_arn(),
        };
        step.remember("event-bus", &arn);
        Ok(FoundBus {
            name,
            arn,
            settings,
            tags,
        })
    }

    async fn diff(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        bus: &FoundBus,
    ) -> Result<Vec<Fix>, AwsError> {
        let mut fixes = Vec::new();
        let missing = cx.tagger.missing(step.id().as_str(), &bus.tags);
        if !missing.is_empty() {
            fixes.push(Fix::Tags(missing));
        }
        let what = Self::drifted(&bus.settings, &Self::desired(cx, step)?);
        if !what.is_empty() {
            fixes.push(Fix::Settings { what });
        }
        Ok(fixes)
    }

    async fn fix(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        bus: &mut FoundBus,
        fix: Fix,
    ) -> Result<(), AwsError> {
        match fix {
            Fix::Tags(missing) => {
                events::tag(cx, &bus.arn, &missing).await?;
                bus.tags.extend(missing);
            }
            Fix::Settings { .. } => {
                let want = Self::desired(cx, step)?;
                cx.clients
                    .events
                    .update_event_bus()
                    .name(&bus.name)
                    .set_kms_key_identifier(want.kms_key.clone())
                    .set_dead_letter_config(dead_letter(want.dead_letter_arn.as_ref()))
                    .set_description(want.description.clone())
                    .send()
                    .await
                    .op("events:UpdateEventBus")?;
                bus.settings = want;
            }
        }
        Ok(())
    }

    fn record(&self, _cx: &Context, bus: &FoundBus) -> Record {
        Record::default()
            .resource("event-bus", &bus.arn)
            .output(NAME_OUTPUT, &bus.name)
            .output(ARN_OUTPUT, &bus.arn)
    }

    async fn delete(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        bus: FoundBus,
    ) -> Result<Vec<String>, AwsError> {
        // AWS refuses DeleteEventBus while rules remain on the bus. `down`
        // deletes the env's rules first (they depend on the bus), but `up`
        // with `--events off` walks the graph forward and reaches the bus
        // before its rules; a rule added out of band would block both. The
        // bus is ours, so what is on it goes with it, targets first.
        let mut notes = Vec::new();
        for rule in events::rule_names(cx, &bus.name).await? {
            events::delete_rule(cx, &bus.name, &rule).await?;
            notes.push(format!("deleted rule {rule} (on the bus)"));
        }
        let result = cx
            .clients
            .events
            .delete_event_bus()
            .name(&bus.name)
            .send()
            .await
            .op("events:DeleteEventBus");
        absent_on(result, &events::NOT_FOUND)?;
        if !notes.is_empty() {
            notes.push(format!("deleted {}", bus.name));
        }
        Ok(notes)
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_eventbridge::Client;
    use aws_sdk_eventbridge::operation::create_event_bus::CreateEventBusOutput;
    use aws_sdk_eventbridge::operation::delete_event_bus::{
        DeleteEventBusError, DeleteEventBusOutput,
    };
    use aws_sdk_eventbridge::operation::delete_rule::DeleteRuleOutput;
    use aws_sdk_eventbridge::operation::describe_event_bus::{
        DescribeEventBusError, DescribeEventBusOutput,
    };
    use aws_sdk_eventbridge::operation::list_rules::ListRulesOutput;
    use aws_sdk_eventbridge::operation::list_tags_for_resource::ListTagsForResourceOutput;
    use aws_sdk_eventbridge::operation::list_targets_by_rule::ListTargetsByRuleOutput;
    use aws_sdk_eventbridge::operation::remove_targets::RemoveTargetsOutput;
    use aws_sdk_eventbridge::operation::update_event_bus::UpdateEventBusOutput;
    use aws_sdk_eventbridge::types::Tag;
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    use super::*;
    use crate::engine::{Change, Observation, Removed};
    use crate::resources::testing;

    const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/events-key";
    const DLQ: &str = "arn:aws:sqs:us-east-1:123456789012:payops-pr1-payments-events-dlq";
    const NAME: &str = "payops-pr1-payments";
    const ARN: &str = "arn:aws:events:us-east-1:123456789012:event-bus/payops-pr1-payments";

    fn inputs() -> Vec<(&'static str, Record)> {
        testing::outputs(&[
            (KEY_INPUT.0, KEY_INPUT.1, KEY),
            (DLQ_INPUT.0, DLQ_INPUT.1, DLQ),
        ])
    }

    fn cx_with(rules: &[&Rule]) -> Context {
        let mut clients = testing::clients();
        clients.events = mock_client!(aws_sdk_eventbridge, RuleMode::MatchAny, rules);
        testing::context(clients)
    }

    fn missing() -> Rule {
        mock!(Client::describe_event_bus).then_error(|| {
            DescribeEventBusError::generic(testing::error_meta("ResourceNotFoundException"))
        })
    }

    fn found(key: Option<&'static str>) -> Rule {
        mock!(Client::describe_event_bus)
            .match_requests(|r| r.name() == Some(NAME))
            .then_output(move || {
                DescribeEventBusOutput::builder()
                    .name(NAME)
                    .arn(ARN)
                    .set_kms_key_identifier(key.map(str::to_owned))
                    .dead_letter_config(DeadLetterConfig::builder().arn(DLQ).build())
                    .description("payops env pr1: payment lifecycle events")
                    .build()
            })
    }

    fn tagged(tags: TagMap) -> Rule {
        mock!(Client::list_tags_for_resource)
            .match_requests(|r| r.resource_arn() == Some(ARN))
            .then_output(move || {
                ListTagsForResourceOutput::builder()
                    .set_tags(Some(
                        tags.iter()
                            .map(|(k, v)| Tag::builder().key(k).value(v).build().unwrap())
                            .collect(),
                    ))
                    .build()
            })
    }

    fn no_rules() -> Rule {
        mock!(Client::list_rules)
            .match_requests(|r| r.event_bus_name() == Some(NAME))
            .then_output(|| ListRulesOutput::builder().build())
    }

    #[tokio::test]
    async fn creates_a_tagged_bus_encrypted_with_the_events_key_and_a_dead_letter_queue() {
        let get = missing();
        let create = mock!(Client::create_event_bus)
            .match_requests(|r| {
                let tags: TagMap = r
                    .tags()
                    .iter()
                    .map(|t| (t.key().to_owned(), t.value().to_owned()))
                    .collect();
                r.name() == Some(NAME)
                    && r.kms_key_identifier() == Some(KEY)
                    && r.dead_letter_config().and_then(|d| d.arn()) == Some(DLQ)
                    && tags.get("payops:step").map(String::as_str) == Some(STEP)
                    && tags.get("payops:env").map(String::as_str) == Some("pr1")
            })
            .then_output(|| CreateEventBusOutput::builder().event_bus_arn(ARN).build());
        let cx = cx_with(&[&get, &create]);
        let applied = testing::ensure(&cx, STEP, EventBus, &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(create.num_calls(), 1);
        assert_eq!(applied.record.outputs[ARN_OUTPUT], ARN);
        assert_eq!(applied.record.outputs[NAME_OUTPUT], NAME);
    }

    #[tokio::test]
    async fn a_bus_in_sync_is_adopted_without_mutating_calls() {
        let get = found(Some(KEY));
        let tags = tagged(testing::our_tags(STEP));
        let cx = cx_with(&[&get, &tags]);
        let applied = testing::ensure(&cx, STEP, EventBus, &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Unchanged, "{:?}", applied.notes);
    }

    #[tokio::test]
    async fn a_bus_moved_to_the_aws_owned_key_is_drift_repaired_with_every_setting() {
        // Someone switched the bus to the AWS owned key: DescribeEventBus
        // then answers no KmsKeyIdentifier.
        let get = found(None);
        let tags = tagged(testing::our_tags(STEP));
        let cx = cx_with(&[&get, &tags]);
        let observed = testing::observe(&cx, STEP, EventBus, &inputs())
            .await
            .unwrap();
        let Observation::Present { drift, .. } = observed else {
            panic!("expected present, got {observed:?}");
        };
        assert_eq!(drift, ["set KmsKeyIdentifier"]);

        // UpdateEventBus resets what it is not given: all three are sent.
        let update = mock!(Client::update_event_bus)
            .match_requests(|r| {
                r.name() == Some(NAME)
                    && r.kms_key_identifier() == Some(KEY)
                    && r.dead_letter_config().and_then(|d| d.arn()) == Some(DLQ)
                    && r.description().is_some()
            })
            .then_output(|| UpdateEventBusOutput::builder().build());
        let cx = cx_with(&[&get, &tags, &update]);
        let applied = testing::ensure(&cx, STEP, EventBus, &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Updated);
        assert_eq!(update.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_same_named_bus_of_someone_else_is_refused_never_adopted_or_deleted() {
        let get = found(Some(KEY));
        let tags = tagged(TagMap::from([("team".into(), "billing".into())]));
        let cx = cx_with(&[&get, &tags]);
        let err = testing::ensure(&cx, STEP, EventBus, &inputs())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("EventBridge bus {NAME}")), "{err}");
        let err = testing::destroy(&cx, STEP, EventBus)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("no payops ownership tags"), "{err}");
    }

    #[tokio::test]
    async fn destroy_deletes_the_bus_and_a_bus_gone_meanwhile_or_missing_is_success() {
        let get = found(Some(KEY));
        let tags = tagged(testing::our_tags(STEP));
        let delete = mock!(Client::delete_event_bus)
            .match_requests(|r| r.name() == Some(NAME))
            .then_output(|| DeleteEventBusOutput::builder().build());
        let rules = no_rules();
        let cx = cx_with(&[&get, &tags, &rules, &delete]);
        let removed = testing::destroy(&cx, STEP, EventBus).await.unwrap();
        assert!(matches!(removed, Removed::Deleted { .. }));
        assert_eq!(delete.num_calls(), 1);

        let gone = mock!(Client::delete_event_bus).then_error(|| {
            DeleteEventBusError::generic(testing::error_meta("ResourceNotFoundException"))
        });
        let cx = cx_with(&[&get, &tags, &rules, &gone]);
        let removed = testing::destroy(&cx, STEP, EventBus).await.unwrap();
        assert!(matches!(removed, Removed::Deleted { .. }));

        let cx = cx_with(&[&missing()]);
        let removed = testing::destroy(&cx, STEP, EventBus).await.unwrap();
        assert_eq!(removed, Removed::AlreadyAbsent);
    }

    #[tokio::test]
    async fn with_events_off_up_deletes_the_bus() {
        let get = found(Some(KEY));
        let tags = tagged(testing::our_tags(STEP));
        let delete =
            mock!(Client::delete_event_bus).then_output(|| DeleteEventBusOutput::builder().build());
        // `up` walks forward: the bus goes before its rule steps, so it
        // takes the rules on it along, targets first (AWS refuses to delete
        // a bus with rules, and a rule with targets).
        let rules = mock!(Client::list_rules)
            .match_requests(|r| r.event_bus_name() == Some(NAME))
            .then_output(|| {
                ListRulesOutput::builder()
                    .rules(
                        aws_sdk_eventbridge::types::Rule::builder()
                            .name("payops-pr1-payment-succeeded")
                            .build(),
                    )
                    .build()
            });
        let targets = mock!(Client::list_targets_by_rule).then_output(|| {
            ListTargetsByRuleOutput::builder()
                .targets(
                    aws_sdk_eventbridge::types::Target::builder()
                        .id("analytics-queue")
                        .arn("arn:aws:sqs:us-east-1:123456789012:q")
                        .build()
                        .unwrap(),
                )
                .build()
        });
        let remove = mock!(Client::remove_targets)
            .match_requests(|r| {
                r.rule() == Some("payops-pr1-payment-succeeded") && r.ids() == ["analytics-queue"]
            })
            .then_output(|| RemoveTargetsOutput::builder().failed_entry_count(0).build());
        let delete_rule = mock!(Client::delete_rule)
            .match_requests(|r| {
                r.name() == Some("payops-pr1-payment-succeeded") && r.event_bus_name() == Some(NAME)
            })
            .then_output(|| DeleteRuleOutput::builder().build());
        let mut cx = cx_with(&[
            &get,
            &tags,
            &rules,
            &targets,
            &remove,
            &delete_rule,
            &delete,
        ]);
        cx.spec.events = false;
        let applied = testing::ensure(&cx, STEP, EventBus, &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Deleted);
        assert_eq!(remove.num_calls(), 1);
        assert_eq!(delete_rule.num_calls(), 1);
        assert_eq!(delete.num_calls(), 1);
    }
}
