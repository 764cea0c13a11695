use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use tower_service::Service;

use super::future::{Pending, ResponseFuture};
use super::layer::Config;
use std::time::Instant;

use crate::body::ResponseBody;
use crate::{access, events};

/// The service [`PolicyLayer`](super::PolicyLayer) wraps around another.
#[derive(Clone)]
pub struct PolicyService<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for PolicyService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> PolicyService<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>) -> Self {
        Self { inner, config }
    }
}

impl<S, B, ResBody> Service<Request<B>> for PolicyService<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone,
    ResBody: http_body::Body<Data = Bytes>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, B, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The instance that was driven to readiness goes into the future; this one keeps a clone.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let started = Instant::now();
        let (mut parts, body) = request.into_parts();
        let grpc = access::is_grpc(&parts);
        match access::build(&mut parts, &self.config.subjects, self.config.head_as_get) {
            #[cfg(feature = "jwks")]
            Err(crate::respond::Refusal::InvalidToken(error))
                if let Some(refetch) = self
                    .config
                    .subjects
                    .jwt
                    .as_ref()
                    .and_then(|verifier| verifier.refetch_for(&error)) =>
            {
                ResponseFuture::refreshing(
                    Box::pin(refetch),
                    Pending {
                        config: self.config.clone(),
                        strength: crate::access::AuthStrength::default(),
                        parts,
                        body,
                        inner,
                        grpc,
                        started,
                    },
                )
            }
            Err(refusal) => {
                if let Some(telemetry) = &self.config.telemetry {
                    events::refused_early(telemetry, &parts, grpc, started);
                }
                ResponseFuture::refused(refusal, grpc)
            }
            Ok((request, strength)) => ResponseFuture::deciding(
                request,
                Pending {
                    config: self.config.clone(),
                    strength,
                    parts,
                    body,
                    inner,
                    grpc,
                    started,
                },
            ),
        }
    }
}
