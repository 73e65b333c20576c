//! CloudWatch Logs log groups under `/payops/<env>/`, encrypted with the env's
//! logs key and with a bounded retention (a log group left alone keeps its
//! data forever, and pays for it).
//!
//! Reusable: the flow-log, Lambda and API Gateway groups, each its own step
//! with its own name, retention and output prefix; and groups that an AWS
//! service names and would otherwise create for payops (RDS's exported logs),
//! made first so they are encrypted, bounded and removed with the env.

use std::collections::HashMap;
use std::fmt;

use async_trait::async_trait;

use crate::aws::{AwsError, OpResult, absent_on};
use crate::engine::{Record, StepCx};
use crate::naming::{NameKind, Names};
use crate::tags::TagMap;

use crate::resources::context::Context;
use crate::resources::resource::Resource;
use crate::resources::sdk::logs;
use crate::tags::describe_tag_fix;

/// Where the logs key's ARN comes from.
const KMS_STEP: &str = "kms-key:logs";
const KMS_OUTPUT: &str = "LogsKmsKeyArn";

/// The only retention periods CloudWatch Logs accepts (emulators take any
/// number; AWS answers InvalidParameterException).
pub const RETENTION_DAYS: [i32; 22] = [
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

type GroupDescription = aws_sdk_cloudwatchlogs::types::LogGroup;

pub struct LogGroup {
    name: GroupName,
    retention_days: i32,
    output_prefix: String,
    /// Whether the env's spec wants the group (see [`Self::wanted_when`]).
    wanted: fn(&Context) -> bool,
    /// A log stream the group must hold (see [`Self::with_stream`]).
    stream: Option<&'static str>,
}

enum GroupName {
    /// `/payops/<env>/<suffix>`.
    Env(String),
    /// A name an AWS service chooses and writes to for one of the env's
    /// resources (`/aws/rds/cluster/<cluster>/postgresql`).
    Service(fn(&Names) -> String),
}

impl LogGroup {
    /// `/payops/<env>/<name_suffix>`, keeping `retention_days` of logs, with
    /// outputs `<output_prefix>LogGroupName` and `<output_prefix>LogGroupArn`.
    pub fn new(
        name_suffix: impl Into<String>,
        retention_days: i32,
        output_prefix: impl Into<String>,
    ) -> Self {
        Self {
            name: GroupName::Env(name_suffix.into()),
            retention_days,
            output_prefix: output_prefix.into(),
            wanted: |_| true,
            stream: None,
        }
    }

    /// A group whose writer names a log stream it does not create itself
    /// (Firehose's CloudWatchLoggingOptions: given through the API, the
    /// group and the stream must exist; only the console makes them). The
    /// step keeps the stream there (a deleted one is drift, made again) and
    /// outputs its name as `<output_prefix>LogStreamName`.
    pub fn with_stream(mut self, stream: &'static str) -> Self {
        self.stream = Some(stream);
        self
    }

    /// A group only some env shapes want (e.g. an optional function's):
    /// `up` removes it when `wanted` says no.
    pub fn wanted_when(mut self, wanted: fn(&Context) -> bool) -> Self {
        self.wanted = wanted;
        self
    }

    /// A group an AWS service would create unencrypted and never expiring
    /// the first time it writes for the env. Such a group may already exist
    /// untagged (made by the service before payops made it first): payops
    /// adopts it and tags it, since its name holds one of the env's own
    /// resource names and only that service writes there; a group tagged
    /// for another env is still refused.
    pub fn for_service(
        name: fn(&Names) -> String,
        retention_days: i32,
        output_prefix: &str,
    ) -> Self {
        Self {
            name: GroupName::Service(name),
            wanted: |_| true,
            retention_days,
            output_prefix: output_prefix.into(),
            stream: None,
        }
    }

    /// The VPC flow-log group (step `log-group:flow-logs`): 30 days.
    pub fn flow_logs() -> Self {
        Self::new("vpc-flow-logs", 30, "FlowLogs")
    }

    fn name(&self, cx: &Context) -> Result<String, AwsError> {
        let name = match &self.name {
            GroupName::Env(suffix) => cx.names.log_group(suffix),
            GroupName::Service(name) => name(&cx.names),
        };
        NameKind::LogGroup
            .check(&name)
            .map_err(AwsError::Conflict)?;
        Ok(name)
    }

    fn retention(&self, name: &str) -> Result<i32, AwsError> {
        if RETENTION_DAYS.contains(&self.retention_days) {
            Ok(self.retention_days)
        } else {
            Err(AwsError::Conflict(format!(
                "log group {name}: CloudWatch Logs cannot keep logs {} days; allowed: {}",
                self.retention_days,
                RETENTION_DAYS.map(|d| d.to_string()).join(", ")
            )))
        }
    }
}

pub struct FoundLogGroup {
    name: String,
    /// Without the trailing `:*` DescribeLogGroups puts on `arn`.
    arn: String,
    retention: Option<i32>,
    kms_key: Option<String>,
    tags: TagMap,
    /// The stream of [`LogGroup::with_stream`] is not in the group.
    stream_missing: bool,
}

pub enum Fix {
    Retention { from: Option<i32>, to: i32 },
    KmsKey,
    Tags(TagMap),
    Stream(&'static str),
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Retention { from: None, to } => {
                write!(f, "set retention to {to} days (was: never expire)")
            }
            Self::Retention {
                from: Some(from),
                to,
            } => {
                write!(f, "set retention to {to} days (was {from})")
            }
            Self::KmsKey => f.write_str("encrypt with the env's logs KMS key"),
            Self::Tags(t) => f.write_str(&describe_tag_fix(t)),
            Self::Stream(s) => write!(f, "create the log stream {s}"),
        }
    }
}

/// The log-group ARN that tagging and IAM take: DescribeLogGroups' `arn` ends
/// in `:*`, which ListTagsForResource and TagResource refuse.
fn bare_arn(arn: &str) -> &str {
    arn.strip_suffix(":*").unwrap_or(arn)
}

impl LogGroup {
    async fn get(&self, cx: &Context, name: &str) -> Result<Option<FoundLogGroup>, AwsError> {
        let Some(group) = Self::describe_group(cx, name).await? else {
            return Ok(None);
        };
        self.found(cx, name, &group).await
    }

    /// The group named `name`: the env's own groups (`/payops/<env>/...`)
    /// from one listing their steps share, any other by its own prefix.
    async fn describe_group(
        cx: &Context,
        name: &str,
    ) -> Result<Option<GroupDescription>, AwsError> {
        let env_prefix = cx.names.log_group("");
        if cx.clients.counter.tracks_changes() && name.starts_with(&env_prefix) {
            let all = cx
                .shared_read("logs:DescribeLogGroups (env)", || async {
                    let pages: Vec<_> = cx
                        .clients
                        .logs
                        .describe_log_groups()
                        .log_group_name_prefix(&env_prefix)
                        .into_paginator()
                        .send()
                        .collect()
                        .await;
                    let mut all = Vec::new();
                    for page in pages {
                        all.extend(
                            page.op("logs:DescribeLogGroups")?
                                .log_groups()
                                .iter()
                                .cloned(),
                        );
                    }
                    Ok(all)
                })
                .await?;
            return Ok(all
                .iter()
                .find(|g| g.log_group_name() == Some(name))
                .cloned());
        }
        let mut pages = cx
            .clients
            .logs
            .describe_log_groups()
            .log_group_name_prefix(name)
            .into_paginator()
            .send();
        loop {
            let Some(page) = pages.next().await else {
                return Ok(None);
            };
            // A prefix match also returns `<name>-archive` and the like.
            if let Some(g) = page
                .op("logs:DescribeLogGroups")?
                .log_groups()
                .iter()
                .find(|g| g.log_group_name() == Some(name))
            {
                return Ok(Some(g.clone()));
            }
        }
    }

    async fn found(
        &self,
        cx: &Context,
        name: &str,
        group: &GroupDescription,
    ) -> Result<Option<FoundLogGroup>, AwsError> {
        let arn = group
            .log_group_arn()
            .or(group.arn().map(bare_arn))
            .map_or_else(
                || cx.arn("logs", &format!("log-group:{name}")),
                str::to_owned,
            );
        let tags = logs::tags_of(cx, &arn).await?;
        let made_by_the_service = matches!(self.name, GroupName::Service(_))
            && crate::tags::ownership(&tags, cx.env()) == crate::tags::Ownership::Foreign;
        if !made_by_the_service {
            cx.check_ours(format!("log group {name}"), &tags)?;
        }
        let stream_missing = match self.stream {
            Some(stream) => !Self::has_stream(cx, name, stream).await?,
            None => false,
        };
        Ok(Some(FoundLogGroup {
            name: name.to_owned(),
            arn,
            retention: group.retention_in_days(),
            kms_key: group.kms_key_id().map(str::to_owned),
            tags,
            stream_missing,
        }))
    }

    /// Whether the group holds a stream named exactly `stream` (the name
    /// is a prefix to DescribeLogStreams, which may answer longer names).
    async fn has_stream(cx: &Context, group: &str, stream: &str) -> Result<bool, AwsError> {
        let listed = cx
            .clients
            .logs
            .describe_log_streams()
            .log_group_name(group)
            .log_stream_name_prefix(stream)
            .send()
            .await
            .op("logs:DescribeLogStreams");
        let Some(listed) = absent_on(listed, &["ResourceNotFoundException"])? else {
            return Ok(false);
        };
        Ok(listed
            .log_streams()
            .iter()
            .any(|s| s.log_stream_name() == Some(stream)))
    }
}

#[async_trait]
impl Resource for LogGroup {
    type Found = FoundLogGroup;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "logs:log-group"
    }

    fn wanted(&self, cx: &Context) -> bool {
        (self.wanted)(cx)
    }

    async fn find(&self, cx: &Context, _step: &StepCx<'_>) -> Result<Vec<FoundLogGroup>, AwsError> {
        let name = self.name(cx)?;
        Ok(self.get(cx, &name).await?.into_iter().collect())
    }

    fn describe(&self, found: &FoundLogGroup) -> String {
        found.name.clone()
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<FoundLogGroup, AwsError> {
        let name = self.name(cx)?;
        // Checked before creating so a bad value never leaves a group behind.
        self.retention(&name)?;
        let kms_key = step.output(KMS_STEP, KMS_OUTPUT)?.to_owned();
        let tags = cx.tagger.for_create(step.id().as_str());
        let created = cx
            .clients
            .logs
            .create_log_group()
            .log_group_name(&name)
            .kms_key_id(&kms_key)
            .set_tags(Some(tags.clone().into_iter().collect::<HashMap<_, _>>()))
            .send()
            .await
            .op("logs:CreateLogGroup");
        match created {
            Ok(_) => {}
            // Made by a concurrent or killed run a moment ago: adopt it only if
            // it carries our tags.
            Err(e) if e.is_code(&["ResourceAlreadyExistsException"]) => {
                return match self.get(cx, &name).await? {
                    Some(found) => {
                        step.remember("log_group", &found.name);
                        Ok(found)
                    }
                    None => Err(e),
                };
            }
            Err(e) => return Err(e),
        }
        step.remember("log_group", &name);
        Ok(FoundLogGroup {
            arn: cx.arn("logs", &format!("log-group:{name}")),
            name,
            // CreateLogGroup cannot set it: `fix` does, right after.
            retention: None,
            kms_key: Some(kms_key),
            tags,
            // Made by `fix`, right after.
            stream_missing: self.stream.is_some(),
        })
    }

    async fn diff(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        group: &FoundLogGroup,
    ) -> Result<Vec<Fix>, AwsError> {
        let retention = self.retention(&group.name)?;
        let kms_key = step.output(KMS_STEP, KMS_OUTPUT)?;
        let mut fixes = Vec::new();
        if group.retention != Some(retention) {
            fixes.push(Fix::Retention {
                from: group.retention,
                to: retention,
            });
        }
        if group.kms_key.as_deref() != Some(kms_key) {
            fixes.push(Fix::KmsKey);
        }
        let missing = cx.tagger.missing(step.id().as_str(), &group.tags);
        if !missing.is_empty() {
            fixes.push(Fix::Tags(missing));
        }
        if let (Some(stream), true) = (self.stream, group.stream_missing) {
            fixes.push(Fix::Stream(stream));
        }
        Ok(fixes)
    }

    async fn fix(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        group: &mut FoundLogGroup,
        fix: Fix,
    ) -> Result<(), AwsError> {
        let logs = &cx.clients.logs;
        match fix {
            Fix::Retention { to, .. } => {
                logs.put_retention_policy()
                    .log_group_name(&group.name)
                    .retention_in_days(to)
                    .send()
                    .await
                    .op("logs:PutRetentionPolicy")?;
                group.retention = Some(to);
            }
            Fix::KmsKey => {
                // Only new events use the new key: events already stored stay
                // readable only while the key they were written with is enabled.
                let kms_key = step.output(KMS_STEP, KMS_OUTPUT)?;
                logs.associate_kms_key()
                    .log_group_name(&group.name)
                    .kms_key_id(kms_key)
                    .send()
                    .await
                    .op("logs:AssociateKmsKey")?;
                group.kms_key = Some(kms_key.to_owned());
            }
            Fix::Tags(tags) => {
                logs.tag_resource()
                    .resource_arn(&group.arn)
                    .set_tags(Some(tags.clone().into_iter().collect()))
                    .send()
                    .await
                    .op("logs:TagResource")?;
                group.tags.extend(tags);
            }
            Fix::Stream(stream) => {
                let created = logs
                    .create_log_stream()
                    .log_group_name(&group.name)
                    .log_stream_name(stream)
                    .send()
                    .await
                    .op("logs:CreateLogStream");
                match created {
                    Ok(_) => {}
                    // Made meanwhile by another run: the same stream.
                    Err(e) if e.is_code(&["ResourceAlreadyExistsException"]) => {}
                    Err(e) => return Err(e),
                }
                group.stream_missing = false;
            }
        }
        Ok(())
    }

    fn record(&self, _cx: &Context, group: &FoundLogGroup) -> Record {
        let p = &self.output_prefix;
        let record = Record::default()
            .resource("log_group", &group.name)
            .output(format!("{p}LogGroupName"), &group.name)
            .output(format!("{p}LogGroupArn"), &group.arn);
        match self.stream {
            Some(stream) => record.output(format!("{p}LogStreamName"), stream),
            None => record,
        }
    }

    async fn delete(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        group: FoundLogGroup,
    ) -> Result<Vec<String>, AwsError> {
        // DeleteLogGroup is synchronous: once it returns, the group is gone.
        let deleted = cx
            .clients
            .logs
            .delete_log_group()
            .log_group_name(&group.name)
            .send()
            .await
            .op("logs:DeleteLogGroup");
        absent_on(deleted, &["ResourceNotFoundException"])?;
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_cloudwatchlogs::Client;
    use aws_sdk_cloudwatchlogs::operation::{
        associate_kms_key::AssociateKmsKeyOutput,
        create_log_group::{CreateLogGroupError, CreateLogGroupOutput},
        delete_log_group::{DeleteLogGroupError, DeleteLogGroupOutput},
        describe_log_groups::DescribeLogGroupsOutput,
        list_tags_for_resource::ListTagsForResourceOutput,
        put_retention_policy::PutRetentionPolicyOutput,
        tag_resource::TagResourceOutput,
    };
    use aws_sdk_cloudwatchlogs::types::LogGroup as CwLogGroup;
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    use super::*;
    use crate::engine::{Change, Observation, Record, Removed};
    use crate::naming::EnvName;
    use crate::resources::testing::{self, NOW};
    use crate::tags::{self, Tagger};

    const STEP: &str = "log-group:flow-logs";
    const NAME: &str = "/payops/pr1/vpc-flow-logs";
    const ARN: &str = "arn:aws:logs:us-east-1:123456789012:log-group:/payops/pr1/vpc-flow-logs";
    const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/k-logs";

    fn kms_input() -> [(&'static str, Record); 1] {
        [(KMS_STEP, Record::default().output(KMS_OUTPUT, KEY))]
    }

    fn group(name: &str, retention: Option<i32>, key: Option<&str>) -> CwLogGroup {
        // DescribeLogGroups' `arn` ends in `:*`; `logGroupArn` is newer and
        // emulators may omit it.
        CwLogGroup::builder()
            .log_group_name(name)
            .arn(format!(
                "arn:aws:logs:us-east-1:123456789012:log-group:{name}:*"
            ))
            .set_retention_in_days(retention)
            .set_kms_key_id(key.map(str::to_owned))
            .build()
    }

    fn describe(groups: Vec<CwLogGroup>) -> Rule {
        mock!(Client::describe_log_groups)
            .match_requests(|r| r.log_group_name_prefix() == Some(NAME))
            .then_output(move || {
                DescribeLogGroupsOutput::builder()
                    .set_log_groups(Some(groups.clone()))
                    .build()
            })
    }

    fn our_tags() -> TagMap {
        Tagger::new(EnvName::parse("pr1").unwrap(), "payments", NOW).for_create(STEP)
    }

    fn list_tags(tags: TagMap) -> Rule {
        mock!(Client::list_tags_for_resource)
            // Tagging calls refuse the `:*` form of the ARN.
            .match_requests(|r| r.resource_arn() == Some(ARN))
            .then_output(move || {
                ListTagsForResourceOutput::builder()
                    .set_tags(Some(tags.clone().into_iter().collect()))
                    .build()
            })
    }

    fn context(rules: &[&Rule]) -> Context {
        let mut clients = testing::clients();
        clients.logs = mock_client!(aws_sdk_cloudwatchlogs, RuleMode::MatchAny, rules);
        testing::context(clients)
    }

    #[tokio::test]
    async fn creates_an_encrypted_tagged_group_then_bounds_its_retention() {
        let create = mock!(Client::create_log_group)
            .match_requests(|r| {
                r.log_group_name() == Some(NAME)
                    && r.kms_key_id() == Some(KEY)
                    && r.tags().and_then(|t| t.get(tags::STEP)).map(String::as_str) == Some(STEP)
            })
            .then_output(|| CreateLogGroupOutput::builder().build());
        let retention = mock!(Client::put_retention_policy)
            .match_requests(|r| {
                r.log_group_name() == Some(NAME) && r.retention_in_days() == Some(30)
            })
            .then_output(|| PutRetentionPolicyOutput::builder().build());
        // A sibling with a longer name matches the prefix: it is not ours to take.
        let sibling = format!("{NAME}-archive");
        let cx = context(&[
            &describe(vec![group(&sibling, None, None)]),
            &create,
            &retention,
        ]);
        let applied = testing::ensure(&cx, STEP, LogGroup::flow_logs(), &kms_input())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(applied.record.outputs["FlowLogsLogGroupName"], NAME);
        assert_eq!(applied.record.outputs["FlowLogsLogGroupArn"], ARN);
        assert_eq!((create.num_calls(), retention.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn a_group_with_a_stream_makes_it_and_a_deleted_stream_is_drift_made_again() {
        use aws_sdk_cloudwatchlogs::operation::create_log_stream::{
            CreateLogStreamError, CreateLogStreamOutput,
        };
        use aws_sdk_cloudwatchlogs::operation::describe_log_streams::DescribeLogStreamsOutput;
        use aws_sdk_cloudwatchlogs::types::LogStream;
        let with_stream = || LogGroup::flow_logs().with_stream("DestinationDelivery");
        let streams = |names: &'static [&'static str]| {
            mock!(Client::describe_log_streams)
                .match_requests(|r| {
                    r.log_group_name() == Some(NAME)
                        && r.log_stream_name_prefix() == Some("DestinationDelivery")
                })
                .then_output(move || {
                    DescribeLogStreamsOutput::builder()
                        .set_log_streams(Some(
                            names
                                .iter()
                                .map(|n| LogStream::builder().log_stream_name(*n).build())
                                .collect(),
                        ))
                        .build()
                })
        };
        let create_stream = mock!(Client::create_log_stream)
            .match_requests(|r| {
                r.log_group_name() == Some(NAME)
                    && r.log_stream_name() == Some("DestinationDelivery")
            })
            .then_output(|| CreateLogStreamOutput::builder().build());

        // In sync: the stream is there (a longer name matching the prefix
        // would not do), nothing is called that changes anything.
        let present = streams(&["DestinationDelivery-old", "DestinationDelivery"]);
        let cx = context(&[
            &describe(vec![group(NAME, Some(30), Some(KEY))]),
            &list_tags(our_tags()),
            &present,
        ]);
        let applied = testing::ensure(&cx, STEP, with_stream(), &kms_input())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Unchanged);
        assert_eq!(
            applied.record.outputs["FlowLogsLogStreamName"],
            "DestinationDelivery"
        );

        // Deleted out of band: drift, and `up` makes it again.
        let only_longer = streams(&["DestinationDelivery-old"]);
        let rules = [
            describe(vec![group(NAME, Some(30), Some(KEY))]),
            list_tags(our_tags()),
        ];
        let cx = context(&[&rules[0], &rules[1], &only_longer]);
        let observed = testing::observe(&cx, STEP, with_stream(), &kms_input())
            .await
            .unwrap();
        let Observation::Present { drift, .. } = observed else {
            panic!("expected present, got {observed:?}");
        };
        assert_eq!(drift, ["create the log stream DestinationDelivery"]);
        let cx = context(&[&rules[0], &rules[1], &only_longer, &create_stream]);
        let applied = testing::ensure(&cx, STEP, with_stream(), &kms_input())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Updated);
        assert_eq!(create_stream.num_calls(), 1);

        // Made meanwhile by another run: the same stream, not an error.
        let exists = mock!(Client::create_log_stream).then_error(|| {
            CreateLogStreamError::generic(testing::error_meta("ResourceAlreadyExistsException"))
        });
        let cx = context(&[&rules[0], &rules[1], &only_longer, &exists]);
        let applied = testing::ensure(&cx, STEP, with_stream(), &kms_input())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Updated);
    }

    #[tokio::test]
    async fn an_owned_group_in_sync_is_adopted_without_mutating_calls() {
        let cx = context(&[
            &describe(vec![group(NAME, Some(30), Some(KEY))]),
            &list_tags(our_tags()),
        ]);
        let applied = testing::ensure(&cx, STEP, LogGroup::flow_logs(), &kms_input())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Unchanged);
        assert!(applied.notes.is_empty(), "{:?}", applied.notes);
        assert_eq!(applied.record.outputs["FlowLogsLogGroupArn"], ARN);
    }

    #[tokio::test]
    async fn a_group_with_our_name_but_not_our_tags_is_refused() {
        let cx = context(&[
            &describe(vec![group(NAME, Some(30), Some(KEY))]),
            &list_tags(TagMap::new()),
        ]);
        let err = testing::ensure(&cx, STEP, LogGroup::flow_logs(), &kms_input())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("log group /payops/pr1/vpc-flow-logs exists but is not tagged"),
            "{err}"
        );
        assert!(
            testing::destroy(&cx, STEP, LogGroup::flow_logs())
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_group_rds_made_untagged_is_adopted_and_made_ours_and_another_envs_is_refused() {
        const RDS: &str = "/aws/rds/cluster/payops-pr1-aurora/postgresql";
        const RDS_ARN: &str = "arn:aws:logs:us-east-1:123456789012:log-group:/aws/rds/cluster/payops-pr1-aurora/postgresql";
        let step = "log-group:aurora";
        let rds_group = || LogGroup::for_service(Names::db_log_group, 365, "AuroraPostgresql");
        let found = mock!(Client::describe_log_groups)
            .match_requests(|r| r.log_group_name_prefix() == Some(RDS))
            .then_output(|| {
                DescribeLogGroupsOutput::builder()
                    // As RDS makes it: no key, no retention, no tags.
                    .log_groups(group(RDS, None, None))
                    .build()
            });
        let untagged = mock!(Client::list_tags_for_resource)
            .match_requests(|r| r.resource_arn() == Some(RDS_ARN))
            .then_output(|| ListTagsForResourceOutput::builder().build());
        let retention = mock!(Client::put_retention_policy)
            .match_requests(|r| {
                r.log_group_name() == Some(RDS) && r.retention_in_days() == Some(365)
            })
            .then_output(|| PutRetentionPolicyOutput::builder().build());
        let associate = mock!(Client::associate_kms_key)
            .match_requests(|r| r.log_group_name() == Some(RDS) && r.kms_key_id() == Some(KEY))
            .then_output(|| AssociateKmsKeyOutput::builder().build());
        let tag = mock!(Client::tag_resource)
            .match_requests(move |r| {
                r.resource_arn() == Some(RDS_ARN)
                    && r.tags().and_then(|t| t.get(tags::STEP)).map(String::as_str) == Some(step)
            })
            .then_output(|| TagResourceOutput::builder().build());
        let cx = context(&[&found, &untagged, &retention, &associate, &tag]);
        let applied = testing::ensure(&cx, step, rds_group(), &kms_input())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Updated, "{:?}", applied.notes);
        assert_eq!(
            (
                retention.num_calls(),
                associate.num_calls(),
                tag.num_calls()
            ),
            (1, 1, 1)
        );
        assert_eq!(applied.record.outputs["AuroraPostgresqlLogGroupName"], RDS);

        let other_env = mock!(Client::list_tags_for_resource).then_output(|| {
            ListTagsForResourceOutput::builder()
                .tags(tags::ENV, "pr2")
                .tags(tags::MANAGED_BY, tags::MANAGER)
                .build()
        });
        let cx = context(&[&found, &other_env]);
        let err = testing::ensure(&cx, step, rds_group(), &kms_input())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("pr2"), "{err}");
    }

    fn drifted() -> Vec<Rule> {
        let mut tags = our_tags();
        tags.remove("Project");
        vec![describe(vec![group(NAME, None, None)]), list_tags(tags)]
    }

    #[tokio::test]
    async fn observe_reports_unbounded_retention_missing_encryption_and_tags() {
        let rules = drifted();
        let refs: Vec<&Rule> = rules.iter().collect();
        let cx = context(&refs);
        let Observation::Present { drift, .. } =
            testing::observe(&cx, STEP, LogGroup::flow_logs(), &kms_input())
                .await
                .unwrap()
        else {
            panic!("expected the group to be present");
        };
        assert_eq!(
            drift,
            [
                "set retention to 30 days (was: never expire)",
                "encrypt with the env's logs KMS key",
                "add tags Project",
            ]
        );
    }

    #[tokio::test]
    async fn ensure_repairs_retention_encryption_and_tags() {
        let retention = mock!(Client::put_retention_policy)
            .match_requests(|r| r.retention_in_days() == Some(30))
            .then_output(|| PutRetentionPolicyOutput::builder().build());
        let associate = mock!(Client::associate_kms_key)
            .match_requests(|r| r.log_group_name() == Some(NAME) && r.kms_key_id() == Some(KEY))
            .then_output(|| AssociateKmsKeyOutput::builder().build());
        let tag = mock!(Client::tag_resource)
            .match_requests(|r| {
                r.resource_arn() == Some(ARN)
                    && r.tags()
                        .is_some_and(|t| t.len() == 1 && t["Project"] == "payops")
            })
            .then_output(|| TagResourceOutput::builder().build());
        let mut rules = drifted();
        rules.extend([retention.clone(), associate.clone(), tag.clone()]);
        let refs: Vec<&Rule> = rules.iter().collect();
        let cx = context(&refs);
        let applied = testing::ensure(&cx, STEP, LogGroup::flow_logs(), &kms_input())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Updated);
        for rule in [&retention, &associate, &tag] {
            assert_eq!(rule.num_calls(), 1);
        }
    }

    #[tokio::test]
    async fn destroy_deletes_the_group_and_tolerates_it_vanishing() {
        let delete = mock!(Client::delete_log_group)
            .match_requests(|r| r.log_group_name() == Some(NAME))
            .sequence()
            .output(|| DeleteLogGroupOutput::builder().build())
            .error(|| {
                DeleteLogGroupError::generic(testing::error_meta("ResourceNotFoundException"))
            })
            .build();
        let cx = context(&[
            &describe(vec![group(NAME, Some(30), Some(KEY))]),
            &list_tags(our_tags()),
            &delete,
        ]);
        let removed = testing::destroy(&cx, STEP, LogGroup::flow_logs())
            .await
            .unwrap();
        assert!(matches!(removed, Removed::Deleted { .. }));
        // Deleted by someone else between find and delete: still success.
        let removed = testing::destroy(&cx, STEP, LogGroup::flow_logs())
            .await
            .unwrap();
        assert!(matches!(removed, Removed::Deleted { .. }));
        assert_eq!(delete.num_calls(), 2);
    }

    #[tokio::test]
    async fn destroy_of_a_missing_group_is_success() {
        let cx = context(&[&describe(Vec::new())]);
        let removed = testing::destroy(&cx, STEP, LogGroup::flow_logs())
            .await
            .unwrap();
        assert_eq!(removed, Removed::AlreadyAbsent);
    }

    #[tokio::test]
    async fn a_group_created_meanwhile_is_adopted_only_if_ours() {
        let create = mock!(Client::create_log_group).then_error(|| {
            CreateLogGroupError::generic(testing::error_meta("ResourceAlreadyExistsException"))
        });
        let describe = mock!(Client::describe_log_groups)
            .sequence()
            .output(|| DescribeLogGroupsOutput::builder().build())
            .output(|| {
                DescribeLogGroupsOutput::builder()
                    .log_groups(group(NAME, None, None))
                    .build()
            })
            .build();
        let cx = context(&[&describe, &create, &list_tags(TagMap::new())]);
        let err = testing::ensure(&cx, STEP, LogGroup::flow_logs(), &kms_input())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("not tagged"), "{err}");
    }

    #[tokio::test]
    async fn a_retention_aws_does_not_offer_is_refused_before_creating() {
        let cx = context(&[&describe(Vec::new())]);
        let odd = LogGroup::new("vpc-flow-logs", 31, "FlowLogs");
        let err = testing::ensure(&cx, STEP, odd, &kms_input())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot keep logs 31 days"), "{err}");
    }

    #[tokio::test]
    async fn the_logs_key_is_a_declared_input() {
        let cx = context(&[&describe(Vec::new())]);
        let err = testing::ensure(&cx, STEP, LogGroup::flow_logs(), &[])
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("LogsKmsKeyArn from step kms-key:logs"),
            "{err}"
        );
    }
}
