//! A few S3 object operations with preconditions, for the shared state
//! backend: conditional writes (`If-None-Match: *`, `If-Match: <etag>`) are
//! what make a lock on S3 safe without another service.

use aws_sdk_s3::primitives::ByteStream;

use super::errors::{AwsError, OpResult, absent_on};

/// A write's precondition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Precondition {
    None,
    /// Only if no object has the key (creating a lock).
    Absent,
    /// Only if the object is still the one we read (renewing or taking over).
    Matches(String),
}

/// The answer to a conditional write that lost: another writer got there first.
pub const PRECONDITION_FAILED: &[&str] = &["PreconditionFailed", "ConditionalRequestConflict"];

#[derive(Clone, Debug)]
pub struct ObjectStore {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
}

pub struct Object {
    pub body: Vec<u8>,
    pub etag: String,
}

impl ObjectStore {
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>, prefix: &str) -> Self {
        let prefix = prefix.trim_matches('/');
        Self {
            client,
            bucket: bucket.into(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
        }
    }

    pub fn url(&self, name: &str) -> String {
        format!("s3://{}/{}{name}", self.bucket, self.prefix)
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    pub async fn get(&self, name: &str) -> Result<Option<Object>, AwsError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.key(name))
            .send()
            .await
            .op("s3:GetObject");
        let Some(out) = absent_on(out, &["NoSuchKey", "NotFound"])? else {
            return Ok(None);
        };
        let etag = out.e_tag().unwrap_or_default().to_owned();
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| AwsError::Api {
                op: "s3:GetObject",
                code: None,
                message: format!("reading the body: {e}"),
            })?
            .into_bytes()
            .to_vec();
        Ok(Some(Object { body, etag }))
    }

    /// Writes `body`; returns the new ETag. A lost precondition is an
    /// `AwsError` whose code is in [`PRECONDITION_FAILED`].
    pub async fn put(
        &self,
        name: &str,
        body: Vec<u8>,
        precondition: Precondition,
    ) -> Result<String, AwsError> {
        let mut put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.key(name))
            .content_type("application/json")
            .body(ByteStream::from(body));
        put = match precondition {
            Precondition::None => put,
            Precondition::Absent => put.if_none_match("*"),
            Precondition::Matches(etag) => put.if_match(etag),
        };
        let out = put.send().await.op("s3:PutObject")?;
        Ok(out.e_tag().unwrap_or_default().to_owned())
    }

    pub async fn delete(&self, name: &str) -> Result<(), AwsError> {
        absent_on(
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(self.key(name))
                .send()
                .await
                .op("s3:DeleteObject"),
            &["NoSuchKey"],
        )?;
        Ok(())
    }

    /// Names (relative to the prefix) of the objects ending in `suffix`.
    pub async fn list(&self, suffix: &str) -> Result<Vec<String>, AwsError> {
        let pages: Vec<_> = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&self.prefix)
            .into_paginator()
            .send()
            .collect()
            .await;
        let mut names = Vec::new();
        for page in pages {
            for object in page.op("s3:ListObjectsV2")?.contents() {
                if let Some(name) = object
                    .key()
                    .and_then(|k| k.strip_prefix(&self.prefix))
                    .filter(|n| n.ends_with(suffix) && !n.contains('/'))
                {
                    names.push(name.to_owned());
                }
            }
        }
        Ok(names)
    }
}
