//! Accounts besides the default one (`--account-id`): `STATE_DIR/accounts.json`
//! (mode 0600), edited by `latticed account add|remove|list` and reread by
//! the daemon when it changes, as the data path's principals are. Each
//! account has admin keys that sign API calls as that account: what such a
//! call creates belongs to it, and it sees and changes only its own.
//!
//! The default account's admin key stays in the state store and
//! `STATE_DIR/admin-credentials`; a user who never adds an account sees
//! nothing of this.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

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

/// The file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct File {
    /// Account id -> its keys.
    #[serde(default)]
    pub accounts: BTreeMap<String, Account>,
}

/// One account.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Account {
    /// Access key id -> secret access key.
    pub admin_keys: BTreeMap<String, String>,
    /// Its AWS Organizations id: shares between accounts of one
    /// organisation need no invitation, and its callers' `aws:PrincipalOrgID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_id: Option<String>,
}

/// Whether `id` is an AWS account id: 12 digits.
pub fn is_account_id(id: &str) -> bool {
    id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit())
}

/// Where the file lives.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("accounts.json")
}

/// Reads the file; a missing file has no accounts. Every account id is
/// checked.
pub fn load(path: &Path) -> Result<File, Error> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(File::default()),
        Err(source) => {
            return Err(Error::Io {
                path: path.to_owned(),
                source,
            })
        }
    };
    parse(&text, &path.display().to_string())
}

/// Parses the accounts document (`origin` names where it came from in
/// errors); every account id and organisation is checked.
pub fn parse(text: &str, origin: &str) -> Result<File, Error> {
    let de = &mut serde_json::Deserializer::from_str(text);
    let file: File =
        crate::control::deserialize_at(de).map_err(|e| Error::Invalid(format!("{origin}: {e}")))?;
    if let Some(bad) = file.accounts.keys().find(|id| !is_account_id(id)) {
        return Err(Error::Invalid(format!(
            "{origin}: accounts.{bad}: an account id is 12 digits"
        )));
    }
    for (id, a) in &file.accounts {
        if let Some(o) = a.organization_id.as_deref().filter(|o| !is_org_id(o)) {
            return Err(Error::Invalid(format!(
                "{origin}: accounts.{id}.organizationId: {o:?} is not o- followed by 10-32 of a-z, 0-9"
            )));
        }
    }
    Ok(file)
}

/// The document's text.
pub fn to_text(file: &File) -> Result<String, Error> {
    serde_json::to_string_pretty(file).map_err(|e| Error::Invalid(e.to_string()))
}

/// Writes the file (0600, whole or not at all).
pub fn save(path: &Path, file: &File) -> Result<(), Error> {
    let text = to_text(file)?;
    crate::principals::write_private(path, &text).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })
}

pub use latticed_proxy::authz::principals::is_org_id;

/// Adds account `id` (in organisation `org`, if given) with one admin
/// key to `file`; returns (access key, secret). `default` is the daemon's
/// own account, which always exists.
pub fn add_to(
    file: &mut File,
    id: &str,
    org: Option<&str>,
    default: Option<&str>,
) -> Result<(String, String), Error> {
    if !is_account_id(id) {
        return Err(Error::Invalid(format!(
            "--account-id {id:?}: an account id is 12 digits"
        )));
    }
    if let Some(o) = org.filter(|o| !is_org_id(o)) {
        return Err(Error::Invalid(format!(
            "--organization-id {o:?}: an organisation id is o- followed by 10-32 of a-z, 0-9"
        )));
    }
    if default == Some(id) {
        return Err(Error::Invalid(format!(
            "--account-id {id}: that is latticed's default account (its key is STATE_DIR/admin-credentials)"
        )));
    }
    if file.accounts.contains_key(id) {
        return Err(Error::Invalid(format!(
            "--account-id {id}: the account already exists"
        )));
    }
    let (key, secret) = crate::control::api::new_key();
    file.accounts.insert(
        id.to_owned(),
        Account {
            admin_keys: BTreeMap::from([(key.clone(), secret.clone())]),
            organization_id: org.map(str::to_owned),
        },
    );
    Ok((key, secret))
}

/// Removes account `id` from `file`.
pub fn remove_from(file: &mut File, id: &str) -> Result<(), Error> {
    if file.accounts.remove(id).is_none() {
        return Err(Error::Invalid(format!(
            "--account-id {id}: no such account"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(
        path: &Path,
        id: &str,
        org: Option<&str>,
        default: Option<&str>,
    ) -> Result<(String, String), Error> {
        let mut file = load(path)?;
        let out = add_to(&mut file, id, org, default)?;
        save(path, &file)?;
        Ok(out)
    }

    fn remove(path: &Path, id: &str) -> Result<(), Error> {
        let mut file = load(path)?;
        remove_from(&mut file, id)?;
        save(path, &file)
    }

    #[test]
    fn accounts_are_added_listed_and_removed_with_named_errors() {
        let dir = std::env::temp_dir().join(format!("latticed-accounts-{}", std::process::id()));
        let p = path(&dir);
        let org = Some("o-a1b2c3d4e5");
        let (key, secret) = add(&p, "222233334444", org, Some("111122223333")).unwrap();
        assert!(key.starts_with("AKIA") && secret.len() == 40);
        let file = load(&p).unwrap();
        assert_eq!(file.accounts["222233334444"].admin_keys[&key], secret);
        assert_eq!(
            file.accounts["222233334444"].organization_id.as_deref(),
            org
        );
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "keys are root's only");
        for (id, want) in [
            ("222233334444", "already exists"),
            ("111122223333", "default account"),
            ("12345", "12 digits"),
        ] {
            let e = add(&p, id, None, Some("111122223333"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{id}: {e}");
        }
        let e = add(&p, "333344445555", Some("org-1"), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--organization-id"), "{e}");
        remove(&p, "222233334444").unwrap();
        assert!(load(&p).unwrap().accounts.is_empty());
        assert!(remove(&p, "222233334444").is_err());
        std::fs::write(&p, r#"{"accounts": {"abc": {"adminKeys": {}}}}"#).unwrap();
        assert!(load(&p).unwrap_err().to_string().contains("accounts.abc"));
        std::fs::write(
            &p,
            r#"{"accounts": {"333344445555": {"adminKeys": {}, "organizationId": "x"}}}"#,
        )
        .unwrap();
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("accounts.333344445555.organizationId"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
