//! kubectl workflows beyond the acceptance flow: get/describe, apply changes and server-side apply,
//! watch, logs -f, port-forward, create token, and the import manifest the server hands out.

use std::time::Duration;

use crate::common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_all_wide_and_describe() {
    let sim = start_sim(2).await;
    let (_d, deploy) = manifest(DEPLOYMENT);
    for v in VERSIONS {
        let k = Kubectl::new(v, &sim.kubeconfig_yaml());
        k.ok(&["apply", "-f", &deploy]).await;
        wait_running(&k, "default", "app=web", 2).await;
        let all = k.ok(&["get", "pods", "-A"]).await;
        assert!(all.starts_with("NAMESPACE"), "{all}");
        assert!(
            all.lines().any(|l| l.starts_with("default") && l.contains("1/1") && l.contains("Running")),
            "{all}"
        );
        let wide = k.ok(&["get", "pods", "-o", "wide"]).await;
        assert!(wide.contains("NODE") && wide.contains("10.244."), "{wide}");
        let d = k.ok(&["get", "deploy", "web"]).await;
        assert!(d.contains("UP-TO-DATE") && d.contains("2/2"), "{d}");
        let described = k.ok(&["describe", "deployment", "web"]).await;
        assert!(described.contains("Replicas:") && described.contains("nginx:1.25"), "{described}");
        let node = k.ok(&["describe", "node", "rancher-sim-worker"]).await;
        assert!(node.contains("Capacity:") && node.contains("16Gi"), "{node}");
        let pod = k.ok(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[0].metadata.name}"]).await;
        let described = k.ok(&["describe", "pod", &pod]).await;
        assert!(described.contains("Status:") && described.contains("Running"), "{described}");
        k.ok(&["delete", "-f", &deploy]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_change_reapply_and_server_side() {
    let sim = start_sim(1).await;
    for v in VERSIONS {
        let k = Kubectl::new(v, &sim.kubeconfig_yaml());
        let (_d, deploy) = manifest(DEPLOYMENT);
        k.ok(&["apply", "-f", &deploy]).await;
        assert!(k.ok(&["apply", "-f", &deploy]).await.contains("unchanged"));
        let (_d2, changed) =
            manifest(&DEPLOYMENT.replace("nginx:1.25", "nginx:1.27").replace("replicas: 2", "replicas: 3"));
        assert!(k.ok(&["apply", "-f", &changed]).await.contains("configured"));
        wait_running(&k, "default", "app=web", 3).await;
        let images = k
            .ok(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].spec.containers[0].image}"])
            .await;
        assert!(images.split_whitespace().all(|i| i == "nginx:1.27"), "{images}");
        // The env list was merged by name, not duplicated.
        let env = k
            .ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].env[*].name}"])
            .await;
        assert_eq!(env, "GREETING");

        let cm =
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa, namespace: default}\ndata: {a: '1'}\n";
        let (_d3, cmf) = manifest(cm);
        assert!(k.ok(&["apply", "--server-side", "-f", &cmf]).await.contains("serverside-applied"));
        let (_d4, cmf2) = manifest(&cm.replace("a: '1'", "a: '2', b: '3'"));
        k.ok(&["apply", "--server-side", "-f", &cmf2]).await;
        assert_eq!(k.ok(&["get", "cm", "ssa", "-o", "jsonpath={.data.a}{.data.b}"]).await, "23");
        k.ok(&["delete", "-f", &deploy, "-f", &cmf]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_sees_a_change() {
    let sim = start_sim(1).await;
    for v in VERSIONS {
        let k = Kubectl::new(v, &sim.kubeconfig_yaml());
        let name = format!("w{}", v.replace('.', ""));
        k.ok(&["create", "configmap", &name, "--from-literal=k=v1"]).await;
        let mut watch = k.spawn(&["get", "configmap", &name, "-w", "-o", "jsonpath={.data.k}{\"\\n\"}"]);
        read_until(&mut watch, Duration::from_secs(30), |l| l.trim() == "v1").await;
        k.ok(&["patch", "configmap", &name, "-p", r#"{"data":{"k":"v2"}}"#]).await;
        read_until(&mut watch, Duration::from_secs(30), |l| l.trim() == "v2").await;
        let _ = watch.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_and_tail() {
    let sim = start_sim(1).await;
    for v in VERSIONS {
        let k = Kubectl::new(v, &sim.kubeconfig_yaml());
        let pod = format!("logger{}", v.replace('.', ""));
        k.ok(&["run", &pod, "--image=busybox:1.36", "--restart=Never"]).await;
        wait_running(&k, "default", &format!("run={pod}"), 1).await;
        let logs = k.ok(&["logs", &pod]).await;
        assert!(logs.contains("ready"), "{logs}");
        assert_eq!(k.ok(&["logs", &pod, "--tail=1"]).await.lines().count(), 1);
        let mut follow = k.spawn(&["logs", "-f", &pod]);
        read_until(&mut follow, Duration::from_secs(30), |l| l.contains("heartbeat")).await;
        let _ = follow.kill().await;
        k.ok(&["delete", "pod", &pod]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_exit_codes_and_stdin() {
    let sim = start_sim(1).await;
    for v in VERSIONS {
        let k = Kubectl::new(v, &sim.kubeconfig_yaml());
        let pod = format!("sh{}", v.replace('.', ""));
        k.ok(&["run", &pod, "--image=busybox:1.36", "--restart=Never", "--env=COLOR=blue"]).await;
        wait_running(&k, "default", &format!("run={pod}"), 1).await;
        assert_eq!(
            k.ok(&["exec", &pod, "--", "sh", "-c", "echo $COLOR; hostname"]).await,
            format!("blue\n{pod}\n")
        );
        let failed = k.run(&["exec", &pod, "--", "sh", "-c", "exit 3"]).await;
        assert_eq!(failed.code, Some(3), "{failed:?}");
        let cat = k.run_with_stdin(&["exec", "-i", &pod, "--", "cat"], "from stdin\n").await;
        assert_eq!(cat.stdout, "from stdin\n", "{cat:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_reaches_the_echo_server() {
    let sim = start_sim(1).await;
    for v in VERSIONS {
        let k = Kubectl::new(v, &sim.kubeconfig_yaml());
        let pod = format!("pf{}", v.replace('.', ""));
        k.ok(&["run", &pod, "--image=nginx:1.25", "--port=80", "--restart=Never"]).await;
        wait_running(&k, "default", &format!("run={pod}"), 1).await;
        let mut pf = k.spawn(&["port-forward", &format!("pod/{pod}"), ":80"]);
        let lines =
            read_until(&mut pf, Duration::from_secs(30), |l| l.contains("Forwarding from 127.0.0.1:")).await;
        let line = lines.last().expect("a line");
        let port: u16 = line
            .split("127.0.0.1:")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|p| p.parse().ok())
            .expect("port");
        for round in 0..2 {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
            let msg = format!("ping {round} through {v}");
            s.write_all(msg.as_bytes()).await.expect("write");
            let mut buf = vec![0u8; msg.len()];
            tokio::time::timeout(Duration::from_secs(20), s.read_exact(&mut buf))
                .await
                .expect("echo in time")
                .expect("read");
            assert_eq!(String::from_utf8_lossy(&buf), msg);
        }
        let _ = pf.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_token_authenticates_the_service_account() {
    let sim = start_sim(1).await;
    for v in VERSIONS {
        let k = Kubectl::new(v, &sim.kubeconfig_yaml());
        let sa = format!("robot{}", v.replace('.', ""));
        k.ok(&["create", "serviceaccount", &sa]).await;
        let token = k.ok(&["create", "token", &sa]).await.trim().to_string();
        assert_eq!(token.split('.').count(), 3, "a JWT-shaped token: {token}");
        let as_sa = Kubectl::new(v, &sim.kubeconfig_for_token(&token));
        let err = as_sa.fails(&["get", "secrets"]).await.stderr;
        assert!(
            err.contains(&format!("system:serviceaccount:default:{sa}")) && err.contains("forbidden"),
            "{err}"
        );
        k.ok(&[
            "create",
            "rolebinding",
            &format!("{sa}-view"),
            "--clusterrole=view",
            &format!("--serviceaccount=default:{sa}"),
        ])
        .await;
        assert!(
            within(Duration::from_secs(20), || async { as_sa.run(&["get", "pods"]).await.ok }).await,
            "view binding never took effect"
        );
        // Deleting the account invalidates its tokens.
        k.ok(&["delete", "serviceaccount", &sa]).await;
        let err = as_sa.fails(&["get", "pods"]).await.stderr;
        assert!(err.contains("Unauthorized"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_manifest_applies_and_secret_jsonpath_prints() {
    let sim = start_sim(2).await;
    let manifest_yaml = r#"apiVersion: v1
kind: Namespace
metadata: {name: cattle-system}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: cattle, namespace: cattle-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: proxy-clusterrole-kubeapiserver}
rules:
- apiGroups: [""]
  resources: [nodes/metrics, nodes/proxy, nodes/stats, nodes/log, nodes/spec]
  verbs: [get, list, watch, create]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: cattle-admin-binding}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects:
- {kind: ServiceAccount, name: cattle, namespace: cattle-system}
---
apiVersion: v1
kind: Secret
metadata: {name: cattle-credentials-abc, namespace: cattle-system}
type: Opaque
data:
  url: aHR0cHM6Ly8xMjcuMC4wLjE6ODQ0Mw==
  token: c2VjcmV0LXRva2Vu
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: cattle-cluster-agent, namespace: cattle-system}
spec:
  selector: {matchLabels: {app: cattle-cluster-agent}}
  template:
    metadata: {labels: {app: cattle-cluster-agent}}
    spec:
      serviceAccountName: cattle
      containers:
      - name: cluster-register
        image: rancher/rancher-agent:v2.11
        env:
        - {name: CATTLE_SERVER, value: "https://127.0.0.1:8443"}
---
apiVersion: v1
kind: Service
metadata: {name: cattle-cluster-agent, namespace: cattle-system}
spec:
  ports: [{port: 80, targetPort: 80, protocol: TCP, name: http}]
  selector: {app: cattle-cluster-agent}
"#;
    let (_d, path) = manifest(manifest_yaml);
    for v in VERSIONS {
        let k = Kubectl::new(v, &sim.kubeconfig_yaml());
        let out = k.ok(&["apply", "-f", &path]).await;
        assert_eq!(out.lines().count(), 7, "{out}");
        let token = k
            .ok(&[
                "-n",
                "cattle-system",
                "get",
                "secret",
                "-o",
                "jsonpath={.items[?(@.data.url)].data.token}",
            ])
            .await;
        assert_eq!(token.trim(), "c2VjcmV0LXRva2Vu");
        wait_running(&k, "cattle-system", "app=cattle-cluster-agent", 1).await;
        let eps = k.ok(&["-n", "cattle-system", "get", "endpoints", "cattle-cluster-agent"]).await;
        assert!(eps.contains("10.244."), "{eps}");
    }
}
