//! Registration tokens without a stored secret: a cluster's token is
//! `HMAC-SHA256(server key, "<cluster>/<cluster uid>/<ClusterRegistrationToken uid>")`, truncated to
//! 48 hex digits. The cluster's uid makes the token one of this cluster only: a cluster created later
//! under the same name gets other tokens. (Tokens made before the uid was bound are
//! `"<cluster>/<ClusterRegistrationToken uid>"`; they stay valid for the cluster they were made for.) The key is kept in the store sealed with the servers' secrets key
//! (`shared_secrets`), so every replica makes and checks the same tokens while a copy of the store alone
//! registers nothing; the import URL can be shown again whenever asked. Deleting the ClusterRegistrationToken revokes it.

use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Length of a token in hex digits (192 bits).
pub(crate) const TOKEN_HEX_LEN: usize = 48;
/// File name of the key in the data directory of versions that kept it there.
pub(crate) const KEY_FILE: &str = "registration.key";

/// The server's registration key.
pub(crate) struct TokenKey([u8; 32]);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

impl TokenKey {
    /// A new random key.
    pub(crate) fn generate() -> Self {
        TokenKey(rand::random())
    }

    /// The key an earlier version kept in `dir` (`registration.key`), if it is there.
    ///
    /// # Errors
    /// I/O errors, or a key file of the wrong size (named in the message).
    pub(crate) fn in_dir(dir: &Path) -> std::io::Result<Option<Self>> {
        let path = dir.join(KEY_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => Self::from_slice(&bytes).map(Some).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} holds {} bytes, not 32", path.display(), bytes.len()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A key of exactly 32 bytes.
    pub(crate) fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(TokenKey)
    }

    /// The key's bytes, to keep it (sealed).
    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A key from bytes (tests).
    #[cfg(test)]
    pub(crate) fn from_bytes(key: [u8; 32]) -> Self {
        TokenKey(key)
    }

    /// The token of the ClusterRegistrationToken with `crt_uid` made for the cluster `cluster` whose
    /// uid is `cluster_uid` (empty: a token made before cluster uids were bound).
    pub(crate) fn token_for(&self, cluster: &str, cluster_uid: &str, crt_uid: &str) -> String {
        // HMAC accepts keys of any length: this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(cluster.as_bytes());
        mac.update(b"/");
        // Names and uids hold no '/', so the two forms never produce the same message.
        if !cluster_uid.is_empty() {
            mac.update(cluster_uid.as_bytes());
            mac.update(b"/");
        }
        mac.update(crt_uid.as_bytes());
        let mut hex = hex::encode(mac.finalize().into_bytes());
        hex.truncate(TOKEN_HEX_LEN);
        hex
    }

    /// Whether `presented` is the token of that ClusterRegistrationToken (constant time).
    pub(crate) fn verify(&self, cluster: &str, cluster_uid: &str, crt_uid: &str, presented: &str) -> bool {
        let expected = self.token_for(cluster, cluster_uid, crt_uid);
        presented.len() == expected.len() && bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
    }
}

/// True when `s` has the shape of a token (so obviously wrong input is refused before any lookup).
pub(crate) fn looks_like_token(s: &str) -> bool {
    s.len() == TOKEN_HEX_LEN && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stable_per_key_cluster_and_uid() {
        let k = TokenKey::from_bytes([1; 32]);
        let t = k.token_for("c-abc", "cu-1", "uid-1");
        assert_eq!(t.len(), TOKEN_HEX_LEN);
        assert!(looks_like_token(&t));
        assert_eq!(t, k.token_for("c-abc", "cu-1", "uid-1"));
        assert_ne!(t, k.token_for("c-abd", "cu-1", "uid-1"));
        assert_ne!(t, k.token_for("c-abc", "cu-1", "uid-2"));
        assert_ne!(t, k.token_for("c-abc", "cu-2", "uid-1"), "another cluster of the same name");
        assert_ne!(t, k.token_for("c-abc", "", "uid-1"));
        assert_ne!(t, TokenKey::from_bytes([2; 32]).token_for("c-abc", "cu-1", "uid-1"));
        assert!(k.verify("c-abc", "cu-1", "uid-1", &t));
        assert!(!k.verify("c-abc", "cu-1", "uid-1", &t[..47]));
        assert!(!k.verify("c-abd", "cu-1", "uid-1", &t));
        assert!(!k.verify("c-abc", "cu-2", "uid-1", &t));
    }

    #[test]
    fn the_key_an_earlier_version_kept_is_found() {
        let dir = tempfile::tempdir().unwrap();
        assert!(TokenKey::in_dir(dir.path()).unwrap().is_none());
        std::fs::write(dir.path().join(KEY_FILE), [3u8; 32]).unwrap();
        let found = TokenKey::in_dir(dir.path()).unwrap().unwrap();
        assert_eq!(found.bytes(), &[3u8; 32]);
        assert_ne!(TokenKey::generate().bytes(), TokenKey::generate().bytes());
        std::fs::write(dir.path().join(KEY_FILE), b"short").unwrap();
        assert!(TokenKey::in_dir(dir.path()).unwrap_err().to_string().contains("not 32"));
    }
}
