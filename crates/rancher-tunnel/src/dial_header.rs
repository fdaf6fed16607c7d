//! The few bytes at the start of every stream: the server's dial request and the agent's reply.
//!
//! Request: `version (1) | network length (1) | network | address length (2, big-endian) | address`.
//! Reply: `status (1) | message length (1) | message (UTF-8, at most 255 bytes)`.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::{Error, Result};

/// Version byte of the dial header.
pub(crate) const VERSION: u8 = 1;
/// Longest network name accepted (`tcp`, `tcp4`, `tcp6`).
pub(crate) const MAX_NETWORK_LEN: usize = 16;
/// Longest address accepted (a 253-byte host name, brackets and a port fit easily).
pub(crate) const MAX_ADDRESS_LEN: usize = 512;

/// The agent's answer to a dial request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum DialStatus {
    /// Connected; the stream now carries the destination's bytes.
    Ok = 0,
    /// The destination policy does not allow this network/address.
    Refused = 1,
    /// The agent tried and could not connect (refused, unreachable, timed out).
    Failed = 2,
    /// The request could not be parsed.
    BadRequest = 3,
    /// The agent is shutting down and takes no new streams.
    Unavailable = 4,
}

impl DialStatus {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            0 => Self::Ok,
            1 => Self::Refused,
            2 => Self::Failed,
            3 => Self::BadRequest,
            4 => Self::Unavailable,
            _ => return None,
        })
    }
}

/// A parsed dial request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DialRequest {
    pub(crate) network: String,
    pub(crate) address: String,
}

pub(crate) fn encode_request(network: &str, address: &str) -> Result<Vec<u8>> {
    if network.is_empty() || network.len() > MAX_NETWORK_LEN {
        return Err(Error::InvalidDial(format!("network must be 1..={MAX_NETWORK_LEN} bytes")));
    }
    if address.is_empty() || address.len() > MAX_ADDRESS_LEN {
        return Err(Error::InvalidDial(format!("address must be 1..={MAX_ADDRESS_LEN} bytes")));
    }
    let mut out = Vec::with_capacity(4 + network.len() + address.len());
    out.push(VERSION);
    out.push(network.len() as u8);
    out.extend_from_slice(network.as_bytes());
    out.extend_from_slice(&(address.len() as u16).to_be_bytes());
    out.extend_from_slice(address.as_bytes());
    Ok(out)
}

pub(crate) async fn read_request<R: AsyncRead + Unpin>(r: &mut R) -> Result<DialRequest> {
    let version = r.read_u8().await?;
    if version != VERSION {
        return Err(Error::Protocol(format!("unsupported dial header version {version}")));
    }
    let nlen = r.read_u8().await? as usize;
    if nlen == 0 || nlen > MAX_NETWORK_LEN {
        return Err(Error::Protocol(format!("network length {nlen} out of range")));
    }
    let mut network = vec![0; nlen];
    r.read_exact(&mut network).await?;
    let alen = r.read_u16().await? as usize;
    if alen == 0 || alen > MAX_ADDRESS_LEN {
        return Err(Error::Protocol(format!("address length {alen} out of range")));
    }
    let mut address = vec![0; alen];
    r.read_exact(&mut address).await?;
    let network = String::from_utf8(network).map_err(|_| Error::Protocol("network is not UTF-8".into()))?;
    let address = String::from_utf8(address).map_err(|_| Error::Protocol("address is not UTF-8".into()))?;
    Ok(DialRequest { network, address })
}

pub(crate) async fn write_reply<W: AsyncWrite + Unpin>(
    w: &mut W,
    status: DialStatus,
    msg: &str,
) -> Result<()> {
    // Cut on a char boundary so the peer always gets valid UTF-8.
    let mut end = msg.len().min(255);
    while !msg.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = Vec::with_capacity(2 + end);
    out.push(status as u8);
    out.push(end as u8);
    out.extend_from_slice(&msg.as_bytes()[..end]);
    w.write_all(&out).await?;
    w.flush().await?;
    Ok(())
}

pub(crate) async fn read_reply<R: AsyncRead + Unpin>(r: &mut R) -> Result<(DialStatus, String)> {
    let status = r.read_u8().await?;
    let status = DialStatus::from_u8(status)
        .ok_or_else(|| Error::Protocol(format!("unknown dial status {status}")))?;
    let len = r.read_u8().await? as usize;
    let mut msg = vec![0; len];
    r.read_exact(&mut msg).await?;
    Ok((status, String::from_utf8_lossy(&msg).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn request_round_trips() {
        let bytes = encode_request("tcp", "10.0.0.1:6443").unwrap();
        let got = read_request(&mut bytes.as_slice()).await.unwrap();
        assert_eq!(got, DialRequest { network: "tcp".into(), address: "10.0.0.1:6443".into() });
    }

    #[tokio::test]
    async fn bad_requests_are_rejected() {
        assert!(encode_request("", "a:1").is_err());
        assert!(encode_request("tcp", &"a".repeat(MAX_ADDRESS_LEN + 1)).is_err());
        let err = read_request(&mut [9u8, 3, b't', b'c', b'p'].as_slice()).await.unwrap_err();
        assert!(err.to_string().contains("version"), "{err}");
        let err = read_request(&mut [1u8, 0].as_slice()).await.unwrap_err();
        assert!(err.to_string().contains("network length"), "{err}");
        // Truncated address.
        assert!(read_request(&mut [1u8, 3, b't', b'c', b'p', 0, 9, b'a'].as_slice()).await.is_err());
    }

    #[tokio::test]
    async fn reply_round_trips_and_long_messages_are_cut_on_char_boundary() {
        let mut buf = Vec::new();
        let long = "é".repeat(200);
        write_reply(&mut buf, DialStatus::Failed, &long).await.unwrap();
        let (status, msg) = read_reply(&mut buf.as_slice()).await.unwrap();
        assert_eq!(status, DialStatus::Failed);
        assert!(msg.len() <= 255 && msg.chars().all(|c| c == 'é'));
        assert!(read_reply(&mut [42u8, 0].as_slice()).await.is_err());
    }
}
