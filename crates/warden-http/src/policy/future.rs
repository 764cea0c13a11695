use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::request::Parts;
use http::{Method, Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use std::time::Instant;
use tower_service::Service;

use tracing::Instrument;
use warden_decision::{AccessRequest, Decision, DecisionId, ErrorClass, PdpError, TraceContext};
use warden_telemetry::Telemetry;

use super::Authorized;
use super::layer::Config;
use crate::access::AuthStrength;
use crate::body::ResponseBody;
use crate::events;
use crate::obligations::{self, Enforced};
use crate::redact::{self, Redaction, Verdict};
use crate::respond::Refusal;

type Decided = (Arc<AccessRequest>, Result<Decision, PdpError>);
type DecideFuture = Pin<Box<dyn Future<Output = Decided> + Send>>;

pin_project! {
    /// The future of [`PolicyService`](super::PolicyService): decide, then forward or refuse,
    /// then (when the decision demands it) redact the response.
    pub struct ResponseFuture<S, B, ResBody>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S::Future, S, B, ResBody>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, S, B, ResBody> {
        Deciding {
            decide: DecideFuture,
            pending: Option<Pending<S, B>>,
        },
        Forwarding {
            #[pin]
            future: F,
            redaction: Option<Due>,
        },
        Buffering {
            #[pin]
            body: ResBody,
            head: Option<http::response::Parts>,
            buffer: BytesMut,
            due: Due,
            gzip: bool,
            redacting: Option<redact::Redacting>,
        },
        Refused {
            refusal: Option<Refusal>,
            grpc: bool,
        },
        Refreshing {
            refresh: RefreshFuture,
            pending: Option<Pending<S, B>>,
        },
    }
}

type RefreshFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A redaction due on the response, with the decision that demands it.
struct Due {
    redaction: Redaction,
    decision: DecisionId,
    grpc: bool,
    /// The event to emit if the response must be withheld.
    withheld: Option<(Telemetry, events::Decided)>,
}

/// What waits for the decision: the request and the ready inner service.
pub(crate) struct Pending<S, B> {
    pub(crate) config: Arc<Config>,
    pub(crate) strength: AuthStrength,
    pub(crate) parts: Parts,
    pub(crate) body: B,
    pub(crate) inner: S,
    pub(crate) grpc: bool,
    pub(crate) started: Instant,
}

impl<S, B, ResBody> std::fmt::Debug for ResponseFuture<S, B, ResBody>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<S, B, ResBody> ResponseFuture<S, B, ResBody>
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

    /// The token named an unknown `kid`: wait for the key set to be fetched again, then
    /// verify it once more.
    #[cfg(feature = "jwks")]
    pub(crate) fn refreshing(refresh: RefreshFuture, pending: Pending<S, B>) -> Self {
        Self {
            state: State::Refreshing {
                refresh,
                pending: Some(pending),
            },
        }
    }

    pub(crate) fn deciding(request: AccessRequest, pending: Pending<S, B>) -> Self {
        Self {
            state: deciding(request, pending),
        }
    }
}

fn deciding<F, S, B, ResBody>(
    request: AccessRequest,
    pending: Pending<S, B>,
) -> State<F, S, B, ResBody> {
    {
        // Shared with the `Authorized` extension and the decision event, never copied.
        let request = Arc::new(request);
        let pdp = pending.config.pdp.clone();
        let timeout = pending.config.timeout;
        // The caller's trace goes with the decision, so a remote PDP joins it.
        let headers = &pending.parts.headers;
        let trace = headers
            .get(&crate::access::TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(TraceContext::parse)
            .map(|context| {
                match headers
                    .get(&crate::access::X_REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                {
                    Some(id) => context.with_request_id(id),
                    None => context,
                }
            });
        let span = tracing::info_span!(
            "warden.decide",
            warden.pep = "http",
            warden.subject = %request.subject.id,
            warden.action = %request.action.name,
            warden.resource = %request.resource.id,
            warden.decision_id = tracing::field::Empty,
            warden.allowed = tracing::field::Empty,
            warden.error = tracing::field::Empty,
        );
        let decide = Box::pin(async move {
            let work = async {
                let mut deciding = pdp.decide(&request);
                // An embedded PDP answers on the first poll: only arm the timer when it does not.
                let first =
                    std::future::poll_fn(|cx| Poll::Ready(deciding.as_mut().poll(cx))).await;
                match first {
                    Poll::Ready(result) => result,
                    Poll::Pending => match tokio::time::timeout(timeout, deciding).await {
                        Ok(result) => result,
                        Err(_) => Err(PdpError::Timeout { after: timeout }),
                    },
                }
            };
            let result = match trace {
                Some(trace) => trace.scope(work).instrument(span.clone()).await,
                None => work.instrument(span.clone()).await,
            };
            match &result {
                Ok(decision) => {
                    span.record("warden.decision_id", tracing::field::display(decision.id));
                    span.record("warden.allowed", decision.allowed);
                }
                Err(error) => {
                    span.record("warden.error", error.class().as_str());
                }
            }
            (request, result)
        });
        State::Deciding {
            decide,
            pending: Some(pending),
        }
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B, ResBody>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    ResBody: Body<Data = Bytes>,
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
                        Ok(Forward {
                            mut inner,
                            request,
                            redaction,
                        }) => {
                            let future = inner.call(request);
                            this.state.set(State::Forwarding { future, redaction });
                        }
                        Err(refusal) => this.state.set(State::Refused {
                            refusal: Some(refusal),
                            grpc,
                        }),
                    }
                }
                StateProj::Forwarding { future, redaction } => {
                    let response = ready!(future.poll(cx))?;
                    let Some(due) = redaction.take() else {
                        return Poll::Ready(Ok(response.map(ResponseBody::inner)));
                    };
                    let (mut head, body) = response.into_parts();
                    match due.redaction.inspect(&mut head) {
                        Verdict::Pass => {
                            return Poll::Ready(Ok(Response::from_parts(
                                head,
                                ResponseBody::inner(body),
                            )));
                        }
                        Verdict::Empty => {
                            return Poll::Ready(Ok(Response::from_parts(
                                head,
                                ResponseBody::policy(Bytes::new()),
                            )));
                        }
                        Verdict::Withhold(reason) => {
                            this.state.set(withhold(&due, &reason, Some(&head)));
                        }
                        Verdict::Buffer { gzip } => this.state.set(State::Buffering {
                            body,
                            head: Some(head),
                            buffer: BytesMut::new(),
                            due,
                            gzip,
                            redacting: None,
                        }),
                    }
                }
                StateProj::Buffering {
                    mut body,
                    head,
                    buffer,
                    due,
                    gzip,
                    redacting,
                } => {
                    let next = if let Some(redacting) = redacting.as_mut() {
                        match ready!(Pin::new(redacting).poll(cx)) {
                            Ok(redacted) => {
                                let Some(mut head) = head.take() else {
                                    return Poll::Ready(Ok(
                                        Refusal::Withheld(due.decision).http_response()
                                    ));
                                };
                                head.headers.remove(http::header::CONTENT_ENCODING);
                                head.headers.insert(
                                    http::header::CONTENT_LENGTH,
                                    http::HeaderValue::from(redacted.len()),
                                );
                                return Poll::Ready(Ok(Response::from_parts(
                                    head,
                                    ResponseBody::policy(redacted),
                                )));
                            }
                            Err(reason) => Some(withhold(due, &reason, head.as_ref())),
                        }
                    } else {
                        match ready!(body.as_mut().poll_frame(cx)) {
                            Some(Ok(frame)) => match frame.into_data() {
                                Ok(mut data) => {
                                    if buffer.len().saturating_add(data.remaining())
                                        > due.redaction.limit
                                    {
                                        Some(withhold(
                                            due,
                                            "the body is larger than the redaction limit",
                                            head.as_ref(),
                                        ))
                                    } else {
                                        while data.has_remaining() {
                                            let chunk = data.chunk();
                                            let n = chunk.len();
                                            buffer.extend_from_slice(chunk);
                                            data.advance(n);
                                        }
                                        None
                                    }
                                }
                                // Trailers of a body that is being replaced are dropped.
                                Err(_) => None,
                            },
                            Some(Err(_)) => Some(withhold(
                                due,
                                "the body failed while it was read",
                                head.as_ref(),
                            )),
                            None => {
                                // Inline, or off the worker threads for a large body.
                                let body = std::mem::take(buffer).freeze();
                                *redacting = Some(due.redaction.start(body, *gzip));
                                None
                            }
                        }
                    };
                    if let Some(state) = next {
                        this.state.set(state);
                    }
                }
                StateProj::Refreshing { refresh, pending } => {
                    ready!(refresh.as_mut().poll(cx));
                    let Some(mut pending) = pending.take() else {
                        this.state.set(State::Refused {
                            refusal: Some(Refusal::Unavailable),
                            grpc: false,
                        });
                        continue;
                    };
                    let config = pending.config.clone();
                    match crate::access::build(
                        &mut pending.parts,
                        &config.subjects,
                        config.head_as_get,
                    ) {
                        Ok((request, strength)) => {
                            pending.strength = strength;
                            this.state.set(deciding(request, pending));
                        }
                        Err(refusal) => {
                            if let Some(telemetry) = &config.telemetry {
                                events::refused_early(
                                    telemetry,
                                    &pending.parts,
                                    pending.grpc,
                                    pending.started,
                                );
                            }
                            this.state.set(State::Refused {
                                refusal: Some(refusal),
                                grpc: pending.grpc,
                            });
                        }
                    }
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

/// The state that answers "response withheld by policy", after saying why. An error response
/// (4xx, 5xx) whose body cannot be redacted keeps its status and gets a problem+json body
/// instead: the client's own mistake is not an alert for the operator.
fn withhold<F, S, B, ResBody>(
    due: &Due,
    reason: &str,
    head: Option<&http::response::Parts>,
) -> State<F, S, B, ResBody> {
    let error_status = head
        .map(|head| head.status)
        .filter(|status| status.is_client_error() || status.is_server_error());
    let class = match error_status {
        Some(_) => crate::events::ERROR_REPLACED,
        None => ErrorClass::ObligationUnsupported.as_str(),
    };
    if let Some((telemetry, event)) = &due.withheld {
        telemetry.emit_pending(event.withheld(class));
    }
    let refusal = match (error_status, head) {
        (Some(status), Some(head)) => {
            tracing::info!(
                target: "warden::redaction",
                decision_id = %due.decision,
                status = status.as_u16(),
                reason,
                "error response body replaced: it cannot be redacted as the decision demands"
            );
            Refusal::ErrorReplaced(Box::new(crate::respond::Replaced::of(head)), due.decision)
        }
        _ => {
            tracing::warn!(
                target: "warden::redaction",
                decision_id = %due.decision,
                reason,
                "response withheld: it cannot be redacted as the decision demands"
            );
            Refusal::Withheld(due.decision)
        }
    };
    State::Refused {
        refusal: Some(refusal),
        grpc: due.grpc,
    }
}

/// A request cleared to go on.
struct Forward<S, B> {
    inner: S,
    request: Request<B>,
    redaction: Option<Due>,
}

/// Turns the PDP's answer into a request to forward or a refusal, and reports it.
fn enforce<S, B>(
    request: Arc<AccessRequest>,
    result: Result<Decision, PdpError>,
    pending: Pending<S, B>,
) -> Result<Forward<S, B>, Refusal> {
    let result = result.map(Arc::new);
    let Some(telemetry) = pending.config.telemetry.clone() else {
        return decide(request, result, pending).map_err(|(refusal, _)| refusal);
    };
    // The event shares the request and the decision with the `Authorized` extension; the
    // writer task builds it.
    let mut event = events::Decided::new(
        pending.grpc,
        &pending.parts.headers,
        request.clone(),
        result.as_ref().ok().cloned(),
    );
    let started = pending.started;
    let outcome = decide(request, result, pending);
    event.verdict(
        started,
        outcome
            .as_ref()
            .map(|_| ())
            .map_err(|(refusal, class)| (refusal, *class)),
    );
    match outcome {
        Ok(mut forward) => {
            if let Some(due) = forward.redaction.as_mut() {
                due.withheld = Some((telemetry.clone(), event.clone()));
            }
            telemetry.emit_pending(event);
            Ok(forward)
        }
        Err((refusal, _)) => {
            telemetry.emit_pending(event);
            Err(refusal)
        }
    }
}

/// A refusal and, when it is not a plain deny, the class of what went wrong.
type Refused = (Refusal, Option<ErrorClass>);

/// Turns the PDP's answer into a request to forward (with its obligations carried out) or a
/// refusal.
fn decide<S, B>(
    request: Arc<AccessRequest>,
    result: Result<Arc<Decision>, PdpError>,
    pending: Pending<S, B>,
) -> Result<Forward<S, B>, Refused> {
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
            let refusal = if error.is_unavailable() {
                Refusal::Unavailable
            } else {
                Refusal::Denied(DecisionId::new())
            };
            return Err((refusal, Some(error.class())));
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
        // The policy's reasons never reach the caller; they are logged under the decision id
        // the caller sees, so support can say why from the id alone.
        tracing::info!(
            target: "warden::decision",
            decision_id = %decision.id,
            subject = %request.subject.id,
            action = %request.action.name,
            resource = %request.resource.id,
            reasons = %events::reasons_line(&decision.reasons),
            "denied"
        );
        // A caller without credentials is asked to authenticate rather than told "forbidden".
        let refusal = if pending.strength.anonymous {
            Refusal::Unauthenticated
        } else {
            Refusal::Denied(decision.id)
        };
        return Err((refusal, decision.error_class()));
    }
    let Pending {
        config,
        strength,
        mut parts,
        body,
        inner,
        grpc,
        ..
    } = pending;
    let cx = obligations::Context {
        strength: &strength,
        handlers: &config.handlers,
        paths: &config.paths,
        masker: &config.masker,
    };
    let plan = match obligations::enforce(&decision, &request, &cx, &mut parts) {
        Enforced::Forward(plan) => plan,
        Enforced::StepUp(step_up) => return Err((Refusal::StepUp(step_up, decision.id), None)),
        Enforced::Unsupported(message) => {
            tracing::warn!(
                target: "warden::decision",
                decision_id = %decision.id,
                error_class = "obligation_unsupported",
                %message,
                "permit turned into a deny"
            );
            return Err((
                Refusal::Denied(decision.id),
                Some(ErrorClass::ObligationUnsupported),
            ));
        }
    };
    if plan.is_some() && redact::asks_to_switch_protocols(&parts) {
        // The handler would write to the switched connection, past the redaction.
        tracing::warn!(
            target: "warden::redaction",
            decision_id = %decision.id,
            "protocol switch refused: the decision demands a redaction of the response"
        );
        return Err((
            Refusal::Withheld(decision.id),
            Some(ErrorClass::ObligationUnsupported),
        ));
    }
    let redaction = plan.map(|plan| {
        if plan.has_paths() {
            redact::prepare_request(&mut parts);
        }
        Due {
            redaction: Redaction {
                plan,
                masker: config.masker.clone(),
                limit: config.redaction_limit,
                blocking_threshold: config.redaction_blocking_threshold,
                head: parts.method == Method::HEAD,
            },
            decision: decision.id,
            grpc,
            withheld: None,
        }
    });
    parts.extensions.insert(Authorized::new(decision, request));
    Ok(Forward {
        inner,
        request: Request::from_parts(parts, body),
        redaction,
    })
}
