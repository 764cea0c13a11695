//! Redaction in one walk when every path of a plan is simple (names, indices, wildcards and
//! their descendant forms): the paths advance together down the document, a subtree no path
//! can reach is skipped, and each selected node is masked as the walk leaves it.
//!
//! The result is the one of selecting every node first and masking them afterwards (the
//! general path in `super`): a node's selection depends only on the names and indices on the
//! way to it, which the walk reads before anything under them changes; children are masked
//! before their parent, and removed only once all of them are visited, so array indices are the
//! original ones; the strategies of several paths that select one node are folded in plan order.

use serde_json::Value;
use warden_decision::{MaskStrategy, Masked, Masker};

use super::query::Step;

/// One path's progress at a node: the path, and how many of its steps lie behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Cursor {
    path: usize,
    step: usize,
}

/// The simple paths of a plan with their strategies, in plan order.
pub(super) struct Walk<'p> {
    pub(super) paths: Vec<(&'p [Step], MaskStrategy)>,
}

impl Walk<'_> {
    /// Applies the paths to `document` in place.
    pub(super) fn apply(&self, document: &mut Value, masker: &Masker) -> Result<(), String> {
        let mut cursors: Vec<Cursor> = (0..self.paths.len())
            .map(|path| Cursor { path, step: 0 })
            .collect();
        let count = cursors.len();
        if self.node(document, &mut cursors, 0, count, masker)? {
            *document = Value::Null;
        }
        Ok(())
    }

    /// Visits `value`, whose cursors are `stack[start..end]`; returns whether it is to be
    /// removed. The cursors of a child are pushed above `end` while the child is visited.
    fn node(
        &self,
        value: &mut Value,
        stack: &mut Vec<Cursor>,
        start: usize,
        end: usize,
        masker: &Masker,
    ) -> Result<bool, String> {
        match value {
            Value::Array(items) => {
                let mut doomed = Vec::new();
                for (i, item) in items.iter_mut().enumerate() {
                    let child = stack.len();
                    self.advance(stack, start, end, Edge::Index(i));
                    let child_end = stack.len();
                    let remove =
                        child_end > child && self.node(item, stack, child, child_end, masker)?;
                    stack.truncate(child);
                    if remove {
                        doomed.push(i);
                    }
                }
                if !doomed.is_empty() {
                    let mut index = 0;
                    let mut doomed = doomed.into_iter().peekable();
                    items.retain(|_| {
                        let remove = doomed.next_if_eq(&index).is_some();
                        index += 1;
                        !remove
                    });
                }
            }
            Value::Object(members) => {
                let mut doomed = Vec::new();
                for (key, member) in members.iter_mut() {
                    let child = stack.len();
                    self.advance(stack, start, end, Edge::Name(key));
                    let child_end = stack.len();
                    let remove =
                        child_end > child && self.node(member, stack, child, child_end, masker)?;
                    stack.truncate(child);
                    if remove {
                        doomed.push(key.clone());
                    }
                }
                for key in doomed {
                    members.remove(&key);
                }
            }
            _ => {}
        }
        let Some(strategy) = self.selected(stack, start, end) else {
            return Ok(false);
        };
        match masker.mask(strategy, value).map_err(|e| e.to_string())? {
            Masked::Remove => Ok(true),
            Masked::Value(masked) => {
                *value = masked;
                Ok(false)
            }
        }
    }

    /// Pushes the cursors the child reached by `edge` gets from `stack[start..end]`, without
    /// duplicates.
    fn advance(&self, stack: &mut Vec<Cursor>, start: usize, end: usize, edge: Edge<'_>) {
        let first = stack.len();
        for i in start..end {
            let Some(&cursor) = stack.get(i) else {
                break;
            };
            let Some(step) = self.step(cursor) else {
                continue;
            };
            let next = Cursor {
                path: cursor.path,
                step: cursor.step + 1,
            };
            match step {
                Step::Name(name) => {
                    if edge.is_name(name) {
                        stack.push(next);
                    }
                }
                Step::Index(index) => {
                    if matches!(edge, Edge::Index(i) if i == *index) {
                        stack.push(next);
                    }
                }
                Step::Wildcard => stack.push(next),
                Step::DescendantName(name) => {
                    stack.push(cursor);
                    if edge.is_name(name) {
                        stack.push(next);
                    }
                }
                Step::DescendantWildcard => {
                    stack.push(cursor);
                    stack.push(next);
                }
            }
        }
        if let Some(pushed) = stack.get_mut(first..)
            && pushed.len() > 1
        {
            pushed.sort_unstable();
            let mut kept = 1;
            for i in 1..pushed.len() {
                if pushed.get(i) != pushed.get(kept - 1) {
                    pushed.swap(kept, i);
                    kept += 1;
                }
            }
            stack.truncate(first + kept);
        }
    }

    /// The step a cursor takes next, `None` at the end of its path.
    fn step(&self, cursor: Cursor) -> Option<&Step> {
        self.paths
            .get(cursor.path)
            .and_then(|(steps, _)| steps.get(cursor.step))
    }

    /// The strategy for a node whose cursors are `stack[start..end]`: the paths that end here,
    /// folded in plan order; `None` when none does. Cursors are sorted by path.
    fn selected(&self, stack: &[Cursor], start: usize, end: usize) -> Option<MaskStrategy> {
        let cursors = stack.get(start..end)?;
        let mut strategy: Option<MaskStrategy> = None;
        let mut last = None;
        for cursor in cursors {
            let Some((steps, with)) = self.paths.get(cursor.path) else {
                continue;
            };
            if cursor.step != steps.len() || last == Some(cursor.path) {
                continue;
            }
            last = Some(cursor.path);
            strategy = Some(strategy.map_or(*with, |s| s.stricter(*with)));
        }
        strategy
    }
}

/// How a child hangs from its parent.
#[derive(Clone, Copy)]
enum Edge<'a> {
    Name(&'a str),
    Index(usize),
}

impl Edge<'_> {
    fn is_name(self, name: &str) -> bool {
        matches!(self, Edge::Name(key) if key == name)
    }
}
