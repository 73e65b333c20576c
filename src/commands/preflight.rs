//! `payops preflight`: whether the account can hold the env as asked,
//! without changing anything; `up` runs the same checks before its first
//! change (`checks`).

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::cli::ShapeArgs;
use crate::resources::Context;
use crate::resources::preflight::{self, Check, Preflight, Quotas, Status, credentials};
use crate::settings::Settings;
use crate::spec::Reserve;
use crate::ui::Printer;

use super::run::{Session, open};
use super::{ExitStatus, PreflightRefused, UsageError};

#[derive(Serialize)]
struct Report<'a> {
    command: &'static str,
    env: &'a str,
    region: &'a str,
    result: &'static str,
    checks: &'a [Check],
}

/// The quotas payops cannot read, from `PAYOPS_QUOTA_*` (a bad value is
/// bad input).
fn quotas() -> Result<Quotas> {
    Quotas::from_vars(|k| std::env::var(k).ok()).map_err(|e| UsageError(e).into())
}

pub async fn preflight(
    settings: &Settings,
    printer: Printer,
    args: ShapeArgs,
) -> Result<ExitStatus> {
    let quotas = quotas()?;
    let session = Session::new(settings).await?;
    let env = &args.env.env;
    let region = &settings.aws.region;
    let mut checks = vec![credentials::check(&session.aws.clients, region).await];
    // Every other check needs an identity; without one they would only
    // repeat the same refusal.
    if checks[0].status == Status::Ok {
        let opened = open(settings, &session, env, &args.shape, |_| {}).await?;
        checks.extend(preflight::run(&opened.cx, quotas).await.checks);
    }
    let refused = checks.iter().any(|c| c.status == Status::Problem);
    if printer.json_mode() {
        printer.json(&Report {
            command: "preflight",
            env: env.as_str(),
            region,
            result: if refused { "refused" } else { "ok" },
            checks: &checks,
        })?;
    } else {
        let lines: Vec<String> = checks.iter().map(Check::line).collect();
        printer.data(&lines.join("\n"))?;
    }
    Ok(if refused {
        ExitStatus::Refused
    } else {
        ExitStatus::Success
    })
}

/// `up`'s preflight, before anything is created: refuses with every problem,
/// or settles `--reserved-concurrency auto` in `cx` and returns what the
/// summary should say about it.
pub async fn checks(cx: &mut Context, printer: Printer) -> Result<Vec<String>> {
    let found: Preflight = preflight::run(cx, quotas()?).await;
    for c in &found.checks {
        if c.status == Status::NotChecked {
            printer.warn(&format!("preflight: {}", c.line()));
        }
    }
    if found.refused() {
        return Err(PreflightRefused(
            found.problems().map(Check::line).collect(),
        ))
        .context(format!(
            "payops up {} stopped before its first change",
            cx.env()
        ));
    }
    cx.auto_reservations_fit = found.reservations_fit;
    // Kept from now on (state and VPC tags), whatever zones the account
    // gains later. The zone check passed, so they are known.
    let chosen: Vec<String> = cx.zones().await?.iter().map(|z| z.id.clone()).collect();
    cx.spec.zone_ids = chosen;
    let mut notes = Vec::new();
    if cx.spec.concurrency.reserve == Reserve::IfItFits && !found.reservations_fit {
        let line = found
            .checks
            .iter()
            .find(|c| c.name == preflight::lambda_concurrency::NAME)
            .map(Check::line)
            .unwrap_or_default();
        notes.push(format!(
            "reserved concurrency: none reserved (--reserved-concurrency auto): {line}"
        ));
    }
    Ok(notes)
}
