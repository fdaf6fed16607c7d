use base64::Engine as _;
use rancher_core::model::{RkeNode, RkeTaint};

use super::*;
use crate::plan::{HealthCheck, PlanProcess};

fn node(address: &str, name: &str, roles: &[&str]) -> RkeNode {
    RkeNode {
        address: address.into(),
        internal_address: format!("192.168.0.{}", address.rsplit('.').next().unwrap()),
        hostname_override: name.into(),
        role: roles.iter().map(|r| (*r).to_owned()).collect(),
        ..Default::default()
    }
}

fn cluster() -> RkeConfig {
    let mut c = RkeConfig {
        nodes: vec![
            node("10.0.0.1", "cp1", &["etcd", "controlplane"]),
            node("10.0.0.2", "etcd2", &["etcd"]),
            node("10.0.0.3", "w3", &["worker"]),
        ],
        prefix_path: "/opt/rke".into(),
        ..Default::default()
    };
    c.nodes[2].labels.insert("disk".into(), "ssd".into());
    c.nodes[2].taints.push(RkeTaint {
        key: "dedicated".into(),
        value: "db".into(),
        effect: "NoSchedule".into(),
    });
    c
}

fn pki(c: &RkeConfig) -> ClusterPki {
    let mut p = ClusterPki::new();
    p.ensure(c).unwrap();
    p
}

fn proc<'a>(plan: &'a NodePlan, name: &str) -> &'a PlanProcess {
    plan.processes.iter().find(|p| p.name == name).unwrap_or_else(|| panic!("no {name}"))
}

fn flag<'a>(p: &'a PlanProcess, name: &str) -> Option<&'a str> {
    let prefix = format!("--{name}=");
    p.args.iter().find_map(|a| a.strip_prefix(&prefix))
}

fn file_names(plan: &NodePlan) -> Vec<&str> {
    plan.files.iter().map(|f| f.path.strip_prefix("/opt/rke/etc/kubernetes/ssl/").unwrap()).collect()
}

#[test]
fn each_host_gets_only_what_its_roles_need_with_keys_private() {
    let c = cluster();
    let plans = render_plans(&c, &pki(&c), &ComponentPaths::under("/opt/bin")).unwrap();
    assert_eq!(plans.keys().collect::<Vec<_>>(), ["cp1", "etcd2", "w3"]);
    assert_eq!(
        file_names(&plans["etcd2"]),
        [
            "kube-ca.pem",
            "kube-etcd-ca.pem",
            "kube-etcd-peer.pem",
            "kube-etcd-peer-key.pem",
            "kube-etcd-server.pem",
            "kube-etcd-server-key.pem",
            "kube-node.pem",
            "kube-node-key.pem",
            "kubecfg-kubelet.yaml"
        ]
    );
    assert_eq!(
        file_names(&plans["w3"]),
        ["kube-ca.pem", "kube-node.pem", "kube-node-key.pem", "kubecfg-kubelet.yaml"]
    );
    let cp = file_names(&plans["cp1"]);
    for f in
        ["kube-ca-key.pem", "kube-apiserver-key.pem", "kube-service-account-token-key.pem", "kube-admin.pem"]
    {
        assert!(cp.contains(&f), "{f} not in {cp:?}");
    }
    for plan in plans.values() {
        for f in &plan.files {
            let text =
                String::from_utf8(base64::engine::general_purpose::STANDARD.decode(&f.content).unwrap())
                    .unwrap();
            let secret = text.contains("PRIVATE KEY") || f.path.ends_with(".yaml");
            assert_eq!(f.mode, if secret { 0o600 } else { 0o644 }, "{}", f.path);
        }
    }
    let names = |n: &str| plans[n].processes.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
    assert_eq!(
        names("cp1"),
        ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet"]
    );
    assert_eq!(names("etcd2"), ["etcd", "kubelet"]);
    assert_eq!(names("w3"), ["kubelet"]);
}

#[test]
fn flags_name_every_member_and_listen_on_the_internal_address() {
    let c = cluster();
    let plans = render_plans(&c, &pki(&c), &ComponentPaths::under("/opt/bin")).unwrap();
    let etcd = proc(&plans["etcd2"], "etcd");
    assert_eq!(etcd.binary, "/opt/bin/etcd");
    assert_eq!(
        flag(etcd, "initial-cluster"),
        Some("cp1=https://192.168.0.1:2380,etcd2=https://192.168.0.2:2380")
    );
    assert_eq!(flag(etcd, "listen-client-urls"), Some("https://192.168.0.2:2379,https://127.0.0.1:2379"));
    assert_eq!(flag(etcd, "data-dir"), Some("/opt/rke/var/lib/etcd"));
    assert_eq!(flag(etcd, "client-cert-auth"), Some("true"));
    match &etcd.health {
        Some(HealthCheck::Http { url, ca_file, cert_file, .. }) => {
            assert_eq!(url, "https://127.0.0.1:2379/health");
            assert_eq!(ca_file.as_deref(), Some("/opt/rke/etc/kubernetes/ssl/kube-etcd-ca.pem"));
            assert!(cert_file.is_some());
        }
        other => panic!("{other:?}"),
    }
    let api = proc(&plans["cp1"], "kube-apiserver");
    assert_eq!(flag(api, "etcd-servers"), Some("https://192.168.0.1:2379,https://192.168.0.2:2379"));
    assert_eq!(flag(api, "bind-address"), Some("192.168.0.1"));
    assert_eq!(flag(api, "service-cluster-ip-range"), Some("10.43.0.0/16"));
    assert_eq!(flag(api, "anonymous-auth"), Some("false"));
    assert_eq!(flag(api, "service-account-issuer"), Some("https://kubernetes.default.svc.cluster.local"));
    let cm = proc(&plans["cp1"], "kube-controller-manager");
    assert_eq!(flag(cm, "cluster-cidr"), Some("10.42.0.0/16"));
    assert_eq!(cm.health, Some(HealthCheck::Tcp { address: "192.168.0.1:10257".into() }));

    let kubelet = proc(&plans["w3"], "kubelet");
    assert_eq!((kubelet.binary.as_str(), kubelet.args[0].as_str()), ("/opt/bin/rancher-sim", "kubelet"));
    assert_eq!(flag(kubelet, "node-labels"), Some("disk=ssd"));
    assert_eq!(flag(kubelet, "register-with-taints"), Some("dedicated=db:NoSchedule"));
    assert_eq!(flag(kubelet, "node-ip"), Some("192.168.0.3"));
    assert_eq!(kubelet.health, None);
    let etcd_kubelet = proc(&plans["etcd2"], "kubelet");
    assert_eq!(
        flag(etcd_kubelet, "register-with-taints"),
        Some("node-role.kubernetes.io/etcd=true:NoExecute")
    );
}

#[test]
fn extra_args_override_and_add_flags_and_bad_ones_are_named() {
    let mut c = cluster();
    c.services.kube_api.extra_args.insert("anonymous-auth".into(), "true".into());
    c.services.kube_api.extra_args.insert("v".into(), "2".into());
    c.services.etcd.extra_args.insert("enable-v2".into(), String::new());
    let plans = render_plans(&c, &pki(&c), &ComponentPaths::under("/opt/bin")).unwrap();
    let api = proc(&plans["cp1"], "kube-apiserver");
    assert_eq!(flag(api, "anonymous-auth"), Some("true"));
    assert_eq!(flag(api, "v"), Some("2"));
    assert_eq!(api.args.iter().filter(|a| a.starts_with("--anonymous-auth")).count(), 1);
    assert!(proc(&plans["etcd2"], "etcd").args.contains(&"--enable-v2".to_owned()));

    c.services.kubelet.extra_args.insert("--max-pods".into(), "10".into());
    let err = render_plans(&c, &pki(&c), &ComponentPaths::under("/opt/bin")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "services.kubelet.extra_args.--max-pods: a flag name without dashes (`v`, `audit-log-path`) and a one-line value"
    );
}

#[test]
fn the_revision_is_the_hash_of_the_plan_and_follows_its_content() {
    let c = cluster();
    let p = pki(&c);
    let b = ComponentPaths::under("/opt/bin");
    let plans = render_plans(&c, &p, &b).unwrap();
    let again = render_plans(&c, &p, &b).unwrap();
    assert_eq!(plans, again, "rendering is deterministic");
    let mut plan = plans["w3"].clone();
    let revision = std::mem::take(&mut plan.revision);
    assert_eq!(revision, hex::encode(Sha256::digest(serde_json::to_vec(&plan).unwrap())));

    let mut c2 = c.clone();
    c2.services.kubelet.extra_args.insert("v".into(), "4".into());
    let changed = render_plans(&c2, &p, &b).unwrap();
    assert_ne!(changed["w3"].revision, plans["w3"].revision);
    assert_eq!(changed["etcd2"].processes[0], plans["etcd2"].processes[0], "etcd untouched");
}

#[test]
fn the_cluster_agent_runs_on_the_first_controlplane_host_only() {
    let mut c = cluster();
    c.nodes.push(node("10.0.0.4", "cp4", &["controlplane"]));
    let mut b = ComponentPaths::under("/opt/bin");
    b.cluster_agent = Some(ClusterAgent {
        binary: "/opt/bin/rancher-agent".into(),
        server_url: "https://rancher.example.org".into(),
        ca_checksum: "ab".repeat(32),
        token: SecretString::from("reg-token-s3cr3t"),
    });
    assert!(!format!("{b:?}").contains("s3cr3t"));
    let plans = render_plans(&c, &pki(&c), &b).unwrap();
    assert!(!plans["cp4"].processes.iter().any(|p| p.name == "cluster-agent"));
    let agent = proc(&plans["cp1"], "cluster-agent");
    // Its streams fail over to the other controlplane host's API server.
    assert_eq!(
        agent.args,
        [
            "--kubeconfig",
            "/opt/rke/etc/kubernetes/ssl/kubecfg-cluster-agent.yaml",
            "--api-server-alternate",
            "https://192.168.0.4:6443"
        ]
    );
    assert_eq!(agent.env["CATTLE_TOKEN"], "reg-token-s3cr3t");
    assert_eq!(agent.env["CATTLE_CLUSTER"], "true");
    assert_eq!(agent.env["CATTLE_SERVER"], "https://rancher.example.org");
    // New certificates restart the components that load them, but not the agent: it reads them again.
    assert!(!agent.env.contains_key(super::files::CERTIFICATES_ENV));
    assert!(proc(&plans["cp1"], "kube-apiserver").env.contains_key(super::files::CERTIFICATES_ENV));
    // cp4's components talk to cp4's own API server.
    let cfg = plans["cp4"].files.iter().find(|f| f.path.ends_with("kubecfg-kube-scheduler.yaml")).unwrap();
    let cfg =
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(&cfg.content).unwrap()).unwrap();
    assert!(cfg.contains("server: \"https://192.168.0.4:6443\""), "{cfg}");

    b.cluster_agent.as_mut().unwrap().ca_checksum = "nope".into();
    let err = render_plans(&c, &pki(&c), &b).unwrap_err().to_string();
    assert!(err.starts_with("binaries.cluster_agent.ca_checksum:"), "{err}");
}

#[test]
fn plans_need_an_ensured_pki_and_absolute_paths() {
    let c = cluster();
    let err = render_plans(&c, &ClusterPki::new(), &ComponentPaths::under("/opt/bin")).unwrap_err();
    assert!(matches!(err, RenderError::MissingCertificate(_)), "{err}");
    let mut b = ComponentPaths::under("/opt/bin");
    b.etcd = "etcd".into();
    assert_eq!(
        render_plans(&c, &pki(&c), &b).unwrap_err().to_string(),
        "binaries.etcd: \"etcd\" is not an absolute path"
    );
    let mut bad = c.clone();
    bad.nodes[2].labels.insert("a,b".into(), "x".into());
    let err = render_plans(&bad, &pki(&c), &ComponentPaths::under("/opt/bin")).unwrap_err().to_string();
    assert!(err.starts_with("nodes[2].labels.a,b:"), "{err}");
}

#[test]
fn the_admin_kubeconfig_embeds_the_admin_certificate() {
    let c = cluster();
    let p = pki(&c);
    let yaml = admin_kubeconfig(&c, &p, "https://10.0.0.1:6443").unwrap();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    assert!(yaml.contains("server: \"https://10.0.0.1:6443\""), "{yaml}");
    assert!(yaml.contains(&b64(&p.get(crate::cluster_pki::ADMIN).unwrap().cert_pem)));
    assert!(yaml.contains(&b64(&p.get(crate::cluster_pki::KUBE_CA).unwrap().cert_pem)));
    assert!(yaml.contains("current-context: local"));
    assert!(admin_kubeconfig(&c, &p, "10.0.0.1:6443").is_err());
}

#[test]
fn the_admin_kubeconfig_points_at_the_first_controlplane_host() {
    let mut c = cluster();
    c.nodes.swap(0, 2); // a worker first: the controlplane host is found, not the first host
    assert_eq!(admin_server_url(&c).as_deref(), Some("https://10.0.0.1:6443"));
    c.nodes[2].address = "fd00::1".into();
    assert_eq!(admin_server_url(&c).as_deref(), Some("https://[fd00::1]:6443"));
    c.nodes[2].role = vec!["etcd".into()];
    assert_eq!(admin_server_url(&c), None);
}

#[test]
fn a_bundles_flags_sit_over_the_defaults_and_under_the_users_extra_args() {
    let mut c = cluster();
    c.services.kube_api.extra_args.insert("v".into(), "4".into());
    let mut b = ComponentPaths::under("/opt/bin");
    b.args.insert(
        "kube-apiserver".into(),
        [("v".to_owned(), "2".to_owned()), ("profiling".to_owned(), "true".to_owned())].into(),
    );
    let p = pki(&c);
    let plans = render_plans(&c, &p, &b).unwrap();
    let api = proc(&plans["cp1"], "kube-apiserver");
    assert_eq!(flag(api, "profiling"), Some("true"), "the bundle's flag replaces the default");
    assert_eq!(flag(api, "v"), Some("4"), "the user's extra_args win over the bundle");
    // Another bundle's flags are another plan: the hosts running that component restart.
    let plain = render_plans(&c, &p, &ComponentPaths::under("/opt/bin")).unwrap();
    assert_ne!(plans["cp1"].revision, plain["cp1"].revision);
    assert_eq!(plans["w3"].revision, plain["w3"].revision);
    // A bad flag in a bundle is named as the bundle's.
    b.args.insert("etcd".into(), [("--bad".to_owned(), String::new())].into());
    let e = render_plans(&c, &p, &b).unwrap_err();
    assert!(e.to_string().starts_with("binaries.args.etcd.--bad:"), "{e}");
}

#[test]
fn an_etcd_host_that_joined_a_running_cluster_keeps_its_join_flags_and_the_others_keep_theirs() {
    let c = cluster();
    let mut grown = c.clone();
    grown.nodes.push(node("10.0.0.4", "etcd4", &["etcd"]));
    let mut p = pki(&c);
    p.ensure(&grown).unwrap();
    let before = render_plans(&c, &p, &ComponentPaths::under("/opt/bin")).unwrap();
    // The members that started the cluster keep the flags they started with.
    let initial = etcd_initial_cluster(&c).unwrap();
    assert_eq!(initial, "cp1=https://192.168.0.1:2380,etcd2=https://192.168.0.2:2380");
    let joins: BTreeMap<String, EtcdJoin> = [
        ("cp1".to_owned(), EtcdJoin { initial_cluster: initial.clone(), existing: false }),
        ("etcd2".to_owned(), EtcdJoin { initial_cluster: initial.clone(), existing: false }),
        (
            "etcd4".to_owned(),
            EtcdJoin {
                initial_cluster: format!("{initial},etcd4={}", etcd_peer_url(&grown.nodes[3])),
                existing: true,
            },
        ),
    ]
    .into();
    let after = render_plans_with(&grown, &p, &ComponentPaths::under("/opt/bin"), &joins).unwrap();
    assert_eq!(after["etcd2"].revision, before["etcd2"].revision, "an existing member is not restarted");
    let joined = proc(&after["etcd4"], "etcd");
    assert_eq!(flag(joined, "initial-cluster-state"), Some("existing"));
    assert!(flag(joined, "initial-cluster").unwrap().ends_with(",etcd4=https://192.168.0.4:2380"));
    // The API servers learn of the new member.
    assert!(
        flag(proc(&after["cp1"], "kube-apiserver"), "etcd-servers").unwrap().contains("192.168.0.4:2379")
    );
}
