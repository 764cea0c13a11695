//! The walk over one statement: it resolves every relation, records what is read and written
//! (analysis) and, given the obligations, substitutes guarded relations and guards writes
//! (rewrite). The same code runs both ways, so the rewrite touches exactly what the analysis saw.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::ControlFlow;

use sqlparser::ast::{
    AssignmentTarget, ConflictTarget, Cte, Delete, Expr, FromTable, FunctionArg, FunctionArgExpr,
    FunctionArguments, Ident, InTarget, Insert, JoinConstraint, JoinOperator, Merge, MergeAction,
    MergeClauseKind, MergeInsertKind, MergeUpdateKind, ObjectName, OnConflictAction, OnInsert,
    Query, Select, SelectFlavor, SelectItem, SelectItemQualifiedWildcardKind, SetExpr,
    SqliteOnConflict, Statement, TableAlias, TableFactor, TableObject, TableWithJoins, Update,
    UpdateTableFromKind, Value, VisitMut, VisitorMut, With,
};
use warden_decision::{MaskStrategy, Predicate};

use crate::catalog::Catalog;
use crate::dialect::DialectRules;
use crate::error::DenyReason;
use crate::filter::{Known, and, constant, known, to_expr};
use crate::mask::Masks;

type R<T = ()> = Result<T, DenyReason>;

/// The alias of the real table inside a substituted relation.
const SOURCE: &str = "warden_source";
/// The CTE that carries the rows of a guarded `INSERT … SELECT`.
const ROWS: &str = "warden_rows";

/// What a statement does to a relation; the `action.name` of its access request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    /// Reads rows.
    Select,
    /// Creates rows.
    Insert,
    /// Changes rows.
    Update,
    /// Removes rows.
    Delete,
}

impl Operation {
    /// `select`, `insert`, `update` or `delete`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Select => "select",
            Self::Insert => "insert",
            Self::Update => "update",
            Self::Delete => "delete",
        }
    }
}

/// A relation, by schema and name (folded by the dialect's rules).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct TableId {
    pub(crate) schema: String,
    pub(crate) table: String,
    id: String,
}

impl TableId {
    pub(crate) fn new(schema: String, table: String) -> Self {
        let id = format!("{schema}.{table}");
        Self { schema, table, id }
    }

    /// `schema.table`.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }
}

/// One (relation, operation) a statement performs, with the columns involved.
#[derive(Debug, Clone)]
pub(crate) struct AccessBuild {
    pub(crate) table: TableId,
    pub(crate) operation: Operation,
    pub(crate) columns: BTreeSet<String>,
    pub(crate) all_columns: bool,
    pub(crate) used: bool,
}

/// The obligations that apply to one relation, subject attributes resolved.
#[derive(Debug, Clone, Default)]
pub(crate) struct TablePlan {
    pub(crate) filter: Option<Predicate>,
    pub(crate) masks: BTreeMap<String, MaskStrategy>,
    /// The columns the statement may read from the relation (lower case); `None` for all. A
    /// masked substitution projects only these.
    pub(crate) read: Option<BTreeSet<String>>,
}

/// The obligations of a statement, by relation id.
#[derive(Debug, Clone, Default)]
pub(crate) struct Plan {
    pub(crate) tables: HashMap<String, TablePlan>,
}

/// A row a write creates or changes, which must satisfy the row filter of its table; checked
/// when the statement runs (bind parameters are known then).
#[derive(Debug, Clone)]
pub(crate) struct Check {
    pub(crate) table: String,
    pub(crate) predicate: Predicate,
    pub(crate) row: Vec<(String, Known)>,
}

/// What the walk needs from the policy.
pub(crate) struct Config<'a> {
    pub(crate) rules: &'static dyn DialectRules,
    pub(crate) default_schema: &'a str,
    pub(crate) catalog: &'a Catalog,
    pub(crate) allow_system: bool,
    pub(crate) masks: &'a Masks,
    pub(crate) plain_template: &'a Query,
    /// Whether substituted relations carry `OFFSET 0`.
    pub(crate) fence: bool,
    /// The per-policy random prefix of substitution placeholders.
    pub(crate) nonce: &'a str,
    pub(crate) rows_template: &'a Query,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VarKind {
    Relation,
    Target,
    Other,
}

/// A range variable: a name rows are visible under in a `FROM` (or a write's target).
#[derive(Debug, Clone)]
struct Var {
    name: String,
    kind: VarKind,
    columns: Option<Vec<String>>,
    access: Option<usize>,
}

#[derive(Debug, Clone)]
struct CteName {
    folded: String,
    raw: String,
}

pub(crate) struct Walker<'a> {
    cfg: &'a Config<'a>,
    plan: Option<&'a Plan>,
    placeholders: &'a HashMap<(u64, u64), usize>,
    pub(crate) accesses: Vec<AccessBuild>,
    pub(crate) checks: Vec<Check>,
    /// The SQL text of each substituted relation, spliced in for its placeholder.
    pub(crate) substitutions: Vec<String>,
    pub(crate) relations: usize,
    ctes: Vec<Vec<CteName>>,
    forbidden_ctes: Vec<Vec<String>>,
    frames: Vec<Vec<Var>>,
    target_masks: Option<BTreeMap<String, MaskStrategy>>,
}

impl<'a> Walker<'a> {
    pub(crate) fn new(
        cfg: &'a Config<'a>,
        plan: Option<&'a Plan>,
        placeholders: &'a HashMap<(u64, u64), usize>,
    ) -> Self {
        Self {
            cfg,
            plan,
            placeholders,
            accesses: Vec::new(),
            checks: Vec::new(),
            substitutions: Vec::new(),
            relations: 0,
            ctes: Vec::new(),
            forbidden_ctes: Vec::new(),
            frames: Vec::new(),
            target_masks: None,
        }
    }

    fn rewriting(&self) -> bool {
        self.plan.is_some()
    }

    fn fold(&self, ident: &Ident) -> String {
        self.cfg.rules.fold(ident)
    }

    /// Visits expressions (and the queries nested in them) of any AST node.
    fn visit<T: VisitMut>(&mut self, node: &mut T) -> R {
        let mut visitor = ExprVisitor {
            walker: self,
            nested: 0,
        };
        match node.visit(&mut visitor) {
            ControlFlow::Continue(()) => Ok(()),
            ControlFlow::Break(reason) => Err(reason),
        }
    }

    // ---- statements ----------------------------------------------------------------------

    pub(crate) fn statement(&mut self, statement: &mut Statement) -> R {
        match statement {
            Statement::Query(q) => self.query(q),
            Statement::Insert(i) => self.insert(i),
            Statement::Update(u) => self.update(u),
            Statement::Delete(d) => self.delete(d),
            Statement::Merge(m) => self.merge(m),
            other => Err(DenyReason::StatementKind(statement_kind(other))),
        }
    }

    fn query(&mut self, q: &mut Query) -> R {
        if q.for_clause.is_some()
            || q.settings.is_some()
            || q.format_clause.is_some()
            || !q.pipe_operators.is_empty()
        {
            return Err(DenyReason::Unsupported(
                "a `FOR`, `SETTINGS`, `FORMAT` or pipe clause".into(),
            ));
        }
        let has_with = q.with.is_some();
        if let Some(with) = &mut q.with {
            self.with(with)?;
        }
        let kept = self.set_expr(&mut q.body, true)?;
        self.visit(&mut q.order_by)?;
        self.visit(&mut q.limit_clause)?;
        self.visit(&mut q.fetch)?;
        self.visit(&mut q.locks)?;
        if kept {
            self.frames.pop();
        }
        if has_with {
            self.ctes.pop();
            self.forbidden_ctes.pop();
        }
        Ok(())
    }

    fn with(&mut self, with: &mut With) -> R {
        let names: Vec<CteName> = with
            .cte_tables
            .iter()
            .map(|c: &Cte| CteName {
                folded: self.fold(&c.alias.name),
                raw: c.alias.name.value.clone(),
            })
            .collect();
        self.ctes.push(Vec::new());
        self.forbidden_ctes.push(Vec::new());
        for (i, cte) in with.cte_tables.iter_mut().enumerate() {
            if cte.from.is_some() {
                return Err(DenyReason::Unsupported("`WITH … FROM`".into()));
            }
            // Non-recursive: a CTE sees the ones before it; its own name (and later ones) are
            // the real relations. Recursive: it sees itself, and in PostgreSQL every CTE of the
            // list; elsewhere a later name is ambiguous across databases, so it is refused.
            let visible = match (with.recursive, self.cfg.rules.recursive_ctes_see_all()) {
                (true, true) => names.len(),
                (true, false) => i + 1,
                (false, _) => i,
            };
            if let Some(scope) = self.ctes.last_mut() {
                *scope = names.iter().take(visible).cloned().collect();
            }
            if let Some(forbidden) = self.forbidden_ctes.last_mut() {
                *forbidden = if with.recursive {
                    names
                        .iter()
                        .skip(visible)
                        .map(|n| n.folded.clone())
                        .collect()
                } else {
                    Vec::new()
                };
            }
            self.query(&mut cte.query)?;
        }
        if let Some(scope) = self.ctes.last_mut() {
            *scope = names;
        }
        if let Some(forbidden) = self.forbidden_ctes.last_mut() {
            forbidden.clear();
        }
        Ok(())
    }

    /// Walks a query body. A `SELECT`'s frame stays open when `keep` (so `ORDER BY` sees it);
    /// returns whether it did.
    fn set_expr(&mut self, body: &mut SetExpr, keep: bool) -> R<bool> {
        match body {
            SetExpr::Select(select) => {
                self.select(select)?;
                if keep {
                    Ok(true)
                } else {
                    self.frames.pop();
                    Ok(false)
                }
            }
            SetExpr::Query(q) => self.query(q).map(|()| false),
            SetExpr::SetOperation { left, right, .. } => {
                self.set_expr(left, false)?;
                self.set_expr(right, false)?;
                Ok(false)
            }
            SetExpr::Values(values) => self.visit(values).map(|()| false),
            SetExpr::Insert(s) | SetExpr::Update(s) | SetExpr::Delete(s) | SetExpr::Merge(s) => {
                match s {
                    Statement::Insert(i) => self.insert(i)?,
                    Statement::Update(u) => self.update(u)?,
                    Statement::Delete(d) => self.delete(d)?,
                    Statement::Merge(m) => self.merge(m)?,
                    other => return Err(DenyReason::StatementKind(statement_kind(other))),
                }
                Ok(false)
            }
            SetExpr::Table(_) => Err(DenyReason::Unsupported(
                "the `TABLE` command (write `SELECT * FROM`)".into(),
            )),
        }
    }

    /// Walks a `SELECT` and leaves its frame open.
    fn select(&mut self, s: &mut Select) -> R {
        if s.into.is_some() {
            return Err(DenyReason::Unsupported("`SELECT … INTO`".into()));
        }
        if !s.lateral_views.is_empty()
            || s.prewhere.is_some()
            || !s.connect_by.is_empty()
            || !s.cluster_by.is_empty()
            || !s.distribute_by.is_empty()
            || !s.sort_by.is_empty()
            || s.value_table_mode.is_some()
            || s.flavor != SelectFlavor::Standard
        {
            return Err(DenyReason::Unsupported(
                "a `SELECT` clause of another dialect".into(),
            ));
        }
        if !s.optimizer_hints.is_empty() {
            return Err(DenyReason::Unsupported("optimizer hints".into()));
        }
        self.frames.push(Vec::new());
        let mut from = std::mem::take(&mut s.from);
        for item in &mut from {
            self.table_with_joins(item)?;
        }
        for item in &s.projection {
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
        let result = self.visit(s);
        s.from = from;
        result
    }

    fn table_with_joins(&mut self, t: &mut TableWithJoins) -> R {
        self.table_factor(&mut t.relation)?;
        for join in &mut t.joins {
            self.table_factor(&mut join.relation)?;
            let constraint = match &mut join.join_operator {
                JoinOperator::Join(c)
                | JoinOperator::Inner(c)
                | JoinOperator::Left(c)
                | JoinOperator::LeftOuter(c)
                | JoinOperator::Right(c)
                | JoinOperator::RightOuter(c)
                | JoinOperator::FullOuter(c)
                | JoinOperator::CrossJoin(c)
                | JoinOperator::StraightJoin(c) => c,
                _ => {
                    return Err(DenyReason::Unsupported(
                        "a join of another dialect (APPLY, ASOF, SEMI, ANTI, ARRAY)".into(),
                    ));
                }
            };
            match constraint {
                JoinConstraint::On(e) => self.visit(e)?,
                JoinConstraint::Using(names) => {
                    let columns: Vec<String> = names
                        .iter()
                        .filter_map(|n| n.0.last().and_then(|p| p.as_ident()))
                        .map(|i| self.fold(i))
                        .collect();
                    for c in columns {
                        self.attribute(None, &c);
                    }
                }
                JoinConstraint::Natural => self.all_columns_of_frame(),
                JoinConstraint::None => {}
                JoinConstraint::UsingAlias(..) => {
                    return Err(DenyReason::Unsupported("`USING … AS`".into()));
                }
            }
        }
        Ok(())
    }

    fn table_factor(&mut self, factor: &mut TableFactor) -> R {
        match factor {
            TableFactor::Table { .. } => self.relation(factor),
            TableFactor::Derived {
                subquery, alias, ..
            } => {
                self.query(subquery)?;
                let name = alias.as_ref().map(|a| self.fold(&a.name));
                let columns = alias.as_ref().and_then(|a| {
                    (!a.columns.is_empty())
                        .then(|| a.columns.iter().map(|c| self.fold(&c.name)).collect())
                });
                self.push_var(name, VarKind::Other, columns, None);
                Ok(())
            }
            TableFactor::Function { args, alias, .. } => {
                self.visit(args)?;
                let name = alias.as_ref().map(|a| self.fold(&a.name));
                self.push_var(name, VarKind::Other, None, None);
                Ok(())
            }
            TableFactor::TableFunction { expr, alias } => {
                self.visit(expr)?;
                let name = alias.as_ref().map(|a| self.fold(&a.name));
                self.push_var(name, VarKind::Other, None, None);
                Ok(())
            }
            TableFactor::UNNEST {
                array_exprs, alias, ..
            } => {
                self.visit(array_exprs)?;
                let name = alias.as_ref().map(|a| self.fold(&a.name));
                self.push_var(name, VarKind::Other, None, None);
                Ok(())
            }
            TableFactor::JsonTable {
                json_expr, alias, ..
            } => {
                self.visit(json_expr)?;
                let name = alias.as_ref().map(|a| self.fold(&a.name));
                self.push_var(name, VarKind::Other, None, None);
                Ok(())
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                let Some(alias) = alias.clone() else {
                    return self.table_with_joins(table_with_joins);
                };
                if !alias.columns.is_empty() {
                    return Err(DenyReason::Unsupported(
                        "column aliases on a parenthesized join".into(),
                    ));
                }
                // `(a JOIN b) AS j`: only `j` is visible outside, with the columns of both; a
                // reference `j.c` cannot be told apart, so every column of each is read.
                let start = self.frames.last().map_or(0, Vec::len);
                self.table_with_joins(table_with_joins)?;
                let inner: Vec<Var> = self
                    .frames
                    .last_mut()
                    .map(|f| f.split_off(start.min(f.len())))
                    .unwrap_or_default();
                let mut columns = Some(Vec::new());
                for var in &inner {
                    self.mark_all(var.access);
                    match (&mut columns, &var.columns) {
                        (Some(all), Some(these)) => all.extend(these.iter().cloned()),
                        _ => columns = None,
                    }
                }
                let name = self.fold(&alias.name);
                self.push_var(Some(name), VarKind::Other, columns, None);
                Ok(())
            }
            _ => Err(DenyReason::Unsupported(
                "this kind of `FROM` item (PIVOT, MATCH_RECOGNIZE, XMLTABLE, …)".into(),
            )),
        }
    }

    /// A named relation in `FROM`: a CTE, a table-valued function or a real relation.
    fn relation(&mut self, factor: &mut TableFactor) -> R {
        let TableFactor::Table {
            name, alias, args, ..
        } = factor
        else {
            return Ok(());
        };
        self.relations += 1;
        if args.is_some() {
            // A table-valued function (its name passed the deny-list).
            self.visit(args)?;
            let name = alias.as_ref().map(|a| self.fold(&a.name));
            self.push_var(name, VarKind::Other, None, None);
            return Ok(());
        }
        let parts = name_parts(name)?;
        if let [single] = parts.as_slice()
            && let Some(cte) = self.lookup_cte(single)?
        {
            let visible = alias.as_ref().map_or(cte, |a| self.fold(&a.name));
            self.push_var(Some(visible), VarKind::Other, None, None);
            return Ok(());
        }
        let table = self.table_id(&parts)?;
        let visible = match alias {
            Some(a) => self.fold(&a.name),
            None => table.table.clone(),
        };
        let columns = self.catalog_columns(&table);
        let access = if self.rewriting() {
            None
        } else {
            Some(self.access(&table, Operation::Select, true))
        };
        self.push_var(Some(visible), VarKind::Relation, columns, access);
        if let Some(plan) = self.plan
            && let Some(tp) = plan.tables.get(table.id())
            && (tp.filter.is_some() || !tp.masks.is_empty())
        {
            *factor = self.substitute(factor, &table, tp)?;
        }
        Ok(())
    }

    /// `(SELECT <masked projection> FROM t AS warden_source WHERE <filter>) AS <alias>`,
    /// as SQL text, with a placeholder relation in the tree where it goes. Building the text
    /// from printed, escaped pieces costs a fraction of building and printing the tree.
    fn substitute(
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
        if let Some(filter) = &tp.filter {
            text.push_str(" WHERE ");
            text.push_str(
                &self
                    .filter_expr(filter, &Ident::new(SOURCE), table)?
                    .to_string(),
            );
        }
        if self.cfg.fence {
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
    fn masked_projection_text(
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
    fn masked_columns(
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
    fn filter_expr(&self, filter: &Predicate, qualifier: &Ident, table: &TableId) -> R<Expr> {
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

    // ---- writes --------------------------------------------------------------------------

    /// Resolves the target of a write and opens its frame.
    fn write_target(&mut self, name: &ObjectName, alias: Option<&Ident>) -> R<(TableId, Ident)> {
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

    fn end_write(&mut self) {
        self.frames.pop();
        self.target_masks = None;
    }

    fn table_plan(&self, table: &TableId) -> Option<&'a TablePlan> {
        self.plan.and_then(|p| p.tables.get(table.id()))
    }

    fn update(&mut self, u: &mut Update) -> R {
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

    fn delete(&mut self, d: &mut Delete) -> R {
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

    fn insert(&mut self, i: &mut Insert) -> R {
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
    fn guard_insert_select(
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

    fn merge(&mut self, m: &mut Merge) -> R {
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

    /// The condition of a guarded write: `CASE WHEN <filter> THEN <caller's> ELSE false END`,
    /// so the database evaluates the caller's expression only on rows the filter admits (its
    /// errors can then only quote those), whatever order the planner picks. PostgreSQL also gets
    /// the filter on its own, for index scans (its planner derives nothing from a `CASE`
    /// branch); MySQL and SQLite propagate constants from one conjunct into others, so there the
    /// `CASE` stands alone.
    fn guard(&self, filter: Expr, caller: Option<Expr>) -> Expr {
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
    fn refuse_tuple_assignments(
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

    /// The row filter over a new row: assigned columns take their (pure) value expressions,
    /// the others the target's columns (`qualifier`), or cannot be proven (an insert).
    /// `None` when no assigned column is in the filter.
    fn substituted_filter(
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

    /// Records the check of a new row (literal or parameter values only).
    fn check_row(&mut self, table: &TableId, filter: &Predicate, row: &[(String, &Expr)]) -> R {
        let check = self.row_check(table, filter, row)?;
        self.checks.push(check);
        Ok(())
    }

    fn row_check(&self, table: &TableId, filter: &Predicate, row: &[(String, &Expr)]) -> R<Check> {
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

    /// Checks the assignments of an update to filter columns: the new values must be literals
    /// or bind parameters (or, in `ON CONFLICT`, the same column of `excluded`, which the
    /// insert check covers).
    fn check_assignments(
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

    fn known(&self, expr: &Expr) -> Option<Known> {
        let placeholders = self.placeholders;
        known(expr, self.cfg.rules, &|e: &Expr| {
            let Expr::Value(v) = e else { return None };
            let start = v.span.start;
            placeholders.get(&(start.line, start.column)).copied()
        })
    }

    fn assigned(&self, assignments: &[sqlparser::ast::Assignment]) -> Vec<String> {
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
    fn returning(
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

    // ---- names and scopes ----------------------------------------------------------------

    fn lookup_cte(&self, ident: &Ident) -> R<Option<String>> {
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

    fn table_id(&self, parts: &[Ident]) -> R<TableId> {
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
        let id = TableId::new(schema, table);
        if !self.cfg.allow_system && self.cfg.rules.is_system(&id.schema, &id.table, qualified) {
            return Err(DenyReason::SystemCatalog(id.id().to_owned()));
        }
        Ok(id)
    }

    fn catalog_columns(&self, table: &TableId) -> Option<Vec<String>> {
        self.cfg
            .catalog
            .columns(table.id())
            .map(|cols| cols.iter().map(|c| c.to_ascii_lowercase()).collect())
    }

    fn access(&mut self, table: &TableId, operation: Operation, used: bool) -> usize {
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

    fn add_columns(&mut self, access: usize, columns: &[String]) {
        if let Some(a) = self.accesses.get_mut(access) {
            a.columns.extend(columns.iter().cloned());
        }
    }

    fn push_var(
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

    fn mark_all(&mut self, access: Option<usize>) {
        if let Some(a) = access.and_then(|a| self.accesses.get_mut(a)) {
            a.all_columns = true;
            a.used = true;
        }
    }

    fn all_columns_of_frame(&mut self) {
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

    fn all_columns_of(&mut self, name: &str) {
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
    fn attribute(&mut self, qualifier: Option<&str>, column: &str) {
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
    fn is_whole_row(&self, name: &str) -> bool {
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

    fn resolves_to_table(&self, qualifier: &str) -> bool {
        self.frames
            .iter()
            .rev()
            .find_map(|f| f.iter().find(|v| v.name == qualifier))
            .is_some_and(|v| v.kind != VarKind::Other)
    }

    /// Whether a column reference may be the write target's (then a mask applies to it).
    fn may_be_target(&self, qualifier: Option<&str>, column: &str) -> bool {
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
    fn inspect(&mut self, expr: &Expr) -> R {
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
    fn unqualify_schema(&self, expr: &mut Expr) {
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
    fn mask_target(&self, expr: &mut Expr) -> R {
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

fn filter_nested(e: Expr) -> Expr {
    Expr::Nested(Box::new(e))
}

/// The placeholder relation name of substitution `i`: the policy's random nonce and a
/// fixed-width number (so no placeholder is a prefix of another).
pub(crate) fn placeholder(nonce: &str, i: usize) -> String {
    format!("{nonce}_{i:06}_")
}

/// Drops the top-level conjuncts that mention no assigned column (they held for the old row
/// and still hold).
fn prune(filter: &Predicate, assigned: &BTreeSet<String>) -> Predicate {
    match filter {
        Predicate::And(parts) => Predicate::And(
            parts
                .iter()
                .map(|p| {
                    if p.columns()
                        .iter()
                        .any(|c| assigned.contains(&c.to_ascii_lowercase()))
                    {
                        prune(p, assigned)
                    } else {
                        Predicate::Const(true)
                    }
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The rows of a plain `VALUES` source (no `WITH`, `ORDER BY`, `LIMIT`).
fn plain_values(q: &Query) -> Option<Vec<&Vec<Expr>>> {
    if q.with.is_some() || q.order_by.is_some() || q.limit_clause.is_some() || q.fetch.is_some() {
        return None;
    }
    match q.body.as_ref() {
        SetExpr::Values(v) => Some(v.rows.iter().map(|r| &r.content).collect()),
        _ => None,
    }
}

/// An expression that may be evaluated twice with the same result: references, literals,
/// numbered parameters and operators over them.
fn pure(e: &Expr) -> bool {
    match e {
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => true,
        Expr::Value(v) => match &v.value {
            Value::Placeholder(p) => p.starts_with('$'),
            _ => true,
        },
        Expr::Nested(inner)
        | Expr::Cast { expr: inner, .. }
        | Expr::UnaryOp { expr: inner, .. } => pure(inner),
        Expr::BinaryOp { left, right, .. } => pure(left) && pure(right),
        _ => false,
    }
}

fn name_parts(name: &ObjectName) -> R<Vec<Ident>> {
    name.0
        .iter()
        .map(|p| {
            p.as_ident()
                .cloned()
                .ok_or_else(|| DenyReason::Unsupported("a computed relation name".into()))
        })
        .collect()
}

/// The statement's leading keywords, for the deny reason (`CREATE TABLE`, `COPY`, `SET`).
pub(crate) fn statement_kind(statement: &Statement) -> String {
    if let Statement::Explain { analyze: true, .. } = statement {
        return "EXPLAIN ANALYZE".into();
    }
    let text = statement.to_string();
    let words: Vec<&str> = text
        .split_whitespace()
        .take_while(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .take(2)
        .collect();
    if words.is_empty() {
        "this".into()
    } else {
        words.join(" ")
    }
}

/// Visits expressions: at the top level it inspects them and masks target references; a query
/// nested in an expression is walked by the [`Walker`] (with scopes) and skipped here.
struct ExprVisitor<'w, 'a> {
    walker: &'w mut Walker<'a>,
    nested: usize,
}

impl VisitorMut for ExprVisitor<'_, '_> {
    type Break = DenyReason;

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<DenyReason> {
        if self.nested == 0
            && let Err(reason) = self.walker.query(query)
        {
            return ControlFlow::Break(reason);
        }
        self.nested += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &mut Query) -> ControlFlow<DenyReason> {
        self.nested = self.nested.saturating_sub(1);
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, _factor: &mut TableFactor) -> ControlFlow<DenyReason> {
        if self.nested == 0 {
            // Every FROM item is walked by the Walker; one reached here is somewhere else.
            return ControlFlow::Break(DenyReason::Unsupported(
                "a relation in a position the PEP does not analyse".into(),
            ));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<DenyReason> {
        if self.nested == 0
            && let Err(reason) = self.walker.inspect(expr)
        {
            return ControlFlow::Break(reason);
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<DenyReason> {
        if self.nested == 0 && self.walker.rewriting() {
            self.walker.unqualify_schema(expr);
            if let Err(reason) = self.walker.mask_target(expr) {
                return ControlFlow::Break(reason);
            }
        }
        ControlFlow::Continue(())
    }
}
