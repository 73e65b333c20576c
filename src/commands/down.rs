//! `payops down`: remove everything the env owns, in reverse dependency
//! order, then prove it with a final sweep.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};

use anyhow::Result;

use crate::cli::{EnvArgs, Shape};
use crate::engine::{Graph, Operation, Outcome, Record, StepId};
use crate::resources::{self, Context, sweep};
use crate::settings::Settings;
use crate::spec::{Certificate, NatMode};
use crate::state::{EnvState, LocalStore};
use crate::ui::Printer;
use crate::ui::summary::{RunReport, RunResult};

use super::run::{Recorder, finish, lock_holder, open, walk_env};
use super::{ExitStatus, UsageError};

pub async fn down(settings: &Settings, printer: Printer, args: EnvArgs) -> Result<ExitStatus> {
    let env = &args.env;
    let interactive = std::io::stdin().is_terminal();
    if !settings.yes && !interactive {
        return Err(UsageError(format!(
            "refusing to remove env {env} without confirmation: stdin is not a terminal; \
             pass --yes to confirm (nothing was changed)"
        ))
        .into());
    }
    let store = LocalStore::new(&settings.state_dir);
    let _lock = store.lock(env.as_str(), &lock_holder("down"))?;
    // Whatever shape created the env, remove all of it: one NAT per AZ is the
    // widest graph, and the self-signed certificate's step after the listener
    // that may still use it.
    let opened = open(settings, &store, env, &Shape::default(), |spec| {
        spec.nat = NatMode::PerAz;
        spec.certificate = Certificate::SelfSigned;
    })
    .await?;
    let cx = &opened.cx;

    if !settings.yes && !confirm(env.as_str(), cx)? {
        printer.warn("aborted: nothing was changed");
        return Ok(ExitStatus::Usage);
    }

    let graph = resources::graph(&opened.spec)?;
    let state = opened
        .state
        .unwrap_or_else(|| EnvState::new(env.as_str(), &cx.region, &cx.account_id));
    let previous = state.records();
    let recorder = Recorder::start(store.clone(), state, "down", Operation::Destroy, printer)?;
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
    recorder.finish(result);
    let clean = result == RunResult::Succeeded;
    if clean {
        // Nothing left to record: the env is gone.
        store.remove(env.as_str())?;
    }

    let api_calls = opened.counter.snapshot();
    let mut report = RunReport::new(
        "down",
        env.as_str(),
        (&cx.region, &cx.account_id),
        result,
        &walk,
        &api_calls,
    );
    report.leftovers = Some(&leftovers);
    let trailer = if clean {
        format!("final sweep: nothing tagged payops:env={env} or named for it is left\n")
    } else if leftovers.is_empty() {
        String::new()
    } else {
        let mut t =
            "final sweep: still present (run `payops down` again, or remove by hand):\n".to_owned();
        for l in &leftovers {
            t.push_str(&format!("  {l}\n"));
        }
        t
    };
    finish(printer, &report, &walk, &trailer)
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
        Operation::Observe,
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
