//! Durability of [`RedbStore`]: a writer process is killed with SIGKILL mid-run; every write it had
//! acknowledged must be in the file when it is reopened. It writes from several tasks at once, so
//! acknowledged writes come from group commits of several writes.
//!
//! The writer is this same test binary, re-run with `RANCHER_CORE_CRASH_WRITER` set to the file path.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rancher_core::store::{ListOptions, RedbStore, Store};
use serde_json::json;

const WRITER_ENV: &str = "RANCHER_CORE_CRASH_WRITER";
const TEST_NAME: &str = "redb_crash::acknowledged_writes_survive_sigkill";

/// The child: create and update objects forever, printing `ACK <name> <version>` after each returns.
/// Concurrent writers, so writes are group-committed several to a transaction.
const WRITERS: u64 = 8;

fn run_writer(path: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let store = RedbStore::open(path).unwrap();
        let mut tasks = Vec::new();
        for t in 0..WRITERS {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in (t..).step_by(WRITERS as usize) {
                    let name = format!("o-{i}");
                    let created = store
                        .create("items", json!({"metadata": {"name": name}, "spec": {"n": i}}))
                        .await
                        .unwrap();
                    let mut updated = created.clone();
                    updated["spec"]["n"] = json!(i + 1_000_000);
                    let updated = store.update("items", updated).await.unwrap();
                    println!("ACK {name} {}", updated["metadata"]["resourceVersion"].as_str().unwrap());
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    if let Ok(path) = std::env::var(WRITER_ENV) {
        run_writer(&path);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.redb");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(WRITER_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked: Vec<(String, u64)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    // Kill after a varied number of acknowledged writes, while the writer is mid-commit.
    let target = 40 + (std::process::id() % 40) as usize;
    while acked.len() < target {
        assert!(Instant::now() < deadline, "the writer acknowledged only {} writes", acked.len());
        let line = lines.next().expect("writer exited early").unwrap();
        if let Some(rest) = line.strip_prefix("ACK ") {
            let (name, rv) = rest.split_once(' ').unwrap();
            acked.push((name.to_owned(), rv.parse().unwrap()));
        }
    }
    child.kill().unwrap(); // SIGKILL
    // Lines already in the pipe were acknowledged before the kill.
    for line in lines {
        if let Some(rest) = line.unwrap().strip_prefix("ACK ") {
            let (name, rv) = rest.split_once(' ').unwrap();
            acked.push((name.to_owned(), rv.parse().unwrap()));
        }
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "the writer was killed, not finished");

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let store = RedbStore::open(&path).expect("the file opens after a SIGKILL");
        for (name, rv) in &acked {
            let v = store.get("items", None, name).await.unwrap_or_else(|e| panic!("{name} lost: {e}"));
            let stored: u64 = v["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
            assert!(stored >= *rv, "{name}: stored version {stored} older than acknowledged {rv}");
            assert!(v["spec"]["n"].as_u64().unwrap() >= 1_000_000, "{name}: acknowledged update lost");
        }
        // The revision counter was persisted with the data: new writes get newer versions.
        let list = store.list("items", &ListOptions::default()).await.unwrap();
        let max_acked = acked.iter().map(|(_, rv)| *rv).max().unwrap();
        assert!(list.resource_version.parse::<u64>().unwrap() >= max_acked);
        let next = store.create("items", json!({"metadata": {"name": "after-crash"}})).await.unwrap();
        assert!(next["metadata"]["resourceVersion"].as_str().unwrap().parse::<u64>().unwrap() > max_acked);
    });
}
