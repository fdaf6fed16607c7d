//! New project names ([`ProjectNames`]): `p-` and five random characters, unique across the whole
//! server — a project's role template bindings live in a namespace named after it, so two projects of
//! different clusters must never share a name.
//!
//! The names in use are followed from the store (one watch), so that a new name is checked against
//! memory instead of a list of every project of the fleet: that list, made twice for every cluster
//! (its Default and System projects), made a fleet's arrival quadratic in its size. Until the watch
//! has listed, and while it is re-listing, the store is asked as before.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use rancher_core::controller::watcher::{Config, Event};
use rancher_core::model::{Project, ProjectRoleTemplateBinding};
use rancher_core::store::{Api, Store, StoreError};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::server::api::generated_name;

/// Names tried before giving up.
const NAME_ATTEMPTS: usize = 16;

/// The project names in use, followed from the store; makes new ones.
pub(crate) struct ProjectNames {
    store: Arc<dyn Store>,
    known: Arc<Known>,
    /// Stops the watch when the last holder lets go.
    _stop: DropGuard,
}

#[derive(Default)]
struct Known {
    /// The names of the projects in the store, and those handed out here since.
    names: Mutex<HashSet<String>>,
    /// Listed and following; false until the first list and from a watch failure to the re-list.
    synced: AtomicBool,
}

impl Known {
    fn names(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.names.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ProjectNames {
    /// Starts following the projects of `store` on the current Tokio runtime.
    pub(crate) fn start(store: Arc<dyn Store>) -> Arc<Self> {
        let known = Arc::new(Known::default());
        let stop = CancellationToken::new();
        tokio::spawn(stop.clone().run_until_cancelled_owned(follow(store.clone(), known.clone())));
        Arc::new(ProjectNames { store, known, _stop: stop.drop_guard() })
    }

    /// A name no project has and no project role template binding's namespace has, held for the
    /// caller: this server does not hand it out again. (Two replicas making projects at the same
    /// moment, before either's watch has seen the other's, could still pick the same name: one chance
    /// in sixty million, as with a list.)
    ///
    /// # Errors
    /// The store's, or `AlreadyExists` when every attempt clashed.
    pub(crate) async fn new_name(&self) -> Result<String, StoreError> {
        let listed = if self.known.synced.load(Ordering::Acquire) {
            None
        } else {
            let projects = Api::<Project>::all(self.store.clone()).list().await?;
            Some(projects.into_iter().map(|p| p.metadata.name).collect::<HashSet<_>>())
        };
        for _ in 0..NAME_ATTEMPTS {
            let name = generated_name("p-");
            let taken = listed.as_ref().is_some_and(|l| l.contains(&name))
                || !self.known.names().insert(name.clone());
            if taken {
                continue;
            }
            if Api::<ProjectRoleTemplateBinding>::namespaced(self.store.clone(), &name)
                .list()
                .await?
                .is_empty()
            {
                return Ok(name);
            }
        }
        Err(StoreError::AlreadyExists { resource: "projects".into(), name: "p-*".into() })
    }
}

/// Keeps `known` to the projects in the store. Deleted projects' names are let go; names handed out
/// and not (yet) created are kept until the next re-list.
async fn follow(store: Arc<dyn Store>, known: Arc<Known>) {
    let mut events =
        std::pin::pin!(rancher_core::controller::watcher(Api::<Project>::all(store), Config::default()));
    let mut listing: HashSet<String> = HashSet::new();
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Apply(p)) => {
                known.names().insert(p.metadata.name);
            }
            Ok(Event::Delete(p)) => {
                known.names().remove(&p.metadata.name);
            }
            Ok(Event::Init) => {
                known.synced.store(false, Ordering::Release);
                listing.clear();
            }
            Ok(Event::InitApply(p)) => {
                listing.insert(p.metadata.name);
            }
            Ok(Event::InitDone) => {
                *known.names() = std::mem::take(&mut listing);
                known.synced.store(true, Ordering::Release);
            }
            Err(e) => {
                known.synced.store(false, Ordering::Release);
                tracing::debug!(error = %e, "following project names (retrying)");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rancher_core::model::ProjectSpec;
    use rancher_core::store::MemoryStore;

    use super::*;

    async fn synced(names: &ProjectNames) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while !names.known.synced.load(Ordering::Acquire) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the project names were listed");
    }

    #[tokio::test]
    async fn names_in_use_anywhere_are_not_handed_out() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let mut project =
            Project::new("p-taken", ProjectSpec { cluster_name: "c1".into(), ..Default::default() });
        project.metadata.namespace = Some("c1".into());
        Api::<Project>::namespaced(store.clone(), "c1").create(&project).await.unwrap();
        let names = ProjectNames::start(store.clone());
        synced(&names).await;
        assert!(names.known.names().contains("p-taken"), "a project of any cluster holds its name");

        let a = names.new_name().await.unwrap();
        let b = names.new_name().await.unwrap();
        assert!(a.starts_with("p-") && a.len() == 7, "{a}");
        assert_ne!(a, b, "a name handed out is held");
        assert!(names.known.names().contains(&a));

        // A project deleted lets its name go.
        Api::<Project>::namespaced(store.clone(), "c1").delete("p-taken").await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), async {
            while names.known.names().contains("p-taken") {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the deleted project's name is let go");
    }
}
