//! Read-only commands: `status`, `plan` and `outputs`. They take no lock (they
//! can watch a running `up`) and write nothing.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Serialize;

use crate::aws::ApiCalls;
use crate::cli::{EnvArgs, PlanArgs, Shape, StatusArgs};
use crate::engine::{Outcome, WalkReport};
use crate::resources::baseline::{self, Account, Planned};
use crate::resources::now;
use crate::resources::traffic::{self, Traffic};
use crate::settings::Settings;
use crate::state::LastRun;
use crate::ui::Printer;
use crate::ui::summary;

use super::ExitStatus;
use super::run::{Session, observe};

fn exit(walk: &WalkReport) -> ExitStatus {
    if walk.cancelled {
        ExitStatus::Interrupted
    } else if walk.steps.iter().all(|s| s.outcome.is_success()) {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    }
}

#[derive(Serialize)]
struct StatusDoc<'a> {
    env: &'a str,
    region: &'a str,
    account_id: &'a str,
    /// converged | drifted | partial | absent | unknown
    summary: &'static str,
    counts: BTreeMap<&'static str, usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_run: Option<&'a LastRun>,
    steps: Vec<summary::StatusRow<'a>>,
    /// Blue/green weights and versions, once the ALB listener exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    traffic: Option<Traffic>,
    api_calls: ApiCalls,
    step_calls: summary::StepCallTotals,
}

/// One word for the whole env.
fn overall(walk: &WalkReport) -> &'static str {
    let outcomes: Vec<&Outcome> = walk.steps.iter().map(|s| &s.outcome).collect();
    let wanted_absent = |o: &&Outcome| matches!(o, Outcome::Missing);
    if outcomes.iter().any(|o| !o.is_success()) {
        "unknown"
    } else if outcomes
        .iter()
        .all(|o| matches!(o, Outcome::Missing | Outcome::NotWanted))
    {
        "absent"
    } else if outcomes.iter().any(wanted_absent) {
        "partial"
    } else if outcomes
        .iter()
        .any(|o| matches!(o, Outcome::Drifted { .. } | Outcome::Unwanted))
    {
        "drifted"
    } else {
        "converged"
    }
}

pub async fn status(settings: &Settings, printer: Printer, args: StatusArgs) -> Result<ExitStatus> {
    let session = Session::new(settings).await?;
    let Some(env) = &args.env else {
        return super::fleet::status(settings, printer, &session).await;
    };
    let (opened, walk) = observe(settings, printer, &session, env, &args.shape).await?;
    // The weights are the operator's (`payops shift`): shown, never drift.
    let traffic = match traffic::read(&opened.cx).await {
        Ok(t) => t,
        Err(e) => {
            printer.warn(&format!("could not read the blue/green traffic: {e}"));
            None
        }
    };
    let doc = StatusDoc {
        env: env.as_str(),
        region: &opened.cx.region,
        account_id: &opened.cx.account_id,
        summary: overall(&walk),
        counts: summary::counts(&walk.steps),
        last_run: opened.state.as_ref().and_then(|s| s.last_run.as_ref()),
        steps: summary::status_rows(&walk.steps),
        traffic,
        api_calls: session.aws.counter.snapshot(),
        step_calls: summary::StepCallTotals::of(&walk.steps),
    };
    if printer.json_mode() {
        printer.json(&doc)?;
    } else {
        let mut text = summary::status_text(&doc.steps);
        let counts: Vec<String> = doc.counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
        text.push_str(&format!(
            "env {} ({}, account {}): {} ({})\n",
            doc.env,
            doc.region,
            doc.account_id,
            doc.summary,
            counts.join(", ")
        ));
        if let Some(traffic) = &doc.traffic {
            text.push_str(&format!("traffic: {traffic}\n"));
        }
        if let Some(run) = doc.last_run {
            text.push_str(&format!(
                "last run: {} {} (started {}{})\n",
                run.command,
                run.result,
                run.started_at,
                run.finished_at
                    .as_deref()
                    .map(|f| format!(", finished {f}"))
                    .unwrap_or_default()
            ));
        }
        printer.data(&text)?;
    }
    Ok(exit(&walk))
}

#[derive(Serialize)]
struct PlanItem<'a> {
    step: &'a str,
    action: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    changes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub async fn plan(settings: &Settings, printer: Printer, args: PlanArgs) -> Result<ExitStatus> {
    let PlanArgs {
        target: args,
        no_baseline,
    } = args;
    let session = Session::new(settings).await?;
    let (opened, walk) = observe(settings, printer, &session, &args.env.env, &args.shape).await?;
    // What `up` would do to the account baseline before the env (unless it
    // is told to leave it alone): read only, like the rest of the plan.
    let baseline = if no_baseline {
        None
    } else {
        let acct = Account {
            clients: &session.aws.clients,
            id: opened.cx.account_id.clone(),
            region: opened.cx.region.clone(),
            now: now(),
        };
        match baseline::observe(&acct).await {
            Ok(items) => Some(baseline::plan(&items)),
            Err(e) => {
                printer.warn(&format!(
                    "could not read the account baseline (`up` ensures it first): {e}"
                ));
                None
            }
        }
    };
    if printer.json_mode() {
        let items: Vec<PlanItem<'_>> = walk
            .steps
            .iter()
            .map(|s| PlanItem {
                step: s.id.as_str(),
                action: summary::plan_action(&s.outcome).1,
                changes: match &s.outcome {
                    Outcome::Drifted { drift } => drift.clone(),
                    _ => Vec::new(),
                },
                error: match &s.outcome {
                    Outcome::Failed { error } => Some(error.clone()),
                    _ => None,
                },
            })
            .collect();
        let mut doc = serde_json::json!({
            "env": args.env.env.as_str(),
            "steps": items,
            "step_calls": summary::StepCallTotals::of(&walk.steps),
        });
        if let Some(items) = &baseline {
            doc["baseline"] = serde_json::to_value(items)?;
        }
        printer.json(&doc)?;
    } else {
        let mut text = String::new();
        if let Some(items) = &baseline {
            text.push_str(&baseline_plan_text(items));
        }
        text.push_str(&summary::plan_text(&walk.steps));
        printer.data(&text)?;
    }
    Ok(exit(&walk))
}

/// The baseline's part of `plan`: one line per item, before the env's steps
/// (`up` ensures the baseline first).
fn baseline_plan_text(items: &[Planned]) -> String {
    let mut out = String::from("account baseline (before the env):\n");
    for p in items {
        out.push_str(&format!(
            "  {:<11} {:<20} {}{}\n",
            p.action,
            p.item,
            p.id.as_deref().unwrap_or("-"),
            p.why
                .as_deref()
                .map(|w| format!(" ({w})"))
                .unwrap_or_default()
        ));
    }
    out
}

/// The env's outputs as AWS has them now (not as the state file remembers).
pub async fn outputs(settings: &Settings, printer: Printer, args: EnvArgs) -> Result<ExitStatus> {
    let session = Session::new(settings).await?;
    let (opened, walk) = observe(settings, printer, &session, &args.env, &Shape::default()).await?;
    let mut values: BTreeMap<String, String> = walk
        .steps
        .iter()
        .filter_map(|s| s.record.as_ref())
        .flat_map(|r| r.outputs.clone())
        .collect();
    if !values.is_empty() {
        values.insert("EnvName".into(), args.env.to_string());
        values.insert("Region".into(), opened.cx.region.clone());
    }
    if printer.json_mode() {
        printer.json(&values)?;
    } else {
        let width = values.keys().map(String::len).max().unwrap_or(0);
        let text: String = values
            .iter()
            .map(|(k, v)| format!("{k:<width$}  {v}\n"))
            .collect();
        printer.data(if text.is_empty() {
            "(no outputs: the env does not exist)\n"
        } else {
            &text
        })?;
    }
    Ok(exit(&walk))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_baseline_part_of_a_plan_says_what_up_does_to_each_item_first() {
        let text = baseline_plan_text(&[
            Planned {
                item: "guardduty-detector",
                id: Some("d1".into()),
                action: "adopt",
                why: None,
            },
            Planned {
                item: "xray-key",
                id: None,
                action: "not-needed",
                why: Some("xray-encryption is adopted: payops makes none for it".into()),
            },
        ]);
        assert_eq!(
            text,
            "account baseline (before the env):\n  \
             adopt       guardduty-detector   d1\n  \
             not-needed  xray-key             - (xray-encryption is adopted: payops makes none for it)\n"
        );
    }
}
