//! Who may speak on a tunnel: the cluster's certificate authority and each
//! node's certificate, which names the node.
//!
//! The CA's key lives only where `latticed cluster init` put it (a root-only
//! directory the operator chooses, never STATE_DIR, never etcd). A node
//! holds the CA certificate, its own certificate and its own key. A node's
//! certificate carries one DNS name, `NODE.node.latticed`: the dialer checks
//! it against the node it meant to reach (webpki's name check), and the
//! receiver reads it to know which node is calling.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::Arc,
};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose,
};
use rustls::{
    pki_types::{pem::PemObject as _, CertificateDer, PrivateKeyDer, ServerName},
    server::WebPkiClientVerifier,
    ClientConfig, RootCertStore, ServerConfig,
};

use crate::tls::{io_err, provider, write_file, ymd};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    #[error(transparent)]
    Files(#[from] crate::tls::Error),
    /// A file holds no usable certificate or key.
    #[error("{path}: {reason}")]
    Bad {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Making or signing a certificate failed.
    #[error("issuing a certificate for node {node}: {source}")]
    Issue {
        /// The node.
        node: String,
        /// Cause.
        #[source]
        source: rcgen::Error,
    },
    /// The node name cannot be a certificate's DNS name.
    #[error(
        "node name {0:?} cannot name a certificate: use lowercase letters, digits, '-' and '.'"
    )]
    BadNodeName(String),
    /// The CA directory already holds a CA.
    #[error("{0} already holds a cluster CA; it is never replaced")]
    Exists(PathBuf),
    /// Building a TLS configuration failed.
    #[error("TLS configuration: {0}")]
    Tls(String),
}

/// The suffix of every node's certificate name.
pub const NODE_SUFFIX: &str = ".node.latticed";

/// The DNS name a node's certificate carries.
pub fn node_dns_name(node: &str) -> Result<ServerName<'static>, Error> {
    let name = format!("{node}{NODE_SUFFIX}");
    if node.contains('_') || node.contains("..") || node.starts_with('.') || node.ends_with('.') {
        return Err(Error::BadNodeName(node.to_owned()));
    }
    ServerName::try_from(name).map_err(|_| Error::BadNodeName(node.to_owned()))
}

/// The node a certificate names: its one `*.node.latticed` DNS name.
pub fn node_of(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let san = parsed.subject_alternative_name().ok()??;
    let mut nodes = san.value.general_names.iter().filter_map(|n| match n {
        x509_parser::extensions::GeneralName::DNSName(d) => d.strip_suffix(NODE_SUFFIX),
        _ => None,
    });
    let node = nodes.next()?;
    // A certificate naming two nodes names none.
    nodes.next().is_none().then(|| node.to_owned())
}

/// The cluster's certificate authority (on the operator's machine only):
/// a [`crate::tls::Authority`] of its own, issuing node certificates.
#[derive(Debug)]
pub struct ClusterCa(crate::tls::Authority);

impl ClusterCa {
    /// Makes a new CA in `dir` (created 0700): `ca.pem` and `ca.key`
    /// (0600). Refuses a directory that already holds one.
    pub fn create(dir: &Path) -> Result<Self, Error> {
        if dir.join("ca.pem").exists() || dir.join("ca.key").exists() {
            return Err(Error::Exists(dir.to_owned()));
        }
        fs::create_dir_all(dir).map_err(|e| io_err(dir)(e))?;
        fs::set_permissions(
            dir,
            <fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o700),
        )
        .map_err(|e| io_err(dir)(e))?;
        Ok(Self(crate::tls::Authority::create(
            dir,
            "latticed cluster CA",
        )?))
    }

    /// Loads the CA of `dir`.
    pub fn load(dir: &Path) -> Result<Self, Error> {
        Ok(Self(crate::tls::Authority::load(dir)?))
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        self.0.ca_pem()
    }

    /// A certificate and key for `node`, PEM: its name as the one DNS
    /// name, for both ends of a tunnel, valid for two years.
    pub fn issue(&self, node: &str) -> Result<(String, String), Error> {
        let name = node_dns_name(node)?;
        let issue = |source| Error::Issue {
            node: node.to_owned(),
            source,
        };
        let key = KeyPair::generate().map_err(issue)?;
        let mut params = CertificateParams::new(vec![name.to_str().into_owned()]).map_err(issue)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, node);
        params.distinguished_name = dn;
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let now = now_secs();
        let (y, m, d) = ymd(now.saturating_sub(86_400));
        params.not_before = rcgen::date_time_ymd(y, m, d);
        let (y, m, d) = ymd(now + 2 * 365 * 86_400);
        params.not_after = rcgen::date_time_ymd(y, m, d);
        let cert = params.signed_by(&key, self.0.issuer()).map_err(issue)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// File names of a node's identity in its directory.
pub const CA_FILE: &str = "ca.pem";
/// The node's certificate.
pub const CERT_FILE: &str = "node.pem";
/// The node's key (0600).
pub const KEY_FILE: &str = "node.key";

/// A node's identity on tunnels: TLS configurations for both ends.
#[derive(Clone)]
pub struct NodeIdentity {
    /// The node it names.
    pub node: String,
    /// Dialing peers: presents this node's certificate, trusts only the CA.
    pub client: Arc<ClientConfig>,
    /// Accepting peers: asks for a certificate from the CA.
    pub server: Arc<ServerConfig>,
}

impl std::fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// ALPN of the tunnel.
const ALPN: &[u8] = b"h2";

impl NodeIdentity {
    /// Loads `dir/ca.pem`, `dir/node.pem` and `dir/node.key`.
    pub fn load(dir: &Path) -> Result<Self, Error> {
        let read = |name: &str| {
            let p = dir.join(name);
            fs::read(&p).map_err(|e| Error::from(io_err(&p)(e)))
        };
        Self::from_pem(&read(CA_FILE)?, &read(CERT_FILE)?, &read(KEY_FILE)?, dir)
    }

    /// The identity of these PEM texts (`dir` names them in errors).
    pub fn from_pem(ca: &[u8], cert: &[u8], key: &[u8], dir: &Path) -> Result<Self, Error> {
        let bad = |file: &str, reason: String| Error::Bad {
            path: dir.join(file),
            reason,
        };
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca) {
            let c = c.map_err(|e| bad(CA_FILE, e.to_string()))?;
            roots
                .add(c)
                .map_err(|e| bad(CA_FILE, format!("not a CA certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(bad(CA_FILE, "holds no certificate".into()));
        }
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
            .collect::<Result<_, _>>()
            .map_err(|e| bad(CERT_FILE, e.to_string()))?;
        let node = chain
            .first()
            .and_then(node_of)
            .ok_or_else(|| bad(CERT_FILE, "names no node (*.node.latticed)".into()))?;
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| bad(KEY_FILE, e.to_string()))?;
        let roots = Arc::new(roots);
        let tls = |e: rustls::Error| Error::Tls(e.to_string());
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), provider())
            .build()
            .map_err(|e| Error::Tls(e.to_string()))?;
        let mut server = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(tls)?;
        server.alpn_protocols = vec![ALPN.to_vec()];
        let mut client = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls)?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(tls)?;
        client.alpn_protocols = vec![ALPN.to_vec()];
        Ok(Self {
            node,
            client: Arc::new(client),
            server: Arc::new(server),
        })
    }

    /// Writes an identity's files into `dir` (created 0700; the key 0600).
    pub fn write(dir: &Path, ca: &str, cert: &str, key: &str) -> Result<(), Error> {
        fs::create_dir_all(dir).map_err(|e| io_err(dir)(e))?;
        fs::set_permissions(
            dir,
            <fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o700),
        )
        .map_err(|e| io_err(dir)(e))?;
        write_file(&dir.join(KEY_FILE), key.as_bytes(), 0o600)?;
        write_file(&dir.join(CERT_FILE), cert.as_bytes(), 0o644)?;
        write_file(&dir.join(CA_FILE), ca.as_bytes(), 0o644)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_certificate_names_its_node_and_only_it() {
        let dir = std::env::temp_dir().join(format!("latticed-cluster-ca-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let ca = ClusterCa::create(&dir).unwrap();
        assert!(matches!(ClusterCa::create(&dir), Err(Error::Exists(_))));
        let mode = |p: &Path| {
            std::os::unix::fs::PermissionsExt::mode(&fs::metadata(p).unwrap().permissions()) & 0o777
        };
        assert_eq!(mode(&dir.join("ca.key")), 0o600);
        assert_eq!(mode(&dir), 0o700);
        let (cert, key) = ClusterCa::load(&dir).unwrap().issue("host-a").unwrap();
        let id = NodeIdentity::from_pem(
            ca.ca_pem().as_bytes(),
            cert.as_bytes(),
            key.as_bytes(),
            &dir,
        )
        .unwrap();
        assert_eq!(id.node, "host-a");
        assert!(matches!(ca.issue("bad_name"), Err(Error::BadNodeName(_))));
        assert!(matches!(ca.issue("a..b"), Err(Error::BadNodeName(_))));
        fs::remove_dir_all(&dir).unwrap();
    }
}
