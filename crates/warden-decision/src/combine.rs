//! Combining the decisions of several PDPs into one.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::decision::{Decision, PolicyRevision};
use crate::obligation::{MaskColumns, Obligation};
use crate::pdp::{Pdp, PdpError, PdpFuture};
use crate::predicate::Predicate;
use crate::request::AccessRequest;

/// How the decisions of several PDPs combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Combining {
    /// A deny anywhere wins; the obligations of all permits are merged. An error wins over a
    /// permit (the erroring PDP might have denied) but not over a deny.
    #[default]
    DenyOverrides,
    /// A permit anywhere wins, with the obligations of all permits merged. Without a permit, an
    /// error wins over a deny.
    PermitOverrides,
    /// The first decision that is applicable wins. An error stops the search (the erroring PDP
    /// might have applied).
    FirstApplicable,
}

impl FromStr for Combining {
    type Err = UnknownCombining;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "deny-overrides" | "deny_overrides" => Ok(Self::DenyOverrides),
            "permit-overrides" | "permit_overrides" => Ok(Self::PermitOverrides),
            "first-applicable" | "first_applicable" => Ok(Self::FirstApplicable),
            other => Err(UnknownCombining(other.to_owned())),
        }
    }
}

impl fmt::Display for Combining {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::DenyOverrides => "deny-overrides",
            Self::PermitOverrides => "permit-overrides",
            Self::FirstApplicable => "first-applicable",
        })
    }
}

/// The error for a combining algorithm name that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown combining algorithm `{0}` (expected deny-overrides, permit-overrides or first-applicable)"
)]
pub struct UnknownCombining(pub String);

/// Several PDPs that decide as one.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use warden_decision::{AccessRequest, Action, Combined, Combining, Decision, Pdp, PdpFuture, Resource, Subject};
///
/// struct Fixed(bool);
/// impl Pdp for Fixed {
///     fn decide<'a>(&'a self, _: &'a AccessRequest) -> PdpFuture<'a> {
///         let d = if self.0 { Decision::permit() } else { Decision::deny() };
///         Box::pin(async move { Ok(d) })
///     }
/// }
///
/// let request = AccessRequest::new(Subject::user("a"), Action::new("GET"), Resource::new("route", "/"));
/// let both = Combined::new(Combining::DenyOverrides)
///     .with(Arc::new(Fixed(true)))
///     .with(Arc::new(Fixed(false)));
/// assert!(!both.decide(&request).await.unwrap().allowed);
/// let any = Combined::new(Combining::PermitOverrides)
///     .with(Arc::new(Fixed(true)))
///     .with(Arc::new(Fixed(false)));
/// assert!(any.decide(&request).await.unwrap().allowed);
/// # });
/// ```
#[derive(Clone, Default)]
pub struct Combined {
    algorithm: Combining,
    pdps: Vec<Arc<dyn Pdp>>,
}

impl fmt::Debug for Combined {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Combined")
            .field("algorithm", &self.algorithm)
            .field("pdps", &self.pdps.len())
            .finish()
    }
}

impl Combined {
    /// No PDPs yet; with none, every decision is a not-applicable deny.
    pub fn new(algorithm: Combining) -> Self {
        Self {
            algorithm,
            pdps: Vec::new(),
        }
    }

    /// Adds a PDP (consulted in the order added).
    #[must_use]
    pub fn with(mut self, pdp: Arc<dyn Pdp>) -> Self {
        self.pdps.push(pdp);
        self
    }

    async fn combine(&self, request: &AccessRequest) -> Result<Decision, PdpError> {
        let mut permits: Vec<Decision> = Vec::new();
        let mut denies: Vec<Decision> = Vec::new();
        let mut error: Option<PdpError> = None;
        for pdp in &self.pdps {
            match pdp.decide(request).await {
                Ok(d) if self.algorithm == Combining::FirstApplicable => {
                    if applicable(&d) {
                        return Ok(counted(d));
                    }
                }
                Ok(d) if d.allowed => {
                    permits.push(d);
                }
                Ok(d) => {
                    if self.algorithm == Combining::DenyOverrides {
                        return Ok(d);
                    }
                    denies.push(d);
                }
                Err(e) => {
                    if self.algorithm == Combining::FirstApplicable {
                        return Err(e);
                    }
                    error.get_or_insert(e);
                }
            }
        }
        match self.algorithm {
            Combining::DenyOverrides => match error {
                Some(e) => Err(e),
                None if permits.is_empty() => Ok(Decision::not_applicable()),
                None => Ok(merge_permits(permits)),
            },
            Combining::PermitOverrides => {
                if !permits.is_empty() {
                    return Ok(merge_permits(permits));
                }
                if let Some(e) = error {
                    return Err(e);
                }
                // A deny that records an error wins over a plain one, as an error does.
                let mut denies = denies.into_iter().filter(applicable);
                let first = denies.next();
                match first {
                    Some(d) if d.error_class().is_some() => Ok(counted(d)),
                    Some(d) => Ok(counted(
                        denies.find(|d| d.error_class().is_some()).unwrap_or(d),
                    )),
                    None => Ok(Decision::not_applicable()),
                }
            }
            Combining::FirstApplicable => Ok(Decision::not_applicable()),
        }
    }
}

impl Pdp for Combined {
    fn decide<'a>(&'a self, request: &'a AccessRequest) -> PdpFuture<'a> {
        Box::pin(self.combine(request))
    }

    fn revision(&self) -> Option<PolicyRevision> {
        let parts: Option<Vec<PolicyRevision>> = self.pdps.iter().map(|p| p.revision()).collect();
        let parts = parts?;
        Some(PolicyRevision::new(
            parts
                .iter()
                .map(|p| p.id.as_str())
                .collect::<Vec<_>>()
                .join("+"),
            parts
                .iter()
                .map(|p| p.revision.as_str())
                .collect::<Vec<_>>()
                .join("+"),
        ))
    }
}

/// Whether a decision counts for combining: an applicable one, or one that records an error (an
/// evaluation error is never "not applicable": the erroring policy might have applied).
fn applicable(d: &Decision) -> bool {
    !d.not_applicable || d.error_class().is_some()
}

/// A decision that counted, as the combination's answer: not "not applicable".
fn counted(mut d: Decision) -> Decision {
    d.not_applicable = false;
    d
}

fn merge_permits(permits: Vec<Decision>) -> Decision {
    let mut permits = permits.into_iter();
    let Some(mut first) = permits.next() else {
        return Decision::not_applicable();
    };
    let mut obligations = std::mem::take(&mut first.obligations);
    for d in permits {
        obligations.extend(d.obligations);
        first.reasons.extend(d.reasons);
        first.advice.extend(d.advice);
        first.diagnostics.extend(d.diagnostics);
    }
    first.obligations = merge_obligations(obligations);
    first
}

/// Merges the obligations of several permits into the set a PEP must carry out.
///
/// Exact duplicates are dropped; masks of the same table merge column by column with the stricter
/// strategy ([`MaskStrategy::stricter`](crate::MaskStrategy::stricter)); row filters of the same
/// table combine with `and` (a row must satisfy every permitting policy). Everything else is
/// kept as is.
pub fn merge_obligations(obligations: Vec<Obligation>) -> Vec<Obligation> {
    let mut out: Vec<Obligation> = Vec::with_capacity(obligations.len());
    let mut masks: BTreeMap<String, usize> = BTreeMap::new();
    let mut filters: BTreeMap<String, usize> = BTreeMap::new();
    for obligation in obligations {
        match obligation {
            Obligation::MaskColumns(mask) => match masks.get(&mask.table) {
                Some(&i) => {
                    if let Some(Obligation::MaskColumns(existing)) = out.get_mut(i) {
                        merge_mask(existing, mask);
                    }
                }
                None => {
                    masks.insert(mask.table.clone(), out.len());
                    out.push(Obligation::MaskColumns(mask));
                }
            },
            Obligation::FilterRows(filter) => match filters.get(&filter.table) {
                Some(&i) => {
                    if let Some(Obligation::FilterRows(existing)) = out.get_mut(i)
                        && existing.predicate != filter.predicate
                    {
                        let previous =
                            std::mem::replace(&mut existing.predicate, Predicate::Const(true));
                        existing.predicate = Predicate::And(vec![previous, filter.predicate]);
                    }
                }
                None => {
                    filters.insert(filter.table.clone(), out.len());
                    out.push(Obligation::FilterRows(filter));
                }
            },
            other => {
                if !out.contains(&other) {
                    out.push(other);
                }
            }
        }
    }
    out
}

fn merge_mask(into: &mut MaskColumns, from: MaskColumns) {
    for (column, strategy) in from.columns {
        into.columns
            .entry(column)
            .and_modify(|s| *s = s.stricter(strategy))
            .or_insert(strategy);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Action, ErrorClass, MaskStrategy, Resource, Subject};
    use serde_json::json;

    enum Answer {
        Permit(Vec<serde_json::Value>),
        Deny,
        NotApplicable,
        /// A not-applicable deny that records an evaluation error.
        BrokenNotApplicable,
        Unavailable,
    }

    impl Pdp for Answer {
        fn decide<'a>(&'a self, _: &'a AccessRequest) -> PdpFuture<'a> {
            let result =
                match self {
                    Answer::Permit(obligations) => {
                        let mut d = Decision::permit();
                        for o in obligations {
                            d = d.with_obligation(Obligation::from_json(o.clone()).unwrap());
                        }
                        Ok(d)
                    }
                    Answer::Deny => Ok(Decision::deny().with_reason("deny")),
                    Answer::NotApplicable => Ok(Decision::not_applicable()),
                    Answer::BrokenNotApplicable => Ok(Decision::not_applicable()
                        .with_error(ErrorClass::PolicyError, "rule conflict")),
                    Answer::Unavailable => Err(PdpError::unavailable("down")),
                };
            Box::pin(async move { result })
        }
    }

    fn request() -> AccessRequest {
        AccessRequest::new(
            Subject::user("u"),
            Action::new("GET"),
            Resource::new("route", "/"),
        )
    }

    async fn run(algorithm: Combining, answers: Vec<Answer>) -> Result<Decision, PdpError> {
        let mut c = Combined::new(algorithm);
        for a in answers {
            c = c.with(Arc::new(a));
        }
        c.decide(&request()).await
    }

    #[tokio::test]
    async fn an_error_is_never_skipped_as_not_applicable() {
        let request = AccessRequest::new(
            Subject::user("a"),
            Action::new("GET"),
            Resource::new("route", "/"),
        );
        let first = Combined::new(Combining::FirstApplicable)
            .with(Arc::new(Answer::BrokenNotApplicable))
            .with(Arc::new(Answer::Permit(vec![])));
        let d = first.decide(&request).await.unwrap();
        assert!(!d.allowed);
        assert_eq!(d.error_class(), Some(ErrorClass::PolicyError));
        let permit_overrides = Combined::new(Combining::PermitOverrides)
            .with(Arc::new(Answer::NotApplicable))
            .with(Arc::new(Answer::Deny))
            .with(Arc::new(Answer::BrokenNotApplicable));
        let d = permit_overrides.decide(&request).await.unwrap();
        assert!(!d.allowed && !d.not_applicable);
        assert_eq!(
            d.error_class(),
            Some(ErrorClass::PolicyError),
            "the error wins over the deny"
        );
    }

    #[tokio::test]
    async fn deny_overrides() {
        use Answer::*;
        let d = run(Combining::DenyOverrides, vec![Permit(vec![]), Deny])
            .await
            .unwrap();
        assert!(!d.allowed);
        let d = run(Combining::DenyOverrides, vec![Unavailable, Deny])
            .await
            .unwrap();
        assert!(!d.allowed, "a deny wins over an error");
        let e = run(Combining::DenyOverrides, vec![Permit(vec![]), Unavailable]).await;
        assert_eq!(e.unwrap_err().class(), ErrorClass::PdpUnavailable);
        let d = run(Combining::DenyOverrides, vec![]).await.unwrap();
        assert!(!d.allowed && d.not_applicable);
        let d = run(
            Combining::DenyOverrides,
            vec![Permit(vec![]), Permit(vec![])],
        )
        .await
        .unwrap();
        assert!(d.allowed);
    }

    #[tokio::test]
    async fn permit_overrides() {
        use Answer::*;
        assert!(
            run(Combining::PermitOverrides, vec![Deny, Permit(vec![])])
                .await
                .unwrap()
                .allowed
        );
        assert!(
            run(
                Combining::PermitOverrides,
                vec![Unavailable, Permit(vec![])]
            )
            .await
            .unwrap()
            .allowed
        );
        assert!(
            run(Combining::PermitOverrides, vec![Deny, Unavailable])
                .await
                .is_err()
        );
        let d = run(Combining::PermitOverrides, vec![NotApplicable, Deny])
            .await
            .unwrap();
        assert!(!d.allowed && !d.not_applicable);
    }

    #[tokio::test]
    async fn first_applicable() {
        use Answer::*;
        let d = run(
            Combining::FirstApplicable,
            vec![NotApplicable, Permit(vec![]), Deny],
        )
        .await
        .unwrap();
        assert!(d.allowed);
        let d = run(Combining::FirstApplicable, vec![Deny, Permit(vec![])])
            .await
            .unwrap();
        assert!(!d.allowed);
        assert!(
            run(
                Combining::FirstApplicable,
                vec![Unavailable, Permit(vec![])]
            )
            .await
            .is_err()
        );
        let d = run(Combining::FirstApplicable, vec![NotApplicable])
            .await
            .unwrap();
        assert!(d.not_applicable);
    }

    #[tokio::test]
    async fn merges_obligations_of_all_permits_with_the_stricter_mask() {
        use Answer::*;
        let d = run(
            Combining::DenyOverrides,
            vec![
                Permit(vec![
                    json!({"type": "mask_columns", "table": "patients", "columns": {"ssn": "last4", "name": "hash"}}),
                    json!({"type": "filter_rows", "table": "patients", "where": {"eq": [{"column": "clinic"}, {"value": "c1"}]}}),
                    json!({"type": "audit"}),
                ]),
                Permit(vec![
                    json!({"type": "mask_columns", "table": "patients", "columns": {"ssn": "null"}}),
                    json!({"type": "filter_rows", "table": "patients", "where": {"eq": [{"column": "active"}, {"value": true}]}}),
                    json!({"type": "audit"}),
                ]),
            ],
        )
        .await
        .unwrap();
        assert!(d.allowed);
        assert_eq!(d.obligations.len(), 3, "{:?}", d.obligations);
        let Obligation::MaskColumns(m) = &d.obligations[0] else {
            panic!()
        };
        assert_eq!(m.columns["ssn"], MaskStrategy::Null);
        assert_eq!(m.columns["name"], MaskStrategy::Hash);
        let Obligation::FilterRows(f) = &d.obligations[1] else {
            panic!()
        };
        assert!(matches!(&f.predicate, Predicate::And(parts) if parts.len() == 2));
    }

    #[test]
    fn parses_algorithm_names() {
        assert_eq!("first-applicable".parse(), Ok(Combining::FirstApplicable));
        assert!("deny_unless_permit".parse::<Combining>().is_err());
        for c in [
            Combining::DenyOverrides,
            Combining::PermitOverrides,
            Combining::FirstApplicable,
        ] {
            assert_eq!(c.to_string().parse(), Ok(c));
        }
    }
}
