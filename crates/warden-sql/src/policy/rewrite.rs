//! Rewriting an analysed statement with its decisions: the checks every statement gets, the
//! plan of filters and masks per relation, the rewrite cache in front of the plan.

use std::collections::BTreeMap;
use std::sync::Arc;

use sqlparser::ast::Statement;
use warden_decision::{Decision, Obligation, Predicate, Subject, merge_obligations};

use super::cache_key::cache_key;
use super::{Analysis, Rewrite, SqlPolicy, TableAccess};
use crate::analyze::{Plan, TablePlan, Walker};
use crate::dialect::Dialect;
use crate::error::{DenyReason, SqlError};
use crate::filter::resolve;
use crate::keyed::bind_markers;
use crate::parse::on_deep_stack;

impl SqlPolicy {
    /// Rewrites an analysed statement with the decisions of its access requests (in order).
    /// Any deny refuses it. The result is cached by statement text and obligations.
    pub fn rewrite(
        &self,
        analysis: &Analysis,
        decisions: &[Decision],
        subject: &Subject,
    ) -> Result<(Arc<Rewrite>, Vec<Obligation>, bool), SqlError> {
        self.rewrite_impl(analysis, None, decisions, subject)
    }

    /// [`Self::rewrite`], walking `owned` (the analysis' statement, when the caller owns it)
    /// instead of a clone.
    pub(super) fn rewrite_impl(
        &self,
        analysis: &Analysis,
        owned: Option<Statement>,
        decisions: &[Decision],
        subject: &Subject,
    ) -> Result<(Arc<Rewrite>, Vec<Obligation>, bool), SqlError> {
        if decisions.len() != analysis.accesses.len() {
            return Err(SqlError::Pdp(warden_decision::PdpError::policy(format!(
                "{} decisions for {} access requests",
                decisions.len(),
                analysis.accesses.len()
            ))));
        }
        for (access, decision) in analysis.accesses.iter().zip(decisions) {
            if !decision.allowed {
                return Err(DenyReason::NotPermitted {
                    action: access.operation.as_str().into(),
                    table: access.id.clone(),
                    reasons: decision.reasons.iter().map(|r| r.message.clone()).collect(),
                }
                .into());
            }
        }
        let obligations = match decisions {
            [] => Vec::new(),
            [one] => merge_obligations(one.obligations.clone()),
            many => merge_obligations(many.iter().flat_map(|d| d.obligations.clone()).collect()),
        };
        self.check_obligations(analysis, &obligations, subject)?;
        // The key is written before the plan: a statement served from the cache resolves no
        // filter and builds no plan. A key that cannot be written (a subject attribute the
        // policy names is missing, say) falls through to the plan, which refuses with the
        // reason.
        let rewrites = self.inner.rewrites.as_ref();
        let key = match rewrites {
            Some(cache) => match cache_key(analysis, &obligations, subject) {
                Ok(key) => {
                    if let Some(hit) = cache.get(&key)
                        && Arc::ptr_eq(&hit.catalog, &analysis.catalog)
                    {
                        return Ok((hit, obligations, true));
                    }
                    Some(key)
                }
                Err(_) => None,
            },
            None => None,
        };
        let plan = self.plan(analysis, &obligations, subject)?;
        let rewrite = Arc::new(self.rewrite_with(analysis, owned, &plan)?);
        if let (Some(cache), Some(key)) = (rewrites, key) {
            cache.insert(key, rewrite.clone());
        }
        Ok((rewrite, obligations, false))
    }

    fn rewrite_with(
        &self,
        analysis: &Analysis,
        owned: Option<Statement>,
        plan: &Plan,
    ) -> Result<Rewrite, SqlError> {
        if analysis.deep {
            return on_deep_stack(|| self.rewrite_on_this_stack(analysis, owned, plan));
        }
        self.rewrite_on_this_stack(analysis, owned, plan)
    }

    fn rewrite_on_this_stack(
        &self,
        analysis: &Analysis,
        owned: Option<Statement>,
        plan: &Plan,
    ) -> Result<Rewrite, SqlError> {
        let catalog = &analysis.catalog;
        let config = self.config(catalog);
        let mut statement = owned.unwrap_or_else(|| analysis.statement.clone());
        let mut walker = Walker::new(&config, Some(plan), &analysis.placeholders);
        walker.statement(&mut statement)?;
        let mut sql = statement.to_string();
        for (i, text) in walker.substitutions.iter().enumerate() {
            let placeholder = crate::analyze::placeholder(&self.inner.nonce, i);
            // Exactly one occurrence, or the statement itself spelt the placeholder: refuse
            // rather than splice into the caller's text.
            let mut found = sql.match_indices(&placeholder).map(|(at, _)| at);
            match (found.next(), found.next()) {
                (Some(at), None) => sql.replace_range(at..at + placeholder.len(), text),
                _ => {
                    return Err(DenyReason::Unsupported(
                        "a statement that spells Warden's internal placeholder".into(),
                    )
                    .into());
                }
            }
        }
        let mut binding = None;
        if let Some(pads) = self.inner.masks.pads() {
            let callers = match self.inner.dialect {
                Dialect::Postgres => analysis.placeholders.values().max().map_or(0, |m| m + 1),
                _ => analysis.placeholders.len(),
            };
            if let Some((bound, b)) =
                bind_markers(self.inner.rules, pads, &analysis.text, &sql, callers)?
            {
                sql = bound;
                binding = Some((b, pads.clone()));
            }
        }
        Ok(Rewrite {
            catalog: analysis.catalog.clone(),
            sql: sql.into(),
            checks: walker.checks,
            dialect: self.inner.dialect,
            binding,
        })
    }

    /// Audits the access when an obligation asks, and refuses obligations the SQL PEP cannot
    /// enforce and row filters or masks for relations the statement does not read. Runs for
    /// every statement, whether its rewrite is cached or not: the cache key holds only the
    /// filters and masks of the statement's relations.
    fn check_obligations(
        &self,
        analysis: &Analysis,
        obligations: &[Obligation],
        subject: &Subject,
    ) -> Result<(), DenyReason> {
        for o in obligations {
            match o {
                Obligation::FilterRows(_) | Obligation::MaskColumns(_) => {}
                Obligation::Audit(a) => {
                    tracing::info!(
                        target: "warden_sql::audit",
                        level = ?a.level,
                        tags = ?a.tags,
                        subject = %subject.id,
                        tables = ?analysis.accesses.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
                        "audited SQL access"
                    );
                }
                other => return Err(DenyReason::ObligationUnsupported(other.type_name().into())),
            }
        }
        // Every row filter and mask must apply to a relation of the statement; one that names
        // no such relation is a policy that does not fit the database.
        for o in obligations {
            let table = match o {
                Obligation::FilterRows(f) => &f.table,
                Obligation::MaskColumns(m) => &m.table,
                _ => continue,
            };
            if !analysis.accesses.iter().any(|a| names(table, a)) {
                return Err(DenyReason::PolicyMismatch(table.clone()));
            }
        }
        Ok(())
    }

    /// The filter and masks that apply to each relation of the statement, checked against the
    /// catalog.
    fn plan(
        &self,
        analysis: &Analysis,
        obligations: &[Obligation],
        subject: &Subject,
    ) -> Result<Plan, DenyReason> {
        let catalog = &analysis.catalog;
        let mut plan = Plan::default();
        let mut ids: Vec<&TableAccess> = analysis.accesses.iter().collect();
        ids.sort_by(|a, b| a.id.cmp(&b.id));
        ids.dedup_by(|a, b| a.id == b.id);
        for access in ids {
            let mut filters: Vec<Predicate> = Vec::new();
            let mut masks: BTreeMap<String, warden_decision::MaskStrategy> = BTreeMap::new();
            for o in obligations {
                match o {
                    Obligation::FilterRows(f) if names(&f.table, access) => {
                        filters.push(resolve(&f.predicate, subject)?);
                    }
                    Obligation::MaskColumns(m) if names(&m.table, access) => {
                        for (column, strategy) in &m.columns {
                            let column = column.to_ascii_lowercase();
                            let merged = masks
                                .get(&column)
                                .map_or(*strategy, |s| s.stricter(*strategy));
                            masks.insert(column, merged);
                        }
                    }
                    _ => {}
                }
            }
            let filter = match filters.len() {
                0 => None,
                1 => filters.pop(),
                _ => Some(Predicate::And(filters)),
            };
            if filter.is_none() && masks.is_empty() {
                continue;
            }
            // A guarded relation needs its columns, and every column the obligations name must
            // be one of them: otherwise the policy does not fit the database.
            let Some(columns) = catalog.columns(&access.id) else {
                return Err(DenyReason::UnknownColumns(access.id.clone()));
            };
            let named = filter
                .iter()
                .flat_map(|f| f.columns())
                .map(str::to_owned)
                .chain(masks.keys().cloned());
            for column in named {
                if !columns.iter().any(|c| c.eq_ignore_ascii_case(&column)) {
                    return Err(DenyReason::UnknownColumn {
                        table: access.id.clone(),
                        column,
                    });
                }
            }
            let read = analysis.reads.get(&access.id).cloned().flatten();
            plan.tables.insert(
                access.id.clone(),
                TablePlan {
                    filter,
                    masks,
                    read,
                },
            );
        }
        Ok(plan)
    }
}

/// Whether an obligation's `table` (`t` or `schema.t`) names the access's relation.
pub(super) fn names(table: &str, access: &TableAccess) -> bool {
    match table.split_once('.') {
        Some((schema, t)) => {
            schema.eq_ignore_ascii_case(&access.schema) && t.eq_ignore_ascii_case(&access.table)
        }
        None => table.eq_ignore_ascii_case(&access.table),
    }
}
