//! Object metadata, conditions and the [`Resource`] trait every management kind implements.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// Standard Kubernetes-style object metadata.
///
/// The store owns `uid`, `resourceVersion`, `generation`, `creationTimestamp` and `deletionTimestamp`:
/// whatever a client sends in those fields is replaced (on create) or checked (on update).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// Unique within its kind (and namespace, for namespaced kinds). A DNS-1123 label.
    #[serde(default)]
    pub name: String,
    /// A prefix the store completes with random characters when `name` is empty on create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate_name: Option<String>,
    /// The namespace, for namespaced kinds (for management kinds: the owning cluster's or project's id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Set by the store on create; never changes.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// Opaque version for optimistic concurrency; set by the store on every write.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
    /// Incremented by the store whenever `spec` changes.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: i64,
    /// Labels, selectable with label selectors.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations: free-form metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// When the store first saved the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub creation_timestamp: Option<Timestamp>,
    /// Set when a delete was requested while finalizers remained: the object is Terminating.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub deletion_timestamp: Option<Timestamp>,
    /// Keys that must all be removed before a requested deletion completes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// The status of a [`Condition`], as in Kubernetes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// Not known yet.
    #[default]
    Unknown,
}

/// One observation about an object's state (`Ready`, `Provisioned`, `Connected`, …).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The condition's type, e.g. `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: ConditionStatus,
    /// A CamelCase machine-readable reason for the last transition.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// A human-readable message.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When `status` last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub last_transition_time: Option<Timestamp>,
    /// When the condition was last written, changed or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub last_update_time: Option<Timestamp>,
}

/// Helpers over a list of conditions.
pub trait Conditions {
    /// The condition of this type, if present.
    fn get_condition(&self, type_: &str) -> Option<&Condition>;
    /// Sets a condition, keeping `lastTransitionTime` unless the status changes.
    /// Returns true when anything changed.
    fn set_condition(&mut self, type_: &str, status: ConditionStatus, reason: &str, message: &str) -> bool;
    /// True when the condition is present with status True.
    fn is_true(&self, type_: &str) -> bool {
        self.get_condition(type_).is_some_and(|c| c.status == ConditionStatus::True)
    }
}

impl Conditions for Vec<Condition> {
    fn get_condition(&self, type_: &str) -> Option<&Condition> {
        self.iter().find(|c| c.type_ == type_)
    }

    fn set_condition(&mut self, type_: &str, status: ConditionStatus, reason: &str, message: &str) -> bool {
        let now = Timestamp::now();
        match self.iter_mut().find(|c| c.type_ == type_) {
            Some(c) if c.status == status && c.reason == reason && c.message == message => false,
            Some(c) => {
                if c.status != status {
                    c.last_transition_time = Some(now);
                }
                c.status = status;
                c.reason = reason.to_owned();
                c.message = message.to_owned();
                c.last_update_time = Some(now);
                true
            }
            None => {
                self.push(Condition {
                    type_: type_.to_owned(),
                    status,
                    reason: reason.to_owned(),
                    message: message.to_owned(),
                    last_transition_time: Some(now),
                    last_update_time: Some(now),
                });
                true
            }
        }
    }
}

/// Only the metadata of a `K`, like Kubernetes' `PartialObjectMetadata`: what a cache keeps of objects
/// whose spec and status it never reads. Read from a whole object (the rest is skipped, not parsed
/// into fields); written back, it is the metadata alone.
///
/// ```
/// use rancher_core::model::Cluster;
/// use rancher_core::{MetadataOnly, Resource};
/// let whole = serde_json::json!({"metadata": {"name": "c1"}, "spec": {"displayName": "One"}});
/// let meta: MetadataOnly<Cluster> = serde_json::from_value(whole).unwrap();
/// assert_eq!((meta.name(), <MetadataOnly<Cluster> as Resource>::PLURAL), ("c1", "clusters"));
/// ```
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct MetadataOnly<K> {
    /// The object's metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(skip)]
    kind: std::marker::PhantomData<fn() -> K>,
}

impl<K> MetadataOnly<K> {
    /// The metadata of a `K`.
    pub fn new(metadata: ObjectMeta) -> Self {
        MetadataOnly { metadata, kind: std::marker::PhantomData }
    }
}

impl<K> Clone for MetadataOnly<K> {
    fn clone(&self) -> Self {
        MetadataOnly::new(self.metadata.clone())
    }
}

impl<K> std::fmt::Debug for MetadataOnly<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataOnly").field("metadata", &self.metadata).finish()
    }
}

impl<K: Resource> Resource for MetadataOnly<K> {
    const API_VERSION: &'static str = K::API_VERSION;
    const KIND: &'static str = K::KIND;
    const PLURAL: &'static str = K::PLURAL;
    const NAMESPACED: bool = K::NAMESPACED;
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// A kind the store can hold: a serialisable object with [`ObjectMeta`].
///
/// Implemented by every management kind in [`crate::model`]; implement it for your own kinds to keep
/// them in the same [`Store`](crate::store::Store).
pub trait Resource: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// `group/version`, e.g. `management.cattle.io/v3`.
    const API_VERSION: &'static str;
    /// The kind, e.g. `Cluster`.
    const KIND: &'static str;
    /// The lower-case plural used in paths and store keys, e.g. `clusters`.
    const PLURAL: &'static str;
    /// Whether objects of this kind live in a namespace.
    const NAMESPACED: bool;
    /// The object's metadata.
    fn meta(&self) -> &ObjectMeta;
    /// The object's metadata, mutably.
    fn meta_mut(&mut self) -> &mut ObjectMeta;
    /// The object's name.
    fn name(&self) -> &str {
        &self.meta().name
    }
}
