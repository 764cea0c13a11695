//! From an AuthZEN-shaped access request to Cedar's principal, action, resource, context and
//! request-scoped entity attributes.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::RwLock;

use cedar_policy::{Context, EntityId, EntityTypeName, EntityUid, RestrictedExpression};
use serde_json::{Map, Value};
use warden_decision::AccessRequest;

use crate::entities::FxBuild;
use crate::load::LoadError;
use crate::referenced::Referenced;

/// How deep a JSON value may nest before it is rejected.
pub(crate) const MAX_DEPTH: usize = 32;

/// How many derived entity type names are remembered.
const MAX_REMEMBERED_TYPES: usize = 1024;

/// Why an access request cannot be put to Cedar. The decision is a deny.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MapError(pub(crate) String);

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The attributes of a request-scoped entity.
pub(crate) type Attributes = Vec<(String, RestrictedExpression)>;

/// Maps AuthZEN types to Cedar entity types (see the crate docs), remembering what it derived.
#[derive(Debug)]
pub(crate) struct Mapper {
    namespace: Option<String>,
    explicit: HashMap<String, EntityTypeName, FxBuild>,
    derived: RwLock<HashMap<String, EntityTypeName, FxBuild>>,
    action_type: EntityTypeName,
    referenced: Referenced,
    /// The empty context, shared (Cedar allocates a new one each time otherwise).
    empty_context: Context,
}

impl Mapper {
    pub(crate) fn new(
        namespace: Option<&str>,
        explicit: &[(String, String)],
        referenced: Referenced,
    ) -> Result<Self, LoadError> {
        let namespace = namespace.map(str::trim).filter(|n| !n.is_empty());
        if let Some(ns) = namespace {
            cedar_policy::EntityNamespace::from_str(ns)
                .map_err(|_| LoadError::Mapping(format!("`{ns}` is not a Cedar namespace")))?;
        }
        let qualified = |name: &str| match namespace {
            Some(ns) => format!("{ns}::{name}"),
            None => name.to_owned(),
        };
        let action_type = EntityTypeName::from_str(&qualified("Action"))
            .map_err(|_| LoadError::Mapping("the action type is not a Cedar name".into()))?;
        let mut map = HashMap::default();
        for (kind, cedar) in explicit {
            let name = EntityTypeName::from_str(cedar).map_err(|_| {
                LoadError::Mapping(format!(
                    "`{cedar}` (for type `{kind}`) is not a Cedar entity type name"
                ))
            })?;
            map.insert(kind.clone(), name);
        }
        Ok(Self {
            namespace: namespace.map(str::to_owned),
            explicit: map,
            derived: RwLock::new(HashMap::default()),
            action_type,
            referenced,
            empty_context: Context::empty(),
        })
    }

    /// The Cedar entity type of an AuthZEN `type`.
    pub(crate) fn entity_type(&self, kind: &str) -> Result<EntityTypeName, MapError> {
        if let Some(name) = self.explicit.get(kind) {
            return Ok(name.clone());
        }
        if let Some(name) = self.derived.read().ok().and_then(|m| m.get(kind).cloned()) {
            return Ok(name);
        }
        let base = upper_camel_case(kind).ok_or_else(|| {
            MapError(format!(
                "type `{kind}` has no Cedar entity type name (map it with `entity_type`)"
            ))
        })?;
        let full = match &self.namespace {
            Some(ns) => format!("{ns}::{base}"),
            None => base,
        };
        let name = EntityTypeName::from_str(&full).map_err(|_| {
            MapError(format!(
                "type `{kind}` maps to `{full}`, not a Cedar entity type name"
            ))
        })?;
        if let Ok(mut derived) = self.derived.write()
            && derived.len() < MAX_REMEMBERED_TYPES
        {
            derived.insert(kind.to_owned(), name.clone());
        }
        Ok(name)
    }

    /// The principal and the resource of `request`.
    pub(crate) fn principal_and_resource(
        &self,
        request: &AccessRequest,
    ) -> Result<(EntityUid, EntityUid), MapError> {
        let principal = EntityUid::from_type_name_and_id(
            self.entity_type(&request.subject.kind)?,
            EntityId::new(&request.subject.id),
        );
        let resource = EntityUid::from_type_name_and_id(
            self.entity_type(&request.resource.kind)?,
            EntityId::new(&request.resource.id),
        );
        Ok((principal, resource))
    }

    /// The action of `request`.
    pub(crate) fn action(&self, request: &AccessRequest) -> EntityUid {
        EntityUid::from_type_name_and_id(
            self.action_type.clone(),
            EntityId::new(&request.action.name),
        )
    }

    /// The context of `request`: the attributes some policy can read, with the action's
    /// properties as `context.action`.
    pub(crate) fn context(&self, request: &AccessRequest) -> Result<Context, MapError> {
        let read = |name: &str| self.referenced.context(name);
        let mut pairs = record_pairs(&request.context, "context", read)?;
        if !request.action.properties.is_empty() {
            if request.context.contains_key("action") {
                return Err(MapError(
                    "the context has an `action` attribute and the action has properties, which \
                     are mapped to `context.action`"
                        .into(),
                ));
            }
            if read("action") {
                let properties =
                    record_pairs(&request.action.properties, "action.properties", |_| true)?;
                pairs.push((
                    "action".to_owned(),
                    RestrictedExpression::new_record(properties)
                        .map_err(|e| MapError(format!("`action.properties`: {e}")))?,
                ));
            }
        }
        if pairs.is_empty() {
            return Ok(self.empty_context.clone());
        }
        Context::from_pairs(pairs)
            .map_err(|e| MapError(format!("the context cannot be built: {e}")))
    }

    /// The attributes of a request-scoped entity: the properties some policy can read.
    pub(crate) fn attributes(
        &self,
        properties: &Map<String, Value>,
        path: &str,
    ) -> Result<Attributes, MapError> {
        record_pairs(properties, path, |name| self.referenced.attribute(name))
    }

    /// Whether a request-scoped entity attribute called `name` may be read by a policy.
    pub(crate) fn reads_attribute(&self, name: &str) -> bool {
        self.referenced.attribute(name)
    }
}

/// `route` → `Route`, `service_account` / `service-account` → `ServiceAccount`. `None` when
/// nothing is left or the name would start with a digit.
pub(crate) fn upper_camel_case(kind: &str) -> Option<String> {
    let mut out = String::with_capacity(kind.len());
    for word in kind.split(|c: char| !c.is_ascii_alphanumeric()) {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            out.push(first.to_ascii_uppercase());
            out.extend(chars);
        }
    }
    if !kind.is_ascii() {
        return None;
    }
    match out.chars().next() {
        Some(c) if c.is_ascii_alphabetic() => Some(out),
        _ => None,
    }
}

/// The members of a JSON object that `keep` accepts, as Cedar record pairs. Members whose value
/// is `null` are left out (absent, so `has` is false).
pub(crate) fn record_pairs(
    object: &Map<String, Value>,
    path: &str,
    keep: impl Fn(&str) -> bool,
) -> Result<Vec<(String, RestrictedExpression)>, MapError> {
    let mut pairs = Vec::new();
    for (key, value) in object {
        if !keep(key) {
            continue;
        }
        if let Some(expr) = convert(value, 1).map_err(|e| e.at(path, key))? {
            pairs.push((key.clone(), expr));
        }
    }
    Ok(pairs)
}

/// A conversion error with the path to the value, built from the inside out.
struct ValueError {
    reversed_path: Vec<String>,
    message: String,
}

impl ValueError {
    fn new(message: String) -> Self {
        Self {
            reversed_path: Vec::new(),
            message,
        }
    }

    fn inside(mut self, segment: String) -> Self {
        self.reversed_path.push(segment);
        self
    }

    fn at(self, root: &str, key: &str) -> MapError {
        let mut path = format!("{root}.{key}");
        for segment in self.reversed_path.iter().rev() {
            path.push_str(segment);
        }
        MapError(format!("`{path}` {}", self.message))
    }
}

/// One JSON value as a Cedar value. `Ok(None)` for `null` (the attribute or element is left
/// out). Numbers that are not 64-bit integers are rejected: Cedar has no floating point, and
/// dropping the value could let a `forbid` that tests it stop applying.
fn convert(value: &Value, depth: usize) -> Result<Option<RestrictedExpression>, ValueError> {
    if depth > MAX_DEPTH {
        return Err(ValueError::new(format!(
            "nests deeper than {MAX_DEPTH} levels"
        )));
    }
    Ok(Some(match value {
        Value::Null => return Ok(None),
        Value::Bool(b) => RestrictedExpression::new_bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => RestrictedExpression::new_long(i),
            None => {
                return Err(ValueError::new(format!(
                    "is `{n}`, a number Cedar cannot represent (only 64-bit integers)"
                )));
            }
        },
        Value::String(s) => RestrictedExpression::new_string(s.clone()),
        Value::Array(items) => {
            let mut elements = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                if let Some(e) = convert(item, depth + 1).map_err(|e| e.inside(format!("[{i}]")))? {
                    elements.push(e);
                }
            }
            RestrictedExpression::new_set(elements)
        }
        Value::Object(members) => {
            if let Some(reference) = members.get("__entity")
                && members.len() == 1
            {
                return entity_reference(reference).map(Some);
            }
            let mut pairs = Vec::with_capacity(members.len());
            for (key, member) in members {
                if let Some(e) =
                    convert(member, depth + 1).map_err(|e| e.inside(format!(".{key}")))?
                {
                    pairs.push((key.clone(), e));
                }
            }
            RestrictedExpression::new_record(pairs).map_err(|e| ValueError::new(e.to_string()))?
        }
    }))
}

/// `{"__entity": {"type": "User", "id": "alice"}}`: a reference to an entity, as in Cedar's
/// entity JSON format. The type is a Cedar type name, not mapped.
fn entity_reference(reference: &Value) -> Result<RestrictedExpression, ValueError> {
    let malformed = || {
        ValueError::new(
            "is a malformed entity reference (want `{\"__entity\": {\"type\": \"T\", \"id\": \"i\"}}`)"
                .into(),
        )
    };
    let Value::Object(fields) = reference else {
        return Err(malformed());
    };
    let (Some(Value::String(kind)), Some(Value::String(id)), 2) =
        (fields.get("type"), fields.get("id"), fields.len())
    else {
        return Err(malformed());
    };
    let kind = EntityTypeName::from_str(kind).map_err(|_| {
        ValueError::new(format!(
            "references an entity of type `{kind}`, not a Cedar entity type name"
        ))
    })?;
    Ok(RestrictedExpression::new_entity_uid(
        EntityUid::from_type_name_and_id(kind, EntityId::new(id)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use warden_decision::{Action, Resource, Subject};

    #[test]
    fn derives_upper_camel_case_type_names() {
        assert_eq!(upper_camel_case("user").as_deref(), Some("User"));
        assert_eq!(upper_camel_case("route").as_deref(), Some("Route"));
        assert_eq!(
            upper_camel_case("service_account").as_deref(),
            Some("ServiceAccount")
        );
        assert_eq!(upper_camel_case("http-route").as_deref(), Some("HttpRoute"));
        assert_eq!(upper_camel_case("User").as_deref(), Some("User"));
        assert_eq!(upper_camel_case("table").as_deref(), Some("Table"));
        assert_eq!(upper_camel_case("if").as_deref(), Some("If"));
        assert_eq!(upper_camel_case(""), None);
        assert_eq!(upper_camel_case("--"), None);
        assert_eq!(upper_camel_case("3d"), None);
        assert_eq!(upper_camel_case("usér"), None);
    }

    #[test]
    fn maps_types_with_namespace_and_explicit_names() {
        let mapper = Mapper::new(
            Some("Clinic"),
            &[("route".into(), "Http::Route".into())],
            Referenced::all(),
        )
        .unwrap();
        let request = AccessRequest::new(
            Subject::user("alice"),
            Action::new("GET"),
            Resource::new("route", "/x"),
        );
        let (principal, resource) = mapper.principal_and_resource(&request).unwrap();
        assert_eq!(principal.to_string(), r#"Clinic::User::"alice""#);
        assert_eq!(
            mapper.action(&request).to_string(),
            r#"Clinic::Action::"GET""#
        );
        assert_eq!(resource.to_string(), r#"Http::Route::"/x""#);
        // Remembered, and the same the second time.
        assert_eq!(
            mapper.entity_type("user").unwrap().to_string(),
            "Clinic::User"
        );
        assert!(Mapper::new(Some("not a namespace"), &[], Referenced::all()).is_err());
        assert!(Mapper::new(None, &[("x".into(), "9x".into())], Referenced::all()).is_err());
        let err = mapper.entity_type("ünïcode").unwrap_err();
        assert!(err.0.contains("entity_type"), "{err}");
    }

    #[test]
    fn null_is_absent_and_floats_are_rejected_with_their_path() {
        let object = json!({"a": null, "b": [1, null, "x"], "c": {"d": null, "e": true}});
        let pairs =
            record_pairs(object.as_object().unwrap(), "subject.properties", |_| true).unwrap();
        let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["b", "c"]);
        let context = Context::from_pairs(pairs).unwrap();
        assert_eq!(context.get("b").unwrap().to_string(), r#"[1, "x"]"#);

        for (value, path, what) in [
            (json!({"score": 0.5}), "subject.properties.score", "0.5"),
            (
                json!({"a": {"b": [1, 2.5]}}),
                "subject.properties.a.b[1]",
                "2.5",
            ),
            (
                json!({"big": 18446744073709551615u64}),
                "subject.properties.big",
                "18446744073709551615",
            ),
        ] {
            let err = record_pairs(value.as_object().unwrap(), "subject.properties", |_| true)
                .unwrap_err();
            assert!(err.0.contains(&format!("`{path}`")), "{err}");
            assert!(err.0.contains(what), "{err}");
        }
    }

    #[test]
    fn deep_values_are_rejected() {
        let mut value = json!(1);
        for _ in 0..(MAX_DEPTH + 1) {
            value = json!([value]);
        }
        let object = json!({"deep": value});
        let err = record_pairs(object.as_object().unwrap(), "context", |_| true).unwrap_err();
        assert!(err.0.contains("deeper"), "{err}");
    }

    #[test]
    fn entity_references_use_the_cedar_escape() {
        let object = json!({"owner": {"__entity": {"type": "User", "id": "bob"}}});
        let pairs =
            record_pairs(object.as_object().unwrap(), "resource.properties", |_| true).unwrap();
        let context = Context::from_pairs(pairs).unwrap();
        assert_eq!(context.get("owner").unwrap().to_string(), r#"User::"bob""#);
        let object = json!({"owner": {"__entity": {"type": "User"}}});
        assert!(record_pairs(object.as_object().unwrap(), "x", |_| true).is_err());
        let object = json!({"owner": {"__entity": {"type": "not a type", "id": "a"}}});
        assert!(record_pairs(object.as_object().unwrap(), "x", |_| true).is_err());
    }

    #[test]
    fn action_properties_go_to_context_action_and_may_not_collide() {
        let mapper = Mapper::new(None, &[], Referenced::all()).unwrap();
        let mut request = AccessRequest::new(
            Subject::user("a"),
            Action::new("can_read"),
            Resource::new("account", "1"),
        );
        request
            .action
            .properties
            .insert("method".into(), json!("GET"));
        let context = mapper.context(&request).unwrap();
        let context = context.get("action").unwrap().to_string();
        assert!(context.contains("GET"), "{context}");
        let request = request.with_context("action", "x");
        assert!(mapper.context(&request).is_err());
    }
}
