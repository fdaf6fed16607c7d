use std::collections::BTreeMap;

use base64::Engine as _;
use rancher_core::model::RkeNode;
use x509_parser::prelude::{FromDer as _, ParsedExtension, X509Certificate};

use super::super::*;
use super::*;
use crate::plan::NodePlan;
use crate::rke_plans::{ComponentPaths, admin_kubeconfig, render_plans};

fn node(address: &str, name: &str, roles: &[&str]) -> RkeNode {
    RkeNode {
        address: address.into(),
        hostname_override: name.into(),
        role: roles.iter().map(|r| (*r).to_owned()).collect(),
        ..Default::default()
    }
}

fn three_hosts() -> RkeConfig {
    RkeConfig {
        nodes: vec![
            node("10.0.0.1", "cp1", &["etcd", "controlplane"]),
            node("10.0.0.2", "etcd2", &["etcd"]),
            node("10.0.0.3", "w3", &["worker"]),
        ],
        prefix_path: "/opt/rke".into(),
        ..Default::default()
    }
}

fn ensured(c: &RkeConfig) -> ClusterPki {
    let mut p = ClusterPki::new();
    p.ensure(c).unwrap();
    p
}

fn plans(c: &RkeConfig, p: &ClusterPki) -> BTreeMap<String, NodePlan> {
    render_plans(c, p, &ComponentPaths::under("/opt/bin")).unwrap()
}

/// The certificates (DER) of a PEM text, in order.
fn ders(pem: &str) -> Vec<Vec<u8>> {
    x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()).map(|p| p.unwrap().contents).collect()
}

fn der(pem: &str) -> Vec<u8> {
    let all = ders(pem);
    assert_eq!(all.len(), 1, "one certificate");
    all.into_iter().next().unwrap()
}

/// A file of a plan, decoded.
fn file(plan: &NodePlan, base: &str) -> String {
    let path = format!("/opt/rke/etc/kubernetes/ssl/{base}");
    let f = plan.files.iter().find(|f| f.path == path).unwrap_or_else(|| panic!("no {path}"));
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(&f.content).unwrap()).unwrap()
}

/// Whether the certificate `leaf` names the CA `ca` (both PEM) as its issuer: its authority key
/// identifier is the CA's subject key identifier (old and new CAs share their subject, not their key).
fn signed_by(leaf: &str, ca: &str) -> bool {
    let (leaf, ca) = (der(leaf), der(ca));
    let (_, leaf) = X509Certificate::from_der(&leaf).unwrap();
    let (_, ca) = X509Certificate::from_der(&ca).unwrap();
    let aki = leaf.extensions().iter().find_map(|e| match e.parsed_extension() {
        ParsedExtension::AuthorityKeyIdentifier(a) => a.key_identifier.as_ref().map(|k| k.0.to_vec()),
        _ => None,
    });
    let ski = ca.extensions().iter().find_map(|e| match e.parsed_extension() {
        ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
        _ => None,
    });
    assert!(aki.is_some() && ski.is_some(), "key identifiers");
    aki == ski
}

const CA_FILES: [(&str, &str); 3] = [
    (KUBE_CA, "kube-ca.pem"),
    (ETCD_CA, "kube-etcd-ca.pem"),
    (FRONT_PROXY_CA, "kube-apiserver-requestheader-ca.pem"),
];
/// Leaf files of cp1 (etcd + controlplane) and the CA that signs each.
const CP_LEAVES: [(&str, &str); 6] = [
    ("kube-apiserver.pem", KUBE_CA),
    ("kube-apiserver-etcd-client.pem", ETCD_CA),
    ("kube-apiserver-proxy-client.pem", FRONT_PROXY_CA),
    ("kube-etcd-peer.pem", ETCD_CA),
    ("kube-controller-manager.pem", KUBE_CA),
    ("kube-node.pem", KUBE_CA),
];

#[test]
fn a_new_ca_rolls_in_three_phases_trusting_both_in_between() {
    let c = three_hosts();
    let mut pki = ensured(&c);
    let old = pki.clone();
    let old_sa = pki.service_account_key().unwrap().clone();
    let before = plans(&c, &pki);
    assert_eq!(pki.rotation_phase(), None);
    assert!(!pki.advance().unwrap(), "nothing to advance");

    // 1. Trust both: CA files hold new + old; leaves unchanged.
    pki.rotate(&c, &RotateScope { new_ca: true, services: vec![] }).unwrap();
    assert_eq!(pki.rotation_phase(), Some(RotationPhase::TrustBoth));
    let p1 = plans(&c, &pki);
    let mut new_cas = BTreeMap::new();
    for (ca, base) in CA_FILES {
        let held = ders(&file(&p1["cp1"], base));
        assert_eq!(held.len(), 2, "{base} holds two CAs");
        assert_eq!(held[1], der(&old.get(ca).unwrap().cert_pem), "{base}: the old CA second");
        assert_ne!(held[0], held[1]);
        new_cas.insert(ca, held[0].clone());
    }
    assert_eq!(ders(&file(&p1["w3"], "kube-ca.pem")).len(), 2, "workers trust both too");
    for (leaf, _) in CP_LEAVES {
        assert_eq!(file(&p1["cp1"], leaf), file(&before["cp1"], leaf), "{leaf} is still the old one");
    }
    // The signer gets the CA of its key alone.
    let signing = file(&p1["cp1"], "kube-ca-signing.pem");
    assert_eq!(signing, old.get(KUBE_CA).unwrap().cert_pem);
    let cm = p1["cp1"].processes.iter().find(|p| p.name == "kube-controller-manager").unwrap();
    assert!(
        cm.args
            .contains(&"--cluster-signing-cert-file=/opt/rke/etc/kubernetes/ssl/kube-ca-signing.pem".into())
    );
    for (name, plan) in &p1 {
        assert_ne!(plan.revision, before[name].revision, "{name} rolls");
    }

    // 2. New leaves from the new CAs, CA files still both; kubeconfigs follow.
    assert!(pki.advance().unwrap());
    assert_eq!(pki.rotation_phase(), Some(RotationPhase::NewLeaves));
    let p2 = plans(&c, &pki);
    for (ca, base) in CA_FILES {
        let held = ders(&file(&p2["cp1"], base));
        assert_eq!(held, [new_cas[ca].clone(), der(&old.get(ca).unwrap().cert_pem)], "{base}");
        assert_eq!(der(&pki.get(ca).unwrap().cert_pem), new_cas[ca], "{ca} is the new one now");
    }
    for (leaf, ca) in CP_LEAVES {
        let pem = file(&p2["cp1"], leaf);
        assert!(signed_by(&pem, &pki.get(ca).unwrap().cert_pem), "{leaf} by the new {ca}");
        assert!(!signed_by(&pem, &old.get(ca).unwrap().cert_pem), "{leaf} not by the old {ca}");
        let key = leaf.replace(".pem", "-key.pem");
        assert_ne!(file(&p2["cp1"], &key), file(&before["cp1"], &key), "{key}: a new key");
    }
    assert!(signed_by(&file(&p2["w3"], "kube-node.pem"), &pki.get(KUBE_CA).unwrap().cert_pem));
    assert_eq!(file(&p2["cp1"], "kube-ca-signing.pem"), pki.get(KUBE_CA).unwrap().cert_pem);
    assert_ne!(file(&p2["cp1"], "kube-ca-key.pem"), file(&p1["cp1"], "kube-ca-key.pem"), "the new CA's key");
    let kubeconfig = admin_kubeconfig(&c, &pki, "https://10.0.0.1:6443").unwrap();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    assert!(kubeconfig.contains(&b64(&pki.get(ADMIN).unwrap().cert_pem)), "re-issued admin certificate");
    assert!(kubeconfig.contains(&b64(&pki.trust_bundle(KUBE_CA).unwrap())), "trusting both");
    // The service-account key and the etcd token stay: tokens and the etcd cluster survive.
    assert_eq!(pki.service_account_key(), Some(&old_sa));
    assert_eq!(pki.etcd_cluster_token(), old.etcd_cluster_token());
    assert_eq!(file(&p2["cp1"], "kube-service-account-token-key.pem"), old_sa.expose());

    // 3. Drop the old CAs.
    assert!(pki.advance().unwrap());
    assert_eq!(pki.rotation_phase(), None);
    let p3 = plans(&c, &pki);
    for (ca, base) in CA_FILES {
        assert_eq!(ders(&file(&p3["cp1"], base)), [new_cas[ca].clone()], "{base}: the new CA only");
    }
    assert!(!p3["cp1"].files.iter().any(|f| f.path.ends_with("kube-ca-signing.pem")));
    for (name, plan) in &p3 {
        assert_ne!(plan.revision, p2[name].revision, "{name} rolls");
    }
    assert!(!pki.advance().unwrap(), "the rotation is over");
    assert_eq!(pki.service_account_key(), Some(&old_sa));

    // The phases survive the store (and a PKI stored before rotations existed loads).
    let mut mid = old.clone();
    mid.rotate(&c, &RotateScope { new_ca: true, services: vec![] }).unwrap();
    let back: ClusterPki = serde_json::from_str(&serde_json::to_string(&mid).unwrap()).unwrap();
    assert_eq!(back, mid);
    let mut legacy = serde_json::to_value(&old).unwrap();
    legacy.as_object_mut().unwrap().remove("rotation");
    assert_eq!(serde_json::from_value::<ClusterPki>(legacy).unwrap(), old);
    assert!(!format!("{mid:?}").contains("PRIVATE KEY"), "{mid:?}");
}

#[test]
fn a_rotation_without_a_new_ca_is_one_step_and_can_be_one_service() {
    let c = three_hosts();
    let mut pki = ensured(&c);
    let old = pki.clone();
    let before = plans(&c, &pki);

    pki.rotate(&c, &RotateScope { new_ca: false, services: vec!["kube-scheduler".into()] }).unwrap();
    assert_eq!(pki.rotation_phase(), None, "one step");
    assert!(!pki.advance().unwrap());
    for info in old.certificates() {
        let (was, is) = (old.get(&info.name).unwrap(), pki.get(&info.name).unwrap());
        if info.name == SCHEDULER {
            assert_ne!(was.cert_pem, is.cert_pem);
            assert_ne!(was.key_pem, is.key_pem, "a new key");
            assert!(signed_by(&is.cert_pem, &pki.get(KUBE_CA).unwrap().cert_pem));
        } else {
            assert_eq!(was, is, "{} untouched", info.name);
        }
    }
    let after = plans(&c, &pki);
    assert_ne!(after["cp1"].revision, before["cp1"].revision, "the controlplane host rolls");
    assert_eq!(after["etcd2"].revision, before["etcd2"].revision);
    assert_eq!(after["w3"].revision, before["w3"].revision);
    // On cp1 only the scheduler restarts: only its certificate digest changed.
    let env = |plans: &BTreeMap<String, NodePlan>, p: &str| {
        plans["cp1"].processes.iter().find(|x| x.name == p).unwrap().env.clone()
    };
    for p in ["etcd", "kube-apiserver", "kube-controller-manager", "kubelet"] {
        assert_eq!(env(&after, p), env(&before, p), "{p}");
    }
    assert_ne!(env(&after, "kube-scheduler"), env(&before, "kube-scheduler"));

    // etcd: the etcd hosts only.
    let before = after;
    pki.rotate(&c, &RotateScope { new_ca: false, services: vec!["etcd".into()] }).unwrap();
    let after = plans(&c, &pki);
    assert_ne!(after["cp1"].revision, before["cp1"].revision);
    assert_ne!(after["etcd2"].revision, before["etcd2"].revision);
    assert_eq!(after["w3"].revision, before["w3"].revision);
    assert_eq!(pki.get(APISERVER_ETCD_CLIENT), old.get(APISERVER_ETCD_CLIENT), "the API server's");

    // All: every leaf, no CA, the service-account key kept.
    let mid = pki.clone();
    pki.rotate(&c, &RotateScope::default()).unwrap();
    for info in mid.certificates() {
        let same = mid.get(&info.name) == pki.get(&info.name);
        let is_ca = [KUBE_CA, ETCD_CA, FRONT_PROXY_CA].contains(&info.name.as_str());
        assert_eq!(same, is_ca, "{}", info.name);
    }
    assert_eq!(pki.service_account_key(), old.service_account_key());
    let after_all = plans(&c, &pki);
    for (name, plan) in &after_all {
        assert_ne!(plan.revision, after[name].revision, "{name}");
    }
}

#[test]
fn a_rotation_asked_wrongly_is_refused_and_changes_nothing() {
    let c = three_hosts();
    let mut pki = ensured(&c);
    let old = pki.clone();
    let err =
        pki.rotate(&c, &RotateScope { new_ca: false, services: vec!["kube-proxy".into()] }).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown service \"kube-proxy\" to rotate certificates of (known: etcd, kube-apiserver, \
         kube-controller-manager, kube-scheduler, kubelet; these clusters run no kube-proxy)"
    );
    let err = pki.rotate(&c, &RotateScope { new_ca: false, services: vec!["etcd".into(), "dns".into()] });
    assert!(matches!(err, Err(PkiError::UnknownService { name, .. }) if name == "dns"));
    let err = pki.rotate(&c, &RotateScope { new_ca: true, services: vec!["etcd".into()] }).unwrap_err();
    assert!(err.to_string().contains("name no services"), "{err}");
    assert_eq!(pki, old);

    pki.rotate(&c, &RotateScope { new_ca: true, services: vec![] }).unwrap();
    let mid = pki.clone();
    let err = pki.rotate(&c, &RotateScope::default()).unwrap_err();
    assert!(err.to_string().contains("under way (phase TrustBoth)"), "{err}");
    assert_eq!(pki, mid);
}

#[test]
fn hosts_added_during_a_ca_rotation_get_what_the_phase_says() {
    let mut c = three_hosts();
    let mut pki = ensured(&c);
    pki.rotate(&c, &RotateScope { new_ca: true, services: vec![] }).unwrap();
    c.nodes.push(node("10.0.0.4", "w4", &["worker"]));
    assert!(pki.ensure(&c).unwrap());
    let p = plans(&c, &pki);
    assert_eq!(ders(&file(&p["w4"], "kube-ca.pem")).len(), 2);
    // Trust both: the old CA still signs.
    assert!(signed_by(&pki.get("kube-node-w4").unwrap().cert_pem, &pki.get(KUBE_CA).unwrap().cert_pem));
    let old_ca = pki.get(KUBE_CA).unwrap().cert_pem.clone();
    assert!(pki.advance().unwrap());
    assert!(!signed_by(&pki.get("kube-node-w4").unwrap().cert_pem, &old_ca), "issued by the new CA");
    c.nodes.push(node("10.0.0.5", "w5", &["worker"]));
    assert!(pki.ensure(&c).unwrap());
    assert!(signed_by(&pki.get("kube-node-w5").unwrap().cert_pem, &pki.get(KUBE_CA).unwrap().cert_pem));
}
