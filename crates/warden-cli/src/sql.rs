//! `warden sql rewrite` and `warden sql explain`.

use std::process::ExitCode;

use clap::Subcommand;

/// SQL PEP commands.
#[derive(Debug, Subcommand)]
pub(crate) enum SqlCommand {
    /// Print the rewritten statement read from stdin.
    Rewrite,
}

pub(crate) fn run(command: SqlCommand) -> ExitCode {
    match command {
        SqlCommand::Rewrite => {
            eprintln!("warden sql rewrite: the SQL PEP is not available in this build");
            ExitCode::from(2)
        }
    }
}
