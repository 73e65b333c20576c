//! What the commands share: opening an env, running a walk with live
//! progress and state recording, and Ctrl-C handling.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use crate::cli::Shape;
use crate::engine::{
    CancelFlag, Graph, Operation, Outcome, Record, StepEvents, StepId, StepReport, WalkObserver,
    WalkOptions, WalkReport, walk,
};
use crate::naming::EnvName;
use crate::resources::{self, Aws, Context};
use crate::settings::Settings;
use crate::spec::EnvSpec;
use crate::state::{self, EnvState, LastRun, StateBackend, StepState};
use crate::ui::summary::{self, RunReport, RunResult};
use crate::ui::{Printer, Progress};

use super::ExitStatus;

/// What every command that talks to AWS opens first: the SDK clients (no
/// call made yet) and the state backend.
pub struct Session {
    pub aws: Aws,
    pub backend: Arc<dyn StateBackend>,
}

impl Session {
    pub async fn new(settings: &Settings) -> Result<Self> {
        let aws = Aws::new(&settings.aws).await;
        let backend = state::backend(
            settings.state_url.as_deref(),
            &settings.state_dir,
            &aws.clients.s3,
            &settings.aws.region,
        )?;
        Ok(Self {
            aws,
            backend: Arc::from(backend),
        })
    }

    /// Takes `env`'s lock, runs `work`, and releases the lock whatever
    /// happened (a shared lock must not wait for its lease to expire).
    pub async fn locked<T>(
        &self,
        env: &EnvName,
        command: &str,
        work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let lock = self
            .backend
            .lock(env.as_str(), &lock_holder(command))
            .await?;
        let result = work.await;
        lock.release().await;
        result
    }
}

/// An env opened for a command: its context and what the state recorded.
pub struct Opened {
    pub cx: Context,
    pub state: Option<EnvState>,
    pub spec: EnvSpec,
}

/// Reads the state (a corrupt local one stops here, before any AWS call),
/// learns the account, and resolves the env's shape: flags, payops.toml,
/// then what the state recorded or, without a state, what the VPC records.
pub async fn open(
    settings: &Settings,
    session: &Session,
    env: &EnvName,
    shape: &Shape,
    adjust: impl FnOnce(&mut EnvSpec),
) -> Result<Opened> {
    let state = session.backend.load(env.as_str()).await?;
    session.aws.account().await.with_context(|| {
        format!(
            "cannot reach AWS in {} (credentials: AWS_PROFILE or AWS_ACCESS_KEY_ID; \
             emulator: --endpoint-url)",
            settings.aws.region
        )
    })?;
    let mut recorded = state
        .as_ref()
        .map(|s| s.settings.clone())
        .unwrap_or_default();
    // An env recorded before payops kept zone IDs: its subnets are in the
    // zones (by name) the public subnets step recorded; keep those.
    if let Some(state) = &state
        && !recorded.is_empty()
        && !recorded.contains_key("zone_ids")
        && let Some(names) = state.outputs().get("AvailabilityZones")
    {
        recorded.insert("zone_ids".to_owned(), names.clone());
    }
    if recorded.is_empty() {
        // No state here (a fresh CI runner): the env's VPC records its shape.
        recorded = resources::recorded_shape(&session.aws.clients, env)
            .await
            .context("reading the env's shape from its VPC")?;
    }
    let mut spec = settings.spec(env, shape, &recorded)?;
    adjust(&mut spec);
    let cx = session.aws.context(env, spec.clone()).await?;
    if let Some(state) = &state {
        state.check_location(
            &session.backend.location(env.as_str()),
            &cx.account_id,
            &cx.region,
        )?;
    }
    Ok(Opened { cx, state, spec })
}

type Edit = Box<dyn FnOnce(&mut EnvState) + Send>;

struct Job {
    edit: Edit,
    done: Option<oneshot::Sender<()>>,
}

/// Keeps the state in step with a mutating walk: written after every step,
/// and as soon as a step learns a new resource id. One writer task applies
/// the edits in order, so a shared (S3) backend sees one write at a time.
pub struct Recorder {
    jobs: mpsc::UnboundedSender<Job>,
    writer: tokio::task::JoinHandle<EnvState>,
    operation: Operation,
}

impl Recorder {
    pub async fn start(
        backend: Arc<dyn StateBackend>,
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
        // The first write fails the command: better now than after creating things.
        backend.save(&state).await?;
        let (jobs, mut queue) = mpsc::unbounded_channel::<Job>();
        let writer = tokio::spawn(async move {
            while let Some(job) = queue.recv().await {
                (job.edit)(&mut state);
                state.updated_at = resources::now();
                if let Err(e) = backend.save(&state).await {
                    // AWS stays the truth: the next run finds the resources by tags.
                    printer.warn(&format!("warning: could not record state: {e}"));
                }
                if let Some(done) = job.done {
                    let _ = done.send(());
                }
            }
            state
        });
        Ok(Self {
            jobs,
            writer,
            operation,
        })
    }

    /// Records `edit` and waits until it is written.
    pub async fn update(&self, edit: impl FnOnce(&mut EnvState) + Send + 'static) {
        let (done, written) = oneshot::channel();
        if self
            .jobs
            .send(Job {
                edit: Box::new(edit),
                done: Some(done),
            })
            .is_ok()
        {
            let _ = written.await;
        }
    }

    /// Records `edit` without waiting (from synchronous step callbacks).
    fn update_soon(&self, edit: impl FnOnce(&mut EnvState) + Send + 'static) {
        let _ = self.jobs.send(Job {
            edit: Box::new(edit),
            done: None,
        });
    }

    /// Records how the run ended and returns the final state.
    pub async fn finish(self, result: RunResult) -> EnvState {
        self.update(move |s| {
            if let Some(run) = &mut s.last_run {
                run.result = result.as_str().to_owned();
                run.finished_at = Some(resources::now());
            }
        })
        .await;
        drop(self.jobs);
        self.writer.await.expect("the state writer does not panic")
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
            let (step, key, id) = (step.clone(), key.to_owned(), id.to_owned());
            recorder.update_soon(move |s| {
                let entry = s.steps.entry(step).or_default();
                entry.record.resources.insert(key, id);
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
        let id = report.id.clone();
        match (recorder.operation, &report.outcome, &report.record) {
            (Operation::Ensure, outcome, Some(record)) if outcome.is_success() => {
                let record = record.clone();
                recorder
                    .update(move |s| {
                        s.steps.insert(
                            id,
                            StepState {
                                record,
                                updated_at: resources::now(),
                            },
                        );
                    })
                    .await;
            }
            (Operation::Destroy, Outcome::Deleted | Outcome::AlreadyAbsent, _) => {
                recorder
                    .update(move |s| {
                        s.steps.remove(&id);
                    })
                    .await;
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
    let counter = &cx.clients.counter;
    let before = counter.per_step();
    let mut report = walk(
        graph,
        cx,
        WalkOptions {
            operation,
            parallelism: settings.parallelism,
            previous,
            cancel: &cancel,
            weight: Some(&|kind| resources::durations::typical_seconds(kind, operation)),
        },
        &Observer {
            progress: &progress,
            recorder,
        },
    )
    .await;
    watcher.abort();
    progress.clear();
    // This walk's calls: the counter counts over the whole process (`down`
    // walks the same steps twice).
    let after = counter.per_step();
    for step in &mut report.steps {
        if step.started.is_some() {
            let now = after.get(&step.id).copied().unwrap_or_default();
            let was = before.get(&step.id).copied().unwrap_or_default();
            step.calls = Some(now - was);
        }
    }
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

/// Opens the env and observes every step of its graph (no mutating call):
/// what `status`, `plan`, `outputs` and the fleet view start from.
pub async fn observe(
    settings: &Settings,
    printer: Printer,
    session: &Session,
    env: &EnvName,
    shape: &Shape,
) -> Result<(Opened, WalkReport)> {
    let mut opened = open(settings, session, env, shape, |_| {}).await?;
    // `auto` reserves what `up` would: only if the account can hold it.
    if opened.spec.concurrency.reserve == crate::spec::Reserve::IfItFits {
        let (_, fits) = resources::preflight::lambda_concurrency::check(&opened.cx).await;
        opened.cx.auto_reservations_fit = fits;
    }
    let graph = resources::graph(&opened.spec)?;
    let previous = opened
        .state
        .as_ref()
        .map(|s| s.records())
        .unwrap_or_default();
    let walk = walk_env(
        &graph,
        &opened.cx,
        Operation::Observe,
        settings,
        printer,
        &previous,
        None,
    )
    .await;
    Ok((opened, walk))
}
