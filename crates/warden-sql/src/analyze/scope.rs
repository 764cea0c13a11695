//! Names and scopes: CTEs, relations, range variables, the attribution of column references
//! to accesses, whole-row references and the masking of the write target's columns.

use super::*;

impl<'a> Walker<'a> {
    pub(super) fn lookup_cte(&self, ident: &Ident) -> R<Option<String>> {
        let folded = self.fold(ident);
        if self
            .forbidden_ctes
            .last()
            .is_some_and(|f| f.contains(&folded))
        {
            return Err(DenyReason::Unsupported(format!(
                "a forward reference to CTE `{folded}` in `WITH RECURSIVE`"
            )));
        }
        for scope in self.ctes.iter().rev() {
            if let Some(cte) = scope.iter().find(|c| c.folded == folded) {
                // Where quoted names lose their case, the database's own rule for CTE names is
                // not certain: a name that differs in case from the CTE is refused.
                if !self.cfg.rules.quoted_names_keep_case() && cte.raw != ident.value {
                    return Err(DenyReason::Unsupported(format!(
                        "`{}` differs in case from CTE `{}`",
                        ident.value, cte.raw
                    )));
                }
                return Ok(Some(folded));
            }
        }
        Ok(None)
    }

    pub(super) fn table_id(&self, parts: &[Ident]) -> R<TableId> {
        if !self.cfg.table_names_fold
            && let Some(p) = parts
                .iter()
                .find(|p| p.value.bytes().any(|b| b.is_ascii_uppercase()))
        {
            return Err(DenyReason::Unsupported(format!(
                "the name `{}` has upper-case letters, and unless MySQL's \
                 `lower_case_table_names` is known to be 1 or 2 it may name another table than \
                 `{}` (configure `lower_case_table_names` from the server)",
                p.value,
                p.value.to_ascii_lowercase()
            )));
        }
        let (schema, table, qualified) = match parts {
            [t] => {
                let table = self.fold(t);
                // An unqualified catalog name lives in the dialect's catalog schema
                // (`pg_class` is `pg_catalog.pg_class`), whatever the default schema.
                let schema = self
                    .cfg
                    .rules
                    .catalog_schema_of(&table)
                    .unwrap_or(self.cfg.default_schema)
                    .to_owned();
                (schema, table, false)
            }
            [s, t] => (self.fold(s), self.fold(t), true),
            _ => {
                return Err(DenyReason::Unsupported(
                    "relation names with more than two parts".into(),
                ));
            }
        };
        // `schema.table` must name one relation: with a dot inside a quoted name, `"a.b".c` and
        // `a."b.c"` would be one id, one decision and one plan for two tables.
        if schema.contains('.') || table.contains('.') {
            return Err(DenyReason::Unsupported(format!(
                "the relation name `{schema}`.`{table}` has a `.` inside a name part"
            )));
        }
        let id = TableId::new(schema, table);
        if !self.cfg.allow_system && self.cfg.rules.is_system(&id.schema, &id.table, qualified) {
            return Err(DenyReason::SystemCatalog(id.id().to_owned()));
        }
        Ok(id)
    }

    /// Names a relation the statement wrote without its schema by the schema the PEP resolved
    /// it to, so the database reads the relation that was decided on whatever the session's
    /// `search_path` (or current database) is, and no CTE of the same name can take its place.
    pub(super) fn qualify(&self, name: &mut ObjectName, table: &TableId) {
        if let [only] = name.0.as_slice() {
            let only = only.clone();
            name.0 = vec![
                sqlparser::ast::ObjectNamePart::Identifier(self.cfg.rules.ident(&table.schema)),
                only,
            ];
        }
    }

    pub(super) fn catalog_columns(&self, table: &TableId) -> Option<Vec<String>> {
        self.cfg
            .catalog
            .columns(table.id())
            .map(|cols| cols.iter().map(|c| c.to_ascii_lowercase()).collect())
    }

    pub(super) fn access(&mut self, table: &TableId, operation: Operation, used: bool) -> usize {
        if let Some(i) = self
            .accesses
            .iter()
            .position(|a| a.table == *table && a.operation == operation)
        {
            if let Some(a) = self.accesses.get_mut(i) {
                a.used |= used;
            }
            return i;
        }
        self.accesses.push(AccessBuild {
            table: table.clone(),
            operation,
            columns: BTreeSet::new(),
            all_columns: false,
            used,
        });
        self.accesses.len() - 1
    }

    pub(super) fn add_columns(&mut self, access: usize, columns: &[String]) {
        if let Some(a) = self.accesses.get_mut(access) {
            a.columns.extend(columns.iter().cloned());
        }
    }

    pub(super) fn push_var(
        &mut self,
        name: Option<String>,
        kind: VarKind,
        columns: Option<Vec<String>>,
        access: Option<usize>,
    ) {
        if let Some(frame) = self.frames.last_mut() {
            frame.push(Var {
                name: name.unwrap_or_default(),
                kind,
                columns,
                access,
            });
        }
    }

    pub(super) fn mark_all(&mut self, access: Option<usize>) {
        if let Some(a) = access.and_then(|a| self.accesses.get_mut(a)) {
            a.all_columns = true;
            a.used = true;
        }
    }

    pub(super) fn all_columns_of_frame(&mut self) {
        if self.rewriting() {
            return;
        }
        let accesses: Vec<Option<usize>> = self
            .frames
            .last()
            .map(|f| f.iter().map(|v| v.access).collect())
            .unwrap_or_default();
        for a in accesses {
            self.mark_all(a);
        }
    }

    pub(super) fn all_columns_of(&mut self, name: &str) {
        if self.rewriting() {
            return;
        }
        let access = self
            .frames
            .iter()
            .rev()
            .find_map(|f| f.iter().find(|v| v.name == name))
            .and_then(|v| v.access);
        self.mark_all(access);
    }

    /// Attributes a column reference to the relations it may belong to (a superset).
    pub(super) fn attribute(&mut self, qualifier: Option<&str>, column: &str) {
        if self.rewriting() {
            return;
        }
        let mut hits = Vec::new();
        if let Some(q) = qualifier {
            if let Some(var) = self
                .frames
                .iter()
                .rev()
                .find_map(|f| f.iter().find(|v| v.name == q))
            {
                hits.push(var.access);
            }
        } else {
            for frame in self.frames.iter().rev() {
                let mut found = false;
                for var in frame {
                    match &var.columns {
                        Some(cols) if cols.iter().any(|c| c.eq_ignore_ascii_case(column)) => {
                            found = true;
                            hits.push(var.access);
                        }
                        None => hits.push(var.access),
                        Some(_) => {}
                    }
                }
                if found {
                    break;
                }
            }
        }
        for a in hits.into_iter().flatten() {
            if let Some(access) = self.accesses.get_mut(a) {
                access.columns.insert(column.to_owned());
                access.used = true;
            }
        }
    }

    /// Whether a bare name is a whole-row reference to a table (not a column in scope).
    pub(super) fn is_whole_row(&self, name: &str) -> bool {
        let vars = self.frames.iter().flatten();
        let names_table = vars
            .clone()
            .any(|v| v.kind != VarKind::Other && v.name == name);
        if !names_table {
            return false;
        }
        let is_column = vars.clone().any(|v| {
            v.columns
                .as_ref()
                .is_some_and(|cols| cols.iter().any(|c| c.eq_ignore_ascii_case(name)))
        });
        !is_column
    }

    pub(super) fn resolves_to_table(&self, qualifier: &str) -> bool {
        self.frames
            .iter()
            .rev()
            .find_map(|f| f.iter().find(|v| v.name == qualifier))
            .is_some_and(|v| v.kind != VarKind::Other)
    }

    /// Whether a column reference may be the write target's (then a mask applies to it).
    pub(super) fn may_be_target(&self, qualifier: Option<&str>, column: &str) -> bool {
        if let Some(q) = qualifier {
            return self
                .frames
                .iter()
                .rev()
                .find_map(|f| f.iter().find(|v| v.name == q))
                .is_some_and(|v| v.kind == VarKind::Target);
        }
        for frame in self.frames.iter().rev() {
            if frame.iter().any(|v| v.kind == VarKind::Target) {
                return true;
            }
            if frame.iter().any(|v| {
                v.columns
                    .as_ref()
                    .is_some_and(|cols| cols.iter().any(|c| c.eq_ignore_ascii_case(column)))
            }) {
                return false;
            }
            if frame.iter().any(|v| v.columns.is_none()) {
                // Ambiguous: mask (the stricter reading).
                return true;
            }
        }
        false
    }

    /// Inspects one expression (not descending: the visitor does).
    pub(super) fn inspect(&mut self, expr: &Expr) -> R {
        match expr {
            Expr::Identifier(id) => {
                let name = self.fold(id);
                if self.is_whole_row(&name) {
                    return Err(DenyReason::WholeRow(name));
                }
                self.attribute(None, &name);
            }
            Expr::CompoundIdentifier(parts) => {
                if let [.., q, c] = parts.as_slice() {
                    let (q, c) = (self.fold(q), self.fold(c));
                    self.attribute(Some(&q), &c);
                }
            }
            Expr::QualifiedWildcard(name, _) => {
                if let Some(last) = name.0.last().and_then(|p| p.as_ident()) {
                    let n = self.fold(last);
                    if self.resolves_to_table(&n) {
                        return Err(DenyReason::WholeRow(n));
                    }
                }
            }
            Expr::Function(f) => {
                if let FunctionArguments::List(list) = &f.args {
                    for arg in &list.args {
                        let (FunctionArg::Unnamed(a)
                        | FunctionArg::Named { arg: a, .. }
                        | FunctionArg::ExprNamed { arg: a, .. }) = arg;
                        if let FunctionArgExpr::QualifiedWildcard(name) = a
                            && let Some(last) = name.0.last().and_then(|p| p.as_ident())
                        {
                            let n = self.fold(last);
                            if self.resolves_to_table(&n) {
                                return Err(DenyReason::WholeRow(n));
                            }
                        }
                    }
                }
            }
            Expr::In {
                target: InTarget::Table { .. },
                ..
            } => {
                return Err(DenyReason::Unsupported("`IN <table>`".into()));
            }
            _ => {}
        }
        Ok(())
    }

    /// `schema.table.column` of a relation in scope becomes `table.column`: a substituted
    /// relation is a derived table named `table`, which a schema does not qualify.
    pub(super) fn unqualify_schema(&self, expr: &mut Expr) {
        let Expr::CompoundIdentifier(parts) = expr else {
            return;
        };
        let [_, table, _] = parts.as_slice() else {
            return;
        };
        let table = self.fold(table);
        let in_scope = self
            .frames
            .iter()
            .rev()
            .find_map(|f| f.iter().find(|v| v.name == table))
            .is_some_and(|v| v.kind == VarKind::Relation);
        if in_scope {
            parts.remove(0);
        }
    }

    /// Masks a reference to a masked column of the write target.
    pub(super) fn mask_target(&self, expr: &mut Expr) -> R {
        let Some(masks) = &self.target_masks else {
            return Ok(());
        };
        let (qualifier, column) = match &*expr {
            Expr::Identifier(id) => (None, self.fold(id)),
            Expr::CompoundIdentifier(parts) => match parts.as_slice() {
                [.., q, c] => (Some(self.fold(q)), self.fold(c)),
                _ => return Ok(()),
            },
            _ => return Ok(()),
        };
        let Some((_, strategy)) = masks.iter().find(|(m, _)| m.eq_ignore_ascii_case(&column))
        else {
            return Ok(());
        };
        if self.may_be_target(qualifier.as_deref(), &column) {
            *expr = filter_nested(self.cfg.masks.apply(*strategy, expr)?);
        }
        Ok(())
    }
}
