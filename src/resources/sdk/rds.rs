//! RDS: tags in RDS's shape, read and added by ARN.

use aws_sdk_rds::types::Tag;

use crate::aws::{AwsError, OpResult};
use crate::tags::{self, TagMap};

use crate::resources::context::Context;

pub fn rds_tags(tags: &TagMap) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

pub fn tag_map(tags: &[Tag]) -> TagMap {
    tags::to_map(tags, |t| (t.key(), t.value()))
}

/// Tags of a resource RDS names by ARN (subnet and parameter groups do not
/// return theirs in Describe*).
pub async fn list_tags(cx: &Context, arn: &str) -> Result<TagMap, AwsError> {
    let out = cx
        .clients
        .rds
        .list_tags_for_resource()
        .resource_name(arn)
        .send()
        .await
        .op("rds:ListTagsForResource")?;
    Ok(tag_map(out.tag_list()))
}

pub async fn add_tags(cx: &Context, arn: &str, missing: &TagMap) -> Result<(), AwsError> {
    cx.clients
        .rds
        .add_tags_to_resource()
        .resource_name(arn)
        .set_tags(Some(rds_tags(missing)))
        .send()
        .await
        .op("rds:AddTagsToResource")?;
    Ok(())
}

/// An RDS status for progress while it is being deleted (a describe that
/// names no status: still `deleting`).
pub fn status_or_deleting(status: Option<&str>) -> String {
    status.unwrap_or("deleting").to_owned()
}
