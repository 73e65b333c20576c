//! The Resource Groups Tagging API: a listed resource's tags.

use aws_sdk_resourcegroupstagging::types::ResourceTagMapping;

use crate::tags::{self, TagMap};

pub fn tags_of(mapping: &ResourceTagMapping) -> TagMap {
    tags::to_map(mapping.tags(), |t| (Some(t.key()), Some(t.value())))
}

/// Whether `arn`, with no region in it, is of another region's env: the
/// tagging API may list the account-wide resources of the env of the same
/// name in every region (IAM roles are global; moto lists every region's S3
/// buckets too). An S3 bucket of payops' ends with its region (every bucket
/// name payops derives does, see `naming`); anything else tells its region
/// by its `payops:region` tag (roles of older versions carry none and are
/// left to their steps, which prove the region).
pub fn global_elsewhere(arn: &str, tags: &TagMap, region: &str) -> bool {
    let mut parts = arn.splitn(6, ':');
    let (service, arn_region) = (parts.nth(2), parts.next());
    if arn_region.is_none_or(|r| !r.is_empty()) {
        return false;
    }
    if service == Some("s3") {
        let bucket = arn.rsplit(':').next().unwrap_or_default();
        let bucket = bucket.split('/').next().unwrap_or_default();
        return !bucket.ends_with(&format!("-{region}"));
    }
    tags.get(tags::REGION).map(String::as_str) != Some(region)
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
        let bucket = "arn:aws:s3:::payops-twin-audit-123456789012-us-east-1";
        assert!(!global_elsewhere(bucket, &tagged(None), "us-east-1"));
        assert!(global_elsewhere(bucket, &tagged(None), "us-west-2"));
    }
}
