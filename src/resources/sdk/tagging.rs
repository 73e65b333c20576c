//! The Resource Groups Tagging API: a listed resource's tags.

use aws_sdk_resourcegroupstagging::types::ResourceTagMapping;

use crate::tags::{self, TagMap};

pub fn tags_of(mapping: &ResourceTagMapping) -> TagMap {
    tags::to_map(mapping.tags(), |t| (Some(t.key()), Some(t.value())))
}

/// Whether `arn` is an account-wide resource (no region in its ARN: an IAM
/// role) that serves another region's env: IAM is global, so the tagging API
/// may list the roles of the env of the same name in every region, and only
/// their `payops:region` tag tells them apart. Roles of older versions carry
/// none and are left to the steps, which prove their region.
pub fn global_elsewhere(arn: &str, tags: &TagMap, region: &str) -> bool {
    let regionless = arn.split(':').nth(3).is_some_and(str::is_empty);
    regionless && tags.get(tags::REGION).map(String::as_str) != Some(region)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_account_wide_resources_of_another_region_are_elsewhere() {
        let tagged = |region: Option<&str>| {
            let mut t = TagMap::from([(tags::ENV.into(), "twin".into())]);
            if let Some(r) = region {
                t.insert(tags::REGION.into(), r.into());
            }
            t
        };
        let role = "arn:aws:iam::123456789012:role/payops-twin-us-west-2-flow-logs";
        assert!(global_elsewhere(
            role,
            &tagged(Some("us-west-2")),
            "us-east-1"
        ));
        assert!(!global_elsewhere(
            role,
            &tagged(Some("us-east-1")),
            "us-east-1"
        ));
        assert!(global_elsewhere(role, &tagged(None), "us-east-1"));
        let topic = "arn:aws:sns:us-east-1:123456789012:payops-twin-x";
        assert!(!global_elsewhere(topic, &tagged(None), "us-east-1"));
    }
}
