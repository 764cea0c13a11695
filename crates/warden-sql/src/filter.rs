//! Row filters: subject attributes resolved, predicates written as SQL (values as escaped
//! literals, never concatenated text) and evaluated in Rust for the write checks.

use std::cmp::Ordering;

use serde_json::Value as Json;
use sqlparser::ast::{BinaryOperator, CastKind, DataType, Expr, InTarget, UnaryOperator, Value};
use sqlparser::parser::Parser;
use warden_decision::{Literal, Operand, Predicate, Subject};

use crate::dialect::DialectRules;
use crate::error::DenyReason;

/// Replaces every subject operand with the literal it names. An `in` list item that names an
/// array attribute expands to its elements.
pub(crate) fn resolve(predicate: &Predicate, subject: &Subject) -> Result<Predicate, DenyReason> {
    let one = |o: &Operand| -> Result<Operand, DenyReason> {
        match o {
            Operand::Subject(path) => {
                let value = subject_value(subject, path)?;
                Ok(Operand::Value(literal(&value, path)?))
            }
            other => Ok(other.clone()),
        }
    };
    let pair = |a: &Operand, b: &Operand| -> Result<(Operand, Operand), DenyReason> {
        Ok((one(a)?, one(b)?))
    };
    Ok(match predicate {
        Predicate::And(parts) => Predicate::And(
            parts
                .iter()
                .map(|p| resolve(p, subject))
                .collect::<Result<_, _>>()?,
        ),
        Predicate::Or(parts) => Predicate::Or(
            parts
                .iter()
                .map(|p| resolve(p, subject))
                .collect::<Result<_, _>>()?,
        ),
        Predicate::Not(inner) => Predicate::Not(Box::new(resolve(inner, subject)?)),
        Predicate::Const(b) => Predicate::Const(*b),
        Predicate::Eq(a, b) => {
            let (a, b) = pair(a, b)?;
            Predicate::Eq(a, b)
        }
        Predicate::Ne(a, b) => {
            let (a, b) = pair(a, b)?;
            Predicate::Ne(a, b)
        }
        Predicate::Lt(a, b) => {
            let (a, b) = pair(a, b)?;
            Predicate::Lt(a, b)
        }
        Predicate::Le(a, b) => {
            let (a, b) = pair(a, b)?;
            Predicate::Le(a, b)
        }
        Predicate::Gt(a, b) => {
            let (a, b) = pair(a, b)?;
            Predicate::Gt(a, b)
        }
        Predicate::Ge(a, b) => {
            let (a, b) = pair(a, b)?;
            Predicate::Ge(a, b)
        }
        Predicate::Like(a, b) => {
            let (a, b) = pair(a, b)?;
            Predicate::Like(a, b)
        }
        Predicate::IsNull(a) => Predicate::IsNull(one(a)?),
        Predicate::In(a, list) => {
            // The operand first, then the list, in the order they are written.
            let a = one(a)?;
            let mut items = Vec::with_capacity(list.len());
            for item in list {
                match item {
                    Operand::Subject(path) => match subject_value(subject, path)? {
                        Json::Array(values) => {
                            for v in &values {
                                items.push(Operand::Value(literal(v, path)?));
                            }
                        }
                        v => items.push(Operand::Value(literal(&v, path)?)),
                    },
                    other => items.push(other.clone()),
                }
            }
            Predicate::In(a, items)
        }
    })
}

/// The value at `path` in the subject: `id`, `type`, `properties.a.b` or a bare `a.b` (a
/// property path).
fn subject_value(subject: &Subject, path: &str) -> Result<Json, DenyReason> {
    Ok(match subject_attr(subject, path)? {
        Attr::Str(s) => Json::String(s.to_owned()),
        Attr::Json(v) => v.clone(),
    })
}

/// A subject attribute, borrowed: the id or type, or a property's value.
pub(crate) enum Attr<'a> {
    /// `id` or `type`.
    Str(&'a str),
    /// A property, or a member inside one.
    Json(&'a Json),
}

/// [`subject_value`] without the copy.
pub(crate) fn subject_attr<'a>(subject: &'a Subject, path: &str) -> Result<Attr<'a>, DenyReason> {
    match path {
        "id" => return Ok(Attr::Str(&subject.id)),
        "type" => return Ok(Attr::Str(&subject.kind)),
        _ => {}
    }
    let rest = path.strip_prefix("properties.").unwrap_or(path);
    let mut parts = rest.split('.');
    let first = parts.next().unwrap_or_default();
    let mut value = subject
        .properties
        .get(first)
        .ok_or_else(|| DenyReason::SubjectAttribute(path.to_owned()))?;
    for part in parts {
        value = value
            .get(part)
            .ok_or_else(|| DenyReason::SubjectAttribute(path.to_owned()))?;
    }
    Ok(Attr::Json(value))
}

/// The literal a subject attribute's value stands for. A number that has no exact literal is
/// refused rather than rounded into a neighbour's value: an integer beyond 64 signed bits, or a
/// float that is a whole number of magnitude 2⁵³ or more (no float there tells which integer
/// was meant; a claim `18446744073709551615` would otherwise match tenant
/// `18446744073709551616`).
pub(crate) fn literal(value: &Json, path: &str) -> Result<Literal, DenyReason> {
    /// 2^53.
    const INEXACT: f64 = 9_007_199_254_740_992.0;
    Ok(match value {
        Json::Null => Literal::Null,
        Json::Bool(b) => Literal::Bool(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Literal::Int(i),
            (None, None, Some(f)) if f.is_finite() && !(f.fract() == 0.0 && f.abs() >= INEXACT) => {
                Literal::Float(f)
            }
            _ => return Err(DenyReason::SubjectAttribute(path.to_owned())),
        },
        Json::String(s) => Literal::String(s.clone()),
        Json::Array(_) | Json::Object(_) => {
            return Err(DenyReason::SubjectAttribute(path.to_owned()));
        }
    })
}

/// The SQL of a resolved predicate; `column` writes a column reference.
pub(crate) fn to_expr(
    predicate: &Predicate,
    column: &dyn Fn(&str) -> Result<Expr, DenyReason>,
    rules: &dyn DialectRules,
) -> Result<Expr, DenyReason> {
    let operand = |o: &Operand| -> Result<Expr, DenyReason> {
        match o {
            Operand::Column(c) => column(c),
            Operand::Value(v) => literal_expr(v, rules),
            Operand::Subject(path) => Err(DenyReason::SubjectAttribute(path.clone())),
        }
    };
    let binary = |a: &Operand, op: BinaryOperator, b: &Operand| -> Result<Expr, DenyReason> {
        Ok(Expr::BinaryOp {
            left: Box::new(operand(a)?),
            op,
            right: Box::new(operand(b)?),
        })
    };
    Ok(match predicate {
        Predicate::And(parts) if parts.is_empty() => constant(true),
        Predicate::Or(parts) if parts.is_empty() => constant(false),
        Predicate::And(parts) | Predicate::Or(parts) => {
            let op = if matches!(predicate, Predicate::And(_)) {
                BinaryOperator::And
            } else {
                BinaryOperator::Or
            };
            let mut exprs = parts.iter().map(|p| to_expr(p, column, rules));
            let first = exprs.next().unwrap_or_else(|| Ok(constant(true)))?;
            let mut out = nested(first);
            for e in exprs {
                out = Expr::BinaryOp {
                    left: Box::new(out),
                    op: op.clone(),
                    right: Box::new(nested(e?)),
                };
            }
            nested(out)
        }
        Predicate::Not(inner) => Expr::UnaryOp {
            op: UnaryOperator::Not,
            expr: Box::new(nested(to_expr(inner, column, rules)?)),
        },
        Predicate::Const(b) => constant(*b),
        Predicate::Eq(a, b) => binary(a, BinaryOperator::Eq, b)?,
        Predicate::Ne(a, b) => binary(a, BinaryOperator::NotEq, b)?,
        Predicate::Lt(a, b) => binary(a, BinaryOperator::Lt, b)?,
        Predicate::Le(a, b) => binary(a, BinaryOperator::LtEq, b)?,
        Predicate::Gt(a, b) => binary(a, BinaryOperator::Gt, b)?,
        Predicate::Ge(a, b) => binary(a, BinaryOperator::GtEq, b)?,
        Predicate::Like(a, b) => Expr::Like {
            negated: false,
            any: false,
            expr: Box::new(operand(a)?),
            pattern: Box::new(operand(b)?),
            escape_char: None,
        },
        Predicate::IsNull(a) => Expr::IsNull(Box::new(operand(a)?)),
        Predicate::In(_, list) if list.is_empty() => constant(false),
        Predicate::In(a, list) => Expr::In {
            expr: Box::new(operand(a)?),
            target: InTarget::List(list.iter().map(operand).collect::<Result<_, _>>()?),
            negated: false,
            global: false,
        },
    })
}

/// Wraps an expression in parentheses (sqlparser does not add them for precedence).
pub(crate) fn nested(e: Expr) -> Expr {
    match e {
        Expr::Nested(_) | Expr::Identifier(_) | Expr::CompoundIdentifier(_) | Expr::Value(_) => e,
        other => Expr::Nested(Box::new(other)),
    }
}

/// `a AND b`, both parenthesized.
pub(crate) fn and(a: Expr, b: Expr) -> Expr {
    Expr::BinaryOp {
        left: Box::new(nested(a)),
        op: BinaryOperator::And,
        right: Box::new(nested(b)),
    }
}

/// `1 = 1` or `1 = 0`: true and false in every dialect.
pub(crate) fn constant(b: bool) -> Expr {
    Expr::Nested(Box::new(Expr::BinaryOp {
        left: Box::new(Expr::value(Value::Number("1".into(), false))),
        op: BinaryOperator::Eq,
        right: Box::new(Expr::value(Value::Number(
            if b { "1" } else { "0" }.into(),
            false,
        ))),
    }))
}

/// A literal as SQL. Plain text becomes a quoted literal with its quotes doubled; text with
/// backslashes or control characters (whose meaning depends on server settings such as
/// `standard_conforming_strings` or MySQL's backslash escapes) is written from its hex bytes.
pub(crate) fn literal_expr(
    literal: &Literal,
    rules: &dyn DialectRules,
) -> Result<Expr, DenyReason> {
    Ok(match literal {
        Literal::Null => Expr::value(Value::Null),
        Literal::Bool(b) => Expr::value(Value::Boolean(*b)),
        Literal::Int(i) => {
            let e = Expr::value(Value::Number(i.unsigned_abs().to_string(), false));
            if *i < 0 {
                Expr::Nested(Box::new(Expr::UnaryOp {
                    op: UnaryOperator::Minus,
                    expr: Box::new(e),
                }))
            } else {
                e
            }
        }
        Literal::Float(f) => {
            if !f.is_finite() {
                return Err(DenyReason::FilterValue(format!(
                    "`{f}` is not a finite number"
                )));
            }
            let e = Expr::value(Value::Number(format!("{}", f.abs()), false));
            if f.is_sign_negative() {
                Expr::Nested(Box::new(Expr::UnaryOp {
                    op: UnaryOperator::Minus,
                    expr: Box::new(e),
                }))
            } else {
                e
            }
        }
        Literal::String(s) => {
            if s.contains('\0') {
                return Err(DenyReason::FilterValue(
                    "a string with a NUL character".into(),
                ));
            }
            if s.chars().any(|c| c == '\\' || c.is_control()) {
                let hex: String = s.bytes().map(|b| format!("{b:02X}")).collect();
                let sql = rules.text_from_hex(&hex).ok_or_else(|| {
                    DenyReason::FilterValue(format!(
                        "the {} dialect cannot carry `{}` safely",
                        rules.dialect(),
                        s.escape_debug()
                    ))
                })?;
                parse_expr(rules, &sql)
                    .map_err(|e| DenyReason::FilterValue(format!("hex literal: {e}")))?
            } else {
                // Parsed without unescaping, a literal's text is kept as written: quotes doubled.
                Expr::value(Value::SingleQuotedString(s.replace('\'', "''")))
            }
        }
    })
}

/// Parses one expression the way statements are parsed (no unescaping).
pub(crate) fn parse_expr(rules: &dyn DialectRules, sql: &str) -> Result<Expr, String> {
    Parser::new(rules.parser())
        .with_options(
            sqlparser::parser::ParserOptions::new()
                .with_unescape(false)
                .with_trailing_commas(false),
        )
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| e.to_string())
}

/// A value a check knows for a column of a written row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Known {
    /// A literal.
    Literal(Literal),
    /// Bind parameter `n` (0-based), resolved when the statement runs.
    Param(usize),
}

/// Four-valued truth: SQL's three values plus "not known to the PEP".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Truth {
    True,
    False,
    Null,
    Unknown,
}

impl Truth {
    fn not(self) -> Self {
        match self {
            Self::True => Self::False,
            Self::False => Self::True,
            other => other,
        }
    }
}

/// Evaluates a resolved predicate over a row whose columns are partly known.
pub(crate) fn eval(
    predicate: &Predicate,
    row: &dyn Fn(&str) -> Option<Literal>,
    rules: &dyn DialectRules,
) -> Truth {
    let value = |o: &Operand| -> Option<Literal> {
        match o {
            Operand::Column(c) => row(c),
            Operand::Value(v) => Some(v.clone()),
            Operand::Subject(_) => None,
        }
    };
    let compare = |a: &Operand, b: &Operand, test: fn(Ordering) -> bool| -> Truth {
        match (value(a), value(b)) {
            (Some(a), Some(b)) => match cmp(&a, &b, rules) {
                Cmp::Null => Truth::Null,
                Cmp::Unknown => Truth::Unknown,
                Cmp::Ord(o) => {
                    if test(o) {
                        Truth::True
                    } else {
                        Truth::False
                    }
                }
            },
            _ => Truth::Unknown,
        }
    };
    // The order of two texts is the collation's: never approximated here (the check cannot
    // prove such a row, which is then refused).
    let order = |a: &Operand, b: &Operand, test: fn(Ordering) -> bool| -> Truth {
        match (value(a), value(b)) {
            (Some(Literal::String(_)), _) | (_, Some(Literal::String(_))) => Truth::Unknown,
            _ => compare(a, b, test),
        }
    };
    match predicate {
        Predicate::And(parts) => {
            let results: Vec<Truth> = parts.iter().map(|p| eval(p, row, rules)).collect();
            if results.contains(&Truth::False) {
                Truth::False
            } else if results.contains(&Truth::Unknown) {
                Truth::Unknown
            } else if results.contains(&Truth::Null) {
                Truth::Null
            } else {
                Truth::True
            }
        }
        Predicate::Or(parts) => {
            let results: Vec<Truth> = parts.iter().map(|p| eval(p, row, rules)).collect();
            if results.contains(&Truth::True) {
                Truth::True
            } else if results.contains(&Truth::Unknown) {
                Truth::Unknown
            } else if results.contains(&Truth::Null) {
                Truth::Null
            } else {
                Truth::False
            }
        }
        Predicate::Not(inner) => eval(inner, row, rules).not(),
        Predicate::Const(true) => Truth::True,
        Predicate::Const(false) => Truth::False,
        Predicate::Eq(a, b) => compare(a, b, |o| o == Ordering::Equal),
        Predicate::Ne(a, b) => compare(a, b, |o| o != Ordering::Equal),
        Predicate::Lt(a, b) => order(a, b, |o| o == Ordering::Less),
        Predicate::Le(a, b) => order(a, b, |o| o != Ordering::Greater),
        Predicate::Gt(a, b) => order(a, b, |o| o == Ordering::Greater),
        Predicate::Ge(a, b) => order(a, b, |o| o != Ordering::Less),
        Predicate::IsNull(a) => match value(a) {
            Some(Literal::Null) => Truth::True,
            Some(_) => Truth::False,
            None => Truth::Unknown,
        },
        Predicate::In(a, list) => {
            let results: Vec<Truth> = list
                .iter()
                .map(|b| compare(a, b, |o| o == Ordering::Equal))
                .collect();
            if results.contains(&Truth::True) {
                Truth::True
            } else if results.contains(&Truth::Unknown) {
                Truth::Unknown
            } else if results.contains(&Truth::Null) {
                Truth::Null
            } else {
                Truth::False
            }
        }
        Predicate::Like(a, b) => match (value(a), value(b)) {
            (Some(Literal::Null), Some(_)) | (Some(_), Some(Literal::Null)) => Truth::Null,
            (Some(Literal::String(s)), Some(Literal::String(p))) => {
                let (s, p) = if rules.like_ignores_case() {
                    (s.to_lowercase(), p.to_lowercase())
                } else {
                    (s, p)
                };
                let s: Vec<char> = s.chars().collect();
                let p: Vec<char> = p.chars().collect();
                match like(&s, &p, rules.dialect() != crate::Dialect::Sqlite) {
                    Some(true) => Truth::True,
                    Some(false) => Truth::False,
                    None => Truth::Unknown,
                }
            }
            _ => Truth::Unknown,
        },
    }
}

enum Cmp {
    Ord(Ordering),
    Null,
    Unknown,
}

fn cmp(a: &Literal, b: &Literal, rules: &dyn DialectRules) -> Cmp {
    use Literal::*;
    match (a, b) {
        (Null, _) | (_, Null) => Cmp::Null,
        (Int(x), Int(y)) => Cmp::Ord(x.cmp(y)),
        (Int(x), Float(y)) => (*x as f64).partial_cmp(y).map_or(Cmp::Unknown, Cmp::Ord),
        (Float(x), Int(y)) => x.partial_cmp(&(*y as f64)).map_or(Cmp::Unknown, Cmp::Ord),
        (Float(x), Float(y)) => x.partial_cmp(y).map_or(Cmp::Unknown, Cmp::Ord),
        (Bool(x), Bool(y)) => Cmp::Ord(x.cmp(y)),
        (String(x), String(y)) => {
            if rules.text_eq_ignores_case() {
                // MySQL's default collations: case-insensitive, trailing spaces ignored.
                // Anything beyond ASCII may collate differently: not known.
                if !x.is_ascii() || !y.is_ascii() {
                    return if x == y {
                        Cmp::Ord(Ordering::Equal)
                    } else {
                        Cmp::Unknown
                    };
                }
                let x = x.trim_end_matches(' ').to_ascii_lowercase();
                let y = y.trim_end_matches(' ').to_ascii_lowercase();
                Cmp::Ord(x.cmp(&y))
            } else if x.is_ascii() && y.is_ascii() || x == y {
                Cmp::Ord(x.cmp(y))
            } else {
                // The database's collation decides the order of non-ASCII text.
                match x.cmp(y) {
                    Ordering::Equal => Cmp::Ord(Ordering::Equal),
                    _ => Cmp::Unknown,
                }
            }
        }
        _ => Cmp::Unknown,
    }
}

/// SQL `LIKE`: `%` any run, `_` one character, `\` escapes when `backslash_escapes`.
/// `None` when the pattern is malformed.
fn like(s: &[char], p: &[char], backslash_escapes: bool) -> Option<bool> {
    let Some((&first, rest)) = p.split_first() else {
        return Some(s.is_empty());
    };
    match first {
        '%' => {
            for i in 0..=s.len() {
                if like(s.get(i..)?, rest, backslash_escapes)? {
                    return Some(true);
                }
            }
            Some(false)
        }
        '_' => match s.split_first() {
            Some((_, s_rest)) => like(s_rest, rest, backslash_escapes),
            None => Some(false),
        },
        '\\' if backslash_escapes => {
            let (&escaped, rest) = rest.split_first()?;
            match s.split_first() {
                Some((&c, s_rest)) if c == escaped => like(s_rest, rest, backslash_escapes),
                _ => Some(false),
            }
        }
        c => match s.split_first() {
            Some((&sc, s_rest)) if sc == c => like(s_rest, rest, backslash_escapes),
            _ => Some(false),
        },
    }
}

/// The literal an SQL expression of a written row stands for, when it is one.
pub(crate) fn known(
    expr: &Expr,
    rules: &dyn DialectRules,
    param: &dyn Fn(&Expr) -> Option<usize>,
) -> Option<Known> {
    match expr {
        Expr::Nested(inner) => known(inner, rules, param),
        // A cast may change what is stored (`CAST('c1' AS varchar(1))` stores `'c'`): only
        // casts that keep a text a text, or an integer an integer, are seen through.
        Expr::Cast {
            expr,
            data_type,
            format: None,
            kind: CastKind::Cast | CastKind::DoubleColon,
        } => {
            let inner = known(expr, rules, param)?;
            let keeps = matches!(
                (&inner, data_type),
                (
                    Known::Literal(Literal::String(_)) | Known::Param(_),
                    DataType::Text | DataType::Varchar(None) | DataType::CharacterVarying(None),
                ) | (
                    Known::Literal(Literal::Int(_)),
                    DataType::Int(None) | DataType::Integer(None) | DataType::BigInt(None),
                )
            );
            keeps.then_some(inner)
        }
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match known(expr, rules, param)? {
            Known::Literal(Literal::Int(i)) => Some(Known::Literal(Literal::Int(i.checked_neg()?))),
            Known::Literal(Literal::Float(f)) => Some(Known::Literal(Literal::Float(-f))),
            _ => None,
        },
        Expr::Value(v) => match &v.value {
            Value::Placeholder(_) => param(expr).map(Known::Param),
            Value::Null => Some(Known::Literal(Literal::Null)),
            Value::Boolean(b) => Some(Known::Literal(Literal::Bool(*b))),
            Value::Number(n, _) => match n.parse::<i64>() {
                Ok(i) => Some(Known::Literal(Literal::Int(i))),
                Err(_) => n
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .map(|f| Known::Literal(Literal::Float(f))),
            },
            Value::SingleQuotedString(raw) => {
                // Kept as written: `''` is one quote; a backslash may be an escape (MySQL).
                if raw.contains('\\') && rules.dialect() == crate::Dialect::MySql {
                    return None;
                }
                Some(Known::Literal(Literal::String(raw.replace("''", "'"))))
            }
            Value::DollarQuotedString(d) => Some(Known::Literal(Literal::String(d.value.clone()))),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Dialect;
    use serde_json::json;

    fn pred(v: Json) -> Predicate {
        serde_json::from_value(v).unwrap()
    }

    fn sql(p: &Predicate, d: Dialect) -> String {
        let rules = d.rules();
        let column = |c: &str| Ok(Expr::Identifier(rules.ident(c)));
        to_expr(p, &column, rules).unwrap().to_string()
    }

    #[test]
    fn resolves_subject_attributes_and_expands_arrays_in_lists() {
        let subject = Subject::user("nina")
            .with_property("clinic", "c1")
            .with_property("clinics", json!(["c1", "c2"]))
            .with_property("org", json!({"id": 7}));
        let p = pred(json!({"and": [
            {"eq": [{"column": "clinic_id"}, {"subject": "clinic"}]},
            {"in": [{"column": "clinic_id"}, [{"subject": "properties.clinics"}]]},
            {"eq": [{"column": "org"}, {"subject": "org.id"}]},
            {"eq": [{"column": "owner"}, {"subject": "id"}]}
        ]}));
        let r = resolve(&p, &subject).unwrap();
        assert_eq!(
            sql(&r, Dialect::Postgres),
            r#"(("clinic_id" = 'c1') AND ("clinic_id" IN ('c1', 'c2')) AND ("org" = 7) AND ("owner" = 'nina'))"#
        );
        let missing = pred(json!({"eq": [{"column": "a"}, {"subject": "tenant"}]}));
        assert_eq!(
            resolve(&missing, &subject),
            Err(DenyReason::SubjectAttribute("tenant".into()))
        );
        let object = pred(json!({"eq": [{"column": "a"}, {"subject": "org"}]}));
        assert!(resolve(&object, &subject).is_err());
    }

    #[test]
    fn writes_values_that_cannot_break_out_of_their_literal() {
        let p = pred(json!({"eq": [{"column": "name"}, {"value": "x' OR '1'='1"}]}));
        assert_eq!(sql(&p, Dialect::Postgres), r#""name" = 'x'' OR ''1''=''1'"#);
        let p = pred(json!({"eq": [{"column": "name"}, {"value": "a\\' OR 1=1 -- "}]}));
        assert_eq!(
            sql(&p, Dialect::MySql),
            "`name` = CONVERT(X'615C27204F5220313D31202D2D20' USING utf8mb4)"
        );
        assert!(sql(&p, Dialect::Postgres).contains("convert_from(decode('615C27"));
        let p = pred(
            json!({"or": [{"const": false}, {"in": [{"column": "a"}, []]}, {"lt": [{"column": "n"}, {"value": -3}]}]}),
        );
        assert_eq!(
            sql(&p, Dialect::Sqlite),
            r#"((1 = 0) OR (1 = 0) OR ("n" < (-3)))"#
        );
    }

    #[test]
    fn evaluates_with_sql_truth_and_dialect_collation() {
        let p = pred(json!({"eq": [{"column": "clinic_id"}, {"value": "c1"}]}));
        let row =
            |v: Option<Literal>| move |c: &str| if c == "clinic_id" { v.clone() } else { None };
        let pg = Dialect::Postgres.rules();
        let my = Dialect::MySql.rules();
        let c1 = row(Some(Literal::String("c1".into())));
        assert_eq!(eval(&p, &c1, pg), Truth::True);
        let upper = row(Some(Literal::String("C1 ".into())));
        assert_eq!(eval(&p, &upper, pg), Truth::False);
        assert_eq!(eval(&p, &upper, my), Truth::True);
        let null = row(Some(Literal::Null));
        assert_eq!(eval(&p, &null, pg), Truth::Null);
        let unknown = row(None);
        assert_eq!(eval(&p, &unknown, pg), Truth::Unknown);
        let not = Predicate::Not(Box::new(p.clone()));
        assert_eq!(eval(&not, &null, pg), Truth::Null);
        let number = row(Some(Literal::Int(1)));
        assert_eq!(eval(&p, &number, pg), Truth::Unknown, "text vs number");
        let like = pred(json!({"like": [{"column": "clinic_id"}, {"value": "c_%"}]}));
        assert_eq!(eval(&like, &c1, pg), Truth::True);
        assert_eq!(eval(&like, &upper, pg), Truth::False);
    }
}
