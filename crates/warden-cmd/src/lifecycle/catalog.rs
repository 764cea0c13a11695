//! `warden catalog`: every package with its manifest, tests and coverage; in Markdown, a
//! compliance report by control.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use serde::Serialize;
use warden_decision::{Exception, PackageManifest, Regulation, Scope};

use super::test::{PackageRun, run_package};
use crate::exit::Exit;

/// How `warden catalog` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// One line per package.
    Table,
    /// Everything, as JSON.
    Json,
    /// A compliance report: controls and the packages that enforce them.
    Markdown,
}

/// List policy packages: id, version, revision, owner, status, scope, regulatory mappings,
/// exceptions, remediation, test count and coverage.
///
/// The cases of each package are run to count the passing ones and measure coverage.
///
/// Exit status: 0 listed, 2 usage, 3 a package that does not load.
#[derive(Debug, Args)]
pub(crate) struct CatalogArgs {
    /// Package directories, or folders of packages (default `policies`).
    #[arg(value_name = "DIR")]
    dirs: Vec<PathBuf>,
    /// The output's format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

/// One package in the catalog.
#[derive(Debug, Serialize)]
struct Entry {
    path: String,
    id: String,
    version: String,
    revision: String,
    engine: String,
    owner: Option<String>,
    description: Option<String>,
    status: String,
    scope: Option<Scope>,
    regulations: Vec<Regulation>,
    exceptions: Vec<Exception>,
    remediation: Option<String>,
    tests: usize,
    passing: usize,
    coverage: Option<String>,
    error: Option<String>,
}

pub(crate) async fn run(args: CatalogArgs) -> ExitCode {
    let found = match super::find(&args.dirs) {
        Ok(found) => found,
        Err((exit, message)) => {
            eprintln!("warden catalog: {message}");
            return exit.into();
        }
    };
    let mut entries = Vec::new();
    for package in found {
        let manifest = super::manifest(&package.dir);
        let run = run_package(package, true).await;
        entries.push(entry(&run, manifest));
    }
    let text = match args.format {
        Format::Table => table(&entries),
        Format::Json => match serde_json::to_string_pretty(&entries) {
            Ok(text) => text + "\n",
            Err(e) => {
                eprintln!("warden catalog: cannot print the catalog: {e}");
                return Exit::Config.into();
            }
        },
        Format::Markdown => markdown(&entries),
    };
    print!("{text}");
    if entries.iter().any(|e| e.error.is_some()) {
        Exit::Config.into()
    } else {
        Exit::Ok.into()
    }
}

fn entry(run: &PackageRun, manifest: Result<Option<(PackageManifest, String)>, String>) -> Entry {
    let (manifest, manifest_error) = match manifest {
        Ok(m) => (m.map(|(m, _)| m).unwrap_or_default(), None),
        Err(e) => (PackageManifest::default(), Some(e)),
    };
    let revision = run.loaded.as_ref().map(|l| l.revision.clone());
    Entry {
        path: run.found.display(),
        id: revision
            .as_ref()
            .map_or_else(|| manifest.id.clone(), |r| r.id.clone()),
        version: manifest.version.clone(),
        revision: revision.map(|r| r.revision).unwrap_or_default(),
        engine: run
            .loaded
            .as_ref()
            .map(|l| l.kind.to_string())
            .unwrap_or_default(),
        status: manifest.status().to_string(),
        owner: manifest.owner,
        description: manifest.description,
        scope: manifest.scope,
        regulations: manifest.regulations,
        exceptions: manifest.exceptions,
        remediation: manifest.remediation,
        tests: run.results.len(),
        passing: run.passed(),
        coverage: run
            .coverage
            .as_ref()
            .map(super::coverage::Coverage::summary),
        error: manifest_error.or_else(|| run.error.clone()),
    }
}

fn table(entries: &[Entry]) -> String {
    let header = [
        "PACKAGE",
        "VERSION",
        "ENGINE",
        "STATUS",
        "OWNER",
        "REGULATIONS",
        "TESTS",
        "COVERAGE",
    ];
    let rows: Vec<[String; 8]> = entries
        .iter()
        .map(|e| {
            [
                e.id.clone(),
                e.version.clone(),
                e.engine.clone(),
                e.status.clone(),
                e.owner.clone().unwrap_or_else(|| "-".into()),
                labels(&e.regulations),
                format!("{}/{}", e.passing, e.tests),
                e.coverage
                    .as_deref()
                    .map_or("-", |c| c.split(" (").next().unwrap_or(c))
                    .to_owned(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: Vec<&str>| {
        let mut text = String::new();
        for (cell, w) in cells.iter().zip(widths) {
            let _ = write!(text, "{cell:<w$}  ");
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut out, header.to_vec());
    for row in &rows {
        line(&mut out, row.iter().map(String::as_str).collect());
    }
    for e in entries {
        if let Some(error) = &e.error {
            let _ = writeln!(out, "error: {}: {error}", e.path);
        }
    }
    out
}

fn labels(regulations: &[Regulation]) -> String {
    if regulations.is_empty() {
        return "-".into();
    }
    regulations
        .iter()
        .map(Regulation::label)
        .collect::<Vec<_>>()
        .join(", ")
}

fn markdown(entries: &[Entry]) -> String {
    let mut out = String::from("# Policy catalog\n\n## Controls\n\n");
    let mut controls: BTreeMap<String, (Option<String>, Vec<&Entry>)> = BTreeMap::new();
    for e in entries {
        for r in &e.regulations {
            let slot = controls
                .entry(r.label())
                .or_insert_with(|| (r.title.clone(), Vec::new()));
            slot.1.push(e);
        }
    }
    if controls.is_empty() {
        out.push_str("No package maps to a control.\n");
    }
    for (control, (title, packages)) in &controls {
        let title = title
            .as_deref()
            .map(|t| format!(" ({t})"))
            .unwrap_or_default();
        let _ = writeln!(out, "* control {control}{title}:");
        for e in packages {
            let _ = writeln!(
                out,
                "  enforced by package {} {} (`{}`, {}, {}), revision `{}`, {} passing case{} of {}",
                e.id,
                e.version,
                e.path,
                e.engine,
                e.status,
                e.revision,
                e.passing,
                if e.passing == 1 { "" } else { "s" },
                e.tests
            );
        }
    }
    out.push_str("\n## Packages\n");
    for e in entries {
        let _ = writeln!(out, "\n### {} {} (`{}`)\n", e.id, e.version, e.path);
        if let Some(description) = &e.description {
            let _ = writeln!(out, "{description}\n");
        }
        let _ = writeln!(out, "| | |\n|---|---|");
        let _ = writeln!(out, "| revision | `{}` |", e.revision);
        let _ = writeln!(out, "| engine | {} |", e.engine);
        let _ = writeln!(out, "| status | {} |", e.status);
        let _ = writeln!(out, "| owner | {} |", e.owner.as_deref().unwrap_or("—"));
        if let Some(scope) = &e.scope {
            let mut parts = Vec::new();
            if !scope.pep.is_empty() {
                parts.push(format!("PEP {}", scope.pep.join(", ")));
            }
            if !scope.resources.is_empty() {
                parts.push(format!("resources {}", scope.resources.join(", ")));
            }
            if let Some(d) = &scope.description {
                parts.push(d.clone());
            }
            let _ = writeln!(out, "| scope | {} |", parts.join("; "));
        }
        let _ = writeln!(out, "| regulations | {} |", labels(&e.regulations));
        let _ = writeln!(out, "| tests | {} passing of {} |", e.passing, e.tests);
        if let Some(coverage) = &e.coverage {
            let _ = writeln!(out, "| coverage | {coverage} |");
        }
        if let Some(remediation) = &e.remediation {
            let _ = writeln!(out, "| remediation | {remediation} |");
        }
        if let Some(error) = &e.error {
            let _ = writeln!(out, "| error | {error} |");
        }
        if !e.exceptions.is_empty() {
            out.push_str("\n| exception | reason | expires | approved by |\n|---|---|---|---|\n");
            for x in &e.exceptions {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} |",
                    x.id,
                    x.reason,
                    x.expires,
                    x.approved_by.as_deref().unwrap_or("—")
                );
            }
        }
    }
    out
}
