//! The credential store of data-path callers: access key -> secret and the
//! principal it signs as.
//!
//! It lives in `STATE_DIR/principals.json` (mode 0600), written by
//! `latticed principal add|remove` and reread by the daemon when it changes:
//!
//! ```json
//! {"credentials": [{
//!   "accessKeyId": "AKIA...", "secretAccessKey": "...",
//!   "principal": "arn:aws:sts::111122223333:assumed-role/app/session-1",
//!   "orgId": "o-a1b2c3d4e5", "sessionName": "session-1"
//! }]}
//! ```

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Whether `id` is an AWS Organizations id: `o-` and 10 to 32 of a-z, 0-9.
pub fn is_org_id(id: &str) -> bool {
    id.strip_prefix("o-").is_some_and(|r| {
        (10..=32).contains(&r.len())
            && r.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    })
}

/// One caller identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Principal {
    /// IAM or STS ARN.
    #[serde(rename = "principal")]
    pub arn: String,
    /// AWS Organizations id, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
    /// Session name, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_name: Option<String>,
}

impl Principal {
    /// The account id in the ARN.
    pub fn account(&self) -> Option<&str> {
        self.arn.split(':').nth(4).filter(|a| !a.is_empty())
    }

    /// The role name, for a role or an assumed-role session.
    pub fn role_name(&self) -> Option<&str> {
        let res = self.arn.splitn(6, ':').nth(5)?;
        if let Some(r) = res.strip_prefix("assumed-role/") {
            return r.split('/').next();
        }
        res.strip_prefix("role/")
            .map(|r| r.rsplit('/').next().unwrap_or(r))
    }

    /// `aws:PrincipalType`.
    pub fn kind(&self) -> &'static str {
        let res = self.arn.splitn(6, ':').nth(5).unwrap_or("");
        if res == "root" {
            "Account"
        } else if res.starts_with("assumed-role/") {
            "AssumedRole"
        } else if res.starts_with("user/") {
            "User"
        } else if res.starts_with("federated-user/") {
            "FederatedUser"
        } else {
            "Role"
        }
    }

    /// Checks the fields: they end up in headers and events, so nothing may
    /// carry separators or control characters.
    pub fn validate(&self) -> Result<(), String> {
        let parts: Vec<&str> = self.arn.splitn(6, ':').collect();
        let ok_arn = matches!(parts[..], ["arn", "aws" | "aws-cn" | "aws-us-gov", "iam" | "sts", "", acct, res]
            if acct.len() == 12 && acct.bytes().all(|b| b.is_ascii_digit()) && !res.is_empty());
        if !ok_arn
            || !self
                .arn
                .bytes()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b';' | b',' | b'"'))
        {
            return Err(format!(
                "principal {:?} is not an IAM or STS ARN (arn:aws:iam::ACCOUNT:... or arn:aws:sts::ACCOUNT:...) without ; , or quotes",
                self.arn
            ));
        }
        if let Some(o) = &self.org_id {
            if !is_org_id(o) {
                return Err(format!(
                    "orgId {o:?} is not o- followed by 10-32 of a-z, 0-9"
                ));
            }
        }
        if let Some(s) = &self.session_name {
            let ok = (2..=64).contains(&s.len())
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+=,.@-_".contains(&b))
                && !s.contains(',');
            if !ok {
                return Err(format!(
                    "sessionName {s:?} must be 2-64 of letters, digits and +=.@-_"
                ));
            }
        }
        Ok(())
    }

    /// The `x-amzn-lattice-identity` value Lattice sends targets.
    pub fn identity_header(&self) -> String {
        let mut v = format!("Principal={}", self.arn);
        if let Some(o) = &self.org_id {
            v.push_str("; PrincipalOrgID=");
            v.push_str(o);
        }
        if let Some(s) = &self.session_name {
            v.push_str("; SessionName=");
            v.push_str(s);
        }
        v.push_str("; Type=AWS_IAM");
        v
    }
}

/// One stored credential.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Credential {
    /// Access key id.
    pub access_key_id: String,
    /// Secret.
    pub secret_access_key: String,
    /// Who signs with it.
    #[serde(flatten)]
    pub principal: Principal,
}

/// The file's shape.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// Credentials.
    #[serde(default)]
    pub credentials: Vec<Credential>,
}

impl File {
    /// Parses and checks every entry.
    pub fn parse(text: &str) -> Result<Self, String> {
        let f: Self = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut seen = std::collections::HashSet::new();
        for (i, c) in f.credentials.iter().enumerate() {
            c.principal
                .validate()
                .map_err(|e| format!("credentials[{i}]: {e}"))?;
            let key_ok = (16..=128).contains(&c.access_key_id.len())
                && c.access_key_id.bytes().all(|b| b.is_ascii_alphanumeric());
            if !key_ok {
                return Err(format!(
                    "credentials[{i}].accessKeyId: 16-128 letters and digits"
                ));
            }
            if c.secret_access_key.len() < 16 {
                return Err(format!(
                    "credentials[{i}].secretAccessKey: at least 16 characters"
                ));
            }
            if !seen.insert(&c.access_key_id) {
                return Err(format!(
                    "credentials[{i}].accessKeyId: {} appears twice",
                    c.access_key_id
                ));
            }
        }
        Ok(f)
    }
}

/// Lookup by access key, as the request path uses it.
#[derive(Debug, Default)]
pub struct Principals {
    by_key: HashMap<String, (String, Principal)>,
}

impl Principals {
    /// From a parsed file.
    pub fn from_file(f: &File) -> Self {
        Self {
            by_key: f
                .credentials
                .iter()
                .map(|c| {
                    (
                        c.access_key_id.clone(),
                        (c.secret_access_key.clone(), c.principal.clone()),
                    )
                })
                .collect(),
        }
    }

    /// Secret and principal of `access_key`.
    pub fn get(&self, access_key: &str) -> Option<&(String, Principal)> {
        self.by_key.get(access_key)
    }

    /// Number of credentials.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}
