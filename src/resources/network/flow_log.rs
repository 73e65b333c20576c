//! VPC Flow Logs of all the env's VPC traffic to its CloudWatch Logs group
//! (PCI DSS asks for network audit trails), delivered through a role that may
//! only write to that one group.
//!
//! A flow log cannot be modified: a changed destination, role or traffic type
//! means deleting it and creating another.

use std::fmt;

use async_trait::async_trait;
use aws_sdk_ec2::types::{
    FlowLog as Ec2FlowLog, FlowLogsResourceType, LogDestinationType, ResourceType, TrafficType,
};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::aws::{AwsError, OpResult, absent_on, required};
use crate::engine::{Record, StepCx};
use crate::tags::{self, TagMap};

use crate::resources::common::iam_role::Role;
use crate::resources::context::Context;
use crate::resources::resource::Resource;
use crate::resources::sdk::ec2;
use crate::resources::sdk::iam::{retry_while_propagating, role_not_yet_usable};

const VPC_STEP: &str = "vpc";
const LOG_GROUP_STEP: &str = "log-group:flow-logs";
const ROLE_STEP: &str = "iam-role:flow-logs";

/// The role VPC Flow Logs assumes to write into the flow-log group (step
/// `iam-role:flow-logs`, outputs `FlowLogsRoleArn` and `FlowLogsRoleName`).
pub fn flow_logs_role() -> Role {
    Role::new(
        "flow-logs",
        "vpc-flow-logs.amazonaws.com",
        "Lets VPC Flow Logs write this payops env's VPC traffic records to its log group",
        "FlowLogs",
    )
    .with_policies(|_, step| {
        let group = step.output(LOG_GROUP_STEP, "FlowLogsLogGroupArn")?;
        Ok(vec![(
            "deliver-flow-logs".to_owned(),
            json!({
                "Version": "2012-10-17",
                "Statement": [{
                    "Sid": "WriteToTheFlowLogGroupOnly",
                    "Effect": "Allow",
                    "Action": [
                        "logs:CreateLogStream",
                        "logs:PutLogEvents",
                        "logs:DescribeLogStreams"
                    ],
                    // The group, and under it (`:*`) its streams and the
                    // `:*` form of its own ARN that some Logs actions are
                    // authorised against; group names cannot contain `:`, so
                    // no other group matches.
                    "Resource": [group, format!("{group}:*")]
                }]
            }),
        )])
    })
}

pub struct FlowLog;

/// What the flow log should look like, from the steps it depends on.
struct Desired {
    vpc: String,
    log_group: String,
    role: String,
}

impl Desired {
    fn of(step: &StepCx<'_>) -> Result<Self, AwsError> {
        Ok(Self {
            vpc: step.output(VPC_STEP, "VpcId")?.to_owned(),
            log_group: step
                .output(LOG_GROUP_STEP, "FlowLogsLogGroupName")?
                .to_owned(),
            role: step.output(ROLE_STEP, "FlowLogsRoleArn")?.to_owned(),
        })
    }
}

/// EC2 returns the first answer again for a repeated token, so a create
/// retried by the SDK after a lost response cannot make a second flow log.
/// The token changes when the request does: with the desired shape, with the
/// flow log being replaced (a reused token would answer with the deleted
/// one's id) and with each propagation retry (so a cached refusal is not
/// replayed). At most 64 ASCII characters.
fn client_token(cx: &Context, want: &Desired, replaces: Option<&str>, attempt: u32) -> String {
    let mut hash = Sha256::new();
    let attempt = attempt.to_string();
    for part in [
        cx.env().as_str(),
        &want.vpc,
        &want.log_group,
        &want.role,
        replaces.unwrap_or_default(),
        &attempt,
    ] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    let digest = hash.finalize();
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("payops-{hex}")
}

pub struct FoundFlowLog {
    id: String,
    log_group: Option<String>,
    role: Option<String>,
    traffic: Option<TrafficType>,
    destination: Option<LogDestinationType>,
    tags: TagMap,
}

fn found(fl: &Ec2FlowLog) -> Option<FoundFlowLog> {
    Some(FoundFlowLog {
        id: fl.flow_log_id()?.to_owned(),
        log_group: fl.log_group_name().map(str::to_owned),
        role: fl.deliver_logs_permission_arn().map(str::to_owned),
        traffic: fl.traffic_type().cloned(),
        destination: fl.log_destination_type().cloned(),
        tags: ec2::tag_map(fl.tags()),
    })
}

pub enum Fix {
    /// Why it must be replaced.
    Replace(String),
    Tags(TagMap),
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Replace(why) => write!(
                f,
                "replace the flow log ({why}): flow logs cannot be modified"
            ),
            Self::Tags(t) => f.write_str(&crate::tags::describe_tag_fix(t)),
        }
    }
}

fn name(cx: &Context) -> String {
    cx.names.resource("flow-logs")
}

async fn create_once(
    cx: &Context,
    step: &str,
    want: &Desired,
    token: String,
) -> Result<String, AwsError> {
    let out = cx
        .clients
        .ec2
        .create_flow_logs()
        .resource_type(FlowLogsResourceType::Vpc)
        .resource_ids(&want.vpc)
        .traffic_type(TrafficType::All)
        .log_destination_type(LogDestinationType::CloudWatchLogs)
        .log_group_name(&want.log_group)
        .deliver_logs_permission_arn(&want.role)
        .tag_specifications(ec2::tag_spec(cx, ResourceType::VpcFlowLog, step, &name(cx)))
        .client_token(token)
        .send()
        .await
        .op("ec2:CreateFlowLogs")?;
    // A refused resource comes back as an item of a successful response.
    if let Some(item) = out.unsuccessful().first() {
        let error = item.error();
        return Err(AwsError::Api {
            op: "ec2:CreateFlowLogs",
            code: error.and_then(|e| e.code()).map(str::to_owned),
            message: error
                .and_then(|e| e.message())
                .unwrap_or("refused without a message")
                .to_owned(),
        });
    }
    required(
        out.flow_log_ids().first(),
        "ec2:CreateFlowLogs",
        "FlowLogIds",
    )
    .cloned()
}

async fn delete_flow_log(cx: &Context, id: &str) -> Result<(), AwsError> {
    const GONE: &str = "InvalidFlowLogId.NotFound";
    let deleted = cx
        .clients
        .ec2
        .delete_flow_logs()
        .flow_log_ids(id)
        .send()
        .await
        .op("ec2:DeleteFlowLogs");
    let Some(out) = absent_on(deleted, &[GONE])? else {
        return Ok(());
    };
    for item in out.unsuccessful() {
        let error = item.error();
        let code = error.and_then(|e| e.code());
        if code != Some(GONE) {
            return Err(AwsError::Api {
                op: "ec2:DeleteFlowLogs",
                code: code.map(str::to_owned),
                message: error
                    .and_then(|e| e.message())
                    .unwrap_or("refused without a message")
                    .to_owned(),
            });
        }
    }
    Ok(())
}

impl FlowLog {
    async fn create_as(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        want: &Desired,
        replaces: Option<&str>,
    ) -> Result<FoundFlowLog, AwsError> {
        let step_id = step.id().as_str();
        let progress = |m: String| step.progress(m);
        // The role is usually minutes old on a first `up`: VPC Flow Logs
        // answers "Unable to assume given IAM role" until IAM has propagated.
        let id = retry_while_propagating(
            cx,
            &format!("creating the flow log of {}", want.vpc),
            &progress,
            role_not_yet_usable,
            |attempt| create_once(cx, step_id, want, client_token(cx, want, replaces, attempt)),
        )
        .await?;
        step.remember("flow_log", &id);
        Ok(FoundFlowLog {
            id,
            log_group: Some(want.log_group.clone()),
            role: Some(want.role.clone()),
            traffic: Some(TrafficType::All),
            destination: Some(LogDestinationType::CloudWatchLogs),
            tags: ec2::desired_tags(cx, step_id, &name(cx)),
        })
    }
}

#[async_trait]
impl Resource for FlowLog {
    type Found = FoundFlowLog;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "ec2:flow-log"
    }

    /// CreateFlowLogs takes a client token; an emulator that ignores it
    /// answers the retry of a lost first attempt with FlowLogAlreadyExists.
    fn already_exists(&self) -> &'static [&'static str] {
        &["FlowLogAlreadyExists"]
    }

    async fn find(&self, cx: &Context, step: &StepCx<'_>) -> Result<Vec<FoundFlowLog>, AwsError> {
        let step_id = step.id().as_str();
        let mut filters = ec2::owned_by(cx, step_id);
        // `down` walks without inputs: the ownership tags alone find it then.
        if let Ok(vpc) = step.output(VPC_STEP, "VpcId") {
            filters.push(ec2::filter("resource-id", [vpc]));
        }
        let pages: Vec<_> = cx
            .clients
            .ec2
            .describe_flow_logs()
            .set_filter(Some(filters))
            .into_paginator()
            .send()
            .collect()
            .await;
        let mut flow_logs = Vec::new();
        for page in pages {
            let page = page.op("ec2:DescribeFlowLogs")?;
            flow_logs.extend(page.flow_logs().iter().filter_map(found));
        }
        // Checked again here because not every emulator applies tag filters:
        // someone else's flow log on our VPC is theirs, never adopted.
        flow_logs.retain(|f| {
            cx.is_ours(&f.tags) && f.tags.get(tags::STEP).map(String::as_str) == Some(step_id)
        });
        Ok(flow_logs)
    }

    fn describe(&self, found: &FoundFlowLog) -> String {
        found.id.clone()
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<FoundFlowLog, AwsError> {
        let want = Desired::of(step)?;
        self.create_as(cx, step, &want, None).await
    }

    async fn diff(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        fl: &FoundFlowLog,
    ) -> Result<Vec<Fix>, AwsError> {
        let want = Desired::of(step)?;
        let mut why = Vec::new();
        if fl.log_group.as_deref() != Some(want.log_group.as_str()) {
            why.push(format!(
                "it delivers to {}, not {}",
                fl.log_group.as_deref().unwrap_or("another destination"),
                want.log_group
            ));
        }
        // AWS always reports these two; an emulator that omits one is not
        // taken as drift.
        if let Some(d) = &fl.destination
            && *d != LogDestinationType::CloudWatchLogs
        {
            why.push(format!("it delivers to {d} instead of CloudWatch Logs"));
        }
        if let Some(t) = &fl.traffic
            && *t != TrafficType::All
        {
            why.push(format!("it records {t} traffic, not ALL"));
        }
        if fl.role.as_deref() != Some(want.role.as_str()) {
            why.push(format!(
                "it delivers as {}, not {}",
                fl.role.as_deref().unwrap_or("no role"),
                want.role
            ));
        }
        if !why.is_empty() {
            // The new flow log is tagged at creation: no separate tag fix.
            return Ok(vec![Fix::Replace(why.join("; "))]);
        }
        let missing = ec2::missing_tags(cx, step.id().as_str(), &name(cx), &fl.tags);
        Ok(if missing.is_empty() {
            Vec::new()
        } else {
            vec![Fix::Tags(missing)]
        })
    }

    async fn fix(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        fl: &mut FoundFlowLog,
        fix: Fix,
    ) -> Result<(), AwsError> {
        match fix {
            Fix::Replace(_) => {
                // Delete first: a crash in between leaves no flow log, which
                // the next run creates, rather than two that it must refuse
                // as ambiguous.
                let want = Desired::of(step)?;
                delete_flow_log(cx, &fl.id).await?;
                *fl = self.create_as(cx, step, &want, Some(&fl.id)).await?;
            }
            Fix::Tags(tags) => {
                ec2::add_tags(cx, &fl.id, &tags).await?;
                fl.tags.extend(tags);
            }
        }
        Ok(())
    }

    fn record(&self, _cx: &Context, fl: &FoundFlowLog) -> Record {
        Record::default()
            .resource("flow_log", &fl.id)
            .output("FlowLogId", &fl.id)
    }

    async fn delete(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        fl: FoundFlowLog,
    ) -> Result<Vec<String>, AwsError> {
        // DeleteFlowLogs takes effect at once.
        delete_flow_log(cx, &fl.id).await?;
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use aws_sdk_ec2::Client;
    use aws_sdk_ec2::operation::{
        create_flow_logs::{CreateFlowLogsError, CreateFlowLogsOutput},
        create_tags::CreateTagsOutput,
        delete_flow_logs::DeleteFlowLogsOutput,
        describe_flow_logs::DescribeFlowLogsOutput,
    };
    use aws_sdk_ec2::types::{Tag, UnsuccessfulItem, UnsuccessfulItemError};
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
    use serde_json::Value;

    use super::*;
    use crate::aws::policy;
    use crate::engine::{Change, Observation, Removed, Step, StepId};
    use crate::resources::resource::Node;
    use crate::resources::testing::{self, ACCOUNT, Events};

    const STEP: &str = "flow-log";
    const GROUP: &str = "/payops/pr1/vpc-flow-logs";
    const GROUP_ARN: &str =
        "arn:aws:logs:us-east-1:123456789012:log-group:/payops/pr1/vpc-flow-logs";
    const ROLE: &str = "arn:aws:iam::123456789012:role/payops-pr1-us-east-1-flow-logs";

    fn inputs() -> [(&'static str, Record); 3] {
        [
            (VPC_STEP, Record::default().output("VpcId", "vpc-1")),
            (
                LOG_GROUP_STEP,
                Record::default()
                    .output("FlowLogsLogGroupName", GROUP)
                    .output("FlowLogsLogGroupArn", GROUP_ARN),
            ),
            (ROLE_STEP, Record::default().output("FlowLogsRoleArn", ROLE)),
        ]
    }

    fn want() -> Desired {
        Desired {
            vpc: "vpc-1".into(),
            log_group: GROUP.into(),
            role: ROLE.into(),
        }
    }

    fn our_tags() -> Vec<Tag> {
        let mut tags = testing::ec2_tags(STEP);
        for t in &mut tags {
            if t.key() == Some("Name") {
                *t = Tag::builder()
                    .key("Name")
                    .value("payops-pr1-flow-logs")
                    .build();
            }
        }
        tags
    }

    fn flow_log(id: &str, role: &str, tags: Vec<Tag>) -> Ec2FlowLog {
        Ec2FlowLog::builder()
            .flow_log_id(id)
            .resource_id("vpc-1")
            .log_group_name(GROUP)
            .deliver_logs_permission_arn(role)
            .traffic_type(TrafficType::All)
            .log_destination_type(LogDestinationType::CloudWatchLogs)
            .set_tags(Some(tags))
            .build()
    }

    fn describe(flow_logs: Vec<Ec2FlowLog>) -> Rule {
        mock!(Client::describe_flow_logs)
            .match_requests(|r| {
                let has = |name: &str, value: &str| {
                    r.filter()
                        .iter()
                        .any(|f| f.name() == Some(name) && f.values() == [value])
                };
                has("tag:payops:step", STEP) && has("tag:payops:env", "pr1")
            })
            .then_output(move || {
                DescribeFlowLogsOutput::builder()
                    .set_flow_logs(Some(flow_logs.clone()))
                    .build()
            })
    }

    fn created(id: &'static str) -> Rule {
        mock!(Client::create_flow_logs)
            .then_output(move || CreateFlowLogsOutput::builder().flow_log_ids(id).build())
    }

    fn context(rules: &[&Rule]) -> Context {
        let mut clients = testing::clients();
        clients.ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, rules);
        testing::context(clients)
    }

    #[tokio::test]
    async fn creates_a_flow_log_of_all_vpc_traffic_into_the_log_group() {
        let cx = context(&[]);
        let token = client_token(&cx, &want(), None, 1);
        let describe = mock!(Client::describe_flow_logs)
            .match_requests(|r| {
                r.filter()
                    .iter()
                    .any(|f| f.name() == Some("resource-id") && f.values() == ["vpc-1"])
            })
            .then_output(|| DescribeFlowLogsOutput::builder().build());
        let create = mock!(Client::create_flow_logs)
            .match_requests(move |r| {
                let spec = &r.tag_specifications()[0];
                r.resource_ids() == ["vpc-1"]
                    && r.resource_type() == Some(&FlowLogsResourceType::Vpc)
                    && r.traffic_type() == Some(&TrafficType::All)
                    && r.log_destination_type() == Some(&LogDestinationType::CloudWatchLogs)
                    && r.log_group_name() == Some(GROUP)
                    && r.deliver_logs_permission_arn() == Some(ROLE)
                    && r.client_token() == Some(token.as_str())
                    && spec.resource_type() == Some(&ResourceType::VpcFlowLog)
                    && spec
                        .tags()
                        .iter()
                        .any(|t| t.key() == Some(tags::STEP) && t.value() == Some(STEP))
            })
            .then_output(|| CreateFlowLogsOutput::builder().flow_log_ids("fl-1").build());
        let cx = context(&[&describe, &create]);
        let events = Events::default();
        let id = StepId::from(STEP);
        let inputs = inputs()
            .into_iter()
            .map(|(k, r)| (StepId::from(k), r))
            .collect::<BTreeMap<_, _>>();
        let step = testing::step_cx(&id, inputs, &events);
        let applied = Node::new(STEP, FlowLog, vec![])
            .ensure(&cx, &step)
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(applied.record.outputs["FlowLogId"], "fl-1");
        assert_eq!(create.num_calls(), 1);
        assert_eq!(
            *events.remembered.lock().unwrap(),
            [("flow_log".to_owned(), "fl-1".to_owned())]
        );
    }

    #[test]
    fn the_client_token_is_deterministic_and_changes_with_the_request() {
        let cx = context(&[]);
        let token = client_token(&cx, &want(), None, 1);
        assert_eq!(token, client_token(&cx, &want(), None, 1));
        assert!(token.len() <= 64 && token.is_ascii(), "{token}");
        let other_vpc = Desired {
            vpc: "vpc-2".into(),
            ..want()
        };
        for other in [
            client_token(&cx, &other_vpc, None, 1),
            client_token(&cx, &want(), Some("fl-1"), 1),
            client_token(&cx, &want(), None, 2),
        ] {
            assert_ne!(token, other);
        }
    }

    #[tokio::test]
    async fn an_owned_flow_log_in_sync_is_adopted_without_mutating_calls() {
        let cx = context(&[&describe(vec![flow_log("fl-1", ROLE, our_tags())])]);
        let applied = testing::ensure(&cx, STEP, FlowLog, &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Unchanged);
        assert!(applied.notes.is_empty(), "{:?}", applied.notes);
        assert_eq!(applied.record.outputs["FlowLogId"], "fl-1");
    }

    #[tokio::test]
    async fn someone_elses_flow_log_on_the_vpc_is_neither_adopted_nor_deleted() {
        // As an emulator that ignores tag filters would answer.
        let foreign = flow_log("fl-theirs", ROLE, Vec::new());
        let create = created("fl-1");
        let cx = context(&[&describe(vec![foreign]), &create]);
        let applied = testing::ensure(&cx, STEP, FlowLog, &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(applied.record.outputs["FlowLogId"], "fl-1");
        // No DeleteFlowLogs rule: deleting theirs would fail the test.
        let removed = testing::destroy(&cx, STEP, FlowLog).await.unwrap();
        assert_eq!(removed, Removed::AlreadyAbsent);
    }

    fn unsuccessful(code: &str, message: &str) -> CreateFlowLogsOutput {
        CreateFlowLogsOutput::builder()
            .unsuccessful(
                UnsuccessfulItem::builder()
                    .resource_id("vpc-1")
                    .error(
                        UnsuccessfulItemError::builder()
                            .code(code)
                            .message(message)
                            .build(),
                    )
                    .build(),
            )
            .build()
    }

    #[tokio::test]
    async fn an_unsuccessful_item_is_an_error_with_its_message() {
        let create = mock!(Client::create_flow_logs).then_output(|| {
            unsuccessful(
                "InvalidParameter",
                "LogDestination: /payops/pr1/x does not exist",
            )
        });
        let cx = context(&[&describe(Vec::new()), &create]);
        let err = testing::ensure(&cx, STEP, FlowLog, &inputs())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("LogDestination: /payops/pr1/x does not exist"),
            "{err}"
        );
        assert_eq!(create.num_calls(), 1);
    }

    /// No flow log at the first look, then `then` (what the lost first
    /// attempt made); the retried CreateFlowLogs meets it, answered as AWS
    /// answers a flow log of the same VPC and destination: an unsuccessful
    /// item `FlowLogAlreadyExists` (AWS spares a retry with the first
    /// attempt's client token, emulators that ignore tokens do not).
    async fn ensure_after_retry(then: Ec2FlowLog) -> Result<crate::engine::Applied, String> {
        let describe = mock!(Client::describe_flow_logs)
            .sequence()
            .output(|| DescribeFlowLogsOutput::builder().build())
            .output(move || {
                DescribeFlowLogsOutput::builder()
                    .flow_logs(then.clone())
                    .build()
            })
            .repeatedly()
            .build();
        let create = mock!(Client::create_flow_logs).then_output(|| {
            unsuccessful(
                "FlowLogAlreadyExists",
                "Error. There is an existing Flow Log with the same configuration and log \
                 destination.",
            )
        });
        let cx = context(&[&describe, &create]);
        let applied = testing::ensure(&cx, STEP, FlowLog, &inputs())
            .await
            .map_err(|e| e.to_string());
        assert_eq!(create.num_calls(), 1);
        applied
    }

    #[tokio::test]
    async fn a_create_retried_after_a_lost_answer_adopts_what_it_made() {
        let applied = ensure_after_retry(flow_log("fl-1", ROLE, our_tags()))
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(applied.record.outputs["FlowLogId"], "fl-1");
    }

    #[tokio::test]
    async fn a_duplicate_flow_log_that_is_not_ours_is_the_error_it_was() {
        let err = ensure_after_retry(flow_log("fl-theirs", ROLE, Vec::new()))
            .await
            .unwrap_err();
        assert!(err.contains("FlowLogAlreadyExists"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn create_is_retried_while_the_new_role_propagates() {
        let tokens = Arc::new(Mutex::new(Vec::new()));
        let seen = tokens.clone();
        let create = mock!(Client::create_flow_logs)
            .match_requests(move |r| {
                seen.lock()
                    .unwrap()
                    .push(r.client_token().unwrap().to_owned());
                true
            })
            .sequence()
            .error(|| {
                CreateFlowLogsError::generic(
                    aws_smithy_types::error::ErrorMetadata::builder()
                        .code("InvalidParameter")
                        .message("Unable to assume given IAM role.")
                        .build(),
                )
            })
            .output(|| unsuccessful("400", "Unable to assume given IAM role."))
            .output(|| CreateFlowLogsOutput::builder().flow_log_ids("fl-1").build())
            .build();
        let cx = context(&[&describe(Vec::new()), &create]);
        let applied = testing::ensure(&cx, STEP, FlowLog, &inputs())
            .await
            .unwrap();
        assert_eq!(applied.record.outputs["FlowLogId"], "fl-1");
        assert_eq!(create.num_calls(), 3);
        let tokens = tokens.lock().unwrap();
        assert!(
            tokens[0] != tokens[1] && tokens[1] != tokens[2],
            "{tokens:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn create_gives_up_when_the_role_never_becomes_usable() {
        let create = mock!(Client::create_flow_logs)
            .then_output(|| unsuccessful("400", "Unable to assume given IAM role."));
        let mut cx = context(&[&describe(Vec::new()), &create]);
        cx.budgets.iam_propagation = crate::aws::Budget::new(Duration::from_secs(20));
        let err = testing::ensure(&cx, STEP, FlowLog, &inputs())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("IAM propagation"), "{err}");
        assert!(err.contains("Unable to assume given IAM role"), "{err}");
    }

    #[tokio::test]
    async fn observe_reports_a_changed_role_as_a_replacement() {
        let old_role = "arn:aws:iam::123456789012:role/old";
        let cx = context(&[&describe(vec![flow_log("fl-1", old_role, our_tags())])]);
        let Observation::Present { drift, .. } = testing::observe(&cx, STEP, FlowLog, &inputs())
            .await
            .unwrap()
        else {
            panic!("expected the flow log to be present");
        };
        assert_eq!(
            drift,
            [format!(
                "replace the flow log (it delivers as {old_role}, not {ROLE}): flow logs \
                 cannot be modified"
            )]
        );
    }

    #[tokio::test]
    async fn ensure_replaces_a_flow_log_whose_role_changed_delete_first() {
        let order = Arc::new(Mutex::new(Vec::new()));
        let (o1, o2) = (order.clone(), order.clone());
        let cx0 = context(&[]);
        let token = client_token(&cx0, &want(), Some("fl-old"), 1);
        let delete = mock!(Client::delete_flow_logs)
            .match_requests(move |r| {
                o1.lock().unwrap().push("DeleteFlowLogs");
                r.flow_log_ids() == ["fl-old"]
            })
            .then_output(|| DeleteFlowLogsOutput::builder().build());
        let create = mock!(Client::create_flow_logs)
            .match_requests(move |r| {
                o2.lock().unwrap().push("CreateFlowLogs");
                r.deliver_logs_permission_arn() == Some(ROLE)
                    && r.client_token() == Some(token.as_str())
            })
            .then_output(|| {
                CreateFlowLogsOutput::builder()
                    .flow_log_ids("fl-new")
                    .build()
            });
        let old = flow_log("fl-old", "arn:aws:iam::123456789012:role/old", our_tags());
        let cx = context(&[&describe(vec![old]), &delete, &create]);
        let applied = testing::ensure(&cx, STEP, FlowLog, &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Updated);
        assert_eq!(applied.record.outputs["FlowLogId"], "fl-new");
        assert_eq!(*order.lock().unwrap(), ["DeleteFlowLogs", "CreateFlowLogs"]);
    }

    #[tokio::test]
    async fn missing_tags_are_added_in_place() {
        let mut tags = our_tags();
        tags.retain(|t| t.key() != Some("CostCenter"));
        let tag = mock!(Client::create_tags)
            .match_requests(|r| {
                r.resources() == ["fl-1"]
                    && r.tags().len() == 1
                    && r.tags()[0].key() == Some("CostCenter")
            })
            .then_output(|| CreateTagsOutput::builder().build());
        let cx = context(&[&describe(vec![flow_log("fl-1", ROLE, tags)]), &tag]);
        let applied = testing::ensure(&cx, STEP, FlowLog, &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Updated);
        assert_eq!(tag.num_calls(), 1);
    }

    #[tokio::test]
    async fn destroy_deletes_and_a_flow_log_already_gone_is_success() {
        let delete = mock!(Client::delete_flow_logs)
            .match_requests(|r| r.flow_log_ids() == ["fl-1"])
            .sequence()
            .output(|| DeleteFlowLogsOutput::builder().build())
            .output(|| {
                DeleteFlowLogsOutput::builder()
                    .unsuccessful(
                        UnsuccessfulItem::builder()
                            .resource_id("fl-1")
                            .error(
                                UnsuccessfulItemError::builder()
                                    .code("InvalidFlowLogId.NotFound")
                                    .message("flow log fl-1 does not exist")
                                    .build(),
                            )
                            .build(),
                    )
                    .build()
            })
            .build();
        let cx = context(&[&describe(vec![flow_log("fl-1", ROLE, our_tags())]), &delete]);
        // `down` hands no inputs: the ownership tags find the flow log.
        for _ in 0..2 {
            let removed = testing::destroy(&cx, STEP, FlowLog).await.unwrap();
            assert!(matches!(removed, Removed::Deleted { .. }));
        }
        assert_eq!(delete.num_calls(), 2);
    }

    #[tokio::test]
    async fn destroy_of_a_missing_flow_log_is_success() {
        let cx = context(&[&describe(Vec::new())]);
        let removed = testing::destroy(&cx, STEP, FlowLog).await.unwrap();
        assert_eq!(removed, Removed::AlreadyAbsent);
    }

    #[tokio::test]
    async fn the_flow_logs_role_may_only_write_to_the_flow_log_group() {
        use aws_sdk_iam::Client as Iam;
        use aws_sdk_iam::operation::{
            create_role::CreateRoleOutput, get_role::GetRoleError,
            list_attached_role_policies::ListAttachedRolePoliciesOutput,
            list_role_policies::ListRolePoliciesOutput, put_role_policy::PutRolePolicyOutput,
        };
        let create = mock!(Iam::create_role)
            .match_requests(|r| {
                let trust: Value =
                    serde_json::from_str(r.assume_role_policy_document().unwrap()).unwrap();
                r.role_name() == Some("payops-pr1-us-east-1-flow-logs")
                    && trust["Statement"][0]["Principal"]["Service"]
                        == "vpc-flow-logs.amazonaws.com"
                    && trust["Statement"][0]["Condition"]["StringEquals"]["aws:SourceAccount"]
                        == ACCOUNT
            })
            .then_output(|| {
                CreateRoleOutput::builder()
                    .role(
                        aws_sdk_iam::types::Role::builder()
                            .path("/")
                            .role_name("payops-pr1-us-east-1-flow-logs")
                            .role_id("AROA1")
                            .arn(ROLE)
                            .create_date(aws_smithy_types::DateTime::from_secs(0))
                            .build()
                            .unwrap(),
                    )
                    .build()
            });
        let expected = json!({
            "Statement": [{
                "Sid": "WriteToTheFlowLogGroupOnly",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                "Resource": [GROUP_ARN, format!("{GROUP_ARN}:*")]
            }]
        })
        .to_string();
        let put = mock!(Iam::put_role_policy)
            .match_requests(move |r| {
                r.policy_name() == Some("deliver-flow-logs")
                    && policy::same(r.policy_document().unwrap(), &expected)
            })
            .then_output(|| PutRolePolicyOutput::builder().build());
        let rules = [
            mock!(Iam::get_role)
                .then_error(|| GetRoleError::generic(testing::error_meta("NoSuchEntity"))),
            create,
            put.clone(),
            mock!(Iam::list_role_policies).then_output(|| {
                ListRolePoliciesOutput::builder()
                    .set_policy_names(Some(Vec::new()))
                    .build()
                    .unwrap()
            }),
            mock!(Iam::list_attached_role_policies)
                .then_output(|| ListAttachedRolePoliciesOutput::builder().build()),
        ];
        let mut clients = testing::clients();
        clients.iam = mock_client!(aws_sdk_iam, RuleMode::MatchAny, &rules);
        let cx = testing::context(clients);
        let applied = testing::ensure(&cx, ROLE_STEP, flow_logs_role(), &inputs()[1..])
            .await
            .unwrap();
        assert_eq!(applied.record.outputs["FlowLogsRoleArn"], ROLE);
        assert_eq!(
            applied.record.outputs["FlowLogsRoleName"],
            "payops-pr1-us-east-1-flow-logs"
        );
        assert_eq!(put.num_calls(), 1);
    }
}
