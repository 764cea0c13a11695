//! The decision model of Warden: access requests, decisions, obligations and the [`Pdp`] trait.
//!
//! Every Warden policy enforcement point (the HTTP `PolicyLayer`, the SQL PEP) builds an
//! [`AccessRequest`], asks a [`Pdp`] for a [`Decision`] and enforces it together with its
//! [`Obligation`]s. Every policy decision point (embedded Rego or Cedar, a remote AuthZEN server)
//! implements [`Pdp`]. This crate is all the two sides share; it has no HTTP, SQL or engine
//! dependency.
//!
//! # Example
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use warden_decision::{AccessRequest, Action, Decision, Obligation, Pdp, PdpFuture, Resource, Subject};
//!
//! /// Nurses may read patients, with the SSN masked.
//! struct Clinic;
//!
//! impl Pdp for Clinic {
//!     fn decide<'a>(&'a self, request: &'a AccessRequest) -> PdpFuture<'a> {
//!         Box::pin(async move {
//!             let nurse = request.subject.properties.get("role") == Some(&"nurse".into());
//!             if !nurse {
//!                 return Ok(Decision::deny().with_reason("not a nurse"));
//!             }
//!             let mask = Obligation::from_json(serde_json::json!({
//!                 "type": "redact", "paths": ["$..ssn"], "with": "last4"
//!             }))
//!             .map_err(|e| warden_decision::PdpError::policy(e.to_string()))?;
//!             Ok(Decision::permit().with_obligation(mask))
//!         })
//!     }
//! }
//!
//! let request = AccessRequest::new(
//!     Subject::user("alice").with_property("role", "nurse"),
//!     Action::new("GET"),
//!     Resource::new("route", "/patients"),
//! );
//! let decision = Clinic.decide(&request).await.unwrap();
//! assert!(decision.allowed);
//! assert_eq!(decision.obligations[0].type_name(), "redact");
//! # });
//! ```

pub mod authzen;
mod combine;
mod decision;
mod mask;
pub mod numbers;
mod obligation;
mod package;
mod pdp;
mod predicate;
mod request;
mod resilience;
mod trace;

pub use combine::{Combined, Combining, UnknownCombining, merge_obligations};
pub use decision::{
    Advice, Decision, DecisionId, Diagnostic, ErrorClass, InvalidDecisionId, PolicyRevision, Reason,
};
pub use mask::{MIN_HASH_KEY_LEN, MaskError, MaskStrategy, Masked, Masker, UnknownStrategy};
pub use obligation::{
    Audit, AuditLevel, CustomObligation, FilterRows, MaskColumns, Obligation, ObligationError,
    Redact, StepUp,
};
pub use package::{
    EXCEPTION_WARNING, Exception, ExceptionScope, PackageGate, PackageManifest, PackageStatus,
    Regulation, Scope, parse_instant,
};
pub use pdp::{BatchFuture, Pdp, PdpError, PdpFuture};
pub use predicate::{Literal, MAX_PREDICATE_DEPTH, Operand, Predicate};
pub use request::{AccessRequest, Action, Properties, Resource, Subject};
pub use resilience::{
    BreakerConfig, BreakerState, CacheConfig, CacheStats, Canary, CircuitBreaker, DecisionCache,
    Fallback, FallbackMode, FallbackUse, MIN_REVISION_CONTEXT, MIN_REVISION_HEADER, Measured,
    Observed, PDP_LATENCY_BUCKETS_US, PdpExt, PdpMetrics, RevisionHistory, RouteFallback, Shadow,
    ShadowStats, Timeout, min_revision,
};
pub use trace::TraceContext;
