//! Lambda concurrency: whether the payment functions' reservations fit in
//! the account's pool (GetAccountSettings) before any function exists. New
//! accounts have a limit of 10 and cannot reserve at all.

use crate::aws::{AwsError, OpResult, absent_on};
use crate::resources::compute::lambda_function::min_unreserved;
use crate::resources::context::Context;
use crate::resources::model::{
    Function, LOG_TRANSFORM_RESERVED, MIGRATION_RESERVED, QUEUE_CONSUMER_RESERVED,
    REMEDIATION_RESERVED,
};
use crate::spec::Reserve;

use super::Check;

pub const NAME: &str = "lambda-concurrency";

/// Whether `wanted` reserved executions fit, and the room there is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub fits: bool,
    /// What may be reserved at most: the unreserved pool, plus what this env
    /// holds already (its reservations are replaced, not added), minus what
    /// AWS keeps unreserved.
    pub room: i64,
}

pub fn reservations_fit(limit: i64, unreserved: i64, wanted: i64, held_by_env: i64) -> Verdict {
    let room = unreserved + held_by_env - min_unreserved(limit);
    Verdict {
        fits: wanted <= 0 || wanted <= room,
        room: room.max(0),
    }
}

/// Executions the env's functions hold now (0 for one that does not exist).
async fn held_by_env(cx: &Context) -> Result<i64, AwsError> {
    let mut held = 0;
    for f in Function::ALL {
        let got = cx
            .clients
            .lambda
            .get_function_concurrency()
            .function_name(f.name(cx))
            .send()
            .await
            .op("lambda:GetFunctionConcurrency");
        if let Some(out) = absent_on(got, &["ResourceNotFoundException"])? {
            held += i64::from(out.reserved_concurrent_executions().unwrap_or(0));
        }
    }
    Ok(held)
}

/// The check, and whether `auto` reserves (true unless it found no room).
pub async fn check(cx: &Context) -> (Check, bool) {
    let c = cx.spec.concurrency;
    if c.reserve == Reserve::Never {
        return (
            Check::ok(
                NAME,
                "no reservations (--reserved-concurrency none): the functions share the pool",
            ),
            true,
        );
    }
    // The queue consumer's and the log transform's fixed reservations come
    // with the event backbone.
    let consumer = if cx.spec.events {
        QUEUE_CONSUMER_RESERVED + LOG_TRANSFORM_RESERVED
    } else {
        0
    };
    // The schema migration's one execution and the compliance remediation's
    // two are always reserved (with the others), so they count too.
    let wanted = i64::from(
        c.validation
            + c.fraud
            + c.transaction
            + consumer
            + MIGRATION_RESERVED
            + REMEDIATION_RESERVED,
    );
    let settings = cx
        .clients
        .lambda
        .get_account_settings()
        .send()
        .await
        .op("lambda:GetAccountSettings");
    let limit = settings.map(|s| {
        let l = s.account_limit();
        (
            i64::from(l.map_or(0, |l| l.concurrent_executions())),
            i64::from(
                l.and_then(|l| l.unreserved_concurrent_executions())
                    .unwrap_or(0),
            ),
        )
    });
    let ((limit, unreserved), held) = match (limit, held_by_env(cx).await) {
        (Ok(l), Ok(h)) => (l, h),
        (Err(e), _) | (_, Err(e)) => return (Check::not_checked(NAME, &e), true),
    };
    let v = reservations_fit(limit, unreserved, wanted, held);
    let numbers = [
        ("ConcurrentExecutions", limit),
        ("UnreservedConcurrentExecutions", unreserved),
        ("minimum_unreserved", min_unreserved(limit)),
        ("held_by_env", held),
        ("wanted", wanted),
        ("room", v.room),
    ];
    let found = format!(
        "{wanted} reserved executions wanted ({c}), account limit {limit}, unreserved \
         {unreserved}, AWS keeps {} unreserved, this env holds {held}: room for {}",
        min_unreserved(limit),
        v.room,
        c = values(c)
    );
    let check = match (v.fits, c.reserve) {
        (true, _) => Check::ok(NAME, found),
        (false, Reserve::IfItFits) => Check::ok(
            NAME,
            format!("{found}; auto: the functions reserve nothing and share the pool"),
        ),
        (false, _) => Check::problem(
            NAME,
            found,
            "use --reserved-concurrency auto (reserve only if it fits) or none, or lower the \
             numbers (--reserved-concurrency / reserved_concurrency in payops.toml), or ask AWS \
             to raise the account's Lambda concurrent executions quota (Service Quotas L-B99A9384)",
        ),
    };
    (check.with_numbers(&numbers), v.fits)
}

fn values(c: crate::spec::Concurrency) -> String {
    format!(
        "validation={},fraud={},transaction={}",
        c.validation, c.fraud, c.transaction
    )
}

#[cfg(test)]
mod tests {
    use aws_sdk_lambda::Client;
    use aws_sdk_lambda::operation::get_account_settings::GetAccountSettingsOutput;
    use aws_sdk_lambda::operation::get_function_concurrency::{
        GetFunctionConcurrencyError, GetFunctionConcurrencyOutput,
    };
    use aws_sdk_lambda::types::AccountLimit;
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    use super::*;
    use crate::resources::preflight::Status;
    use crate::resources::testing;

    #[test]
    fn reservations_fit_only_above_what_aws_keeps_unreserved() {
        // A new account: limit 10, all of it kept unreserved.
        assert_eq!(
            reservations_fit(10, 10, 20, 0),
            Verdict {
                fits: false,
                room: 0
            }
        );
        // A standard account with others' reservations.
        assert!(reservations_fit(1000, 1000, 20, 0).fits);
        assert!(!reservations_fit(1000, 115, 20, 0).fits);
        // This env's own reservations come back when replaced.
        assert!(reservations_fit(1000, 100, 20, 20).fits);
        // Nothing wanted always fits.
        assert!(reservations_fit(10, 10, 0, 0).fits);
    }

    /// GetAccountSettings as AWS answers in a new account.
    fn small_account() -> Rule {
        mock!(Client::get_account_settings).then_output(|| {
            GetAccountSettingsOutput::builder()
                .account_limit(
                    AccountLimit::builder()
                        .total_code_size(80_530_636_800)
                        .code_size_unzipped(262_144_000)
                        .code_size_zipped(52_428_800)
                        .concurrent_executions(10)
                        .unreserved_concurrent_executions(10)
                        .build(),
                )
                .build()
        })
    }

    fn no_functions() -> Rule {
        mock!(Client::get_function_concurrency).then_error(|| {
            GetFunctionConcurrencyError::generic(testing::error_meta("ResourceNotFoundException"))
        })
    }

    fn cx(rules: &[&Rule], reserve: &str) -> Context {
        let mut clients = testing::clients();
        clients.lambda = mock_client!(aws_sdk_lambda, RuleMode::MatchAny, rules);
        let mut cx = testing::context(clients);
        cx.spec.concurrency = reserve.parse().unwrap();
        cx
    }

    #[tokio::test]
    async fn a_new_account_refuses_the_default_reservations_with_its_numbers_and_the_flags() {
        let (settings, functions) = (small_account(), no_functions());
        let (c, fits) = check(&cx(&[&settings, &functions], "validation=5")).await;
        assert!(!fits);
        assert_eq!(c.status, Status::Problem);
        assert!(
            c.detail.contains("account limit 10, unreserved 10"),
            "{}",
            c.detail
        );
        assert!(c.detail.contains("AWS keeps 10 unreserved"), "{}", c.detail);
        assert!(c.numbers.contains(&("UnreservedConcurrentExecutions", 10)));
        let remedy = c.remedy.unwrap();
        assert!(remedy.contains("--reserved-concurrency auto"), "{remedy}");
        assert!(
            remedy.contains("reserved_concurrency in payops.toml"),
            "{remedy}"
        );
    }

    #[tokio::test]
    async fn auto_in_a_new_account_goes_on_without_reservations_and_says_so() {
        let (settings, functions) = (small_account(), no_functions());
        let (c, fits) = check(&cx(&[&settings, &functions], "auto")).await;
        assert!(!fits);
        assert_eq!(c.status, Status::Ok);
        assert!(c.detail.contains("reserve nothing"), "{}", c.detail);
    }

    #[tokio::test]
    async fn none_reads_nothing() {
        let (c, fits) = check(&cx(&[], "none")).await;
        assert_eq!(c.status, Status::Ok);
        assert!(fits);
    }

    #[tokio::test]
    async fn a_rerun_counts_what_the_env_already_holds() {
        // Reserved by this env already: unreserved is 100, exactly AWS's
        // minimum, so only what the env holds makes room.
        let settings = mock!(Client::get_account_settings).then_output(|| {
            GetAccountSettingsOutput::builder()
                .account_limit(
                    AccountLimit::builder()
                        .concurrent_executions(120)
                        .unreserved_concurrent_executions(100)
                        .build(),
                )
                .build()
        });
        let held = mock!(Client::get_function_concurrency)
            .match_requests(|r| r.function_name() != Some("payops-pr1-secret-rotation"))
            .then_output(|| {
                GetFunctionConcurrencyOutput::builder()
                    .reserved_concurrent_executions(7)
                    .build()
            });
        let rotation = no_functions();
        let (c, fits) = check(&cx(&[&settings, &held, &rotation], "7")).await;
        assert!(fits, "{}", c.detail);
        // The three payment functions, the queue consumer, the log
        // transform, the migration and the remediation hold 7 each; the
        // consumer and the transform want their fixed 5 each (the event
        // backbone is on), the migration its 1, the remediation its 2.
        assert!(c.numbers.contains(&("held_by_env", 49)), "{:?}", c.numbers);
        assert!(c.numbers.contains(&("wanted", 3 * 7 + 5 + 5 + 1 + 2)));
    }

    #[tokio::test]
    async fn an_unanswered_read_is_not_checked_and_not_a_refusal() {
        let settings = mock!(Client::get_account_settings).then_error(|| {
            aws_sdk_lambda::operation::get_account_settings::GetAccountSettingsError::generic(
                testing::error_meta("AccessDeniedException"),
            )
        });
        let functions = no_functions();
        let (c, fits) = check(&cx(&[&settings, &functions], "auto")).await;
        assert_eq!(c.status, Status::NotChecked);
        assert!(fits);
    }
}
