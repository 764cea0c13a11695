//! Policy revisions in the order they came into force, and consistency tokens.
//!
//! Revisions are content hashes (or versions with one), so they have no order of their own. A
//! [`RevisionHistory`] orders them by when they came into force, as its owner saw it: a server by
//! its own switches, a client by the switches its PDPs reported. A caller's *consistency token*
//! ("at least revision R", the request's `context.min_revision` or the `Warden-Min-Revision`
//! header) is met by a revision equal to R or one that came into force after R.
//!
//! ```
//! use warden_decision::{PolicyRevision, RevisionHistory};
//!
//! let mut history = RevisionHistory::default();
//! history.advance(&PolicyRevision::new("clinic", "r1"));
//! history.advance(&PolicyRevision::new("clinic", "r2"));
//! assert!(history.meets("r2", "r1"), "r2 came after r1");
//! assert!(!history.meets("r1", "r2"), "r1 is older than r2");
//! assert!(!history.meets("r2", "r3"), "r3 is unknown: not met");
//! ```

use std::collections::VecDeque;

use crate::decision::PolicyRevision;
use crate::request::AccessRequest;

/// The context member that carries a consistency token.
pub const MIN_REVISION_CONTEXT: &str = "min_revision";

/// The HTTP header that carries a consistency token to a PDP server.
pub const MIN_REVISION_HEADER: &str = "warden-min-revision";

/// The consistency token of a request: `context.min_revision`, when it is a non-empty string.
pub fn min_revision(request: &AccessRequest) -> Option<&str> {
    request
        .context
        .get(MIN_REVISION_CONTEXT)
        .and_then(serde_json::Value::as_str)
        .filter(|r| !r.is_empty())
}

/// How many revisions a history remembers by default.
const DEFAULT_CAPACITY: usize = 64;

/// What [`RevisionHistory::observe`] made of a revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// It is the revision in force.
    Current,
    /// It was unknown: it is the revision in force now.
    New,
    /// It was in force before the current one: whoever reported it is behind.
    Older,
}

/// Revisions in the order they came into force, the newest last (bounded; the oldest are
/// forgotten first).
#[derive(Debug, Clone)]
pub struct RevisionHistory {
    seen: VecDeque<PolicyRevision>,
    capacity: usize,
}

impl Default for RevisionHistory {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }
}

impl RevisionHistory {
    /// A history remembering up to `capacity` revisions (at least 2).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            seen: VecDeque::new(),
            capacity: capacity.max(2),
        }
    }

    /// The revision in force.
    pub fn current(&self) -> Option<&PolicyRevision> {
        self.seen.back()
    }

    /// An authoritative switch (a server's own reload, a watch event): `revision` is in force
    /// from now on, even if it was in force before (a rollback). Returns whether it changed.
    pub fn advance(&mut self, revision: &PolicyRevision) -> bool {
        if self.current().is_some_and(|c| same(c, revision)) {
            return false;
        }
        self.seen.retain(|r| !same(r, revision));
        self.seen.push_back(revision.clone());
        while self.seen.len() > self.capacity {
            self.seen.pop_front();
        }
        true
    }

    /// A revision reported by an answer, which may come from a PDP that is behind: an unknown
    /// revision comes into force, a known older one does not.
    pub fn observe(&mut self, revision: &PolicyRevision) -> Observed {
        if let Some(current) = self.seen.back_mut()
            && same(current, revision)
        {
            // Keep what the answer says besides the revision (its regulations).
            if current != revision {
                *current = revision.clone();
            }
            Observed::Current
        } else if self.seen.iter().any(|r| same(r, revision)) {
            Observed::Older
        } else {
            self.advance(revision);
            Observed::New
        }
    }

    fn position(&self, revision: &str) -> Option<usize> {
        self.seen.iter().rposition(|r| r.revision == revision)
    }

    /// Whether a decision made under revision `have` meets the token `min`: it is the same
    /// revision, or `min` came into force before `have` did. An unknown `min` is not met.
    pub fn meets(&self, have: &str, min: &str) -> bool {
        if have == min {
            return true;
        }
        match (self.position(have), self.position(min)) {
            (Some(have), Some(min)) => min < have,
            _ => false,
        }
    }
}

/// The same package at the same revision (what else a revision carries, such as its
/// regulations, does not make it another).
pub(crate) fn same(a: &PolicyRevision, b: &PolicyRevision) -> bool {
    a.id == b.id && a.revision == b.revision
}
