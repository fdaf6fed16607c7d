//! Where snapshots go in S3-compatible storage — Rancher's `s3BackupConfig` — and the checks that
//! make a bad value fail when the cluster is saved rather than at the first upload.

use std::net::IpAddr;

use secrecy::SecretString;
use url::Url;

/// The region when none is given (AWS's, and what MinIO and moto answer to).
pub const DEFAULT_REGION: &str = "us-east-1";

/// An S3 bucket (and folder in it) and the credentials to write there.
///
/// Addressing is path-style (`https://endpoint/bucket/key`), which AWS, MinIO and moto all serve.
#[derive(Clone, Default)]
pub struct S3Config {
    /// `host[:port]` (HTTPS) or a URL with the scheme spelled out; `http://` only when written so.
    /// Empty means AWS (`s3.<region>.amazonaws.com`).
    pub endpoint: String,
    /// The bucket.
    pub bucket_name: String,
    /// The region the signature is scoped to; empty means [`DEFAULT_REGION`].
    pub region: String,
    /// The key prefix ("folder") objects go under; empty means the bucket's top level.
    pub folder: String,
    /// The access key id.
    pub access_key: String,
    /// The secret access key: only ever fed to the signer, never shown.
    pub secret_key: SecretString,
    /// PEM CA certificate(s) trusted for the endpoint, besides the system's.
    pub custom_ca: Option<String>,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("bucket_name", &self.bucket_name)
            .field("region", &self.region)
            .field("folder", &self.folder)
            .field("access_key", &self.access_key)
            .field("secret_key", &"[redacted]")
            .field("custom_ca", &self.custom_ca.as_ref().map(|_| "[PEM]"))
            .finish()
    }
}

/// A value of an [`S3Config`] that cannot work; `field` is its `cluster.yml` key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct S3ConfigError {
    /// `endpoint`, `bucket_name`, `region`, `folder`, `access_key`, `secret_key` or `custom_ca`.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

fn bad(field: &'static str, reason: impl Into<String>) -> S3ConfigError {
    S3ConfigError { field, reason: reason.into() }
}

impl S3Config {
    /// The region, defaulted.
    pub fn region(&self) -> &str {
        if self.region.is_empty() { DEFAULT_REGION } else { &self.region }
    }

    /// Every check [`S3Client::new`](super::S3Client::new) makes, without building a client.
    ///
    /// # Errors
    /// The first field that cannot work.
    pub fn check(&self) -> Result<(), S3ConfigError> {
        check_region(self.region())?;
        parse_endpoint(&self.endpoint, self.region())?;
        check_bucket_name(&self.bucket_name)?;
        check_folder(&self.folder)?;
        check_access_key(&self.access_key)?;
        if secrecy::ExposeSecret::expose_secret(&self.secret_key).is_empty() {
            return Err(bad("secret_key", "is empty"));
        }
        if let Some(pem) = &self.custom_ca {
            custom_ca_certs(pem)?;
        }
        Ok(())
    }
}

/// The CA certificates in `pem`.
pub(crate) fn custom_ca_certs(pem: &str) -> Result<Vec<reqwest::Certificate>, S3ConfigError> {
    let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
        .map_err(|e| bad("custom_ca", format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(bad("custom_ca", "holds no PEM CERTIFICATE block"));
    }
    Ok(certs)
}

/// The endpoint as a base URL (scheme, host, port; no path).
///
/// `host[:port]` means HTTPS; `http://` is accepted only when spelled out. Empty means AWS's
/// regional endpoint.
///
/// # Errors
/// Another scheme, a path, query, fragment or credentials in the URL, or no host.
pub fn parse_endpoint(endpoint: &str, region: &str) -> Result<Url, S3ConfigError> {
    let endpoint = endpoint.trim();
    let text = if endpoint.is_empty() {
        format!("https://s3.{region}.amazonaws.com")
    } else if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("https://{endpoint}")
    };
    let url = Url::parse(&text)
        .map_err(|e| bad("endpoint", format!("{endpoint:?} is not host[:port] or a URL: {e}")))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(bad("endpoint", format!("scheme {:?}: only https (default) and http", url.scheme())));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("endpoint", format!("{endpoint:?} names no host")));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("endpoint", "must not hold credentials (use access_key and secret_key)"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(bad(
            "endpoint",
            format!("{endpoint:?}: no path, query or fragment (path-style addressing adds the bucket)"),
        ));
    }
    Ok(url)
}

/// S3's bucket naming rules (general-purpose buckets).
///
/// # Errors
/// Which rule `name` breaks.
pub fn check_bucket_name(name: &str) -> Result<(), S3ConfigError> {
    let field = "bucket_name";
    if name.is_empty() {
        return Err(bad(field, "is empty"));
    }
    if !(3..=63).contains(&name.len()) {
        return Err(bad(field, format!("{name:?}: 3 to 63 characters")));
    }
    if let Some(c) =
        name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '.' || *c == '-'))
    {
        return Err(bad(field, format!("{name:?}: {c:?} is not a lower-case letter, digit, '.' or '-'")));
    }
    let ends_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !ends_ok(name.chars().next()) || !ends_ok(name.chars().last()) {
        return Err(bad(field, format!("{name:?}: must begin and end with a letter or digit")));
    }
    if name.contains("..") || name.contains(".-") || name.contains("-.") {
        return Err(bad(field, format!("{name:?}: no '..', '.-' or '-.'")));
    }
    if name.parse::<IpAddr>().is_ok() {
        return Err(bad(field, format!("{name:?}: must not look like an IP address")));
    }
    for prefix in ["xn--", "sthree-", "amzn-s3-demo-"] {
        if name.starts_with(prefix) {
            return Err(bad(field, format!("{name:?}: must not begin with {prefix:?}")));
        }
    }
    for suffix in ["-s3alias", "--ol-s3", "--x-s3", "--table-s3"] {
        if name.ends_with(suffix) {
            return Err(bad(field, format!("{name:?}: must not end with {suffix:?}")));
        }
    }
    Ok(())
}

/// A key or key prefix: no empty, `.` or `..` segments (URL normalisation would change what is
/// signed), no control characters, at most 1024 bytes.
pub(crate) fn check_key(field: &'static str, key: &str) -> Result<(), S3ConfigError> {
    if key.len() > 1024 {
        return Err(bad(field, "longer than 1024 bytes"));
    }
    if key.chars().any(char::is_control) {
        return Err(bad(field, format!("{key:?} holds a control character")));
    }
    if let Some(seg) = key.split('/').find(|s| s.is_empty() || *s == "." || *s == "..") {
        return Err(bad(field, format!("{key:?} has a {seg:?} path segment")));
    }
    Ok(())
}

/// The folder: a key prefix, slashes at either end ignored.
///
/// # Errors
/// Empty, `.` or `..` segments inside it, or control characters.
pub fn check_folder(folder: &str) -> Result<(), S3ConfigError> {
    let folder = folder.trim_matches('/');
    if folder.is_empty() { Ok(()) } else { check_key("folder", folder) }
}

/// A region name: lower-case letters, digits and `-`.
///
/// # Errors
/// Any other character, or empty.
pub fn check_region(region: &str) -> Result<(), S3ConfigError> {
    if region.is_empty() || region.len() > 64 {
        return Err(bad("region", "1 to 64 characters"));
    }
    if let Some(c) = region.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-')) {
        return Err(bad("region", format!("{region:?}: {c:?} is not a letter, digit or '-'")));
    }
    Ok(())
}

fn check_access_key(key: &str) -> Result<(), S3ConfigError> {
    if key.is_empty() {
        return Err(bad("access_key", "is empty"));
    }
    // It goes into `Credential=<key>/<scope>,` of the Authorization header.
    if key.chars().any(|c| !c.is_ascii_graphic() || c == '/' || c == ',') {
        return Err(bad("access_key", "only printable ASCII without '/', ',' or spaces"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_default_to_https_and_allow_http_only_when_spelled_out() {
        let u = |e: &str| parse_endpoint(e, "eu-west-1").map(|u| u.to_string());
        assert_eq!(u("").unwrap(), "https://s3.eu-west-1.amazonaws.com/");
        assert_eq!(u("minio.example:9000").unwrap(), "https://minio.example:9000/");
        assert_eq!(u("https://s3.example/").unwrap(), "https://s3.example/");
        assert_eq!(u("http://127.0.0.1:5000").unwrap(), "http://127.0.0.1:5000/");
        assert_eq!(u("[::1]:9000").unwrap(), "https://[::1]:9000/");
        for e in ["ftp://x", "https://x/bucket", "https://u:p@x", "https://x?a=b", "http://", "a b"] {
            let err = u(e).unwrap_err();
            assert_eq!(err.field, "endpoint", "{e}: {err}");
        }
    }

    #[test]
    fn bucket_names_follow_s3_rules() {
        for ok in ["abc", "my-bucket.backups", "a1b2c3", &"a".repeat(63)] {
            check_bucket_name(ok).unwrap();
        }
        for badname in [
            "",
            "ab",
            &"a".repeat(64),
            "My-Bucket",
            "under_score",
            "-abc",
            "abc-",
            "a..b",
            "a.-b",
            "192.168.1.1",
            "xn--abc",
            "abc-s3alias",
            "sp ace",
        ] {
            let e = check_bucket_name(badname).unwrap_err();
            assert_eq!(e.field, "bucket_name", "{badname}");
        }
    }

    #[test]
    fn folders_and_keys_refuse_segments_that_urls_normalise() {
        check_folder("").unwrap();
        check_folder("/etcd/prod/").unwrap();
        for f in ["a//b", "a/../b", "./a", "a\nb"] {
            assert_eq!(check_folder(f).unwrap_err().field, "folder", "{f}");
        }
    }

    #[test]
    fn the_whole_config_is_checked_and_debug_hides_the_secret() {
        let mut cfg = S3Config {
            endpoint: "http://127.0.0.1:1".into(),
            bucket_name: "snapshots".into(),
            access_key: "AKID".into(),
            secret_key: SecretString::from("very-secret-value"),
            ..Default::default()
        };
        cfg.check().unwrap();
        assert_eq!(cfg.region(), DEFAULT_REGION);
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("very-secret-value") && shown.contains("[redacted]"), "{shown}");
        cfg.custom_ca = Some("not a certificate".into());
        assert_eq!(cfg.check().unwrap_err().field, "custom_ca");
        cfg.custom_ca = None;
        cfg.secret_key = SecretString::from("");
        assert_eq!(cfg.check().unwrap_err().field, "secret_key");
        cfg.secret_key = SecretString::from("s");
        cfg.access_key = "AK/ID".into();
        assert_eq!(cfg.check().unwrap_err().field, "access_key");
        cfg.access_key = "AKID".into();
        cfg.region = "us east".into();
        assert_eq!(cfg.check().unwrap_err().field, "region");
    }
}
