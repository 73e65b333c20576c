//! SDK helpers per service, shared by the steps of every domain: tags in each
//! service's shape, owned-by filters, lookups by name, and the waits and
//! deletes AWS makes slow.

pub mod ec2;
pub mod elb;
pub mod rds;
