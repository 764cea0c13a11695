//! The `warden` command.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    /// Check and rewrite SQL statements through the SQL PEP.
    #[command(subcommand)]
    Sql(sql::SqlCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Sql(command) => sql::run(command),
    }
}
