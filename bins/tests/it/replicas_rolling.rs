//! A rolling restart of three `rancher-server` replicas on one etcd, behind nginx, under load: three
//! imported `rancher-sim` clusters, one owned by each replica; through nginx, a reader per cluster
//! GETs without pause, a writer per cluster creates a ConfigMap every 200 ms, and a kube-rs
//! watcher per cluster follows them. Each replica in turn is stopped (SIGTERM: it drains, handing
//! its clusters over) and started again. No request fails once a client has retried a connection
//! the stopping server closed (see [`send_once_retried`]), and every watcher sees every ConfigMap:
//! a watch that ends through a stopping server is picked up again through another. Needs `etcd` on
//! PATH and Debian's nginx.
#![cfg(feature = "etcd")]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::{WatchStreamExt, watcher};
use rancher_test_support::etcd::Etcd;
use tokio_util::sync::CancellationToken;

use crate::import_support::*;
use crate::nginx_support::{NGINX, start_nginx, write_nginx_conf, write_pki};
use crate::replicas_e2e::{owner, replicas_live};

/// What the readers and writers saw.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    retried: AtomicU64,
    failures: Mutex<Vec<String>>,
}

impl Tally {
    fn fail(&self, what: String) {
        self.failures.lock().unwrap().push(what);
    }
}

/// One request, sent again once when the connection failed, or nginx answered for a server that
/// broke the connection (its own 502 page, not a server's `Status`): a connection still queued when
/// a stopping server closes its listener is reset, and nginx passes only idempotent requests on to
/// the next server by itself. Any other answer but `ok_codes` is a failure.
async fn send_once_retried(
    tally: &Tally,
    what: &str,
    ok_codes: &[u16],
    send: impl Fn() -> reqwest::RequestBuilder,
) {
    for attempt in 0..2 {
        match send().send().await {
            Ok(resp) if ok_codes.contains(&resp.status().as_u16()) => {
                tally.ok.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(resp)
                if attempt == 0
                    && resp.status() == 502
                    && resp
                        .headers()
                        .get("content-type")
                        .is_some_and(|t| t.as_bytes().starts_with(b"text/html")) =>
            {
                tally.retried.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("{what}: nginx's 502; retrying");
            }
            Ok(resp) => {
                let status = resp.status();
                let body = resp.text().await.unwrap_or_default();
                let at = jiff::Timestamp::now();
                return tally.fail(format!("{at} {what}: {status} {body}"));
            }
            Err(e) if attempt == 0 => {
                tally.retried.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("{what}: {e}; retrying");
            }
            Err(e) => return tally.fail(format!("{what}: {e:?}")),
        }
    }
}

fn kube_client(kubeconfig: &str) -> kube::Client {
    let kc = kube::config::Kubeconfig::from_yaml(kubeconfig).unwrap();
    let rt = tokio::runtime::Handle::current();
    let config = std::thread::scope(|s| {
        s.spawn(|| rt.block_on(kube::Config::from_custom_kubeconfig(kc, &Default::default()))).join().unwrap()
    })
    .unwrap();
    kube::Client::try_from(config).unwrap()
}

struct Replica {
    server: Server,
    log: PathBuf,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_behind_nginx_fails_no_request_and_loses_no_watch_event() {
    assert!(Path::new(NGINX).exists(), "{NGINX} is missing: apt-get install nginx-light");
    install_crypto();
    let etcd = Etcd::start(1).await;
    let endpoint = etcd.endpoints().remove(0);
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("nginx");
    std::fs::create_dir_all(&prefix).unwrap();
    write_pki(&prefix);
    let key = dir.path().join("secrets.key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    let lb_port = free_port();
    let lb_url = format!("https://127.0.0.1:{lb_port}");
    let pki = |f: &str| prefix.join(f).to_str().unwrap().to_owned();
    let (cert, tls_key, ca) = (pki("tls.crt"), pki("tls.key"), pki("ca.crt"));
    let args: Vec<&str> = vec![
        "--store",
        "etcd",
        "--etcd-endpoints",
        &endpoint,
        "--secrets-key-file",
        key.to_str().unwrap(),
        "--tls-cert",
        &cert,
        "--tls-key",
        &tls_key,
        "--tls-ca",
        &ca,
        "--server-url",
        &lb_url,
    ];
    let mut replicas = Vec::new();
    for name in ["a", "b", "c"] {
        let log = dir.path().join(format!("{name}-1.log"));
        let server = Server::start(&dir.path().join(name), free_port(), &log, &args).await;
        replicas.push(Replica { server, log });
    }
    let conf =
        write_nginx_conf(&prefix, lb_port, &replicas.iter().map(|r| r.server.port).collect::<Vec<_>>());
    let _nginx = start_nginx(&prefix, &conf, "nginx.log");
    let all_live = |replicas: &[Replica]| {
        let urls: Vec<String> = replicas.iter().map(|r| r.server.url.clone()).collect();
        async move {
            for url in &urls {
                eventually(WAIT, "every replica counts three", || async {
                    (replicas_live(url).await == Some(3)).then_some(())
                })
                .await;
            }
        }
    };
    all_live(&replicas).await;
    let names: Vec<String> = replicas
        .iter()
        .map(|r| std::fs::read_to_string(r.server.data_dir.join("replica-id")).unwrap())
        .collect();
    let names_ref: Vec<&str> = names.iter().map(String::as_str).collect();
    // One cluster owned by each replica.
    let clusters: Vec<String> = names
        .iter()
        .map(|n| (0..).map(|i| format!("roll-{i}")).find(|c| owner(c, &names_ref) == n).unwrap())
        .collect();

    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let (ok, out) = rancherctl(
        &home,
        &["login", &lb_url, "--username", "admin", "--password", ADMIN_PASSWORD, "--insecure"],
    );
    assert!(ok, "{out}");
    let bearer = login(&lb_url).await;
    let mut sims = Vec::new();
    let mut agents = Vec::new();
    let mut kubeconfigs = Vec::new();
    for (i, cluster) in clusters.iter().enumerate() {
        let crt = create_imported(&lb_url, &bearer, cluster).await;
        let sim = rancher_sim::Sim::builder().name(format!("sim-{i}")).nodes(1).start().await.unwrap();
        let sim_kc = dir.path().join(format!("sim-{i}.kubeconfig"));
        std::fs::write(&sim_kc, sim.kubeconfig_yaml()).unwrap();
        let sim_dir = dir.path().join(format!("sim-{i}"));
        std::fs::create_dir_all(&sim_dir).unwrap();
        let env = apply_manifest(crt["manifestUrl"].as_str().unwrap(), &sim_kc, &sim_dir).await;
        assert_eq!(env.server, lb_url, "agents dial nginx");
        agents.push(start_agent(&env, &sim_kc, &dir.path().join(format!("agent-{i}.log")), &[]));
        sims.push(sim);
        let (ok, kc) = rancherctl(&home, &["kubeconfig", cluster]);
        assert!(ok, "{kc}");
        kubeconfigs.push(kc);
    }
    for cluster in &clusters {
        wait_state(&home, cluster, "active", WAIT).await;
    }

    // The load, through nginx.
    let (stop, stop_watchers) = (CancellationToken::new(), CancellationToken::new());
    let tally = Arc::new(Tally::default());
    let (mut load, mut watchers) = (Vec::new(), Vec::new());
    let mut seen: Vec<Arc<Mutex<BTreeSet<String>>>> = Vec::new();
    let mut written: Vec<Arc<Mutex<BTreeSet<String>>>> = Vec::new();
    for (cluster, kc) in clusters.iter().zip(&kubeconfigs) {
        let http = insecure_client();
        let base = format!("{lb_url}/k8s/clusters/{cluster}/api/v1/namespaces/default");
        let (tally_r, stop_r, http_r, base_r, bearer_r) =
            (tally.clone(), stop.clone(), http.clone(), base.clone(), bearer.clone());
        load.push(tokio::spawn(async move {
            while !stop_r.is_cancelled() {
                send_once_retried(&tally_r, &format!("GET {base_r}"), &[200], || {
                    http_r.get(&base_r).bearer_auth(&bearer_r)
                })
                .await;
            }
        }));
        let names = Arc::new(Mutex::new(BTreeSet::new()));
        written.push(names.clone());
        let (tally_w, stop_w, bearer_w) = (tally.clone(), stop.clone(), bearer.clone());
        load.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop_w.is_cancelled() {
                let name = format!("roll-{i:04}");
                let body = serde_json::json!({"metadata": {"name": name}, "data": {"i": i.to_string()}});
                // Sent again after a broken connection, an existing one is the first try's.
                send_once_retried(&tally_w, &format!("POST configmap {name}"), &[201, 409], || {
                    http.post(format!("{base}/configmaps")).bearer_auth(&bearer_w).json(&body)
                })
                .await;
                names.lock().unwrap().insert(name);
                i += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }));
        let names = Arc::new(Mutex::new(BTreeSet::new()));
        seen.push(names.clone());
        let client = kube_client(kc);
        let stop_watch = stop_watchers.clone();
        watchers.push(tokio::spawn(async move {
            let api = kube::Api::<ConfigMap>::namespaced(client, "default");
            let events = watcher(api, watcher::Config::default()).default_backoff().applied_objects();
            let mut events = std::pin::pin!(events);
            loop {
                tokio::select! {
                    () = stop_watch.cancelled() => return,
                    event = events.next() => match event {
                        Some(Ok(cm)) => {
                            names.lock().unwrap().insert(cm.metadata.name.unwrap_or_default());
                        }
                        Some(Err(e)) => tracing::debug!("watch: {e}; the watcher watches again"),
                        None => return,
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = tally.ok.load(Ordering::Relaxed);
    assert!(before > 0, "the load runs");

    // The rolling restart: each replica drains, stops, starts again and rejoins.
    let mut stops = Vec::new();
    for i in 0..replicas.len() {
        let Replica { server, .. } = replicas.remove(i);
        let (data_dir, port) = (server.data_dir.clone(), server.port);
        let stopping = tokio::time::Instant::now();
        server.stop().await;
        stops.push(stopping.elapsed());
        let log = dir.path().join(format!("{}-2.log", ["a", "b", "c"][i]));
        let server = Server::start(&data_dir, port, &log, &args).await;
        replicas.insert(i, Replica { server, log });
        all_live(&replicas).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.cancel();
    for task in load {
        task.await.unwrap();
    }

    let failures = tally.failures.lock().unwrap().clone();
    if !failures.is_empty() || std::env::var_os("RANCHER_TEST_DUMP").is_some() {
        // What the servers said about the clusters, for the failure's reader.
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "log") {
                let dump_all = std::env::var_os("RANCHER_TEST_DUMP").is_some();
                for line in read_log(&path).lines().filter(|l| {
                    dump_all
                        || ["handing", "draining", "replicas", "session", "no agent"]
                            .iter()
                            .any(|w| l.contains(w))
                }) {
                    eprintln!("{}: {line}", path.file_name().unwrap().to_string_lossy());
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} requests failed:\n{}", failures.len(), failures.join("\n"));
    for (i, (written, seen)) in written.iter().zip(&seen).enumerate() {
        let written = written.lock().unwrap().clone();
        assert!(written.len() > 20, "{} ConfigMaps written to {}", written.len(), clusters[i]);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let missed: Vec<String> = written.difference(&seen.lock().unwrap()).cloned().collect();
            if missed.is_empty() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the watcher of {} missed {missed:?}",
                clusters[i]
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    stop_watchers.cancel();
    for task in watchers {
        task.await.unwrap();
    }
    for cluster in &clusters {
        wait_state(&home, cluster, "active", WAIT).await;
    }
    eprintln!(
        "rolling restart: {} requests answered, {} sent again after a closed connection, 0 failed; \
         stops took {stops:?}",
        tally.ok.load(Ordering::Relaxed),
        tally.retried.load(Ordering::Relaxed),
    );
    for r in &replicas {
        let text = read_log(&r.log);
        assert!(!text.contains("panicked"), "{}", r.log.display());
    }
    drop(agents);
    for sim in sims {
        sim.shutdown().await;
    }
}
