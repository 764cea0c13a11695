//! The entities of one decision: stored (and provided) entities with the request-scoped
//! principal and resource.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::{Arc, RwLock};

use cedar_policy::{Entities, Entity, EntityUid, RestrictedExpression};
use serde_json::{Map, Value};
use warden_decision::AccessRequest;

use crate::mapping::Attributes;

/// `base` with the request-scoped entity `uid` carrying `attrs`. An entity already in `base`
/// keeps its attributes, parents and tags; request properties add the attributes it does not
/// have.
pub(crate) fn with_scoped(
    base: &Entities,
    uid: EntityUid,
    attrs: Attributes,
) -> Result<Entities, String> {
    let entity = scoped(base, uid, attrs)?;
    if base.is_empty() {
        return Entities::from_entities([entity], None).map_err(|e| e.to_string());
    }
    let replaces = base.get(&entity.uid()).is_some();
    let base = base.clone();
    // Cedar's upsert costs less than building the set afresh (measured).
    if replaces {
        base.upsert_entities([entity], None)
    } else {
        base.add_entities([entity], None)
    }
    .map_err(|e| e.to_string())
}

/// The attributes of a principal that is also the resource: the subject's properties first,
/// the resource's fill the gaps.
pub(crate) fn merged(mut principal: Attributes, resource: Attributes) -> Attributes {
    for (key, value) in resource {
        if !principal.iter().any(|(k, _)| *k == key) {
            principal.push((key, value));
        }
    }
    principal
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
/// instead of converting its claims and building the entities again; a new subject on a known
/// route starts from the remembered set of that route. Dropped with the loaded package on
/// reload; not used with an [`EntityProvider`](crate::EntityProvider), whose entities may
/// change on every request.
#[derive(Debug, Default)]
pub(crate) struct EntityCache {
    sets: Remembered<Cached>,
    resources: Remembered<ResourceSet>,
}

type Remembered<T> = RwLock<HashMap<u64, Arc<T>, FxBuild>>;

/// The entity set of a subject and a resource.
#[derive(Debug)]
pub(crate) struct Cached {
    subject: Key,
    resource: Key,
    pub(crate) principal: EntityUid,
    pub(crate) resource_uid: EntityUid,
    pub(crate) entities: Entities,
}

/// The stored entities with a request-scoped resource.
#[derive(Debug)]
pub(crate) struct ResourceSet {
    resource: Key,
    pub(crate) entities: Entities,
}

#[derive(Debug)]
struct Key {
    kind: String,
    id: String,
    properties: Vec<(String, Value)>,
}

/// Which properties count (those a policy can read).
type Read<'a> = &'a dyn Fn(&str) -> bool;

impl Key {
    fn new(kind: &str, id: &str, properties: &Map<String, Value>, read: Read<'_>) -> Self {
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

    fn subject(request: &AccessRequest, read: Read<'_>) -> Self {
        let s = &request.subject;
        Self::new(&s.kind, &s.id, &s.properties, read)
    }

    fn resource(request: &AccessRequest, read: Read<'_>) -> Self {
        let r = &request.resource;
        Self::new(&r.kind, &r.id, &r.properties, read)
    }

    fn matches(
        &self,
        kind: &str,
        id: &str,
        properties: &Map<String, Value>,
        read: Read<'_>,
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

    fn matches_subject(&self, request: &AccessRequest, read: Read<'_>) -> bool {
        let s = &request.subject;
        self.matches(&s.kind, &s.id, &s.properties, read)
    }

    fn matches_resource(&self, request: &AccessRequest, read: Read<'_>) -> bool {
        let r = &request.resource;
        self.matches(&r.kind, &r.id, &r.properties, read)
    }
}

fn hash_part(
    hasher: &mut FxHasher,
    kind: &str,
    id: &str,
    properties: &Map<String, Value>,
    read: Read<'_>,
) {
    kind.hash(hasher);
    id.hash(hasher);
    for (key, value) in properties.iter().filter(|(k, _)| read(k)) {
        key.hash(hasher);
        hash_json(value, hasher);
    }
    0xffu8.hash(hasher);
}

fn lookup<T>(map: &Remembered<T>, hash: u64, matches: impl Fn(&T) -> bool) -> Option<Arc<T>> {
    map.read()
        .ok()
        .and_then(|m| m.get(&hash).cloned())
        .filter(|c| matches(c))
}

fn remember<T>(map: &Remembered<T>, hash: u64, value: T) -> Arc<T> {
    let value = Arc::new(value);
    if let Ok(mut map) = map.write() {
        if map.len() >= CACHED {
            map.clear();
        }
        map.insert(hash, value.clone());
    }
    value
}

impl EntityCache {
    /// How many sets of subjects and resources are remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.sets.read().map_or(0, |m| m.len())
    }

    /// How many resource sets are remembered.
    #[cfg(test)]
    pub(crate) fn resources_len(&self) -> usize {
        self.resources.read().map_or(0, |m| m.len())
    }

    /// The key of `request`'s entity set, and the set when it is remembered.
    pub(crate) fn get(
        &self,
        request: &AccessRequest,
        read: Read<'_>,
    ) -> (u64, Option<Arc<Cached>>) {
        let mut hasher = FxHasher::default();
        let (s, r) = (&request.subject, &request.resource);
        hash_part(&mut hasher, &s.kind, &s.id, &s.properties, read);
        hash_part(&mut hasher, &r.kind, &r.id, &r.properties, read);
        let hash = hasher.finish();
        let found = lookup(&self.sets, hash, |c| {
            c.subject.matches_subject(request, read) && c.resource.matches_resource(request, read)
        });
        (hash, found)
    }

    /// Remembers `entities` as the set of `request`, with its principal and resource.
    pub(crate) fn put(
        &self,
        hash: u64,
        request: &AccessRequest,
        read: Read<'_>,
        (principal, resource_uid): (EntityUid, EntityUid),
        entities: Entities,
    ) -> Arc<Cached> {
        let cached = Cached {
            subject: Key::subject(request, read),
            resource: Key::resource(request, read),
            principal,
            resource_uid,
            entities,
        };
        remember(&self.sets, hash, cached)
    }

    /// The key of the stored entities with `request`'s resource, and the set when it is
    /// remembered.
    pub(crate) fn resource(
        &self,
        request: &AccessRequest,
        read: Read<'_>,
    ) -> (u64, Option<Arc<ResourceSet>>) {
        let mut hasher = FxHasher::default();
        let r = &request.resource;
        hash_part(&mut hasher, &r.kind, &r.id, &r.properties, read);
        let hash = hasher.finish();
        let found = lookup(&self.resources, hash, |c| {
            c.resource.matches_resource(request, read)
        });
        (hash, found)
    }

    /// Remembers the stored entities with `request`'s resource.
    pub(crate) fn put_resource(
        &self,
        hash: u64,
        request: &AccessRequest,
        read: Read<'_>,
        entities: Entities,
    ) -> Arc<ResourceSet> {
        let set = ResourceSet {
            resource: Key::resource(request, read),
            entities,
        };
        remember(&self.resources, hash, set)
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
