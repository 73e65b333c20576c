//! EventBridge: tags in its shape, a resource's tags, and the error codes it
//! answers.

use aws_sdk_eventbridge::types::Tag;

use crate::aws::{AwsError, OpResult};
use crate::tags::{self, TagMap};

use crate::resources::context::Context;

/// No bus, rule or target of that name.
pub const NOT_FOUND: [&str; 1] = ["ResourceNotFoundException"];
/// CreateEventBus of a name that exists.
pub const ALREADY_EXISTS: [&str; 1] = ["ResourceAlreadyExistsException"];

pub fn tags(op: &'static str, tags: &TagMap) -> Result<Vec<Tag>, AwsError> {
    tags.iter()
        .map(|(k, v)| {
            Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| AwsError::Api {
                    op,
                    code: None,
                    message: format!("building the request: {e}"),
                })
        })
        .collect()
}

/// The tags of a bus or rule, by ARN.
pub async fn tags_of(cx: &Context, arn: &str) -> Result<TagMap, AwsError> {
    let out = cx
        .clients
        .events
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .op("events:ListTagsForResource")?;
    Ok(tags::to_map(out.tags(), |t| {
        (Some(t.key()), Some(t.value()))
    }))
}

pub async fn tag(cx: &Context, arn: &str, missing: &TagMap) -> Result<(), AwsError> {
    const OP: &str = "events:TagResource";
    cx.clients
        .events
        .tag_resource()
        .resource_arn(arn)
        .set_tags(Some(tags(OP, missing)?))
        .send()
        .await
        .op(OP)?;
    Ok(())
}
