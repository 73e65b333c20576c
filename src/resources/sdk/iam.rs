//! IAM: tags in its shape, a role's tags, and riding out IAM's eventual
//! consistency.

use std::future::Future;

use aws_sdk_iam::types::Tag;

use crate::aws::{AwsError, OpResult, retry_attempts};
use crate::tags::{self, TagMap};

use crate::resources::context::Context;

pub fn tags(tags: &TagMap) -> Vec<Tag> {
    // Both fields are always set, so `build` cannot fail and nothing is dropped.
    tags.iter()
        .filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok())
        .collect()
}

pub async fn role_tags(cx: &Context, name: &str) -> Result<TagMap, AwsError> {
    let pages: Vec<_> = cx
        .clients
        .iam
        .list_role_tags()
        .role_name(name)
        .into_paginator()
        .send()
        .collect()
        .await;
    let mut tags = TagMap::new();
    for page in pages {
        let page = page.op("iam:ListRoleTags")?;
        tags.extend(tags::to_map(page.tags(), |t| {
            (Some(t.key()), Some(t.value()))
        }));
    }
    Ok(tags)
}

/// Whether `e` says a role exists but the calling service cannot use it yet:
/// IAM is eventually consistent, so a just-created role (or a just-put inline
/// policy) takes seconds to be usable. The messages are the ones AWS sends:
/// EC2 CreateFlowLogs "Unable to assume given IAM role", Lambda "The role
/// defined for the function cannot be assumed by Lambda" and "The provided
/// execution role does not have permissions to call ...".
pub fn role_not_yet_usable(e: &AwsError) -> bool {
    let AwsError::Api { message, .. } = e else {
        return false;
    };
    let message = message.to_ascii_lowercase();
    [
        "unable to assume",
        "cannot be assumed",
        "execution role does not have permissions",
    ]
    .iter()
    .any(|m| message.contains(m))
}

/// Calls `op` until it succeeds or fails with an error `still_propagating`
/// does not recognise, within the env's IAM-propagation budget, reporting each
/// wait. For steps that use a role right after it was created or changed.
pub async fn retry_while_propagating<T, F, Fut>(
    cx: &Context,
    what: &str,
    progress: &(dyn Fn(String) + Send + Sync),
    still_propagating: impl Fn(&AwsError) -> bool,
    op: F,
) -> Result<T, AwsError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, AwsError>>,
{
    retry_attempts(
        what,
        still_propagating,
        |_| "the role is not usable yet, IAM is propagating".to_owned(),
        cx.budgets.iam_propagation,
        progress,
        op,
    )
    .await
    .map_err(|e| match e {
        // Giving up on the wait (not a timeout `op` itself returned) says why.
        AwsError::Timeout {
            what: waited,
            after,
            last,
        } if waited == what => AwsError::Timeout {
            what: format!("{what} (IAM propagation)"),
            after,
            last,
        },
        e => e,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use tokio::time::Instant;

    use super::*;
    use crate::resources::testing;

    fn propagation_error() -> AwsError {
        AwsError::Api {
            op: "ec2:CreateFlowLogs",
            code: Some("InvalidParameter".into()),
            message: "Unable to assume given IAM role.".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_while_a_new_role_propagates_and_reports_progress() {
        let cx = testing::context(testing::clients());
        let messages = Mutex::new(Vec::new());
        let attempts = Mutex::new(Vec::new());
        let v = retry_while_propagating(
            &cx,
            "creating flow log",
            &|m| messages.lock().unwrap().push(m),
            role_not_yet_usable,
            |attempt| {
                attempts.lock().unwrap().push(attempt);
                async move {
                    if attempt < 3 {
                        Err(propagation_error())
                    } else {
                        Ok("fl-1")
                    }
                }
            },
        )
        .await
        .unwrap();
        assert_eq!(v, "fl-1");
        assert_eq!(*attempts.lock().unwrap(), [1, 2, 3]);
        let messages = messages.lock().unwrap();
        assert_eq!(messages.len(), 2);
        assert!(
            messages[0].contains("IAM is propagating"),
            "{}",
            messages[0]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_on_propagation_after_the_budget() {
        let mut cx = testing::context(testing::clients());
        cx.budgets.iam_propagation = crate::aws::Budget::new(Duration::from_secs(30));
        let started = Instant::now();
        let err = retry_while_propagating(
            &cx,
            "creating flow log",
            &|_| {},
            role_not_yet_usable,
            |_| async { Err::<(), _>(propagation_error()) },
        )
        .await
        .unwrap_err();
        assert!(matches!(err, AwsError::Timeout { .. }), "{err}");
        assert!(err.to_string().contains("Unable to assume"), "{err}");
        assert!(started.elapsed() <= Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn other_errors_are_not_retried_as_propagation() {
        let cx = testing::context(testing::clients());
        let calls = AtomicU32::new(0);
        let err = retry_while_propagating(
            &cx,
            "creating flow log",
            &|_| {},
            role_not_yet_usable,
            |_| {
                calls.fetch_add(1, Ordering::SeqCst);
                async {
                    Err::<(), _>(AwsError::Api {
                        op: "ec2:CreateFlowLogs",
                        code: Some("InvalidParameter".into()),
                        message: "LogGroupName is invalid".into(),
                    })
                }
            },
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("LogGroupName"), "{err}");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(role_not_yet_usable(&AwsError::Api {
            op: "lambda:CreateFunction",
            code: Some("InvalidParameterValueException".into()),
            message: "The role defined for the function cannot be assumed by Lambda.".into(),
        }));
    }
}
