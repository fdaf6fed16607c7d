//! A provisioner that hands its cluster over (`Progress::Created`, as the hosted engines do) to a
//! real server: the server applies the cluster's import manifest through the endpoint handed over,
//! the test plays kubelet (reads the applied Deployment and Secret from the `rancher-sim` and starts
//! `rancher-agent` with them) and the cluster turns Active. An unreachable endpoint leaves the cluster
//! waiting with the import command, and the user's import makes it Active; a wrong CA or a bad token
//! is a failure naming what was refused, with no credential in the status or the server's log.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use rancher::server::Server;
use rancher_core::model::{Cluster, ClusterState, ProvisioningProgress, StepState};
use rancher_core::store::{Api as StoreApi, MemoryStore, Store};
use rancher_core::{ConditionStatus, Conditions};
use rancher_provision::{
    Downstream, DownstreamCredential, Progress, ProvisionContext, ProvisionError, Provisioner,
};
use rancher_test_support::kubectl::Kubectl;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::common::{Api, client};
use crate::import_support::*;

const DRIVER: &str = "handover";
/// What the sim accepts as a cluster-admin bearer: stands for a cloud's short-lived token.
const DEPLOY_TOKEN: &str = "k8s-aws-v1.handover-deployer-7f3c9a";
const CONDITION: &str = "AgentManifestApplied";

/// Hands over what the test set for a cluster; "creating" until then.
#[derive(Default)]
struct Handing {
    downstreams: Mutex<HashMap<String, Downstream>>,
}

impl Handing {
    fn set(&self, cluster: &str, downstream: Downstream) {
        self.downstreams.lock().unwrap().insert(cluster.to_owned(), downstream);
    }
}

#[async_trait]
impl Provisioner for Handing {
    fn driver(&self) -> &str {
        DRIVER
    }

    async fn reconcile(
        &self,
        cluster: &Cluster,
        _ctx: &ProvisionContext,
    ) -> Result<Progress, ProvisionError> {
        let downstream = self.downstreams.lock().unwrap().get(&cluster.metadata.name).cloned();
        Ok(match downstream {
            Some(downstream) => Progress::Created {
                progress: ProvisioningProgress::new("the cloud reports the cluster running").step(
                    "cluster",
                    StepState::Done,
                    "",
                ),
                downstream,
            },
            None => Progress::InProgress {
                progress: ProvisioningProgress::new("creating"),
                after: Duration::from_millis(200),
            },
        })
    }

    async fn remove(&self, _cluster: &Cluster, _ctx: &ProvisionContext) -> Result<Progress, ProvisionError> {
        Ok(Progress::Done)
    }
}

/// Everything this process's in-process servers log, debug and up (one global subscriber per test
/// process; nextest runs each test in its own).
fn server_log() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_ansi(false)
            .with_writer(move || LogSink(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("no other subscriber in this process");
        buf
    })
    .clone()
}

struct LogSink(Arc<Mutex<Vec<u8>>>);

impl Write for LogSink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn log_text() -> String {
    String::from_utf8_lossy(&server_log().lock().unwrap()).into_owned()
}

struct Running {
    admin: Api,
    store: Arc<dyn Store>,
    url: String,
    ca_pem: String,
    handing: Arc<Handing>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    dir: tempfile::TempDir,
}

impl Running {
    async fn start() -> Running {
        install_crypto();
        server_log();
        let dir = tempfile::tempdir().unwrap();
        let handing = Arc::new(Handing::default());
        let server = Server::builder()
            .data_dir(dir.path())
            .store(Arc::new(MemoryStore::new()))
            .https_listen("127.0.0.1:0".parse().unwrap())
            .bootstrap_password(ADMIN_PASSWORD)
            .provisioner(handing.clone())
            .build()
            .await
            .unwrap();
        let (url, ca_pem, store) = (server.url(), server.ca_pem().to_owned(), server.store());
        let anonymous = Api { http: client(&ca_pem), url: url.clone(), token: None };
        let stop = CancellationToken::new();
        let s = stop.clone();
        let task = tokio::spawn(async move { server.run(s.cancelled_owned()).await.unwrap() });
        let admin = anonymous.logged_in("admin", ADMIN_PASSWORD).await;
        Running { admin, store, url, ca_pem, handing, stop, task, dir }
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap();
    }

    async fn create(&self, name: &str) {
        let body = json!({"metadata": {"name": name}, "spec": {"driver": DRIVER}});
        let created = self.admin.post("/v3/clusters", &body).await;
        assert_eq!(created.code, 201, "{}", created.body);
    }

    /// Waits until cluster `name` satisfies `pred`; returns it.
    async fn until(&self, name: &str, what: &str, pred: impl Fn(&Cluster) -> bool) -> Cluster {
        let api = StoreApi::<Cluster>::all(self.store.clone());
        let last = Mutex::new(None);
        let found = rancher_test_support::within(WAIT, || async {
            let c = api.get_opt(name).await.unwrap();
            let ok = c.as_ref().is_some_and(&pred);
            *last.lock().unwrap() = c;
            ok
        })
        .await;
        let last = last.into_inner().unwrap();
        assert!(found, "cluster {name}: timed out waiting until {what}; last seen: {last:#?}");
        last.unwrap()
    }

    /// Starts `rancher-agent` as the kubelet would: with what the Deployment in the cluster says.
    async fn start_agent_in(&self, name: &str, sim: &rancher_sim::SimHandle) -> Proc {
        let kubeconfig = self.dir.path().join(format!("{name}.kubeconfig"));
        std::fs::write(&kubeconfig, sim.kubeconfig_yaml()).unwrap();
        let env = crate::hosted_support::agent_env_from(&kubeconfig).await;
        assert_eq!(env.server, self.url);
        start_agent(&env, &kubeconfig, &self.dir.path().join(format!("{name}-agent.log")), &[])
    }
}

fn condition<'a>(c: &'a Cluster, type_: &str) -> Option<&'a rancher_core::Condition> {
    c.status.conditions.get_condition(type_)
}

fn progress_message(c: &Cluster) -> &str {
    c.status.provisioning.as_ref().map_or("", |p| p.message.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_handover_deploys_the_agent_through_the_endpoint_and_the_cluster_turns_active() {
    let s = Running::start().await;
    let sim = rancher_sim::Sim::builder().name("hosted-a").nodes(2).start().await.unwrap();
    sim.add_token(DEPLOY_TOKEN, "cloud-admin", &["system:masters"]);
    s.handing.set(
        "hosted-a",
        Downstream {
            api_endpoint: sim.url(),
            ca_pem: sim.ca_pem().to_owned(),
            credential: DownstreamCredential::BearerToken(DEPLOY_TOKEN.to_owned().into()),
        },
    );
    s.create("hosted-a").await;
    let kubectl = Kubectl::new("1.33", &sim.kubeconfig_yaml());

    // The manifest's objects are in the cluster; the cluster is provisioned and waits for its agent.
    let waiting = s
        .until("hosted-a", "provisioned and waiting for the agent", |c| {
            c.status.conditions.is_true("Provisioned")
                && progress_message(c).contains("waiting for it to connect")
        })
        .await;
    assert_eq!(waiting.state(), ClusterState::Waiting);
    assert!(progress_message(&waiting).contains(&format!("deployed through {}", sim.url())));
    assert_eq!(condition(&waiting, CONDITION).unwrap().status, ConditionStatus::True);
    let secrets = kubectl.ok(&["-n", "cattle-system", "get", "secrets", "-o", "name"]).await;
    assert!(secrets.contains("secret/cattle-credentials-"), "{secrets}");
    let binding = kubectl.ok(&["get", "clusterrolebinding", "cattle-admin-binding", "-o", "name"]).await;
    assert!(binding.contains("cattle-admin-binding"));

    // The kubelet's part: the agent starts from the Deployment and Secret; the cluster turns Active.
    let _agent = s.start_agent_in("hosted-a", &sim).await;
    let active = s.until("hosted-a", "active", |c| c.state() == ClusterState::Active).await;
    assert_eq!(active.status.version.as_ref().unwrap().git_version, rancher_sim::DEFAULT_VERSION);
    let done = s.until("hosted-a", "provisioned", |c| progress_message(c) == "provisioned").await;
    assert_eq!(done.state(), ClusterState::Active);

    // Applied once, however often the provisioner handed it over; the credential is nowhere.
    let log = log_text();
    let applies =
        log.lines().filter(|l| l.contains("applied the cluster agent's manifest") && l.contains("hosted-a"));
    assert_eq!(applies.count(), 1, "{log}");
    assert!(!log.contains(DEPLOY_TOKEN), "the deploy credential is in the server's log");
    assert!(!serde_json::to_string(&done).unwrap().contains(DEPLOY_TOKEN));
    s.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_handover_of_an_unreachable_endpoint_waits_for_the_users_import() {
    let s = Running::start().await;
    let sim = rancher_sim::Sim::builder().name("hosted-b").start().await.unwrap();
    // A port nothing listens on: the private endpoint the server cannot reach.
    let closed = free_port();
    s.handing.set(
        "hosted-b",
        Downstream {
            api_endpoint: format!("https://127.0.0.1:{closed}"),
            ca_pem: sim.ca_pem().to_owned(),
            credential: DownstreamCredential::BearerToken(DEPLOY_TOKEN.to_owned().into()),
        },
    );
    s.create("hosted-b").await;
    let waiting = s
        .until("hosted-b", "showing the import command", |c| {
            progress_message(c).contains("kubectl apply -f ")
        })
        .await;
    assert!(waiting.status.conditions.is_true("Provisioned"));
    assert_eq!(waiting.state(), ClusterState::Waiting);
    let message = progress_message(&waiting);
    assert!(message.contains(&format!("127.0.0.1:{closed}")), "{message}");
    let unreachable = condition(&waiting, CONDITION).unwrap();
    assert_eq!(
        (unreachable.status, unreachable.reason.as_str()),
        (ConditionStatus::False, "EndpointUnreachable")
    );
    // The command is the registration token's own.
    let crt = s.admin.get("/v3/clusterregistrationtokens/hosted-b:default-token").await;
    let command = crt.body["status"]["command"].as_str().unwrap().to_owned();
    assert!(message.ends_with(&command), "{message} / {command}");

    // The user runs it where kubectl reaches the cluster; the agent connects; the cluster turns Active.
    let kubectl = Kubectl::new("1.33", &sim.kubeconfig_yaml());
    let url = crt.body["status"]["manifestUrl"].as_str().unwrap();
    let manifest = client(&s.ca_pem).get(url).send().await.unwrap().text().await.unwrap();
    let applied = kubectl.run_with_stdin(&["apply", "-f", "-"], &manifest).await;
    assert!(applied.ok, "{}", applied.stderr);
    let _agent = s.start_agent_in("hosted-b", &sim).await;
    s.until("hosted-b", "active", |c| c.state() == ClusterState::Active).await;
    let by_user = s
        .until("hosted-b", "recorded as the user's import", |c| {
            condition(c, CONDITION).is_some_and(|m| m.reason == "AppliedByUser")
        })
        .await;
    assert_eq!(progress_message(&by_user), "provisioned");
    assert!(!log_text().contains(DEPLOY_TOKEN));
    s.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_handover_refused_by_tls_or_the_credential_fails_saying_what_was_refused() {
    const BAD_TOKEN: &str = "k8s-aws-v1.handover-not-accepted-2d9e41";
    let s = Running::start().await;
    let sim = rancher_sim::Sim::builder().name("hosted-c").start().await.unwrap();
    let other = rancher_sim::Sim::builder().name("other").start().await.unwrap();
    let handed = |ca_pem: &str, credential| Downstream {
        api_endpoint: sim.url(),
        ca_pem: ca_pem.to_owned(),
        credential,
    };
    let bearer = |t: &str| DownstreamCredential::BearerToken(t.to_owned().into());
    s.handing.set("hosted-ca", handed(other.ca_pem(), bearer(DEPLOY_TOKEN)));
    s.handing.set("hosted-401", handed(sim.ca_pem(), bearer(BAD_TOKEN)));
    s.create("hosted-ca").await;
    s.create("hosted-401").await;

    let refused = |c: &Cluster| {
        condition(c, "Provisioned")
            .is_some_and(|p| p.status == ConditionStatus::False && p.reason == "AgentDeployRefused")
    };
    let wrong_ca = s.until("hosted-ca", "refused", refused).await;
    let message = &condition(&wrong_ca, "Provisioned").unwrap().message;
    assert!(message.contains(&sim.url()) && message.contains("not trusted"), "{message}");
    assert_eq!(wrong_ca.state(), ClusterState::Error);
    let bad_token = s.until("hosted-401", "refused", refused).await;
    let message = &condition(&bad_token, "Provisioned").unwrap().message;
    assert!(message.contains("credential was not accepted (401"), "{message}");
    for c in [&wrong_ca, &bad_token] {
        let json = serde_json::to_string(c).unwrap();
        assert!(!json.contains(BAD_TOKEN) && !json.contains(DEPLOY_TOKEN), "{json}");
    }
    let log = log_text();
    assert!(log.contains("deploying the cluster agent") && log.contains("hosted-401"), "the log is captured");
    assert!(!log.contains(BAD_TOKEN) && !log.contains(DEPLOY_TOKEN), "a credential is in the server's log");

    // The next hand-over brings a credential the cluster accepts (a client certificate here): the
    // retry deploys the agent without any change to the cluster.
    let (cert_pem, key_pem) = sim.client_certificate("cloud-admin", &["system:masters"]).unwrap();
    let certificate = DownstreamCredential::ClientCertificate { cert_pem, key_pem: key_pem.clone().into() };
    s.handing.set("hosted-401", handed(sim.ca_pem(), certificate));
    let kubeconfig = s.dir.path().join("hosted-401.kubeconfig");
    std::fs::write(&kubeconfig, sim.kubeconfig_yaml()).unwrap();
    crate::hosted_support::agent_env_from(&kubeconfig).await;
    let deployed = s.until("hosted-401", "provisioned", |c| c.status.conditions.is_true("Provisioned")).await;
    assert!(progress_message(&deployed).contains("waiting for it to connect"), "{deployed:#?}");
    let key_line = key_pem.lines().nth(1).unwrap();
    assert!(!log_text().contains(key_line), "the client key is in the server's log");
    s.stop().await;
    sim.shutdown().await;
    other.shutdown().await;
}
