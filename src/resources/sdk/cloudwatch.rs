//! CloudWatch (alarms and dashboards): tags in its shape, read by ARN.

use aws_sdk_cloudwatch::types::Tag;

use crate::aws::{AwsError, OpResult};
use crate::tags::{self, TagMap};

use crate::resources::context::Context;

pub fn tags(tags: &TagMap) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

pub async fn tags_of(cx: &Context, arn: &str) -> Result<TagMap, AwsError> {
    if let Some(tags) = cx.listed_tags(arn).await {
        return Ok(tags);
    }
    let out = cx
        .clients
        .cloudwatch
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .op("cloudwatch:ListTagsForResource")?;
    Ok(tags::to_map(out.tags(), |t| (t.key(), t.value())))
}
