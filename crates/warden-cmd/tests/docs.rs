//! Every `warden` command that the README, the book and the example READMEs show in a `console`
//! block is run here, from the repository root, and what it prints is compared with what the
//! page shows.
//!
//! The convention of those pages:
//!
//! * A line starting with `$ ` is a command; the lines after it, up to the next command or the
//!   end of the block, are what it prints (standard output and standard error).
//! * `warden …` runs the binary built with this package; `cargo run -q -p warden-cmd -- …` is
//!   the same command.
//! * A command ending in ` &` runs in the background (a server) until the end of its block; the
//!   test waits until it has printed the first line shown for it.
//! * In a command's output, `...` on a line of its own stands for any number of lines. Decision
//!   ids, content hashes, times and durations may differ from run to run.
//! * A command whose output is not shown must succeed.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers fail loudly"
)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// One `$ ` line and what the page shows it printing.
#[derive(Debug)]
struct Step {
    command: String,
    expected: Vec<String>,
    line: usize,
}

/// The console blocks of a page, each a list of steps.
fn console_blocks(text: &str) -> Vec<Vec<Step>> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<Step>> = None;
    for (number, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        match &mut current {
            None if trimmed.starts_with("```console") => current = Some(Vec::new()),
            None => {}
            Some(_) if trimmed.starts_with("```") => blocks.extend(current.take()),
            Some(steps) => {
                if let Some(command) = line.strip_prefix("$ ") {
                    steps.push(Step {
                        command: command.trim().to_owned(),
                        expected: Vec::new(),
                        line: number + 1,
                    });
                } else if let Some(step) = steps.last_mut() {
                    step.expected.push(line.to_owned());
                }
            }
        }
    }
    blocks
}

/// The pages that show commands.
fn pages() -> Vec<PathBuf> {
    let root = root();
    let mut pages = vec![root.join("README.md")];
    let mut dirs = vec![
        root.join("book/src"),
        root.join("policies"),
        root.join("examples"),
    ];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() && !path.ends_with("target") && !path.ends_with("data") {
                dirs.push(path);
            } else if path.extension().and_then(|e| e.to_str()) == Some("md") {
                pages.push(path);
            }
        }
    }
    pages.sort();
    pages
}

/// Replaces what differs from run to run.
fn normalize(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let chars: Vec<char> = line.trim_end().chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let rest: String = chars[i..].iter().collect();
        if let Some(len) = uuid_len(&rest) {
            out.push_str("<uuid>");
            i += len;
        } else if let Some(len) = hex_len(&rest)
            && len >= 12
            && (i == 0 || !chars[i - 1].is_ascii_alphanumeric())
        {
            out.push_str("<hex>");
            i += len;
        } else if let Some(len) = timestamp_len(&rest) {
            out.push_str("<time>");
            i += len;
        } else if let Some(len) = duration_len(&rest)
            && (i == 0 || !chars[i - 1].is_ascii_alphanumeric())
        {
            out.push_str("<duration>");
            i += len;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

fn hex_len(s: &str) -> Option<usize> {
    let len = s.chars().take_while(char::is_ascii_hexdigit).count();
    (len > 0 && s.chars().take(len).any(|c| c.is_ascii_digit())).then_some(len)
}

fn uuid_len(s: &str) -> Option<usize> {
    let groups = [8, 4, 4, 4, 12];
    let mut at = 0;
    for (n, len) in groups.iter().enumerate() {
        let group = s.get(at..at + len)?;
        if !group.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        at += len;
        if n < 4 {
            if s.get(at..=at)? != "-" {
                return None;
            }
            at += 1;
        }
    }
    Some(at)
}

/// `2026-12-01T09:26:19.123Z` and the like.
fn timestamp_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        b.get(range)
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
    };
    if !(digits(0..4)
        && b.get(4) == Some(&b'-')
        && digits(5..7)
        && b.get(7) == Some(&b'-')
        && digits(8..10))
    {
        return None;
    }
    if b.get(10) != Some(&b'T') {
        return None;
    }
    let len = s
        .char_indices()
        .skip(11)
        .find(|(_, c)| !(c.is_ascii_digit() || matches!(c, ':' | '.' | 'Z' | '+' | '-')))
        .map_or(s.len(), |(i, _)| i);
    Some(len)
}

/// `12ms`, `1.5s`, `830µs`.
fn duration_len(s: &str) -> Option<usize> {
    let number = s
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '.'))
        .map_or(s.len(), |(i, _)| i);
    if number == 0 {
        return None;
    }
    let unit = ["ms", "µs", "us", "ns", "s"]
        .into_iter()
        .find(|unit| s[number..].starts_with(unit))?;
    let end = number + unit.len();
    match s[end..].chars().next() {
        Some(c) if c.is_alphanumeric() => None,
        _ => Some(end),
    }
}

/// Whether `actual` shows `expected`, with `...` lines standing for any lines.
fn matches(expected: &[String], actual: &[String]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((first, rest)) if first.trim() == "..." => {
            (0..=actual.len()).any(|skip| matches(rest, &actual[skip..]))
        }
        Some((first, rest)) => actual
            .split_first()
            .is_some_and(|(line, tail)| normalize(first) == normalize(line) && matches(rest, tail)),
    }
}

fn shell(command: &str, bin_dir: &Path) -> Command {
    let command = command.replace("cargo run -q -p warden-cmd --", "warden");
    let mut shell = Command::new("sh");
    shell
        .arg("-c")
        .arg(format!("{command} 2>&1"))
        .current_dir(root())
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin_dir.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG");
    shell
}

/// A background command, killed when the block ends.
struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(step: &Step, bin_dir: &Path, page: &str) -> Background {
    let command = step.command.trim_end_matches('&').trim();
    let mut child = shell(&format!("exec {command}"), bin_dir)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let background = Background(child);
    if let Some(first) = step.expected.first() {
        loop {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(line) if normalize(&line) == normalize(first) => break,
                Ok(_) => {}
                Err(e) => panic!(
                    "{page}:{}: `{command}` did not print `{first}`: {e}",
                    step.line
                ),
            }
        }
    }
    background
}

fn uses_warden(command: &str) -> bool {
    command.starts_with("warden ") || command.starts_with("cargo run -q -p warden-cmd -- ")
}

#[test]
fn every_warden_command_of_the_docs_prints_what_the_docs_show() {
    let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_warden"))
        .parent()
        .unwrap()
        .to_owned();
    let mut run = 0;
    for path in pages() {
        let text = std::fs::read_to_string(&path).unwrap();
        let page = path
            .strip_prefix(root())
            .unwrap_or(&path)
            .display()
            .to_string();
        for block in console_blocks(&text) {
            if !block.iter().any(|step| uses_warden(&step.command)) {
                continue;
            }
            let mut background = Vec::new();
            for step in &block {
                if step.command.ends_with('&') {
                    background.push(start(step, &bin_dir, &page));
                    continue;
                }
                let output = shell(&step.command, &bin_dir).output().unwrap();
                let printed: Vec<String> = String::from_utf8_lossy(&output.stdout)
                    .lines()
                    .map(str::to_owned)
                    .collect();
                let expected: Vec<String> = {
                    let mut lines = step.expected.clone();
                    while lines.last().is_some_and(|l| l.trim().is_empty()) {
                        lines.pop();
                    }
                    lines
                };
                if expected.is_empty() {
                    assert!(
                        output.status.success(),
                        "{page}:{}: `{}` failed: {}",
                        step.line,
                        step.command,
                        printed.join("\n")
                    );
                } else {
                    assert!(
                        matches(&expected, &printed),
                        "{page}:{}: `{}` printed\n{}\n\nbut the page shows\n{}",
                        step.line,
                        step.command,
                        printed.join("\n"),
                        expected.join("\n")
                    );
                }
                run += 1;
            }
            drop(background);
        }
    }
    assert!(run >= 3, "only {run} commands found in the docs");
}

#[test]
fn normalizing_keeps_what_matters() {
    assert_eq!(
        normalize("permit  decision_id 01a23103-b0d7-76ec-9a2f-8dcb8ccc534d"),
        "permit  decision_id <uuid>"
    );
    assert_eq!(
        normalize("policy    clinic at revision 1.0.0+sha256.126825562b806b00"),
        "policy    clinic at revision 1.0.0+sha256.<hex>"
    );
    assert_eq!(
        normalize("took 12.5ms at 2026-12-01T09:26:19.123Z"),
        "took <duration> at <time>"
    );
    assert_eq!(normalize("deny"), "deny");
    assert_eq!(normalize("exit 3s"), "exit <duration>");
    assert_eq!(normalize("version 1.0.0"), "version 1.0.0");
    let lines = |s: &[&str]| s.iter().map(|l| (*l).to_owned()).collect::<Vec<_>>();
    assert!(matches(
        &lines(&["a", "...", "d"]),
        &lines(&["a", "b", "c", "d"])
    ));
    assert!(!matches(&lines(&["a", "d"]), &lines(&["a", "b", "d"])));
}
