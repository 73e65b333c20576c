//! The commands. They resolve settings, take locks, read and write state,
//! run the engine and print; they make no AWS call themselves.

mod baseline;
mod down;
mod fleet;
mod graph;
mod inspect;
mod preflight;
mod run;
mod shift;
mod unlock;
mod up;

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{Cli, Command};
use crate::settings::Settings;
use crate::ui::Printer;

/// What payops tells its caller through the exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    Success,
    /// A step failed, or `down` left something behind.
    Failure,
    /// Bad input: nothing was changed.
    Usage,
    /// Another payops holds the env's lock.
    Locked,
    /// Preflight found the account cannot hold the env as asked (a quota,
    /// Lambda's concurrency pool, the region's zones, credentials): nothing
    /// was changed.
    Refused,
    /// Ctrl-C: running steps finished and were recorded.
    Interrupted,
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> Self {
        ExitCode::from(match status {
            ExitStatus::Success => 0,
            ExitStatus::Failure => 1,
            ExitStatus::Usage => 2,
            ExitStatus::Locked => 3,
            ExitStatus::Refused => 4,
            ExitStatus::Interrupted => 130,
        })
    }
}

/// Input the user must fix; reported with exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// `up` stopped before its first change: the account cannot hold the env as
/// asked. Reported with exit code 4; the problems are its lines.
#[derive(Debug, thiserror::Error)]
#[error("preflight refused, nothing was changed:\n  {}", .0.join("\n  "))]
pub struct PreflightRefused(pub Vec<String>);

pub async fn run(cli: Cli) -> Result<ExitStatus> {
    let settings = Settings::resolve(&cli.global)?;
    let printer = Printer::new(settings.output, settings.verbosity);
    match cli.command {
        Command::Up(args) => up::up(&settings, printer, args).await,
        Command::Down(args) => down::down(&settings, printer, args).await,
        Command::Status(args) => inspect::status(&settings, printer, args).await,
        Command::Plan(args) => inspect::plan(&settings, printer, args).await,
        Command::Outputs(args) => inspect::outputs(&settings, printer, args).await,
        Command::Graph(args) => graph::graph(&settings, printer, args),
        Command::DestroyAll(args) => fleet::destroy_all(&settings, printer, args).await,
        Command::Unlock(args) => unlock::unlock(&settings, printer, args).await,
        Command::Shift(args) => shift::shift(&settings, printer, args).await,
        Command::Preflight(args) => preflight::preflight(&settings, printer, args).await,
        Command::Baseline(command) => baseline::baseline(&settings, printer, command).await,
    }
}

/// Maps an error that ended a command to its exit status.
pub fn exit_status_of(err: &anyhow::Error) -> ExitStatus {
    use crate::state::StateError;
    for cause in err.chain() {
        if let Some(state) = cause.downcast_ref::<StateError>() {
            return match state {
                StateError::Locked { .. } => ExitStatus::Locked,
                StateError::Corrupt { .. }
                | StateError::Mismatch { .. }
                | StateError::BadUrl(_) => ExitStatus::Usage,
                StateError::Io { .. } | StateError::Backend { .. } => ExitStatus::Failure,
            };
        }
        if cause.is::<PreflightRefused>() || cause.is::<baseline::BaselineInUse>() {
            return ExitStatus::Refused;
        }
        if cause.is::<UsageError>()
            || cause.is::<crate::settings::SettingsError>()
            || cause.is::<crate::naming::NameError>()
        {
            return ExitStatus::Usage;
        }
    }
    ExitStatus::Failure
}
