//! `warden rollback` against a running `warden serve`: the last good revisions are kept, a
//! rollback switches back and is logged, and only authenticated callers may ask for one.
#![expect(clippy::unwrap_used, reason = "test helpers fail loudly")]

use std::io::Read as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

mod support;
use support::{Serving, root, warden};

fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("warden-rollback-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("policy")).unwrap();
    for entry in std::fs::read_dir(root().join("policies/clinic")).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), dir.join("policy").join(entry.file_name())).unwrap();
        }
    }
    std::fs::write(dir.join("tokens"), "# admins\nrollback-token\n").unwrap();
    dir
}

impl Serving {
    fn start(dir: &std::path::Path) -> Self {
        let mut command = warden();
        command
            .arg("serve")
            .arg("--policy")
            .arg(dir.join("policy"))
            .args(["--addr", "127.0.0.1:0", "--watch", "100ms"])
            .arg("--bearer-token-file")
            .arg(dir.join("tokens"))
            .env("WARDEN_LOG_FORMAT", "json")
            .stderr(Stdio::piped());
        Self::spawn(command)
    }

    /// Stops the server and returns what it logged.
    fn logs(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut logs = String::new();
        let _ = self.child.stderr.take().unwrap().read_to_string(&mut logs);
        logs
    }
}

fn rollback(server: &str, token: Option<&str>, args: &[&str]) -> (Option<i32>, String, String) {
    let mut command = warden();
    command.args(["rollback", "--server", server]).args(args);
    command.env_remove("WARDEN_TOKEN");
    if let Some(token) = token {
        command.env("WARDEN_TOKEN", token);
    }
    let output = command.output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The revision in force, from `warden rollback --list`.
fn in_force(server: &str) -> String {
    let (code, out, err) = rollback(server, Some("rollback-token"), &["--list"]);
    assert_eq!(code, Some(0), "{out}{err}");
    out.lines()
        .find_map(|l| l.strip_prefix("in force  clinic "))
        .unwrap()
        .to_owned()
}

#[test]
fn rollback_switches_a_running_server_back_to_a_kept_revision() {
    let dir = scratch("switch");
    let server = Serving::start(&dir);
    let good = in_force(&server.url);
    assert!(good.starts_with("1.0.0+sha256."), "{good}");

    // A bad release: nurses no longer read patients.
    let data = dir.join("policy/data.json");
    let text = std::fs::read_to_string(&data).unwrap();
    std::fs::write(
        &data,
        text.replace(
            r#""care_roles": ["doctor", "nurse"]"#,
            r#""care_roles": ["doctor"]"#,
        ),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let bad = loop {
        let now = in_force(&server.url);
        if now != good {
            break now;
        }
        assert!(Instant::now() < deadline, "the change was not loaded");
        std::thread::sleep(Duration::from_millis(100));
    };
    let (_, list, _) = rollback(&server.url, Some("rollback-token"), &["--list"]);
    assert!(
        list.contains(&format!("kept      clinic {bad}  loaded ")),
        "{list}"
    );
    assert!(
        list.contains(&format!("kept      clinic {good}  loaded ")),
        "{list}"
    );

    let (code, out, err) = rollback(&server.url, Some("rollback-token"), &[]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(out, format!("rolled back clinic from {bad} to {good}\n"));
    assert_eq!(in_force(&server.url), good);

    // Refusals change nothing.
    let (code, _, err) = rollback(
        &server.url,
        Some("rollback-token"),
        &["--to", "9.9.9+sha256.0000000000000000"],
    );
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("is not kept"), "{err}");
    let (code, _, err) = rollback(&server.url, None, &[]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("refused (401)"), "{err}");
    let (code, _, _) = rollback(&server.url, Some("wrong-token"), &["--to", &bad]);
    assert_eq!(code, Some(3));
    assert_eq!(in_force(&server.url), good);

    // By name, forward again.
    let (code, out, _) = rollback(&server.url, Some("rollback-token"), &["--to", &bad]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(in_force(&server.url), bad);

    let logs = server.logs();
    let switches: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("policy rolled back"))
        .collect();
    assert_eq!(switches.len(), 2, "each switch is logged: {logs}");
    assert!(switches[0].contains("warden::rollback"), "{}", switches[0]);
    assert!(
        switches[0].contains(&good) && switches[0].contains(&bad),
        "{}",
        switches[0]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rollback_of_an_unreachable_server_exits_4_and_bad_urls_2() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", free.local_addr().unwrap());
    drop(free);
    let (code, _, err) = rollback(&url, Some("t"), &[]);
    assert_eq!(code, Some(4), "{err}");
    let (code, _, err) = rollback("127.0.0.1:8181", Some("t"), &[]);
    assert_eq!(code, Some(2), "{err}");
}
