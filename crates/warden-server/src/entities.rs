//! The entity source a policy package declares for the AuthZEN search endpoints: the subjects,
//! resources and actions a search considers, each then decided by the policies.
//!
//! A package declares it in its `warden.toml`:
//!
//! ```toml
//! [search]
//! entities = "entities.search.json"
//! ```
//!
//! The file, a path inside the package, holds
//! `{"subjects": [Subject…], "resources": [Resource…], "actions": [Action…]}` in the AuthZEN
//! shapes; every member is optional. A Cedar package can name its stored entities instead (or as
//! well):
//!
//! ```toml
//! [search]
//! cedar_entities = true                # the package's entities.json
//! subject_types = ["user"]             # which AuthZEN types are subjects (default: user)
//! actions = ["view", "edit", "delete"] # the actions an action search considers
//! ```
//!
//! A Cedar entity's type becomes the AuthZEN type as `warden-cedar` maps them, backwards: the
//! namespace dropped, `ServiceAccount` → `service_account`. Without a declaration every search
//! finds nothing.

use std::path::{Component, Path};

use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use warden_decision::{Action, Resource, Subject};

use crate::PolicyError;

/// The candidates of the three searches.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Entities {
    #[serde(default)]
    pub(crate) subjects: Vec<Subject>,
    #[serde(default)]
    pub(crate) resources: Vec<Resource>,
    #[serde(default)]
    pub(crate) actions: Vec<Action>,
    /// A digest of the file, part of a search's revision.
    #[serde(skip)]
    pub(crate) digest: String,
}

#[derive(Debug, Deserialize)]
struct Manifest {
    #[serde(default)]
    search: Option<SearchSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchSection {
    #[serde(default)]
    entities: Option<String>,
    #[serde(default)]
    cedar_entities: bool,
    #[serde(default)]
    subject_types: Option<Vec<String>>,
    #[serde(default)]
    actions: Vec<String>,
}

/// `Clinic::ServiceAccount` → `service_account`.
fn authzen_type(cedar: &str) -> String {
    let name = cedar.rsplit("::").next().unwrap_or(cedar);
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The package's stored Cedar entities as candidates.
fn cedar_candidates(
    dir: &Path,
    subject_types: &[String],
    entities: &mut Entities,
    digest: &mut Sha256,
) -> Result<(), String> {
    let bytes = std::fs::read(dir.join("entities.json"))
        .map_err(|e| format!("cannot read `entities.json`: {e}"))?;
    digest.update(&bytes);
    let stored: Vec<serde_json::Value> =
        serde_json::from_slice(&bytes).map_err(|e| format!("`entities.json`: {e}"))?;
    for entity in stored {
        let uid = entity.get("uid");
        let field = |name: &str| {
            uid.and_then(|u| u.get(name))
                .and_then(serde_json::Value::as_str)
        };
        let (Some(kind), Some(id)) = (field("type"), field("id")) else {
            return Err("`entities.json`: an entity without a `uid` of `type` and `id`".into());
        };
        let kind = authzen_type(kind);
        if subject_types.contains(&kind) {
            entities.subjects.push(Subject::new(kind, id));
        } else {
            entities.resources.push(Resource::new(kind, id));
        }
    }
    Ok(())
}

/// The entities `dir`'s manifest declares, or none.
pub(crate) fn load(dir: &Path) -> Result<Entities, PolicyError> {
    let error = |message: String| PolicyError {
        path: dir.to_owned(),
        message,
    };
    let manifest = dir.join("warden.toml");
    let text = match std::fs::read_to_string(&manifest) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Entities::default()),
        Err(e) => return Err(error(format!("cannot read `warden.toml`: {e}"))),
    };
    let manifest: Manifest =
        toml::from_str(&text).map_err(|e| error(format!("`warden.toml`: {}", e.message())))?;
    let Some(search) = manifest.search else {
        return Ok(Entities::default());
    };
    let mut digest = Sha256::new();
    let mut entities = match &search.entities {
        Some(file) => {
            let relative = Path::new(file);
            if relative
                .components()
                .any(|c| !matches!(c, Component::Normal(_)))
            {
                return Err(error(format!(
                    "`warden.toml`: `search.entities` = `{file}` is not a path inside the package"
                )));
            }
            let bytes = std::fs::read(dir.join(relative))
                .map_err(|e| error(format!("cannot read `{file}`: {e}")))?;
            digest.update(&bytes);
            serde_json::from_slice(&bytes).map_err(|e| error(format!("`{file}`: {e}")))?
        }
        None => Entities::default(),
    };
    if search.cedar_entities {
        let subject_types = search
            .subject_types
            .clone()
            .unwrap_or_else(|| vec!["user".to_owned()]);
        cedar_candidates(dir, &subject_types, &mut entities, &mut digest).map_err(error)?;
    } else if search.subject_types.is_some() {
        return Err(error(
            "`warden.toml`: `search.subject_types` needs `cedar_entities = true`".into(),
        ));
    }
    for action in &search.actions {
        digest.update(action.as_bytes());
        entities.actions.push(Action::new(action.clone()));
    }
    if search.entities.is_none() && !search.cedar_entities && search.actions.is_empty() {
        return Err(error(
            "`warden.toml`: `[search]` names no `entities` file, no `cedar_entities`, no `actions`"
                .into(),
        ));
    }
    entities.digest = digest
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(entities)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(manifest: &str, files: &[(&str, &str)]) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("warden-entities-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("warden.toml"), manifest).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn reads_the_declared_file_and_refuses_paths_outside_the_package() {
        let dir = package(
            "id = \"p\"\nversion = \"1\"\n[search]\nentities = \"e.json\"\n",
            &[(
                "e.json",
                r#"{"subjects": [{"type": "user", "id": "alice"}], "actions": [{"name": "read"}]}"#,
            )],
        );
        let entities = load(&dir).unwrap();
        assert_eq!(entities.subjects[0].id, "alice");
        assert_eq!(entities.actions[0].name, "read");
        assert_eq!(entities.digest.len(), 16);
        for bad in ["../e.json", "/etc/passwd", "./e.json"] {
            std::fs::write(
                dir.join("warden.toml"),
                format!("id = \"p\"\nversion = \"1\"\n[search]\nentities = \"{bad}\"\n"),
            )
            .unwrap();
            let error = load(&dir).unwrap_err();
            assert!(
                error.message.contains("not a path inside"),
                "{bad}: {error}"
            );
        }
        std::fs::write(
            dir.join("warden.toml"),
            "[search]\nentities = \"e.json\"\nentites = 1\n",
        )
        .unwrap();
        assert!(load(&dir).unwrap_err().message.contains("entites"));
        std::fs::write(dir.join("warden.toml"), "[search]\nentities = \"e.json\"\n").unwrap();
        std::fs::write(dir.join("e.json"), r#"{"subject": []}"#).unwrap();
        assert!(load(&dir).unwrap_err().message.contains("unknown field"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_cedar_package_names_its_stored_entities() {
        let dir = package(
            "id = \"p\"\nversion = \"1\"\n[search]\ncedar_entities = true\n\
             subject_types = [\"user\", \"service_account\"]\nactions = [\"read\"]\n",
            &[(
                "entities.json",
                r#"[{"uid": {"type": "User", "id": "alice"}, "attrs": {}, "parents": []},
                    {"uid": {"type": "Ns::ServiceAccount", "id": "ci"}, "attrs": {}, "parents": []},
                    {"uid": {"type": "Record", "id": "r1"}, "attrs": {}, "parents": []}]"#,
            )],
        );
        let entities = load(&dir).unwrap();
        let subjects: Vec<(&str, &str)> = entities
            .subjects
            .iter()
            .map(|s| (s.kind.as_str(), s.id.as_str()))
            .collect();
        assert_eq!(subjects, [("user", "alice"), ("service_account", "ci")]);
        assert_eq!(entities.resources[0].kind, "record");
        assert_eq!(entities.actions[0].name, "read");
        std::fs::write(
            dir.join("entities.json"),
            r#"[{"uid": {"type": "User"}, "attrs": {}, "parents": []}]"#,
        )
        .unwrap();
        assert!(load(&dir).unwrap_err().message.contains("uid"));
        std::fs::write(dir.join("warden.toml"), "[search]\n").unwrap();
        assert!(load(&dir).unwrap_err().message.contains("names no"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_package_without_a_declaration_has_no_entities() {
        let dir = package("id = \"p\"\nversion = \"1\"\n", &[]);
        assert_eq!(load(&dir).unwrap(), Entities::default());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
