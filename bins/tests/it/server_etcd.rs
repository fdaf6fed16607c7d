//! `rancher-server --store etcd` against a real etcd: objects live in etcd, so a second server process
//! on a fresh data directory sees what the first one stored. Needs `etcd` on PATH (`scripts/test.sh`
//! installs it).
#![cfg(feature = "etcd")]

use rancher_test_support::etcd::Etcd;

use crate::common::{ADMIN_PASSWORD, Api, ServerProc};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn objects_stored_in_etcd_are_seen_by_a_second_server() {
    let etcd = Etcd::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let endpoint = etcd.endpoints().remove(0);
    let args = ["--store", "etcd", "--etcd-endpoints", endpoint.as_str()];

    let first = ServerProc::start(&dir.path().join("first"), 0, Some(ADMIN_PASSWORD), &args);
    let admin = Api::new(&first).logged_in("admin", ADMIN_PASSWORD).await;
    let created = admin.post("/v3/clusters", &json!({"metadata": {"name": "in-etcd"}})).await;
    assert_eq!(created.code, 201, "{}", created.body);
    let stale_version = created.body["metadata"]["resourceVersion"].as_str().unwrap().to_owned();
    first.stop_async().await;

    // A second server with its own data directory (its own CA) reads the same etcd: the cluster and
    // the bootstrap admin are there, and a write with a stale version is still refused.
    let second = ServerProc::start(&dir.path().join("second"), 0, Some(ADMIN_PASSWORD), &args);
    let admin = Api::new(&second).logged_in("admin", ADMIN_PASSWORD).await;
    let got = admin.get("/v3/clusters/in-etcd").await;
    assert_eq!(got.code, 200, "{}", got.body);
    let mut changed = got.body.clone();
    changed["spec"]["description"] = json!("updated through the second server");
    let updated = admin.put("/v3/clusters/in-etcd", &changed).await;
    assert_eq!(updated.code, 200, "{}", updated.body);
    let mut stale = got.body.clone();
    stale["metadata"]["resourceVersion"] = json!(stale_version);
    stale["spec"]["description"] = json!("written from an old read");
    let refused = admin.put("/v3/clusters/in-etcd", &stale).await;
    crate::common::assert_status(&refused, 409, "Conflict");
    let after = admin.get("/v3/clusters/in-etcd").await;
    assert_eq!(after.body["spec"]["description"], "updated through the second server");
}
