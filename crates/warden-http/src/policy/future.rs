use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::request::Parts;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;
use warden_core::{AccessRequest, Decision, DecisionId, PdpError};

use super::Authorized;
use super::layer::Config;
use crate::access::AuthStrength;
use crate::body::ResponseBody;
use crate::obligations::{self, Enforced};
use crate::respond::Refusal;

type Decided = (AccessRequest, Result<Decision, PdpError>);
type DecideFuture = Pin<Box<dyn Future<Output = Decided> + Send>>;

pin_project! {
    /// The future of [`PolicyService`](super::PolicyService): decide, then forward or refuse.
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S::Future, S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, S, B> {
        Deciding {
            decide: DecideFuture,
            pending: Option<Pending<S, B>>,
        },
        Forwarding {
            #[pin]
            future: F,
        },
        Refused {
            refusal: Option<Refusal>,
            grpc: bool,
        },
    }
}

/// What waits for the decision: the request and the ready inner service.
struct Pending<S, B> {
    config: Arc<Config>,
    strength: AuthStrength,
    parts: Parts,
    body: B,
    inner: S,
    grpc: bool,
}

impl<S, B> std::fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    pub(crate) fn refused(refusal: Refusal, grpc: bool) -> Self {
        Self {
            state: State::Refused {
                refusal: Some(refusal),
                grpc,
            },
        }
    }

    pub(crate) fn deciding(
        config: Arc<Config>,
        request: AccessRequest,
        strength: AuthStrength,
        parts: Parts,
        body: B,
        inner: S,
        grpc: bool,
    ) -> Self {
        let pdp = config.pdp.clone();
        let timeout = config.timeout;
        let decide = Box::pin(async move {
            let result = match tokio::time::timeout(timeout, pdp.decide(&request)).await {
                Ok(result) => result,
                Err(_) => Err(PdpError::Timeout { after: timeout }),
            };
            (request, result)
        });
        Self {
            state: State::Deciding {
                decide,
                pending: Some(Pending {
                    config,
                    strength,
                    parts,
                    body,
                    inner,
                    grpc,
                }),
            },
        }
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    ResBody: http_body::Body<Data = bytes::Bytes>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Deciding { decide, pending } => {
                    let (request, result) = ready!(decide.as_mut().poll(cx));
                    let Some(pending) = pending.take() else {
                        // Polled again after completion: nothing left to forward.
                        this.state.set(State::Refused {
                            refusal: Some(Refusal::Unavailable),
                            grpc: false,
                        });
                        continue;
                    };
                    let grpc = pending.grpc;
                    match enforce(request, result, pending) {
                        Ok((mut inner, request)) => {
                            let future = inner.call(request);
                            this.state.set(State::Forwarding { future });
                        }
                        Err(refusal) => this.state.set(State::Refused {
                            refusal: Some(refusal),
                            grpc,
                        }),
                    }
                }
                StateProj::Forwarding { future } => {
                    let response = ready!(future.poll(cx))?;
                    return Poll::Ready(Ok(response.map(ResponseBody::inner)));
                }
                StateProj::Refused { refusal, grpc } => {
                    let refusal = refusal.take().unwrap_or(Refusal::Unavailable);
                    let response = if *grpc {
                        refusal.grpc_response()
                    } else {
                        refusal.http_response()
                    };
                    return Poll::Ready(Ok(response));
                }
            }
        }
    }
}

/// Turns the PDP's answer into a request to forward (with its obligations carried out) or a
/// refusal.
fn enforce<S, B>(
    request: AccessRequest,
    result: Result<Decision, PdpError>,
    pending: Pending<S, B>,
) -> Result<(S, Request<B>), Refusal> {
    let decision = match result {
        Ok(decision) => decision,
        Err(error) => {
            tracing::warn!(
                target: "warden::decision",
                error_class = error.class().as_str(),
                subject = %request.subject.id,
                action = %request.action.name,
                resource = %request.resource.id,
                %error,
                "no decision; request refused"
            );
            return Err(if error.is_unavailable() {
                Refusal::Unavailable
            } else {
                Refusal::Denied(DecisionId::new())
            });
        }
    };
    tracing::debug!(
        target: "warden::decision",
        decision_id = %decision.id,
        allowed = decision.allowed,
        subject = %request.subject.id,
        action = %request.action.name,
        resource = %request.resource.id,
        policy = %decision.policy.id,
        revision = %decision.policy.revision,
        "decision"
    );
    if let Some(class) = decision.error_class() {
        tracing::warn!(
            target: "warden::decision",
            decision_id = %decision.id,
            error_class = class.as_str(),
            diagnostics = ?decision.diagnostics,
            "the decision records an error"
        );
    }
    if !decision.allowed {
        // A caller without credentials is asked to authenticate rather than told "forbidden".
        return Err(if pending.strength.anonymous {
            Refusal::Unauthenticated
        } else {
            Refusal::Denied(decision.id)
        });
    }
    let Pending {
        config,
        strength,
        mut parts,
        body,
        inner,
        ..
    } = pending;
    match obligations::enforce(&decision, &request, &strength, &config.handlers, &mut parts) {
        Enforced::Forward => {}
        Enforced::StepUp(step_up) => return Err(Refusal::StepUp(step_up, decision.id)),
        Enforced::Unsupported(message) => {
            tracing::warn!(
                target: "warden::decision",
                decision_id = %decision.id,
                error_class = "obligation_unsupported",
                %message,
                "permit turned into a deny"
            );
            return Err(Refusal::Denied(decision.id));
        }
    }
    parts.extensions.insert(Authorized::new(decision, request));
    Ok((inner, Request::from_parts(parts, body)))
}
