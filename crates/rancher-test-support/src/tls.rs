//! TLS for test clients: the process-wide rustls provider (aws-lc-rs, the project's only one), and
//! with the `http` feature, reqwest clients for servers with a test CA.

/// Installs aws-lc-rs as rustls's process-wide provider (idempotent): rustls needs one before the
/// first `ClientConfig` or `ServerConfig` when more than one could be compiled in.
pub fn install_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A client that accepts any server certificate, for a server whose CA the test has not read yet
/// (or does not care about), with a timeout generous enough for a loaded machine.
#[cfg(feature = "http")]
pub fn insecure_client() -> reqwest::Client {
    install_crypto();
    reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .expect("reqwest client")
}

/// A client that trusts only the CA(s) in `ca_pem`.
///
/// # Panics
/// When `ca_pem` holds no certificate.
#[cfg(feature = "http")]
pub fn client_trusting(ca_pem: &str) -> reqwest::Client {
    install_crypto();
    reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(ca_pem.as_bytes()).expect("a PEM CA"))
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .expect("reqwest client")
}
