//! S3: tags in its shape, and a bucket's tags.

use aws_sdk_s3::types::Tag;

use crate::aws::{AwsError, OpResult};
use crate::tags::{self, TagMap};

use crate::resources::context::Context;

pub fn tags(op: &'static str, tags: &TagMap) -> Result<Vec<Tag>, AwsError> {
    tags.iter()
        .map(|(k, v)| built(op, Tag::builder().key(k).value(v).build()))
        .collect()
}

/// The bucket's tags; a bucket without any answers NoSuchTagSet.
pub async fn bucket_tags(cx: &Context, name: &str) -> Result<Option<TagMap>, AwsError> {
    let arn = format!("arn:{}:s3:::{name}", cx.partition());
    if let Some(tags) = cx.listed_tags(&arn).await {
        return Ok(Some(tags));
    }
    let result = cx
        .clients
        .s3
        .get_bucket_tagging()
        .bucket(name)
        .expected_bucket_owner(&cx.account_id)
        .send()
        .await
        .op("s3:GetBucketTagging");
    match result {
        Ok(out) => Ok(Some(tags::to_map(out.tag_set(), |t| {
            (Some(t.key()), Some(t.value()))
        }))),
        Err(e) if e.is_code(&["NoSuchTagSet"]) => Ok(Some(TagMap::new())),
        // Deleted between HeadBucket and now.
        Err(e) if e.is_code(&["NoSuchBucket"]) => Ok(None),
        Err(e) => Err(e),
    }
}

pub use crate::aws::built;
