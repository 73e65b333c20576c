//! The Resource Groups Tagging API: a listed resource's tags.

use aws_sdk_resourcegroupstagging::types::ResourceTagMapping;

use crate::tags::{self, TagMap};

pub fn tags_of(mapping: &ResourceTagMapping) -> TagMap {
    tags::to_map(mapping.tags(), |t| (Some(t.key()), Some(t.value())))
}
