//! `rancherctl`: log in to a rancher-rs server and manage clusters, projects and users.
//!
//! ```no_run
//! # async fn demo() -> Result<(), rancher::cli::CliError> {
//! use clap::Parser;
//! let cli = rancher::cli::Cli::parse_from(["rancherctl", "cluster", "ls", "-o", "json"]);
//! let text = rancher::cli::run(cli).await?;
//! print!("{text}");
//! # Ok(()) }
//! ```

mod client;
mod commands;
pub mod config;
mod error;
mod namespaces;
mod oidc_login;
pub mod output;

use clap::{Parser, Subcommand};

pub use client::ApiClient;
pub use config::CliConfig;
pub use error::CliError;
pub use namespaces::NamespaceCommand;
pub use output::Format;

/// Command-line client for the rancher-rs management server.
#[derive(Debug, Parser)]
#[command(name = "rancherctl", version, about)]
pub struct Cli {
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, global = true, default_value_t = Format::Table)]
    pub output: Format,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Log in with a username and password and save the session token.
    Login(LoginArgs),
    /// Revoke the saved token and forget it.
    Logout,
    /// Clusters.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Projects (`CLUSTER:PROJECT`).
    #[command(subcommand)]
    Project(ProjectCommand),
    /// Local users.
    #[command(subcommand)]
    User(UserCommand),
    /// A cluster's namespaces and the projects they are in.
    #[command(subcommand)]
    Namespace(NamespaceCommand),
    /// Print a kubeconfig for a cluster: kubectl reaches it through the server's proxy with a new
    /// kubeconfig token (and directly, when its authorized cluster endpoint is on).
    Kubeconfig {
        /// The cluster's id (its name).
        cluster: String,
    },
}

/// `rancherctl login`.
#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// The server, e.g. `https://rancher.example.com:8443`.
    pub server: String,
    /// The username (not with --oidc).
    #[arg(long, short = 'u', required_unless_present = "oidc", conflicts_with = "oidc")]
    pub username: Option<String>,
    /// The password (or set RANCHER_PASSWORD, or use --password-stdin).
    #[arg(long, short = 'p', env = "RANCHER_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Read the password from the first line of stdin.
    #[arg(long, conflicts_with = "password")]
    pub password_stdin: bool,
    /// Trust this CA certificate (PEM) for the server; it is saved with the login.
    #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
    pub cacert: Option<std::path::PathBuf>,
    /// Do not verify the server's certificate.
    #[arg(long)]
    pub insecure: bool,
    /// Log in through the server's OIDC provider: prints a URL to open in a browser and waits (up to
    /// 5 minutes) for the browser to come back to a listener on 127.0.0.1.
    #[arg(long, conflicts_with = "password_stdin")]
    pub oidc: bool,
}

/// `rancherctl cluster …`.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// List clusters.
    #[command(alias = "list")]
    Ls,
    /// Create a cluster.
    Create {
        /// The cluster's name (a DNS-1123 label).
        name: String,
        /// Free text.
        #[arg(long, default_value = "")]
        description: String,
        /// Register an existing cluster and print the command that imports it.
        #[arg(long)]
        import: bool,
    },
    /// Show one cluster.
    Get {
        /// The cluster's name.
        name: String,
    },
    /// Delete a cluster.
    #[command(alias = "delete")]
    Rm {
        /// The cluster's name.
        name: String,
    },
}

/// `rancherctl project …`.
#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// List projects.
    #[command(alias = "list")]
    Ls {
        /// Only this cluster's projects.
        #[arg(long)]
        cluster: Option<String>,
    },
    /// Create a project and print its id (`CLUSTER:p-xxxxx`, chosen by the server).
    Create {
        /// The cluster's id (`CLUSTER:NAME` is read as CLUSTER and NAME).
        cluster: String,
        /// The name people see.
        name: Option<String>,
        /// The name people see (instead of NAME).
        #[arg(long)]
        display_name: Option<String>,
    },
    /// Delete a project.
    #[command(alias = "delete")]
    Rm {
        /// `CLUSTER:p-xxxxx`, or `CLUSTER:<display name>`.
        id: String,
    },
}

/// `rancherctl user …`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// List users.
    #[command(alias = "list")]
    Ls,
    /// Create a local user.
    Create {
        /// The login name.
        username: String,
        /// The password (at least 12 characters).
        #[arg(long, env = "RANCHER_NEW_USER_PASSWORD", hide_env_values = true)]
        password: String,
        /// The name people see.
        #[arg(long)]
        display_name: Option<String>,
    },
    /// Delete a user (by username or id).
    #[command(alias = "delete")]
    Rm {
        /// Username or `u-xxxxx` id.
        user: String,
    },
}

/// Runs a command; returns what to print on stdout.
///
/// # Errors
/// [`CliError`], worded for the terminal.
pub async fn run(cli: Cli) -> Result<String, CliError> {
    commands::run(cli).await
}
