//! Why a statement was refused.

use std::fmt;

use warden_decision::PdpError;

/// The error of [`SqlPolicy::enforce`](crate::SqlPolicy::enforce) and friends: the statement
/// does not parse, is denied, or the PDP could not decide. Every variant means the statement
/// must not run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SqlError {
    /// The statement does not parse in the configured dialect (or is nested too deeply).
    #[error("statement does not parse: {0}")]
    Parse(String),
    /// The statement was analysed and is denied.
    #[error("statement denied: {0}")]
    Denied(DenyReason),
    /// The PDP could not decide (unavailable, timed out, broken policy): a deny.
    #[error("statement denied: {0}")]
    Pdp(PdpError),
}

impl SqlError {
    /// The deny reason, when the statement was denied after analysis.
    pub fn reason(&self) -> Option<&DenyReason> {
        match self {
            Self::Denied(reason) => Some(reason),
            _ => None,
        }
    }

    /// A stable, machine-readable code: `parse_error`, `pdp_error` or the reason's code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Parse(_) => "parse_error",
            Self::Pdp(_) => "pdp_error",
            Self::Denied(reason) => reason.code(),
        }
    }
}

impl From<DenyReason> for SqlError {
    fn from(reason: DenyReason) -> Self {
        Self::Denied(reason)
    }
}

/// Why a statement was denied. The codes ([`DenyReason::code`]) are stable.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DenyReason {
    /// Nothing to run.
    EmptyStatement,
    /// Several statements in one string.
    MultipleStatements(usize),
    /// A kind of statement the PEP does not run (DDL, `COPY`, `DO`, `SET`, `GRANT`, …).
    StatementKind(String),
    /// A clause or construct the PEP cannot analyse with certainty.
    Unsupported(String),
    /// A system catalog or `information_schema` relation.
    SystemCatalog(String),
    /// The policy does not permit this action on this relation (or does not name it).
    NotPermitted {
        /// `select`, `insert`, `update` or `delete`.
        action: String,
        /// The relation's id, `schema.table`.
        table: String,
        /// The policy's reasons, for logs: not part of the message.
        reasons: Vec<String>,
    },
    /// A function not on the dialect's allow-list (or taken off it), or a cast to a type that
    /// looks names up in the catalogs.
    DeniedFunction(String),
    /// A whole-row reference to a table (`SELECT t FROM t`, `row_to_json(t)`, `f(t.*)`).
    WholeRow(String),
    /// The columns of a relation are needed (for masks or `*`) but unknown.
    UnknownColumns(String),
    /// An obligation names a column the relation does not have.
    UnknownColumn {
        /// The relation.
        table: String,
        /// The column.
        column: String,
    },
    /// A mask strategy the dialect cannot express in SQL (or `hash` without a key).
    MaskUnsupported {
        /// The strategy.
        strategy: String,
        /// The dialect.
        dialect: String,
    },
    /// An obligation the SQL PEP cannot carry out.
    ObligationUnsupported(String),
    /// A row filter value cannot be written as SQL.
    FilterValue(String),
    /// The subject lacks an attribute a row filter refers to.
    SubjectAttribute(String),
    /// A written row would fall outside the row filter of its table.
    RowFilterViolation(String),
    /// It cannot be proven that a written row stays inside the row filter of its table.
    CannotProve {
        /// The table.
        table: String,
        /// What could not be proven.
        detail: String,
    },
    /// A bind parameter a check needs is missing or has an unusable type.
    Parameter(String),
    /// The statement is longer, or has more operators, than a statement may have.
    TooComplex(String),
    /// An obligation names a relation the statement does not access: the policy does not fit
    /// the database (a misconfiguration, refused rather than ignored).
    PolicyMismatch(String),
}

impl DenyReason {
    /// A stable code for logs, metrics and tests.
    pub fn code(&self) -> &'static str {
        match self {
            Self::EmptyStatement => "empty_statement",
            Self::MultipleStatements(_) => "multiple_statements",
            Self::StatementKind(_) => "statement_kind",
            Self::Unsupported(_) => "unsupported",
            Self::SystemCatalog(_) => "system_catalog",
            Self::NotPermitted { .. } => "not_permitted",
            Self::DeniedFunction(_) => "denied_function",
            Self::WholeRow(_) => "whole_row",
            Self::UnknownColumns(_) => "unknown_columns",
            Self::UnknownColumn { .. } => "unknown_column",
            Self::MaskUnsupported { .. } => "mask_unsupported",
            Self::ObligationUnsupported(_) => "obligation_unsupported",
            Self::FilterValue(_) => "filter_value",
            Self::SubjectAttribute(_) => "subject_attribute",
            Self::RowFilterViolation(_) => "row_filter_violation",
            Self::CannotProve { .. } => "cannot_prove",
            Self::Parameter(_) => "parameter",
            Self::TooComplex(_) => "too_complex",
            Self::PolicyMismatch(_) => "policy_mismatch",
        }
    }

    /// Whether the refusal means the policy or the catalog does not fit the database (a
    /// configuration error for an operator to fix) rather than a deny of this caller.
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            Self::UnknownColumns(_)
                | Self::UnknownColumn { .. }
                | Self::MaskUnsupported { .. }
                | Self::ObligationUnsupported(_)
                | Self::FilterValue(_)
                | Self::PolicyMismatch(_)
        )
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyStatement => f.write_str("the statement is empty"),
            Self::MultipleStatements(n) => {
                write!(f, "{n} statements in one string; send one at a time")
            }
            Self::StatementKind(kind) => write!(f, "`{kind}` statements are not allowed"),
            Self::Unsupported(what) => write!(f, "{what} is not supported"),
            Self::SystemCatalog(name) => write!(f, "system catalog `{name}` is not allowed"),
            // The policy's reasons are for logs, never for the caller.
            Self::NotPermitted { action, table, .. } => {
                write!(f, "the policy does not permit `{action}` on `{table}`")
            }
            Self::DeniedFunction(name) => write!(f, "function `{name}` is not allowed"),
            Self::WholeRow(name) => write!(
                f,
                "whole-row reference to `{name}` is not allowed; name the columns"
            ),
            Self::UnknownColumns(table) => write!(
                f,
                "the columns of `{table}` are unknown; declare them in the schema catalog"
            ),
            Self::UnknownColumn { table, column } => {
                write!(f, "`{table}` has no column `{column}` named by the policy")
            }
            Self::MaskUnsupported { strategy, dialect } => {
                write!(
                    f,
                    "mask strategy `{strategy}` is not available for {dialect}"
                )
            }
            Self::ObligationUnsupported(kind) => {
                write!(f, "obligation `{kind}` cannot be carried out on SQL")
            }
            Self::FilterValue(what) => write!(f, "row filter value cannot be written: {what}"),
            Self::SubjectAttribute(path) => {
                write!(
                    f,
                    "the subject has no usable attribute `{path}` for a row filter"
                )
            }
            Self::RowFilterViolation(table) => {
                write!(f, "the written row is outside the row filter of `{table}`")
            }
            Self::CannotProve { table, detail } => write!(
                f,
                "cannot prove the written row stays inside the row filter of `{table}`: {detail}"
            ),
            Self::Parameter(what) => write!(f, "bind parameter problem: {what}"),
            Self::TooComplex(what) => write!(f, "the statement is too large to analyse: {what}"),
            Self::PolicyMismatch(table) => write!(
                f,
                "an obligation names `{table}`, which the statement does not access (the \
                 policy does not fit the database)"
            ),
        }
    }
}
