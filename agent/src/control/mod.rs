//! The control plane: the Lattice resource model, its validation, and (next)
//! the Lattice API that edits it.

pub mod api;
pub mod cluster;
pub mod model;
pub mod plan;
pub mod security_groups;
pub mod store;

pub use model::Config;

/// How latticed names what it makes: the region and account in ARNs, and
/// the suffix of generated service DNS names (`{name}-{id}.{suffix}`).
/// Given once at start and shared by the API, the compiler and the
/// resolver.
#[derive(Clone, Debug)]
pub struct Naming {
    /// Region in ARNs.
    pub region: String,
    /// Account id in ARNs (12 digits).
    pub account: String,
    /// Suffix of generated service DNS names (answered NXDOMAIN when
    /// unknown).
    pub dns_suffix: String,
}

impl Naming {
    /// Suffix of generated resource DNS names, as AWS gives resource
    /// endpoints (`vpc-lattice-rsc.REGION.on.aws`).
    pub fn resource_suffix(&self) -> String {
        format!("vpc-lattice-rsc.{}.on.aws", self.region)
    }
}

#[cfg(test)]
impl Naming {
    /// The defaults' region and account, and a short suffix.
    pub fn example() -> Self {
        Self {
            region: "us-east-1".into(),
            account: "111122223333".into(),
            dns_suffix: "example".into(),
        }
    }
}

/// A value that did not fit its type: the path of the field at fault
/// (empty when it is the whole value) and the reason.
#[derive(Debug)]
pub(crate) struct Misfit {
    pub path: String,
    pub reason: String,
}

impl std::fmt::Display for Misfit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

/// Deserializes a `T` from `de`, naming the field at fault on failure: the
/// one way stored records, API input, the inventory and the accounts file
/// say where they are wrong.
pub(crate) fn deserialize_at<'de, T, D>(de: D) -> Result<T, Misfit>
where
    T: serde::Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        Misfit {
            path: if path == "." { String::new() } else { path },
            reason: e.into_inner().to_string(),
        }
    })
}

mod refcount;
pub use plan::{plan, Plan, ValidationError};
pub(crate) use refcount::count;

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
