//! moto's server (S3-compatible storage, EKS, IAM): started on a reserved loopback port, killed on drop.
//!
//! moto accepts any credentials until authentication is switched on; [`Moto::enforce_signatures`]
//! creates an IAM user allowed `s3:*` (or another service's actions) and switches it on, after which moto checks every request's
//! SigV4 signature against that user's secret (with botocore's signer) and refuses others with
//! `SignatureDoesNotMatch` or `InvalidAccessKeyId`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{Proc, free_port};

/// The `moto_server` to run: `RANCHER_MOTO_SERVER`, else the venv `scripts/install-moto.sh` makes
/// (`~/.cache/rancher-rs/moto`), else one on `PATH`.
///
/// # Panics
/// When there is none: a test that needs moto fails rather than skips.
pub fn moto_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("RANCHER_MOTO_SERVER") {
        return PathBuf::from(p);
    }
    let venv =
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/rancher-rs/moto/bin/moto_server"));
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("moto_server"));
    venv.into_iter().chain(on_path).find(|p| p.is_file()).unwrap_or_else(|| {
        panic!(
            "moto_server is not installed: run scripts/install-moto.sh (a venv in ~/.cache/rancher-rs/moto)"
        )
    })
}

/// An answer of [`Moto::request`].
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body as text.
    pub body: String,
}

/// A running `moto_server`; SIGKILLed when dropped (also when the test panics).
pub struct Moto {
    proc: Proc,
    port: u16,
    tls: bool,
    _dir: tempfile::TempDir,
}

impl Moto {
    /// Starts `moto_server -H 127.0.0.1 -p <reserved port>` and waits until it answers.
    ///
    /// # Panics
    /// When it cannot be started or does not answer within 30 s (its log is in the message).
    pub async fn start() -> Moto {
        Moto::spawn(None).ready().await
    }

    /// Starts it serving HTTPS with this certificate chain and key (PEM), and waits until it
    /// accepts connections. [`request`](Self::request) and
    /// [`enforce_signatures`](Self::enforce_signatures) speak plain HTTP and are not available.
    ///
    /// # Panics
    /// As [`start`](Self::start).
    pub async fn start_tls(cert_pem: &str, key_pem: &str) -> Moto {
        // The listening socket is bound (and wrapped in TLS) before it serves, so a connection that
        // is accepted will be answered.
        Moto::spawn(Some((cert_pem, key_pem))).ready().await
    }

    fn spawn(tls: Option<(&str, &str)>) -> Moto {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = free_port();
        let mut cmd = Command::new(moto_binary());
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        if let Some((cert, key)) = tls {
            let (c, k) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
            std::fs::write(&c, cert).expect("write the certificate");
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            std::io::Write::write_all(&mut opts.open(&k).expect("create the key file"), key.as_bytes())
                .expect("write the key");
            cmd.arg("-s").arg("-c").arg(&c).arg("-k").arg(&k);
        }
        // Authentication stays off until `enforce_signatures`, whatever the caller's environment says.
        cmd.env_remove("INITIAL_NO_AUTH_ACTION_COUNT");
        let proc = Proc::spawn(cmd, &dir.path().join("moto.log"));
        Moto { proc, port, tls: tls.is_some(), _dir: dir }
    }

    /// Waits until it answers (over TLS: accepts connections); panics after 30 s or if it exits.
    async fn ready(mut self) -> Moto {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let ready = if self.tls {
                TcpStream::connect(("127.0.0.1", self.port)).await.is_ok()
            } else {
                self.try_request("GET", "/moto-api/data.json", &[], "").await.is_ok_and(|a| a.status == 200)
            };
            if ready {
                return self;
            }
            if let Some(st) = self.proc.child.try_wait().expect("try_wait") {
                panic!("moto_server exited ({st}) before answering:\n{}", self.log());
            }
            if tokio::time::Instant::now() > deadline {
                panic!("moto_server did not answer on port {} within 30 s:\n{}", self.port, self.log());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `http://127.0.0.1:<port>`, or `https://` when started with TLS.
    pub fn endpoint(&self) -> String {
        format!("{}://127.0.0.1:{}", if self.tls { "https" } else { "http" }, self.port)
    }

    /// The port it serves on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        self.proc.log_text()
    }

    /// An HTTP/1.1 request with `Connection: close`; `headers` are added as given.
    ///
    /// # Panics
    /// When moto does not answer (its log is in the message).
    pub async fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
        assert!(!self.tls, "Moto::request speaks plain HTTP; this moto serves HTTPS");
        match self.try_request(method, path, headers, body).await {
            Ok(a) => a,
            Err(e) => panic!("moto {method} {path}: {e}\n{}", self.log()),
        }
    }

    async fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> std::io::Result<Answer> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).await?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.port,
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        s.write_all(req.as_bytes()).await?;
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut raw))
            .await
            .map_err(|_| std::io::Error::other("no answer within 30 s"))??;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {head:?}")))?;
        Ok(Answer { status, body: body.to_owned() })
    }

    /// An IAM Query API call (moto routes on the credential scope's service; the signature is not
    /// checked while authentication is off).
    async fn iam(&self, form: &str) -> Answer {
        let auth = "AWS4-HMAC-SHA256 Credential=AKIDSETUP/20260101/us-east-1/iam/aws4_request, \
                    SignedHeaders=host, Signature=0";
        let headers = [("Content-Type", "application/x-www-form-urlencoded"), ("Authorization", auth)];
        let a = self.request("POST", "/", &headers, &format!("{form}&Version=2010-05-08")).await;
        assert_eq!(a.status, 200, "IAM {form}: {}", a.body);
        a
    }

    /// Creates an IAM user allowed `s3:*` with an access key, then switches moto's authentication
    /// on: from here every request must carry a valid SigV4 signature by that key. Returns the
    /// access key id and secret.
    ///
    /// # Panics
    /// When moto refuses a step.
    pub async fn enforce_signatures(&self) -> (String, String) {
        self.enforce_signatures_allowing("s3").await
    }

    /// As [`enforce_signatures`](Self::enforce_signatures), the user allowed `<service>:*`
    /// (`eks`, `s3`; lower-case letters and digits).
    ///
    /// # Panics
    /// When moto refuses a step, or `service` is not a service prefix.
    pub async fn enforce_signatures_allowing(&self, service: &str) -> (String, String) {
        assert!(
            !service.is_empty() && service.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
            "{service:?} is not an IAM service prefix"
        );
        self.iam("Action=CreateUser&UserName=snapshots").await;
        let policy = format!(
            "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow\
             %22%2C%22Action%22%3A%22{service}%3A%2A%22%2C%22Resource%22%3A%22%2A%22%7D%5D%7D"
        );
        self.iam(&format!(
            "Action=PutUserPolicy&UserName=snapshots&PolicyName={service}&PolicyDocument={policy}"
        ))
        .await;
        let key = self.iam("Action=CreateAccessKey&UserName=snapshots").await.body;
        let field = |name: &str| {
            let open = format!("<{name}>");
            let start = key.find(&open).map(|i| i + open.len());
            let end = key.find(&format!("</{name}>"));
            match (start, end) {
                (Some(s), Some(e)) if s <= e => key[s..e].to_owned(),
                _ => panic!("CreateAccessKey answered without <{name}>: {key}"),
            }
        };
        let (id, secret) = (field("AccessKeyId"), field("SecretAccessKey"));
        let a = self.request("POST", "/moto-api/reset-auth", &[], "0").await;
        assert_eq!(a.status, 200, "reset-auth: {}", a.body);
        (id, secret)
    }
}
