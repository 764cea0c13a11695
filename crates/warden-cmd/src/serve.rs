//! `warden serve`: the PDP server.
//!
//! Start-up fails closed: a policy directory that is missing or does not load ends the command
//! with status 3 before it listens, unless `--wait-for-policy` asks it to serve `503` until the
//! policies load. The policies are loaded once at start, then reloaded when they change.
//!
//! Every option can also come from a TOML file (`--config`) and from `WARDEN_SERVE_*`
//! environment variables; see [`config`].

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use warden_server::{Server, TlsFiles};

use crate::exit::Exit;

mod config;

/// Serve a policy directory over AuthZEN 1.0 and the OPA Data API.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// A TOML file with the options below (and `signed_metadata`, `auth.bearer_tokens`); an
    /// option is overridden by its `WARDEN_SERVE_*` environment variable, that by its flag.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The policy directory (Rego or Cedar).
    #[arg(long, value_name = "DIR")]
    policy: Option<PathBuf>,
    /// The address to listen on (default 127.0.0.1:8181). Port 0 picks a free port.
    #[arg(long, value_name = "ADDR")]
    addr: Option<SocketAddr>,
    /// How often to check the policy directory for changes (default `2s`); `0s` turns
    /// reloading off.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    watch: Option<Duration>,
    /// The largest request body accepted, in bytes (default 262144).
    #[arg(long, value_name = "BYTES")]
    body_limit: Option<usize>,
    /// The most evaluations one batch may hold (default 1000).
    #[arg(long, value_name = "N")]
    max_batch: Option<usize>,
    /// Serve over TLS with this certificate chain (PEM); needs `--tls-key`.
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The private key of `--tls-cert` (PEM).
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Verify client certificates against the CA certificates in this file (PEM).
    #[arg(long, value_name = "FILE")]
    tls_client_ca: Option<PathBuf>,
    /// How often to check the TLS files for new certificates (default `30s`).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    tls_reload: Option<Duration>,
    /// Require a bearer token of this file (one a line; `#` comments) on every endpoint but
    /// /health.
    #[arg(long, value_name = "FILE")]
    bearer_token_file: Option<PathBuf>,
    /// Accept callers by a client certificate `--tls-client-ca` verified, as well as by token.
    #[arg(long)]
    client_certificates: bool,
    /// Also serve Envoy's ext_authz gRPC service (envoy.service.auth.v3.Authorization) on this
    /// address (plain HTTP/2, for a sidecar or a private network).
    #[arg(long, value_name = "ADDR")]
    ext_authz_grpc: Option<SocketAddr>,
    /// The URL clients reach the server at, for the AuthZEN metadata document.
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    #[command(flatten)]
    fleet: Box<crate::fleet::serve::BundleArgs>,
    /// Start even when the policies do not load (yet): answer 503 until they do. Without it a
    /// missing or broken policy directory ends the command with status 3.
    #[arg(long)]
    wait_for_policy: bool,
    /// Log every decision: a TOML file naming the sink (JetStream, OTLP logs, HTTP batches, a
    /// file, stdout), the mode (memory or disk), masks, drops, outcome filters and the routes
    /// logged synchronously. Needs `--policy`.
    #[arg(long, value_name = "FILE", conflicts_with = "bundle")]
    decision_log: Option<PathBuf>,
}

/// Installs the log subscriber on stderr: text (coloured on a terminal) when stderr is a
/// terminal, JSON lines otherwise; `WARDEN_LOG_FORMAT=json|text` decides instead. Colour is only
/// ever written to a terminal.
pub(crate) fn init_logs(filter: tracing_subscriber::EnvFilter) {
    let terminal = std::io::stderr().is_terminal();
    let json = match std::env::var("WARDEN_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("text") => false,
        _ => !terminal,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(terminal);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

pub(crate) async fn run(mut args: ServeArgs) -> ExitCode {
    let flags = config::Flags {
        config: args.config.clone(),
        policy: args.policy.clone(),
        addr: args.addr,
        watch: args.watch,
        body_limit: args.body_limit,
        max_batch: args.max_batch,
        public_url: args.public_url.clone(),
        wait_for_policy: args.wait_for_policy,
        decision_log: args.decision_log.clone(),
        ext_authz_grpc: args.ext_authz_grpc,
        tls_cert: args.tls_cert.clone(),
        tls_key: args.tls_key.clone(),
        tls_client_ca: args.tls_client_ca.clone(),
        tls_reload: args.tls_reload,
        bearer_token_file: args.bearer_token_file.clone(),
        client_certificates: args.client_certificates,
    };
    let settings = match config::resolve(&flags, |name| std::env::var(name).ok()) {
        Ok(settings) => settings,
        Err(message) => {
            eprintln!("warden serve: {message}");
            return Exit::Config.into();
        }
    };
    if settings.policy.is_none() && args.fleet.bundle.is_none() {
        eprintln!(
            "warden serve: no policy directory (--policy, `policy` in --config, or WARDEN_SERVE_POLICY) and no --bundle"
        );
        return Exit::Usage.into();
    }
    if settings.decision_log.is_some() && settings.policy.is_none() {
        eprintln!("warden serve: a decision log needs a policy directory");
        return Exit::Usage.into();
    }
    args.policy.clone_from(&settings.policy);
    args.decision_log.clone_from(&settings.decision_log);
    // A decision log, or context providers the package declares, wrap the package's PDP.
    let declares_context = args.policy.as_deref().is_some_and(declares_context);
    let (logged, decision_log) = match (&args.decision_log, &args.policy) {
        (file, Some(dir)) if file.is_some() || declares_context => {
            match wrapped_pdp(file.as_deref(), dir, settings.watch).await {
                Ok((pdp, opa_path, log)) => (Some((pdp, opa_path)), log),
                Err(message) => {
                    eprintln!("warden serve: {message}");
                    return Exit::Config.into();
                }
            }
        }
        _ => (None, None),
    };
    let wrapped = logged.is_some();
    let builder = match (&args.fleet.bundle, &args.policy, logged) {
        (Some(_), _, _) => Server::builder().external(),
        (None, _, Some((pdp, opa_path))) => {
            let builder = Server::builder().pdp(pdp);
            match opa_path {
                Some(path) => builder.opa_path(path),
                None => builder,
            }
        }
        (None, dir, None) => Server::builder().policy_dir(dir.clone().unwrap_or_default()),
    };
    let mut builder = builder
        .body_limit(settings.body_limit)
        .max_batch(settings.max_batch);
    if !settings.watch.is_zero() {
        builder = builder.watch(settings.watch);
    }
    if let Some(url) = &settings.public_url {
        builder = builder.public_url(url);
    }
    if let Some(jwt) = &settings.signed_metadata {
        builder = builder.signed_metadata(jwt);
    }
    for token in &settings.bearer_tokens {
        builder = builder.bearer_token(token);
    }
    if settings.client_certificates {
        builder = builder.accept_client_certificates();
    }
    let server = builder.build();
    let tls = settings.tls.as_ref().map(|tls| {
        let files = TlsFiles::new(&tls.cert, &tls.key).reload_every(tls.reload);
        match &tls.client_ca {
            Some(ca) => files.client_ca(ca),
            None => files,
        }
    });
    // A certificate that does not load stops the start, like a policy that does not.
    if let Some(files) = &tls
        && let Err(error) = files.load()
    {
        eprintln!("warden serve: TLS: {error}");
        return Exit::Config.into();
    }
    let bundle_source = match &args.fleet.bundle {
        Some(spec) => match crate::fleet::serve::start(&args.fleet, spec, &server) {
            Ok(source) => Some(source),
            Err(error) => return crate::fleet::fail("serve", error),
        },
        None => None,
    };
    // Load before listening, so that a mistake in the policies is reported at once and the
    // server never answers from nothing. The serving loop does not load them again.
    if bundle_source.is_none()
        && !wrapped
        && let Err(error) = server.load()
    {
        eprintln!("warden serve: {error}");
        if !settings.wait_for_policy {
            eprintln!(
                "warden serve: not started (--wait-for-policy serves 503 until the policies load)"
            );
            return Exit::Config.into();
        }
        eprintln!("warden serve: serving anyway; /health answers 503 until the policies load");
    }
    let listener = match tokio::net::TcpListener::bind(settings.addr).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("warden serve: cannot listen on {}: {e}", settings.addr);
            return Exit::Config.into();
        }
    };
    let ext_authz = match settings.ext_authz_grpc {
        Some(grpc) => match tokio::net::TcpListener::bind(grpc).await {
            Ok(listener) => Some(listener),
            Err(e) => {
                eprintln!("warden serve: cannot listen on {grpc} for ext_authz: {e}");
                return Exit::Config.into();
            }
        },
        None => None,
    };
    let addr = listener.local_addr().unwrap_or(settings.addr);
    let scheme = if tls.is_some() { "https" } else { "http" };
    match server.revision() {
        Some(revision) => println!(
            "warden: serving policy {} at revision {} on {scheme}://{addr}",
            revision.id, revision.revision
        ),
        None if bundle_source.is_some() => println!(
            "warden: listening on {scheme}://{addr}, bundles from {} (503 until a verified bundle is active)",
            bundle_source.as_deref().unwrap_or_default()
        ),
        None => println!("warden: listening on {scheme}://{addr} (policies not loaded)"),
    }
    if let Some(grpc) = ext_authz {
        if let Ok(grpc_addr) = grpc.local_addr() {
            println!("warden: ext_authz gRPC on {grpc_addr}");
        }
        let server = server.clone();
        tokio::spawn(async move {
            if let Err(error) = warden_ext_authz::serve(server, grpc, shutdown_signal()).await {
                tracing::error!(%error, "the ext_authz gRPC service stopped");
            }
        });
    }
    let served = match tls {
        Some(files) => server.serve_tls(listener, files, shutdown_signal()).await,
        None => server.serve(listener, shutdown_signal()).await,
    };
    // What the decision log still holds is shipped before the process ends (the disk mode
    // keeps it for the next start anyway).
    if let Some(log) = decision_log
        && !log.flush(Duration::from_secs(5)).await
    {
        eprintln!(
            "warden serve: {} decision events not shipped before stopping",
            log.queue_depth()
        );
    }
    match served {
        Ok(()) => {
            println!("warden: stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("warden serve: {e}");
            Exit::Config.into()
        }
    }
}

/// A wrapped PDP, the OPA Data API path of its entrypoint, and its decision log.
type Wrapped = (
    std::sync::Arc<dyn warden_decision::Pdp>,
    Option<String>,
    Option<warden_decision_log::DecisionLog>,
);

/// Whether the package in `dir` declares context attributes (`[[context]]`).
fn declares_context(dir: &std::path::Path) -> bool {
    std::fs::read_to_string(dir.join("warden.toml"))
        .ok()
        .and_then(|text| warden_context::ContextConfig::from_manifest(&text).ok())
        .is_some_and(|config| !config.context.is_empty())
}

/// The policy directory's PDP with the context attributes its manifest declares, each decision
/// logged as `file` says (if given), reloaded when the directory changes; and the OPA Data API
/// path of its entrypoint.
async fn wrapped_pdp(
    file: Option<&std::path::Path>,
    dir: &std::path::Path,
    watch: Duration,
) -> Result<Wrapped, String> {
    use warden_decision_log::{LogConfig, LoggedPdp};
    let policies = warden_server::PolicyDir::open(dir).map_err(|e| e.to_string())?;
    let manifest_path = dir.join("warden.toml");
    let manifest = std::fs::read_to_string(&manifest_path).unwrap_or_default();
    let mut pdp = policies.pdp();
    let attributes = warden_context::ContextConfig::from_manifest(&manifest)
        .and_then(|config| config.attributes())
        .map_err(|e| format!("{}: {e}", manifest_path.display()))?;
    if !attributes.is_empty() {
        pdp = std::sync::Arc::new(warden_context::ContextPdp::new(pdp).attributes(attributes));
    }
    let mut decision_log = None;
    if let Some(file) = file {
        let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let config = LogConfig::from_toml(&text).map_err(|e| format!("{}: {e}", file.display()))?;
        let mut builder = config
            .builder()
            .await
            .map_err(|e| format!("{}: {e}", file.display()))?;
        if let Ok(manifest) = toml::from_str::<warden_decision::PackageManifest>(&manifest) {
            builder = builder.package(&manifest);
        }
        let log = builder
            .build()
            .map_err(|e| format!("{}: {e}", file.display()))?;
        decision_log = Some(log.clone());
        pdp = std::sync::Arc::new(
            LoggedPdp::new(pdp, log)
                .synchronous_when(move |request| config.is_synchronous(&request.resource.id)),
        );
    }
    let opa_path = policies.opa_path();
    if !watch.is_zero() {
        let policies = std::sync::Arc::new(policies);
        tokio::spawn(async move {
            let mut seen = fingerprint(policies.path());
            loop {
                tokio::time::sleep(watch).await;
                let now = fingerprint(policies.path());
                if now != seen {
                    seen = now;
                    match policies.reload() {
                        Ok(revision) => {
                            tracing::info!(policy = %revision.id, revision = %revision.revision, "policies activated")
                        }
                        Err(error) => {
                            tracing::warn!(%error, "policies failed to load; the previous revision stays in force")
                        }
                    }
                }
            }
        });
    }
    Ok((pdp, opa_path, decision_log))
}

/// Names, sizes and modification times of the files under `dir`.
fn fingerprint(dir: &std::path::Path) -> Vec<(PathBuf, u64, Option<std::time::SystemTime>)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(next) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                out.push((entry.path(), meta.len(), meta.modified().ok()));
            }
        }
    }
    out.sort();
    out
}

/// Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
