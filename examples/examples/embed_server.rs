//! Runs the management server inside another program's axum app, on an in-memory store, until
//! Ctrl-C: the program's own routes and metrics beside rancher-rs's `/v3`, `/v3-public`,
//! `/k8s/clusters/<id>` and `/metrics`, an audit sink of its own, and one registry for everything.
//!
//! ```sh
//! cargo run -p rancher-examples --example embed_server
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::routing::get;
use prometheus_client::registry::Registry;
use rancher::server::Server;
use rancher_auth::proxy::{AuditEvent, AuditSink};
use rancher_core::store::MemoryStore;

/// Counts the proxied requests per user; a real embedder would forward them to its audit trail.
#[derive(Default)]
struct CountingAudit(AtomicU64);

impl AuditSink for CountingAudit {
    fn record(&self, event: &AuditEvent) {
        let n = self.0.fetch_add(1, Ordering::Relaxed) + 1;
        eprintln!("audit #{n}: {} {} on {} -> {}", event.user, event.verb, event.cluster, event.status);
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Every binary picks the process-wide TLS provider first: rancher-rs uses aws-lc-rs only.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();

    // The embedder owns the listener (port 0: any free port) and the metrics registry.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let mut registry = Registry::default();

    // The server keeps its keys in the data directory; the objects live in the store we give it. It
    // serves plain HTTP here: TLS, if any, is the embedder's (agents need https, so a real deployment
    // terminates TLS in front and sets server_url to that https URL).
    let data_dir = tempfile::tempdir()?;
    let server = Server::builder()
        .data_dir(data_dir.path())
        .store(Arc::new(MemoryStore::new()))
        // build() binds this listener; the router does not use it, so keep it off the default 8443.
        .https_listen("127.0.0.1:0".parse()?)
        .insecure_http(true)
        .server_url(url.clone())
        .audit_sink(Arc::new(CountingAudit::default()))
        .metrics_registry(&mut registry)
        .build()
        .await?;
    if let Some(password) = server.generated_admin_password() {
        println!("log in as admin with: {password}");
    }

    // rancher-rs's router beside the program's own routes; its controllers and tunnel sessions run in
    // `tasks`, which the program stops after its server has drained.
    let (rancher, tasks) = server.into_router();
    let registry = Arc::new(registry);
    let app = axum::Router::new()
        .route("/", get(|| async { "the embedding program; rancher-rs is under /v3" }))
        .route(
            "/embedder/metrics",
            get(move || {
                let registry = registry.clone();
                async move {
                    let mut out = String::new();
                    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
                    out
                }
            }),
        )
        .merge(rancher);

    println!("serving on {url} (rancher-rs API at {url}/v3, all metrics at {url}/embedder/metrics)");
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    tasks.shutdown().await;
    Ok(())
}
