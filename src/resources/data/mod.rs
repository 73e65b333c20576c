//! Data stores: the audit bucket, the DynamoDB tables and the SNS topics.

pub mod dynamodb_table;
pub mod sns_topic;

use super::common::s3_bucket;
use super::registry::{Registry, dep};

pub fn register(r: &mut Registry) {
    // Data stores.
    r.add(
        "s3-bucket:audit",
        s3_bucket::Bucket::audit(),
        vec![dep(
            "kms-key:s3",
            "default encryption is SSE-KMS with the S3 key",
        )],
    );
    for (id, table) in [
        (
            "dynamodb-table:transactions",
            dynamodb_table::Table::transactions(),
        ),
        (
            "dynamodb-table:fraud-rules",
            dynamodb_table::Table::fraud_rules(),
        ),
    ] {
        r.add(
            id,
            table,
            vec![dep(
                "kms-key:dynamodb",
                "the table is encrypted with the DynamoDB key",
            )],
        );
    }
    for (id, topic) in [
        (
            "sns-topic:failed-transactions",
            sns_topic::Topic::failed_transactions(),
        ),
        ("sns-topic:system-errors", sns_topic::Topic::system_errors()),
    ] {
        r.add(
            id,
            topic,
            vec![dep(
                "kms-key:logs",
                "the topic is encrypted with the logs key, whose policy lets CloudWatch alarms publish",
            )],
        );
    }
}
