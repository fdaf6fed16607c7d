//! Many watches open at once and how long a write takes to reach them: each watch is its own
//! keep-alive HTTP/1.1 connection (as kubectl and client-go open them), the writes go straight to
//! the sim at a steady rate, each carrying a sequence number, and a watcher notes when the event of
//! each sequence number arrives. The latency is from the write's answer to the event's arrival.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::big_list::namespace;
use crate::http_load::{Target, connect};
use crate::json_of;
use crate::sim_import::SimAccess;

/// The configmap the writes change, one in each namespace.
const CONFIGMAP: &str = "bench-watch";

/// The path of the watch of configmaps in namespace `n`.
pub fn watch_path(n: usize) -> String {
    format!("/api/v1/namespaces/{}/configmaps?watch=1", namespace(n))
}

/// Creates the configmap [`CONFIGMAP`] in each of `namespaces` namespaces (those that exist stay).
///
/// # Errors
/// A create refused for another reason than that it exists.
pub async fn prepare(sim: &SimAccess, namespaces: usize) -> Result<()> {
    let http = sim.client()?;
    for n in 0..namespaces {
        let ns = namespace(n);
        let resp = http
            .post(format!("{}/api/v1/namespaces/{ns}/configmaps", sim.url))
            .json(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": CONFIGMAP}, "data": {"seq": "0"}}))
            .send()
            .await?;
        if resp.status() != reqwest::StatusCode::CONFLICT {
            json_of(resp, "creating a configmap").await?;
        }
    }
    Ok(())
}

/// Open watches; each task returns the sequence numbers it saw with their arrival.
pub struct Watches {
    tasks: JoinSet<Vec<(u64, Instant)>>,
    stop: CancellationToken,
    seen: Arc<AtomicUsize>,
    /// The indices (in the targets given to [`open`]) of the watches that are open.
    pub opened: Vec<usize>,
    /// How many watches were refused, and the first refusal (status and the start of the body).
    pub refused: (usize, Option<String>),
    /// How long opening them took (every response's headers in).
    pub opened_in: Duration,
}

/// A watch answered, or refused with a status other than 200.
enum Answer {
    Open(SendRequest<Empty<Bytes>>, Incoming),
    Refused(String),
}

/// The watches of `targets`, `in_flight` being opened at a time; returns once every one is answered.
/// A watch refused with a status other than 200 is counted, not an error. Events of sequence
/// numbers below `from_seq` are not counted.
///
/// # Errors
/// A connection or a request that fails.
pub async fn open(targets: Vec<Target>, in_flight: usize, from_seq: u64) -> Result<Watches> {
    let start = Instant::now();
    let answers: Vec<(usize, Answer)> = futures::stream::iter(targets.into_iter().enumerate())
        .map(|(i, target)| async move {
            let mut send = connect(&target).await?;
            let resp = send.send_request(target.get()?).await?;
            if resp.status() != 200 {
                let status = resp.status();
                let body = resp.into_body().collect().await?.to_bytes();
                // A Kubernetes Status says why in its message.
                let why = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v["message"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(300).collect());
                return Ok::<_, anyhow::Error>((i, Answer::Refused(format!("{status}: {why}"))));
            }
            Ok((i, Answer::Open(send, resp.into_body())))
        })
        .buffer_unordered(in_flight)
        .try_collect()
        .await?;
    let opened_in = start.elapsed();
    let (stop, seen) = (CancellationToken::new(), Arc::new(AtomicUsize::new(0)));
    let (mut tasks, mut opened, mut refused) = (JoinSet::new(), Vec::new(), (0, None));
    for (i, answer) in answers {
        match answer {
            Answer::Open(send, body) => {
                opened.push(i);
                let (stop, seen) = (stop.clone(), seen.clone());
                tasks.spawn(async move {
                    let events = events(body, &stop, &seen, from_seq).await;
                    drop(send);
                    events
                });
            }
            Answer::Refused(why) => {
                refused.0 += 1;
                refused.1.get_or_insert(why);
            }
        }
    }
    Ok(Watches { tasks, stop, seen, opened, refused, opened_in })
}

/// The status of one `GET target` on a new connection.
///
/// # Errors
/// A connection or a request that fails.
pub async fn status_of(target: &Target) -> Result<u16> {
    let mut send = connect(target).await?;
    let resp = send.send_request(target.get()?).await?;
    let status = resp.status().as_u16();
    resp.into_body().collect().await?;
    Ok(status)
}

/// The `data.seq` of each event's configmap as it arrives, until `stop` or the watch's end.
async fn events(
    mut body: Incoming,
    stop: &CancellationToken,
    seen: &AtomicUsize,
    from_seq: u64,
) -> Vec<(u64, Instant)> {
    let (mut buf, mut got) = (Vec::new(), Vec::new());
    loop {
        let frame = tokio::select! {
            () = stop.cancelled() => return got,
            f = body.frame() => f,
        };
        let Some(Ok(frame)) = frame else { return got };
        let at = Instant::now();
        let Ok(data) = frame.into_data() else { continue };
        buf.extend_from_slice(&data);
        while let Some(end) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            let Ok(event) = serde_json::from_slice::<Value>(&line) else { continue };
            let seq = event["object"]["data"]["seq"].as_str().and_then(|s| s.parse::<u64>().ok());
            if let Some(seq) = seq.filter(|&s| s >= from_seq) {
                seen.fetch_add(1, Ordering::Relaxed);
                got.push((seq, at));
            }
        }
    }
}

impl Watches {
    /// Events counted so far.
    pub fn seen(&self) -> usize {
        self.seen.load(Ordering::Relaxed)
    }

    /// Waits until `expected` events were counted or `grace` passed, then closes the watches;
    /// returns every `(seq, arrival)`.
    pub async fn close(mut self, expected: usize, grace: Duration) -> Vec<(u64, Instant)> {
        let deadline = Instant::now() + grace;
        while self.seen() < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.stop.cancel();
        let mut all = Vec::new();
        while let Some(done) = self.tasks.join_next().await {
            all.extend(done.unwrap_or_default());
        }
        all
    }
}

/// `writes` updates of [`CONFIGMAP`], round robin over `namespaces` namespaces, at `per_second`,
/// each setting `data.seq` to the next number from `first_seq`; returns when each was answered.
///
/// # Errors
/// A write the sim refuses.
pub async fn write(
    sim: &SimAccess,
    namespaces: usize,
    writes: usize,
    per_second: f64,
    first_seq: u64,
) -> Result<HashMap<u64, Instant>> {
    let http = sim.client()?;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut answered = HashMap::with_capacity(writes);
    for (i, seq) in (first_seq..).take(writes).enumerate() {
        tick.tick().await;
        let ns = namespace(i % namespaces);
        let resp = http
            .patch(format!("{}/api/v1/namespaces/{ns}/configmaps/{CONFIGMAP}", sim.url))
            .header("content-type", "application/merge-patch+json")
            .body(json!({"data": {"seq": seq.to_string()}}).to_string())
            .send()
            .await?;
        json_of(resp, "updating a configmap").await.context("a write")?;
        answered.insert(seq, Instant::now());
    }
    Ok(answered)
}

/// Milliseconds from each event's write being answered to its arrival (negative when the event
/// came first), sorted; events of unknown writes are left out.
pub fn latencies_ms(answered: &HashMap<u64, Instant>, arrivals: &[(u64, Instant)]) -> Vec<f64> {
    let mut ms: Vec<f64> = arrivals
        .iter()
        .filter_map(|(seq, at)| {
            let acked = answered.get(seq)?;
            Some(match at.checked_duration_since(*acked) {
                Some(after) => after.as_secs_f64() * 1000.0,
                None => -(acked.duration_since(*at).as_secs_f64() * 1000.0),
            })
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    ms
}

/// The `q` quantile of sorted `values` (0 when empty).
pub fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values[((values.len() as f64 * q) as usize).min(values.len() - 1)]
}
