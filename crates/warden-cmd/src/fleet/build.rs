//! `warden build`: a bundle from policy packages.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use warden_bundle::{BundleBuilder, SecretKey, Verifier};

use crate::exit::Exit;

/// Build a bundle from policy packages, signed with an Ed25519 key.
#[derive(Debug, Args)]
pub(crate) struct BuildArgs {
    /// The package directories (each with a `warden.toml`).
    #[arg(required = true, value_name = "DIR")]
    dirs: Vec<PathBuf>,
    /// The bundle file to write.
    #[arg(short, long, value_name = "FILE")]
    out: PathBuf,
    /// The revision: higher than every revision published before to the same channel.
    /// Default: the time now in milliseconds since the Unix epoch.
    #[arg(long, value_name = "N")]
    revision: Option<u64>,
    /// The secret key to sign with (from `warden keygen`).
    #[arg(long, value_name = "FILE", required_unless_present = "unsigned")]
    key: Option<PathBuf>,
    /// Build without a signature (a PDP with a key configured refuses it).
    #[arg(long, conflicts_with = "key")]
    unsigned: bool,
}

pub(crate) fn run(args: BuildArgs) -> ExitCode {
    match build(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => super::fail("build", error),
    }
}

fn build(args: BuildArgs) -> Result<(), (Exit, String)> {
    let key = args
        .key
        .as_deref()
        .map(SecretKey::read)
        .transpose()
        .map_err(|e| (Exit::Config, e.to_string()))?;
    let revision = args.revision.unwrap_or_else(warden_bundle::status::now_ms);
    let mut builder = BundleBuilder::new(revision);
    for dir in &args.dirs {
        builder = builder
            .package(dir)
            .map_err(|e| (Exit::Config, e.to_string()))?;
    }
    let bytes = builder
        .build(key.as_ref())
        .map_err(|e| (Exit::Config, e.to_string()))?;
    // What was written is what a PDP will read: check it the same way.
    let verifier = match &key {
        Some(key) => Verifier::new(vec![key.public_key()]),
        None => Verifier::unsigned(),
    };
    let bundle = verifier
        .verify(&bytes)
        .map_err(|e| (Exit::Config, e.to_string()))?;
    std::fs::write(&args.out, &bytes).map_err(|e| {
        (
            Exit::Config,
            format!("cannot write `{}`: {e}", args.out.display()),
        )
    })?;
    let packages: Vec<&str> = bundle
        .manifest()
        .packages
        .iter()
        .map(|p| p.id.as_str())
        .collect();
    println!(
        "built {}: revision {}, {} package(s) ({}), {} files, digest {}, {}",
        args.out.display(),
        bundle.revision(),
        packages.len(),
        packages.join(", "),
        bundle.manifest().files.len(),
        bundle.digest(),
        match &key {
            Some(key) => format!("signed by key {}", key.public_key().id()),
            None => "unsigned".to_owned(),
        }
    );
    Ok(())
}
