//! SNS: tags in its shape, and a topic's tags.

use aws_sdk_sns::types::Tag;

use crate::aws::{AwsError, OpResult, built};
use crate::tags::{self, TagMap};

use crate::resources::context::Context;

pub fn tags(op: &'static str, tags: &TagMap) -> Result<Vec<Tag>, AwsError> {
    tags.iter()
        .map(|(k, v)| built(op, Tag::builder().key(k).value(v).build()))
        .collect()
}

pub async fn tags_of(cx: &Context, topic_arn: &str) -> Result<TagMap, AwsError> {
    if let Some(tags) = cx.listed_tags(topic_arn).await {
        return Ok(tags);
    }
    let out = cx
        .clients
        .sns
        .list_tags_for_resource()
        .resource_arn(topic_arn)
        .send()
        .await
        .op("sns:ListTagsForResource")?;
    Ok(tags::to_map(out.tags(), |t| {
        (Some(t.key()), Some(t.value()))
    }))
}
