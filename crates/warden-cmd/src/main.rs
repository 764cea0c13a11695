//! The `warden` command.
//!
//! Every subcommand exits with the same scheme: 0 permit or success, 1 deny or a failed check,
//! 2 usage, 3 policy or configuration error, 4 PDP unavailable (see `exit.rs`).
//!
//! * `warden eval` evaluates one access request against a policy directory or a remote PDP and
//!   prints the decision.
//! * `warden serve` runs the Warden PDP server on a policy directory.
//! * `warden test` runs the test cases of policy packages; `warden check` validates them;
//!   `warden catalog` lists them with their regulatory mappings; `warden replay` decides recorded
//!   requests again with a candidate package; `warden rollback` puts a kept revision back in
//!   force on a running server.
//! * `warden keygen`, `build`, `verify`, `publish` and `status` make, check and distribute
//!   signed policy bundles and show the fleet; `warden serve --bundle` serves them.
//! * `warden sql rewrite` and `warden sql explain` show what the SQL PEP does to a statement.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod eval;
mod exit;
mod fleet;
mod lifecycle;
mod request;
mod serve;
mod sql;

/// Runtime policy enforcement: evaluate requests, serve a PDP, rewrite SQL.
#[derive(Debug, Parser)]
#[command(name = "warden", version, about, after_help = exit::HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Evaluate one access request and print the decision (exit 0 permit, 1 deny).
    #[command(after_help = exit::HELP)]
    Eval(eval::EvalArgs),
    /// Serve a policy directory over AuthZEN 1.0 and the OPA Data API.
    #[command(after_help = exit::HELP)]
    Serve(serve::ServeArgs),
    /// Check and rewrite SQL statements through the SQL PEP.
    #[command(subcommand, after_help = exit::HELP)]
    Sql(sql::SqlCommand),
    /// Run the test cases of policy packages (exit 0 all pass, 1 a case failed).
    #[command(after_help = exit::HELP)]
    Test(lifecycle::test::TestArgs),
    /// Load and validate policy packages and their manifests without running them.
    #[command(after_help = exit::HELP)]
    Check(lifecycle::check::CheckArgs),
    /// List policy packages with their regulatory mappings, tests and coverage.
    #[command(after_help = exit::HELP)]
    Catalog(lifecycle::catalog::CatalogArgs),
    /// Decide recorded decision events again with a candidate package; report what changes.
    #[command(after_help = exit::HELP)]
    Replay(lifecycle::replay::ReplayArgs),
    /// Put a kept revision back in force on a running `warden serve`.
    #[command(after_help = exit::HELP)]
    Rollback(lifecycle::rollback::RollbackArgs),
    /// Make an Ed25519 key pair for signing bundles.
    #[command(after_help = exit::HELP)]
    Keygen(fleet::keygen::KeygenArgs),
    /// Build a signed bundle from policy packages.
    #[command(after_help = exit::HELP)]
    Build(fleet::build::BuildArgs),
    /// Verify a bundle as a PDP does (exit 0 valid, 1 refused).
    #[command(after_help = exit::HELP)]
    Verify(fleet::verify::VerifyArgs),
    /// Publish a bundle to a NATS JetStream channel.
    #[command(after_help = exit::HELP)]
    Publish(fleet::publish::PublishArgs),
    /// Show the fleet from the channel: who runs which revision, who lags behind.
    #[command(after_help = exit::HELP)]
    Status(fleet::status::StatusArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // `--help` and `--version` are successes; everything else clap refuses is usage.
            let _ = error.print();
            return if error.use_stderr() {
                exit::Exit::Usage.into()
            } else {
                exit::Exit::Ok.into()
            };
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("warn,warden_server=info,warden_bundle=info")
    });
    serve::init_logs(filter);
    match cli.command {
        Command::Eval(args) => block_on(eval::run(args)),
        Command::Serve(args) => block_on(serve::run(args)),
        Command::Sql(command) => sql::run(command),
        Command::Test(args) => block_on(lifecycle::test::run(args)),
        Command::Check(args) => block_on(lifecycle::check::run(args)),
        Command::Catalog(args) => block_on(lifecycle::catalog::run(args)),
        Command::Replay(args) => block_on(lifecycle::replay::run(args)),
        Command::Rollback(args) => block_on(lifecycle::rollback::run(args)),
        Command::Keygen(args) => fleet::keygen::run(args),
        Command::Build(args) => fleet::build::run(args),
        Command::Verify(args) => fleet::verify::run(args),
        Command::Publish(args) => block_on(fleet::publish::run(args)),
        Command::Status(args) => block_on(fleet::status::run(args)),
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
            exit::Exit::Config.into()
        }
    }
}
