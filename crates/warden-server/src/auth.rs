//! Authentication of callers: bearer tokens, or a client certificate the TLS listener verified.
//! `/health` is always open, so that load balancers and orchestrators need no credential.
//!
//! Tokens are kept as SHA-256 digests and compared in constant time. A request without a
//! valid credential is a `401` problem+json with `WWW-Authenticate: Bearer`, whatever its
//! endpoint; the answer says nothing of which tokens exist.

use std::sync::Arc;

use axum::extract::{Request, State as Extract};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::State;
use crate::routes::problem;

/// A request whose TLS connection presented a client certificate the server's client CA
/// verified: set by the TLS listener on every request of that connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedClientCertificate;

/// Who may call the server.
#[derive(Debug, Clone, Default)]
pub(crate) struct Callers {
    tokens: Vec<[u8; 32]>,
    /// A verified client certificate is enough.
    pub(crate) client_certificates: bool,
}

impl Callers {
    pub(crate) fn add_token(&mut self, token: &str) {
        self.tokens.push(Sha256::digest(token.as_bytes()).into());
    }

    /// Whether anything is required at all.
    pub(crate) fn required(&self) -> bool {
        !self.tokens.is_empty() || self.client_certificates
    }

    fn token_is_known(&self, token: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Every known digest is compared, to the last byte, whatever matched.
        self.tokens.iter().fold(false, |found, known| {
            let same = known
                .iter()
                .zip(digest.iter())
                .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                == 0;
            found | same
        })
    }
}

pub(crate) async fn authenticate(
    Extract(state): Extract<Arc<State>>,
    request: Request,
    next: Next,
) -> Response {
    let callers = &state.callers;
    if !callers.required() || request.uri().path() == "/health" {
        return next.run(request).await;
    }
    if callers.client_certificates
        && request
            .extensions()
            .get::<VerifiedClientCertificate>()
            .is_some()
    {
        return next.run(request).await;
    }
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    if token.is_some_and(|t| !t.is_empty() && callers.token_is_known(t)) {
        return next.run(request).await;
    }
    state.metrics.request("unauthenticated", 401);
    let mut response = problem(
        StatusCode::UNAUTHORIZED,
        "Unauthenticated",
        "this server answers authenticated callers only",
    )
    .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"warden\""),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_configured_tokens_are_known() {
        let mut callers = Callers::default();
        assert!(!callers.required());
        callers.add_token("s3cret-token");
        callers.add_token("other");
        assert!(callers.required());
        assert!(callers.token_is_known("s3cret-token"));
        assert!(callers.token_is_known("other"));
        for wrong in ["", "s3cret-toke", "s3cret-token ", "S3CRET-TOKEN", "othe"] {
            assert!(!callers.token_is_known(wrong), "{wrong:?}");
        }
    }
}
