//! Compiled JSONPath queries: the common simple forms are walked directly, every other form by
//! `serde_json_path`.

use serde_json::Value;
use serde_json_path::JsonPath;

/// A compiled path.
#[derive(Debug)]
pub(super) enum Query {
    Simple(Vec<Step>),
    Full(JsonPath),
}

impl Query {
    pub(super) fn parse(path: &str) -> Result<Self, String> {
        // Every path is checked by the full parser, so the simple one never accepts what RFC
        // 9535 does not.
        let full = JsonPath::parse(path).map_err(|e| format!("invalid JSONPath `{path}`: {e}"))?;
        Ok(match simple(path) {
            Some(steps) => Self::Simple(steps),
            None => Self::Full(full),
        })
    }

    /// The steps of a simple path, `None` for any other.
    pub(super) fn steps(&self) -> Option<&[Step]> {
        match self {
            Self::Simple(steps) => Some(steps),
            Self::Full(_) => None,
        }
    }

    /// Calls `found` with every node the path selects.
    pub(super) fn select<'v>(&self, document: &'v Value, found: &mut impl FnMut(&'v Value)) {
        match self {
            Self::Full(path) => path.query(document).all().into_iter().for_each(found),
            Self::Simple(steps) => select_simple(document, steps, found),
        }
    }
}

/// One segment of a simple path.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Step {
    /// `.name`, `['name']`
    Name(String),
    /// `[3]`
    Index(usize),
    /// `.*`, `[*]`
    Wildcard,
    /// `..name`, `..['name']`
    DescendantName(String),
    /// `..*`, `..[*]`
    DescendantWildcard,
}

/// Parses the simple forms: `$` followed by `.name`, `['name']` (no escapes), `[n]`, `.*`,
/// `[*]`, and their `..` descendant forms. Anything else is `None`.
pub(super) fn simple(path: &str) -> Option<Vec<Step>> {
    let mut rest = path.strip_prefix('$')?;
    let mut steps = Vec::new();
    while !rest.is_empty() {
        let (descendant, dotted) = if let Some(r) = rest.strip_prefix("..") {
            rest = r;
            (true, true)
        } else if let Some(r) = rest.strip_prefix('.') {
            rest = r;
            (false, true)
        } else {
            (false, false)
        };
        let (selector, tail) = if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = r.get(..end)?;
            let tail = r.get(end + 1..)?;
            if dotted && !descendant {
                // `.[` is not JSONPath.
                return None;
            }
            let selector = if inner == "*" {
                None
            } else if let Some(name) = inner.strip_prefix('\'').and_then(|n| n.strip_suffix('\'')) {
                if name.contains(['\'', '\\']) || name.chars().any(char::is_control) {
                    return None;
                }
                Some(Step::Name(name.to_owned()))
            } else if !inner.is_empty()
                && inner.len() <= 15
                && inner.bytes().all(|b| b.is_ascii_digit())
                && (inner == "0" || !inner.starts_with('0'))
            {
                Some(Step::Index(inner.parse().ok()?))
            } else {
                return None;
            };
            (selector, tail)
        } else if dotted {
            if let Some(r) = rest.strip_prefix('*') {
                (None, r)
            } else {
                let len = rest
                    .char_indices()
                    .find(|&(i, c)| {
                        !(c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()))
                    })
                    .map_or(rest.len(), |(i, _)| i);
                if len == 0 {
                    return None;
                }
                (
                    Some(Step::Name(rest.get(..len)?.to_owned())),
                    rest.get(len..)?,
                )
            }
        } else {
            return None;
        };
        steps.push(match (descendant, selector) {
            (false, None) => Step::Wildcard,
            (false, Some(step)) => step,
            (true, None) => Step::DescendantWildcard,
            (true, Some(Step::Name(name))) => Step::DescendantName(name),
            (true, Some(_)) => return None,
        });
        rest = tail;
    }
    Some(steps)
}

fn select_simple<'v>(node: &'v Value, steps: &[Step], found: &mut impl FnMut(&'v Value)) {
    let Some((step, rest)) = steps.split_first() else {
        found(node);
        return;
    };
    match step {
        Step::Name(name) => {
            if let Some(child) = node.as_object().and_then(|m| m.get(name)) {
                select_simple(child, rest, found);
            }
        }
        Step::Index(i) => {
            if let Some(child) = node.as_array().and_then(|a| a.get(*i)) {
                select_simple(child, rest, found);
            }
        }
        Step::Wildcard => children(node, &mut |child| select_simple(child, rest, found)),
        Step::DescendantName(name) => descendants_and_self(node, &mut |n| {
            if let Some(child) = n.as_object().and_then(|m| m.get(name)) {
                select_simple(child, rest, found);
            }
        }),
        Step::DescendantWildcard => descendants_and_self(node, &mut |n| {
            children(n, &mut |child| select_simple(child, rest, found));
        }),
    }
}

fn children<'v>(node: &'v Value, f: &mut impl FnMut(&'v Value)) {
    match node {
        Value::Object(members) => members.values().for_each(f),
        Value::Array(items) => items.iter().for_each(f),
        _ => {}
    }
}

fn descendants_and_self<'v>(node: &'v Value, f: &mut impl FnMut(&'v Value)) {
    f(node);
    match node {
        Value::Object(members) => members.values().for_each(|c| descendants_and_self(c, f)),
        Value::Array(items) => items.iter().for_each(|c| descendants_and_self(c, f)),
        _ => {}
    }
}
