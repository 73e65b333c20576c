//! One error type for every AWS operation payops performs.

use std::time::Duration;

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;

#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// An API call failed. `code` is AWS's error code when the service sent one.
    #[error("{op}: {}{message}", code.as_deref().map(|c| format!("{c}: ")).unwrap_or_default())]
    Api {
        op: &'static str,
        code: Option<String>,
        message: String,
    },
    /// A resource with our deterministic name exists but is not ours.
    #[error(
        "{what} exists but is not tagged as this env's ({owner}); payops never adopts \
         a resource it did not create: remove or rename it, or use another env name"
    )]
    NotOurs { what: String, owner: String },
    /// More than one resource claims to be the same step's.
    #[error(
        "found {} {what} tagged for this env and step ({}); expected one: payops will not \
         guess which to keep, delete the extra ones or run `payops down`",
        ids.len(), ids.join(", ")
    )]
    Ambiguous { what: String, ids: Vec<String> },
    #[error("gave up after {}s waiting for {what}{}", after.as_secs(), last.as_deref().map(|l| format!(" (last: {l})")).unwrap_or_default())]
    Timeout {
        what: String,
        after: Duration,
        last: Option<String>,
    },
    /// The desired shape conflicts with what exists in a way `up` cannot repair
    /// in place (e.g. a subnet CIDR changed).
    #[error("{0}")]
    Conflict(String),
    /// A dependency's output was not available (a graph bug).
    #[error(transparent)]
    Input(#[from] crate::engine::MissingInput),
    /// AWS answered without a field payops relies on.
    #[error("{op}: the response has no {field}")]
    Incomplete {
        op: &'static str,
        field: &'static str,
    },
}

impl AwsError {
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    pub fn is_code(&self, codes: &[&str]) -> bool {
        self.code().is_some_and(|c| codes.contains(&c))
    }
}

/// Attaches the operation name to an SDK result: `.op("ec2:CreateVpc")?`.
pub trait OpResult<T> {
    fn op(self, op: &'static str) -> Result<T, AwsError>;
}

impl<T, E, R> OpResult<T> for Result<T, SdkError<E, R>>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    fn op(self, op: &'static str) -> Result<T, AwsError> {
        self.map_err(|err| {
            let code = err.code().map(str::to_owned);
            let message = match err.message() {
                Some(m) => m.to_owned(),
                None if code.is_some() => String::new(),
                None => describe_failure(&err),
            };
            AwsError::Api { op, code, message }
        })
    }
}

/// A failure without an AWS error code, in one readable line (the SDK's own
/// rendering includes the raw response).
fn describe_failure<E, R>(err: &SdkError<E, R>) -> String
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    const LIMIT: usize = 300;
    use std::error::Error;
    let cause = || err.source().map(chain).unwrap_or_default();
    let text = match err {
        // The SDK reports missing credentials as a failure to send.
        SdkError::DispatchFailure(_) if err.source().is_some_and(is_credentials_failure) => {
            format!("no usable AWS credentials: {}", cause())
        }
        SdkError::DispatchFailure(_) => format!("could not reach the endpoint: {}", cause()),
        SdkError::TimeoutError(_) => "timed out".to_owned(),
        SdkError::ResponseError(_) => format!("unreadable response: {}", cause()),
        SdkError::ServiceError(e) => format!("unexpected answer: {}", chain(e.err())),
        other => DisplayErrorContext(other).to_string(),
    };
    if text.len() > LIMIT {
        let cut = (0..=LIMIT)
            .rev()
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        format!("{}…", &text[..cut])
    } else {
        text
    }
}

fn is_credentials_failure(err: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(err), |e| e.source())
        .any(|e| e.is::<aws_credential_types::provider::error::CredentialsError>())
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    crate::engine::error_chain(e)
}

/// `Ok(None)` when the call failed with one of `codes` (typically a NotFound).
pub fn absent_on<T>(result: Result<T, AwsError>, codes: &[&str]) -> Result<Option<T>, AwsError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_code(codes) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The SDK's builders fail only when a required field is missing: a bug
/// here, reported like an API error so it names the call it was for.
pub fn built<T>(
    op: &'static str,
    result: Result<T, aws_smithy_types::error::operation::BuildError>,
) -> Result<T, AwsError> {
    result.map_err(|e| AwsError::Api {
        op,
        code: None,
        message: format!("building the request: {e}"),
    })
}

/// Unwraps an optional response field or says which one was missing.
pub fn required<T>(value: Option<T>, op: &'static str, field: &'static str) -> Result<T, AwsError> {
    value.ok_or(AwsError::Incomplete { op, field })
}

#[cfg(test)]
mod tests {
    use aws_credential_types::provider::error::CredentialsError;
    use aws_sdk_sts::operation::get_caller_identity::GetCallerIdentityError;
    use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
    use aws_smithy_runtime_api::client::result::ConnectorError;

    use super::*;

    fn dispatch_failure(source: Box<dyn std::error::Error + Send + Sync>) -> AwsError {
        let err: Result<(), SdkError<GetCallerIdentityError, HttpResponse>> = Err(
            SdkError::dispatch_failure(ConnectorError::other(source, None)),
        );
        err.op("sts:GetCallerIdentity").unwrap_err()
    }

    #[test]
    fn missing_credentials_are_called_that_not_an_unreachable_endpoint() {
        let err = dispatch_failure(Box::new(CredentialsError::not_loaded("no provider")));
        let text = err.to_string();
        assert!(text.contains("no usable AWS credentials"), "{text}");
        assert!(!text.contains("could not reach"), "{text}");
    }

    #[test]
    fn a_refused_connection_is_an_unreachable_endpoint() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let text = dispatch_failure(Box::new(refused)).to_string();
        assert!(text.contains("could not reach the endpoint"), "{text}");
    }
}
