//! The event backbone's SQS queues: `payments-processing` and
//! `payments-analytics`, each with its own dead-letter queue
//! (`...-dlq`), and `payments-events-dlq` for what EventBridge cannot
//! deliver, all standard queues encrypted with the env's events key
//! (SSE-KMS, customer managed: producers that are AWS services, such as
//! EventBridge, can be let in through its key policy, which `alias/aws/sqs`
//! never allows), TLS-only, used only by the env's account, tagged at
//! creation.
//!
//! A queue is found by name (GetQueueUrl), owned by its tags (ListQueueTags)
//! and compared on the attributes payops sets only (GetQueueAttributes
//! answers every number as a string and the RedrivePolicy as JSON: compared
//! by meaning). SetQueueAttributes repairs drift; AWS may take up to a minute
//! to apply it (15 minutes for MessageRetentionPeriod).
//!
//! Real-AWS rules encoded here (emulators ignore them):
//! - CreateQueue with an existing name is idempotent only with the same
//!   attributes and tags; otherwise it fails (QueueNameExists, spelled
//!   `QueueAlreadyExists`): a lost answer then a retry, or a queue changed
//!   since `find`, so `ensure` looks again.
//! - After DeleteQueue a queue of the same name cannot be created for 60 s
//!   (QueueDeletedRecently): `create` waits and retries, with progress.
//! - A dead-letter queue must be of the same type, account and region as its
//!   source; for a standard queue a message's age counts from its first
//!   enqueue, so the DLQ keeps messages longer than its source
//!   (SQS developer guide, sqs-dead-letter-queues).
//!   [API_CreateQueue, API_SetQueueAttributes]

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::{Value, json};

use crate::aws::{AwsError, Budget, OpResult, absent_on, policy, required, retry_on_codes};
use crate::engine::{Record, StepCx};
use crate::naming::{EventRule, NameKind};
use crate::tags::{TagMap, describe_tag_fix};

use crate::resources::context::Context;
use crate::resources::model::{PROCESSING_VISIBILITY_TIMEOUT_S, QUEUE_CONSUMER_TIMEOUT_S};
use crate::resources::resource::Resource;
use crate::resources::sdk::sqs;

pub const KEY_INPUT: (&str, &str) = ("kms-key:events", "EventsKmsKeyArn");

/// The longest timeout a consumer function of these queues may have: the
/// queue consumer's (30 s, room for a batch of settlements), from the shared
/// model, so that the two cannot drift apart.
pub const CONSUMER_TIMEOUT_S: i64 = QUEUE_CONSUMER_TIMEOUT_S as i64;
/// AWS advises a visibility timeout of at least six times the consumer's
/// function timeout plus its batching window (0): a message a throttled or
/// retried invocation holds must not reappear while it is still being
/// processed. Lambda refuses an event source mapping whose queue's timeout
/// is below the function's (Lambda developer guide, services-sqs-configure).
pub const VISIBILITY_TIMEOUT_S: i64 = PROCESSING_VISIBILITY_TIMEOUT_S as i64;
/// Payments are processed within minutes; four days covers a long weekend of
/// a broken consumer (SQS's default, and its maximum is 14 days).
pub const RETENTION_S: i64 = 4 * 24 * 3600;
/// The DLQ keeps messages the maximum, 14 days: longer than its source, as
/// SQS measures a moved message's age from its first enqueue.
pub const DLQ_RETENTION_S: i64 = 14 * 24 * 3600;
/// Receives before a message moves to the DLQ (SQS allows 1-1000): enough to
/// ride out a throttled or briefly failing consumer, few enough that a poison
/// message leaves the queue within about 6 x 3 minutes.
pub const MAX_RECEIVE_COUNT: i64 = 5;

// AWS's limits for these settings, checked when payops is compiled: the
// visibility timeout covers six consumer timeouts, the DLQ outlives its
// source within SQS's 14-day maximum, maxReceiveCount is 1-1000.
const _: () = assert!(VISIBILITY_TIMEOUT_S >= 6 * CONSUMER_TIMEOUT_S);
const _: () = assert!(DLQ_RETENTION_S > RETENTION_S && DLQ_RETENTION_S <= 1_209_600);
const _: () = assert!(MAX_RECEIVE_COUNT >= 1 && MAX_RECEIVE_COUNT <= 1000);

/// A name deleted less than 60 s ago is refused: wait a little longer than
/// that for it.
const NAME_REUSE: Budget = Budget {
    total: Duration::from_secs(150),
    first_delay: Duration::from_secs(10),
    max_delay: Duration::from_secs(20),
};

const POLICY: &str = "Policy";
const KMS_KEY: &str = "KmsMasterKeyId";
const RETENTION: &str = "MessageRetentionPeriod";
const VISIBILITY: &str = "VisibilityTimeout";
const REDRIVE: &str = "RedrivePolicy";
const QUEUE_ARN: &str = "QueueArn";

/// Where a main queue sends what its consumers keep failing on.
#[derive(Clone, Copy)]
struct DeadLetter {
    step: &'static str,
    arn_output: &'static str,
}

/// A producer that is EventBridge, by what sends: the env's bus (events it
/// cannot decrypt go to the bus's dead-letter queue) or one of its rules.
#[derive(Clone, Copy)]
enum Sender {
    Bus,
    Rule(EventRule),
}

impl Sender {
    fn arn(self, cx: &Context) -> String {
        match self {
            Self::Bus => cx.event_bus_arn(),
            Self::Rule(rule) => cx.event_rule_arn(rule),
        }
    }
}

pub struct Queue {
    /// The name's suffix (`payops-<env>-<name>`), also the step id's.
    name: &'static str,
    /// Prefix of the output keys (`PaymentsProcessingQueue` ->
    /// `PaymentsProcessingQueueUrl`, ...).
    outputs: &'static str,
    /// `None`: this is a dead-letter queue.
    dead_letter: Option<DeadLetter>,
    /// What of EventBridge may send here (the queue policy names each).
    senders: &'static [Sender],
}

impl Queue {
    pub fn payments_processing() -> Self {
        Self {
            name: "payments-processing",
            outputs: "PaymentsProcessingQueue",
            dead_letter: Some(DeadLetter {
                step: "sqs-queue:payments-processing-dlq",
                arn_output: "PaymentsProcessingDlqArn",
            }),
            senders: &[],
        }
    }

    pub fn payments_processing_dlq() -> Self {
        Self {
            name: "payments-processing-dlq",
            outputs: "PaymentsProcessingDlq",
            dead_letter: None,
            senders: &[],
        }
    }

    pub fn payments_analytics() -> Self {
        Self {
            name: "payments-analytics",
            outputs: "PaymentsAnalyticsQueue",
            dead_letter: Some(DeadLetter {
                step: "sqs-queue:payments-analytics-dlq",
                arn_output: "PaymentsAnalyticsDlqArn",
            }),
            // The payment-succeeded rule's target.
            senders: &[Sender::Rule(EventRule::PaymentSucceeded)],
        }
    }

    pub fn payments_analytics_dlq() -> Self {
        Self {
            name: "payments-analytics-dlq",
            outputs: "PaymentsAnalyticsDlq",
            dead_letter: None,
            senders: &[],
        }
    }

    /// Where EventBridge puts what it could not deliver: each rule's
    /// targets' dead-letter queue, and the bus's (events it cannot decrypt,
    /// e.g. the key disabled or its policy broken, are lost without one:
    /// EventBridge user guide, eb-encryption-event-bus-dlq). A standard
    /// queue, as EventBridge requires of a DLQ (eb-rule-dlq); kept 14 days.
    pub fn payments_events_dlq() -> Self {
        Self {
            name: "payments-events-dlq",
            outputs: "PaymentsEventsDlq",
            dead_letter: None,
            senders: &[
                Sender::Bus,
                Sender::Rule(EventRule::PaymentSucceeded),
                Sender::Rule(EventRule::PaymentFailed),
                Sender::Rule(EventRule::DbFailover),
            ],
        }
    }

    pub fn step_id(&self) -> String {
        format!("sqs-queue:{}", self.name)
    }

    /// The dead-letter queue's step, for a main queue.
    pub fn dead_letter_step(&self) -> Option<&'static str> {
        self.dead_letter.map(|d| d.step)
    }

    fn queue_name(&self, cx: &Context) -> Result<String, AwsError> {
        let name = cx.names.queue(self.name);
        NameKind::SqsQueue
            .check(&name)
            .map_err(AwsError::Conflict)?;
        Ok(name)
    }

    /// Every attribute payops sets, as SetQueueAttributes takes them.
    fn desired(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        arn: &str,
    ) -> Result<BTreeMap<&'static str, String>, AwsError> {
        let key = step.output(KEY_INPUT.0, KEY_INPUT.1)?;
        let senders: Vec<String> = self.senders.iter().map(|s| s.arn(cx)).collect();
        let mut attrs = BTreeMap::from([
            (KMS_KEY, key.to_owned()),
            (POLICY, queue_policy(cx, arn, &senders)),
        ]);
        match self.dead_letter {
            Some(dlq) => {
                let dlq_arn = step.output(dlq.step, dlq.arn_output)?;
                attrs.insert(RETENTION, RETENTION_S.to_string());
                attrs.insert(VISIBILITY, VISIBILITY_TIMEOUT_S.to_string());
                attrs.insert(REDRIVE, redrive_policy(dlq_arn));
            }
            None => {
                attrs.insert(RETENTION, DLQ_RETENTION_S.to_string());
            }
        }
        Ok(attrs)
    }
}

/// TLS only, and only this account's principals: a Deny on plain HTTP for
/// everyone, an Allow for the account (its IAM policies then decide who:
/// for the processing queue, transaction processing's role, whose policy
/// names this queue for sqs:SendMessage).
/// EventBridge is a service principal, outside the account: it may send
/// only on behalf of the env's rules and bus that use the queue (`senders`,
/// their ARNs), the least a target or a dead-letter queue needs
/// (EventBridge user guide, eb-use-resource-based and eb-rule-dlq:
/// sqs:SendMessage with aws:SourceArn of the rule).
pub fn queue_policy(cx: &Context, queue_arn: &str, senders: &[String]) -> String {
    let mut policy = json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "sqs:*",
                "Resource": queue_arn,
                "Condition": {"Bool": {"aws:SecureTransport": "false"}}
            },
            {
                "Sid": "AccountUsesTheQueue",
                "Effect": "Allow",
                "Principal": {"AWS": cx.account_root_arn()},
                "Action": "sqs:*",
                "Resource": queue_arn
            }
        ]
    });
    if !senders.is_empty() {
        policy["Statement"]
            .as_array_mut()
            .expect("statements are a list")
            .push(json!({
                "Sid": "EnvEventBridgeSends",
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": senders}}
            }));
    }
    policy.to_string()
}

pub fn redrive_policy(dlq_arn: &str) -> String {
    json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVE_COUNT}).to_string()
}

/// A number SQS answers as a string (`"345600"`), or a JSON number.
fn number(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_str()?.trim().parse().ok())
}

/// Whether two redrive policies say the same: SQS echoes maxReceiveCount as a
/// number or a string depending on how it was set.
fn same_redrive(found: &str, want: &str) -> bool {
    let parse = |s: &str| -> Option<(String, i64)> {
        let v: Value = serde_json::from_str(s).ok()?;
        Some((
            v["deadLetterTargetArn"].as_str()?.to_owned(),
            number(&v["maxReceiveCount"])?,
        ))
    };
    matches!((parse(found), parse(want)), (Some(a), Some(b)) if a == b)
}

/// Whether the value SQS answers for `name` means `want`.
fn same_attribute(name: &str, found: Option<&str>, want: &str) -> bool {
    let Some(found) = found else {
        return false;
    };
    match name {
        POLICY => policy::same(found, want),
        REDRIVE => same_redrive(found, want),
        RETENTION | VISIBILITY => {
            number(&Value::String(found.to_owned())) == number(&Value::String(want.to_owned()))
        }
        _ => found == want,
    }
}

pub struct FoundQueue {
    name: String,
    url: String,
    arn: String,
    attributes: HashMap<String, String>,
    tags: TagMap,
}

pub enum Fix {
    Tags(TagMap),
    /// The attributes that differ, set in one SetQueueAttributes.
    Attributes(BTreeMap<&'static str, String>),
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tags(t) => f.write_str(&describe_tag_fix(t)),
            Self::Attributes(a) => {
                let names: Vec<&str> = a.keys().copied().collect();
                write!(f, "set {}", names.join(", "))
            }
        }
    }
}

fn attributes_map(attrs: &BTreeMap<&'static str, String>) -> HashMap<QueueAttributeName, String> {
    attrs
        .iter()
        .map(|(k, v)| (QueueAttributeName::from(*k), v.clone()))
        .collect()
}

#[async_trait]
impl Resource for Queue {
    type Found = FoundQueue;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "sqs:queue"
    }

    fn wanted(&self, cx: &Context) -> bool {
        cx.spec.events
    }

    async fn find(&self, cx: &Context, _step: &StepCx<'_>) -> Result<Vec<FoundQueue>, AwsError> {
        const OP: &str = "sqs:GetQueueAttributes";
        let name = self.queue_name(cx)?;
        let Some(url) = sqs::queue_url(cx, &name).await? else {
            return Ok(Vec::new());
        };
        let tags = sqs::tags_of(cx, &url).await?;
        cx.check_ours(format!("SQS queue {name}"), &tags)?;
        let out = cx
            .clients
            .sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .op(OP);
        // Deleted since GetQueueUrl: gone.
        let Some(out) = absent_on(out, &sqs::NO_QUEUE)? else {
            return Ok(Vec::new());
        };
        let attributes: HashMap<String, String> = out
            .attributes()
            .map(|a| {
                a.iter()
                    .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let arn = match attributes.get(QUEUE_ARN) {
            Some(arn) => arn.clone(),
            None => cx.arn("sqs", &name),
        };
        Ok(vec![FoundQueue {
            name,
            url,
            arn,
            attributes,
            tags,
        }])
    }

    fn describe(&self, found: &FoundQueue) -> String {
        found.name.clone()
    }

    fn already_exists(&self) -> &'static [&'static str] {
        &sqs::NAME_EXISTS
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<FoundQueue, AwsError> {
        const OP: &str = "sqs:CreateQueue";
        let name = self.queue_name(cx)?;
        // A queue's ARN follows from its name: the policy can name it before
        // the queue exists.
        let arn = cx.arn("sqs", &name);
        let desired = self.desired(cx, step, &arn)?;
        let tags = cx.tagger.for_create(step.id().as_str());
        let progress = |m: String| step.progress(m);
        let out = retry_on_codes(
            format!(
                "creating SQS queue {name} (a queue of that name was deleted less than 60 s ago)"
            ),
            &sqs::DELETED_RECENTLY,
            NAME_REUSE,
            &progress,
            || async {
                cx.clients
                    .sqs
                    .create_queue()
                    .queue_name(&name)
                    .set_attributes(Some(attributes_map(&desired)))
                    .set_tags(Some(tags.clone().into_iter().collect()))
                    .send()
                    .await
                    .op(OP)
            },
        )
        .await?;
        let url = required(out.queue_url(), OP, "QueueUrl")?.to_owned();
        step.remember("queue", &url);
        Ok(FoundQueue {
            name,
            url,
            arn,
            attributes: desired
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            tags,
        })
    }

    async fn diff(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        queue: &FoundQueue,
    ) -> Result<Vec<Fix>, AwsError> {
        let mut fixes = Vec::new();
        let missing = cx.tagger.missing(step.id().as_str(), &queue.tags);
        if !missing.is_empty() {
            fixes.push(Fix::Tags(missing));
        }
        let drifted: BTreeMap<&'static str, String> = self
            .desired(cx, step, &queue.arn)?
            .into_iter()
            .filter(|(k, want)| {
                !same_attribute(k, queue.attributes.get(*k).map(String::as_str), want)
            })
            .collect();
        if !drifted.is_empty() {
            fixes.push(Fix::Attributes(drifted));
        }
        Ok(fixes)
    }

    async fn fix(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        queue: &mut FoundQueue,
        fix: Fix,
    ) -> Result<(), AwsError> {
        match fix {
            Fix::Tags(missing) => {
                cx.clients
                    .sqs
                    .tag_queue()
                    .queue_url(&queue.url)
                    .set_tags(Some(missing.clone().into_iter().collect()))
                    .send()
                    .await
                    .op("sqs:TagQueue")?;
                queue.tags.extend(missing);
            }
            Fix::Attributes(attrs) => {
                cx.clients
                    .sqs
                    .set_queue_attributes()
                    .queue_url(&queue.url)
                    .set_attributes(Some(attributes_map(&attrs)))
                    .send()
                    .await
                    .op("sqs:SetQueueAttributes")?;
                queue
                    .attributes
                    .extend(attrs.into_iter().map(|(k, v)| (k.to_owned(), v)));
            }
        }
        Ok(())
    }

    fn record(&self, _cx: &Context, queue: &FoundQueue) -> Record {
        let p = self.outputs;
        Record::default()
            .resource("queue", &queue.url)
            .output(format!("{p}Url"), &queue.url)
            .output(format!("{p}Arn"), &queue.arn)
            .output(format!("{p}Name"), &queue.name)
    }

    async fn delete(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        queue: FoundQueue,
    ) -> Result<Vec<String>, AwsError> {
        // DeleteQueue answers at once; AWS finishes within 60 s, and the name
        // stays taken that long (a later create waits for it).
        let result = cx
            .clients
            .sqs
            .delete_queue()
            .queue_url(&queue.url)
            .send()
            .await
            .op("sqs:DeleteQueue");
        absent_on(result, &sqs::NO_QUEUE)?;
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_sqs::Client;
    use aws_sdk_sqs::operation::create_queue::{CreateQueueError, CreateQueueOutput};
    use aws_sdk_sqs::operation::delete_queue::{DeleteQueueError, DeleteQueueOutput};
    use aws_sdk_sqs::operation::get_queue_attributes::GetQueueAttributesOutput;
    use aws_sdk_sqs::operation::get_queue_url::{GetQueueUrlError, GetQueueUrlOutput};
    use aws_sdk_sqs::operation::list_queue_tags::ListQueueTagsOutput;
    use aws_sdk_sqs::operation::set_queue_attributes::SetQueueAttributesOutput;
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    use super::*;
    use crate::engine::{Change, Observation, Removed};
    use crate::resources::testing;

    const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/events-key";
    const STEP: &str = "sqs-queue:payments-processing";
    const NAME: &str = "payops-pr1-payments-processing";
    const URL: &str =
        "https://sqs.us-east-1.amazonaws.com/123456789012/payops-pr1-payments-processing";
    const ARN: &str = "arn:aws:sqs:us-east-1:123456789012:payops-pr1-payments-processing";
    const DLQ_ARN: &str = "arn:aws:sqs:us-east-1:123456789012:payops-pr1-payments-processing-dlq";
    /// AWS's codes, as the SDK reports them (from `x-amzn-query-error`).
    const NON_EXISTENT: &str = "AWS.SimpleQueueService.NonExistentQueue";
    const DELETED_RECENTLY: &str = "AWS.SimpleQueueService.QueueDeletedRecently";
    const NAME_EXISTS: &str = "QueueAlreadyExists";

    fn inputs() -> Vec<(&'static str, Record)> {
        testing::outputs(&[
            ("kms-key:events", "EventsKmsKeyArn", KEY),
            (
                "sqs-queue:payments-processing-dlq",
                "PaymentsProcessingDlqArn",
                DLQ_ARN,
            ),
        ])
    }

    fn cx_with(rules: &[&Rule]) -> Context {
        let mut clients = testing::clients();
        clients.sqs = mock_client!(aws_sdk_sqs, RuleMode::MatchAny, rules);
        testing::context(clients)
    }

    fn url_found() -> Rule {
        mock!(Client::get_queue_url)
            .match_requests(|r| r.queue_name() == Some(NAME))
            .then_output(|| GetQueueUrlOutput::builder().queue_url(URL).build())
    }

    fn url_missing() -> Rule {
        mock!(Client::get_queue_url)
            .then_error(|| GetQueueUrlError::generic(testing::error_meta(NON_EXISTENT)))
    }

    fn tagged(tags: TagMap) -> Rule {
        mock!(Client::list_queue_tags)
            .match_requests(|r| r.queue_url() == Some(URL))
            .then_output(move || {
                ListQueueTagsOutput::builder()
                    .set_tags(Some(tags.clone().into_iter().collect()))
                    .build()
            })
    }

    /// What GetQueueAttributes answers: every number a string, the redrive
    /// policy with maxReceiveCount as a string, the policy reformatted.
    fn attributes(overrides: &[(&str, &str)]) -> Rule {
        let cx = testing::context(testing::clients());
        let mut policy: Value = serde_json::from_str(&queue_policy(&cx, ARN, &[])).unwrap();
        policy["Statement"].as_array_mut().unwrap().reverse();
        let mut attrs: BTreeMap<String, String> = BTreeMap::from([
            ("QueueArn".into(), ARN.into()),
            ("ApproximateNumberOfMessages".into(), "0".into()),
            ("DelaySeconds".into(), "0".into()),
            ("KmsMasterKeyId".into(), KEY.into()),
            ("KmsDataKeyReusePeriodSeconds".into(), "300".into()),
            ("MessageRetentionPeriod".into(), "345600".into()),
            ("VisibilityTimeout".into(), "180".into()),
            (
                "RedrivePolicy".into(),
                format!(r#"{{"maxReceiveCount":"5","deadLetterTargetArn":"{DLQ_ARN}"}}"#),
            ),
            ("Policy".into(), policy.to_string()),
        ]);
        for (k, v) in overrides {
            attrs.insert((*k).to_owned(), (*v).to_owned());
        }
        mock!(Client::get_queue_attributes)
            .match_requests(|r| {
                r.queue_url() == Some(URL) && r.attribute_names() == [QueueAttributeName::All]
            })
            .then_output(move || {
                let mut out = GetQueueAttributesOutput::builder();
                for (k, v) in &attrs {
                    out = out.attributes(QueueAttributeName::from(k.as_str()), v.clone());
                }
                out.build()
            })
    }

    fn attr<'a>(
        attrs: Option<&'a HashMap<QueueAttributeName, String>>,
        name: &str,
    ) -> Option<&'a str> {
        attrs?
            .get(&QueueAttributeName::from(name))
            .map(String::as_str)
    }

    fn created() -> Rule {
        mock!(Client::create_queue)
            .match_requests(|r| {
                let a = r.attributes();
                let policy: Value =
                    serde_json::from_str(attr(a, "Policy").unwrap_or("null")).unwrap();
                let redrive: Value =
                    serde_json::from_str(attr(a, "RedrivePolicy").unwrap_or("null")).unwrap();
                let deny = &policy["Statement"][0];
                let tags = r.tags().cloned().unwrap_or_default();
                r.queue_name() == Some(NAME)
                    && attr(a, "KmsMasterKeyId") == Some(KEY)
                    && attr(a, "VisibilityTimeout") == Some("180")
                    && attr(a, "MessageRetentionPeriod") == Some("345600")
                    && redrive["deadLetterTargetArn"] == DLQ_ARN
                    && redrive["maxReceiveCount"] == 5
                    && deny["Effect"] == "Deny"
                    && deny["Condition"]["Bool"]["aws:SecureTransport"] == "false"
                    && deny["Resource"] == ARN
                    && policy["Statement"][1]["Principal"]["AWS"]
                        == "arn:aws:iam::123456789012:root"
                    && tags.get("payops:step").map(String::as_str) == Some(STEP)
                    && tags.get("payops:env").map(String::as_str) == Some("pr1")
            })
            .then_output(|| CreateQueueOutput::builder().queue_url(URL).build())
    }

    #[tokio::test]
    async fn creates_an_encrypted_tls_only_tagged_queue_with_its_dead_letter_queue() {
        let get = url_missing();
        let create = created();
        let cx = cx_with(&[&get, &create]);
        let applied = testing::ensure(&cx, STEP, Queue::payments_processing(), &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(create.num_calls(), 1);
        // Created as desired: no repair follows (none is mocked).
        assert_eq!(applied.notes, [format!("created {NAME}")]);
        let out = &applied.record.outputs;
        assert_eq!(out["PaymentsProcessingQueueUrl"], URL);
        assert_eq!(out["PaymentsProcessingQueueArn"], ARN);
        assert_eq!(out["PaymentsProcessingQueueName"], NAME);
    }

    #[tokio::test]
    async fn a_dead_letter_queue_keeps_messages_14_days_and_has_no_redrive_of_its_own() {
        let dlq_url =
            "https://sqs.us-east-1.amazonaws.com/123456789012/payops-pr1-payments-analytics-dlq";
        let get = url_missing();
        let create = mock!(Client::create_queue)
            .match_requests(|r| {
                let a = r.attributes();
                r.queue_name() == Some("payops-pr1-payments-analytics-dlq")
                    && attr(a, "MessageRetentionPeriod") == Some("1209600")
                    && attr(a, "RedrivePolicy").is_none()
                    && attr(a, "KmsMasterKeyId") == Some(KEY)
                    && attr(a, "Policy").is_some()
            })
            .then_output(move || CreateQueueOutput::builder().queue_url(dlq_url).build());
        let cx = cx_with(&[&get, &create]);
        let applied = testing::ensure(
            &cx,
            "sqs-queue:payments-analytics-dlq",
            Queue::payments_analytics_dlq(),
            &testing::outputs(&[("kms-key:events", "EventsKmsKeyArn", KEY)]),
        )
        .await
        .unwrap();
        assert_eq!(create.num_calls(), 1);
        assert_eq!(
            applied.record.outputs["PaymentsAnalyticsDlqArn"],
            "arn:aws:sqs:us-east-1:123456789012:payops-pr1-payments-analytics-dlq"
        );
    }

    #[tokio::test]
    async fn a_queue_in_sync_is_adopted_without_mutating_calls_whatever_shape_sqs_answers() {
        let get = url_found();
        let tags = tagged(testing::our_tags(STEP));
        let attrs = attributes(&[]);
        let cx = cx_with(&[&get, &tags, &attrs]);
        let applied = testing::ensure(&cx, STEP, Queue::payments_processing(), &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Unchanged, "{:?}", applied.notes);
        assert_eq!(attrs.num_calls(), 1);
    }

    #[tokio::test]
    async fn drift_on_the_attributes_payops_sets_is_reported_and_repaired_in_one_call() {
        // Someone raised maxReceiveCount and lowered the visibility timeout;
        // DelaySeconds is not payops' and is left alone.
        let get = url_found();
        let tags = tagged(testing::our_tags(STEP));
        let attrs = attributes(&[
            (
                "RedrivePolicy",
                &format!(r#"{{"deadLetterTargetArn":"{DLQ_ARN}","maxReceiveCount":10}}"#),
            ),
            ("VisibilityTimeout", "30"),
            ("DelaySeconds", "5"),
        ]);
        let cx = cx_with(&[&get, &tags, &attrs]);
        let observed = testing::observe(&cx, STEP, Queue::payments_processing(), &inputs())
            .await
            .unwrap();
        let Observation::Present { drift, .. } = observed else {
            panic!("expected present, got {observed:?}");
        };
        assert_eq!(drift, ["set RedrivePolicy, VisibilityTimeout"]);

        let set = mock!(Client::set_queue_attributes)
            .match_requests(|r| {
                let a = r.attributes();
                let redrive: Value =
                    serde_json::from_str(attr(a, "RedrivePolicy").unwrap_or("null")).unwrap();
                r.queue_url() == Some(URL)
                    && a.map(HashMap::len) == Some(2)
                    && attr(a, "VisibilityTimeout") == Some("180")
                    && redrive["maxReceiveCount"] == 5
            })
            .then_output(|| SetQueueAttributesOutput::builder().build());
        let cx = cx_with(&[&get, &tags, &attrs, &set]);
        let applied = testing::ensure(&cx, STEP, Queue::payments_processing(), &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Updated);
        assert_eq!(set.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_same_named_queue_of_someone_else_is_refused_never_adopted_or_deleted() {
        let get = url_found();
        let tags = tagged(TagMap::from([("team".into(), "billing".into())]));
        let cx = cx_with(&[&get, &tags]);
        let err = testing::ensure(&cx, STEP, Queue::payments_processing(), &inputs())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("SQS queue {NAME}")), "{err}");
        let err = testing::destroy(&cx, STEP, Queue::payments_processing())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("no payops ownership tags"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_name_deleted_less_than_a_minute_ago_is_waited_for() {
        let get = url_missing();
        let create = mock!(Client::create_queue)
            .sequence()
            .error(|| CreateQueueError::generic(testing::error_meta(DELETED_RECENTLY)))
            .times(3)
            .output(|| CreateQueueOutput::builder().queue_url(URL).build())
            .build();
        let cx = cx_with(&[&get, &create]);
        let applied = testing::ensure(&cx, STEP, Queue::payments_processing(), &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(create.num_calls(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_name_that_stays_refused_gives_up_with_a_timeout() {
        let get = url_missing();
        let create = mock!(Client::create_queue)
            .then_error(|| CreateQueueError::generic(testing::error_meta(DELETED_RECENTLY)));
        let cx = cx_with(&[&get, &create]);
        let err = testing::ensure(&cx, STEP, Queue::payments_processing(), &inputs())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("deleted less than 60 s ago"), "{err}");
        assert!(create.num_calls() > 2);
    }

    #[tokio::test]
    async fn queue_name_exists_looks_again_and_converges_what_it_finds() {
        // The first CreateQueue's answer was lost and the queue has since
        // been changed, or a retry met it: QueueNameExists, then `find` sees
        // the queue (ours) and the drift is repaired.
        let get = mock!(Client::get_queue_url)
            .sequence()
            .error(|| GetQueueUrlError::generic(testing::error_meta(NON_EXISTENT)))
            .output(|| GetQueueUrlOutput::builder().queue_url(URL).build())
            .build();
        let create = mock!(Client::create_queue)
            .then_error(|| CreateQueueError::generic(testing::error_meta(NAME_EXISTS)));
        let tags = tagged(testing::our_tags(STEP));
        let attrs = attributes(&[("MessageRetentionPeriod", "60")]);
        let set = mock!(Client::set_queue_attributes)
            .match_requests(|r| {
                attr(r.attributes(), "MessageRetentionPeriod") == Some("345600")
                    && r.attributes().map(HashMap::len) == Some(1)
            })
            .then_output(|| SetQueueAttributesOutput::builder().build());
        let cx = cx_with(&[&get, &create, &tags, &attrs, &set]);
        let applied = testing::ensure(&cx, STEP, Queue::payments_processing(), &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(create.num_calls(), 1);
        assert_eq!(set.num_calls(), 1);
    }

    #[tokio::test]
    async fn destroy_deletes_the_queue_by_url_and_a_queue_gone_meanwhile_is_success() {
        let get = url_found();
        let tags = tagged(testing::our_tags(STEP));
        let attrs = attributes(&[]);
        let delete = mock!(Client::delete_queue)
            .match_requests(|r| r.queue_url() == Some(URL))
            .then_output(|| DeleteQueueOutput::builder().build());
        let cx = cx_with(&[&get, &tags, &attrs, &delete]);
        let removed = testing::destroy(&cx, STEP, Queue::payments_processing())
            .await
            .unwrap();
        assert!(matches!(removed, Removed::Deleted { .. }));
        assert_eq!(delete.num_calls(), 1);

        let gone = mock!(Client::delete_queue)
            .then_error(|| DeleteQueueError::generic(testing::error_meta(NON_EXISTENT)));
        let cx = cx_with(&[&get, &tags, &attrs, &gone]);
        let removed = testing::destroy(&cx, STEP, Queue::payments_processing())
            .await
            .unwrap();
        assert!(matches!(removed, Removed::Deleted { .. }));
    }

    #[tokio::test]
    async fn destroy_of_a_missing_queue_is_success() {
        let get = url_missing();
        let cx = cx_with(&[&get]);
        let removed = testing::destroy(&cx, STEP, Queue::payments_processing())
            .await
            .unwrap();
        assert_eq!(removed, Removed::AlreadyAbsent);
    }

    #[tokio::test]
    async fn with_events_off_up_deletes_the_queue_and_creates_nothing() {
        let get = url_found();
        let tags = tagged(testing::our_tags(STEP));
        let attrs = attributes(&[]);
        let delete =
            mock!(Client::delete_queue).then_output(|| DeleteQueueOutput::builder().build());
        let mut cx = cx_with(&[&get, &tags, &attrs, &delete]);
        cx.spec.events = false;
        let applied = testing::ensure(&cx, STEP, Queue::payments_processing(), &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Deleted);
        assert_eq!(delete.num_calls(), 1);
    }

    #[test]
    fn eventbridge_may_send_only_for_the_envs_rules_and_bus_that_use_the_queue() {
        let cx = testing::context(testing::clients());
        let senders = |q: Queue| -> Vec<String> { q.senders.iter().map(|s| s.arn(&cx)).collect() };
        let rule = |r: &str| format!("arn:aws:events:us-east-1:123456789012:rule/{r}");
        assert_eq!(
            senders(Queue::payments_analytics()),
            [rule("payops-pr1-payments/payops-pr1-payment-succeeded")]
        );
        assert_eq!(
            senders(Queue::payments_events_dlq()),
            [
                "arn:aws:events:us-east-1:123456789012:event-bus/payops-pr1-payments".to_owned(),
                rule("payops-pr1-payments/payops-pr1-payment-succeeded"),
                rule("payops-pr1-payments/payops-pr1-payment-failed"),
                rule("payops-pr1-db-failover"),
            ]
        );
        // The processing queue and its DLQ: no service producer at all.
        assert!(senders(Queue::payments_processing()).is_empty());
        let policy: Value = serde_json::from_str(&queue_policy(&cx, ARN, &[])).unwrap();
        assert_eq!(policy["Statement"].as_array().unwrap().len(), 2);
        // Its producer, transaction processing, is a role of this account:
        // the account's Allow lets its IAM grant (sqs:SendMessage on this
        // queue) count, and only plain HTTP is denied, which boto3 never uses.
        let account = &policy["Statement"][1];
        assert_eq!(account["Effect"], "Allow");
        assert_eq!(
            account["Principal"]["AWS"],
            "arn:aws:iam::123456789012:root"
        );
        assert_eq!(account["Resource"], ARN);
        assert_eq!(
            policy["Statement"][0]["Condition"],
            json!({"Bool": {"aws:SecureTransport": "false"}})
        );

        let sent = senders(Queue::payments_analytics());
        let policy: Value = serde_json::from_str(&queue_policy(&cx, ARN, &sent)).unwrap();
        let events = &policy["Statement"][2];
        assert_eq!(events["Principal"]["Service"], "events.amazonaws.com");
        assert_eq!(events["Action"], "sqs:SendMessage");
        assert_eq!(events["Resource"], ARN);
        assert_eq!(
            events["Condition"]["ArnEquals"]["aws:SourceArn"],
            json!(sent)
        );
        // The TLS-only deny still comes first and covers EventBridge too.
        assert_eq!(policy["Statement"][0]["Effect"], "Deny");
    }

    #[test]
    fn redrive_policies_compare_by_meaning() {
        let want = redrive_policy(DLQ_ARN);
        assert!(same_redrive(
            &format!(r#"{{"maxReceiveCount":"5","deadLetterTargetArn":"{DLQ_ARN}"}}"#),
            &want
        ));
        assert!(!same_redrive(
            &format!(r#"{{"maxReceiveCount":"6","deadLetterTargetArn":"{DLQ_ARN}"}}"#),
            &want
        ));
        assert!(!same_redrive("not json", &want));
        assert!(same_attribute(VISIBILITY, Some(" 180"), "180"));
        assert!(!same_attribute(VISIBILITY, None, "180"));
    }
}
