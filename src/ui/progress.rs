//! Live progress on stderr: a spinner per running step on a terminal, one
//! line per finished step otherwise (CI logs).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use console::style;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engine::{Outcome, StepId, StepReport};

use super::printer::Printer;

pub struct Progress {
    printer: Printer,
    multi: Option<MultiProgress>,
    bars: Mutex<HashMap<StepId, ProgressBar>>,
    /// Per-step lines for mutating walks; observe walks print only a summary.
    lines: bool,
}

impl Progress {
    pub fn new(printer: Printer, lines: bool) -> Self {
        let multi = printer
            .live()
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Self {
            printer,
            multi,
            bars: Mutex::new(HashMap::new()),
            lines,
        }
    }

    pub fn started(&self, id: &StepId, kind: &'static str) {
        let Some(multi) = &self.multi else { return };
        let bar = multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner:.cyan} {prefix:<30} {wide_msg:.dim} {elapsed:>4}",
            )
            .expect("valid template"),
        );
        bar.set_prefix(id.to_string());
        bar.set_message(kind);
        bar.enable_steady_tick(Duration::from_millis(120));
        self.bars.lock().expect("bars").insert(id.clone(), bar);
    }

    pub fn message(&self, id: &StepId, message: &str) {
        if let Some(bar) = self.bars.lock().expect("bars").get(id) {
            bar.set_message(message.to_owned());
        } else if self.printer.verbose() {
            self.println(&format!("  {} {id}: {message}", style("·").dim()));
        }
    }

    pub fn finished(&self, report: &StepReport) {
        if let Some(bar) = self.bars.lock().expect("bars").remove(&report.id) {
            bar.finish_and_clear();
            if let Some(multi) = &self.multi {
                multi.remove(&bar);
            }
        }
        // On a terminal the spinners show progress and the summary lists
        // every step, so only failures are printed as they happen; in CI logs
        // every finished step gets a line.
        let failed = matches!(report.outcome, Outcome::Failed { .. });
        if self.lines && !self.printer.quiet() && (self.multi.is_none() || failed) {
            self.println(&step_line(report));
        }
    }

    pub fn println(&self, line: &str) {
        match &self.multi {
            Some(multi) => {
                let _ = multi.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    pub fn clear(&self) {
        if let Some(multi) = &self.multi {
            let _ = multi.clear();
        }
    }
}

/// `  ✓ created    vpc                  1.2s  created vpc-0abc`
pub fn step_line(report: &StepReport) -> String {
    let label = report.outcome.label();
    let mark = match &report.outcome {
        Outcome::Failed { .. } => style("✗").red().to_string(),
        Outcome::Skipped { .. } | Outcome::Cancelled => style("-").yellow().to_string(),
        Outcome::Created | Outcome::Updated | Outcome::Deleted => style("✓").green().to_string(),
        _ => style("✓").dim().to_string(),
    };
    let detail = match &report.outcome {
        Outcome::Failed { error } => error.clone(),
        Outcome::Skipped { because } => format!(
            "upstream failed: {}",
            because
                .iter()
                .map(StepId::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => abbreviate(&report.notes),
    };
    let time = if report.started.is_some() {
        format!("{:.1}s", report.duration.as_secs_f64())
    } else {
        String::new()
    };
    format!("  {mark} {label:<10} {:<30} {time:>6}  {detail}", report.id)
        .trim_end()
        .to_owned()
}

/// At most a few notes on one line; `--output json` has them all.
fn abbreviate(notes: &[String]) -> String {
    const SHOWN: usize = 3;
    if notes.len() <= SHOWN + 1 {
        return notes.join("; ");
    }
    format!(
        "{}; (+{} more)",
        notes[..SHOWN].join("; "),
        notes.len() - SHOWN
    )
}
