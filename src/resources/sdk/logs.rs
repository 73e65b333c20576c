//! CloudWatch Logs: a log group's tags.

use crate::aws::{AwsError, OpResult};
use crate::tags::TagMap;

use crate::resources::context::Context;

pub async fn tags_of(cx: &Context, arn: &str) -> Result<TagMap, AwsError> {
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
