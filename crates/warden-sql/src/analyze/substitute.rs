//! Substitution: a guarded relation becomes `(SELECT <masked columns> FROM t AS
//! warden_source WHERE <row filter> <fence>) AS <alias>`, written as SQL text.

use super::pushdown::Site;
use super::*;

impl<'a> Walker<'a> {
    /// `(SELECT <masked projection> FROM t AS warden_source WHERE <filter>) AS <alias>`,
    /// as SQL text, with a placeholder relation in the tree where it goes. Building the text
    /// from printed, escaped pieces costs a fraction of building and printing the tree.
    pub(super) fn substitute(
        &mut self,
        original: &TableFactor,
        table: &TableId,
        tp: &TablePlan,
    ) -> R<TableFactor> {
        let TableFactor::Table { name, alias, .. } = original else {
            return Err(DenyReason::Unsupported("substituting a non-table".into()));
        };
        let last = name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .cloned()
            .ok_or_else(|| DenyReason::Unsupported("an empty relation name".into()))?;
        let outer = alias.clone().unwrap_or(TableAlias {
            explicit: true,
            name: last,
            columns: Vec::new(),
            at: None,
        });
        let mut inner = original.clone();
        if let TableFactor::Table { alias, .. } = &mut inner {
            *alias = Some(TableAlias {
                explicit: true,
                name: Ident::new(SOURCE),
                columns: Vec::new(),
                at: None,
            });
        }
        // Column aliases (`AS p (a, b)`) are positional: they need every column.
        let read = match &outer.columns[..] {
            [] => tp.read.as_ref(),
            _ => None,
        };
        let mut text = String::with_capacity(256);
        text.push_str("(SELECT ");
        self.masked_projection_text(table, tp, read, &mut text)?;
        text.push_str(" FROM ");
        match &inner {
            // The common case, written directly: sqlparser's printer costs more than the rest.
            TableFactor::Table {
                name,
                args: None,
                with_hints,
                version: None,
                with_ordinality: false,
                partitions,
                json_path: None,
                sample: None,
                index_directives,
                inheritance: None,
                ..
            } if with_hints.is_empty() && partitions.is_empty() && index_directives.is_empty() => {
                for (i, part) in name.0.iter().enumerate() {
                    if i > 0 {
                        text.push('.');
                    }
                    text.push_str(&part.to_string());
                }
                text.push_str(" AS ");
                text.push_str(SOURCE);
            }
            other => text.push_str(&other.to_string()),
        }
        let mut filter_at = None;
        if let Some(filter) = &tp.filter {
            text.push_str(" WHERE ");
            let start = text.len();
            text.push_str(
                &self
                    .filter_expr(filter, &Ident::new(SOURCE), table)?
                    .to_string(),
            );
            filter_at = Some((start, text.len()));
        }
        if self.cfg.fence {
            // The caller's leakproof conditions on this relation go here (see `pushdown`).
            self.sites.push(Site {
                index: self.substitutions.len(),
                table: table.clone(),
                visible: self.fold(&outer.name),
                renamed: !outer.columns.is_empty(),
                filter: filter_at,
                end: text.len(),
            });
            text.push_str(self.cfg.rules.fence());
        }
        text.push_str(") ");
        text.push_str(&outer.to_string());
        let placeholder = placeholder(self.cfg.nonce, self.substitutions.len());
        self.substitutions.push(text);
        Ok(TableFactor::Table {
            name: ObjectName::from(vec![Ident::new(placeholder)]),
            alias: None,
            args: None,
            with_hints: Vec::new(),
            version: None,
            with_ordinality: false,
            partitions: Vec::new(),
            json_path: None,
            sample: None,
            index_directives: Vec::new(),
            inheritance: None,
        })
    }

    /// The projection of a substituted relation as SQL text: `*`, or its (read) columns with
    /// the masks applied.
    pub(super) fn masked_projection_text(
        &self,
        table: &TableId,
        tp: &TablePlan,
        read: Option<&BTreeSet<String>>,
        out: &mut String,
    ) -> R {
        if tp.masks.is_empty() {
            out.push('*');
            return Ok(());
        }
        let rules = self.cfg.rules;
        let columns = self
            .cfg
            .catalog
            .columns(table.id())
            .ok_or_else(|| DenyReason::UnknownColumns(table.id().to_owned()))?;
        for column in tp.masks.keys() {
            if !columns.iter().any(|c| c.eq_ignore_ascii_case(column)) {
                return Err(DenyReason::UnknownColumn {
                    table: table.id().to_owned(),
                    column: column.clone(),
                });
            }
        }
        let wanted = |c: &String| read.is_none_or(|r| r.contains(&c.to_ascii_lowercase()));
        let mut chosen: Vec<&String> = columns.iter().filter(|c| wanted(c)).collect();
        if chosen.is_empty() {
            // Nothing is read (`count(*)`): one column keeps the list valid.
            chosen.extend(columns.first());
        }
        for (i, c) in chosen.into_iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let ident = rules.ident(c).to_string();
            let reference = format!("{SOURCE}.{ident}");
            match tp.masks.iter().find(|(m, _)| m.eq_ignore_ascii_case(c)) {
                Some((_, strategy)) => {
                    out.push_str(&self.cfg.masks.apply_text(*strategy, &reference)?)
                }
                None => out.push_str(&reference),
            }
            out.push_str(" AS ");
            out.push_str(&ident);
        }
        Ok(())
    }

    /// The columns of `table` under `qualifier`, masked; `*` when nothing is masked and
    /// `wildcard_ok`.
    pub(super) fn masked_columns(
        &self,
        table: &TableId,
        tp: &TablePlan,
        qualifier: &Ident,
        wildcard_ok: bool,
        read: Option<&BTreeSet<String>>,
    ) -> R<Vec<SelectItem>> {
        let rules = self.cfg.rules;
        if tp.masks.is_empty() && wildcard_ok {
            return Ok(vec![SelectItem::Wildcard(Default::default())]);
        }
        let columns = self
            .cfg
            .catalog
            .columns(table.id())
            .ok_or_else(|| DenyReason::UnknownColumns(table.id().to_owned()))?;
        for column in tp.masks.keys() {
            if !columns.iter().any(|c| c.eq_ignore_ascii_case(column)) {
                return Err(DenyReason::UnknownColumn {
                    table: table.id().to_owned(),
                    column: column.clone(),
                });
            }
        }
        let wanted = |c: &String| read.is_none_or(|r| r.contains(&c.to_ascii_lowercase()));
        let mut chosen: Vec<&String> = columns.iter().filter(|c| wanted(c)).collect();
        if chosen.is_empty() {
            // Nothing is read (`count(*)`): one column keeps the list valid.
            chosen.extend(columns.first());
        }
        chosen
            .into_iter()
            .map(|c| {
                let reference = Expr::CompoundIdentifier(vec![qualifier.clone(), rules.ident(c)]);
                let strategy = tp
                    .masks
                    .iter()
                    .find(|(m, _)| m.eq_ignore_ascii_case(c))
                    .map(|(_, s)| *s);
                let expr = match strategy {
                    Some(s) => self.cfg.masks.apply(s, &reference)?,
                    None => reference,
                };
                Ok(SelectItem::ExprWithAlias {
                    expr,
                    alias: rules.ident(c),
                })
            })
            .collect()
    }

    /// The SQL of a row filter over the columns of `qualifier`.
    pub(super) fn filter_expr(
        &self,
        filter: &Predicate,
        qualifier: &Ident,
        table: &TableId,
    ) -> R<Expr> {
        let rules = self.cfg.rules;
        let known = self.cfg.catalog.columns(table.id());
        let column = |c: &str| -> R<Expr> {
            let name = match known {
                Some(cols) => cols
                    .iter()
                    .find(|k| k.as_str() == c)
                    .or_else(|| cols.iter().find(|k| k.eq_ignore_ascii_case(c)))
                    .ok_or_else(|| DenyReason::UnknownColumn {
                        table: table.id().to_owned(),
                        column: c.to_owned(),
                    })?
                    .as_str(),
                None => c,
            };
            Ok(Expr::CompoundIdentifier(vec![
                qualifier.clone(),
                rules.ident(name),
            ]))
        };
        to_expr(filter, &column, rules)
    }
}
