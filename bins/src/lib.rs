//! rancher-rs, assembled: the management `server`, the cluster `agent`, and the `cli` behind
//! `rancherctl`; [`protocol`] holds what the server and its agents say to each other.
//!
//! The binaries `rancher-server`, `rancherctl` and `rancher-agent` are thin mains over this library;
//! other programs can embed the server the same way:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use rancher::server::Server;
//!
//! let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
//! let server = Server::builder()
//!     .data_dir("./rancher-data")
//!     .https_listen("127.0.0.1:8443".parse()?)
//!     .build()
//!     .await?;
//! if let Some(pw) = server.generated_admin_password() {
//!     println!("admin password: {pw}");
//! }
//! server.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
//!
//! # Features
//!
//! All on by default, so `cargo build` builds the whole product. An embedder that wants one part
//! turns the defaults off:
//! `rancher = { version = "…", default-features = false, features = ["server"] }`.
//!
//! | feature | gates |
//! |---|---|
//! | `server` | the `server` module and `rancher-server` |
//! | `agent` | the `agent` module and `rancher-agent` |
//! | `cli` | the `cli` module and `rancherctl` |
//! | `ldap`, `github`, `oidc` | the server's identity providers of those kinds (each implies `server`) |
//! | `etcd` | the etcd store backend, `--store etcd` (implies `server`; needs `protoc`); off by default |

#[cfg(feature = "agent")]
pub mod agent;
#[cfg(feature = "cli")]
pub mod cli;
pub mod protocol;
#[cfg(feature = "server")]
pub mod server;
