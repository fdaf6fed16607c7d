//! Real kubectl (1.27 and 1.33) through the composed proxy, served on loopback HTTPS, to a real
//! `rancher-sim` cluster whose admin token the proxy uses to impersonate. The sim evaluates RBAC for
//! the impersonated identity, so refusals here come from the downstream cluster, as they would from a
//! real API server.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::proxy_support::{Pki, start_proxy};
use base64::Engine as _;
use rancher_auth::proxy::{self, AuditLayer, ForwardConfig, StaticUpstreams, Upstream, UserInfo};
use rancher_sim::{Sim, SimHandle};
use rancher_test_support::kubectl::{Kubectl, PATIENCE, VERSIONS, read_until};

const ADMIN_TOKEN: &str = "token-admin:adminsecret0123456789";
const BOB_TOKEN: &str = "token-bob:bobsecret0123456789";

struct Setup {
    sim: SimHandle,
    kubeconfig_dir: tempfile::TempDir,
    proxy_url: String,
    proxy_ca_pem: String,
}

async fn setup() -> Setup {
    let sim = Sim::builder().nodes(2).start().await.expect("sim starts");
    let pki = Pki::new();
    let admin = UserInfo {
        username: "u-admin".into(),
        uid: "u-admin".into(),
        groups: vec!["system:masters".into()],
        extra: BTreeMap::from([("principalid".into(), vec!["local://u-admin".into()])]),
    };
    let bob =
        UserInfo { username: "u-bob".into(), groups: vec!["local://g-nobody".into()], ..Default::default() };
    let users = proxy::StaticAuthenticator::new().with_token(ADMIN_TOKEN, admin).with_token(BOB_TOKEN, bob);
    let access = proxy::StaticClusterAccess::new().allow("c1", "u-admin").allow("c1", "u-bob");
    let upstreams = StaticUpstreams::new().with(
        "c1",
        Upstream {
            base_url: sim.url().parse().unwrap(),
            connector: proxy::tcp_connector(),
            long_running_connector: None,
            tls: Some(client_tls(sim.ca_pem())),
            bearer_token: Some(sim.admin_token().to_owned()),
        },
    );
    let service =
        proxy::proxy_service(users, access, upstreams, AuditLayer::disabled(), ForwardConfig::default());
    let addr = start_proxy(&pki, service).await;
    Setup {
        sim,
        kubeconfig_dir: tempfile::tempdir().unwrap(),
        proxy_url: format!("https://{addr}/k8s/clusters/c1"),
        proxy_ca_pem: pki.cert_pem.clone(),
    }
}

fn client_tls(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    Arc::new(rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth())
}

impl Setup {
    fn kubectl(&self, version: &'static str, token: &str) -> Kubectl {
        let who = if token == ADMIN_TOKEN { "admin" } else { "bob" };
        let home = self.kubeconfig_dir.path().join(format!("{who}-{version}"));
        std::fs::create_dir_all(&home).unwrap();
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.proxy_ca_pem);
        let kubeconfig = home.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: c1\n  cluster:\n    server: {}\n    \
                 certificate-authority-data: {ca}\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n\
                 - name: c1\n  context:\n    cluster: c1\n    user: u\ncurrent-context: c1\n",
                self.proxy_url
            ),
        )
        .unwrap();
        Kubectl::at(version, &kubeconfig, &home)
    }

    /// Creates a pod directly on the sim (not through the proxy).
    async fn create_pod_directly(&self, name: &str) {
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured((*client_tls(self.sim.ca_pem())).clone())
            .build()
            .unwrap();
        let pod = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]},
        });
        let resp = client
            .post(format!("{}/api/v1/namespaces/default/pods", self.sim.url()))
            .bearer_auth(self.sim.admin_token())
            .json(&pod)
            .timeout(PATIENCE)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "{:?}", resp.text().await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_gets_watches_and_execs_through_the_proxy() {
    let s = setup().await;
    for version in VERSIONS {
        let k = s.kubectl(version, ADMIN_TOKEN);
        let nodes = k.ok(&["get", "nodes"]).await;
        assert!(nodes.starts_with("NAME") && nodes.lines().count() == 3, "{version}: {nodes}");

        // The watch must deliver an event that happens after it started, with no proxy buffering.
        let mut watch = k.spawn(&["get", "pods", "-n", "default", "-w", "--no-headers"]);
        let ns = k.ok(&["get", "namespace", "default", "-o", "name"]).await;
        assert_eq!(ns.trim(), "namespace/default");
        let pod = format!("direct-{}", version.replace('.', ""));
        s.create_pod_directly(&pod).await;
        read_until(&mut watch, PATIENCE, |l| l.starts_with(&pod)).await;
        let _ = watch.kill().await;

        k.wait_running(&pod).await;
        // SPDY/3.1 for 1.27, WebSocket (v5.channel.k8s.io) for 1.33: both spliced after the 101.
        assert_eq!(k.ok(&["exec", &pod, "--", "echo", "hi"]).await, "hi\n", "{version}");
        let mut follow = k.spawn(&["logs", "-f", &pod]);
        read_until(&mut follow, PATIENCE, |l| !l.is_empty()).await;
        let _ = follow.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sim_decides_for_the_impersonated_user_and_forged_headers_gain_nothing() {
    let s = setup().await;
    for version in VERSIONS {
        let admin = s.kubectl(version, ADMIN_TOKEN);
        let bob = s.kubectl(version, BOB_TOKEN);
        assert_eq!(admin.ok(&["auth", "can-i", "delete", "nodes"]).await.trim(), "yes");
        let whoami_denied = bob.fails(&["auth", "can-i", "list", "pods"]).await;
        assert_eq!(whoami_denied.stdout.trim(), "no", "{version}: {whoami_denied:?}");

        let refused = bob.fails(&["get", "pods"]).await;
        assert!(
            refused.stderr.contains("Forbidden") && refused.stderr.contains("u-bob"),
            "{version}: the sim should refuse u-bob: {}",
            refused.stderr
        );
        // kubectl --as sends Impersonate-User / Impersonate-Group; the proxy drops them.
        let forged = bob.fails(&["--as", "admin", "--as-group", "system:masters", "get", "pods"]).await;
        assert!(
            forged.stderr.contains("u-bob") && !forged.stderr.contains("\"admin\""),
            "{version}: {}",
            forged.stderr
        );
        let forged_can_i = bob.fails(&["--as", "admin", "auth", "can-i", "list", "secrets"]).await;
        assert_eq!(forged_can_i.stdout.trim(), "no");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_and_port_forwards_through_the_proxy() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = setup().await;
    let manifest = s.kubeconfig_dir.path().join("cm.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: greeting}\ndata: {hello: world}\n",
    )
    .unwrap();
    for version in VERSIONS {
        let k = s.kubectl(version, ADMIN_TOKEN);
        // apply fetches the OpenAPI schema and server-side validates: all through the proxy.
        k.ok(&["apply", "-f", manifest.to_str().unwrap()]).await;
        assert_eq!(k.ok(&["get", "configmap", "greeting", "-o", "jsonpath={.data.hello}"]).await, "world");

        let pod = format!("pf{}", version.replace('.', ""));
        k.ok(&["run", &pod, "--image=nginx:1.25", "--port=80", "--restart=Never"]).await;
        k.wait_running(&pod).await;
        let mut pf = k.spawn(&["port-forward", &format!("pod/{pod}"), ":80"]);
        let lines = read_until(&mut pf, PATIENCE, |l| l.contains("Forwarding from 127.0.0.1:")).await;
        let port: u16 = lines
            .last()
            .and_then(|l| l.split("127.0.0.1:").nth(1))
            .and_then(|r| r.split(' ').next())
            .and_then(|p| p.parse().ok())
            .expect("forwarded port");
        for round in 0..2 {
            let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            let msg = format!("ping {round} via kubectl {version}");
            conn.write_all(msg.as_bytes()).await.unwrap();
            let mut buf = vec![0u8; msg.len()];
            tokio::time::timeout(PATIENCE, conn.read_exact(&mut buf)).await.expect("echo in time").unwrap();
            assert_eq!(String::from_utf8_lossy(&buf), msg);
        }
        let _ = pf.kill().await;
    }
}
