//! Every command, flag and help text, in one place.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::naming::{ENV_RULE, EnvName, EnvPrefix};
use crate::spec::{ApiAuth, Certificate, Cidr, Concurrency, DbSecret, NatMode};

const EXIT_CODES: &str = "\
Exit codes:
  0    success (`down`: and its final sweep found nothing left)
  1    a step failed, AWS could not be reached, or `down` left something behind
       (named in the summary)
  2    bad input (flag, env name, missing --yes, unreadable state): nothing changed
  3    another payops holds the env's lock
  4    preflight refused (`up`, `preflight`): the account cannot hold the env as asked
       (a quota, Lambda's concurrency pool, the region's zones, credentials); nothing changed;
       `baseline down`: envs still exist in the region
  130  interrupted: running steps finished and were recorded; run again to resume";

#[derive(Debug, Parser)]
#[command(
    name = "payops",
    version,
    about = "Build, inspect and remove a PCI-minded payment environment on AWS",
    long_about = "payops builds, inspects and removes a complete payment-processing \
environment (network, KMS keys, data stores, ...) on AWS by calling the AWS SDK directly. \
Every command is idempotent and works without a state file: resources are found by their \
deterministic names and payops ownership tags.",
    after_help = EXIT_CODES,
    after_long_help = EXIT_CODES,
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// AWS region to work in [default: us-east-1]
    #[arg(long, global = true, env = "AWS_REGION", hide_env_values = true)]
    pub region: Option<String>,

    /// Named AWS profile for credentials
    #[arg(long, global = true, env = "AWS_PROFILE", hide_env_values = true)]
    pub profile: Option<String>,

    /// Send every AWS call to this endpoint (an emulator such as LocalStack or moto)
    #[arg(
        long,
        global = true,
        env = "AWS_ENDPOINT_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub endpoint_url: Option<String>,

    /// How many steps may run at once (a step waiting on others takes no slot)
    #[arg(long, global = true, env = "PAYOPS_PARALLELISM", hide_env_values = true, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallelism: Option<u16>,

    /// Result format on stdout; progress and logs always go to stderr
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Text, env = "PAYOPS_OUTPUT", hide_env_values = true)]
    pub output: OutputFormat,

    /// More detail on stderr (-v: step messages, -vv: AWS SDK debug logs)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Print only results and errors
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Answer yes to confirmations (required for `down` when stdin is not a terminal)
    #[arg(long, short = 'y', global = true)]
    pub yes: bool,

    /// Directory of the state files (<dir>/<env>.json)
    #[arg(
        long,
        global = true,
        env = "PAYOPS_STATE_DIR",
        hide_env_values = true,
        value_name = "DIR"
    )]
    pub state_dir: Option<PathBuf>,

    /// Keep state in S3 (s3://BUCKET/PREFIX), shared by CI runners, with a lock per env
    #[arg(
        long,
        global = true,
        env = "PAYOPS_STATE",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub state: Option<String>,

    /// Settings file [default: payops.toml, if present]
    #[arg(
        long,
        global = true,
        env = "PAYOPS_CONFIG",
        hide_env_values = true,
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or converge an env; safe to run again at any time
    #[command(
        after_help = "Examples:\n  payops up --env pr123\n  payops up --env pr123 --nat single --output json"
    )]
    Up(UpArgs),

    /// Remove everything an env owns, then prove nothing tagged for it is left
    #[command(
        after_help = "Examples:\n  payops down --env pr123          # asks for confirmation\n  payops down --env pr123 --yes    # in CI"
    )]
    Down(DownArgs),

    /// Show every env (no --env), or what exists for one env, step by step
    #[command(
        after_help = "Examples:\n  payops status                   # every env: age, resources, protection\n  payops status --env pr123       # one env, per step, with drift"
    )]
    Status(StatusArgs),

    /// Show what `up` would change, without changing anything
    #[command(after_help = "Example:\n  payops plan --env pr123")]
    Plan(PlanArgs),

    /// Print an env's outputs (the flat map written to cfn-outputs/flat-outputs.json)
    #[command(after_help = "Example:\n  payops outputs --env pr123 --output json")]
    Outputs(EnvArgs),

    /// Print the step graph: every step and why it depends on what it does
    Graph(GraphArgs),

    /// Remove every env matching the filters; a dry run unless --yes
    #[command(
        name = "destroy-all",
        after_help = DESTROY_ALL_HELP
    )]
    DestroyAll(DestroyAllArgs),

    /// Break an env's lock left behind by a runner that died
    #[command(
        after_help = "Example:\n  payops unlock --env pr123 --force --state s3://ci-state/payops"
    )]
    Unlock(UnlockArgs),

    /// Move payment traffic between the blue and green target groups of the env's ALB
    #[command(after_help = SHIFT_HELP)]
    Shift(ShiftArgs),

    /// Check that the account can hold the env as asked, without changing anything
    #[command(after_help = PREFLIGHT_HELP)]
    Preflight(ShapeArgs),

    /// The account baseline: singletons every env of the account and region shares
    /// (GuardDuty's detector), adopted when they exist, created when they do not
    #[command(subcommand, after_help = BASELINE_HELP)]
    Baseline(BaselineCommand),
}

const BASELINE_HELP: &str = "\
What exists is adopted, never duplicated: payops creates an item only when the account has
none, and tags only what it created (payops:scope=account-baseline). An adopted item is never
changed without the operator's consent and never deleted. `down` of an env never touches the
baseline; `baseline down` removes only what payops created, and is refused (exit 4) while any
env exists in the region.

Examples:
  payops baseline up
  payops baseline status --output json
  payops baseline down --yes";

#[derive(Debug, Subcommand)]
pub enum BaselineCommand {
    /// Adopt or create the baseline; safe to run again (a converged run changes nothing)
    Up(BaselineUpArgs),
    /// Show each baseline item: whether it exists, and whether payops created or adopted it
    Status,
    /// Remove what payops created of the baseline; refused while any env exists in the region
    Down,
}

#[derive(Debug, Args)]
pub struct BaselineUpArgs {
    /// Re-enable an adopted GuardDuty detector that is suspended (payops otherwise leaves a
    /// detector it did not create exactly as it is)
    #[arg(long)]
    pub enable_suspended_detector: bool,
}

const PREFLIGHT_HELP: &str = "\
Checks, one line each (ok, PROBLEM with its remedy, or not checked when AWS refused the read):
  credentials         STS GetCallerIdentity, and the region
  region-zones        three available zones in the region
  lambda-concurrency  the reservations fit the account's pool (new accounts: none do)
  elastic-ips         one per NAT gateway, against vpc-max-elastic-ips and what is allocated
  vpcs                one VPC, against AWS's default quota of 5 (PAYOPS_QUOTA_VPCS if raised)
  internet-gateways   one gateway, against the default of 5 (PAYOPS_QUOTA_INTERNET_GATEWAYS)
Only what the env does not have yet counts. `up` runs the same checks before its first change.

Examples:
  payops preflight --env pr123
  payops preflight --env pr123 --nat single --reserved-concurrency auto --output json";

const DESTROY_ALL_HELP: &str = "\
Examples:
  payops destroy-all --older-than 24h --env-prefix pr          # what would go
  payops destroy-all --older-than 24h --env-prefix pr --yes    # nightly job

A prefix matches at a name boundary only: `--env-prefix pr` takes pr, pr123 and pr-45,
never prod, preprod or prometheus (`pr-` takes only pr-...).

Only resources carrying payops' ownership tags are ever touched, whatever their names;
envs brought up with `up --protect`, envs in --exclude and envs listed in payops.toml's
`never_destroy = [\"prod\", ...]` are never removed.";

const SHIFT_HELP: &str = "\
Green is the candidate: `up` deploys new transaction-processing code to alias green while
green carries no traffic. Shifting moves the ALB listener's weights; `up` never changes them.

Examples:
  payops shift --env pr123 --green 10                        # 10% to green
  payops shift --env pr123 --green 100 --step 10 --interval 60s
  payops shift --env pr123 --promote --step 25 --interval 5m  # release: green becomes blue
  payops shift --env pr123 --rollback                        # all traffic to blue, at once

Before and during each step payops checks the env's shift-gate alarms: those of the
request path (API p99 latency and 5XX rate, transaction errors and throttles, ALB 5XX),
tagged payops:shift-gate=true. One in ALARM stops the shift and sends all traffic back to
blue (exit 1).";

fn parse_env(s: &str) -> Result<EnvName, String> {
    EnvName::parse(s).map_err(|e| match e {
        crate::naming::NameError::Env { problem, .. } => format!("{problem}; {ENV_RULE}"),
        other => other.to_string(),
    })
}

#[derive(Debug, Args)]
pub struct EnvArgs {
    /// The env to act on (1-16 chars: lowercase letters, digits, hyphens)
    #[arg(long, env = "PAYOPS_ENV", hide_env_values = true, value_name = "NAME", value_parser = parse_env)]
    pub env: EnvName,
}

/// The env's desired shape; unset values come from payops.toml, then from
/// what the last `up` recorded, then from the defaults.
#[derive(Debug, Args, Default)]
pub struct Shape {
    /// VPC CIDR, /16 to /24 [default: 10.0.0.0/16]
    #[arg(long, value_name = "CIDR")]
    pub vpc_cidr: Option<Cidr>,

    /// NAT gateways: one per AZ, or a single one for cheap envs [default: per-az]
    #[arg(long, value_enum)]
    pub nat: Option<NatMode>,

    /// CostCenter cost-allocation tag [default: payments]
    #[arg(
        long,
        env = "PAYOPS_COST_CENTER",
        hide_env_values = true,
        value_name = "NAME"
    )]
    pub cost_center: Option<String>,

    /// The internal ALB's TLS certificate: an ACM ARN in the env's region, or self-signed
    /// (generated and imported by payops) [default: self-signed]
    #[arg(long, value_name = "ARN")]
    pub certificate_arn: Option<Certificate>,

    /// Reserved concurrency per function: N, validation=N,fraud=N,transaction=N, auto (the
    /// defaults if the account can hold them, else none) or none
    /// [default: validation=5,fraud=5,transaction=10]
    #[arg(long, value_name = "N")]
    pub reserved_concurrency: Option<Concurrency>,

    /// Tag the env as protected: `destroy-all` never removes it and the Aurora cluster gets
    /// deletion protection (--protect=false lifts both)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub protect: Option<bool>,

    /// Aurora PostgreSQL version, MAJOR.MINOR [default: 16.6]
    #[arg(long, value_name = "VERSION", value_parser = crate::spec::parse_engine_version)]
    pub db_version: Option<String>,

    /// Aurora instance class of provisioned instances (db.serverless needs --db-capacity); given
    /// without --db-capacity it turns Serverless v2 off [default: db.r6g.large]
    #[arg(long, value_name = "CLASS", value_parser = crate::spec::parse_instance_class)]
    pub db_instance_class: Option<String>,

    /// Aurora Serverless v2 capacity range in ACUs (steps of 0.5; MIN 0 pauses when idle, MAX
    /// 1-256): the cluster scales every instance (db.serverless) within it; `off` for
    /// provisioned instances of --db-instance-class [default for a new env: 0.5-4]
    #[arg(long, value_name = "MIN-MAX|off", value_parser = crate::spec::check_capacity)]
    pub db_capacity: Option<String>,

    /// Aurora readers beside the writer, 0-4 [default: 2]
    #[arg(long, value_name = "N", value_parser = crate::spec::parse_readers)]
    pub db_readers: Option<u8>,

    /// Days of automated Aurora backups, 1-35 [default: 7]
    #[arg(long, value_name = "DAYS", value_parser = crate::spec::parse_backup_days)]
    pub db_backup_days: Option<u8>,

    /// Create the cluster from this Secrets Manager secret (JSON with username and
    /// password) instead of a generated one; payops never rotates or deletes it
    #[arg(long, value_name = "ARN")]
    pub db_secret_arn: Option<DbSecret>,

    /// Email the env's alarms to ADDRESS (repeatable; SNS mails each one a confirmation
    /// link first). Once given, the alarm topics' email subscriptions are exactly these
    #[arg(long = "alert-email", value_name = "ADDRESS", value_parser = parse_alert_email)]
    pub alert_email: Vec<String>,

    /// How callers of the payments API authenticate: SigV4-signed IAM calls, or API keys of
    /// the env's usage plan (throttled and capped per key) [default: iam]
    #[arg(long, value_enum, value_name = "MODE")]
    pub api_auth: Option<ApiAuth>,

    /// Admit only calls from CALLER: a CIDR, a VPC endpoint id (vpce-...) or, with IAM auth,
    /// an AWS account id (repeatable; any other caller is refused by the API's resource
    /// policy). Once given, the list is exactly these; `--api-allow any` clears it
    #[arg(long = "api-allow", value_name = "CALLER", value_parser = parse_api_caller)]
    pub api_allow: Vec<String>,

    /// Block requests from these countries at the WAF: ISO 3166-1 alpha-2 codes,
    /// comma-separated ("" for none) [default: none]
    #[arg(long, value_name = "CC", value_delimiter = ',')]
    pub waf_block_countries: Option<Vec<String>>,

    /// Requests per client IP per 5 minutes before the WAF blocks it, 10-1000
    /// [default: 1000]
    #[arg(long, value_name = "N", value_parser = crate::spec::parse_waf_rate_limit)]
    pub waf_rate_limit: Option<u32>,

    /// The event backbone (SQS queues with dead-letter queues, their alarms): on, or off to
    /// leave it out of a cheap env [default: on]
    #[arg(long, value_name = "on|off", value_parser = crate::spec::parse_events)]
    pub events: Option<bool>,

    /// The batch tier (an Auto Scaling group running the nightly settlement report): on, or
    /// off to leave it out [default: off]
    #[arg(long, value_name = "on|off", value_parser = crate::spec::parse_events)]
    pub batch: Option<bool>,

    /// The batch group's instances: MIN-DESIRED-MAX, at most 10 [default: 0-0-2]
    #[arg(long, value_name = "MIN-DESIRED-MAX")]
    pub batch_capacity: Option<String>,

    /// The batch instances' type, a Graviton (arm64) one [default: t4g.small]
    #[arg(long, value_name = "TYPE")]
    pub batch_instance_type: Option<String>,
    /// The private Route 53 zone with the payments failover records, health checks and
    /// their alarms, and the maintenance ALB: on, or off to leave DNS out of a cheap env
    /// [default: off]
    #[arg(long, value_name = "on|off", value_parser = crate::spec::parse_dns)]
    pub dns: Option<bool>,
}

/// Checked while parsing, so a typo is a usage error before any AWS call;
/// kept as text because `any` is not a caller.
fn parse_api_caller(s: &str) -> Result<String, String> {
    if s.trim() == "any" {
        return Ok("any".into());
    }
    s.parse::<crate::spec::ApiCaller>().map(|c| c.to_string())
}

fn parse_alert_email(s: &str) -> Result<String, String> {
    crate::spec::parse_alert_email(s)
}

#[derive(Debug, Args)]
pub struct ShapeArgs {
    #[command(flatten)]
    pub env: EnvArgs,
    #[command(flatten)]
    pub shape: Shape,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub target: ShapeArgs,

    /// Leave the account baseline out of the plan, as `up --no-baseline` leaves it alone.
    /// Without it, the plan also shows what `up` would do to the baseline first
    #[arg(long, env = "PAYOPS_NO_BASELINE", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_baseline: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// One env to show step by step; without it, every env is listed
    #[arg(
        long,
        env = "PAYOPS_ENV",
        hide_env_values = true,
        value_name = "NAME",
        value_parser = parse_env
    )]
    pub env: Option<EnvName>,
    #[command(flatten)]
    pub shape: Shape,
}

/// Checked while parsing, so a bad prefix is a usage error (exit 2) before
/// any AWS call.
fn parse_env_prefix(s: &str) -> Result<EnvPrefix, String> {
    EnvPrefix::parse(s)
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    crate::duration::parse(s)
}

#[derive(Debug, Args)]
pub struct DestroyAllArgs {
    /// Only envs created at least this long ago (e.g. 24h, 90m, 7d; 0s: all)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub older_than: Option<std::time::Duration>,

    /// Only envs within this prefix, at a name boundary: pr takes pr, pr123 and pr-45, never
    /// prod or preprod; pr- takes only pr-...
    #[arg(long, value_name = "PREFIX", value_parser = parse_env_prefix)]
    pub env_prefix: Option<EnvPrefix>,

    /// Never these envs (repeatable), beside payops.toml's never_destroy list
    #[arg(long, value_name = "NAME", num_args = 1.., value_parser = parse_env)]
    pub exclude: Vec<EnvName>,

    /// Also write the result as JSON to this file
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    #[command(flatten)]
    pub env: EnvArgs,

    /// Keep a final snapshot of the Aurora cluster (tagged payops:final-snapshot) instead of
    /// deleting its data with it
    #[arg(long)]
    pub final_snapshot: bool,
}

#[derive(Debug, Args)]
pub struct UnlockArgs {
    #[command(flatten)]
    pub env: EnvArgs,

    /// Really break the lock (without it, only shows who holds it)
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub env: EnvArgs,
    #[command(flatten)]
    pub shape: Shape,

    /// Where to write the flat outputs map
    #[arg(
        long,
        env = "PAYOPS_OUTPUTS_FILE",
        hide_env_values = true,
        value_name = "FILE"
    )]
    pub outputs_file: Option<PathBuf>,

    /// Leave the account baseline (GuardDuty, its HIGH-findings alerts and findings export,
    /// AWS Config's recorder, X-Ray's encryption) alone: for accounts where another team or the organization manages it. Without it,
    /// `up` adopts or creates the baseline before the env, as `payops baseline up` does
    #[arg(long, env = "PAYOPS_NO_BASELINE", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_baseline: bool,
}

#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("target")
        .required(true)
        .args(["green", "promote", "rollback"])
))]
pub struct ShiftArgs {
    #[command(flatten)]
    pub env: EnvArgs,

    /// Send PERCENT of the traffic to green and the rest to blue
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u32).range(0..=100))]
    pub green: Option<u32>,

    /// All traffic to green, then point alias blue at green's version and send the traffic
    /// back to blue: the release is done and green is free for the next one
    #[arg(long)]
    pub promote: bool,

    /// All traffic to blue at once (no steps, no alarm check)
    #[arg(long, conflicts_with_all = ["step", "interval"])]
    pub rollback: bool,

    /// Move N percentage points at a time
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub step: Option<u32>,

    /// How long to watch the alarms after each step, e.g. 30s, 5m [default: 60s]
    #[arg(long, value_name = "DURATION", requires = "step", value_parser = parse_interval)]
    pub interval: Option<std::time::Duration>,
}

/// A shift interval: 1s to 24h, e.g. `30s`, `5m`, `1h`.
fn parse_interval(s: &str) -> Result<std::time::Duration, String> {
    let d = crate::duration::parse(s)?;
    if d.is_zero() || d > std::time::Duration::from_secs(24 * 3600) {
        return Err(format!("{s:?}: between 1s and 24h"));
    }
    Ok(d)
}

#[derive(Debug, Args)]
pub struct GraphArgs {
    #[command(flatten)]
    pub shape: Shape,

    /// Print Graphviz dot instead of text
    #[arg(long)]
    pub dot: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_take_seconds_minutes_or_hours() {
        use std::time::Duration;
        assert_eq!(parse_interval("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_interval("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_interval("1h").unwrap(), Duration::from_secs(3600));
        for bad in ["", "0s", "2d", "m", "25h", "90"] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shift_takes_exactly_one_target() {
        use clap::Parser;
        let ok = Cli::try_parse_from(["payops", "shift", "--env", "pr1", "--green", "10"]);
        assert!(ok.is_ok());
        for bad in [
            vec!["payops", "shift", "--env", "pr1"],
            vec![
                "payops",
                "shift",
                "--env",
                "pr1",
                "--green",
                "10",
                "--promote",
            ],
            vec!["payops", "shift", "--env", "pr1", "--green", "101"],
            vec![
                "payops",
                "shift",
                "--env",
                "pr1",
                "--rollback",
                "--step",
                "10",
            ],
            vec![
                "payops",
                "shift",
                "--env",
                "pr1",
                "--green",
                "50",
                "--interval",
                "5m",
            ],
        ] {
            assert!(Cli::try_parse_from(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn alert_emails_are_repeatable_and_checked_while_parsing() {
        use clap::Parser;
        let cli = Cli::try_parse_from([
            "payops",
            "up",
            "--env",
            "pr1",
            "--alert-email",
            "a@example.com",
            "--alert-email",
            "b@example.com",
        ])
        .unwrap();
        let Command::Up(up) = cli.command else {
            panic!("up")
        };
        assert_eq!(up.shape.alert_email, ["a@example.com", "b@example.com"]);
        let err = Cli::try_parse_from(["payops", "up", "--env", "pr1", "--alert-email", "ops"])
            .unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("invalid alert email"), "{err}");
    }

    #[test]
    fn env_prefixes_are_checked_while_parsing() {
        use clap::Parser;
        let cli = Cli::try_parse_from(["payops", "destroy-all", "--env-prefix", "pr-"]).unwrap();
        let Command::DestroyAll(args) = cli.command else {
            panic!("destroy-all")
        };
        assert_eq!(args.env_prefix.unwrap().as_str(), "pr-");
        for bad in ["PR", "pr_", "", "1pr"] {
            let err =
                Cli::try_parse_from(["payops", "destroy-all", "--env-prefix", bad]).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}");
            assert!(err.to_string().contains("invalid env prefix"), "{err}");
        }
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
