//! Email subscriptions of an alarm topic (`--alert-email`, `alert_emails`),
//! one step per topic (`alert-emails:<topic>`).
//!
//! Subscriptions cannot be tagged: they are found with
//! ListSubscriptionsByTopic on the env's own topic (whose tags are checked
//! first). Once addresses are configured, the topic's *email* subscriptions
//! are exactly those addresses: a removed address is unsubscribed, and so is
//! one added by hand (add it with `--alert-email` instead). Other protocols
//! (SQS, Lambda, HTTPS) are never touched. While no address was ever
//! configured, payops leaves the email subscriptions alone.
//!
//! SNS mails each new address a confirmation link; until it is followed the
//! subscription's ARN is `PendingConfirmation`, and a pending subscription
//! cannot be unsubscribed: it disappears with the topic, or by itself when
//! left unconfirmed for 3 days.

use std::fmt;

use async_trait::async_trait;

use crate::aws::{AwsError, OpResult, absent_on};
use crate::engine::{Record, StepCx};

use crate::resources::context::Context;
use crate::resources::resource::Resource;
use crate::resources::sdk::sns;

const PROTOCOL: &str = "email";
/// The SubscriptionArn SNS lists for an address that has not confirmed yet.
pub const PENDING: &str = "PendingConfirmation";

pub struct AlertSubscriptions {
    /// The topic's name suffix (`payops-<env>-<topic>`).
    topic: &'static str,
}

impl AlertSubscriptions {
    pub fn new(topic: &'static str) -> Self {
        Self { topic }
    }

    pub fn step_id(topic: &str) -> String {
        format!("alert-emails:{topic}")
    }

    fn topic_arn(&self, cx: &Context) -> String {
        cx.arn("sns", &cx.names.topic(self.topic))
    }

    /// The configured addresses, or None while none were ever configured.
    fn wanted_emails(cx: &Context) -> Option<&[String]> {
        cx.spec.alert_emails.as_deref()
    }

    fn is_wanted(cx: &Context, email: &str) -> bool {
        Self::wanted_emails(cx)
            .unwrap_or_default()
            .iter()
            .any(|w| w.eq_ignore_ascii_case(email))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub email: String,
    /// None while pending confirmation (it has no ARN to unsubscribe by).
    pub arn: Option<String>,
}

pub struct FoundSubscriptions {
    topic_arn: String,
    subscriptions: Vec<Subscription>,
}

pub enum Fix {
    Subscribe(String),
    Unsubscribe { email: String, arn: String },
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Subscribe(email) => {
                write!(f, "subscribe {email} (SNS mails it a confirmation link)")
            }
            Self::Unsubscribe { email, .. } => write!(f, "unsubscribe {email}"),
        }
    }
}

fn pending_note(email: &str) -> String {
    format!(
        "{email}: pending confirmation, which SNS cannot unsubscribe; it goes with the topic, \
         or by itself after 3 days unconfirmed"
    )
}

#[async_trait]
impl Resource for AlertSubscriptions {
    type Found = FoundSubscriptions;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "sns:email-subscriptions"
    }

    fn wanted(&self, cx: &Context) -> bool {
        Self::wanted_emails(cx).is_some_and(|e| !e.is_empty())
    }

    /// The topic's email subscriptions, except pending ones of addresses no
    /// longer wanted: nothing can be done about those (they would otherwise
    /// be "removed" on every run).
    async fn find(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
    ) -> Result<Vec<FoundSubscriptions>, AwsError> {
        if Self::wanted_emails(cx).is_none() {
            return Ok(Vec::new());
        }
        let topic_arn = self.topic_arn(cx);
        let pages: Vec<_> = cx
            .clients
            .sns
            .list_subscriptions_by_topic()
            .topic_arn(&topic_arn)
            .into_paginator()
            .send()
            .collect()
            .await;
        let mut subscriptions = Vec::new();
        for page in pages {
            let Some(page) = absent_on(page.op("sns:ListSubscriptionsByTopic"), &["NotFound"])?
            else {
                return Ok(Vec::new());
            };
            for s in page.subscriptions() {
                if s.protocol() != Some(PROTOCOL) {
                    continue;
                }
                let Some(email) = s.endpoint() else { continue };
                let arn = s
                    .subscription_arn()
                    .filter(|a| *a != PENDING && a.starts_with("arn:"))
                    .map(str::to_owned);
                if arn.is_none() && !Self::is_wanted(cx, email) {
                    step.progress(pending_note(email));
                    continue;
                }
                subscriptions.push(Subscription {
                    email: email.to_owned(),
                    arn,
                });
            }
        }
        if subscriptions.is_empty() {
            return Ok(Vec::new());
        }
        // Subscriptions cannot be tagged: they are ours through the topic.
        let tags = sns::tags_of(cx, &topic_arn).await?;
        cx.check_ours(format!("SNS topic {}", cx.names.topic(self.topic)), &tags)?;
        subscriptions.sort_by_key(|s| s.email.to_ascii_lowercase());
        Ok(vec![FoundSubscriptions {
            topic_arn,
            subscriptions,
        }])
    }

    fn describe(&self, found: &FoundSubscriptions) -> String {
        format!(
            "{} email subscriptions of {}",
            found.subscriptions.len(),
            found.topic_arn
        )
    }

    /// Nothing to create up front: `diff` lists each address to subscribe.
    async fn create(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
    ) -> Result<FoundSubscriptions, AwsError> {
        Ok(FoundSubscriptions {
            topic_arn: self.topic_arn(cx),
            subscriptions: Vec::new(),
        })
    }

    async fn diff(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        found: &FoundSubscriptions,
    ) -> Result<Vec<Fix>, AwsError> {
        let wanted = Self::wanted_emails(cx).unwrap_or_default();
        let mut fixes: Vec<Fix> = wanted
            .iter()
            .filter(|w| {
                !found
                    .subscriptions
                    .iter()
                    .any(|s| s.email.eq_ignore_ascii_case(w))
            })
            .map(|w| Fix::Subscribe(w.clone()))
            .collect();
        for s in &found.subscriptions {
            if let Some(arn) = &s.arn
                && !Self::is_wanted(cx, &s.email)
            {
                fixes.push(Fix::Unsubscribe {
                    email: s.email.clone(),
                    arn: arn.clone(),
                });
            }
        }
        Ok(fixes)
    }

    async fn fix(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        found: &mut FoundSubscriptions,
        fix: Fix,
    ) -> Result<(), AwsError> {
        match fix {
            Fix::Subscribe(email) => {
                let out = cx
                    .clients
                    .sns
                    .subscribe()
                    .topic_arn(&found.topic_arn)
                    .protocol(PROTOCOL)
                    .endpoint(&email)
                    .send()
                    .await
                    .op("sns:Subscribe")?;
                found.subscriptions.push(Subscription {
                    email,
                    arn: out
                        .subscription_arn()
                        .filter(|a| a.starts_with("arn:"))
                        .map(str::to_owned),
                });
            }
            Fix::Unsubscribe { email, arn } => {
                let out = cx
                    .clients
                    .sns
                    .unsubscribe()
                    .subscription_arn(&arn)
                    .send()
                    .await
                    .op("sns:Unsubscribe");
                absent_on(out, &["NotFound"])?;
                found.subscriptions.retain(|s| s.email != email);
            }
        }
        Ok(())
    }

    fn record(&self, _cx: &Context, found: &FoundSubscriptions) -> Record {
        found.subscriptions.iter().fold(Record::default(), |r, s| {
            r.resource(
                format!("subscription:{}", s.email),
                s.arn.as_deref().unwrap_or(PENDING),
            )
        })
    }

    async fn delete(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        found: FoundSubscriptions,
    ) -> Result<Vec<String>, AwsError> {
        let mut notes = Vec::new();
        for s in found.subscriptions {
            match s.arn {
                Some(arn) => {
                    let out = cx
                        .clients
                        .sns
                        .unsubscribe()
                        .subscription_arn(&arn)
                        .send()
                        .await
                        .op("sns:Unsubscribe");
                    absent_on(out, &["NotFound"])?;
                    notes.push(format!("unsubscribed {}", s.email));
                }
                None => notes.push(pending_note(&s.email)),
            }
        }
        Ok(notes)
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_sns::Client;
    use aws_sdk_sns::operation::list_subscriptions_by_topic::{
        ListSubscriptionsByTopicError, ListSubscriptionsByTopicOutput,
    };
    use aws_sdk_sns::operation::list_tags_for_resource::ListTagsForResourceOutput;
    use aws_sdk_sns::operation::subscribe::SubscribeOutput;
    use aws_sdk_sns::operation::unsubscribe::UnsubscribeOutput;
    use aws_sdk_sns::types::{Subscription as SnsSubscription, Tag};
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    use super::*;
    use crate::engine::{Change, Observation, Removed};
    use crate::resources::testing;
    use crate::tags::TagMap;

    const STEP: &str = "alert-emails:system-errors";
    const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:payops-pr1-system-errors";

    fn step() -> AlertSubscriptions {
        AlertSubscriptions::new("system-errors")
    }

    fn cx_with(emails: Option<&[&str]>, rules: &[&Rule]) -> Context {
        let mut clients = testing::clients();
        clients.sns = mock_client!(aws_sdk_sns, RuleMode::MatchAny, rules);
        let mut cx = testing::context(clients);
        cx.spec.alert_emails = emails.map(|e| e.iter().map(|s| (*s).to_owned()).collect());
        cx
    }

    /// (protocol, endpoint, arn) as ListSubscriptionsByTopic lists them.
    fn listed(subs: &[(&str, &str, &str)]) -> Rule {
        let subs: Vec<SnsSubscription> = subs
            .iter()
            .map(|(protocol, endpoint, arn)| {
                SnsSubscription::builder()
                    .protocol(*protocol)
                    .endpoint(*endpoint)
                    .subscription_arn(*arn)
                    .topic_arn(TOPIC)
                    .build()
            })
            .collect();
        mock!(Client::list_subscriptions_by_topic)
            .match_requests(|r| r.topic_arn() == Some(TOPIC))
            .then_output(move || {
                ListSubscriptionsByTopicOutput::builder()
                    .set_subscriptions(Some(subs.clone()))
                    .build()
            })
    }

    fn topic_tags(tags: TagMap) -> Rule {
        mock!(Client::list_tags_for_resource)
            .match_requests(|r| r.resource_arn() == Some(TOPIC))
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

    fn ours() -> Rule {
        topic_tags(testing::our_tags("sns-topic:system-errors"))
    }

    fn sub_arn(n: u8) -> String {
        format!("{TOPIC}:0000000{n}-aaaa-bbbb-cccc-dddddddddddd")
    }

    #[tokio::test]
    async fn subscribes_new_addresses_and_unsubscribes_removed_ones_only() {
        let (kept, removed) = (sub_arn(1), sub_arn(2));
        let list = listed(&[
            ("email", "kept@example.com", &kept),
            ("email", "removed@example.com", &removed),
            // A removed address still pending: SNS cannot unsubscribe it.
            ("email", "pending@example.com", PENDING),
            // Not email: never payops' business.
            (
                "sqs",
                "arn:aws:sqs:us-east-1:123456789012:audit",
                &sub_arn(3),
            ),
        ]);
        let subscribe = mock!(Client::subscribe)
            .match_requests(|r| {
                r.topic_arn() == Some(TOPIC)
                    && r.protocol() == Some("email")
                    && r.endpoint() == Some("new@example.com")
            })
            .then_output(|| {
                SubscribeOutput::builder()
                    .subscription_arn("pending confirmation")
                    .build()
            });
        let unsubscribe = mock!(Client::unsubscribe)
            .match_requests(move |r| r.subscription_arn() == Some(removed.as_str()))
            .then_output(|| UnsubscribeOutput::builder().build());
        let cx = cx_with(
            Some(&["KEPT@example.com", "new@example.com"]),
            &[&list, &ours(), &subscribe, &unsubscribe],
        );
        let applied = testing::ensure(&cx, STEP, step(), &[]).await.unwrap();
        assert_eq!(applied.change, Change::Updated);
        assert_eq!(
            applied.notes,
            [
                "subscribe new@example.com (SNS mails it a confirmation link)",
                "unsubscribe removed@example.com"
            ]
        );
        assert_eq!((subscribe.num_calls(), unsubscribe.num_calls()), (1, 1));
        assert_eq!(
            applied.record.resources["subscription:new@example.com"],
            PENDING
        );
        assert!(
            !applied
                .record
                .resources
                .contains_key("subscription:pending@example.com")
        );
    }

    #[tokio::test]
    async fn in_sync_pending_or_confirmed_makes_no_mutating_call() {
        let list = listed(&[
            ("email", "a@example.com", &sub_arn(1)),
            ("email", "b@example.com", PENDING),
        ]);
        let cx = cx_with(Some(&["a@example.com", "b@example.com"]), &[&list, &ours()]);
        let applied = testing::ensure(&cx, STEP, step(), &[]).await.unwrap();
        assert_eq!(applied.change, Change::Unchanged);
        assert!(applied.notes.is_empty(), "{:?}", applied.notes);
    }

    #[tokio::test]
    async fn never_configured_means_hands_off() {
        // No rule at all: any call would fail the test.
        let cx = cx_with(None, &[]);
        let applied = testing::ensure(&cx, STEP, step(), &[]).await.unwrap();
        assert_eq!(applied.change, Change::Unchanged);
        let observed = testing::observe(&cx, STEP, step(), &[]).await.unwrap();
        assert_eq!(observed, Observation::NotWanted);
        assert_eq!(
            testing::destroy(&cx, STEP, step()).await.unwrap(),
            Removed::AlreadyAbsent
        );
    }

    #[tokio::test]
    async fn an_empty_list_removes_every_confirmed_email_subscription() {
        let arn = sub_arn(1);
        let list = listed(&[("email", "old@example.com", &arn)]);
        let unsubscribe = mock!(Client::unsubscribe)
            .match_requests(move |r| r.subscription_arn() == Some(arn.as_str()))
            .then_output(|| UnsubscribeOutput::builder().build());
        let cx = cx_with(Some(&[]), &[&list, &ours(), &unsubscribe]);
        let applied = testing::ensure(&cx, STEP, step(), &[]).await.unwrap();
        assert_eq!(applied.change, Change::Deleted);
        assert_eq!(unsubscribe.num_calls(), 1);
    }

    #[tokio::test]
    async fn subscriptions_of_a_topic_that_is_not_ours_are_left_alone() {
        // No Subscribe/Unsubscribe rule.
        let list = listed(&[("email", "someone@example.com", &sub_arn(1))]);
        let cx = cx_with(
            Some(&["ops@example.com"]),
            &[&list, &topic_tags(TagMap::new())],
        );
        let err = testing::ensure(&cx, STEP, step(), &[])
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("SNS topic payops-pr1-system-errors exists but is not tagged"),
            "{err}"
        );
        assert!(testing::destroy(&cx, STEP, step()).await.is_err());
    }

    #[tokio::test]
    async fn teardown_unsubscribes_confirmed_and_explains_pending_ones() {
        let arn = sub_arn(1);
        let list = listed(&[
            ("email", "a@example.com", &arn),
            ("email", "b@example.com", PENDING),
        ]);
        let unsubscribe = mock!(Client::unsubscribe)
            .match_requests(move |r| r.subscription_arn() == Some(arn.as_str()))
            .then_output(|| UnsubscribeOutput::builder().build());
        let cx = cx_with(
            Some(&["a@example.com", "b@example.com"]),
            &[&list, &ours(), &unsubscribe],
        );
        let Removed::Deleted { notes } = testing::destroy(&cx, STEP, step()).await.unwrap() else {
            panic!("deleted");
        };
        assert_eq!(notes[0], "unsubscribed a@example.com");
        assert!(
            notes[1].contains("b@example.com: pending confirmation"),
            "{notes:?}"
        );
        assert!(notes[1].contains("3 days"), "{notes:?}");

        // The topic is gone already: nothing left.
        let gone = mock!(Client::list_subscriptions_by_topic)
            .then_error(|| ListSubscriptionsByTopicError::generic(testing::error_meta("NotFound")));
        let cx = cx_with(Some(&["a@example.com"]), &[&gone]);
        assert_eq!(
            testing::destroy(&cx, STEP, step()).await.unwrap(),
            Removed::AlreadyAbsent
        );
    }
}
