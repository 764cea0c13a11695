//! `warden eval`: one access request, one decision.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use warden_decision::{Decision, Pdp};
use warden_remote::RemotePdp;
use warden_server::PolicyDir;

use crate::exit::Exit;
use crate::request::RequestArgs;

/// The protocol of a remote PDP.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Protocol {
    /// AuthZEN 1.0 (`/access/v1/evaluation`).
    Authzen,
    /// The OPA Data API (`/v1/data/<path>`).
    Opa,
}

/// How `warden eval` prints the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// The decision as JSON: `decision`, `decision_id`, obligations, reasons, policy.
    Json,
    /// A summary for people: the outcome, the policy and revision, obligations and reasons.
    Pretty,
}

/// Evaluate one access request and print the decision.
///
/// The request is `--request` (JSON, `@file`, or `@-` for stdin), or built from `--subject`,
/// `--action`, `--resource` and `--context`, which also replace the members of a `--request`.
/// With none of them, the request is read from stdin.
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
    /// The access request as JSON; `@file` reads a file, `@-` stdin.
    #[arg(long, value_name = "JSON")]
    request: Option<String>,
    /// The subject, e.g. `{"id": "nina", "properties": {"role": "nurse"}}` (`type` defaults
    /// to `user`); `@file` reads a file.
    #[arg(long, value_name = "JSON")]
    subject: Option<String>,
    /// The action: a name such as `GET`, or `{"name": …, "properties": …}`.
    #[arg(long, value_name = "NAME|JSON")]
    action: Option<String>,
    /// The resource, e.g. `{"type": "route", "id": "/clinics"}`; `@file` reads a file.
    #[arg(long, value_name = "JSON")]
    resource: Option<String>,
    /// The context, a JSON object; `@file` reads a file.
    #[arg(long, value_name = "JSON")]
    context: Option<String>,
    /// How to print the decision.
    #[arg(long, value_enum, default_value = "json")]
    format: Format,
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
    let request = RequestArgs {
        request: args.request.as_deref(),
        subject: args.subject.as_deref(),
        action: args.action.as_deref(),
        resource: args.resource.as_deref(),
        context: args.context.as_deref(),
    }
    .build()
    .map_err(usage)?;
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
    let text = match args.format {
        Format::Json => serde_json::to_string_pretty(&decision)
            .map_err(|e| (Exit::Config, format!("cannot print the decision: {e}")))?,
        Format::Pretty => pretty(&decision),
    };
    println!("{text}");
    Ok(decision.allowed)
}

/// The decision as a few lines for people.
fn pretty(decision: &Decision) -> String {
    let mut out = String::new();
    let outcome = if decision.allowed { "permit" } else { "deny" };
    let _ = write!(out, "{outcome}  decision_id {}", decision.id);
    if !decision.policy.id.is_empty() {
        let _ = write!(
            out,
            "\npolicy    {} at revision {}",
            decision.policy.id, decision.policy.revision
        );
    }
    if decision.not_applicable {
        out.push_str("\nnote      no policy applied: a deny by default");
    }
    for obligation in &decision.obligations {
        let mut members = obligation.to_json();
        if let Some(fields) = members.as_object_mut() {
            fields.remove("type");
        }
        let _ = write!(out, "\nobligation {} {members}", obligation.type_name());
    }
    for advice in &decision.advice {
        let _ = write!(out, "\nadvice    {}", advice.kind);
    }
    for reason in &decision.reasons {
        match &reason.code {
            Some(code) => {
                let _ = write!(out, "\nreason    {code}: {}", reason.message);
            }
            None => {
                let _ = write!(out, "\nreason    {}", reason.message);
            }
        }
    }
    for diagnostic in &decision.diagnostics {
        let class = diagnostic.error.map_or("note", |c| c.as_str());
        let _ = write!(out, "\n{class}  {}", diagnostic.message);
    }
    if let Some(fallback) = decision.fallback {
        let _ = write!(out, "\nfallback  {}", fallback.as_str());
    }
    out
}
