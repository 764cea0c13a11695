//! Carrying out the obligations of a permit on an HTTP request.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use http::request::Parts;
use warden_decision::{AccessRequest, CustomObligation, Decision, Obligation, StepUp};

use crate::access::AuthStrength;
use crate::redact::{PathCache, Plan};

/// Carries out a custom obligation type on the request before it reaches the service.
///
/// Register one with [`PolicyLayer::obligation_handler`](crate::PolicyLayer::obligation_handler);
/// closures `Fn(&CustomObligation, &mut http::request::Parts) -> Result<(), String>` implement
/// it. An `Err` denies the request.
///
/// ```
/// use warden_decision::CustomObligation;
///
/// // Adds a header that the service (or a later layer) must honour.
/// let watermark = |o: &CustomObligation, parts: &mut http::request::Parts| {
///     let text = o.fields.get("text").and_then(|t| t.as_str()).ok_or("`text` is missing")?;
///     let value = http::HeaderValue::from_str(text).map_err(|e| e.to_string())?;
///     parts.headers.insert("x-watermark", value);
///     Ok::<(), String>(())
/// };
/// let layer = warden_http::PolicyLayer::new(warden_test::StaticPdp::permit())
///     .obligation_handler("watermark", watermark);
/// # drop(layer);
/// ```
pub trait ObligationHandler: Send + Sync + 'static {
    /// Carries out `obligation` on the request; an error denies it.
    fn on_request(&self, obligation: &CustomObligation, parts: &mut Parts) -> Result<(), String>;
}

impl<F> ObligationHandler for F
where
    F: Fn(&CustomObligation, &mut Parts) -> Result<(), String> + Send + Sync + 'static,
{
    fn on_request(&self, obligation: &CustomObligation, parts: &mut Parts) -> Result<(), String> {
        self(obligation, parts)
    }
}

/// The registered custom obligation handlers, by type.
#[derive(Clone, Default)]
pub(crate) struct Handlers(HashMap<String, Arc<dyn ObligationHandler>>);

impl fmt::Debug for Handlers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Handlers {
    pub(crate) fn insert(&mut self, kind: String, handler: Arc<dyn ObligationHandler>) {
        self.0.insert(kind, handler);
    }
}

/// What enforcing the obligations of a permit came to.
#[derive(Debug)]
pub(crate) enum Enforced {
    /// Every obligation was carried out: forward the request, and redact the response when a
    /// plan is given.
    Forward(Option<Plan>),
    /// A `step_up` obligation is not met by the caller's authentication.
    StepUp(StepUp),
    /// An obligation cannot be carried out: deny.
    Unsupported(String),
}

/// Carries out the obligations of a permit that concern the request.
pub(crate) struct Context<'a> {
    pub(crate) strength: &'a AuthStrength,
    pub(crate) handlers: &'a Handlers,
    pub(crate) paths: &'a PathCache,
    pub(crate) masker: &'a warden_decision::Masker,
}

pub(crate) fn enforce(
    decision: &Decision,
    request: &AccessRequest,
    cx: &Context<'_>,
    parts: &mut Parts,
) -> Enforced {
    let mut plan: Option<Plan> = None;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    for obligation in &decision.obligations {
        match obligation {
            Obligation::StepUp(step_up) => {
                if !step_up.is_satisfied_by(cx.strength.acr.as_deref(), cx.strength.auth_time, now)
                {
                    return Enforced::StepUp(step_up.clone());
                }
            }
            Obligation::Audit(audit) => {
                tracing::info!(
                    target: "warden::audit",
                    decision_id = %decision.id,
                    level = ?audit.level,
                    tags = ?audit.tags,
                    subject = %request.subject.id,
                    action = %request.action.name,
                    resource = %request.resource.id,
                    allowed = decision.allowed,
                    "audit"
                );
            }
            Obligation::Redact(redact) => {
                if let Err(message) = plan
                    .get_or_insert_default()
                    .add(redact, cx.paths, cx.masker)
                {
                    return Enforced::Unsupported(format!(
                        "a `redact` obligation cannot be carried out: {message}"
                    ));
                }
            }
            Obligation::Custom(custom) => match cx.handlers.0.get(&custom.kind) {
                Some(handler) => {
                    if let Err(message) = handler.on_request(custom, parts) {
                        return Enforced::Unsupported(format!(
                            "obligation `{}` could not be carried out: {message}",
                            custom.kind
                        ));
                    }
                }
                None => {
                    return Enforced::Unsupported(format!(
                        "no handler for obligation `{}`",
                        custom.kind
                    ));
                }
            },
            other => {
                return Enforced::Unsupported(format!(
                    "the HTTP PEP cannot carry out `{}` obligations",
                    other.type_name()
                ));
            }
        }
    }
    Enforced::Forward(plan)
}
