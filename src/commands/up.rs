//! `payops up`: converge the env, then write its outputs.

use anyhow::Result;

use crate::aws::AwsError;
use crate::cli::UpArgs;
use crate::engine::Operation;
use crate::outputs;
use crate::resources;
use crate::resources::preflight::{Status, credentials};
use crate::settings::{Settings, record_spec};
use crate::state::EnvState;
use crate::ui::Printer;
use crate::ui::summary::{RunReport, RunResult};

use super::run::{Recorder, Session, finish, open, walk_env};
use super::{ExitStatus, PreflightRefused};

pub async fn up(settings: &Settings, printer: Printer, args: UpArgs) -> Result<ExitStatus> {
    let session = Session::new(settings).await?;
    // Locked before anything else: two runs on one env would race to create.
    session
        .locked(
            &args.env.env,
            "up",
            up_locked(settings, printer, &session, &args),
        )
        .await
}

/// An env that could not be opened for want of AWS (not a bad state file or
/// setting): credentials AWS does not take, or an endpoint that does not
/// answer, refuse `up` as `preflight` does (exit 4, its line and remedy).
async fn refused_without_credentials(
    settings: &Settings,
    session: &Session,
    env: &crate::naming::EnvName,
    e: anyhow::Error,
) -> anyhow::Error {
    if !e.chain().any(|c| c.is::<AwsError>()) {
        return e;
    }
    let who = credentials::check(&session.aws.clients, &settings.aws.region).await;
    if who.status != Status::Problem {
        return e;
    }
    anyhow::Error::new(PreflightRefused(vec![who.line()]))
        .context(format!("payops up {env} stopped before its first change"))
}

async fn up_locked(
    settings: &Settings,
    printer: Printer,
    session: &Session,
    args: &UpArgs,
) -> Result<ExitStatus> {
    let env = &args.env.env;
    let mut opened = match open(settings, session, env, &args.shape, |_| {}).await {
        Ok(opened) => opened,
        Err(e) => return Err(refused_without_credentials(settings, session, env, e).await),
    };
    // Before the first change (and before the state records a run): an
    // account that cannot hold the env is refused with nothing created.
    let notes = super::preflight::checks(&mut opened.cx, printer).await?;
    for note in &notes {
        printer.info(note);
    }
    let cx = &opened.cx;
    let graph = resources::graph(&opened.spec)?;
    // The account baseline the env relies on (threat detection, alerts,
    // findings export), adopted or created before the env's first change,
    // so that no env runs in an account without it and nobody needs a
    // second command. Its failure stops `up` here, with nothing of the env
    // changed.
    let baseline = if args.no_baseline {
        printer.info("account baseline: skipped (--no-baseline)");
        None
    } else {
        Some(super::baseline::ensure_for_env(session, printer, &cx.account_id, &cx.region).await?)
    };

    let mut state = opened
        .state
        .unwrap_or_else(|| EnvState::new(env.as_str(), &cx.region, &cx.account_id));
    state.account_id = cx.account_id.clone();
    state.region = cx.region.clone();
    // cx's spec: preflight added the zones it chose.
    state.settings = record_spec(&cx.spec);
    let previous = state.records();
    let recorder = Recorder::start(
        session.backend.clone(),
        state,
        "up",
        Operation::Ensure,
        printer,
    )
    .await?;

    printer.info(&format!(
        "payops up {env}: {} steps in {} (account {}), up to {} at once",
        graph.len(),
        cx.region,
        cx.account_id,
        settings.parallelism
    ));
    let walk = walk_env(
        &graph,
        cx,
        Operation::Ensure,
        settings,
        printer,
        &previous,
        Some(&recorder),
    )
    .await;
    let result = RunResult::of(&walk);
    let state = recorder.finish(result).await;

    // Outputs of everything that exists, including steps that succeeded on
    // an earlier run, so partial progress is still usable.
    let mut values = state.outputs();
    values.insert("EnvName".into(), env.to_string());
    values.insert("Region".into(), cx.region.clone());
    let outputs_file = args
        .outputs_file
        .clone()
        .unwrap_or_else(|| settings.outputs_file.clone());
    outputs::write(&outputs_file, &values)?;

    let api_calls = session.aws.counter.snapshot();
    let mut report = RunReport::new(
        "up",
        env.as_str(),
        (&cx.region, &cx.account_id),
        result,
        &walk,
        &api_calls,
    );
    report.outputs_file = Some(outputs_file.display().to_string());
    report.outputs = Some(&values);
    let trailer: String = notes.iter().map(|n| format!("note: {n}\n")).collect();
    report.notes = notes;
    report.baseline = baseline.map(|items| serde_json::json!(items));
    finish(printer, &report, &walk, &trailer)
}
