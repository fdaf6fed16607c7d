//! rancher-core's integration tests, one binary: the store conformance suite against each backend,
//! the controller runtime, the watcher, redb crash safety and (feature `etcd`) a real etcd.
//!
//! One binary per crate, not one per file: each test binary links the whole dependency graph, and
//! on a small machine linking dominated the suite. Shared helpers live in `rancher-test-support`;
//! what only these tests use is in the modules below.

#[macro_use]
mod conformance;
#[cfg(feature = "etcd")]
mod etcd_support;

mod cluster_controller;
mod controller;
mod etcd_conformance;
mod etcd_ha;
mod etcd_watch_fanout;
mod memory_conformance;
mod redb_conformance;
mod redb_crash;
mod watcher;
