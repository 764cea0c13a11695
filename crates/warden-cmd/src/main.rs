//! The `warden` command.
//!
//! * `warden eval` evaluates one access request against a policy directory or a remote PDP and
//!   prints the decision (exit 0 permit, 1 deny, 2 error).
//! * `warden serve` runs the Warden PDP server on a policy directory.
//! * `warden sql rewrite` and `warden sql explain` show what the SQL PEP does to a statement.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod eval;
mod serve;
mod sql;

/// Runtime policy enforcement: evaluate requests, serve a PDP, rewrite SQL.
#[derive(Debug, Parser)]
#[command(name = "warden", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Evaluate one access request and print the decision (exit 0 permit, 1 deny, 2 error).
    Eval(eval::EvalArgs),
    /// Serve a policy directory over AuthZEN 1.0 and the OPA Data API.
    Serve(serve::ServeArgs),
    /// Check and rewrite SQL statements through the SQL PEP.
    #[command(subcommand)]
    Sql(sql::SqlCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,warden_server=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Eval(args) => block_on(eval::run(args)),
        Command::Serve(args) => block_on(serve::run(args)),
        Command::Sql(command) => sql::run(command),
    }
}

fn block_on(future: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(future),
        Err(e) => {
            eprintln!("warden: cannot start the async runtime: {e}");
            ExitCode::from(eval::ERROR)
        }
    }
}
