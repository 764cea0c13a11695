//! What the test cases of a package exercised: Rego lines evaluated (regorus' coverage), Cedar
//! policies that determined a decision.

use std::path::Path;

use serde::Serialize;
use warden_cedar::CedarPdp;
use warden_decision::AccessRequest;

/// The coverage of one package.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Coverage {
    /// What is counted: `lines` (Rego) or `policies` (Cedar).
    pub(crate) unit: &'static str,
    pub(crate) covered: usize,
    pub(crate) total: usize,
    /// What was never exercised: `file:line  text` (Rego) or policy ids (Cedar).
    pub(crate) uncovered: Vec<String>,
}

impl Coverage {
    /// The covered share in percent, one decimal (100 when there is nothing to cover).
    pub(crate) fn percent(&self) -> f64 {
        if self.total == 0 {
            return 100.0;
        }
        let share = self.covered as f64 * 100.0 / self.total as f64;
        (share * 10.0).round() / 10.0
    }

    /// `91.7% of lines (44 of 48)`.
    pub(crate) fn summary(&self) -> String {
        format!(
            "{}% of {} ({} of {})",
            self.percent(),
            self.unit,
            self.covered,
            self.total
        )
    }
}

/// The lines of the Rego package in `dir` that `requests` evaluated.
pub(crate) fn rego(dir: &Path, requests: &[AccessRequest]) -> Result<Coverage, String> {
    let files = warden_rego::line_coverage(dir, None, requests)
        .map_err(|e| format!("policy directory `{}`: {e}", dir.display()))?;
    let mut coverage = Coverage {
        unit: "lines",
        covered: 0,
        total: 0,
        uncovered: Vec::new(),
    };
    for file in files {
        coverage.covered += file.covered.len();
        coverage.total += file.covered.len() + file.not_covered.len();
        for line in &file.not_covered {
            let text = usize::try_from(*line)
                .ok()
                .and_then(|l| l.checked_sub(1))
                .and_then(|i| file.source.get(i))
                .map_or("", |t| t.trim());
            coverage
                .uncovered
                .push(format!("{}:{line}  {text}", file.path));
        }
    }
    Ok(coverage)
}

/// The Cedar policies of `pdp` that determined at least one decision since it was loaded.
pub(crate) fn cedar(pdp: &CedarPdp) -> Coverage {
    let counts = pdp.determined_counts();
    Coverage {
        unit: "policies",
        covered: counts.iter().filter(|(_, n)| *n > 0).count(),
        total: counts.len(),
        uncovered: counts
            .into_iter()
            .filter(|(_, n)| *n == 0)
            .map(|(id, _)| format!("policy `{id}` never determined a decision"))
            .collect(),
    }
}
