use std::sync::Arc;

use rancher_core::model::{Cluster, ClusterSpec, ImportedConfig};
use rancher_core::store::{Api, RedbStore, Store};

use crate::server::Server;

async fn server(dir: &std::path::Path, store: Arc<dyn Store>) -> Server {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    Server::builder()
        .data_dir(dir)
        .store(store)
        .https_listen("127.0.0.1:0".parse().unwrap())
        .bootstrap_password("a-long-admin-password")
        .build()
        .await
        .unwrap()
}

/// A restarted server knows no token until its index is rebuilt from the store; the agents that
/// reconnect while the first rebuild runs wait for it and are let in, none is taken for unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_looked_up_while_the_index_is_rebuilt_are_all_found() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(RedbStore::open(dir.path().join("store.redb")).unwrap());
    let first = server(dir.path(), store.clone()).await;
    let mut tokens = Vec::new();
    for i in 0..200 {
        let spec = ClusterSpec { imported_config: Some(ImportedConfig::default()), ..Default::default() };
        let c =
            Api::<Cluster>::all(store.clone()).create(&Cluster::new(&format!("c-{i}"), spec)).await.unwrap();
        let reg = first.registration();
        let crt = reg.ensure_default_token(&c).await.unwrap();
        tokens.push(reg.crt_status(&crt).token);
    }
    drop(first);

    let restarted = server(dir.path(), store).await;
    let reg = restarted.registration();
    let lookups = tokens.iter().map(|t| reg.registration_token(t));
    let found = futures::future::join_all(lookups).await;
    let unknown = found.iter().filter(|f| !matches!(f, Ok(Some(_)))).count();
    assert_eq!(unknown, 0, "{unknown} of {} valid tokens taken for unknown", tokens.len());

    // An unknown token is still unknown, and does not rebuild the index again within the second.
    assert!(reg.registration_token(&"0".repeat(tokens[0].len())).await.unwrap().is_none());
}
