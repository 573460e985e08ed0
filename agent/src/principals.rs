//! The data path's credential store on disk: `STATE_DIR/principals.json`
//! (mode 0600), edited by `latticed principal add|remove|list` and reread by
//! the daemon when it changes. See `latticed_proxy::authz::principals` for
//! the format.

use std::{
    io::Write as _,
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
    time::SystemTime,
};

use latticed_proxy::authz::principals::{Credential, File, Principal};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The file or an argument is invalid.
    #[error("{0}")]
    Invalid(String),
}

/// Where the store lives.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("principals.json")
}

/// Reads the store; a missing file is empty.
pub fn load(path: &Path) -> Result<File, Error> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            File::parse(&text).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(File::default()),
        Err(source) => Err(Error::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// The file's modification time, to notice edits.
pub fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn save(path: &Path, file: &File) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(file).map_err(|e| Error::Invalid(e.to_string()))?;
    write_private(path, &text).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })
}

/// Replaces `path` with `text`, readable by root only, whole or not at all
/// (written beside it, synced, renamed over it).
pub(crate) fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// A change to the principals, or a look at them.
#[derive(Debug, Clone)]
pub enum Edit {
    /// A new key for this principal.
    Add(Principal),
    /// Delete the key with this id.
    Remove(String),
    /// Change nothing.
    List,
}

/// What an [`Edit`] did.
#[derive(Debug)]
pub enum Edited {
    /// The new credential.
    Added(Credential),
    /// The removed key's id.
    Removed(String),
    /// The principals as they are.
    Listed(File),
}

/// Applies `edit` to `file`; `true` if it changed.
fn edit(file: &mut File, edit: Edit) -> Result<(Edited, bool), Error> {
    match edit {
        Edit::Add(principal) => {
            principal.validate().map_err(Error::Invalid)?;
            let (access_key_id, secret_access_key) = crate::control::api::new_key();
            let cred = Credential {
                access_key_id,
                secret_access_key,
                principal,
            };
            file.credentials.push(cred.clone());
            Ok((Edited::Added(cred), true))
        }
        Edit::Remove(key) => {
            let before = file.credentials.len();
            file.credentials.retain(|c| c.access_key_id != key);
            if file.credentials.len() == before {
                return Err(Error::Invalid(format!(
                    "no credential with access key {key}"
                )));
            }
            Ok((Edited::Removed(key), true))
        }
        Edit::List => Ok((Edited::Listed(file.clone()), false)),
    }
}

/// Applies `e` to the file at `path` (written back if it changed).
pub fn edit_file(path: &Path, e: Edit) -> Result<Edited, Error> {
    let mut file = load(path)?;
    let (out, changed) = edit(&mut file, e)?;
    if changed {
        save(path, &file)?;
    }
    Ok(out)
}

/// Applies `e` to a principals document (`None`: none yet); returns the
/// new text and what was done.
pub fn edit_text(text: Option<&str>, e: Edit) -> Result<(String, Edited), Error> {
    let mut file = match text {
        Some(t) => {
            File::parse(t).map_err(|e| Error::Invalid(format!("principals in etcd: {e}")))?
        }
        None => File::default(),
    };
    let (out, _) = edit(&mut file, e)?;
    let text = serde_json::to_string_pretty(&file).map_err(|e| Error::Invalid(e.to_string()))?;
    Ok((text, out))
}
