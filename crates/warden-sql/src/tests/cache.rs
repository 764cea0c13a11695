//! The rewrite cache: served for the same statement, subject values and obligations, and
//! never past the checks every statement gets.

use serde_json::json;
use warden_decision::{Decision, Obligation, Pdp, PdpFuture, Subject};

use super::{Filtered, filtered, nurse, policy};
use crate::{Catalog, Dialect, SqlRequest};

#[tokio::test]
async fn the_rewrite_cache_serves_repeated_statements() {
    let p = policy(Dialect::Postgres);
    let request = SqlRequest::new("SELECT name FROM patients WHERE id = $1", nurse());
    let first = p.enforce(&filtered(), &request).await.unwrap();
    let second = p.enforce(&filtered(), &request).await.unwrap();
    assert!(!first.cache_hit && second.cache_hit);
    assert_eq!(first.statement, second.statement);
    // Another subject, other obligations: another rewrite.
    let other = SqlRequest::new(
        request.statement.clone(),
        nurse().with_property("clinic", "c2"),
    );
    let third = p.enforce(&filtered(), &other).await.unwrap();
    assert!(!third.cache_hit);
    assert!(third.statement.contains("'c2'"), "{}", third.statement);
    // A new catalog empties the caches.
    p.set_catalog(Catalog::new().with_table(
        "public.patients",
        ["id", "clinic_id", "name", "ssn", "notes"],
    ));
    let star = SqlRequest::new("SELECT * FROM patients", nurse());
    let fourth = p.enforce(&filtered(), &star).await.unwrap();
    assert!(!fourth.cache_hit);
    assert!(
        fourth.statement.contains("\"notes\""),
        "{}",
        fourth.statement
    );
    // A masked relation projects only the columns the statement can reference.
    assert!(
        !first.statement.contains("\"clinic_id\" AS"),
        "{}",
        first.statement
    );
}

/// The obligations of `filtered()` and one more.
fn with(extra: serde_json::Value) -> Filtered {
    let Filtered(decision) = filtered();
    Filtered(decision.with_obligation(Obligation::from_json(extra).unwrap()))
}

#[tokio::test]
async fn a_cached_rewrite_is_not_served_past_an_obligation_it_cannot_enforce() {
    let p = policy(Dialect::Postgres);
    let request = SqlRequest::new("SELECT name FROM patients WHERE id = $1", nurse());
    p.enforce(&filtered(), &request).await.unwrap();
    assert!(p.enforce(&filtered(), &request).await.unwrap().cache_hit);
    // The same filters and masks, and an obligation the SQL PEP cannot enforce: refused.
    let step_up = with(json!({"type": "step_up", "acr_values": "urn:example:mfa"}));
    let error = p.enforce(&step_up, &request).await.unwrap_err();
    assert_eq!(error.code(), "obligation_unsupported", "{error}");
    // A filter for a relation the statement does not read: refused.
    let elsewhere = with(json!({"type": "filter_rows", "table": "visits",
        "where": {"eq": [{"column": "clinic_id"}, {"subject": "clinic"}]}}));
    let error = p.enforce(&elsewhere, &request).await.unwrap_err();
    assert_eq!(error.code(), "policy_mismatch", "{error}");
    // A further filter on the relation: another rewrite, with both filters.
    let narrower = with(json!({"type": "filter_rows", "table": "patients",
        "where": {"eq": [{"column": "name"}, {"subject": "id"}]}}));
    let both = p.enforce(&narrower, &request).await.unwrap();
    assert!(!both.cache_hit);
    assert!(both.statement.contains("'nina'"), "{}", both.statement);
    // A stricter mask: another rewrite.
    let hidden = with(json!({"type": "mask_columns", "table": "patients",
        "columns": {"name": "redact"}}));
    let masked = p.enforce(&hidden, &request).await.unwrap();
    assert!(!masked.cache_hit);
    assert_ne!(masked.statement, both.statement);
}

#[tokio::test]
async fn a_cached_rewrite_is_not_served_to_a_subject_the_filter_cannot_resolve_for() {
    let p = policy(Dialect::Postgres);
    let request = SqlRequest::new("SELECT name FROM patients", nurse());
    p.enforce(&filtered(), &request).await.unwrap();
    // No clinic: the filter cannot be written, whatever the cache holds.
    let anonymous = SqlRequest::new(request.statement.clone(), Subject::user("nina"));
    let error = p.enforce(&filtered(), &anonymous).await.unwrap_err();
    assert_eq!(error.code(), "subject_attribute", "{error}");
    // A clinic that is a number and one that is the same digits as text: two rewrites.
    let number = SqlRequest::new(
        request.statement.clone(),
        nurse().with_property("clinic", 1),
    );
    let text = SqlRequest::new(
        request.statement.clone(),
        nurse().with_property("clinic", "1"),
    );
    let n = p.enforce(&filtered(), &number).await.unwrap();
    let t = p.enforce(&filtered(), &text).await.unwrap();
    assert!(!t.cache_hit);
    assert!(
        n.statement.contains("\"clinic_id\" = 1 ") && t.statement.contains("\"clinic_id\" = '1' "),
        "{} / {}",
        n.statement,
        t.statement
    );
}

/// Answers each request with the next of its decisions.
struct InTurn(std::sync::Mutex<Vec<Decision>>);

impl Pdp for InTurn {
    fn decide<'a>(&'a self, _: &'a warden_decision::AccessRequest) -> PdpFuture<'a> {
        let decision = self.0.lock().unwrap().remove(0);
        Box::pin(std::future::ready(Ok(decision)))
    }
}

#[tokio::test]
async fn the_key_follows_the_decision_not_the_subject_alone() {
    let p = policy(Dialect::Postgres);
    let request = SqlRequest::new("SELECT name, ssn FROM patients", nurse());
    let Filtered(masked) = filtered();
    let pdp = InTurn(std::sync::Mutex::new(vec![
        masked.clone(),
        Decision::permit(),
        masked,
    ]));
    let first = p.enforce(&pdp, &request).await.unwrap();
    let open = p.enforce(&pdp, &request).await.unwrap();
    let again = p.enforce(&pdp, &request).await.unwrap();
    assert!(!open.cache_hit && again.cache_hit);
    assert!(!open.statement.contains("clinic_id"), "{}", open.statement);
    assert_eq!(first.statement, again.statement);
    assert_ne!(first.statement, open.statement);
}

#[tokio::test]
async fn a_rewrite_made_under_another_catalog_is_not_served() {
    let p = policy(Dialect::Postgres);
    let sql = "SELECT * FROM patients";
    // Analysed under the first catalog; the catalog changes while the PDP is asked.
    let stale = p.analyze(sql).unwrap();
    p.set_catalog(Catalog::new().with_table(
        "public.patients",
        ["id", "clinic_id", "name", "ssn", "notes"],
    ));
    let Filtered(decision) = filtered();
    let (late, _, _) = p.rewrite(&stale, &[decision], &nurse()).unwrap();
    assert!(!late.sql().contains("notes"), "{}", late.sql());
    // The late rewrite went into the emptied cache; a statement analysed under the new
    // catalog does not get it.
    let fresh = p
        .enforce(&filtered(), &SqlRequest::new(sql, nurse()))
        .await
        .unwrap();
    assert!(!fresh.cache_hit);
    assert!(fresh.statement.contains("\"notes\""), "{}", fresh.statement);
    let again = p
        .enforce(&filtered(), &SqlRequest::new(sql, nurse()))
        .await
        .unwrap();
    assert!(again.cache_hit);
    assert_eq!(again.statement, fresh.statement);
}

#[tokio::test]
async fn a_subject_number_without_an_exact_literal_is_refused_not_rounded() {
    let p = policy(Dialect::Postgres);
    let sql = "SELECT name FROM patients";
    for clinic in [
        json!(u64::MAX),
        json!(1e20),
        json!(9_007_199_254_740_992.0_f64),
    ] {
        let request = SqlRequest::new(sql, nurse().with_property("clinic", clinic.clone()));
        let error = p.enforce(&filtered(), &request).await.unwrap_err();
        assert_eq!(error.code(), "subject_attribute", "{clinic}: {error}");
    }
    for clinic in [json!(i64::MAX), json!(1.5), json!(-3)] {
        let request = SqlRequest::new(sql, nurse().with_property("clinic", clinic.clone()));
        assert!(p.enforce(&filtered(), &request).await.is_ok(), "{clinic}");
    }
}
