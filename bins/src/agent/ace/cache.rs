//! The agent's view of the token records in its own cluster: a reflector over the labelled Secrets
//! in `cattle-system`, fed by a watch on the downstream API server (not the management server, so
//! it keeps working while the server is down).

use std::collections::BTreeMap;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio_util::sync::CancellationToken;

use crate::protocol::ace::{ACE_LABEL, ClusterAuthToken, NAMESPACE};

/// The token records, kept current by a watch.
#[derive(Clone)]
pub(crate) struct TokenRecords {
    store: Store<Secret>,
}

impl TokenRecords {
    /// Starts watching through `client`; the watch runs until `stop`.
    pub(crate) fn start(client: kube::Client, stop: CancellationToken) -> TokenRecords {
        let api = kube::Api::<Secret>::namespaced(client, NAMESPACE);
        let (reader, writer) = reflector::store();
        let config = watcher::Config::default().labels(&format!("{ACE_LABEL}=true"));
        let stream = reflector::reflector(writer, watcher(api, config)).default_backoff();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    ev = stream.next() => match ev {
                        None => return,
                        Some(Err(e)) => tracing::debug!(error = %e, "token record watch error; it retries"),
                        Some(Ok(_)) => {}
                    },
                }
            }
        });
        TokenRecords { store: reader }
    }

    /// Records fed by hand, for tests of the webhook.
    #[cfg(test)]
    pub(crate) fn from_store(store: Store<Secret>) -> TokenRecords {
        TokenRecords { store }
    }

    /// Whether the first list has arrived.
    pub(crate) fn is_ready(&self) -> bool {
        futures::FutureExt::now_or_never(self.store.wait_until_ready()).is_some_and(|r| r.is_ok())
    }

    /// The record of token `name`, when there is a well-formed one.
    pub(crate) fn get(&self, name: &str) -> Option<ClusterAuthToken> {
        let secret = self.store.get(&ObjectRef::new(name).within(NAMESPACE))?;
        let data: BTreeMap<String, Vec<u8>> =
            secret.data.clone().unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
        match ClusterAuthToken::from_secret(secret.type_.as_deref(), secret.metadata.labels.as_ref(), &data) {
            Ok(rec) if rec.token_name == name => Some(rec),
            Ok(_) => {
                tracing::warn!(secret = %name, "token record names another token; ignored");
                None
            }
            Err(e) => {
                tracing::warn!(secret = %name, error = %e, "malformed token record; ignored");
                None
            }
        }
    }
}
