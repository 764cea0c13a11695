//! `warden test`: run every package's test cases, with coverage and JUnit output for CI.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use super::cases::{self, Case};
use super::coverage::{self, Coverage};
use super::{Engine, Found, Loaded};
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
    /// Also write a decision event for each case decided, with its request recorded and
    /// pseudonymised, as JSON lines: a baseline for `warden replay`. The pseudonym key is read
    /// from `WARDEN_PSEUDONYM_KEY` (at least 32 bytes).
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// With `--record`: also pseudonymise the value at this path of the request (e.g.
    /// `resource.properties.params.*`); `subject.id` and contact claims always are.
    #[arg(long = "pseudonymise", value_name = "PATH", requires = "record")]
    pseudonymise: Vec<String>,
}

/// The result of one case.
#[derive(Debug, Clone)]
pub(crate) struct CaseResult {
    pub(crate) case: Case,
    /// Empty when the case passed.
    pub(crate) diff: Vec<String>,
    /// The decision, when the PDP made one.
    pub(crate) decision: Option<warden_decision::Decision>,
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
    let loaded = match super::load(&dir).await {
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
        let (diff, decision) = match loaded.pdp.decide(&case.request).await {
            Ok(decision) => (cases::compare(&case.expect, &decision), Some(decision)),
            Err(e) => (vec![format!("error        the PDP failed: {e}")], None),
        };
        run.results.push(CaseResult {
            case: case.clone(),
            diff,
            decision,
        });
    }
    if with_coverage {
        let requests: Vec<_> = cases.iter().map(|c| c.request.clone()).collect();
        // Casbin says which rules matched only in its explain mode: no coverage for it.
        run.coverage = match (loaded.kind, &loaded.cedar) {
            (Engine::Cedar, Some(cedar)) => Some(coverage::cedar(cedar)),
            (Engine::Rego, _) => match coverage::rego(&dir, &requests) {
                Ok(c) => Some(c),
                Err(e) => {
                    run.error = Some(e);
                    None
                }
            },
            _ => None,
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
    let pseudonyms = match &args.record {
        Some(_) => match pseudonymizer(&args.pseudonymise) {
            Ok(p) => Some(p),
            Err(message) => {
                eprintln!("warden test: {message}");
                return Exit::Usage.into();
            }
        },
        None => None,
    };
    let mut runs = Vec::new();
    for package in found {
        runs.push(run_package(package, args.coverage).await);
    }
    if let (Some(path), Some(pseudonyms)) = (&args.record, &pseudonyms)
        && let Err(message) = record(path, &runs, pseudonyms)
    {
        eprintln!("warden test: {message}");
        return Exit::Usage.into();
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

/// The pseudonymizer of `--record`: the key from `WARDEN_PSEUDONYM_KEY`.
fn pseudonymizer(paths: &[String]) -> Result<warden_telemetry::Pseudonymizer, String> {
    let key = std::env::var("WARDEN_PSEUDONYM_KEY")
        .map_err(|_| "`--record` needs the pseudonym key in `WARDEN_PSEUDONYM_KEY`".to_owned())?;
    let mut pseudonyms = warden_telemetry::Pseudonymizer::new(key.as_bytes())
        .map_err(|e| format!("`WARDEN_PSEUDONYM_KEY`: {e}"))?;
    for path in paths {
        pseudonyms = pseudonyms.path(path);
    }
    Ok(pseudonyms)
}

/// Writes a decision event for every decided case, as the HTTP or SQL PEP would have.
fn record(
    path: &std::path::Path,
    runs: &[PackageRun],
    pseudonyms: &warden_telemetry::Pseudonymizer,
) -> Result<(), String> {
    use std::io::Write as _;
    use warden_telemetry::{DecisionEvent, Outcome, Pep};
    let mut out = String::new();
    for result in runs.iter().flat_map(|r| &r.results) {
        let Some(decision) = &result.decision else {
            continue;
        };
        let request = &result.case.request;
        let pep = if request.resource.kind == "table" {
            Pep::Sql
        } else {
            Pep::Http
        };
        let outcome = if decision.allowed {
            Outcome::Permit
        } else {
            Outcome::Deny
        };
        let mut event = DecisionEvent::new(
            pep,
            request.action.name.clone(),
            request.resource.kind.clone(),
            request.resource.id.clone(),
            outcome,
        );
        event.decision_id = Some(decision.id.to_string());
        event.subject = Some(pseudonyms.pseudonym(&request.subject.id.as_str().into()));
        event.policy = Some(decision.policy.clone());
        event.obligations = decision
            .obligations
            .iter()
            .map(|o| o.type_name().to_owned())
            .collect();
        event.record_request(request, pseudonyms);
        let line =
            serde_json::to_string(&event).map_err(|e| format!("cannot write an event: {e}"))?;
        out.push_str(&line);
        out.push('\n');
    }
    let mut file = std::fs::File::create(path)
        .map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
    file.write_all(out.as_bytes())
        .map_err(|e| format!("cannot write `{}`: {e}", path.display()))
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
