//! The model registry: one SQLite file in the store, `<store>/registry.sqlite`, with a row per
//! registered version (auto-incremented per name) and a table of aliases (`latest`, `staging`,
//! `production`, or any user name) pointing at versions.
//!
//! SQLite because versions must be allocated atomically when two runs register at once, and a
//! single file in the store travels with it; `rusqlite` with the bundled library needs nothing
//! installed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};

use crate::model_ref::ModelRef;
use crate::RegistryError;

/// File name of the registry inside the store.
pub const REGISTRY_FILE: &str = "registry.sqlite";

/// The alias every registration moves to its new version.
pub const LATEST: &str = "latest";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS versions (
    name            TEXT NOT NULL,
    version         INTEGER NOT NULL,
    created         TEXT NOT NULL,
    description     TEXT NOT NULL,
    base_model      TEXT NOT NULL,
    base_model_hash TEXT NOT NULL,
    model_dir       TEXT NOT NULL,
    adapter         TEXT,
    merged          TEXT,
    gguf            TEXT,
    metrics         TEXT NOT NULL,
    artifact_key    TEXT,
    pin             TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS aliases (
    name    TEXT NOT NULL,
    alias   TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (name, alias)
);
";

/// What a registration records; the registry adds the version number and the time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewVersion {
    /// Model name, e.g. `medalign`.
    pub name: String,
    /// Free text shown by `models show`.
    pub description: String,
    /// The base model as given (a known name or a path).
    pub base_model: String,
    /// BLAKE3 of the base model's weights file (or of its directory's safetensors).
    pub base_model_hash: String,
    /// The directory holding the registered files (`registration.json`, `adapter/`, ...).
    pub model_dir: PathBuf,
    /// The PEFT adapter directory, when the version is base + LoRA.
    pub adapter: Option<PathBuf>,
    /// A directory of merged safetensors weights, when there is one.
    pub merged: Option<PathBuf>,
    /// A GGUF file of the whole model, when there is one.
    pub gguf: Option<PathBuf>,
    /// Eval metrics (name -> value) from the eval report.
    pub metrics: BTreeMap<String, serde_json::Value>,
    /// The cache key of the register artifact, whose lineage explains the model.
    pub artifact_key: Option<String>,
    /// The pin that keeps the artifact through `gc`.
    pub pin: String,
    /// Aliases to point at the new version besides `latest`.
    pub aliases: Vec<String>,
}

/// One registered version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelVersion {
    /// Model name.
    pub name: String,
    /// Version, from 1.
    pub version: u32,
    /// Aliases pointing here, sorted.
    pub aliases: Vec<String>,
    /// When it was registered (RFC 3339).
    pub created: String,
    /// Free text.
    pub description: String,
    /// The base model as given.
    pub base_model: String,
    /// BLAKE3 of the base model's weights.
    pub base_model_hash: String,
    /// Directory of the registered files.
    pub model_dir: PathBuf,
    /// PEFT adapter directory.
    pub adapter: Option<PathBuf>,
    /// Merged weights directory.
    pub merged: Option<PathBuf>,
    /// Whole-model GGUF file.
    pub gguf: Option<PathBuf>,
    /// Eval metrics.
    pub metrics: BTreeMap<String, serde_json::Value>,
    /// Cache key of the register artifact.
    pub artifact_key: Option<String>,
    /// Pin name in the store.
    pub pin: String,
}

/// An open registry.
pub struct Registry {
    conn: Connection,
    path: PathBuf,
}

fn db_err(path: &Path) -> impl Fn(rusqlite::Error) -> RegistryError + '_ {
    move |e| RegistryError::Registry(format!("{}: {e}", path.display()))
}

/// Checks an alias or model name: letters, digits, `-`, `_`, `.`, not starting with a digit-only
/// string (that would read as a version).
pub fn check_name(what: &str, s: &str) -> Result<(), RegistryError> {
    let ok = !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !s.chars().all(|c| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(RegistryError::Invalid(format!(
            "{what} {s:?}: use letters, digits, '-', '_' or '.', and not only digits"
        )))
    }
}

impl Registry {
    /// Opens (creating) the registry of the store at `store_root`.
    pub fn open(store_root: &Path) -> Result<Registry, RegistryError> {
        std::fs::create_dir_all(store_root)
            .map_err(|e| RegistryError::Io(store_root.to_path_buf(), e))?;
        let path = store_root.join(REGISTRY_FILE);
        let conn = Connection::open(&path).map_err(db_err(&path))?;
        conn.busy_timeout(Duration::from_secs(30)).map_err(db_err(&path))?;
        conn.execute_batch(SCHEMA).map_err(db_err(&path))?;
        Ok(Registry { conn, path })
    }

    /// Opens the registry only if the store has one.
    pub fn open_existing(store_root: &Path) -> Result<Option<Registry>, RegistryError> {
        if store_root.join(REGISTRY_FILE).is_file() {
            Self::open(store_root).map(Some)
        } else {
            Ok(None)
        }
    }

    /// The registry file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Adds a version: the next number for its name, `latest` and `aliases` moved to it. A
    /// version already registered from the same artifact key is returned as it is.
    pub fn register(&mut self, new: &NewVersion) -> Result<ModelVersion, RegistryError> {
        check_name("model name", &new.name)?;
        for a in &new.aliases {
            check_name("alias", a)?;
        }
        let path = self.path.clone();
        let err = db_err(&path);
        let tx =
            self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(&err)?;
        if let Some(key) = &new.artifact_key {
            let existing: Option<u32> = tx
                .query_row(
                    "SELECT version FROM versions WHERE name = ?1 AND artifact_key = ?2",
                    params![new.name, key],
                    |r| r.get(0),
                )
                .optional()
                .map_err(&err)?;
            if let Some(v) = existing {
                drop(tx);
                return self.get(&ModelRef::Version(new.name.clone(), v));
            }
        }
        let version: u32 = tx
            .query_row(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM versions WHERE name = ?1",
                params![new.name],
                |r| r.get(0),
            )
            .map_err(&err)?;
        let path_text = |p: &Option<PathBuf>| p.as_ref().map(|p| p.to_string_lossy().into_owned());
        tx.execute(
            "INSERT INTO versions (name, version, created, description, base_model, base_model_hash, model_dir,
                adapter, merged, gguf, metrics, artifact_key, pin)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            params![
                new.name,
                version,
                humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
                new.description,
                new.base_model,
                new.base_model_hash,
                new.model_dir.to_string_lossy(),
                path_text(&new.adapter),
                path_text(&new.merged),
                path_text(&new.gguf),
                serde_json::to_string(&new.metrics).expect("metrics serialize"),
                new.artifact_key,
                new.pin,
            ],
        )
        .map_err(&err)?;
        for alias in std::iter::once(LATEST).chain(new.aliases.iter().map(String::as_str)) {
            tx.execute(
                "INSERT INTO aliases (name, alias, version) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version",
                params![new.name, alias, version],
            )
            .map_err(&err)?;
        }
        tx.commit().map_err(&err)?;
        self.get(&ModelRef::Version(new.name.clone(), version))
    }

    /// Points `alias` of `name` at `version`, which must exist; returns the version it pointed at before.
    pub fn promote(
        &mut self,
        name: &str,
        version: u32,
        alias: &str,
    ) -> Result<Option<u32>, RegistryError> {
        check_name("alias", alias)?;
        self.get(&ModelRef::Version(name.to_string(), version))?;
        let path = self.path.clone();
        let err = db_err(&path);
        let tx =
            self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(&err)?;
        let before: Option<u32> = tx
            .query_row(
                "SELECT version FROM aliases WHERE name = ?1 AND alias = ?2",
                params![name, alias],
                |r| r.get(0),
            )
            .optional()
            .map_err(&err)?;
        tx.execute(
            "INSERT INTO aliases (name, alias, version) VALUES (?1, ?2, ?3)
             ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version",
            params![name, alias, version],
        )
        .map_err(&err)?;
        tx.commit().map_err(&err)?;
        Ok(before)
    }

    /// The version a reference names.
    pub fn get(&self, r: &ModelRef) -> Result<ModelVersion, RegistryError> {
        let err = db_err(&self.path);
        let (name, version) = match r {
            ModelRef::Version(name, v) => (name.as_str(), Some(*v)),
            ModelRef::Alias(name, alias) => {
                let v: Option<u32> = self
                    .conn
                    .query_row(
                        "SELECT version FROM aliases WHERE name = ?1 AND alias = ?2",
                        params![name, alias],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(&err)?;
                (name.as_str(), v)
            }
        };
        let row = match version {
            Some(v) => self.version_row(name, v)?,
            None => None,
        };
        row.ok_or_else(|| RegistryError::NotFound {
            reference: r.to_string(),
            known: self.names().unwrap_or_default(),
        })
    }

    /// Every version, by name then version.
    pub fn list(&self) -> Result<Vec<ModelVersion>, RegistryError> {
        let err = db_err(&self.path);
        let mut stmt = self
            .conn
            .prepare("SELECT name, version FROM versions ORDER BY name, version")
            .map_err(&err)?;
        let ids: Vec<(String, u32)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(&err)?
            .collect::<Result<_, _>>()
            .map_err(&err)?;
        ids.into_iter().filter_map(|(n, v)| self.version_row(&n, v).transpose()).collect()
    }

    /// Registered model names with their version counts, e.g. `medalign (3 versions)`.
    fn names(&self) -> Result<Vec<String>, RegistryError> {
        let err = db_err(&self.path);
        let mut stmt = self
            .conn
            .prepare("SELECT name, COUNT(*) FROM versions GROUP BY name ORDER BY name")
            .map_err(&err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(format!("{} ({} versions)", r.get::<_, String>(0)?, r.get::<_, u32>(1)?))
            })
            .map_err(&err)?;
        rows.collect::<Result<_, _>>().map_err(&err)
    }

    fn version_row(&self, name: &str, version: u32) -> Result<Option<ModelVersion>, RegistryError> {
        let err = db_err(&self.path);
        let mut aliases_stmt = self
            .conn
            .prepare("SELECT alias FROM aliases WHERE name = ?1 AND version = ?2 ORDER BY alias")
            .map_err(&err)?;
        let aliases: Vec<String> = aliases_stmt
            .query_map(params![name, version], |r| r.get(0))
            .map_err(&err)?
            .collect::<Result<_, _>>()
            .map_err(&err)?;
        let opt_path = |s: Option<String>| s.map(PathBuf::from);
        self.conn
            .query_row(
                "SELECT created, description, base_model, base_model_hash, model_dir, adapter, merged, gguf,
                        metrics, artifact_key, pin
                 FROM versions WHERE name = ?1 AND version = ?2",
                params![name, version],
                |r| {
                    let metrics: String = r.get(8)?;
                    Ok(ModelVersion {
                        name: name.to_string(),
                        version,
                        aliases: aliases.clone(),
                        created: r.get(0)?,
                        description: r.get(1)?,
                        base_model: r.get(2)?,
                        base_model_hash: r.get(3)?,
                        model_dir: PathBuf::from(r.get::<_, String>(4)?),
                        adapter: opt_path(r.get(5)?),
                        merged: opt_path(r.get(6)?),
                        gguf: opt_path(r.get(7)?),
                        metrics: serde_json::from_str(&metrics).unwrap_or_default(),
                        artifact_key: r.get(9)?,
                        pin: r.get(10)?,
                    })
                },
            )
            .optional()
            .map_err(&err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(name: &str, key: &str) -> NewVersion {
        NewVersion {
            name: name.into(),
            description: String::new(),
            base_model: "smollm2-135m-instruct".into(),
            base_model_hash: "abc".into(),
            model_dir: "/m".into(),
            adapter: None,
            merged: None,
            gguf: None,
            metrics: BTreeMap::from([("accuracy".to_string(), serde_json::json!(0.5))]),
            artifact_key: Some(key.into()),
            pin: format!("model-{name}"),
            aliases: vec![],
        }
    }

    #[test]
    fn versions_increment_and_latest_follows() {
        let dir = tempfile::tempdir().unwrap();
        let mut reg = Registry::open(dir.path()).unwrap();
        assert_eq!(reg.register(&new("m", "k1")).unwrap().version, 1);
        let mut second = new("m", "k2");
        second.aliases = vec!["staging".into()];
        let v2 = reg.register(&second).unwrap();
        assert_eq!(
            (v2.version, v2.aliases.clone()),
            (2, vec!["latest".to_string(), "staging".to_string()])
        );
        assert_eq!(reg.register(&new("other", "k3")).unwrap().version, 1);
        assert_eq!(reg.get(&"m@latest".parse().unwrap()).unwrap().version, 2);
        assert_eq!(reg.get(&"m".parse().unwrap()).unwrap().version, 2);
        assert_eq!(reg.get(&"m:1".parse().unwrap()).unwrap().metrics["accuracy"], 0.5);
        assert_eq!(reg.list().unwrap().len(), 3);
    }

    #[test]
    fn same_artifact_key_registers_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut reg = Registry::open(dir.path()).unwrap();
        reg.register(&new("m", "k1")).unwrap();
        assert_eq!(reg.register(&new("m", "k1")).unwrap().version, 1);
        assert_eq!(reg.list().unwrap().len(), 1);
    }

    #[test]
    fn promote_moves_an_alias_and_refuses_missing_versions() {
        let dir = tempfile::tempdir().unwrap();
        let mut reg = Registry::open(dir.path()).unwrap();
        reg.register(&new("m", "k1")).unwrap();
        reg.register(&new("m", "k2")).unwrap();
        assert_eq!(reg.promote("m", 1, "production").unwrap(), None);
        assert_eq!(reg.promote("m", 2, "production").unwrap(), Some(1));
        assert_eq!(reg.get(&"m@production".parse().unwrap()).unwrap().version, 2);
        let e = reg.promote("m", 9, "production").unwrap_err().to_string();
        assert!(e.contains("m:9") && e.contains("m (2 versions)"), "{e}");
        assert!(reg.get(&"m@nope".parse().unwrap()).is_err());
    }
}
