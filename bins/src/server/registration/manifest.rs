//! The import manifest (`GET /v3/import/<token>_<cluster>.yaml`): what `kubectl apply -f` creates in
//! a cluster to register it — namespace `cattle-system`, service account `cattle` bound to the
//! `cattle-admin` cluster role, the credentials Secret, and the `cattle-cluster-agent` Deployment
//! and Service.
//!
//! Every value is written as a JSON string, which is also a valid YAML scalar, so no input can break
//! the document's structure.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

/// What varies between manifests.
pub(crate) struct ManifestParams<'a> {
    /// The server's external URL (`CATTLE_SERVER`).
    pub(crate) server_url: &'a str,
    /// The registration token.
    pub(crate) token: &'a str,
    /// The cluster's id.
    pub(crate) cluster: &'a str,
    /// SHA-256 hex of the server's `cacerts` (`CATTLE_CA_CHECKSUM`).
    pub(crate) ca_checksum: &'a str,
    /// The agent's container image.
    pub(crate) agent_image: &'a str,
}

/// The namespace the agent runs in.
pub(crate) const NAMESPACE: &str = "cattle-system";

fn q(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

fn b64(s: &str) -> String {
    q(&STANDARD.encode(s))
}

/// `cattle-credentials-<first 10 hex of sha256(url + token + namespace)>`, as Rancher names it.
pub(crate) fn credentials_secret_name(server_url: &str, token: &str, cluster: &str) -> String {
    let digest = hex::encode(Sha256::digest(format!("{server_url}{token}{cluster}").as_bytes()));
    format!("cattle-credentials-{}", &digest[..10])
}

/// Why `--agent-image` is not an image reference.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{image:?} is not an image reference: {problem}")]
pub struct ImageRefError {
    /// The reference given.
    pub image: String,
    /// The part that is wrong.
    pub problem: ImageRefProblem,
}

/// The part of an image reference that is wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ImageRefProblem {
    /// Empty, or longer than 255 characters.
    #[error("it must have 1 to 255 characters")]
    Length,
    /// The digest is not `sha256:` and 64 lower-case hex digits.
    #[error("the digest must be sha256: and 64 lower-case hex digits")]
    Digest,
    /// The tag has characters a tag may not have, or more than 128.
    #[error("the tag must be letters, digits, '_', '.' and '-' (at most 128)")]
    Tag,
    /// The registry is not `host[:port]`.
    #[error("the registry must be host[:port]")]
    Registry,
    /// A path component is not lower-case letters and digits with separators.
    #[error("each path component must be lower-case letters and digits, separated by '.', '_' or '-'")]
    PathComponent,
}

/// Checks an image reference as container runtimes parse it — `[registry[:port]/]path[:tag][@sha256:hex]`,
/// path components lower-case — so a typo in `--agent-image` fails at start, not as a pod that never
/// pulls.
///
/// # Errors
/// An [`ImageRefError`] naming what is wrong.
pub fn check_image_ref(image: &str) -> Result<String, ImageRefError> {
    let bad = |problem| Err(ImageRefError { image: image.to_owned(), problem });
    if image.is_empty() || image.len() > 255 {
        return bad(ImageRefProblem::Length);
    }
    let (rest, digest) = match image.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (image, None),
    };
    if let Some(d) = digest {
        let hex = d.strip_prefix("sha256:").unwrap_or_default();
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return bad(ImageRefProblem::Digest);
        }
    }
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(tag) = tag {
        let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
        let ok = !tag.is_empty()
            && tag.len() <= 128
            && word(tag.as_bytes()[0])
            && tag.bytes().all(|b| word(b) || b == b'.' || b == b'-');
        if !ok {
            return bad(ImageRefProblem::Tag);
        }
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    if parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost") {
        let registry = parts.remove(0);
        let (host, port) = registry.split_once(':').unwrap_or((registry, "1"));
        let host_ok = !host.is_empty()
            && host.split('.').all(|l| {
                !l.is_empty()
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !host_ok || port.parse::<u16>().is_err() {
            return bad(ImageRefProblem::Registry);
        }
    }
    let component_ok = |c: &str| {
        let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        let bytes = c.as_bytes();
        !bytes.is_empty()
            && alnum(bytes[0])
            && alnum(bytes[bytes.len() - 1])
            && bytes.iter().all(|&b| alnum(b) || matches!(b, b'.' | b'_' | b'-'))
    };
    if !parts.iter().all(|c| component_ok(c)) {
        return bad(ImageRefProblem::PathComponent);
    }
    Ok(image.to_owned())
}

/// Renders the multi-document YAML.
pub(crate) fn render(p: &ManifestParams<'_>) -> String {
    let secret = credentials_secret_name(p.server_url, p.token, p.cluster);
    let ns = q(NAMESPACE);
    format!(
        r#"---
apiVersion: v1
kind: Namespace
metadata:
  name: {ns}
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: "cattle"
  namespace: {ns}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: "cattle-admin"
  labels:
    cattle.io/creator: "norman"
rules:
- apiGroups: ["*"]
  resources: ["*"]
  verbs: ["*"]
- nonResourceURLs: ["*"]
  verbs: ["*"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: "cattle-admin-binding"
  labels:
    cattle.io/creator: "norman"
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: "cattle-admin"
subjects:
- kind: ServiceAccount
  name: "cattle"
  namespace: {ns}
---
apiVersion: v1
kind: Secret
metadata:
  name: {secret_q}
  namespace: {ns}
type: Opaque
data:
  url: {url_b64}
  token: {token_b64}
  namespace: {cluster_b64}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: "cattle-cluster-agent"
  namespace: {ns}
  annotations:
    management.cattle.io/scale-available: "2"
spec:
  replicas: 1
  selector:
    matchLabels:
      app: "cattle-cluster-agent"
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 0
      maxSurge: 1
  template:
    metadata:
      labels:
        app: "cattle-cluster-agent"
    spec:
      serviceAccountName: "cattle"
      containers:
      - name: "cluster-register"
        image: {image}
        imagePullPolicy: IfNotPresent
        env:
        - name: CATTLE_SERVER
          value: {server}
        - name: CATTLE_CA_CHECKSUM
          value: {checksum}
        - name: CATTLE_CLUSTER
          value: "true"
        - name: CATTLE_K8S_MANAGED
          value: "true"
        - name: CATTLE_CLUSTER_ID
          value: {cluster}
        - name: CATTLE_CREDENTIAL_NAME
          value: {secret_q}
        - name: CATTLE_TOKEN
          valueFrom:
            secretKeyRef:
              name: {secret_q}
              key: "token"
        volumeMounts:
        - name: "cattle-credentials"
          mountPath: "/cattle-credentials"
          readOnly: true
      volumes:
      - name: "cattle-credentials"
        secret:
          secretName: {secret_q}
          defaultMode: 320
---
apiVersion: v1
kind: Service
metadata:
  name: "cattle-cluster-agent"
  namespace: {ns}
spec:
  selector:
    app: "cattle-cluster-agent"
  ports:
  - name: "http"
    port: 80
    protocol: TCP
    targetPort: 80
  - name: "https-internal"
    port: 443
    protocol: TCP
    targetPort: 444
"#,
        secret_q = q(&secret),
        url_b64 = b64(p.server_url),
        token_b64 = b64(p.token),
        cluster_b64 = b64(p.cluster),
        image = q(p.agent_image),
        server = q(p.server_url),
        checksum = q(p.ca_checksum),
        cluster = q(p.cluster),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> ManifestParams<'static> {
        ManifestParams {
            server_url: "https://127.0.0.1:8443",
            token: "t0k",
            cluster: "c-abc12",
            ca_checksum: "ab".repeat(32).leak(),
            agent_image: "rancher-rs/rancher-agent:v0.1.0",
        }
    }

    #[test]
    fn every_document_parses_and_the_deployment_carries_the_settings() {
        let yaml = render(&params());
        let docs: Vec<serde_json::Value> = yaml
            .split("\n---\n")
            .map(|d| d.trim_start_matches("---\n"))
            .filter(|d| !d.trim().is_empty())
            .map(|d| serde_saphyr::from_str(d).unwrap())
            .collect();
        let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "Namespace",
                "ServiceAccount",
                "ClusterRole",
                "ClusterRoleBinding",
                "Secret",
                "Deployment",
                "Service"
            ]
        );
        let secret = &docs[4];
        assert_eq!(secret["data"]["token"], STANDARD.encode("t0k"));
        assert!(secret["metadata"]["name"].as_str().unwrap().starts_with("cattle-credentials-"));
        let env = docs[5]["spec"]["template"]["spec"]["containers"][0]["env"].as_array().unwrap().clone();
        let value = |n: &str| env.iter().find(|e| e["name"] == n).cloned().unwrap();
        assert_eq!(value("CATTLE_SERVER")["value"], "https://127.0.0.1:8443");
        assert_eq!(value("CATTLE_CA_CHECKSUM")["value"], "ab".repeat(32));
        assert_eq!(value("CATTLE_CLUSTER")["value"], "true");
        assert_eq!(value("CATTLE_TOKEN")["valueFrom"]["secretKeyRef"]["name"], secret["metadata"]["name"]);
    }

    #[test]
    fn the_server_line_follows_its_name_as_scripts_expect() {
        let yaml = render(&params());
        let mut lines = yaml.lines();
        lines.find(|l| l.trim() == "- name: CATTLE_SERVER").unwrap();
        assert_eq!(lines.next().unwrap().trim(), "value: \"https://127.0.0.1:8443\"");
    }

    #[test]
    fn image_references_are_checked_as_runtimes_parse_them() {
        for good in [
            crate::protocol::IMAGE_REF,
            "rancher-agent",
            "registry.example.com:5000/team/rancher-agent:v0.1.0-rc.1",
            "localhost/rancher-agent:dev",
            "ghcr.io/acme/rancher_agent@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(check_image_ref(good).as_deref(), Ok(good), "{good}");
        }
        for bad in [
            "",
            "Rancher/Agent:v1",
            "rancher-agent:",
            "rancher-agent:-v1",
            "rancher agent",
            "x\"\n  injected: true",
            "registry.example.com:port/agent",
            "agent@sha256:abc",
            "/agent",
            "agent/",
        ] {
            assert!(check_image_ref(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn hostile_values_stay_inside_their_scalar() {
        let mut p = params();
        p.agent_image = "x\"\n  injected: true";
        let yaml = render(&p);
        let deployment = yaml.split("\n---\n").find(|d| d.contains("kind: Deployment")).unwrap();
        let v: serde_json::Value = serde_saphyr::from_str(deployment).unwrap();
        assert_eq!(v["spec"]["template"]["spec"]["containers"][0]["image"], p.agent_image);
        assert!(v["spec"]["template"]["spec"]["containers"][0].get("injected").is_none());
    }
}
