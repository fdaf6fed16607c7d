//! The downstream record of one cluster-scoped token: what the server syncs into the cluster and
//! the agent's webhook reads. Like Rancher's ClusterAuthToken plus its Secret, folded into one
//! Secret in `cattle-system` named after the token, of type [`SECRET_TYPE`], labelled
//! [`ACE_LABEL`]`=true` and with rancher-rs's managed-by label. It holds the salted hash of the
//! secret, never the secret.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jiff::Timestamp;
use rancher_auth::rbac_render::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use serde_json::{Value, json};

/// The namespace the records live in.
pub const NAMESPACE: &str = "cattle-system";
/// The label that marks a Secret as a token record.
pub const ACE_LABEL: &str = "cattle.io/cluster-auth-token";
/// The Secret type of a token record.
pub const SECRET_TYPE: &str = "cattle.io/cluster-auth-token";

/// One cluster-scoped token as the downstream cluster knows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterAuthToken {
    /// The token's name (`token-xxxxx`): the part before `:` of the credential.
    pub token_name: String,
    /// The salted hash of the secret (`sha256$<salt>$<digest>`).
    pub hash: String,
    /// The user id the token authenticates as (`u-xxxxx`).
    pub user_name: String,
    /// The user's groups (principal ids).
    pub groups: Vec<String>,
    /// When the token stops working; `None` for never.
    pub expires_at: Option<Timestamp>,
    /// A disabled record authenticates nobody.
    pub enabled: bool,
}

impl std::fmt::Debug for ClusterAuthToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterAuthToken")
            .field("token_name", &self.token_name)
            .field("user_name", &self.user_name)
            .field("groups", &self.groups)
            .field("expires_at", &self.expires_at)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

fn b64(s: &str) -> String {
    STANDARD.encode(s)
}

impl ClusterAuthToken {
    /// The Secret (as Kubernetes JSON) that carries this record.
    pub fn to_secret(&self) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": self.token_name,
                "namespace": NAMESPACE,
                "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE, ACE_LABEL: "true"},
            },
            "type": SECRET_TYPE,
            "data": {
                "tokenName": b64(&self.token_name),
                "hash": b64(&self.hash),
                "userName": b64(&self.user_name),
                "groups": b64(&serde_json::to_string(&self.groups).unwrap_or_else(|_| "[]".into())),
                "expiresAt": b64(&self.expires_at.map(|t| t.to_string()).unwrap_or_default()),
                "enabled": b64(if self.enabled { "true" } else { "false" }),
            },
        })
    }

    /// Reads a record back from a Secret's type, labels and decoded data.
    ///
    /// # Errors
    /// A message naming what is missing or malformed.
    pub fn from_secret(
        secret_type: Option<&str>,
        labels: Option<&BTreeMap<String, String>>,
        data: &BTreeMap<String, Vec<u8>>,
    ) -> Result<ClusterAuthToken, String> {
        if secret_type != Some(SECRET_TYPE) {
            return Err(format!("type is {secret_type:?}, not {SECRET_TYPE}"));
        }
        let labelled = |k: &str, v: &str| labels.and_then(|l| l.get(k)).is_some_and(|x| x == v);
        if !labelled(ACE_LABEL, "true") || !labelled(MANAGED_BY_LABEL, MANAGED_BY_VALUE) {
            return Err("not labelled as a rancher-rs token record".into());
        }
        let field = |k: &str| -> Result<String, String> {
            let raw = data.get(k).ok_or_else(|| format!("no {k}"))?;
            String::from_utf8(raw.clone()).map_err(|_| format!("{k} is not UTF-8"))
        };
        let token_name = field("tokenName")?;
        let hash = field("hash")?;
        let user_name = field("userName")?;
        if token_name.is_empty() || hash.is_empty() || user_name.is_empty() {
            return Err("tokenName, hash and userName must not be empty".into());
        }
        let groups: Vec<String> =
            serde_json::from_str(&field("groups")?).map_err(|e| format!("groups: {e}"))?;
        let expires_at = match field("expiresAt")?.as_str() {
            "" => None,
            s => Some(s.parse::<Timestamp>().map_err(|e| format!("expiresAt: {e}"))?),
        };
        let enabled = match field("enabled")?.as_str() {
            "true" => true,
            "false" => false,
            other => return Err(format!("enabled is {other:?}")),
        };
        Ok(ClusterAuthToken { token_name, hash, user_name, groups, expires_at, enabled })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(secret: &Value) -> BTreeMap<String, Vec<u8>> {
        secret["data"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), STANDARD.decode(v.as_str().unwrap()).unwrap()))
            .collect()
    }

    fn labels(secret: &Value) -> BTreeMap<String, String> {
        serde_json::from_value(secret["metadata"]["labels"].clone()).unwrap()
    }

    #[test]
    fn a_record_round_trips_through_its_secret_and_is_checked() {
        let rec = ClusterAuthToken {
            token_name: "token-abcde".into(),
            hash: rancher_auth::token::hash_secret("s3cret"),
            user_name: "u-12345".into(),
            groups: vec!["local://g1".into()],
            expires_at: Some("2030-01-01T00:00:00Z".parse().unwrap()),
            enabled: true,
        };
        let s = rec.to_secret();
        assert!(!s.to_string().contains("s3cret"));
        let back = ClusterAuthToken::from_secret(Some(SECRET_TYPE), Some(&labels(&s)), &decode(&s)).unwrap();
        assert_eq!(back, rec);
        assert!(!format!("{back:?}").contains(&rec.hash));

        assert!(ClusterAuthToken::from_secret(Some("Opaque"), Some(&labels(&s)), &decode(&s)).is_err());
        let mut unlabelled = labels(&s);
        unlabelled.remove(MANAGED_BY_LABEL);
        assert!(ClusterAuthToken::from_secret(Some(SECRET_TYPE), Some(&unlabelled), &decode(&s)).is_err());
        let mut bad = decode(&s);
        bad.insert("enabled".into(), b"yes".to_vec());
        assert!(ClusterAuthToken::from_secret(Some(SECRET_TYPE), Some(&labels(&s)), &bad).is_err());
        bad.remove("hash");
        assert!(ClusterAuthToken::from_secret(Some(SECRET_TYPE), Some(&labels(&s)), &bad).is_err());
    }
}
