//! `payops unlock`: break an env's lock left behind by a runner that died.

use anyhow::Result;

use crate::cli::UnlockArgs;
use crate::settings::Settings;
use crate::ui::Printer;

use super::run::Session;
use super::{ExitStatus, UsageError};

pub async fn unlock(settings: &Settings, printer: Printer, args: UnlockArgs) -> Result<ExitStatus> {
    let env = &args.env.env;
    if !args.force {
        return Err(UsageError(format!(
            "unlock breaks the lock of env {env} even if its holder is still running; if you \
             are sure the holder is gone, pass --force"
        ))
        .into());
    }
    let session = Session::new(settings).await?;
    match session.backend.unlock(env.as_str()).await? {
        Some(holder) => printer.data(&format!("unlocked env {env} (it was held by {holder})"))?,
        None => printer.data(&format!("env {env} was not locked"))?,
    }
    Ok(ExitStatus::Success)
}
