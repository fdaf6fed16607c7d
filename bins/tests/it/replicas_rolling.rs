//! Three `rancher-server` replicas on one etcd, behind nginx, under load: three imported
//! `rancher-sim` clusters, one owned by each replica; through nginx, a reader per cluster GETs
//! without pause, a writer per cluster creates a ConfigMap every 200 ms, and a kube-rs watcher per
//! cluster follows them. In a rolling restart each replica in turn is stopped (SIGTERM: it drains,
//! handing its clusters over) and started again; in the fault, one is killed (-9). No request fails
//! once a client has retried a connection the server closed (see [`send_once_retried`]), and every
//! watcher sees every ConfigMap: a watch that ends with a server is picked up again through
//! another. The rolling restart runs behind nginx as an HTTP proxy and as a TCP balancer (TLS
//! passed through). Needs `etcd` on PATH, Debian's nginx and its stream module.
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
use crate::nginx_support::{NGINX, start_nginx, write_nginx_conf, write_nginx_stream_conf, write_pki};
use crate::replicas_e2e::{metric, owner, replicas_live};

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

/// One request, sent again once when the connection failed, or a 502 said a server broke the
/// connection before it answered: nginx's own page (a connection still queued when a stopping
/// server closes its listener is reset, and nginx passes only idempotent requests on to the next
/// server by itself), or a server's `Status` for a write it had forwarded to a replica that died.
/// Any other answer but `ok_codes` is a failure.
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
            Ok(resp) if attempt == 0 && resp.status() == 502 => {
                tally.retried.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("{what}: 502; retrying");
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

/// The servers' `RUST_LOG`: what the replicas' leases do is logged too.
const LOG: &str = "info,rancher::server::replicas=debug";

/// Each cluster takes more writes than this under the load before it stops.
const MIN_WRITES: usize = 20;

struct Replica {
    server: Server,
    log: PathBuf,
}

/// How nginx balances over the replicas.
#[derive(Clone, Copy, Debug)]
enum Balancer {
    /// TLS at nginx, HTTP (and WebSocket upgrades) proxied to the replicas.
    Http,
    /// TCP: TLS passed through to the replicas, which serve nginx's certificate.
    Tcp,
}

/// The replicas behind nginx, the clusters and their agents.
struct Fleet {
    _etcd: Etcd,
    dir: tempfile::TempDir,
    args: Vec<String>,
    replicas: Vec<Replica>,
    _nginx: rancher_test_support::Proc,
    clusters: Vec<String>,
    kubeconfigs: Vec<String>,
    home: PathBuf,
    bearer: String,
    lb_url: String,
    sims: Vec<rancher_sim::SimHandle>,
    _agents: Vec<rancher_test_support::Proc>,
}

impl Fleet {
    async fn start(balancer: Balancer) -> Fleet {
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
        let args: Vec<String> = vec![
            "--store".into(),
            "etcd".into(),
            "--etcd-endpoints".into(),
            endpoint,
            "--secrets-key-file".into(),
            key.to_str().unwrap().into(),
            "--tls-cert".into(),
            pki("tls.crt"),
            "--tls-key".into(),
            pki("tls.key"),
            "--tls-ca".into(),
            pki("ca.crt"),
            "--server-url".into(),
            lb_url.clone(),
        ];
        let mut replicas = Vec::new();
        for name in ["a", "b", "c"] {
            let log = dir.path().join(format!("{name}-1.log"));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let server = Server::start_logging(&dir.path().join(name), free_port(), &log, &args, LOG).await;
            replicas.push(Replica { server, log });
        }
        let ports: Vec<u16> = replicas.iter().map(|r| r.server.port).collect();
        let conf = match balancer {
            Balancer::Http => write_nginx_conf(&prefix, lb_port, &ports),
            Balancer::Tcp => write_nginx_stream_conf(&prefix, lb_port, &ports),
        };
        let nginx = start_nginx(&prefix, &conf, "nginx.log");
        all_live(&replicas, 3).await;
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
        login_admin(&home, &lb_url);
        let bearer = login(&lb_url).await;
        let (mut sims, mut agents, mut kubeconfigs) = (Vec::new(), Vec::new(), Vec::new());
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
        Fleet {
            _etcd: etcd,
            dir,
            args,
            replicas,
            _nginx: nginx,
            clusters,
            kubeconfigs,
            home,
            bearer,
            lb_url,
            sims,
            _agents: agents,
        }
    }

    /// Prints what the servers said (about sessions, hand-overs and the replicas; everything with
    /// `RANCHER_TEST_DUMP` set), for the reader of a failure.
    fn dump_logs(&self) {
        let dump_all = std::env::var_os("RANCHER_TEST_DUMP").is_some();
        // What nginx made of the servers (a server it marked down, an upstream that closed early).
        let nginx = read_log(&self.dir.path().join("nginx/logs/error.log"));
        for line in nginx.lines().filter(|l| dump_all || l.contains("upstream")) {
            eprintln!("nginx error.log: {line}");
        }
        for entry in std::fs::read_dir(self.dir.path()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "log") {
                for line in read_log(&path).lines().filter(|l| {
                    dump_all
                        || ["handing", "draining", "replica", "session", "no agent"]
                            .iter()
                            .any(|w| l.contains(w))
                }) {
                    eprintln!("{}: {line}", path.file_name().unwrap().to_string_lossy());
                }
            }
        }
    }

    async fn shutdown(self) {
        for r in &self.replicas {
            // Each panic with the two lines after it (std prints the message below the location).
            let log = read_log(&r.log);
            let lines: Vec<&str> = log.lines().collect();
            let panics: Vec<String> = (0..lines.len())
                .filter(|&i| lines[i].contains("panicked"))
                .map(|i| lines[i..(i + 3).min(lines.len())].join("\n"))
                .collect();
            assert!(panics.is_empty(), "{} panicked:\n{}", r.log.display(), panics.join("\n"));
        }
        for sim in self.sims {
            sim.shutdown().await;
        }
    }
}

async fn all_live(replicas: &[Replica], count: u64) {
    for r in replicas {
        let url = &r.server.url;
        eventually(WAIT, &format!("{url} counts {count} replicas"), || async {
            (replicas_live(url).await == Some(count)).then_some(())
        })
        .await;
    }
}

/// Readers, writers and watchers through nginx, one of each per cluster.
struct Load {
    tally: Arc<Tally>,
    stop: CancellationToken,
    stop_watchers: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    watchers: Vec<tokio::task::JoinHandle<()>>,
    written: Vec<Arc<Mutex<BTreeSet<String>>>>,
    seen: Vec<Arc<Mutex<BTreeSet<String>>>>,
}

impl Load {
    fn start(fleet: &Fleet) -> Load {
        let (stop, stop_watchers) = (CancellationToken::new(), CancellationToken::new());
        let tally = Arc::new(Tally::default());
        let (mut tasks, mut watchers, mut written, mut seen) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (cluster, kc) in fleet.clusters.iter().zip(&fleet.kubeconfigs) {
            let http = insecure_client();
            let base = format!("{}/k8s/clusters/{cluster}/api/v1/namespaces/default", fleet.lb_url);
            let (tally_r, stop_r, http_r, base_r, bearer_r) =
                (tally.clone(), stop.clone(), http.clone(), base.clone(), fleet.bearer.clone());
            tasks.push(tokio::spawn(async move {
                while !stop_r.is_cancelled() {
                    send_once_retried(&tally_r, &format!("GET {base_r}"), &[200], || {
                        http_r.get(&base_r).bearer_auth(&bearer_r)
                    })
                    .await;
                }
            }));
            let names = Arc::new(Mutex::new(BTreeSet::new()));
            written.push(names.clone());
            let (tally_w, stop_w, bearer_w) = (tally.clone(), stop.clone(), fleet.bearer.clone());
            tasks.push(tokio::spawn(async move {
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
        Load { tally, stop, stop_watchers, tasks, watchers, written, seen }
    }

    fn answered(&self) -> u64 {
        self.tally.ok.load(Ordering::Relaxed)
    }

    /// Stops the readers and writers, waits until every watcher has seen every ConfigMap written to
    /// its cluster, and checks that no request failed. Returns (answered, sent again).
    async fn finish(self, fleet: &Fleet) -> (u64, u64) {
        // Enough writes to every cluster for its watcher to be tested: a cluster whose replica was
        // killed took none while it was served nowhere, and how long that lasts is the machine's.
        let enough = || self.written.iter().all(|w| w.lock().unwrap().len() > MIN_WRITES);
        let deadline = tokio::time::Instant::now() + WAIT;
        while !enough() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.stop.cancel();
        for task in self.tasks {
            task.await.unwrap();
        }
        let failures = self.tally.failures.lock().unwrap().clone();
        if !failures.is_empty() || std::env::var_os("RANCHER_TEST_DUMP").is_some() {
            fleet.dump_logs();
        }
        assert!(failures.is_empty(), "{} requests failed:\n{}", failures.len(), failures.join("\n"));
        for (i, (written, seen)) in self.written.iter().zip(&self.seen).enumerate() {
            let written = written.lock().unwrap().clone();
            assert!(
                written.len() > MIN_WRITES,
                "{} ConfigMaps written to {}",
                written.len(),
                fleet.clusters[i]
            );
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                let missed: Vec<String> = written.difference(&seen.lock().unwrap()).cloned().collect();
                if missed.is_empty() {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the watcher of {} missed {missed:?}",
                    fleet.clusters[i]
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        self.stop_watchers.cancel();
        for task in self.watchers {
            task.await.unwrap();
        }
        (self.tally.ok.load(Ordering::Relaxed), self.tally.retried.load(Ordering::Relaxed))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_behind_nginx_fails_no_request_and_loses_no_watch_event() {
    rolling_restart(Balancer::Http).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_behind_nginx_as_a_tcp_balancer_fails_no_request_and_loses_no_watch_event() {
    rolling_restart(Balancer::Tcp).await;
}

/// Each replica in turn drains, stops, starts again and rejoins, under the load through `balancer`.
async fn rolling_restart(balancer: Balancer) {
    let mut fleet = Fleet::start(balancer).await;
    let load = Load::start(&fleet);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(load.answered() > 0, "the load runs");

    // Each replica drains, stops, starts again and rejoins.
    let mut stops = Vec::new();
    for i in 0..fleet.replicas.len() {
        let Replica { server, .. } = fleet.replicas.remove(i);
        let stopping = tokio::time::Instant::now();
        let (data_dir, port) = (server.data_dir.clone(), server.port);
        server.stop().await;
        stops.push(stopping.elapsed());
        let log = fleet.dir.path().join(format!("{}-2.log", ["a", "b", "c"][i]));
        let args: Vec<&str> = fleet.args.iter().map(String::as_str).collect();
        let server = Server::start_logging(&data_dir, port, &log, &args, LOG).await;
        fleet.replicas.insert(i, Replica { server, log });
        all_live(&fleet.replicas, 3).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (answered, again) = load.finish(&fleet).await;
    for cluster in &fleet.clusters {
        wait_state(&fleet.home, cluster, "active", WAIT).await;
    }
    eprintln!(
        "rolling restart ({balancer:?}): {answered} requests answered, {again} sent again after a closed connection, \
         0 failed; stops took {stops:?}"
    );
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_under_load_fails_no_request_and_its_cluster_is_served_within_seconds() {
    let mut fleet = Fleet::start(Balancer::Http).await;
    let load = Load::start(&fleet);
    tokio::time::sleep(Duration::from_secs(3)).await;

    // The owner of the first cluster dies without a word; its lease stays for 15 s.
    let Replica { server, .. } = fleet.replicas.remove(0);
    let killed = tokio::time::Instant::now();
    let (data_dir, port) = (server.data_dir.clone(), server.port);
    server.proc.kill9().await;
    let http = insecure_client();
    let url = format!("{}/k8s/clusters/{}/api/v1/namespaces/default", fleet.lb_url, fleet.clusters[0]);
    eventually(WAIT, "the dead replica's cluster is served again", || {
        let (http, url, bearer) = (http.clone(), url.clone(), fleet.bearer.clone());
        async move {
            let resp = http.get(&url).bearer_auth(&bearer).send().await.ok()?;
            resp.status().is_success().then_some(())
        }
    })
    .await;
    let served_again = killed.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let answered = load.answered();

    // The two others carry on; the killed one comes back and rejoins.
    all_live(&fleet.replicas, 2).await;
    let log = fleet.dir.path().join("a-2.log");
    let args: Vec<&str> = fleet.args.iter().map(String::as_str).collect();
    let server = Server::start_logging(&data_dir, port, &log, &args, LOG).await;
    fleet.replicas.insert(0, Replica { server, log });
    all_live(&fleet.replicas, 3).await;
    let (total, again) = load.finish(&fleet).await;
    for cluster in &fleet.clusters {
        wait_state(&fleet.home, cluster, "active", WAIT).await;
    }
    eprintln!(
        "kill -9: the dead replica's cluster was served again {served_again:?} after; {answered} requests \
         answered by then, {total} in all, {again} sent again after a closed connection, 0 failed"
    );
    assert!(served_again < Duration::from_secs(10), "{served_again:?}: not before its lease ran out?");
    fleet.shutdown().await;
}

/// The tunnel sessions a replica holds (`rancher_tunnel_sessions`).
async fn sessions_held(url: &str) -> Option<u64> {
    metric(url, "rancher_tunnel_sessions").await
}

/// Waits until every replica holds exactly one session, its own cluster's, and still does 3 s later.
async fn each_cluster_held_once(fleet: &Fleet, what: &str) {
    let held = || async {
        let mut all = Vec::new();
        for r in &fleet.replicas {
            all.push(sessions_held(&r.server.url).await);
        }
        all
    };
    eventually(WAIT, what, || async { held().await.iter().all(|s| *s == Some(1)).then_some(()) }).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = held().await;
    assert!(later.iter().all(|s| *s == Some(1)), "{what}: then the sessions moved again: {later:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_frozen_past_its_lease_splits_ownership_and_the_split_resolves_to_one_owner() {
    let fleet = Fleet::start(Balancer::Http).await;
    each_cluster_held_once(&fleet, "each replica holds its own cluster's session").await;

    // Frozen (a stalled VM, a long pause): its lease runs out and the others take its cluster over,
    // while it still holds that cluster's agent session (a silent peer is noticed after 45 s) and,
    // when it wakes, believes it owns the cluster. Two owners.
    let frozen = &fleet.replicas[0];
    frozen.server.proc.signal("STOP");
    let froze = tokio::time::Instant::now();
    for r in &fleet.replicas[1..] {
        let url = &r.server.url;
        eventually(WAIT, &format!("{url} counts the frozen replica out"), || async {
            (replicas_live(url).await == Some(2)).then_some(())
        })
        .await;
    }
    let counted_out = froze.elapsed();
    // Meanwhile a request for its cluster through another replica is answered, not left hanging.
    let http = insecure_client();
    let through = |r: &Replica, cluster: &str| {
        format!("{}/k8s/clusters/{cluster}/api/v1/namespaces/default", r.server.url)
    };
    let during = tokio::time::timeout(
        Duration::from_secs(20),
        http.get(through(&fleet.replicas[1], &fleet.clusters[0])).bearer_auth(&fleet.bearer).send(),
    )
    .await
    .expect("an answer within 20 s")
    .expect("an HTTP answer");
    let during_status = during.status();
    frozen.server.proc.signal("CONT");
    let woke = tokio::time::Instant::now();

    // It renews its lease and comes back; every view agrees again, each cluster's session is held
    // by one replica, and every replica serves every cluster.
    all_live(&fleet.replicas, 3).await;
    each_cluster_held_once(&fleet, "the split resolves: each cluster's session on one replica").await;
    for r in &fleet.replicas {
        for cluster in &fleet.clusters {
            let (http, url, bearer) = (http.clone(), through(r, cluster), fleet.bearer.clone());
            eventually(WAIT, &format!("{url} answers"), || {
                let (http, url, bearer) = (http.clone(), url.clone(), bearer.clone());
                async move {
                    http.get(&url).bearer_auth(&bearer).send().await.ok()?.status().is_success().then_some(())
                }
            })
            .await;
        }
    }
    let resolved = woke.elapsed();
    eprintln!(
        "frozen replica counted out after {counted_out:?}; its cluster through another replica meanwhile: \
         {during_status}; resolved {resolved:?} after it woke"
    );
    assert!(resolved < Duration::from_secs(45), "{resolved:?} to resolve the split");
    fleet.shutdown().await;
}
