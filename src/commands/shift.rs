//! `payops shift`: move payment traffic between the blue and green target
//! groups of the env's ALB, at once or in steps, stopping and sending
//! everything back to blue if one of the env's alarms fires.
//!
//! The weights belong to the operator: `up` sets them once, when it creates
//! the listener, and never again. This command takes the env's lock, so it
//! cannot race an `up` (which decides whether green may take new code from
//! the same weights).

use std::time::Duration;

use anyhow::{Result, bail};
use serde::Serialize;

use crate::cli::{Shape, ShiftArgs};
use crate::resources::traffic::{self, Alarm, Traffic, Weights};
use crate::settings::Settings;
use crate::ui::Printer;

use super::ExitStatus;
use super::run::{Session, open};

const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// How often the alarms are read while waiting between steps.
const ALARM_POLL: Duration = Duration::from_secs(15);

#[derive(Serialize)]
struct ShiftDoc<'a> {
    env: &'a str,
    /// shifted | promoted | rolled-back | stopped-by-alarm
    result: &'static str,
    /// Green percentages set, in order.
    steps: Vec<u32>,
    traffic: &'a Traffic,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    alarms: Vec<Alarm>,
}

fn firing(alarms: &[Alarm]) -> Vec<String> {
    alarms
        .iter()
        .filter(|a| a.firing)
        .map(|a| a.name.clone())
        .collect()
}

pub async fn shift(settings: &Settings, printer: Printer, args: ShiftArgs) -> Result<ExitStatus> {
    let session = Session::new(settings).await?;
    session
        .locked(
            &args.env.env,
            "shift",
            run(settings, printer, &session, &args),
        )
        .await
}

async fn run(
    settings: &Settings,
    printer: Printer,
    session: &Session,
    args: &ShiftArgs,
) -> Result<ExitStatus> {
    let env = &args.env.env;
    let opened = open(settings, session, env, &Shape::default(), |_| {}).await?;
    let cx = &opened.cx;

    let Some(mut traffic) = traffic::read(cx).await? else {
        bail!(
            "env {env} has no ALB listener forwarding to its blue and green target groups: \
             run `payops up --env {env}` first"
        );
    };
    let target = match (args.green, args.promote, args.rollback) {
        (Some(green), _, _) => green,
        (None, true, _) => 100,
        _ => 0,
    };
    let from = traffic.weights.green_percent();
    let plan = traffic::plan(from, target, args.step);
    let interval = args.interval.unwrap_or(DEFAULT_INTERVAL);
    printer.info(&format!(
        "payops shift {env}: {} now; to green {target}%{}",
        traffic,
        match args.step {
            Some(step) => format!(" by {step} points every {}s", interval.as_secs()),
            None => String::new(),
        }
    ));

    let mut done = Vec::new();
    let mut result = if args.rollback {
        "rolled-back"
    } else {
        "shifted"
    };
    let mut alarms = Vec::new();
    for (i, &green) in plan.iter().enumerate() {
        // Moving towards green needs a healthy env; moving back never waits.
        if !args.rollback && green > traffic.weights.green_percent() {
            alarms = traffic::alarms(cx).await?;
            let fired = firing(&alarms);
            if !fired.is_empty() {
                rollback(cx, printer, &mut traffic, &fired).await?;
                result = "stopped-by-alarm";
                break;
            }
        }
        traffic::set(cx, &mut traffic, Weights::with_green(green)).await?;
        done.push(green);
        printer.info(&format!("traffic: {}", traffic.weights));
        let last = i + 1 == plan.len();
        if args.step.is_some()
            && !last
            && let Some(fired) = watch(cx, printer, interval).await?
        {
            rollback(cx, printer, &mut traffic, &fired).await?;
            result = "stopped-by-alarm";
            alarms = traffic::alarms(cx).await?;
            break;
        }
    }
    if args.promote && result == "shifted" {
        // Green serves everything; make its version blue's and hand the
        // traffic back to blue, so green is the free slot for the next
        // release. Users see the same code throughout.
        traffic::blue_takes_green_version(cx, &mut traffic).await?;
        traffic::set(cx, &mut traffic, Weights::DEFAULT).await?;
        done.push(0);
        result = "promoted";
        printer.info(&format!(
            "promoted: blue now runs version {}",
            traffic.blue_version.as_deref().unwrap_or("?")
        ));
    }

    let doc = ShiftDoc {
        env: env.as_str(),
        result,
        steps: done,
        traffic: &traffic,
        alarms,
    };
    if printer.json_mode() {
        printer.json(&doc)?;
    } else {
        printer.data(&format!("env {env}: {result}; traffic {traffic}\n"))?;
    }
    Ok(if result == "stopped-by-alarm" {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
}

/// Waits `interval`, reading the alarms every few seconds; the names of the
/// ones that fired, if any did.
async fn watch(
    cx: &crate::resources::Context,
    printer: Printer,
    interval: Duration,
) -> Result<Option<Vec<String>>> {
    let deadline = tokio::time::Instant::now() + interval;
    loop {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(ALARM_POLL.min(deadline - now)).await;
        let fired = firing(&traffic::alarms(cx).await?);
        if !fired.is_empty() {
            return Ok(Some(fired));
        }
        printer.info(&format!(
            "watching the env's alarms: {}s to the next step",
            deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .as_secs()
        ));
    }
}

async fn rollback(
    cx: &crate::resources::Context,
    printer: Printer,
    traffic: &mut Traffic,
    fired: &[String],
) -> Result<()> {
    printer.warn(&format!(
        "alarm {} in ALARM: sending all traffic back to blue",
        fired.join(", ")
    ));
    traffic::set(cx, traffic, Weights::DEFAULT).await?;
    Ok(())
}
