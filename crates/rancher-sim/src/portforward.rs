//! `pods/portforward` to a built-in echo server on every port: over SPDY/3.1 (`portforward.k8s.io`),
//! over SPDY tunnelled in WebSocket (`SPDY/3.1+portforward.k8s.io`, kubectl 1.31+), and over the
//! WebSocket channel protocol (`portforward.k8s.io`, kube-rs).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{Request, Response};
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::api::ResourceRequest;
use crate::exec::{Upgrade, negotiate, running_pod, switching};
use crate::http_util::Body;
use crate::spdy::{self, Event};
use crate::state::SimState;
use crate::status::ApiError;

const TUNNELED_SPDY: &str = "SPDY/3.1+portforward.k8s.io";
const PORTFORWARD: &str = "portforward.k8s.io";

pub(crate) async fn handle(
    state: &Arc<SimState>,
    rr: ResourceRequest,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    running_pod(state, &rr)?;
    let up =
        negotiate(req.headers(), &[TUNNELED_SPDY, "v5.channel.k8s.io", "v4.channel.k8s.io", PORTFORWARD])?;
    let ports: Vec<u16> = rr
        .query
        .all("ports")
        .iter()
        .flat_map(|p| p.split(',').map(str::to_string).collect::<Vec<_>>())
        .map(|p| p.trim().parse::<u16>().map_err(|_| ApiError::bad_request(format!("invalid port {p:?}"))))
        .collect::<Result<_, _>>()?;
    if let Upgrade::WebSocket { protocol, .. } = &up
        && protocol != TUNNELED_SPDY
        && ports.is_empty()
    {
        return Err(ApiError::bad_request("query parameter \"ports\" is required"));
    }
    let resp = switching(&up);
    let on_upgrade = hyper::upgrade::on(&mut req);
    let cancel = state.cancel.clone();
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else { return };
        let io = hyper_util::rt::TokioIo::new(upgraded);
        let session = async move {
            match up {
                Upgrade::Spdy { .. } => serve_spdy(io).await,
                Upgrade::WebSocket { protocol, .. } if protocol == TUNNELED_SPDY => {
                    let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
                    let (a, b) = tokio::io::duplex(64 * 1024);
                    tokio::spawn(bridge_ws_bytes(ws, a));
                    serve_spdy(b).await
                }
                Upgrade::WebSocket { .. } => serve_channels(io, ports).await,
            }
        };
        tokio::select! {
            _ = session => {}
            _ = cancel.cancelled() => {}
        }
    });
    Ok(resp)
}

/// Echo on every `data` stream; close the matching `error` stream when the client closes its data.
async fn serve_spdy<IO>(io: IO)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut events, writer) = spdy::start(io);
    let mut kinds: HashMap<u32, (String, String)> = HashMap::new();
    let mut errors: HashMap<String, u32> = HashMap::new();
    while let Some(ev) = events.recv().await {
        match ev {
            Event::Open { id, headers, .. } => {
                let ty = headers.get("streamtype").cloned().unwrap_or_default();
                let request = headers.get("requestid").cloned().unwrap_or_default();
                if ty == "error" {
                    errors.insert(request.clone(), id);
                }
                kinds.insert(id, (ty, request));
            }
            Event::Data { id, data, fin } => {
                let Some((ty, request)) = kinds.get(&id) else { continue };
                if ty != "data" {
                    continue;
                }
                if !data.is_empty() && writer.data(id, data, false).await.is_err() {
                    return;
                }
                if fin {
                    let _ = writer.data(id, Bytes::new(), true).await;
                    if let Some(e) = errors.remove(request) {
                        let _ = writer.data(e, Bytes::new(), true).await;
                    }
                }
            }
            Event::Reset { id } => {
                if let Some((_, request)) = kinds.remove(&id)
                    && let Some(e) = errors.remove(&request)
                {
                    writer.reset(e).await;
                }
            }
        }
    }
}

/// Carries the bytes of a WebSocket's binary messages through a pipe, both ways.
async fn bridge_ws_bytes<IO>(ws: WebSocketStream<IO>, pipe: tokio::io::DuplexStream)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut stream) = ws.split();
    let (mut pr, mut pw) = tokio::io::split(pipe);
    let up = async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match pr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sink.send(Message::Binary(Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = sink.send(Message::Close(None)).await;
    };
    let down = async move {
        while let Some(Ok(m)) = stream.next().await {
            match m {
                Message::Binary(b) => {
                    let written = pw.write_all(&b).await;
                    if written.is_err() {
                        break;
                    }
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = pw.shutdown().await;
    };
    tokio::join!(up, down);
}

/// The WebSocket channel form: channel 2i carries data of port i, 2i+1 its errors; the first message
/// the server sends on each channel is the port number (little endian).
async fn serve_channels<IO>(io: IO, ports: Vec<u16>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
    for (i, p) in ports.iter().enumerate() {
        for ch in [2 * i as u8, 2 * i as u8 + 1] {
            let mut m = vec![ch];
            m.extend_from_slice(&p.to_le_bytes());
            if ws.send(Message::Binary(m.into())).await.is_err() {
                return;
            }
        }
    }
    while let Some(Ok(m)) = ws.next().await {
        match m {
            Message::Binary(b) if b.len() > 1 && (b[0] as usize) < 2 * ports.len() && b[0] % 2 == 0 => {
                let sent = ws.send(Message::Binary(b)).await;
                if sent.is_err() {
                    return;
                }
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
}
