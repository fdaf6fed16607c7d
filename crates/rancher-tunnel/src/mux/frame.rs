//! yamux's frame header (hashicorp/yamux `spec.md`): twelve bytes, big-endian — version (0), type,
//! flags, stream id, length. A data frame's length is the size of the body that follows; a window
//! update's is the credit it adds; a ping's is its opaque value; a go-away's is its error code.

use std::io;

pub(super) const HEADER_LEN: usize = 12;
const VERSION: u8 = 0;

pub(super) const SYN: u16 = 1;
pub(super) const ACK: u16 = 2;
pub(super) const FIN: u16 = 4;
pub(super) const RST: u16 = 8;

/// Go-away codes.
pub(super) const GO_AWAY_NORMAL: u32 = 0;
pub(super) const GO_AWAY_PROTOCOL_ERROR: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Data = 0,
    WindowUpdate = 1,
    Ping = 2,
    GoAway = 3,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Header {
    pub(super) kind: Kind,
    pub(super) flags: u16,
    pub(super) stream: u32,
    pub(super) len: u32,
}

impl Header {
    pub(super) fn new(kind: Kind, flags: u16, stream: u32, len: u32) -> Self {
        Self { kind, flags, stream, len }
    }

    pub(super) fn has(&self, flag: u16) -> bool {
        self.flags & flag != 0
    }

    /// Appends the encoded header to `out`.
    pub(super) fn encode_into(self, out: &mut Vec<u8>) {
        out.push(VERSION);
        out.push(self.kind as u8);
        out.extend_from_slice(&self.flags.to_be_bytes());
        out.extend_from_slice(&self.stream.to_be_bytes());
        out.extend_from_slice(&self.len.to_be_bytes());
    }

    /// Decodes the first [`HEADER_LEN`] bytes of `b`.
    pub(super) fn decode(b: &[u8]) -> io::Result<Self> {
        let b: &[u8; HEADER_LEN] = b.get(..HEADER_LEN).and_then(|b| b.try_into().ok()).ok_or_else(|| {
            super::protocol_error(format!("a frame header needs {HEADER_LEN} bytes, got {}", b.len()))
        })?;
        if b[0] != VERSION {
            return Err(super::protocol_error(format!("frame of unknown version {}", b[0])));
        }
        let kind = match b[1] {
            0 => Kind::Data,
            1 => Kind::WindowUpdate,
            2 => Kind::Ping,
            3 => Kind::GoAway,
            other => return Err(super::protocol_error(format!("frame of unknown type {other}"))),
        };
        Ok(Self {
            kind,
            flags: u16::from_be_bytes([b[2], b[3]]),
            stream: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            len: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        })
    }

    /// Bytes of body that follow the header.
    pub(super) fn body_len(&self) -> usize {
        if self.kind == Kind::Data { self.len as usize } else { 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout of the specification, byte for byte, both ways.
    #[test]
    fn headers_encode_as_the_specification_lays_them_out() {
        let mut out = Vec::new();
        Header::new(Kind::WindowUpdate, SYN | ACK, 0x0102_0304, 0x0506_0708).encode_into(&mut out);
        assert_eq!(out, [0, 1, 0, 3, 1, 2, 3, 4, 5, 6, 7, 8]);
        let back = Header::decode(&out).unwrap();
        assert_eq!(back, Header::new(Kind::WindowUpdate, SYN | ACK, 0x0102_0304, 0x0506_0708));
        assert_eq!(back.body_len(), 0);
        assert_eq!(Header::new(Kind::Data, 0, 1, 7).body_len(), 7);
    }

    #[test]
    fn a_bad_version_or_type_is_refused_with_a_reason() {
        let err = Header::decode(&[0xff; HEADER_LEN]).unwrap_err();
        assert!(err.to_string().contains("unknown version 255"), "{err}");
        let err = Header::decode(&[0, 9, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]).unwrap_err();
        assert!(err.to_string().contains("unknown type 9"), "{err}");
        assert!(Header::decode(&[0; 5]).is_err());
    }
}
