use rancher_core::store::MemoryStore;

use super::*;

fn replicas(names: &[&str]) -> Vec<Replica> {
    names.iter().map(|n| Replica { name: (*n).to_owned(), url: format!("https://{n}:8443") }).collect()
}

fn owners(clusters: &[String], live: &[Replica]) -> Vec<String> {
    clusters.iter().map(|c| rendezvous(c, live).unwrap().name.clone()).collect()
}

#[test]
fn a_replica_joining_or_leaving_moves_only_its_share() {
    let clusters: Vec<String> = (0..3000).map(|i| format!("c-{i:05}")).collect();
    let three = replicas(&["a", "b", "c"]);
    let before = owners(&clusters, &three);
    for name in ["a", "b", "c"] {
        let share = before.iter().filter(|o| *o == name).count();
        assert!((800..1200).contains(&share), "{name} owns {share} of 3000");
    }
    assert_eq!(
        before,
        owners(&clusters, &replicas(&["c", "a", "b"])),
        "the order of the set does not matter"
    );

    // d joins: what moves, moves to d, about a quarter.
    let four = replicas(&["a", "b", "c", "d"]);
    let after = owners(&clusters, &four);
    let moved: Vec<_> = before.iter().zip(&after).filter(|(b, a)| b != a).collect();
    assert!(moved.iter().all(|(_, a)| *a == "d"));
    assert!((600..900).contains(&moved.len()), "{} moved", moved.len());

    // b leaves: only b's clusters move.
    let without_b = replicas(&["a", "c"]);
    let after = owners(&clusters, &without_b);
    for ((b, a), c) in before.iter().zip(&after).zip(&clusters) {
        if b == "b" {
            assert_ne!(a, "b", "{c}");
        } else {
            assert_eq!(a, b, "{c} stays where it was");
        }
    }
    assert!(rendezvous("c-1", &[]).is_none());
}

#[test]
fn a_fixed_view_names_the_owner() {
    let view = Replicas::fixed("a", replicas(&["a", "b"]));
    let clusters: Vec<String> = (0..100).map(|i| format!("c-{i}")).collect();
    let mine = clusters.iter().filter(|c| view.owner(c) == Owner::Me).count();
    assert!((20..80).contains(&mine), "{mine}");
    let peer = clusters.iter().find(|c| view.owner(c) != Owner::Me).unwrap();
    assert_eq!(view.owner(peer), Owner::Peer(replicas(&["b"]).remove(0)));
    assert_eq!(Replicas::fixed("a", vec![]).owner("c-1"), Owner::Me, "on its own, a server owns all");
}

async fn wait_for(view: &mut Replicas, names: &[&str]) {
    let want: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            let live: Vec<String> = view.live().iter().map(|r| r.name.clone()).collect();
            if live == want {
                return;
            }
            view.changed().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} never saw {want:?}, but {:?}", view.me(), view.live()));
}

#[tokio::test(start_paused = true)]
async fn replicas_join_after_renewing_and_leave_when_stopped_or_silent() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    // A lease its server left behind long ago: read once, never renewed, never live.
    let api = Api::<Lease>::all(store.clone());
    let mut stale = Lease::new(
        "replica-old",
        LeaseSpec { holder_identity: "old".into(), lease_duration_seconds: 15, ..Default::default() },
    );
    stale.metadata.annotations.insert(PEER_URL_ANNOTATION.into(), "https://old:8443".into());
    api.create(&stale).await.unwrap();

    let start = |name: &str| {
        let stop = CancellationToken::new();
        let me = Replica { name: name.to_owned(), url: format!("https://{name}:8443") };
        let (view, heartbeat) = Replicas::new(store.clone(), me, Arc::new(Metrics::new()));
        (view, tokio::spawn(heartbeat.run(stop.clone())), stop)
    };
    let (mut a, a_task, a_stop) = start("a");
    let (mut b, b_task, b_stop) = start("b");
    let started = Instant::now();
    wait_for(&mut a, &["a", "b"]).await;
    wait_for(&mut b, &["a", "b"]).await;
    assert!(started.elapsed() >= JOIN, "not before they have been seen renewing for {JOIN:?}");
    let clusters: Vec<String> = (0..50).map(|i| format!("c-{i}")).collect();
    for c in &clusters {
        let (oa, ob) = (a.owner(c), b.owner(c));
        assert!(
            matches!((&oa, &ob), (Owner::Me, Owner::Peer(p)) if p.name == "a")
                || matches!((&oa, &ob), (Owner::Peer(p), Owner::Me) if p.name == "b"),
            "{c}: {oa:?} {ob:?}"
        );
    }

    // b stops: it deletes its lease, and a owns everything at once.
    b_stop.cancel();
    b_task.await.unwrap();
    assert!(api.get_opt("replica-b").await.unwrap().is_none());
    let stopped = Instant::now();
    wait_for(&mut a, &["a"]).await;
    assert!(stopped.elapsed() <= Duration::from_secs(2), "{:?}", stopped.elapsed());
    assert!(clusters.iter().all(|c| a.owner(c) == Owner::Me));

    // c joins and then dies without a word: a drops it once its lease has run out.
    let (_c, c_task, _c_stop) = start("c");
    wait_for(&mut a, &["a", "c"]).await;
    c_task.abort();
    let died = Instant::now();
    wait_for(&mut a, &["a"]).await;
    let gone = died.elapsed();
    assert!(gone >= Duration::from_secs(10) && gone <= Duration::from_secs(17), "{gone:?}");
    a_stop.cancel();
    a_task.await.unwrap();
}
