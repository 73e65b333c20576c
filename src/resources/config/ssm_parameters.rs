//! Every configuration value of the env in SSM Parameter Store, under
//! `/payops/<env>/`: each output of the steps this one depends on becomes
//! `/payops/<env>/<OutputKey>` (the same key as in flat-outputs.json), so
//! functions and operators need only the path.
//!
//! Sensitive values are SecureStrings encrypted with the env's logs/SNS/SSM
//! key, generated here, never read back and never written to state, outputs
//! or logs.

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use aws_sdk_ssm::types::{
    Parameter, ParameterStringFilter, ParameterType, ResourceTypeForTagging, Tag,
};
use futures_util::stream::{self, StreamExt, TryStreamExt};

use crate::aws::{AwsError, OpResult, absent_on};
use crate::engine::{Record, StepCx};
use crate::tags::{self, TagMap};

use crate::resources::context::Context;
use crate::resources::resource::Resource;

/// Generated secrets: (name under the path, why it exists).
const SECRETS: [(&str, &str); 1] = [(
    "secure/PanHashKey",
    "HMAC key the payment functions use to hash card numbers in audit records",
)];

/// At most this many tag reads at once: SSM throttles around 40 TPS.
const READ_CONCURRENCY: usize = 8;

pub struct Parameters;

pub struct Param {
    kind: ParameterType,
    /// None for SecureStrings: payops never reads them back.
    value: Option<String>,
    tags: TagMap,
}

#[derive(Default)]
pub struct ParamSet {
    params: BTreeMap<String, Param>,
}

pub enum Fix {
    Put {
        name: String,
        value: String,
        overwrite: bool,
    },
    PutSecret {
        name: String,
    },
    Tags {
        name: String,
        tags: TagMap,
    },
    Delete {
        name: String,
    },
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Put {
                name,
                overwrite: false,
                ..
            } => write!(f, "create {name}"),
            Self::Put { name, .. } => write!(f, "update {name}"),
            Self::PutSecret { name } => write!(f, "generate SecureString {name}"),
            Self::Tags { name, tags } => write!(
                f,
                "{name}: add tags {}",
                tags.keys()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Self::Delete { name } => write!(f, "delete {name} (no longer produced)"),
        }
    }
}

impl Parameters {
    /// Plain values this env should publish, by full parameter name.
    fn desired(cx: &Context, step: &StepCx<'_>) -> BTreeMap<String, String> {
        let path = cx.names.parameter_path();
        step.inputs()
            .flat_map(|(_, record)| record.outputs.iter())
            // SSM refuses empty values; an empty output has nothing to say.
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (format!("{path}{k}"), v.clone()))
            .collect()
    }

    fn secret_names(cx: &Context) -> Vec<String> {
        SECRETS
            .iter()
            .map(|(name, _)| format!("{}{name}", cx.names.parameter_path()))
            .collect()
    }

    async fn tags_of(cx: &Context, name: &str) -> Result<TagMap, AwsError> {
        let out = cx
            .clients
            .ssm
            .list_tags_for_resource()
            .resource_type(ResourceTypeForTagging::Parameter)
            .resource_id(name)
            .send()
            .await
            .op("ssm:ListTagsForResource")?;
        Ok(tags::to_map(out.tag_list(), |t| {
            (Some(t.key()), Some(t.value()))
        }))
    }

    /// The parameters under the env's path that carry every tag `step` gives
    /// what it creates, with those tags: one DescribeParameters filter per
    /// tag (filters AND), so a converged env's tags cost a page per 50
    /// parameters instead of a ListTagsForResource each (SSM has no batch
    /// tag read). `payops:created-at` is only kept, never compared, so it is
    /// not filtered on; the tags returned carry a placeholder for it.
    async fn fully_tagged(cx: &Context, step: &str) -> Result<BTreeMap<String, TagMap>, AwsError> {
        let mut wanted = cx.tagger.for_create(step);
        wanted.remove(tags::CREATED_AT);
        let path = cx.names.parameter_path();
        let filter = |key: &str, option: &str, value: &str| {
            ParameterStringFilter::builder()
                .key(key)
                .option(option)
                .values(value)
                .build()
                .ok()
        };
        // A Path filter names a hierarchy, without its trailing slash.
        let filters: Vec<ParameterStringFilter> =
            std::iter::once(filter("Path", "Recursive", path.trim_end_matches('/')))
                .chain(
                    wanted
                        .iter()
                        .map(|(k, v)| filter(&format!("tag:{k}"), "Equals", v)),
                )
                .flatten()
                .collect();
        let pages: Vec<_> = cx
            .clients
            .ssm
            .describe_parameters()
            .set_parameter_filters(Some(filters))
            .max_results(50)
            .into_paginator()
            .send()
            .collect()
            .await;
        let mut tags = wanted;
        tags.insert(tags::CREATED_AT.to_owned(), "(kept, not read)".to_owned());
        let mut found = BTreeMap::new();
        for page in pages {
            for p in page.op("ssm:DescribeParameters")?.parameters() {
                if let Some(name) = p.name() {
                    found.insert(name.to_owned(), tags.clone());
                }
            }
        }
        Ok(found)
    }

    /// Every parameter under the env's path, ours or not (SecureString
    /// values are never read). Tags are read one parameter at a time only
    /// for those that lack some of `step`'s (someone else's, or drifted).
    async fn read(cx: &Context, step: &str) -> Result<ParamSet, AwsError> {
        let tagged = Self::fully_tagged(cx, step).await?;
        let pages: Vec<_> = cx
            .clients
            .ssm
            .get_parameters_by_path()
            .path(cx.names.parameter_path())
            .recursive(true)
            .with_decryption(false)
            .into_paginator()
            .send()
            .collect()
            .await;
        let mut found: Vec<Parameter> = Vec::new();
        for page in pages {
            found.extend(
                page.op("ssm:GetParametersByPath")?
                    .parameters()
                    .iter()
                    .cloned(),
            );
        }
        let tagged = &tagged;
        let params: Vec<(String, Param)> = stream::iter(found)
            .map(|p| async move {
                let name = p.name().unwrap_or_default().to_owned();
                let kind = p.r#type().cloned().unwrap_or(ParameterType::String);
                let tags = match tagged.get(&name) {
                    Some(tags) => tags.clone(),
                    None => Self::tags_of(cx, &name).await?,
                };
                let value = (kind != ParameterType::SecureString)
                    .then(|| p.value().unwrap_or_default().to_owned());
                Ok::<_, AwsError>((name, Param { kind, value, tags }))
            })
            .buffer_unordered(READ_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(ParamSet {
            params: params.into_iter().collect(),
        })
    }

    fn tag_list(cx: &Context, step: &StepCx<'_>) -> Vec<Tag> {
        cx.tagger
            .for_create(step.id().as_str())
            .into_iter()
            .filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok())
            .collect()
    }
}

fn random_key() -> Result<String, AwsError> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| AwsError::Conflict(format!("no randomness: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[async_trait]
impl Resource for Parameters {
    type Found = ParamSet;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "ssm:parameters"
    }

    /// PutParameter without overwrite meets the parameter its lost first attempt made (see the trait).
    fn already_exists(&self) -> &'static [&'static str] {
        &["ParameterAlreadyExists"]
    }

    async fn find(&self, cx: &Context, step: &StepCx<'_>) -> Result<Vec<ParamSet>, AwsError> {
        let set = Self::read(cx, step.id().as_str()).await?;
        // Someone else's parameters under our path do not make the step
        // present (nor a leftover after `down`).
        Ok(if set.params.values().any(|p| cx.is_ours(&p.tags)) {
            vec![set]
        } else {
            Vec::new()
        })
    }

    fn describe(&self, set: &ParamSet) -> String {
        format!("{} parameters", set.params.len())
    }

    /// Nothing to create up front: `diff` lists every parameter to write,
    /// and refuses to overwrite someone else's that has a name we need.
    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<ParamSet, AwsError> {
        Self::read(cx, step.id().as_str()).await
    }

    async fn diff(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        set: &ParamSet,
    ) -> Result<Vec<Fix>, AwsError> {
        let desired = Self::desired(cx, step);
        let secrets = Self::secret_names(cx);
        let mut fixes = Vec::new();
        let ours = |name: &str, p: &Param| -> Result<(), AwsError> {
            cx.check_ours(format!("SSM parameter {name}"), &p.tags)
        };
        for (name, value) in &desired {
            match set.params.get(name) {
                None => fixes.push(Fix::Put {
                    name: name.clone(),
                    value: value.clone(),
                    overwrite: false,
                }),
                Some(p) => {
                    ours(name, p)?;
                    if p.value.as_deref() != Some(value) || p.kind != ParameterType::String {
                        fixes.push(Fix::Put {
                            name: name.clone(),
                            value: value.clone(),
                            overwrite: true,
                        });
                    }
                }
            }
        }
        for name in &secrets {
            match set.params.get(name) {
                None => fixes.push(Fix::PutSecret { name: name.clone() }),
                Some(p) => ours(name, p)?,
            }
        }
        for (name, p) in &set.params {
            if !cx.is_ours(&p.tags) {
                continue;
            }
            if !desired.contains_key(name) && !secrets.contains(name) {
                fixes.push(Fix::Delete { name: name.clone() });
                continue;
            }
            let missing = cx.tagger.missing(step.id().as_str(), &p.tags);
            if !missing.is_empty() {
                fixes.push(Fix::Tags {
                    name: name.clone(),
                    tags: missing,
                });
            }
        }
        Ok(fixes)
    }

    async fn fix(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        set: &mut ParamSet,
        fix: Fix,
    ) -> Result<(), AwsError> {
        let ssm = &cx.clients.ssm;
        match fix {
            Fix::Put {
                name,
                value,
                overwrite,
            } => {
                let put = ssm
                    .put_parameter()
                    .name(&name)
                    .value(&value)
                    .r#type(ParameterType::String);
                // SSM accepts tags only when creating, not when overwriting.
                let put = if overwrite {
                    put.overwrite(true)
                } else {
                    put.set_tags(Some(Self::tag_list(cx, step)))
                };
                put.send().await.op("ssm:PutParameter")?;
                set.params.insert(
                    name,
                    Param {
                        kind: ParameterType::String,
                        value: Some(value),
                        tags: cx.tagger.for_create(step.id().as_str()),
                    },
                );
            }
            Fix::PutSecret { name } => {
                let key = step.output("kms-key:logs", "LogsKmsKeyArn")?;
                let description = SECRETS
                    .iter()
                    .find(|(n, _)| name.ends_with(n))
                    .map(|(_, why)| *why)
                    .unwrap_or_default();
                ssm.put_parameter()
                    .name(&name)
                    .description(description)
                    .value(random_key()?)
                    .r#type(ParameterType::SecureString)
                    .key_id(key)
                    .set_tags(Some(Self::tag_list(cx, step)))
                    .send()
                    .await
                    .op("ssm:PutParameter")?;
                set.params.insert(
                    name,
                    Param {
                        kind: ParameterType::SecureString,
                        value: None,
                        tags: cx.tagger.for_create(step.id().as_str()),
                    },
                );
            }
            Fix::Tags { name, tags } => {
                ssm.add_tags_to_resource()
                    .resource_type(ResourceTypeForTagging::Parameter)
                    .resource_id(&name)
                    .set_tags(Some(
                        tags.iter()
                            .filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok())
                            .collect(),
                    ))
                    .send()
                    .await
                    .op("ssm:AddTagsToResource")?;
            }
            Fix::Delete { name } => {
                absent_on(
                    ssm.delete_parameter()
                        .name(&name)
                        .send()
                        .await
                        .op("ssm:DeleteParameter"),
                    &["ParameterNotFound"],
                )?;
                set.params.remove(&name);
            }
        }
        Ok(())
    }

    fn record(&self, cx: &Context, _set: &ParamSet) -> Record {
        Record::default()
            .resource("path", cx.names.parameter_path())
            .output("ConfigParameterPath", cx.names.parameter_path())
    }

    async fn delete(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        set: ParamSet,
    ) -> Result<Vec<String>, AwsError> {
        let ours: Vec<String> = set
            .params
            .into_iter()
            .filter(|(_, p)| cx.is_ours(&p.tags))
            .map(|(name, _)| name)
            .collect();
        // DeleteParameters takes at most 10 names per call.
        for batch in ours.chunks(10) {
            cx.clients
                .ssm
                .delete_parameters()
                .set_names(Some(batch.to_vec()))
                .send()
                .await
                .op("ssm:DeleteParameters")?;
        }
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_ssm::Client;
    use aws_sdk_ssm::operation::{
        describe_parameters::DescribeParametersOutput,
        get_parameters_by_path::GetParametersByPathOutput,
        list_tags_for_resource::ListTagsForResourceOutput, put_parameter::PutParameterOutput,
    };
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    use super::*;
    use crate::engine::{Change, Observation};
    use crate::resources::testing;
    use aws_sdk_ssm::types::ParameterMetadata;

    fn inputs() -> Vec<(&'static str, Record)> {
        vec![
            ("vpc", Record::default().output("VpcId", "vpc-1")),
            (
                "kms-key:logs",
                Record::default()
                    .output("LogsKmsKeyArn", "arn:aws:kms:us-east-1:123456789012:key/k"),
            ),
        ]
    }

    fn our_tags() -> Vec<Tag> {
        testing::context(testing::clients())
            .tagger
            .for_create("ssm-parameters")
            .into_iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build().unwrap())
            .collect()
    }

    /// DescribeParameters finding no parameter with all our tags: every
    /// parameter's tags are then read one by one.
    fn none_fully_tagged() -> aws_smithy_mocks::Rule {
        mock!(Client::describe_parameters)
            .then_output(|| DescribeParametersOutput::builder().build())
    }

    fn param(name: &str, kind: ParameterType, value: &str) -> Parameter {
        Parameter::builder()
            .name(name)
            .r#type(kind)
            .value(value)
            .build()
    }

    #[tokio::test]
    async fn publishes_every_input_output_and_generates_the_secret_encrypted() {
        let empty = mock!(Client::get_parameters_by_path)
            .then_output(|| GetParametersByPathOutput::builder().build());
        let plain = mock!(Client::put_parameter)
            .match_requests(|r| r.r#type() == Some(&ParameterType::String))
            .then_output(|| PutParameterOutput::builder().version(1).build());
        let secret = mock!(Client::put_parameter)
            .match_requests(|r| {
                r.r#type() == Some(&ParameterType::SecureString)
                    && r.key_id() == Some("arn:aws:kms:us-east-1:123456789012:key/k")
                    && r.value().is_some_and(|v| v.len() == 64)
                    && !r.tags().is_empty()
            })
            .then_output(|| PutParameterOutput::builder().version(1).build());
        let mut clients = testing::clients();
        let described = none_fully_tagged();
        clients.ssm = mock_client!(
            aws_sdk_ssm,
            RuleMode::MatchAny,
            [&empty, &plain, &secret, &described]
        );
        let cx = testing::context(clients);
        let applied = testing::ensure(&cx, "ssm-parameters", Parameters, &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(plain.num_calls(), 2, "VpcId and LogsKmsKeyArn");
        assert_eq!(secret.num_calls(), 1);
        assert_eq!(
            applied.record.outputs["ConfigParameterPath"],
            "/payops/pr1/"
        );
        // The generated value is nowhere in what payops records.
        assert!(!format!("{applied:?}").contains("PanHashKey\":"));
    }

    #[tokio::test]
    async fn a_changed_value_is_drift_and_a_secret_is_never_rewritten() {
        let found = mock!(Client::get_parameters_by_path).then_output(|| {
            GetParametersByPathOutput::builder()
                .parameters(param("/payops/pr1/VpcId", ParameterType::String, "vpc-old"))
                .parameters(param(
                    "/payops/pr1/LogsKmsKeyArn",
                    ParameterType::String,
                    "arn:aws:kms:us-east-1:123456789012:key/k",
                ))
                .parameters(param(
                    "/payops/pr1/secure/PanHashKey",
                    ParameterType::SecureString,
                    "AQICAH-ciphertext",
                ))
                .build()
        });
        let tags = mock!(Client::list_tags_for_resource).then_output(|| {
            ListTagsForResourceOutput::builder()
                .set_tag_list(Some(our_tags()))
                .build()
        });
        let mut clients = testing::clients();
        let described = none_fully_tagged();
        clients.ssm = mock_client!(aws_sdk_ssm, RuleMode::MatchAny, [&found, &tags, &described]);
        let cx = testing::context(clients);
        let observed = testing::observe(&cx, "ssm-parameters", Parameters, &inputs())
            .await
            .unwrap();
        let Observation::Present { drift, .. } = observed else {
            panic!("{observed:?}")
        };
        assert_eq!(drift, ["update /payops/pr1/VpcId"]);
    }

    /// A converged env: DescribeParameters, filtered on the path and on each
    /// of our tags, vouches for the parameters that carry them all; only one
    /// that lacks some (here a removed cost tag) has its tags read, and the
    /// tag it lacks is drift.
    #[tokio::test]
    async fn tags_are_read_one_by_one_only_for_parameters_lacking_some() {
        let found = mock!(Client::get_parameters_by_path).then_output(|| {
            GetParametersByPathOutput::builder()
                .parameters(param("/payops/pr1/VpcId", ParameterType::String, "vpc-1"))
                .parameters(param(
                    "/payops/pr1/LogsKmsKeyArn",
                    ParameterType::String,
                    "arn:aws:kms:us-east-1:123456789012:key/k",
                ))
                .parameters(param(
                    "/payops/pr1/secure/PanHashKey",
                    ParameterType::SecureString,
                    "AQICAH-ciphertext",
                ))
                .build()
        });
        let described = mock!(Client::describe_parameters)
            .match_requests(|r| {
                let filters = r.parameter_filters();
                let has = |key: &str, option: &str, value: &str| {
                    filters.iter().any(|f| {
                        f.key() == key && f.option() == Some(option) && f.values() == [value]
                    })
                };
                has("Path", "Recursive", "/payops/pr1")
                    && has("tag:payops:env", "Equals", "pr1")
                    && has("tag:payops:managed-by", "Equals", "payops")
                    && has("tag:payops:step", "Equals", "ssm-parameters")
                    && has("tag:CostCenter", "Equals", "payments")
                    && !filters.iter().any(|f| f.key() == "tag:payops:created-at")
            })
            .then_output(|| {
                DescribeParametersOutput::builder()
                    .parameters(
                        ParameterMetadata::builder()
                            .name("/payops/pr1/LogsKmsKeyArn")
                            .build(),
                    )
                    .parameters(
                        ParameterMetadata::builder()
                            .name("/payops/pr1/secure/PanHashKey")
                            .build(),
                    )
                    .build()
            });
        let tags = mock!(Client::list_tags_for_resource)
            .match_requests(|r| r.resource_id() == Some("/payops/pr1/VpcId"))
            .then_output(|| {
                ListTagsForResourceOutput::builder()
                    .set_tag_list(Some(
                        our_tags()
                            .into_iter()
                            .filter(|t| t.key() != "CostCenter")
                            .collect(),
                    ))
                    .build()
            });
        let mut clients = testing::clients();
        clients.ssm = mock_client!(aws_sdk_ssm, RuleMode::MatchAny, [&found, &described, &tags]);
        let cx = testing::context(clients);
        let observed = testing::observe(&cx, "ssm-parameters", Parameters, &inputs())
            .await
            .unwrap();
        let Observation::Present { drift, .. } = observed else {
            panic!("{observed:?}")
        };
        assert_eq!(drift, ["/payops/pr1/VpcId: add tags CostCenter"]);
        assert_eq!(tags.num_calls(), 1, "only VpcId's tags are read");
    }

    /// Nothing under the path at the first looks (find, then create's
    /// read); then LogsKmsKeyArn (written first) and the VpcId parameter a
    /// lost first PutParameter made. Its retry, without overwrite, meets it:
    /// `ParameterAlreadyExists`.
    async fn ensure_after_retry(tags: Vec<Tag>) -> (Result<crate::engine::Applied, String>, usize) {
        let read = mock!(Client::get_parameters_by_path)
            .sequence()
            .output(|| GetParametersByPathOutput::builder().build())
            .times(2)
            .output(|| {
                GetParametersByPathOutput::builder()
                    .parameters(param(
                        "/payops/pr1/LogsKmsKeyArn",
                        ParameterType::String,
                        "arn:aws:kms:us-east-1:123456789012:key/k",
                    ))
                    .parameters(param("/payops/pr1/VpcId", ParameterType::String, "vpc-1"))
                    .build()
            })
            .repeatedly()
            .build();
        let tags = mock!(Client::list_tags_for_resource).then_output(move || {
            ListTagsForResourceOutput::builder()
                .set_tag_list(Some(tags.clone()))
                .build()
        });
        let conflict = mock!(Client::put_parameter)
            .match_requests(|r| r.name() == Some("/payops/pr1/VpcId"))
            .then_error(|| {
                aws_sdk_ssm::operation::put_parameter::PutParameterError::generic(
                    testing::error_meta("ParameterAlreadyExists"),
                )
            });
        let put = mock!(Client::put_parameter)
            .then_output(|| PutParameterOutput::builder().version(1).build());
        let mut clients = testing::clients();
        clients.ssm = mock_client!(
            aws_sdk_ssm,
            RuleMode::MatchAny,
            [&read, &tags, &conflict, &put, &none_fully_tagged()]
        );
        let cx = testing::context(clients);
        let applied = testing::ensure(&cx, "ssm-parameters", Parameters, &inputs())
            .await
            .map_err(|e| e.to_string());
        assert_eq!(conflict.num_calls(), 1, "VpcId is not written twice");
        (applied, put.num_calls())
    }

    #[tokio::test]
    async fn a_put_retried_after_a_lost_answer_adopts_what_it_made() {
        let (applied, puts) = ensure_after_retry(our_tags()).await;
        let applied = applied.unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(puts, 2, "LogsKmsKeyArn and the secret");
        assert_eq!(
            applied.record.outputs["ConfigParameterPath"],
            "/payops/pr1/"
        );
    }

    #[tokio::test]
    async fn a_put_conflict_with_a_parameter_not_ours_is_the_error_it_was() {
        let (applied, _) = ensure_after_retry(Vec::new()).await;
        let err = applied.unwrap_err();
        assert!(err.contains("ParameterAlreadyExists"), "{err}");
    }

    #[tokio::test]
    async fn a_foreign_parameter_with_our_name_is_refused() {
        let found = mock!(Client::get_parameters_by_path).then_output(|| {
            GetParametersByPathOutput::builder()
                .parameters(param(
                    "/payops/pr1/VpcId",
                    ParameterType::String,
                    "vpc-theirs",
                ))
                .build()
        });
        let no_tags = mock!(Client::list_tags_for_resource)
            .then_output(|| ListTagsForResourceOutput::builder().build());
        let mut clients = testing::clients();
        let described = none_fully_tagged();
        clients.ssm = mock_client!(
            aws_sdk_ssm,
            RuleMode::MatchAny,
            [&found, &no_tags, &described]
        );
        let cx = testing::context(clients);
        let err = testing::ensure(&cx, "ssm-parameters", Parameters, &inputs())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("not tagged as this env's"), "{err}");
    }

    #[tokio::test]
    async fn someone_elses_parameters_under_our_path_are_neither_present_nor_deleted() {
        let found = mock!(Client::get_parameters_by_path).then_output(|| {
            GetParametersByPathOutput::builder()
                .parameters(param("/payops/pr1/TheirNote", ParameterType::String, "hi"))
                .build()
        });
        let no_tags = mock!(Client::list_tags_for_resource)
            .then_output(|| ListTagsForResourceOutput::builder().build());
        let mut clients = testing::clients();
        // No DeleteParameters rule: deleting it would fail the test.
        let described = none_fully_tagged();
        clients.ssm = mock_client!(
            aws_sdk_ssm,
            RuleMode::MatchAny,
            [&found, &no_tags, &described]
        );
        let cx = testing::context(clients);
        assert_eq!(
            testing::observe(&cx, "ssm-parameters", Parameters, &inputs())
                .await
                .unwrap(),
            Observation::Missing
        );
        assert_eq!(
            testing::destroy(&cx, "ssm-parameters", Parameters)
                .await
                .unwrap(),
            crate::engine::Removed::AlreadyAbsent
        );
    }
}
