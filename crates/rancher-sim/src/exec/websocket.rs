//! Exec/attach over WebSocket with the Kubernetes channel protocol (`v5.channel.k8s.io`,
//! `v4.channel.k8s.io`): each binary message starts with a channel byte (0 stdin, 1 stdout,
//! 2 stderr, 3 error, 4 resize; v5 adds 255 = close a channel).

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};

use super::ExecRequest;
use super::shell::{self, Output};

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const CLOSE: u8 = 255;

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    Message::Binary(v.into())
}

pub(super) async fn serve<IO>(io: IO, er: ExecRequest, _protocol: &str)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
    let (mut sink, mut stream) = ws.split();
    let (stdin_tx, stdin_rx) = mpsc::channel::<Bytes>(16);
    let reader = tokio::spawn(async move {
        let mut stdin_tx = Some(stdin_tx);
        while let Some(Ok(msg)) = stream.next().await {
            let data = match msg {
                Message::Binary(b) => b,
                Message::Close(_) => break,
                _ => continue,
            };
            match data.first() {
                Some(&STDIN) if data.len() > 1 => {
                    if let Some(tx) = &stdin_tx
                        && tx.send(data.slice(1..)).await.is_err()
                    {
                        stdin_tx = None;
                    }
                }
                Some(&CLOSE) if data.get(1) == Some(&STDIN) => stdin_tx = None,
                _ => {}
            }
        }
    });
    let (out_tx, mut out_rx) = mpsc::channel::<Output>(16);
    let process = er.process.clone();
    let command = er.command.clone();
    let stdin = er.stdin.then_some(stdin_rx);
    let run = tokio::spawn(async move { shell::run(&command, &process, stdin, out_tx).await });
    while let Some(o) = out_rx.recv().await {
        let msg = match o {
            Output::Stdout(b) if er.stdout => frame(STDOUT, &b),
            Output::Stderr(b) if er.stderr => frame(if er.tty { STDOUT } else { STDERR }, &b),
            _ => continue,
        };
        if sink.send(msg).await.is_err() {
            reader.abort();
            return;
        }
    }
    let code = run.await.unwrap_or(1);
    let status = shell::exit_status(&er.command, code);
    let _ = sink.send(frame(ERROR, status.to_string().as_bytes())).await;
    let normal = CloseFrame { code: CloseCode::Normal, reason: "".into() };
    let _ = sink.send(Message::Close(Some(normal))).await;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), reader).await;
}
