//! Knowing the PDP's revision without asking it for decisions: the revision watch.
//!
//! A [`RemotePdp`](crate::RemotePdp) built with a watch (the default for AuthZEN) long-polls
//! `GET <base>/v1/revision?after=<rev>&wait=<secs>` on a task of its own. A switch on the server
//! reaches the client within one round trip, and the client's [`revision`](warden_decision::Pdp::revision)
//! changes at once, so a [`DecisionCache`](warden_decision::DecisionCache) above it stops
//! serving the older revision's decisions whatever its hit rate.
//!
//! Each poll returns within the revalidation interval, so a watch that is lost (the server
//! killed, the network cut, a PDP without the endpoint) is noticed within that interval. From
//! then on the revision counts as confirmed only for the interval after an answer named it;
//! past it the client reports no revision, which makes a cache ask the PDP again: the bound on
//! serving an old revision is the interval, never the cache's TTL.

use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant};

use http::header::ACCEPT;
use serde::Deserialize;
use warden_decision::{Observed, PolicyRevision, RevisionHistory};

use crate::Inner;

/// The default revalidation interval: the longest a client goes on using a revision it could
/// not confirm.
pub const DEFAULT_REVALIDATE: Duration = Duration::from_secs(1);

/// The path of the revision watch on a Warden PDP server.
pub const REVISION_PATH: &str = "/v1/revision";

/// How long an in-flight poll may take beyond its wait before the watch counts as lost.
const GRACE: Duration = Duration::from_millis(500);

/// What the client knows about the PDP's revision.
#[derive(Debug)]
pub(crate) struct Revisions {
    pub(crate) revalidate: Duration,
    pub(crate) watched: bool,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    history: RevisionHistory,
    /// When an answer or the watch last named the revision in force.
    confirmed: Option<Instant>,
    /// When the poll now waiting on the server was sent.
    polling_since: Option<Instant>,
}

impl Revisions {
    pub(crate) fn new(revalidate: Duration, watched: bool) -> Self {
        Self {
            revalidate,
            watched,
            state: Mutex::new(State {
                history: RevisionHistory::default(),
                confirmed: None,
                polling_since: None,
            }),
        }
    }

    /// The revision in force, if it is confirmed: by a watch that is open, or by an answer or
    /// a watch event within the revalidation interval. Without a watch, the last revision an
    /// answer named.
    pub(crate) fn current(&self) -> Option<PolicyRevision> {
        let now = Instant::now();
        let state = self.state.lock().ok()?;
        let current = state.history.current()?.clone();
        if !self.watched {
            return Some(current);
        }
        let polling = state
            .polling_since
            .is_some_and(|since| now.duration_since(since) < self.revalidate + GRACE);
        let confirmed = state
            .confirmed
            .is_some_and(|at| now.duration_since(at) < self.revalidate);
        (polling || confirmed).then_some(current)
    }

    /// The last revision known, confirmed or not.
    pub(crate) fn last_known(&self) -> Option<PolicyRevision> {
        self.state
            .lock()
            .ok()
            .and_then(|s| s.history.current().cloned())
    }

    /// A revision an answer named. `Older` means the PDP that answered is behind the revision
    /// the client knows to be in force.
    pub(crate) fn answered(&self, revision: &PolicyRevision) -> Observed {
        let Ok(mut state) = self.state.lock() else {
            return Observed::Older;
        };
        let observed = state.history.observe(revision);
        if observed != Observed::Older {
            state.confirmed = Some(Instant::now());
        }
        observed
    }

    /// Whether `have` meets the consistency token `min`.
    pub(crate) fn meets(&self, have: &str, min: &str) -> bool {
        self.state.lock().is_ok_and(|s| s.history.meets(have, min))
    }

    fn watched_switch(&self, revision: &PolicyRevision) {
        if let Ok(mut state) = self.state.lock() {
            if state.history.advance(revision) {
                tracing::info!(
                    target: "warden::remote",
                    policy = %revision.id,
                    revision = %revision.revision,
                    "the PDP switched revision"
                );
            }
            state.confirmed = Some(Instant::now());
        }
    }

    fn polling(&self, since: Option<Instant>) {
        if let Ok(mut state) = self.state.lock() {
            state.polling_since = since;
        }
    }
}

#[derive(Deserialize)]
struct Answer {
    revision: String,
    policy_id: String,
}

/// Percent-encodes a query value.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Starts the watch on the current Tokio runtime, if there is one. It ends when the client is
/// dropped.
pub(crate) fn spawn(inner: Weak<Inner>, url: String) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!(
            target: "warden::remote",
            "no Tokio runtime: the revision watch does not run, revisions are revalidated by answers"
        );
        return;
    };
    runtime.spawn(run(inner, url));
}

async fn run(inner: Weak<Inner>, url: String) {
    let mut failures: u32 = 0;
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let client = strong.client.clone();
        let headers = strong.headers.clone();
        let revalidate = strong.revisions.revalidate;
        let after = strong.revisions.last_known();
        drop(strong);
        let wait = revalidate.as_secs_f64();
        let target = match &after {
            Some(after) => format!("{url}?after={}&wait={wait}", encode(&after.revision)),
            None => url.clone(),
        };
        let sent = Instant::now();
        if let Some(strong) = inner.upgrade() {
            strong.revisions.polling(after.as_ref().map(|_| sent));
        }
        let outcome = async {
            let response = client
                .get(&target)
                .headers(headers)
                .header(ACCEPT, "application/json")
                .timeout(revalidate + GRACE)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if !response.status().is_success() {
                return Err(format!("HTTP {}", response.status()));
            }
            let bytes = response.bytes().await.map_err(|e| e.to_string())?;
            serde_json::from_slice::<Answer>(&bytes).map_err(|e| e.to_string())
        }
        .await;
        let Some(strong) = inner.upgrade() else {
            return;
        };
        match outcome {
            Ok(answer) => {
                failures = 0;
                strong
                    .revisions
                    .watched_switch(&PolicyRevision::new(answer.policy_id, answer.revision));
                strong.revisions.polling(None);
            }
            Err(error) => {
                strong.revisions.polling(None);
                if failures == 0 {
                    tracing::warn!(
                        target: "warden::remote",
                        %error,
                        revalidate_ms = revalidate.as_millis() as u64,
                        "the revision watch is lost: revisions are revalidated by answers"
                    );
                }
                failures = failures.saturating_add(1);
                drop(strong);
                // Back off up to the revalidation interval; never hammer a PDP that is down.
                let pause =
                    Duration::from_millis(50u64.saturating_mul(u64::from(failures.min(20))));
                tokio::time::sleep(pause.min(revalidate)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_revisions_for_the_query() {
        assert_eq!(encode("1.0.0+sha256.ab"), "1.0.0%2Bsha256.ab");
        assert_eq!(encode("a b&c"), "a%20b%26c");
    }

    #[test]
    fn an_unconfirmed_revision_is_not_reported_past_the_interval() {
        let r = Revisions::new(Duration::from_millis(50), true);
        assert_eq!(r.current(), None);
        assert_eq!(r.answered(&PolicyRevision::new("p", "1")), Observed::New);
        assert!(r.current().is_some());
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(r.current(), None, "past the interval without confirmation");
        assert_eq!(r.last_known().unwrap().revision, "1");
        r.polling(Some(Instant::now()));
        assert!(r.current().is_some(), "an open watch confirms it");
        assert_eq!(r.answered(&PolicyRevision::new("p", "2")), Observed::New);
        assert_eq!(r.answered(&PolicyRevision::new("p", "1")), Observed::Older);
        assert_eq!(r.current().unwrap().revision, "2");
    }
}
