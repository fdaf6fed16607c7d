//! Node Leases as a kubelet keeps them: one per node in `kube-node-lease`, renewed on schedule,
//! shown by `kubectl describe node` without a warning.

use std::time::Duration;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_node_shows_a_renewed_lease() {
    let sim = rancher_sim::Sim::builder()
        .nodes(2)
        .lease_renew_interval(Duration::from_millis(300))
        .start()
        .await
        .expect("sim");
    for v in VERSIONS {
        let k = Kubectl::new(v, &sim.kubeconfig_yaml());
        let ns = k.ok(&["get", "namespace", "kube-node-lease", "-o", "name"]).await;
        assert_eq!(ns.trim(), "namespace/kube-node-lease");
        let leases = k.ok(&["get", "leases", "-n", "kube-node-lease", "-o", "name"]).await;
        assert_eq!(
            leases,
            "lease.coordination.k8s.io/rancher-sim-control-plane\nlease.coordination.k8s.io/rancher-sim-worker\n"
        );
        let fields = k
            .ok(&[
                "get",
                "lease",
                "-n",
                "kube-node-lease",
                "rancher-sim-worker",
                "-o",
                "jsonpath={.spec.holderIdentity} {.spec.leaseDurationSeconds}",
            ])
            .await;
        assert_eq!(fields, "rancher-sim-worker 40");

        let described = k.run(&["describe", "node", "rancher-sim-worker"]).await;
        assert!(described.ok, "{described:?}");
        assert!(described.stdout.contains("Lease:"), "{}", described.stdout);
        assert!(described.stdout.contains("HolderIdentity:  rancher-sim-worker"), "{}", described.stdout);
        let lease_block: String = described
            .stdout
            .lines()
            .skip_while(|l| !l.starts_with("Lease:"))
            .take(4)
            .collect::<Vec<_>>()
            .join("\n");
        // A kubelet's Lease has no acquireTime (`<unset>`, as on real nodes), but a renewTime.
        assert!(
            !lease_block.contains("Failed") && !lease_block.contains("RenewTime:       <unset>"),
            "{lease_block}"
        );
        assert!(!described.stderr.to_lowercase().contains("lease"), "{}", described.stderr);
        // And the node's own events, as a kubelet and the node controller report them.
        let events = described.stdout.split("Events:").nth(1).unwrap_or("");
        for (reason, from) in
            [("Starting", "kubelet"), ("NodeReady", "kubelet"), ("RegisteredNode", "node-controller")]
        {
            assert!(
                events.lines().any(|l| l.contains(reason) && l.contains(from)),
                "kubectl {v} describe node lacks {reason} from {from}:\n{}",
                described.stdout
            );
        }
    }

    // renewTime advances on the kubelet's schedule.
    let k = Kubectl::new("1.33", &sim.kubeconfig_yaml());
    let renew = || async {
        k.ok(&[
            "get",
            "lease",
            "-n",
            "kube-node-lease",
            "rancher-sim-control-plane",
            "-o",
            "jsonpath={.spec.renewTime}",
        ])
        .await
    };
    let first = renew().await;
    assert!(first.ends_with('Z') && first.contains('.'), "a MicroTime: {first}");
    let moved = within(Duration::from_secs(10), || async { renew().await > first }).await;
    assert!(moved, "renewTime stayed at {first}");
    sim.shutdown().await;
}
