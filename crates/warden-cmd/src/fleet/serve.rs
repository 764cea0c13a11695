//! `warden serve --bundle SOURCE`: policies from signed bundles, with status at `/status` and,
//! on a NATS source, in the channel's status bucket.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use warden_bundle::source::{Channel, NatsSource};
use warden_bundle::{Activation, Agent, AgentConfig, InstanceStatus, Scope};
use warden_server::Server;

use crate::exit::Exit;

/// The bundle options of `warden serve`.
#[derive(Debug, Args)]
pub(crate) struct BundleArgs {
    /// Serve the packages of signed bundles from SOURCE instead of a policy directory: a
    /// bundle file, an http(s):// URL, or nats://HOST:PORT/CHANNEL (a JetStream object store).
    #[arg(long, value_name = "SOURCE", conflicts_with = "policy")]
    pub(crate) bundle: Option<String>,
    /// A public key bundles must be signed with (repeat for several, e.g. during a rotation).
    #[arg(long, value_name = "FILE", requires = "bundle")]
    bundle_key: Vec<PathBuf>,
    /// Accept unsigned bundles (digests are still checked). Without it, --bundle needs a key.
    #[arg(long, requires = "bundle")]
    allow_unsigned: bool,
    /// This instance's region: only packages for it (or for every region) are activated.
    #[arg(long, value_name = "NAME", requires = "bundle")]
    region: Option<String>,
    /// This instance's environment: only packages for it (or for every environment) are
    /// activated.
    #[arg(long, value_name = "NAME", requires = "bundle")]
    environment: Option<String>,
    /// This instance's name in status reports. Default: `<region>-<pid>`.
    #[arg(long, value_name = "NAME", requires = "bundle")]
    instance: Option<String>,
    /// Where the last verified bundle is kept for a cold start with the source down.
    /// Default: a folder named after the instance in the system's temporary directory.
    #[arg(long, value_name = "DIR", requires = "bundle")]
    state_dir: Option<PathBuf>,
    /// The NATS server to report status to (the object store `warden-status`, read by
    /// `warden status`). Default: the server of a nats:// source; other sources report only at
    /// `/status` unless this is given.
    #[arg(long, value_name = "URL", requires = "bundle")]
    status_nats: Option<String>,
    /// How often the source is checked even without a change notification.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    reconcile: Duration,
}

/// Starts the bundle agent behind `server` (built with `external()`); returns the source's
/// description for the start-up line.
pub(crate) fn start(
    args: &BundleArgs,
    spec: &str,
    server: &Server,
) -> Result<String, (Exit, String)> {
    if args.bundle_key.is_empty() && !args.allow_unsigned {
        return Err((
            Exit::Usage,
            "--bundle needs --bundle-key FILE (or --allow-unsigned to take bundles on their digests alone)".into(),
        ));
    }
    let verifier = super::verifier(&args.bundle_key)?;
    let source = warden_bundle::source::open(spec).map_err(|e| (Exit::Usage, e.to_string()))?;
    let described = source.describe();
    let instance = args.instance.clone().unwrap_or_else(|| {
        format!(
            "{}-{}",
            args.region.as_deref().unwrap_or("warden"),
            std::process::id()
        )
    });
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("warden-bundle-{instance}")));
    let mut config = AgentConfig::new(instance, verifier, state_dir);
    config.scope = Scope::new(args.region.as_deref(), args.environment.as_deref());
    config.reconcile = args.reconcile.max(Duration::from_millis(100));
    let target = server.clone();
    let activate = move |activation: &Activation<'_>| {
        let dirs: Vec<PathBuf> = activation
            .packages
            .iter()
            .map(|(_, dir)| dir.clone())
            .collect();
        tokio::task::block_in_place(|| target.activate_dirs(&dirs))
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let agent = Agent::new(source, config, activate);
    let mut status = agent.status();
    let reporter = server.clone();
    let channel = args.status_nats.clone().or_else(|| {
        NatsSource::parse(spec)
            .ok()
            .map(|s| s.server_url().to_owned())
    });
    let heartbeat = args.reconcile.max(Duration::from_secs(1));
    tokio::spawn(async move {
        let channel = match channel {
            Some(url) => Channel::connect(&url).await.ok(),
            None => None,
        };
        let first = status.borrow_and_update().clone();
        report(&reporter, channel.as_ref(), &first).await;
        loop {
            let changed = tokio::time::timeout(heartbeat, status.changed()).await;
            if matches!(changed, Ok(Err(_))) {
                return;
            }
            let current = status.borrow_and_update().clone();
            report(&reporter, channel.as_ref(), &current).await;
        }
    });
    tokio::spawn(agent.run());
    Ok(described)
}

/// Shows `status` at `/status` and writes it to the channel (best effort: the channel may be
/// down, and the next change or heartbeat writes it again).
async fn report(server: &Server, channel: Option<&Channel>, status: &InstanceStatus) {
    server.set_status(serde_json::to_value(status).unwrap_or_default());
    if let Some(channel) = channel {
        let mut status = status.clone();
        status.updated_at = warden_bundle::status::now_ms();
        let _ = tokio::time::timeout(Duration::from_secs(2), channel.put_status(&status)).await;
    }
}
