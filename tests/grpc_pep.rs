//! The PEP in front of a real tonic gRPC server, called by a real tonic client on 127.0.0.1.
//!
//! The service (`clinic.Patients`, methods `Get` and `Delete`) is written by hand with prost
//! messages and `tonic::server::Grpc`, since there is no `protoc` to generate it. It counts its
//! calls, so every refusal also proves that the handler never ran.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::uri::PathAndQuery;
use serde_json::{Value, json};
use tonic::codegen::BoxFuture;
use tonic::server::{NamedService, UnaryService};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Endpoint, Server};
use tonic::{Code, Status};
use tonic_prost::ProstCodec;
use tower::Service;
use warden_decision::{Decision, Obligation, PdpError, Resource};
use warden_http::{Authorized, JwtVerifier, PolicyLayer};
use warden_rego::RegoPdp;
use warden_test::{Answer, ScriptedPdp, StaticPdp, TestTokens};

use harness::{call, refused, rego, serve, token, verifier};

const GET: &str = "/clinic.Patients/Get";
const DELETE: &str = "/clinic.Patients/Delete";

/// Every call of a test is bounded by this; the PEP answers long before.
const CALL_LIMIT: Duration = Duration::from_secs(5);

/// Permits doctors to call `Get`, and nothing else.
const POLICY: &str = r#"
package warden

import rego.v1

default decision := false

decision if {
    input.action.name == "POST"
    input.resource.type == "rpc"
    input.resource.id == "/clinic.Patients/Get"
    input.resource.properties.service == "clinic.Patients"
    input.resource.properties.method == "Get"
    input.subject.properties.role == "doctor"
}
"#;

#[derive(Clone, PartialEq, prost::Message)]
struct PatientRequest {
    #[prost(string, tag = "1")]
    patient_id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Patient {
    #[prost(string, tag = "1")]
    id: String,
    #[prost(string, tag = "2")]
    name: String,
}

/// What the handler saw of one call.
#[derive(Debug, Clone)]
struct Seen {
    method: &'static str,
    patient_id: String,
    /// The subject and resource of the [`Authorized`] extension, if the PEP put one there.
    authorized: Option<(String, Resource)>,
}

/// The `clinic.Patients` service: `Get` and `Delete` answer the patient asked for.
#[derive(Debug, Clone, Default)]
struct Patients {
    calls: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Patients {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl NamedService for Patients {
    const NAME: &'static str = "clinic.Patients";
}

impl Service<http::Request<tonic::body::Body>> for Patients {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let method = match request.uri().path() {
            GET => Some("Get"),
            DELETE => Some("Delete"),
            _ => None,
        };
        let service = self.clone();
        Box::pin(async move {
            let Some(method) = method else {
                return Ok(Status::unimplemented("no such method").into_http());
            };
            let handler = Handler { service, method };
            let mut grpc = tonic::server::Grpc::new(ProstCodec::default());
            Ok(grpc.unary(handler, request).await)
        })
    }
}

/// One method of [`Patients`].
struct Handler {
    service: Patients,
    method: &'static str,
}

impl UnaryService<PatientRequest> for Handler {
    type Response = Patient;
    type Future = BoxFuture<tonic::Response<Patient>, Status>;

    fn call(&mut self, request: tonic::Request<PatientRequest>) -> Self::Future {
        self.service.calls.fetch_add(1, Ordering::SeqCst);
        let authorized = request
            .extensions()
            .get::<Authorized>()
            .map(|a| (a.request().subject.id.clone(), a.request().resource.clone()));
        let patient_id = request.into_inner().patient_id;
        self.service
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Seen {
                method: self.method,
                patient_id: patient_id.clone(),
                authorized,
            });
        Box::pin(async move {
            Ok(tonic::Response::new(Patient {
                id: patient_id,
                name: "Ada Lovelace".into(),
            }))
        })
    }
}

/// The server and client fixtures. A fixture that cannot be set up fails the test at once.
#[expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test fixtures: a setup that cannot work must fail the test loudly"
)]
mod harness {
    use super::*;

    /// A tonic server with `layer` in front of [`Patients`], on an ephemeral port of 127.0.0.1.
    pub(super) struct Fixture {
        pub(super) addr: SocketAddr,
        pub(super) patients: Patients,
        server: tokio::task::JoinHandle<()>,
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            self.server.abort();
        }
    }

    pub(super) async fn serve(layer: PolicyLayer) -> Fixture {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let patients = Patients::default();
        // ANCHOR: server
        let router = Server::builder().layer(layer).add_service(patients.clone());
        // ANCHOR_END: server
        let server = tokio::spawn(async move {
            router
                .serve_with_incoming(TcpIncoming::from(listener))
                .await
                .unwrap();
        });
        Fixture {
            addr,
            patients,
            server,
        }
    }

    pub(super) fn verifier() -> JwtVerifier {
        JwtVerifier::new().hs256(warden_test::HS256_SECRET).unwrap()
    }

    pub(super) fn rego() -> RegoPdp {
        RegoPdp::builder()
            .policy("p.rego", POLICY)
            .entrypoint("data.warden.decision")
            .build()
            .unwrap()
    }

    pub(super) fn token(sub: &str, extra: Value) -> String {
        TestTokens::hs256(&TestTokens::claims(sub, extra))
    }

    /// Calls `method` for patient `p-42`, with `token` as a bearer token when there is one.
    pub(super) async fn call(
        addr: SocketAddr,
        method: &'static str,
        token: Option<&str>,
    ) -> Result<tonic::Response<Patient>, Status> {
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_timeout(CALL_LIMIT)
            .connect()
            .await
            .unwrap();
        let mut client = tonic::client::Grpc::new(channel);
        client.ready().await.unwrap();
        let mut request = tonic::Request::new(PatientRequest {
            patient_id: "p-42".into(),
        });
        if let Some(token) = token {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        let path = PathAndQuery::from_static(method);
        tokio::time::timeout(
            CALL_LIMIT,
            client.unary(request, path, ProstCodec::default()),
        )
        .await
        .unwrap_or_else(|_| panic!("{method} got no answer within {CALL_LIMIT:?}"))
    }

    /// Asserts that `result` is a refusal with `code`, and returns its status.
    pub(super) fn refused(result: Result<tonic::Response<Patient>, Status>, code: Code) -> Status {
        match result {
            Ok(response) => panic!("expected {code:?}, the call succeeded: {response:?}"),
            Err(status) => {
                assert_eq!(status.code(), code, "{status:?}");
                status
            }
        }
    }
}

#[tokio::test]
async fn a_doctor_calling_get_is_permitted_by_the_rego_policy() {
    let fixture = serve(PolicyLayer::new(rego()).jwt(verifier())).await;
    let doctor = token("alice", json!({"role": "doctor"}));

    let reply = call(fixture.addr, GET, Some(&doctor)).await.unwrap();

    assert_eq!(
        reply.into_inner(),
        Patient {
            id: "p-42".into(),
            name: "Ada Lovelace".into(),
        }
    );
    assert_eq!(fixture.patients.calls(), 1);
    let seen = fixture.patients.seen();
    let [seen] = seen.as_slice() else {
        panic!("the handler saw {seen:?}");
    };
    assert_eq!(seen.method, "Get");
    assert_eq!(seen.patient_id, "p-42");
    let (subject, resource) = seen
        .authorized
        .clone()
        .expect("the PEP puts the decision into the request extensions");
    assert_eq!(subject, "alice");
    assert_eq!(
        resource,
        Resource::new("rpc", GET)
            .with_property("service", "clinic.Patients")
            .with_property("method", "Get")
    );
}

#[tokio::test]
async fn the_access_request_of_a_call_names_the_rpc_and_the_token_subject() {
    let pdp = ScriptedPdp::new(|_| Answer::Decision(Decision::permit()));
    let fixture = serve(PolicyLayer::new(pdp.clone()).jwt(verifier())).await;
    let doctor = token("alice", json!({"role": "doctor"}));

    call(fixture.addr, DELETE, Some(&doctor)).await.unwrap();

    let requests = pdp.requests();
    let [request] = requests.as_slice() else {
        panic!("the PDP was asked {requests:?}");
    };
    assert_eq!(request.action.name, "POST");
    assert_eq!(
        request.resource,
        Resource::new("rpc", DELETE)
            .with_property("service", "clinic.Patients")
            .with_property("method", "Delete")
    );
    assert_eq!(request.subject.kind, "user");
    assert_eq!(request.subject.id, "alice");
    assert_eq!(request.subject.properties["role"], "doctor");
}

#[tokio::test]
async fn a_nurse_calling_get_is_denied_with_permission_denied() {
    let fixture = serve(PolicyLayer::new(rego()).jwt(verifier())).await;
    let nurse = token("bob", json!({"role": "nurse"}));

    let status = refused(
        call(fixture.addr, GET, Some(&nurse)).await,
        Code::PermissionDenied,
    );

    assert!(status.message().contains("decision"), "{status:?}");
    assert_eq!(fixture.patients.calls(), 0);
}

#[tokio::test]
async fn a_method_the_policy_does_not_name_is_denied_even_to_a_doctor() {
    let doctor = token("alice", json!({"role": "doctor"}));

    // Control: without the policy, `Delete` reaches the handler.
    let open = serve(PolicyLayer::new(StaticPdp::permit()).jwt(verifier())).await;
    call(open.addr, DELETE, Some(&doctor)).await.unwrap();
    assert_eq!(open.patients.calls(), 1);

    let fixture = serve(PolicyLayer::new(rego()).jwt(verifier())).await;
    let status = refused(
        call(fixture.addr, DELETE, Some(&doctor)).await,
        Code::PermissionDenied,
    );
    assert!(status.message().contains("decision"), "{status:?}");
    assert_eq!(fixture.patients.calls(), 0);
}

#[tokio::test]
async fn calls_without_a_valid_token_are_unauthenticated() {
    // The PDP permits everything: only authentication can refuse these calls.
    let pdp = ScriptedPdp::new(|_| Answer::Decision(Decision::permit()));
    let fixture = serve(PolicyLayer::new(pdp.clone()).jwt(verifier())).await;

    let status = refused(call(fixture.addr, GET, None).await, Code::Unauthenticated);
    let challenge = status.metadata().get("www-authenticate").unwrap();
    assert_eq!(challenge.to_str().unwrap(), "Bearer");

    let unsigned = TestTokens::unsigned(&TestTokens::claims("alice", json!({"role": "doctor"})));
    let status = refused(
        call(fixture.addr, GET, Some(&unsigned)).await,
        Code::Unauthenticated,
    );
    let challenge = status.metadata().get("www-authenticate").unwrap();
    assert!(
        challenge.to_str().unwrap().contains("invalid_token"),
        "{status:?}"
    );

    let now = TestTokens::now();
    let expired = TestTokens::hs256(&json!({
        "sub": "alice",
        "role": "doctor",
        "iat": now - 7200,
        "exp": now - 3600,
    }));
    let status = refused(
        call(fixture.addr, GET, Some(&expired)).await,
        Code::Unauthenticated,
    );
    assert!(status.message().contains("expired"), "{status:?}");

    assert!(pdp.requests().is_empty(), "the PDP was asked");
    assert_eq!(fixture.patients.calls(), 0);

    // Control: a valid token gets through the same server.
    let doctor = token("alice", json!({"role": "doctor"}));
    call(fixture.addr, GET, Some(&doctor)).await.unwrap();
    assert_eq!(fixture.patients.calls(), 1);
}

#[tokio::test]
async fn an_unavailable_pdp_is_unavailable() {
    let pdp = ScriptedPdp::failing(PdpError::unavailable("scripted outage"));
    let fixture = serve(PolicyLayer::new(pdp.clone()).jwt(verifier())).await;
    let doctor = token("alice", json!({"role": "doctor"}));

    let status = refused(
        call(fixture.addr, GET, Some(&doctor)).await,
        Code::Unavailable,
    );

    // tonic reports transport failures as UNAVAILABLE too: this one must be the PEP's.
    assert!(
        status.message().contains("no policy decision"),
        "{status:?}"
    );
    assert_eq!(pdp.requests().len(), 1);
    assert_eq!(fixture.patients.calls(), 0);
}

#[tokio::test]
async fn a_pdp_that_hangs_is_unavailable_after_the_decision_timeout() {
    let pdp = ScriptedPdp::hang();
    let layer = PolicyLayer::new(pdp.clone())
        .jwt(verifier())
        .decision_timeout(Duration::from_millis(200));
    let fixture = serve(layer).await;
    let doctor = token("alice", json!({"role": "doctor"}));

    let started = Instant::now();
    let status = refused(
        call(fixture.addr, GET, Some(&doctor)).await,
        Code::Unavailable,
    );
    let elapsed = started.elapsed();

    assert!(
        status.message().contains("no policy decision"),
        "{status:?}"
    );
    assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    assert_eq!(pdp.requests().len(), 1);
    assert_eq!(fixture.patients.calls(), 0);
}

#[tokio::test]
async fn a_step_up_obligation_demands_the_acr_and_a_recent_authentication() {
    let step_up = Obligation::from_json(json!({
        "type": "step_up",
        "acr_values": "urn:warden:mfa",
        "max_age": 300,
    }))
    .unwrap();
    let pdp = StaticPdp::new(Decision::permit().with_obligation(step_up));
    let fixture = serve(PolicyLayer::new(pdp).jwt(verifier())).await;
    let now = TestTokens::now();

    let password_only = token("alice", json!({"role": "doctor"}));
    let status = refused(
        call(fixture.addr, GET, Some(&password_only)).await,
        Code::Unauthenticated,
    );
    let challenge = status
        .metadata()
        .get("www-authenticate")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.contains("error=\"insufficient_user_authentication\""),
        "{challenge}"
    );
    assert!(
        challenge.contains("acr_values=\"urn:warden:mfa\""),
        "{challenge}"
    );
    assert!(challenge.contains("max_age=\"300\""), "{challenge}");

    let stale_mfa = token(
        "alice",
        json!({"role": "doctor", "acr": "urn:warden:mfa", "auth_time": now - 3600}),
    );
    refused(
        call(fixture.addr, GET, Some(&stale_mfa)).await,
        Code::Unauthenticated,
    );
    assert_eq!(fixture.patients.calls(), 0);

    let fresh_mfa = token(
        "alice",
        json!({"role": "doctor", "acr": "urn:warden:mfa", "auth_time": now}),
    );
    let reply = call(fixture.addr, GET, Some(&fresh_mfa)).await.unwrap();
    assert_eq!(reply.into_inner().id, "p-42");
    assert_eq!(fixture.patients.calls(), 1);
}

#[tokio::test]
async fn a_redact_obligation_withholds_a_protobuf_reply_it_cannot_read() {
    // Redaction rewrites JSON. A gRPC reply is protobuf: the PEP cannot see which bytes are the
    // SSN, so a permit that demands a redaction lets the handler run and sends none of its reply.
    let redact = Obligation::from_json(json!({"type": "redact", "paths": ["$..name"]})).unwrap();
    let pdp = StaticPdp::new(Decision::permit().with_obligation(redact));
    let fixture = serve(PolicyLayer::new(pdp).jwt(verifier())).await;
    let doctor = token("alice", json!({"role": "doctor"}));

    let status = refused(call(fixture.addr, GET, Some(&doctor)).await, Code::Internal);

    assert_eq!(fixture.patients.calls(), 1, "the handler ran");
    assert!(
        !format!("{status:?}").contains("Ada Lovelace"),
        "nothing of the reply leaves: {status:?}"
    );
    assert!(status.message().contains("withheld"), "{status:?}");
}
