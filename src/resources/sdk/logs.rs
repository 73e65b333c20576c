//! CloudWatch Logs: a log group's tags.

use crate::aws::{AwsError, OpResult};
use crate::tags::TagMap;

use crate::resources::context::Context;

pub async fn tags_of(cx: &Context, arn: &str) -> Result<TagMap, AwsError> {
    // The tagging API names a log group without DescribeLogGroups' `:*`.
    if let Some(tags) = cx.listed_tags(arn.trim_end_matches(":*")).await {
        return Ok(tags);
    }
    let out = cx
        .clients
        .logs
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .op("logs:ListTagsForResource")?;
    Ok(out
        .tags()
        .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default())
}
