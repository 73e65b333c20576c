//! Commands over every env of the account and region: `status` without
//! `--env`, and the nightly `destroy-all`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use anyhow::Result;
use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use futures_util::stream::{self, StreamExt};
use serde::Serialize;

use crate::cli::{DestroyAllArgs, Shape};
use crate::duration::format_age;
use crate::engine::{Outcome, error_chain};
use crate::naming::EnvName;
use crate::resources::baseline::{self, Account, ItemReport, Owner};
use crate::resources::discovery;
use crate::settings::{DEFAULT_PARALLELISM, Settings, Verbosity};
use crate::state::LastRun;
use crate::ui::Printer;
use crate::ui::summary::RunResult;

use super::ExitStatus;
use super::down::{open_widest, remove};
use super::run::{Session, observe};

/// One env as the fleet commands see it.
#[derive(Clone, Debug, Serialize)]
pub struct EnvRow {
    pub env: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_seconds: Option<u64>,
    pub protected: bool,
    /// Steps whose resources exist / steps the env's shape wants (not known
    /// when the env was not inspected).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources_present: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources_expected: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_run: Option<LastRun>,
    /// What exists, per step: what `destroy-all` would remove.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub present: Vec<PresentStep>,
    /// The env could not be inspected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PresentStep {
    pub step: String,
    pub kind: &'static str,
    pub ids: Vec<String>,
}

fn age_of(created_at: &str, now: SystemTime) -> Option<Duration> {
    let created = DateTime::from_str(created_at, Format::DateTime).ok()?;
    now.duration_since(SystemTime::try_from(created).ok()?).ok()
}

/// Sub-walks of many envs print no per-step progress of their own.
fn quiet(printer: Printer) -> Printer {
    Printer::new(printer.format, Verbosity::Quiet)
}

/// Every env the tags or the state backend know of and `wanted` accepts
/// (and what `down` kept of removed envs: retained snapshots and keys);
/// those `inspect_env` accepts are also looked at step by step (several at
/// once).
async fn survey(
    settings: &Settings,
    printer: Printer,
    session: &Session,
    wanted: impl Fn(&str) -> bool,
    inspect_env: impl Fn(&str) -> bool,
) -> Result<(Vec<EnvRow>, Vec<discovery::Retained>)> {
    let discovery::Inventory {
        envs: discovered,
        retained,
    } = discovery::inventory(&session.aws.clients, &session.aws.region).await?;
    let recorded = session.backend.envs().await?;
    let names: BTreeSet<String> = discovered
        .keys()
        .cloned()
        .chain(recorded.into_iter().filter(|n| EnvName::parse(n).is_ok()))
        .filter(|n| wanted(n))
        .collect();
    let now = SystemTime::now();
    let inner = quiet(printer);
    let mut rows: Vec<EnvRow> = stream::iter(names)
        .map(|name| {
            let found = discovered.get(&name).cloned().unwrap_or_default();
            let inspect_envs = inspect_env(&name);
            async move {
                let env = EnvName::parse(&name).expect("checked above");
                let mut row = EnvRow {
                    env: name,
                    age_seconds: found
                        .created_at
                        .as_deref()
                        .and_then(|c| age_of(c, now))
                        .map(|a| a.as_secs()),
                    created_at: found.created_at,
                    protected: found.protected,
                    resources_present: None,
                    resources_expected: None,
                    last_run: None,
                    present: Vec::new(),
                    error: None,
                };
                if inspect_envs
                    && let Err(e) = inspect(settings, inner, session, &env, &mut row).await
                {
                    row.error = Some(error_chain(e.as_ref()));
                }
                row
            }
        })
        .buffer_unordered(settings.parallelism)
        .collect()
        .await;
    rows.sort_by(|a, b| a.env.cmp(&b.env));
    Ok((rows, retained))
}

async fn inspect(
    settings: &Settings,
    printer: Printer,
    session: &Session,
    env: &EnvName,
    row: &mut EnvRow,
) -> Result<()> {
    let (opened, walk) = observe(settings, printer, session, env, &Shape::default()).await?;
    row.last_run = opened.state.as_ref().and_then(|s| s.last_run.clone());
    let (mut present, mut expected) = (0, 0);
    for s in &walk.steps {
        match &s.outcome {
            Outcome::InSync | Outcome::Drifted { .. } => {
                present += 1;
                expected += 1;
            }
            Outcome::Missing => expected += 1,
            Outcome::Failed { error } => anyhow::bail!("{}: {error}", s.id),
            _ => {}
        }
        if let Some(record) = &s.record
            && matches!(
                s.outcome,
                Outcome::InSync | Outcome::Drifted { .. } | Outcome::Unwanted
            )
        {
            row.present.push(PresentStep {
                step: s.id.to_string(),
                kind: s.kind,
                ids: record.resources.values().cloned().collect(),
            });
        }
    }
    row.resources_present = Some(present);
    row.resources_expected = Some(expected);
    Ok(())
}

fn count_text(row: &EnvRow) -> String {
    match (row.resources_present, row.resources_expected) {
        (Some(p), Some(e)) => format!("{p}/{e}"),
        _ => "-".into(),
    }
}

fn age_text(row: &EnvRow) -> String {
    row.age_seconds
        .map(|s| format_age(Duration::from_secs(s)))
        .unwrap_or_else(|| "-".into())
}

/// `payops status` without `--env`.
pub async fn status(
    settings: &Settings,
    printer: Printer,
    session: &Session,
) -> Result<ExitStatus> {
    let (rows, retained) = survey(settings, printer, session, |_| true, |_| true).await?;
    // The account baseline beside the envs; a role that may not read it
    // (or an emulator without GuardDuty) does not make status fail.
    let observed = match session.aws.account().await {
        Ok(account) => {
            let acct = Account {
                clients: &session.aws.clients,
                id: account.to_owned(),
                region: settings.aws.region.clone(),
                now: String::new(),
            };
            baseline::observe(&acct).await.map_err(anyhow::Error::from)
        }
        Err(e) => Err(anyhow::Error::from(e)),
    };
    let baseline = match observed {
        Ok(items) => items,
        Err(e) => {
            printer.warn(&format!("could not read the account baseline: {e}"));
            Vec::new()
        }
    };
    if printer.json_mode() {
        #[derive(Serialize)]
        struct Doc<'a> {
            region: &'a str,
            envs: Vec<EnvRow>,
            /// Kept on purpose by `down` (no env): never removed by payops.
            retained: &'a [discovery::Retained],
            /// The account-and-region singletons (`payops baseline`).
            baseline: &'a [ItemReport],
        }
        let envs = rows
            .iter()
            .cloned()
            .map(|mut r| {
                r.present.clear();
                r
            })
            .collect();
        printer.json(&Doc {
            region: &settings.aws.region,
            envs,
            retained: &retained,
            baseline: &baseline,
        })?;
    } else {
        let mut text = format!(
            "{:<18} {:>9} {:>9} {:>9}  LAST RUN\n",
            "ENV", "AGE", "RESOURCES", "PROTECTED"
        );
        for r in &rows {
            let last = r.last_run.as_ref().map_or_else(
                || "-".to_owned(),
                |l| format!("{} {} {}", l.command, l.result, l.started_at),
            );
            text.push_str(&format!(
                "{:<18} {:>9} {:>9} {:>9}  {}\n",
                r.env,
                age_text(r),
                count_text(r),
                if r.protected { "yes" } else { "no" },
                r.error.as_deref().map_or(last, |e| format!("error: {e}")),
            ));
        }
        text.push_str(&format!("{} envs in {}\n", rows.len(), settings.aws.region));
        for item in &baseline {
            let owner = match item.owner {
                Some(Owner::Payops) => "created by payops, ",
                Some(Owner::Adopted) => "adopted, ",
                None => "",
            };
            text.push_str(&format!(
                "baseline: {} {} ({owner}{})\n",
                item.item,
                item.id.as_deref().unwrap_or("-"),
                item.state
            ));
        }
        if !retained.is_empty() {
            text.push_str(
                "\nkept by `down` (no env; payops never removes these, see docs/runbook.md):\n",
            );
            for r in &retained {
                text.push_str(&format!("  {:<18} {}  ({})\n", r.env, r.resource, r.why));
            }
        }
        printer.data(&text)?;
    }
    Ok(if rows.iter().any(|r| r.error.is_some()) {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
}

/// The envs kept by name alone, whatever they hold or however old they are:
/// payops.toml's `never_destroy` (always applied, so a sweep's command line
/// cannot forget production) and `--exclude` (this run only). One mechanism,
/// two reasons, so the report says where a keep came from.
struct KeptByName<'a> {
    never_destroy: Vec<EnvName>,
    config: &'a str,
    exclude: &'a [EnvName],
}

impl<'a> KeptByName<'a> {
    fn new(settings: &'a Settings, args: &'a DestroyAllArgs) -> Self {
        Self {
            never_destroy: settings.file.never_destroy(),
            config: &settings.file_path,
            exclude: &args.exclude,
        }
    }

    fn reason(&self, env: &str) -> Option<String> {
        if self.never_destroy.iter().any(|n| n.as_str() == env) {
            return Some(format!("never_destroy in {}", self.config));
        }
        if self.exclude.iter().any(|e| e.as_str() == env) {
            return Some("excluded".into());
        }
        None
    }
}

/// Why an env is not removed.
fn keep_reason(row: &EnvRow, args: &DestroyAllArgs, by_name: &KeptByName) -> Option<String> {
    if row.protected {
        return Some("protected (up --protect)".into());
    }
    if let Some(reason) = by_name.reason(&row.env) {
        return Some(reason);
    }
    if let Some(min) = args.older_than {
        match row.age_seconds {
            None => return Some("age unknown (no payops:created-at found)".into()),
            Some(age) if age < min.as_secs() => {
                return Some(format!("younger than {}", format_age(min)));
            }
            Some(_) => {}
        }
    }
    if let Some(e) = &row.error {
        return Some(format!("could not be inspected: {e}"));
    }
    None
}

#[derive(Debug, Serialize)]
struct Kept {
    env: String,
    reason: String,
}

#[derive(Debug, Serialize)]
struct EnvResult {
    env: String,
    /// removed | failed
    result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    leftovers: Vec<String>,
    wall_ms: u64,
}

#[derive(Debug, Serialize)]
struct DestroyAllReport {
    region: String,
    dry_run: bool,
    /// Envs to remove (dry run) or attempted, with what existed.
    envs: Vec<EnvRow>,
    kept: Vec<Kept>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    results: Vec<EnvResult>,
    wall_ms: u64,
}

pub async fn destroy_all(
    settings: &Settings,
    printer: Printer,
    args: DestroyAllArgs,
) -> Result<ExitStatus> {
    let started = tokio::time::Instant::now();
    let session = Session::new(settings).await?;
    // Envs outside the prefix are not even looked at: a nightly sweep of `pr`
    // envs has no business reading production. The prefix matches at a name
    // boundary only (`pr` never reaches `prod`): see `EnvPrefix`.
    let within = |n: &str| args.env_prefix.as_ref().is_none_or(|p| p.matches(n));
    let by_name = KeptByName::new(settings, &args);
    // A dry run shows what exists; a real run need not look first: each
    // env's `down` reports what it removed. Envs kept by name are listed as
    // kept but never read step by step.
    let dry_run = !settings.yes;
    let (rows, _retained) = survey(settings, printer, &session, within, |n| {
        dry_run && by_name.reason(n).is_none()
    })
    .await?;
    let (mut targets, mut kept) = (Vec::new(), Vec::new());
    for row in rows {
        match keep_reason(&row, &args, &by_name) {
            Some(reason) => kept.push(Kept {
                env: row.env,
                reason,
            }),
            None => targets.push(row),
        }
    }

    let results = if dry_run {
        Vec::new()
    } else {
        remove_all(settings, printer, &session, &targets).await
    };
    let failed = results.iter().filter(|r| r.result != "removed").count();
    let report = DestroyAllReport {
        region: settings.aws.region.clone(),
        dry_run,
        envs: targets,
        kept,
        results,
        wall_ms: started.elapsed().as_millis() as u64,
    };
    if let Some(path) = &args.report {
        let mut json = serde_json::to_vec_pretty(&report)?;
        json.push(b'\n');
        std::fs::write(path, json)?;
    }
    if printer.json_mode() {
        printer.json(&report)?;
    } else {
        printer.data(&render(&report))?;
    }
    Ok(if failed > 0 {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
}

/// Runs `down` for each env, several at once; one env failing does not stop
/// the others.
async fn remove_all(
    settings: &Settings,
    printer: Printer,
    session: &Session,
    targets: &[EnvRow],
) -> Vec<EnvResult> {
    // --parallelism bounds the envs; each env walks at the default width.
    let mut per_env = settings.clone();
    per_env.parallelism = DEFAULT_PARALLELISM;
    let per_env = &per_env;
    let inner = quiet(printer);
    stream::iter(targets)
        .map(|row| async move {
            let started = tokio::time::Instant::now();
            let env = EnvName::parse(&row.env).expect("discovered names are valid");
            printer.info(&format!("removing env {env} ..."));
            let removal = session
                .locked(&env, "destroy-all", async {
                    let opened = open_widest(per_env, session, &env, false).await?;
                    remove(per_env, inner, session, opened).await
                })
                .await;
            let wall_ms = started.elapsed().as_millis() as u64;
            let outcome = match removal {
                Ok(r) if r.result == RunResult::Succeeded => EnvResult {
                    env: row.env.clone(),
                    result: "removed",
                    error: None,
                    leftovers: Vec::new(),
                    wall_ms,
                },
                Ok(r) => EnvResult {
                    env: row.env.clone(),
                    result: "failed",
                    error: r
                        .walk
                        .failures()
                        .filter_map(|f| match &f.outcome {
                            Outcome::Failed { error } => Some(format!("{}: {error}", f.id)),
                            _ => None,
                        })
                        .reduce(|a, b| format!("{a}; {b}")),
                    leftovers: r.leftovers,
                    wall_ms,
                },
                Err(e) => EnvResult {
                    env: row.env.clone(),
                    result: "failed",
                    error: Some(error_chain(e.as_ref())),
                    leftovers: Vec::new(),
                    wall_ms,
                },
            };
            printer.info(&format!(
                "{} env {env} in {:.1}s{}",
                outcome.result,
                wall_ms as f64 / 1000.0,
                outcome
                    .error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ));
            outcome
        })
        .buffer_unordered(settings.parallelism)
        .collect()
        .await
}

fn render(report: &DestroyAllReport) -> String {
    let mut out = String::new();
    let verb = if report.dry_run {
        "would remove"
    } else {
        "removed or tried"
    };
    out.push_str(&format!(
        "destroy-all in {}: {verb} {} env(s), keeping {}{}\n",
        report.region,
        report.envs.len(),
        report.kept.len(),
        if report.dry_run {
            " (dry run: nothing was changed; add --yes to remove)"
        } else {
            ""
        }
    ));
    let results: BTreeMap<&str, &EnvResult> =
        report.results.iter().map(|r| (r.env.as_str(), r)).collect();
    for row in &report.envs {
        let status = match results.get(row.env.as_str()) {
            Some(r) => format!("{} in {:.1}s", r.result, r.wall_ms as f64 / 1000.0),
            None => "would be removed".into(),
        };
        out.push_str(&format!(
            "- {} (age {}, resources {}): {status}\n",
            row.env,
            age_text(row),
            count_text(row)
        ));
        if report.dry_run {
            for p in &row.present {
                out.push_str(&format!(
                    "    {} ({}): {}\n",
                    p.step,
                    p.kind,
                    p.ids.join(", ")
                ));
            }
        }
        if let Some(r) = results.get(row.env.as_str()) {
            if let Some(e) = &r.error {
                out.push_str(&format!("    error: {e}\n"));
            }
            for l in &r.leftovers {
                out.push_str(&format!("    left: {l}\n"));
            }
        }
    }
    for k in &report.kept {
        out.push_str(&format!("= {} kept: {}\n", k.env, k.reason));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn row(env: &str, age_seconds: u64, protected: bool) -> EnvRow {
        EnvRow {
            env: env.into(),
            created_at: None,
            age_seconds: Some(age_seconds),
            protected,
            resources_present: None,
            resources_expected: None,
            last_run: None,
            present: Vec::new(),
            error: None,
        }
    }

    fn args(flags: &[&str]) -> DestroyAllArgs {
        let cli = Cli::try_parse_from(["payops", "destroy-all"].iter().chain(flags)).unwrap();
        match cli.command {
            Command::DestroyAll(args) => args,
            _ => unreachable!(),
        }
    }

    fn settings(config: &str) -> Settings {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("payops.toml");
        std::fs::write(&path, config).unwrap();
        let cli = Cli::try_parse_from([
            "payops",
            "--config",
            path.to_str().unwrap(),
            "--region",
            "us-east-1",
            "graph",
        ])
        .unwrap();
        Settings::resolve(&cli.global).unwrap()
    }

    #[test]
    fn never_destroy_and_exclude_keep_envs_and_say_why() {
        let settings = settings("never_destroy = [\"prod\", \"staging\"]\n");
        let args = args(&["--older-than", "1h", "--exclude", "pr9"]);
        let by_name = KeptByName::new(&settings, &args);
        let reason = |r: &EnvRow| keep_reason(r, &args, &by_name);
        let never = reason(&row("prod", 99_999, false)).unwrap();
        assert!(never.starts_with("never_destroy in "), "{never}");
        assert!(never.ends_with("payops.toml"), "{never}");
        assert_eq!(reason(&row("pr9", 99_999, false)).unwrap(), "excluded");
        assert_eq!(
            reason(&row("staging", 99_999, true)).unwrap(),
            "protected (up --protect)"
        );
        assert_eq!(reason(&row("pr7", 99_999, false)), None);
        assert!(
            reason(&row("pr7", 60, false))
                .unwrap()
                .starts_with("younger than")
        );
    }
}
