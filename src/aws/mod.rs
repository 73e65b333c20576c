//! The small AWS helpers resources share: SDK config, clients, call counting,
//! error mapping and bounded waiting. No resource knowledge lives here.

pub mod clients;
pub mod config;
pub mod errors;
pub mod metrics;
pub mod policy;
pub mod wait;

pub use clients::Clients;
pub use errors::{AwsError, OpResult, absent_on, required};
pub use metrics::{ApiCalls, ApiCounter};
pub use wait::{Budget, Poll, poll_until, retry_on_codes};
