//! Agent-side TLS: pin the server CA by the SHA-256 checksum of its PEM, as Rancher's
//! `CATTLE_CA_CHECKSUM` does, or trust a given root store.

use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The SHA-256 checksum (lower-case hex) of the exact CA PEM bytes, as an agent pins it.
pub fn ca_checksum(ca_pem: &[u8]) -> String {
    hex::encode(Sha256::digest(ca_pem))
}

/// A client TLS config that trusts only the CAs in `ca_pem`, after checking that the PEM's
/// SHA-256 checksum equals `expected_sha256_hex` (case-insensitive).
///
/// # Errors
/// [`Error::CaChecksumMismatch`] when the checksum differs (the agent must not connect);
/// [`Error::TlsConfig`] when the PEM holds no usable certificate.
pub fn client_tls_pinned(ca_pem: &[u8], expected_sha256_hex: &str) -> Result<Arc<ClientConfig>> {
    let actual = ca_checksum(ca_pem);
    if !actual.eq_ignore_ascii_case(expected_sha256_hex.trim()) {
        return Err(Error::CaChecksumMismatch { expected: expected_sha256_hex.trim().to_string(), actual });
    }
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| Error::TlsConfig(format!("CA PEM: {e}")))?;
        roots.add(cert).map_err(|e| Error::TlsConfig(format!("CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(Error::TlsConfig("CA PEM holds no certificate".into()));
    }
    client_tls_with_roots(roots)
}

/// A client TLS config that trusts `roots` (aws-lc-rs provider, TLS 1.2 and 1.3).
///
/// # Errors
/// [`Error::TlsConfig`] when the crypto provider refuses the protocol versions.
pub fn client_tls_with_roots(roots: RootCertStore) -> Result<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::TlsConfig(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_mismatch_is_refused_before_parsing() {
        let err = client_tls_pinned(b"not a pem", &"0".repeat(64)).unwrap_err();
        assert!(matches!(err, Error::CaChecksumMismatch { .. }), "{err}");
    }

    #[test]
    fn matching_checksum_of_garbage_pem_is_a_config_error() {
        let pem = b"garbage";
        let err = client_tls_pinned(pem, &ca_checksum(pem).to_uppercase()).unwrap_err();
        assert!(matches!(err, Error::TlsConfig(_)), "{err}");
    }
}
