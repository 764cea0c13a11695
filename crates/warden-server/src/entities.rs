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
//! shapes; every member is optional. Without a declaration every search finds nothing.

use std::path::{Component, Path};

use serde::Deserialize;
use sha2::{Digest, Sha256};
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
    entities: String,
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
    let relative = Path::new(&search.entities);
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(error(format!(
            "`warden.toml`: `search.entities` = `{}` is not a path inside the package",
            search.entities
        )));
    }
    let bytes = std::fs::read(dir.join(relative))
        .map_err(|e| error(format!("cannot read `{}`: {e}", search.entities)))?;
    let mut entities: Entities =
        serde_json::from_slice(&bytes).map_err(|e| error(format!("`{}`: {e}", search.entities)))?;
    let digest = Sha256::digest(&bytes);
    entities.digest = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
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
    fn a_package_without_a_declaration_has_no_entities() {
        let dir = package("id = \"p\"\nversion = \"1\"\n", &[]);
        assert_eq!(load(&dir).unwrap(), Entities::default());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
