//! A cluster with many pods, and how long a list of all of them takes: the pods are created through
//! the sim's API with many requests in flight, the list is read to its last byte on a keep-alive
//! connection.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::http_load::Target;
use crate::json_of;
use crate::sim_import::SimAccess;

/// The bench's namespaces: `bench-000`, `bench-001`, …
pub fn namespace(i: usize) -> String {
    format!("bench-{i:03}")
}

/// A pod like a Deployment's, one container with ports, resources and an environment.
fn pod(ns: &str, i: usize) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": format!("web-{i:05}"),
            "namespace": ns,
            "labels": {"app": "web", "tier": "frontend", "pod-template-hash": "5d9c8b7f6"},
        },
        "spec": {
            "containers": [{
                "name": "web",
                "image": "nginx:1.25",
                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
                "env": [{"name": "MODE", "value": "production"}],
            }],
        },
    })
}

/// Creates `namespaces` namespaces and `pods` pods spread over them through the sim's API,
/// `in_flight` requests at a time, and waits until every pod runs. Returns how long it took.
///
/// # Errors
/// A create the sim refuses, or pods that do not all run within two minutes of the last create.
pub async fn populate(sim: &SimAccess, namespaces: usize, pods: usize, in_flight: usize) -> Result<Duration> {
    let http = sim.client()?;
    let start = Instant::now();
    for n in 0..namespaces {
        let resp = http
            .post(format!("{}/api/v1/namespaces", sim.url))
            .json(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace(n)}}))
            .send()
            .await?;
        json_of(resp, "creating a namespace").await?;
    }
    futures::stream::iter(0..pods)
        .map(|i| {
            let http = &http;
            async move {
                let ns = namespace(i % namespaces);
                let resp = http
                    .post(format!("{}/api/v1/namespaces/{ns}/pods", sim.url))
                    .json(&pod(&ns, i))
                    .send()
                    .await?;
                json_of(resp, "creating a pod").await.map(drop)
            }
        })
        .buffer_unordered(in_flight)
        .try_collect::<()>()
        .await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let list =
            json_of(http.get(format!("{}/api/v1/pods", sim.url)).send().await?, "listing pods").await?;
        let items = list["items"].as_array().context("a pod list without items")?;
        let running = items.iter().filter(|p| p["status"]["phase"] == "Running").count();
        if running >= pods {
            return Ok(start.elapsed());
        }
        if Instant::now() > deadline {
            bail!("{running} of {pods} pods run two minutes after the last was created");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One read of a list.
#[derive(Clone, Copy, Debug)]
pub struct Read {
    /// From sending the request to the response's headers.
    pub first_byte: Duration,
    /// From sending the request to the body's last byte.
    pub last_byte: Duration,
    /// The body's length.
    pub bytes: usize,
}

/// `GET target` on the open connection `send`, the body read (and dropped) as it comes.
///
/// # Errors
/// A request that fails or is answered with another status than 200.
pub async fn read(send: &mut SendRequest<Empty<Bytes>>, target: &Target) -> Result<Read> {
    let req = target.get()?;
    send.ready().await?;
    let t0 = Instant::now();
    let resp = send.send_request(req).await?;
    let first_byte = t0.elapsed();
    if resp.status() != 200 {
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        bail!("{}: {status}: {}", target.path, String::from_utf8_lossy(&body));
    }
    let mut body = resp.into_body();
    let mut bytes = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            bytes += data.len();
        }
    }
    Ok(Read { first_byte, last_byte: t0.elapsed(), bytes })
}
