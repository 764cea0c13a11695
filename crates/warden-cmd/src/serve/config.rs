//! `warden serve`'s settings: a TOML file (`--config`), each option overridden by an
//! environment variable, each of those by a flag.
//!
//! | file | environment | flag | default |
//! |---|---|---|---|
//! | `policy` | `WARDEN_SERVE_POLICY` | `--policy` | |
//! | `addr` | `WARDEN_SERVE_ADDR` | `--addr` | `127.0.0.1:8181` |
//! | `watch` | `WARDEN_SERVE_WATCH` | `--watch` | `2s` |
//! | `body_limit` | `WARDEN_SERVE_BODY_LIMIT` | `--body-limit` | 262144 |
//! | `max_batch` | `WARDEN_SERVE_MAX_BATCH` | `--max-batch` | 1000 |
//! | `public_url` | `WARDEN_SERVE_PUBLIC_URL` | `--public-url` | |
//! | `signed_metadata` | `WARDEN_SERVE_SIGNED_METADATA` | | |
//! | `wait_for_policy` | `WARDEN_SERVE_WAIT_FOR_POLICY` | `--wait-for-policy` | `false` |
//! | `decision_log` | `WARDEN_SERVE_DECISION_LOG` | `--decision-log` | |
//! | `ext_authz_grpc` | `WARDEN_SERVE_EXT_AUTHZ_GRPC` | `--ext-authz-grpc` | |
//! | `tls.cert`, `tls.key` | `WARDEN_SERVE_TLS_CERT`, `WARDEN_SERVE_TLS_KEY` | `--tls-cert`, `--tls-key` | |
//! | `tls.client_ca` | `WARDEN_SERVE_TLS_CLIENT_CA` | `--tls-client-ca` | |
//! | `tls.reload` | `WARDEN_SERVE_TLS_RELOAD` | `--tls-reload` | `30s` |
//! | `auth.bearer_tokens` | `WARDEN_SERVE_AUTH_BEARER_TOKENS` (comma-separated) | | |
//! | `auth.bearer_token_file` | `WARDEN_SERVE_AUTH_BEARER_TOKEN_FILE` | `--bearer-token-file` | |
//! | `auth.client_certificates` | `WARDEN_SERVE_AUTH_CLIENT_CERTIFICATES` | `--client-certificates` | `false` |
//!
//! The file itself is `--config` or `WARDEN_SERVE_CONFIG`. An unknown key, a value of the wrong
//! type or an environment variable that does not parse is an error naming it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The settings file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct File {
    policy: Option<PathBuf>,
    addr: Option<String>,
    watch: Option<String>,
    body_limit: Option<usize>,
    max_batch: Option<usize>,
    public_url: Option<String>,
    signed_metadata: Option<String>,
    wait_for_policy: Option<bool>,
    decision_log: Option<PathBuf>,
    ext_authz_grpc: Option<String>,
    #[serde(default)]
    tls: Tls,
    #[serde(default)]
    auth: Auth,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Tls {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
    reload: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Auth {
    bearer_tokens: Option<Vec<String>>,
    bearer_token_file: Option<PathBuf>,
    client_certificates: Option<bool>,
}

/// What the flags say; `None` where a flag was not given.
#[derive(Debug, Default)]
pub(crate) struct Flags {
    pub(crate) config: Option<PathBuf>,
    pub(crate) policy: Option<PathBuf>,
    pub(crate) addr: Option<SocketAddr>,
    pub(crate) watch: Option<Duration>,
    pub(crate) body_limit: Option<usize>,
    pub(crate) max_batch: Option<usize>,
    pub(crate) public_url: Option<String>,
    pub(crate) wait_for_policy: bool,
    pub(crate) decision_log: Option<PathBuf>,
    pub(crate) ext_authz_grpc: Option<SocketAddr>,
    pub(crate) tls_cert: Option<PathBuf>,
    pub(crate) tls_key: Option<PathBuf>,
    pub(crate) tls_client_ca: Option<PathBuf>,
    pub(crate) tls_reload: Option<Duration>,
    pub(crate) bearer_token_file: Option<PathBuf>,
    pub(crate) client_certificates: bool,
}

/// TLS settings, complete.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TlsSettings {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) client_ca: Option<PathBuf>,
    pub(crate) reload: Duration,
}

/// The settings in force.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Settings {
    pub(crate) policy: Option<PathBuf>,
    pub(crate) addr: SocketAddr,
    pub(crate) watch: Duration,
    pub(crate) body_limit: usize,
    pub(crate) max_batch: usize,
    pub(crate) public_url: Option<String>,
    pub(crate) signed_metadata: Option<String>,
    pub(crate) wait_for_policy: bool,
    pub(crate) decision_log: Option<PathBuf>,
    pub(crate) ext_authz_grpc: Option<SocketAddr>,
    pub(crate) tls: Option<TlsSettings>,
    pub(crate) bearer_tokens: Vec<String>,
    pub(crate) client_certificates: bool,
}

fn duration(text: &str, name: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("`{name}` = `{text}`: {e}"))
}

fn parse_addr(text: &str, name: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|e| format!("`{name}` = `{text}` is not an address: {e}"))
}

/// Reads the settings: the file, then the environment (`env` looks a variable up), then the
/// flags.
pub(crate) fn resolve(
    flags: &Flags,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Settings, String> {
    let config = flags
        .config
        .clone()
        .or_else(|| env("WARDEN_SERVE_CONFIG").map(PathBuf::from));
    let mut file = match &config {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            toml::from_str::<File>(&text)
                .map_err(|e| format!("{}: {}", path.display(), e.to_string().trim_end()))?
        }
        None => File::default(),
    };
    let var = |name: &str| env(name).filter(|v| !v.is_empty());
    let parse_usize = |name: &str| -> Result<Option<usize>, String> {
        var(name)
            .map(|v| {
                v.parse()
                    .map_err(|e| format!("{name}=`{v}` is not a number: {e}"))
            })
            .transpose()
    };
    let parse_bool = |name: &str| -> Result<Option<bool>, String> {
        var(name)
            .map(|v| match v.as_str() {
                "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err(format!("{name}=`{v}` is not true or false")),
            })
            .transpose()
    };
    // The environment over the file.
    if let Some(v) = var("WARDEN_SERVE_POLICY") {
        file.policy = Some(v.into());
    }
    if let Some(v) = var("WARDEN_SERVE_ADDR") {
        parse_addr(&v, "WARDEN_SERVE_ADDR")?;
        file.addr = Some(v);
    }
    if let Some(v) = var("WARDEN_SERVE_WATCH") {
        duration(&v, "WARDEN_SERVE_WATCH")?;
        file.watch = Some(v);
    }
    if let Some(v) = parse_usize("WARDEN_SERVE_BODY_LIMIT")? {
        file.body_limit = Some(v);
    }
    if let Some(v) = parse_usize("WARDEN_SERVE_MAX_BATCH")? {
        file.max_batch = Some(v);
    }
    if let Some(v) = var("WARDEN_SERVE_PUBLIC_URL") {
        file.public_url = Some(v);
    }
    if let Some(v) = var("WARDEN_SERVE_SIGNED_METADATA") {
        file.signed_metadata = Some(v);
    }
    if let Some(v) = parse_bool("WARDEN_SERVE_WAIT_FOR_POLICY")? {
        file.wait_for_policy = Some(v);
    }
    if let Some(v) = var("WARDEN_SERVE_DECISION_LOG") {
        file.decision_log = Some(v.into());
    }
    if let Some(v) = var("WARDEN_SERVE_EXT_AUTHZ_GRPC") {
        parse_addr(&v, "WARDEN_SERVE_EXT_AUTHZ_GRPC")?;
        file.ext_authz_grpc = Some(v);
    }
    if let Some(v) = var("WARDEN_SERVE_TLS_CERT") {
        file.tls.cert = Some(v.into());
    }
    if let Some(v) = var("WARDEN_SERVE_TLS_KEY") {
        file.tls.key = Some(v.into());
    }
    if let Some(v) = var("WARDEN_SERVE_TLS_CLIENT_CA") {
        file.tls.client_ca = Some(v.into());
    }
    if let Some(v) = var("WARDEN_SERVE_TLS_RELOAD") {
        duration(&v, "WARDEN_SERVE_TLS_RELOAD")?;
        file.tls.reload = Some(v);
    }
    if let Some(v) = var("WARDEN_SERVE_AUTH_BEARER_TOKENS") {
        file.auth.bearer_tokens = Some(
            v.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect(),
        );
    }
    if let Some(v) = var("WARDEN_SERVE_AUTH_BEARER_TOKEN_FILE") {
        file.auth.bearer_token_file = Some(v.into());
    }
    if let Some(v) = parse_bool("WARDEN_SERVE_AUTH_CLIENT_CERTIFICATES")? {
        file.auth.client_certificates = Some(v);
    }
    // The flags over both.
    let addr = match (flags.addr, &file.addr) {
        (Some(flag), _) => flag,
        (None, Some(text)) => parse_addr(text, "addr")?,
        (None, None) => SocketAddr::from(([127, 0, 0, 1], 8181)),
    };
    let watch = match (flags.watch, &file.watch) {
        (Some(flag), _) => flag,
        (None, Some(text)) => duration(text, "watch")?,
        (None, None) => Duration::from_secs(2),
    };
    let ext_authz_grpc = match (flags.ext_authz_grpc, &file.ext_authz_grpc) {
        (Some(flag), _) => Some(flag),
        (None, Some(text)) => Some(parse_addr(text, "ext_authz_grpc")?),
        (None, None) => None,
    };
    let cert = flags.tls_cert.clone().or(file.tls.cert);
    let key = flags.tls_key.clone().or(file.tls.key);
    let client_ca = flags.tls_client_ca.clone().or(file.tls.client_ca);
    let reload = match (flags.tls_reload, &file.tls.reload) {
        (Some(flag), _) => flag,
        (None, Some(text)) => duration(text, "tls.reload")?,
        (None, None) => Duration::from_secs(30),
    };
    let tls = match (cert, key) {
        (Some(cert), Some(key)) => Some(TlsSettings {
            cert,
            key,
            client_ca,
            reload,
        }),
        (None, None) if client_ca.is_none() => None,
        _ => {
            return Err("TLS needs both a certificate (`tls.cert`) and its key (`tls.key`)".into());
        }
    };
    let mut bearer_tokens = file.auth.bearer_tokens.unwrap_or_default();
    if let Some(path) = flags
        .bearer_token_file
        .clone()
        .or(file.auth.bearer_token_file)
    {
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        bearer_tokens.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned),
        );
    }
    if let Some(jwt) = &file.signed_metadata {
        warden_server::signed_metadata_issuer(jwt)
            .map_err(|e| format!("`signed_metadata`: {e}"))?;
    }
    let client_certificates =
        flags.client_certificates || file.auth.client_certificates.unwrap_or(false);
    if client_certificates && tls.as_ref().is_none_or(|t| t.client_ca.is_none()) {
        return Err("client certificates need TLS with a client CA (`tls.client_ca`)".into());
    }
    Ok(Settings {
        policy: flags.policy.clone().or(file.policy),
        addr,
        watch,
        body_limit: flags
            .body_limit
            .or(file.body_limit)
            .unwrap_or(warden_server::DEFAULT_BODY_LIMIT),
        max_batch: flags
            .max_batch
            .or(file.max_batch)
            .unwrap_or(warden_server::DEFAULT_MAX_BATCH),
        public_url: flags.public_url.clone().or(file.public_url),
        signed_metadata: file.signed_metadata,
        wait_for_policy: flags.wait_for_policy || file.wait_for_policy.unwrap_or(false),
        decision_log: flags.decision_log.clone().or(file.decision_log),
        ext_authz_grpc,
        tls,
        bearer_tokens,
        client_certificates,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn file(text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!(
            "warden-serve-config-{}-{}.toml",
            std::process::id(),
            text.len()
        ));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn the_environment_overrides_the_file_and_flags_override_both() {
        let path = file(
            "policy = \"from-file\"\naddr = \"0.0.0.0:9000\"\nwatch = \"5s\"\nmax_batch = 10\n\
             [tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n[auth]\nbearer_tokens = [\"a\"]\n",
        );
        let env: HashMap<&str, &str> = [
            ("WARDEN_SERVE_ADDR", "127.0.0.1:9100"),
            ("WARDEN_SERVE_MAX_BATCH", "20"),
            ("WARDEN_SERVE_AUTH_BEARER_TOKENS", "b, c"),
            ("WARDEN_SERVE_TLS_RELOAD", "1m"),
        ]
        .into_iter()
        .collect();
        let lookup = |name: &str| env.get(name).map(|v| (*v).to_owned());
        let flags = Flags {
            config: Some(path.clone()),
            max_batch: Some(30),
            ..Flags::default()
        };
        let settings = resolve(&flags, lookup).unwrap();
        assert_eq!(settings.policy, Some(PathBuf::from("from-file")));
        assert_eq!(settings.addr, "127.0.0.1:9100".parse().unwrap());
        assert_eq!(settings.watch, Duration::from_secs(5));
        assert_eq!(settings.max_batch, 30);
        assert_eq!(settings.bearer_tokens, ["b", "c"]);
        let tls = settings.tls.unwrap();
        assert_eq!(tls.cert, PathBuf::from("c.pem"));
        assert_eq!(tls.reload, Duration::from_secs(60));
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn mistakes_are_errors_that_name_the_setting() {
        let none = |_: &str| None;
        for (text, expected) in [
            ("polcy = \"x\"\n", "polcy"),
            ("[tls]\ncertificate = \"x\"\n", "certificate"),
            ("body_limit = \"big\"\n", "body_limit"),
            ("watch = \"soon\"\n", "watch"),
            ("[tls]\ncert = \"c.pem\"\n", "tls.key"),
            ("[auth]\nclient_certificates = true\n", "tls.client_ca"),
            (
                "signed_metadata = \"eyJhbGciOiJub25lIn0.e30.\"\n",
                "signed_metadata",
            ),
            ("signed_metadata = \"not a jwt\"\n", "signed_metadata"),
        ] {
            let path = file(text);
            let flags = Flags {
                config: Some(path.clone()),
                ..Flags::default()
            };
            let error = resolve(&flags, none).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
            std::fs::remove_file(path).unwrap();
        }
        for (name, value) in [
            ("WARDEN_SERVE_WATCH", "soon"),
            ("WARDEN_SERVE_ADDR", "localhost"),
            ("WARDEN_SERVE_BODY_LIMIT", "-1"),
            ("WARDEN_SERVE_WAIT_FOR_POLICY", "yes"),
        ] {
            let error = resolve(&Flags::default(), |n: &str| {
                (n == name).then(|| value.to_owned())
            })
            .unwrap_err();
            assert!(error.contains(name), "{name}: {error}");
        }
    }

    #[test]
    fn without_anything_the_defaults_hold() {
        let settings = resolve(&Flags::default(), |_: &str| None).unwrap();
        assert_eq!(settings.addr, "127.0.0.1:8181".parse().unwrap());
        assert_eq!(settings.watch, Duration::from_secs(2));
        assert_eq!(settings.body_limit, warden_server::DEFAULT_BODY_LIMIT);
        assert!(settings.tls.is_none());
        assert!(settings.bearer_tokens.is_empty());
    }
}
