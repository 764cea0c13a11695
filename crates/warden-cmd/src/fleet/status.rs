//! `warden status`: the fleet's view from the channel.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use warden_bundle::InstanceStatus;
use warden_bundle::source::{Channel, DEFAULT_STATUS_BUCKET, NatsSource};

use crate::exit::Exit;

/// Show the fleet: which instance runs which revision, from which source, which lag behind.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// The NATS server.
    #[arg(long, value_name = "URL", default_value = super::DEFAULT_NATS)]
    nats: String,
    /// The KV bucket instances report to.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_STATUS_BUCKET)]
    status_bucket: String,
    /// Print the statuses as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(args: StatusArgs) -> ExitCode {
    match status(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => super::fail("status", error),
    }
}

/// The channel an instance's source names, when it is a NATS source.
fn channel_of(status: &InstanceStatus) -> Option<(String, String)> {
    let source = NatsSource::parse(&status.source).ok()?;
    Some((source.bucket().to_owned(), source.channel_name().to_owned()))
}

async fn status(args: &StatusArgs) -> Result<(), (Exit, String)> {
    let unavailable = |e: warden_bundle::SourceError| (Exit::Unavailable, e.to_string());
    let channel = Channel::connect(&args.nats)
        .await
        .map_err(unavailable)?
        .status_bucket(args.status_bucket.clone());
    let all = tokio::time::timeout(Duration::from_secs(10), channel.all_status())
        .await
        .map_err(|_| (Exit::Unavailable, format!("no answer from {}", args.nats)))?
        .map_err(unavailable)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&all).unwrap_or_else(|_| "[]".into())
        );
        return Ok(());
    }
    // The head of each channel the instances follow, to say who lags behind.
    let mut heads = std::collections::BTreeMap::new();
    for status in &all {
        if let Some((bucket, name)) = channel_of(status)
            && !heads.contains_key(&(bucket.clone(), name.clone()))
        {
            let head = channel
                .clone()
                .bundle_bucket(bucket.clone())
                .head(&name)
                .await
                .ok()
                .flatten();
            heads.insert((bucket, name), head);
        }
    }
    println!(
        "{:<16} {:<10} {:<12} {:>14} {:<14} {:<10} {:>6}  SOURCE",
        "INSTANCE", "REGION", "ENVIRONMENT", "REVISION", "DIGEST", "STATE", "SEEN"
    );
    let now = warden_bundle::status::now_ms();
    for status in &all {
        let head = channel_of(status).and_then(|key| heads.get(&key).cloned().flatten());
        let state = match (&status.revision, &head) {
            (None, _) => "not ready".to_owned(),
            (Some(mine), Some(head)) if *mine < head.revision => {
                format!("behind {}", head.revision)
            }
            (Some(_), _) if status.last_error.is_some() => "error".to_owned(),
            (Some(_), _) if status.from_persisted => "persisted".to_owned(),
            (Some(_), _) => "current".to_owned(),
        };
        println!(
            "{:<16} {:<10} {:<12} {:>14} {:<14} {:<10} {:>6}  {}",
            status.instance,
            status.region.as_deref().unwrap_or("-"),
            status.environment.as_deref().unwrap_or("-"),
            status
                .revision
                .map_or_else(|| "-".to_owned(), |r| r.to_string()),
            status
                .digest
                .as_deref()
                .and_then(|d| d.get(..12))
                .unwrap_or("-"),
            state,
            ago(now.saturating_sub(status.updated_at)),
            status.source
        );
        if let Some(error) = &status.last_error {
            println!("  last error: {error}");
        }
    }
    Ok(())
}

/// `12s`, `5m`, `3h`: how long ago an instance last reported (it reports on every change and
/// once per reconcile interval, so a large value means it is gone or cut off).
fn ago(ms: u64) -> String {
    let seconds = ms / 1000;
    match seconds {
        0..120 => format!("{seconds}s"),
        120..7200 => format!("{}m", seconds / 60),
        _ => format!("{}h", seconds / 3600),
    }
}
