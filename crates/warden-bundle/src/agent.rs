//! The agent: receives bundles from a source, verifies them, activates the packages that apply
//! here, persists the last verified bundle and reports status.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::watch;

use crate::source::BundleSource;
use crate::status::{ActivePackage, InstanceStatus, now_ms};
use crate::{Bundle, BundleError, PackageEntry, Scope, Verifier};

/// The name of the persisted bundle in the state directory.
pub const PERSISTED_BUNDLE: &str = "last-verified.tar.gz";

/// A bundle ready to be put in force: the packages that apply here, each extracted into its
/// own directory.
#[derive(Debug)]
pub struct Activation<'a> {
    /// The verified bundle.
    pub bundle: &'a Bundle,
    /// The packages that apply to this instance, with the directory holding each one's files.
    pub packages: Vec<(PackageEntry, PathBuf)>,
}

/// What puts an [`Activation`] in force (loads the packages into a PDP and swaps it in). An
/// error leaves the bundle in force in force; the agent reports the error.
pub trait Activate: Send + 'static {
    /// Puts the packages in force.
    fn activate(&mut self, activation: &Activation<'_>) -> Result<(), String>;
}

impl<F> Activate for F
where
    F: FnMut(&Activation<'_>) -> Result<(), String> + Send + 'static,
{
    fn activate(&mut self, activation: &Activation<'_>) -> Result<(), String> {
        self(activation)
    }
}

/// How an agent runs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The instance's name in status reports.
    pub instance: String,
    /// The region and environment: only packages that apply here are activated.
    pub scope: Scope,
    /// Checks each bundle before anything of it is used.
    pub verifier: Verifier,
    /// Where the last verified bundle is persisted and packages are extracted.
    pub state_dir: PathBuf,
    /// How often the source is checked even without a notification.
    pub reconcile: Duration,
    /// How long the first check of the source may take before the persisted bundle is used.
    pub startup_timeout: Duration,
}

impl AgentConfig {
    /// A configuration with a 30 s reconcile interval and a 5 s start-up timeout.
    pub fn new(
        instance: impl Into<String>,
        verifier: Verifier,
        state_dir: impl Into<PathBuf>,
    ) -> Self {
        Self {
            instance: instance.into(),
            scope: Scope::default(),
            verifier,
            state_dir: state_dir.into(),
            reconcile: Duration::from_secs(30),
            startup_timeout: Duration::from_secs(5),
        }
    }
}

/// Receives, verifies and activates bundles.
///
/// The agent never activates a bundle that fails verification, one older than the bundle in
/// force, or one of the same revision with other content; it persists every bundle it
/// activated, and at start uses the persisted one when the source cannot be reached.
pub struct Agent {
    source: Box<dyn BundleSource>,
    config: AgentConfig,
    activate: Box<dyn Activate>,
    active: Option<(u64, String)>,
    /// The revision of the persisted bundle: nothing older is activated, even before anything
    /// is active (a restart is no chance to replay an old bundle).
    floor: Option<u64>,
    /// Whether the last error was the source's (cleared when it answers again).
    source_failing: bool,
    status: watch::Sender<InstanceStatus>,
    generation: u64,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("source", &self.source.describe())
            .field("config", &self.config)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

/// What happened to an offered bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offered {
    /// It is now in force.
    Activated {
        /// Its revision.
        revision: u64,
    },
    /// It is the bundle already in force.
    Unchanged,
}

impl Agent {
    /// An agent for `source`.
    pub fn new(
        source: Box<dyn BundleSource>,
        config: AgentConfig,
        activate: impl Activate,
    ) -> Self {
        let status = InstanceStatus {
            instance: config.instance.clone(),
            region: config.scope.region.clone(),
            environment: config.scope.environment.clone(),
            source: source.describe(),
            updated_at: now_ms(),
            ..InstanceStatus::default()
        };
        Self {
            source,
            config,
            activate: Box::new(activate),
            active: None,
            floor: None,
            source_failing: false,
            status: watch::Sender::new(status),
            generation: 0,
        }
    }

    /// The status, updated on every activation, refusal, error and reconcile.
    pub fn status(&self) -> watch::Receiver<InstanceStatus> {
        self.status.subscribe()
    }

    /// The revision in force, if any.
    pub fn revision(&self) -> Option<u64> {
        self.active.as_ref().map(|(r, _)| *r)
    }

    /// Verifies `bytes` and, when they pass and are newer than the bundle in force, activates
    /// them and persists them. On any failure the bundle in force stays.
    pub fn offer(&mut self, bytes: &[u8]) -> Result<Offered, BundleError> {
        let result = self.try_offer(bytes, false);
        self.record(&result);
        result
    }

    fn record(&mut self, result: &Result<Offered, BundleError>) {
        match result {
            Ok(Offered::Activated { revision }) => {
                tracing::info!(revision, source = %self.source.describe(), "bundle activated");
            }
            Ok(Offered::Unchanged) => {}
            Err(error) => {
                tracing::warn!(%error, source = %self.source.describe(), "bundle refused; the bundle in force stays");
                let message = error.to_string();
                self.source_failing = false;
                self.status.send_modify(|s| {
                    s.last_error = Some(message);
                    s.last_error_at = Some(now_ms());
                    s.refusals += 1;
                    s.updated_at = now_ms();
                });
            }
        }
    }

    fn try_offer(&mut self, bytes: &[u8], persisted: bool) -> Result<Offered, BundleError> {
        let bundle = self.config.verifier.verify(bytes)?;
        if let Some((revision, digest)) = &self.active {
            if *digest == bundle.digest() {
                return Ok(Offered::Unchanged);
            }
            if bundle.revision() <= *revision {
                return Err(BundleError::Stale {
                    offered: bundle.revision(),
                    active: *revision,
                    detail: if bundle.revision() == *revision {
                        " (same revision, other content)"
                    } else {
                        ""
                    },
                });
            }
        }
        if let Some(floor) = self.floor
            && self.active.is_none()
            && bundle.revision() < floor
        {
            return Err(BundleError::Stale {
                offered: bundle.revision(),
                active: floor,
                detail: " (the persisted bundle's revision)",
            });
        }
        let packages: Vec<PackageEntry> =
            bundle.packages_for(&self.config.scope).cloned().collect();
        if packages.is_empty() {
            return Err(BundleError::NoPackage {
                revision: bundle.revision(),
                scope: self.config.scope.to_string(),
            });
        }
        self.generation += 1;
        let dir = self.config.state_dir.join("active").join(format!(
            "{}-{}-{}",
            bundle.revision(),
            bundle.digest().get(..12).unwrap_or_default(),
            self.generation
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let mut extracted = Vec::new();
        for package in &packages {
            let target = dir.join(&package.id);
            bundle.extract_package(&package.id, &target)?;
            extracted.push((package.clone(), target));
        }
        let activation = Activation {
            bundle: &bundle,
            packages: extracted,
        };
        if let Err(message) = self.activate.activate(&activation) {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(BundleError::Manifest(format!(
                "revision {} does not load: {message}",
                bundle.revision()
            )));
        }
        if !persisted {
            persist(&self.config.state_dir, bundle.bytes())?;
        }
        remove_other_dirs(&self.config.state_dir.join("active"), &dir);
        self.active = Some((bundle.revision(), bundle.digest().to_owned()));
        let packages = packages
            .iter()
            .map(|p| ActivePackage {
                id: p.id.clone(),
                version: p.version.clone(),
                engine: p.engine.clone(),
            })
            .collect();
        self.status.send_modify(|s| {
            s.revision = Some(bundle.revision());
            s.digest = Some(bundle.digest().to_owned());
            s.signed_by = bundle.signed_by().map(str::to_owned);
            s.packages = packages;
            s.activated_at = Some(now_ms());
            s.from_persisted = persisted;
            s.last_error = None;
            s.last_error_at = None;
            s.activations += 1;
            s.cold_starts += u64::from(persisted);
            s.updated_at = now_ms();
        });
        Ok(Offered::Activated {
            revision: bundle.revision(),
        })
    }

    /// Activates the persisted bundle, verified again with today's keys. For a cold start
    /// when the source is down.
    pub fn activate_persisted(&mut self) -> Result<Offered, BundleError> {
        let path = self.config.state_dir.join(PERSISTED_BUNDLE);
        let bytes = std::fs::read(&path).map_err(|e| BundleError::io("read", &path, e))?;
        let result = self.try_offer(&bytes, true);
        match &result {
            Ok(Offered::Activated { revision }) => tracing::warn!(
                revision,
                path = %path.display(),
                "cold start: the bundle source is unreachable; serving the persisted bundle"
            ),
            Ok(Offered::Unchanged) => {}
            Err(error) => {
                tracing::warn!(%error, path = %path.display(), "the persisted bundle cannot be used");
            }
        }
        result
    }

    fn source_error(&mut self, message: String) {
        self.source_failing = true;
        tracing::warn!(error = %message, source = %self.source.describe(), "bundle source unavailable");
        self.status.send_modify(|s| {
            s.last_error = Some(message);
            s.last_error_at = Some(now_ms());
            s.updated_at = now_ms();
        });
    }

    /// The source answers again: its error is over (a refusal's error stays until a bundle is
    /// activated).
    fn source_answered(&mut self) {
        let recovered = std::mem::take(&mut self.source_failing);
        self.status.send_modify(|s| {
            if recovered {
                s.last_error = None;
                s.last_error_at = None;
            }
            s.updated_at = now_ms();
        });
    }

    /// Reads the revision of the persisted bundle (verified), below which nothing is
    /// activated from now on. [`run`](Self::run) does this first.
    pub fn load_floor(&mut self) {
        let path = self.config.state_dir.join(PERSISTED_BUNDLE);
        if let Ok(bytes) = std::fs::read(&path)
            && let Ok(bundle) = self.config.verifier.verify(&bytes)
        {
            self.floor = Some(bundle.revision());
        }
    }

    /// Runs forever: a first check of the source (the persisted bundle when it fails or holds
    /// nothing), then notifications and a reconcile every interval, with backoff while the
    /// source is down.
    pub async fn run(mut self) {
        self.load_floor();
        let first = tokio::time::timeout(
            self.config.startup_timeout,
            self.source.poll(Duration::ZERO),
        )
        .await;
        match first {
            Ok(Ok(Some(bytes))) => {
                let _ = self.offer(&bytes);
            }
            Ok(Ok(None)) => {}
            Ok(Err(error)) => self.source_error(error.0),
            Err(_) => self.source_error(format!(
                "no answer from {} within {:?}",
                self.source.describe(),
                self.config.startup_timeout
            )),
        }
        if self.active.is_none() && self.config.state_dir.join(PERSISTED_BUNDLE).exists() {
            let _ = self.activate_persisted();
        }
        let mut backoff = Duration::from_millis(250);
        let ceiling = self.config.reconcile.min(Duration::from_secs(10));
        loop {
            let wait = self.config.reconcile;
            match tokio::time::timeout(wait + Duration::from_secs(15), self.source.poll(wait)).await
            {
                Ok(Ok(Some(bytes))) => {
                    backoff = Duration::from_millis(250);
                    self.source_answered();
                    let _ = self.offer(&bytes);
                }
                Ok(Ok(None)) => {
                    backoff = Duration::from_millis(250);
                    self.source_answered();
                }
                Ok(Err(error)) => {
                    self.source_error(error.0);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(ceiling);
                }
                Err(_) => {
                    self.source_error(format!("{} did not answer", self.source.describe()));
                }
            }
        }
    }
}

/// Shares an agent's status with a server, a status pusher, a test.
pub type StatusReceiver = watch::Receiver<InstanceStatus>;

fn persist(dir: &Path, bytes: &[u8]) -> Result<(), BundleError> {
    std::fs::create_dir_all(dir).map_err(|e| BundleError::io("create", dir, e))?;
    let path = dir.join(PERSISTED_BUNDLE);
    let temporary = dir.join(format!("{PERSISTED_BUNDLE}.partial"));
    std::fs::write(&temporary, bytes).map_err(|e| BundleError::io("write", &temporary, e))?;
    std::fs::rename(&temporary, &path).map_err(|e| BundleError::io("write", &path, e))
}

fn remove_other_dirs(parent: &Path, keep: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.path() != keep {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
