//! rancher-tunnel's integration tests, one binary: servers and agents over real TLS on loopback,
//! hostile peers, and the fuzz corpus replayed.
//!
//! One binary per crate, not one per file: each test binary links the whole dependency graph, and
//! on a small machine linking dominated the suite. Shared helpers live in `rancher-test-support`;
//! what only these tests use is in the modules below.

mod common;

mod fuzz_tunnel;
mod hostile;
mod local_services;
mod sessions;
mod streams;
