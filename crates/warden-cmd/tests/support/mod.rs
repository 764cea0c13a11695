//! What the command-line tests share: `warden` run from the repository root, and a
//! `warden serve` child that is killed when dropped.
#![allow(
    dead_code,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "each test file uses a part; a fixture that cannot start fails the test loudly"
)]

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The repository root, where every documented command runs.
pub(crate) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `warden` binary, run from the repository root.
pub(crate) fn warden() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_warden"));
    command.current_dir(root());
    command
}

/// A `warden serve` process, killed when dropped.
pub(crate) struct Serving {
    pub(crate) child: Child,
    /// `http://127.0.0.1:<port>`, from the first line it printed.
    pub(crate) url: String,
    /// That first line.
    pub(crate) line: String,
}

impl Serving {
    /// Spawns `command` (a `warden serve …`; its stdout is piped here) and waits for the first
    /// line it prints, which names the URL it serves.
    pub(crate) fn spawn(mut command: Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .expect("warden serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("stdout is piped"))
            .read_line(&mut line)
            .expect("warden serve prints its address");
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"))
            .to_owned();
        Self { child, url, line }
    }

    /// `warden serve --policy POLICY` on a free port of 127.0.0.1, reloading every `watch`
    /// (`0s`: never), its log discarded.
    pub(crate) fn policy(policy: &str, watch: &str) -> Self {
        let mut command = warden();
        command
            .args(["serve", "--policy", policy])
            .args(["--addr", "127.0.0.1:0", "--watch", watch])
            .stderr(Stdio::null());
        Self::spawn(command)
    }

    /// `127.0.0.1:<port>`.
    pub(crate) fn addr(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    /// Stops the server with SIGTERM, as an operator would, and returns what it printed.
    pub(crate) fn stop(mut self) -> Output {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM failed");
        let child = std::mem::replace(
            &mut self.child,
            Command::new("true").spawn().expect("true runs"),
        );
        child.wait_with_output().expect("warden serve exits")
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A copy of a package's files (not its subfolders) in a fresh temporary folder, removed on
/// drop, for tests that change a package.
pub(crate) struct Scratch(pub(crate) PathBuf);

impl Scratch {
    pub(crate) fn copy(package: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "warden-scratch-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(root().join(package)).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
            }
        }
        Self(dir)
    }

    pub(crate) fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
