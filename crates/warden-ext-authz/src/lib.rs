//! Envoy's external authorization over gRPC: the `envoy.service.auth.v3.Authorization/Check`
//! service, answered by the Warden PDP server, so that Envoy, Istio (an `AuthorizationPolicy`
//! with the `CUSTOM` action) and gateways that speak ext_authz use Warden as their PDP.
//!
//! A `CheckRequest`'s HTTP attributes (method, path with query, headers) are decided exactly as
//! the server's HTTP variant decides them (see `warden_server`'s `/ext_authz` endpoint): the
//! principal from the JWT payload Envoy's `jwt_authn` filter forwarded, or a principal header.
//! The `CheckResponse` is
//!
//! | decision | `status` | response |
//! |---|---|---|
//! | permit | `OK` | `ok_response` with `x-warden-decision-id` and `x-warden-policy-revision` for the upstream |
//! | deny, or a permit with obligations a gateway cannot carry out | `PERMISSION_DENIED` | `denied_response`: 403, problem+json body |
//! | `step_up` not met | `UNAUTHENTICATED` | `denied_response`: 401 with the RFC 9470 `WWW-Authenticate` challenge |
//! | policies not loaded, PDP unavailable | `UNAVAILABLE` | `denied_response`: 503 |
//!
//! A `CheckRequest` without HTTP attributes is refused (`INVALID_ARGUMENT`), never allowed.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! let server = warden_server::Server::builder().policy_dir("policies/clinic").build();
//! server.load().map_err(std::io::Error::other)?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9191").await?;
//! warden_ext_authz::serve(server, listener, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await
//! # }
//! ```

use std::future::Future;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse, HttpStatusCode,
};
use envoy_types::ext_authz::v3::{
    CheckResponseExt as _, DeniedHttpResponseBuilder, OkHttpResponseBuilder,
};
use http_body_util::BodyExt as _;
use warden_server::Server;

/// The gRPC service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ExtAuthz {
    server: Server,
}

impl ExtAuthz {
    /// The service for `server`, whose policies decide.
    pub fn new(server: Server) -> Self {
        Self { server }
    }

    /// The tonic service, to add to a `tonic::transport::Server`.
    pub fn into_service(self) -> AuthorizationServer<Self> {
        AuthorizationServer::new(self)
    }
}

/// The headers a decision answer passes on: to the upstream on a permit, to the client on a
/// denial.
const PASSED: [&str; 4] = [
    "x-warden-decision-id",
    "x-warden-policy-revision",
    "www-authenticate",
    "content-type",
];

#[tonic::async_trait]
impl Authorization for ExtAuthz {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let check = request.into_inner();
        let Some(http) = check
            .attributes
            .as_ref()
            .and_then(|a| a.request.as_ref())
            .and_then(|r| r.http.as_ref())
        else {
            return Err(tonic::Status::invalid_argument(
                "the check carries no HTTP request attributes",
            ));
        };
        let mut headers = HeaderMap::new();
        for (name, value) in &http.headers {
            // Pseudo-headers (`:path`, `:method`) are in their own fields.
            if name.starts_with(':') {
                continue;
            }
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.append(name, value);
            }
        }
        let path = if http.path.is_empty() {
            "/"
        } else {
            http.path.as_str()
        };
        let answer = self.server.ext_authz(&http.method, path, &headers).await;
        let status = answer.status();
        let passed: Vec<(String, String)> = PASSED
            .iter()
            .filter_map(|name| {
                let value = answer.headers().get(*name)?.to_str().ok()?;
                Some(((*name).to_owned(), value.to_owned()))
            })
            .collect();
        if status.is_success() {
            let mut ok = OkHttpResponseBuilder::new();
            for (name, value) in passed {
                if name.starts_with("x-warden-") {
                    ok.add_header(name, value, None, false);
                }
            }
            let mut response = CheckResponse::with_status(tonic::Status::ok("permitted"));
            response.set_http_response(ok);
            return Ok(tonic::Response::new(response));
        }
        let body = answer
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        let (grpc, http_status) = match status.as_u16() {
            401 => (
                tonic::Status::unauthenticated("step-up authentication required"),
                HttpStatusCode::Unauthorized,
            ),
            403 => (
                tonic::Status::permission_denied("access denied"),
                HttpStatusCode::Forbidden,
            ),
            _ => (
                tonic::Status::unavailable("the policy decision point is unavailable"),
                HttpStatusCode::ServiceUnavailable,
            ),
        };
        let mut denied = DeniedHttpResponseBuilder::new();
        denied.set_http_status(http_status).set_body(body);
        for (name, value) in passed {
            denied.add_header(name, value, None, false);
        }
        let mut response = CheckResponse::with_status(grpc);
        response.set_http_response(denied);
        Ok(tonic::Response::new(response))
    }
}

/// Serves the gRPC service on `listener` (plain HTTP/2) until `shutdown` completes.
pub async fn serve(
    server: Server,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tonic::transport::Server::builder()
        .add_service(ExtAuthz::new(server).into_service())
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            shutdown,
        )
        .await
        .map_err(std::io::Error::other)
}
