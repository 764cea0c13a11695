//! `INSERT`: `VALUES` rows checked against the row filter, `INSERT … SELECT` filtered,
//! `ON CONFLICT DO UPDATE` guarded.

use super::*;

impl<'a> Walker<'a> {
    pub(super) fn insert(&mut self, i: &mut Insert) -> R {
        if i.overwrite
            || i.partitioned.is_some()
            || !i.after_columns.is_empty()
            || i.output.is_some()
            || i.settings.is_some()
            || i.format_clause.is_some()
            || i.by_name
            || i.multi_table_insert_type.is_some()
            || !i.multi_table_into_clauses.is_empty()
            || !i.multi_table_when_clauses.is_empty()
            || i.multi_table_else_clause.is_some()
        {
            return Err(DenyReason::Unsupported(
                "an `INSERT` form of another dialect".into(),
            ));
        }
        if !i.optimizer_hints.is_empty() {
            return Err(DenyReason::Unsupported("optimizer hints".into()));
        }
        let TableObject::TableName(name) = &i.table else {
            return Err(DenyReason::Unsupported(
                "`INSERT INTO TABLE FUNCTION`".into(),
            ));
        };
        let name = name.clone();
        // The source cannot see the target: walk it first.
        if let Some(source) = &mut i.source {
            self.query(source)?;
        }
        for assignment in &mut i.assignments {
            self.visit(&mut assignment.value)?;
        }
        let alias = i.table_alias.as_ref().map(|a| a.alias.clone());
        let (table, qualifier) = self.write_target(&name, alias.as_ref())?;
        if let TableObject::TableName(name) = &mut i.table {
            self.qualify(name, &table);
        }
        let mut columns: Vec<String> = i
            .columns
            .iter()
            .filter_map(|c| c.0.last().and_then(|p| p.as_ident()))
            .map(|c| self.fold(c))
            .collect();
        if columns.is_empty() {
            columns = self.assigned(&i.assignments);
        }
        let explicit = !columns.is_empty();
        if !self.rewriting() {
            let a = self.access(&table, Operation::Insert, true);
            if explicit {
                self.add_columns(a, &columns);
            } else if let Some(access) = self.accesses.get_mut(a) {
                access.all_columns = true;
            }
        }
        let catalog = self.cfg.catalog.columns(table.id()).map(<[String]>::to_vec);
        // ON CONFLICT / ON DUPLICATE KEY: the existing row is the target, `excluded` the new one.
        match &mut i.on {
            Some(OnInsert::OnConflict(oc)) => {
                if let Some(ConflictTarget::Columns {
                    predicate: Some(p), ..
                }) = &mut oc.conflict_target
                {
                    self.visit(p)?;
                }
                if let OnConflictAction::DoUpdate(du) = &mut oc.action {
                    if !self.rewriting() {
                        let written = self.assigned(&du.assignments);
                        let a = self.access(&table, Operation::Update, true);
                        self.add_columns(a, &written);
                    }
                    self.push_var(
                        Some("excluded".into()),
                        VarKind::Other,
                        catalog.clone(),
                        None,
                    );
                    for assignment in &mut du.assignments {
                        self.visit(&mut assignment.value)?;
                    }
                    self.visit(&mut du.selection)?;
                }
            }
            Some(OnInsert::DuplicateKeyUpdate(assignments)) => {
                if !self.rewriting() {
                    let written = self.assigned(assignments);
                    let a = self.access(&table, Operation::Update, true);
                    self.add_columns(a, &written);
                }
                for assignment in assignments.iter_mut() {
                    self.visit(&mut assignment.value)?;
                }
            }
            Some(_) => {
                return Err(DenyReason::Unsupported(
                    "this `ON` clause of `INSERT`".into(),
                ));
            }
            None => {}
        }
        self.returning(&mut i.returning, &table, &qualifier, false)?;
        if let Some(filter) = self.table_plan(&table).and_then(|tp| tp.filter.as_ref()) {
            if i.replace_into || matches!(i.or, Some(SqliteOnConflict::Replace)) {
                return Err(DenyReason::Unsupported(
                    "`REPLACE` on a table with a row filter (it deletes conflicting rows)".into(),
                ));
            }
            let columns = if explicit {
                columns
            } else {
                catalog
                    .clone()
                    .ok_or_else(|| DenyReason::UnknownColumns(table.id().to_owned()))?
            };
            if !i.assignments.is_empty() {
                let row: Vec<(String, &Expr)> = columns
                    .iter()
                    .cloned()
                    .zip(i.assignments.iter().map(|a| &a.value))
                    .collect();
                self.check_row(&table, filter, &row)?;
            } else {
                match &mut i.source {
                    None => self.check_row(&table, filter, &[])?,
                    Some(source) => match plain_values(source) {
                        Some(rows) => {
                            let mut checks = Vec::new();
                            for values in rows {
                                if values.len() != columns.len() {
                                    return Err(DenyReason::Unsupported(
                                        "a `VALUES` row whose length differs from the column list"
                                            .into(),
                                    ));
                                }
                                let row: Vec<(String, &Expr)> =
                                    columns.iter().cloned().zip(values.iter()).collect();
                                checks.push(self.row_check(&table, filter, &row)?);
                            }
                            self.checks.extend(checks);
                        }
                        None => self.guard_insert_select(source, &columns, filter, &table)?,
                    },
                }
            }
            match &mut i.on {
                Some(OnInsert::OnConflict(oc)) => {
                    if let OnConflictAction::DoUpdate(du) = &mut oc.action {
                        self.check_assignments(&table, filter, &du.assignments, true)?;
                        let f = self.filter_expr(filter, &qualifier, &table)?;
                        du.selection = Some(self.guard(f, du.selection.take()));
                    }
                }
                Some(OnInsert::DuplicateKeyUpdate(_)) => {
                    return Err(DenyReason::Unsupported(
                        "`ON DUPLICATE KEY UPDATE` on a table with a row filter".into(),
                    ));
                }
                _ => {}
            }
        }
        self.end_write();
        Ok(())
    }

    /// `INSERT INTO t (cols) WITH warden_rows (cols) AS (<source>) SELECT * FROM warden_rows
    /// WHERE <filter>`: rows outside the filter are never inserted.
    pub(super) fn guard_insert_select(
        &self,
        source: &mut Query,
        columns: &[String],
        filter: &Predicate,
        table: &TableId,
    ) -> R {
        let rules = self.cfg.rules;
        let rows = Ident::new(ROWS);
        let condition = to_expr(
            filter,
            &|c: &str| {
                let name = columns
                    .iter()
                    .find(|k| k.eq_ignore_ascii_case(c))
                    .ok_or_else(|| DenyReason::CannotProve {
                        table: table.id().to_owned(),
                        detail: format!("column `{c}` is not among the inserted columns"),
                    })?;
                Ok(Expr::CompoundIdentifier(vec![
                    rows.clone(),
                    rules.ident(name),
                ]))
            },
            rules,
        )?;
        let mut guarded = self.cfg.rows_template.clone();
        let original = std::mem::replace(source, self.cfg.plain_template.clone());
        if let Some(with) = &mut guarded.with
            && let Some(cte) = with.cte_tables.first_mut()
        {
            cte.alias.columns = columns
                .iter()
                .map(|c| sqlparser::ast::TableAliasColumnDef::from_name(c.as_str()))
                .map(|mut d| {
                    d.name = rules.ident(&d.name.value);
                    d
                })
                .collect();
            *cte.query = original;
        }
        if let SetExpr::Select(select) = guarded.body.as_mut() {
            select.selection = Some(condition);
        }
        *source = guarded;
        Ok(())
    }

    /// Records the check of a new row (literal or parameter values only).
    pub(super) fn check_row(
        &mut self,
        table: &TableId,
        filter: &Predicate,
        row: &[(String, &Expr)],
    ) -> R {
        let check = self.row_check(table, filter, row)?;
        self.checks.push(check);
        Ok(())
    }

    pub(super) fn row_check(
        &self,
        table: &TableId,
        filter: &Predicate,
        row: &[(String, &Expr)],
    ) -> R<Check> {
        let mut values = Vec::new();
        for column in filter.columns() {
            let Some((_, expr)) = row.iter().find(|(c, _)| c.eq_ignore_ascii_case(column)) else {
                return Err(DenyReason::CannotProve {
                    table: table.id().to_owned(),
                    detail: format!("the row does not set `{column}`"),
                });
            };
            let value = self.known(expr).ok_or_else(|| DenyReason::CannotProve {
                table: table.id().to_owned(),
                detail: format!("the value of `{column}` is not a literal or bind parameter"),
            })?;
            values.push((column.to_owned(), value));
        }
        Ok(Check {
            table: table.id().to_owned(),
            predicate: filter.clone(),
            row: values,
        })
    }
}
