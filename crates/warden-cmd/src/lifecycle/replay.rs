//! `warden replay`: decide recorded requests again with a candidate package and report every
//! decision that would change.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Instant;

use clap::{Args, ValueEnum};
use serde::Serialize;
use warden_telemetry::{DecisionEvent, Outcome, recorded_request};

use crate::exit::Exit;

/// A kind of change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Change {
    PermitToDeny,
    DenyToPermit,
    ObligationsAdded,
    ObligationsRemoved,
}

impl Change {
    const ALL: [Change; 4] = [
        Self::PermitToDeny,
        Self::DenyToPermit,
        Self::ObligationsAdded,
        Self::ObligationsRemoved,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::PermitToDeny => "permit-to-deny",
            Self::DenyToPermit => "deny-to-permit",
            Self::ObligationsAdded => "obligations-added",
            Self::ObligationsRemoved => "obligations-removed",
        }
    }
}

/// The changes `--fail-on` names: a comma-separated list of kinds, `obligations` for both
/// obligation kinds, or `any`.
#[derive(Debug, Clone, Default)]
pub(crate) struct FailOn(Vec<Change>);

impl FromStr for FailOn {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut kinds = Vec::new();
        for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match word {
                "any" => kinds.extend(Change::ALL),
                "obligations" => {
                    kinds.extend([Change::ObligationsAdded, Change::ObligationsRemoved]);
                }
                _ => match Change::ALL.iter().find(|c| c.as_str() == word) {
                    Some(change) => kinds.push(*change),
                    None => {
                        return Err(format!(
                            "unknown change `{word}`: permit-to-deny, deny-to-permit, \
                             obligations-added, obligations-removed, obligations or any"
                        ));
                    }
                },
            }
        }
        if kinds.is_empty() {
            return Err("name at least one change".into());
        }
        Ok(Self(kinds))
    }
}

/// How `warden replay` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// Counts and groups for people.
    Text,
    /// The same as JSON.
    Json,
}

/// Decide recorded requests again with a candidate policy and report what would change.
///
/// Reads decision events (the JSON lines Warden writes; `-` for stdin) that carry their
/// recorded request (`attributes.request`, pseudonymised), decides each again with the package
/// in `--policy` (as if active), and reports every change — permit to deny, deny to permit,
/// obligations added or removed — grouped by package, route or table, and subject type, with
/// counts and example decision ids.
///
/// Exit status: 0 no change `--fail-on` names, 1 such a change, 2 usage or unreadable events
/// (or none replayable), 3 a candidate that does not load.
#[derive(Debug, Args)]
pub(crate) struct ReplayArgs {
    /// Files of recorded decision events, one JSON object a line; `-` reads stdin.
    #[arg(long = "events", value_name = "FILE", required = true)]
    events: Vec<PathBuf>,
    /// The candidate policy package.
    #[arg(long, value_name = "DIR")]
    policy: PathBuf,
    /// Exit 1 when any of these changes occurs, e.g. `permit-to-deny,deny-to-permit`.
    #[arg(long, value_name = "CHANGES")]
    fail_on: Option<FailOn>,
    /// How many example decision ids to show per group.
    #[arg(long, value_name = "N", default_value_t = 3)]
    examples: usize,
    /// The report's format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Also print how long the replay took and its throughput, on standard error.
    #[arg(long)]
    stats: bool,
}

/// One group of changes.
#[derive(Debug, Default, Serialize)]
struct Group {
    change: Option<Change>,
    package: String,
    resource: String,
    subject_type: String,
    count: usize,
    examples: Vec<String>,
}

/// The whole report.
#[derive(Debug, Default, Serialize)]
struct Report {
    candidate: String,
    revision: String,
    events: usize,
    replayed: usize,
    unchanged: usize,
    not_replayable: usize,
    changes: BTreeMap<&'static str, usize>,
    groups: Vec<Group>,
}

pub(crate) async fn run(args: ReplayArgs) -> ExitCode {
    match replay(&args).await {
        Ok((report, elapsed)) => {
            let text = match args.format {
                Format::Text => text(&report),
                Format::Json => serde_json::to_string_pretty(&report).unwrap_or_default() + "\n",
            };
            print!("{text}");
            let seconds = elapsed.as_secs_f64();
            if args.stats && seconds > 0.0 {
                eprintln!(
                    "warden replay: {} events in {seconds:.3} s ({:.0} events/s)",
                    report.events,
                    report.events as f64 / seconds
                );
            }
            let gated = args.fail_on.as_ref().is_some_and(|fail_on| {
                fail_on
                    .0
                    .iter()
                    .any(|c| report.changes.get(c.as_str()).copied().unwrap_or(0) > 0)
            });
            if gated {
                Exit::Deny.into()
            } else {
                Exit::Ok.into()
            }
        }
        Err((exit, message)) => {
            eprintln!("warden replay: {message}");
            exit.into()
        }
    }
}

type Key = (Change, String, String, String);

async fn replay(args: &ReplayArgs) -> Result<(Report, std::time::Duration), (Exit, String)> {
    let candidate = super::load(&args.policy)
        .await
        .map_err(|e| (Exit::Config, e))?;
    let started = Instant::now();
    let mut report = Report {
        candidate: args.policy.display().to_string(),
        revision: format!("{} {}", candidate.revision.id, candidate.revision.revision),
        ..Report::default()
    };
    for change in Change::ALL {
        report.changes.insert(change.as_str(), 0);
    }
    let mut groups: BTreeMap<Key, Group> = BTreeMap::new();
    for path in &args.events {
        let reader: Box<dyn std::io::BufRead> = if path.as_os_str() == "-" {
            Box::new(std::io::BufReader::new(std::io::stdin()))
        } else {
            let file = std::fs::File::open(path).map_err(|e| {
                (
                    Exit::Usage,
                    format!("cannot read `{}`: {e}", path.display()),
                )
            })?;
            Box::new(std::io::BufReader::new(file))
        };
        for (n, line) in reader.lines().enumerate() {
            let at = || format!("{}:{}", path.display(), n + 1);
            let line = line.map_err(|e| (Exit::Usage, format!("{}: {e}", at())))?;
            if line.trim().is_empty() {
                continue;
            }
            let event: DecisionEvent = serde_json::from_str(&line)
                .map_err(|e| (Exit::Usage, format!("{}: not a decision event: {e}", at())))?;
            report.events += 1;
            let Some(recorded) = recorded_decision(&event) else {
                report.not_replayable += 1;
                continue;
            };
            let request = match recorded_request(&event) {
                Some(Ok(request)) => request,
                Some(Err(e)) => return Err((Exit::Usage, format!("{}: {e}", at()))),
                None => {
                    report.not_replayable += 1;
                    continue;
                }
            };
            let decision = candidate.pdp.decide(&request).await.map_err(|e| {
                (
                    Exit::of_pdp_error(&e),
                    format!("{}: the candidate failed: {e}", at()),
                )
            })?;
            report.replayed += 1;
            let now: Vec<String> = decision
                .obligations
                .iter()
                .map(|o| o.type_name().to_owned())
                .collect();
            let changes = compare(&recorded, decision.allowed, &now);
            if changes.is_empty() {
                report.unchanged += 1;
                continue;
            }
            let package = event
                .policy
                .as_ref()
                .map_or_else(|| "-".to_owned(), |p| p.id.clone());
            let resource = format!("{} {}", event.resource_type, event.resource);
            let subject_type = request.subject.kind.clone();
            let id = event
                .decision_id
                .clone()
                .unwrap_or_else(|| format!("line {}", n + 1));
            for change in changes {
                *report.changes.entry(change.as_str()).or_default() += 1;
                let key = (
                    change,
                    package.clone(),
                    resource.clone(),
                    subject_type.clone(),
                );
                let group = groups.entry(key).or_insert_with(|| Group {
                    change: Some(change),
                    package: package.clone(),
                    resource: resource.clone(),
                    subject_type: subject_type.clone(),
                    ..Group::default()
                });
                group.count += 1;
                if group.examples.len() < args.examples {
                    group.examples.push(id.clone());
                }
            }
        }
    }
    if report.replayed == 0 {
        return Err((
            Exit::Usage,
            format!(
                "none of the {} events carries a recorded request and a decision to replay",
                report.events
            ),
        ));
    }
    report.groups = groups.into_values().collect();
    Ok((report, started.elapsed()))
}

/// What the PDP decided for a recorded event: permit or deny and the obligation types. `None`
/// when no decision was made (unauthenticated, PDP unavailable).
struct Recorded {
    allowed: bool,
    obligations: Vec<String>,
}

fn recorded_decision(event: &DecisionEvent) -> Option<Recorded> {
    let allowed = match event.outcome {
        // Step-up and withheld responses were permitted by the PDP; the PEP refused for
        // authentication strength or an unredactable body.
        Outcome::Permit | Outcome::StepUp | Outcome::Withheld => true,
        Outcome::Deny => match event.error_class.as_deref() {
            // The PDP permitted, the PEP could not carry out an obligation.
            Some("obligation_unsupported") => true,
            Some("pdp_unavailable") => return None,
            _ => false,
        },
        Outcome::Unauthenticated | Outcome::Unavailable => return None,
    };
    // Without a decision id the event does not say a PDP decided.
    event.decision_id.as_ref()?;
    Some(Recorded {
        allowed,
        obligations: event.obligations.clone(),
    })
}

fn compare(recorded: &Recorded, allowed: bool, now: &[String]) -> Vec<Change> {
    let mut changes = Vec::new();
    match (recorded.allowed, allowed) {
        (true, false) => changes.push(Change::PermitToDeny),
        (false, true) => changes.push(Change::DenyToPermit),
        _ => {}
    }
    // Obligations only differ meaningfully between two permits.
    if recorded.allowed && allowed {
        let count = |list: &[String]| {
            let mut m: BTreeMap<String, usize> = BTreeMap::new();
            for o in list {
                *m.entry(o.clone()).or_default() += 1;
            }
            m
        };
        let before = count(&recorded.obligations);
        let after = count(now);
        if after
            .iter()
            .any(|(k, n)| before.get(k).copied().unwrap_or(0) < *n)
        {
            changes.push(Change::ObligationsAdded);
        }
        if before
            .iter()
            .any(|(k, n)| after.get(k).copied().unwrap_or(0) < *n)
        {
            changes.push(Change::ObligationsRemoved);
        }
    }
    changes
}

fn text(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "replayed {} of {} events against {} ({})",
        report.replayed, report.events, report.candidate, report.revision
    );
    if report.not_replayable > 0 {
        let _ = writeln!(
            out,
            "  {} events not replayable (no recorded request or no decision)",
            report.not_replayable
        );
    }
    let _ = writeln!(out, "  unchanged            {}", report.unchanged);
    for change in Change::ALL {
        let _ = writeln!(
            out,
            "  {:<20} {}",
            change.as_str(),
            report.changes.get(change.as_str()).copied().unwrap_or(0)
        );
    }
    if !report.groups.is_empty() {
        out.push_str("changes by package, route or table, and subject type:\n");
    }
    for group in &report.groups {
        let _ = writeln!(
            out,
            "  {:<20} {}  {}  {}  {}  e.g. {}",
            group.change.map_or("", Change::as_str),
            group.package,
            group.resource,
            group.subject_type,
            group.count,
            group.examples.join(", ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(allowed: bool, obligations: &[&str]) -> Recorded {
        Recorded {
            allowed,
            obligations: obligations.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn now(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn every_kind_of_change_is_found_and_no_other() {
        let r = recorded(true, &["redact"]);
        assert!(compare(&r, true, &now(&["redact"])).is_empty());
        assert_eq!(compare(&r, false, &[]), [Change::PermitToDeny]);
        assert_eq!(
            compare(&recorded(false, &[]), true, &now(&["redact"])),
            [Change::DenyToPermit]
        );
        assert_eq!(
            compare(&r, true, &now(&["redact", "audit"])),
            [Change::ObligationsAdded]
        );
        assert_eq!(compare(&r, true, &[]), [Change::ObligationsRemoved]);
        assert_eq!(
            compare(&r, true, &now(&["redact", "redact"])),
            [Change::ObligationsAdded]
        );
        assert_eq!(
            compare(&r, true, &now(&["audit"])),
            [Change::ObligationsAdded, Change::ObligationsRemoved]
        );
    }

    #[test]
    fn fail_on_reads_lists_and_refuses_unknown_words() {
        assert_eq!(
            "permit-to-deny,deny-to-permit".parse::<FailOn>().unwrap().0,
            [Change::PermitToDeny, Change::DenyToPermit]
        );
        assert_eq!("any".parse::<FailOn>().unwrap().0.len(), 4);
        assert!("permit-to-denied".parse::<FailOn>().is_err());
        assert!("".parse::<FailOn>().is_err());
    }
}
