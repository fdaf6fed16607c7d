//! A provisioner for your own infrastructure, plugged in as `Box<dyn Provisioner>`.
//!
//! This one keeps an "inventory" directory: provisioning a cluster writes a record of it there (the
//! stand-in for calling your own infrastructure API), and removing it deletes the record. Both steps
//! are idempotent, as the trait requires: calling them again changes nothing.
//!
//! ```sh
//! cargo run -p rancher-examples --example custom_provisioner
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use rancher_core::model::{Cluster, ClusterSpec};
use rancher_core::store::{Api, MemoryStore};
use rancher_provision::{Progress, ProvisionContext, ProvisionError, Provisioner};

/// Clusters recorded in an inventory directory, one JSON file per cluster.
struct InventoryProvisioner {
    dir: PathBuf,
}

impl InventoryProvisioner {
    fn record(&self, cluster: &Cluster) -> PathBuf {
        self.dir.join(format!("{}.json", cluster.metadata.name))
    }
}

fn infrastructure(e: std::io::Error) -> ProvisionError {
    ProvisionError::Infrastructure(Box::new(e))
}

#[async_trait]
impl Provisioner for InventoryProvisioner {
    fn driver(&self) -> &str {
        "inventory"
    }

    fn validate(&self, cluster: &Cluster) -> Result<(), ProvisionError> {
        if cluster.spec.description.is_empty() {
            return Err(ProvisionError::InvalidSpec(
                "inventory clusters need spec.description: where the machines are".into(),
            ));
        }
        Ok(())
    }

    async fn reconcile(&self, cluster: &Cluster, ctx: &ProvisionContext) -> Result<Progress, ProvisionError> {
        let path = self.record(cluster);
        if !path.exists() {
            let record = serde_json::json!({
                "cluster": cluster.metadata.name,
                "location": cluster.spec.description,
                "server": ctx.server_url,
            });
            tokio::fs::write(&path, record.to_string()).await.map_err(infrastructure)?;
        }
        Ok(Progress::WaitingForAgent {
            message: format!(
                "apply the import manifest from {} in {}",
                ctx.server_url, cluster.metadata.name
            ),
        })
    }

    async fn remove(&self, cluster: &Cluster, _ctx: &ProvisionContext) -> Result<Progress, ProvisionError> {
        match tokio::fs::remove_file(self.record(cluster)).await {
            Ok(()) => Ok(Progress::Done),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Progress::Done),
            Err(e) => Err(infrastructure(e)),
        }
    }
}

fn records(dir: &Path) -> anyhow::Result<usize> {
    Ok(std::fs::read_dir(dir)?.count())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let inventory = tempfile::tempdir()?;
    let provisioners: Vec<Box<dyn Provisioner>> =
        vec![Box::new(InventoryProvisioner { dir: inventory.path().to_owned() })];

    let clusters: Api<Cluster> = Api::all(Arc::new(MemoryStore::new()));
    let spec = ClusterSpec { description: "rack 4, datacenter east".into(), ..Default::default() };
    let edge = clusters.create(&Cluster::new("edge-1", spec)).await?;

    let ctx = ProvisionContext { server_url: "https://rancher.example.org".into(), ..Default::default() };
    let p = provisioners.iter().find(|p| p.driver() == "inventory").expect("registered above");
    p.validate(&edge)?;
    println!("reconcile: {:?}", p.reconcile(&edge, &ctx).await?);
    println!("reconcile again (idempotent): {:?}", p.reconcile(&edge, &ctx).await?);
    println!("inventory records: {}", records(inventory.path())?);
    println!("remove: {:?}", p.remove(&edge, &ctx).await?);
    println!("inventory records: {}", records(inventory.path())?);

    let bad = Cluster::new("nowhere", ClusterSpec::default());
    println!("validate without a location: {}", p.validate(&bad).unwrap_err());
    Ok(())
}
