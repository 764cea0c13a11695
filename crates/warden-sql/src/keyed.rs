//! The `hash` mask's key, bound as parameters and never written into the statement.
//!
//! The HMAC-SHA-256 key pads must not appear in the SQL text: `current_query()`,
//! `pg_stat_activity`, `performance_schema`, the server's statement log and a slow-query log
//! all show the text. The mask templates name the two pads with marker identifiers made of
//! the policy's random nonce. After the rewrite, each marker becomes a bind parameter of the
//! dialect — PostgreSQL `$n` numbered after the caller's parameters, MySQL `?` in its place
//! among the caller's — and the parameters to bind are the caller's with the pads in their
//! places ([`Rewrite::params`](crate::Rewrite::params)). The pads still reach the server, as
//! bind values: a server that logs bind values (PostgreSQL's `log_parameter_max_length`,
//! MySQL's general log) shows them there, as it shows every other value.

use std::fmt;

use sqlparser::tokenizer::{Location, Token, Tokenizer};

use crate::SqlValue;
use crate::dialect::{Dialect, DialectRules};
use crate::error::DenyReason;

/// The pads of a hash key, and the marker identifiers the templates name them by.
pub(crate) struct KeyPads {
    inner: String,
    outer: String,
    pub(crate) inner_marker: String,
    pub(crate) outer_marker: String,
    nonce: String,
}

impl fmt::Debug for KeyPads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the pads.
        f.debug_struct("KeyPads").finish_non_exhaustive()
    }
}

impl KeyPads {
    /// The pads of `key` (RFC 2104, upper-case hex), named after `nonce`.
    pub(crate) fn new(key: &[u8], nonce: &str) -> Self {
        let (inner, outer) = hmac_pads(key);
        Self {
            inner,
            outer,
            inner_marker: format!("{nonce}_key_inner"),
            outer_marker: format!("{nonce}_key_outer"),
            nonce: nonce.to_ascii_lowercase(),
        }
    }
}

/// Where each parameter of a rewritten statement comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// The caller's parameter of this 0-based index.
    Caller(usize),
    /// The key's inner pad.
    Inner,
    /// The key's outer pad.
    Outer,
}

/// The parameters of a rewritten statement that binds the pads.
#[derive(Debug, Clone)]
pub(crate) struct Binding {
    slots: Vec<Slot>,
    /// How many parameters the caller must bind.
    callers: usize,
}

impl Binding {
    /// The parameters to bind: the caller's, exactly as many as the statement takes, with
    /// the pads in their places. A caller binding more would move the pads (and could put
    /// values of its own where the key goes), so that is refused.
    pub(crate) fn params(
        &self,
        pads: &KeyPads,
        caller: &[SqlValue],
    ) -> Result<Vec<SqlValue>, DenyReason> {
        if caller.len() != self.callers {
            return Err(DenyReason::Parameter(format!(
                "the statement takes {} parameters and {} were bound",
                self.callers,
                caller.len()
            )));
        }
        self.slots
            .iter()
            .map(|slot| match slot {
                Slot::Caller(i) => caller.get(*i).cloned().ok_or_else(|| {
                    DenyReason::Parameter(format!("parameter {} is not bound", i + 1))
                }),
                Slot::Inner => Ok(SqlValue::Text(pads.inner.clone())),
                Slot::Outer => Ok(SqlValue::Text(pads.outer.clone())),
            })
            .collect()
    }
}

/// Replaces the pad markers in `sql` (a rewrite) with bind parameters. `callers` is the number
/// of parameters the caller's statement takes (`$n` up to `callers` in PostgreSQL, that many
/// `?` in MySQL). `None` when `sql` names no pad.
pub(crate) fn bind_markers(
    rules: &dyn DialectRules,
    pads: &KeyPads,
    caller_text: &str,
    sql: &str,
    callers: usize,
) -> Result<Option<(String, Binding)>, DenyReason> {
    if !sql.contains(&pads.inner_marker) && !sql.contains(&pads.outer_marker) {
        return Ok(None);
    }
    if caller_text.to_ascii_lowercase().contains(&pads.nonce) {
        return Err(DenyReason::Unsupported(
            "a statement that spells Warden's internal placeholder".into(),
        ));
    }
    let tokens = Tokenizer::new(rules.parser(), sql)
        .with_unescape(false)
        .tokenize_with_location()
        .map_err(|e| DenyReason::Unsupported(format!("the rewrite does not lex again: {e}")))?;
    let lines = line_starts(sql);
    let dialect = rules.dialect();
    let mut slots = Vec::new();
    let mut replaced = String::with_capacity(sql.len());
    let mut copied = 0;
    let mut next_caller = 0;
    for t in &tokens {
        let slot = match &t.token {
            Token::Word(w) if w.quote_style.is_none() && w.value == pads.inner_marker => {
                Slot::Inner
            }
            Token::Word(w) if w.quote_style.is_none() && w.value == pads.outer_marker => {
                Slot::Outer
            }
            Token::Placeholder(p) if dialect == Dialect::MySql && p == "?" => {
                slots.push(Slot::Caller(next_caller));
                next_caller += 1;
                continue;
            }
            _ => continue,
        };
        let at = offset(sql, &lines, t.span.start);
        let marker = match slot {
            Slot::Inner => &pads.inner_marker,
            _ => &pads.outer_marker,
        };
        if sql.get(at..at + marker.len()) != Some(marker.as_str()) {
            return Err(DenyReason::Unsupported(
                "the rewrite's key parameters could not be placed".into(),
            ));
        }
        replaced.push_str(&sql[copied..at]);
        match dialect {
            Dialect::Postgres => {
                let n = callers + if slot == Slot::Inner { 1 } else { 2 };
                replaced.push('$');
                replaced.push_str(&n.to_string());
            }
            Dialect::MySql => {
                replaced.push('?');
                slots.push(slot);
            }
            _ => {
                return Err(DenyReason::MaskUnsupported {
                    strategy: "hash".into(),
                    dialect: dialect.to_string(),
                });
            }
        }
        copied = at + marker.len();
    }
    replaced.push_str(&sql[copied..]);
    match dialect {
        Dialect::Postgres => {
            slots = (0..callers).map(Slot::Caller).collect();
            slots.extend([Slot::Inner, Slot::Outer]);
        }
        _ if next_caller != callers => {
            return Err(DenyReason::Unsupported(format!(
                "the rewrite has {next_caller} of the statement's {callers} parameters"
            )));
        }
        _ => {}
    }
    if replaced.contains(&pads.inner_marker) || replaced.contains(&pads.outer_marker) {
        return Err(DenyReason::Unsupported(
            "the rewrite's key parameters could not be placed".into(),
        ));
    }
    Ok(Some((replaced, Binding { slots, callers })))
}

/// The byte offset of each line's start.
fn line_starts(sql: &str) -> Vec<usize> {
    let mut starts = vec![0];
    starts.extend(sql.match_indices('\n').map(|(i, _)| i + 1));
    starts
}

/// The byte offset of a 1-based (line, character column) location.
fn offset(sql: &str, lines: &[usize], at: Location) -> usize {
    let line = usize::try_from(at.line).unwrap_or(usize::MAX).max(1) - 1;
    let start = lines.get(line).copied().unwrap_or(sql.len());
    let column = usize::try_from(at.column).unwrap_or(usize::MAX).max(1) - 1;
    sql[start..]
        .char_indices()
        .nth(column)
        .map_or(sql.len(), |(i, _)| start + i)
}

/// The HMAC-SHA-256 inner and outer key pads (RFC 2104), upper-case hex.
fn hmac_pads(key: &[u8]) -> (String, String) {
    use sha2::Digest;
    let mut block = [0u8; 64];
    if key.len() > 64 {
        let digest = sha2::Sha256::digest(key);
        for (b, d) in block.iter_mut().zip(digest.iter()) {
            *b = *d;
        }
    } else {
        for (b, k) in block.iter_mut().zip(key.iter()) {
            *b = *k;
        }
    }
    let hex = |pad: u8| -> String { block.iter().map(|b| format!("{:02X}", b ^ pad)).collect() };
    (hex(0x36), hex(0x5c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pads() -> KeyPads {
        KeyPads::new(b"0123456789abcdef", "warden_n0nce")
    }

    #[test]
    fn pads_follow_rfc_2104() {
        let (inner, outer) = hmac_pads(b"Jefe");
        assert!(inner.starts_with("7C5350533636"));
        assert!(outer.starts_with("16393A395C5C"));
        assert_eq!(inner.len(), 128);
    }

    #[test]
    fn postgres_numbers_the_pads_after_the_callers_parameters() {
        let p = pads();
        let sql = format!(
            "SELECT f({}, {}, x) FROM t WHERE id = $2 AND s = '{}'",
            p.inner_marker, p.outer_marker, "$1"
        );
        let (out, binding) =
            bind_markers(Dialect::Postgres.rules(), &p, "SELECT x FROM t", &sql, 2)
                .unwrap()
                .unwrap();
        assert_eq!(out, "SELECT f($3, $4, x) FROM t WHERE id = $2 AND s = '$1'");
        let params = binding
            .params(&p, &[SqlValue::Int(1), SqlValue::Int(2)])
            .unwrap();
        assert_eq!(params.len(), 4);
        assert_eq!(params[2], SqlValue::Text(p.inner.clone()));
        assert_eq!(params[3], SqlValue::Text(p.outer.clone()));
    }

    #[test]
    fn mysql_puts_each_pad_in_its_place_among_the_callers_parameters() {
        let p = pads();
        let sql = format!(
            "SELECT ?, f({}, {}, 'a?b'), ? FROM t\nWHERE ü = 'é' AND {} = ?",
            p.inner_marker, p.outer_marker, p.inner_marker
        );
        let (out, binding) = bind_markers(Dialect::MySql.rules(), &p, "SELECT 1", &sql, 3)
            .unwrap()
            .unwrap();
        assert_eq!(
            out,
            "SELECT ?, f(?, ?, 'a?b'), ? FROM t\nWHERE ü = 'é' AND ? = ?"
        );
        let caller = [SqlValue::Int(10), SqlValue::Int(20), SqlValue::Int(30)];
        let params = binding.params(&p, &caller).unwrap();
        let inner = SqlValue::Text(p.inner.clone());
        let outer = SqlValue::Text(p.outer.clone());
        assert_eq!(
            params,
            vec![
                SqlValue::Int(10),
                inner.clone(),
                outer,
                SqlValue::Int(20),
                inner,
                SqlValue::Int(30)
            ]
        );
    }

    #[test]
    fn a_caller_binding_other_than_the_statements_parameters_is_refused() {
        let p = pads();
        let sql = format!("SELECT f({}, {}) FROM t", p.inner_marker, p.outer_marker);
        for d in [Dialect::Postgres, Dialect::MySql] {
            let (_, binding) = bind_markers(d.rules(), &p, "SELECT 1", &sql, 0)
                .unwrap()
                .unwrap();
            // Two values of the caller's own would otherwise sit where the pads go.
            let err = binding
                .params(
                    &p,
                    &[SqlValue::Text("00".into()), SqlValue::Text("00".into())],
                )
                .unwrap_err();
            assert_eq!(err.code(), "parameter", "{d}");
        }
    }

    #[test]
    fn a_statement_that_spells_the_markers_is_refused() {
        let p = pads();
        let sql = format!("SELECT f({}, {}) FROM t", p.inner_marker, p.outer_marker);
        let caller = format!("SELECT {} FROM t", p.inner_marker.to_ascii_uppercase());
        let err = bind_markers(Dialect::Postgres.rules(), &p, &caller, &sql, 0).unwrap_err();
        assert_eq!(err.code(), "unsupported");
    }

    #[test]
    fn statements_without_the_mask_are_left_alone() {
        let p = pads();
        assert!(
            bind_markers(Dialect::MySql.rules(), &p, "x", "SELECT ? FROM t", 1)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn the_pads_never_show_in_debug_output() {
        let p = pads();
        let shown = format!("{p:?}");
        assert!(
            !shown.contains(&p.inner) && !shown.contains(&p.outer),
            "{shown}"
        );
    }
}
