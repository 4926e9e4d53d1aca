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
/// command's error, with the fix, so its verifier's own error line is left out. boringtun logs
/// every handshake retry; the node's WireGuard device says once when a peer stops answering.
const DEFAULT_LOG: &str = "info,rustls_platform_verifier=off,boringtun=off";

fn main() -> std::process::ExitCode {
    let args = args::Cli::parse();
    if only_prints(&args.command) {
        // Rust ignores SIGPIPE, so printing to a closed pipe panics. A command that only
        // prints ends quietly instead, as Unix tools do, when its reader stops
        // (`zgrid --json live | head`). Servers keep ignoring it: a closed peer is theirs to
        // handle, not a reason to die.
        sigpipe::reset();
    }
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

/// Whether `command` is a client that talks to servers and prints, rather than a server, a
/// grid it runs in-process, or an interactive session.
fn only_prints(command: &args::Command) -> bool {
    use args::Command as C;
    matches!(
        command,
        C::Id(_)
            | C::Farm(_)
            | C::Nodes(_)
            | C::Deploy(_)
            | C::Network(_)
            | C::Live(_)
            | C::Delete(_)
            | C::Logs(_)
            | C::Stats(_)
            | C::Config(_)
            | C::Flist(_)
            | C::Status(_)
            | C::K8s(_)
    )
}
