//! The snapshot answer: a stream of JSON objects `{"result":{"remaining_bytes":"…","blob":"<base64>"}}`
//! (or `{"error":{…}}`), decoded piece by piece into the caller's writer, hashed on the way.
//!
//! etcd ends the database's bytes with their own SHA-256 (32 bytes); `etcdctl snapshot restore`
//! checks it, and so do we: the last 32 bytes written must be the SHA-256 of all before them.

use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::{EtcdError, SnapshotInfo};

/// The largest single JSON object accepted (etcd sends 32 KiB chunks: about 44 KiB of base64).
const MAX_OBJECT: usize = 8 << 20;
/// The length of etcd's trailer.
const TRAILER: usize = 32;

/// Why decoding stopped.
#[derive(Debug)]
pub(super) enum SnapshotFault {
    /// Not etcd's stream.
    Bad(String),
    /// etcd reported an error in the stream.
    Refused(String),
    /// The caller's writer failed.
    Write(std::io::Error),
}

impl SnapshotFault {
    pub(super) fn into_error(self, call: &'static str, endpoint: &str) -> EtcdError {
        let endpoint = endpoint.to_owned();
        match self {
            SnapshotFault::Bad(message) => EtcdError::BadAnswer { call, endpoint, message },
            SnapshotFault::Refused(message) => EtcdError::Refused { call, endpoint, status: 200, message },
            SnapshotFault::Write(source) => EtcdError::Write { endpoint, source },
        }
    }
}

#[derive(Deserialize)]
struct Piece {
    result: Option<Chunk>,
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    blob: String,
}

/// Decodes the stream as it arrives.
pub(super) struct SnapshotReader {
    /// Bytes received and not yet decoded (at most one partial object).
    pending: Vec<u8>,
    /// The SHA-256 of everything written.
    whole: Sha256,
    /// The SHA-256 of everything written except the last [`TRAILER`] bytes, which are held in `tail`.
    body: Sha256,
    tail: Vec<u8>,
    size: u64,
}

impl SnapshotReader {
    pub(super) fn new() -> Self {
        SnapshotReader {
            pending: Vec::new(),
            whole: Sha256::new(),
            body: Sha256::new(),
            tail: Vec::new(),
            size: 0,
        }
    }

    /// Takes `data`, writes every complete object's bytes to `out`.
    pub(super) async fn feed(
        &mut self,
        data: &[u8],
        out: &mut (dyn AsyncWrite + Unpin + Send),
    ) -> Result<(), SnapshotFault> {
        self.pending.extend_from_slice(data);
        let mut consumed = 0;
        let mut blobs = Vec::new();
        {
            let mut stream = serde_json::Deserializer::from_slice(&self.pending).into_iter::<Piece>();
            loop {
                match stream.next() {
                    None => {
                        consumed = stream.byte_offset();
                        break;
                    }
                    Some(Ok(piece)) => {
                        consumed = stream.byte_offset();
                        if let Some(err) = piece.error {
                            let message =
                                err["message"].as_str().map_or_else(|| err.to_string(), str::to_owned);
                            return Err(SnapshotFault::Refused(message));
                        }
                        let chunk = piece
                            .result
                            .ok_or_else(|| SnapshotFault::Bad("an object without result".into()))?;
                        let blob = base64::engine::general_purpose::STANDARD
                            .decode(chunk.blob.as_bytes())
                            .map_err(|e| SnapshotFault::Bad(format!("a blob is not base64: {e}")))?;
                        blobs.push(blob);
                    }
                    Some(Err(e)) if e.is_eof() => break,
                    Some(Err(e)) => {
                        return Err(SnapshotFault::Bad(format!("not a stream of JSON objects: {e}")));
                    }
                }
            }
        }
        self.pending.drain(..consumed);
        if self.pending.len() > MAX_OBJECT {
            return Err(SnapshotFault::Bad(format!("an object is larger than {MAX_OBJECT} bytes")));
        }
        for blob in blobs {
            self.write(&blob, out).await?;
        }
        Ok(())
    }

    async fn write(
        &mut self,
        blob: &[u8],
        out: &mut (dyn AsyncWrite + Unpin + Send),
    ) -> Result<(), SnapshotFault> {
        out.write_all(blob).await.map_err(SnapshotFault::Write)?;
        self.whole.update(blob);
        self.size += blob.len() as u64;
        // Keep the last TRAILER bytes out of `body` until more arrive.
        self.tail.extend_from_slice(blob);
        if self.tail.len() > TRAILER {
            let spill = self.tail.len() - TRAILER;
            self.body.update(&self.tail[..spill]);
            self.tail.drain(..spill);
        }
        Ok(())
    }

    /// The stream ended: checks nothing is left over and the trailer matches.
    pub(super) async fn finish(
        self,
        out: &mut (dyn AsyncWrite + Unpin + Send),
    ) -> Result<SnapshotInfo, SnapshotFault> {
        if self.pending.iter().any(|b| !b.is_ascii_whitespace()) {
            return Err(SnapshotFault::Bad("the stream ended inside an object".into()));
        }
        out.flush().await.map_err(SnapshotFault::Write)?;
        if self.size <= TRAILER as u64 {
            return Err(SnapshotFault::Bad(format!("only {} bytes: no database", self.size)));
        }
        let body = self.body.finalize();
        if body.as_slice() != self.tail.as_slice() {
            return Err(SnapshotFault::Bad(
                "the snapshot's SHA-256 trailer does not match its bytes (cut short or corrupted)".into(),
            ));
        }
        Ok(SnapshotInfo { size: self.size, sha256: hex::encode(self.whole.finalize()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(bytes: &[u8]) -> String {
        let blob = base64::engine::general_purpose::STANDARD.encode(bytes);
        format!("{{\"result\":{{\"remaining_bytes\":\"1\",\"blob\":\"{blob}\"}}}}\n")
    }

    fn with_trailer(db: &[u8]) -> Vec<u8> {
        let mut v = db.to_vec();
        v.extend_from_slice(&Sha256::digest(db));
        v
    }

    #[tokio::test]
    async fn pieces_cut_anywhere_decode_to_the_same_bytes() {
        let file = with_trailer(&[7u8; 5000]);
        let stream = [piece(&file[..1000]), piece(&file[1000..4990]), piece(&file[4990..])].concat();
        for cut in [1, 7, 100, stream.len()] {
            let mut reader = SnapshotReader::new();
            let mut out = Vec::new();
            for part in stream.as_bytes().chunks(cut) {
                reader.feed(part, &mut out).await.unwrap();
            }
            let info = reader.finish(&mut out).await.unwrap();
            assert_eq!(out, file);
            assert_eq!(info.size, file.len() as u64);
            assert_eq!(info.sha256, hex::encode(Sha256::digest(&file)));
        }
    }

    #[tokio::test]
    async fn a_wrong_trailer_a_cut_stream_and_an_error_object_are_refused() {
        let mut file = with_trailer(b"database");
        *file.last_mut().unwrap() ^= 1;
        let mut reader = SnapshotReader::new();
        let mut out = Vec::new();
        reader.feed(piece(&file).as_bytes(), &mut out).await.unwrap();
        let err = reader.finish(&mut out).await.unwrap_err();
        assert!(matches!(&err, SnapshotFault::Bad(m) if m.contains("trailer")), "{err:?}");

        let mut reader = SnapshotReader::new();
        let p = piece(&with_trailer(b"database"));
        reader.feed(&p.as_bytes()[..p.len() - 5], &mut out).await.unwrap();
        assert!(matches!(reader.finish(&mut out).await, Err(SnapshotFault::Bad(_))));

        let mut reader = SnapshotReader::new();
        let err = reader
            .feed(br#"{"error":{"grpc_code":14,"message":"etcdserver: no leader"}}"#, &mut out)
            .await
            .unwrap_err();
        assert!(matches!(&err, SnapshotFault::Refused(m) if m == "etcdserver: no leader"), "{err:?}");

        let mut reader = SnapshotReader::new();
        assert!(matches!(reader.feed(b"<html>", &mut out).await, Err(SnapshotFault::Bad(_))));
    }
}
