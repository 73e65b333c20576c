//! The small AWS helpers resources share: SDK config, clients, call counting,
//! error mapping and bounded waiting. No resource knowledge lives here.

pub mod clients;
pub mod config;
pub mod errors;
pub mod metrics;
pub mod objects;
pub mod policy;
pub mod wait;

pub use clients::Clients;
pub use errors::{AwsError, OpResult, absent_on, built, required};
pub use metrics::{ApiCalls, ApiCounter};
pub use wait::{
    Budget, Poll, poll_until, retry_attempts, retry_on_codes, retry_while, wait_until_gone, waited,
};

/// A deterministic idempotency token (AWS `ClientToken`) from `parts`: the
/// same request retried after a crash gets the same token, a new incarnation
/// of the resource (other ids in `parts`) a new one.
pub fn client_token(parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(parts.join("\u{1f}").as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}
