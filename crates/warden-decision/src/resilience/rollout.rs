//! Rolling out a new policy: shadow evaluation and canaries.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use crate::decision::{Decision, PolicyRevision};
use crate::pdp::{Pdp, PdpError, PdpFuture};
use crate::request::AccessRequest;

/// A stable number in `0..10_000` for a string (the first bytes of its SHA-256), the same on
/// every machine and in every release.
fn bucket(s: &str) -> u32 {
    let digest = Sha256::digest(s.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
    (u64::from_be_bytes(first) % 10_000) as u32
}

/// Counts of a [`Shadow`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShadowStats {
    /// Requests the candidate was asked about.
    pub evaluated: u64,
    /// ... of which it decided differently (permit/deny, or other obligations).
    pub disagreements: u64,
    /// ... of which it could not decide.
    pub errors: u64,
}

#[derive(Debug, Default)]
struct Counters {
    evaluated: AtomicU64,
    disagreements: AtomicU64,
    errors: AtomicU64,
}

/// Enforces the decisions of `active` and, for a sample of requests, asks `candidate` too, off
/// the request path, recording every disagreement (target `warden::shadow`). The candidate never
/// changes what is enforced, and never slows a request down.
///
/// Needs a Tokio runtime (the candidate runs in a spawned task).
pub struct Shadow<A, B> {
    active: A,
    candidate: Arc<B>,
    /// Out of 10 000.
    sample: u32,
    counters: Arc<Counters>,
}

impl<A, B> fmt::Debug for Shadow<A, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shadow")
            .field("sample", &(f64::from(self.sample) / 10_000.0))
            .field("counters", &self.counters)
            .finish()
    }
}

impl<A, B> Shadow<A, B> {
    /// Shadows `active` with `candidate` on `share` (0–1) of the requests, chosen by request.
    pub fn new(active: A, candidate: B, share: f64) -> Self {
        Self {
            active,
            candidate: Arc::new(candidate),
            sample: (share.clamp(0.0, 1.0) * 10_000.0).round() as u32,
            counters: Arc::default(),
        }
    }

    /// What the shadow saw so far.
    pub fn stats(&self) -> ShadowStats {
        ShadowStats {
            evaluated: self.counters.evaluated.load(Ordering::Relaxed),
            disagreements: self.counters.disagreements.load(Ordering::Relaxed),
            errors: self.counters.errors.load(Ordering::Relaxed),
        }
    }
}

impl<A: Pdp, B: Pdp + 'static> Shadow<A, B> {
    async fn decide_and_shadow(&self, request: &AccessRequest) -> Result<Decision, PdpError> {
        let enforced = self.active.decide(request).await;
        // Sampled by decision id: UUIDv7 ids carry random bits, so every request has the same
        // chance.
        let sampled = enforced
            .as_ref()
            .is_ok_and(|d| self.sample > 0 && bucket(&d.id.to_string()) < self.sample);
        if let (true, Ok(decision)) = (sampled, &enforced) {
            let candidate = self.candidate.clone();
            let counters = self.counters.clone();
            let request = request.clone();
            let enforced = decision.clone();
            tokio::spawn(async move {
                counters.evaluated.fetch_add(1, Ordering::Relaxed);
                match candidate.decide(&request).await {
                    Ok(shadow) => {
                        let mut a: Vec<String> = enforced
                            .obligations
                            .iter()
                            .map(|o| o.to_json().to_string())
                            .collect();
                        let mut b: Vec<String> = shadow
                            .obligations
                            .iter()
                            .map(|o| o.to_json().to_string())
                            .collect();
                        a.sort();
                        b.sort();
                        if enforced.allowed != shadow.allowed || a != b {
                            counters.disagreements.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(
                                target: "warden::shadow",
                                decision_id = %enforced.id,
                                subject = %request.subject.id,
                                action = %request.action.name,
                                resource = %request.resource.id,
                                enforced_allowed = enforced.allowed,
                                candidate_allowed = shadow.allowed,
                                enforced_revision = %enforced.policy.revision,
                                candidate_revision = %shadow.policy.revision,
                                obligations_differ = a != b,
                                "the candidate policy decides differently"
                            );
                        }
                    }
                    Err(error) => {
                        counters.errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(target: "warden::shadow", %error, "the candidate policy could not decide");
                    }
                }
            });
        }
        enforced
    }
}

impl<A: Pdp, B: Pdp + 'static> Pdp for Shadow<A, B> {
    fn decide<'a>(&'a self, request: &'a AccessRequest) -> PdpFuture<'a> {
        Box::pin(self.decide_and_shadow(request))
    }

    fn revision(&self) -> Option<PolicyRevision> {
        self.active.revision()
    }
}

/// Decides a sticky share of the subjects with `candidate`, the rest with `active`: a subject's
/// side depends only on its type and id, so it does not flip between requests. The decision's
/// `served_by` says which side decided (`"active"` or `"canary"`).
pub struct Canary<A, B> {
    active: A,
    candidate: B,
    /// Out of 10 000.
    share: u32,
}

impl<A, B> fmt::Debug for Canary<A, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Canary")
            .field("share", &(f64::from(self.share) / 10_000.0))
            .finish()
    }
}

impl<A, B> Canary<A, B> {
    /// Sends `share` (0–1) of the subjects to `candidate`.
    pub fn new(active: A, candidate: B, share: f64) -> Self {
        Self {
            active,
            candidate,
            share: (share.clamp(0.0, 1.0) * 10_000.0).round() as u32,
        }
    }

    /// Whether `request`'s subject is decided by the candidate.
    pub fn is_canary(&self, request: &AccessRequest) -> bool {
        bucket(&format!(
            "{}\u{0}{}",
            request.subject.kind, request.subject.id
        )) < self.share
    }
}

impl<A: Pdp, B: Pdp> Pdp for Canary<A, B> {
    fn decide<'a>(&'a self, request: &'a AccessRequest) -> PdpFuture<'a> {
        Box::pin(async move {
            let (side, result) = if self.is_canary(request) {
                ("canary", self.candidate.decide(request).await)
            } else {
                ("active", self.active.decide(request).await)
            };
            result.map(|mut d| {
                d.served_by = Some(side.to_owned());
                d
            })
        })
    }

    fn revision(&self) -> Option<PolicyRevision> {
        // Both revisions matter to a cache in front: either changing must empty it.
        let a = self.active.revision()?;
        let b = self.candidate.revision()?;
        Some(PolicyRevision::new(
            format!("{}+{}", a.id, b.id),
            format!("{}+{}", a.revision, b.revision),
        ))
    }
}
