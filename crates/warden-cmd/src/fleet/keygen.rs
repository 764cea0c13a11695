//! `warden keygen`: an Ed25519 key pair for signing bundles.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use warden_bundle::SecretKey;

use crate::exit::Exit;

/// Make an Ed25519 key pair: `<out>.key` (secret, mode 0600) and `<out>.pub`.
#[derive(Debug, Args)]
pub(crate) struct KeygenArgs {
    /// The path of the key pair without extension: writes `<OUT>.key` and `<OUT>.pub`.
    #[arg(short, long, value_name = "OUT")]
    out: PathBuf,
    /// Replace existing key files.
    #[arg(long)]
    force: bool,
}

pub(crate) fn run(args: KeygenArgs) -> ExitCode {
    match keygen(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => super::fail("keygen", error),
    }
}

fn keygen(args: &KeygenArgs) -> Result<(), (Exit, String)> {
    let secret_path = args.out.with_extension("key");
    let public_path = args.out.with_extension("pub");
    for path in [&secret_path, &public_path] {
        if path.exists() && !args.force {
            return Err((
                Exit::Usage,
                format!("`{}` exists (--force replaces it)", path.display()),
            ));
        }
    }
    if let Some(parent) = secret_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            (
                Exit::Config,
                format!("cannot create `{}`: {e}", parent.display()),
            )
        })?;
    }
    let key = SecretKey::generate().map_err(|e| (Exit::Config, e))?;
    write_secret(&secret_path, key.to_file_text().as_bytes())?;
    let public = key.public_key();
    std::fs::write(&public_path, public.to_file_text()).map_err(|e| {
        (
            Exit::Config,
            format!("cannot write `{}`: {e}", public_path.display()),
        )
    })?;
    println!(
        "wrote {} (secret) and {} (public, key id {})",
        secret_path.display(),
        public_path.display(),
        public.id()
    );
    Ok(())
}

fn write_secret(path: &std::path::Path, bytes: &[u8]) -> Result<(), (Exit, String)> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let error = |e: std::io::Error| {
        (
            Exit::Config,
            format!("cannot write `{}`: {e}", path.display()),
        )
    };
    let mut file = options.open(path).map_err(error)?;
    file.write_all(bytes).map_err(error)
}
