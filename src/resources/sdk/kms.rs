//! KMS: tags in its shape, and a key's tags.

use aws_sdk_kms::types::Tag;

use crate::aws::{AwsError, OpResult};
use crate::tags::{self, TagMap};

use crate::resources::context::Context;

/// The key id a key ARN (`...:key/<id>`) ends with; a bare key id (or an
/// alias) is returned as it is.
pub fn key_id_of(key: &str) -> &str {
    key.rsplit_once("key/").map_or(key, |(_, id)| id)
}

pub fn tags(tags: &TagMap) -> Vec<Tag> {
    // Both fields are always set, so `build` cannot fail and nothing is dropped.
    tags.iter()
        .filter_map(|(k, v)| Tag::builder().tag_key(k).tag_value(v).build().ok())
        .collect()
}

pub async fn tags_of(cx: &Context, key_id: &str) -> Result<TagMap, AwsError> {
    let arn = if key_id.starts_with("arn:") {
        key_id.to_owned()
    } else {
        cx.arn("kms", &format!("key/{key_id}"))
    };
    if let Some(tags) = cx.listed_tags(&arn).await {
        return Ok(tags);
    }
    // A key holds at most 50 tags, and a page of ListResourceTags holds 50.
    let out = cx
        .clients
        .kms
        .list_resource_tags()
        .key_id(key_id)
        .send()
        .await
        .op("kms:ListResourceTags")?;
    Ok(tags::to_map(out.tags(), |t| {
        (Some(t.tag_key()), Some(t.tag_value()))
    }))
}
