//! `DescribeUpdate`, and waiting for EKS's asynchronous work: a cluster or node group to turn `ACTIVE` or go away, an
//! update to end — polling at a caller-given pace, with a deadline and a cancellation token.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::client::EksClient;
use super::convert::{missing, sdk_err, update};
use super::types::{Cluster, ClusterStatus, Nodegroup, NodegroupStatus, Update, UpdateStatus};
use super::{EksError, Result};

impl EksClient {
    /// `DescribeUpdate`: how far an update of `cluster` (or of its node group) got.
    ///
    /// # Errors
    /// [`EksError::NotFound`]; any [`EksError`].
    pub async fn describe_update(&self, cluster: &str, nodegroup: Option<&str>, id: &str) -> Result<Update> {
        const OP: &str = "DescribeUpdate";
        let out = self
            .sdk
            .describe_update()
            .name(cluster)
            .set_nodegroup_name(nodegroup.map(str::to_owned))
            .update_id(id)
            .send()
            .await
            .map_err(|e| sdk_err(OP, e))?;
        out.update().map(update).ok_or_else(|| missing(OP, "update"))
    }

    /// Polls an update every `poll` until it is `Successful`, for at most `deadline`.
    ///
    /// # Errors
    /// [`EksError::UpdateFailed`] when it ends `Failed` or `Cancelled`; [`EksError::Timeout`];
    /// [`EksError::Cancelled`]; any [`EksError`] of the polls.
    pub async fn wait_update(
        &self,
        cluster: &str,
        nodegroup: Option<&str>,
        id: &str,
        wait: Wait<'_>,
    ) -> Result<Update> {
        let what = format!("update {id} of {cluster}");
        poll(&what, "Successful", wait, || async {
            let u = self.describe_update(cluster, nodegroup, id).await?;
            match u.status {
                UpdateStatus::Successful => Ok(Polled::Done(u)),
                UpdateStatus::Failed | UpdateStatus::Cancelled => Err(EksError::UpdateFailed {
                    update_id: u.id.clone(),
                    kind: u.kind.clone(),
                    status: format!("{:?}", u.status),
                    errors: u.errors.join("; "),
                }),
                _ => Ok(Polled::NotYet(format!("{:?}", u.status))),
            }
        })
        .await
    }

    /// Polls the cluster until it is `ACTIVE`.
    ///
    /// # Errors
    /// [`EksError::Failed`] when it turns `FAILED`; [`EksError::Timeout`]; [`EksError::Cancelled`];
    /// any [`EksError`] of the polls.
    pub async fn wait_cluster_active(&self, name: &str, wait: Wait<'_>) -> Result<Cluster> {
        poll(&format!("cluster {name}"), "ACTIVE", wait, || async {
            let c = self.describe_cluster(name).await?;
            match &c.status {
                ClusterStatus::Active => Ok(Polled::Done(c)),
                ClusterStatus::Failed => Err(EksError::Failed {
                    what: format!("cluster {name}"),
                    status: "FAILED".into(),
                    detail: String::new(),
                }),
                s => Ok(Polled::NotYet(format!("{s:?}"))),
            }
        })
        .await
    }

    /// Polls until the cluster is gone (`ResourceNotFoundException`).
    ///
    /// # Errors
    /// [`EksError::Timeout`]; [`EksError::Cancelled`]; any [`EksError`] of the polls.
    pub async fn wait_cluster_gone(&self, name: &str, wait: Wait<'_>) -> Result<()> {
        poll(&format!("cluster {name}"), "deleted", wait, || async {
            Ok(match self.find_cluster(name).await? {
                None => Polled::Done(()),
                Some(c) => Polled::NotYet(format!("{:?}", c.status)),
            })
        })
        .await
    }

    /// Polls the node group until it is `ACTIVE`.
    ///
    /// # Errors
    /// [`EksError::Failed`] when it turns `CREATE_FAILED` or `DEGRADED`; [`EksError::Timeout`];
    /// [`EksError::Cancelled`]; any [`EksError`] of the polls.
    pub async fn wait_nodegroup_active(
        &self,
        cluster: &str,
        name: &str,
        wait: Wait<'_>,
    ) -> Result<Nodegroup> {
        let what = format!("node group {name} of {cluster}");
        poll(&what, "ACTIVE", wait, || async {
            let ng = self.describe_nodegroup(cluster, name).await?;
            match &ng.status {
                NodegroupStatus::Active => Ok(Polled::Done(ng)),
                NodegroupStatus::CreateFailed | NodegroupStatus::Degraded => Err(EksError::Failed {
                    what: what.clone(),
                    status: format!("{:?}", ng.status),
                    detail: ng.health_issues.join("; "),
                }),
                s => Ok(Polled::NotYet(format!("{s:?}"))),
            }
        })
        .await
    }

    /// Polls until the node group is gone.
    ///
    /// # Errors
    /// [`EksError::Failed`] on `DELETE_FAILED`; [`EksError::Timeout`]; [`EksError::Cancelled`]; any
    /// [`EksError`] of the polls.
    pub async fn wait_nodegroup_gone(&self, cluster: &str, name: &str, wait: Wait<'_>) -> Result<()> {
        let what = format!("node group {name} of {cluster}");
        poll(&what, "deleted", wait, || async {
            match self.find_nodegroup(cluster, name).await? {
                None => Ok(Polled::Done(())),
                Some(ng) if ng.status == NodegroupStatus::DeleteFailed => Err(EksError::Failed {
                    what: what.clone(),
                    status: "DELETE_FAILED".into(),
                    detail: ng.health_issues.join("; "),
                }),
                Some(ng) => Ok(Polled::NotYet(format!("{:?}", ng.status))),
            }
        })
        .await
    }
}

/// How a `wait_*` call polls: every `poll`, for at most `deadline`, until `cancel` fires.
#[derive(Clone, Copy, Debug)]
pub struct Wait<'a> {
    /// Between polls.
    pub poll: Duration,
    /// The longest wait.
    pub deadline: Duration,
    /// Stops waiting.
    pub cancel: &'a CancellationToken,
}

enum Polled<T> {
    Done(T),
    NotYet(String),
}

async fn poll<T, F, Fut>(what: &str, wanted: &'static str, wait: Wait<'_>, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Polled<T>>>,
{
    let until = tokio::time::Instant::now() + wait.deadline;
    loop {
        let last = match check().await? {
            Polled::Done(t) => return Ok(t),
            Polled::NotYet(last) => last,
        };
        let now = tokio::time::Instant::now();
        if now >= until {
            return Err(EksError::Timeout { what: what.to_owned(), wanted, last, waited: wait.deadline });
        }
        tokio::select! {
            () = wait.cancel.cancelled() => return Err(EksError::Cancelled),
            () = tokio::time::sleep(wait.poll.min(until - now)) => {}
        }
    }
}
