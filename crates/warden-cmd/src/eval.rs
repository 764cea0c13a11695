//! `warden eval`: one access request, one decision.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use warden_decision::{AccessRequest, Pdp};
use warden_remote::RemotePdp;
use warden_server::PolicyDir;

use crate::exit::Exit;

/// The protocol of a remote PDP.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Protocol {
    /// AuthZEN 1.0 (`/access/v1/evaluation`).
    Authzen,
    /// The OPA Data API (`/v1/data/<path>`).
    Opa,
}

/// Evaluate one access request and print the decision as JSON.
///
/// Exit status: 0 permit, 1 deny, 2 usage, 3 policy error, 4 PDP unavailable.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("pdp").required(true).args(["policy", "remote"])))]
pub(crate) struct EvalArgs {
    /// A policy directory (Rego or Cedar).
    #[arg(long, value_name = "DIR")]
    policy: Option<PathBuf>,
    /// The URL of a remote PDP (the Warden PDP server or any AuthZEN / OPA PDP).
    #[arg(long, value_name = "URL")]
    remote: Option<String>,
    /// The protocol of the remote PDP.
    #[arg(long, value_enum, default_value = "authzen", requires = "remote")]
    protocol: Protocol,
    /// The OPA document path, e.g. `clinic/decision` (with `--protocol opa`).
    #[arg(long, value_name = "PATH", default_value = "warden/decision")]
    opa_path: String,
    /// The time the remote PDP may take, e.g. `500ms`.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// The access request as JSON; read from stdin when absent. `@file` reads a file.
    #[arg(long, value_name = "JSON")]
    request: Option<String>,
}

pub(crate) async fn run(args: EvalArgs) -> ExitCode {
    match eval(args).await {
        Ok(true) => Exit::Ok.into(),
        Ok(false) => Exit::Deny.into(),
        Err((exit, message)) => {
            eprintln!("warden eval: {message}");
            exit.into()
        }
    }
}

async fn eval(args: EvalArgs) -> Result<bool, (Exit, String)> {
    let usage = |message: String| (Exit::Usage, message);
    let text = match &args.request {
        Some(inline) => match inline.strip_prefix('@') {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| usage(format!("cannot read the request file {path}: {e}")))?,
            None => inline.clone(),
        },
        None => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| usage(format!("cannot read the request from stdin: {e}")))?;
            text
        }
    };
    let request: AccessRequest = serde_json::from_str(&text)
        .map_err(|e| usage(format!("the request is not an AuthZEN access request: {e}")))?;
    let pdp: Arc<dyn Pdp> = match (&args.policy, &args.remote) {
        (Some(dir), _) => PolicyDir::open(dir)
            .map_err(|e| (Exit::Config, e.to_string()))?
            .pdp(),
        (None, Some(url)) => {
            let builder = match args.protocol {
                Protocol::Authzen => RemotePdp::authzen(url),
                Protocol::Opa => RemotePdp::opa(url, &args.opa_path),
            };
            Arc::new(
                builder
                    .timeout(args.timeout)
                    .build()
                    .map_err(|e| usage(e.to_string()))?,
            )
        }
        (None, None) => return Err(usage("pass `--policy` or `--remote`".into())),
    };
    let decision = pdp
        .decide(&request)
        .await
        .map_err(|e| (Exit::of_pdp_error(&e), e.to_string()))?;
    let json = serde_json::to_string_pretty(&decision)
        .map_err(|e| (Exit::Config, format!("cannot print the decision: {e}")))?;
    println!("{json}");
    Ok(decision.allowed)
}
