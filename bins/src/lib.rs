//! rancher-rs, assembled: the management [`server`], and the [`cli`] behind `rancherctl`.
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

pub mod agent;
pub mod cli;
pub mod server;

pub use server::{Server, ServerBuilder};
