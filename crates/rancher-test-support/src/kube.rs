//! A real Kubernetes 1.20 control plane for tests: etcd, kube-apiserver (Node and RBAC authorization,
//! NodeRestriction, client-certificate authentication, optionally an admin's static token and an audit
//! log: [`Options`]), kube-controller-manager (allocating node pod CIDRs from 10.42.0.0/16) and
//! kube-scheduler, all on free loopback ports, with certificates made here by rcgen. Everything is
//! killed and removed when the [`ControlPlane`] is dropped.
//!
//! The server binaries come from `RANCHER_KUBE_BIN_DIR` or `~/.cache/rancher-rs/kube-1.20.2`, where
//! `scripts/build-kube.sh` puts them. A test that needs them fails when they are missing.
//!
//! This is test support only: the product's own PKI lives elsewhere.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::etcd::Etcd;
use crate::kubectl::default_kubectl;
use crate::{Proc, free_port, read_log};

/// The cluster CIDR the controller-manager allocates node pod CIDRs (/24 each) from.
pub const CLUSTER_CIDR: &str = "10.42.0.0/16";
/// The service CIDR; the API server's service IP is its first address.
pub const SERVICE_CIDR: &str = "10.43.0.0/16";

const COMPONENTS: [&str; 3] = ["kube-apiserver", "kube-controller-manager", "kube-scheduler"];

/// Where the real kube-apiserver, kube-controller-manager and kube-scheduler are.
///
/// # Panics
/// When they are not there: run `scripts/build-kube.sh` (or `scripts/install-test-deps.sh`).
pub fn kube_bin_dir() -> PathBuf {
    let dir = std::env::var_os("RANCHER_KUBE_BIN_DIR").map(PathBuf::from).unwrap_or_else(|| {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache"));
        cache.join("rancher-rs/kube-1.20.2")
    });
    for c in COMPONENTS {
        assert!(
            dir.join(c).is_file(),
            "{} is missing: these tests need the real Kubernetes 1.20 server binaries; run \
             scripts/build-kube.sh (about 14 minutes once per machine), or set RANCHER_KUBE_BIN_DIR",
            dir.join(c).display()
        );
    }
    dir
}

/// How the control plane is configured beyond its fixed shape.
#[derive(Debug, Clone)]
pub struct Options {
    /// The controller-manager's `--node-monitor-grace-period`: how long a node may go without
    /// renewing its Lease before it is marked NotReady (Kubernetes' default: 40 s).
    pub node_monitor_grace_period: Duration,
    /// A bearer token for `admin` in `system:masters` (the API server's `--token-auth-file`),
    /// besides the client certificates of [`ControlPlane::admin_kubeconfig`].
    pub admin_token: Option<String>,
    /// An audit policy (YAML, `audit.k8s.io/v1` `Policy`); the events go as JSON lines to
    /// [`ControlPlane::audit_log`].
    pub audit_policy: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options { node_monitor_grace_period: Duration::from_secs(40), admin_token: None, audit_policy: None }
    }
}

/// A running control plane. Fields drop in order: the components before etcd, the files last.
pub struct ControlPlane {
    apiserver: Proc,
    controller_manager: Proc,
    scheduler: Proc,
    etcd: Etcd,
    url: String,
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
    dir: tempfile::TempDir,
}

fn write_private(path: &Path, content: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    std::io::Write::write_all(&mut f, content.as_bytes()).expect("write a key file");
}

fn write(path: &Path, content: &str) {
    std::fs::write(path, content).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

impl ControlPlane {
    /// Starts a control plane with the default [`Options`] and waits until it serves, the
    /// controller-manager made the `default` service account and the scheduler holds its lock.
    ///
    /// # Panics
    /// When a binary is missing or a component does not come up within two minutes (with its log).
    pub async fn start() -> ControlPlane {
        Self::start_with(Options::default()).await
    }

    /// As [`ControlPlane::start`], with `options`.
    ///
    /// # Panics
    /// As [`ControlPlane::start`].
    pub async fn start_with(options: Options) -> ControlPlane {
        crate::install_crypto();
        let bin = kube_bin_dir();
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let etcd = Etcd::start(1).await;

        // The cluster CA, also the client CA and the CSR signer; the service-account key.
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.distinguished_name.push(DnType::CommonName, "kubernetes-test-ca");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca_pem = ca.self_signed(&ca_key).expect("CA cert").pem();
        write(&d.join("ca.crt"), &ca_pem);
        write_private(&d.join("ca.key"), &ca_key.serialize_pem());
        let issuer = Issuer::new(ca, ca_key);
        let sa = KeyPair::generate().expect("service-account key");
        write_private(&d.join("sa.key"), &sa.serialize_pem());
        write(&d.join("sa.pub"), &sa.public_key_pem());

        let port = free_port();
        let url = format!("https://127.0.0.1:{port}");
        let serving = {
            let key = KeyPair::generate().expect("key");
            let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
            p.distinguished_name.push(DnType::CommonName, "kube-apiserver");
            p.subject_alt_names =
                vec![SanType::IpAddress([127, 0, 0, 1].into()), SanType::IpAddress([10, 43, 0, 1].into())];
            for name in [
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ] {
                p.subject_alt_names.push(SanType::DnsName(name.try_into().expect("DNS name")));
            }
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            (p.signed_by(&key, &issuer).expect("serving cert").pem(), key.serialize_pem())
        };
        write(&d.join("apiserver.crt"), &serving.0);
        write_private(&d.join("apiserver.key"), &serving.1);

        let cp_partial = Partial { dir: d.to_owned(), url: url.clone(), issuer: &issuer };
        let admin = cp_partial.client_kubeconfig("admin", "admin", &["system:masters"]);
        let cm_kc = cp_partial.client_kubeconfig("controller-manager", "system:kube-controller-manager", &[]);
        let sched_kc = cp_partial.client_kubeconfig("scheduler", "system:kube-scheduler", &[]);
        let p = |f: &str| d.join(f).to_string_lossy().into_owned();

        let mut api = Command::new(bin.join("kube-apiserver"));
        api.args(["--etcd-servers", &etcd.endpoints().join(",")])
            .args(["--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1"])
            .args(["--secure-port", &port.to_string(), "--insecure-port", "0"])
            .args(["--cert-dir", &p("apiserver-certs")])
            .args(["--tls-cert-file", &p("apiserver.crt"), "--tls-private-key-file", &p("apiserver.key")])
            .args(["--client-ca-file", &p("ca.crt")])
            .args(["--authorization-mode", "Node,RBAC", "--enable-admission-plugins", "NodeRestriction"])
            .args(["--service-cluster-ip-range", SERVICE_CIDR])
            .args(["--service-account-issuer", "https://kubernetes.default.svc.cluster.local"])
            .args(["--api-audiences", "https://kubernetes.default.svc.cluster.local"])
            .args([
                "--service-account-signing-key-file",
                &p("sa.key"),
                "--service-account-key-file",
                &p("sa.pub"),
            ])
            .args(["--allow-privileged=true", "--endpoint-reconciler-type", "none", "--profiling=false"]);
        if let Some(token) = &options.admin_token {
            write_private(&d.join("tokens.csv"), &format!("{token},admin,admin,system:masters\n"));
            api.args(["--token-auth-file", &p("tokens.csv")]);
        }
        if let Some(policy) = &options.audit_policy {
            write(&d.join("audit-policy.yaml"), policy);
            api.args(["--audit-policy-file", &p("audit-policy.yaml"), "--audit-log-path", &p("audit.log")]);
        }
        let mut apiserver = Proc::spawn(api, &d.join("kube-apiserver.log"));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        // The controller-manager and the scheduler read their authentication settings from the API
        // server at start and exit when it does not answer: they start once it is ready.
        let ready = ("kube-apiserver is ready", &["get", "--raw", "/readyz"][..], "ok");
        wait_until(&mut [&mut apiserver], &admin, ready, deadline).await;

        let grace = format!("{}s", options.node_monitor_grace_period.as_secs().max(1));
        let mut cm = Command::new(bin.join("kube-controller-manager"));
        cm.args([
            "--kubeconfig",
            &cm_kc,
            "--authentication-kubeconfig",
            &cm_kc,
            "--authorization-kubeconfig",
            &cm_kc,
        ])
        .args(["--bind-address", "127.0.0.1", "--secure-port", &free_port().to_string(), "--port", "0"])
        .args(["--leader-elect=true", "--use-service-account-credentials=true"])
        .args([
            "--allocate-node-cidrs=true",
            "--cluster-cidr",
            CLUSTER_CIDR,
            "--service-cluster-ip-range",
            SERVICE_CIDR,
        ])
        .args(["--service-account-private-key-file", &p("sa.key"), "--root-ca-file", &p("ca.crt")])
        .args(["--cluster-signing-cert-file", &p("ca.crt"), "--cluster-signing-key-file", &p("ca.key")])
        .args(["--node-monitor-grace-period", &grace, "--node-monitor-period", "2s"])
        .args(["--profiling=false"]);
        let mut controller_manager = Proc::spawn(cm, &d.join("kube-controller-manager.log"));

        let mut sched = Command::new(bin.join("kube-scheduler"));
        sched
            .args(["--kubeconfig", &sched_kc, "--authentication-kubeconfig", &sched_kc])
            .args(["--authorization-kubeconfig", &sched_kc])
            .args(["--bind-address", "127.0.0.1", "--secure-port", &free_port().to_string(), "--port", "0"])
            .args(["--leader-elect=true", "--profiling=false"]);
        let mut scheduler = Proc::spawn(sched, &d.join("kube-scheduler.log"));

        let token = (
            "kube-controller-manager made the default service account's token",
            &["-n", "default", "get", "secrets", "-o", "name"][..],
            "secret/default-token-",
        );
        let lock = (
            "kube-scheduler holds its leader lock",
            &["-n", "kube-system", "get", "leases,endpoints", "-o", "name"][..],
            "kube-scheduler",
        );
        for check in [token, lock] {
            wait_until(
                &mut [&mut apiserver, &mut controller_manager, &mut scheduler],
                &admin,
                check,
                deadline,
            )
            .await;
        }
        ControlPlane { apiserver, controller_manager, scheduler, etcd, url, ca_pem, issuer, dir }
    }

    /// The API server's URL, `https://127.0.0.1:<port>`.
    pub fn server_url(&self) -> &str {
        &self.url
    }

    /// The cluster CA (PEM): it signed the API server's certificate and every client certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A kubeconfig for `admin` in `system:masters`.
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.dir.path().join("admin.kubeconfig")
    }

    /// A kubeconfig (made on first use) with a client certificate for `system:node:<name>` in
    /// `system:nodes`, as a kubelet has.
    ///
    /// # Panics
    /// When `name` is empty or has a `/`.
    pub fn node_kubeconfig(&self, name: &str) -> PathBuf {
        assert!(!name.is_empty() && !name.contains('/'), "node name {name:?}");
        let partial =
            Partial { dir: self.dir.path().to_owned(), url: self.url.clone(), issuer: &self.issuer };
        PathBuf::from(partial.client_kubeconfig(
            &format!("node-{name}"),
            &format!("system:node:{name}"),
            &["system:nodes"],
        ))
    }

    /// The API server's process id.
    pub fn apiserver_pid(&self) -> u32 {
        self.apiserver.child.id()
    }

    /// The process id of etcd (one member).
    pub fn etcd_pid(&self) -> Option<u32> {
        self.etcd.members.first().and_then(crate::etcd::Member::pid)
    }

    /// Where the API server writes its audit events when [`Options::audit_policy`] was given.
    pub fn audit_log(&self) -> PathBuf {
        self.dir.path().join("audit.log")
    }

    /// The components' logs so far, for a failing test's message.
    pub fn logs(&self) -> String {
        [&self.apiserver, &self.controller_manager, &self.scheduler].into_iter().map(log_tail).collect()
    }
}

/// Polls `kubectl <args>` as admin until it succeeds and prints `expect`.
///
/// # Panics
/// With the components' logs when one of `procs` exits or `deadline` passes first.
async fn wait_until(
    procs: &mut [&mut Proc],
    admin: &str,
    check: (&str, &[&str], &str),
    deadline: tokio::time::Instant,
) {
    let (what, args, expect) = check;
    loop {
        let (admin, args) = (admin.to_owned(), args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>());
        let (ok, out) = tokio::task::spawn_blocking(move || {
            let out = Command::new(default_kubectl()).arg("--kubeconfig").arg(&admin).args(&args).output();
            out.map(|o| (o.status.success(), String::from_utf8_lossy(&o.stdout).into_owned()))
                .unwrap_or((false, String::new()))
        })
        .await
        .unwrap_or((false, String::new()));
        if ok && out.contains(expect) {
            return;
        }
        let exited = procs.iter_mut().find_map(|p| Some((p.log.clone(), p.child.try_wait().ok().flatten()?)));
        let logs = || procs.iter().map(|p| log_tail(p)).collect::<String>();
        if let Some((log, st)) = exited {
            panic!("control plane: {} exited ({st}) before {what}\n{}", log.display(), logs());
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "control plane: timed out waiting until {what}\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn log_tail(p: &Proc) -> String {
    let text = read_log(&p.log);
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(40)..];
    format!("---- {} (last 40 lines)\n{}\n", p.log.display(), tail.join("\n"))
}

/// What making a client kubeconfig needs (before and after the control plane is assembled).
struct Partial<'a> {
    dir: PathBuf,
    url: String,
    issuer: &'a Issuer<'static, KeyPair>,
}

impl Partial<'_> {
    /// Writes `<file>.crt`, `<file>.key` (0600) and `<file>.kubeconfig`, returns the kubeconfig's path.
    fn client_kubeconfig(&self, file: &str, user: &str, groups: &[&str]) -> String {
        let key = KeyPair::generate().expect("client key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name.push(DnType::CommonName, user);
        for g in groups {
            p.distinguished_name.push(DnType::OrganizationName, *g);
        }
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = p.signed_by(&key, self.issuer).expect("client cert");
        let (crt, keyf, kc) = (
            self.dir.join(format!("{file}.crt")),
            self.dir.join(format!("{file}.key")),
            self.dir.join(format!("{file}.kubeconfig")),
        );
        write(&crt, &cert.pem());
        write_private(&keyf, &key.serialize_pem());
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {url}\n    \
             certificate-authority: {ca}\nusers:\n- name: {file}\n  user:\n    client-certificate: {crt}\n    \
             client-key: {key}\ncontexts:\n- name: test\n  context: {{cluster: test, user: {file}}}\n\
             current-context: test\n",
            url = self.url,
            ca = self.dir.join("ca.crt").display(),
            crt = crt.display(),
            key = keyf.display(),
        );
        write_private(&kc, &kubeconfig);
        kc.to_string_lossy().into_owned()
    }
}
