//! ServerSecret: what the management servers sharing one store must hold alike.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ConditionsOnly, management_kind};

management_kind!(
    /// Something every management server sharing the store needs alike — the CA that signs their
    /// serving certificates (agents pin its checksum), the key registration tokens are made with — so
    /// that replicas on one etcd agree without files copied between them. Its private values are
    /// sealed with the servers' secrets key. The `/v3` API does not serve this kind.
    ServerSecret, "serversecrets", namespaced = false, ServerSecretSpec, ConditionsOnly
);

/// The values of a [`ServerSecret`], by name; private ones hold sealed text.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ServerSecretSpec {
    /// Value by name.
    #[serde(default)]
    pub data: BTreeMap<String, String>,
}

management_kind!(
    /// A lease a management server holds for a while and renews, as Kubernetes'
    /// `coordination.k8s.io` Lease: the leadership of the controllers that must run once
    /// ([`LeaderElection`](crate::controller::LeaderElection)). The `/v3` API does not serve this kind.
    Lease, "leases", namespaced = false, LeaseSpec, ConditionsOnly
);

/// Who holds a [`Lease`], and for how long.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct LeaseSpec {
    /// The holder's identity; empty when released.
    #[serde(default)]
    pub holder_identity: String,
    /// How long the lease lasts after its last renewal: another candidate takes it over once it has
    /// seen no renewal for this long (by its own clock).
    #[serde(default)]
    pub lease_duration_seconds: u32,
    /// When the holder acquired it (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub acquire_time: Option<jiff::Timestamp>,
    /// When the holder last renewed it (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub renew_time: Option<jiff::Timestamp>,
    /// How many times it has changed hands.
    #[serde(default)]
    pub lease_transitions: u32,
}
