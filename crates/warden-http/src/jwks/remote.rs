//! A key set fetched from a JWKS URL (directly or through OpenID Connect discovery), cached for
//! its `Cache-Control: max-age` or a configured time, refreshed in the background, re-fetched
//! (rate limited) when a token names an unknown `kid`, and kept when the identity provider is
//! unreachable.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;

use super::{Key, keys_of};
use crate::error::ConfigError;

/// The largest key set or discovery document read (1 MiB).
const MAX_DOCUMENT: usize = 1024 * 1024;

/// How a fetched key set is kept fresh.
///
/// ```
/// use std::time::Duration;
/// use warden_http::JwksOptions;
///
/// let options = JwksOptions::default()
///     .ttl(Duration::from_secs(600))
///     .min_refetch_interval(Duration::from_secs(30));
/// # let _ = options;
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct JwksOptions {
    ttl: Duration,
    max_ttl: Duration,
    min_refetch: Duration,
    timeout: Duration,
}

impl Default for JwksOptions {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(300),
            max_ttl: Duration::from_secs(24 * 3600),
            min_refetch: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
        }
    }
}

impl JwksOptions {
    /// How long a key set is used when its response has no `Cache-Control: max-age` (default
    /// 5 minutes). A `max-age` is used as given, between the refetch interval and a day.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The least time between two fetches (default 30 s): a flood of tokens naming unknown
    /// `kid`s costs the identity provider one request per interval, and a failed refresh is
    /// retried after it.
    pub fn min_refetch_interval(mut self, interval: Duration) -> Self {
        self.min_refetch = interval;
        self
    }

    /// How long one fetch may take (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// The fetched keys, with a generation that changes whenever they do.
pub(crate) struct KeySet {
    pub(crate) keys: Vec<Key>,
    pub(crate) generation: u64,
}

/// A key set behind a URL.
pub(crate) struct Remote {
    url: reqwest::Url,
    client: reqwest::Client,
    options: JwksOptions,
    current: RwLock<Arc<KeySet>>,
    last_fetch: Mutex<Instant>,
    fetching: tokio::sync::Mutex<()>,
    generations: AtomicU64,
    fetches: AtomicU64,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("url", &self.url.as_str())
            .field("keys", &self.keys().keys.len())
            .finish_non_exhaustive()
    }
}

/// Only `https`, or `http` to a loopback address: keys fetched in the clear could be anyone's.
fn checked_url(url: &str, what: &'static str) -> Result<reqwest::Url, ConfigError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| ConfigError::Key {
        what,
        message: format!("`{url}` is not a URL: {e}"),
    })?;
    let loopback = match parsed.host_str() {
        Some("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    };
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if loopback => Ok(parsed),
        _ => Err(ConfigError::Key {
            what,
            message: format!("`{url}` must be https (http only to a loopback address)"),
        }),
    }
}

fn client(options: &JwksOptions) -> Result<reqwest::Client, ConfigError> {
    reqwest::Client::builder()
        .timeout(options.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| ConfigError::Key {
            what: "JWKS client",
            message: e.to_string(),
        })
}

/// Reads a JSON document of at most [`MAX_DOCUMENT`] bytes; its `Cache-Control: max-age`.
async fn get_json<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    url: &reqwest::Url,
) -> Result<(T, Option<Duration>), String> {
    let mut response = client
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| format!("`{url}` is unreachable: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("`{url}` answered {}", response.status()));
    }
    let max_age = response
        .headers()
        .get(reqwest::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(max_age);
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("`{url}` failed: {e}"))?
    {
        if body.len().saturating_add(chunk.len()) > MAX_DOCUMENT {
            return Err(format!("`{url}` answered more than {MAX_DOCUMENT} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    let document = serde_json::from_slice(&body)
        .map_err(|e| format!("`{url}` is not what was expected: {e}"))?;
    Ok((document, max_age))
}

/// `max-age` of a `Cache-Control` value; `no-store`/`no-cache` are an age of zero.
fn max_age(value: &str) -> Option<Duration> {
    let mut age = None;
    for directive in value.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(Duration::ZERO);
        }
        if let Some(secs) = lower.strip_prefix("max-age=") {
            age = secs
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs);
        }
    }
    age
}

/// The members of an OpenID Connect discovery document that matter here.
#[derive(serde::Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

impl Remote {
    /// The JWKS URL of `issuer` from its `/.well-known/openid-configuration`, which must name
    /// the same issuer (OpenID Connect Discovery 1.0, section 4.3).
    pub(crate) async fn discover(
        issuer: &str,
        options: &JwksOptions,
    ) -> Result<String, ConfigError> {
        let base = checked_url(issuer, "OpenID Connect issuer")?;
        let config = format!(
            "{}/.well-known/openid-configuration",
            base.as_str().trim_end_matches('/')
        );
        let config = checked_url(&config, "OpenID Connect issuer")?;
        let (discovery, _): (Discovery, _) =
            get_json(&client(options)?, &config)
                .await
                .map_err(|message| ConfigError::Key {
                    what: "OpenID Connect discovery",
                    message,
                })?;
        if discovery.issuer != issuer {
            return Err(ConfigError::Key {
                what: "OpenID Connect discovery",
                message: format!(
                    "the document names the issuer `{}`, not `{issuer}`",
                    discovery.issuer
                ),
            });
        }
        Ok(discovery.jwks_uri)
    }

    /// Fetches the key set once (an error if it cannot be had) and keeps it fresh in the
    /// background for as long as a verifier holds it.
    pub(crate) async fn start(url: &str, options: JwksOptions) -> Result<Arc<Self>, ConfigError> {
        let url = checked_url(url, "JWKS URL")?;
        let remote = Arc::new(Self {
            client: client(&options)?,
            url,
            options,
            current: RwLock::new(Arc::new(KeySet {
                keys: Vec::new(),
                generation: 0,
            })),
            last_fetch: Mutex::new(Instant::now()),
            fetching: tokio::sync::Mutex::new(()),
            generations: AtomicU64::new(0),
            fetches: AtomicU64::new(0),
        });
        let ttl = remote.fetch().await.map_err(|message| ConfigError::Key {
            what: "JWKS",
            message,
        })?;
        tokio::spawn(refresh(Arc::downgrade(&remote), ttl));
        Ok(remote)
    }

    pub(crate) fn keys(&self) -> Arc<KeySet> {
        match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// How many times the set was fetched.
    pub(crate) fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// Fetches the set and swaps it in; on error the last good set stays. The time to use it.
    async fn fetch(&self) -> Result<Duration, String> {
        if let Ok(mut last) = self.last_fetch.lock() {
            *last = Instant::now();
        }
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let (set, max_age): (JwkSet, _) = get_json(&self.client, &self.url).await?;
        let (keys, skipped) = keys_of(&set);
        if !skipped.is_empty() {
            tracing::warn!(target: "warden::jwt", url = %self.url, ?skipped, "JWKS keys left out");
        }
        if keys.is_empty() {
            return Err(format!("`{}` holds no usable key", self.url));
        }
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        let set = Arc::new(KeySet { keys, generation });
        match self.current.write() {
            Ok(mut current) => *current = set,
            Err(poisoned) => *poisoned.into_inner() = set,
        }
        let ttl = max_age.unwrap_or(self.options.ttl).clamp(
            self.options.min_refetch,
            self.options.max_ttl.max(self.options.min_refetch),
        );
        Ok(ttl)
    }

    /// A token named a `kid` the set does not hold: fetch again, unless the set was fetched
    /// less than the refetch interval ago (then the token is refused as it is). Concurrent
    /// callers share one fetch.
    pub(crate) async fn refetch_for_unknown_kid(&self) {
        let due = |remote: &Self| {
            remote
                .last_fetch
                .lock()
                .map(|last| last.elapsed() >= remote.options.min_refetch)
                .unwrap_or(false)
        };
        if !due(self) {
            return;
        }
        let _one = self.fetching.lock().await;
        if !due(self) {
            return;
        }
        if let Err(error) = self.fetch().await {
            tracing::warn!(target: "warden::jwt", url = %self.url, %error, "JWKS refetch failed; the last key set stays");
        }
    }
}

/// Refreshes the set when it is due, until the last verifier holding it is gone.
async fn refresh(remote: Weak<Remote>, mut wait: Duration) {
    loop {
        tokio::time::sleep(wait).await;
        let Some(remote) = remote.upgrade() else {
            return;
        };
        let _one = remote.fetching.lock().await;
        wait = match remote.fetch().await {
            Ok(ttl) => ttl,
            Err(error) => {
                tracing::warn!(target: "warden::jwt", url = %remote.url, %error, "JWKS refresh failed; the last key set stays");
                remote.options.min_refetch.max(Duration::from_millis(10))
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_max_age() {
        assert_eq!(
            max_age("public, max-age=600"),
            Some(Duration::from_secs(600))
        );
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
        assert_eq!(max_age("max-age=abc"), None);
    }

    #[test]
    fn only_https_or_loopback_http() {
        assert!(checked_url("https://idp.example/jwks", "x").is_ok());
        assert!(checked_url("http://127.0.0.1:8080/jwks", "x").is_ok());
        assert!(checked_url("http://localhost/jwks", "x").is_ok());
        assert!(checked_url("http://[::1]/jwks", "x").is_ok());
        assert!(checked_url("http://idp.example/jwks", "x").is_err());
        assert!(checked_url("file:///etc/jwks", "x").is_err());
        assert!(checked_url("not a url", "x").is_err());
    }
}
