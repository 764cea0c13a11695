//! One case table, four decision paths: the clinic policy in Rego and in Cedar, each embedded and
//! each behind the Warden PDP server reached with the remote AuthZEN client. All four must give
//! the case's expected decision and exactly the same obligations.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers fail loudly"
)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use warden_decision::{Decision, Pdp};
use warden_remote::RemotePdp;
use warden_server::{PolicyDir, Server};
use warden_tests::{Case, cases, clinic_policy_dir, root};

/// The obligations of a decision as a set of JSON texts, so order does not matter.
fn obligations(decision: &Decision) -> BTreeSet<String> {
    decision
        .obligations
        .iter()
        .map(|o| serde_json::to_string(o).unwrap())
        .collect()
}

fn types(decision: &Decision) -> Vec<String> {
    let mut types: Vec<String> = decision
        .obligations
        .iter()
        .map(|o| o.type_name().to_owned())
        .collect();
    types.sort();
    types
}

struct Path {
    name: &'static str,
    pdp: Arc<dyn Pdp>,
}

async fn serve(dir: std::path::PathBuf) -> (String, tokio::sync::oneshot::Sender<()>) {
    let server = Server::builder().policy_dir(dir).build();
    server.load().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.serve(listener, async {
        let _ = stopped.await;
    }));
    (url, stop)
}

#[tokio::test]
async fn rego_and_cedar_embedded_and_remote_agree_on_every_case() {
    let rego_dir = clinic_policy_dir();
    let cedar_dir = root().join("policies/clinic-cedar");
    let (rego_url, stop_rego) = serve(rego_dir.clone()).await;
    let (cedar_url, stop_cedar) = serve(cedar_dir.clone()).await;
    let remote = |url: &str| -> Arc<dyn Pdp> {
        Arc::new(
            RemotePdp::authzen(url)
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
        )
    };
    let paths = [
        Path {
            name: "embedded Rego",
            pdp: PolicyDir::open(&rego_dir).unwrap().pdp(),
        },
        Path {
            name: "embedded Cedar",
            pdp: PolicyDir::open(&cedar_dir).unwrap().pdp(),
        },
        Path {
            name: "remote → server (Rego)",
            pdp: remote(&rego_url),
        },
        Path {
            name: "remote → server (Cedar)",
            pdp: remote(&cedar_url),
        },
    ];
    let cases: Vec<Case> = cases(&rego_dir);
    assert!(cases.len() >= 30, "the case table is too small");
    let mut failures = Vec::new();
    for case in &cases {
        let mut reference: Option<(&str, Decision)> = None;
        for path in &paths {
            let decision = match path.pdp.decide(&case.request).await {
                Ok(decision) => decision,
                Err(error) => {
                    failures.push(format!("{} / {}: error {error}", case.name, path.name));
                    continue;
                }
            };
            // Cedar reports a claim of the wrong type (a string where the schema says a set) as
            // an evaluation error of the policies that read it; the decision is still a deny.
            // Rego simply finds no match. Only a deny may carry an error.
            if decision.error_class().is_some() && (decision.allowed || case.expect.allow) {
                failures.push(format!(
                    "{} / {}: {:?}",
                    case.name, path.name, decision.diagnostics
                ));
            }
            if decision.allowed != case.expect.allow || types(&decision) != case.expect.obligations
            {
                failures.push(format!(
                    "{} / {}: got allow={} {:?}, want allow={} {:?}",
                    case.name,
                    path.name,
                    decision.allowed,
                    types(&decision),
                    case.expect.allow,
                    case.expect.obligations
                ));
            }
            assert_eq!(decision.policy.id, "clinic", "{}", path.name);
            match &reference {
                None => reference = Some((path.name, decision)),
                Some((first, expected)) => {
                    if obligations(&decision) != obligations(expected) {
                        failures.push(format!(
                            "{} / {}: obligations differ from {first}:\n  {:?}\n  {:?}",
                            case.name,
                            path.name,
                            obligations(&decision),
                            obligations(expected)
                        ));
                    }
                }
            }
        }
    }

    // The batch endpoint gives the same answers as one evaluation at a time.
    let requests: Vec<_> = cases.iter().map(|c| c.request.clone()).collect();
    for path in &paths[2..] {
        let batch = path.pdp.decide_batch(&requests).await;
        for (case, decision) in cases.iter().zip(batch) {
            let decision = decision.unwrap();
            if decision.allowed != case.expect.allow {
                failures.push(format!(
                    "{} / {} (batch): allow={}",
                    case.name, path.name, decision.allowed
                ));
            }
        }
    }
    let _ = stop_rego.send(());
    let _ = stop_cedar.send(());
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
