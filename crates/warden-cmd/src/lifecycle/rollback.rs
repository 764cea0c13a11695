//! `warden rollback`: put a kept revision back in force on a running `warden serve`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde_json::{Value, json};

use crate::exit::Exit;

/// Put one of the last good revisions of a running `warden serve` back in force.
///
/// Without `--to`, the newest kept revision that is not in force; `--list` shows the kept ones.
/// The server must authenticate its callers (`--bearer-token-file`): the token is read from
/// `--token-file` or `WARDEN_TOKEN`.
///
/// Exit status: 0 switched (or listed), 2 usage, 3 refused (unknown revision, nothing kept,
/// not authorised), 4 the server is unreachable.
#[derive(Debug, Args)]
pub(crate) struct RollbackArgs {
    /// The server's URL, e.g. `http://127.0.0.1:8181`.
    #[arg(long, value_name = "URL")]
    server: String,
    /// The revision to put in force, e.g. `1.0.0+sha256.5488c2f713a1f61c`.
    #[arg(long, value_name = "REVISION", conflicts_with = "list")]
    to: Option<String>,
    /// Only list the revision in force and the kept ones.
    #[arg(long)]
    list: bool,
    /// A file holding the bearer token (instead of `WARDEN_TOKEN`).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// The time the server may take.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

pub(crate) async fn run(args: RollbackArgs) -> ExitCode {
    match rollback(&args).await {
        Ok(text) => {
            print!("{text}");
            Exit::Ok.into()
        }
        Err((exit, message)) => {
            eprintln!("warden rollback: {message}");
            exit.into()
        }
    }
}

fn token(args: &RollbackArgs) -> Result<Option<String>, (Exit, String)> {
    match &args.token_file {
        Some(path) => std::fs::read_to_string(path)
            .map(|t| Some(t.trim().to_owned()))
            .map_err(|e| {
                (
                    Exit::Usage,
                    format!("cannot read `{}`: {e}", path.display()),
                )
            }),
        None => Ok(std::env::var("WARDEN_TOKEN")
            .ok()
            .map(|t| t.trim().to_owned())),
    }
}

async fn rollback(args: &RollbackArgs) -> Result<String, (Exit, String)> {
    let base = args.server.trim_end_matches('/');
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        return Err((
            Exit::Usage,
            format!("`--server` must be an http:// or https:// URL, not `{base}`"),
        ));
    }
    let client = reqwest::Client::builder()
        .timeout(args.timeout)
        .build()
        .map_err(|e| (Exit::Config, format!("cannot build an HTTP client: {e}")))?;
    let (method, path, body) = if args.list {
        (reqwest::Method::GET, "/v1/admin/revisions", None)
    } else {
        let body = match &args.to {
            Some(to) => json!({"revision": to}),
            None => json!({}),
        };
        (reqwest::Method::POST, "/v1/admin/rollback", Some(body))
    };
    let mut request = client.request(method, format!("{base}{path}"));
    if let Some(token) = token(args)? {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
    }
    let response = request
        .send()
        .await
        .map_err(|e| (Exit::Unavailable, format!("cannot reach {base}: {e}")))?;
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| (Exit::Unavailable, format!("{base} did not answer: {e}")))?;
    let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if !status.is_success() {
        let why = answer
            .get("error")
            .or_else(|| answer.get("detail"))
            .and_then(Value::as_str)
            .map_or_else(|| status.to_string(), str::to_owned);
        let exit = if status.is_server_error() {
            Exit::Unavailable
        } else {
            Exit::Config
        };
        return Err((exit, format!("{base} refused ({}): {why}", status.as_u16())));
    }
    let name = |v: Option<&Value>| format!("{} {}", text(v, "id"), text(v, "revision"));
    if args.list {
        let mut out = format!("in force  {}\n", name(answer.get("current")));
        let kept = answer.get("kept").and_then(Value::as_array);
        for revision in kept.into_iter().flatten() {
            out.push_str(&format!(
                "kept      {}  loaded {}\n",
                name(Some(revision)),
                text(Some(revision), "loaded_at")
            ));
        }
        return Ok(out);
    }
    Ok(format!(
        "rolled back {} from {} to {}\n",
        text(answer.get("to"), "id"),
        text(answer.get("from"), "revision"),
        text(answer.get("to"), "revision")
    ))
}

/// The string member `key` of `value`, or `?`.
fn text<'a>(value: Option<&'a Value>, key: &str) -> &'a str {
    value
        .and_then(|v| v.get(key))
        .and_then(Value::as_str)
        .unwrap_or("?")
}
