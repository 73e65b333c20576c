//! DynamoDB: a table's tags.

use crate::aws::{AwsError, OpResult};
use crate::tags::{self, TagMap};

use crate::resources::context::Context;

pub async fn tags_of(cx: &Context, arn: &str) -> Result<TagMap, AwsError> {
    if let Some(tags) = cx.listed_tags(arn).await {
        return Ok(tags);
    }
    let mut tags = TagMap::new();
    let mut token: Option<String> = None;
    loop {
        let out = cx
            .clients
            .dynamodb
            .list_tags_of_resource()
            .resource_arn(arn)
            .set_next_token(token.take())
            .send()
            .await
            .op("dynamodb:ListTagsOfResource")?;
        tags.extend(tags::to_map(out.tags(), |t| {
            (Some(t.key()), Some(t.value()))
        }));
        match out.next_token() {
            Some(next) => token = Some(next.to_owned()),
            None => return Ok(tags),
        }
    }
}
