//! The access request a PEP sends to a PDP, in the AuthZEN 1.0 shape.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A JSON object, as used for `properties` and `context`.
pub type Properties = Map<String, Value>;

/// An access request: who (`subject`) wants to do what (`action`) to which `resource`, in which
/// `context`.
///
/// It serializes to and from the AuthZEN Authorization API 1.0 request exactly:
///
/// ```
/// use warden_decision::AccessRequest;
///
/// let json = serde_json::json!({
///     "subject": {"type": "user", "id": "alice@example.com", "properties": {"role": "nurse"}},
///     "action": {"name": "GET"},
///     "resource": {"type": "route", "id": "/patients/{id}", "properties": {"params": {"id": "42"}}},
///     "context": {"time": "2026-11-30T10:00:00Z"}
/// });
/// let request: AccessRequest = serde_json::from_value(json.clone()).unwrap();
/// assert_eq!(request.subject.id, "alice@example.com");
/// assert_eq!(serde_json::to_value(&request).unwrap(), json);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessRequest {
    /// Who asks.
    pub subject: Subject,
    /// What they want to do.
    pub action: Action,
    /// What they want to do it to.
    pub resource: Resource,
    /// Everything else the policy may look at (time, client address, authentication strength).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub context: Properties,
}

impl AccessRequest {
    /// A request with empty properties and context.
    pub fn new(subject: Subject, action: Action, resource: Resource) -> Self {
        Self {
            subject,
            action,
            resource,
            context: Properties::new(),
        }
    }

    /// Adds one context attribute.
    #[must_use]
    pub fn with_context(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.context.insert(key.into(), value.into());
        self
    }
}

/// The subject of an access request: a user, a service, a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// The kind of subject, e.g. `user`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The subject's identifier, unique within its kind.
    pub id: String,
    /// Attributes of the subject (claims, roles, memberships).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub properties: Properties,
}

impl Subject {
    /// A subject without properties.
    pub fn new(kind: impl Into<String>, id: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            id: id.into(),
            properties: Properties::new(),
        }
    }

    /// A subject of kind `user`.
    pub fn user(id: impl Into<String>) -> Self {
        Self::new("user", id)
    }

    /// Adds one property.
    #[must_use]
    pub fn with_property(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }
}

/// The action of an access request, e.g. `GET` or `select`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    /// The action's name.
    pub name: String,
    /// Attributes of the action.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub properties: Properties,
}

impl Action {
    /// An action without properties.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            properties: Properties::new(),
        }
    }
}

/// The resource of an access request: a route, a table, a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    /// The kind of resource, e.g. `route` or `table`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The resource's identifier, unique within its kind.
    pub id: String,
    /// Attributes of the resource.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub properties: Properties,
}

impl Resource {
    /// A resource without properties.
    pub fn new(kind: impl Into<String>, id: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            id: id.into(),
            properties: Properties::new(),
        }
    }

    /// Adds one property.
    #[must_use]
    pub fn with_property(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_the_authzen_example_request() {
        // The example of AuthZEN Authorization API 1.0, section 6.1.
        let wire = json!({
            "subject": {"type": "user", "id": "alice@acmecorp.com"},
            "resource": {"type": "account", "id": "123"},
            "action": {"name": "can_read", "properties": {"method": "GET"}},
            "context": {"time": "1985-10-26T01:22-07:00"}
        });
        let request: AccessRequest = serde_json::from_value(wire.clone()).unwrap();
        assert_eq!(request.subject.kind, "user");
        assert_eq!(request.resource.id, "123");
        assert_eq!(request.action.properties["method"], "GET");
        assert_eq!(serde_json::to_value(&request).unwrap(), wire);
    }

    #[test]
    fn rejects_a_request_without_subject_id() {
        let wire = json!({
            "subject": {"type": "user"},
            "resource": {"type": "account", "id": "123"},
            "action": {"name": "can_read"}
        });
        let err = serde_json::from_value::<AccessRequest>(wire).unwrap_err();
        assert!(err.to_string().contains("missing field `id`"), "{err}");
    }

    #[test]
    fn rejects_non_object_properties() {
        let wire = json!({
            "subject": {"type": "user", "id": "a", "properties": [1]},
            "resource": {"type": "account", "id": "123"},
            "action": {"name": "can_read"}
        });
        assert!(serde_json::from_value::<AccessRequest>(wire).is_err());
    }
}
