//! The control plane: the Lattice resource model, its validation, and (next)
//! the Lattice API that edits it.

pub mod api;
pub mod model;
pub mod plan;
pub mod store;

pub use model::Config;
pub use plan::{plan, Plan, ValidationError};

/// Errors loading a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// File path.
        path: std::path::PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid JSON of the model's shape.
    #[error("{path}: {source}")]
    Parse {
        /// File path.
        path: std::path::PathBuf,
        /// Cause, with line and column.
        #[source]
        source: serde_json::Error,
    },
    /// The content breaks the model's rules.
    #[error("{path}: {source}")]
    Invalid {
        /// File path.
        path: std::path::PathBuf,
        /// Every problem found.
        #[source]
        source: ValidationError,
    },
}

/// Reads, parses and validates a configuration file.
pub fn load(
    path: &std::path::Path,
    netns_dir: &std::path::Path,
) -> Result<(Config, Plan), LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })?;
    let config: Config = serde_json::from_str(&text).map_err(|source| LoadError::Parse {
        path: path.to_owned(),
        source,
    })?;
    let plan = plan(&config, netns_dir).map_err(|source| LoadError::Invalid {
        path: path.to_owned(),
        source,
    })?;
    Ok((config, plan))
}
