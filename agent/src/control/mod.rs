//! The control plane: the Lattice resource model, its validation, and (next)
//! the Lattice API that edits it.

pub mod api;
pub mod model;
pub mod plan;
pub mod store;

pub use model::Config;

/// Counts `k` in (`add`) or out of a reference count; an entry that drops to
/// zero is removed, so two maps with the same live references compare equal.
pub(crate) fn count<K: Ord>(map: &mut std::collections::BTreeMap<K, u32>, k: K, add: bool) {
    use std::collections::btree_map::Entry;
    match (map.entry(k), add) {
        (Entry::Occupied(mut e), true) => *e.get_mut() += 1,
        (Entry::Occupied(e), false) if *e.get() <= 1 => {
            e.remove();
        }
        (Entry::Occupied(mut e), false) => *e.get_mut() -= 1,
        (Entry::Vacant(e), true) => {
            e.insert(1);
        }
        (Entry::Vacant(_), false) => {}
    }
}
pub use plan::{plan, Plan, ValidationError};

/// Errors loading a configuration file. Each message carries its cause in
/// full (the reload path logs it on its own), so the cause is not also
/// chained as a `source`, which would print it twice.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("reading {path}: {cause}")]
    Read {
        /// File path.
        path: std::path::PathBuf,
        /// Cause.
        cause: std::io::Error,
    },
    /// The file is not valid JSON of the model's shape.
    #[error("{path}: {cause}")]
    Parse {
        /// File path.
        path: std::path::PathBuf,
        /// Cause, with line and column.
        cause: serde_json::Error,
    },
    /// The content breaks the model's rules.
    #[error("{path}: {cause}")]
    Invalid {
        /// File path.
        path: std::path::PathBuf,
        /// Every problem found.
        cause: ValidationError,
    },
}

/// Reads, parses and validates a configuration file.
pub fn load(
    path: &std::path::Path,
    netns_dir: &std::path::Path,
) -> Result<(Config, Plan), LoadError> {
    let text = std::fs::read_to_string(path).map_err(|cause| LoadError::Read {
        path: path.to_owned(),
        cause,
    })?;
    let config: Config = serde_json::from_str(&text).map_err(|cause| LoadError::Parse {
        path: path.to_owned(),
        cause,
    })?;
    let plan = plan(&config, netns_dir).map_err(|cause| LoadError::Invalid {
        path: path.to_owned(),
        cause,
    })?;
    Ok((config, plan))
}
