//! Deployments roll: a template change creates a new ReplicaSet, old and new are scaled within
//! `maxSurge` / `maxUnavailable`, and `kubectl rollout status` finishes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Config};

const ROLLING: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: roll, namespace: default}
spec:
  replicas: 4
  selector: {matchLabels: {app: roll}}
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}
  template:
    metadata: {labels: {app: roll}}
    spec: {containers: [{name: web, image: nginx:1.25}]}
"#;

async fn client(yaml: &str) -> Client {
    rancher_test_support::install_crypto();
    let kc = Kubeconfig::from_yaml(yaml).expect("kubeconfig parses");
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.expect("config");
    Client::try_from(cfg).expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_honours_surge_and_rollout_status_finishes() {
    let sim = start_sim(2).await;
    let k = Kubectl::new("1.33", &sim.kubeconfig_yaml());
    let (_d, deploy) = manifest(ROLLING);
    k.ok(&["apply", "-f", &deploy]).await;
    k.ok(&["rollout", "status", "deploy/roll", "--timeout=90s"]).await;

    // Record the largest total of ReplicaSet replicas while the rollout runs.
    let rs_api: Api<ReplicaSet> = Api::default_namespaced(client(&sim.kubeconfig_yaml()).await);
    let max_total = Arc::new(Mutex::new(0i32));
    let seen = max_total.clone();
    let store = Arc::new(Mutex::new(std::collections::BTreeMap::<String, i32>::new()));
    let watch = tokio::spawn(async move {
        let mut s = watcher(rs_api, watcher::Config::default()).applied_objects().boxed();
        while let Some(Ok(rs)) = s.next().await {
            let mut st = store.lock().unwrap();
            st.insert(
                rs.metadata.name.clone().unwrap_or_default(),
                rs.spec.and_then(|s| s.replicas).unwrap_or(0),
            );
            let total: i32 = st.values().sum();
            let mut m = seen.lock().unwrap();
            *m = (*m).max(total);
        }
    });

    k.ok(&["set", "image", "deploy/roll", "web=nginx:1.27"]).await;
    let out = k.ok(&["rollout", "status", "deploy/roll", "--timeout=90s"]).await;
    assert!(out.contains("successfully rolled out"), "{out}");
    watch.abort();

    let rses = k
        .ok(&["get", "rs", "-l", "app=roll", "-o", "jsonpath={range .items[*]}{.spec.replicas}/{.spec.template.spec.containers[0].image}{\"\\n\"}{end}"])
        .await;
    let mut lines: Vec<&str> = rses.lines().collect();
    lines.sort();
    assert_eq!(lines, vec!["0/nginx:1.25", "4/nginx:1.27"], "{rses}");
    let images =
        k.ok(&["get", "pods", "-l", "app=roll", "-o", "jsonpath={.items[*].spec.containers[0].image}"]).await;
    let images: Vec<&str> = images.split_whitespace().collect();
    assert_eq!(images, vec!["nginx:1.27"; 4]);
    let total = *max_total.lock().unwrap();
    assert!((4..=5).contains(&total), "replicas + maxSurge exceeded: {total}");
    let history = k.ok(&["rollout", "history", "deploy/roll"]).await;
    assert!(history.contains('1') && history.contains('2'), "{history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_pods_terminate_then_go_and_force_is_immediate() {
    let sim = start_sim(1).await;
    let k = Kubectl::new("1.33", &sim.kubeconfig_yaml());
    // A preStop hook that sleeps keeps "slow" terminating for 3 s (a pod without one stops after 1 s).
    let slow = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"slow","labels":{"app":"slow"}},
        "spec":{"containers":[{"name":"c","image":"busybox:1.36",
        "lifecycle":{"preStop":{"exec":{"command":["sh","-c","sleep 3"]}}}}]}}"#;
    let applied = k.run_with_stdin(&["apply", "-f", "-"], slow).await;
    assert!(applied.ok, "{}", applied.stderr);
    k.ok(&["run", "forced", "--image=busybox:1.36", "--labels", "app=forced"]).await;
    for p in ["slow", "forced"] {
        wait_running(&k, "default", &format!("app={p}"), 1).await;
    }
    // Even 3 s can be too soon for `kubectl get`s after the delete on a loaded machine. Watches
    // started before it see the Terminating update however late they are read (each resumes from the
    // version its list printed).
    let patience = Duration::from_secs(30);
    let mut table = k.spawn(&["get", "pod", "slow", "-w"]);
    read_until(&mut table, patience, |l| l.starts_with("slow ")).await;
    let fields = r#"jsonpath={.metadata.name} {.metadata.deletionTimestamp} {.metadata.deletionGracePeriodSeconds}{"\n"}"#;
    let mut meta = k.spawn(&["get", "pod", "slow", "-w", "-o", fields]);
    read_until(&mut meta, patience, |l| l.starts_with("slow")).await;
    k.ok(&["delete", "pod", "slow", "--wait=false"]).await;
    read_until(&mut table, patience, |l| l.starts_with("slow ") && l.contains("Terminating")).await;
    let deleting = read_until(&mut meta, patience, |l| l.split_whitespace().count() == 3).await;
    let deleting: Vec<&str> = deleting.last().unwrap().split_whitespace().collect();
    assert_eq!(deleting[2], "30", "{deleting:?}");
    let gone = within(Duration::from_secs(30), || async { !k.run(&["get", "pod", "slow"]).await.ok }).await;
    assert!(gone, "the terminating pod was never removed");

    k.ok(&["delete", "pod", "forced", "--grace-period=0", "--force"]).await;
    let o = k.run(&["get", "pod", "forced"]).await;
    assert!(!o.ok && o.stderr.contains("NotFound"), "{}", o.stderr);
}
