//! `zgrid`: one binary for every role. This file only parses arguments and dispatches; the work
//! is done by the library crates.
//!
//! Exit codes: 0 success, 1 failure (the cause chain is printed), 2 bad usage.

mod args;
mod cmd;
mod config;
mod output;

use clap::Parser;

/// The log filter without `ZGRID_LOG`. A certificate rustls refuses is reported as the
/// command's error, with the fix, so its verifier's own error line is left out.
const DEFAULT_LOG: &str = "info,rustls_platform_verifier=off";

fn main() -> std::process::ExitCode {
    let args = args::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ZGRID_LOG").unwrap_or_else(|_| DEFAULT_LOG.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cmd::run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
