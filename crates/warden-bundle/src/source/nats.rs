//! Bundles in a NATS JetStream object store, with change notifications; status in another.

use std::time::Duration;

use async_nats::jetstream::{self, object_store};
use std::sync::Arc;

use futures_util::StreamExt as _;
use tokio::io::AsyncReadExt as _;
use tokio::sync::Notify;

use super::{BundleSource, PollFuture, SourceError};
use crate::format::MAX_ARCHIVE_BYTES;
use crate::status::InstanceStatus;

/// The object store bundles are published to, one object per channel.
pub const DEFAULT_BUNDLE_BUCKET: &str = "warden-bundles";
/// The object store instances write their status to, one object per instance.
pub const DEFAULT_STATUS_BUCKET: &str = "warden-status";

/// The metadata key of a published object that names its revision.
const REVISION_KEY: &str = "warden-revision";
/// The metadata key of a published object that names its digest.
const DIGEST_KEY: &str = "warden-digest";

fn failed(what: &str) -> impl Fn(&dyn std::fmt::Display) -> SourceError + '_ {
    move |e| SourceError(format!("NATS: {what}: {e}"))
}

/// A connection to the fleet's channel: the bundle object store and the status bucket.
#[derive(Clone)]
pub struct Channel {
    js: jetstream::Context,
    bundle_bucket: String,
    status_bucket: String,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("bundle_bucket", &self.bundle_bucket)
            .field("status_bucket", &self.status_bucket)
            .finish_non_exhaustive()
    }
}

/// The head of a channel: what was published last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The revision.
    pub revision: u64,
    /// The bundle digest.
    pub digest: String,
}

impl Channel {
    /// Connects to the server at `url` (`nats://host:port`). The connection is made in the
    /// background and remade after an outage; operations fail while the server is down.
    pub async fn connect(url: &str) -> Result<Self, SourceError> {
        Self::connect_notifying(url, Arc::new(Notify::new())).await
    }

    /// As [`connect`](Self::connect), and wakes `connected` each time the connection is made
    /// or remade, so a source can look at the channel at once after an outage.
    pub async fn connect_notifying(url: &str, connected: Arc<Notify>) -> Result<Self, SourceError> {
        let client = async_nats::ConnectOptions::new()
            .event_callback(move |event| {
                let connected = connected.clone();
                async move {
                    if matches!(event, async_nats::Event::Connected) {
                        connected.notify_one();
                    }
                }
            })
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(2))
            .request_timeout(Some(Duration::from_secs(2)))
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((attempts as u64).saturating_mul(100).clamp(100, 1000))
            })
            .connect(url)
            .await
            .map_err(|e| SourceError(format!("NATS: cannot connect to `{url}`: {e}")))?;
        Ok(Self {
            js: jetstream::new(client),
            bundle_bucket: DEFAULT_BUNDLE_BUCKET.to_owned(),
            status_bucket: DEFAULT_STATUS_BUCKET.to_owned(),
        })
    }

    /// Uses another object store for bundles.
    #[must_use]
    pub fn bundle_bucket(mut self, bucket: impl Into<String>) -> Self {
        self.bundle_bucket = bucket.into();
        self
    }

    /// Uses another bucket for status.
    #[must_use]
    pub fn status_bucket(mut self, bucket: impl Into<String>) -> Self {
        self.status_bucket = bucket.into();
        self
    }

    async fn bundles(&self, create: bool) -> Result<object_store::ObjectStore, SourceError> {
        match self.js.get_object_store(&self.bundle_bucket).await {
            Ok(store) => Ok(store),
            Err(e) if !create => Err(failed("bundle bucket")(&e)),
            Err(_) => self
                .js
                .create_object_store(object_store::Config {
                    bucket: self.bundle_bucket.clone(),
                    description: Some("Warden policy bundles, one object per channel".into()),
                    ..Default::default()
                })
                .await
                .map_err(|e| failed("cannot create the bundle bucket")(&e)),
        }
    }

    // Status lives in an object store too (one object per instance): it needs nothing of the
    // server beyond what bundles need.
    async fn statuses(&self) -> Result<object_store::ObjectStore, SourceError> {
        match self.js.get_object_store(&self.status_bucket).await {
            Ok(store) => Ok(store),
            Err(_) => self
                .js
                .create_object_store(object_store::Config {
                    bucket: self.status_bucket.clone(),
                    description: Some(
                        "Warden PDP instances' status, one object per instance".into(),
                    ),
                    ..Default::default()
                })
                .await
                .map_err(|e| failed("cannot create the status bucket")(&e)),
        }
    }

    /// Publishes a bundle (already verified by the caller) to `channel`. Refuses a revision
    /// that is not newer than the channel's head, unless it is the head itself (publishing the
    /// same bundle again is a no-op that still notifies).
    pub async fn publish(
        &self,
        channel: &str,
        revision: u64,
        digest: &str,
        bytes: &[u8],
    ) -> Result<Head, SourceError> {
        let store = self.bundles(true).await?;
        if let Some(head) = self.head_in(&store, channel).await?
            && head.revision >= revision
            && head.digest != digest
        {
            return Err(SourceError(format!(
                "channel `{channel}` is at revision {}; publish a higher revision",
                head.revision
            )));
        }
        let meta = object_store::ObjectMetadata {
            name: channel.to_owned(),
            description: Some(format!("Warden bundle revision {revision}")),
            metadata: [
                (REVISION_KEY.to_owned(), revision.to_string()),
                (DIGEST_KEY.to_owned(), digest.to_owned()),
            ]
            .into_iter()
            .collect(),
            ..Default::default()
        };
        let mut reader = bytes;
        store
            .put(meta, &mut reader)
            .await
            .map_err(|e| failed("cannot publish")(&e))?;
        Ok(Head {
            revision,
            digest: digest.to_owned(),
        })
    }

    /// What `channel` holds, if anything.
    pub async fn head(&self, channel: &str) -> Result<Option<Head>, SourceError> {
        let store = self.bundles(false).await?;
        self.head_in(&store, channel).await
    }

    async fn head_in(
        &self,
        store: &object_store::ObjectStore,
        channel: &str,
    ) -> Result<Option<Head>, SourceError> {
        match store.info(channel).await {
            Ok(info) => Ok(head_of(&info)),
            Err(e) if e.kind() == object_store::InfoErrorKind::NotFound => Ok(None),
            Err(e) => Err(failed("cannot read the channel")(&e)),
        }
    }

    /// Deletes the bundle and status buckets with everything in them (for tests, and for
    /// tearing a fleet down).
    pub async fn delete_buckets(&self) -> Result<(), SourceError> {
        for bucket in [&self.bundle_bucket, &self.status_bucket] {
            if self.js.get_object_store(bucket).await.is_ok() {
                self.js
                    .delete_object_store(bucket)
                    .await
                    .map_err(|e| failed("cannot delete a bucket")(&e))?;
            }
        }
        Ok(())
    }

    /// Writes an instance's status.
    pub async fn put_status(&self, status: &InstanceStatus) -> Result<(), SourceError> {
        let store = self.statuses().await?;
        let value = serde_json::to_vec(status).map_err(|e| SourceError(e.to_string()))?;
        let mut reader = value.as_slice();
        store
            .put(status_key(&status.instance).as_str(), &mut reader)
            .await
            .map_err(|e| failed("cannot write status")(&e))?;
        Ok(())
    }

    /// Every instance's last status.
    pub async fn all_status(&self) -> Result<Vec<InstanceStatus>, SourceError> {
        let store = self.statuses().await?;
        let mut list = store
            .list()
            .await
            .map_err(|e| failed("cannot list status")(&e))?;
        let mut names = Vec::new();
        while let Some(info) = list.next().await {
            let info = info.map_err(|e| failed("cannot list status")(&e))?;
            if !info.deleted {
                names.push(info.name);
            }
        }
        let mut out = Vec::new();
        for name in names {
            let mut object = store
                .get(&name)
                .await
                .map_err(|e| failed("cannot read status")(&e))?;
            let mut bytes = Vec::new();
            object
                .read_to_end(&mut bytes)
                .await
                .map_err(|e| failed("cannot read status")(&e))?;
            if let Ok(status) = serde_json::from_slice::<InstanceStatus>(&bytes) {
                out.push(status);
            }
        }
        out.sort_by(|a, b| a.instance.cmp(&b.instance));
        Ok(out)
    }
}

fn head_of(info: &object_store::ObjectInfo) -> Option<Head> {
    Some(Head {
        revision: info.metadata.get(REVISION_KEY)?.parse().ok()?,
        digest: info.metadata.get(DIGEST_KEY)?.clone(),
    })
}

/// A KV key for an instance name: letters, digits, `-`, `_`, `.` kept, anything else `_`.
fn status_key(instance: &str) -> String {
    instance
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Bundles from one channel of a JetStream object store.
pub struct NatsSource {
    url: String,
    channel_name: String,
    bucket: String,
    channel: Option<Channel>,
    watch: Option<object_store::Watch>,
    last: Option<String>,
    connected: Arc<Notify>,
}

impl std::fmt::Debug for NatsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSource")
            .field("url", &self.url)
            .field("channel", &self.channel_name)
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

impl NatsSource {
    /// `nats://host:port/<channel>[?bucket=<object store>]`.
    pub fn parse(spec: &str) -> Result<Self, SourceError> {
        let rest = spec
            .strip_prefix("nats://")
            .ok_or_else(|| SourceError(format!("`{spec}` is not a nats:// URL")))?;
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (host, channel) = rest.split_once('/').ok_or_else(|| {
            SourceError(format!(
                "`{spec}` names no channel (nats://host:port/<channel>)"
            ))
        })?;
        let mut bucket = DEFAULT_BUNDLE_BUCKET.to_owned();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("bucket", value)) if !value.is_empty() => bucket = value.to_owned(),
                _ => return Err(SourceError(format!("`{spec}`: unknown option `{pair}`"))),
            }
        }
        if host.is_empty() || channel.is_empty() || channel.contains('/') {
            return Err(SourceError(format!(
                "`{spec}` is not nats://host:port/<channel>"
            )));
        }
        Ok(Self {
            url: format!("nats://{host}"),
            channel_name: channel.to_owned(),
            bucket,
            channel: None,
            watch: None,
            last: None,
            connected: Arc::new(Notify::new()),
        })
    }

    /// The channel: the object's name in the bucket.
    pub fn channel_name(&self) -> &str {
        &self.channel_name
    }

    /// The object store.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The server's URL, `nats://host:port`.
    pub fn server_url(&self) -> &str {
        &self.url
    }

    async fn channel(&mut self) -> Result<Channel, SourceError> {
        if let Some(channel) = &self.channel {
            return Ok(channel.clone());
        }
        let channel = Channel::connect_notifying(&self.url, self.connected.clone())
            .await?
            .bundle_bucket(self.bucket.clone());
        self.channel = Some(channel.clone());
        Ok(channel)
    }

    /// Waits for a notification on the channel, at most `wait`.
    async fn wait_for_change(&mut self, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        if self.watch.is_none()
            && let Ok(channel) = self.channel().await
            && let Ok(store) = tokio::time::timeout(wait, channel.bundles(false)).await
            && let Ok(store) = store
            && let Ok(Ok(watch)) = tokio::time::timeout_at(deadline, store.watch()).await
        {
            self.watch = Some(watch);
        }
        let connected = self.connected.clone();
        let Some(watch) = self.watch.as_mut() else {
            // No watch (the server is down): wait for the connection to come back.
            let _ = tokio::time::timeout_at(deadline, connected.notified()).await;
            return;
        };
        loop {
            let next = tokio::select! {
                next = tokio::time::timeout_at(deadline, watch.next()) => next,
                () = connected.notified() => {
                    // Back after an outage: what was published meanwhile is not on this
                    // watch; make a new one and check the channel now.
                    self.watch = None;
                    return;
                }
            };
            match next {
                Err(_) => return,
                Ok(Some(Ok(info))) if info.name == self.channel_name => return,
                Ok(Some(Ok(_))) => {}
                // The watch broke (an outage): make a new one next time, and let the check
                // below find out what changed meanwhile.
                Ok(Some(Err(_)) | None) => {
                    self.watch = None;
                    return;
                }
            }
        }
    }

    async fn check(&mut self) -> Result<Option<Vec<u8>>, SourceError> {
        let channel = self.channel().await?;
        let store = channel.bundles(false).await?;
        let info = match store.info(&self.channel_name).await {
            Ok(info) => info,
            Err(e) if e.kind() == object_store::InfoErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(failed("cannot read the channel")(&e)),
        };
        if self.last.as_deref() == Some(info.nuid.as_str()) {
            return Ok(None);
        }
        if info.size > MAX_ARCHIVE_BYTES {
            return Err(SourceError(format!(
                "channel `{}` holds a bundle over {MAX_ARCHIVE_BYTES} bytes",
                self.channel_name
            )));
        }
        let mut object = store
            .get(&self.channel_name)
            .await
            .map_err(|e| failed("cannot fetch the bundle")(&e))?;
        let mut bytes = Vec::with_capacity(info.size);
        (&mut object)
            .take(MAX_ARCHIVE_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| failed("cannot fetch the bundle")(&e))?;
        if bytes.len() > MAX_ARCHIVE_BYTES {
            return Err(SourceError(format!(
                "channel `{}` holds a bundle over {MAX_ARCHIVE_BYTES} bytes",
                self.channel_name
            )));
        }
        self.last = Some(object.info().nuid.clone());
        Ok(Some(bytes))
    }
}

impl BundleSource for NatsSource {
    fn describe(&self) -> String {
        if self.bucket == DEFAULT_BUNDLE_BUCKET {
            format!("{}/{}", self.url, self.channel_name)
        } else {
            format!("{}/{}?bucket={}", self.url, self.channel_name, self.bucket)
        }
    }

    fn poll(&mut self, wait: Duration) -> PollFuture<'_> {
        Box::pin(async move {
            if !wait.is_zero() {
                self.wait_for_change(wait).await;
            }
            self.check().await
        })
    }
}
