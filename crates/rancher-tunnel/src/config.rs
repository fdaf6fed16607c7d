//! Session limits and timings shared by both ends of a tunnel.

use std::time::Duration;

use crate::error::{Error, Result};

/// Every stream's receive window (yamux's default, which the multiplexer keeps to).
const STREAM_WINDOW: usize = crate::mux::WINDOW as usize;

/// What a stream is opened for, which decides the stream limit it counts against
/// ([`SessionConfig::reserved_streams`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamUse {
    /// A request answered in moments.
    Request,
    /// A stream that stays open as long as its client wants: a watch, exec, attach,
    /// port-forward, `logs -f`.
    LongRunning,
}

/// Limits and timings of one tunnel session. Both ends use the same type; the agent and the
/// server need not agree on values (each enforces its own).
///
/// ```
/// let mut cfg = rancher_tunnel::SessionConfig::default();
/// cfg.max_streams = 64;
/// cfg.reserved_streams = 8;
/// cfg.max_buffered_bytes = 2 * 64 * 256 * 1024;
/// cfg.validate().unwrap();
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SessionConfig {
    /// Maximum number of concurrently open streams the server opens in one session. One more
    /// fails that dial with [`Error::StreamLimit`]; the session continues. (The multiplexer
    /// itself allows twice as many, because a closed stream is forgotten by the two ends at
    /// slightly different times; a stream opened past its limit is reset.) The agent
    /// should be given at least the server's value.
    pub max_streams: usize,
    /// Of `max_streams`, how many only [`StreamUse::Request`](StreamUse) dials may take:
    /// long-running streams (watches, exec, `logs -f`) fail with [`Error::StreamLimit`] once
    /// `max_streams - reserved_streams` streams are open, so that however many watches a cluster
    /// has, its ordinary requests still get through.
    pub reserved_streams: usize,
    /// Maximum bytes a session may buffer for its streams on the receiving side (the cap on
    /// the sum of all streams' receive windows). Must be at least `2 × max_streams × 256 KiB`.
    pub max_buffered_bytes: usize,
    /// Largest data frame sent; larger writes are split so that other streams and
    /// control frames interleave.
    pub frame_size: usize,
    /// How often a WebSocket ping is sent when the default transport is used.
    pub keepalive_interval: Duration,
    /// A peer from which no frame (data, ping or pong) arrives within this time is dead: the
    /// session is closed and its registry entry removed.
    pub dead_peer_timeout: Duration,
    /// Largest WebSocket message (and frame) accepted; a larger one closes the session.
    pub max_message_size: usize,
    /// Server side: how long a dial waits for the agent's reply (the agent's own connect
    /// timeout is [`AgentConfig::dial_timeout`](crate::AgentConfig)).
    pub dial_reply_timeout: Duration,
    /// Server side: how long a session replaced by a newer one of the same client key keeps
    /// serving the streams already open on it (it opens no new ones) before it closes.
    pub replaced_drain: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            // A cluster's watches each hold a stream for as long as they run: a thousand kubectl
            // and controller watches through the proxy must fit. A stream costs memory only while
            // it is open (and its receive window only while its reader lags).
            max_streams: 2048,
            reserved_streams: 64,
            max_buffered_bytes: 2 * 2048 * STREAM_WINDOW,
            frame_size: 64 * 1024,
            keepalive_interval: Duration::from_secs(15),
            dead_peer_timeout: Duration::from_secs(45),
            max_message_size: 1024 * 1024,
            dial_reply_timeout: Duration::from_secs(30),
            replaced_drain: Duration::from_secs(30),
        }
    }
}

impl SessionConfig {
    /// Checks that the values fit together.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first value out of range.
    pub fn validate(&self) -> Result<()> {
        if self.max_streams == 0 {
            return Err(Error::Config("max_streams must be at least 1".into()));
        }
        if self.reserved_streams >= self.max_streams {
            return Err(Error::Config("reserved_streams must be less than max_streams".into()));
        }
        let min_buffered = self.mux_streams().saturating_mul(STREAM_WINDOW);
        if self.max_buffered_bytes < min_buffered {
            return Err(Error::Config(format!(
                "max_buffered_bytes ({}) must be at least 2 × max_streams × 256 KiB ({min_buffered})",
                self.max_buffered_bytes
            )));
        }
        if self.frame_size < 1024 || self.frame_size > 1024 * 1024 {
            return Err(Error::Config("frame_size must be between 1 KiB and 1 MiB".into()));
        }
        // One WebSocket message carries at most one data frame plus headers, coalesced.
        if self.max_message_size < self.frame_size * 2 {
            return Err(Error::Config("max_message_size must be at least 2 × frame_size".into()));
        }
        if self.keepalive_interval.is_zero() || self.dead_peer_timeout <= self.keepalive_interval {
            return Err(Error::Config(
                "keepalive_interval must be non-zero and shorter than dead_peer_timeout".into(),
            ));
        }
        if self.dial_reply_timeout.is_zero() {
            return Err(Error::Config("dial_reply_timeout must be non-zero".into()));
        }
        Ok(())
    }

    pub(crate) fn mux(&self) -> crate::mux::Config {
        crate::mux::Config {
            max_streams: self.mux_streams(),
            frame_size: self.frame_size,
            max_queued: self.ws_write_chunk(),
        }
    }

    /// How many streams may be open when a dial for `use_` opens one more.
    pub(crate) fn stream_limit(&self, use_: StreamUse) -> usize {
        match use_ {
            StreamUse::Request => self.max_streams,
            StreamUse::LongRunning => self.max_streams - self.reserved_streams,
        }
    }

    /// The multiplexer's own stream limit (see [`SessionConfig::max_streams`]).
    pub(crate) fn mux_streams(&self) -> usize {
        self.max_streams.saturating_mul(2)
    }

    /// Largest coalesced WebSocket message we write.
    pub(crate) fn ws_write_chunk(&self) -> usize {
        self.max_message_size / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_builds_the_mux_config() {
        let cfg = SessionConfig::default();
        cfg.validate().unwrap();
        let _ = cfg.mux();
        let small = SessionConfig {
            max_streams: 4,
            reserved_streams: 1,
            max_buffered_bytes: 8 * 256 * 1024,
            ..Default::default()
        };
        small.validate().unwrap();
        let _ = small.mux();
        assert_eq!(small.stream_limit(StreamUse::Request), 4);
        assert_eq!(small.stream_limit(StreamUse::LongRunning), 3);
    }

    #[test]
    fn streams_reserved_for_requests_must_leave_some_to_long_running_ones() {
        let cfg = SessionConfig {
            max_streams: 4,
            reserved_streams: 4,
            max_buffered_bytes: 8 * 256 * 1024,
            ..Default::default()
        };
        let err = cfg.validate().unwrap_err();
        assert!(err.to_string().contains("reserved_streams"), "{err}");
    }

    #[test]
    fn too_small_buffer_for_stream_count_is_refused() {
        let cfg = SessionConfig { max_streams: 100, max_buffered_bytes: 1024 * 1024, ..Default::default() };
        assert!(cfg.reserved_streams < cfg.max_streams);
        let err = cfg.validate().unwrap_err();
        assert!(err.to_string().contains("max_buffered_bytes"), "{err}");
    }

    #[test]
    fn keepalive_must_be_shorter_than_timeout() {
        let cfg = SessionConfig {
            keepalive_interval: Duration::from_secs(10),
            dead_peer_timeout: Duration::from_secs(5),
            ..Default::default()
        };
        assert!(cfg.validate().is_err());
    }
}
