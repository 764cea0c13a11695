//! `MERGE`: the join condition and every matched clause guarded, new rows checked by the
//! database over their value expressions.

use super::*;

impl<'a> Walker<'a> {
    pub(super) fn merge(&mut self, m: &mut Merge) -> R {
        if !self.cfg.rules.supports_merge() {
            return Err(DenyReason::StatementKind("MERGE".into()));
        }
        if m.output.is_some() || !m.optimizer_hints.is_empty() {
            return Err(DenyReason::Unsupported(
                "`MERGE … RETURNING` or hints".into(),
            ));
        }
        let TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } = &m.table
        else {
            return Err(DenyReason::Unsupported(
                "a `MERGE` into something not a table".into(),
            ));
        };
        let (name, alias) = (name.clone(), alias.as_ref().map(|a| a.name.clone()));
        let (table, qualifier) = self.write_target(&name, alias.as_ref())?;
        if let TableFactor::Table { name, .. } = &mut m.table {
            self.qualify(name, &table);
        }
        self.table_factor(&mut m.source)?;
        if !self.rewriting() {
            for clause in &m.clauses {
                match &clause.action {
                    MergeAction::Update(u) => {
                        let written = match &u.kind {
                            MergeUpdateKind::Set(a) => self.assigned(a),
                            MergeUpdateKind::Wildcard => Vec::new(),
                        };
                        let a = self.access(&table, Operation::Update, true);
                        self.add_columns(a, &written);
                    }
                    MergeAction::Insert(ins) => {
                        let written: Vec<String> = ins
                            .columns
                            .iter()
                            .filter_map(|c| c.0.last().and_then(|p| p.as_ident()))
                            .map(|c| self.fold(c))
                            .collect();
                        let a = self.access(&table, Operation::Insert, true);
                        self.add_columns(a, &written);
                    }
                    MergeAction::Delete { .. } => {
                        self.access(&table, Operation::Delete, true);
                    }
                    MergeAction::DoNothing { .. } => {}
                }
            }
        }
        self.visit(&mut m.on)?;
        let filter = self.table_plan(&table).and_then(|tp| tp.filter.as_ref());
        for clause in &mut m.clauses {
            self.visit(&mut clause.predicate)?;
            match &mut clause.action {
                MergeAction::Update(u) => {
                    if u.update_predicate.is_some() || u.delete_predicate.is_some() {
                        return Err(DenyReason::Unsupported(
                            "`UPDATE … WHERE` in `MERGE`".into(),
                        ));
                    }
                    match &mut u.kind {
                        MergeUpdateKind::Set(assignments) => {
                            for a in assignments.iter_mut() {
                                self.visit(&mut a.value)?;
                            }
                        }
                        MergeUpdateKind::Wildcard => {
                            return Err(DenyReason::Unsupported("`UPDATE *` in `MERGE`".into()));
                        }
                    }
                }
                MergeAction::Insert(ins) => {
                    if ins.insert_predicate.is_some() {
                        return Err(DenyReason::Unsupported(
                            "`INSERT … WHERE` in `MERGE`".into(),
                        ));
                    }
                    match &mut ins.kind {
                        MergeInsertKind::Values(values) => self.visit(values)?,
                        _ => {
                            return Err(DenyReason::Unsupported(
                                "`INSERT ROW` or `INSERT *` in `MERGE`".into(),
                            ));
                        }
                    }
                }
                MergeAction::Delete { .. } | MergeAction::DoNothing { .. } => {}
            }
            let Some(filter) = filter else { continue };
            match clause.clause_kind {
                MergeClauseKind::Matched | MergeClauseKind::NotMatchedBySource => {
                    // The clause's own condition and the new row's check are caller
                    // expressions over the target row: evaluated only once the row filter
                    // holds.
                    let mut caller = clause.predicate.take();
                    if let MergeAction::Update(u) = &clause.action
                        && let MergeUpdateKind::Set(assignments) = &u.kind
                    {
                        self.refuse_tuple_assignments(&table, filter, assignments)?;
                        let assigned: Vec<(String, &Expr)> = assignments
                            .iter()
                            .filter_map(|a| match &a.target {
                                AssignmentTarget::ColumnName(n) => {
                                    n.0.last()
                                        .and_then(|p| p.as_ident())
                                        .map(|c| (self.fold(c), &a.value))
                                }
                                AssignmentTarget::Tuple(_) => None,
                            })
                            .collect();
                        if let Some(new_row) =
                            self.substituted_filter(filter, &table, &assigned, Some(&qualifier))?
                        {
                            caller = Some(match caller {
                                Some(p) => and(p, new_row),
                                None => new_row,
                            });
                        }
                    }
                    let f = self.filter_expr(filter, &qualifier, &table)?;
                    clause.predicate = Some(self.guard(f, caller));
                }
                MergeClauseKind::NotMatched | MergeClauseKind::NotMatchedByTarget => {
                    if let MergeAction::Insert(ins) = &clause.action
                        && let MergeInsertKind::Values(values) = &ins.kind
                    {
                        let columns: Vec<String> = if ins.columns.is_empty() {
                            self.cfg
                                .catalog
                                .columns(table.id())
                                .map(<[String]>::to_vec)
                                .ok_or_else(|| DenyReason::UnknownColumns(table.id().to_owned()))?
                        } else {
                            ins.columns
                                .iter()
                                .filter_map(|c| c.0.last().and_then(|p| p.as_ident()))
                                .map(|c| self.fold(c))
                                .collect()
                        };
                        let [row] = values.rows.as_slice() else {
                            return Err(DenyReason::Unsupported(
                                "several `VALUES` rows in `MERGE`".into(),
                            ));
                        };
                        let row: Vec<(String, &Expr)> =
                            columns.into_iter().zip(row.content.iter()).collect();
                        if let Some(g) = self.substituted_filter(filter, &table, &row, None)? {
                            clause.predicate = Some(match clause.predicate.take() {
                                Some(p) => and(p, g),
                                None => g,
                            });
                        }
                    }
                }
            }
        }
        // The join condition runs on target rows: only on those the filter admits. A target
        // row outside the filter matches no source row.
        if let Some(filter) = filter {
            let f = self.filter_expr(filter, &qualifier, &table)?;
            let on = std::mem::replace(m.on.as_mut(), constant(true));
            *m.on = self.guard(f, Some(on));
        }
        self.end_write();
        Ok(())
    }

    /// The row filter over a new row: assigned columns take their (pure) value expressions,
    /// the others the target's columns (`qualifier`), or cannot be proven (an insert).
    /// `None` when no assigned column is in the filter.
    pub(super) fn substituted_filter(
        &self,
        filter: &Predicate,
        table: &TableId,
        assigned: &[(String, &Expr)],
        qualifier: Option<&Ident>,
    ) -> R<Option<Expr>> {
        let filter_columns = filter.columns();
        if qualifier.is_some()
            && !assigned
                .iter()
                .any(|(c, _)| filter_columns.iter().any(|f| f.eq_ignore_ascii_case(c)))
        {
            return Ok(None);
        }
        let rules = self.cfg.rules;
        let column = |c: &str| -> R<Expr> {
            if let Some((_, value)) = assigned.iter().find(|(a, _)| a.eq_ignore_ascii_case(c)) {
                if !pure(value) {
                    return Err(DenyReason::CannotProve {
                        table: table.id().to_owned(),
                        detail: format!("the value written to `{c}` is not a plain expression"),
                    });
                }
                return Ok((*value).clone());
            }
            match qualifier {
                Some(q) => Ok(Expr::CompoundIdentifier(vec![q.clone(), rules.ident(c)])),
                None => Err(DenyReason::CannotProve {
                    table: table.id().to_owned(),
                    detail: format!("the inserted row does not set `{c}`"),
                }),
            }
        };
        to_expr(filter, &column, rules).map(Some)
    }
}
