//! The flat pass over a parsed statement, before the walk: the function allow-list, the count
//! of relations the walk must match, and the placeholders with their parameter numbers; and
//! `TABLE t` read as `SELECT * FROM t` before it.

use std::collections::HashMap;
use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, ObjectName, ObjectNamePart, Query, SetExpr, Statement, Table, TableFactor, Value,
    ValueWithSpan, VisitMut, Visitor, VisitorMut,
};
use sqlparser::parser::Parser;

use crate::dialect::{Dialect, DialectRules};
use crate::error::DenyReason;
use crate::functions::Functions;

/// The forms of placeholders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// `?`
    Plain,
    /// `$n` (PostgreSQL), `?NNN` (SQLite)
    Numbered,
    /// `:name`, `@name`, `$name` (SQLite)
    Named,
}

fn form(dialect: Dialect, text: &str) -> Option<(Form, Option<usize>)> {
    let digits = |rest: &str| {
        (!rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
            .then(|| rest.parse::<usize>().ok())
            .flatten()
    };
    let named = |rest: &str| {
        !rest.is_empty()
            && rest
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
    };
    match dialect {
        Dialect::Postgres => text
            .strip_prefix('$')
            .and_then(digits)
            .map(|n| (Form::Numbered, Some(n))),
        Dialect::MySql => (text == "?").then_some((Form::Plain, None)),
        Dialect::Sqlite => {
            if text == "?" {
                Some((Form::Plain, None))
            } else if let Some(n) = text.strip_prefix('?').and_then(digits) {
                Some((Form::Numbered, Some(n)))
            } else {
                let rest = text
                    .strip_prefix(':')
                    .or_else(|| text.strip_prefix('@'))
                    .or_else(|| text.strip_prefix('$'))?;
                named(rest).then_some((Form::Named, None))
            }
        }
        Dialect::Generic => {
            if text == "?" {
                Some((Form::Plain, None))
            } else {
                text.strip_prefix('$')
                    .and_then(digits)
                    .map(|n| (Form::Numbered, Some(n)))
            }
        }
    }
}

/// Gives each placeholder its 0-based parameter index exactly as the server and driver number
/// them: PostgreSQL `$n` is `n - 1`; MySQL `?` count in order; SQLite follows its own rules
/// (`?NNN` is `NNN`, `?` the largest number so far plus one, a name the number of its first
/// appearance, else the largest plus one). Forms the dialect does not have, and different
/// forms in one statement, are refused: one reading of the parameters, or none.
pub(crate) fn number_placeholders(
    dialect: Dialect,
    mut found: Vec<(u64, u64, String)>,
) -> Result<HashMap<(u64, u64), usize>, DenyReason> {
    found.sort();
    let mut largest = 0usize;
    let mut first: Option<Form> = None;
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut out = HashMap::new();
    for (line, column, text) in found {
        let Some((kind, n)) = form(dialect, &text) else {
            return Err(DenyReason::Parameter(format!(
                "`{text}` is not a {dialect} placeholder"
            )));
        };
        match first {
            Some(f) if f != kind => {
                return Err(DenyReason::Parameter(format!(
                    "`{text}` mixes placeholder forms; use one form per statement"
                )));
            }
            _ => first = Some(kind),
        }
        let number = match (kind, n) {
            (Form::Numbered, Some(n)) => n,
            (Form::Named, _) => match names.get(&text) {
                Some(n) => *n,
                None => {
                    let n = largest + 1;
                    names.insert(text.clone(), n);
                    n
                }
            },
            _ => largest + 1,
        };
        if number == 0 || number > 32_766 {
            return Err(DenyReason::Parameter(format!(
                "`{text}`: parameter numbers go from 1 to 32766"
            )));
        }
        largest = largest.max(number);
        out.insert((line, column), number - 1);
    }
    Ok(out)
}

/// The flat pass over the whole statement: the function allow-list, the relation count the
/// walk must match, and the placeholders.
pub(crate) struct Flat<'a> {
    pub(crate) functions: &'a Functions,
    pub(crate) rules: &'static dyn DialectRules,
    pub(crate) relations: usize,
    pub(crate) placeholders: Vec<(u64, u64, String)>,
}

impl Flat<'_> {
    fn check(&self, name: &ObjectName) -> ControlFlow<DenyReason> {
        let parts: Vec<String> = name
            .0
            .iter()
            .map(|p| match p.as_ident() {
                Some(i) => self.rules.fold(i).to_ascii_lowercase(),
                None => p.to_string(),
            })
            .collect();
        if self.functions.admits(&parts) {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(DenyReason::DeniedFunction(parts.join(".")))
        }
    }

    /// Casts to PostgreSQL's `reg…` types look names up in the catalogs.
    fn check_type(&self, data_type: &sqlparser::ast::DataType) -> ControlFlow<DenyReason> {
        let name = data_type.to_string().to_ascii_lowercase();
        if self.rules.dialect() == Dialect::Postgres && name.trim_matches('"').starts_with("reg") {
            return ControlFlow::Break(DenyReason::DeniedFunction(format!("cast to {name}")));
        }
        ControlFlow::Continue(())
    }
}

impl Visitor for Flat<'_> {
    type Break = DenyReason;

    fn pre_visit_relation(&mut self, _relation: &ObjectName) -> ControlFlow<DenyReason> {
        self.relations += 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<DenyReason> {
        match factor {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            }
            | TableFactor::Function { name, .. } => self.check(name),
            _ => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<DenyReason> {
        match expr {
            Expr::Function(f) => self.check(&f.name),
            Expr::Cast { data_type, .. } => self.check_type(data_type),
            Expr::TypedString(t) => self.check_type(&t.data_type),
            _ => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_value(&mut self, value: &ValueWithSpan) -> ControlFlow<DenyReason> {
        if let Value::Placeholder(p) = &value.value {
            self.placeholders
                .push((value.span.start.line, value.span.start.column, p.clone()));
        }
        ControlFlow::Continue(())
    }
}

/// Reads `TABLE t` (PostgreSQL, MySQL 8) as the `SELECT * FROM t` it stands for, before any
/// pass, so it is analysed and rewritten as that query. `TABLE` with no name is refused.
pub(crate) fn table_commands_as_selects(
    rules: &dyn DialectRules,
    statement: &mut Statement,
) -> Result<(), DenyReason> {
    let mut pass = TableCommands { rules, error: None };
    let _ = statement.visit(&mut pass);
    pass.error.map_or(Ok(()), Err)
}

struct TableCommands<'a> {
    rules: &'a dyn DialectRules,
    error: Option<DenyReason>,
}

impl TableCommands<'_> {
    fn convert(&mut self, body: &mut SetExpr) {
        match body {
            SetExpr::Table(t) => match self.select_star(t) {
                Ok(select) => *body = select,
                Err(e) => self.error = Some(e),
            },
            SetExpr::SetOperation { left, right, .. } => {
                self.convert(left);
                self.convert(right);
            }
            _ => {}
        }
    }

    fn select_star(&self, t: &Table) -> Result<SetExpr, DenyReason> {
        let Some(table) = t.table_name.clone() else {
            return Err(DenyReason::Unsupported("`TABLE` without a table".into()));
        };
        let parts: Vec<ObjectNamePart> = t
            .schema_name
            .iter()
            .cloned()
            .chain([table])
            .map(ObjectNamePart::Identifier)
            .collect();
        let query = Parser::new(self.rules.parser())
            .try_with_sql("SELECT * FROM warden_table_command")
            .and_then(|mut p| p.parse_query())
            .map_err(|e| DenyReason::Unsupported(format!("`TABLE`: {e}")))?;
        let mut body = *query.body;
        if let SetExpr::Select(select) = &mut body
            && let Some(TableFactor::Table { name, .. }) =
                select.from.first_mut().map(|f| &mut f.relation)
        {
            name.0 = parts;
            return Ok(body);
        }
        Err(DenyReason::Unsupported("`TABLE`".into()))
    }
}

impl VisitorMut for TableCommands<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        self.convert(&mut query.body);
        match self.error {
            Some(_) => ControlFlow::Break(()),
            None => ControlFlow::Continue(()),
        }
    }
}
