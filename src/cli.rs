//! Every command, flag and help text, in one place.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::naming::{ENV_RULE, EnvName};
use crate::spec::{Cidr, NatMode};

const EXIT_CODES: &str = "\
Exit codes:
  0    success (`down`: and its final sweep found nothing left)
  1    a step failed, or `down` left something behind (named in the summary)
  2    bad input (flag, env name, missing --yes, unreadable state): nothing changed
  3    another payops holds the env's lock
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
    Down(EnvArgs),

    /// Show every env (no --env), or what exists for one env, step by step
    #[command(
        after_help = "Examples:\n  payops status                   # every env: age, resources, protection\n  payops status --env pr123       # one env, per step, with drift"
    )]
    Status(StatusArgs),

    /// Show what `up` would change, without changing anything
    #[command(after_help = "Example:\n  payops plan --env pr123")]
    Plan(ShapeArgs),

    /// Print an env's outputs (the flat map written to cfn-outputs/flat-outputs.json)
    #[command(after_help = "Example:\n  payops outputs --env pr123 --output json")]
    Outputs(EnvArgs),

    /// Print the step graph: every step and why it depends on what it does
    Graph(GraphArgs),

    /// Remove every env matching the filters; a dry run unless --yes
    #[command(
        name = "destroy-all",
        after_help = "Examples:\n  payops destroy-all --older-than 24h --env-prefix pr          # what would go\n  payops destroy-all --older-than 24h --env-prefix pr --yes    # nightly job\n\nOnly resources carrying payops' ownership tags are ever touched, whatever their names;\nenvs brought up with `up --protect` are never removed."
    )]
    DestroyAll(DestroyAllArgs),

    /// Break an env's lock left behind by a runner that died
    #[command(
        after_help = "Example:\n  payops unlock --env pr123 --force --state s3://ci-state/payops"
    )]
    Unlock(UnlockArgs),
}

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

    /// Tag the env as protected: `destroy-all` never removes it (--protect=false lifts it)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub protect: Option<bool>,
}

#[derive(Debug, Args)]
pub struct ShapeArgs {
    #[command(flatten)]
    pub env: EnvArgs,
    #[command(flatten)]
    pub shape: Shape,
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

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    crate::duration::parse(s)
}

#[derive(Debug, Args)]
pub struct DestroyAllArgs {
    /// Only envs created at least this long ago (e.g. 24h, 90m, 7d; 0s: all)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub older_than: Option<std::time::Duration>,

    /// Only envs whose name starts with this
    #[arg(long, value_name = "PREFIX")]
    pub env_prefix: Option<String>,

    /// Never these envs (repeatable)
    #[arg(long, value_name = "NAME", num_args = 1.., value_parser = parse_env)]
    pub exclude: Vec<EnvName>,

    /// Also write the result as JSON to this file
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
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
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
