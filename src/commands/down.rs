//! `payops down`: remove everything the env owns, in reverse dependency
//! order, then prove it with a final sweep.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};

use anyhow::Result;

use crate::cli::{DownArgs, Shape};
use crate::engine::{Graph, Operation, Outcome, Record, StepId, WalkReport};
use crate::naming::EnvName;
use crate::resources::{self, Context, sweep};
use crate::settings::Settings;
use crate::spec::{Certificate, NatMode};
use crate::state::EnvState;
use crate::ui::Printer;
use crate::ui::summary::{RunReport, RunResult};

use super::run::{Opened, Recorder, Session, finish, open, walk_env};
use super::{ExitStatus, UsageError};

pub async fn down(settings: &Settings, printer: Printer, args: DownArgs) -> Result<ExitStatus> {
    let env = &args.env.env;
    if !settings.yes && !std::io::stdin().is_terminal() {
        return Err(UsageError(format!(
            "refusing to remove env {env} without confirmation: stdin is not a terminal; \
             pass --yes to confirm (nothing was changed)"
        ))
        .into());
    }
    let session = Session::new(settings).await?;
    session
        .locked(env, "down", async {
            let opened = open_widest(settings, &session, env, args.final_snapshot).await?;
            // Refused before anything goes: a partial teardown of a protected
            // env would be worse than none.
            if opened.spec.protect == Some(true) {
                return Err(UsageError(format!(
                    "env {env} is protected (up --protect: destroy-all skips it and its Aurora \
                     cluster has deletion protection); lift it with `payops up --env {env} \
                     --protect=false`, then run `payops down` again (nothing was changed)"
                ))
                .into());
            }
            if !settings.yes && !confirm(env.as_str(), &opened.cx)? {
                printer.warn("aborted: nothing was changed");
                return Ok(ExitStatus::Usage);
            }
            let cx_info = (opened.cx.region.clone(), opened.cx.account_id.clone());
            let removal = remove(settings, printer, &session, opened).await?;
            let api_calls = session.aws.counter.snapshot();
            let mut report = RunReport::new(
                "down",
                env.as_str(),
                (&cx_info.0, &cx_info.1),
                removal.result,
                &removal.walk,
                &api_calls,
            );
            report.leftovers = Some(&removal.leftovers);
            finish(printer, &report, &removal.walk, &removal.trailer(env))
        })
        .await
}

/// Opens `env` with the widest graph: whatever shape created it (one NAT
/// gateway or three), `down` removes all of it, and the self-signed
/// certificate's step comes after the listener that may still use it.
/// `final_snapshot`: keep a snapshot of the Aurora cluster.
pub async fn open_widest(
    settings: &Settings,
    session: &Session,
    env: &EnvName,
    final_snapshot: bool,
) -> Result<Opened> {
    open(settings, session, env, &Shape::default(), |spec| {
        spec.final_snapshot = final_snapshot;
        spec.nat = NatMode::PerAz;
        spec.certificate = Certificate::SelfSigned;
    })
    .await
}

/// How a removal ended.
pub struct Removal {
    pub walk: WalkReport,
    /// What the final sweep still found (empty when clean).
    pub leftovers: Vec<String>,
    pub result: RunResult,
}

impl Removal {
    fn trailer(&self, env: &EnvName) -> String {
        if self.result == RunResult::Succeeded {
            return format!(
                "final sweep: nothing tagged payops:env={env} or named for it is left\n"
            );
        }
        if self.leftovers.is_empty() {
            return String::new();
        }
        let mut t =
            "final sweep: still present (run `payops down` again, or remove by hand):\n".to_owned();
        for l in &self.leftovers {
            t.push_str(&format!("  {l}\n"));
        }
        t
    }
}

/// Removes an opened (and locked) env: the reverse walk, then the final
/// sweep; the state is deleted once nothing is left.
pub async fn remove(
    settings: &Settings,
    printer: Printer,
    session: &Session,
    opened: Opened,
) -> Result<Removal> {
    let cx = &opened.cx;
    let env = cx.env().clone();
    let graph = resources::graph(&opened.spec)?;
    let state = opened
        .state
        .unwrap_or_else(|| EnvState::new(env.as_str(), &cx.region, &cx.account_id));
    let previous = state.records();
    let recorder = Recorder::start(
        session.backend.clone(),
        state,
        "down",
        Operation::Destroy,
        printer,
    )
    .await?;
    printer.info(&format!(
        "payops down {env}: removing {} steps in {} (account {})",
        graph.len(),
        cx.region,
        cx.account_id
    ));
    let walk = walk_env(
        &graph,
        cx,
        Operation::Destroy,
        settings,
        printer,
        &previous,
        Some(&recorder),
    )
    .await;

    // Requested is not done: look again, by every means, for anything left.
    let leftovers = if walk.succeeded() {
        final_sweep(&graph, cx, settings, printer, &previous).await
    } else {
        Vec::new()
    };
    let result = match RunResult::of(&walk) {
        RunResult::Succeeded if !leftovers.is_empty() => RunResult::Failed,
        other => other,
    };
    recorder.finish(result).await;
    if result == RunResult::Succeeded {
        // Nothing left to record: the env is gone.
        session.backend.remove(env.as_str()).await?;
    }
    Ok(Removal {
        walk,
        leftovers,
        result,
    })
}

/// Every step looks for its resources again (by recorded id, name and tags),
/// and the tagging API is asked for anything else tagged for the env.
async fn final_sweep(
    graph: &Graph<Context>,
    cx: &Context,
    settings: &Settings,
    printer: Printer,
    previous: &BTreeMap<StepId, Record>,
) -> Vec<String> {
    printer.info("final sweep: looking for anything still tagged or named for this env");
    let check = walk_env(
        graph,
        cx,
        Operation::Sweep,
        settings,
        printer,
        previous,
        None,
    )
    .await;
    let mut leftovers = Vec::new();
    for s in &check.steps {
        match &s.outcome {
            Outcome::Missing | Outcome::NotWanted => {}
            Outcome::Failed { error } => {
                leftovers.push(format!("{}: could not check: {error}", s.id))
            }
            _ => {
                let ids: Vec<&str> = s
                    .record
                    .iter()
                    .flat_map(|r| r.resources.values())
                    .map(String::as_str)
                    .collect();
                leftovers.push(format!("{} ({}): {}", s.id, s.kind, ids.join(", ")));
            }
        }
    }
    match sweep::cloudwatch_leftovers(cx).await {
        Ok(names) => leftovers.extend(names),
        Err(e) => leftovers.push(format!("cloudwatch: could not check: {e}")),
    }
    match sweep::route53_leftovers(cx).await {
        Ok(names) => leftovers.extend(names),
        Err(e) => leftovers.push(format!("route53: could not check: {e}")),
    }
    match sweep::tagged_leftovers(cx).await {
        Ok(arns) => leftovers.extend(arns.into_iter().map(|a| format!("tagged: {a}"))),
        Err(e) => leftovers.push(format!("tagging API: could not check: {e}")),
    }
    leftovers
}

/// Terraform-style: the user types the env name to confirm.
fn confirm(env: &str, cx: &Context) -> Result<bool> {
    eprint!(
        "This removes every resource of env {env} in {} (account {}), including its audit \
         bucket and tables with their data.\nType the env name to confirm: ",
        cx.region, cx.account_id
    );
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer.trim() == env)
}
