//! SQL dialects: how names fold, how identifiers are quoted, which relations are system
//! catalogs and how each mask strategy is written in SQL.

use std::fmt;
use std::str::FromStr;

use sqlparser::ast::Ident;
use sqlparser::dialect::{
    Dialect as ParserDialect, GenericDialect, MySqlDialect, PostgreSqlDialect, SQLiteDialect,
};
use warden_decision::MaskStrategy;

/// The SQL dialect of the database behind the PEP.
///
/// | dialect | unquoted names | quoted names | default schema | quote |
/// |---|---|---|---|---|
/// | `postgres` | folded to lower case | exact | `public` | `"` |
/// | `mysql` | case-insensitive (folded to lower case) | case-insensitive | the current database (configure it) | `` ` `` |
/// | `sqlite` | case-insensitive | case-insensitive | `main` | `"` |
/// | `generic` | folded to lower case | exact | `public` | `"` |
///
/// Folding MySQL table names to lower case is the safe choice whatever
/// `lower_case_table_names` says: two names that differ only in case then share the
/// obligations of the one the policy names, never escape them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dialect {
    /// PostgreSQL.
    Postgres,
    /// MySQL and MariaDB.
    MySql,
    /// SQLite.
    Sqlite,
    /// ANSI-ish SQL for other databases; only the `null` and `redact` masks.
    Generic,
}

impl Dialect {
    /// The dialect's name (`postgres`, `mysql`, `sqlite`, `generic`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::MySql => "mysql",
            Self::Sqlite => "sqlite",
            Self::Generic => "generic",
        }
    }

    /// The functions the SQL PEP admits by default in this dialect (see
    /// [`functions`](crate::functions)).
    pub fn allowed_functions(self) -> impl Iterator<Item = &'static str> {
        crate::functions::names(crate::functions::default_list(self))
    }

    pub(crate) fn rules(self) -> &'static dyn DialectRules {
        match self {
            Self::Postgres => &Postgres,
            Self::MySql => &MySql,
            Self::Sqlite => &Sqlite,
            Self::Generic => &Generic,
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error for a dialect name Warden does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown SQL dialect `{0}` (expected postgres, mysql, sqlite or generic)")]
pub struct UnknownDialect(pub String);

impl FromStr for Dialect {
    type Err = UnknownDialect;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" | "pg" => Ok(Self::Postgres),
            "mysql" | "mariadb" => Ok(Self::MySql),
            "sqlite" | "sqlite3" => Ok(Self::Sqlite),
            "generic" | "ansi" => Ok(Self::Generic),
            _ => Err(UnknownDialect(s.to_owned())),
        }
    }
}

/// The name the mask templates use for the masked value.
pub(crate) const MASK_INPUT: &str = "warden_mask_input";

/// Per-dialect behaviour, behind one trait rather than `if dialect == …` (see STYLE).
pub(crate) trait DialectRules: Send + Sync {
    /// The dialect.
    fn dialect(&self) -> Dialect;
    /// sqlparser's dialect.
    fn parser(&self) -> &'static dyn ParserDialect;
    /// Whether quoted names keep their case.
    fn quoted_names_keep_case(&self) -> bool;
    /// The identifier quote character.
    fn quote(&self) -> char;
    /// The default schema, when the dialect has a fixed one.
    fn default_schema(&self) -> Option<&'static str>;
    /// Whether `schema.table` (`qualified` when the statement named the schema) is a system
    /// catalog.
    fn is_system(&self, schema: &str, table: &str, qualified: bool) -> bool;
    /// Whether the database has `MERGE`.
    fn supports_merge(&self) -> bool;
    /// Whether every CTE of a `WITH RECURSIVE` list sees every other (PostgreSQL), rather than
    /// itself and the ones before it.
    fn recursive_ctes_see_all(&self) -> bool {
        false
    }
    /// The clause that makes a derived table an optimization fence: the planner neither
    /// merges it into the outer query nor pushes the outer query's conditions into it.
    fn fence(&self) -> &'static str {
        " OFFSET 0"
    }
    /// The schema an unqualified name resolves to before the default one, if any.
    fn catalog_schema_of(&self, _table: &str) -> Option<&'static str> {
        None
    }
    /// Whether `=` on text ignores case and trailing spaces (MySQL's default collations).
    fn text_eq_ignores_case(&self) -> bool;
    /// Whether `LIKE` ignores (ASCII) case.
    fn like_ignores_case(&self) -> bool;
    /// SQL text of a string literal given as the hex of its UTF-8 bytes, for values that a
    /// plain quoted literal cannot carry safely in every server configuration.
    fn text_from_hex(&self, hex: &str) -> Option<String>;
    /// SQL text of the mask, over [`MASK_INPUT`]; `None` when the dialect cannot do it.
    /// `redact` is the replacement text as a SQL literal; `pads` the names that stand for the
    /// HMAC inner and outer key pads (hex text, bound as parameters after the rewrite).
    fn mask_sql(
        &self,
        strategy: MaskStrategy,
        redact: &str,
        pads: Option<(&str, &str)>,
    ) -> Option<String>;

    /// The normalized name of an identifier, exactly as the database resolves it: quoted names
    /// keep their case where the database keeps it; case folding is ASCII-only (PostgreSQL
    /// folds only ASCII letters of unquoted names, SQLite compares names ASCII
    /// case-insensitively; MySQL names outside ASCII are refused before parsing), so a
    /// look-alike such as `Ｐatients` or `patİents` never folds onto another name.
    fn fold(&self, ident: &Ident) -> String {
        let name = match ident.quote_style {
            Some(q) => {
                // Parsed without unescaping: a doubled quote stands for one.
                let doubled: String = [q, q].iter().collect();
                let name = ident.value.replace(&doubled, &q.to_string());
                if self.quoted_names_keep_case() {
                    name
                } else {
                    name.to_ascii_lowercase()
                }
            }
            None => ident.value.to_ascii_lowercase(),
        };
        self.truncate(name)
    }

    /// A name as the database stores it: PostgreSQL keeps the first 63 bytes.
    fn truncate(&self, name: String) -> String {
        name
    }

    /// A quoted identifier for `name` (as stored: quotes doubled, parsed without unescaping).
    fn ident(&self, name: &str) -> Ident {
        let q = self.quote();
        let doubled: String = [q, q].iter().collect();
        Ident::with_quote(q, name.replace(q, &doubled))
    }
}

static PG_PARSER: PostgreSqlDialect = PostgreSqlDialect {};
static MYSQL_PARSER: MySqlDialect = MySqlDialect {};
static SQLITE_PARSER: SQLiteDialect = SQLiteDialect {};
static GENERIC_PARSER: GenericDialect = GenericDialect;

struct Postgres;
struct MySql;
struct Sqlite;
struct Generic;

/// `CASE WHEN x IS NULL THEN NULL ELSE <redact> END`.
fn redact_sql(redact: &str) -> String {
    format!("CASE WHEN {MASK_INPUT} IS NULL THEN NULL ELSE {redact} END")
}

impl DialectRules for Postgres {
    fn recursive_ctes_see_all(&self) -> bool {
        true
    }
    /// `NAMEDATALEN - 1` bytes, cut at a character boundary, as PostgreSQL truncates.
    fn truncate(&self, mut name: String) -> String {
        if name.len() > 63 {
            let mut end = 63;
            while !name.is_char_boundary(end) {
                end -= 1;
            }
            name.truncate(end);
        }
        name
    }
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }
    fn parser(&self) -> &'static dyn ParserDialect {
        &PG_PARSER
    }
    fn quoted_names_keep_case(&self) -> bool {
        true
    }
    fn quote(&self) -> char {
        '"'
    }
    fn default_schema(&self) -> Option<&'static str> {
        Some("public")
    }
    fn is_system(&self, schema: &str, table: &str, qualified: bool) -> bool {
        // `pg_catalog` comes first on every search path: an unqualified `pg_…` name is a
        // catalog even when a table of that name exists in `public`.
        schema == "information_schema"
            || schema.starts_with("pg_")
            || (!qualified && table.starts_with("pg_"))
    }
    fn supports_merge(&self) -> bool {
        true
    }
    fn catalog_schema_of(&self, table: &str) -> Option<&'static str> {
        table.starts_with("pg_").then_some("pg_catalog")
    }
    fn text_eq_ignores_case(&self) -> bool {
        false
    }
    fn like_ignores_case(&self) -> bool {
        false
    }
    fn text_from_hex(&self, hex: &str) -> Option<String> {
        Some(format!("convert_from(decode('{hex}', 'hex'), 'UTF8')"))
    }
    fn mask_sql(
        &self,
        strategy: MaskStrategy,
        redact: &str,
        pads: Option<(&str, &str)>,
    ) -> Option<String> {
        let t = format!("CAST({MASK_INPUT} AS TEXT)");
        let keep = format!("least(4, char_length({t}) / 2)");
        Some(match strategy {
            MaskStrategy::Null | MaskStrategy::Remove => "CAST(NULL AS TEXT)".to_owned(),
            MaskStrategy::Redact => redact_sql(redact),
            MaskStrategy::Last4 => {
                format!("repeat('*', char_length({t}) - {keep}) || right({t}, {keep})")
            }
            MaskStrategy::First4 => {
                format!("left({t}, {keep}) || repeat('*', char_length({t}) - {keep})")
            }
            MaskStrategy::Hash => {
                let (inner, outer) = pads?;
                format!(
                    "encode(sha256(decode({outer}, 'hex') || sha256(decode({inner}, 'hex') || convert_to({t}, 'UTF8'))), 'hex')"
                )
            }
            MaskStrategy::Year => format!(
                "CASE WHEN {MASK_INPUT} IS NULL THEN NULL WHEN {t} ~ '^[0-9]{{4}}([-/T]|$)' THEN substr({t}, 1, 4) ELSE {redact} END"
            ),
        })
    }
}

impl DialectRules for MySql {
    /// MySQL and MariaDB merge derived tables and push conditions into them, except into one
    /// with a `LIMIT` (this is the largest).
    fn fence(&self) -> &'static str {
        " LIMIT 18446744073709551615"
    }
    fn dialect(&self) -> Dialect {
        Dialect::MySql
    }
    fn parser(&self) -> &'static dyn ParserDialect {
        &MYSQL_PARSER
    }
    fn quoted_names_keep_case(&self) -> bool {
        false
    }
    fn quote(&self) -> char {
        '`'
    }
    fn default_schema(&self) -> Option<&'static str> {
        None
    }
    fn is_system(&self, schema: &str, _table: &str, _qualified: bool) -> bool {
        matches!(
            schema,
            "information_schema" | "mysql" | "performance_schema" | "sys"
        )
    }
    fn supports_merge(&self) -> bool {
        false
    }
    fn text_eq_ignores_case(&self) -> bool {
        true
    }
    fn like_ignores_case(&self) -> bool {
        true
    }
    fn text_from_hex(&self, hex: &str) -> Option<String> {
        Some(format!("CONVERT(X'{hex}' USING utf8mb4)"))
    }
    fn mask_sql(
        &self,
        strategy: MaskStrategy,
        redact: &str,
        pads: Option<(&str, &str)>,
    ) -> Option<String> {
        let t = format!("CAST({MASK_INPUT} AS CHAR)");
        let keep = format!("LEAST(4, FLOOR(CHAR_LENGTH({t}) / 2))");
        Some(match strategy {
            MaskStrategy::Null | MaskStrategy::Remove => "CAST(NULL AS CHAR)".to_owned(),
            MaskStrategy::Redact => redact_sql(redact),
            MaskStrategy::Last4 => {
                format!("CONCAT(REPEAT('*', CHAR_LENGTH({t}) - {keep}), RIGHT({t}, {keep}))")
            }
            MaskStrategy::First4 => {
                format!("CONCAT(LEFT({t}, {keep}), REPEAT('*', CHAR_LENGTH({t}) - {keep}))")
            }
            MaskStrategy::Hash => {
                let (inner, outer) = pads?;
                format!(
                    "SHA2(CONCAT(UNHEX({outer}), UNHEX(SHA2(CONCAT(UNHEX({inner}), {t}), 256))), 256)"
                )
            }
            MaskStrategy::Year => format!(
                "CASE WHEN {MASK_INPUT} IS NULL THEN NULL WHEN {t} REGEXP BINARY '^[0-9]{{4}}([-/T]|$)' THEN LEFT({t}, 4) ELSE {redact} END"
            ),
        })
    }
}

impl DialectRules for Sqlite {
    /// SQLite flattens a sub-query unless it has an `OFFSET`, and pushes conditions into one
    /// unless it has a `LIMIT`.
    fn fence(&self) -> &'static str {
        " LIMIT -1 OFFSET 0"
    }
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }
    fn parser(&self) -> &'static dyn ParserDialect {
        &SQLITE_PARSER
    }
    fn quoted_names_keep_case(&self) -> bool {
        false
    }
    fn quote(&self) -> char {
        '"'
    }
    fn default_schema(&self) -> Option<&'static str> {
        Some("main")
    }
    fn is_system(&self, _schema: &str, table: &str, _qualified: bool) -> bool {
        table.starts_with("sqlite_") || table.starts_with("pragma_")
    }
    fn supports_merge(&self) -> bool {
        false
    }
    fn text_eq_ignores_case(&self) -> bool {
        false
    }
    fn like_ignores_case(&self) -> bool {
        true
    }
    fn text_from_hex(&self, hex: &str) -> Option<String> {
        Some(format!("CAST(X'{hex}' AS TEXT)"))
    }
    fn mask_sql(
        &self,
        strategy: MaskStrategy,
        redact: &str,
        _pads: Option<(&str, &str)>,
    ) -> Option<String> {
        let t = format!("CAST({MASK_INPUT} AS TEXT)");
        let keep = format!("min(4, length({t}) / 2)");
        // SQLite has no repeat(): `replace(hex(zeroblob(n)), '00', '*')` is n stars.
        let stars = |n: &str| format!("replace(hex(zeroblob({n})), '00', '*')");
        Some(match strategy {
            MaskStrategy::Null | MaskStrategy::Remove => "NULL".to_owned(),
            MaskStrategy::Redact => redact_sql(redact),
            MaskStrategy::Last4 => format!(
                "CASE WHEN {MASK_INPUT} IS NULL THEN NULL ELSE {} || substr({t}, length({t}) - {keep} + 1) END",
                stars(&format!("length({t}) - {keep}"))
            ),
            MaskStrategy::First4 => format!(
                "CASE WHEN {MASK_INPUT} IS NULL THEN NULL ELSE substr({t}, 1, {keep}) || {} END",
                stars(&format!("length({t}) - {keep}"))
            ),
            // SQLite has no SHA-256 function without an extension.
            MaskStrategy::Hash => return None,
            MaskStrategy::Year => {
                let mut digits = format!("substr({t}, 1, 4)");
                for d in 0..10 {
                    digits = format!("replace({digits}, '{d}', '')");
                }
                format!(
                    "CASE WHEN {MASK_INPUT} IS NULL THEN NULL WHEN length({t}) >= 4 AND {digits} = '' AND (length({t}) = 4 OR substr({t}, 5, 1) IN ('-', '/', 'T')) THEN substr({t}, 1, 4) ELSE {redact} END"
                )
            }
        })
    }
}

impl DialectRules for Generic {
    fn dialect(&self) -> Dialect {
        Dialect::Generic
    }
    fn parser(&self) -> &'static dyn ParserDialect {
        &GENERIC_PARSER
    }
    fn quoted_names_keep_case(&self) -> bool {
        true
    }
    fn quote(&self) -> char {
        '"'
    }
    fn default_schema(&self) -> Option<&'static str> {
        Some("public")
    }
    fn is_system(&self, schema: &str, table: &str, qualified: bool) -> bool {
        schema == "information_schema"
            || schema == "pg_catalog"
            || (!qualified && table.starts_with("pg_"))
    }
    fn supports_merge(&self) -> bool {
        true
    }
    fn text_eq_ignores_case(&self) -> bool {
        false
    }
    fn like_ignores_case(&self) -> bool {
        false
    }
    fn text_from_hex(&self, _hex: &str) -> Option<String> {
        None
    }
    fn mask_sql(
        &self,
        strategy: MaskStrategy,
        redact: &str,
        _pads: Option<(&str, &str)>,
    ) -> Option<String> {
        match strategy {
            MaskStrategy::Null | MaskStrategy::Remove => Some("NULL".to_owned()),
            MaskStrategy::Redact => Some(redact_sql(redact)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_aliases() {
        assert_eq!("PostgreSQL".parse::<Dialect>().unwrap(), Dialect::Postgres);
        assert_eq!("mariadb".parse::<Dialect>().unwrap(), Dialect::MySql);
        assert!("oracle".parse::<Dialect>().is_err());
    }

    #[test]
    fn folds_names_by_the_dialect_rules() {
        let quoted = Ident::with_quote('"', "Patients");
        let bare = Ident::new("Patients");
        assert_eq!(Dialect::Postgres.rules().fold(&quoted), "Patients");
        assert_eq!(Dialect::Postgres.rules().fold(&bare), "patients");
        assert_eq!(Dialect::Sqlite.rules().fold(&quoted), "patients");
        assert_eq!(
            Dialect::MySql
                .rules()
                .fold(&Ident::with_quote('`', "PATIENTS")),
            "patients"
        );
        assert_eq!(
            Dialect::Postgres
                .rules()
                .fold(&Ident::with_quote('"', "a\"\"b")),
            "a\"b"
        );
    }

    #[test]
    fn quotes_generated_identifiers() {
        let id = Dialect::MySql.rules().ident("we`ird");
        assert_eq!(id.to_string(), "`we``ird`");
        let id = Dialect::Postgres.rules().ident("a\"b");
        assert_eq!(id.to_string(), "\"a\"\"b\"");
    }

    #[test]
    fn recognizes_system_catalogs() {
        let pg = Dialect::Postgres.rules();
        assert!(pg.is_system("public", "pg_user", false));
        assert!(pg.is_system("pg_catalog", "pg_class", true));
        assert!(pg.is_system("information_schema", "tables", true));
        assert!(!pg.is_system("public", "patients", false));
        assert!(Dialect::MySql.rules().is_system("mysql", "user", true));
        assert!(
            Dialect::Sqlite
                .rules()
                .is_system("main", "sqlite_master", false)
        );
    }
}
