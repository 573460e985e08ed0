//! Durable state: resources, idempotency tokens and credentials, in one redb
//! database under the state directory.
//!
//! Every API mutation is one write transaction committed with redb's
//! immediate durability (fsync) before the API answers, so an acknowledged
//! write survives a crash, and a transaction cut short by one leaves nothing:
//! redb's copy-on-write commit is atomic.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde_json::Value;

/// Resource records by key (`kind/id`), as JSON.
const RESOURCES: TableDefinition<&str, &[u8]> = TableDefinition::new("resources");
/// Idempotency: `Operation/clientToken` -> {requestHash, response}.
const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("client_tokens");
/// Credentials: access key id -> {secret, principal}.
const CREDENTIALS: TableDefinition<&str, &[u8]> = TableDefinition::new("credentials");
/// Anything else by name (a cluster node's cache keeps its revision here).
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database failed.
    #[error("state store {path}: {source}")]
    Db {
        /// Database file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: Box<redb::Error>,
    },
    /// A stored record is not valid JSON (corruption or a foreign file).
    #[error("state store {path}: record {key:?} is not valid JSON: {source}")]
    Corrupt {
        /// Database file.
        path: PathBuf,
        /// Record key.
        key: String,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// A record has no JSON form (a map with non-string keys).
    #[error("state store: record {key:?} cannot be written as JSON: {source}")]
    Encode {
        /// Record key.
        key: String,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// Creating the state directory failed.
    #[error("state directory {path}: {source}")]
    Dir {
        /// Directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// One change of a mutation: of JSON, or of a typed record that the store
/// writes as JSON.
#[derive(Debug, Clone, PartialEq)]
pub enum Change<V = Value> {
    /// Insert or replace.
    Put(String, V),
    /// Remove.
    Delete(String),
}

/// The store.
#[derive(Debug)]
pub struct Store {
    db: Database,
    path: PathBuf,
}

/// Creates `dir` if needed and makes it 0700: the state directory holds
/// the CA key, the admin credentials and the store.
pub fn private_dir(dir: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt as _;
    let err = |source| Error::Dir {
        path: dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)
}

impl Store {
    /// Opens (or creates) `DIR/latticed.redb`, which holds the admin
    /// secret: the file is made 0600 and the directory 0700.
    pub fn open(dir: &Path) -> Result<Self, Error> {
        Self::open_file(dir, "latticed.redb")
    }

    /// [`Store::open`] of `DIR/FILE`.
    pub fn open_file(dir: &Path, file: &str) -> Result<Self, Error> {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        private_dir(dir)?;
        let path = dir.join(file);
        let file_err = |source| Error::Dir {
            path: path.clone(),
            source,
        };
        // Created 0600 before redb opens it, so it is never readable by
        // others, even for a moment; an older file is narrowed too.
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(file_err)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(file_err)?;
        let db = Database::create(&path).map_err(|e| Error::Db {
            path: path.clone(),
            source: Box::new(e.into()),
        })?;
        let store = Self { db, path };
        // Make sure the tables exist so reads never fail on a fresh file.
        store.write(|tx| {
            tx.open_table(RESOURCES)?;
            tx.open_table(TOKENS)?;
            tx.open_table(CREDENTIALS)?;
            tx.open_table(META)?;
            Ok(())
        })?;
        Ok(store)
    }

    fn err(&self, e: impl Into<redb::Error>) -> Error {
        Error::Db {
            path: self.path.clone(),
            source: Box::new(e.into()),
        }
    }

    fn write(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<(), Error> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        f(&tx).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    fn read_table(
        &self,
        table: TableDefinition<&str, &[u8]>,
    ) -> Result<Vec<(String, Value)>, Error> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(table).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for entry in t.iter().map_err(|e| self.err(e))? {
            let (k, v) = entry.map_err(|e| self.err(e))?;
            let key = k.value().to_owned();
            let value = serde_json::from_slice(v.value()).map_err(|source| Error::Corrupt {
                path: self.path.clone(),
                key: key.clone(),
                source,
            })?;
            out.push((key, value));
        }
        Ok(out)
    }

    /// Every resource record.
    pub fn resources(&self) -> Result<Vec<(String, Value)>, Error> {
        self.read_table(RESOURCES)
    }

    /// Every credential record.
    pub fn credentials(&self) -> Result<Vec<(String, Value)>, Error> {
        self.read_table(CREDENTIALS)
    }

    /// A stored idempotency entry.
    pub fn token(&self, key: &str) -> Result<Option<Value>, Error> {
        self.get(TOKENS, key)
    }

    /// One record of `table`, if it is there.
    fn get(&self, table: TableDefinition<&str, &[u8]>, key: &str) -> Result<Option<Value>, Error> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(table).map_err(|e| self.err(e))?;
        let Some(v) = t.get(key).map_err(|e| self.err(e))? else {
            return Ok(None);
        };
        serde_json::from_slice(v.value())
            .map(Some)
            .map_err(|source| Error::Corrupt {
                path: self.path.clone(),
                key: key.to_owned(),
                source,
            })
    }

    /// Applies `changes` (and records an idempotency token, if any) in one
    /// durable transaction.
    pub fn commit<V: serde::Serialize>(
        &self,
        changes: &[Change<V>],
        token: Option<(&str, &Value)>,
    ) -> Result<(), Error> {
        // Encoded before the transaction opens, so a record that cannot be
        // written refuses the whole change.
        let encoded = encode(changes)?;
        self.write(|tx| {
            let mut t = tx.open_table(RESOURCES)?;
            write_changes(&mut t, &encoded)?;
            if let Some((k, v)) = token {
                let mut tokens = tx.open_table(TOKENS)?;
                tokens.insert(k, serde_json::to_vec(v).unwrap_or_default().as_slice())?;
            }
            Ok(())
        })
    }

    /// A value stored by [`Store::commit_with_meta`].
    pub fn meta(&self, key: &str) -> Result<Option<Value>, Error> {
        self.get(META, key)
    }

    /// Stores `value` under `key`, with `changes` to the resources, in one
    /// transaction.
    pub fn commit_with_meta<V: serde::Serialize>(
        &self,
        changes: &[Change<V>],
        meta: &[(&str, &Value)],
    ) -> Result<(), Error> {
        let encoded = encode(changes)?;
        self.write(|tx| {
            let mut t = tx.open_table(RESOURCES)?;
            write_changes(&mut t, &encoded)?;
            write_meta(tx, meta)
        })
    }

    /// Replaces every resource and credential record and sets `meta`, in
    /// one transaction.
    pub fn replace_all(
        &self,
        resources: &[(String, Value)],
        credentials: &[(String, Value)],
        meta: &[(&str, &Value)],
    ) -> Result<(), Error> {
        self.write(|tx| {
            tx.delete_table(RESOURCES)?;
            tx.delete_table(CREDENTIALS)?;
            let mut t = tx.open_table(RESOURCES)?;
            for (k, v) in resources {
                t.insert(k.as_str(), v.to_string().as_bytes())?;
            }
            let mut c = tx.open_table(CREDENTIALS)?;
            for (k, v) in credentials {
                c.insert(k.as_str(), v.to_string().as_bytes())?;
            }
            write_meta(tx, meta)
        })
    }

    /// Removes a credential.
    pub fn remove_credential(&self, access_key: &str) -> Result<(), Error> {
        self.write(|tx| {
            tx.open_table(CREDENTIALS)?.remove(access_key)?;
            Ok(())
        })
    }

    /// Stores a credential.
    pub fn put_credential(&self, access_key: &str, record: &Value) -> Result<(), Error> {
        self.write(|tx| {
            let mut t = tx.open_table(CREDENTIALS)?;
            t.insert(
                access_key,
                serde_json::to_vec(record).unwrap_or_default().as_slice(),
            )?;
            Ok(())
        })
    }
}

/// A change's key and JSON (`None`: delete).
type Encoded<'a> = (&'a str, Option<Vec<u8>>);

/// Each change's key and JSON.
fn encode<V: serde::Serialize>(changes: &[Change<V>]) -> Result<Vec<Encoded<'_>>, Error> {
    changes
        .iter()
        .map(|c| match c {
            Change::Put(k, v) => serde_json::to_vec(v)
                .map(|b| (k.as_str(), Some(b)))
                .map_err(|source| Error::Encode {
                    key: k.clone(),
                    source,
                }),
            Change::Delete(k) => Ok((k.as_str(), None)),
        })
        .collect()
}

fn write_meta(tx: &redb::WriteTransaction, meta: &[(&str, &Value)]) -> Result<(), redb::Error> {
    let mut m = tx.open_table(META)?;
    for (k, v) in meta {
        m.insert(*k, v.to_string().as_bytes())?;
    }
    Ok(())
}

fn write_changes(
    t: &mut redb::Table<'_, &str, &[u8]>,
    encoded: &[Encoded<'_>],
) -> Result<(), redb::Error> {
    for (k, bytes) in encoded {
        match bytes {
            Some(b) => {
                t.insert(*k, b.as_slice())?;
            }
            None => {
                t.remove(*k)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "latticed-store-{}-{}",
            std::process::id(),
            fastrand_u64()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn fastrand_u64() -> u64 {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).unwrap();
        u64::from_le_bytes(b)
    }

    #[test]
    fn committed_changes_survive_reopening() {
        let dir = tempdir();
        {
            let s = Store::open(&dir).unwrap();
            s.commit(
                &[
                    Change::Put("service/svc-1".into(), serde_json::json!({"name": "a"})),
                    Change::Put("service/svc-2".into(), serde_json::json!({"name": "b"})),
                ],
                Some(("CreateService/tok", &serde_json::json!({"hash": "h"}))),
            )
            .unwrap();
            s.commit(&[Change::<Value>::Delete("service/svc-1".into())], None)
                .unwrap();
            s.put_credential("AKIA", &serde_json::json!({"secret": "s"}))
                .unwrap();
        }
        let s = Store::open(&dir).unwrap();
        let r = s.resources().unwrap();
        assert_eq!(
            r,
            vec![("service/svc-2".to_owned(), serde_json::json!({"name": "b"}))]
        );
        assert_eq!(
            s.token("CreateService/tok").unwrap(),
            Some(serde_json::json!({"hash": "h"}))
        );
        assert_eq!(s.credentials().unwrap().len(), 1);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(
            std::fs::metadata(dir.join("latticed.redb"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
