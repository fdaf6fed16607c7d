//! A small client of etcd 3.4's JSON gateway — how the server manages a built cluster's etcd:
//! members (list, add a learner, promote, remove), status and health, and snapshots streamed to a
//! writer with their SHA-256. It speaks HTTP/1.1 (mutual TLS with rustls, or plain) over whatever
//! stream an [`EtcdConnect`] gives: plain TCP, or a channel through an SSH session to the member's
//! host ([`SshConnect`]), which reaches etcd on the host's `127.0.0.1:2379` whatever its
//! internal address. [`EtcdHost`] is one etcd host of a cluster built on hosts, and
//! [`member_health`] lists its members with their health, which [`may_remove`] and [`may_stop`]
//! take to say whether a member may go without losing quorum.
//!
//! ```no_run
//! # async fn example(session: std::sync::Arc<rancher_provision::ssh::SshSession>, tls: rancher_provision::etcd_api::EtcdTls)
//! # -> Result<(), Box<dyn std::error::Error>> {
//! use rancher_provision::etcd_api::{EtcdClient, SshConnect};
//!
//! let etcd = EtcdClient::tls(SshConnect { session, host: "127.0.0.1".into(), port: 2379 }, &tls)?;
//! for m in etcd.member_list().await? {
//!     println!("{} {:x} learner={}", m.name, m.id, m.is_learner);
//! }
//! let mut file = tokio::fs::File::create("/var/backups/etcd.db").await?;
//! let info = etcd.snapshot(&mut file).await?;
//! println!("{} bytes, sha256 {}", info.size, info.sha256);
//! # Ok(())
//! # }
//! ```

mod client;
mod connect;
mod error;
mod hosts;
mod quorum;
mod snapshot;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

pub use client::EtcdClient;
pub use connect::{EtcdConnect, EtcdStream, EtcdTls, SshConnect, TcpConnect};
pub use error::EtcdError;
pub use hosts::{EtcdHost, MembersHealth, member_health};
pub use quorum::{MemberHealth, QuorumError, may_remove, may_stop};

/// One member of the cluster, as `member list` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Member {
    /// Its id (the gateway writes it as a JSON string).
    #[serde(rename = "ID", deserialize_with = "de_uint64")]
    pub id: u64,
    /// Its name; empty for a member added but not yet started.
    #[serde(default)]
    pub name: String,
    /// Where its peers reach it.
    #[serde(rename = "peerURLs", default)]
    pub peer_urls: Vec<String>,
    /// Where clients reach it; empty until it started.
    #[serde(rename = "clientURLs", default)]
    pub client_urls: Vec<String>,
    /// A learner: a non-voting member catching up.
    #[serde(rename = "isLearner", default)]
    pub is_learner: bool,
}

/// What `member add` answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberAdded {
    /// The new member (no name until its process starts).
    pub member: Member,
    /// Every member after the change.
    pub members: Vec<Member>,
}

/// One member's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// The member's id.
    pub member_id: u64,
    /// The cluster's id.
    pub cluster_id: u64,
    /// The leader's id (0 when there is none).
    pub leader: u64,
    /// etcd's version (`3.4.23`).
    pub version: String,
    /// The database's size in bytes.
    pub db_size: u64,
    /// The raft index the member has.
    pub raft_index: u64,
    /// Whether it is a learner.
    pub is_learner: bool,
    /// Alarms and errors it reports (`NOSPACE`, …).
    pub errors: Vec<String>,
}

impl Status {
    /// Whether the member knows a leader and reports no error.
    pub fn is_serving(&self) -> bool {
        self.leader != 0 && self.errors.is_empty()
    }
}

/// What a snapshot wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256, lower-case hex.
    pub sha256: String,
}

/// A uint64 as the gateway writes it: a JSON string of digits (a number is accepted too).
fn member_id(v: &Value) -> Result<u64, String> {
    match v {
        Value::String(s) => s.parse().map_err(|_| format!("{s:?} is not a uint64")),
        Value::Number(n) => n.as_u64().ok_or_else(|| format!("{n} is not a uint64")),
        other => Err(format!("{other} is not a uint64")),
    }
}

fn de_uint64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    member_id(&Value::deserialize(d)?).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_ids_come_as_strings_or_numbers() {
        let m: Member = serde_json::from_str(
            r#"{"ID":"10276657743932975437","name":"n1","peerURLs":["https://10.0.0.1:2380"],"isLearner":true}"#,
        )
        .unwrap();
        assert_eq!(m.id, 10276657743932975437);
        assert!(m.is_learner && m.client_urls.is_empty());
        let m: Member = serde_json::from_str(r#"{"ID":42}"#).unwrap();
        assert_eq!((m.id, m.name.as_str(), m.is_learner), (42, "", false));
        assert!(serde_json::from_str::<Member>(r#"{"ID":"x"}"#).is_err());
        assert!(serde_json::from_str::<Member>(r#"{"ID":-1}"#).is_err());
    }
}
