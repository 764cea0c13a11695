//! `warden publish`: a bundle to a channel of the NATS JetStream object store.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use warden_bundle::source::{Channel, DEFAULT_BUNDLE_BUCKET};

use crate::exit::Exit;

/// Publish a bundle to a channel (`staging`, `production`, ...): every PDP subscribed to it
/// receives it. Promotion is publishing the same bundle file to the next channel.
#[derive(Debug, Args)]
pub(crate) struct PublishArgs {
    /// The bundle file (from `warden build`).
    #[arg(value_name = "FILE")]
    bundle: PathBuf,
    /// The channel: the object's name in the bundle bucket.
    #[arg(long, value_name = "NAME")]
    channel: String,
    /// The NATS server.
    #[arg(long, value_name = "URL", default_value = super::DEFAULT_NATS)]
    nats: String,
    /// The JetStream object store holding the channels.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_BUNDLE_BUCKET)]
    bucket: String,
    /// A public key the bundle must verify with before it is published (repeat for several).
    #[arg(long, value_name = "FILE")]
    key: Vec<PathBuf>,
}

pub(crate) async fn run(args: PublishArgs) -> ExitCode {
    match publish(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => super::fail("publish", error),
    }
}

async fn publish(args: &PublishArgs) -> Result<(), (Exit, String)> {
    let verifier = super::verifier(&args.key)?;
    let bytes = super::read_bundle(&args.bundle)?;
    // Never put on the channel what no PDP would take.
    let bundle = verifier
        .verify(&bytes)
        .map_err(|e| (Exit::Deny, format!("refused: {e}")))?;
    let channel = Channel::connect(&args.nats)
        .await
        .map_err(|e| (Exit::Unavailable, e.to_string()))?
        .bundle_bucket(args.bucket.clone());
    let head = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        channel.publish(&args.channel, bundle.revision(), bundle.digest(), &bytes),
    )
    .await
    .map_err(|_| (Exit::Unavailable, format!("no answer from {}", args.nats)))?
    .map_err(|e| {
        let status = if e.0.contains("publish a higher revision") {
            Exit::Deny
        } else {
            Exit::Unavailable
        };
        (status, e.to_string())
    })?;
    println!(
        "published revision {} (digest {}) to channel {} on {}",
        head.revision, head.digest, args.channel, args.nats
    );
    Ok(())
}
