//! The bearer token EKS's API servers accept for an IAM identity, as `aws eks get-token` and
//! aws-iam-authenticator make it: `k8s-aws-v1.` and the unpadded base64url of a presigned STS
//! `GetCallerIdentity` URL whose signature covers an `x-k8s-aws-id: <cluster name>` header, valid
//! 60 seconds. The API server's authenticator sends that request to STS (adding the header) and
//! maps the caller's ARN to a Kubernetes user; the token is good for about 15 minutes.

use std::time::Duration;

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};

use crate::aws_sigv4::{EMPTY_SHA256, Request, Scope, presigned_query};

/// The prefix of every EKS token.
pub const TOKEN_PREFIX: &str = "k8s-aws-v1.";
/// The header naming the cluster, signed into the URL.
pub const CLUSTER_ID_HEADER: &str = "x-k8s-aws-id";
/// How long the presigned URL is valid, in seconds.
pub const URL_EXPIRES_SECS: u64 = 60;
/// How long a client may use a token before making a new one (`aws eks get-token`'s
/// `expirationTimestamp`: 14 minutes, one under the API server's 15).
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(14 * 60);

/// AWS keys to sign with. Debug shows the key id only.
#[derive(Clone)]
pub struct AwsKeys {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: SecretString,
    /// The session token of temporary credentials.
    pub session_token: Option<SecretString>,
}

impl std::fmt::Debug for AwsKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsKeys")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("session_token", &self.session_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl AwsKeys {
    /// The keys of a `CloudSecret::Aws`; `None` for another cloud's secret.
    pub fn from_secret(secret: &crate::hosted::credentials::CloudSecret) -> Option<AwsKeys> {
        match secret {
            crate::hosted::credentials::CloudSecret::Aws {
                access_key_id,
                secret_access_key,
                session_token,
                ..
            } => Some(AwsKeys {
                access_key_id: access_key_id.clone(),
                secret_access_key: secret_access_key.clone(),
                session_token: session_token.clone(),
            }),
            _ => None,
        }
    }
}

/// STS's regional host for `region` (`sts.us-west-2.amazonaws.com`; `.amazonaws.com.cn` in China).
pub fn sts_host(region: &str) -> String {
    let suffix = if region.starts_with("cn-") { "amazonaws.com.cn" } else { "amazonaws.com" };
    format!("sts.{region}.{suffix}")
}

/// The token for `cluster` (its EKS name) signed by `keys` in `region` at `now`.
pub fn bearer_token(keys: &AwsKeys, region: &str, cluster: &str, now: jiff::Timestamp) -> SecretString {
    bearer_token_for_host(keys, region, &sts_host(region), cluster, now)
}

/// As [`bearer_token`], for the STS at `host` (a stand-in or a VPC endpoint).
pub fn bearer_token_for_host(
    keys: &AwsKeys,
    region: &str,
    host: &str,
    cluster: &str,
    now: jiff::Timestamp,
) -> SecretString {
    let amz_date = now.strftime("%Y%m%dT%H%M%SZ").to_string();
    let scope = Scope {
        access_key: &keys.access_key_id,
        secret_key: &keys.secret_access_key,
        region,
        service: "sts",
        amz_date: &amz_date,
    };
    let req = Request {
        method: "GET",
        path: "/",
        query: &[("Action", "GetCallerIdentity"), ("Version", "2011-06-15")],
        headers: &[("host", host), (CLUSTER_ID_HEADER, cluster)],
        payload_sha256: EMPTY_SHA256,
    };
    let query = presigned_query(&req, &scope, keys.session_token.as_ref(), URL_EXPIRES_SECS);
    let url = format!("https://{host}/?{query}");
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(url.as_bytes());
    SecretString::from(format!("{TOKEN_PREFIX}{encoded}"))
}

/// The presigned URL inside a token (for checks and tests); `None` when it is not an EKS token.
pub fn token_url(token: &SecretString) -> Option<String> {
    let b64 = token.expose_secret().strip_prefix(TOKEN_PREFIX)?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(b64).ok()?;
    String::from_utf8(raw).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(session: Option<&str>) -> AwsKeys {
        AwsKeys {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: session.map(SecretString::from),
        }
    }

    fn at() -> jiff::Timestamp {
        "2026-12-04T10:11:12Z".parse().unwrap()
    }

    #[test]
    fn a_token_is_a_presigned_get_caller_identity_url_for_the_cluster() {
        let token = bearer_token(&keys(None), "us-west-2", "eks-one", at());
        let text = token.expose_secret();
        assert!(text.starts_with("k8s-aws-v1."), "{text}");
        assert!(
            !text.contains('=') && !text.contains('+') && !text.contains('/'),
            "base64url unpadded: {text}"
        );
        let url = token_url(&token).unwrap();
        let parsed = url::Url::parse(&url).unwrap();
        assert_eq!(parsed.host_str(), Some("sts.us-west-2.amazonaws.com"));
        let q: std::collections::BTreeMap<String, String> = parsed.query_pairs().into_owned().collect();
        assert_eq!(q["Action"], "GetCallerIdentity");
        assert_eq!(q["Version"], "2011-06-15");
        assert_eq!(q["X-Amz-Expires"], "60");
        assert_eq!(q["X-Amz-SignedHeaders"], "host;x-k8s-aws-id");
        assert_eq!(q["X-Amz-Credential"], "AKIDEXAMPLE/20261204/us-west-2/sts/aws4_request");
        assert_eq!(q["X-Amz-Date"], "20261204T101112Z");
        assert_eq!(q["X-Amz-Signature"].len(), 64);
        assert!(!q.contains_key("X-Amz-Security-Token"));
        assert!(!url.contains("wJalrXUtnFEMI"), "the secret never travels: {url}");
    }

    #[test]
    fn the_signature_covers_the_cluster_name_and_the_session_token() {
        let a = token_url(&bearer_token(&keys(None), "us-west-2", "eks-one", at())).unwrap();
        let b = token_url(&bearer_token(&keys(None), "us-west-2", "eks-two", at())).unwrap();
        let sig = |u: &str| u.rsplit_once("X-Amz-Signature=").unwrap().1.to_owned();
        assert_ne!(sig(&a), sig(&b), "another cluster, another signature");
        let s =
            token_url(&bearer_token(&keys(Some("FwoGZXIvYXdzEJr//session")), "us-west-2", "eks-one", at()))
                .unwrap();
        assert!(s.contains("X-Amz-Security-Token=FwoGZXIvYXdzEJr%2F%2Fsession"), "{s}");
        assert_ne!(sig(&s), sig(&a));
        assert_eq!(sts_host("cn-north-1"), "sts.cn-north-1.amazonaws.com.cn");
        assert!(token_url(&SecretString::from("k8s-aws-v2.abc")).is_none());
    }

    #[test]
    fn the_url_matches_botocore_s_presigner_byte_for_byte() {
        // botocore's RequestSigner.generate_presigned_url (what `aws eks get-token` calls) for the same
        // keys, region, header and time.
        let now: jiff::Timestamp = "2026-12-04T15:37:02Z".parse().unwrap();
        let url = token_url(&bearer_token(&keys(None), "us-west-2", "eks-one", now)).unwrap();
        assert_eq!(
            url,
            "https://sts.us-west-2.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15\
             &X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20261204%2Fus-west-2%2Fsts%2Faws4_request\
             &X-Amz-Date=20261204T153702Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host%3Bx-k8s-aws-id\
             &X-Amz-Signature=31cddb73344ec9346b95579c53a15ca8030dd2217bcaba98b12ef42784154696"
        );
    }

    #[test]
    fn debug_shows_no_secret() {
        let text = format!("{:?}", keys(Some("SESSION")));
        assert!(
            text.contains("AKIDEXAMPLE") && !text.contains("EXAMPLEKEY") && !text.contains("SESSION"),
            "{text}"
        );
    }
}
