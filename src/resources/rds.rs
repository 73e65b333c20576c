//! Helpers shared by the RDS resources (subnet group, parameter group,
//! cluster, instances): tags in RDS's shape, and the engine payops runs.

use aws_sdk_rds::types::Tag;

use crate::aws::{AwsError, OpResult};
use crate::tags::{self, TagMap};

use super::context::Context;

/// The engine every payops database runs.
pub const ENGINE: &str = "aurora-postgresql";
/// The database created in the cluster, and the port it listens on.
pub const DATABASE_NAME: &str = "payments";
pub const PORT: i32 = 5432;

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
