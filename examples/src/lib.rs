//! Programs that use rancher-rs only through its public API, the way another platform would:
//!
//! * `embed_server` — run the management server inside your own program.
//! * `custom_provisioner` — bring your own infrastructure behind the `Provisioner` trait.
//! * `custom_auth_provider` — log users in against your own directory behind the `AuthProvider` trait.
//!
//! Run one with `cargo run -p rancher-examples --example <name>`.
