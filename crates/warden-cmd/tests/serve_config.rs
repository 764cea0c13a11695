//! `warden serve` from a configuration file, environment variables over it, flags over both;
//! bearer tokens and TLS as a deployment sets them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers fail loudly"
)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A directory of its own, removed on drop.
struct Temp(PathBuf);

impl Temp {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "warden-serve-config-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Serving {
    child: Child,
    url: String,
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(args: &[&str], env: &[(&str, &str)]) -> Serving {
    let mut command = Command::new(env!("CARGO_BIN_EXE_warden"));
    command.current_dir(root()).arg("serve").args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://") || w.starts_with("https://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_owned();
    Serving { child, url }
}

/// `curl`: the status code of one request.
fn curl(args: &[&str]) -> String {
    let output = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

const REQUEST: &str = r#"{"subject": {"type": "user", "id": "alice"}, "action": {"name": "read"}, "resource": {"type": "record", "id": "record-1"}}"#;

fn evaluate(url: &str, extra: &[&str]) -> String {
    let endpoint = format!("{url}/access/v1/evaluation");
    let mut args = vec!["-H", "Content-Type: application/json", "-d", REQUEST];
    args.extend_from_slice(extra);
    args.push(&endpoint);
    curl(&args)
}

#[test]
fn the_file_sets_everything_the_environment_overrides_it_and_flags_override_both() {
    let temp = Temp::new();
    let tokens = temp.write("tokens", "# callers\nfirst-token\n\nsecond-token\n");
    let config = temp.write(
        "warden.toml",
        &format!(
            "policy = \"policies/clinic\"\naddr = \"127.0.0.1:1\"\nwatch = \"0s\"\nmax_batch = 1\n\
             [auth]\nbearer_token_file = \"{}\"\n",
            tokens.display()
        ),
    );
    let config = config.to_str().unwrap();
    // The environment moves the policy and the address; the address flag wins over both.
    let server = serve(
        &["--config", config, "--addr", "127.0.0.1:0"],
        &[
            ("WARDEN_SERVE_POLICY", "tests/authzen/fixture-rego"),
            ("WARDEN_SERVE_ADDR", "127.0.0.1:2"),
        ],
    );
    assert_eq!(curl(&[&format!("{}/health", server.url)]), "200");
    assert_eq!(evaluate(&server.url, &[]), "401");
    assert_eq!(
        evaluate(&server.url, &["-H", "Authorization: Bearer wrong"]),
        "401"
    );
    assert_eq!(
        evaluate(&server.url, &["-H", "Authorization: Bearer second-token"]),
        "200",
        "the fixture's policy, from the environment, answers"
    );
    // max_batch = 1 from the file.
    let batch = r#"{"subject": {"type": "user", "id": "alice"}, "action": {"name": "read"},
                   "evaluations": [{"resource": {"type": "record", "id": "record-1"}},
                                   {"resource": {"type": "record", "id": "record-2"}}]}"#;
    let status = curl(&[
        "-H",
        "Content-Type: application/json",
        "-H",
        "Authorization: Bearer first-token",
        "-d",
        batch,
        &format!("{}/access/v1/evaluations", server.url),
    ]);
    assert_eq!(status, "400");
}

#[test]
fn a_mistake_in_the_settings_stops_the_start_with_status_3_naming_it() {
    let temp = Temp::new();
    let config = temp.write("bad.toml", "policy = \"policies/clinic\"\nlisten = \"x\"\n");
    for (args, env, expected) in [
        (vec!["--config", config.to_str().unwrap()], vec![], "listen"),
        (
            vec!["--policy", "policies/clinic"],
            vec![("WARDEN_SERVE_WATCH", "soon")],
            "WARDEN_SERVE_WATCH",
        ),
        (
            vec![
                "--policy",
                "policies/clinic",
                "--tls-cert",
                "/nonexistent.pem",
            ],
            vec![],
            "tls.key",
        ),
        (
            vec![
                "--policy",
                "policies/clinic",
                "--tls-cert",
                "/nonexistent.pem",
                "--tls-key",
                "/nonexistent.key",
            ],
            vec![],
            "nonexistent.pem",
        ),
    ] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_warden"));
        command.current_dir(root()).arg("serve").args(&args);
        for (name, value) in &env {
            command.env(name, value);
        }
        let output = command.output().unwrap();
        assert_eq!(output.status.code(), Some(3), "{args:?}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "never listened");
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(output.status.success(), "openssl {args:?}: {output:?}");
}

#[test]
fn tls_from_the_settings_with_client_certificates_as_credentials() {
    let temp = Temp::new();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend_from_slice(&ec);
    ca.extend_from_slice(&[
        "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=ca",
    ]);
    openssl(&temp.0, &ca);
    for (name, ext) in [
        (
            "server",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        ),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ] {
        temp.write(&format!("{name}.ext"), ext);
        let mut req = vec!["req"];
        req.extend_from_slice(&ec);
        let (key, csr, crt, ext, subj) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
            format!("{name}.ext"),
            format!("/CN={name}"),
        );
        req.extend_from_slice(&["-keyout", &key, "-out", &csr, "-subj", &subj]);
        openssl(&temp.0, &req);
        openssl(
            &temp.0,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
    }
    let path = |f: &str| temp.0.join(f).display().to_string();
    let config = temp.write(
        "warden.toml",
        &format!(
            "policy = \"tests/authzen/fixture-cedar\"\naddr = \"127.0.0.1:0\"\n\
             [tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\n\
             [auth]\nclient_certificates = true\nbearer_tokens = [\"t0ken\"]\n",
            path("server.crt"),
            path("server.key"),
            path("ca.crt")
        ),
    );
    let server = serve(&["--config", config.to_str().unwrap()], &[]);
    assert!(server.url.starts_with("https://"), "{}", server.url);
    let ca = path("ca.crt");
    assert_eq!(
        curl(&["--cacert", &ca, &format!("{}/health", server.url)]),
        "200"
    );
    assert_eq!(evaluate(&server.url, &["--cacert", &ca]), "401");
    let (cert, key) = (path("client.crt"), path("client.key"));
    assert_eq!(
        evaluate(
            &server.url,
            &["--cacert", &ca, "--cert", &cert, "--key", &key]
        ),
        "200"
    );
    assert_eq!(
        evaluate(
            &server.url,
            &["--cacert", &ca, "-H", "Authorization: Bearer t0ken"]
        ),
        "200"
    );
    // Plain HTTP to the TLS port gets no answer from the server.
    assert_ne!(curl(&[&server.url.replace("https://", "http://")]), "200");
}

#[test]
fn ext_authz_grpc_listens_on_its_own_address_and_a_taken_one_stops_the_start() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .current_dir(root())
        .args([
            "serve",
            "--policy",
            "policies/clinic",
            "--addr",
            "127.0.0.1:0",
            "--ext-authz-grpc",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("serving policy clinic"), "{first}");
    let second = lines.next().unwrap().unwrap();
    let grpc = second
        .strip_prefix("warden: ext_authz gRPC on ")
        .unwrap_or_else(|| panic!("{second}"))
        .to_owned();
    assert!(std::net::TcpStream::connect(&grpc).is_ok(), "{grpc}");
    let _ = child.kill();
    let _ = child.wait();

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_warden"))
        .current_dir(root())
        .args([
            "serve",
            "--policy",
            "policies/clinic",
            "--addr",
            "127.0.0.1:0",
            "--ext-authz-grpc",
        ])
        .arg(taken.local_addr().unwrap().to_string())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("ext_authz"));
}
