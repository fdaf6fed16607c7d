//! The real `kubectl`, one version with one kubeconfig and its own `HOME` (so discovery caches of two
//! tests never meet), run to completion or spawned for long-running verbs (`-w`, `logs -f`,
//! `port-forward`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// The oldest and newest kubectl installed: SPDY (1.27) and WebSocket (1.33) for exec and port-forward.
pub const VERSIONS: [&str; 2] = ["1.27", "1.33"];

/// How long one kubectl call may take on a loaded machine.
pub const PATIENCE: Duration = Duration::from_secs(90);

/// The versioned kubectl binary the `kubectl` package ships (`kubectl.1.27` … `kubectl.1.33`).
///
/// # Panics
/// When that version is not installed.
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

/// The kubectl the acceptance scripts use (1.33), or the one on `PATH`.
pub fn default_kubectl() -> PathBuf {
    let pinned = Path::new("/usr/lib/google-cloud-sdk/bin/kubectl.1.33");
    if pinned.exists() { pinned.to_owned() } else { PathBuf::from("kubectl") }
}

/// `kubectl --kubeconfig <kubeconfig> <args>` with the default kubectl, run to completion: whether it
/// succeeded, and its stdout followed by its stderr.
pub fn kubectl_at(kubeconfig: &Path, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(default_kubectl())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("spawn kubectl");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// One kubectl version with one kubeconfig.
pub struct Kubectl {
    /// `"1.27"`, `"1.33"`, …
    pub version: String,
    /// The kubeconfig it is run with.
    pub kubeconfig: PathBuf,
    /// Its `HOME` (and cache directory).
    pub home: PathBuf,
    bin: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

/// What a finished kubectl printed.
#[derive(Debug)]
pub struct Out {
    /// It exited with 0.
    pub ok: bool,
    /// Its exit code (none when a signal ended it).
    pub code: Option<i32>,
    /// Everything it wrote to stdout.
    pub stdout: String,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

impl Kubectl {
    /// kubectl `version` with a kubeconfig of `kubeconfig_yaml`, both in a temporary directory that
    /// lives as long as this value.
    pub fn new(version: &str, kubeconfig_yaml: &str) -> Kubectl {
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, kubeconfig_yaml).expect("write kubeconfig");
        let home = dir.path().to_owned();
        Kubectl { version: version.to_owned(), kubeconfig, home, bin: kubectl_path(version), _dir: Some(dir) }
    }

    /// kubectl `version` with the kubeconfig file at `kubeconfig` and `home` (created if missing) as
    /// its `HOME`.
    pub fn at(version: &str, kubeconfig: &Path, home: &Path) -> Kubectl {
        std::fs::create_dir_all(home).unwrap_or_else(|e| panic!("{}: {e}", home.display()));
        Kubectl {
            version: version.to_owned(),
            kubeconfig: kubeconfig.to_owned(),
            home: home.to_owned(),
            bin: kubectl_path(version),
            _dir: None,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        c.env("HOME", &self.home).env("KUBECACHEDIR", self.home.join("cache"));
        c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        c
    }

    async fn finish(&self, args: &[&str], child: Child) -> Out {
        let out = tokio::time::timeout(PATIENCE, child.wait_with_output())
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

    /// Runs kubectl to completion.
    pub async fn run(&self, args: &[&str]) -> Out {
        let child = self.command(args).spawn().expect("spawn kubectl");
        self.finish(args, child).await
    }

    /// Runs kubectl with `input` on its stdin.
    pub async fn run_with_stdin(&self, args: &[&str], input: &str) -> Out {
        let mut c = self.command(args);
        c.stdin(Stdio::piped());
        let mut child = c.spawn().expect("spawn kubectl");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input.as_bytes()).await.expect("write stdin");
        drop(stdin);
        self.finish(args, child).await
    }

    /// Runs kubectl and asserts it succeeded; its stdout.
    pub async fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args).await;
        assert!(o.ok, "kubectl {} {args:?} failed: {}\n{}", self.version, o.stderr, o.stdout);
        o.stdout
    }

    /// Runs kubectl and asserts it failed.
    pub async fn fails(&self, args: &[&str]) -> Out {
        let o = self.run(args).await;
        assert!(!o.ok, "kubectl {} {args:?} unexpectedly succeeded: {}", self.version, o.stdout);
        o
    }

    /// Starts a long-running kubectl (`-w`, `logs -f`, `port-forward`) with its stdout piped; killed
    /// when dropped.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args).spawn().expect("spawn kubectl")
    }

    /// Polls until `kubectl get pod <name>` says Running.
    pub async fn wait_running(&self, name: &str) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let o = self.run(&["get", "pod", name, "--no-headers"]).await;
            if o.stdout.contains("Running") {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "pod {name} never ran: {o:?}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// Reads the child's stdout line by line until a line satisfies `pred`; returns the lines read.
///
/// # Panics
/// When the stream ends, or `wait` passes, before such a line.
pub async fn read_until(child: &mut Child, wait: Duration, pred: impl Fn(&str) -> bool) -> Vec<String> {
    let mut lines = BufReader::new(child.stdout.as_mut().expect("piped stdout")).lines();
    let mut seen = vec![];
    let found = tokio::time::timeout(wait, async {
        while let Ok(Some(line)) = lines.next_line().await {
            let hit = pred(&line);
            seen.push(line);
            if hit {
                return true;
            }
        }
        false
    })
    .await;
    assert!(matches!(found, Ok(true)), "expected line never came; saw {seen:?}");
    seen
}
