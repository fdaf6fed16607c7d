//! Converging one kind of downstream object on a desired set: create what is missing, replace what
//! differs, delete what carries our label but is no longer wanted. Objects without our label are
//! never updated or deleted, even when their name collides with one we want.

use std::collections::BTreeMap;

use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::{Api, Client};
use rancher_auth::rbac_render::{MANAGED_BY_LABEL, MANAGED_BY_VALUE, is_managed};
use serde_json::Value;

use super::SyncError;

/// `(namespace or "", name)`.
pub(crate) type Key = (String, String);

/// One downstream kind.
pub(crate) struct Kind {
    pub(crate) resource: ApiResource,
    pub(crate) namespaced: bool,
}

impl Kind {
    pub(crate) fn of<K: kube::Resource<DynamicType = ()>>(namespaced: bool) -> Kind {
        Kind { resource: ApiResource::erase::<K>(&()), namespaced }
    }

    fn api(&self, client: &Client, namespace: &str) -> Api<DynamicObject> {
        if self.namespaced {
            Api::namespaced_with(client.clone(), namespace, &self.resource)
        } else {
            Api::all_with(client.clone(), &self.resource)
        }
    }

    pub(crate) fn downstream(&self, action: &'static str, key: &Key, source: kube::Error) -> SyncError {
        let name = if key.0.is_empty() { key.1.clone() } else { format!("{}/{}", key.0, key.1) };
        SyncError::Downstream { action, kind: self.resource.kind.clone(), name, source: Box::new(source) }
    }
}

/// What a converge did, for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Changes {
    pub(crate) created: usize,
    pub(crate) updated: usize,
    pub(crate) deleted: usize,
}

impl Changes {
    pub(crate) fn any(&self) -> bool {
        self.created + self.updated + self.deleted > 0
    }
}

/// The objects of `kind` that carry our label (and, when given, also match `extra_selector`).
pub(crate) async fn list_ours(
    client: &Client,
    kind: &Kind,
    extra_selector: Option<&str>,
) -> Result<BTreeMap<Key, Value>, SyncError> {
    let mut selector = format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}");
    if let Some(extra) = extra_selector {
        selector.push(',');
        selector.push_str(extra);
    }
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &kind.resource);
    let list = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| kind.downstream("listing", &(String::new(), String::new()), e))?;
    let mut out = BTreeMap::new();
    for o in list.items {
        let key =
            (o.metadata.namespace.clone().unwrap_or_default(), o.metadata.name.clone().unwrap_or_default());
        let v = serde_json::to_value(&o).map_err(SyncError::Encode)?;
        // The server filtered by label already; check again before anything may be changed.
        if is_managed(&v) {
            out.insert(key, v);
        }
    }
    Ok(out)
}

/// Creates and replaces so that every desired object exists as wanted. Errors are collected, not
/// fatal: one bad object does not stop the others.
pub(crate) async fn upsert(
    client: &Client,
    kind: &Kind,
    desired: &BTreeMap<Key, Value>,
    live: &BTreeMap<Key, Value>,
    changes: &mut Changes,
    errors: &mut Vec<SyncError>,
    differs: impl Fn(&Value, &Value) -> bool,
) {
    for (key, want) in desired {
        let api = kind.api(client, &key.0);
        let obj: DynamicObject = match serde_json::from_value(want.clone()) {
            Ok(o) => o,
            Err(e) => {
                errors.push(SyncError::Encode(e));
                continue;
            }
        };
        match live.get(key) {
            None => match api.create(&PostParams::default(), &obj).await {
                Ok(_) => changes.created += 1,
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    // Not in our labelled list, yet it exists: someone else's object. Leave it alone.
                    tracing::warn!(
                        kind = %kind.resource.kind, namespace = %key.0, name = %key.1,
                        "an object of this name exists without our label; not touching it"
                    );
                }
                Err(e) => errors.push(kind.downstream("creating", key, e)),
            },
            Some(have) if differs(want, have) => {
                let mut obj = obj;
                obj.metadata.resource_version =
                    have["metadata"]["resourceVersion"].as_str().map(str::to_owned);
                match api.replace(&key.1, &PostParams::default(), &obj).await {
                    Ok(_) => changes.updated += 1,
                    Err(e) => errors.push(kind.downstream("updating", key, e)),
                }
            }
            Some(_) => {}
        }
    }
}

/// Deletes our objects that are no longer desired.
pub(crate) async fn prune(
    client: &Client,
    kind: &Kind,
    desired: &BTreeMap<Key, Value>,
    live: &BTreeMap<Key, Value>,
    changes: &mut Changes,
    errors: &mut Vec<SyncError>,
) {
    for (key, have) in live {
        if desired.contains_key(key) || !is_managed(have) {
            continue;
        }
        match kind.api(client, &key.0).delete(&key.1, &DeleteParams::default()).await {
            Ok(_) => changes.deleted += 1,
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => errors.push(kind.downstream("deleting", key, e)),
        }
    }
}
