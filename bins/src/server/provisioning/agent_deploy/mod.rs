//! Deploying the cluster agent into a cluster a provisioner created ([`Progress::Created`]): the
//! server applies the cluster's import manifest — the one `GET /v3/import/…` serves for its
//! `default-token` — through the API endpoint handed over, with server-side apply, and from then on
//! the agent's tunnel is the way in. The credential serves that one call and is dropped.
//!
//! Nothing here knows an engine: EKS, GKE, AKS or a plugged-in provisioner all hand over a
//! [`Downstream`].
//!
//! # What the cluster records
//! * The condition [`AGENT_MANIFEST_APPLIED`] (rancher-core's lifecycle owns `AgentDeployed`, which
//!   means "an agent has connected"; this one says what the *server* did, as Rancher's clusterdeploy
//!   controller does with its own condition): `True` once applied, `False` with the reason
//!   [`REASON_UNREACHABLE`] (the message shows the import command) or [`REASON_REFUSED`], `True`
//!   with [`REASON_APPLIED_BY_USER`] when the agent of an unreachable cluster connected after the
//!   user applied the manifest. Its presence is also what lets the agent of a cluster of any
//!   driver join ([`joins_by_agent`](crate::server::registration::joins_by_agent)).
//! * The annotation [`APPLIED_ANNOTATION`]: `<spec generation>/<fingerprint>` of what was applied
//!   (the fingerprint covers the endpoint, its CA and the manifest, never the credential).
//!
//! # When it is applied again
//! Not on every call ([`plan`]): again only when the spec's generation or the fingerprint changed
//! (a new agent image or server URL, a new endpoint), or when the agent has not connected
//! [`REDEPLOY_AFTER`] after the last apply. An unreachable endpoint is tried again every
//! [`UNREACHABLE_RETRY`] until the agent connects (a new endpoint often takes a while to resolve).
//! Once the agent has connected, a changed spec or manifest is applied again; nothing else is.

mod client;

use std::time::Duration;

use rancher_core::model::Cluster;
use rancher_core::{ConditionStatus, Conditions};
use rancher_provision::Downstream;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use client::DeployError;
use client::{classify, client_for};

use crate::server::registration::{DEFAULT_TOKEN, Registration};

/// The condition this module keeps: whether the server applied the agent's manifest in the cluster.
pub(crate) const AGENT_MANIFEST_APPLIED: &str = "AgentManifestApplied";
/// `False`: the endpoint could not be reached from the server; the user applies the manifest.
pub(crate) const REASON_UNREACHABLE: &str = "EndpointUnreachable";
/// `False`: the API server refused the server (TLS, 401, 403).
pub(crate) const REASON_REFUSED: &str = "Refused";
/// `True`: the endpoint was unreachable and the agent connected after the user applied it.
pub(crate) const REASON_APPLIED_BY_USER: &str = "AppliedByUser";
/// What the server applied last: `<spec generation>/<fingerprint>`.
pub(crate) const APPLIED_ANNOTATION: &str = "provisioning.cattle.io/agent-manifest";
/// The field manager of the server's server-side apply.
pub(crate) const FIELD_MANAGER: &str = "rancher-server";
/// How long an applied agent has to connect before the manifest is applied again.
pub(crate) const REDEPLOY_AFTER: Duration = Duration::from_secs(600);
/// How often an unreachable endpoint is tried again while no agent has connected.
pub(crate) const UNREACHABLE_RETRY: Duration = Duration::from_secs(60);

/// What came of a provisioner's hand-over; [`Outcome::created`](super::outcome::Outcome::created)
/// turns it into the cluster's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Handover {
    /// The manifest was applied now.
    Applied {
        /// The API server's URL.
        endpoint: String,
        /// What to record in [`APPLIED_ANNOTATION`].
        record: String,
    },
    /// Applied earlier for this spec and manifest; the agent has yet to connect.
    AwaitingAgent {
        /// The API server's URL.
        endpoint: String,
        /// When to look again (the [`REDEPLOY_AFTER`] bound).
        recheck: Duration,
    },
    /// The agent has connected and what was applied is current: provisioned.
    Connected,
    /// The agent connected after the user applied the manifest of an unreachable cluster.
    AppliedByUser {
        /// The API server's URL.
        endpoint: String,
        /// What to record in [`APPLIED_ANNOTATION`].
        record: String,
    },
    /// The endpoint cannot be reached from the server: the cluster waits for the user's import.
    Unreachable {
        /// What the user reads, with the import command.
        message: String,
        /// Whether it was tried now (the condition's time moves) or the last try stands.
        tried: bool,
        /// When to try again.
        recheck: Duration,
    },
    /// The API server refused the server: a failure that names what was refused.
    Refused {
        /// What was refused.
        message: String,
    },
    /// Deploying failed; `transient` failures are retried with backoff.
    Failed {
        /// Why.
        message: String,
        /// Whether retrying can help.
        transient: bool,
    },
    /// The cluster is being deleted.
    Cancelled,
}

/// What to do about a hand-over, from what the cluster records ([`plan`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Apply the manifest now.
    Deploy,
    /// Applied and current; the agent has this long left before it is applied again.
    AwaitAgent(Duration),
    /// The endpoint was unreachable lately; try again after this long.
    AwaitRetry(Duration),
    /// The agent is connected and what the server applied is current.
    Connected,
    /// The agent connected although the server never reached the endpoint: the user imported it.
    AppliedByUser,
}

/// What to do for `cluster`, whose manifest and endpoint now fingerprint to `record`, at `now`.
pub(crate) fn plan(cluster: &Cluster, record: &str, now: jiff::Timestamp) -> Plan {
    let conditions = &cluster.status.conditions;
    let connected = conditions.is_true("AgentDeployed");
    let current = cluster.metadata.annotations.get(APPLIED_ANNOTATION).is_some_and(|r| r == record);
    let applied = conditions.get_condition(AGENT_MANIFEST_APPLIED);
    // A time in the future (another replica's clock) counts as now.
    let since = |c: &rancher_core::Condition| {
        c.last_update_time
            .map_or(Duration::MAX, |at| Duration::try_from(now.duration_since(at)).unwrap_or(Duration::ZERO))
    };
    let unreachable =
        applied.filter(|c| c.status == ConditionStatus::False && c.reason == REASON_UNREACHABLE);
    if connected {
        return match (current, unreachable) {
            (true, _) => Plan::Connected,
            (false, Some(_)) => Plan::AppliedByUser,
            (false, None) => Plan::Deploy,
        };
    }
    if let Some(c) = unreachable
        && since(c) < UNREACHABLE_RETRY
    {
        return Plan::AwaitRetry(UNREACHABLE_RETRY - since(c));
    }
    match applied {
        Some(c) if current && c.status == ConditionStatus::True && since(c) < REDEPLOY_AFTER => {
            Plan::AwaitAgent(REDEPLOY_AFTER - since(c))
        }
        _ => Plan::Deploy,
    }
}

/// `<generation>/<first 16 hex of sha256(endpoint, CA, manifest)>`.
fn record_of(cluster: &Cluster, downstream: &Downstream, manifest: &str) -> String {
    let mut h = Sha256::new();
    for part in [downstream.api_endpoint.as_str(), downstream.ca_pem.as_str(), manifest] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    format!("{}/{}", cluster.metadata.generation, &hex::encode(h.finalize())[..16])
}

/// The import manifest of `cluster`'s `default-token` (made if missing) and its URL.
async fn manifest_of(reg: &Registration, cluster: &Cluster) -> Result<(String, String), DeployError> {
    let crt = reg
        .ensure_default_token(cluster)
        .await
        .map_err(|e| DeployError::Manifest(format!("the {DEFAULT_TOKEN} registration token: {e}")))?;
    let manifest = reg.manifest(&reg.token_of(&crt), &cluster.metadata.name);
    Ok((manifest, reg.manifest_url(&crt)))
}

/// The words a user reads while the endpoint is unreachable.
fn unreachable_message(endpoint: &str, reason: &str, manifest_url: &str) -> String {
    format!(
        "the server cannot reach the cluster's API server at {endpoint} ({reason}); if the endpoint is \
         private, connect the cluster by running this where kubectl reaches it: kubectl apply -f {manifest_url}"
    )
}

/// Handles a provisioner's hand-over of `cluster`: applies the agent's manifest through `downstream`
/// when [`plan`] says so. `mark_applying` is called before the first attempt, so that the agent, once
/// running, is let in ([`joins_by_agent`](crate::server::registration::joins_by_agent)).
pub(crate) async fn hand_over(
    reg: &Registration,
    cluster: &Cluster,
    downstream: &Downstream,
    cancel: &CancellationToken,
    mark_applying: impl AsyncFnOnce(&str) -> Result<(), rancher_core::store::StoreError>,
) -> Handover {
    if cancel.is_cancelled() {
        return Handover::Cancelled;
    }
    let endpoint = downstream.api_endpoint.clone();
    let (manifest, manifest_url) = match manifest_of(reg, cluster).await {
        Ok(m) => m,
        Err(e) => return Handover::Failed { message: e.to_string(), transient: true },
    };
    let record = record_of(cluster, downstream, &manifest);
    match plan(cluster, &record, jiff::Timestamp::now()) {
        Plan::Connected => return Handover::Connected,
        Plan::AppliedByUser => return Handover::AppliedByUser { endpoint, record },
        Plan::AwaitAgent(recheck) => return Handover::AwaitingAgent { endpoint, recheck },
        Plan::AwaitRetry(recheck) => {
            let message = cluster
                .status
                .conditions
                .get_condition(AGENT_MANIFEST_APPLIED)
                .map(|c| c.message.clone())
                .unwrap_or_default();
            return Handover::Unreachable { message, tried: false, recheck };
        }
        Plan::Deploy => {}
    }
    if cluster.status.conditions.get_condition(AGENT_MANIFEST_APPLIED).is_none()
        && let Err(e) = mark_applying(&endpoint).await
    {
        return Handover::Failed { message: format!("recording the attempt: {e}"), transient: true };
    }
    let applied = tokio::select! {
        () = cancel.cancelled() => return Handover::Cancelled,
        r = deploy(downstream, &manifest) => r,
    };
    let name = cluster.metadata.name.as_str();
    match applied {
        Ok(()) => {
            tracing::info!(cluster = name, endpoint, "applied the cluster agent's manifest");
            Handover::Applied { endpoint, record }
        }
        Err(DeployError::Unreachable { endpoint, reason }) => {
            tracing::info!(cluster = name, endpoint, reason, "the cluster's endpoint is unreachable");
            Handover::Unreachable {
                message: unreachable_message(&endpoint, &reason, &manifest_url),
                tried: true,
                recheck: UNREACHABLE_RETRY,
            }
        }
        Err(e @ DeployError::Refused { .. }) => {
            tracing::warn!(cluster = name, "deploying the cluster agent: {e}");
            Handover::Refused { message: e.to_string() }
        }
        Err(e) => {
            tracing::warn!(cluster = name, "deploying the cluster agent: {e}");
            let transient = !matches!(e, DeployError::Invalid { .. });
            Handover::Failed { message: e.to_string(), transient }
        }
    }
}

/// Server-side applies every object of `manifest`, in order, through `downstream`.
async fn deploy(downstream: &Downstream, manifest: &str) -> Result<(), DeployError> {
    use kube::api::{Patch, PatchParams};
    let objects = objects_of(manifest)?;
    let client = client_for(downstream)?;
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for object in &objects {
        let api = object.api(&client);
        if let Err(e) = api.patch(&object.name, &params, &Patch::Apply(&object.body)).await {
            return Err(classify(&downstream.api_endpoint, &object.describe(), e));
        }
    }
    Ok(())
}

/// One object of the manifest.
struct Object {
    resource: kube::api::ApiResource,
    namespace: Option<String>,
    name: String,
    body: serde_json::Value,
}

impl Object {
    fn api(&self, client: &kube::Client) -> kube::Api<kube::api::DynamicObject> {
        match &self.namespace {
            Some(ns) => kube::Api::namespaced_with(client.clone(), ns, &self.resource),
            None => kube::Api::all_with(client.clone(), &self.resource),
        }
    }

    fn describe(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.resource.kind, self.name),
            None => format!("{} {}", self.resource.kind, self.name),
        }
    }
}

/// The kinds the import manifest holds, and whether each lives in a namespace.
fn resource_of(api_version: &str, kind: &str) -> Option<(kube::api::ApiResource, bool)> {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{Namespace, Secret, Service, ServiceAccount};
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
    use kube::api::ApiResource;
    let (resource, namespaced) = match kind {
        "Namespace" => (ApiResource::erase::<Namespace>(&()), false),
        "ServiceAccount" => (ApiResource::erase::<ServiceAccount>(&()), true),
        "ClusterRole" => (ApiResource::erase::<ClusterRole>(&()), false),
        "ClusterRoleBinding" => (ApiResource::erase::<ClusterRoleBinding>(&()), false),
        "Secret" => (ApiResource::erase::<Secret>(&()), true),
        "Deployment" => (ApiResource::erase::<Deployment>(&()), true),
        "Service" => (ApiResource::erase::<Service>(&()), true),
        _ => return None,
    };
    (resource.api_version == api_version).then_some((resource, namespaced))
}

/// The manifest's documents as objects to apply. The manifest is ours: a failure is a bug, reported
/// without its text (it holds the registration token).
fn objects_of(manifest: &str) -> Result<Vec<Object>, DeployError> {
    let bug = |what: String| DeployError::Manifest(format!("the import manifest {what}"));
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(manifest).map_err(|_| bug("is not YAML".into()))?;
    let mut objects = Vec::new();
    for body in docs.into_iter().filter(|d| !d.is_null()) {
        let text =
            |p: &str| body.pointer(p).and_then(serde_json::Value::as_str).unwrap_or_default().to_owned();
        let (api_version, kind, name) = (text("/apiVersion"), text("/kind"), text("/metadata/name"));
        let (resource, namespaced) = resource_of(&api_version, &kind)
            .ok_or_else(|| bug(format!("holds an unexpected {api_version} {kind}")))?;
        let namespace = namespaced.then(|| text("/metadata/namespace"));
        if name.is_empty() || namespace.as_deref() == Some("") {
            return Err(bug(format!("holds a {kind} without a name or namespace")));
        }
        objects.push(Object { resource, namespace, name, body });
    }
    Ok(objects)
}

#[cfg(test)]
mod tests {
    use rancher_core::model::ClusterSpec;

    use super::*;

    fn cluster() -> Cluster {
        let mut c = Cluster::new("c-h", ClusterSpec::default());
        c.metadata.generation = 2;
        c
    }

    fn at(c: &mut Cluster, type_: &str, status: ConditionStatus, reason: &str, ago: Duration) {
        c.status.conditions.set_condition(type_, status, reason, "");
        let when = jiff::Timestamp::now() - jiff::SignedDuration::try_from(ago).unwrap();
        let cond = c.status.conditions.iter_mut().find(|x| x.type_ == type_).unwrap();
        cond.last_update_time = Some(when);
    }

    fn recorded(c: &mut Cluster, record: &str) {
        c.metadata.annotations.insert(APPLIED_ANNOTATION.into(), record.into());
    }

    fn now() -> jiff::Timestamp {
        jiff::Timestamp::now()
    }

    #[test]
    fn applied_once_then_left_alone_until_the_bound_passes() {
        let mut c = cluster();
        assert_eq!(plan(&c, "2/aa", now()), Plan::Deploy, "never applied");
        recorded(&mut c, "2/aa");
        at(&mut c, AGENT_MANIFEST_APPLIED, ConditionStatus::True, "", Duration::from_secs(60));
        assert!(
            matches!(plan(&c, "2/aa", now()), Plan::AwaitAgent(d) if d <= REDEPLOY_AFTER - Duration::from_secs(59))
        );
        at(&mut c, AGENT_MANIFEST_APPLIED, ConditionStatus::True, "", REDEPLOY_AFTER);
        assert_eq!(plan(&c, "2/aa", now()), Plan::Deploy, "no agent within the bound: applied again");
    }

    #[test]
    fn a_changed_spec_or_manifest_is_applied_again_even_once_connected() {
        let mut c = cluster();
        recorded(&mut c, "2/aa");
        at(&mut c, AGENT_MANIFEST_APPLIED, ConditionStatus::True, "", Duration::from_secs(1));
        at(&mut c, "AgentDeployed", ConditionStatus::True, "", Duration::from_secs(1));
        assert_eq!(plan(&c, "2/aa", now()), Plan::Connected);
        assert_eq!(plan(&c, "3/aa", now()), Plan::Deploy, "the spec changed");
        assert_eq!(plan(&c, "2/bb", now()), Plan::Deploy, "a new agent image, server URL or endpoint");
    }

    #[test]
    fn an_unreachable_endpoint_is_retried_on_a_timer_until_the_users_import_connects() {
        let mut c = cluster();
        at(
            &mut c,
            AGENT_MANIFEST_APPLIED,
            ConditionStatus::False,
            REASON_UNREACHABLE,
            Duration::from_secs(5),
        );
        assert!(
            matches!(plan(&c, "2/aa", now()), Plan::AwaitRetry(d) if d <= UNREACHABLE_RETRY - Duration::from_secs(4))
        );
        at(&mut c, AGENT_MANIFEST_APPLIED, ConditionStatus::False, REASON_UNREACHABLE, UNREACHABLE_RETRY);
        assert_eq!(plan(&c, "2/aa", now()), Plan::Deploy);
        at(&mut c, "AgentDeployed", ConditionStatus::True, "", Duration::from_secs(1));
        assert_eq!(plan(&c, "2/aa", now()), Plan::AppliedByUser);
        recorded(&mut c, "2/aa");
        at(
            &mut c,
            AGENT_MANIFEST_APPLIED,
            ConditionStatus::True,
            REASON_APPLIED_BY_USER,
            Duration::from_secs(1),
        );
        assert_eq!(plan(&c, "2/aa", now()), Plan::Connected);
    }

    #[test]
    fn a_refused_or_interrupted_attempt_is_made_again() {
        let mut c = cluster();
        recorded(&mut c, "2/aa");
        at(&mut c, AGENT_MANIFEST_APPLIED, ConditionStatus::False, REASON_REFUSED, Duration::from_secs(1));
        assert_eq!(plan(&c, "2/aa", now()), Plan::Deploy, "the controller's backoff spaces these");
        at(&mut c, AGENT_MANIFEST_APPLIED, ConditionStatus::Unknown, "", Duration::from_secs(1));
        assert_eq!(plan(&c, "2/aa", now()), Plan::Deploy);
    }

    #[test]
    fn the_record_follows_endpoint_ca_and_manifest_but_not_the_credential() {
        let c = cluster();
        let d = |endpoint: &str, ca: &str, token: &str| Downstream {
            api_endpoint: endpoint.into(),
            ca_pem: ca.into(),
            credential: rancher_provision::DownstreamCredential::BearerToken(token.to_owned().into()),
        };
        let base = record_of(&c, &d("https://a", "ca", "t1"), "m");
        assert!(base.starts_with("2/") && base.len() == 2 + 16, "{base}");
        assert_eq!(base, record_of(&c, &d("https://a", "ca", "t2"), "m"), "a fresh token changes nothing");
        assert_ne!(base, record_of(&c, &d("https://b", "ca", "t1"), "m"));
        assert_ne!(base, record_of(&c, &d("https://a", "ca2", "t1"), "m"));
        assert_ne!(base, record_of(&c, &d("https://a", "ca", "t1"), "m2"));
    }

    #[test]
    fn the_import_manifest_becomes_its_seven_objects_in_order() {
        let manifest = crate::server::registration::render_manifest_for_tests("c-h");
        let objects = objects_of(&manifest).unwrap();
        let described: Vec<String> = objects.iter().map(Object::describe).collect();
        assert_eq!(described.len(), 7, "{described:?}");
        assert_eq!(described[0], "Namespace cattle-system");
        assert!(described[4].starts_with("Secret cattle-system/cattle-credentials-"), "{described:?}");
        assert_eq!(described[5], "Deployment cattle-system/cattle-cluster-agent");
        assert_eq!(described[6], "Service cattle-system/cattle-cluster-agent");
        let err = objects_of("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n").err().unwrap();
        assert!(err.to_string().contains("unexpected v1 Pod"), "{err}");
    }
}
