//! The files of a host's plan: where each certificate, key and kubeconfig lives under the prefix path,
//! and the kubeconfig documents.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use sha2::{Digest, Sha256};

use super::RenderError;
use crate::cluster_pki::ClusterPki;
use crate::plan::PlanFile;

/// The environment variable of every process that holds the digest of the certificates it loads
/// ([`HostFiles::digest`]): the node agent restarts a process whose environment changed, so a
/// process picks up its certificates issued again (a rotation, a renewal).
pub(crate) const CERTIFICATES_ENV: &str = "RKE_CERTIFICATES_DIGEST";

/// Mode of private keys.
const KEY_MODE: u32 = 0o600;
/// Mode of everything else.
const FILE_MODE: u32 = 0o644;

/// A certificate and its key as files on a host.
#[derive(Clone, Debug)]
pub(crate) struct CertFiles {
    pub(crate) cert: String,
    pub(crate) key: String,
}

/// The files one host gets, in the order they were added.
pub(crate) struct HostFiles<'a> {
    pki: &'a ClusterPki,
    /// `<prefix>/etc/kubernetes/ssl`.
    pub(crate) ssl: String,
    pub(crate) files: Vec<PlanFile>,
}

impl<'a> HostFiles<'a> {
    pub(crate) fn new(pki: &'a ClusterPki, prefix: &str) -> Self {
        HostFiles { pki, ssl: format!("{prefix}/etc/kubernetes/ssl"), files: vec![] }
    }

    fn push(&mut self, path: String, content: &[u8], mode: u32) -> String {
        if let Some(f) = self.files.iter_mut().find(|f| f.path == path) {
            f.content = B64.encode(content);
            f.mode = mode;
        } else {
            self.files.push(PlanFile { path: path.clone(), content: B64.encode(content), mode });
        }
        path
    }

    /// A PEM file that is not secret (`<ssl>/<base>.pem`).
    pub(crate) fn public_pem(&mut self, base: &str, pem: &str) -> String {
        self.push(format!("{}/{base}.pem", self.ssl), pem.as_bytes(), FILE_MODE)
    }

    /// A secret file (`<ssl>/<base>-key.pem`, mode 0600).
    pub(crate) fn secret_pem(&mut self, base: &str, pem: &str) -> String {
        self.push(format!("{}/{base}-key.pem", self.ssl), pem.as_bytes(), KEY_MODE)
    }

    /// What a host trusts for the PKI's CA `name` ([`ClusterPki::trust_bundle`]: both CAs during
    /// a rotation to a new CA), as `<ssl>/<base>.pem`.
    pub(crate) fn ca(&mut self, name: &str, base: &str) -> Result<String, RenderError> {
        let pem =
            self.pki.trust_bundle(name).ok_or_else(|| RenderError::MissingCertificate(name.to_owned()))?;
        Ok(self.public_pem(base, &pem))
    }

    /// The certificate of the PKI's CA `name` alone (the one its key signs with), as
    /// `<ssl>/<base>.pem`.
    pub(crate) fn signing_ca(&mut self, name: &str, base: &str) -> Result<String, RenderError> {
        let c = self.pki.get(name).ok_or_else(|| RenderError::MissingCertificate(name.to_owned()))?;
        let pem = c.cert_pem.clone();
        Ok(self.public_pem(base, &pem))
    }

    /// A digest (hex, 16 characters) of the contents of the files at `paths`, for a process's
    /// [`CERTIFICATES_ENV`]: its value changes, and so the process is restarted, when one of the
    /// certificates it loads is issued again.
    pub(crate) fn digest(&self, paths: &[&str]) -> String {
        let mut h = Sha256::new();
        for path in paths {
            let content = self.files.iter().find(|f| f.path == *path).map_or("", |f| f.content.as_str());
            h.update(path.as_bytes());
            h.update([0]);
            h.update(content.as_bytes());
            h.update([0]);
        }
        hex::encode(&h.finalize()[..8])
    }

    /// The certificate and key of the PKI's `name`, as `<ssl>/<base>.pem` and `<ssl>/<base>-key.pem`.
    pub(crate) fn cert(&mut self, name: &str, base: &str) -> Result<CertFiles, RenderError> {
        let c = self.pki.get(name).ok_or_else(|| RenderError::MissingCertificate(name.to_owned()))?;
        let (cert_pem, key_pem) = (c.cert_pem.clone(), c.key_pem.expose().to_owned());
        Ok(CertFiles { cert: self.public_pem(base, &cert_pem), key: self.secret_pem(base, &key_pem) })
    }

    /// `<ssl>/kubecfg-<component>.yaml`: a kubeconfig for `server` naming the files of `ca` and `client`.
    pub(crate) fn kubeconfig(
        &mut self,
        component: &str,
        server: &str,
        ca: &str,
        client: &CertFiles,
    ) -> String {
        let doc = kubeconfig(
            server,
            component,
            &[("certificate-authority", ca)],
            &[("client-certificate", &client.cert), ("client-key", &client.key)],
        );
        self.push(format!("{}/kubecfg-{component}.yaml", self.ssl), doc.as_bytes(), KEY_MODE)
    }
}

/// A YAML string (JSON's double-quoted strings are valid YAML).
fn q(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// A kubeconfig with one cluster (`local`), one user and one context.
pub(crate) fn kubeconfig(
    server: &str,
    user: &str,
    cluster_fields: &[(&str, &str)],
    user_fields: &[(&str, &str)],
) -> String {
    let field = |(k, v): &(&str, &str)| format!("\n    {k}: {}", q(v));
    let cluster: String = cluster_fields.iter().map(field).collect();
    let creds: String = user_fields.iter().map(field).collect();
    let user = q(user);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: {server}{cluster}\n\
         users:\n- name: {user}\n  user:{creds}\ncontexts:\n- name: local\n  context:\n    cluster: local\n    \
         user: {user}\ncurrent-context: local\n",
        server = q(server),
    )
}

/// `https://host:port`, with brackets around an IPv6 address.
pub(crate) fn https_url(host: &str, port: u16) -> String {
    if host.contains(':') { format!("https://[{host}]:{port}") } else { format!("https://{host}:{port}") }
}

/// `host:port`, with brackets around an IPv6 address.
pub(crate) fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

/// Base64 for a kubeconfig's `*-data` fields.
pub(crate) fn b64(s: &str) -> String {
    B64.encode(s)
}
