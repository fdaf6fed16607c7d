//! The server's TLS material: a CA and serving certificate generated on first start and kept in the data
//! directory, or the user's own certificate and key.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// What went wrong preparing TLS.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// rcgen failed to make or parse a certificate or key.
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    /// A PEM file holds no certificate or key, or a malformed one.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// rustls refused the certificate and key.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Where the serving certificate comes from.
#[derive(Clone, Debug, Default)]
pub enum TlsSource {
    /// Generate a CA and a serving certificate in `<data-dir>/tls` (reused on restart) for the listen
    /// address, `localhost`, `127.0.0.1` and these extra names.
    #[default]
    Generated,
    /// The user's own certificate chain and key (PEM); `ca` is published as the `cacerts` setting.
    Files {
        /// Certificate chain, PEM.
        cert: PathBuf,
        /// Private key, PEM.
        key: PathBuf,
        /// The CA that signed `cert`, PEM; omit when it is publicly trusted.
        ca: Option<PathBuf>,
    },
}

/// The loaded TLS material.
pub(crate) struct TlsMaterial {
    /// The rustls config, with ALPN `h2` and `http/1.1`.
    pub(crate) config: Arc<ServerConfig>,
    /// The CA certificate (PEM) clients should trust; empty when the certificate is publicly trusted.
    pub(crate) ca_pem: String,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial").field("ca_pem", &self.ca_pem).finish_non_exhaustive()
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io { path: path.to_owned(), source }
}

fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(io_err(path))
}

/// Writes a file; private keys get mode 0600 from the moment they exist.
fn write(path: &Path, contents: &str, private: bool) -> Result<(), TlsError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let _ = private;
    let mut f = opts.open(path).map_err(io_err(path))?;
    f.write_all(contents.as_bytes()).map_err(io_err(path))?;
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io_err(path))?;
    }
    Ok(())
}

fn rustls_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn parse_chain(path: &Path, pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem { path: path.to_owned(), message: e.to_string() })?;
    if chain.is_empty() {
        return Err(TlsError::Pem { path: path.to_owned(), message: "no CERTIFICATE block found".into() });
    }
    Ok(chain)
}

fn parse_key(path: &Path, pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| TlsError::Pem { path: path.to_owned(), message: format!("no usable private key: {e}") })
}

/// Loads the user's certificate, key and optional CA.
pub(crate) fn load_files(cert: &Path, key: &Path, ca: Option<&Path>) -> Result<TlsMaterial, TlsError> {
    let chain = parse_chain(cert, &read(cert)?)?;
    let key_der = parse_key(key, &read(key)?)?;
    let ca_pem = match ca {
        Some(ca) => {
            let pem = read(ca)?;
            parse_chain(ca, &pem)?;
            pem
        }
        None => String::new(),
    };
    Ok(TlsMaterial { config: rustls_config(chain, key_der)?, ca_pem })
}

/// A CA made for the servers (its certificate and private key, PEM).
pub(crate) struct CaPair {
    /// The CA certificate, PEM.
    pub(crate) cert_pem: String,
    /// Its private key, PEM.
    pub(crate) key_pem: secrecy::SecretString,
}

impl std::fmt::Debug for CaPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaPair").field("cert_pem", &self.cert_pem).finish_non_exhaustive()
    }
}

/// A new self-signed CA for the servers' serving certificates (ten years).
pub(crate) fn generate_ca() -> Result<CaPair, TlsError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "rancher-rs server CA");
    dn.push(DnType::OrganizationName, "rancher-rs");
    params.distinguished_name = dn;
    set_validity(&mut params, 3650);
    let cert = params.self_signed(&key)?;
    Ok(CaPair { cert_pem: cert.pem(), key_pem: key.serialize_pem().into() })
}

/// The CA an earlier version kept in `dir` (`ca.crt` and `ca.key`), if both are there.
pub(crate) fn ca_in_dir(dir: &Path) -> Result<Option<CaPair>, TlsError> {
    let (cert, key) = (dir.join(CA_CERT), dir.join("ca.key"));
    if !(cert.exists() && key.exists()) {
        return Ok(None);
    }
    let pair = CaPair { cert_pem: read(&cert)?, key_pem: read(&key)?.into() };
    parse_chain(&cert, &pair.cert_pem)?;
    KeyPair::from_pem(secrecy::ExposeSecret::expose_secret(&pair.key_pem))?;
    Ok(Some(pair))
}

/// The CA certificate's file in the TLS directory: written for operators and clients to trust.
pub(crate) const CA_CERT: &str = "ca.crt";

/// This server's serving certificate, issued by `ca` for `sans` and kept in `dir` (with the CA's
/// certificate as `ca.crt`, for clients). The certificate is issued again when the names or the CA
/// change or it nears expiry; the CA's key is never written.
pub(crate) fn serving(dir: &Path, ca: &CaPair, sans: &[String]) -> Result<TlsMaterial, TlsError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let (ca_cert, server_cert, server_key, names_file) =
        (dir.join(CA_CERT), dir.join("server.crt"), dir.join("server.key"), dir.join("server.names"));
    let mut sans: Vec<String> = sans.to_vec();
    sans.sort();
    sans.dedup();
    if std::fs::read_to_string(&ca_cert).ok().as_deref() != Some(ca.cert_pem.as_str()) {
        write(&ca_cert, &ca.cert_pem, false)?;
    }

    let wanted_names = format!("{}\n", sans.join("\n"));
    // The chain file ends with the CA that issued it: another CA means another certificate.
    let fresh = std::fs::read_to_string(&server_cert).is_ok_and(|chain| chain.ends_with(&ca.cert_pem))
        && server_key.exists()
        && std::fs::read_to_string(&names_file).is_ok_and(|n| n == wanted_names)
        && !near_expiry(&server_cert);
    if !fresh {
        let ca_key = KeyPair::from_pem(secrecy::ExposeSecret::expose_secret(&ca.key_pem))?;
        let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, &ca_key)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(sans.clone())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "rancher-rs server");
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        set_validity(&mut params, 365);
        let cert = params.signed_by(&key, &issuer)?;
        write(&server_key, &key.serialize_pem(), true)?;
        write(&server_cert, &format!("{}{}", cert.pem(), ca.cert_pem), false)?;
        write(&names_file, &wanted_names, false)?;
        tracing::info!(names = ?sans, "issued a serving certificate");
    }
    let chain = parse_chain(&server_cert, &read(&server_cert)?)?;
    let key = parse_key(&server_key, &read(&server_key)?)?;
    Ok(TlsMaterial { config: rustls_config(chain, key)?, ca_pem: ca.cert_pem.clone() })
}

/// Valid from yesterday (slack for clocks that are behind) to `days` from now.
fn set_validity(params: &mut CertificateParams, days: i32) {
    let now = jiff::Timestamp::now();
    let ymd = |t: jiff::Timestamp| {
        let d = t.to_zoned(jiff::tz::TimeZone::UTC).date();
        rcgen::date_time_ymd(i32::from(d.year()), d.month() as u8, d.day() as u8)
    };
    let day = jiff::SignedDuration::from_hours(24);
    params.not_before = ymd(now - day);
    params.not_after = ymd(now + day * days);
}

/// True when the serving certificate was issued more than ~11 months ago (file age), so a new one is due.
fn near_expiry(path: &Path) -> bool {
    let Ok(modified) = std::fs::metadata(path).and_then(|m| m.modified()) else { return true };
    modified.elapsed().is_ok_and(|age| age.as_secs() > 330 * 24 * 3600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_once_and_again_for_new_names_or_a_new_ca() {
        let dir = tempfile::tempdir().unwrap();
        let ca = generate_ca().unwrap();
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let first = serving(dir.path(), &ca, &names).unwrap();
        let cert1 = std::fs::read_to_string(dir.path().join("server.crt")).unwrap();
        let second = serving(dir.path(), &ca, &names).unwrap();
        assert_eq!(first.ca_pem, second.ca_pem);
        assert_eq!(cert1, std::fs::read_to_string(dir.path().join("server.crt")).unwrap());
        assert_eq!(std::fs::read_to_string(dir.path().join(CA_CERT)).unwrap(), ca.cert_pem);
        assert!(!dir.path().join("ca.key").exists(), "the CA's key is not written");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("server.key")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // New names: same CA, new serving certificate.
        let third = serving(dir.path(), &ca, &["example.test".to_string()]).unwrap();
        assert_eq!(first.ca_pem, third.ca_pem);
        let cert3 = std::fs::read_to_string(dir.path().join("server.crt")).unwrap();
        assert_ne!(cert1, cert3);
        // Another CA (the store's, shared by replicas): a certificate of that CA.
        let other = generate_ca().unwrap();
        let fourth = serving(dir.path(), &other, &["example.test".to_string()]).unwrap();
        assert_eq!(fourth.ca_pem, other.cert_pem);
        let cert4 = std::fs::read_to_string(dir.path().join("server.crt")).unwrap();
        assert!(cert4.ends_with(&other.cert_pem) && cert4 != cert3);
        assert_eq!(std::fs::read_to_string(dir.path().join(CA_CERT)).unwrap(), other.cert_pem);
    }

    #[test]
    fn finds_the_ca_an_earlier_version_kept() {
        let dir = tempfile::tempdir().unwrap();
        assert!(ca_in_dir(dir.path()).unwrap().is_none());
        let ca = generate_ca().unwrap();
        std::fs::write(dir.path().join(CA_CERT), &ca.cert_pem).unwrap();
        assert!(ca_in_dir(dir.path()).unwrap().is_none(), "a certificate without its key is not a CA");
        std::fs::write(dir.path().join("ca.key"), secrecy::ExposeSecret::expose_secret(&ca.key_pem)).unwrap();
        assert_eq!(ca_in_dir(dir.path()).unwrap().unwrap().cert_pem, ca.cert_pem);
        std::fs::write(dir.path().join("ca.key"), "not a key").unwrap();
        assert!(ca_in_dir(dir.path()).is_err());
    }

    #[test]
    fn reports_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.pem");
        std::fs::write(&bad, "not pem").unwrap();
        let err = load_files(&bad, &bad, None).unwrap_err();
        assert!(err.to_string().contains("bad.pem"), "{err}");
        let missing = load_files(&dir.path().join("nope"), &bad, None).unwrap_err();
        assert!(matches!(missing, TlsError::Io { .. }));
    }
}
