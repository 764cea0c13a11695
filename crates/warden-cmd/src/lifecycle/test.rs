//! `warden test`: run every package's test cases, with coverage and JUnit output for CI.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use warden_server::PolicyKind;

use super::cases::{self, Case};
use super::coverage::{self, Coverage};
use super::{Found, Loaded};
use crate::exit::Exit;

/// How `warden test` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// Pass or fail per case, with what differed.
    Text,
    /// JUnit XML, for CI systems.
    Junit,
}

/// Run the test cases of policy packages (Rego and Cedar alike).
///
/// Each DIR is a package or a folder of packages (default `policies`). Cases are read from
/// `cases.json`, `cases.yaml` and `tests/*.{json,yaml,yml}`; each names a request and the
/// decision it must get (permit or deny, obligations, reasons). Packages are evaluated as
/// `active` whatever their manifest's status.
///
/// Exit status: 0 all cases pass, 1 a case failed, 2 usage, 3 a package or case file that does
/// not load.
#[derive(Debug, Args)]
pub(crate) struct TestArgs {
    /// Package directories, or folders of packages.
    #[arg(value_name = "DIR")]
    dirs: Vec<PathBuf>,
    /// Also report what the cases never exercised: Rego lines, Cedar policies.
    #[arg(long)]
    coverage: bool,
    /// The report's format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

/// The result of one case.
#[derive(Debug, Clone)]
pub(crate) struct CaseResult {
    pub(crate) case: Case,
    /// Empty when the case passed.
    pub(crate) diff: Vec<String>,
}

/// The results of one package.
#[derive(Debug, Clone)]
pub(crate) struct PackageRun {
    pub(crate) found: Found,
    pub(crate) loaded: Option<Loaded>,
    pub(crate) results: Vec<CaseResult>,
    pub(crate) coverage: Option<Coverage>,
    /// Why the package or its cases did not load.
    pub(crate) error: Option<String>,
}

impl PackageRun {
    pub(crate) fn passed(&self) -> usize {
        self.results.iter().filter(|r| r.diff.is_empty()).count()
    }

    pub(crate) fn failed(&self) -> usize {
        self.results.len() - self.passed()
    }
}

/// Loads the package, runs its cases and, when asked, measures coverage.
pub(crate) async fn run_package(found: Found, with_coverage: bool) -> PackageRun {
    let mut run = PackageRun {
        found,
        loaded: None,
        results: Vec::new(),
        coverage: None,
        error: None,
    };
    let dir = run.found.dir.clone();
    let loaded = match super::load(&dir) {
        Ok(loaded) => loaded,
        Err(e) => {
            run.error = Some(e);
            return run;
        }
    };
    let cases = match cases::read(&dir) {
        Ok(cases) => cases,
        Err(e) => {
            run.error = Some(e);
            run.loaded = Some(loaded);
            return run;
        }
    };
    for case in &cases {
        let diff = match loaded.pdp.decide(&case.request).await {
            Ok(decision) => cases::compare(&case.expect, &decision),
            Err(e) => vec![format!("error        the PDP failed: {e}")],
        };
        run.results.push(CaseResult {
            case: case.clone(),
            diff,
        });
    }
    if with_coverage {
        let requests: Vec<_> = cases.iter().map(|c| c.request.clone()).collect();
        run.coverage = match (&loaded.kind, &loaded.cedar) {
            (PolicyKind::Cedar, Some(cedar)) => Some(coverage::cedar(cedar)),
            _ => match coverage::rego(&dir, &requests) {
                Ok(c) => Some(c),
                Err(e) => {
                    run.error = Some(e);
                    None
                }
            },
        };
    }
    run.loaded = Some(loaded);
    run
}

pub(crate) async fn run(args: TestArgs) -> ExitCode {
    let found = match super::find(&args.dirs) {
        Ok(found) => found,
        Err((exit, message)) => {
            eprintln!("warden test: {message}");
            return exit.into();
        }
    };
    let mut runs = Vec::new();
    for package in found {
        runs.push(run_package(package, args.coverage).await);
    }
    let text = match args.format {
        Format::Text => text(&runs),
        Format::Junit => super::junit::report(&runs),
    };
    print!("{text}");
    if runs.iter().any(|r| r.error.is_some()) {
        Exit::Config.into()
    } else if runs.iter().any(|r| r.failed() > 0) {
        Exit::Deny.into()
    } else {
        Exit::Ok.into()
    }
}

/// The report for people.
fn text(runs: &[PackageRun]) -> String {
    let mut out = String::new();
    for run in runs {
        let _ = write!(out, "{}", run.found.display());
        if let Some(loaded) = &run.loaded {
            let _ = write!(
                out,
                ": {} {} ({}), {} cases",
                loaded.revision.id,
                loaded.revision.revision,
                loaded.kind,
                run.results.len()
            );
        }
        out.push('\n');
        if run.loaded.is_some() && run.results.is_empty() && run.error.is_none() {
            out.push_str("  no test cases\n");
        }
        for result in &run.results {
            if result.diff.is_empty() {
                let _ = writeln!(out, "  ok    {}", result.case.name);
            } else {
                let _ = writeln!(out, "  FAIL  {} ({})", result.case.name, result.case.file);
                for line in &result.diff {
                    let _ = writeln!(out, "          {line}");
                }
            }
        }
        if let Some(coverage) = &run.coverage {
            let _ = writeln!(out, "  coverage {}", coverage.summary());
            for line in &coverage.uncovered {
                let _ = writeln!(out, "    not covered  {line}");
            }
        }
        if let Some(error) = &run.error {
            let _ = writeln!(out, "  error: {error}");
        }
    }
    let passed: usize = runs.iter().map(PackageRun::passed).sum();
    let failed: usize = runs.iter().map(PackageRun::failed).sum();
    let errors = runs.iter().filter(|r| r.error.is_some()).count();
    if errors > 0 {
        let _ = writeln!(out, "{errors} package(s) did not load");
    }
    let _ = writeln!(out, "{passed} passed, {failed} failed");
    out
}
