//! `rancher-agent`: parse flags, run the agent until SIGTERM or SIGINT (then close the tunnel at
//! once), exit non-zero on a permanent error such as a CA checksum mismatch.

use std::io::IsTerminal;

use clap::Parser;
use rancher::agent::{AgentArgs, AgentBuilder};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
            }
            _ => std::future::pending::<()>().await,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = AgentArgs::parse();
    if args.print_image_ref {
        println!("{}", rancher::protocol::IMAGE_REF);
        return std::process::ExitCode::SUCCESS;
    }
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    if args.stop_processes {
        return match rancher::agent::stop_node_processes(&args.state_dir).await {
            Ok(stopped) => {
                println!(
                    "stopped: {}",
                    if stopped.is_empty() { "nothing".to_owned() } else { stopped.join(", ") }
                );
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("rancher-agent: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    // Owned here: aborted once the agent has stopped for another reason.
    let signals = tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("signal received: closing the tunnel");
        on_signal.cancel();
    });
    let agent = AgentBuilder::from_args(&args, &|k| std::env::var(k).ok());
    let result = async { agent?.run(stop).await }.await;
    signals.abort();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("rancher-agent: {e}");
            eprintln!("rancher-agent: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
