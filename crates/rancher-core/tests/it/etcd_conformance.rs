//! The conformance suite against [`EtcdStore`] on a real single-member etcd started per test.
#![cfg(feature = "etcd")]

use std::sync::Arc;

use crate::conformance::Fixture;
use futures::FutureExt;
use rancher_core::store::EtcdStore;

async fn etcd() -> Fixture {
    let etcd = rancher_test_support::etcd::Etcd::start(1).await;
    let store = EtcdStore::connect(&etcd.endpoints()).await.unwrap();
    let compactor = store.clone();
    Fixture {
        store: Arc::new(store),
        compact: Box::new(move |rv| {
            let c = compactor.clone();
            async move { c.compact(rv).await.unwrap() }.boxed()
        }),
        keep: Box::new(etcd),
    }
}

conformance_suite!(etcd());
