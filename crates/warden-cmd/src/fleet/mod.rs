//! The fleet commands: `warden keygen`, `build`, `verify`, `publish`, `status`, and the bundle
//! source of `warden serve --bundle`.

use std::path::PathBuf;

use warden_bundle::{PublicKey, Verifier};

use crate::exit::Exit;

pub(crate) mod build;
pub(crate) mod keygen;
pub(crate) mod publish;
pub(crate) mod serve;
pub(crate) mod status;
pub(crate) mod verify;

/// The NATS server the fleet commands use unless told otherwise.
pub(crate) const DEFAULT_NATS: &str = "nats://127.0.0.1:4222";

/// A verifier for the public key files given, or an error message.
pub(crate) fn verifier(keys: &[PathBuf]) -> Result<Verifier, (Exit, String)> {
    let mut public = Vec::new();
    for path in keys {
        public.push(PublicKey::read(path).map_err(|e| (Exit::Config, e.to_string()))?);
    }
    Ok(if public.is_empty() {
        Verifier::unsigned()
    } else {
        Verifier::new(public)
    })
}

/// A bundle file's bytes, or a usage error.
pub(crate) fn read_bundle(path: &std::path::Path) -> Result<Vec<u8>, (Exit, String)> {
    std::fs::read(path).map_err(|e| {
        (
            Exit::Usage,
            format!("cannot read `{}`: {e}", path.display()),
        )
    })
}

/// Prints `warden <command>: <message>` and returns the status.
pub(crate) fn fail(command: &str, (exit, message): (Exit, String)) -> std::process::ExitCode {
    eprintln!("warden {command}: {message}");
    exit.into()
}
