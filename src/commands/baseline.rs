//! `payops baseline up | status | down`: the account-and-region singletons
//! every env shares (see `resources::baseline` and docs/architecture.md).
//!
//! Not an engine walk: the items have no env, no dependencies between them
//! yet and nothing to record in an env's state; each is found in AWS on
//! every run (its payops tag says who created it), so a small flow is
//! clearer than a graph of one.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::aws::ApiCalls;
use crate::cli::{BaselineCommand, BaselineUpArgs};
use crate::naming::EnvName;
use crate::resources::baseline::{self, Account, Consent, ItemReport};
use crate::resources::{discovery, now};
use crate::settings::Settings;
use crate::ui::Printer;

use super::run::Session;
use super::{ExitStatus, UsageError};

/// `baseline down` while envs still exist in the region: they may rely on
/// what it would remove. Exit code 4, nothing changed.
#[derive(Debug, thiserror::Error)]
#[error(
    "baseline down refused, nothing was changed: {} env(s) still exist in {region}: {}; \
     remove them first (`payops down --env NAME` or `payops destroy-all`)",
    envs.len(), envs.join(", ")
)]
pub struct BaselineInUse {
    pub region: String,
    pub envs: Vec<String>,
}

#[derive(Serialize)]
struct Doc<'a> {
    command: &'static str,
    region: &'a str,
    account_id: &'a str,
    items: Vec<ItemReport>,
    api_calls: ApiCalls,
}

pub async fn baseline(
    settings: &Settings,
    printer: Printer,
    command: BaselineCommand,
) -> Result<ExitStatus> {
    if matches!(command, BaselineCommand::Down) && !settings.yes && !std::io::stdin().is_terminal()
    {
        return Err(UsageError(
            "refusing to remove the account baseline without confirmation: stdin is not a \
             terminal; pass --yes to confirm (nothing was changed)"
                .into(),
        )
        .into());
    }
    let session = Session::new(settings).await?;
    let region = settings.aws.region.as_str();
    let account = session
        .aws
        .account()
        .await
        .with_context(|| {
            format!(
                "cannot reach AWS in {region} (credentials: AWS_PROFILE or AWS_ACCESS_KEY_ID; \
                 emulator: --endpoint-url)"
            )
        })?
        .to_owned();
    let acct = Account {
        clients: &session.aws.clients,
        id: account.clone(),
        region: region.to_owned(),
        now: now(),
    };
    let (name, items) = match command {
        BaselineCommand::Up(BaselineUpArgs {
            enable_suspended_detector,
        }) => {
            let consent = Consent {
                enable_suspended_detector,
            };
            (
                "up",
                baseline::ensure(&acct, consent, &progress(printer)).await?,
            )
        }
        BaselineCommand::Status => ("status", baseline::observe(&acct).await?),
        BaselineCommand::Down => {
            let envs = live_envs(&session).await?;
            if !envs.is_empty() {
                return Err(BaselineInUse {
                    region: region.to_owned(),
                    envs,
                }
                .into());
            }
            if !settings.yes && !confirm(region, &account)? {
                printer.warn("aborted: nothing was changed");
                return Ok(ExitStatus::Usage);
            }
            ("down", baseline::destroy(&acct).await?)
        }
    };
    if name != "up" {
        // `up` told them as it went (`progress`).
        for item in &items {
            for note in &item.notes {
                printer.warn(&format!("{}: {note}", item.item));
            }
        }
    }
    let doc = Doc {
        command: name,
        region,
        account_id: &account,
        items,
        api_calls: session.aws.counter.snapshot(),
    };
    if printer.json_mode() {
        printer.json(&doc)?;
    } else {
        printer.data(&text(&doc))?;
    }
    Ok(ExitStatus::Success)
}

/// One line on stderr per baseline item as `up` settles it, and its notes.
pub fn progress(printer: Printer) -> impl Fn(&ItemReport) + Send + Sync {
    move |item: &ItemReport| {
        if item.action == "waiting" {
            printer.info(&format!("baseline {}: {}", item.item, item.state));
            return;
        }
        printer.info(&format!(
            "baseline {}: {}{}",
            item.item,
            item.action,
            item.id
                .as_deref()
                .map(|id| format!(" ({id})"))
                .unwrap_or_default()
        ));
        for note in &item.notes {
            printer.warn(&format!("{}: {note}", item.item));
        }
    }
}

/// What an env's `up` runs before its walk: the baseline it needs, adopted
/// or created, never changing an adopted item (no consent is implied).
pub async fn ensure_for_env(
    session: &Session,
    printer: Printer,
    account_id: &str,
    region: &str,
) -> Result<Vec<ItemReport>> {
    let acct = Account {
        clients: &session.aws.clients,
        id: account_id.to_owned(),
        region: region.to_owned(),
        now: now(),
    };
    baseline::ensure(&acct, Consent::default(), &progress(printer))
        .await
        .context(
            "the account baseline (GuardDuty, its alerts and findings export, AWS Config, \
             X-Ray encryption) could not be ensured, so the env was not touched; fix the \
             cause, or pass --no-baseline (PAYOPS_NO_BASELINE=1) where the account's baseline \
             is not payops' to manage",
        )
}

fn text(doc: &Doc) -> String {
    let mut out = format!(
        "{:<20} {:<44} {:<8} {:<16} ACTION\n",
        "ITEM", "ID", "OWNER", "STATE"
    );
    for i in &doc.items {
        let owner = match i.owner {
            Some(crate::resources::baseline::Owner::Payops) => "payops",
            Some(crate::resources::baseline::Owner::Adopted) => "adopted",
            None => "-",
        };
        out.push_str(&format!(
            "{:<20} {:<44} {:<8} {:<16} {}\n",
            i.item,
            i.id.as_deref().unwrap_or("-"),
            owner,
            i.state,
            i.action
        ));
    }
    out.push_str(&format!(
        "account baseline of {} in {}: {} mutating call(s)\n",
        doc.account_id, doc.region, doc.api_calls.mutating
    ));
    out
}

/// Every env of the region, found as `status` and `destroy-all` find them:
/// by payops' tags in AWS, and by the state backend's records.
async fn live_envs(session: &Session) -> Result<Vec<String>> {
    let inventory = discovery::inventory(&session.aws.clients, &session.aws.region).await?;
    let recorded = session.backend.envs().await?;
    let mut envs: Vec<String> = inventory
        .envs
        .into_keys()
        .chain(recorded.into_iter().filter(|n| EnvName::parse(n).is_ok()))
        .collect();
    envs.sort();
    envs.dedup();
    Ok(envs)
}

fn confirm(region: &str, account: &str) -> Result<bool> {
    eprint!(
        "This removes what payops created of the account baseline of account {account} in \
         {region} (GuardDuty's detector, its findings export with the exported findings, the \
         security alerts topic and rule, AWS Config's recorder with its bucket and role, X-Ray's \
         encryption setting (back to its default), and their KMS keys, scheduled for \
         deletion). Adopted items stay.\n\
         Type the region to confirm: "
    );
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer.trim() == region)
}
