//! `warden verify`: what a PDP checks before it activates a bundle.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use warden_bundle::Scope;

use crate::exit::Exit;

/// Verify a bundle as a PDP does: archive, per-file digests, signature; list its packages.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The bundle file.
    #[arg(value_name = "FILE")]
    bundle: PathBuf,
    /// A public key the bundle must be signed with (repeat for several); without one, only
    /// the archive and the digests are checked.
    #[arg(long, value_name = "FILE")]
    key: Vec<PathBuf>,
    /// Show which packages a PDP in this region would activate.
    #[arg(long, value_name = "NAME")]
    region: Option<String>,
    /// Show which packages a PDP in this environment would activate.
    #[arg(long, value_name = "NAME")]
    environment: Option<String>,
}

pub(crate) fn run(args: VerifyArgs) -> ExitCode {
    let result = super::verifier(&args.key).and_then(|verifier| {
        let bytes = super::read_bundle(&args.bundle)?;
        verifier
            .verify(&bytes)
            .map_err(|e| (Exit::Deny, format!("refused: {e}")))
    });
    let bundle = match result {
        Ok(bundle) => bundle,
        Err(error) => return super::fail("verify", error),
    };
    let scope = Scope::new(args.region.as_deref(), args.environment.as_deref());
    let scoped = args.region.is_some() || args.environment.is_some();
    println!(
        "{}: revision {}, digest {}, {}",
        args.bundle.display(),
        bundle.revision(),
        bundle.digest(),
        match bundle.signed_by() {
            Some(id) => format!("signature verified (key {id})"),
            None => "signature not checked (no --key)".to_owned(),
        }
    );
    for package in &bundle.manifest().packages {
        let mut line = format!("  {} {} ({})", package.id, package.version, package.engine);
        if !package.regions.is_empty() {
            line.push_str(&format!(", regions {}", package.regions.join(",")));
        }
        if !package.environments.is_empty() {
            line.push_str(&format!(
                ", environments {}",
                package.environments.join(",")
            ));
        }
        if scoped {
            line.push_str(if scope.includes(package) {
                ": active here"
            } else {
                ": not for this region/environment"
            });
        }
        println!("{line}");
    }
    ExitCode::SUCCESS
}
