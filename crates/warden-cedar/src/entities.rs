//! The entities of one decision: stored (and provided) entities with the request-scoped
//! principal and resource.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::{Arc, RwLock};

use cedar_policy::{Entities, Entity, EntityUid, RestrictedExpression};
use serde_json::{Map, Value};
use warden_core::AccessRequest;

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
    // Cedar's upsert costs less than building the set afresh (measured).
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

/// How many request-scoped entity sets a loaded package remembers.
const CACHED: usize = 1024;

/// The request-scoped entity sets already built, keyed by what they were built from: the
/// subject's and the resource's type, id and the properties a policy can read. A subject
/// asking again for the same route with the same parameters (the common case) reuses the set
/// instead of converting its claims and building the entities again. Dropped with the loaded
/// package on reload; not used with an [`EntityProvider`](crate::EntityProvider), whose
/// entities may change on every request.
#[derive(Debug, Default)]
pub(crate) struct EntityCache(RwLock<HashMap<u64, Arc<Cached>, FxBuild>>);

/// One remembered entity set.
#[derive(Debug)]
pub(crate) struct Cached {
    subject: Key,
    resource: Key,
    pub(crate) principal: EntityUid,
    pub(crate) resource_uid: EntityUid,
    pub(crate) entities: Entities,
}

#[derive(Debug)]
struct Key {
    kind: String,
    id: String,
    properties: Vec<(String, Value)>,
}

impl Key {
    fn new(
        kind: &str,
        id: &str,
        properties: &Map<String, Value>,
        read: &dyn Fn(&str) -> bool,
    ) -> Self {
        Self {
            kind: kind.to_owned(),
            id: id.to_owned(),
            properties: properties
                .iter()
                .filter(|(k, _)| read(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    fn matches(
        &self,
        kind: &str,
        id: &str,
        properties: &Map<String, Value>,
        read: &dyn Fn(&str) -> bool,
    ) -> bool {
        if self.kind != kind || self.id != id {
            return false;
        }
        let mut stored = self.properties.iter();
        for (key, value) in properties.iter().filter(|(k, _)| read(k)) {
            match stored.next() {
                Some((k, v)) if k == key && v == value => {}
                _ => return false,
            }
        }
        stored.next().is_none()
    }
}

impl EntityCache {
    /// How many sets are remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.0.read().map_or(0, |m| m.len())
    }

    /// The key of `request`'s entity set, and the set when it is remembered.
    pub(crate) fn get(
        &self,
        request: &AccessRequest,
        read: &dyn Fn(&str) -> bool,
    ) -> (u64, Option<Arc<Cached>>) {
        let mut hasher = FxHasher::default();
        for (kind, id, properties) in [
            (
                &request.subject.kind,
                &request.subject.id,
                &request.subject.properties,
            ),
            (
                &request.resource.kind,
                &request.resource.id,
                &request.resource.properties,
            ),
        ] {
            kind.hash(&mut hasher);
            id.hash(&mut hasher);
            for (key, value) in properties.iter().filter(|(k, _)| read(k)) {
                key.hash(&mut hasher);
                hash_json(value, &mut hasher);
            }
            0xffu8.hash(&mut hasher);
        }
        let hash = hasher.finish();
        let found = self
            .0
            .read()
            .ok()
            .and_then(|m| m.get(&hash).cloned())
            .filter(|c| {
                let (s, r) = (&request.subject, &request.resource);
                c.subject.matches(&s.kind, &s.id, &s.properties, read)
                    && c.resource.matches(&r.kind, &r.id, &r.properties, read)
            });
        (hash, found)
    }

    /// Remembers `entities` as the set of `request`, with its principal and resource.
    pub(crate) fn put(
        &self,
        hash: u64,
        request: &AccessRequest,
        read: &dyn Fn(&str) -> bool,
        (principal, resource_uid): (EntityUid, EntityUid),
        entities: Entities,
    ) -> Arc<Cached> {
        let (s, r) = (&request.subject, &request.resource);
        let cached = Arc::new(Cached {
            subject: Key::new(&s.kind, &s.id, &s.properties, read),
            resource: Key::new(&r.kind, &r.id, &r.properties, read),
            principal,
            resource_uid,
            entities,
        });
        if let Ok(mut map) = self.0.write() {
            if map.len() >= CACHED {
                map.clear();
            }
            map.insert(hash, cached.clone());
        }
        cached
    }
}

/// Hashes a JSON value by content.
fn hash_json(value: &Value, hasher: &mut FxHasher) {
    match value {
        Value::Null => 0u8.hash(hasher),
        Value::Bool(b) => (1u8, *b).hash(hasher),
        Value::Number(n) => {
            2u8.hash(hasher);
            if let Some(i) = n.as_i64() {
                i.hash(hasher);
            } else if let Some(u) = n.as_u64() {
                u.hash(hasher);
            } else {
                n.as_f64().map(f64::to_bits).hash(hasher);
            }
        }
        Value::String(s) => (3u8, s).hash(hasher),
        Value::Array(items) => {
            (4u8, items.len()).hash(hasher);
            items.iter().for_each(|v| hash_json(v, hasher));
        }
        Value::Object(members) => {
            (5u8, members.len()).hash(hasher);
            for (k, v) in members {
                k.hash(hasher);
                hash_json(v, hasher);
            }
        }
    }
}

/// A fast, non-cryptographic hasher (the rustc "Fx" scheme) for maps keyed by names of the
/// loaded package and for the entity cache, whose hits are confirmed by comparing the stored
/// key (so collisions only cost a rebuild).
#[derive(Debug, Default)]
pub(crate) struct FxHasher(u64);

/// Builds [`FxHasher`]s.
pub(crate) type FxBuild = std::hash::BuildHasherDefault<FxHasher>;

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
        }
        for &byte in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(byte)).wrapping_mul(K);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}
