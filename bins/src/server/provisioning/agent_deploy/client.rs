//! A `kube::Client` for the endpoint a provisioner handed over — its CA pinned (system roots when it
//! has none), its bearer token or client certificate, a short connect timeout — and what a failed
//! call through it means: an endpoint the server cannot reach, a refusal (TLS, 401, 403), or a
//! failure to retry.
//!
//! The credential goes into the client and nowhere else: no error or log line here carries it.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rancher_provision::{Downstream, DownstreamCredential};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use secrecy::ExposeSecret;

use crate::server::cluster_ca;

/// How long the server waits for the endpoint to accept a connection: a private endpoint is
/// usually a silent drop, and the controller's worker waits this long for it.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request may take once connected.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the agent could not be deployed through the endpoint.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DeployError {
    /// What the provisioner handed over is unusable (a bug in the provisioner): the field says which.
    #[error("the provisioner's hand-over is unusable: {field}: {message}")]
    Invalid {
        /// `downstream.api_endpoint`, `downstream.ca_pem`, `downstream.credential…`.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// No connection could be made: connection refused, timed out, or the name did not resolve —
    /// a private endpoint, or one not reachable from the server.
    #[error("the server cannot reach {endpoint}: {reason}")]
    Unreachable {
        /// The API server's URL.
        endpoint: String,
        /// The network's answer (`connection refused`, `timed out`, the DNS error).
        reason: String,
    },
    /// The API server was reached but refused the server: TLS failed (its certificate does not
    /// chain to the CA handed over, or it rejected the client certificate), or it answered 401/403.
    #[error("{endpoint} refused the cluster agent's deployment: {what}")]
    Refused {
        /// The API server's URL.
        endpoint: String,
        /// What was refused, in words (never the credential).
        what: String,
    },
    /// Applying an object failed otherwise (the API server is up but failing): retried.
    #[error("applying {object} through {endpoint}: {source}")]
    Apply {
        /// The API server's URL.
        endpoint: String,
        /// `Kind namespace/name`.
        object: String,
        /// The client's error.
        #[source]
        source: Box<kube::Error>,
    },
    /// The registration token or the manifest could not be made.
    #[error("preparing the import manifest: {0}")]
    Manifest(String),
}

/// A client for `downstream`, used for the deployment only and dropped with the credential.
///
/// # Errors
/// [`DeployError::Invalid`] naming the field that is unusable.
pub(crate) fn client_for(downstream: &Downstream) -> Result<kube::Client, DeployError> {
    let invalid = |field, message: String| DeployError::Invalid { field, message };
    let url = checked_endpoint(&downstream.api_endpoint)?;
    let mut config = kube::Config::new(url);
    if !downstream.ca_pem.trim().is_empty() {
        let roots = cluster_ca::kube_roots(&downstream.ca_pem)
            .map_err(|e| invalid("downstream.ca_pem", e.to_string()))?;
        config.root_cert = Some(roots);
    }
    match &downstream.credential {
        DownstreamCredential::BearerToken(token) => {
            if token.expose_secret().trim().is_empty() {
                return Err(invalid("downstream.credential", "the bearer token is empty".into()));
            }
            config.auth_info.token = Some(token.expose_secret().to_owned().into());
        }
        DownstreamCredential::ClientCertificate { cert_pem, key_pem } => {
            let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| invalid("downstream.credential.cert_pem", format!("not PEM: {e}")))?;
            if certs.is_empty() {
                return Err(invalid("downstream.credential.cert_pem", "holds no CERTIFICATE block".into()));
            }
            // Checked without echoing anything of the key.
            if PrivateKeyDer::from_pem_slice(key_pem.expose_secret().as_bytes()).is_err() {
                return Err(invalid("downstream.credential.key_pem", "holds no PEM private key".into()));
            }
            config.auth_info.client_certificate_data = Some(STANDARD.encode(cert_pem));
            config.auth_info.client_key_data = Some(STANDARD.encode(key_pem.expose_secret()).into());
        }
        _ => {
            return Err(invalid(
                "downstream.credential",
                "a kind of credential this server cannot use".into(),
            ));
        }
    }
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    config.read_timeout = Some(REQUEST_TIMEOUT);
    config.write_timeout = Some(REQUEST_TIMEOUT);
    config.reset_reader_on_write = true;
    kube::Client::try_from(config).map_err(|e| match e {
        // Bad roots or identity; kube's messages name the part, never its bytes.
        e @ kube::Error::RustlsTls(_) => invalid("downstream", e.to_string()),
        other => invalid("downstream", other.to_string()),
    })
}

/// `https://host[:port]` with nothing after it but an optional `/`.
fn checked_endpoint(endpoint: &str) -> Result<http::Uri, DeployError> {
    let invalid = |message: &str| DeployError::Invalid {
        field: "downstream.api_endpoint",
        message: format!("{endpoint:?} {message}"),
    };
    let url: http::Uri = endpoint.parse().map_err(|_| invalid("is not a URL"))?;
    if url.scheme_str() != Some("https") {
        return Err(invalid("must be https://host[:port]"));
    }
    if url.host().is_none_or(str::is_empty) {
        return Err(invalid("has no host"));
    }
    if url.path() != "/" && !url.path().is_empty() || url.query().is_some() {
        return Err(invalid("must have no path or query"));
    }
    Ok(url)
}

/// What a failed call to `endpoint` while applying `object` means.
pub(crate) fn classify(endpoint: &str, object: &str, error: kube::Error) -> DeployError {
    let endpoint = endpoint.to_owned();
    if let kube::Error::Api(status) = &error {
        let what = match status.code {
            401 => Some(format!("the credential was not accepted (401 Unauthorized: {})", status.message)),
            403 => Some(format!(
                "the credential may not apply {object} (403 Forbidden: {}); it needs cluster-admin rights",
                status.message
            )),
            _ => None,
        };
        return match what {
            Some(what) => DeployError::Refused { endpoint, what },
            None => DeployError::Apply { endpoint, object: object.to_owned(), source: Box::new(error) },
        };
    }
    if let Some(tls) = find_tls_error(&error) {
        let what = match tls {
            rustls::Error::InvalidCertificate(cause) => format!(
                "its TLS certificate was not trusted ({cause}); it does not chain to the CA the provisioner \
                 handed over"
            ),
            rustls::Error::AlertReceived(alert) => {
                format!(
                    "it ended the TLS handshake with the alert {alert:?} (a rejected client certificate?)"
                )
            }
            other => format!("TLS failed: {other}"),
        };
        return DeployError::Refused { endpoint, what };
    }
    match unreachable_reason(&error) {
        Some(reason) => DeployError::Unreachable { endpoint, reason },
        None => DeployError::Apply { endpoint, object: object.to_owned(), source: Box::new(error) },
    }
}

/// Every error behind `error`: its `source()` chain and, within each I/O error, what it wraps (an
/// I/O error's `source()` skips what it wraps, and connectors nest them: `Other(InvalidData(rustls))`).
fn chain(error: &kube::Error) -> impl Iterator<Item = &(dyn std::error::Error + 'static)> {
    let sources = std::iter::successors(Some(error as &(dyn std::error::Error + 'static)), |e| e.source());
    sources.flat_map(|e| {
        std::iter::successors(Some(e), |e| {
            let inner = e.downcast_ref::<std::io::Error>()?.get_ref()?;
            Some(inner as &(dyn std::error::Error + 'static))
        })
    })
}

/// The rustls error behind `error`, however deep.
fn find_tls_error(error: &kube::Error) -> Option<&rustls::Error> {
    chain(error).find_map(|e| e.downcast_ref::<rustls::Error>())
}

/// Why no connection was made, when that is what `error` says (and TLS is not the cause).
fn unreachable_reason(error: &kube::Error) -> Option<String> {
    use std::io::ErrorKind::{
        AddrNotAvailable, ConnectionRefused, HostUnreachable, NetworkUnreachable, TimedOut,
    };
    let io = chain(error).filter_map(|e| e.downcast_ref::<std::io::Error>()).find(|io| {
        matches!(
            io.kind(),
            ConnectionRefused | TimedOut | HostUnreachable | NetworkUnreachable | AddrNotAvailable
        )
    });
    if let Some(io) = io {
        return Some(io.to_string());
    }
    // A failure to connect for another reason: the name did not resolve, mostly.
    let connect = chain(error)
        .find_map(|e| e.downcast_ref::<hyper_util::client::legacy::Error>())
        .filter(|e| e.is_connect())?;
    let innermost = chain(error).last().map(ToString::to_string).unwrap_or_default();
    Some(if innermost.is_empty() { connect.to_string() } else { innermost })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn downstream(endpoint: &str, ca_pem: &str, credential: DownstreamCredential) -> Downstream {
        Downstream { api_endpoint: endpoint.into(), ca_pem: ca_pem.into(), credential }
    }

    fn token(t: &str) -> DownstreamCredential {
        DownstreamCredential::BearerToken(t.to_owned().into())
    }

    fn field_of(r: Result<kube::Client, DeployError>) -> &'static str {
        match r {
            Err(DeployError::Invalid { field, .. }) => field,
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[tokio::test]
    async fn a_bad_hand_over_names_the_field_and_never_the_secret() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        for bad in ["http://10.0.0.1:6443", "10.0.0.1:6443", "https://", "https://h:6443/api?x=1", ""] {
            assert_eq!(
                field_of(client_for(&downstream(bad, "", token("t")))),
                "downstream.api_endpoint",
                "{bad}"
            );
        }
        let ok = "https://10.0.0.1:6443";
        assert_eq!(field_of(client_for(&downstream(ok, "not a pem", token("t")))), "downstream.ca_pem");
        assert_eq!(field_of(client_for(&downstream(ok, "", token(" ")))), "downstream.credential");
        let cert = DownstreamCredential::ClientCertificate {
            cert_pem: "junk".into(),
            key_pem: "sup3r-s3cret-key".to_owned().into(),
        };
        assert_eq!(field_of(client_for(&downstream(ok, "", cert))), "downstream.credential.cert_pem");
        let (cert_pem, _) = rancher_test_cert();
        let cert = DownstreamCredential::ClientCertificate {
            cert_pem,
            key_pem: "sup3r-s3cret-key".to_owned().into(),
        };
        let err = client_for(&downstream(ok, "", cert)).err().unwrap();
        assert!(matches!(err, DeployError::Invalid { field: "downstream.credential.key_pem", .. }));
        assert!(!err.to_string().contains("sup3r-s3cret-key") && !format!("{err:?}").contains("sup3r"));
        assert!(client_for(&downstream(ok, "", token("t"))).is_ok(), "system roots when no CA");
    }

    fn rancher_test_cert() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x".into()]).unwrap().self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn the_debug_of_a_hand_over_hides_the_credential() {
        let d = downstream("https://h:6443", "", token("sup3r-s3cret"));
        assert!(!format!("{d:?}").contains("sup3r-s3cret"));
        let (cert_pem, key_pem) = rancher_test_cert();
        let d = downstream(
            "https://h:6443",
            "",
            DownstreamCredential::ClientCertificate { cert_pem, key_pem: key_pem.clone().into() },
        );
        assert!(!format!("{d:?}").contains(key_pem.lines().nth(1).unwrap()));
    }

    /// One call through a client for `downstream`, classified.
    async fn try_once(downstream: &Downstream) -> DeployError {
        let client = client_for(downstream).unwrap();
        let api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client);
        let e = api.get("default").await.expect_err("refused");
        classify(&downstream.api_endpoint, "Namespace default", e)
    }

    #[tokio::test]
    async fn a_real_api_server_s_refusals_and_a_closed_port_are_told_apart() {
        let sim = rancher_sim::Sim::builder().start().await.unwrap();
        let other = rancher_sim::Sim::builder().name("other").start().await.unwrap();
        let wrong_ca = downstream(&sim.url(), other.ca_pem(), token(sim.admin_token()));
        let e = try_once(&wrong_ca).await;
        assert!(matches!(&e, DeployError::Refused { what, .. } if what.contains("not trusted")), "{e}");
        let bad_token = downstream(&sim.url(), sim.ca_pem(), token("not-this-one"));
        let e = try_once(&bad_token).await;
        assert!(matches!(&e, DeployError::Refused { what, .. } if what.contains("401")), "{e}");
        assert!(!e.to_string().contains("not-this-one"));
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let closed = downstream(&format!("https://127.0.0.1:{port}"), sim.ca_pem(), token("t"));
        let e = try_once(&closed).await;
        assert!(matches!(&e, DeployError::Unreachable { .. }), "{e}");
        let unresolvable = downstream("https://cluster.invalid:6443", "", token("t"));
        let e = try_once(&unresolvable).await;
        assert!(matches!(&e, DeployError::Unreachable { .. }), "{e}");
    }

    #[test]
    fn status_401_and_403_are_refusals_other_codes_are_retried() {
        let status = |code: u16| {
            let mut s = kube::core::Status::failure("nope", "Because");
            s.code = code;
            kube::Error::Api(Box::new(s))
        };
        let e = classify("https://h", "Secret cattle-system/x", status(401));
        assert!(matches!(&e, DeployError::Refused { what, .. } if what.contains("401")), "{e}");
        let e = classify("https://h", "Secret cattle-system/x", status(403));
        assert!(matches!(&e, DeployError::Refused { what, .. } if what.contains("Secret cattle-system/x")));
        let e = classify("https://h", "Secret cattle-system/x", status(500));
        assert!(matches!(e, DeployError::Apply { .. }));
    }
}
