//! bpffs: mount it if needed, and clear what a previous run left pinned.

use std::path::{Path, PathBuf};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Mounting bpffs failed.
    #[error("mounting bpffs at {path}: {source}")]
    Mount {
        /// Mount point.
        path: PathBuf,
        /// Cause.
        #[source]
        source: nix::Error,
    },
    /// The pin root is not on a bpffs and cannot be.
    #[error("{0} is not on a bpf filesystem")]
    NotBpffs(PathBuf),
    /// File system error on the pin root.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

fn is_bpffs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::BPF_FS_MAGIC)
}

/// Makes sure `root` (e.g. `/sys/fs/bpf/latticed`) exists on a bpffs,
/// mounting bpffs on its parent when the parent is `/sys/fs/bpf` and is not
/// mounted yet (it is not at boot on some systems).
pub fn prepare(root: &Path) -> Result<(), Error> {
    let parent = root.parent().unwrap_or(Path::new("/"));
    if !is_bpffs(parent) {
        if parent == Path::new("/sys/fs/bpf") {
            nix::mount::mount(
                Some("bpffs"),
                parent,
                Some("bpf"),
                nix::mount::MsFlags::empty(),
                None::<&str>,
            )
            .map_err(|source| Error::Mount {
                path: parent.to_owned(),
                source,
            })?;
            tracing::info!(path = %parent.display(), "mounted bpffs");
        } else {
            return Err(Error::NotBpffs(parent.to_owned()));
        }
    }
    std::fs::create_dir_all(root).map_err(|source| Error::Io {
        path: root.to_owned(),
        source,
    })
}

/// Removes every pin under `root` (a crashed run's programs, maps and links:
/// unpinning the link detaches its program once nothing else holds it).
/// Returns the namespace directories removed.
pub fn clear(root: &Path) -> Result<Vec<String>, Error> {
    let io = |source| Error::Io {
        path: root.to_owned(),
        source,
    };
    let mut removed = Vec::new();
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(io(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        if entry.file_type().map_err(io)?.is_dir() {
            std::fs::remove_dir_all(&path).map_err(io)?;
            removed.push(entry.file_name().to_string_lossy().into_owned());
        } else {
            std::fs::remove_file(&path).map_err(io)?;
        }
    }
    Ok(removed)
}

/// Removes `root` itself if it is empty (clean shutdown).
pub fn remove_root_if_empty(root: &Path) {
    if let Err(e) = std::fs::remove_dir(root) {
        tracing::debug!(path = %root.display(), error = %e, "pin root not removed");
    }
}
