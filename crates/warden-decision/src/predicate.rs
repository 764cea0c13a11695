//! The row-filter predicate AST of `filter_rows` obligations.
//!
//! A policy never hands a PEP a SQL string: it hands it this small tree, and the SQL PEP turns it
//! into parser AST with values as escaped literals or bind parameters.
//!
//! ```
//! use warden_decision::{Operand, Predicate};
//!
//! let json = serde_json::json!({"and": [
//!     {"eq": [{"column": "clinic_id"}, {"subject": "clinic"}]},
//!     {"not": {"is_null": {"column": "admitted_at"}}}
//! ]});
//! let predicate: Predicate = serde_json::from_value(json).unwrap();
//! let Predicate::And(parts) = &predicate else { unreachable!() };
//! assert_eq!(parts.len(), 2);
//! assert_eq!(
//!     parts[0],
//!     Predicate::Eq(Operand::column("clinic_id"), Operand::Subject("clinic".into()))
//! );
//! ```

use serde::{Deserialize, Serialize};

/// The deepest predicate tree a policy may return.
pub const MAX_PREDICATE_DEPTH: usize = 32;

/// A boolean condition on the rows of one table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Predicate {
    /// All of the parts hold (true when empty).
    And(Vec<Predicate>),
    /// At least one of the parts holds (false when empty).
    Or(Vec<Predicate>),
    /// The part does not hold.
    Not(Box<Predicate>),
    /// Always true or always false.
    Const(bool),
    /// `a = b`.
    Eq(Operand, Operand),
    /// `a <> b`.
    Ne(Operand, Operand),
    /// `a < b`.
    Lt(Operand, Operand),
    /// `a <= b`.
    Le(Operand, Operand),
    /// `a > b`.
    Gt(Operand, Operand),
    /// `a >= b`.
    Ge(Operand, Operand),
    /// `a IN (b, c, …)`; false when the list is empty.
    In(Operand, Vec<Operand>),
    /// `a IS NULL`.
    IsNull(Operand),
    /// `a LIKE pattern`.
    Like(Operand, Operand),
}

/// One side of a comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Operand {
    /// A column of the filtered table.
    Column(String),
    /// A literal value.
    Value(Literal),
    /// An attribute of the subject, by dotted path into the subject (`id`, `properties.clinic`,
    /// or a bare property name such as `clinic`), resolved by the PEP when it enforces.
    Subject(String),
}

impl Operand {
    /// A column operand.
    pub fn column(name: impl Into<String>) -> Self {
        Self::Column(name.into())
    }

    /// A string literal operand.
    pub fn string(value: impl Into<String>) -> Self {
        Self::Value(Literal::String(value.into()))
    }
}

/// A scalar literal: the only values a predicate may carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Literal {
    /// SQL `NULL`.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A string.
    String(String),
}

impl Predicate {
    /// The depth of the tree (a comparison is depth 1).
    pub fn depth(&self) -> usize {
        match self {
            Self::And(parts) | Self::Or(parts) => {
                1 + parts.iter().map(Predicate::depth).max().unwrap_or(0)
            }
            Self::Not(inner) => 1 + inner.depth(),
            _ => 1,
        }
    }

    /// Every column the predicate names.
    pub fn columns(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect_columns(&mut out);
        out
    }

    fn collect_columns<'a>(&'a self, out: &mut Vec<&'a str>) {
        let mut operand = |o: &'a Operand| {
            if let Operand::Column(c) = o {
                out.push(c.as_str());
            }
        };
        match self {
            Self::And(parts) | Self::Or(parts) => {
                for p in parts {
                    p.collect_columns(out);
                }
            }
            Self::Not(inner) => inner.collect_columns(out),
            Self::Const(_) => {}
            Self::Eq(a, b)
            | Self::Ne(a, b)
            | Self::Lt(a, b)
            | Self::Le(a, b)
            | Self::Gt(a, b)
            | Self::Ge(a, b)
            | Self::Like(a, b) => {
                operand(a);
                operand(b);
            }
            Self::In(a, list) => {
                operand(a);
                list.iter().for_each(operand);
            }
            Self::IsNull(a) => operand(a),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_the_design_example() {
        let p: Predicate =
            serde_json::from_value(json!({"eq": [{"column": "clinic_id"}, {"value": "c1"}]}))
                .unwrap();
        assert_eq!(
            p,
            Predicate::Eq(Operand::column("clinic_id"), Operand::string("c1"))
        );
        assert_eq!(p.columns(), vec!["clinic_id"]);
    }

    #[test]
    fn round_trips_every_form() {
        let json = json!({"or": [
            {"const": false},
            {"in": [{"column": "a"}, [{"value": 1}, {"value": 2.5}, {"value": null}]]},
            {"like": [{"column": "name"}, {"value": "A%"}]},
            {"ge": [{"column": "age"}, {"subject": "properties.min_age"}]},
            {"not": {"is_null": {"column": "b"}}}
        ]});
        let p: Predicate = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&p).unwrap(), json);
        assert_eq!(p.depth(), 3);
    }

    #[test]
    fn rejects_sql_strings_and_non_scalar_values() {
        for bad in [
            json!("clinic_id = 'c1' OR 1=1"),
            json!({"sql": "1=1"}),
            json!({"eq": [{"column": "a"}, {"value": [1, 2]}]}),
            json!({"eq": [{"column": "a"}, {"value": {"x": 1}}]}),
            json!({"eq": [{"column": "a"}]}),
            json!({"eq": [{"column": "a"}, {"value": 1}], "or": []}),
        ] {
            assert!(
                serde_json::from_value::<Predicate>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }
}
