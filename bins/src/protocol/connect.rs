//! The `X-API-Tunnel-Params` header an agent sends on every connect to `/v3/connect`: how the
//! server reaches the downstream API server through the agent's session, or which node a node
//! agent is.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

/// The largest `X-API-Tunnel-Params` value the server decodes (base64 of the JSON).
pub const MAX_PARAMS_LEN: usize = 64 * 1024;

/// The decoded `X-API-Tunnel-Params` header: base64 of this JSON.
///
/// A cluster agent sends `cluster`; a node agent sends `node` (and `cluster` when it can read the
/// cluster's API address, so the server can reach the API server through the node's session).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TunnelParams {
    /// How the server reaches the downstream API server through the tunnel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterParams>,
    /// Present for a node agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeParams>,
}

impl std::fmt::Debug for TunnelParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelParams").field("cluster", &self.cluster).field("node", &self.node).finish()
    }
}

/// The downstream API server as the agent sees it, and the credential to use there.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterParams {
    /// `host:port` of the API server (the only destination the agent dials).
    pub address: String,
    /// A bearer token for the API server (the agent's service account or its kubeconfig user).
    pub token: String,
    /// The API server's CA, base64 of the PEM.
    pub ca_cert: String,
}

impl std::fmt::Debug for ClusterParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a credential: never printed.
        f.debug_struct("ClusterParams")
            .field("address", &self.address)
            .field("token", &"<redacted>")
            .field("ca_cert_len", &self.ca_cert.len())
            .finish()
    }
}

/// A node agent's identity.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeParams {
    /// The node's name (`CATTLE_NODE_NAME`); the session's client key is `<cluster>:<node>`.
    pub requested_hostname: String,
}

/// Why a `X-API-Tunnel-Params` value was refused.
#[derive(Debug, thiserror::Error)]
pub enum ParamsError {
    /// The value is longer than [`MAX_PARAMS_LEN`].
    #[error("tunnel params are {0} bytes, more than the {MAX_PARAMS_LEN} allowed")]
    TooLong(usize),
    /// Not base64.
    #[error("tunnel params are not base64: {0}")]
    Base64(#[source] base64::DecodeError),
    /// Not the expected JSON.
    #[error("tunnel params are not valid JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// A field is missing or malformed.
    #[error("tunnel params: {0}")]
    Invalid(String),
}

impl TunnelParams {
    /// The header value: base64 of the JSON.
    pub fn encode(&self) -> String {
        // Serialising plain strings and options cannot fail.
        STANDARD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Decodes and checks a header value.
    ///
    /// # Errors
    /// [`ParamsError`] naming what is wrong; neither `cluster` nor `node` is an error too.
    pub fn decode(value: &str) -> Result<Self, ParamsError> {
        if value.len() > MAX_PARAMS_LEN {
            return Err(ParamsError::TooLong(value.len()));
        }
        let bytes = STANDARD.decode(value.trim()).map_err(ParamsError::Base64)?;
        let params: TunnelParams = serde_json::from_slice(&bytes).map_err(ParamsError::Json)?;
        if params.cluster.is_none() && params.node.is_none() {
            return Err(ParamsError::Invalid("neither \"cluster\" nor \"node\" is given".into()));
        }
        if let Some(c) = &params.cluster {
            c.validate()?;
        }
        if let Some(n) = &params.node
            && !is_node_name(&n.requested_hostname)
        {
            return Err(ParamsError::Invalid(format!(
                "node.requestedHostname {:?} is not a DNS-1123 subdomain",
                n.requested_hostname
            )));
        }
        Ok(params)
    }
}

impl ClusterParams {
    /// Checks the address is `host:port`, the token is present and the CA is base64 PEM.
    ///
    /// # Errors
    /// [`ParamsError::Invalid`] naming the field.
    pub fn validate(&self) -> Result<(), ParamsError> {
        split_host_port(&self.address).ok_or_else(|| {
            ParamsError::Invalid(format!("cluster.address {:?} is not host:port", self.address))
        })?;
        if self.token.is_empty() || self.token.chars().any(|c| c.is_control() || c == ' ') {
            return Err(ParamsError::Invalid("cluster.token is empty or malformed".into()));
        }
        let pem = self.ca_pem()?;
        if !pem.contains("-----BEGIN CERTIFICATE-----") {
            return Err(ParamsError::Invalid("cluster.caCert holds no PEM certificate".into()));
        }
        Ok(())
    }

    /// The CA as PEM text.
    ///
    /// # Errors
    /// [`ParamsError`] when `caCert` is not base64 of UTF-8.
    pub fn ca_pem(&self) -> Result<String, ParamsError> {
        let bytes = STANDARD.decode(self.ca_cert.trim()).map_err(ParamsError::Base64)?;
        String::from_utf8(bytes).map_err(|_| ParamsError::Invalid("cluster.caCert is not UTF-8 PEM".into()))
    }
}

/// A Kubernetes node name: a DNS-1123 subdomain (lower-case alphanumerics, `-` and `.`, at most
/// 253 characters, alphanumeric at both ends).
pub fn is_node_name(name: &str) -> bool {
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    name.len() <= 253
        && edge_ok(name.chars().next())
        && edge_ok(name.chars().last())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
}

/// Splits `host:port` (IPv6 hosts in brackets); `None` when it is not of that form.
pub fn split_host_port(address: &str) -> Option<(&str, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let ok = !host.is_empty()
        && host.len() <= 253
        && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
    ok.then_some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> TunnelParams {
        TunnelParams {
            cluster: Some(ClusterParams {
                address: "10.43.0.1:443".into(),
                token: "abc.def".into(),
                ca_cert: STANDARD.encode("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"),
            }),
            node: None,
        }
    }

    #[test]
    fn params_round_trip_and_debug_hides_the_token() {
        let p = params();
        assert_eq!(TunnelParams::decode(&p.encode()).unwrap(), p);
        assert!(!format!("{p:?}").contains("abc.def"));
    }

    #[test]
    fn bad_params_are_refused_with_the_field_named() {
        assert!(matches!(TunnelParams::decode("!!!"), Err(ParamsError::Base64(_))));
        assert!(matches!(TunnelParams::decode(&STANDARD.encode("{}")), Err(ParamsError::Invalid(_))));
        let mut p = params();
        p.cluster.as_mut().unwrap().address = "no-port".into();
        let err = TunnelParams::decode(&p.encode()).unwrap_err().to_string();
        assert!(err.contains("cluster.address"), "{err}");
        let mut p = params();
        p.cluster.as_mut().unwrap().ca_cert = STANDARD.encode("not pem");
        assert!(TunnelParams::decode(&p.encode()).unwrap_err().to_string().contains("caCert"));
        let p =
            TunnelParams { cluster: None, node: Some(NodeParams { requested_hostname: "Bad_Name".into() }) };
        assert!(TunnelParams::decode(&p.encode()).is_err());
        assert!(matches!(
            TunnelParams::decode(&"A".repeat(MAX_PARAMS_LEN + 1)),
            Err(ParamsError::TooLong(_))
        ));
    }

    #[test]
    fn host_port_splitting() {
        assert_eq!(split_host_port("127.0.0.1:6443"), Some(("127.0.0.1", 6443)));
        assert_eq!(split_host_port("[::1]:443"), Some(("::1", 443)));
        assert_eq!(split_host_port("kubernetes.default.svc:443"), Some(("kubernetes.default.svc", 443)));
        assert_eq!(split_host_port("host:0"), None);
        assert_eq!(split_host_port("host/x:1"), None);
        assert_eq!(split_host_port(":1"), None);
    }
}
