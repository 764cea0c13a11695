//! [`SqlPolicy`]: the configured SQL PEP — parse, analyse, ask, rewrite, check.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::ops::ControlFlow;
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde_json::{Value as Json, json};
use sqlparser::ast::{Query, Statement, Visit};
use warden_decision::{AccessRequest, Action, Pdp, Properties, Resource, Subject};

use crate::analyze::{AccessBuild, Check, ColumnTypes, Config, Operation, Walker};
use crate::catalog::Catalog;
use crate::dialect::{Dialect, DialectRules};
use crate::error::{DenyReason, SqlError};
use crate::filter::{Truth, eval};
use crate::flat::{Flat, number_placeholders, table_commands_as_selects};
use crate::functions::Functions;
use crate::keyed::{Binding, KeyPads};
use crate::mask::Masks;
use crate::parse::{
    DEEP, DEFAULT_MAX_OPERATORS, DEFAULT_MAX_STATEMENT_LEN, Limits, StringSettings, on_deep_stack,
    parse_one,
};
use crate::request::{Enforcement, SqlRequest, SqlValue};

mod cache_key;
mod rewrite;

/// The highest parser recursion limit a policy may set: deeper nesting of queries and
/// parentheses is refused well before any pass over the tree could exhaust a thread's stack.
pub const MAX_RECURSION_LIMIT: usize = 200;

/// The most statements each cache keeps, by default.
pub const DEFAULT_CACHE_CAPACITY: u64 = 4096;

/// Why a [`SqlPolicy`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The dialect has no default schema and none was given.
    #[error("the {0} dialect needs a default schema (the current database): call `default_schema`")]
    NoDefaultSchema(Dialect),
    /// The hash key is too short.
    #[error("a hash key must have at least {min} bytes, this one has {len}")]
    ShortHashKey {
        /// The shortest allowed.
        min: usize,
        /// The given length.
        len: usize,
    },
    /// The recursion limit is outside 1..=200.
    #[error("recursion limit {0} is outside 1..=200")]
    RecursionLimit(usize),
    /// A mask template does not parse (a bug).
    #[error("{0}")]
    Mask(String),
}

/// Builds a [`SqlPolicy`].
#[derive(Debug, Clone)]
#[must_use]
pub struct SqlPolicyBuilder {
    dialect: Dialect,
    default_schema: Option<String>,
    catalog: Catalog,
    allow_system: bool,
    functions: Functions,
    hash_key: Option<Vec<u8>>,
    replacement: String,
    recursion_limit: usize,
    max_len: usize,
    max_operators: usize,
    backslash_escapes: Option<bool>,
    ansi_quotes: Option<bool>,
    lower_case_table_names: Option<u8>,
    cache_capacity: u64,
    fence: Option<bool>,
    types: ColumnTypes,
}

impl SqlPolicyBuilder {
    /// Declares the types of columns of `table` (`schema.table`, or `table` for any schema),
    /// as the database names them (`bigint`, `varchar(20)`, `timestamp with time zone`).
    /// Behind the optimization fence, a top-level condition of the caller's `WHERE` on such a
    /// column that is a leakproof comparison for its type (PostgreSQL: the operators
    /// `pg_proc.proleakproof` marks; MySQL: no conversion of a stored value) with literals or
    /// bind parameters is copied into the substituted relation, after the row filter, so the
    /// database can use it in an index scan; it still runs outside too. Masked columns,
    /// functions, casts, arithmetic, `LIKE` and subqueries are never copied. Without a type only
    /// `IS [NOT] NULL` is (SQLite, whose comparisons cannot fail, needs no types). A wrong type
    /// can make a leaky comparison look leakproof: declare what the database reports.
    pub fn column_types<I, C, T>(mut self, table: impl AsRef<str>, columns: I) -> Self
    where
        I: IntoIterator<Item = (C, T)>,
        C: Into<String>,
        T: Into<String>,
    {
        self.types.insert(
            table.as_ref(),
            columns.into_iter().map(|(c, t)| (c.into(), t.into())),
        );
        self
    }

    /// Replaces the function allow-list (the dialect's default list, see
    /// [`Dialect::allowed_functions`]) with these names (`name`, `schema.name` or `prefix*`,
    /// case-insensitive).
    pub fn function_allow_list<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.functions.clear();
        self.functions
            .allow(names.into_iter().map(Into::into).collect::<Vec<String>>());
        self
    }

    /// Whether a substituted relation is an optimization fence (`OFFSET 0`), so the planner
    /// cannot evaluate the caller's predicates on rows the filter removes — and leak them
    /// through an error message (`invalid input syntax for type integer: "…"`). PostgreSQL's
    /// `security_barrier` views work this way. Default: on for PostgreSQL (`OFFSET 0`), MySQL
    /// and MariaDB (`LIMIT 18446744073709551615`) and SQLite (`LIMIT -1 OFFSET 0`), which
    /// otherwise merge the substituted relation into the outer query; off for the generic
    /// dialect. The price: the caller's predicates on a guarded table are applied after its row
    /// filter, not pushed into scans.
    pub fn optimization_fence(mut self, fence: bool) -> Self {
        self.fence = Some(fence);
        self
    }

    /// The schema unqualified names belong to (default: `public` for PostgreSQL and generic,
    /// `main` for SQLite; required for MySQL: the current database).
    pub fn default_schema(mut self, schema: impl Into<String>) -> Self {
        self.default_schema = Some(schema.into());
        self
    }

    /// The column lists of the guarded relations.
    pub fn catalog(mut self, catalog: Catalog) -> Self {
        self.catalog = catalog;
        self
    }

    /// Lets statements read system catalogs and `information_schema` (still subject to the
    /// policy: each one becomes an access request like any relation). Off by default.
    pub fn allow_system_catalogs(mut self, allow: bool) -> Self {
        self.allow_system = allow;
        self
    }

    /// Refuses these functions (`name`, `schema.name` or `prefix*`, case-insensitive) even
    /// when the allow-list has them.
    pub fn deny_functions<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.functions
            .deny(names.into_iter().map(Into::into).collect::<Vec<String>>());
        self
    }

    /// Adds functions to the allow-list (`name`, `schema.name` or `prefix*`,
    /// case-insensitive): a database's own pure functions, say. An unqualified entry admits
    /// unqualified calls only; a function of a schema is listed with its schema.
    pub fn allow_functions<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.functions
            .allow(names.into_iter().map(Into::into).collect::<Vec<String>>());
        self
    }

    /// The key of the `hash` mask (at least 16 bytes); without one `hash` is denied.
    pub fn hash_key(mut self, key: impl AsRef<[u8]>) -> Self {
        self.hash_key = Some(key.as_ref().to_vec());
        self
    }

    /// The text `redact` (and `year`, for values that are not dates) writes (default
    /// `[REDACTED]`).
    pub fn redact_replacement(mut self, text: impl Into<String>) -> Self {
        self.replacement = text.into();
        self
    }

    /// The parser's recursion limit (default 50, at most [`MAX_RECURSION_LIMIT`]).
    pub fn recursion_limit(mut self, limit: usize) -> Self {
        self.recursion_limit = limit;
        self
    }

    /// The longest statement analysed, in bytes (default [`DEFAULT_MAX_STATEMENT_LEN`]); a
    /// longer one is refused (`too_complex`).
    pub fn max_statement_len(mut self, bytes: usize) -> Self {
        self.max_len = bytes;
        self
    }

    /// The most operator tokens (`+`, `AND`, `::`, `.`, …) a statement may have (default
    /// [`DEFAULT_MAX_OPERATORS`]); more are refused (`too_complex`). This bounds the depth of
    /// the parsed tree, which the parser's recursion limit alone does not: every later pass over
    /// it recurses.
    pub fn max_operators(mut self, operators: usize) -> Self {
        self.max_operators = operators;
        self
    }

    /// Whether the server reads a backslash in `'…'` as an escape: MySQL and MariaDB without
    /// `NO_BACKSLASH_ESCAPES` in `sql_mode` (`true`), PostgreSQL with
    /// `standard_conforming_strings = off` (`true`; `on`, the default, is `false`). Read it
    /// from the server when connecting (the adapters' `string_settings`). Unknown (the
    /// default), or different from how the parser reads them (backslash escapes for MySQL,
    /// none for PostgreSQL), string literals with a backslash are refused: the server could
    /// end the literal somewhere else than the analysis did.
    pub fn backslash_escapes(mut self, escapes: bool) -> Self {
        self.backslash_escapes = Some(escapes);
        self
    }

    /// Both string settings at once, as an adapter read them from the server.
    pub fn string_settings(self, settings: StringSettings) -> Self {
        self.backslash_escapes(settings.backslash_escapes)
            .ansi_quotes(settings.ansi_quotes)
    }

    /// MySQL's `lower_case_table_names`, as the server has it (read it with
    /// `SqlxMySql::lower_case_table_names`). With 1 or 2 the server compares table and database
    /// names without regard to case, as the PEP does; with 0 (the default on Linux) `Patients`
    /// and `patients` are different tables, so unless the setting is known to be 1 or 2, a table
    /// or database name with upper-case letters is refused rather than resolved to the wrong
    /// table.
    pub fn lower_case_table_names(mut self, value: u8) -> Self {
        self.lower_case_table_names = Some(value);
        self
    }

    /// Whether MySQL reads `"…"` as an identifier (`ANSI_QUOTES` in `sql_mode`). Unless it is
    /// known to be off, double-quoted strings are refused in MySQL statements.
    pub fn ansi_quotes(mut self, ansi: bool) -> Self {
        self.ansi_quotes = Some(ansi);
        self
    }

    /// How many statements the analysis and rewrite caches keep (default
    /// [`DEFAULT_CACHE_CAPACITY`]); 0 turns them off.
    pub fn cache_capacity(mut self, capacity: u64) -> Self {
        self.cache_capacity = capacity;
        self
    }

    /// Builds the policy.
    pub fn build(self) -> Result<SqlPolicy, ConfigError> {
        let rules = self.dialect.rules();
        let default_schema = match self.default_schema {
            Some(s) => s,
            None => rules
                .default_schema()
                .ok_or(ConfigError::NoDefaultSchema(self.dialect))?
                .to_owned(),
        };
        if let Some(key) = &self.hash_key
            && key.len() < warden_decision::MIN_HASH_KEY_LEN
        {
            return Err(ConfigError::ShortHashKey {
                min: warden_decision::MIN_HASH_KEY_LEN,
                len: key.len(),
            });
        }
        if !(1..=MAX_RECURSION_LIMIT).contains(&self.recursion_limit) {
            return Err(ConfigError::RecursionLimit(self.recursion_limit));
        }
        let nonce = format!("warden_{}", uuid::Uuid::now_v7().simple());
        let masks = Masks::new(rules, &self.replacement, self.hash_key.as_deref(), &nonce)
            .map_err(ConfigError::Mask)?;
        let template = |sql: &str| -> Result<Query, ConfigError> {
            let (statement, _) = parse_one(rules, sql, Limits::TEMPLATES)
                .map_err(|e| ConfigError::Mask(e.to_string()))?;
            match statement {
                Statement::Query(q) => Ok(*q),
                _ => Err(ConfigError::Mask(format!(
                    "template `{sql}` is not a query"
                ))),
            }
        };
        let fence = self.fence.unwrap_or(self.dialect != Dialect::Generic);
        let plain_template = template("SELECT * FROM warden_source WHERE 1 = 1")?;
        let rows_template =
            template("WITH warden_rows AS (SELECT 1) SELECT * FROM warden_rows WHERE 1 = 1")?;
        Ok(SqlPolicy {
            inner: Arc::new(Inner {
                dialect: self.dialect,
                rules,
                default_schema,
                catalog: ArcSwap::from_pointee(self.catalog),
                allow_system: self.allow_system,
                functions: self.functions,
                masks,
                fence,
                nonce,
                table_names_fold: self.dialect != Dialect::MySql
                    || matches!(self.lower_case_table_names, Some(1 | 2)),
                plain_template,
                rows_template,
                limits: Limits {
                    recursion: self.recursion_limit,
                    length: self.max_len,
                    operators: self.max_operators,
                    backslash_escapes: self.backslash_escapes,
                    ansi_quotes: self.ansi_quotes,
                },
                analyses: (self.cache_capacity > 0)
                    .then(|| moka::sync::Cache::new(self.cache_capacity)),
                rewrites: (self.cache_capacity > 0)
                    .then(|| moka::sync::Cache::new(self.cache_capacity)),
                types: self.types,
            }),
        })
    }
}

/// Statement text to its analysis, with the catalog it was analysed under: an entry of another
/// catalog than the one in force is not served (a statement analysed while `set_catalog` ran
/// may be inserted after the caches were emptied).
type Analyses = moka::sync::Cache<String, Arc<(Arc<Catalog>, Result<Arc<Analysis>, SqlError>)>>;
type Rewrites = moka::sync::Cache<String, Arc<Rewrite>>;

/// The SQL PEP's configuration and caches. Cheap to clone (an `Arc`).
///
/// One statement goes through four steps:
///
/// 1. **Parse** with sqlparser in the policy's dialect, with a recursion limit. One statement
///    per string; unparseable input is refused.
/// 2. **Analyse**: refuse what cannot be analysed with certainty (see [`DenyReason`]), resolve
///    every relation (CTE names shadow tables only where the database says they do), and
///    record one access per (relation, operation) with the columns involved.
/// 3. **Ask**: one [`AccessRequest`] per access, decided in one batch; any deny or PDP error
///    refuses the statement.
/// 4. **Rewrite** with the obligations (`filter_rows`, `mask_columns`; `audit` is logged; any
///    other type refuses the statement): every read of a guarded relation becomes
///    `(SELECT <masked columns> FROM t AS warden_source WHERE <filter>) AS <alias>`, writes get
///    the filter and row checks, `RETURNING` is masked.
///
/// Steps 1–2 are cached by statement text, step 4 by statement text and obligations.
#[derive(Clone)]
pub struct SqlPolicy {
    inner: Arc<Inner>,
}

struct Inner {
    dialect: Dialect,
    rules: &'static dyn DialectRules,
    default_schema: String,
    catalog: ArcSwap<Catalog>,
    allow_system: bool,
    functions: Functions,
    masks: Masks,
    fence: bool,
    nonce: String,
    /// Whether table and schema names compare without regard to case, as the PEP folds them
    /// (not MySQL unless `lower_case_table_names` is known to be 1 or 2).
    table_names_fold: bool,
    plain_template: Query,
    rows_template: Query,
    limits: Limits,
    analyses: Option<Analyses>,
    rewrites: Option<Rewrites>,
    types: ColumnTypes,
}

impl fmt::Debug for SqlPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlPolicy")
            .field("dialect", &self.inner.dialect)
            .field("default_schema", &self.inner.default_schema)
            .field("catalog", &self.inner.catalog.load().len())
            .field("allow_system_catalogs", &self.inner.allow_system)
            .field("allowed_functions", &self.inner.functions.len())
            .finish()
    }
}

/// A statement parsed and analysed: what it reads and writes.
#[derive(Debug, Clone)]
pub struct Analysis {
    /// The catalog it was analysed under; its rewrite uses the same.
    catalog: Arc<Catalog>,
    text: Arc<str>,
    /// Per relation: the columns its reads may touch (`None`: all of them).
    reads: HashMap<String, Option<BTreeSet<String>>>,
    statement: Statement,
    accesses: Vec<TableAccess>,
    placeholders: HashMap<(u64, u64), usize>,
    dialect: Dialect,
    /// Whether its passes run on a thread with a large stack.
    deep: bool,
}

/// One (relation, operation) of a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TableAccess {
    /// `schema.table`.
    pub id: String,
    /// The schema.
    pub schema: String,
    /// The table (or view).
    pub table: String,
    /// The operation.
    pub operation: Operation,
    /// The columns read or written (a superset; every column for `*`; empty for `delete`).
    pub columns: Vec<String>,
}

impl Analysis {
    /// The accesses, one per (relation, operation), in the order first met.
    pub fn accesses(&self) -> &[TableAccess] {
        &self.accesses
    }

    /// The access requests for `subject`:
    ///
    /// ```json
    /// {"subject": <subject>,
    ///  "action": {"name": "select"},
    ///  "resource": {"type": "table", "id": "public.patients",
    ///               "properties": {"schema": "public", "table": "patients",
    ///                              "columns": ["clinic_id", "name"]}},
    ///  "context": {<the caller's context>, "sql": {"dialect": "postgres"}}}
    /// ```
    pub fn access_requests(&self, subject: &Subject, context: &Properties) -> Vec<AccessRequest> {
        self.accesses
            .iter()
            .map(|a| {
                let mut resource = Resource::new("table", a.id.clone());
                resource
                    .properties
                    .insert("schema".into(), Json::String(a.schema.clone()));
                resource
                    .properties
                    .insert("table".into(), Json::String(a.table.clone()));
                resource.properties.insert(
                    "columns".into(),
                    Json::Array(a.columns.iter().cloned().map(Json::String).collect()),
                );
                let mut context = context.clone();
                context.insert("sql".into(), json!({"dialect": self.dialect.name()}));
                AccessRequest {
                    subject: subject.clone(),
                    action: Action::new(a.operation.as_str()),
                    resource,
                    context,
                }
            })
            .collect()
    }
}

/// A rewritten statement and the row checks it needs at run time.
#[derive(Debug, Clone)]
pub struct Rewrite {
    /// The catalog it was made under: served from the cache only for an analysis of the same.
    catalog: Arc<Catalog>,
    sql: Arc<str>,
    checks: Vec<Check>,
    dialect: Dialect,
    /// The parameters the rewrite binds besides the caller's (the hash key's pads).
    binding: Option<(Binding, Arc<KeyPads>)>,
}

impl Rewrite {
    /// The statement to run, with [`Self::params`].
    pub fn sql(&self) -> &Arc<str> {
        &self.sql
    }

    /// The parameters to bind with [`Self::sql`], given the caller's: the caller's own, unless
    /// the rewrite binds parameters of its own (the `hash` mask binds its key's pads rather
    /// than write them into the statement), then the caller's with those in their places. A
    /// statement that binds pads refuses a different number of caller parameters than it
    /// takes.
    pub fn params(&self, caller: &[SqlValue]) -> Result<Vec<SqlValue>, DenyReason> {
        match &self.binding {
            None => Ok(caller.to_vec()),
            Some((binding, pads)) => binding.params(pads, caller),
        }
    }

    /// Whether the statement writes rows that must be checked against bind parameters.
    pub fn needs_params(&self) -> bool {
        self.checks.iter().any(|c| {
            c.row
                .iter()
                .any(|(_, k)| matches!(k, crate::filter::Known::Param(_)))
        })
    }

    /// Checks the rows the statement writes against their row filters, with the statement's
    /// bind parameters.
    pub fn check(&self, params: &[SqlValue]) -> Result<(), DenyReason> {
        let rules = self.dialect.rules();
        for check in &self.checks {
            let mut row = Vec::with_capacity(check.row.len());
            for (column, known) in &check.row {
                let value = match known {
                    crate::filter::Known::Literal(l) => Some(l.clone()),
                    crate::filter::Known::Param(i) => {
                        let p = params.get(*i).ok_or_else(|| {
                            DenyReason::Parameter(format!(
                                "parameter {} is needed to check the row filter of `{}`",
                                i + 1,
                                check.table
                            ))
                        })?;
                        p.literal()
                    }
                };
                row.push((column.as_str(), value));
            }
            let lookup = |c: &str| {
                row.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(c))
                    .and_then(|(_, v)| v.clone())
            };
            match eval(&check.predicate, &lookup, rules) {
                Truth::True => {}
                Truth::False | Truth::Null => {
                    return Err(DenyReason::RowFilterViolation(check.table.clone()));
                }
                Truth::Unknown => {
                    return Err(DenyReason::CannotProve {
                        table: check.table.clone(),
                        detail: "the filter depends on values the statement does not fix".into(),
                    });
                }
            }
        }
        Ok(())
    }
}

impl SqlPolicy {
    /// A builder for `dialect`.
    pub fn builder(dialect: Dialect) -> SqlPolicyBuilder {
        SqlPolicyBuilder {
            dialect,
            default_schema: None,
            catalog: Catalog::new(),
            allow_system: false,
            functions: Functions::defaults(dialect),
            hash_key: None,
            replacement: "[REDACTED]".into(),
            recursion_limit: 50,
            max_len: DEFAULT_MAX_STATEMENT_LEN,
            max_operators: DEFAULT_MAX_OPERATORS,
            backslash_escapes: None,
            lower_case_table_names: None,
            ansi_quotes: None,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            fence: None,
            types: ColumnTypes::default(),
        }
    }

    /// The placeholder prefix of substituted relations.
    #[cfg(test)]
    pub(crate) fn nonce(&self) -> &str {
        &self.inner.nonce
    }

    /// The dialect.
    pub fn dialect(&self) -> Dialect {
        self.inner.dialect
    }

    /// The current schema catalog.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.inner.catalog.load_full()
    }

    /// Replaces the schema catalog (after a migration, say) and empties the caches.
    pub fn set_catalog(&self, catalog: Catalog) {
        self.inner.catalog.store(Arc::new(catalog));
        if let Some(c) = &self.inner.analyses {
            c.invalidate_all();
        }
        if let Some(c) = &self.inner.rewrites {
            c.invalidate_all();
        }
    }

    /// Parses and analyses a statement (cached by its text).
    pub fn analyze(&self, sql: &str) -> Result<Arc<Analysis>, SqlError> {
        let catalog = self.inner.catalog.load_full();
        if let Some(cache) = &self.inner.analyses {
            if let Some(hit) = cache.get(sql)
                && Arc::ptr_eq(&hit.0, &catalog)
            {
                return hit.1.clone();
            }
            let result = self.analyze_uncached(sql, &catalog).map(Arc::new);
            cache.insert(sql.to_owned(), Arc::new((catalog, result.clone())));
            return result;
        }
        self.analyze_uncached(sql, &catalog).map(Arc::new)
    }

    fn config<'a>(&'a self, catalog: &'a Catalog) -> Config<'a> {
        Config {
            rules: self.inner.rules,
            default_schema: &self.inner.default_schema,
            catalog,
            allow_system: self.inner.allow_system,
            masks: &self.inner.masks,
            plain_template: &self.inner.plain_template,
            fence: self.inner.fence,
            nonce: &self.inner.nonce,
            table_names_fold: self.inner.table_names_fold,
            rows_template: &self.inner.rows_template,
            types: &self.inner.types,
        }
    }

    fn analyze_uncached(&self, sql: &str, catalog: &Arc<Catalog>) -> Result<Analysis, SqlError> {
        let (statement, operators) = parse_one(self.inner.rules, sql, self.inner.limits)?;
        if operators > DEEP {
            return on_deep_stack(|| self.analyze_parsed(sql, statement, catalog, true));
        }
        self.analyze_parsed(sql, statement, catalog, false)
    }

    fn analyze_parsed(
        &self,
        sql: &str,
        mut statement: Statement,
        catalog: &Arc<Catalog>,
        deep: bool,
    ) -> Result<Analysis, SqlError> {
        let rules = self.inner.rules;
        table_commands_as_selects(rules, &mut statement)?;
        let mut flat = Flat {
            functions: &self.inner.functions,
            rules,
            relations: 0,
            placeholders: Vec::new(),
        };
        if let ControlFlow::Break(reason) = statement.visit(&mut flat) {
            return Err(reason.into());
        }
        let placeholders = number_placeholders(self.inner.dialect, flat.placeholders)?;
        let config = self.config(catalog);
        let mut walker = Walker::new(&config, None, &placeholders);
        walker.statement(&mut statement)?;
        if walker.relations != flat.relations {
            return Err(DenyReason::Unsupported(
                "a relation in a position the PEP does not analyse".into(),
            )
            .into());
        }
        let mut reads: HashMap<String, Option<BTreeSet<String>>> = HashMap::new();
        for a in walker.accesses.iter().filter(|a| a.used) {
            let entry = reads
                .entry(a.table.id().to_owned())
                .or_insert_with(|| Some(BTreeSet::new()));
            if a.operation != Operation::Select || a.all_columns {
                // Writes and `*` keep every column in view.
                *entry = None;
            } else if let Some(set) = entry {
                set.extend(a.columns.iter().map(|c| c.to_ascii_lowercase()));
            }
        }
        let accesses = walker
            .accesses
            .into_iter()
            .filter(|a| a.used)
            .map(|a| finish_access(a, catalog))
            .collect();
        Ok(Analysis {
            catalog: catalog.clone(),
            text: sql.into(),
            reads,
            statement,
            accesses,
            placeholders,
            dialect: self.inner.dialect,
            deep,
        })
    }

    /// Analyses `request`, asks `pdp`, rewrites and checks: the statement to run instead of the
    /// caller's. Every error means the statement must not run.
    pub async fn enforce<P: Pdp + ?Sized>(
        &self,
        pdp: &P,
        request: &SqlRequest,
    ) -> Result<Enforcement, SqlError> {
        let analysis = self.analyze(&request.statement)?;
        let requests = analysis.access_requests(&request.subject, &request.context);
        let decisions = if requests.is_empty() {
            Vec::new()
        } else {
            let results = pdp.decide_batch(&requests).await;
            let mut decisions = Vec::with_capacity(results.len());
            for result in results {
                decisions.push(result.map_err(SqlError::Pdp)?);
            }
            decisions
        };
        // Without an analysis cache the analysis is ours alone: walk its statement, no clone.
        let (analysis, owned) = match Arc::try_unwrap(analysis) {
            Ok(mut owned) => {
                let statement = std::mem::replace(
                    &mut owned.statement,
                    Statement::Commit {
                        chain: false,
                        end: false,
                        modifier: None,
                    },
                );
                (Arc::new(owned), Some(statement))
            }
            Err(shared) => (shared, None),
        };
        let (rewrite, obligations, cache_hit) =
            self.rewrite_impl(&analysis, owned, &decisions, &request.subject)?;
        rewrite.check(&request.params)?;
        let params = rewrite.params(&request.params)?;
        Ok(Enforcement {
            statement: rewrite.sql.clone(),
            params,
            requests,
            decisions,
            obligations,
            cache_hit,
        })
    }
}

fn finish_access(a: AccessBuild, catalog: &Catalog) -> TableAccess {
    let (schema, table) = (a.table.schema.clone(), a.table.table.clone());
    let id = a.table.id().to_owned();
    let columns = if a.operation == Operation::Delete {
        Vec::new()
    } else if a.all_columns {
        match catalog.columns(&id) {
            Some(cols) => cols.iter().map(|c| c.to_ascii_lowercase()).collect(),
            None => {
                let mut cols: Vec<String> = a.columns.into_iter().collect();
                cols.push("*".into());
                cols
            }
        }
    } else {
        a.columns.into_iter().collect()
    };
    TableAccess {
        id,
        schema,
        table,
        operation: a.operation,
        columns,
    }
}
