//! `rancherctl kubectl`: one cluster on the terminal, and one command across every cluster the user
//! may reach (by label), through the server's proxy with real kubectl, two imported `rancher-sim`
//! clusters with their agents and one cluster whose agent never came.

use serde_json::json;

use crate::import_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_command_across_the_fleet_in_one_table() {
    install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let server = Server::start(&dir.path().join("data"), 0, &dir.path().join("server.log"), &[]).await;
    let bearer = login(&server.url).await;
    login_admin(&home, &server.url);

    let http = insecure_client();
    let mut agents = Vec::new();
    let mut sims = Vec::new();
    for (name, env_label, nodes) in [("fleet-a", "prod", 2), ("fleet-b", "dev", 3), ("fleet-c", "prod", 0)] {
        let created = http
            .post(format!("{}/v3/clusters", server.url))
            .bearer_auth(&bearer)
            .json(&json!({"metadata": {"name": name, "labels": {"env": env_label}}, "spec": {"importedConfig": {}}}))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status().as_u16(), 201);
        if nodes == 0 {
            continue; // its agent never comes
        }
        let crt = registration_token(&server.url, &bearer, name).await;
        let sim = rancher_sim::Sim::builder().name(name).nodes(nodes).start().await.unwrap();
        let kc = dir.path().join(format!("{name}.kubeconfig"));
        std::fs::write(&kc, sim.kubeconfig_yaml()).unwrap();
        let env = apply_manifest(crt["manifestUrl"].as_str().unwrap(), &kc, dir.path()).await;
        agents.push(start_agent(&env, &kc, &dir.path().join(format!("{name}.log")), &[]));
        wait_state(&home, name, "active", WAIT).await;
        sims.push(sim);
    }

    // The same kubectl the other tests run.
    let kubectl_path = kubectl();
    let kubectl_path = kubectl_path.to_str().unwrap();
    let run = |args: &[&str]| {
        let mut all = vec!["kubectl", "--kubectl", kubectl_path];
        all.extend_from_slice(args);
        rancherctl(&home, &all)
    };

    // Every cluster: a row per node of each connected one, the unconnected one's error; exit 1.
    let (ok, out) = run(&["--all-clusters", "--", "get", "nodes", "--no-headers"]);
    assert!(!ok, "one cluster failed: {out}");
    let rows =
        |out: &str, cluster: &str| out.lines().filter(|l| l.starts_with(&format!("{cluster} "))).count();
    assert_eq!((rows(&out, "fleet-a"), rows(&out, "fleet-b")), (2, 3), "{out}");
    let c = out.lines().find(|l| l.starts_with("fleet-c ")).unwrap_or_else(|| panic!("{out}"));
    assert!(c.contains("error:"), "{out}");
    assert!(out.contains("1 of 3 clusters failed"), "{out}");
    assert!(out.lines().next().unwrap().starts_with("CLUSTER"), "{out}");

    // By label: the two prod clusters; and only the connected ones answer.
    let (ok, out) = run(&["-A", "-l", "env=prod", "--", "get", "nodes", "-o", "name"]);
    assert!(!ok && rows(&out, "fleet-b") == 0 && rows(&out, "fleet-a") == 2, "{out}");
    let (ok, out) = run(&["-A", "-l", "env=prod,env!=prod", "--", "get", "nodes"]);
    assert!(ok && out.contains("no clusters matched"), "{out}");
    let (ok, out) = run(&["-A", "-l", "env=dev", "--", "get", "nodes", "-o", "name"]);
    assert!(ok, "{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with("fleet-b ") && l.contains("node/")).count(), 3, "{out}");

    // A plain `get` across the fleet is read by rancherctl itself (no kubectl runs): the servers'
    // own table columns behind each cluster, the unconnected one's error; anything else is kubectl's.
    let native = |args: &[&str]| {
        let mut all = vec!["kubectl", "--kubectl", "/no/such/kubectl", "-A"];
        all.extend_from_slice(args);
        rancherctl(&home, &all)
    };
    let (ok, out) = native(&["--", "get", "nodes"]);
    assert!(
        !ok && out.lines().next().is_some_and(|h| h.starts_with("CLUSTER") && h.contains("STATUS")),
        "{out}"
    );
    assert_eq!((rows(&out, "fleet-a"), rows(&out, "fleet-b")), (2, 3), "{out}");
    assert!(out.contains("1 of 3 clusters failed"), "{out}");
    let (ok, out) = native(&["-l", "env=dev", "--", "get", "no", "-o", "name"]);
    assert!(ok, "{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with("fleet-b ") && l.contains("node/")).count(), 3, "{out}");
    let (ok, out) = native(&["-l", "env=dev", "--", "get", "namespaces", "kube-system"]);
    assert!(ok && rows(&out, "fleet-b") == 1 && out.contains("Active"), "{out}");
    let (ok, out) = native(&["-l", "env=dev", "--", "get", "nodes", "-o", "yaml"]);
    assert!(!ok && out.contains("running kubectl"), "{out}");

    // One cluster: kubectl's own output and exit code.
    let (ok, out) = run(&["fleet-a", "--", "get", "nodes", "-o", "name"]);
    assert!(ok && out.lines().filter(|l| l.starts_with("node/")).count() == 2, "{out}");
    let (ok, out) = run(&["fleet-a", "--", "get", "no-such-kind"]);
    assert!(!ok && out.contains("no-such-kind"), "{out}");
    let (ok, out) = run(&["fleet-a", "--", "--kubeconfig", "/x", "get", "pods"]);
    assert!(!ok && out.contains("leave out --kubeconfig"), "{out}");

    for sim in sims {
        sim.shutdown().await;
    }
    server.stop().await;
}
