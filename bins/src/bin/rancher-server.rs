//! `rancher-server`: parse flags, build the server, serve until SIGTERM or SIGINT.

use std::io::IsTerminal;

use clap::Parser;
use rancher::server::ServerArgs;
use tracing_subscriber::EnvFilter;

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// See the `mimalloc` feature.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Threads for blocking work (the embedded store's scans and commits, file I/O).
/// Tokio's default allows 512, and a fleet's arrival grew the pool to a hundred threads that each
/// took their own allocator heap and abandoned it ten seconds later (140 threads started in one
/// arrival of 3,000 clusters); the work is short and the machine's cores are few, so a small pool
/// that stays does the same work with a fraction of the memory.
const BLOCKING_THREADS: usize = 16;

fn main() -> std::process::ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(BLOCKING_THREADS)
        .thread_keep_alive(std::time::Duration::from_secs(300))
        .build();
    match runtime {
        Ok(rt) => rt.block_on(serve()),
        Err(e) => {
            eprintln!("rancher-server: the async runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve() -> std::process::ExitCode {
    let args = ServerArgs::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let server = match args.builder().build().await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rancher-server: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if let Some(pw) = server.generated_admin_password() {
        println!("Bootstrap password for user \"admin\" (shown once): {pw}");
    }
    println!("rancher-server listening on {}", server.url());
    if let Err(e) = server.run(shutdown_signal()).await {
        eprintln!("rancher-server: {e}");
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}
