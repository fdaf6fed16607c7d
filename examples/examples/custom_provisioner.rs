//! A provisioner for your own infrastructure, plugged into a real server.
//!
//! The `inventory` driver keeps an inventory directory: provisioning a cluster writes a record of it
//! there (the stand-in for calling your own infrastructure API) and removing it deletes the record.
//! The program starts a management server on a free port with the provisioner registered through
//! `ServerBuilder::provisioner`, creates clusters through the `/v3` API as any client would — one with
//! a bad spec (refused with a 422 naming the field), one good — prints the progress the server
//! records until the cluster is `Provisioned`, then deletes it and shows the record gone.
//!
//! ```sh
//! cargo run -p rancher-examples --example custom_provisioner
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use rancher::server::Server;
use rancher_core::Conditions;
use rancher_core::model::{Cluster, ProvisioningProgress, StepState};
use rancher_core::store::{Api, MemoryStore, TypedEvent, WatchOptions};
use rancher_provision::{Progress, ProvisionContext, ProvisionError, Provisioner};
use serde_json::{Value, json};

/// Clusters recorded in an inventory directory, one JSON file per cluster.
struct InventoryProvisioner {
    dir: PathBuf,
}

impl InventoryProvisioner {
    fn record(&self, cluster: &Cluster) -> PathBuf {
        self.dir.join(format!("{}.json", cluster.metadata.name))
    }
}

/// `spec.driverConfig.location`: where the machines are.
fn location(cluster: &Cluster) -> Option<&str> {
    cluster.spec.driver_config.as_ref()?.get("location")?.as_str().filter(|l| !l.is_empty())
}

#[async_trait]
impl Provisioner for InventoryProvisioner {
    fn driver(&self) -> &str {
        "inventory"
    }

    fn validate(&self, cluster: &Cluster) -> Result<(), ProvisionError> {
        match location(cluster) {
            Some(_) => Ok(()),
            None => {
                Err(ProvisionError::invalid_spec("spec.driverConfig.location", "say where the machines are"))
            }
        }
    }

    /// Two steps: write the record, then (on the next call) confirm it. Idempotent: calling again
    /// changes nothing.
    async fn reconcile(&self, cluster: &Cluster, ctx: &ProvisionContext) -> Result<Progress, ProvisionError> {
        let path = self.record(cluster);
        if tokio::fs::try_exists(&path).await.map_err(ProvisionError::transient)? {
            return Ok(Progress::Done);
        }
        let record = json!({
            "cluster": cluster.metadata.name,
            "location": location(cluster),
            "server": ctx.server_url,
        });
        tokio::fs::write(&path, record.to_string()).await.map_err(ProvisionError::transient)?;
        Ok(Progress::InProgress {
            progress: ProvisioningProgress::new("recorded; confirming the inventory")
                .step("record", StepState::Done, "")
                .step("confirm", StepState::Running, ""),
            after: Duration::from_millis(300),
        })
    }

    async fn remove(&self, cluster: &Cluster, _ctx: &ProvisionContext) -> Result<Progress, ProvisionError> {
        match tokio::fs::remove_file(self.record(cluster)).await {
            Ok(()) => Ok(Progress::Done),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Progress::Done),
            Err(e) => Err(ProvisionError::transient(e)),
        }
    }
}

const PASSWORD: &str = "an-example-admin-password";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let data = tempfile::tempdir()?;
    let inventory = tempfile::tempdir()?;
    let server = Server::builder()
        .data_dir(data.path())
        .store(Arc::new(MemoryStore::new()))
        .https_listen("127.0.0.1:0".parse()?)
        .bootstrap_password(PASSWORD)
        .provisioner(Arc::new(InventoryProvisioner { dir: inventory.path().to_owned() }))
        .build()
        .await?;
    let url = server.url();
    let clusters: Api<Cluster> = Api::all(server.store());
    let http = reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(server.ca_pem().as_bytes())?)
        .build()?;
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(server.run(stop.clone().cancelled_owned()));
    println!("serving on {url}");

    let login: Value = http
        .post(format!("{url}/v3-public/localProviders/local?action=login"))
        .json(&json!({"username": "admin", "password": PASSWORD}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let token = login["token"].as_str().unwrap_or_default().to_owned();
    let create = |name: &str, config: Value| {
        http.post(format!("{url}/v3/clusters"))
            .bearer_auth(&token)
            .json(
                &json!({"metadata": {"name": name}, "spec": {"driver": "inventory", "driverConfig": config}}),
            )
            .send()
    };

    let refused = create("nowhere", json!({})).await?;
    let status = refused.status();
    let body: Value = refused.json().await?;
    println!("without a location: {status} {}", body["message"].as_str().unwrap_or_default());

    // Follow the cluster from before it exists, so that no step is missed.
    let mut events = clusters.watch(WatchOptions::default()).await?;
    create("edge-1", json!({"location": "rack 4, datacenter east"})).await?.error_for_status()?;
    let mut last = None;
    while let Some(event) = events.next().await {
        let (TypedEvent::Added(c) | TypedEvent::Modified(c)) = event? else { continue };
        if c.metadata.name != "edge-1" {
            continue;
        }
        if let Some(p) = &c.status.provisioning
            && last.as_ref() != Some(p)
        {
            println!("[{}/{}] {}", p.done(), p.total(), p.message);
            last = Some(p.clone());
        }
        if c.status.conditions.is_true("Provisioned")
            && last.as_ref().is_some_and(|p| p.message == "provisioned")
        {
            println!(
                "edge-1 is Provisioned; inventory records: {}",
                std::fs::read_dir(inventory.path())?.count()
            );
            break;
        }
    }

    http.delete(format!("{url}/v3/clusters/edge-1")).bearer_auth(&token).send().await?.error_for_status()?;
    while clusters.get_opt("edge-1").await?.is_some() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("edge-1 deleted; inventory records: {}", std::fs::read_dir(inventory.path())?.count());

    stop.cancel();
    running.await??;
    Ok(())
}
