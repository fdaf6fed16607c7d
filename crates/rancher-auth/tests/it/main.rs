//! rancher-auth's integration tests, one binary: the proxy over TLS in front of a sim, and the
//! identity providers against real slapd and OIDC servers.
//!
//! One binary per crate, not one per file: each test binary links the whole dependency graph, and
//! on a small machine linking dominated the suite. Shared helpers live in `rancher-test-support`;
//! what only these tests use is in the modules below.

mod proxy_support;

mod fuzz_proxy;
mod providers_github;
mod providers_ldap;
mod providers_oidc;
mod proxy_forward;
mod proxy_sim;
