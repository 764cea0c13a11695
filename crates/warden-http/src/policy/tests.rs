//! What the layer logs of a deny: the policy's reasons under the decision id the caller sees.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};
use warden_decision::{Decision, Reason, Subject};

use crate::PolicyLayer;

/// One event: its level and fields.
type Logged = (tracing::Level, Vec<(String, String)>);

/// The `warden::decision` events.
#[derive(Default, Clone)]
struct Captured(Arc<Mutex<Vec<Logged>>>);

struct Fields(Vec<(String, String)>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
}

impl Subscriber for Captured {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        if event.metadata().target() == "warden::decision" {
            let mut fields = Fields(Vec::new());
            event.record(&mut fields);
            if let Ok(mut seen) = self.0.lock() {
                seen.push((*event.metadata().level(), fields.0));
            }
        }
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

#[test]
fn a_deny_logs_the_policy_reasons_at_info_under_the_callers_decision_id() {
    let captured = Captured::default();
    let mut deny = Decision::deny();
    deny.reasons = vec![Reason {
        code: Some("not_clinic_member".into()),
        message: "nina is not a member of clinic c2".into(),
    }];
    let app = Router::new()
        .route("/patients", get(|| async { "patients" }))
        .layer(PolicyLayer::new(warden_test::StaticPdp::new(deny)));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let body = tracing::subscriber::with_default(captured.clone(), || {
        runtime.block_on(async {
            let mut request = Request::get("/patients").body(Body::empty()).unwrap();
            request.extensions_mut().insert(Subject::user("nina"));
            let response = app.oneshot(request).await.unwrap();
            assert_eq!(response.status(), 403);
            response.into_body().collect().await.unwrap().to_bytes()
        })
    });
    let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
    // Neither the reason nor its code reaches the caller. (Not the bare "c2": a random
    // decision id can hold those two characters.)
    for secret in ["clinic c2", "not a member", "not_clinic_member"] {
        assert!(
            !problem.to_string().contains(secret),
            "never sent: {problem}"
        );
    }
    let id = problem["decision_id"].as_str().unwrap().to_owned();
    let seen = captured.0.lock().unwrap();
    let denied = seen
        .iter()
        .find(|(_, fields)| {
            fields.iter().any(|(k, v)| k == "decision_id" && *v == id)
                && fields.iter().any(|(k, _)| k == "reasons")
        })
        .expect("a warden::decision event with the reasons under the caller's id");
    assert_eq!(denied.0, tracing::Level::INFO);
    let reasons = &denied.1.iter().find(|(k, _)| k == "reasons").unwrap().1;
    assert_eq!(
        reasons,
        "not_clinic_member: nina is not a member of clinic c2"
    );
}
