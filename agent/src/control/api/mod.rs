//! The VPC Lattice REST-JSON API (2022-11-30), served by latticed so the
//! stock AWS CLI and SDKs manage it with `--endpoint-url`.
//!
//! - [`model`]: the service model and the generic routing, validation and
//!   projection it drives.
//! - [`handlers`]: what each operation means for latticed's resources.
//! - [`records`]: the stored records, one type per resource kind.
//! - [`error`]: error answers in the model's shapes.

pub mod error;
pub mod handlers;
pub mod model;
pub mod records;
pub mod server;

use std::{collections::HashMap, path::Path};

use serde_json::{json, Value};

use super::store::Store;

/// Errors setting up the API.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Store.
    #[error(transparent)]
    Store(#[from] super::store::Error),
    /// Writing the admin credentials file.
    #[error("writing {path}: {source}")]
    CredentialsFile {
        /// File.
        path: std::path::PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

pub(crate) fn random_string(len: usize, alphabet: &[u8]) -> String {
    let mut b = vec![0u8; len];
    let _ = getrandom::fill(&mut b);
    b.iter()
        .map(|x| alphabet[usize::from(*x) % alphabet.len()] as char)
        .collect()
}

/// A random UUID (version 4 in form): request ids, RAM's share and
/// invitation ids.
pub(crate) fn uuid() -> String {
    let mut b = [0u8; 16];
    let _ = getrandom::fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// A new access key id and secret, in AWS's forms.
pub(crate) fn new_key() -> (String, String) {
    let key = format!(
        "AKIA{}",
        random_string(16, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
    );
    let secret = random_string(
        40,
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
    );
    (key, secret)
}

/// The API keys among credential records: all are `account`'s.
pub fn keys_of(records: Vec<(String, Value)>, account: &str) -> HashMap<String, server::ApiKey> {
    records
        .into_iter()
        .map(|(k, v)| {
            let key = server::ApiKey {
                secret: v["secret"].as_str().unwrap_or_default().to_owned(),
                account: account.to_owned(),
            };
            (k, key)
        })
        .collect()
}

/// A new admin key's record.
pub fn admin_record(account: &str, secret: &str) -> Value {
    json!({"secret": secret, "admin": true, "principal": format!("arn:aws:iam::{account}:root")})
}

/// Loads the credential store; at first start creates the admin key and
/// writes it, mode 0600, to `DIR/admin-credentials` in the AWS shared
/// credentials format. The file is rewritten if it was deleted.
pub fn load_credentials(
    store: &Store,
    state_dir: &Path,
    account: &str,
) -> Result<HashMap<String, server::ApiKey>, Error> {
    let records = store.credentials()?;
    let admin = records
        .iter()
        .find(|(_, v)| v["admin"] == true)
        .map(|(k, v)| {
            (
                k.clone(),
                v["secret"].as_str().unwrap_or_default().to_owned(),
            )
        });
    let mut creds = keys_of(records, account);
    let (key, secret) = match admin {
        Some(a) => a,
        None => {
            let (key, secret) = new_key();
            let record = admin_record(account, &secret);
            store.put_credential(&key, &record)?;
            creds.extend(keys_of(vec![(key.clone(), record)], account));
            tracing::info!(access_key = %key, "created the admin access key");
            (key, secret)
        }
    };
    write_admin_file(state_dir, &key, &secret, false)?;
    Ok(creds)
}

/// Writes `DIR/admin-credentials` (mode 0600) if it is missing, or, when
/// `replace`, if it holds another key (a node that joined a cluster takes
/// the cluster's admin key).
pub fn write_admin_file(
    state_dir: &Path,
    key: &str,
    secret: &str,
    replace: bool,
) -> Result<(), Error> {
    let path = state_dir.join("admin-credentials");
    let text = format!("[default]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n");
    if path.exists() && !(replace && std::fs::read_to_string(&path).ok().as_deref() != Some(&text))
    {
        return Ok(());
    }
    crate::principals::write_private(&path, &text).map_err(|source| Error::CredentialsFile {
        path: path.clone(),
        source,
    })
}
