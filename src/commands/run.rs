//! What the commands share: opening an env, running a walk with live
//! progress and state recording, and Ctrl-C handling.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, Result};
use async_trait::async_trait;

use crate::aws::ApiCounter;
use crate::cli::Shape;
use crate::engine::{
    CancelFlag, Graph, Operation, Outcome, Record, StepEvents, StepId, StepReport, WalkObserver,
    WalkOptions, WalkReport, walk,
};
use crate::naming::EnvName;
use crate::resources::{self, Context};
use crate::settings::Settings;
use crate::spec::EnvSpec;
use crate::state::{EnvState, LastRun, LocalStore, StepState};
use crate::ui::summary::{self, RunReport, RunResult};
use crate::ui::{Printer, Progress};

use super::ExitStatus;

/// An env opened for a command: AWS context, call counter and what the state
/// file recorded (if anything).
pub struct Opened {
    pub cx: Context,
    pub counter: ApiCounter,
    pub state: Option<EnvState>,
    pub spec: EnvSpec,
}

/// Reads the state (a corrupt one stops here, before any AWS call), resolves
/// the env's shape, then connects.
pub async fn open(
    settings: &Settings,
    store: &LocalStore,
    env: &EnvName,
    shape: &Shape,
    adjust: impl FnOnce(&mut EnvSpec),
) -> Result<Opened> {
    let state = store.load(env.as_str())?;
    let recorded = state
        .as_ref()
        .map(|s| s.settings.clone())
        .unwrap_or_default();
    let mut spec = settings.spec(env, shape, &recorded)?;
    adjust(&mut spec);
    let (cx, counter) = resources::connect(&settings.aws, env, spec.clone())
        .await
        .with_context(|| {
            format!(
                "cannot reach AWS in {} (credentials: AWS_PROFILE or AWS_ACCESS_KEY_ID; \
                 emulator: --endpoint-url)",
                settings.aws.region
            )
        })?;
    if let Some(state) = &state {
        state.check_location(
            &store.path(env.as_str()).display().to_string(),
            &cx.account_id,
            &cx.region,
        )?;
    }
    Ok(Opened {
        cx,
        counter,
        state,
        spec,
    })
}

/// Keeps the state file in step with a mutating walk: written after every
/// step, and as soon as a step learns a new resource id.
pub struct Recorder {
    store: LocalStore,
    state: Mutex<EnvState>,
    operation: Operation,
    printer: Printer,
}

impl Recorder {
    pub fn start(
        store: LocalStore,
        mut state: EnvState,
        command: &str,
        operation: Operation,
        printer: Printer,
    ) -> Result<Self> {
        state.last_run = Some(LastRun {
            command: command.to_owned(),
            result: "running".into(),
            started_at: resources::now(),
            finished_at: None,
        });
        state.updated_at = resources::now();
        store.save(&state)?;
        Ok(Self {
            store,
            state: Mutex::new(state),
            operation,
            printer,
        })
    }

    fn update(&self, f: impl FnOnce(&mut EnvState)) {
        let mut state = self.state.lock().expect("state lock");
        f(&mut state);
        state.updated_at = resources::now();
        if let Err(e) = self.store.save(&state) {
            // AWS stays the truth: the next run finds the resources by tags.
            self.printer
                .warn(&format!("warning: could not record state: {e}"));
        }
    }

    pub fn finish(&self, result: RunResult) {
        self.update(|s| {
            if let Some(run) = &mut s.last_run {
                run.result = result.as_str().to_owned();
                run.finished_at = Some(resources::now());
            }
        });
    }

    pub fn snapshot(&self) -> EnvState {
        self.state.lock().expect("state lock").clone()
    }
}

/// The walk's observer: progress for people, state for the next run.
struct Observer<'a> {
    progress: &'a Progress,
    recorder: Option<&'a Recorder>,
}

impl StepEvents for Observer<'_> {
    fn progress(&self, step: &StepId, message: &str) {
        self.progress.message(step, message);
    }

    fn remember(&self, step: &StepId, key: &str, id: &str) {
        if let Some(recorder) = self.recorder {
            recorder.update(|s| {
                let entry = s.steps.entry(step.clone()).or_default();
                entry.record.resources.insert(key.to_owned(), id.to_owned());
                entry.updated_at = resources::now();
            });
        }
    }
}

#[async_trait]
impl WalkObserver for Observer<'_> {
    fn step_started(&self, id: &StepId, kind: &'static str) {
        self.progress.started(id, kind);
    }

    async fn step_finished(&self, report: &StepReport) {
        self.progress.finished(report);
        let Some(recorder) = self.recorder else {
            return;
        };
        match (recorder.operation, &report.outcome, &report.record) {
            (Operation::Ensure, outcome, Some(record)) if outcome.is_success() => {
                recorder.update(|s| {
                    s.steps.insert(
                        report.id.clone(),
                        StepState {
                            record: record.clone(),
                            updated_at: resources::now(),
                        },
                    );
                });
            }
            (Operation::Destroy, Outcome::Deleted | Outcome::AlreadyAbsent, _) => {
                recorder.update(|s| {
                    s.steps.remove(&report.id);
                });
            }
            _ => {}
        }
    }
}

/// Runs one walk with progress (and state recording for mutating walks),
/// stopping new steps on the first Ctrl-C and exiting on the second.
pub async fn walk_env(
    graph: &Graph<Context>,
    cx: &Context,
    operation: Operation,
    settings: &Settings,
    printer: Printer,
    previous: &BTreeMap<StepId, Record>,
    recorder: Option<&Recorder>,
) -> WalkReport {
    let progress = Progress::new(printer, operation != Operation::Observe);
    let cancel = Arc::new(CancelFlag::new());
    let watcher = tokio::spawn(watch_interrupts(cancel.clone(), printer));
    let report = walk(
        graph,
        cx,
        WalkOptions {
            operation,
            parallelism: settings.parallelism,
            previous,
            cancel: &cancel,
        },
        &Observer {
            progress: &progress,
            recorder,
        },
    )
    .await;
    watcher.abort();
    progress.clear();
    report
}

async fn watch_interrupts(cancel: Arc<CancelFlag>, printer: Printer) {
    if tokio::signal::ctrl_c().await.is_err() {
        return;
    }
    cancel.cancel();
    printer.warn(
        "interrupted: starting no new step, letting running ones finish and record their state \
         (Ctrl-C again to stop at once; a later run resumes either way)",
    );
    if tokio::signal::ctrl_c().await.is_ok() {
        std::process::exit(130);
    }
}

/// Prints a mutating command's report (text with `trailer` appended, or
/// JSON) and turns its result into the exit status.
pub fn finish(
    printer: Printer,
    report: &RunReport<'_>,
    walk: &WalkReport,
    trailer: &str,
) -> Result<ExitStatus> {
    if printer.json_mode() {
        printer.json(report)?;
    } else {
        printer.data(&(summary::run_text(report, walk) + trailer))?;
    }
    Ok(match report.result {
        RunResult::Succeeded => ExitStatus::Success,
        RunResult::Cancelled => ExitStatus::Interrupted,
        RunResult::Failed => ExitStatus::Failure,
    })
}

/// `pid 123 on host-7: up (since 2026-11-23T10:00:00Z)`, for lock messages.
pub fn lock_holder(command: &str) -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown host".into());
    format!(
        "pid {} on {host}: {command} (since {})",
        std::process::id(),
        resources::now()
    )
}
