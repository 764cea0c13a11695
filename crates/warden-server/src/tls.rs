//! Serving over TLS (rustls): certificates read from PEM files and reloaded when the files
//! change, and optional client certificates verified against a CA.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use std::time::Duration;
//! use warden_server::{Server, TlsFiles};
//!
//! let tls = TlsFiles::new("/etc/warden/tls.crt", "/etc/warden/tls.key")
//!     .client_ca("/etc/warden/clients-ca.crt")
//!     .reload_every(Duration::from_secs(30));
//! let server = Server::builder()
//!     .policy_dir("policies/clinic")
//!     .accept_client_certificates()
//!     .build();
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8443").await?;
//! server.serve_tls(listener, tls, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```
//!
//! A client CA makes the listener ask for a certificate; a client that presents none still
//! connects (so `/health` stays reachable), and a request is then authenticated as the server's
//! caller rules say (see [`ServerBuilder::accept_client_certificates`](crate::ServerBuilder)).
//! A certificate that does not verify ends the handshake.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use crate::Server;
use crate::auth::VerifiedClientCertificate;

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The PEM files of a TLS listener.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
    reload: Option<Duration>,
}

impl TlsFiles {
    /// The certificate chain (leaf first) and its private key.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        Self {
            cert: cert.into(),
            key: key.into(),
            client_ca: None,
            reload: None,
        }
    }

    /// Verify client certificates against the CA certificates in this file.
    #[must_use]
    pub fn client_ca(mut self, path: impl Into<PathBuf>) -> Self {
        self.client_ca = Some(path.into());
        self
    }

    /// Check the files this often and take new certificates when they changed. A new set that
    /// does not load is logged and the old one kept.
    #[must_use]
    pub fn reload_every(mut self, every: Duration) -> Self {
        self.reload = Some(every);
        self
    }

    /// Reads the files into a rustls configuration; the error names the file.
    pub fn load(&self) -> std::io::Result<Arc<rustls::ServerConfig>> {
        let invalid = |path: &Path, e: &dyn std::fmt::Display| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("`{}`: {e}", path.display()),
            )
        };
        let read = |path: &Path| {
            std::fs::read(path)
                .map_err(|e| std::io::Error::new(e.kind(), format!("`{}`: {e}", path.display())))
        };
        let cert_pem = read(&self.cert)?;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| invalid(&self.cert, &e))?;
        if certs.is_empty() {
            return Err(invalid(&self.cert, &"holds no certificate"));
        }
        let key =
            PrivateKeyDer::from_pem_slice(&read(&self.key)?).map_err(|e| invalid(&self.key, &e))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(&self.cert, &e))?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(&read(ca)?) {
                    roots
                        .add(cert.map_err(|e| invalid(ca, &e))?)
                        .map_err(|e| invalid(ca, &e))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .allow_unauthenticated()
                        .build()
                        .map_err(|e| invalid(ca, &e))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .map_err(|e| invalid(&self.key, &e))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    fn fingerprint(&self) -> Vec<Option<(std::time::SystemTime, u64)>> {
        [Some(&self.cert), Some(&self.key), self.client_ca.as_ref()]
            .into_iter()
            .flatten()
            .map(|p| {
                std::fs::metadata(p)
                    .ok()
                    .and_then(|m| Some((m.modified().ok()?, m.len())))
            })
            .collect()
    }
}

impl Server {
    /// Like [`Server::serve`], over TLS. The files are read before the first connection is
    /// accepted: a certificate or key that does not load is an error at once.
    pub async fn serve_tls(
        self,
        listener: tokio::net::TcpListener,
        files: TlsFiles,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let config = Arc::new(ArcSwap::new(files.load()?));
        self.state
            .tls
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let reloader = files.reload.map(|every| {
            let config = config.clone();
            let files = files.clone();
            tokio::spawn(async move {
                let mut seen = files.fingerprint();
                loop {
                    tokio::time::sleep(every).await;
                    let now = files.fingerprint();
                    if now == seen {
                        continue;
                    }
                    seen = now;
                    match files.load() {
                        Ok(new) => {
                            config.store(new);
                            tracing::info!("TLS certificates reloaded");
                        }
                        Err(error) => {
                            tracing::warn!(%error, "new TLS certificates do not load; the old ones stay");
                        }
                    }
                }
            })
        });
        let watcher = tokio::spawn(self.clone().watch_loop());
        let router = self.router();
        let graceful = GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let (tcp, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "accept failed");
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let acceptor = tokio_rustls::TlsAcceptor::from(config.load_full());
            let router = router.clone();
            let watch = graceful.watcher();
            tokio::spawn(async move {
                let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(error)) => {
                        tracing::debug!(%error, "TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
                let verified = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .is_some_and(|c| !c.is_empty());
                let router = if verified {
                    router.layer(axum::Extension(VerifiedClientCertificate))
                } else {
                    router
                };
                let mut http = hyper::server::conn::http1::Builder::new();
                http.timer(TokioTimer::new())
                    .header_read_timeout(Some(HANDSHAKE_TIMEOUT));
                let connection =
                    http.serve_connection(TokioIo::new(tls), TowerToHyperService::new(router));
                let _ = watch.watch(connection).await;
            });
        }
        drop(listener);
        graceful.shutdown().await;
        watcher.abort();
        if let Some(reloader) = reloader {
            reloader.abort();
        }
        Ok(())
    }
}
