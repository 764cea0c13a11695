//! The HTTP and gRPC policy enforcement point of Warden: a Tower layer, [`PolicyLayer`].
//!
//! Add it to an axum router (or a tonic server, or any `tower::Service<http::Request<B>>`) and
//! every request is decided by a policy decision point before the service sees it:
//!
//! ```
//! use axum::{Router, routing::get};
//! use warden_http::{JwtVerifier, PolicyLayer};
//! use warden_rego::RegoPdp;
//!
//! let pdp = RegoPdp::builder()
//!     .policy("authz.rego", r#"
//!         package warden
//!         decision if {
//!             input.action.name == "GET"
//!             input.resource.id == "/patients/{id}"
//!             input.subject.properties.role == "doctor"
//!         }
//!     "#)
//!     .build()
//!     .unwrap();
//! let verifier = JwtVerifier::new().hs256(warden_test::HS256_SECRET).unwrap();
//! let app: Router = Router::new()
//!     .route("/patients/{id}", get(|| async { "patient" }))
//!     .layer(PolicyLayer::new(pdp).jwt(verifier));
//! ```
//!
//! # The access request
//!
//! Policies are written against this shape (AuthZEN 1.0):
//!
//! | field | value |
//! |---|---|
//! | `subject` | the [`Subject`](warden_decision::Subject) request extension an authentication layer put there; else from a verified bearer JWT: `{type: "user", id: <sub>, properties: <all claims>}`; else `{type: "anonymous", id: "anonymous"}` if [allowed](PolicyLayer::allow_anonymous), else 401 |
//! | `action.name` | the HTTP method, as sent (`GET`, `POST`, …); `HEAD` is decided as `GET` (axum serves it with the `GET` handler; `context.method` says `HEAD`; [`head_as_get(false)`](PolicyLayer::head_as_get) opts out) |
//! | `resource` | with axum: `{type: "route", id: <matched route template, e.g. "/patients/{id}">, properties: {params: {id: "42"}, query: {...}}}`; a query key given twice maps to an array of its values |
//! | | a request that matched no route (it reached the router's fallback): `{type: "route", id: "<unmatched>"}`, whatever its headers say |
//! | | nested routers: the full template (`/api/{tenant}/patients/{id}`); a service nested with `nest_service("/files", …)`: `/files/{*rest}` |
//! | | gRPC: `{type: "rpc", id: "/package.Service/Method", properties: {service, method}}`, for a plain `/service/method` path outside an axum router (tonic's `Server::layer`) or on tonic's `/package.Service/{*rest}` route |
//! | `context` | `time` (RFC 3339), `acr` and `auth_time` (from the subject's claims), `request_id` (from `x-request-id`), `client_ip` (with axum's `ConnectInfo`) |
//!
//! The resource is the route the *router* matched, never the raw path: `//patients`,
//! `/patients/../admin`, `/PATIENTS`, `%2e%2e` or a trailing slash either match the route the
//! handler serves (and the policy sees that route) or match none (and the policy sees
//! `<unmatched>`). A `content-type: application/grpc` header never turns an unmatched request
//! into a named one. Put the layer on the router with `Router::layer`, not around it, so that
//! the route is known.
//!
//! <div class="warning">
//!
//! **`route_layer` leaves the fallback undecided.** `Router::route_layer(PolicyLayer…)` guards
//! the routes only: a request that matches none reaches the router's fallback without any
//! decision. Add the layer with `Router::layer`, last, after every route, nest and fallback; the
//! fallback is then decided as `<unmatched>`. A route added after `.layer(…)` is not behind it.
//!
//! </div>
//!
//! # Enforcement
//!
//! | outcome | HTTP | gRPC |
//! |---|---|---|
//! | permit, obligations carried out | forwarded, [`Authorized`] in the extensions | forwarded |
//! | deny, policy error, unsupported obligation | 403 `application/problem+json` with a `decision_id` | `PERMISSION_DENIED` |
//! | `step_up` not met by the caller's `acr`/`auth_time` | 401, `WWW-Authenticate: Bearer error="insufficient_user_authentication", …` (RFC 9470) | `UNAUTHENTICATED` |
//! | no, invalid, expired or `alg: none` token; a deny of an anonymous caller | 401 with a `WWW-Authenticate: Bearer` challenge | `UNAUTHENTICATED` |
//! | PDP unavailable or no decision within the [timeout](PolicyLayer::decision_timeout) | 503 | `UNAVAILABLE` |
//!
//! While a `redact` obligation is due on the response, what the PEP cannot inspect is never
//! passed: a request asking to switch protocols (`Upgrade`, `CONNECT`) is refused before the
//! handler runs, and a `1xx` response is withheld; a 2xx body that cannot be redacted is withheld
//! (500, error class `obligation_unsupported`), a 4xx/5xx one keeps its status with a
//! problem+json body instead (error class `error_replaced`).
//!
//! Denials never carry the policy's reasons; they are logged at `info` (target
//! `warden::decision`, field `reasons`) with the decision id the caller sees, and put in the
//! decision event (attribute `reasons`). `audit` obligations are written as `tracing` events with target
//! `warden::audit`. Custom obligations need a registered [`ObligationHandler`]; any obligation
//! the layer cannot carry out turns the permit into a deny.
//!
//! # Features
//!
//! | Name | Description | Default |
//! |---|---|---|
//! | `axum` | route naming from axum's `MatchedPath`, path parameters, `ConnectInfo`, and the [`Authorized`] extractor | yes |
//! | `jwks` | keys fetched from a JWKS URL or through OpenID Connect discovery, kept fresh ([`JwtVerifier::with_oidc_discovery`]) | no |

mod access;
mod body;
mod error;
mod events;
mod jwks;
mod jwt;
mod obligations;
mod policy;
mod redact;
mod respond;

pub use access::UNMATCHED_ROUTE;
pub use body::ResponseBody;
pub use error::ConfigError;
#[cfg(feature = "jwks")]
pub use jwks::remote::JwksOptions;
pub use jwt::{DEFAULT_VERIFIED_TOKENS, JwtVerifier, TokenError, VerifiedToken};
pub use obligations::ObligationHandler;
pub use policy::layer::{DEFAULT_DECISION_TIMEOUT, DEFAULT_REDACTION_LIMIT};
pub use policy::{Authorized, PolicyLayer, PolicyService, ResponseFuture};
pub use redact::{DEFAULT_REDACTION_BLOCKING_THRESHOLD, RedactError, Redactor};
