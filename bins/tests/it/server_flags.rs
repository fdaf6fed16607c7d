//! `rancher-server`'s flags: the store choice, plain HTTP, and a user-supplied certificate.

use crate::common::{ADMIN_PASSWORD, ServerProc};

#[cfg(not(feature = "etcd"))]
#[test]
fn etcd_store_without_the_feature_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rancher-server"))
        .args(["--store", "etcd", "--etcd-endpoints", "http://127.0.0.1:1", "--https-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("built without etcd support") && stderr.contains("--features etcd"), "{stderr}");
}

#[tokio::test]
async fn insecure_http_serves_plain_http_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&dir.path().join("data"), 0, Some(ADMIN_PASSWORD), &["--insecure-http"]);
    assert!(server.url.starts_with("http://"), "{}", server.url);
    let pong = reqwest::get(format!("{}/ping", server.url)).await.unwrap().text().await.unwrap();
    assert_eq!(pong, "pong");
    assert!(!dir.path().join("data/tls").exists(), "no certificates are made for plain HTTP");
}

#[tokio::test]
async fn a_user_supplied_certificate_is_served_and_its_ca_published() {
    crate::common::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    // A CA and a leaf for 127.0.0.1 made here, as an operator would bring them.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages =
        vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let (cert, key, ca_file) =
        (dir.path().join("tls.crt"), dir.path().join("tls.key"), dir.path().join("ca.crt"));
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    std::fs::write(&ca_file, ca.pem()).unwrap();

    let args = [
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--tls-ca",
        ca_file.to_str().unwrap(),
    ];
    let server = ServerProc::start(&dir.path().join("data"), 0, Some(ADMIN_PASSWORD), &args);
    let client = crate::common::client(&ca.pem());
    let setting: serde_json::Value =
        client.get(format!("{}/v3/settings/cacerts", server.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(setting["value"].as_str().unwrap(), ca.pem());
    assert!(!dir.path().join("data/tls/ca.crt").exists(), "no CA is generated when one is given");
}
