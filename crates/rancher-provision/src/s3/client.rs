//! The S3 operations snapshots need, over reqwest, each request signed with SigV4 and addressed
//! path-style. Bodies are streamed both ways; error and list bodies are read up to a bound.

use std::path::Path;
use std::time::Duration;

use reqwest::{Method, Response, StatusCode};
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::config::{S3Config, check_key, custom_ca_certs, parse_endpoint};
use super::error::{Result, S3Error, S3Op};
use super::xml;
use crate::aws_sigv4::{self as sign, EMPTY_SHA256};

/// The most of an error body read (S3's are a few hundred bytes).
const MAX_ERROR_BODY: usize = 64 * 1024;
/// The most of one list page read (1000 keys of 1 KiB each, with room).
const MAX_LIST_BODY: usize = 4 * 1024 * 1024;
/// The most list pages followed (a million objects): a server that never stops paging is an error.
const MAX_LIST_PAGES: usize = 1000;

/// An object under the folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The full key in the bucket.
    pub key: String,
    /// The key under the folder (what `put_object` was given).
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was written, as S3 says it (ISO 8601).
    pub last_modified: String,
    /// Its ETag without quotes.
    pub etag: String,
}

/// What `put_object` stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutObjectOutput {
    /// The full key in the bucket.
    pub key: String,
    /// Bytes sent.
    pub size: u64,
    /// Hex SHA-256 of the body (S3 checked it against `x-amz-content-sha256`).
    pub sha256: String,
    /// The ETag S3 answered, without quotes.
    pub etag: String,
}

/// A client for one bucket and folder.
#[derive(Clone)]
pub struct S3Client {
    http: reqwest::Client,
    /// `scheme://host[:port]`, no trailing slash.
    base: String,
    /// The `Host` header as sent and signed.
    host: String,
    bucket: String,
    region: String,
    /// The folder without slashes at either end.
    folder: String,
    access_key: String,
    secret_key: SecretString,
}

impl std::fmt::Debug for S3Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Client")
            .field("base", &self.base)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("folder", &self.folder)
            .field("access_key", &self.access_key)
            .finish_non_exhaustive()
    }
}

impl S3Client {
    /// A client for `config`'s bucket and folder.
    ///
    /// # Errors
    /// [`S3Error::Config`] naming the field that cannot work (see [`S3Config::check`]), or the
    /// HTTP client that cannot be built with the custom CA.
    pub fn new(config: &S3Config) -> Result<S3Client> {
        config.check()?;
        let url = parse_endpoint(&config.endpoint, config.region())?;
        let host_name = url.host_str().unwrap_or_default();
        let host = match url.port() {
            Some(p) => format!("{host_name}:{p}"),
            None => host_name.to_owned(),
        };
        let mut http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(Duration::from_secs(120))
            // A redirect would carry a signature made for another host; S3 says where instead.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = &config.custom_ca {
            http = http.tls_certs_merge(custom_ca_certs(pem)?);
        }
        let http = http.build().map_err(|e| {
            S3Error::Config(super::S3ConfigError { field: "custom_ca", reason: format!("HTTP client: {e}") })
        })?;
        Ok(S3Client {
            http,
            base: format!("{}://{host}", url.scheme()),
            host,
            bucket: config.bucket_name.clone(),
            region: config.region().to_owned(),
            folder: config.folder.trim_matches('/').to_owned(),
            access_key: config.access_key.clone(),
            secret_key: config.secret_key.clone(),
        })
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The full key of `name` under the folder.
    pub fn object_key(&self, name: &str) -> String {
        if self.folder.is_empty() { name.to_owned() } else { format!("{}/{name}", self.folder) }
    }

    fn target(&self, key: Option<&str>) -> String {
        match key {
            Some(k) => format!("{}/{k}", self.bucket),
            None => self.bucket.clone(),
        }
    }

    /// The full key of `name`, checked.
    fn key_for(&self, op: S3Op, name: &str) -> Result<String> {
        let key = self.object_key(name);
        check_key("object name", &key).map_err(|e| S3Error::InvalidResponse {
            op,
            target: self.target(Some(&key)),
            reason: format!("not sent: {e}"),
        })?;
        Ok(key)
    }

    /// Signs and sends one request.
    async fn send(
        &self,
        op: S3Op,
        method: Method,
        key: Option<&str>,
        query: &[(&str, &str)],
        payload_sha256: &str,
        body: Option<(reqwest::Body, u64)>,
    ) -> Result<Response> {
        let raw_path = match key {
            Some(k) => format!("/{}/{k}", self.bucket),
            None => format!("/{}", self.bucket),
        };
        let path = sign::uri_encode_path(&raw_path);
        let query_string = sign::canonical_query(query);
        let amz_date = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ").to_string();
        let headers = [
            ("host", self.host.as_str()),
            ("x-amz-content-sha256", payload_sha256),
            ("x-amz-date", amz_date.as_str()),
        ];
        let request =
            sign::Request { method: method.as_str(), path: &path, query, headers: &headers, payload_sha256 };
        let scope = sign::Scope {
            access_key: &self.access_key,
            secret_key: &self.secret_key,
            region: &self.region,
            service: "s3",
            amz_date: &amz_date,
        };
        let authorization = sign::authorization(&request, &scope);
        let url = if query_string.is_empty() {
            format!("{}{path}", self.base)
        } else {
            format!("{}{path}?{query_string}", self.base)
        };
        let mut req = self.http.request(method, url).header("authorization", authorization);
        for (name, value) in headers {
            req = req.header(name, value);
        }
        if let Some((body, len)) = body {
            req = req.header("content-length", len).body(body);
        }
        let resp =
            req.send().await.map_err(|source| S3Error::Transport { op, target: self.target(key), source })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(self.refusal(op, key, resp).await)
    }

    /// The error for a non-success answer, with S3's code and message when its body has them.
    async fn refusal(&self, op: S3Op, key: Option<&str>, resp: Response) -> S3Error {
        let status = resp.status();
        let target = self.target(key);
        // S3 names the bucket's region when it is not the one signed for (bodiless for HEAD).
        let region_hint = resp
            .headers()
            .get("x-amz-bucket-region")
            .and_then(|v| v.to_str().ok())
            .filter(|r| *r != self.region)
            .map(|r| format!("the bucket is in region {r:?}, not {:?}", self.region));
        let body = match read_bounded(resp, MAX_ERROR_BODY).await {
            Ok((body, _)) => body,
            Err(source) => return S3Error::Transport { op, target, source },
        };
        let text = String::from_utf8_lossy(&body);
        let parsed = xml::parse(&text).ok().filter(|e| e.name == "Error");
        let (code, message) = match parsed {
            Some(e) => (
                e.child_text("Code").unwrap_or_default().to_owned(),
                e.child_text("Message").unwrap_or_default().to_owned(),
            ),
            None => (String::new(), text.chars().take(200).collect::<String>().trim().to_owned()),
        };
        let message = match region_hint {
            Some(hint) if message.is_empty() => hint,
            Some(hint) => format!("{message} ({hint})"),
            None => message,
        };
        let code = if !code.is_empty() {
            code
        } else if status == StatusCode::MOVED_PERMANENTLY {
            "PermanentRedirect".to_owned()
        } else if status == StatusCode::NOT_FOUND && key.is_none() {
            "NoSuchBucket".to_owned()
        } else if status == StatusCode::NOT_FOUND {
            "NotFound".to_owned()
        } else if status == StatusCode::FORBIDDEN {
            "Forbidden".to_owned()
        } else {
            format!("HTTP {}", status.as_u16())
        };
        S3Error::Service { op, target, status: status.as_u16(), code, message }
    }

    /// Whether the bucket exists and these credentials may use it.
    ///
    /// # Errors
    /// [`S3Error::Service`] with code `NoSuchBucket` (404) or `Forbidden` (403); transport errors.
    pub async fn head_bucket(&self) -> Result<()> {
        self.send(S3Op::HeadBucket, Method::HEAD, None, &[], EMPTY_SHA256, None).await.map(drop)
    }

    /// Creates the bucket (in the configured region) — for tests and first setup; snapshots
    /// never create buckets.
    ///
    /// # Errors
    /// [`S3Error::Service`] (`BucketAlreadyExists`, `BucketAlreadyOwnedByYou`, …); transport errors.
    pub async fn create_bucket(&self) -> Result<()> {
        let op = S3Op::CreateBucket;
        if self.region == super::DEFAULT_REGION {
            return self.send(op, Method::PUT, None, &[], EMPTY_SHA256, None).await.map(drop);
        }
        let body = format!(
            "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
             <LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
            self.region
        );
        let sha = hex::encode(Sha256::digest(body.as_bytes()));
        let len = body.len() as u64;
        self.send(op, Method::PUT, None, &[], &sha, Some((body.into(), len))).await.map(drop)
    }

    /// Uploads the file at `path` as `name` under the folder, streaming it; the body's SHA-256 is
    /// computed first (one read of the file) and signed, so S3 refuses a body that differs.
    ///
    /// # Errors
    /// [`S3Error::Local`] when the file cannot be read; [`S3Error::Service`] when S3 refuses
    /// (`NoSuchBucket`, `XAmzContentSHA256Mismatch` if the file changed meanwhile, …).
    pub async fn put_object(&self, name: &str, path: &Path) -> Result<PutObjectOutput> {
        let op = S3Op::PutObject;
        let key = self.key_for(op, name)?;
        let local = |what: String| {
            let target = self.target(Some(&key));
            move |source| S3Error::Local { op, target, what, source }
        };
        let shown = path.display().to_string();
        let (size, sha256) = {
            let p = path.to_owned();
            tokio::task::spawn_blocking(move || hash_file(&p))
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))
                .and_then(|r| r)
                .map_err(local(format!("reading {shown}")))?
        };
        let file = tokio::fs::File::open(path).await.map_err(local(format!("opening {shown}")))?;
        let stream = tokio_util::io::ReaderStream::with_capacity(file.take(size), 256 * 1024);
        let body = reqwest::Body::wrap_stream(stream);
        let resp = self.send(op, Method::PUT, Some(&key), &[], &sha256, Some((body, size))).await?;
        let etag = resp.headers().get("etag").and_then(|v| v.to_str().ok()).unwrap_or_default();
        Ok(PutObjectOutput { etag: etag.trim_matches('"').to_owned(), key, size, sha256 })
    }

    /// Downloads `name` under the folder into `out`, streaming; returns the bytes written.
    ///
    /// # Errors
    /// [`S3Error::Service`] (`NoSuchKey`, …); [`S3Error::Local`] when `out` fails;
    /// [`S3Error::InvalidResponse`] when fewer bytes arrive than `Content-Length` announced.
    pub async fn get_object<W: AsyncWrite + Unpin>(&self, name: &str, out: &mut W) -> Result<u64> {
        let op = S3Op::GetObject;
        let key = self.key_for(op, name)?;
        let mut resp = self.send(op, Method::GET, Some(&key), &[], EMPTY_SHA256, None).await?;
        let expected = resp.content_length();
        let mut written = 0u64;
        while let Some(chunk) = resp.chunk().await.map_err(|source| S3Error::Transport {
            op,
            target: self.target(Some(&key)),
            source,
        })? {
            out.write_all(&chunk).await.map_err(|source| S3Error::Local {
                op,
                target: self.target(Some(&key)),
                what: "writing the download".into(),
                source,
            })?;
            written += chunk.len() as u64;
        }
        out.flush().await.map_err(|source| S3Error::Local {
            op,
            target: self.target(Some(&key)),
            what: "flushing the download".into(),
            source,
        })?;
        if let Some(n) = expected.filter(|n| *n != written) {
            return Err(S3Error::InvalidResponse {
                op,
                target: self.target(Some(&key)),
                reason: format!("{written} bytes arrived of the {n} announced"),
            });
        }
        Ok(written)
    }

    /// Every object whose name under the folder begins with `prefix`, following continuation
    /// tokens, in S3's (lexicographic) order.
    ///
    /// # Errors
    /// [`S3Error::Service`] (`NoSuchBucket`, …); [`S3Error::InvalidResponse`] when a page is not a
    /// `ListBucketResult`, exceeds 4 MiB, or the listing never ends.
    pub async fn list_objects_v2(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let op = S3Op::ListObjectsV2;
        let full_prefix = self.object_key(prefix);
        let invalid = |reason: String| S3Error::InvalidResponse { op, target: self.target(None), reason };
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_LIST_PAGES {
            let mut query = vec![("list-type", "2"), ("prefix", full_prefix.as_str())];
            if let Some(t) = &token {
                query.push(("continuation-token", t.as_str()));
            }
            let resp = self.send(op, Method::GET, None, &query, EMPTY_SHA256, None).await?;
            let (body, truncated) = read_bounded(resp, MAX_LIST_BODY)
                .await
                .map_err(|source| S3Error::Transport { op, target: self.target(None), source })?;
            if truncated {
                return Err(invalid(format!("a list page longer than {MAX_LIST_BODY} bytes")));
            }
            let text = std::str::from_utf8(&body).map_err(|e| invalid(format!("not UTF-8: {e}")))?;
            let page = parse_list_page(text, &self.folder).map_err(invalid)?;
            objects.extend(page.objects);
            match page.next {
                Some(next) if Some(&next) == token.as_ref() => {
                    return Err(invalid("the same continuation token twice".into()));
                }
                Some(next) => token = Some(next),
                None => return Ok(objects),
            }
        }
        Err(invalid(format!("more than {MAX_LIST_PAGES} pages")))
    }

    /// Deletes `name` under the folder (S3 answers success for a key that is not there).
    ///
    /// # Errors
    /// [`S3Error::Service`] (`NoSuchBucket`, `AccessDenied`, …); transport errors.
    pub async fn delete_object(&self, name: &str) -> Result<()> {
        let op = S3Op::DeleteObject;
        let key = self.key_for(op, name)?;
        self.send(op, Method::DELETE, Some(&key), &[], EMPTY_SHA256, None).await.map(drop)
    }
}

/// Size and hex SHA-256 of a file, read once.
fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1024 * 1024];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok((size, hex::encode(hasher.finalize())));
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
}

/// Up to `limit` bytes of the body, and whether there was more.
async fn read_bounded(mut resp: Response, limit: usize) -> reqwest::Result<(Vec<u8>, bool)> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = limit - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

/// One page of a listing.
#[derive(Debug)]
pub(crate) struct ListPage {
    pub(crate) objects: Vec<ObjectInfo>,
    /// The continuation token when the listing goes on.
    pub(crate) next: Option<String>,
}

/// A `ListBucketResult` page; `folder` (no slashes at the ends) is cut from keys for `name`.
pub(crate) fn parse_list_page(text: &str, folder: &str) -> Result<ListPage, String> {
    let root = xml::parse(text).map_err(|e| e.to_string())?;
    if root.name != "ListBucketResult" {
        return Err(format!("<{}> where <ListBucketResult> was expected", root.name));
    }
    let mut objects = Vec::new();
    for c in root.children_named("Contents") {
        let key = c.child_text("Key").ok_or("a <Contents> without <Key>")?.to_owned();
        let size = c.child_text("Size").ok_or_else(|| format!("{key}: no <Size>"))?;
        let size = size.trim().parse::<u64>().map_err(|e| format!("{key}: <Size>{size}</Size>: {e}"))?;
        let name = if folder.is_empty() {
            key.clone()
        } else {
            key.strip_prefix(folder).and_then(|k| k.strip_prefix('/')).unwrap_or(&key).to_owned()
        };
        objects.push(ObjectInfo {
            name,
            size,
            last_modified: c.child_text("LastModified").unwrap_or_default().trim().to_owned(),
            etag: c.child_text("ETag").unwrap_or_default().trim().trim_matches('"').to_owned(),
            key,
        });
    }
    let truncated = match root.child_text("IsTruncated").map(str::trim) {
        Some("true") => true,
        Some("false") | None => false,
        Some(other) => return Err(format!("<IsTruncated>{other}</IsTruncated>")),
    };
    let next = match root.child_text("NextContinuationToken").map(str::trim) {
        Some(t) if truncated && !t.is_empty() => Some(t.to_owned()),
        _ if truncated => return Err("<IsTruncated>true</IsTruncated> without a continuation token".into()),
        _ => None,
    };
    Ok(ListPage { objects, next })
}
