//! Events from the sim's controllers and kubelets, as `kubectl get events` and `kubectl describe`
//! show them after `kubectl create deployment`, in both the core/v1 and events.k8s.io/v1 views.

use std::time::Duration;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_deployment_records_events() {
    let sim = start_sim(2).await;
    for v in VERSIONS {
        let k = Kubectl::new(v, &sim.kubeconfig_yaml());
        let ns = format!("ev{}", v.replace('.', ""));
        k.ok(&["create", "namespace", &ns]).await;
        k.ok(&["create", "deployment", "web", "--image=nginx:1.25", "--replicas=2", "-n", &ns]).await;
        wait_running(&k, &ns, "app=web", 2).await;
        let want = ["ScalingReplicaSet", "SuccessfulCreate", "Scheduled", "Pulled", "Created", "Started"];
        let all_there = within(Duration::from_secs(20), || async {
            let events = k.ok(&["get", "events", "-n", &ns]).await;
            want.iter().all(|r| events.contains(r))
        })
        .await;
        let events = k.ok(&["get", "events", "-n", &ns]).await;
        assert!(all_there, "kubectl {v} get events:\n{events}");
        assert!(events.starts_with("LAST SEEN"), "{events}");
        assert!(
            events.contains("deployment/web") && events.contains("Scaled up replica set web-"),
            "{events}"
        );
        assert!(events.contains("Created pod: web-"), "{events}");

        let pod = k
            .ok(&["get", "pods", "-n", &ns, "-l", "app=web", "-o", "jsonpath={.items[0].metadata.name}"])
            .await;
        let described = k.ok(&["describe", "pod", "-n", &ns, &pod]).await;
        let section = described.split("Events:").nth(1).unwrap_or("");
        for (reason, from) in
            [("Scheduled", "default-scheduler"), ("Pulled", "kubelet"), ("Started", "kubelet")]
        {
            assert!(
                section.lines().any(|l| l.contains(reason) && l.contains(from)),
                "kubectl {v} describe pod lacks {reason} from {from}:\n{described}"
            );
        }
        assert!(section.contains(&format!("Successfully assigned {ns}/{pod} to rancher-sim-")), "{section}");

        // The same events through events.k8s.io/v1, with the fields of that API.
        let v1 = k
            .ok(&[
                "get",
                "events.v1.events.k8s.io",
                "-n",
                &ns,
                "--field-selector",
                &format!("regarding.name={pod}"),
                "-o",
                "jsonpath={range .items[*]}{.reason}/{.reportingController}/{.regarding.kind};{end}",
            ])
            .await;
        assert!(v1.contains("Scheduled/default-scheduler/Pod") && v1.contains("Started/kubelet/Pod"), "{v1}");
        let core = k
            .ok(&[
                "get",
                "events",
                "-n",
                &ns,
                "--field-selector",
                &format!("involvedObject.name={pod},reason=Started"),
                "-o",
                "jsonpath={.items[0].count} {.items[0].type} {.items[0].firstTimestamp} {.items[0].eventTime} {.items[0].reportingComponent}",
            ])
            .await;
        let parts: Vec<&str> = core.split(' ').collect();
        assert_eq!(parts.len(), 5, "{core}");
        assert_eq!((parts[0], parts[1], parts[4]), ("1", "Normal", "kubelet"), "{core}");

        // Deleting a pod: its kubelet reports Killing.
        k.ok(&["delete", "pod", "-n", &ns, &pod, "--wait=false"]).await;
        let killed = within(Duration::from_secs(20), || async {
            k.ok(&["get", "events", "-n", &ns, "--field-selector", &format!("involvedObject.name={pod}")])
                .await
                .contains("Killing")
        })
        .await;
        assert!(killed, "no Killing event for {pod}");
        // An event deleted through one API group is gone from the other.
        let name = k.ok(&["get", "events", "-n", &ns, "-o", "jsonpath={.items[0].metadata.name}"]).await;
        k.ok(&["delete", "events.v1.events.k8s.io", "-n", &ns, &name]).await;
        let o = k.run(&["get", "events", "-n", &ns, &name]).await;
        assert!(!o.ok && o.stderr.contains("NotFound"), "{o:?}");
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_bounded_and_expire() {
    let sim = rancher_sim::Sim::builder()
        .events_per_namespace(5)
        .event_ttl(Duration::from_secs(2))
        .lease_renew_interval(Duration::from_millis(200))
        .start()
        .await
        .expect("sim");
    let k = Kubectl::new("1.33", &sim.kubeconfig_yaml());
    k.ok(&["create", "deployment", "many", "--image=nginx:1.25", "--replicas=4"]).await;
    wait_running(&k, "default", "app=many", 4).await;
    let count = || async { k.ok(&["get", "events", "-n", "default", "-o", "name"]).await.lines().count() };
    let n = count().await;
    assert!((1..=5).contains(&n), "{n} events kept, the limit is 5");
    let v1 = k.ok(&["get", "events.v1.events.k8s.io", "-n", "default", "-o", "name"]).await.lines().count();
    assert!(v1 <= 5, "{v1} events.k8s.io events kept");
    // An event written by a client shows in both views, then expires with the others.
    let (_d, path) = manifest(
        "apiVersion: v1\nkind: Event\nmetadata: {name: by-hand, namespace: default}\ninvolvedObject: {kind: Pod, name: x, namespace: default}\nreason: Testing\nmessage: written by hand\ntype: Normal\n",
    );
    k.ok(&["create", "-f", &path]).await;
    let mirrored = within(Duration::from_secs(10), || async {
        k.run(&["get", "events.v1.events.k8s.io", "-n", "default", "by-hand", "-o", "jsonpath={.note}"])
            .await
            .stdout
            == "written by hand"
    })
    .await;
    assert!(mirrored, "a core/v1 event never appeared in events.k8s.io/v1");
    let gone = within(Duration::from_secs(20), || async { count().await == 0 }).await;
    assert!(gone, "events outlived their TTL");
    sim.shutdown().await;
}

/// `rancher-sim --events-per-namespace` bounds the Events as the builder's option does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_bounds_events_per_namespace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_rancher-sim"));
    cmd.args(["--listen", "127.0.0.1:0", "--events-per-namespace", "3", "--kubeconfig-out"]).arg(&kubeconfig);
    let _sim = rancher_test_support::Proc::spawn(cmd, &dir.path().join("sim.log"));
    let written = within(Duration::from_secs(30), || async { kubeconfig.exists() }).await;
    assert!(written, "rancher-sim wrote no kubeconfig");
    let k = Kubectl::new("1.33", &std::fs::read_to_string(&kubeconfig).expect("kubeconfig"));
    k.ok(&["create", "deployment", "many", "--image=nginx:1.25", "--replicas=4"]).await;
    wait_running(&k, "default", "app=many", 4).await;
    let n = k.ok(&["get", "events", "-n", "default", "-o", "name"]).await.lines().count();
    assert!((1..=3).contains(&n), "{n} events kept, the limit is 3");
}
