//! Test helpers: start a sim in-process and run the real kubectl binaries against it.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use rancher_sim::{Sim, SimHandle};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The oldest and newest kubectl installed (`kubectl.1.27`, `kubectl.1.33`).
pub const VERSIONS: &[&str] = &["1.27", "1.33"];

/// Path of a versioned kubectl binary shipped by the `kubectl` package.
pub fn kubectl_path(version: &str) -> PathBuf {
    let direct = PathBuf::from(format!("/usr/lib/google-cloud-sdk/bin/kubectl.{version}"));
    if direct.exists() {
        return direct;
    }
    let out = std::process::Command::new("dpkg").args(["-L", "kubectl"]).output().expect("dpkg -L kubectl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.ends_with(&format!("/kubectl.{version}")))
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("kubectl.{version} is not installed"))
}

pub async fn start_sim(nodes: usize) -> SimHandle {
    Sim::builder().nodes(nodes).start().await.expect("sim starts")
}

/// Runs one kubectl version with its own kubeconfig file.
pub struct Kubectl {
    pub version: String,
    bin: PathBuf,
    _dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

/// Output of a finished kubectl.
#[derive(Debug)]
pub struct Out {
    pub ok: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Kubectl {
    pub fn new(version: &str, kubeconfig_yaml: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, kubeconfig_yaml).expect("write kubeconfig");
        Kubectl { version: version.to_string(), bin: kubectl_path(version), _dir: dir, kubeconfig }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        c.env("HOME", self._dir.path()).env("KUBECACHEDIR", self._dir.path().join("cache"));
        c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        c
    }

    /// Runs kubectl to completion (generous timeout for a loaded machine).
    pub async fn run(&self, args: &[&str]) -> Out {
        let child = self.command(args).spawn().expect("spawn kubectl");
        let out = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {} {args:?} timed out", self.version))
            .expect("kubectl output");
        Out {
            ok: out.status.success(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs kubectl with `input` on stdin.
    pub async fn run_with_stdin(&self, args: &[&str], input: &str) -> Out {
        use tokio::io::AsyncWriteExt;
        let mut c = self.command(args);
        c.stdin(Stdio::piped());
        let mut child = c.spawn().expect("spawn kubectl");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input.as_bytes()).await.expect("write stdin");
        drop(stdin);
        let out = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
            .await
            .expect("kubectl timed out")
            .expect("kubectl output");
        Out {
            ok: out.status.success(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs kubectl and asserts success; returns stdout.
    pub async fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args).await;
        assert!(o.ok, "kubectl {} {args:?} failed: {}\n{}", self.version, o.stderr, o.stdout);
        o.stdout
    }

    /// Runs kubectl and asserts failure; returns stderr.
    pub async fn fails(&self, args: &[&str]) -> String {
        let o = self.run(args).await;
        assert!(!o.ok, "kubectl {} {args:?} unexpectedly succeeded: {}", self.version, o.stdout);
        o.stderr
    }

    /// Starts a long-running kubectl (`-w`, `logs -f`, `port-forward`).
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args).spawn().expect("spawn kubectl")
    }
}

/// Reads lines from a child's stdout until one satisfies `pred` (or the timeout passes).
pub async fn read_until(child: &mut Child, secs: u64, pred: impl Fn(&str) -> bool) -> Vec<String> {
    let stdout = child.stdout.as_mut().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = vec![];
    let r = tokio::time::timeout(Duration::from_secs(secs), async {
        while let Ok(Some(l)) = lines.next_line().await {
            let hit = pred(&l);
            seen.push(l);
            if hit {
                return true;
            }
        }
        false
    })
    .await;
    assert!(matches!(r, Ok(true)), "expected line never came; saw {seen:?}");
    seen
}

/// Polls `f` until it returns true or `secs` pass.
pub async fn eventually<F, Fut>(secs: u64, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

pub const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default, labels: {app: web}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: nginx:1.25, ports: [{containerPort: 80}], env: [{name: GREETING, value: hello}]}]}
"#;

/// Writes `content` to a file in a temp dir and returns (dir, path).
pub fn manifest(content: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("m.yaml");
    std::fs::write(&p, content).expect("write manifest");
    let s = p.to_string_lossy().into_owned();
    (dir, s)
}

/// Waits until `kubectl get pods -l <sel>` shows `n` Running pods.
pub async fn wait_running(k: &Kubectl, ns: &str, selector: &str, n: usize) {
    let ok = eventually(60, || async {
        let o = k.run(&["get", "pods", "-n", ns, "-l", selector, "--no-headers"]).await;
        o.stdout.lines().filter(|l| l.contains("Running")).count() == n
    })
    .await;
    assert!(ok, "kubectl {}: {n} Running pods with {selector} never appeared", k.version);
}
