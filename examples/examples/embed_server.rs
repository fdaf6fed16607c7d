//! Runs the management server inside another program, on an in-memory store, until Ctrl-C.
//!
//! ```sh
//! cargo run -p rancher-examples --example embed_server
//! ```

use std::sync::Arc;

use rancher::Server;
use rancher_core::store::MemoryStore;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Every binary picks the process-wide TLS provider first: rancher-rs uses aws-lc-rs only.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();

    // The server keeps its CA and keys in the data directory; the objects live in the store we give it.
    let data_dir = tempfile::tempdir()?;
    let server = Server::builder()
        .data_dir(data_dir.path())
        .store(Arc::new(MemoryStore::new()))
        .https_listen("127.0.0.1:0".parse()?)
        .build()
        .await?;

    println!("rancher-rs management server at {}", server.url());
    if let Some(password) = server.generated_admin_password() {
        println!("log in as admin with: {password}");
    }
    println!("CA to trust:\n{}", server.ca_pem());

    server
        .run(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
