//! The `payops` binary: parse, run, map the result to an exit code.

use std::process::ExitCode;

use clap::Parser;

use payops::cli::Cli;
use payops::commands;
use payops::engine::error_chain;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.global.verbose, cli.global.quiet);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(status) => status.into(),
        Err(err) => {
            // A closed stdout (`payops status | head`) is not an error.
            if err
                .chain()
                .filter_map(|c| c.downcast_ref::<std::io::Error>())
                .any(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {}", error_chain(err.as_ref()));
            commands::exit_status_of(&err).into()
        }
    }
}

/// Logs go to stderr; -v shows payops' own, -vv the AWS SDK's too. Below
/// -vv the SDK's credential chain keeps its warnings (each provider that found
/// nothing, with a raw dump): payops' own error names the missing credentials.
fn init_logging(verbose: u8, quiet: bool) {
    let filter = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn,aws_config=error",
        (false, 1) => "warn,aws_config=error,payops=info",
        (false, _) => "info,payops=debug,aws_smithy_runtime=debug,aws_config=debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("PAYOPS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
