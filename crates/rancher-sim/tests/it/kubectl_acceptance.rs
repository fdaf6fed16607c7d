//! The acceptance flow, driven by the real kubectl (oldest and newest installed).

use std::time::Duration;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_exec_rbac_and_namespace_deletion() {
    let sim = start_sim(3).await;
    let (_d, deploy) = manifest(DEPLOYMENT);
    for v in VERSIONS {
        let k = Kubectl::new(v, &sim.kubeconfig_yaml());
        let ns = k.ok(&["get", "ns"]).await;
        assert!(ns.contains("kube-system") && ns.contains("Active"), "{ns}");
        let nodes = k.ok(&["get", "nodes", "-o", "wide"]).await;
        assert!(nodes.contains("INTERNAL-IP") && nodes.contains("control-plane"), "{nodes}");
        assert_eq!(nodes.lines().filter(|l| l.contains(" Ready ")).count(), 3, "{nodes}");

        assert!(k.ok(&["apply", "-f", &deploy]).await.contains("deployment.apps/web"));
        wait_running(&k, "default", "app=web", 2).await;
        let hi = k.ok(&["exec", "deploy/web", "--", "echo", "hi"]).await;
        assert_eq!(hi, "hi\n");

        let ns = format!("bar-{}", v.replace('.', ""));
        k.ok(&["create", "ns", &ns]).await;
        k.ok(&["create", "role", "r1", "--verb=get,list", "--resource=pods", "-n", &ns]).await;
        k.ok(&["create", "rolebinding", "rb1", "--role=r1", "--user=alice", "-n", &ns]).await;
        assert_eq!(k.ok(&["auth", "can-i", "list", "pods", "-n", &ns, "--as", "alice"]).await.trim(), "yes");
        let no = k.run(&["auth", "can-i", "delete", "pods", "-n", &ns, "--as", "alice"]).await;
        assert_eq!(no.stdout.trim(), "no");
        let err = k.fails(&["get", "pods", "-n", "default", "--as", "alice"]).await.stderr;
        assert!(
            err.contains(r#"pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "default""#),
            "{err}"
        );
        k.ok(&["get", "pods", "-n", &ns, "--as", "alice"]).await;

        k.ok(&["delete", "ns", &ns, "--wait=true", "--timeout=60s"]).await;
        let gone = k.run(&["get", "ns", &ns]).await;
        assert!(!gone.ok && gone.stderr.contains("NotFound"), "{gone:?}");
        k.ok(&["delete", "-f", &deploy]).await;
        let ok = within(Duration::from_secs(30), || async {
            k.ok(&["get", "pods", "-l", "app=web", "-o", "name"]).await.trim().is_empty()
        })
        .await;
        assert!(ok, "pods of the deleted deployment remain");
        assert!(k.ok(&["get", "rs", "-o", "name"]).await.trim().is_empty(), "replicasets remain");
    }
    sim.shutdown().await;
}
