use rancher_core::model::RkeNode;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer as _, X509Certificate};

use super::*;

fn node(address: &str, name: &str, roles: &[&str]) -> RkeNode {
    RkeNode {
        address: address.into(),
        internal_address: format!("192.168.0.{}", address.rsplit('.').next().unwrap()),
        hostname_override: name.into(),
        role: roles.iter().map(|r| (*r).to_owned()).collect(),
        ..Default::default()
    }
}

fn cfg(nodes: Vec<RkeNode>) -> RkeConfig {
    let mut c = RkeConfig { nodes, ..Default::default() };
    c.authentication.sans = vec!["k8s.example.org".into()];
    c
}

/// Subject CN, subject O, SANs (as text), issuer CN, and validity in days.
fn inspect(pem: &str) -> (String, Option<String>, Vec<String>, String, i64) {
    let der = pem_der(pem);
    let (_, c) = X509Certificate::from_der(&der).unwrap();
    let cn = |n: &x509_parser::x509::X509Name<'_>| {
        n.iter_common_name().next().unwrap().as_str().unwrap().to_owned()
    };
    let org = c.subject().iter_organization().next().map(|o| o.as_str().unwrap().to_owned());
    let sans = c
        .subject_alternative_name()
        .unwrap()
        .map(|s| {
            s.value
                .general_names
                .iter()
                .map(|g| match g {
                    GeneralName::DNSName(d) => (*d).to_owned(),
                    GeneralName::IPAddress(ip) if ip.len() == 4 => {
                        std::net::Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]).to_string()
                    }
                    other => format!("{other:?}"),
                })
                .collect()
        })
        .unwrap_or_default();
    let days = (c.validity().not_after.timestamp() - c.validity().not_before.timestamp()) / 86_400;
    (cn(c.subject()), org, sans, cn(c.issuer()), days)
}

fn pem_der(pem: &str) -> Vec<u8> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    p.contents
}

fn three_hosts() -> RkeConfig {
    cfg(vec![
        node("10.0.0.1", "cp1", &["etcd", "controlplane"]),
        node("10.0.0.2", "etcd2", &["etcd"]),
        node("10.0.0.3", "w3", &["worker"]),
    ])
}

#[test]
fn ensure_makes_every_certificate_once_and_round_trips() {
    let c = three_hosts();
    let mut pki = ClusterPki::new();
    assert!(pki.ensure(&c).unwrap());
    let names: Vec<String> = pki.certificates().into_iter().map(|i| i.name).collect();
    for want in [
        KUBE_CA,
        ETCD_CA,
        FRONT_PROXY_CA,
        KUBE_APISERVER,
        APISERVER_ETCD_CLIENT,
        APISERVER_KUBELET_CLIENT,
        FRONT_PROXY_CLIENT,
        CONTROLLER_MANAGER,
        SCHEDULER,
        ADMIN,
        CLUSTER_AGENT,
        "kube-etcd-peer-cp1",
        "kube-etcd-server-cp1",
        "kube-etcd-peer-etcd2",
        "kube-etcd-server-etcd2",
        "kube-node-cp1",
        "kube-node-etcd2",
        "kube-node-w3",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
    }
    assert!(!names.iter().any(|n| n == "kube-etcd-peer-w3"), "a worker has no etcd certificates");
    assert!(pki.service_account_key().is_some() && !pki.etcd_cluster_token().is_empty());
    assert!(pki.service_account_public_pem().unwrap().contains("PUBLIC KEY"));

    let before = pki.clone();
    assert!(!pki.ensure(&c).unwrap(), "nothing to do the second time");
    assert_eq!(pki, before);
    let json = serde_json::to_string(&pki).unwrap();
    let back: ClusterPki = serde_json::from_str(&json).unwrap();
    assert_eq!(back, pki);
    let shown = format!("{pki:?}");
    assert!(shown.contains("kube-apiserver") && !shown.contains("PRIVATE KEY"), "{shown}");
    assert!(!format!("{:?}", pki.get(ADMIN).unwrap()).contains("PRIVATE KEY"));
}

#[test]
fn certificates_say_who_they_are_for() {
    let mut pki = ClusterPki::new();
    pki.ensure(&three_hosts()).unwrap();
    let (cn, o, _, issuer, days) = inspect(&pki.get("kube-node-w3").unwrap().cert_pem);
    assert_eq!(
        (cn.as_str(), o.as_deref(), issuer.as_str()),
        ("system:node:w3", Some("system:nodes"), "kube-ca")
    );
    assert!((364..=366).contains(&days), "{days}");
    let (_, _, _, _, ca_days) = inspect(&pki.get(KUBE_CA).unwrap().cert_pem);
    assert!((3650..=3654).contains(&ca_days), "{ca_days}");
    for (name, cn, o) in [
        (CONTROLLER_MANAGER, "system:kube-controller-manager", None),
        (SCHEDULER, "system:kube-scheduler", None),
        (ADMIN, "kube-admin", Some("system:masters")),
        (APISERVER_KUBELET_CLIENT, "kube-apiserver-kubelet-client", Some("system:masters")),
        (CLUSTER_AGENT, "rancher-cluster-agent", Some("system:masters")),
    ] {
        let (got_cn, got_o, _, issuer, _) = inspect(&pki.get(name).unwrap().cert_pem);
        assert_eq!((got_cn.as_str(), got_o.as_deref(), issuer.as_str()), (cn, o, "kube-ca"), "{name}");
    }
    let (_, _, sans, issuer, _) = inspect(&pki.get(KUBE_APISERVER).unwrap().cert_pem);
    assert_eq!(issuer, "kube-ca");
    assert_eq!(
        sans,
        [
            "10.0.0.1",
            "192.168.0.1",
            "k8s.example.org",
            "10.43.0.1",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            "localhost",
            "127.0.0.1"
        ]
    );
    let (_, _, sans, issuer, _) = inspect(&pki.get("kube-etcd-peer-etcd2").unwrap().cert_pem);
    assert_eq!(issuer, "kube-etcd-ca");
    assert_eq!(sans, ["10.0.0.2", "192.168.0.2", "127.0.0.1", "localhost", "etcd2"]);
    let (_, _, _, issuer, _) = inspect(&pki.get(APISERVER_ETCD_CLIENT).unwrap().cert_pem);
    assert_eq!(issuer, "kube-etcd-ca");
    let (_, _, _, issuer, _) = inspect(&pki.get(FRONT_PROXY_CLIENT).unwrap().cert_pem);
    assert_eq!(issuer, "kube-apiserver-requestheader-ca");
    // ECDSA P-256 keys.
    assert!(pki.get(ADMIN).unwrap().key_pem.expose().contains("BEGIN PRIVATE KEY"));
    let key = KeyPair::from_pem(pki.get(ADMIN).unwrap().key_pem.expose()).unwrap();
    assert!(key.is_compatible(&rcgen::PKCS_ECDSA_P256_SHA256));
}

#[test]
fn adding_a_worker_adds_its_certificate_only_and_a_controlplane_renames_the_api_server() {
    let mut c = three_hosts();
    let mut pki = ClusterPki::new();
    pki.ensure(&c).unwrap();
    let before = pki.clone();

    c.nodes.push(node("10.0.0.4", "w4", &["worker"]));
    assert!(pki.ensure(&c).unwrap());
    for info in before.certificates() {
        assert_eq!(pki.get(&info.name), before.get(&info.name), "{} changed", info.name);
    }
    assert_eq!(pki.certificates().len(), before.certificates().len() + 1);
    assert!(pki.get("kube-node-w4").is_some());

    c.nodes.push(node("10.0.0.5", "cp5", &["controlplane"]));
    assert!(pki.ensure(&c).unwrap());
    let (old, new) = (before.get(KUBE_APISERVER).unwrap(), pki.get(KUBE_APISERVER).unwrap());
    assert_ne!(old.cert_pem, new.cert_pem, "issued again for the new controlplane host");
    assert_eq!(old.key_pem, new.key_pem, "with the same key");
    assert!(inspect(&new.cert_pem).2.contains(&"10.0.0.5".to_owned()));
    assert_eq!(pki.get(KUBE_CA), before.get(KUBE_CA), "the CA is kept");

    // A host that leaves takes its certificates along.
    c.nodes.retain(|n| n.hostname_override != "etcd2");
    assert!(pki.ensure(&c).unwrap());
    assert!(pki.get("kube-etcd-peer-etcd2").is_none() && pki.get("kube-node-etcd2").is_none());
}

#[test]
fn a_cluster_without_etcd_or_controlplane_has_no_pki() {
    let mut pki = ClusterPki::new();
    let err = pki.ensure(&cfg(vec![node("10.0.0.1", "a", &["controlplane", "worker"])])).unwrap_err();
    assert_eq!(err.to_string(), "nodes: no node has the etcd role");
    let err = pki.ensure(&cfg(vec![node("10.0.0.1", "a", &["etcd", "boss"])])).unwrap_err();
    assert_eq!(err.to_string(), "nodes[0].role: unknown role \"boss\"");
    assert_eq!(pki, ClusterPki::new(), "nothing made");
}

#[test]
fn a_certificate_about_to_expire_is_issued_again() {
    let c = three_hosts();
    let mut pki = ClusterPki::new();
    pki.ensure(&c).unwrap();
    let before = pki.clone();
    let soon = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24);
    pki.certs.get_mut(ADMIN).unwrap().not_after = soon;
    pki.certs.get_mut(KUBE_CA).unwrap().not_after = soon;
    assert!(pki.ensure(&c).unwrap());
    let admin = pki.get(ADMIN).unwrap();
    assert!(admin.not_after > soon + jiff::SignedDuration::from_hours(24 * 300), "{admin:?}");
    assert_ne!(admin.cert_pem, before.get(ADMIN).unwrap().cert_pem);
    assert_eq!(admin.key_pem, before.get(ADMIN).unwrap().key_pem);
    assert_eq!(pki.get(KUBE_CA).unwrap().cert_pem, before.get(KUBE_CA).unwrap().cert_pem, "a CA is kept");
}
