//! The HTTP client `rancherctl` talks to the server with: trust settings, the token, and turning
//! responses into values or [`CliError`]s.

use std::time::Duration;

use http::Method;
use rancher_core::Status;
use serde_json::Value;

use super::config::Context;
use super::error::CliError;

/// How often [`ApiClient::put_changed`] sends a change again after a Conflict caused by another write.
const CONFLICT_RETRIES: u32 = 5;

/// A client for one server.
#[derive(Clone, Debug)]
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl ApiClient {
    /// A client for `server`, trusting `cacert` (PEM) only, or nothing at all with `insecure`, or the
    /// platform's roots when neither is given.
    ///
    /// # Errors
    /// [`CliError::Input`] for a URL that is not `https://` or `http://`, or a CA that is not PEM.
    pub fn new(
        server: &str,
        cacert: Option<&str>,
        insecure: bool,
        token: Option<String>,
    ) -> Result<Self, CliError> {
        let base = server.trim_end_matches('/').to_owned();
        let parsed =
            url::Url::parse(&base).map_err(|e| CliError::Input(format!("{server:?} is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "https" | "http") {
            return Err(CliError::Input(format!("{server:?}: the server URL must start with https://")));
        }
        let mut b = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .user_agent(concat!("rancherctl/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = cacert {
            let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|e| CliError::Input(format!("the CA certificate is not PEM: {e}")))?;
            if certs.is_empty() {
                return Err(CliError::Input("the CA file holds no certificate".into()));
            }
            b = b.tls_certs_only(certs);
        }
        if insecure {
            b = b.tls_danger_accept_invalid_certs(true);
        }
        let http = b.build().map_err(|e| CliError::Http(format!("building the HTTP client: {e}")))?;
        Ok(ApiClient { http, base, token })
    }

    /// A client for a saved context.
    ///
    /// # Errors
    /// [`CliError::NotLoggedIn`] for a context without a token (logged out); otherwise as
    /// [`ApiClient::new`].
    pub fn from_context(ctx: &Context) -> Result<Self, CliError> {
        if ctx.token.is_empty() {
            return Err(CliError::NotLoggedIn);
        }
        Self::new(&ctx.server, ctx.cacert.as_deref(), ctx.insecure, Some(ctx.token.clone()))
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request and decodes the JSON answer. A 401 becomes [`CliError::SessionInvalid`] (or
    /// [`CliError::LoginFailed`] for the login call), other failures [`CliError::Api`].
    ///
    /// # Errors
    /// [`CliError`] for transport failures and error answers.
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, CliError> {
        Ok(self.call_with_warnings(method, path, body).await?.0)
    }

    /// As [`call`](Self::call), also returning the texts of the answer's `Warning: 299 - "…"` headers
    /// (Kubernetes' API warnings), to show the user.
    ///
    /// # Errors
    /// As [`call`](Self::call).
    pub async fn call_with_warnings(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(Value, Vec<String>), CliError> {
        self.send(method, path, body, None).await
    }

    /// Writes back `object` (read from `path`) changed by `change`, with the version read. The server
    /// writes a cluster's status all along and each write moves its version: a Conflict is sent
    /// again, up to [`CONFLICT_RETRIES`] times, on the object as it is now — unless `untouched` says
    /// the part being changed moved meanwhile, which is the caller's to look at (the Conflict is
    /// returned). The answer and the server's warnings.
    ///
    /// # Errors
    /// As [`call`](Self::call); the Conflict when `untouched` is false or the retries are spent.
    pub(super) async fn put_changed(
        &self,
        path: &str,
        mut object: Value,
        change: impl Fn(&mut Value),
        untouched: impl Fn(&Value) -> bool,
    ) -> Result<(Value, Vec<String>), CliError> {
        let mut attempts = 0;
        loop {
            change(&mut object);
            match self.call_with_warnings(Method::PUT, path, Some(&object)).await {
                Err(CliError::Api(status)) if status.reason == "Conflict" && attempts < CONFLICT_RETRIES => {
                    attempts += 1;
                    object = self.call(Method::GET, path, None).await?;
                    if !untouched(&object) {
                        return Err(CliError::Api(status));
                    }
                }
                answer => return answer,
            }
        }
    }

    /// A GET asking for the media types `accept` (a Kubernetes table, say), decoded as
    /// [`call`](Self::call) decodes.
    ///
    /// # Errors
    /// As [`call`](Self::call).
    pub async fn get_accepting(&self, path: &str, accept: &str) -> Result<Value, CliError> {
        Ok(self.send(Method::GET, path, None, Some(accept)).await?.0)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        accept: Option<&str>,
    ) -> Result<(Value, Vec<String>), CliError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url);
        if let Some(accept) = accept {
            req = req.header(http::header::ACCEPT, accept);
        }
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.map_err(|e| CliError::from_transport(&self.base, &e))?;
        let code = resp.status();
        let warnings: Vec<String> = resp
            .headers()
            .get_all(http::header::WARNING)
            .iter()
            .filter_map(|v| v.to_str().ok().and_then(warning_text))
            .collect();
        let bytes = resp.bytes().await.map_err(|e| CliError::from_transport(&self.base, &e))?;
        if code.is_success() {
            let v = serde_json::from_slice(&bytes)
                .map_err(|e| CliError::Http(format!("the server sent something other than JSON: {e}")))?;
            return Ok((v, warnings));
        }
        // The server's answer to plain HTTP on its TLS port (as nginx and Go's servers answer it).
        if let Some(https) = self.base.strip_prefix("http://")
            && code == http::StatusCode::BAD_REQUEST
            && bytes.starts_with(b"Client sent an HTTP request to an HTTPS server")
        {
            return Err(CliError::Input(format!(
                "{} answered in plain HTTP that the server speaks HTTPS: use https://{https}",
                self.base
            )));
        }
        let status: Status = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            Status::failure(code.as_u16(), "Unknown", format!("{code}: {}", String::from_utf8_lossy(&bytes)))
        });
        if code == http::StatusCode::UNAUTHORIZED {
            if path.starts_with("/v3-public/") {
                return Err(CliError::LoginFailed);
            }
            return Err(CliError::SessionInvalid(status.message));
        }
        Err(CliError::Api(Box::new(status)))
    }
}

/// The text of a `299 - "<text>"` warning, unescaped; `None` for another code or shape.
fn warning_text(header: &str) -> Option<String> {
    let quoted = header.strip_prefix("299 ")?.split_once(' ')?.1.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return Some(out),
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::warning_text;

    #[test]
    fn warnings_are_unescaped() {
        assert_eq!(
            warning_text(r#"299 - "plugin \"canal\" is not run""#).as_deref(),
            Some(r#"plugin "canal" is not run"#)
        );
        assert_eq!(
            warning_text(r#"299 rancher "a\\b" "Thu, 01 Jan 2026 00:00:00 GMT""#).as_deref(),
            Some(r"a\b")
        );
        assert_eq!(warning_text(r#"199 - "misc""#), None);
        assert_eq!(warning_text(r#"299 - "unterminated"#), None);
    }
}
