//! The peer of `http_layer`: axum-casbin, which always caches its decisions, with the clinic
//! service's legacy casbin rules (`policies/clinic-casbin`: the roles that may call each route,
//! the same answer as `policies/clinic` gives on the benchmarked route), and the reports that
//! set PolicyLayer beside it and beside bare axum.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum_casbin::casbin::{DefaultModel, FileAdapter};
use axum_casbin::{CasbinAxumLayer, CasbinVals};
use http::Request;
use http::header::AUTHORIZATION;
use serde_json::Value;
use tower::{Layer, Service};
use warden_http::JwtVerifier;

/// The clinic's rules as casbin keeps them: `model.conf` (role, route, method) and
/// `policy.csv`.
const CASBIN_RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/clinic-casbin");

/// PolicyLayer with a warm decision cache at most this many times
/// axum-casbin's time per request.
pub(crate) const TARGET_PEER_RATIO: f64 = 1.0;

/// The target of what PolicyLayer adds to a request beyond the PDP's evaluation.
pub(crate) const TARGET_OWN_COST_US: f64 = 1.0;

/// axum-casbin's layer (a `CachedEnforcer` behind a lock) with the clinic's legacy rules. Its
/// subject is what an authentication layer in front put into a [`CasbinVals`] extension: the
/// caller's role, as the model matches roles against the policy's subjects.
pub(crate) async fn casbin_layer() -> CasbinAxumLayer {
    let model = DefaultModel::from_file(format!("{CASBIN_RULES}/model.conf"))
        .await
        .expect("the casbin model loads");
    let adapter = FileAdapter::new(format!("{CASBIN_RULES}/policy.csv"));
    CasbinAxumLayer::new(model, adapter)
        .await
        .expect("the casbin enforcer builds")
}

/// What an authentication layer in front of axum-casbin leaves for a doctor.
pub(crate) fn doctor() -> CasbinVals {
    CasbinVals {
        subject: "doctor".to_owned(),
        domain: None,
    }
}

/// The authentication axum-casbin needs in front of it over the network: verifies the bearer
/// token with the same [`JwtVerifier`] PolicyLayer uses and puts the `role` claim into a
/// [`CasbinVals`] extension (a request without a valid token gets none, and axum-casbin answers
/// 401).
#[derive(Clone)]
pub(crate) struct BearerRoleLayer(Arc<JwtVerifier>);

impl BearerRoleLayer {
    pub(crate) fn new(verifier: JwtVerifier) -> Self {
        Self(Arc::new(verifier))
    }
}

impl<S> Layer<S> for BearerRoleLayer {
    type Service = BearerRole<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BearerRole {
            inner,
            verifier: self.0.clone(),
        }
    }
}

/// The service of [`BearerRoleLayer`].
#[derive(Clone)]
pub(crate) struct BearerRole<S> {
    inner: S,
    verifier: Arc<JwtVerifier>,
}

impl<S: Service<Request<Body>>> Service<Request<Body>> for BearerRole<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let role = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .and_then(|token| self.verifier.verify(token).ok())
            .and_then(|token| {
                token
                    .claims
                    .get("role")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            });
        if let Some(role) = role {
            request.extensions_mut().insert(CasbinVals {
                subject: role,
                domain: None,
            });
        }
        self.inner.call(request)
    }
}

/// One line: PolicyLayer (warm decision cache) against axum-casbin, per request.
pub(crate) fn report_peer(group: &str, variant: &str, (casbin, layer): (Duration, Duration)) {
    let ratio = layer.as_secs_f64() / casbin.as_secs_f64();
    let verdict = if ratio <= TARGET_PEER_RATIO {
        "meets"
    } else {
        "misses"
    };
    println!(
        "{group} {variant}: axum-casbin {:.2} µs/req, PolicyLayer + decision cache {:.2} µs/req, \
         ratio (time PolicyLayer/axum-casbin): {ratio:.2} ({verdict} target ≤ {TARGET_PEER_RATIO:.2})",
        casbin.as_secs_f64() * 1e6,
        layer.as_secs_f64() * 1e6,
    );
}

/// One line: what PolicyLayer with a PDP that answers at once adds to bare axum, per request.
pub(crate) fn report_own_cost(group: &str, variant: &str, (bare, layer): (Duration, Duration)) {
    let own = (layer.as_secs_f64() - bare.as_secs_f64()) * 1e6;
    let verdict = if own <= TARGET_OWN_COST_US {
        "meets"
    } else {
        "misses"
    };
    println!(
        "{group} {variant}: bare {:.2} µs/req, PolicyLayer {:.2} µs/req, \
         the layer's own cost: {own:.2} µs/req ({verdict} target ≤ {TARGET_OWN_COST_US:.2} µs)",
        bare.as_secs_f64() * 1e6,
        layer.as_secs_f64() * 1e6,
    );
}
