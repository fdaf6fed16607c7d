//! `rancherctl`: parse flags, run the command, print the result or the error.

use std::io::Write;

use clap::Parser;
use rancher::cli::{Cli, CliError, run};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    match run(cli).await {
        Ok(out) => {
            let _ = std::io::stdout().write_all(out.as_bytes());
            std::process::ExitCode::SUCCESS
        }
        // kubectl has said what went wrong; its code is passed on.
        Err(CliError::Exited(code)) => std::process::ExitCode::from(code),
        Err(e) => {
            if let CliError::SomeClustersFailed { output, .. } = &e {
                let _ = std::io::stdout().write_all(output.as_bytes());
            }
            eprintln!("error: {e}");
            std::process::ExitCode::from(e.exit_code())
        }
    }
}
