//! Bounded waiting: polling where the SDK has no waiter, and retrying the
//! errors real AWS returns while a dependency is still letting go
//! (DependencyViolation on security groups, subnets, IGWs, VPCs).

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use super::errors::{AwsError, absent_on};

/// How long to keep trying; long on real AWS, where hyperplane ENIs take up to
/// 45 minutes to go, and irrelevant on emulators that answer at once.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    pub total: Duration,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Budget {
    pub const fn new(total: Duration) -> Self {
        Self {
            total,
            first_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(20),
        }
    }

    fn next_delay(&self, delay: Duration) -> Duration {
        (delay * 3 / 2).min(self.max_delay)
    }
}

/// Calls `op` until it succeeds or fails with an error not in `codes`; while it
/// fails with one of `codes`, waits (with backoff) and reports progress.
pub async fn retry_on_codes<T, F, Fut>(
    what: impl AsRef<str>,
    codes: &[&str],
    budget: Budget,
    progress: &(dyn Fn(String) + Send + Sync),
    op: F,
) -> Result<T, AwsError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, AwsError>>,
{
    retry_while(what, |e| e.is_code(codes), budget, progress, op).await
}

/// Calls `op` until it succeeds or fails with an error `transient` does not
/// recognise; while it does, waits (with backoff) and reports progress.
pub async fn retry_while<T, F, Fut>(
    what: impl AsRef<str>,
    transient: impl Fn(&AwsError) -> bool,
    budget: Budget,
    progress: &(dyn Fn(String) + Send + Sync),
    mut op: F,
) -> Result<T, AwsError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, AwsError>>,
{
    retry_attempts(
        what.as_ref(),
        transient,
        |e| e.code().unwrap_or("retrying").to_owned(),
        budget,
        progress,
        |_| op(),
    )
    .await
}

/// The loop under every retry here: calls `op(attempt)` (from 1) until it
/// succeeds or fails with an error `transient` does not recognise; while it
/// does, waits with backoff within `budget`, reporting
/// `{what}: {why(error)} (attempt n, ...)`, and gives up with a `Timeout`
/// naming `what`.
pub async fn retry_attempts<T, F, Fut>(
    what: &str,
    transient: impl Fn(&AwsError) -> bool,
    why: impl Fn(&AwsError) -> String,
    budget: Budget,
    progress: &(dyn Fn(String) + Send + Sync),
    mut op: F,
) -> Result<T, AwsError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, AwsError>>,
{
    let start = Instant::now();
    let mut delay = budget.first_delay;
    let mut attempt = 1u32;
    loop {
        match op(attempt).await {
            Ok(v) => return Ok(v),
            Err(e) if transient(&e) => {
                let elapsed = start.elapsed();
                if elapsed + delay > budget.total {
                    return Err(AwsError::Timeout {
                        what: what.to_owned(),
                        after: elapsed,
                        last: Some(e.to_string()),
                    });
                }
                progress(format!(
                    "{what}: {} (attempt {attempt}, {}s of {}s budget)",
                    why(&e),
                    elapsed.as_secs(),
                    budget.total.as_secs()
                ));
                tokio::time::sleep(delay).await;
                delay = budget.next_delay(delay);
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Polls `check` until it returns `Some`, within the budget.
pub async fn poll_until<T, F, Fut>(
    what: impl AsRef<str>,
    budget: Budget,
    progress: &(dyn Fn(String) + Send + Sync),
    mut check: F,
) -> Result<T, AwsError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Poll<T>, AwsError>>,
{
    let what = what.as_ref();
    let start = Instant::now();
    let mut delay = budget.first_delay;
    loop {
        match check().await? {
            Poll::Ready(v) => return Ok(v),
            Poll::Pending(status) => {
                let elapsed = start.elapsed();
                if elapsed + delay > budget.total {
                    return Err(AwsError::Timeout {
                        what: what.to_owned(),
                        after: elapsed,
                        last: Some(status),
                    });
                }
                progress(format!(
                    "waiting for {what}: {status} ({}s)",
                    elapsed.as_secs()
                ));
                tokio::time::sleep(delay).await;
                delay = budget.next_delay(delay);
            }
        }
    }
}

/// Polls until AWS no longer knows a resource being deleted ("requested is
/// not done"): `describe` reads it, an error with one of the `gone` codes
/// means it is gone, and `status` says what it is doing meanwhile.
pub async fn wait_until_gone<T, F, Fut>(
    what: impl AsRef<str>,
    budget: Budget,
    progress: &(dyn Fn(String) + Send + Sync),
    gone: &[&str],
    mut describe: F,
    status: impl Fn(&T) -> String,
) -> Result<(), AwsError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, AwsError>>,
{
    poll_until(what, budget, progress, || {
        let read = describe();
        let status = &status;
        async move {
            Ok(match absent_on(read.await, gone)? {
                None => Poll::Ready(()),
                Some(found) => Poll::Pending(status(&found)),
            })
        }
    })
    .await
}

/// One poll's verdict; `Pending` carries the status seen, for progress.
pub enum Poll<T> {
    Ready(T),
    Pending(String),
}

/// Maps an SDK waiter's error: running out of time is a `Timeout`, anything
/// else (a failure state such as a NAT gateway `failed`) says what happened,
/// with the service's error code when it sent one.
pub fn waited<T, O, E>(
    result: Result<T, aws_smithy_runtime_api::client::waiters::error::WaiterError<O, E>>,
    what: &str,
    max: Duration,
) -> Result<T, AwsError>
where
    O: std::fmt::Debug,
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata
        + std::error::Error
        + Send
        + Sync
        + 'static,
{
    use aws_smithy_runtime_api::client::waiters::error::WaiterError;
    use aws_smithy_types::error::metadata::ProvideErrorMetadata;
    result.map_err(|err| match err {
        WaiterError::ExceededMaxWait(_) => AwsError::Timeout {
            what: what.to_owned(),
            after: max,
            last: None,
        },
        other => AwsError::Api {
            op: "waiter",
            code: other.code().map(str::to_owned),
            message: format!(
                "{what}: {}",
                aws_smithy_types::error::display::DisplayErrorContext(&other)
            ),
        },
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn dependency_violation() -> AwsError {
        AwsError::Api {
            op: "ec2:DeleteSecurityGroup",
            code: Some("DependencyViolation".into()),
            message: "resource sg-1 has a dependent object".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_dependency_violation_until_it_clears_and_reports_progress() {
        let calls = AtomicU32::new(0);
        let messages = Mutex::new(Vec::new());
        let result = retry_on_codes(
            "deleting sg-1",
            &["DependencyViolation"],
            Budget::new(Duration::from_secs(600)),
            &|m| messages.lock().unwrap().push(m),
            || async {
                if calls.fetch_add(1, Ordering::SeqCst) < 3 {
                    Err(dependency_violation())
                } else {
                    Ok("gone")
                }
            },
        )
        .await;
        assert_eq!(result.unwrap(), "gone");
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        let messages = messages.lock().unwrap();
        assert_eq!(messages.len(), 3);
        assert!(
            messages[0].contains("DependencyViolation"),
            "{}",
            messages[0]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_when_the_budget_is_spent_and_says_what_blocked_it() {
        let started = Instant::now();
        let result: Result<(), _> = retry_on_codes(
            "deleting sg-1",
            &["DependencyViolation"],
            Budget::new(Duration::from_secs(60)),
            &|_| {},
            || async { Err(dependency_violation()) },
        )
        .await;
        let err = result.unwrap_err();
        assert!(matches!(err, AwsError::Timeout { .. }));
        assert!(err.to_string().contains("dependent object"), "{err}");
        assert!(started.elapsed() <= Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn other_errors_are_not_retried() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = retry_on_codes(
            "deleting sg-1",
            &["DependencyViolation"],
            Budget::new(Duration::from_secs(60)),
            &|_| {},
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(AwsError::Api {
                    op: "ec2:DeleteSecurityGroup",
                    code: Some("UnauthorizedOperation".into()),
                    message: String::new(),
                })
            },
        )
        .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn poll_until_waits_for_ready() {
        let polls = AtomicU32::new(0);
        let v = poll_until(
            "nat-1 available",
            Budget::new(Duration::from_secs(300)),
            &|_| {},
            || async {
                Ok(if polls.fetch_add(1, Ordering::SeqCst) < 2 {
                    Poll::Pending("pending".into())
                } else {
                    Poll::Ready(7)
                })
            },
        )
        .await
        .unwrap();
        assert_eq!(v, 7);
    }
}
