//! The namespaces latticed has touched, written before it touches them, so a
//! run killed with SIGKILL can be cleaned up by the next one.

use std::{
    collections::BTreeSet,
    io::Write,
    path::{Path, PathBuf},
};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
#[error("namespace record {path}: {source}")]
pub struct Error {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

/// The record file (`RUN_DIR/namespaces`): one namespace name per line.
#[derive(Debug)]
pub struct Record {
    path: PathBuf,
}

impl Record {
    /// The record in `run_dir`, created if missing.
    pub fn open(run_dir: &Path) -> Result<Self, Error> {
        let path = run_dir.join("namespaces");
        std::fs::create_dir_all(run_dir).map_err(|source| Error {
            path: run_dir.to_owned(),
            source,
        })?;
        Ok(Self { path })
    }

    /// Names in the record (empty if there is none).
    pub fn read(&self) -> Result<BTreeSet<String>, Error> {
        match std::fs::read_to_string(&self.path) {
            Ok(s) => Ok(s
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeSet::new()),
            Err(source) => Err(Error {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// Replaces the record, durably (write, fsync, rename).
    pub fn write<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Result<(), Error> {
        let err = |source| Error {
            path: self.path.clone(),
            source,
        };
        let tmp = self.path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp).map_err(err)?;
        for n in names {
            writeln!(f, "{n}").map_err(err)?;
        }
        f.sync_all().map_err(err)?;
        std::fs::rename(&tmp, &self.path).map_err(err)
    }

    /// Deletes the record (clean shutdown).
    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
