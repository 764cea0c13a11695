//! `warden check`: load and validate packages without running them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use clap::Args;
use warden_decision::{EXCEPTION_WARNING, ErrorClass, PackageManifest};

use super::{Found, cases};
use crate::exit::Exit;

/// Load and validate policy packages without deciding anything.
///
/// Rego policies compile, Cedar policies validate against their schema, the manifest is
/// complete (id, version, owner, status, scope, regulations with framework and reference,
/// exceptions with a reason and an expiry that has not passed), Cedar's obligation annotations
/// parse, and the obligations the Rego policy returns for its test cases parse.
///
/// Exit status: 0 every package is valid (warnings allowed), 1 a manifest is incomplete or an
/// exception expired, 2 usage, 3 a package that does not load.
#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// Package directories, or folders of packages (default `policies`).
    #[arg(value_name = "DIR")]
    dirs: Vec<PathBuf>,
}

/// What is wrong with a package.
#[derive(Debug, Default)]
pub(crate) struct Findings {
    /// The package does not load.
    pub(crate) load_errors: Vec<String>,
    /// It loads, but is incomplete or invalid.
    pub(crate) errors: Vec<String>,
    pub(crate) warnings: Vec<String>,
}

pub(crate) async fn run(args: CheckArgs) -> ExitCode {
    let found = match super::find(&args.dirs) {
        Ok(found) => found,
        Err((exit, message)) => {
            eprintln!("warden check: {message}");
            return exit.into();
        }
    };
    let mut out = String::new();
    let mut exit = Exit::Ok;
    let mut failing = 0;
    for package in &found {
        let findings = check(package, SystemTime::now()).await;
        let problems = findings.load_errors.len() + findings.errors.len();
        if problems == 0 {
            let _ = writeln!(out, "{}: ok", package.display());
        } else {
            failing += 1;
            let _ = writeln!(out, "{}: {problems} error(s)", package.display());
        }
        for line in findings.load_errors.iter().chain(&findings.errors) {
            let _ = writeln!(out, "  error: {line}");
        }
        for line in &findings.warnings {
            let _ = writeln!(out, "  warning: {line}");
        }
        if !findings.load_errors.is_empty() {
            exit = Exit::Config;
        } else if !findings.errors.is_empty() && exit == Exit::Ok {
            exit = Exit::Deny;
        }
    }
    let _ = writeln!(
        out,
        "{} package(s) checked, {failing} with errors",
        found.len()
    );
    print!("{out}");
    exit.into()
}

/// Every finding about one package, with exceptions judged at `now`.
pub(crate) async fn check(package: &Found, now: SystemTime) -> Findings {
    let mut findings = Findings::default();
    let dir = &package.dir;
    let manifest_path = dir.join("warden.toml");
    match super::manifest(dir) {
        Ok(Some((manifest, text))) => {
            manifest_findings(&manifest, &text, &manifest_path, now, &mut findings);
        }
        Ok(None) => findings
            .errors
            .push(format!("{}: no manifest", manifest_path.display())),
        Err(e) => findings.load_errors.push(e),
    }
    let loaded = match super::load(dir).await {
        Ok(loaded) => loaded,
        Err(e) => {
            findings.load_errors.push(e);
            return findings;
        }
    };
    if loaded.kind == super::Engine::Cedar && !has_schema(dir) {
        findings.warnings.push(format!(
            "{}: no Cedar schema (`*.cedarschema`): the policies are not validated",
            dir.display()
        ));
    }
    match cases::read(dir) {
        Ok(cases) if cases.is_empty() => findings
            .warnings
            .push(format!("{}: no test cases", dir.display())),
        Ok(cases) => {
            // The obligations the Rego policy returns for its cases must parse (Cedar's were
            // parsed from their annotations at load). Evaluation errors a case provokes on
            // purpose (a claim of the wrong type) are the case's business, not the shape's.
            let rego = loaded.kind == super::Engine::Rego;
            for case in cases.iter().filter(|_| rego) {
                let Ok(decision) = loaded.pdp.decide(&case.request).await else {
                    continue;
                };
                for diagnostic in &decision.diagnostics {
                    if diagnostic.error == Some(ErrorClass::PolicyError)
                        && is_shape_error(&diagnostic.message)
                    {
                        findings.errors.push(format!(
                            "{}: case `{}`: {}",
                            dir.join(&case.file).display(),
                            case.name,
                            diagnostic.message
                        ));
                    }
                }
            }
        }
        Err(e) => findings.load_errors.push(e),
    }
    findings
}

/// Whether a policy error is about what the entrypoint returned (its obligations, reasons,
/// members), as opposed to an error while evaluating it.
fn is_shape_error(message: &str) -> bool {
    [
        "obligation",
        "the entrypoint returned",
        "the decision object",
        "malformed",
    ]
    .iter()
    .any(|m| message.contains(m))
}

fn has_schema(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.filter_map(Result::ok).any(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.ends_with(".cedarschema") || name.ends_with(".cedarschema.json")
        })
    })
}

fn manifest_findings(
    manifest: &PackageManifest,
    text: &str,
    path: &Path,
    now: SystemTime,
    findings: &mut Findings,
) {
    let at = |key: &str, nth: usize| format!("{}:{}", path.display(), key_line(text, key, nth));
    let missing = |key: &str| format!("{}:1: the manifest has no `{key}`", path.display());
    for (key, value) in [
        ("id", Some(manifest.id.as_str())),
        ("version", Some(manifest.version.as_str())),
        ("owner", manifest.owner.as_deref()),
    ] {
        if value.is_none_or(|v| v.trim().is_empty()) {
            findings.errors.push(missing(key));
        }
    }
    if !manifest.version.is_empty() && !is_semver(&manifest.version) {
        findings.errors.push(format!(
            "{}: `version` `{}` is not a semantic version (1.2.3)",
            at("version", 0),
            manifest.version
        ));
    }
    if manifest.status.is_none() {
        findings.errors.push(missing("status"));
    }
    if manifest.scope.is_none() {
        findings.errors.push(missing("scope"));
    }
    if manifest.regulations.is_empty() {
        findings.errors.push(missing("regulations"));
    }
    for (i, regulation) in manifest.regulations.iter().enumerate() {
        for (key, value) in [
            ("framework", &regulation.framework),
            ("reference", &regulation.reference),
        ] {
            if value.trim().is_empty() {
                findings.errors.push(format!(
                    "{}: regulation {} has no `{key}`",
                    at("[[regulations]]", i),
                    i + 1
                ));
            }
        }
    }
    for (i, exception) in manifest.exceptions.iter().enumerate() {
        let here = at("[[exceptions]]", i);
        let name = if exception.id.is_empty() {
            format!("exception {}", i + 1)
        } else {
            format!("exception `{}`", exception.id)
        };
        for (key, value) in [("id", &exception.id), ("reason", &exception.reason)] {
            if value.trim().is_empty() {
                findings
                    .errors
                    .push(format!("{here}: {name} has no `{key}`"));
            }
        }
        match exception.expiry() {
            Err(e) => findings.errors.push(format!("{here}: {e}")),
            Ok(expiry) if expiry <= now => findings.errors.push(format!(
                "{here}: {name} expired on {}; remove it or renew it",
                exception.expires
            )),
            Ok(expiry) => {
                if expiry.duration_since(now).unwrap_or_default() < EXCEPTION_WARNING {
                    findings
                        .warnings
                        .push(format!("{here}: {name} expires on {}", exception.expires));
                }
            }
        }
    }
    if let Err(e) = warden_decision::PackageGate::new(manifest) {
        findings.errors.push(format!("{}: {e}", path.display()));
    }
}

/// `1.2.3`, with an optional pre-release or build suffix.
fn is_semver(version: &str) -> bool {
    let core = version.split(['-', '+']).next().unwrap_or_default();
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

/// The line of the `nth` line starting with `key` (a key or a table header), or 1.
fn key_line(text: &str, key: &str, nth: usize) -> usize {
    text.lines()
        .enumerate()
        .filter(|(_, line)| {
            let line = line.trim_start();
            line.strip_prefix(key)
                .is_some_and(|rest| key.starts_with('[') || rest.trim_start().starts_with('='))
        })
        .nth(nth)
        .map_or(1, |(i, _)| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn findings(text: &str, now: &str) -> Findings {
        let manifest: PackageManifest = toml::from_str(text).unwrap();
        let mut f = Findings::default();
        let now = warden_decision::parse_instant(now).unwrap();
        manifest_findings(&manifest, text, Path::new("warden.toml"), now, &mut f);
        f
    }

    const COMPLETE: &str = r#"
id = "p"
version = "1.0.0"
owner = "team@example.com"
status = "active"
scope = { pep = ["http"] }

[[regulations]]
framework = "GDPR"
reference = "Art. 32"
"#;

    #[test]
    fn complete_manifest_has_no_findings() {
        let f = findings(COMPLETE, "2027-01-01");
        assert!(f.errors.is_empty() && f.warnings.is_empty(), "{f:?}");
    }

    #[test]
    fn incomplete_manifest_names_each_missing_key() {
        let f = findings("id = \"p\"\nversion = \"1\"\n", "2027-01-01");
        let all = f.errors.join("\n");
        for key in [
            "owner",
            "status",
            "scope",
            "regulations",
            "semantic version",
        ] {
            assert!(all.contains(key), "{key}: {all}");
        }
    }

    #[test]
    fn exceptions_warn_before_and_fail_after_expiry_with_their_line() {
        let text = format!(
            "{COMPLETE}\n[[exceptions]]\nid = \"EX-1\"\nreason = \"r\"\nexpires = \"2027-01-10\"\n"
        );
        let soon = findings(&text, "2027-01-01");
        assert!(soon.errors.is_empty(), "{soon:?}");
        assert!(soon.warnings[0].contains("EX-1"), "{soon:?}");
        let late = findings(&text, "2027-01-10");
        assert!(late.errors[0].starts_with("warden.toml:12:"), "{late:?}");
        assert!(late.errors[0].contains("expired"), "{late:?}");
        let bad = findings(&text.replace("2027-01-10", "next week"), "2027-01-01");
        assert!(bad.errors[0].contains("not a date"), "{bad:?}");
    }
}
