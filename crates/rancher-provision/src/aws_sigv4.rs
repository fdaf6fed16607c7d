//! AWS Signature Version 4, shared by every AWS service the crate talks to (S3, STS): the canonical
//! request, the string to sign, the derived signing key, and either the `Authorization` header or a
//! presigned URL's query. Pure functions of their inputs, so AWS's published examples test them byte
//! for byte.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// The algorithm name in the string to sign and the `Authorization` header.
const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// SHA-256 of the empty body, the payload hash of every request without one.
pub(crate) const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// What a signature covers.
pub(crate) struct Request<'a> {
    /// `GET`, `PUT`, …
    pub method: &'a str,
    /// The path as sent: already URI-encoded with [`uri_encode_path`] (S3 encodes once).
    pub path: &'a str,
    /// Query parameters, not encoded (an empty value for a bare `?lifecycle`).
    pub query: &'a [(&'a str, &'a str)],
    /// Every header to sign (`host` and `x-amz-date` among them), any case, not trimmed.
    pub headers: &'a [(&'a str, &'a str)],
    /// Hex SHA-256 of the body (also sent as `x-amz-content-sha256`).
    pub payload_sha256: &'a str,
}

/// Who signs, where and when.
pub(crate) struct Scope<'a> {
    /// The access key id.
    pub access_key: &'a str,
    /// The secret access key.
    pub secret_key: &'a SecretString,
    /// `us-east-1`, …
    pub region: &'a str,
    /// `s3`, `sts` (AWS's generic test suite uses `service`).
    pub service: &'a str,
    /// `YYYYMMDDTHHMMSSZ`, the request's `x-amz-date`.
    pub amz_date: &'a str,
}

impl Scope<'_> {
    fn date(&self) -> &str {
        self.amz_date.get(..8).unwrap_or(self.amz_date)
    }

    fn credential_scope(&self) -> String {
        format!("{}/{}/{}/aws4_request", self.date(), self.region, self.service)
    }
}

/// RFC 3986 encoding as SigV4 wants it: every byte but the unreserved `A-Z a-z 0-9 - . _ ~` as `%XX`
/// (upper-case hex); `/` too unless `keep_slash`.
pub(crate) fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An object path (`/bucket/key`) encoded for both the request line and the canonical request.
pub(crate) fn uri_encode_path(raw: &str) -> String {
    uri_encode(raw, true)
}

/// The query string as sent and as signed: encoded pairs sorted by name, then value.
pub(crate) fn canonical_query(query: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(String, String)> =
        query.iter().map(|(k, v)| (uri_encode(k, false), uri_encode(v, false))).collect();
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

/// Header values as signed: trimmed, inner runs of spaces collapsed to one.
fn header_value(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The canonical headers block (each `name:value\n`) and the signed-headers list.
fn canonical_headers(headers: &[(&str, &str)]) -> (String, String) {
    let mut hs: Vec<(String, String)> =
        headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), header_value(v))).collect();
    hs.sort();
    let block = hs.iter().map(|(k, v)| format!("{k}:{v}\n")).collect::<String>();
    let names = hs.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(";");
    (block, names)
}

/// The canonical request: what both sides hash.
pub(crate) fn canonical_request(req: &Request<'_>) -> String {
    let (headers, signed) = canonical_headers(req.headers);
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        req.path,
        canonical_query(req.query),
        headers,
        signed,
        req.payload_sha256
    )
}

/// The string to sign for `canonical` under `scope`.
pub(crate) fn string_to_sign(scope: &Scope<'_>, canonical: &str) -> String {
    format!(
        "{ALGORITHM}\n{}\n{}\n{}",
        scope.amz_date,
        scope.credential_scope(),
        hex::encode(Sha256::digest(canonical.as_bytes()))
    )
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The signing key: the secret folded through the date, region, service and `aws4_request`.
fn signing_key(scope: &Scope<'_>) -> [u8; 32] {
    let k_secret = format!("AWS4{}", scope.secret_key.expose_secret());
    let k_date = hmac(k_secret.as_bytes(), scope.date().as_bytes());
    let k_region = hmac(&k_date, scope.region.as_bytes());
    let k_service = hmac(&k_region, scope.service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// The hex signature of `req` under `scope`.
pub(crate) fn signature(req: &Request<'_>, scope: &Scope<'_>) -> String {
    let sts = string_to_sign(scope, &canonical_request(req));
    hex::encode(hmac(&signing_key(scope), sts.as_bytes()))
}

/// The `Authorization` header value for `req`.
pub(crate) fn authorization(req: &Request<'_>, scope: &Scope<'_>) -> String {
    let (_, signed) = canonical_headers(req.headers);
    format!(
        "{ALGORITHM} Credential={}/{},SignedHeaders={signed},Signature={}",
        scope.access_key,
        scope.credential_scope(),
        signature(req, scope)
    )
}

/// The query of a presigned request (query-string authentication): `req.query` plus the `X-Amz-*`
/// parameters, signed over `req.headers` (`host` among them), valid `expires_secs` from
/// `scope.amz_date`. `session_token` is added as `X-Amz-Security-Token` and signed. Returned encoded
/// and sorted, the signature last, ready to follow `?`.
pub(crate) fn presigned_query(
    req: &Request<'_>,
    scope: &Scope<'_>,
    session_token: Option<&SecretString>,
    expires_secs: u64,
) -> String {
    let (_, signed) = canonical_headers(req.headers);
    let credential = format!("{}/{}", scope.access_key, scope.credential_scope());
    let expires = expires_secs.to_string();
    let mut all: Vec<(&str, &str)> = req.query.to_vec();
    all.extend([
        ("X-Amz-Algorithm", ALGORITHM),
        ("X-Amz-Credential", credential.as_str()),
        ("X-Amz-Date", scope.amz_date),
        ("X-Amz-Expires", expires.as_str()),
        ("X-Amz-SignedHeaders", signed.as_str()),
    ]);
    if let Some(t) = session_token {
        all.push(("X-Amz-Security-Token", t.expose_secret()));
    }
    let signature = signature(&Request { query: &all, ..*req }, scope);
    format!("{}&X-Amz-Signature={signature}", canonical_query(&all))
}

#[cfg(test)]
mod tests {
    //! AWS's published examples: the S3 API reference's "Signature Calculations for the
    //! Authorization Header" (GET Object, PUT Object, GET Bucket lifecycle, list objects) and the
    //! generic SigV4 test suite's `get-vanilla` family.
    use super::*;

    const S3_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
    const S3_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const HOST: &str = "examplebucket.s3.amazonaws.com";
    const DATE: &str = "20130524T000000Z";

    fn s3_scope(secret: &SecretString) -> Scope<'_> {
        Scope { access_key: S3_KEY, secret_key: secret, region: "us-east-1", service: "s3", amz_date: DATE }
    }

    #[test]
    fn s3_get_object_example() {
        let secret = SecretString::from(S3_SECRET);
        let req = Request {
            method: "GET",
            path: &uri_encode_path("/test.txt"),
            query: &[],
            headers: &[
                ("Host", HOST),
                ("Range", "bytes=0-9"),
                ("x-amz-content-sha256", EMPTY_SHA256),
                ("x-amz-date", DATE),
            ],
            payload_sha256: EMPTY_SHA256,
        };
        let canonical = canonical_request(&req);
        assert_eq!(
            canonical,
            format!(
                "GET\n/test.txt\n\nhost:{HOST}\nrange:bytes=0-9\nx-amz-content-sha256:{EMPTY_SHA256}\n\
                 x-amz-date:{DATE}\n\nhost;range;x-amz-content-sha256;x-amz-date\n{EMPTY_SHA256}"
            )
        );
        let scope = s3_scope(&secret);
        assert_eq!(
            string_to_sign(&scope, &canonical),
            "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n\
             7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
        );
        assert_eq!(
            authorization(&req, &scope),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,\
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn s3_put_object_example_encodes_the_key_once() {
        let secret = SecretString::from(S3_SECRET);
        let body_sha = hex::encode(Sha256::digest(b"Welcome to Amazon S3."));
        assert_eq!(body_sha, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
        let path = uri_encode_path("/test$file.text");
        assert_eq!(path, "/test%24file.text");
        let req = Request {
            method: "PUT",
            path: &path,
            query: &[],
            headers: &[
                ("Host", HOST),
                ("Date", "Fri, 24 May 2013 00:00:00 GMT"),
                ("x-amz-date", DATE),
                ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
                ("x-amz-content-sha256", &body_sha),
            ],
            payload_sha256: &body_sha,
        };
        assert_eq!(
            signature(&req, &s3_scope(&secret)),
            "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
        );
    }

    #[test]
    fn s3_get_bucket_lifecycle_example_signs_a_bare_subresource() {
        let secret = SecretString::from(S3_SECRET);
        let req = Request {
            method: "GET",
            path: "/",
            query: &[("lifecycle", "")],
            headers: &[("Host", HOST), ("x-amz-date", DATE), ("x-amz-content-sha256", EMPTY_SHA256)],
            payload_sha256: EMPTY_SHA256,
        };
        assert!(canonical_request(&req).starts_with("GET\n/\nlifecycle=\n"));
        assert_eq!(
            signature(&req, &s3_scope(&secret)),
            "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"
        );
    }

    #[test]
    fn s3_list_objects_example_sorts_the_query() {
        let secret = SecretString::from(S3_SECRET);
        let req = Request {
            method: "GET",
            path: "/",
            query: &[("prefix", "J"), ("max-keys", "2")],
            headers: &[("Host", HOST), ("x-amz-date", DATE), ("x-amz-content-sha256", EMPTY_SHA256)],
            payload_sha256: EMPTY_SHA256,
        };
        assert!(canonical_request(&req).starts_with("GET\n/\nmax-keys=2&prefix=J\n"));
        assert_eq!(
            signature(&req, &s3_scope(&secret)),
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
        );
    }

    fn suite_scope(secret: &SecretString) -> Scope<'_> {
        Scope {
            access_key: "AKIDEXAMPLE",
            secret_key: secret,
            region: "us-east-1",
            service: "service",
            amz_date: "20150830T123600Z",
        }
    }

    #[test]
    fn suite_get_vanilla() {
        let secret = SecretString::from("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
        let req = Request {
            method: "GET",
            path: "/",
            query: &[],
            headers: &[("Host", "example.amazonaws.com"), ("X-Amz-Date", "20150830T123600Z")],
            payload_sha256: EMPTY_SHA256,
        };
        assert_eq!(
            canonical_request(&req),
            format!(
                "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n\
                 {EMPTY_SHA256}"
            )
        );
        assert_eq!(
            authorization(&req, &suite_scope(&secret)),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
                .replace(", ", ",")
        );
    }

    #[test]
    fn suite_get_vanilla_query_order_key_case() {
        let secret = SecretString::from("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
        let req = Request {
            method: "GET",
            path: "/",
            query: &[("Param2", "value2"), ("Param1", "value1")],
            headers: &[("Host", "example.amazonaws.com"), ("X-Amz-Date", "20150830T123600Z")],
            payload_sha256: EMPTY_SHA256,
        };
        assert_eq!(
            signature(&req, &suite_scope(&secret)),
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
        );
    }

    #[test]
    fn s3_presigned_url_example() {
        // The S3 API reference's "Authenticating Requests: Using Query Parameters" example.
        let secret = SecretString::from(S3_SECRET);
        let req = Request {
            method: "GET",
            path: "/test.txt",
            query: &[],
            headers: &[("Host", HOST)],
            payload_sha256: "UNSIGNED-PAYLOAD",
        };
        let query = presigned_query(&req, &s3_scope(&secret), None, 86_400);
        assert_eq!(
            query,
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
             &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        );
    }

    #[test]
    fn header_values_are_trimmed_and_collapsed() {
        let (block, names) = canonical_headers(&[("My-Header1", "  a   b   c  "), ("Host", "h")]);
        assert_eq!(block, "host:h\nmy-header1:a b c\n");
        assert_eq!(names, "host;my-header1");
    }

    #[test]
    fn encoding_keeps_only_unreserved_bytes() {
        assert_eq!(uri_encode("a b/c+d=é~", false), "a%20b%2Fc%2Bd%3D%C3%A9~");
        assert_eq!(uri_encode_path("/bucket/snap shots/x+y"), "/bucket/snap%20shots/x%2By");
        assert_eq!(
            canonical_query(&[("prefix", "etcd/a b"), ("list-type", "2")]),
            "list-type=2&prefix=etcd%2Fa%20b"
        );
    }
}
