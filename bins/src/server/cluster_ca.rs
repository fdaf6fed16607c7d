//! A downstream cluster's CA, as the server's clients of that cluster take it: the certificates of
//! a PEM bundle (the CA an agent reported, or one a provisioner handed over), none of them optional.

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// Why a cluster CA cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ClusterCaError {
    /// A block is not PEM.
    #[error("the cluster CA is not PEM: {0}")]
    NotPem(#[source] rustls_pki_types::pem::Error),
    /// No `CERTIFICATE` block at all.
    #[error("the cluster CA holds no certificate")]
    Empty,
}

/// The DER certificates of the PEM bundle `pem`, at least one.
///
/// # Errors
/// [`ClusterCaError`] when a block is not PEM or there is no certificate.
pub(crate) fn certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, ClusterCaError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(ClusterCaError::NotPem)?;
    if certs.is_empty() {
        return Err(ClusterCaError::Empty);
    }
    Ok(certs)
}

/// [`certificates`] as the DER bytes `kube::Config::root_cert` takes.
///
/// # Errors
/// As [`certificates`].
pub(crate) fn kube_roots(pem: &str) -> Result<Vec<Vec<u8>>, ClusterCaError> {
    Ok(certificates(pem)?.into_iter().map(|c| c.to_vec()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_gives_every_certificate_and_junk_or_nothing_is_refused() {
        let ca = rcgen::generate_simple_self_signed(vec!["ca".into()]).unwrap().cert.pem();
        let other = rcgen::generate_simple_self_signed(vec!["other".into()]).unwrap().cert.pem();
        assert_eq!(kube_roots(&format!("{ca}{other}")).unwrap().len(), 2);
        assert!(matches!(certificates(""), Err(ClusterCaError::Empty)));
        assert!(matches!(certificates("not pem at all"), Err(ClusterCaError::Empty)));
        let broken = ca.replace("MII", "!!!");
        assert!(matches!(certificates(&broken), Err(ClusterCaError::NotPem(_))), "{broken}");
    }
}
