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
        Ok(text) => parse(&text, &path.display().to_string()),
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

/// Writes the file (0600, whole or not at all).
pub fn save(path: &Path, file: &File) -> Result<(), Error> {
    let text = to_text(file)?;
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

/// Adds a new key for `principal` to `file`; returns it.
pub fn add_to(file: &mut File, principal: Principal) -> Result<Credential, Error> {
    principal.validate().map_err(Error::Invalid)?;
    let (access_key_id, secret_access_key) = crate::control::api::new_key();
    let cred = Credential {
        access_key_id,
        secret_access_key,
        principal,
    };
    file.credentials.push(cred.clone());
    Ok(cred)
}

/// Removes the key `access_key_id` from `file`.
pub fn remove_from(file: &mut File, access_key_id: &str) -> Result<(), Error> {
    let before = file.credentials.len();
    file.credentials
        .retain(|c| c.access_key_id != access_key_id);
    if file.credentials.len() == before {
        return Err(Error::Invalid(format!(
            "no credential with access key {access_key_id}"
        )));
    }
    Ok(())
}

/// Parses the document (`origin` names where it came from in errors).
pub fn parse(text: &str, origin: &str) -> Result<File, Error> {
    File::parse(text).map_err(|e| Error::Invalid(format!("{origin}: {e}")))
}

/// The document's text.
pub fn to_text(file: &File) -> Result<String, Error> {
    serde_json::to_string_pretty(file).map_err(|e| Error::Invalid(e.to_string()))
}
