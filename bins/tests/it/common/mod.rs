//! Starting the real `rancher-server` binary on a free port with a temp data dir, and clients for it.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub use rancher_test_support::client_trusting as client;
pub use rancher_test_support::install_crypto;
use serde_json::{Value, json};

pub const ADMIN_PASSWORD: &str = "bar-Passw0rd-123";

pub struct ServerProc {
    pub child: Child,
    pub url: String,
    pub port: u16,
    pub data_dir: PathBuf,
    pub stdout_lines: Vec<String>,
}

impl ServerProc {
    /// Starts the server on `port` (0 = any) and waits for its "listening on" line.
    pub fn start(data_dir: &Path, port: u16, bootstrap_password: Option<&str>, extra: &[&str]) -> ServerProc {
        Self::start_command(
            Command::new(env!("CARGO_BIN_EXE_rancher-server")),
            data_dir,
            port,
            bootstrap_password,
            extra,
        )
    }

    /// Starts the server on any port under a wrapper command, e.g. `["prlimit", "--nofile=256:256", "--"]`.
    pub fn start_under(
        wrapper: &[&str],
        data_dir: &Path,
        bootstrap_password: Option<&str>,
        extra: &[&str],
    ) -> ServerProc {
        let mut cmd = Command::new(wrapper[0]);
        cmd.args(&wrapper[1..]).arg(env!("CARGO_BIN_EXE_rancher-server"));
        Self::start_command(cmd, data_dir, 0, bootstrap_password, extra)
    }

    fn start_command(
        mut cmd: Command,
        data_dir: &Path,
        port: u16,
        bootstrap_password: Option<&str>,
        extra: &[&str],
    ) -> ServerProc {
        cmd.arg("--data-dir")
            .arg(data_dir)
            .arg("--https-listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(extra)
            .env("RUST_LOG", "warn")
            .env_remove("CATTLE_BOOTSTRAP_PASSWORD")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(pw) = bootstrap_password {
            cmd.env("CATTLE_BOOTSTRAP_PASSWORD", pw);
        }
        let mut child = cmd.spawn().expect("spawn rancher-server");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut lines = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(120)) {
                Ok(line) => {
                    let done = line.contains("listening on");
                    lines.push(line);
                    if done {
                        break;
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("rancher-server did not start; stdout: {lines:?}");
                }
            }
        }
        let url = lines.last().unwrap().rsplit(' ').next().unwrap().to_owned();
        let port = url.rsplit(':').next().unwrap().parse().unwrap();
        ServerProc { child, url, port, data_dir: data_dir.to_owned(), stdout_lines: lines }
    }

    /// [`ServerProc::stop`] from async code: the runtime keeps serving the test's own connections (an
    /// HTTP/2 client must answer the server's shutdown PING, or the server drains for its full 30 s).
    #[allow(dead_code)] // not every test binary stops its server
    pub async fn stop_async(self) {
        tokio::task::spawn_blocking(move || self.stop()).await.unwrap();
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) {
        let status = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().unwrap();
        assert!(status.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                assert!(st.success(), "rancher-server exited with {st}");
                return;
            }
            assert!(std::time::Instant::now() < deadline, "rancher-server did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("tls/ca.crt")).unwrap()
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Api {
    pub http: reqwest::Client,
    pub url: String,
    pub token: Option<String>,
}

pub struct Answer {
    pub code: u16,
    pub body: Value,
}

impl Api {
    pub fn new(server: &ServerProc) -> Api {
        Api { http: client(&server.ca_pem()), url: server.url.clone(), token: None }
    }

    pub fn with_token(&self, token: &str) -> Api {
        Api { http: self.http.clone(), url: self.url.clone(), token: Some(token.to_owned()) }
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Answer {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req.send().await.expect("request");
        let code = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        Answer { code, body }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(self.http.get(format!("{}{path}", self.url))).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        self.send(self.http.post(format!("{}{path}", self.url)).json(body)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Answer {
        self.send(self.http.put(format!("{}{path}", self.url)).json(body)).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.send(self.http.delete(format!("{}{path}", self.url))).await
    }

    pub async fn login(&self, username: &str, password: &str) -> Answer {
        self.post(
            "/v3-public/localProviders/local?action=login",
            &json!({"username": username, "password": password}),
        )
        .await
    }

    /// Logs in and returns an Api carrying the token.
    pub async fn logged_in(&self, username: &str, password: &str) -> Api {
        let a = self.login(username, password).await;
        assert_eq!(a.code, 201, "login as {username}: {}", a.body);
        self.with_token(a.body["token"].as_str().unwrap())
    }
}

/// Asserts a Kubernetes Status failure with this code and reason.
pub fn assert_status(a: &Answer, code: u16, reason: &str) {
    assert_eq!(a.code, code, "{}", a.body);
    assert_eq!(a.body["kind"], "Status", "{}", a.body);
    assert_eq!(a.body["code"], code, "{}", a.body);
    assert_eq!(a.body["reason"], reason, "{}", a.body);
}

/// The stdout of a `rancherctl` run that must succeed (its output is in the panic otherwise).
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "rancherctl failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The stderr of a `rancherctl` run that must fail.
pub fn err(out: &Output) -> String {
    assert!(!out.status.success(), "rancherctl should have failed: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}
