//! Invariant checks over what a hostile client controls in a proxied request: its request line (the
//! cluster prefix, the Kubernetes request info, the audit record) and its headers (the identity sent
//! downstream). Each check takes raw fuzzer bytes and panics when an invariant breaks.
//!
//! The cargo-fuzz targets in the workspace's `fuzz/` directory and the bounded runs in
//! `tests/it/fuzz_proxy.rs` call these same functions, so a crash found by a long run replays in the
//! ordinary test suite. Not a stable API: hidden from the docs, shaped for the fuzzer.

mod audit_secrets;
mod identity;
mod path;

pub use audit_secrets::audit_secret_bodies;
pub use identity::{downstream_headers, identity_headers, identity_headers_next_hop};
pub use path::proxy_path;

/// A request line `METHOD SP request-target` as hyper would accept it: a valid method token and an
/// origin-form target (`/path?query`). `None` for anything hyper refuses before the proxy sees it.
pub(crate) fn request_line(line: &[u8]) -> Option<(http::Method, http::Uri)> {
    let space = line.iter().position(|&b| b == b' ')?;
    let method = http::Method::from_bytes(&line[..space]).ok()?;
    let target = &line[space + 1..];
    if target.first() != Some(&b'/') {
        return None;
    }
    let uri = http::Uri::try_from(target).ok()?;
    Some((method, uri))
}

/// Splits fuzzer bytes at the first newline: `(first line, rest)`.
pub(crate) fn first_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}
