//! A package's context, as its manifest `warden.toml` declares it.

use std::time::Duration;

use serde::Deserialize;

use crate::provider::{Attribute, KeyBy, OnError};

/// The `[[context]]` entries of a package manifest (other keys of the manifest are ignored).
///
/// ```
/// use warden_context::ContextConfig;
///
/// let config = ContextConfig::from_manifest(r#"
/// id = "clinic-session"
/// version = "1.0.0"
///
/// [[context]]
/// name = "recent_denials"
/// from = "redis"
/// url = "redis://127.0.0.1:6379"
/// read = "recent_denials"
/// prefix = "warden:history:"
/// window_secs = 900
/// key = "subject"
///
/// [[context]]
/// name = "sensitivity"
/// from = "postgres"
/// url = "postgres://postgres@127.0.0.1:5432/test"
/// query = "SELECT to_jsonb(sensitivity)::text FROM inventory WHERE resource = $1"
/// key = "resource"
/// ttl_ms = 30000
/// on_error = "omit"
/// "#).unwrap();
/// assert_eq!(config.context.len(), 2);
/// let attributes = config.attributes().unwrap();
/// assert_eq!(attributes[1].name(), "sensitivity");
/// assert!(ContextConfig::from_manifest("[[context]]\nname = \"x\"\nfrom = \"mongodb\"\nurl = \"x\"\nkey = \"subject\"").is_err());
/// let no_query = "[[context]]\nname = \"x\"\nfrom = \"postgres\"\nurl = \"postgres://h/db\"\nkey = \"subject\"";
/// assert!(ContextConfig::from_manifest(no_query).unwrap().attributes().is_err());
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[non_exhaustive]
pub struct ContextConfig {
    /// The attributes.
    #[serde(default)]
    pub context: Vec<AttributeConfig>,
}

/// One `[[context]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AttributeConfig {
    /// The name in `context`.
    pub name: String,
    /// The store.
    pub from: Store,
    /// The store's address: `redis://…`, `postgres://…`, or an `http(s)` URL with `{key}`.
    pub url: String,
    /// What it is keyed by.
    pub key: KeyBy,
    /// PostgreSQL: the query (`$1` is the key; one text column of JSON).
    #[serde(default)]
    pub query: Option<String>,
    /// Redis: `json` (GET, the default), `hash` (HGETALL) or `recent_denials`.
    #[serde(default)]
    pub read: Option<String>,
    /// Redis: the key prefix.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Redis, `recent_denials`: the window in seconds (default 900).
    #[serde(default)]
    pub window_secs: Option<u64>,
    /// How long a value may be reused (default 0: fetched for every decision).
    #[serde(default)]
    pub ttl_ms: u64,
    /// What happens when the store fails (default `deny`).
    #[serde(default)]
    pub on_error: OnError,
}

/// The kinds of store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Store {
    /// Redis.
    Redis,
    /// PostgreSQL.
    Postgres,
    /// An HTTP service.
    Http,
}

/// A declaration that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("context declaration: {0}")]
pub struct ConfigError(pub String);

impl ContextConfig {
    /// Reads the `[[context]]` entries of a manifest.
    pub fn from_manifest(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError(e.message().to_owned()))
    }

    /// The attributes, their providers made (nothing is connected yet).
    pub fn attributes(&self) -> Result<Vec<Attribute>, ConfigError> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(self.context.len());
        for entry in &self.context {
            if entry.name.is_empty() || !seen.insert(entry.name.as_str()) {
                return Err(ConfigError(format!(
                    "the attribute name `{}` is empty or given twice",
                    entry.name
                )));
            }
            let fail = |message: &str| ConfigError(format!("`{}`: {message}", entry.name));
            let redis_only =
                entry.read.is_some() || entry.prefix.is_some() || entry.window_secs.is_some();
            if entry.from != Store::Redis && redis_only {
                return Err(fail(
                    "`read`, `prefix` and `window_secs` are for `from = \"redis\"`",
                ));
            }
            if (entry.from == Store::Postgres) != entry.query.is_some() {
                return Err(fail(
                    "`query` is needed with `from = \"postgres\"`, and only there",
                ));
            }
            let attribute = match entry.from {
                #[cfg(feature = "redis")]
                Store::Redis => {
                    let window = Duration::from_secs(entry.window_secs.unwrap_or(900));
                    let read = match entry.read.as_deref().unwrap_or("json") {
                        "json" => crate::RedisRead::Json,
                        "hash" => crate::RedisRead::Hash,
                        "recent_denials" => crate::RedisRead::RecentDenials { window },
                        other => {
                            return Err(fail(&format!(
                                "`{other}`: read is `json`, `hash` or `recent_denials`"
                            )));
                        }
                    };
                    let prefix = entry.prefix.as_deref().unwrap_or("");
                    let provider = crate::RedisProvider::new(&entry.url, prefix, read)
                        .map_err(|e| fail(&e.to_string()))?;
                    Attribute::new(&entry.name, entry.key, provider)
                }
                #[cfg(feature = "postgres")]
                Store::Postgres => Attribute::new(
                    &entry.name,
                    entry.key,
                    crate::PostgresProvider::new(&entry.url, entry.query.as_deref().unwrap_or("")),
                ),
                #[cfg(feature = "http")]
                Store::Http => {
                    let provider =
                        crate::HttpProvider::new(&entry.url).map_err(|e| fail(&e.to_string()))?;
                    Attribute::new(&entry.name, entry.key, provider)
                }
                #[cfg_attr(
                    all(feature = "redis", feature = "postgres", feature = "http"),
                    expect(unreachable_patterns, reason = "the stores behind features")
                )]
                _ => return Err(fail("this store is not compiled in")),
            };
            out.push(
                attribute
                    .ttl(Duration::from_millis(entry.ttl_ms))
                    .on_error(entry.on_error),
            );
        }
        Ok(out)
    }
}
