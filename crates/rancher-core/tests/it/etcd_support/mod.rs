//! What only the HA tests ask of a real etcd (`rancher_test_support::etcd`): which member leads.

use std::time::{Duration, Instant};

use rancher_test_support::etcd::Etcd;

/// The index of the current leader.
pub(crate) async fn leader(etcd: &Etcd) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for (i, m) in etcd.members.iter().enumerate() {
            let Ok(mut c) = etcd_client::Client::connect([m.client_url.as_str()], None).await else {
                continue;
            };
            if let Ok(s) = c.status().await
                && s.header().is_some_and(|h| h.member_id() == s.leader())
            {
                return i;
            }
        }
        assert!(Instant::now() < deadline, "no etcd leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
