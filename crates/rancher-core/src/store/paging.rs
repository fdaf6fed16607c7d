//! Continue tokens for paged lists: opaque to clients, checked when they come back.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::{StoreError, StoreResult};

#[derive(Serialize, Deserialize)]
struct Token {
    /// Format version.
    v: u8,
    /// The resource the list was for.
    r: String,
    /// The namespace filter of the list.
    n: Option<String>,
    /// The last key returned (backend-specific).
    k: String,
    /// The revision of the first page.
    rv: u64,
}

/// Where the next page starts.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Continue {
    /// The last key of the previous page; the next page starts after it.
    pub(crate) after: String,
    /// The revision of the first page.
    pub(crate) revision: u64,
}

/// Encodes a continue token.
pub(crate) fn encode(resource: &str, namespace: Option<&str>, after: &str, revision: u64) -> String {
    let token =
        Token { v: 1, r: resource.into(), n: namespace.map(Into::into), k: after.into(), rv: revision };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).unwrap_or_default())
}

/// Decodes and checks a continue token against the list it is used with.
///
/// # Errors
/// [`StoreError::Invalid`] when the token is malformed or belongs to a different list.
pub(crate) fn decode(token: &str, resource: &str, namespace: Option<&str>) -> StoreResult<Continue> {
    let bad = || StoreError::Invalid(format!("invalid continue token {token:?}"));
    let bytes = URL_SAFE_NO_PAD.decode(token.trim()).map_err(|_| bad())?;
    let t: Token = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if t.v != 1 || t.r != resource || t.n.as_deref() != namespace || t.k.is_empty() {
        return Err(bad());
    }
    Ok(Continue { after: t.k, revision: t.rv })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_foreign_tokens() {
        let t = encode("clusters", None, "k1", 7);
        assert_eq!(decode(&t, "clusters", None).unwrap(), Continue { after: "k1".into(), revision: 7 });
        assert!(decode(&t, "projects", None).is_err());
        assert!(decode(&t, "clusters", Some("ns")).is_err());
        assert!(decode("garbage!", "clusters", None).is_err());
        assert!(decode("eyJ2IjoxfQ", "clusters", None).is_err());
    }
}
