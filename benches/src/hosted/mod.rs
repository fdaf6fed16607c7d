//! What `hosted_bench` is made of: an [`Engine`] is one hosted engine against its test counterpart
//! (a stand-in, or moto behind one, whose recorded calls are counted); [`server`] drives a cluster's phases through an
//! in-process server, [`run_direct`] drives the same phases with the provider's client alone, and
//! [`report`] prints both with their ratios.

pub mod aks;
pub mod eks;
pub mod gke;
pub mod report;
pub mod server;

use std::future::Future;
use std::time::Duration;

use anyhow::Result;
use rancher::server::CloudEndpoints;
use serde_json::Value;
use tokio::time::Instant;

/// Where a cluster is in the bench's life of it: the config the server is given, and what the
/// provider must show after each phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Two pools at the first version.
    Created,
    /// One pool scaled up.
    Scaled,
    /// The control plane and both pools at the next version.
    Upgraded,
}

/// A phase of the bench, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Create (with two pools) until the cluster is usable: `Active` through the server; running,
    /// with its endpoint and credentials read, on the direct path.
    Create,
    /// Scale one pool.
    Scale,
    /// Upgrade the control plane, then each pool.
    Upgrade,
    /// Delete, until the provider no longer has the cluster.
    Delete,
}

impl Phase {
    /// Every phase, in order.
    pub const ALL: [Phase; 4] = [Phase::Create, Phase::Scale, Phase::Upgrade, Phase::Delete];

    /// The name printed.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Create => "create",
            Phase::Scale => "scale",
            Phase::Upgrade => "upgrade",
            Phase::Delete => "delete",
        }
    }

    /// The stage a phase leaves the cluster in (`None`: gone).
    pub fn leaves(self) -> Option<Stage> {
        match self {
            Phase::Create => Some(Stage::Created),
            Phase::Scale => Some(Stage::Scaled),
            Phase::Upgrade => Some(Stage::Upgraded),
            Phase::Delete => None,
        }
    }
}

/// What one request to the provider's counterpart was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    /// The provider's API (clusters, pools, operations, resource groups, credentials of a cluster).
    Api,
    /// Signing in: an OAuth token endpoint.
    Token,
    /// Not the provisioner's: the TokenReview a downstream cluster sends to check a token, or the
    /// bench's own look at the provider after a phase.
    NotCounted,
}

/// Requests to the provider in a window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Calls {
    /// API calls.
    pub api: usize,
    /// Token (sign-in) calls.
    pub token: usize,
}

impl Calls {
    /// The calls of `kinds[from..]`.
    pub fn since(kinds: &[CallKind], from: usize) -> Calls {
        let mut c = Calls::default();
        for k in kinds.get(from..).unwrap_or_default() {
            match k {
                CallKind::Api => c.api += 1,
                CallKind::Token => c.token += 1,
                CallKind::NotCounted => {}
            }
        }
        c
    }
}

/// One phase measured.
#[derive(Clone, Debug)]
pub struct Measured {
    /// Which phase.
    pub phase: Phase,
    /// Requests to the provider.
    pub calls: Calls,
    /// Wall time from the first request to the phase's end.
    pub wall: Duration,
    /// For a create through the server: how long after the request the server handed the running
    /// cluster over to deploy the agent (the rest is the agent's deploy and connection).
    pub handed_over: Option<Duration>,
    /// For a create through the server of an engine whose endpoint the server cannot reach: how long
    /// after the request the bench, as the user, applied the import command the status showed.
    pub user_import: Option<Duration>,
}

/// A hosted engine against its test counterpart, as the bench needs it. The counterpart is started
/// by the engine's constructor, with a downstream `rancher-sim` its clusters' endpoints point at.
pub trait Engine: Send + Sync {
    /// The engine's name (`GKE`).
    fn name(&self) -> &'static str;

    /// How long one provider operation takes, and how its client is told to poll (printed).
    fn timing(&self) -> String;

    /// The cluster spec's field of this engine (`gkeConfig`).
    fn spec_field(&self) -> &'static str;

    /// The `/v3/cloudcredentials` spec field and value of the credential the configs name.
    fn credential(&self) -> (&'static str, Value);

    /// The server's cloud endpoints for this engine's counterpart.
    fn endpoints(&self) -> CloudEndpoints;

    /// The engine config of cluster `name` at `stage`, as the server takes it.
    fn config(&self, name: &str, stage: Stage) -> Value;

    /// The kind of every request the counterpart has answered so far, in order.
    fn call_kinds(&self) -> Vec<CallKind>;

    /// Whether the provider shows cluster `name` at `stage` (`None`: the cluster is gone): an error
    /// says what differs. Requests it makes are [`CallKind::NotCounted`].
    fn check(&self, name: &str, stage: Option<Stage>) -> impl Future<Output = Result<()>> + Send;

    /// Whether the server cannot reach the clusters' endpoint, so that a created cluster waits with
    /// the import command (`kubectl apply -f <url>`) in its status for the user to run against the
    /// downstream cluster — which the bench then does.
    fn user_imports(&self) -> bool {
        false
    }

    /// A kubeconfig (YAML) of the downstream cluster, for the cluster agent.
    fn downstream_kubeconfig(&self) -> String;

    /// Runs `phase` of cluster `name` with the provider's client alone, waiting on each operation.
    fn direct(&self, name: &str, phase: Phase) -> impl Future<Output = Result<()>> + Send;
}

/// Runs every phase of cluster `name` on the direct path; each is checked at the provider.
///
/// # Errors
/// A phase that fails, or leaves the cluster otherwise than it should.
pub async fn run_direct<E: Engine>(engine: &E, name: &str) -> Result<Vec<Measured>> {
    let mut out = Vec::new();
    for phase in Phase::ALL {
        let from = engine.call_kinds().len();
        let started = Instant::now();
        engine.direct(name, phase).await.map_err(|e| e.context(format!("direct {}", phase.name())))?;
        let wall = started.elapsed();
        let calls = Calls::since(&engine.call_kinds(), from);
        engine.check(name, phase.leaves()).await?;
        out.push(Measured { phase, calls, wall, handed_over: None, user_import: None });
    }
    Ok(out)
}
