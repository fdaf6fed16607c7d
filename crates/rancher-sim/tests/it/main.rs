//! rancher-sim's integration tests, one binary: sims started in-process and driven by the real
//! `kubectl` (several versions) and kube-rs.
//!
//! One binary per crate, not one per file: each test binary links the whole dependency graph, and
//! on a small machine linking dominated the suite. Shared helpers live in `rancher-test-support`;
//! what only these tests use is in the modules below.

mod common;

mod bad_input;
mod crds;
mod delete_options;
mod events;
mod exec_shell;
mod field_validation;
mod identity;
mod kube_rs;
mod kubectl_acceptance;
mod kubectl_namespace_delete;
mod kubectl_workflows;
mod kubelet;
mod list_watch_versions;
mod namespace_finalizers;
mod node_leases;
mod rollout;
