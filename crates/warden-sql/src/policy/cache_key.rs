//! The rewrite cache's key, written before any plan is built.
//!
//! A rewrite is a function of the statement's text (its analysis), the catalog (a new one
//! empties the cache) and, for each relation of the statement, the row filters resolved for
//! the subject and the masks that name it. The key holds exactly those: the text, then per
//! relation (each once, in the analysis' order) every filter with its subject attributes
//! replaced by the values they resolve to, and every mask, in the order of the obligations.
//!
//! The encoding is prefix-free: strings carry their length, every other item begins with a
//! tag of its own and lists end with a tag no item begins with, so two keys are equal only
//! when everything written into them is. The tests decode keys back to the resolved filters.
//! Other obligations are not in the key: the checks every statement gets whether its rewrite
//! is cached or not refuse those the SQL PEP cannot enforce, and audit those that ask.

use std::fmt::Write as _;

use serde_json::Value as Json;
use warden_decision::{Literal, Obligation, Operand, Predicate, Subject};

use super::rewrite::names;
use super::{Analysis, TableAccess};
use crate::error::DenyReason;
use crate::filter::{Attr, subject_attr};

/// The key of `analysis` rewritten with `obligations` for `subject`; refused when a filter
/// cannot be resolved for the subject (the plan then refuses with the reason).
pub(super) fn cache_key(
    analysis: &Analysis,
    obligations: &[Obligation],
    subject: &Subject,
) -> Result<String, DenyReason> {
    let mut key = String::with_capacity(analysis.text.len() + 96);
    text(&mut key, &analysis.text);
    for (i, access) in analysis.accesses.iter().enumerate() {
        if analysis.accesses.iter().take(i).any(|a| a.id == access.id) {
            continue;
        }
        relation(&mut key, access, obligations, subject)?;
    }
    Ok(key)
}

fn relation(
    key: &mut String,
    access: &TableAccess,
    obligations: &[Obligation],
    subject: &Subject,
) -> Result<(), DenyReason> {
    key.push('R');
    text(key, &access.id);
    for o in obligations {
        match o {
            Obligation::FilterRows(f) if names(&f.table, access) => {
                key.push('F');
                predicate(key, &f.predicate, subject)?;
            }
            Obligation::MaskColumns(m) if names(&m.table, access) => {
                key.push('M');
                for (column, strategy) in &m.columns {
                    text(key, column);
                    key.push_str(strategy.name());
                    key.push(';');
                }
                key.push('.');
            }
            _ => {}
        }
    }
    key.push('.');
    Ok(())
}

/// A string, length first.
fn text(key: &mut String, s: &str) {
    let _ = write!(key, "{}:", s.len());
    key.push_str(s);
}

/// What `filter::resolve` makes of `p` for `subject`, written; refused where it refuses.
fn predicate(key: &mut String, p: &Predicate, subject: &Subject) -> Result<(), DenyReason> {
    let mut pair = |tag: char, a: &Operand, b: &Operand| -> Result<(), DenyReason> {
        key.push(tag);
        operand(key, a, subject)?;
        operand(key, b, subject)
    };
    match p {
        Predicate::Eq(a, b) => pair('=', a, b),
        Predicate::Ne(a, b) => pair('!', a, b),
        Predicate::Lt(a, b) => pair('<', a, b),
        Predicate::Le(a, b) => pair('l', a, b),
        Predicate::Gt(a, b) => pair('>', a, b),
        Predicate::Ge(a, b) => pair('g', a, b),
        Predicate::Like(a, b) => pair('~', a, b),
        Predicate::And(parts) | Predicate::Or(parts) => {
            key.push(if matches!(p, Predicate::And(_)) {
                '&'
            } else {
                '|'
            });
            for part in parts {
                predicate(key, part, subject)?;
            }
            key.push(')');
            Ok(())
        }
        Predicate::Not(inner) => {
            key.push('N');
            predicate(key, inner, subject)
        }
        Predicate::Const(b) => {
            key.push(if *b { 'T' } else { 'F' });
            Ok(())
        }
        Predicate::IsNull(a) => {
            key.push('0');
            operand(key, a, subject)
        }
        Predicate::In(a, list) => {
            key.push('I');
            operand(key, a, subject)?;
            for item in list {
                match item {
                    // An array attribute in a list stands for its elements.
                    Operand::Subject(path) => match subject_attr(subject, path)? {
                        Attr::Json(Json::Array(values)) => {
                            for v in values {
                                json_literal(key, v, path)?;
                            }
                        }
                        attr => attr_literal(key, attr, path)?,
                    },
                    other => operand(key, other, subject)?,
                }
            }
            key.push(')');
            Ok(())
        }
    }
}

fn operand(key: &mut String, o: &Operand, subject: &Subject) -> Result<(), DenyReason> {
    match o {
        Operand::Column(c) => {
            key.push('c');
            text(key, c);
        }
        Operand::Value(v) => literal(key, v),
        Operand::Subject(path) => attr_literal(key, subject_attr(subject, path)?, path)?,
    }
    Ok(())
}

fn literal(key: &mut String, v: &Literal) {
    match v {
        Literal::Null => key.push('n'),
        Literal::Bool(b) => key.push(if *b { 't' } else { 'f' }),
        Literal::Int(i) => {
            let _ = write!(key, "i{i};");
        }
        Literal::Float(f) => {
            let _ = write!(key, "d{:x};", f.to_bits());
        }
        Literal::String(s) => {
            key.push('s');
            text(key, s);
        }
    }
}

/// The literal a subject attribute's value resolves to: `filter::literal`'s, written.
fn json_literal(key: &mut String, value: &Json, path: &str) -> Result<(), DenyReason> {
    literal(key, &crate::filter::literal(value, path)?);
    Ok(())
}

/// A subject attribute as the literal it resolves to.
fn attr_literal(key: &mut String, attr: Attr<'_>, path: &str) -> Result<(), DenyReason> {
    match attr {
        Attr::Str(s) => {
            key.push('s');
            text(key, s);
            Ok(())
        }
        Attr::Json(v) => json_literal(key, v, path),
    }
}

#[cfg(test)]
#[path = "cache_key_tests.rs"]
mod tests;
