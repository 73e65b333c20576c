//! X-Ray: tags in its shape, a sampling rule's tags, the rules by name, and
//! the region's encryption setting.

use aws_sdk_xray::Client;
use aws_sdk_xray::types::{EncryptionConfig, SamplingRule, Tag};

use crate::aws::{AwsError, OpResult, built};
use crate::tags::{self, TagMap};

/// What X-Ray answers a request it will not do: a sampling rule name that
/// is taken (CreateSamplingRule), a rule that is not there (Update/Delete),
/// or the `Default` rule's fixed fields. X-Ray has no finer code for them
/// (API_CreateSamplingRule, API_UpdateSamplingRule errors).
pub const INVALID_REQUEST: [&str; 1] = ["InvalidRequestException"];

pub fn tags(op: &'static str, tags: &TagMap) -> Result<Vec<Tag>, AwsError> {
    tags.iter()
        .map(|(k, v)| built(op, Tag::builder().key(k).value(v).build()))
        .collect()
}

/// The tags of a sampling rule (or group), by ARN.
pub async fn tags_of(xray: &Client, arn: &str) -> Result<TagMap, AwsError> {
    const OP: &str = "xray:ListTagsForResource";
    let mut all = TagMap::new();
    let mut token: Option<String> = None;
    loop {
        let out = xray
            .list_tags_for_resource()
            .resource_arn(arn)
            .set_next_token(token.take())
            .send()
            .await
            .op(OP)?;
        all.extend(tags::to_map(out.tags(), |t| {
            (Some(t.key()), Some(t.value()))
        }));
        match out.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_owned()),
            _ => return Ok(all),
        }
    }
}

pub async fn tag(xray: &Client, arn: &str, missing: &TagMap) -> Result<(), AwsError> {
    const OP: &str = "xray:TagResource";
    xray.tag_resource()
        .resource_arn(arn)
        .set_tags(Some(tags(OP, missing)?))
        .send()
        .await
        .op(OP)?;
    Ok(())
}

/// The sampling rule named `name`, if there is one. GetSamplingRules lists
/// every rule of the account and region (there is no lookup by name); an
/// account holds 25 besides `Default` (X-Ray quotas, "Sampling rules"), so
/// this is a page or two.
pub async fn sampling_rule(xray: &Client, name: &str) -> Result<Option<SamplingRule>, AwsError> {
    let mut token: Option<String> = None;
    loop {
        let out = xray
            .get_sampling_rules()
            .set_next_token(token.take())
            .send()
            .await
            .op("xray:GetSamplingRules")?;
        if let Some(rule) = out
            .sampling_rule_records()
            .iter()
            .filter_map(|r| r.sampling_rule())
            .find(|r| r.rule_name() == Some(name))
        {
            return Ok(Some(rule.clone()));
        }
        match out.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_owned()),
            _ => return Ok(None),
        }
    }
}

/// The region's encryption setting as X-Ray reports it. An account that
/// never set one answers `Type: NONE`.
pub async fn encryption_config(xray: &Client) -> Result<EncryptionConfig, AwsError> {
    let out = xray
        .get_encryption_config()
        .send()
        .await
        .op("xray:GetEncryptionConfig")?;
    Ok(out
        .encryption_config()
        .cloned()
        .unwrap_or_else(|| EncryptionConfig::builder().build()))
}
