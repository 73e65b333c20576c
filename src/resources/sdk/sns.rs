//! SNS: tags in its shape.

use aws_sdk_sns::types::Tag;

use crate::aws::AwsError;
use crate::tags::TagMap;

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
