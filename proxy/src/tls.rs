//! TLS for HTTPS listeners and HTTPS targets.
//!
//! latticed runs its own certificate authority, as Lattice hands out
//! certificates for its generated names: clients trust `STATE_DIR/ca.pem`
//! once, and every service name and custom domain name gets a leaf
//! certificate issued on the control plane when the service appears, never
//! on the request path. A service may instead name a user-supplied chain and
//! key (its `certificateArn`).
//!
//! Each HTTPS service gets its own [`ServerConfig`]; the listener picks one
//! after reading the ClientHello (SNI), see `listener`.

use std::{
    fs,
    io::Write as _,
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    sync::Arc,
};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
    pki_types::{pem::PemObject as _, CertificateDer, PrivateKeyDer, ServerName, UnixTime},
    sign::CertifiedKey,
    ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme,
};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a key or certificate file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Generating or signing a certificate failed.
    #[error("issuing a certificate for {names:?}: {source}")]
    Issue {
        /// Names the certificate was for.
        names: Vec<String>,
        /// Cause.
        #[source]
        source: rcgen::Error,
    },
    /// The CA files exist but cannot be used.
    #[error("the certificate authority in {dir}: {reason}")]
    BadAuthority {
        /// Directory of ca.pem and ca.key.
        dir: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A user-supplied certificate chain or key is unusable.
    #[error("certificate {path}: {reason}")]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

/// The crypto provider every TLS config here uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// latticed's certificate authority.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

impl Authority {
    /// Loads `dir/ca.pem` and `dir/ca.key`, creating both on first use. The
    /// certificate is world-readable (clients need it); the key is 0600.
    pub fn load_or_create(dir: &Path) -> Result<Self, Error> {
        if dir.join("ca.pem").exists() && dir.join("ca.key").exists() {
            return Self::load(dir);
        }
        Self::create(dir, "latticed local CA")
    }

    /// Loads the CA of `dir` (`ca.pem`, `ca.key`).
    pub fn load(dir: &Path) -> Result<Self, Error> {
        let cert_path = dir.join("ca.pem");
        let key_path = dir.join("ca.key");
        let ca_pem = fs::read_to_string(&cert_path).map_err(io_err(&cert_path))?;
        let key_pem = fs::read_to_string(&key_path).map_err(io_err(&key_path))?;
        let bad = |reason: String| Error::BadAuthority {
            dir: dir.to_owned(),
            reason,
        };
        let key = KeyPair::from_pem(&key_pem).map_err(|e| bad(format!("ca.key: {e}")))?;
        let issuer =
            Issuer::from_ca_cert_pem(&ca_pem, key).map_err(|e| bad(format!("ca.pem: {e}")))?;
        Ok(Self { issuer, ca_pem })
    }

    /// Makes a CA named `name` in `dir`, valid from 2024 to 2049: `ca.pem`
    /// (0644) and `ca.key` (0600).
    pub fn create(dir: &Path, name: &str) -> Result<Self, Error> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let issue = |source| Error::Issue {
            names: vec![name.into()],
            source,
        };
        let key = KeyPair::generate().map_err(issue)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn.push(DnType::OrganizationName, "latticed");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        params.not_after = rcgen::date_time_ymd(2049, 12, 31);
        let cert = params.self_signed(&key).map_err(issue)?;
        let ca_pem = cert.pem();
        write_file(&dir.join("ca.key"), key.serialize_pem().as_bytes(), 0o600)?;
        write_file(&dir.join("ca.pem"), ca_pem.as_bytes(), 0o644)?;
        Ok(Self {
            issuer: Issuer::new(params, key),
            ca_pem,
        })
    }

    /// The issuer, for certificates of other kinds (tunnel identities).
    pub(crate) fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Issues a leaf certificate for `names` (DNS names), valid for a year.
    pub fn issue(&self, names: &[String]) -> Result<Arc<CertifiedKey>, Error> {
        let issue = |source| Error::Issue {
            names: names.to_vec(),
            source,
        };
        let key = KeyPair::generate().map_err(issue)?;
        let mut params = CertificateParams::new(names.to_vec()).map_err(issue)?;
        let mut dn = DistinguishedName::new();
        if let Some(first) = names.first() {
            dn.push(DnType::CommonName, first.as_str());
        }
        params.distinguished_name = dn;
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        // Valid from yesterday (clock skew between namespaces' clients is
        // nil, but a client's notion of "today" may start before ours) for
        // a year; the agent re-issues at every start.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let (y, m, d) = ymd(now.saturating_sub(86_400));
        params.not_before = rcgen::date_time_ymd(y, m, d);
        let (y, m, d) = ymd(now + 365 * 86_400);
        params.not_after = rcgen::date_time_ymd(y, m, d);
        let cert = params.signed_by(&key, &self.issuer).map_err(issue)?;
        let chain = vec![cert.der().clone()];
        let key_der = PrivateKeyDer::Pkcs8(key.serialize_der().into());
        certified(chain, key_der).map_err(|reason| Error::BadCertificate {
            path: PathBuf::from("(issued)"),
            reason,
        })
    }
}

/// (year, month, day) of seconds since the epoch, as rcgen takes dates.
pub(crate) fn ymd(secs: u64) -> (i32, u8, u8) {
    let (y, m, d, ..) = crate::time::civil(secs);
    // civil() yields months 1..=12 and days 1..=31.
    (i32::try_from(y).unwrap_or(2049), m as u8, d as u8)
}

fn certified(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<CertifiedKey>, String> {
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("unusable private key: {e}"))?;
    Ok(Arc::new(CertifiedKey::new(chain, signing)))
}

/// Loads a user-supplied certificate: `dir/chain.pem` (leaf first) and
/// `dir/key.pem`.
pub fn load_certificate(dir: &Path) -> Result<Arc<CertifiedKey>, Error> {
    let chain_path = dir.join("chain.pem");
    let key_path = dir.join("key.pem");
    let bad = |path: &Path, reason: String| Error::BadCertificate {
        path: path.to_owned(),
        reason,
    };
    let chain_pem = fs::read(&chain_path).map_err(io_err(&chain_path))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&chain_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| bad(&chain_path, format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(bad(&chain_path, "holds no certificate".into()));
    }
    let key_pem = fs::read(&key_path).map_err(io_err(&key_path))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| bad(&key_path, format!("not a PEM private key: {e}")))?;
    certified(chain, key).map_err(|reason| bad(&key_path, reason))
}

pub(crate) fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), Error> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    f.write_all(data).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))
}

/// The server side of one HTTPS service: its certificate, TLS 1.2 and 1.3,
/// ALPN h2 then http/1.1.
pub fn server_config(cert: Arc<CertifiedKey>) -> Result<Arc<ServerConfig>, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(cert)));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The client side toward HTTPS targets. Like Lattice (and ELB), latticed
/// encrypts to targets but does not validate their certificates: targets
/// commonly present self-signed ones, and they are reached by address.
pub fn target_client_config(alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, rustls::Error> {
    let provider = provider();
    let mut config = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// Accepts any target certificate but still checks the handshake signature.
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_authority_is_created_once_and_reloaded() {
        let dir = std::env::temp_dir().join(format!("latticed-ca-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let a = Authority::load_or_create(&dir).unwrap();
        let key_mode = fs::metadata(dir.join("ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(key_mode & 0o777, 0o600, "the CA key is root-only");
        let b = Authority::load_or_create(&dir).unwrap();
        assert_eq!(a.ca_pem(), b.ca_pem(), "a restart keeps the same CA");
        let leaf = b.issue(&["svc1-0123.example".into()]).unwrap();
        assert_eq!(leaf.cert.len(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }
}
