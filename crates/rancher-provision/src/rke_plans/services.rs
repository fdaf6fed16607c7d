//! Each component's process: its flags (defaults, then `services.*.extra_args`), the files it needs on
//! its host and its health check.

use std::collections::BTreeMap;

use rancher_core::model::RkeConfig;
use secrecy::ExposeSecret as _;

use super::files::{CERTIFICATES_ENV, CertFiles, HostFiles, host_port, https_url};
use super::hosts::{self, Host};
use super::{APISERVER_PORT, ClusterAgent, ComponentPaths, EtcdJoin, RenderError};
use crate::cluster_pki::{self as pki, ClusterPki};
use crate::plan::{HealthCheck, PlanProcess};

const ETCD_CLIENT_PORT: u16 = 2379;
const ETCD_PEER_PORT: u16 = 2380;
const CONTROLLER_MANAGER_PORT: u16 = 10257;
const SCHEDULER_PORT: u16 = 10259;

/// Admission plugins on top of the API server's defaults (Rancher's list for 1.20).
const ADMISSION_PLUGINS: &str = "NamespaceLifecycle,LimitRanger,ServiceAccount,DefaultStorageClass,\
DefaultTolerationSeconds,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ResourceQuota,NodeRestriction,\
Priority,TaintNodesByCondition,PersistentVolumeClaimResize";

/// What every host's plan shares.
pub(crate) struct Cluster<'a> {
    cfg: &'a RkeConfig,
    pki: &'a ClusterPki,
    /// `https://<internal>:2379` of every etcd host.
    etcd_servers: String,
    /// `<name>=https://<internal>:2380` of every etcd host.
    initial_cluster: String,
    /// How the etcd hosts that joined a running cluster joined it.
    joins: &'a BTreeMap<String, EtcdJoin>,
    /// The first controlplane host's API server.
    first_apiserver: String,
    /// Every controlplane host's API server, in host order.
    apiservers: Vec<String>,
}

impl<'a> Cluster<'a> {
    pub(crate) fn new(
        cfg: &'a RkeConfig,
        pki: &'a ClusterPki,
        hosts: &[Host<'_>],
        joins: &'a BTreeMap<String, EtcdJoin>,
    ) -> Result<Self, RenderError> {
        let etcd: Vec<&Host<'_>> = hosts.iter().filter(|h| h.etcd).collect();
        let etcd_servers =
            etcd.iter().map(|h| https_url(h.internal, ETCD_CLIENT_PORT)).collect::<Vec<_>>().join(",");
        let initial_cluster = initial_cluster(&etcd);
        let first = hosts
            .iter()
            .find(|h| h.controlplane)
            .ok_or_else(|| RenderError::invalid("nodes", "no node has the controlplane role"))?;
        if pki.etcd_cluster_token().is_empty() {
            return Err(RenderError::MissingCertificate("etcd cluster token".into()));
        }
        Ok(Cluster {
            cfg,
            pki,
            etcd_servers,
            initial_cluster,
            joins,
            first_apiserver: https_url(first.internal, APISERVER_PORT),
            apiservers: hosts
                .iter()
                .filter(|h| h.controlplane)
                .map(|h| https_url(h.internal, APISERVER_PORT))
                .collect(),
        })
    }
}

/// `<name>=https://<internal>:2380` of each of `etcd`, in order: etcd's `--initial-cluster`.
pub(crate) fn initial_cluster(etcd: &[&Host<'_>]) -> String {
    etcd.iter().map(|h| format!("{}={}", h.name, etcd_peer_url(h.internal))).collect::<Vec<_>>().join(",")
}

/// `https://<internal>:2380`: where an etcd host's peers reach it.
pub(crate) fn etcd_peer_url(internal: &str) -> String {
    https_url(internal, ETCD_PEER_PORT)
}

/// Flags by name (without dashes): the defaults, then `extra_args` over them.
struct Flags(BTreeMap<String, String>);

impl Flags {
    fn new() -> Self {
        Flags(BTreeMap::new())
    }

    fn set(&mut self, k: &str, v: impl Into<String>) -> &mut Self {
        self.0.insert(k.to_owned(), v.into());
        self
    }

    /// `--key=value` (`--key` for an empty value), after overlaying the bundle's flags of
    /// `component`, then `extra` from `service`.
    fn render(
        mut self,
        b: &ComponentPaths,
        component: &str,
        service: &str,
        extra: &BTreeMap<String, String>,
    ) -> Result<Vec<String>, RenderError> {
        let bundle =
            b.args.get(component).into_iter().flatten().map(|kv| (format!("binaries.args.{component}"), kv));
        let user = extra.iter().map(|kv| (format!("services.{service}.extra_args"), kv));
        for (field, (k, v)) in bundle.chain(user) {
            let bad = k.is_empty() || k.starts_with('-') || k.contains(['=', ' ', '\t', '\n']);
            if bad || v.contains('\n') {
                return Err(RenderError::invalid(
                    format!("{field}.{k}"),
                    "a flag name without dashes (`v`, `audit-log-path`) and a one-line value",
                ));
            }
            self.0.insert(k.clone(), v.clone());
        }
        Ok(self
            .0
            .into_iter()
            .map(|(k, v)| if v.is_empty() { format!("--{k}") } else { format!("--{k}={v}") })
            .collect())
    }
}

fn process(name: &str, binary: &str, args: Vec<String>, health: Option<HealthCheck>) -> PlanProcess {
    PlanProcess { name: name.to_owned(), binary: binary.to_owned(), args, env: BTreeMap::new(), health }
}

/// `p` with the digest of the certificate files it loads in its environment.
fn loading(mut p: PlanProcess, files: &HostFiles<'_>, certs: &[&str]) -> PlanProcess {
    p.env.insert(CERTIFICATES_ENV.to_owned(), files.digest(certs));
    p
}

/// etcd on an etcd host: peers and clients over mutual TLS on the host's internal address (and
/// clients on 127.0.0.1 too, unless the internal address is itself a loopback address).
pub(crate) fn etcd(
    c: &Cluster<'_>,
    h: &Host<'_>,
    prefix: &str,
    b: &ComponentPaths,
    files: &mut HostFiles<'_>,
) -> Result<PlanProcess, RenderError> {
    let ca = files.ca(pki::ETCD_CA, "kube-etcd-ca")?;
    let peer = files.cert(&pki::etcd_peer(&h.name), "kube-etcd-peer")?;
    let server = files.cert(&pki::etcd_server(&h.name), "kube-etcd-server")?;
    let (peer_cert, server_cert) = (peer.cert.clone(), server.cert.clone());
    let own = https_url(h.internal, ETCD_CLIENT_PORT);
    let local = https_url("127.0.0.1", ETCD_CLIENT_PORT);
    let (listen, health_base) =
        if h.internal_is_loopback() { (own.clone(), own.clone()) } else { (format!("{own},{local}"), local) };
    let mut f = Flags::new();
    f.set("name", &h.name)
        .set("data-dir", format!("{prefix}/var/lib/etcd"))
        .set("listen-peer-urls", https_url(h.internal, ETCD_PEER_PORT))
        .set("initial-advertise-peer-urls", https_url(h.internal, ETCD_PEER_PORT))
        .set("listen-client-urls", listen)
        .set("advertise-client-urls", own)
        .set("initial-cluster", c.joins.get(&h.name).map_or(&c.initial_cluster, |j| &j.initial_cluster))
        .set(
            "initial-cluster-state",
            if c.joins.get(&h.name).is_some_and(|j| j.existing) { "existing" } else { "new" },
        )
        .set("initial-cluster-token", c.pki.etcd_cluster_token())
        .set("trusted-ca-file", &ca)
        .set("cert-file", &server.cert)
        .set("key-file", &server.key)
        .set("client-cert-auth", "true")
        .set("peer-trusted-ca-file", &ca)
        .set("peer-cert-file", &peer.cert)
        .set("peer-key-file", &peer.key)
        .set("peer-client-cert-auth", "true")
        .set("heartbeat-interval", "500")
        .set("election-timeout", "5000");
    let health = HealthCheck::Http {
        url: format!("{health_base}/health"),
        ca_file: Some(ca.clone()),
        cert_file: Some(peer.cert),
        key_file: Some(peer.key),
    };
    let p =
        process("etcd", &b.etcd, f.render(b, "etcd", "etcd", &c.cfg.services.etcd.extra_args)?, Some(health));
    Ok(loading(p, files, &[&ca, &peer_cert, &server_cert]))
}

/// kube-apiserver, kube-controller-manager and kube-scheduler on a controlplane host.
pub(crate) fn control_plane(
    c: &Cluster<'_>,
    h: &Host<'_>,
    b: &ComponentPaths,
    files: &mut HostFiles<'_>,
) -> Result<Vec<PlanProcess>, RenderError> {
    let cfg = c.cfg;
    let kube_ca = files.ca(pki::KUBE_CA, "kube-ca")?;
    let kube_ca_key = {
        let ca =
            c.pki.get(pki::KUBE_CA).ok_or_else(|| RenderError::MissingCertificate(pki::KUBE_CA.into()))?;
        files.secret_pem("kube-ca", ca.key_pem.expose())
    };
    let etcd_ca = files.ca(pki::ETCD_CA, "kube-etcd-ca")?;
    let etcd_client = files.cert(pki::APISERVER_ETCD_CLIENT, "kube-apiserver-etcd-client")?;
    let serving = files.cert(pki::KUBE_APISERVER, "kube-apiserver")?;
    let kubelet_client = files.cert(pki::APISERVER_KUBELET_CLIENT, "kube-apiserver-kubelet-client")?;
    let front_ca = files.ca(pki::FRONT_PROXY_CA, "kube-apiserver-requestheader-ca")?;
    let front_client = files.cert(pki::FRONT_PROXY_CLIENT, "kube-apiserver-proxy-client")?;
    let admin = files.cert(pki::ADMIN, "kube-admin")?;
    let sa_key = c
        .pki
        .service_account_key()
        .ok_or_else(|| RenderError::MissingCertificate("service-account key".into()))?;
    let sa_key = files.secret_pem("kube-service-account-token", sa_key.expose());
    let sa_pub = c.pki.service_account_public_pem().map_err(|e| RenderError::Pki(Box::new(e)))?;
    let sa_pub = files.public_pem("kube-service-account-token", &sa_pub);
    let own_api = https_url(h.internal, APISERVER_PORT);
    // The range must be a CIDR with room for the `kubernetes` Service (the PKI checked it too).
    hosts::kubernetes_service_ip(cfg)?;

    let mut f = Flags::new();
    f.set("bind-address", h.internal)
        .set("advertise-address", h.internal)
        .set("secure-port", APISERVER_PORT.to_string())
        .set("insecure-port", "0")
        .set("etcd-servers", &c.etcd_servers)
        .set("etcd-cafile", &etcd_ca)
        .set("etcd-certfile", &etcd_client.cert)
        .set("etcd-keyfile", &etcd_client.key)
        .set("storage-backend", "etcd3")
        .set("client-ca-file", &kube_ca)
        .set("tls-cert-file", &serving.cert)
        .set("tls-private-key-file", &serving.key)
        .set(
            "service-account-issuer",
            format!("https://kubernetes.default.svc.{}", hosts::cluster_domain(cfg)),
        )
        .set("service-account-signing-key-file", &sa_key)
        .set("service-account-key-file", &sa_pub)
        .set("service-account-lookup", "true")
        .set("authorization-mode", "Node,RBAC")
        .set("enable-admission-plugins", ADMISSION_PLUGINS)
        .set("service-cluster-ip-range", hosts::service_range(cfg))
        .set("service-node-port-range", hosts::node_port_range(cfg))
        .set("requestheader-client-ca-file", &front_ca)
        .set("requestheader-allowed-names", "kube-apiserver-proxy-client")
        .set("requestheader-username-headers", "X-Remote-User")
        .set("requestheader-group-headers", "X-Remote-Group")
        .set("requestheader-extra-headers-prefix", "X-Remote-Extra-")
        .set("proxy-client-cert-file", &front_client.cert)
        .set("proxy-client-key-file", &front_client.key)
        .set("kubelet-client-certificate", &kubelet_client.cert)
        .set("kubelet-client-key", &kubelet_client.key)
        .set("kubelet-preferred-address-types", "InternalIP,ExternalIP,Hostname")
        .set("anonymous-auth", "false")
        .set("allow-privileged", "true")
        .set("profiling", "false");
    let api_health = HealthCheck::Http {
        url: format!("{own_api}/readyz"),
        ca_file: Some(kube_ca.clone()),
        cert_file: Some(admin.cert),
        key_file: Some(admin.key),
    };
    let apiserver = process(
        "kube-apiserver",
        &b.kube_apiserver,
        f.render(b, "kube-apiserver", "kube-api", &cfg.services.kube_api.extra_args)?,
        Some(api_health),
    );
    let apiserver = loading(
        apiserver,
        files,
        &[
            &kube_ca,
            &etcd_ca,
            &etcd_client.cert,
            &serving.cert,
            &kubelet_client.cert,
            &front_ca,
            &front_client.cert,
            &sa_pub,
        ],
    );

    let cm_cert = files.cert(pki::CONTROLLER_MANAGER, "kube-controller-manager")?;
    // During a rotation to a new CA kube-ca.pem holds both CAs, but the signer wants the one of its
    // key alone.
    let signing_ca = match c.pki.rotation_phase() {
        Some(_) => files.signing_ca(pki::KUBE_CA, "kube-ca-signing")?,
        None => kube_ca.clone(),
    };
    let cm_kubeconfig = files.kubeconfig("kube-controller-manager", &own_api, &kube_ca, &cm_cert);
    let mut f = Flags::new();
    f.set("kubeconfig", &cm_kubeconfig)
        .set("leader-elect", "true")
        .set("bind-address", h.internal)
        .set("secure-port", CONTROLLER_MANAGER_PORT.to_string())
        .set("port", "0")
        .set("cluster-signing-cert-file", &signing_ca)
        .set("cluster-signing-key-file", &kube_ca_key)
        .set("root-ca-file", &kube_ca)
        .set("service-account-private-key-file", &sa_key)
        .set("cluster-cidr", hosts::cluster_cidr(cfg))
        .set("service-cluster-ip-range", hosts::service_range(cfg))
        .set("allocate-node-cidrs", "true")
        .set("use-service-account-credentials", "true")
        .set("controllers", "*")
        .set("profiling", "false");
    let controller_manager = process(
        "kube-controller-manager",
        &b.kube_controller_manager,
        f.render(b, "kube-controller-manager", "kube-controller", &cfg.services.kube_controller.extra_args)?,
        Some(HealthCheck::Tcp { address: host_port(h.internal, CONTROLLER_MANAGER_PORT) }),
    );
    let controller_manager = loading(controller_manager, files, &[&kube_ca, &signing_ca, &cm_cert.cert]);

    let sched_cert = files.cert(pki::SCHEDULER, "kube-scheduler")?;
    let sched_kubeconfig = files.kubeconfig("kube-scheduler", &own_api, &kube_ca, &sched_cert);
    let mut f = Flags::new();
    f.set("kubeconfig", &sched_kubeconfig)
        .set("leader-elect", "true")
        .set("bind-address", h.internal)
        .set("secure-port", SCHEDULER_PORT.to_string())
        .set("port", "0")
        .set("profiling", "false");
    let scheduler = process(
        "kube-scheduler",
        &b.kube_scheduler,
        f.render(b, "kube-scheduler", "scheduler", &cfg.services.scheduler.extra_args)?,
        Some(HealthCheck::Tcp { address: host_port(h.internal, SCHEDULER_PORT) }),
    );
    let scheduler = loading(scheduler, files, &[&kube_ca, &sched_cert.cert]);
    Ok(vec![apiserver, controller_manager, scheduler])
}

/// The kubelet (`<rancher-sim> kubelet …`) on every host, registering the Node with its role labels,
/// the user's labels and taints, and Rancher's taints on hosts that are not workers.
pub(crate) fn kubelet(
    c: &Cluster<'_>,
    index: usize,
    h: &Host<'_>,
    b: &ComponentPaths,
    files: &mut HostFiles<'_>,
) -> Result<PlanProcess, RenderError> {
    let cfg = c.cfg;
    let ca = files.ca(pki::KUBE_CA, "kube-ca")?;
    let cert = files.cert(&pki::kubelet(&h.name), "kube-node")?;
    let server =
        if h.controlplane { https_url(h.internal, APISERVER_PORT) } else { c.first_apiserver.clone() };
    let kubeconfig = files.kubeconfig("kubelet", &server, &ca, &cert);

    // Only the user's labels: a kubelet may not set `node-role.kubernetes.io/*` on its own Node
    // (NodeRestriction; the real kubelet refuses them in --node-labels), so role labels are the
    // provisioner's to set with an administrator's credentials once the Node exists.
    let mut labels: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in &h.node.labels {
        if k.is_empty() || k.contains([',', '=']) || v.contains([',', '=']) {
            return Err(RenderError::invalid(
                format!("nodes[{index}].labels.{k}"),
                "label keys and values cannot be empty or hold `,` or `=`",
            ));
        }
        labels.insert(k.clone(), v.clone());
    }
    let mut taints: Vec<String> = vec![];
    for (i, t) in h.node.taints.iter().enumerate() {
        let ok_effect = ["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&t.effect.as_str());
        if t.key.is_empty() || !ok_effect || format!("{}{}", t.key, t.value).contains([',', '=', ':']) {
            return Err(RenderError::invalid(
                format!("nodes[{index}].taints[{i}]"),
                "needs a key, a value without `,` `=` `:` and an effect NoSchedule, PreferNoSchedule or NoExecute",
            ));
        }
        taints.push(if t.value.is_empty() {
            format!("{}:{}", t.key, t.effect)
        } else {
            format!("{}={}:{}", t.key, t.value, t.effect)
        });
    }
    if !h.worker {
        if h.controlplane {
            taints.push("node-role.kubernetes.io/controlplane=true:NoSchedule".into());
        }
        if h.etcd {
            taints.push("node-role.kubernetes.io/etcd=true:NoExecute".into());
        }
    }

    let mut f = Flags::new();
    f.set("kubeconfig", &kubeconfig)
        .set("hostname-override", &h.name)
        .set("node-ip", h.internal)
        .set("cluster-dns", hosts::cluster_dns(cfg))
        .set("cluster-domain", hosts::cluster_domain(cfg));
    if !labels.is_empty() {
        f.set("node-labels", labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","));
    }
    if !taints.is_empty() {
        f.set("register-with-taints", taints.join(","));
    }
    let mut args = vec!["kubelet".to_owned()];
    args.extend(f.render(b, "kubelet", "kubelet", &cfg.services.kubelet.extra_args)?);
    Ok(loading(process("kubelet", &b.kubelet, args, None), files, &[&ca, &cert.cert]))
}

/// The cluster agent on the first controlplane host, talking to that host's API server. Unlike the
/// other processes it is not restarted when its certificates are issued again: it reads them again.
pub(crate) fn cluster_agent(
    c: &Cluster<'_>,
    h: &Host<'_>,
    agent: &ClusterAgent,
    files: &mut HostFiles<'_>,
) -> Result<PlanProcess, RenderError> {
    let ca = files.ca(pki::KUBE_CA, "kube-ca")?;
    let cert: CertFiles = files.cert(pki::CLUSTER_AGENT, "kube-cluster-agent")?;
    let own = https_url(h.internal, APISERVER_PORT);
    let kubeconfig = files.kubeconfig("cluster-agent", &own, &ca, &cert);
    let mut args = vec!["--kubeconfig".into(), kubeconfig];
    // The API servers of the other controlplane hosts: the agent's streams fail over to them.
    for other in c.apiservers.iter().filter(|a| **a != own) {
        args.extend(["--api-server-alternate".to_owned(), other.clone()]);
    }
    // No certificate digest: the agent takes up new certificates itself, connecting again with them
    // before its session of the old ones closes. A restart would cut the server off from the cluster
    // for as long as it takes.
    let mut p = process("cluster-agent", &agent.binary, args, None);
    p.env.extend([
        ("CATTLE_SERVER".to_owned(), agent.server_url.clone()),
        ("CATTLE_CA_CHECKSUM".to_owned(), agent.ca_checksum.clone()),
        ("CATTLE_TOKEN".to_owned(), agent.token.expose_secret().to_owned()),
        ("CATTLE_CLUSTER".to_owned(), "true".to_owned()),
    ]);
    Ok(p)
}
