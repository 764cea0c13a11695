//! TLS: certificates from files, reloaded when they change; client certificates verified
//! against a CA and counted as authentication. Certificates are made with the `openssl` CLI.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::{PATIENT, clinic_dir, nurse};
use crate::{Server, TlsFiles};

/// A directory of certificates, removed on drop.
struct Pki(PathBuf);

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the openssl command");
    assert!(output.status.success(), "openssl {args:?}: {output:?}");
}

impl Pki {
    fn new() -> Self {
        let dir =
            std::env::temp_dir().join(format!("warden-tls-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn ca(&self, name: &str) {
        openssl(
            &self.0,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.crt"),
                "-days",
                "2",
                "-subj",
                &format!("/CN={name}"),
            ],
        );
    }

    /// A certificate `name` signed by `ca`, for the server (127.0.0.1) or a client.
    fn leaf(&self, name: &str, ca: &str, server: bool) {
        let ext = if server {
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
        } else {
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n"
        };
        std::fs::write(self.0.join(format!("{name}.ext")), ext).unwrap();
        openssl(
            &self.0,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        openssl(
            &self.0,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                &format!("{ca}.crt"),
                "-CAkey",
                &format!("{ca}.key"),
                "-CAcreateserial",
                "-out",
                &format!("{name}.crt"),
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
            ],
        );
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

fn certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// One HTTP/1.1 exchange over TLS, trusting `ca`, presenting `client` (`name.crt`, `name.key`).
async fn https(
    addr: std::net::SocketAddr,
    pki: &Pki,
    ca: &str,
    client: Option<&str>,
    request: &str,
) -> std::io::Result<(u16, Value)> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs(&pki.path(&format!("{ca}.crt"))) {
        roots.add(cert).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some(name) => builder
            .with_client_auth_cert(
                certs(&pki.path(&format!("{name}.crt"))),
                PrivateKeyDer::from_pem_file(pki.path(&format!("{name}.key"))).unwrap(),
            )
            .unwrap(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::IpAddress(std::net::IpAddr::from([127, 0, 0, 1]).into());
    let mut tls = connector.connect(name, tcp).await?;
    tls.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    tls.read_to_end(&mut raw).await?;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no answer: {raw:?}")))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, serde_json::from_str(body).unwrap_or(Value::Null)))
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
}

fn post(path: &str, auth: Option<&str>) -> String {
    let body = nurse(PATIENT, "c1").to_string();
    let auth = auth
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

async fn start(
    pki: &Pki,
    files: TlsFiles,
) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let _ = pki;
    let server = Server::builder()
        .policy_dir(clinic_dir())
        .bearer_token("t0ken")
        .accept_client_certificates()
        .build();
    server.load().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.serve_tls(listener, files, async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

#[tokio::test]
async fn serves_over_tls_and_takes_a_verified_client_certificate_as_authentication() {
    let pki = Pki::new();
    pki.ca("ca");
    pki.leaf("server", "ca", true);
    pki.leaf("client", "ca", false);
    pki.ca("rogue");
    pki.leaf("intruder", "rogue", false);
    let files =
        TlsFiles::new(pki.path("server.crt"), pki.path("server.key")).client_ca(pki.path("ca.crt"));
    let (addr, stop) = start(&pki, files).await;

    let (status, body) = https(addr, &pki, "ca", None, &get("/health"))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, _) = https(addr, &pki, "ca", None, &post("/access/v1/evaluation", None))
        .await
        .unwrap();
    assert_eq!(status, 401, "no certificate, no token");
    let (status, body) = https(
        addr,
        &pki,
        "ca",
        Some("client"),
        &post("/access/v1/evaluation", None),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["decision"], true);
    let (status, _) = https(
        addr,
        &pki,
        "ca",
        None,
        &post("/access/v1/evaluation", Some("t0ken")),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "a token without a certificate");
    // The metadata names https URLs.
    let (_, body) = https(
        addr,
        &pki,
        "ca",
        Some("client"),
        &get("/.well-known/authzen-configuration"),
    )
    .await
    .unwrap();
    assert_eq!(
        body["access_evaluation_endpoint"],
        "https://127.0.0.1/access/v1/evaluation"
    );
    // A certificate of another CA ends the handshake: no answer at all.
    let refused = https(
        addr,
        &pki,
        "ca",
        Some("intruder"),
        &post("/access/v1/evaluation", None),
    )
    .await;
    assert!(refused.is_err(), "{refused:?}");
    // So does a client that does not trust the server's CA.
    assert!(
        https(addr, &pki, "rogue", None, &get("/health"))
            .await
            .is_err()
    );
    stop.send(()).unwrap();
}

#[tokio::test]
async fn new_certificates_are_taken_when_the_files_change_and_broken_ones_are_not() {
    let pki = Pki::new();
    pki.ca("one");
    pki.leaf("server", "one", true);
    let files = TlsFiles::new(pki.path("server.crt"), pki.path("server.key"))
        .reload_every(Duration::from_millis(50));
    let (addr, stop) = start(&pki, files).await;
    assert_eq!(
        https(addr, &pki, "one", None, &get("/health"))
            .await
            .unwrap()
            .0,
        200
    );

    // A broken certificate file: the old certificate keeps serving.
    let good = std::fs::read(pki.path("server.crt")).unwrap();
    std::fs::write(
        pki.path("server.crt"),
        "-----BEGIN CERTIFICATE-----\nnot base64\n",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        https(addr, &pki, "one", None, &get("/health"))
            .await
            .unwrap()
            .0,
        200
    );
    std::fs::write(pki.path("server.crt"), good).unwrap();

    // A certificate of a new CA: clients of the new CA get in, the old CA no longer verifies.
    pki.ca("two");
    pki.leaf("server", "two", true);
    let mut switched = false;
    for _ in 0..100 {
        if https(addr, &pki, "two", None, &get("/health"))
            .await
            .is_ok()
        {
            switched = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(switched, "the new certificate was never served");
    assert!(
        https(addr, &pki, "one", None, &get("/health"))
            .await
            .is_err()
    );
    stop.send(()).unwrap();
}

#[tokio::test]
async fn a_certificate_that_does_not_load_is_an_error_at_start() {
    let pki = Pki::new();
    std::fs::write(pki.path("bad.crt"), "not a certificate").unwrap();
    std::fs::write(pki.path("bad.key"), "not a key").unwrap();
    for files in [
        TlsFiles::new(pki.path("bad.crt"), pki.path("bad.key")),
        TlsFiles::new(pki.path("missing.crt"), pki.path("bad.key")),
    ] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Server::builder().policy_dir(clinic_dir()).build();
        let error = server
            .serve_tls(listener, files, std::future::pending())
            .await
            .unwrap_err();
        assert!(error.to_string().contains(".crt"), "{error}");
    }
}
