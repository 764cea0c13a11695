//! Which attribute names the policies can read, so that request properties no policy names are
//! never mapped.
//!
//! Cedar reads an entity attribute only by name (`e.name`, `e["name"]`, `e has name`): entities
//! cannot be enumerated, and compare by uid. So a principal or resource attribute whose name
//! appears in no attribute access of any policy cannot affect a decision. The context is a
//! record and *can* be used whole (`context == {...}`); when a policy does that, every context
//! attribute is kept.

use std::collections::HashSet;

use crate::entities::FxBuild;

/// A set of names.
type Names = HashSet<String, FxBuild>;

use cedar_policy::PolicySet;
use serde_json::Value;

/// The attribute names the policies read.
#[derive(Debug, Clone, Default)]
pub(crate) struct Referenced {
    /// Every attribute name accessed anywhere; `None`: keep everything.
    attrs: Option<Names>,
    /// The context attributes accessed; `None`: keep everything.
    context: Option<Names>,
}

impl Referenced {
    /// Everything is kept.
    #[cfg(test)]
    pub(crate) fn all() -> Self {
        Self::default()
    }

    pub(crate) fn of(policies: &PolicySet) -> Self {
        let mut walk = Walk {
            attrs: Names::default(),
            context: Names::default(),
            all_attrs: false,
            all_context: false,
        };
        for policy in policies.policies() {
            match policy.to_json() {
                Ok(json) => walk.value(&json),
                Err(_) => {
                    walk.all_attrs = true;
                    walk.all_context = true;
                }
            }
        }
        Self {
            attrs: (!walk.all_attrs).then_some(walk.attrs),
            context: (!walk.all_context).then_some(walk.context),
        }
    }

    /// Whether an entity attribute called `name` may be read.
    pub(crate) fn attribute(&self, name: &str) -> bool {
        self.attrs.as_ref().is_none_or(|a| a.contains(name))
    }

    /// Whether the context attribute `name` may be read.
    pub(crate) fn context(&self, name: &str) -> bool {
        self.context.as_ref().is_none_or(|c| c.contains(name))
    }
}

struct Walk {
    attrs: Names,
    context: Names,
    all_attrs: bool,
    all_context: bool,
}

impl Walk {
    /// Walks a policy in Cedar's JSON (EST) form.
    fn value(&mut self, value: &Value) {
        match value {
            Value::Object(members) => {
                for (key, member) in members {
                    if (key == "." || key == "has")
                        && let Value::Object(access) = member
                        && let Some(left) = access.get("left")
                    {
                        self.access(left, access.get("attr"));
                        continue;
                    }
                    if key == "Var" && member.as_str() == Some("context") {
                        // The context used whole.
                        self.all_context = true;
                    }
                    self.value(member);
                }
            }
            Value::Array(items) => items.iter().for_each(|item| self.value(item)),
            _ => {}
        }
    }

    /// `left.attr`, `left has attr` or `left has a.b.c`.
    fn access(&mut self, left: &Value, attr: Option<&Value>) {
        let names: Vec<&str> = match attr {
            Some(Value::String(name)) => vec![name.as_str()],
            Some(Value::Array(path)) => path.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let Some(first) = names.first() else {
            // A form this walk does not know: keep everything.
            self.all_attrs = true;
            self.all_context = true;
            self.value(left);
            return;
        };
        self.attrs.extend(names.iter().map(|n| (*n).to_owned()));
        let on_context = left
            .as_object()
            .and_then(|l| l.get("Var"))
            .and_then(Value::as_str)
            == Some("context");
        if on_context {
            self.context.insert((*first).to_owned());
        } else {
            self.value(left);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn of(src: &str) -> Referenced {
        Referenced::of(&PolicySet::from_str(src).unwrap())
    }

    #[test]
    fn collects_attribute_names_and_context_attributes() {
        let r = of(r#"
            permit (principal, action, resource)
            when { principal has role && principal.role == "nurse" &&
                   resource["params"].clinic_id == context.clinic &&
                   context has acr.level && principal has a.b };
        "#);
        for name in [
            "role",
            "params",
            "clinic_id",
            "a",
            "b",
            "acr",
            "level",
            "clinic",
        ] {
            assert!(r.attribute(name), "{name}");
        }
        assert!(!r.attribute("iat"));
        assert!(r.context("clinic") && r.context("acr"));
        assert!(!r.context("time") && !r.context("role"));
    }

    #[test]
    fn the_context_used_whole_keeps_every_context_attribute() {
        let r = of(r#"permit (principal, action, resource) when { context == {"a": 1} };"#);
        assert!(r.context("anything"));
        assert!(!r.attribute("anything"));
        let r = of(r#"permit (principal, action, resource) when { [context].contains({}) };"#);
        assert!(r.context("anything"));
    }

    #[test]
    fn no_policy_reading_attributes_keeps_none() {
        let r = of(r#"permit (principal in Group::"g", action, resource == Route::"/");"#);
        assert!(!r.attribute("role") && !r.context("time"));
        assert!(Referenced::all().attribute("x") && Referenced::all().context("y"));
    }
}
