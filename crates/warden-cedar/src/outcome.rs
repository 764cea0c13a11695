//! Turning Cedar's response into a decision, with the obligations, advice and reasons of the
//! determining policies.

use cedar_policy::Response;
use warden_decision::{Decision, Diagnostic, ErrorClass};

use crate::load::Compiled;

/// The decision of `response`. Never fails.
pub(crate) fn interpret(response: &Response, compiled: &Compiled, deny_on_error: bool) -> Decision {
    let allowed = response.decision() == cedar_policy::Decision::Allow;
    let diagnostics = response.diagnostics();

    let mut errors: Vec<String> = diagnostics.errors().map(ToString::to_string).collect();
    if !errors.is_empty() {
        // Cedar reports errors in no particular order.
        errors.sort();
        if deny_on_error {
            let mut decision = Decision::deny();
            for error in errors {
                decision = decision.with_error(
                    ErrorClass::PolicyError,
                    format!("{error} (the decision is a deny: deny_on_error)"),
                );
            }
            return decision;
        }
    }

    // The determining policies, in load order so that decisions are deterministic.
    let mut determining: Vec<usize> = diagnostics
        .reason()
        .filter_map(|id| {
            let id: &str = id.as_ref();
            compiled.index.get(id).copied()
        })
        .collect();
    determining.sort_unstable();
    for &i in &determining {
        if let Some(count) = compiled.determined.get(i) {
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    let mut decision = if allowed {
        Decision::permit()
    } else if determining.is_empty() && errors.is_empty() {
        Decision::not_applicable()
    } else {
        Decision::deny()
    };
    for meta in determining.iter().filter_map(|&i| compiled.meta.get(i)) {
        if allowed {
            for obligation in &meta.obligations {
                if !decision.obligations.contains(obligation) {
                    decision.obligations.push(obligation.clone());
                }
            }
        }
        for advice in &meta.advice {
            if !decision.advice.contains(advice) {
                decision.advice.push(advice.clone());
            }
        }
        for reason in &meta.reasons {
            if !decision.reasons.contains(reason) {
                decision.reasons.push(reason.clone());
            }
        }
    }
    // Without `deny_on_error`, Cedar's semantics: an erroring policy is skipped. Recorded
    // without changing the decision.
    for error in errors {
        decision.diagnostics.push(Diagnostic {
            error: Some(ErrorClass::PolicyError),
            message: format!("{error} (the policy was skipped)"),
        });
    }
    decision
}
