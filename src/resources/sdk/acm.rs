//! ACM: tags in its shape.

use aws_sdk_acm::types::Tag;

use crate::tags::TagMap;

pub fn tags(tags: &TagMap) -> Vec<Tag> {
    // Key and value are always set, so `build` cannot fail.
    tags.iter()
        .filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok())
        .collect()
}
