//! Step kinds that several domains instantiate for their own purposes: an IAM
//! role with its trust and inline policy, a KMS-encrypted log group, an S3
//! bucket. A domain names its instance (the flow-log role, a function's log
//! group, the audit bucket) in its own registration.

pub mod iam_role;
pub mod log_group;
pub mod s3_bucket;
