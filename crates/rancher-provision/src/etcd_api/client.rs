//! The calls: one HTTP/1.1 exchange per call over a fresh connection from the connector, every
//! answer bounded and every call under a deadline.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::AsyncWrite;

use super::connect::{EtcdConnect, EtcdTls};
use super::snapshot::SnapshotReader;
use super::{EtcdError, Member, MemberAdded, SnapshotInfo, Status, member_id};

/// The largest answer read for a call other than the snapshot (a member list of a big cluster is a
/// few KiB).
const MAX_ANSWER: usize = 1 << 20;
/// The default deadline of a read (member list, status, health).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The default deadline of a membership change: etcd itself gives up on one after 5 s + two
/// election timeouts (15 s with RKE's 5 s election timeout), and answers why; wait for that.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(30);
/// The default deadline of a whole snapshot.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How long a snapshot may go without a byte before it is given up.
const SNAPSHOT_STALL: Duration = Duration::from_secs(30);

/// A client of one etcd member's JSON gateway (etcd 3.4's `/v3/…` paths).
pub struct EtcdClient {
    connect: Box<dyn EtcdConnect>,
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    timeout: Duration,
    change_timeout: Duration,
    snapshot_timeout: Duration,
}

impl std::fmt::Debug for EtcdClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdClient")
            .field("endpoint", &self.connect.endpoint())
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// The pieces of an answer every call shares.
#[derive(Deserialize)]
struct Members {
    #[serde(default)]
    members: Vec<Member>,
}

impl EtcdClient {
    /// A client speaking plain HTTP over `connect`'s connections (a member without TLS).
    pub fn plain(connect: impl EtcdConnect + 'static) -> Self {
        EtcdClient {
            connect: Box::new(connect),
            tls: None,
            timeout: CALL_TIMEOUT,
            change_timeout: CHANGE_TIMEOUT,
            snapshot_timeout: SNAPSHOT_TIMEOUT,
        }
    }

    /// A client speaking HTTPS with mutual TLS over `connect`'s connections.
    ///
    /// # Errors
    /// [`EtcdError::Tls`] when the CA, certificate, key or server name is unusable.
    pub fn tls(connect: impl EtcdConnect + 'static, tls: &EtcdTls) -> Result<Self, EtcdError> {
        Ok(EtcdClient { tls: Some(tls.config()?), ..Self::plain(connect) })
    }

    /// The deadline of each call but the snapshot (default 10 s for reads, 30 s for membership
    /// changes, which etcd itself may take 15 s to give up on).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self.change_timeout = timeout;
        self
    }

    /// The deadline of a whole snapshot (default 30 min; it also ends when no byte comes for 30 s).
    pub fn with_snapshot_timeout(mut self, timeout: Duration) -> Self {
        self.snapshot_timeout = timeout;
        self
    }

    /// Where the calls go, as errors name it.
    pub fn endpoint(&self) -> String {
        self.connect.endpoint()
    }

    /// The cluster's members (`POST /v3/cluster/member/list`).
    ///
    /// # Errors
    /// [`EtcdError`] naming the call `member list`.
    pub async fn member_list(&self) -> Result<Vec<Member>, EtcdError> {
        let call = "member list";
        let answer: Members = self.call_json(call, "/v3/cluster/member/list", json!({})).await?;
        Ok(answer.members)
    }

    /// Adds a member that will listen for peers on `peer_urls`, as a learner (a non-voting
    /// member that catches up before [`member_promote`](Self::member_promote)) when `learner`
    /// (`POST /v3/cluster/member/add`). Start its process after this, with
    /// `--initial-cluster-state existing`.
    ///
    /// # Errors
    /// [`EtcdError::InvalidInput`] for no URL or one that is not `http(s)://`;
    /// [`EtcdError::Refused`] when etcd refuses (a peer URL already a member's).
    pub async fn member_add(&self, peer_urls: &[String], learner: bool) -> Result<MemberAdded, EtcdError> {
        let call = "member add";
        if peer_urls.is_empty() {
            return Err(EtcdError::InvalidInput { call, message: "no peer URL".into() });
        }
        if let Some(bad) = peer_urls.iter().find(|u| !(u.starts_with("https://") || u.starts_with("http://")))
        {
            return Err(EtcdError::InvalidInput {
                call,
                message: format!("{bad:?} is not an http:// or https:// URL"),
            });
        }
        #[derive(Deserialize)]
        struct Added {
            member: Option<Member>,
            #[serde(default)]
            members: Vec<Member>,
        }
        let body = json!({ "peerURLs": peer_urls, "isLearner": learner });
        let answer: Added = self.call_json(call, "/v3/cluster/member/add", body).await?;
        let member = answer.member.ok_or_else(|| self.bad(call, "no member in the answer".into()))?;
        Ok(MemberAdded { member, members: answer.members })
    }

    /// Makes the learner `id` a voting member (`POST /v3/cluster/member/promote`); returns the
    /// members after. etcd refuses while the learner has not caught up with the leader (a transient
    /// refusal: try again).
    ///
    /// # Errors
    /// [`EtcdError::Refused`] naming why.
    pub async fn member_promote(&self, id: u64) -> Result<Vec<Member>, EtcdError> {
        let call = "member promote";
        let answer: Members =
            self.call_json(call, "/v3/cluster/member/promote", json!({ "ID": id.to_string() })).await?;
        Ok(answer.members)
    }

    /// Removes the member `id` (`POST /v3/cluster/member/remove`); returns the members after.
    ///
    /// # Errors
    /// [`EtcdError::Refused`] for an unknown id, or when removing it would lose quorum by etcd's
    /// own check.
    pub async fn member_remove(&self, id: u64) -> Result<Vec<Member>, EtcdError> {
        let call = "member remove";
        let answer: Members =
            self.call_json(call, "/v3/cluster/member/remove", json!({ "ID": id.to_string() })).await?;
        Ok(answer.members)
    }

    /// The member's status (`POST /v3/maintenance/status`): its id, the leader's, its version and
    /// database size.
    ///
    /// # Errors
    /// [`EtcdError`] naming the call `status`.
    pub async fn status(&self) -> Result<Status, EtcdError> {
        let call = "status";
        let raw: Value = self.call_json(call, "/v3/maintenance/status", json!({})).await?;
        Status::from_answer(&raw).map_err(|m| self.bad(call, m))
    }

    /// Whether the member is healthy (`GET /health`): it has a leader and serves a quorum read.
    /// `Ok(Err(reason))` when it answers that it is not.
    ///
    /// # Errors
    /// [`EtcdError`] naming the call `health` when it cannot be asked.
    pub async fn health(&self) -> Result<Result<(), String>, EtcdError> {
        let call = "health";
        let request = self.request(call, http::Method::GET, "/health", None)?;
        let (status, body) = self.exchange(call, request, self.timeout).await?;
        let answer: Value = serde_json::from_slice(&body)
            .map_err(|e| self.bad(call, format!("HTTP {status}, not JSON: {e}")))?;
        match answer["health"].as_str() {
            Some("true") if status == 200 => Ok(Ok(())),
            Some(_) => Ok(Err(answer["reason"]
                .as_str()
                .filter(|r| !r.is_empty())
                .map_or_else(|| format!("unhealthy (HTTP {status})"), str::to_owned))),
            None => Err(self.bad(call, format!("HTTP {status}, no \"health\" field"))),
        }
    }

    /// Streams a snapshot of the member's database into `out` (`POST /v3/maintenance/snapshot`),
    /// checks etcd's own SHA-256 trailer, and returns the size and SHA-256 of what was written —
    /// the file `etcdctl snapshot restore` takes. `out` is flushed but not closed.
    ///
    /// # Errors
    /// [`EtcdError::Timeout`] past the snapshot deadline or after 30 s without a byte;
    /// [`EtcdError::BadAnswer`] for a stream that is not etcd's, or whose trailer does not match
    /// its bytes; [`EtcdError::Write`] when `out` fails; the others as for any call.
    pub async fn snapshot(
        &self,
        out: &mut (dyn AsyncWrite + Unpin + Send),
    ) -> Result<SnapshotInfo, EtcdError> {
        let call = "snapshot";
        let request = self.request(call, http::Method::POST, "/v3/maintenance/snapshot", Some(json!({})))?;
        let work = async {
            let response = self.send(call, request).await?;
            let status = response.status().as_u16();
            let mut body = response.into_body();
            if status != 200 {
                let bytes = self.read_bounded(call, &mut body).await?;
                return Err(self.refused(call, status, &bytes));
            }
            let mut reader = SnapshotReader::new();
            loop {
                let frame = tokio::time::timeout(SNAPSHOT_STALL, body.frame()).await.map_err(|_| {
                    EtcdError::Timeout { call, endpoint: self.endpoint(), seconds: SNAPSHOT_STALL.as_secs() }
                })?;
                let Some(frame) = frame else { break };
                let frame = frame.map_err(|e| self.http(call, e.into()))?;
                let Ok(data) = frame.into_data() else { continue };
                reader.feed(&data, out).await.map_err(|e| e.into_error(call, &self.endpoint()))?;
            }
            reader.finish(out).await.map_err(|e| e.into_error(call, &self.endpoint()))
        };
        tokio::time::timeout(self.snapshot_timeout, work).await.map_err(|_| EtcdError::Timeout {
            call,
            endpoint: self.endpoint(),
            seconds: self.snapshot_timeout.as_secs(),
        })?
    }

    // ---- plumbing ------------------------------------------------------------------------------

    async fn call_json<T: serde::de::DeserializeOwned>(
        &self,
        call: &'static str,
        path: &str,
        body: Value,
    ) -> Result<T, EtcdError> {
        let request = self.request(call, http::Method::POST, path, Some(body))?;
        let deadline = if path.starts_with("/v3/cluster/member/") && !path.ends_with("/list") {
            self.change_timeout
        } else {
            self.timeout
        };
        let (status, bytes) = self.exchange(call, request, deadline).await?;
        if status != 200 {
            return Err(self.refused(call, status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| self.bad(call, format!("not the expected JSON: {e}")))
    }

    fn request(
        &self,
        call: &'static str,
        method: http::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<http::Request<Full<Bytes>>, EtcdError> {
        let mut builder = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, self.host_header())
            .header(http::header::ACCEPT, "application/json");
        let body = match body {
            Some(v) => {
                builder = builder.header(http::header::CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(v.to_string()))
            }
            None => Full::new(Bytes::new()),
        };
        builder.body(body).map_err(|e| EtcdError::InvalidInput { call, message: e.to_string() })
    }

    fn host_header(&self) -> String {
        match &self.tls {
            Some((_, ServerName::DnsName(d))) => d.as_ref().to_owned(),
            Some((_, ServerName::IpAddress(ip))) => match std::net::IpAddr::from(*ip) {
                std::net::IpAddr::V6(v6) => format!("[{v6}]"),
                v4 => v4.to_string(),
            },
            _ => "localhost".to_owned(),
        }
    }

    /// One call whose answer is small: status and body (at most [`MAX_ANSWER`]), within `deadline`.
    async fn exchange(
        &self,
        call: &'static str,
        request: http::Request<Full<Bytes>>,
        deadline: Duration,
    ) -> Result<(u16, Bytes), EtcdError> {
        let work = async {
            let response = self.send(call, request).await?;
            let status = response.status().as_u16();
            let mut body = response.into_body();
            Ok((status, self.read_bounded(call, &mut body).await?))
        };
        tokio::time::timeout(deadline, work).await.map_err(|_| EtcdError::Timeout {
            call,
            endpoint: self.endpoint(),
            seconds: deadline.as_secs(),
        })?
    }

    /// Connects (TLS when configured), sends `request` and returns the answer's head; the
    /// connection's task ends with the answer's body.
    async fn send(
        &self,
        call: &'static str,
        request: http::Request<Full<Bytes>>,
    ) -> Result<http::Response<Incoming>, EtcdError> {
        let connect_err =
            |source: crate::BoxError| EtcdError::Connect { call, endpoint: self.endpoint(), source };
        let stream = self.connect.connect().await.map_err(|e| connect_err(e.into()))?;
        let stream: Box<dyn super::connect::EtcdStream> = match &self.tls {
            Some((config, name)) => {
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name.clone(), stream)
                    .await
                    .map_err(|e| connect_err(format!("TLS: {e}").into()))?;
                Box::new(tls)
            }
            None => stream,
        };
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
                .await
                .map_err(|e| connect_err(e.into()))?;
        // The connection task ends when the answer is read or dropped (the sender goes with it).
        tokio::spawn(async move {
            let _ = conn.await;
        });
        sender.send_request(request).await.map_err(|e| self.http(call, e.into()))
    }

    async fn read_bounded(&self, call: &'static str, body: &mut Incoming) -> Result<Bytes, EtcdError> {
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| self.http(call, e.into()))?;
            if let Ok(data) = frame.into_data() {
                if out.len() + data.len() > MAX_ANSWER {
                    return Err(self.bad(call, format!("the answer is larger than {MAX_ANSWER} bytes")));
                }
                out.extend_from_slice(&data);
            }
        }
        Ok(out.into())
    }

    fn bad(&self, call: &'static str, message: String) -> EtcdError {
        EtcdError::BadAnswer { call, endpoint: self.endpoint(), message }
    }

    fn http(&self, call: &'static str, source: crate::BoxError) -> EtcdError {
        EtcdError::Http { call, endpoint: self.endpoint(), source }
    }

    /// etcd's error answer (`{"error": "...", "code": N, "message": "..."}`) as a refusal.
    fn refused(&self, call: &'static str, status: u16, body: &[u8]) -> EtcdError {
        let message = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| {
                let m = v["message"].as_str().or(v["error"].as_str()).or(v["error"]["message"].as_str());
                m.map(str::to_owned)
            })
            .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(512)]).trim().to_owned());
        EtcdError::Refused { call, endpoint: self.endpoint(), status, message }
    }
}

impl Status {
    fn from_answer(raw: &Value) -> Result<Status, String> {
        let id = |v: &Value, field: &str| member_id(v).map_err(|e| format!("{field}: {e}"));
        let header = &raw["header"];
        Ok(Status {
            member_id: id(&header["member_id"], "header.member_id")?,
            cluster_id: id(&header["cluster_id"], "header.cluster_id")?,
            leader: match &raw["leader"] {
                Value::Null => 0,
                v => id(v, "leader")?,
            },
            version: raw["version"].as_str().unwrap_or_default().to_owned(),
            db_size: match &raw["dbSize"] {
                Value::Null => 0,
                v => id(v, "dbSize")?,
            },
            raft_index: match &raw["raftIndex"] {
                Value::Null => 0,
                v => id(v, "raftIndex")?,
            },
            is_learner: raw["isLearner"].as_bool().unwrap_or(false),
            errors: raw["errors"]
                .as_array()
                .map(|a| a.iter().filter_map(|e| e.as_str().map(str::to_owned)).collect())
                .unwrap_or_default(),
        })
    }
}
