//! SDK helpers per service, shared by the steps of every domain: tags in each
//! service's shape, owned-by filters, lookups by name, and the waits and
//! deletes AWS makes slow.

pub mod acm;
pub mod cloudwatch;
pub mod dynamodb;
pub mod ec2;
pub mod elb;
pub mod events;
pub mod iam;
pub mod kms;
pub mod lambda;
pub mod logs;
pub mod rds;
pub mod route53;
pub mod s3;
pub mod secrets;
pub mod sns;
pub mod sqs;
pub mod tagging;
pub mod wafv2;
pub mod xray;
