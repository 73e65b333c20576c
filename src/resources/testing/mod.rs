//! Test support: a `Context` whose clients answer only what a test mocks.

use std::collections::BTreeMap;

use aws_smithy_mocks::{Rule, RuleMode, mock_client};

pub mod elb;

use crate::aws::Clients;
use crate::engine::{Record, StepCx, StepEvents, StepId};
use crate::naming::{EnvName, Names};
use crate::spec::EnvSpec;
use crate::tags::Tagger;

use crate::resources::context::Context;

pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";
pub const NOW: &str = "2026-11-23T00:00:00Z";

/// Clients with no rules: any call not mocked by a test fails it.
pub fn clients() -> Clients {
    let none: &[&Rule] = &[];
    Clients {
        sts: mock_client!(aws_sdk_sts, RuleMode::MatchAny, none),
        kms: mock_client!(aws_sdk_kms, RuleMode::MatchAny, none),
        ec2: mock_client!(aws_sdk_ec2, RuleMode::MatchAny, none),
        events: mock_client!(aws_sdk_eventbridge, RuleMode::MatchAny, none),
        firehose: mock_client!(aws_sdk_firehose, RuleMode::MatchAny, none),
        logs: mock_client!(aws_sdk_cloudwatchlogs, RuleMode::MatchAny, none),
        iam: mock_client!(aws_sdk_iam, RuleMode::MatchAny, none),
        s3: mock_client!(aws_sdk_s3, RuleMode::MatchAny, none),
        dynamodb: mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, none),
        sns: mock_client!(aws_sdk_sns, RuleMode::MatchAny, none),
        sqs: mock_client!(aws_sdk_sqs, RuleMode::MatchAny, none),
        ssm: mock_client!(aws_sdk_ssm, RuleMode::MatchAny, none),
        // Steps look their tags up in one listing of the env first
        // (`Context::listed_tags`); refused here, so every test sees the
        // tag reads it mocks.
        tagging: mock_client!(
            aws_sdk_resourcegroupstagging,
            RuleMode::MatchAny,
            [&no_tagging_listing()]
        ),
        lambda: mock_client!(aws_sdk_lambda, RuleMode::MatchAny, none),
        elb: mock_client!(aws_sdk_elasticloadbalancingv2, RuleMode::MatchAny, none),
        apigateway: mock_client!(aws_sdk_apigateway, RuleMode::MatchAny, none),
        acm: mock_client!(aws_sdk_acm, RuleMode::MatchAny, none),
        cloudwatch: mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, none),
        rds: mock_client!(aws_sdk_rds, RuleMode::MatchAny, none),
        secrets: mock_client!(aws_sdk_secretsmanager, RuleMode::MatchAny, none),
        wafv2: mock_client!(aws_sdk_wafv2, RuleMode::MatchAny, none),
        guardduty: mock_client!(aws_sdk_guardduty, RuleMode::MatchAny, none),
        config: mock_client!(aws_sdk_config, RuleMode::MatchAny, none),
        xray: mock_client!(aws_sdk_xray, RuleMode::MatchAny, none),
        autoscaling: mock_client!(aws_sdk_autoscaling, RuleMode::MatchAny, none),
        route53: mock_client!(aws_sdk_route53, RuleMode::MatchAny, none),
        counter: crate::aws::ApiCounter::new(),
    }
}

/// The tagging API refusing the env's listing (`Context::listed_tags`).
/// The baseline's account (the test account and region, created now) over
/// `clients`.
pub fn account(clients: &Clients) -> crate::resources::baseline::Account<'_> {
    crate::resources::baseline::Account {
        clients,
        id: ACCOUNT.into(),
        region: REGION.into(),
        now: NOW.into(),
    }
}

pub fn no_tagging_listing() -> Rule {
    aws_smithy_mocks::mock!(aws_sdk_resourcegroupstagging::Client::get_resources)
        // Only the env listing: a test's own GetResources rules answer the rest.
        .match_requests(|r| {
            r.tag_filters().len() == 1 && r.tag_filters()[0].key() == Some(crate::tags::ENV)
        })
        .then_error(|| {
            aws_sdk_resourcegroupstagging::operation::get_resources::GetResourcesError::generic(
                error_meta("AccessDeniedException"),
            )
        })
}

pub fn context(clients: Clients) -> Context {
    let env = EnvName::parse("pr1").unwrap();
    Context::new(
        Names::new(env.clone(), ACCOUNT, REGION),
        Tagger::new(env, "payments", NOW),
        EnvSpec::default(),
        clients,
        ACCOUNT,
        REGION,
    )
}

/// Ignores progress, keeps what steps remember.
#[derive(Default)]
pub struct Events {
    pub remembered: std::sync::Mutex<Vec<(String, String)>>,
}

impl StepEvents for Events {
    fn progress(&self, _: &StepId, _: &str) {}
    fn remember(&self, _: &StepId, key: &str, id: &str) {
        self.remembered
            .lock()
            .unwrap()
            .push((key.to_owned(), id.to_owned()));
    }
}

pub fn step_cx<'a>(
    id: &'a StepId,
    inputs: BTreeMap<StepId, Record>,
    events: &'a Events,
) -> StepCx<'a> {
    StepCx::standalone(id, inputs, None, events)
}

/// The payops tags of env pr1 and `step`, as EC2 returns them.
pub fn ec2_tags(step: &str) -> Vec<aws_sdk_ec2::types::Tag> {
    let mut tags = Tagger::new(EnvName::parse("pr1").unwrap(), "payments", NOW).for_create(step);
    tags.insert("Name".into(), format!("payops-pr1-{step}"));
    tags.into_iter()
        .map(|(k, v)| aws_sdk_ec2::types::Tag::builder().key(k).value(v).build())
        .collect()
}

/// Runs `ensure` of `resource` as step `id`, with `inputs` as its
/// dependencies' records.
pub async fn ensure<R: crate::resources::resource::Resource>(
    cx: &Context,
    id: &str,
    resource: R,
    inputs: &[(&str, Record)],
) -> Result<crate::engine::Applied, crate::engine::StepError> {
    use crate::engine::Step;
    let (id, inputs, events) = prepare(id, inputs);
    crate::resources::resource::Node::new(id.clone(), resource, vec![])
        .ensure(cx, &step_cx(&id, inputs, &events))
        .await
}

pub async fn observe<R: crate::resources::resource::Resource>(
    cx: &Context,
    id: &str,
    resource: R,
    inputs: &[(&str, Record)],
) -> Result<crate::engine::Observation, crate::engine::StepError> {
    use crate::engine::Step;
    let (id, inputs, events) = prepare(id, inputs);
    crate::resources::resource::Node::new(id.clone(), resource, vec![])
        .observe(cx, &step_cx(&id, inputs, &events))
        .await
}

pub async fn destroy<R: crate::resources::resource::Resource>(
    cx: &Context,
    id: &str,
    resource: R,
) -> Result<crate::engine::Removed, crate::engine::StepError> {
    use crate::engine::Step;
    let (id, inputs, events) = prepare(id, &[]);
    crate::resources::resource::Node::new(id.clone(), resource, vec![])
        .destroy(cx, &step_cx(&id, inputs, &events))
        .await
}

fn prepare(id: &str, inputs: &[(&str, Record)]) -> (StepId, BTreeMap<StepId, Record>, Events) {
    (
        StepId::from(id),
        inputs
            .iter()
            .map(|(k, r)| (StepId::from(*k), r.clone()))
            .collect(),
        Events::default(),
    )
}

/// An AWS error with `code`, for `Operation Error::generic(...)` in mocks.
pub fn error_meta(code: &str) -> aws_smithy_types::error::ErrorMetadata {
    aws_smithy_types::error::ErrorMetadata::builder()
        .code(code)
        .message(format!("{code} (mocked)"))
        .build()
}

/// The payops tags of env pr1 and `step`, as a map.
pub fn our_tags(step: &str) -> crate::tags::TagMap {
    Tagger::new(EnvName::parse("pr1").unwrap(), "payments", NOW).for_create(step)
}

/// Records of dependencies with one output each: `[(step, key, value)]`.
pub fn outputs(items: &[(&'static str, &str, &str)]) -> Vec<(&'static str, Record)> {
    let mut by_step: BTreeMap<&'static str, Record> = BTreeMap::new();
    for (step, key, value) in items {
        let record = by_step
            .remove(step)
            .unwrap_or_default()
            .output(*key, *value);
        by_step.insert(step, record);
    }
    by_step.into_iter().collect()
}
