//! Pushdown: the caller's leakproof conditions on a guarded relation, copied into its fenced
//! substitution, so the database can use them in index scans without ever evaluating anything
//! else on a row the filter removes.
//!
//! The fence (`OFFSET 0`, a `LIMIT`) keeps the planner from moving the caller's conditions
//! into the substituted relation, where it could evaluate them before the row filter and leak
//! a filtered row through an error (`invalid input syntax for type integer: "…"`), a warning or
//! a function's side effect. It also keeps the caller's selective conditions out of the scan.
//! PostgreSQL's security-barrier views and row-level security solve this by pushing only
//! *leakproof* conditions below the barrier: those whose functions cannot reveal their inputs
//! (`pg_proc.proleakproof`). The same rule here:
//!
//! - only top-level `AND` conjuncts of a `SELECT`'s `WHERE`, each referring to exactly one
//!   substituted relation of that `SELECT`'s own `FROM`, which is not on the nullable side of
//!   an outer join (`LEFT`'s right side, `RIGHT`'s left, either side of `FULL`) nor in a
//!   parenthesised join, and has no column aliases;
//! - built only from `AND`, `OR`, `NOT`, parentheses, `IS [NOT] NULL`, and comparisons (`=`,
//!   `<>`, `<`, `<=`, `>`, `>=`, `BETWEEN`, `IN (…)`) of a plain column of that relation with
//!   literals and bind parameters, each comparison on the dialect's list below for the
//!   column's declared type ([`SqlPolicyBuilder::column_types`](crate::SqlPolicyBuilder::column_types));
//! - never naming a masked column (inside the fence it would compare the raw value: a leak by
//!   row count), never a function call, a cast, a subquery, `LIKE` or a regular expression,
//!   arithmetic (division by zero), or a column of another relation.
//!
//! The conjunct is copied, not moved: it still runs outside, so the result is the same
//! whether it was pushed or not, and inside it runs in the same `WHERE` as the row filter,
//! `AND`-ed with it, where order does not matter because it cannot fail or reveal anything.
//!
//! # The lists
//!
//! **PostgreSQL** (checked against `pg_proc.proleakproof` of PostgreSQL 15 by the unit test
//! `postgres_marks_every_listed_operator_leakproof`): `= <> < <= > >=` on `smallint`,
//! `integer`, `bigint` (and across them: `int48eq`, `int84lt`, …), on `real` and `double
//! precision` (`float48eq`, …), `text` and `varchar` (`texteq`, `text_lt`, …), `char`
//! (`bpchareq`, …), `boolean`, `bytea`, `date`, `time`, `timestamp`, `timestamptz`,
//! `interval` and `uuid`, each with itself. Not listed, because PostgreSQL does not mark them
//! leakproof: `numeric` (`numeric_eq`), comparisons across `date`, `timestamp` and
//! `timestamptz` (`date_eq_timestamp`, …), enums, arrays, ranges, `jsonb`, geometric and text
//! search types. The literal side decides the operator as PostgreSQL's resolution does: an
//! untyped string takes the column's type; an integer literal is `integer` or `bigint` (a
//! decimal or larger one is `numeric`, pushed only against floating-point columns, where the
//! constant is converted); a typed literal (`DATE '…'`) must have the column's type. A bind
//! parameter has the type the client gives it: untyped, it takes the column's; the adapters
//! bind [`SqlValue`](crate::SqlValue)s as `bigint`, `double precision`, `text`, `boolean` or
//! `bytea`, each of which either meets a listed operator (integers and floats convert to
//! `double precision` with the leakproof `float8(integer)`) or has no operator with the column's
//! type at all (an error when the statement is planned, before any row is read). A `char`
//! column is compared with a `text` parameter through the non-leakproof `text(bpchar)`, so
//! parameters are not pushed against `char` columns.
//!
//! **MySQL and MariaDB** raise no errors in comparisons, but a conversion warning quotes the
//! value it could not convert (`Truncated incorrect DOUBLE value: '…'`), so a comparison is
//! pushed only where no stored value is converted: numeric and temporal columns (`int`,
//! `bigint`, `decimal`, `double`, `date`, `datetime`, `timestamp`, `time`, `year`, …) with
//! number or string literals (the literal is converted, once), string columns (`char`,
//! `varchar`, `text`, …) with string literals. `?` parameters are numbered by position, and a
//! copy would shift every one after it: conjuncts with parameters are not pushed.
//!
//! **SQLite** compares any two values without an error or a conversion (type affinity aside,
//! which does not fail), so every listed comparison of a column with a literal or a numbered
//! parameter (`?NNN`) is pushed, whatever the column's declared type. `?`, `:name`, `@name`
//! and `$name` are numbered by first appearance, which a copy would change: not pushed.
//!
//! The generic dialect has no fence by default and no list.

use sqlparser::ast::{BinaryOperator, Expr, UnaryOperator, Value};

use crate::dialect::Dialect;

use super::*;

/// The declared types of guarded relations' columns, by relation id and column (lower case).
#[derive(Debug, Clone, Default)]
pub(crate) struct ColumnTypes {
    tables: HashMap<String, HashMap<String, String>>,
}

impl ColumnTypes {
    /// Declares the types of `columns` of `table` (`schema.table` or `table`).
    pub(crate) fn insert(
        &mut self,
        table: &str,
        columns: impl IntoIterator<Item = (String, String)>,
    ) {
        let entry = self.tables.entry(table.to_ascii_lowercase()).or_default();
        for (column, ty) in columns {
            entry.insert(column.to_ascii_lowercase(), ty);
        }
    }

    /// The declared type of `column` of `table`: an entry for `schema.table` wins over one for
    /// the bare table name.
    fn get(&self, table: &TableId, column: &str) -> Option<&str> {
        let column = column.to_ascii_lowercase();
        let find = |key: &str| {
            self.tables
                .get(key)
                .and_then(|t| t.get(&column))
                .map(String::as_str)
        };
        find(&table.id().to_ascii_lowercase()).or_else(|| find(&table.table.to_ascii_lowercase()))
    }
}

/// A substituted relation whose `WHERE` can take pushed conditions.
#[derive(Debug, Clone)]
pub(crate) struct Site {
    /// The substitution's index (its placeholder).
    pub(crate) index: usize,
    pub(crate) table: TableId,
    /// The name it is visible under (folded).
    pub(crate) visible: String,
    /// Whether it has column aliases (`AS p (a, b)`), which rename its columns.
    pub(crate) renamed: bool,
    /// The byte range of the row filter in the substitution's text.
    pub(crate) filter: Option<(usize, usize)>,
    /// Where a condition goes when there is no filter (before the fence).
    pub(crate) end: usize,
}

/// The type class of a column, for the dialect's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Integers (PostgreSQL `smallint`, `integer`, `bigint`; MySQL's integer types).
    Int,
    /// Floating point.
    Float,
    /// MySQL `decimal` (PostgreSQL `numeric` is not leakproof and has no class).
    Decimal,
    /// `text`, `varchar` (MySQL: every string type).
    Text,
    /// PostgreSQL `char(n)`.
    Bpchar,
    /// Booleans.
    Bool,
    /// Another type whose comparisons with itself are leakproof (PostgreSQL) or convert no
    /// stored value (MySQL temporal types), by its normalised name.
    Other(&'static str),
}

/// A literal or parameter compared with a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operand<'e> {
    /// An integer literal that fits `bigint`.
    Int,
    /// A decimal literal, or an integer beyond `bigint`.
    Decimal,
    /// An untyped string literal.
    Str,
    /// `TRUE` / `FALSE`.
    Bool,
    /// A typed literal (`DATE '…'`), by its type's text.
    Typed(&'e str),
    /// A bind parameter the dialect numbers explicitly.
    Param,
}

/// PostgreSQL's type names, normalised to the class of the list.
fn postgres_class(ty: &str) -> Option<Class> {
    Some(match base_type(ty).as_str() {
        "smallint" | "int2" | "integer" | "int" | "int4" | "bigint" | "int8" | "smallserial"
        | "serial" | "bigserial" | "serial2" | "serial4" | "serial8" => Class::Int,
        "real" | "float4" | "double precision" | "float8" | "float" => Class::Float,
        "text" | "varchar" | "character varying" => Class::Text,
        "char" | "character" | "bpchar" => Class::Bpchar,
        "boolean" | "bool" => Class::Bool,
        "bytea" => Class::Other("bytea"),
        "date" => Class::Other("date"),
        "time" | "time without time zone" => Class::Other("time"),
        "timestamp" | "timestamp without time zone" => Class::Other("timestamp"),
        "timestamptz" | "timestamp with time zone" => Class::Other("timestamptz"),
        "interval" => Class::Other("interval"),
        "uuid" => Class::Other("uuid"),
        _ => return None,
    })
}

/// MySQL's and MariaDB's type names, normalised.
fn mysql_class(ty: &str) -> Option<Class> {
    let base = base_type(ty);
    let base = base.strip_suffix(" unsigned").unwrap_or(&base).to_owned();
    Some(match base.as_str() {
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "bool"
        | "boolean" | "bit" => Class::Int,
        "decimal" | "numeric" | "dec" | "fixed" => Class::Decimal,
        "float" | "double" | "real" | "double precision" => Class::Float,
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "character"
        | "character varying" => Class::Text,
        "date" => Class::Other("date"),
        "datetime" => Class::Other("datetime"),
        "timestamp" => Class::Other("timestamp"),
        "time" => Class::Other("time"),
        "year" => Class::Other("year"),
        _ => return None,
    })
}

/// A type name in lower case, without its modifiers (`varchar(20)` is `varchar`, `timestamp(3)
/// with time zone` is `timestamp with time zone`) and with single spaces. Arrays keep their
/// brackets, so they match nothing.
fn base_type(ty: &str) -> String {
    let mut out = String::with_capacity(ty.len());
    let mut depth = 0usize;
    for c in ty.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth > 0 => {}
            c => out.push(c.to_ascii_lowercase()),
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether comparing a column of `column` type with `operand` is on the dialect's list.
fn comparable(dialect: Dialect, column: Option<&str>, operand: Operand<'_>) -> bool {
    match dialect {
        Dialect::Postgres => {
            let Some(class) = column.and_then(postgres_class) else {
                return false;
            };
            match operand {
                // Takes the column's type: the column's own (listed) operator.
                Operand::Str => true,
                Operand::Int => matches!(class, Class::Int | Class::Float),
                // A `numeric` constant: converted to a float column's type; an integer column
                // would be converted to `numeric` (not leakproof).
                Operand::Decimal => class == Class::Float,
                Operand::Bool => class == Class::Bool,
                Operand::Typed(ty) => postgres_class(ty) == Some(class),
                Operand::Param => class != Class::Bpchar,
            }
        }
        Dialect::MySql => {
            let Some(class) = column.and_then(mysql_class) else {
                return false;
            };
            match operand {
                Operand::Str => true,
                Operand::Int | Operand::Decimal | Operand::Bool => class != Class::Text,
                Operand::Typed(_) | Operand::Param => false,
            }
        }
        Dialect::Sqlite => !matches!(operand, Operand::Typed(_)),
        Dialect::Generic => false,
    }
}

/// Whether two columns' types compare with a listed operator.
fn comparable_columns(dialect: Dialect, a: Option<&str>, b: Option<&str>) -> bool {
    match dialect {
        Dialect::Postgres => match (a.and_then(postgres_class), b.and_then(postgres_class)) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        },
        Dialect::MySql => match (a.and_then(mysql_class), b.and_then(mysql_class)) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        },
        Dialect::Sqlite => true,
        Dialect::Generic => false,
    }
}

/// Whether a column of this type is a condition by itself without a conversion that could
/// fail or warn.
fn truth_value(dialect: Dialect, column: Option<&str>) -> bool {
    match dialect {
        Dialect::Postgres => column.and_then(postgres_class) == Some(Class::Bool),
        Dialect::MySql => column.and_then(mysql_class) == Some(Class::Int),
        Dialect::Sqlite => true,
        Dialect::Generic => false,
    }
}

fn comparison(op: &BinaryOperator) -> bool {
    matches!(
        op,
        BinaryOperator::Eq
            | BinaryOperator::NotEq
            | BinaryOperator::Lt
            | BinaryOperator::LtEq
            | BinaryOperator::Gt
            | BinaryOperator::GtEq
    )
}

/// The top-level `AND` conjuncts of a condition (through parentheses).
fn conjuncts<'e>(e: &'e Expr, out: &mut Vec<&'e Expr>) {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            conjuncts(left, out);
            conjuncts(right, out);
        }
        Expr::Nested(inner) => conjuncts(inner, out),
        other => out.push(other),
    }
}

/// Whether the substituted relations of one `FROM` item can take pushed conditions: not on
/// the nullable side of an outer join. Indexed like the item's relation and its joins.
fn non_nullable(item: &TableWithJoins) -> Vec<bool> {
    let mut ok = vec![true];
    for join in &item.joins {
        match &join.join_operator {
            JoinOperator::Join(_)
            | JoinOperator::Inner(_)
            | JoinOperator::CrossJoin(_)
            | JoinOperator::StraightJoin(_) => ok.push(true),
            JoinOperator::Left(_) | JoinOperator::LeftOuter(_) => ok.push(false),
            JoinOperator::Right(_) | JoinOperator::RightOuter(_) => {
                ok.iter_mut().for_each(|o| *o = false);
                ok.push(true);
            }
            _ => {
                ok.iter_mut().for_each(|o| *o = false);
                ok.push(false);
            }
        }
    }
    ok
}

impl Walker<'_> {
    /// Copies the leakproof conjuncts of `s`'s `WHERE` into the substituted relations of its
    /// `FROM` they refer to.
    pub(super) fn push_down(&mut self, s: &Select) {
        if !self.cfg.fence || self.sites.is_empty() {
            return;
        }
        let Some(selection) = &s.selection else {
            return;
        };
        // The substitutions of this `FROM`, by the name they are visible under.
        let mut here: Vec<usize> = Vec::new();
        for item in &s.from {
            let factors =
                std::iter::once(&item.relation).chain(item.joins.iter().map(|j| &j.relation));
            for (factor, ok) in factors.zip(non_nullable(item)) {
                if let (true, Some(site)) = (ok, self.site_of(factor)) {
                    here.push(site);
                }
            }
        }
        if here.is_empty() {
            return;
        }
        let mut parts = Vec::new();
        conjuncts(selection, &mut parts);
        // Equalities between columns of two relations, in `WHERE` or an inner join's `ON`: a
        // pushed `x = v` with `x = y` gives `y = v` too (every row of the result has both), as
        // PostgreSQL's equivalence classes do.
        let mut equalities: Vec<(&Expr, &Expr)> = Vec::new();
        let mut on = Vec::new();
        for item in &s.from {
            for join in &item.joins {
                if let JoinOperator::Join(JoinConstraint::On(e))
                | JoinOperator::Inner(JoinConstraint::On(e)) = &join.join_operator
                {
                    conjuncts(e, &mut on);
                }
            }
        }
        for part in parts.iter().chain(&on) {
            if let Expr::BinaryOp {
                left,
                op: BinaryOperator::Eq,
                right,
            } = part
                && is_column(left)
                && is_column(right)
            {
                equalities.push((left, right));
                equalities.push((right, left));
            }
        }
        let mut candidates: Vec<Expr> = parts.iter().map(|p| (*p).clone()).collect();
        for part in &parts {
            let Expr::BinaryOp {
                left,
                op: BinaryOperator::Eq,
                right,
            } = part
            else {
                continue;
            };
            let (column, value) = match (is_column(left), is_column(right)) {
                (true, false) => (left.as_ref(), right.as_ref()),
                (false, true) => (right.as_ref(), left.as_ref()),
                _ => continue,
            };
            let Some(origin) = self.resolve(column, &here) else {
                continue;
            };
            for (x, y) in &equalities {
                if self.resolve(x, &here) == Some(origin.clone())
                    && let Some(target) = self.resolve(y, &here)
                    && target.0 != origin.0
                    && self.same_class(&origin, &target)
                {
                    candidates.push(Expr::BinaryOp {
                        left: Box::new((*y).clone()),
                        op: BinaryOperator::Eq,
                        right: Box::new(value.clone()),
                    });
                }
            }
        }
        let mut pushed: Vec<(usize, Vec<String>)> = Vec::new();
        for part in &candidates {
            let mut refs = Vec::new();
            if !self.leakproof(part, &mut refs) {
                continue;
            }
            let Some(site) = self.one_site(&refs, &here) else {
                continue;
            };
            let mut copy = part.clone();
            requalify(&mut copy);
            let text = copy.to_string();
            match pushed.iter_mut().find(|(s, _)| *s == site) {
                Some((_, texts)) if texts.contains(&text) => {}
                Some((_, texts)) => texts.push(text),
                None => pushed.push((site, vec![text])),
            }
        }
        for (site, texts) in pushed {
            self.splice(site, &texts);
        }
    }

    /// The site and column a plain, unmasked column reference resolves to.
    fn resolve(&self, e: &Expr, here: &[usize]) -> Option<(usize, String)> {
        let mut refs = Vec::new();
        self.column(e, &mut refs)?;
        let site = self.one_site(&refs, here)?;
        refs.pop().map(|(_, c)| (site, c))
    }

    /// Whether two columns' declared types compare with a listed operator (so their equality
    /// is transitive with the same literal).
    fn same_class(&self, a: &(usize, String), b: &(usize, String)) -> bool {
        let ty = |(site, column): &(usize, String)| {
            self.sites
                .get(*site)
                .and_then(|s| self.cfg.types.get(&s.table, column))
        };
        comparable_columns(self.cfg.rules.dialect(), ty(a), ty(b))
    }

    /// The position in `self.sites` of a placeholder relation.
    fn site_of(&self, factor: &TableFactor) -> Option<usize> {
        let TableFactor::Table {
            name, alias: None, ..
        } = factor
        else {
            return None;
        };
        let [part] = name.0.as_slice() else {
            return None;
        };
        let ident = part.as_ident()?;
        let number = ident
            .value
            .strip_prefix(self.cfg.nonce)?
            .strip_prefix('_')?
            .strip_suffix('_')?;
        let index: usize = number.parse().ok()?;
        self.sites.iter().position(|s| s.index == index)
    }

    /// The one site every column reference of a conjunct resolves to.
    fn one_site(&self, refs: &[(Option<String>, String)], here: &[usize]) -> Option<usize> {
        let frame = self.frames.last()?;
        let mut found: Option<usize> = None;
        for (qualifier, column) in refs {
            let var = match qualifier {
                Some(q) => {
                    let mut named = frame.iter().filter(|v| &v.name == q);
                    match (named.next(), named.next()) {
                        (Some(v), None) => v,
                        _ => return None,
                    }
                }
                None => {
                    // The innermost scope that has the column binds it; any relation of
                    // unknown columns makes that uncertain.
                    if frame.iter().any(|v| v.columns.is_none()) {
                        return None;
                    }
                    let mut having = frame.iter().filter(|v| {
                        v.columns
                            .as_ref()
                            .is_some_and(|c| c.iter().any(|c| c.eq_ignore_ascii_case(column)))
                    });
                    match (having.next(), having.next()) {
                        (Some(v), None) => v,
                        _ => return None,
                    }
                }
            };
            if var.kind != VarKind::Relation {
                return None;
            }
            let mut sites = here
                .iter()
                .copied()
                .filter(|&i| self.sites.get(i).is_some_and(|s| s.visible == var.name));
            let site = match (sites.next(), sites.next()) {
                (Some(i), None) => i,
                _ => return None,
            };
            let s = self.sites.get(site)?;
            if s.renamed || !self.plain_column(&s.table, column) {
                return None;
            }
            match found {
                Some(f) if f != site => return None,
                _ => found = Some(site),
            }
        }
        found
    }

    /// Whether `column` is a column of `table` that no mask applies to.
    fn plain_column(&self, table: &TableId, column: &str) -> bool {
        let known = self
            .cfg
            .catalog
            .columns(table.id())
            .is_some_and(|cols| cols.iter().any(|c| c.eq_ignore_ascii_case(column)));
        let masked = self
            .plan
            .and_then(|p| p.tables.get(table.id()))
            .is_some_and(|tp| tp.masks.keys().any(|m| m.eq_ignore_ascii_case(column)));
        known && !masked
    }

    /// Whether a conjunct is built only of listed parts; collects its column references.
    fn leakproof(&self, e: &Expr, refs: &mut Vec<(Option<String>, String)>) -> bool {
        match e {
            Expr::Nested(inner) => self.leakproof(inner, refs),
            Expr::BinaryOp {
                left,
                op: BinaryOperator::And | BinaryOperator::Or,
                right,
            } => self.leakproof(left, refs) && self.leakproof(right, refs),
            Expr::UnaryOp {
                op: UnaryOperator::Not,
                expr,
            } => self.leakproof(expr, refs),
            Expr::IsNull(inner) | Expr::IsNotNull(inner) => self.column(inner, refs).is_some(),
            // A column as a condition: a boolean (MySQL: a number) is its own truth value.
            Expr::Identifier(_) | Expr::CompoundIdentifier(_) => match self.column(e, refs) {
                Some(c) => truth_value(self.cfg.rules.dialect(), self.type_of(refs, c)),
                None => false,
            },
            Expr::BinaryOp { left, op, right } if comparison(op) => {
                match (self.column(left, refs), self.column(right, refs)) {
                    (Some(a), Some(b)) => {
                        let (ta, tb) = (self.type_of(refs, a), self.type_of(refs, b));
                        comparable_columns(self.cfg.rules.dialect(), ta, tb)
                    }
                    (Some(c), None) => self.operand_fits(refs, c, right),
                    (None, Some(c)) => self.operand_fits(refs, c, left),
                    (None, None) => false,
                }
            }
            Expr::Between {
                expr, low, high, ..
            } => match self.column(expr, refs) {
                Some(c) => self.operand_fits(refs, c, low) && self.operand_fits(refs, c, high),
                None => false,
            },
            Expr::In {
                expr,
                target: InTarget::List(list),
                global: false,
                ..
            } => match self.column(expr, refs) {
                Some(c) => !list.is_empty() && list.iter().all(|x| self.operand_fits(refs, c, x)),
                None => false,
            },
            _ => false,
        }
    }

    /// A plain column reference (`c` or `q.c`): records it and returns its index in `refs`.
    fn column(&self, e: &Expr, refs: &mut Vec<(Option<String>, String)>) -> Option<usize> {
        let r = match e {
            Expr::Identifier(c) => (None, self.fold(c)),
            Expr::CompoundIdentifier(parts) => match parts.as_slice() {
                [q, c] => (Some(self.fold(q)), self.fold(c)),
                _ => return None,
            },
            _ => return None,
        };
        refs.push(r);
        Some(refs.len() - 1)
    }

    /// The declared type of the column `refs[i]`, looked up in every relation of the frame that
    /// could own it (they are checked to be one relation later).
    fn type_of(&self, refs: &[(Option<String>, String)], i: usize) -> Option<&str> {
        let (qualifier, column) = refs.get(i)?;
        let frame = self.frames.last()?;
        let mut owners = self.sites.iter().filter(|s| {
            frame.iter().any(|v| {
                v.name == s.visible
                    && v.kind == VarKind::Relation
                    && match qualifier {
                        Some(q) => &v.name == q,
                        None => v
                            .columns
                            .as_ref()
                            .is_some_and(|c| c.iter().any(|c| c.eq_ignore_ascii_case(column))),
                    }
            })
        });
        let owner = owners.next()?;
        self.cfg.types.get(&owner.table, column)
    }

    /// Whether `e` is a literal or parameter that compares leakproofly with column `refs[c]`.
    fn operand_fits(&self, refs: &[(Option<String>, String)], c: usize, e: &Expr) -> bool {
        let dialect = self.cfg.rules.dialect();
        let operand = match e {
            Expr::Value(v) => match &v.value {
                Value::Number(n, _) => {
                    if n.parse::<i64>().is_ok() {
                        Operand::Int
                    } else {
                        Operand::Decimal
                    }
                }
                Value::SingleQuotedString(_) => Operand::Str,
                Value::Boolean(_) => Operand::Bool,
                Value::Placeholder(p) => match dialect {
                    Dialect::Postgres if p.starts_with('$') => Operand::Param,
                    Dialect::Sqlite
                        if p.len() > 1
                            && p.starts_with('?')
                            && p.bytes().skip(1).all(|b| b.is_ascii_digit()) =>
                    {
                        Operand::Param
                    }
                    _ => return false,
                },
                _ => return false,
            },
            Expr::TypedString(t) => match &t.value.value {
                Value::SingleQuotedString(_) => {
                    return comparable(
                        dialect,
                        self.type_of(refs, c),
                        Operand::Typed(&t.data_type.to_string()),
                    );
                }
                _ => return false,
            },
            Expr::UnaryOp {
                op: UnaryOperator::Minus,
                expr,
            } => match expr.as_ref() {
                Expr::Value(v) if matches!(v.value, Value::Number(..)) => {
                    return self.operand_fits(refs, c, expr);
                }
                _ => return false,
            },
            _ => return false,
        };
        comparable(dialect, self.type_of(refs, c), operand)
    }

    /// Adds `conditions` to the `WHERE` of substitution `site`, after its row filter:
    /// `WHERE (<filter>) AND (<a>) AND (<b>)`.
    fn splice(&mut self, site: usize, conditions: &[String]) {
        let Some(s) = self.sites.get(site) else {
            return;
        };
        let Some(text) = self.substitutions.get_mut(s.index) else {
            return;
        };
        let mut added = String::new();
        for c in conditions {
            added.push_str(" AND (");
            added.push_str(c);
            added.push(')');
        }
        match s.filter {
            Some((start, stop)) => {
                text.insert_str(stop, &format!("){added}"));
                text.insert(start, '(');
            }
            None => {
                let added = added.strip_prefix(" AND ").unwrap_or(&added);
                text.insert_str(s.end, &format!(" WHERE {added}"));
            }
        }
    }
}

fn is_column(e: &Expr) -> bool {
    matches!(e, Expr::Identifier(_))
        || matches!(e, Expr::CompoundIdentifier(parts) if parts.len() == 2)
}

/// `q.c` and `c` become `warden_source.c`: inside the substitution the real table is named so.
fn requalify(e: &mut Expr) {
    let _ = sqlparser::ast::visit_expressions_mut(e, |x| {
        let column = match x {
            Expr::Identifier(c) => Some(c.clone()),
            Expr::CompoundIdentifier(parts) => parts.last().cloned(),
            _ => None,
        };
        if let Some(c) = column {
            *x = Expr::CompoundIdentifier(vec![Ident::new(SOURCE), c]);
        }
        ControlFlow::<()>::Continue(())
    });
}

#[cfg(test)]
#[path = "pushdown_tests.rs"]
mod tests;
