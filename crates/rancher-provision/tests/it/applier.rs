//! A test-only plan applier: writes a plan's files and starts its processes on this machine, each
//! "host" on its own loopback address with its own prefix path; every process is killed on drop.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use rancher_provision::plan::{NodePlan, PlanProcess};
use rancher_provision::rke_plans::ComponentPaths;
use rancher_test_support::Proc;

/// The real kube-apiserver, kube-controller-manager and kube-scheduler 1.20.2 and etcd.
pub(crate) fn real_binaries() -> ComponentPaths {
    let dir = std::env::var_os("RANCHER_KUBE_BIN_DIR").map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache"));
        home.join("rancher-rs/kube-1.20.2")
    });
    for b in ["kube-apiserver", "kube-controller-manager", "kube-scheduler"] {
        assert!(
            dir.join(b).is_file(),
            "{} is missing: build the real Kubernetes 1.20.2 components with scripts/build-kube.sh (or point \
             RANCHER_KUBE_BIN_DIR at them)",
            dir.join(b).display()
        );
    }
    let mut paths = ComponentPaths::under(&dir.to_string_lossy());
    paths.etcd = rancher_test_support::etcd::etcd_binary().to_string_lossy().into_owned();
    // Never started by these tests (the simulated kubelet is tested elsewhere); only its args are checked.
    paths.kubelet = "/usr/local/bin/rancher-sim".into();
    paths
}

/// One host's applied plan: its processes, killed when this is dropped.
pub(crate) struct Applied {
    pub(crate) procs: Vec<(String, Proc)>,
}

impl Applied {
    /// Panics if a process has exited, with its log.
    pub(crate) fn assert_running(&mut self) {
        for (name, p) in &mut self.procs {
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("{name} exited ({status}):\n{}", tail(&p.log_text()));
            }
        }
    }
}

/// The last lines of a log.
pub(crate) fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Writes `plan`'s files (parents created, modes set) and starts its processes except those in
/// `skip`, logging into `logs/<node>-<process>.log`.
pub(crate) fn apply(node: &str, plan: &NodePlan, logs: &Path, skip: &[&str]) -> Applied {
    for f in &plan.files {
        let path = Path::new(&f.path);
        std::fs::create_dir_all(path.parent().expect("absolute path")).expect("mkdir");
        let content = base64::engine::general_purpose::STANDARD.decode(&f.content).expect("base64");
        std::fs::write(path, content).unwrap_or_else(|e| panic!("{}: {e}", f.path));
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(f.mode)).expect("chmod");
    }
    std::fs::create_dir_all(logs).expect("mkdir logs");
    let procs = plan
        .processes
        .iter()
        .filter(|p| !skip.contains(&p.name.as_str()))
        .map(|p| (p.name.clone(), spawn(p, &logs.join(format!("{node}-{}.log", p.name)))))
        .collect();
    Applied { procs }
}

fn spawn(p: &PlanProcess, log: &Path) -> Proc {
    let mut cmd = Command::new(&p.binary);
    cmd.args(&p.args).envs(&p.env);
    Proc::spawn(cmd, log)
}
