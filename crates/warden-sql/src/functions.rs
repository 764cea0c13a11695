//! The function allow-list: the functions a statement may call, per dialect.
//!
//! The defaults are data, one file per dialect (`crates/warden-sql/functions/<dialect>.txt`):
//! pure functions of their arguments — string, numeric, date/time, JSON accessors, aggregates
//! and window functions. Everything else is refused (`denied_function`): functions that run SQL
//! text, read catalogs, sequences, settings, files, locks, large objects, other sessions or the
//! server's state, and every extension's or user's function that is not listed. The builder
//! extends the list ([`SqlPolicyBuilder::allow_functions`](crate::SqlPolicyBuilder::allow_functions)),
//! takes names out of it ([`deny_functions`](crate::SqlPolicyBuilder::deny_functions)) or
//! replaces it ([`function_allow_list`](crate::SqlPolicyBuilder::function_allow_list)).
//!
//! ```
//! use warden_sql::Dialect;
//!
//! let postgres: Vec<&str> = Dialect::Postgres.allowed_functions().collect();
//! assert!(postgres.contains(&"lower"));
//! assert!(!postgres.contains(&"query_to_xml"));
//! assert!(!postgres.contains(&"current_setting"));
//! assert!(!Dialect::Sqlite.allowed_functions().any(|f| f == "load_extension"));
//! ```

use std::collections::HashSet;

use crate::dialect::Dialect;

/// The default allow-list file of a dialect.
pub(crate) fn default_list(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Postgres => include_str!("../functions/postgres.txt"),
        Dialect::MySql => include_str!("../functions/mysql.txt"),
        Dialect::Sqlite => include_str!("../functions/sqlite.txt"),
        Dialect::Generic => include_str!("../functions/generic.txt"),
    }
}

/// The names of a list file: one a line, `#` comments and blank lines skipped.
pub(crate) fn names(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
}

/// The entries of an allow-list file in the format of the dialects' own (one `name`,
/// `schema.name` or `prefix*` a line, `#` comments), for
/// [`SqlPolicyBuilder::allow_functions`](crate::SqlPolicyBuilder::allow_functions). An entry
/// that is not a function name (a call, an operator, a space inside) is an error naming its
/// line, so a typo never admits something else.
///
/// ```
/// let names = warden_sql::functions::parse_list("# the app's own\napp.score\nsimilarity_*\n").unwrap();
/// assert_eq!(names, ["app.score", "similarity_*"]);
/// assert!(warden_sql::functions::parse_list("lower(x)").is_err());
/// ```
pub fn parse_list(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let entry = line.split('#').next().unwrap_or_default().trim();
        if entry.is_empty() {
            continue;
        }
        let name = entry.strip_suffix('*').unwrap_or(entry);
        let valid = !name.is_empty()
            && name.split('.').count() <= 2
            && name.split('.').all(|part| {
                !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            });
        if !valid {
            return Err(format!(
                "line {}: `{entry}` is not a function name (`name`, `schema.name` or `prefix*`)",
                n + 1
            ));
        }
        out.push(entry.to_owned());
    }
    Ok(out)
}

/// One entry of a list: a name (`lower`, `app.f`) or a prefix pattern (`app_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    Prefix(String),
}

impl Pattern {
    fn new(text: &str) -> Self {
        let text = text.trim().to_ascii_lowercase();
        match text.strip_suffix('*') {
            Some(prefix) => Self::Prefix(prefix.to_owned()),
            None => Self::Exact(text),
        }
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            Self::Exact(n) => n == name,
            Self::Prefix(p) => name.starts_with(p.as_str()),
        }
    }
}

/// The functions a policy admits.
#[derive(Debug, Clone, Default)]
pub(crate) struct Functions {
    exact: HashSet<String>,
    patterns: Vec<Pattern>,
    denied: Vec<Pattern>,
    /// The schema whose name may qualify a listed function (`pg_catalog`).
    builtin_schema: Option<&'static str>,
}

impl Functions {
    /// The dialect's default list.
    pub(crate) fn defaults(dialect: Dialect) -> Self {
        let mut functions = Self {
            builtin_schema: (dialect == Dialect::Postgres).then_some("pg_catalog"),
            ..Self::default()
        };
        functions.allow(names(default_list(dialect)));
        functions
    }

    /// Empties the list (keeps the denied names).
    pub(crate) fn clear(&mut self) {
        self.exact.clear();
        self.patterns.clear();
    }

    pub(crate) fn allow<I, S>(&mut self, names: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for name in names {
            match Pattern::new(name.as_ref()) {
                Pattern::Exact(n) => {
                    self.exact.insert(n);
                }
                p => self.patterns.push(p),
            }
        }
    }

    pub(crate) fn deny<I, S>(&mut self, names: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.denied
            .extend(names.into_iter().map(|n| Pattern::new(n.as_ref())));
    }

    pub(crate) fn len(&self) -> usize {
        self.exact.len() + self.patterns.len()
    }

    fn listed(&self, name: &str) -> bool {
        self.exact.contains(name) || self.patterns.iter().any(|p| p.matches(name))
    }

    /// Whether a call of `parts` (folded, lower case) is admitted: an unqualified listed
    /// name, a listed name qualified with the built-in schema, or a listed qualified name.
    /// A denied name (unqualified or in full) is refused whatever the list says.
    pub(crate) fn admits(&self, parts: &[String]) -> bool {
        let full = parts.join(".");
        let Some(last) = parts.last() else {
            return false;
        };
        if self
            .denied
            .iter()
            .any(|d| d.matches(last) || d.matches(&full))
        {
            return false;
        }
        match parts {
            [name] => self.listed(name),
            [schema, name] if self.builtin_schema == Some(schema.as_str()) => {
                self.listed(name) || self.listed(&full)
            }
            _ => self.listed(&full),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(name: &str) -> Vec<String> {
        name.split('.').map(str::to_owned).collect()
    }

    #[test]
    fn every_list_parses_and_has_no_duplicates() {
        for dialect in [
            Dialect::Postgres,
            Dialect::MySql,
            Dialect::Sqlite,
            Dialect::Generic,
        ] {
            let all: Vec<&str> = names(default_list(dialect)).collect();
            let unique: HashSet<&str> = all.iter().copied().collect();
            assert_eq!(all.len(), unique.len(), "{dialect}");
            assert!(all.iter().all(|n| {
                n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            }));
        }
    }

    #[test]
    fn qualified_names_need_the_builtin_schema_or_their_own_entry() {
        let mut f = Functions::defaults(Dialect::Postgres);
        assert!(f.admits(&parts("lower")));
        assert!(f.admits(&parts("pg_catalog.lower")));
        assert!(!f.admits(&parts("public.lower")));
        assert!(!f.admits(&parts("query_to_xml")));
        assert!(!f.admits(&parts("pg_catalog.query_to_xml")));
        f.allow(["app.score", "app_*"]);
        assert!(f.admits(&parts("app.score")));
        assert!(!f.admits(&parts("score")));
        assert!(f.admits(&parts("app_rank")));
        f.deny(["lower", "app_secret*"]);
        assert!(!f.admits(&parts("pg_catalog.lower")));
        assert!(!f.admits(&parts("app_secret_of")));
        let mysql = Functions::defaults(Dialect::MySql);
        assert!(!mysql.admits(&parts("pg_catalog.lower")));
        assert!(!mysql.admits(&parts("clinic.lower")));
    }
}
