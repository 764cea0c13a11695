//! The walk over one statement: it resolves every relation, records what is read and written
//! (analysis) and, given the obligations, substitutes guarded relations and guards writes
//! (rewrite). The same code runs both ways, so the rewrite touches exactly what the analysis saw.
//!
//! This module walks queries (`WITH`, set operations, `SELECT`, `FROM` items); the others one
//! concern each: [`scope`] (names, range variables, attribution), [`substitute`] (guarded
//! relations), [`write`](mod@write) (`UPDATE`, `DELETE`, the write guard, `RETURNING`), [`insert`] and
//! [`merge`].

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

mod insert;
mod merge;
mod pushdown;
mod scope;
mod substitute;
mod write;

pub(crate) use pushdown::ColumnTypes;

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
    /// Whether the database compares table names without regard to case.
    pub(crate) table_names_fold: bool,
    pub(crate) rows_template: &'a Query,
    /// Declared column types, for pushing leakproof conditions into fenced relations.
    pub(crate) types: &'a ColumnTypes,
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
    /// The substitutions that can take pushed conditions.
    sites: Vec<pushdown::Site>,
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
            sites: Vec::new(),
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
        if result.is_ok() && self.rewriting() {
            self.push_down(s);
        }
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
        self.qualify(name, &table);
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
