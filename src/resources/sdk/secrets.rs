//! Secrets Manager: tags in its shape.

use aws_sdk_secretsmanager::types::Tag;

use crate::tags::TagMap;

pub fn tags(tags: &TagMap) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}
