//! The schema catalog: the column lists of the relations the PEP guards.
//!
//! Masks need every column of a table (the substituted relation lists them, masking some), and
//! so does `RETURNING *` on a masked table. Declare the columns, or read them from the database
//! at start-up with an adapter's `load_catalog` and refresh them with
//! [`SqlPolicy::set_catalog`](crate::SqlPolicy::set_catalog).
//!
//! ```
//! use warden_sql::Catalog;
//!
//! let catalog: Catalog = serde_json::from_value(serde_json::json!({
//!     "public.patients": ["id", "clinic_id", "name", "ssn"]
//! })).unwrap();
//! assert_eq!(catalog.columns("public.patients").unwrap().len(), 4);
//! assert!(catalog.columns("public.visits").is_none());
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Column lists by relation id (`schema.table`, in the dialect's folded form), in table order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Catalog {
    tables: BTreeMap<String, Vec<String>>,
}

impl Catalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) one relation.
    #[must_use]
    pub fn with_table<I, S>(mut self, id: impl Into<String>, columns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.insert(id, columns);
        self
    }

    /// Adds (or replaces) one relation.
    pub fn insert<I, S>(&mut self, id: impl Into<String>, columns: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tables
            .insert(id.into(), columns.into_iter().map(Into::into).collect());
    }

    /// The columns of `id` (`schema.table`), in table order.
    ///
    /// An exact match wins; otherwise a case-insensitive one, then an entry declared without
    /// a schema.
    pub fn columns(&self, id: &str) -> Option<&[String]> {
        if let Some(columns) = self.tables.get(id) {
            return Some(columns);
        }
        if let Some((_, columns)) = self
            .tables
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(id))
        {
            return Some(columns);
        }
        let bare = id.rsplit_once('.').map(|(_, t)| t)?;
        self.tables
            .iter()
            .find(|(name, _)| !name.contains('.') && name.eq_ignore_ascii_case(bare))
            .map(|(_, columns)| columns.as_slice())
    }

    /// The relations, by id.
    pub fn tables(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.tables.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// How many relations the catalog knows.
    pub fn len(&self) -> usize {
        self.tables.len()
    }

    /// Whether the catalog knows no relation.
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_up_exactly_then_loosely() {
        let c = Catalog::new()
            .with_table("public.patients", ["id", "ssn"])
            .with_table("visits", ["id"]);
        assert_eq!(c.columns("public.patients").unwrap(), ["id", "ssn"]);
        assert_eq!(c.columns("PUBLIC.Patients").unwrap(), ["id", "ssn"]);
        assert_eq!(c.columns("public.visits").unwrap(), ["id"]);
        assert!(c.columns("other.patients").is_none());
    }
}
