//! The entities of one decision: stored (and provided) entities with the request-scoped
//! principal and resource.

use std::str::FromStr;

use cedar_policy::{Entities, Entity, EntityUid, RestrictedExpression};

use crate::mapping::Attributes;

/// The entities for one request: `base` plus the principal and resource carrying the request's
/// properties. A principal or resource already in `base` keeps its attributes, parents and
/// tags; request properties add the attributes it does not have.
pub(crate) fn for_request(
    base: &Entities,
    principal: (EntityUid, Attributes),
    resource: (EntityUid, Attributes),
) -> Result<Entities, String> {
    let (principal_uid, principal_attrs) = principal;
    let (resource_uid, resource_attrs) = resource;
    let scoped = if principal_uid == resource_uid {
        // One entity: the subject's properties first, the resource's fill the gaps.
        let mut attrs = principal_attrs;
        for (key, value) in resource_attrs {
            if !attrs.iter().any(|(k, _)| *k == key) {
                attrs.push((key, value));
            }
        }
        vec![scoped(base, principal_uid, attrs)?]
    } else {
        vec![
            scoped(base, principal_uid, principal_attrs)?,
            scoped(base, resource_uid, resource_attrs)?,
        ]
    };
    if base.is_empty() {
        return Entities::from_entities(scoped, None).map_err(|e| e.to_string());
    }
    let replaces = scoped.iter().any(|e| base.get(&e.uid()).is_some());
    let base = base.clone();
    if replaces {
        base.upsert_entities(scoped, None)
    } else {
        base.add_entities(scoped, None)
    }
    .map_err(|e| e.to_string())
}

/// The request-scoped entity `uid`: new, or the stored one with the request's attributes
/// added.
fn scoped(base: &Entities, uid: EntityUid, attrs: Attributes) -> Result<Entity, String> {
    let Some(stored) = base.get(&uid) else {
        return Entity::new_with_tags(uid, attrs, [], []).map_err(|e| e.to_string());
    };
    let mut tags = Vec::new();
    for (key, value) in stored.tags() {
        let value = value.map_err(|e| e.to_string())?;
        let expr = RestrictedExpression::from_str(&value.to_string())
            .map_err(|e| format!("tag `{key}` of `{uid}` cannot be copied: {e}"))?;
        tags.push((key.to_owned(), expr));
    }
    let (uid, mut merged, parents) = stored.clone().into_inner();
    for (key, value) in attrs {
        merged.entry(key).or_insert(value);
    }
    Entity::new_with_tags(uid, merged, parents, tags).map_err(|e| e.to_string())
}
