//! Exec/attach over SPDY/3.1 (`v4.channel.k8s.io`): wait for the client's error/stdin/stdout/stderr
//! (and resize) streams, run the shell, then close stdout/stderr and send the exit Status on the
//! error stream.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use super::ExecRequest;
use super::shell::{self, Output};
use crate::spdy::{self, Event};

/// How long the client has to open all its streams.
const STREAM_WAIT: Duration = Duration::from_secs(30);

pub(super) async fn serve<IO>(io: IO, er: ExecRequest)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut events, writer) = spdy::start(io);
    let mut wanted = vec!["error"];
    if er.stdin {
        wanted.push("stdin");
    }
    if er.stdout {
        wanted.push("stdout");
    }
    if er.stderr && !er.tty {
        wanted.push("stderr");
    }
    if er.tty {
        wanted.push("resize");
    }
    let mut streams: HashMap<String, u32> = HashMap::new();
    let (stdin_tx, stdin_rx) = mpsc::channel::<Bytes>(16);
    let mut stdin_tx = Some(stdin_tx);
    let deadline = tokio::time::Instant::now() + STREAM_WAIT;
    while !wanted.iter().all(|w| streams.contains_key(*w)) {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(Event::Open { id, headers, .. })) => {
                if let Some(t) = headers.get("streamtype") {
                    streams.insert(t.clone(), id);
                }
            }
            Ok(Some(_)) => {}
            _ => return,
        }
    }
    let stdin_id = streams.get("stdin").copied();
    // Pump client events: stdin data into the shell; everything else is ignored.
    let pump = tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            match ev {
                Event::Data { id, data, fin } if Some(id) == stdin_id => {
                    if let Some(tx) = &stdin_tx
                        && !data.is_empty()
                        && tx.send(data).await.is_err()
                    {
                        stdin_tx = None;
                    }
                    if fin {
                        stdin_tx = None;
                    }
                }
                Event::Reset { id } if Some(id) == stdin_id => stdin_tx = None,
                _ => {}
            }
        }
    });
    let (out_tx, mut out_rx) = mpsc::channel::<Output>(16);
    let process = er.process.clone();
    let command = er.command.clone();
    let stdin = er.stdin.then_some(stdin_rx);
    let run = tokio::spawn(async move { shell::run(&command, &process, stdin, out_tx).await });
    let stdout_id = streams.get("stdout").copied();
    let stderr_id = streams.get("stderr").copied().or(if er.tty { stdout_id } else { None });
    while let Some(o) = out_rx.recv().await {
        let (id, data) = match o {
            Output::Stdout(b) => (stdout_id, b),
            Output::Stderr(b) => (stderr_id, b),
        };
        if let Some(id) = id
            && writer.data(id, data, false).await.is_err()
        {
            pump.abort();
            return;
        }
    }
    let code = run.await.unwrap_or(1);
    for id in [stdout_id, streams.get("stderr").copied()].into_iter().flatten() {
        let _ = writer.data(id, Bytes::new(), true).await;
    }
    if let Some(id) = streams.get("error").copied() {
        let status = shell::exit_status(&er.command, code);
        let _ = writer.data(id, Bytes::from(status.to_string()), true).await;
    }
    if let Some(id) = streams.get("resize").copied() {
        let _ = writer.data(id, Bytes::new(), true).await;
    }
    // Keep the connection until the client has read everything and hangs up.
    let _ = tokio::time::timeout(Duration::from_secs(30), pump).await;
}
