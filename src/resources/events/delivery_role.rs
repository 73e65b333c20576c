//! The role Firehose assumes to deliver the transaction log: trusted by
//! `firehose.amazonaws.com` for this account only (`sts:ExternalId`), and
//! allowed only what delivery to the env's transaction-log bucket needs:
//! write and multipart upload under the stream's two prefixes, list and
//! locate that bucket, use the S3 key only through S3 and only for that
//! bucket, invoke only the transform function, and write its error log to
//! the one log stream the stream names (Firehose developer guide,
//! controlling-access, "Grant Firehose access to an Amazon S3
//! destination": `logs:PutLogEvents` on
//! `log-group:<group>:log-stream:<stream>`). No key permission for the
//! log: CloudWatch Logs encrypts the group with the logs key itself.

use serde_json::{Value, json};

use crate::aws::AwsError;
use crate::engine::StepCx;

use crate::resources::common::iam_role::Role;
use crate::resources::context::Context;

use super::delivery_stream::{
    BUCKET_INPUT, LOG_GROUP_ARN_OUTPUT, LOG_GROUP_INPUT, LOG_STREAM, OBJECT_KEY_INPUT,
    TRANSFORM_INPUT, WRITTEN_PREFIXES,
};

pub const STEP: &str = "iam-role:transaction-log-delivery";

pub fn role() -> Role {
    Role::new(
        "transaction-log-delivery",
        "firehose.amazonaws.com",
        "payops Firehose delivery of the transaction log",
        "TransactionLogDelivery",
    )
    .trusting_by_external_id()
    .wanted_when(|cx| cx.spec.events)
    .with_policies(policies)
}

/// One inline policy: each is one more read on every `up`.
pub fn policies(cx: &Context, step: &StepCx<'_>) -> Result<Vec<(String, Value)>, AwsError> {
    let bucket = step.output(BUCKET_INPUT.0, BUCKET_INPUT.1)?;
    let key = step.output(OBJECT_KEY_INPUT.0, OBJECT_KEY_INPUT.1)?;
    let function = step.output(TRANSFORM_INPUT.0, TRANSFORM_INPUT.1)?;
    let log_group = step.output(LOG_GROUP_INPUT.0, LOG_GROUP_ARN_OUTPUT)?;
    let objects: Vec<String> = WRITTEN_PREFIXES
        .iter()
        .map(|p| format!("{bucket}/{p}*"))
        .collect();
    Ok(vec![(
        "delivery".to_owned(),
        json!({
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "LocateTheBucket",
                    "Effect": "Allow",
                    "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
                    "Resource": bucket
                },
                {
                    // GetObject: Firehose reads back parts of a multipart
                    // upload it resumes (AWS lists it for S3 destinations).
                    "Sid": "WriteUnderTheStreamsPrefixes",
                    "Effect": "Allow",
                    "Action": ["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload"],
                    "Resource": objects
                },
                {
                    // The bucket key is on: S3 asks KMS with the bucket's
                    // ARN as encryption context (the object's without it).
                    "Sid": "ObjectKeyThroughS3",
                    "Effect": "Allow",
                    "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
                    "Resource": key,
                    "Condition": {
                        "StringEquals": { "kms:ViaService": format!("s3.{}.amazonaws.com", cx.region) },
                        "ArnLike": { "kms:EncryptionContext:aws:s3:arn": [bucket.to_owned(), format!("{bucket}/*")] }
                    }
                },
                {
                    // Firehose invokes the function by its unqualified ARN;
                    // `:*` covers a qualified one should AWS pass it.
                    "Sid": "InvokeOnlyTheTransform",
                    "Effect": "Allow",
                    "Action": ["lambda:InvokeFunction", "lambda:GetFunctionConfiguration"],
                    "Resource": [function.to_owned(), format!("{function}:*")]
                },
                {
                    // Delivery and transform errors, to the one stream the
                    // delivery stream names; the group and the stream are
                    // payops' (Firehose creates neither through the API).
                    "Sid": "LogErrorsToItsStreamOnly",
                    "Effect": "Allow",
                    "Action": "logs:PutLogEvents",
                    "Resource": format!("{log_group}:log-stream:{LOG_STREAM}")
                }
            ]
        }),
    )])
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::engine::StepId;
    use crate::resources::testing;

    const BUCKET: &str = "arn:aws:s3:::payops-pr1-txlog-123456789012-us-east-1";
    const FUNCTION: &str =
        "arn:aws:lambda:us-east-1:123456789012:function:payops-pr1-transaction-log-transform";
    const LOG_GROUP: &str =
        "arn:aws:logs:us-east-1:123456789012:log-group:/payops/pr1/firehose/transaction-log";

    fn document() -> Value {
        let cx = testing::context(testing::clients());
        let events = testing::Events::default();
        let id = StepId::from(STEP);
        let inputs = testing::outputs(&[
            (BUCKET_INPUT.0, BUCKET_INPUT.1, BUCKET),
            (OBJECT_KEY_INPUT.0, OBJECT_KEY_INPUT.1, "k-s3"),
            (TRANSFORM_INPUT.0, TRANSFORM_INPUT.1, FUNCTION),
            (LOG_GROUP_INPUT.0, LOG_GROUP_ARN_OUTPUT, LOG_GROUP),
        ])
        .into_iter()
        .map(|(k, r)| (StepId::from(k), r))
        .collect();
        let step = testing::step_cx(&id, inputs, &events);
        let mut docs = policies(&cx, &step).unwrap();
        assert_eq!(docs.len(), 1, "one inline policy: one read per up");
        docs.remove(0).1
    }

    fn by_sid(doc: &Value, sid: &str) -> Value {
        doc["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["Sid"] == sid)
            .unwrap_or_else(|| panic!("no {sid}"))
            .clone()
    }

    #[test]
    fn firehose_may_write_only_under_the_streams_prefixes_of_its_bucket() {
        let doc = document();
        let write = by_sid(&doc, "WriteUnderTheStreamsPrefixes");
        assert_eq!(
            write["Resource"],
            json!([
                format!("{BUCKET}/transactions/*"),
                format!("{BUCKET}/errors/*")
            ])
        );
        assert_eq!(by_sid(&doc, "LocateTheBucket")["Resource"], BUCKET);
        // Nothing anywhere else: every resource is the bucket, its
        // prefixes, the key, the function or the error log's stream.
        for s in doc["Statement"].as_array().unwrap() {
            let resources = match &s["Resource"] {
                Value::String(r) => vec![r.clone()],
                Value::Array(a) => a.iter().map(|r| r.as_str().unwrap().to_owned()).collect(),
                _ => panic!("{s}"),
            };
            assert!(
                resources.iter().all(|r| r.starts_with(BUCKET)
                    || r == "k-s3"
                    || r.starts_with(FUNCTION)
                    || r == &format!("{LOG_GROUP}:log-stream:DestinationDelivery")),
                "{s}"
            );
        }
    }

    #[test]
    fn the_key_only_through_s3_for_this_bucket_and_only_the_transform_is_invoked() {
        let doc = document();
        let key = by_sid(&doc, "ObjectKeyThroughS3");
        assert_eq!(
            key["Condition"]["StringEquals"]["kms:ViaService"],
            "s3.us-east-1.amazonaws.com"
        );
        assert_eq!(
            key["Condition"]["ArnLike"]["kms:EncryptionContext:aws:s3:arn"],
            json!([BUCKET, format!("{BUCKET}/*")])
        );
        let invoke = by_sid(&doc, "InvokeOnlyTheTransform");
        assert_eq!(
            invoke["Resource"],
            json!([FUNCTION, format!("{FUNCTION}:*")])
        );
        // The error log: one action, one stream, not the group's others.
        let log = by_sid(&doc, "LogErrorsToItsStreamOnly");
        assert_eq!(log["Action"], "logs:PutLogEvents");
        assert_eq!(
            log["Resource"],
            format!("{LOG_GROUP}:log-stream:DestinationDelivery")
        );
    }

    #[test]
    fn only_firehose_acting_for_this_account_may_assume_it() {
        let cx = testing::context(testing::clients());
        let trust = role().trust_policy(&cx);
        let s = &trust["Statement"][0];
        assert_eq!(s["Principal"]["Service"], "firehose.amazonaws.com");
        // Firehose passes the account as the external id.
        assert_eq!(
            s["Condition"]["StringEquals"],
            json!({"sts:ExternalId": "123456789012"})
        );
    }
}
