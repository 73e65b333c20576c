//! Rendering results: the summary of a walk, status, plan, as text and JSON.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use console::style;
use serde::Serialize;

use crate::aws::ApiCalls;
use crate::engine::{CriticalPath, Outcome, StepCalls, StepReport, WalkReport};

use super::progress::step_line;

/// How a mutating command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunResult {
    Succeeded,
    Failed,
    Cancelled,
}

impl RunResult {
    pub fn of(walk: &WalkReport) -> Self {
        if walk.cancelled {
            Self::Cancelled
        } else if walk.succeeded() {
            Self::Succeeded
        } else {
            Self::Failed
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

/// The JSON document `up` and `down` print with `--output json`.
#[derive(Debug, Serialize)]
pub struct RunReport<'a> {
    pub command: &'a str,
    pub env: &'a str,
    pub region: &'a str,
    pub account_id: &'a str,
    pub result: RunResult,
    #[serde(rename = "wall_ms", serialize_with = "ms")]
    pub wall: Duration,
    pub counts: BTreeMap<&'static str, usize>,
    pub steps: &'a [StepReport],
    pub critical_path: &'a CriticalPath,
    pub api_calls: &'a ApiCalls,
    /// The calls the steps made (each step's are in its `calls`).
    pub step_calls: StepCallTotals,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outputs_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outputs: Option<&'a BTreeMap<String, String>>,
    /// `down` only: what the final sweep still found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leftovers: Option<&'a [String]>,
    /// What the run did differently from what was asked, and why (e.g.
    /// `--reserved-concurrency auto` reserving nothing in a small account).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// `up` only: the account baseline items it ensured before the env
    /// (absent with `--no-baseline`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<serde_json::Value>,
}

fn ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

impl<'a> RunReport<'a> {
    /// The report of `walk`; outputs and leftovers are added by the command.
    pub fn new(
        command: &'a str,
        env: &'a str,
        (region, account_id): (&'a str, &'a str),
        result: RunResult,
        walk: &'a WalkReport,
        api_calls: &'a ApiCalls,
    ) -> Self {
        Self {
            command,
            env,
            region,
            account_id,
            result,
            wall: walk.wall,
            counts: counts(&walk.steps),
            steps: &walk.steps,
            critical_path: &walk.critical_path,
            api_calls,
            step_calls: StepCallTotals::of(&walk.steps),
            outputs_file: None,
            outputs: None,
            leftovers: None,
            notes: Vec::new(),
            baseline: None,
        }
    }
}

/// The calls of a walk's steps added up, and the reads per step that ran:
/// the figure a converged `up` keeps low (issue 21).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct StepCallTotals {
    /// Steps whose calls were counted (those that ran).
    pub steps: u64,
    pub read: u64,
    pub mutating: u64,
    /// `read / steps`, rounded to two decimals (0 when no step ran).
    pub read_per_step: f64,
}

impl StepCallTotals {
    pub fn of(steps: &[StepReport]) -> Self {
        let mut totals = Self::default();
        for calls in steps.iter().filter_map(|s| s.calls) {
            let StepCalls { read, mutating } = calls;
            totals.steps += 1;
            totals.read += read;
            totals.mutating += mutating;
        }
        if totals.steps > 0 {
            totals.read_per_step =
                (totals.read as f64 / totals.steps as f64 * 100.0).round() / 100.0;
        }
        totals
    }
}

pub fn counts(steps: &[StepReport]) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for s in steps {
        *counts.entry(s.outcome.label()).or_default() += 1;
    }
    counts
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// Text summary of a mutating walk.
pub fn run_text(report: &RunReport<'_>, walk: &WalkReport) -> String {
    let mut out = String::new();
    let word = report.result.as_str();
    let headline = match report.result {
        RunResult::Succeeded => style(word).green().bold(),
        _ => style(word).red().bold(),
    };
    let _ = writeln!(
        out,
        "payops {} {} ({}, account {}): {headline} in {}",
        report.command,
        report.env,
        report.region,
        report.account_id,
        secs(report.wall)
    );
    for s in report.steps {
        let _ = writeln!(out, "{}", step_line(s));
    }
    let counts: Vec<String> = report
        .counts
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect();
    let _ = writeln!(
        out,
        "steps:         {} ({})",
        report.steps.len(),
        counts.join(", ")
    );
    let path: Vec<String> = walk
        .critical_path
        .steps
        .iter()
        .filter_map(|id| walk.get(id.as_str()))
        .map(|s| format!("{} {}", s.id, secs(s.duration)))
        .collect();
    if !path.is_empty() {
        let _ = writeln!(
            out,
            "critical path: {} = {} of {} wall",
            path.join(" → "),
            secs(walk.critical_path.total),
            secs(walk.wall)
        );
    }
    let calls = report.api_calls;
    let _ = writeln!(
        out,
        "API calls:     {} ({} mutating, {} read; {} retried, {} answered with an error such as not found)",
        calls.total, calls.mutating, calls.read, calls.retries, calls.errors
    );
    let per_step = report.step_calls;
    if per_step.steps > 0 {
        let _ = writeln!(
            out,
            "in steps:      {} read, {} mutating over {} steps ({:.2} reads per step)",
            per_step.read, per_step.mutating, per_step.steps, per_step.read_per_step
        );
    }
    if let Some(file) = &report.outputs_file {
        let n = report.outputs.map_or(0, BTreeMap::len);
        let _ = writeln!(out, "outputs:       {file} ({n} values)");
    }
    let failures: Vec<&StepReport> = walk.failures().collect();
    if !failures.is_empty() {
        let _ = writeln!(out, "{}", style("failed steps (root causes):").red().bold());
        for f in failures {
            if let Outcome::Failed { error } = &f.outcome {
                let _ = writeln!(out, "  {}: {error}", f.id);
            }
        }
    }
    if report.result == RunResult::Cancelled {
        let _ = writeln!(
            out,
            "interrupted: steps not started are listed as cancelled; run the same command again to resume"
        );
    }
    out
}

/// Per-step status of an env, for `status`.
#[derive(Debug, Serialize)]
pub struct StatusRow<'a> {
    pub step: &'a str,
    pub kind: &'a str,
    pub status: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub resources: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub fn status_rows(steps: &[StepReport]) -> Vec<StatusRow<'_>> {
    steps
        .iter()
        .map(|s| StatusRow {
            step: s.id.as_str(),
            kind: s.kind,
            status: s.outcome.label(),
            resources: s
                .record
                .as_ref()
                .map(|r| r.resources.clone())
                .unwrap_or_default(),
            drift: match &s.outcome {
                Outcome::Drifted { drift } => drift.clone(),
                _ => Vec::new(),
            },
            error: match &s.outcome {
                Outcome::Failed { error } => Some(error.clone()),
                Outcome::Skipped { because } => Some(format!(
                    "not checked: {} failed",
                    because
                        .iter()
                        .map(|b| b.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
                _ => None,
            },
        })
        .collect()
}

pub fn status_text(rows: &[StatusRow<'_>]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<30} {:<30} {:<10} RESOURCES",
        "STEP", "KIND", "STATUS"
    );
    for r in rows {
        let status = match r.status {
            "in sync" => style(r.status).green(),
            "missing" | "drifted" | "unwanted" => style(r.status).yellow(),
            "failed" | "skipped" => style(r.status).red(),
            _ => style(r.status).dim(),
        };
        let ids: Vec<&str> = r.resources.values().map(String::as_str).collect();
        let _ = writeln!(
            out,
            "{:<30} {:<30} {:<10} {}",
            r.step,
            r.kind,
            status,
            ids.join(",")
        );
        for d in &r.drift {
            let _ = writeln!(out, "    ~ {d}");
        }
        if let Some(e) = &r.error {
            let _ = writeln!(out, "    ! {e}");
        }
    }
    out
}

/// What `up` would do for one step, for `plan`.
pub fn plan_action(outcome: &Outcome) -> (&'static str, &'static str) {
    match outcome {
        Outcome::Missing => ("+", "create"),
        Outcome::Drifted { .. } => ("~", "update"),
        Outcome::Unwanted => ("-", "delete"),
        Outcome::Failed { .. } | Outcome::Skipped { .. } | Outcome::Cancelled => ("!", "unknown"),
        _ => (" ", "no change"),
    }
}

pub fn plan_text(steps: &[StepReport]) -> String {
    let mut out = String::new();
    let mut totals: BTreeMap<&str, usize> = BTreeMap::new();
    for s in steps {
        let (mark, action) = plan_action(&s.outcome);
        *totals.entry(action).or_default() += 1;
        if action == "no change" {
            continue;
        }
        let _ = writeln!(out, "{mark} {:<30} {action}", s.id);
        match &s.outcome {
            Outcome::Drifted { drift } => {
                for d in drift {
                    let _ = writeln!(out, "    ~ {d}");
                }
            }
            Outcome::Failed { error } => {
                let _ = writeln!(out, "    ! {error}");
            }
            _ => {}
        }
    }
    let n = |k| totals.get(k).copied().unwrap_or(0);
    let _ = writeln!(
        out,
        "Plan: {} to create, {} to update, {} to delete, {} unchanged{}.",
        n("create"),
        n("update"),
        n("delete"),
        n("no change"),
        match n("unknown") {
            0 => String::new(),
            u => format!(", {u} could not be checked"),
        }
    );
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::engine::{Outcome, Record, StepCalls, StepId};

    fn step(id: &str, outcome: Outcome, calls: Option<StepCalls>) -> StepReport {
        StepReport {
            id: StepId::from(id),
            kind: "test:kind",
            outcome,
            started: calls.map(|_| Duration::from_millis(5)),
            duration: Duration::from_millis(20),
            record: calls.map(|_| Record::default().resource("vpc", "vpc-1")),
            notes: Vec::new(),
            calls,
        }
    }

    /// The shape scripts read: each step's fields as before, plus its
    /// `calls`, and `step_calls` beside `api_calls`.
    #[test]
    fn the_json_report_carries_each_steps_calls_and_their_sum() {
        let walk = WalkReport {
            steps: vec![
                step(
                    "vpc",
                    Outcome::Unchanged,
                    Some(StepCalls {
                        read: 3,
                        mutating: 0,
                    }),
                ),
                step(
                    "subnets:public",
                    Outcome::Created,
                    Some(StepCalls {
                        read: 1,
                        mutating: 4,
                    }),
                ),
                step(
                    "ssm-parameters",
                    Outcome::Skipped {
                        because: vec![StepId::from("subnets:public")],
                    },
                    None,
                ),
            ],
            wall: Duration::from_millis(40),
            critical_path: CriticalPath::default(),
            cancelled: false,
        };
        let api_calls = ApiCalls::default();
        let report = RunReport::new(
            "up",
            "pr1",
            ("us-east-1", "123456789012"),
            RunResult::of(&walk),
            &walk,
            &api_calls,
        );
        assert_eq!(
            report.step_calls,
            StepCallTotals {
                steps: 2,
                read: 4,
                mutating: 4,
                read_per_step: 2.0
            }
        );
        insta::assert_json_snapshot!("run_report", report);
    }
}
