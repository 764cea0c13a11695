//! Column masks written in SQL, per dialect.
//!
//! | strategy | PostgreSQL | MySQL / MariaDB | SQLite | generic |
//! |---|---|---|---|---|
//! | `null`, `remove` | `CAST(NULL AS TEXT)` | `CAST(NULL AS CHAR)` | `NULL` | `NULL` |
//! | `redact` | the replacement text (`NULL` stays `NULL`) | same | same | same |
//! | `last4` | `repeat('*', n - k) \|\| right(v, k)` | `CONCAT(REPEAT(…), RIGHT(…))` | `replace(hex(zeroblob(n - k)), '00', '*') \|\| substr(…)` | denied |
//! | `first4` | `left(v, k) \|\| repeat('*', n - k)` | `CONCAT(LEFT(…), REPEAT(…))` | `substr(v, 1, k) \|\| …` | denied |
//! | `hash` | HMAC-SHA-256 from `sha256()` and the key pads, hex | same from `SHA2()` / `UNHEX()` | denied (no SHA-256) | denied |
//! | `year` | the first four characters of a `YYYY-…` text, else the replacement | same | same | denied |
//!
//! `v` is the value as text, `n` its length in characters, `k = min(4, n / 2)`: a partial mask
//! never shows more than half of a value. Unlike the JSON masker, which keeps separators
//! (`***-**-6789`), the SQL masks replace every hidden character (`*******6789`); the kept
//! characters are the same. `hash` gives exactly what [`warden_decision::Masker`] gives with the same
//! key, so hashed values join across the HTTP and SQL PEPs. The key's pads are bind parameters
//! of the rewritten statement, never part of its text (see [`crate::keyed`]); still, use a key
//! dedicated to pseudonymisation.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use sqlparser::ast::{Expr, VisitMut, VisitorMut};
use warden_decision::{Literal, MaskStrategy};

use crate::dialect::{DialectRules, MASK_INPUT};
use crate::error::DenyReason;
use crate::filter::{literal_expr, parse_expr};
use crate::keyed::KeyPads;

const REDACT_INPUT: &str = "warden_redact_text";

/// Mask templates of one dialect, parsed once.
#[derive(Debug, Clone)]
pub(crate) struct Masks {
    templates: HashMap<MaskStrategy, Expr>,
    /// The same templates printed, for the substituted relations (spliced as text).
    texts: HashMap<MaskStrategy, String>,
    dialect: String,
    /// The hash key's pads, bound as parameters wherever a template names them.
    pads: Option<Arc<KeyPads>>,
}

impl Masks {
    pub(crate) fn new(
        rules: &dyn DialectRules,
        replacement: &str,
        hash_key: Option<&[u8]>,
        nonce: &str,
    ) -> Result<Self, String> {
        let pads = hash_key.map(|key| Arc::new(KeyPads::new(key, nonce)));
        if replacement.contains(MASK_INPUT) || replacement.contains(REDACT_INPUT) {
            return Err("the redact replacement may not contain Warden's placeholder names".into());
        }
        let redact = literal_expr(&Literal::String(replacement.to_owned()), rules)
            .map_err(|e| e.to_string())?;
        let mut templates = HashMap::new();
        let mut texts = HashMap::new();
        for strategy in MaskStrategy::ALL {
            let sql = rules.mask_sql(
                strategy,
                REDACT_INPUT,
                pads.as_ref()
                    .map(|p| (p.inner_marker.as_str(), p.outer_marker.as_str())),
            );
            let Some(sql) = sql else { continue };
            let mut expr = parse_expr(rules, &sql)
                .map_err(|e| format!("mask `{strategy}` does not parse: {e}"))?;
            let _ = expr.visit(&mut Replace {
                name: REDACT_INPUT,
                with: &redact,
            });
            texts.insert(strategy, expr.to_string());
            templates.insert(strategy, expr);
        }
        Ok(Self {
            templates,
            texts,
            dialect: rules.dialect().to_string(),
            pads,
        })
    }

    /// The hash key's pads, when the policy has a key.
    pub(crate) fn pads(&self) -> Option<&Arc<KeyPads>> {
        self.pads.as_ref()
    }

    fn unsupported(&self, strategy: MaskStrategy) -> DenyReason {
        DenyReason::MaskUnsupported {
            strategy: strategy.to_string(),
            dialect: if strategy == MaskStrategy::Hash && self.pads.is_none() {
                format!("{} without a hash key", self.dialect)
            } else {
                self.dialect.clone()
            },
        }
    }

    /// The mask of the column reference `input` (SQL text this crate wrote: a quoted,
    /// qualified identifier) as SQL text.
    pub(crate) fn apply_text(
        &self,
        strategy: MaskStrategy,
        input: &str,
    ) -> Result<String, DenyReason> {
        self.texts
            .get(&strategy)
            .map(|t| t.replace(MASK_INPUT, input))
            .ok_or_else(|| self.unsupported(strategy))
    }

    /// The mask of `input` with `strategy`.
    pub(crate) fn apply(&self, strategy: MaskStrategy, input: &Expr) -> Result<Expr, DenyReason> {
        let mut expr =
            self.templates
                .get(&strategy)
                .cloned()
                .ok_or_else(|| DenyReason::MaskUnsupported {
                    strategy: strategy.to_string(),
                    dialect: if strategy == MaskStrategy::Hash {
                        format!("{} without a hash key", self.dialect)
                    } else {
                        self.dialect.clone()
                    },
                })?;
        let _ = expr.visit(&mut Replace {
            name: MASK_INPUT,
            with: input,
        });
        Ok(expr)
    }
}

struct Replace<'a> {
    name: &'a str,
    with: &'a Expr,
}

impl VisitorMut for Replace<'_> {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::Identifier(id) = expr
            && id.quote_style.is_none()
            && id.value == self.name
        {
            *expr = self.with.clone();
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Dialect;
    use sqlparser::ast::Ident;

    #[test]
    fn every_dialect_writes_its_masks_or_refuses_them() {
        let column = Expr::Identifier(Ident::new("ssn"));
        for d in [
            Dialect::Postgres,
            Dialect::MySql,
            Dialect::Sqlite,
            Dialect::Generic,
        ] {
            let masks = Masks::new(
                d.rules(),
                "[REDACTED]",
                Some(b"0123456789abcdef"),
                "warden_n",
            )
            .unwrap();
            for s in MaskStrategy::ALL {
                match masks.apply(s, &column) {
                    Ok(e) => {
                        let sql = e.to_string();
                        assert!(
                            !sql.contains(MASK_INPUT) && !sql.contains(REDACT_INPUT),
                            "{sql}"
                        );
                        if !matches!(s, MaskStrategy::Null | MaskStrategy::Remove) {
                            assert!(sql.contains("ssn"), "{d} {s}: {sql}");
                        }
                    }
                    Err(e) => assert!(
                        matches!(
                            (d, s),
                            (Dialect::Sqlite, MaskStrategy::Hash) | (Dialect::Generic, _)
                        ),
                        "{d} {s}: {e}"
                    ),
                }
            }
        }
        let unkeyed = Masks::new(Dialect::Postgres.rules(), "x", None, "warden_n").unwrap();
        assert_eq!(
            unkeyed
                .apply(MaskStrategy::Hash, &column)
                .unwrap_err()
                .code(),
            "mask_unsupported"
        );
    }
}
