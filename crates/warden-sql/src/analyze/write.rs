//! `UPDATE` and `DELETE`, and what every write shares: the target's frame, the write guard
//! (the caller's conditions inside a `CASE` on the row filter), the checks of assigned values
//! and `RETURNING`.

use super::*;

impl<'a> Walker<'a> {
    /// Resolves the target of a write and opens its frame.
    pub(super) fn write_target(
        &mut self,
        name: &ObjectName,
        alias: Option<&Ident>,
    ) -> R<(TableId, Ident)> {
        self.relations += 1;
        let parts = name_parts(name)?;
        if let [single] = parts.as_slice()
            && self.lookup_cte(single)?.is_some()
        {
            return Err(DenyReason::Unsupported("writing to a CTE".into()));
        }
        let table = self.table_id(&parts)?;
        let qualifier = match alias {
            Some(a) => a.clone(),
            None => parts
                .last()
                .cloned()
                .ok_or_else(|| DenyReason::Unsupported("an empty relation name".into()))?,
        };
        let visible = self.fold(&qualifier);
        let columns = self.catalog_columns(&table);
        let access = if self.rewriting() {
            None
        } else {
            Some(self.access(&table, Operation::Select, false))
        };
        self.frames.push(vec![Var {
            name: visible,
            kind: VarKind::Target,
            columns,
            access,
        }]);
        self.target_masks = self
            .table_plan(&table)
            .map(|tp| tp.masks.clone())
            .filter(|m| !m.is_empty());
        Ok((table, qualifier))
    }

    pub(super) fn end_write(&mut self) {
        self.frames.pop();
        self.target_masks = None;
    }

    pub(super) fn table_plan(&self, table: &TableId) -> Option<&'a TablePlan> {
        self.plan.and_then(|p| p.tables.get(table.id()))
    }

    pub(super) fn update(&mut self, u: &mut Update) -> R {
        if u.output.is_some() || u.on_cluster.is_some() || u.settings.is_some() {
            return Err(DenyReason::Unsupported(
                "`UPDATE … OUTPUT` or `SETTINGS`".into(),
            ));
        }
        if !u.optimizer_hints.is_empty() {
            return Err(DenyReason::Unsupported("optimizer hints".into()));
        }
        if matches!(u.or, Some(SqliteOnConflict::Replace)) {
            return Err(DenyReason::Unsupported(
                "`UPDATE OR REPLACE` (it deletes conflicting rows)".into(),
            ));
        }
        if !u.table.joins.is_empty() {
            return Err(DenyReason::Unsupported("multi-table `UPDATE`".into()));
        }
        let TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } = &u.table.relation
        else {
            return Err(DenyReason::Unsupported(
                "an `UPDATE` of something not a table".into(),
            ));
        };
        let (name, alias) = (name.clone(), alias.as_ref().map(|a| a.name.clone()));
        let (table, qualifier) = self.write_target(&name, alias.as_ref())?;
        if let TableFactor::Table { name, .. } = &mut u.table.relation {
            self.qualify(name, &table);
        }
        let written = self.assigned(&u.assignments);
        if !self.rewriting() {
            let a = self.access(&table, Operation::Update, true);
            self.add_columns(a, &written);
        }
        let has_from = u.from.is_some();
        if let Some(from) = &mut u.from {
            let (UpdateTableFromKind::BeforeSet(items) | UpdateTableFromKind::AfterSet(items)) =
                from;
            for item in items {
                self.table_with_joins(item)?;
            }
        }
        for assignment in &mut u.assignments {
            self.visit(&mut assignment.value)?;
        }
        self.visit(&mut u.selection)?;
        self.visit(&mut u.order_by)?;
        self.visit(&mut u.limit)?;
        self.returning(&mut u.returning, &table, &qualifier, has_from)?;
        if let Some(filter) = self.table_plan(&table).and_then(|tp| tp.filter.as_ref()) {
            self.check_assignments(&table, filter, &u.assignments, false)?;
            let f = self.filter_expr(filter, &qualifier, &table)?;
            u.selection = Some(self.guard(f, u.selection.take()));
        }
        self.end_write();
        Ok(())
    }

    pub(super) fn delete(&mut self, d: &mut Delete) -> R {
        if !d.tables.is_empty() {
            return Err(DenyReason::Unsupported("multi-table `DELETE`".into()));
        }
        if d.output.is_some() || d.on_cluster.is_some() || d.settings.is_some() {
            return Err(DenyReason::Unsupported(
                "`DELETE … OUTPUT` or `SETTINGS`".into(),
            ));
        }
        if !d.optimizer_hints.is_empty() {
            return Err(DenyReason::Unsupported("optimizer hints".into()));
        }
        let (FromTable::WithFromKeyword(items) | FromTable::WithoutKeyword(items)) = &d.from;
        let [item] = items.as_slice() else {
            return Err(DenyReason::Unsupported(
                "`DELETE` from several tables".into(),
            ));
        };
        let TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } = &item.relation
        else {
            return Err(DenyReason::Unsupported(
                "a `DELETE` from something not a table".into(),
            ));
        };
        if !item.joins.is_empty() {
            return Err(DenyReason::Unsupported("`DELETE` with joins".into()));
        }
        let (name, alias) = (name.clone(), alias.as_ref().map(|a| a.name.clone()));
        let (table, qualifier) = self.write_target(&name, alias.as_ref())?;
        let (FromTable::WithFromKeyword(items) | FromTable::WithoutKeyword(items)) = &mut d.from;
        if let Some(TableWithJoins {
            relation: TableFactor::Table { name, .. },
            ..
        }) = items.first_mut()
        {
            self.qualify(name, &table);
        }
        if !self.rewriting() {
            self.access(&table, Operation::Delete, true);
        }
        let has_using = d.using.is_some();
        if let Some(using) = &mut d.using {
            for item in using {
                self.table_with_joins(item)?;
            }
        }
        self.visit(&mut d.selection)?;
        self.visit(&mut d.order_by)?;
        self.visit(&mut d.limit)?;
        self.returning(&mut d.returning, &table, &qualifier, has_using)?;
        if let Some(filter) = self.table_plan(&table).and_then(|tp| tp.filter.as_ref()) {
            let f = self.filter_expr(filter, &qualifier, &table)?;
            d.selection = Some(self.guard(f, d.selection.take()));
        }
        self.end_write();
        Ok(())
    }

    /// The condition of a guarded write: `CASE WHEN <filter> THEN <caller's> ELSE false END`,
    /// so the database evaluates the caller's expression only on rows the filter admits (its
    /// errors can then only quote those), whatever order the planner picks. PostgreSQL also gets
    /// the filter on its own, for index scans (its planner derives nothing from a `CASE`
    /// branch); MySQL and SQLite propagate constants from one conjunct into others, so there the
    /// `CASE` stands alone.
    pub(super) fn guard(&self, filter: Expr, caller: Option<Expr>) -> Expr {
        let Some(caller) = caller else {
            return filter;
        };
        let case = Expr::Case {
            case_token: sqlparser::ast::helpers::attached_token::AttachedToken::empty(),
            end_token: sqlparser::ast::helpers::attached_token::AttachedToken::empty(),
            operand: None,
            conditions: vec![sqlparser::ast::CaseWhen {
                condition: filter.clone(),
                result: Expr::Nested(Box::new(caller)),
            }],
            else_result: Some(Box::new(constant(false))),
        };
        if self.cfg.rules.dialect() == crate::dialect::Dialect::Postgres {
            and(filter, case)
        } else {
            case
        }
    }

    /// Tuple assignments (`SET (a, b) = …`) to filter columns cannot be checked.
    pub(super) fn refuse_tuple_assignments(
        &self,
        table: &TableId,
        filter: &Predicate,
        assignments: &[sqlparser::ast::Assignment],
    ) -> R {
        let filter_columns = filter.columns();
        for assignment in assignments {
            if let AssignmentTarget::Tuple(names) = &assignment.target {
                for n in names {
                    if let Some(c) = n.0.last().and_then(|p| p.as_ident()) {
                        let c = self.fold(c);
                        if filter_columns.iter().any(|f| f.eq_ignore_ascii_case(&c)) {
                            return Err(DenyReason::CannotProve {
                                table: table.id().to_owned(),
                                detail: format!("`{c}` is assigned from a tuple"),
                            });
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Checks the assignments of an update to filter columns: the new values must be literals
    /// or bind parameters (or, in `ON CONFLICT`, the same column of `excluded`, which the
    /// insert check covers).
    pub(super) fn check_assignments(
        &mut self,
        table: &TableId,
        filter: &Predicate,
        assignments: &[sqlparser::ast::Assignment],
        excluded_ok: bool,
    ) -> R {
        let filter_columns = filter.columns();
        let mut row = Vec::new();
        for assignment in assignments {
            let targets: Vec<String> = match &assignment.target {
                AssignmentTarget::ColumnName(n) => {
                    n.0.last()
                        .and_then(|p| p.as_ident())
                        .map(|c| vec![self.fold(c)])
                        .unwrap_or_default()
                }
                AssignmentTarget::Tuple(names) => names
                    .iter()
                    .filter_map(|n| n.0.last().and_then(|p| p.as_ident()))
                    .map(|c| self.fold(c))
                    .collect(),
            };
            for column in targets {
                if !filter_columns
                    .iter()
                    .any(|f| f.eq_ignore_ascii_case(&column))
                {
                    continue;
                }
                if matches!(assignment.target, AssignmentTarget::Tuple(_)) {
                    return Err(DenyReason::CannotProve {
                        table: table.id().to_owned(),
                        detail: format!("`{column}` is assigned from a tuple"),
                    });
                }
                if excluded_ok
                    && let Expr::CompoundIdentifier(parts) = &assignment.value
                    && let [q, c] = parts.as_slice()
                    && self.fold(q) == "excluded"
                    && self.fold(c).eq_ignore_ascii_case(&column)
                {
                    continue;
                }
                let value = self.known(&assignment.value).ok_or_else(|| {
                    DenyReason::CannotProve {
                        table: table.id().to_owned(),
                        detail: format!(
                            "the value assigned to `{column}` is not a literal or bind parameter"
                        ),
                    }
                })?;
                row.push((column, value));
            }
        }
        if row.is_empty() {
            return Ok(());
        }
        // The old row satisfied the filter: conjuncts over columns the update leaves alone
        // still hold.
        let assigned: BTreeSet<String> = row.iter().map(|(c, _)| c.to_ascii_lowercase()).collect();
        self.checks.push(Check {
            table: table.id().to_owned(),
            predicate: prune(filter, &assigned),
            row,
        });
        Ok(())
    }

    pub(super) fn known(&self, expr: &Expr) -> Option<Known> {
        let placeholders = self.placeholders;
        known(expr, self.cfg.rules, &|e: &Expr| {
            let Expr::Value(v) = e else { return None };
            let start = v.span.start;
            placeholders.get(&(start.line, start.column)).copied()
        })
    }

    pub(super) fn assigned(&self, assignments: &[sqlparser::ast::Assignment]) -> Vec<String> {
        let mut out = Vec::new();
        for a in assignments {
            match &a.target {
                AssignmentTarget::ColumnName(n) => {
                    if let Some(c) = n.0.last().and_then(|p| p.as_ident()) {
                        out.push(self.fold(c));
                    }
                }
                AssignmentTarget::Tuple(names) => {
                    for n in names {
                        if let Some(c) = n.0.last().and_then(|p| p.as_ident()) {
                            out.push(self.fold(c));
                        }
                    }
                }
            }
        }
        out
    }

    /// `RETURNING`: reads the target (a `select` access) and is masked like a read.
    pub(super) fn returning(
        &mut self,
        items: &mut Option<Vec<SelectItem>>,
        table: &TableId,
        qualifier: &Ident,
        multi: bool,
    ) -> R {
        let Some(items) = items else { return Ok(()) };
        let visible = self.fold(qualifier);
        for item in items.iter() {
            match item {
                SelectItem::Wildcard(_) => self.all_columns_of_frame(),
                SelectItem::QualifiedWildcard(
                    SelectItemQualifiedWildcardKind::ObjectName(n),
                    _,
                ) => {
                    if let Some(last) = n.0.last().and_then(|p| p.as_ident()) {
                        let name = self.fold(last);
                        self.all_columns_of(&name);
                    }
                }
                _ => {}
            }
        }
        self.visit(items)?;
        let Some(tp) = self.table_plan(table).filter(|tp| !tp.masks.is_empty()) else {
            return Ok(());
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items.drain(..) {
            let expand = match &item {
                SelectItem::Wildcard(_) => {
                    if multi {
                        return Err(DenyReason::Unsupported(
                            "`RETURNING *` with other tables on a masked table (name the columns)"
                                .into(),
                        ));
                    }
                    true
                }
                SelectItem::QualifiedWildcard(
                    SelectItemQualifiedWildcardKind::ObjectName(n),
                    _,
                ) => {
                    n.0.last()
                        .and_then(|p| p.as_ident())
                        .is_some_and(|i| self.fold(i) == visible)
                }
                _ => false,
            };
            if expand {
                out.extend(self.masked_columns(table, tp, qualifier, false, None)?);
            } else {
                out.push(item);
            }
        }
        *items = out;
        Ok(())
    }
}
