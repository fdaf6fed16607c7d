//! `rancherctl`: log in to rancher-rs servers (several, as named contexts) and manage clusters, their
//! members, projects, users and one's own tokens.
//!
//! ```no_run
//! # async fn demo() -> Result<(), rancher::cli::CliError> {
//! use clap::Parser;
//! let cli = rancher::cli::Cli::parse_from(["rancherctl", "cluster", "ls", "-o", "json"]);
//! let text = rancher::cli::run(cli).await?;
//! print!("{text}");
//! # Ok(()) }
//! ```

mod admin;
mod certs;
mod client;
mod cluster_edit;
mod commands;
mod config;
mod credentials;
mod error;
mod follow;
mod hosted;
mod import;
mod input;
mod jsonpath;
mod kubectl;
mod kubectl_get;
mod members;
mod namespaces;
mod nodes;
mod oidc_login;
mod output;
mod password;
mod principals;
mod rke;
mod roles;
mod session;
mod settings;
mod snapshots;
mod tokens;
mod users;
mod wait;

use clap::{Parser, Subcommand};

pub use admin::{AuditArgs, ProvisionerCommand};
pub use client::ApiClient;
pub use cluster_edit::EditArgs;
pub use config::{CliConfig, Context};
pub use error::CliError;
pub use jsonpath::JsonPath;
pub use kubectl::KubectlArgs;
pub use namespaces::NamespaceCommand;
pub use output::Format;
pub use principals::PrincipalCommand;
pub use roles::{GlobalRoleCommand, RoleEdit, RoleTemplateCommand};
pub use settings::SettingsCommand;
pub use users::UserCommand;
pub use wait::WaitArgs;

/// What `rancherctl --help` opens with.
const ABOUT: &str = "Manage a rancher-rs server from the terminal: log in (several servers and users, as \
                     contexts), create and import clusters, manage projects, members, users and your tokens, \
                     and get kubeconfigs that reach clusters through the server.";

/// Command-line client for the rancher-rs management server.
#[derive(Debug, Parser)]
#[command(name = "rancherctl", version, about = ABOUT, after_help = error::EXIT_CODES)]
pub struct Cli {
    /// Use this saved context (see `rancherctl context ls`) instead of the current one.
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `-o/--output`, on the commands that print objects.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct OutputArg {
    /// Output format: table, json, yaml, or jsonpath=TEMPLATE (kubectl's JSONPath templates, e.g.
    /// `jsonpath='{range .data[*]}{.id}{"\n"}{end}'`; lists are `{"data":[…]}`).
    #[arg(short = 'o', long = "output", value_name = "FORMAT", default_value = "table", value_parser = Format::parse)]
    pub output: Format,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Log in and save the session as a context (and make it current).
    Login(LoginArgs),
    /// Revoke the current context's token and forget it (the context's server and CA stay).
    Logout,
    /// Saved logins: list them, switch, remove.
    #[command(subcommand)]
    Context(ContextCommand),
    /// Clusters.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Projects (`CLUSTER:PROJECT`).
    #[command(subcommand)]
    Project(ProjectCommand),
    /// Local users.
    #[command(subcommand)]
    User(UserCommand),
    /// Role templates: what a cluster or project member may do in the cluster's Kubernetes.
    #[command(subcommand, alias = "roletemplates")]
    Roletemplate(RoleTemplateCommand),
    /// Global roles (what a user may do on the server) and who holds them.
    #[command(subcommand, alias = "globalroles")]
    Globalrole(GlobalRoleCommand),
    /// A cluster's namespaces and the projects they are in.
    #[command(subcommand)]
    Namespace(NamespaceCommand),
    /// Your own API tokens (never their secrets).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Cloud credentials (AWS keys, a GCP service-account key, an Azure client credential) that
    /// hosted clusters are created with. Secrets are read from files, never from the command line.
    #[command(subcommand, alias = "credentials")]
    Credential(CredentialCommand),
    /// Print a kubeconfig for a cluster: kubectl reaches it through the server's proxy with a new
    /// kubeconfig token (and directly, when its authorized cluster endpoint is on).
    Kubeconfig {
        /// The cluster's id (its name).
        cluster: String,
        /// `yaml` (what kubectl reads) or `json` (which kubectl reads too).
        #[arg(short = 'o', long = "output", value_enum, default_value_t = KubeconfigFormat::Yaml)]
        output: KubeconfigFormat,
    },
    /// Wait until a cluster has a condition (`--for condition=Ready`), reaches a state
    /// (`--for state=active`), or is gone (`--for delete`); exit code 8 on a timeout.
    Wait(WaitArgs),
    /// The server's settings (read-only: they are its flags).
    #[command(subcommand, alias = "setting")]
    Settings(SettingsCommand),
    /// Users and groups of every identity provider, by name.
    #[command(subcommand, alias = "principals")]
    Principal(PrincipalCommand),
    /// The newest records of the proxy's audit log (admins): who did what in which cluster.
    Audit(AuditArgs),
    /// The drivers the server builds clusters with.
    #[command(subcommand, alias = "provisioners")]
    Provisioner(ProvisionerCommand),
    /// Print a shell completion script: `source <(rancherctl completion bash)`.
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Run kubectl against a cluster through the server (`rancherctl kubectl CLUSTER -- get pods`),
    /// or one command across every cluster you may reach, in one table (`rancherctl kubectl
    /// --all-clusters -l env=prod -- get nodes`). Uses your login's token; nothing is saved.
    Kubectl(KubectlArgs),
}

/// `rancherctl kubeconfig -o`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KubeconfigFormat {
    /// YAML, as the server generates it.
    Yaml,
    /// The same document as JSON.
    Json,
}

/// `rancherctl login`.
#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// The server, e.g. `https://rancher.example.com:8443`.
    pub server: String,
    /// The username (not with --oidc).
    #[arg(long, short = 'u', required_unless_present = "oidc", conflicts_with = "oidc")]
    pub username: Option<String>,
    /// The password (or set RANCHER_PASSWORD, or use --password-stdin); without any of them it is
    /// asked for on the terminal.
    #[arg(long, short = 'p', env = "RANCHER_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Read the password from the first line of stdin (for scripts).
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
    /// The context's name (default `<user>@<host:port>`); an existing context of that name is updated.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
}

/// `rancherctl context …`.
#[derive(Debug, Subcommand)]
pub enum ContextCommand {
    /// List the saved contexts; `*` marks the current one.
    #[command(alias = "list")]
    Ls,
    /// Make a context the current one.
    Use {
        /// The context's name.
        name: String,
    },
    /// Forget a context, revoking its token first when its server answers.
    #[command(alias = "delete")]
    Rm {
        /// The context's name.
        name: String,
    },
}

/// `rancherctl cluster …`.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// List clusters.
    #[command(alias = "list")]
    Ls(OutputArg),
    /// Create a cluster and print how to join a Kubernetes cluster to it (the import command, and the
    /// agent's command line to run it as a process).
    Create {
        /// The cluster's name (a DNS-1123 label).
        name: String,
        /// Free text.
        #[arg(long, default_value = "")]
        description: String,
        /// Mark it as an imported cluster (Rancher's "import existing"); without it the cluster is
        /// "generic", joined the same way.
        #[arg(long, conflicts_with = "engine")]
        import: bool,
        /// Build the cluster on SSH hosts from this cluster.yml (Rancher's RKE format). The file is
        /// parsed and checked here first: an error names the field and nothing is sent. The key of
        /// each ssh_key_path that can be read here is sent inline as ssh_key (over the TLS
        /// connection; the server seals it at rest and never shows it again); a path that cannot be
        /// read here is left for the server to read from its own filesystem. Prints the new
        /// cluster's id; the server's warnings go to stderr.
        #[arg(long, value_name = "CLUSTER_YML", group = "engine")]
        rke: Option<std::path::PathBuf>,
        /// Create a GKE cluster (or register one, `imported: true`) from this gkeConfig (YAML:
        /// Rancher's fields — googleCredentialSecret, projectId, region or zone, clusterName,
        /// kubernetesVersion, nodePools, …). Checked here first; nothing is sent on an error.
        #[arg(long, value_name = "GKE_CONFIG_YAML", group = "engine")]
        gke: Option<std::path::PathBuf>,
        /// Create an AKS cluster (or register one, `imported: true`) from this aksConfig (YAML:
        /// azureCredentialSecret, resourceGroup, resourceLocation, clusterName, kubernetesVersion,
        /// nodePools, …). Checked here first; nothing is sent on an error.
        #[arg(long, value_name = "AKS_CONFIG_YAML", group = "engine")]
        aks: Option<std::path::PathBuf>,
        /// Create an EKS cluster (or register one, `imported: true`) from this eksConfig (YAML:
        /// amazonCredentialSecret, displayName, region, kubernetesVersion, subnets, serviceRole,
        /// nodeGroups, …). Checked here first; nothing is sent on an error.
        #[arg(long, value_name = "EKS_CONFIG_YAML", group = "engine")]
        eks: Option<std::path::PathBuf>,
        /// With an engine config: print the cluster's id and return at once instead of following
        /// the provisioning (one line per step, a progress bar on a terminal) until the cluster is
        /// active.
        #[arg(long, requires = "engine")]
        no_wait: bool,
        /// With an engine config: how long to follow the provisioning before giving up with an
        /// error (the cluster carries on): `20m`, `90s`, `1h30m`.
        #[arg(long, requires = "engine", default_value = follow::DEFAULT_TIMEOUT, value_parser = follow::parse_timeout)]
        timeout: std::time::Duration,
        /// Output format.
        #[command(flatten)]
        out: OutputArg,
    },
    /// Change a cluster built on hosts to what this cluster.yml says (RKE's `rke up` again): add or
    /// remove hosts, change `kubernetes_version` or a service's flags. The file is checked here first;
    /// keys are sent as for `create --rke`. The server rolls the change out host by host (etcd one
    /// member at a time, then the control plane, then the workers, per `upgrade_strategy`); this
    /// follows it until the cluster is active again.
    #[command(group(clap::ArgGroup::new("engine").required(true).args(["rke", "gke", "aks", "eks"])))]
    Update {
        /// The cluster's name.
        name: String,
        /// The cluster.yml (a cluster built on hosts).
        #[arg(long, value_name = "CLUSTER_YML")]
        rke: Option<std::path::PathBuf>,
        /// The gkeConfig (a GKE cluster): pools resized, added or removed, the Kubernetes version
        /// raised (the control plane first, then each pool), labels.
        #[arg(long, value_name = "GKE_CONFIG_YAML")]
        gke: Option<std::path::PathBuf>,
        /// The aksConfig (an AKS cluster): as --gke.
        #[arg(long, value_name = "AKS_CONFIG_YAML")]
        aks: Option<std::path::PathBuf>,
        /// The eksConfig (an EKS cluster): as --gke, with node groups.
        #[arg(long, value_name = "EKS_CONFIG_YAML")]
        eks: Option<std::path::PathBuf>,
        /// Return once the server took the change instead of following the rollout.
        #[arg(long)]
        no_wait: bool,
        /// How long to follow the rollout before giving up with an error (the rollout carries on).
        #[arg(long, default_value = follow::DEFAULT_TIMEOUT, value_parser = follow::parse_timeout)]
        timeout: std::time::Duration,
        /// Output format.
        #[command(flatten)]
        out: OutputArg,
    },
    /// Print again how to join a Kubernetes cluster to a cluster (import command, agent command line).
    ImportCommand {
        /// The cluster's name.
        name: String,
        /// Output format.
        #[command(flatten)]
        out: OutputArg,
    },
    /// Change a cluster's display name, description, authorized cluster endpoint or the role a
    /// project's members get by default (only the fields given change).
    Edit(EditArgs),
    /// Show one cluster.
    Get {
        /// The cluster's name.
        name: String,
        /// Output format.
        #[command(flatten)]
        out: OutputArg,
    },
    /// Delete a cluster. One built on hosts is taken off its hosts first (processes stopped, the
    /// provisioner's files removed); the cluster stays `removing` while a host cannot be reached.
    #[command(alias = "delete")]
    Rm {
        /// The cluster's name.
        name: String,
        /// Abandon the hosts that cannot be reached (gone for good): what the provisioner left on
        /// them stays there. Hosts that answer are still cleaned.
        #[arg(long)]
        force: bool,
    },
    /// Rotate the certificates of a cluster built on hosts: every certificate, some services' ones
    /// (--service, repeatable), or with new CAs (--new-ca: three rolls over the hosts, and every
    /// kubeconfig is issued again). The provisioner carries it out host by host.
    RotateCerts {
        /// The cluster's name.
        name: String,
        /// New CAs too (then every certificate; no --service).
        #[arg(long)]
        new_ca: bool,
        /// Only this service's certificates: etcd, kube-apiserver, kube-controller-manager,
        /// kube-scheduler or kubelet (repeatable).
        #[arg(long = "service", value_name = "SERVICE")]
        services: Vec<String>,
        /// Return once the server took the request instead of following the rotation (with new
        /// CAs, three rolls over every host) until the cluster is active again.
        #[arg(long)]
        no_wait: bool,
        /// How long to follow the rotation before giving up with an error (it carries on).
        #[arg(long, default_value = follow::DEFAULT_TIMEOUT, value_parser = follow::parse_timeout)]
        timeout: std::time::Duration,
    },
    /// Show when each certificate of a cluster built on hosts expires (from its status).
    Certs {
        /// The cluster's name.
        name: String,
        /// Output format.
        #[command(flatten)]
        out: OutputArg,
    },
    /// Download the state of a cluster built on hosts (RKE's `cluster.rkestate`: desired and current
    /// config, the certificates and their keys). Global admins and the cluster's owners only.
    Rkestate {
        /// The cluster's name.
        name: String,
        /// Write it to this file (mode 0600) instead of standard output.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        file: Option<std::path::PathBuf>,
    },
    /// Download the admin's kubeconfig of a cluster built on hosts (`kube_config_<name>.yml`: the
    /// admin certificate, straight to the first controlplane host). Global admins and owners only.
    AdminKubeconfig {
        /// The cluster's name.
        name: String,
        /// Write it to this file (mode 0600) instead of standard output.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        file: Option<std::path::PathBuf>,
    },
    /// The cluster's members (cluster role template bindings).
    #[command(subcommand)]
    Members(ClusterMembersCommand),
    /// The hosts of a cluster built on hosts.
    #[command(subcommand)]
    Node(ClusterNodeCommand),
    /// The etcd snapshots of a cluster built on hosts.
    #[command(subcommand)]
    Snapshot(ClusterSnapshotCommand),
}

/// `rancherctl cluster snapshot …`: etcd snapshots, kept on every etcd host of the cluster (and in
/// its S3 bucket when `backup_config.s3backupconfig` is set).
#[derive(Debug, Subcommand)]
pub enum ClusterSnapshotCommand {
    /// List the cluster's snapshots: manual and recurring, where each is, and whether its upload
    /// to S3 worked.
    #[command(alias = "list")]
    Ls {
        /// The cluster's name.
        cluster: String,
        /// Output format.
        #[command(flatten)]
        out: OutputArg,
    },
    /// Take a snapshot now (the server answers once it is stored; a failed upload to S3 is
    /// reported, and the snapshot is kept on the hosts).
    Create {
        /// The cluster's name.
        cluster: String,
        /// Output format (JSON/YAML: the snapshot's record).
        #[command(flatten)]
        out: OutputArg,
    },
    /// Restore every etcd member from a snapshot: the cluster's API is down while etcd and the
    /// control plane are stopped, restored and started again; objects newer than the snapshot are
    /// gone. Followed until the cluster is active again.
    Restore {
        /// The cluster's name.
        cluster: String,
        /// The snapshot's name (`rancherctl cluster snapshot ls` lists them).
        snapshot: String,
        /// How the restore is followed.
        #[command(flatten)]
        follow: FollowArgs,
    },
}

/// `rancherctl cluster node …`: a change of the cluster's `rkeConfig.nodes`, rolled out by the
/// server and followed until the cluster is active again (as `cluster update --rke`).
#[derive(Debug, Subcommand)]
pub enum ClusterNodeCommand {
    /// Add a host.
    Add {
        /// The cluster's name.
        cluster: String,
        /// Where the server reaches the host over SSH.
        #[arg(long)]
        address: String,
        /// Its roles: etcd, controlplane, worker (repeatable, or comma-separated).
        #[arg(long = "role", value_delimiter = ',', required = true)]
        roles: Vec<String>,
        /// Its Node's name (default: the address).
        #[arg(long, default_value = "")]
        hostname_override: String,
        /// Where the cluster's components reach it (default: the address).
        #[arg(long, default_value = "")]
        internal_address: String,
        /// The SSH user (default: the cluster's).
        #[arg(long, default_value = "")]
        user: String,
        /// The SSH port (default 22).
        #[arg(long, default_value = "")]
        port: String,
        /// The SSH private key (sent inline, sealed by the server; default: the cluster's key).
        #[arg(long, default_value = "")]
        ssh_key_path: String,
        /// How the change is followed.
        #[command(flatten)]
        follow: FollowArgs,
    },
    /// Remove a host: an etcd member leaves etcd first (refused when quorum would be lost), a
    /// worker is drained; its Node is deleted and the host cleaned.
    #[command(alias = "remove")]
    Rm {
        /// The cluster's name.
        cluster: String,
        /// The host's node name (its `hostname_override`, else its address).
        node: String,
        /// The host is gone for good: do not wait to drain or clean it.
        #[arg(long)]
        force: bool,
        /// How the change is followed.
        #[command(flatten)]
        follow: FollowArgs,
    },
}

/// How a change is followed.
#[derive(Debug, clap::Args)]
pub struct FollowArgs {
    /// Return once the server took the change instead of following it.
    #[arg(long)]
    pub no_wait: bool,
    /// How long to follow before giving up with an error (the change carries on).
    #[arg(long, default_value = follow::DEFAULT_TIMEOUT, value_parser = follow::parse_timeout)]
    pub timeout: std::time::Duration,
}

/// `rancherctl cluster members …`.
#[derive(Debug, Subcommand)]
pub enum ClusterMembersCommand {
    /// List who holds which role in the cluster.
    #[command(alias = "list")]
    Ls {
        /// The cluster's name.
        cluster: String,
        /// Output format.
        #[command(flatten)]
        out: OutputArg,
    },
    /// Give a user a role in the cluster.
    Add {
        /// The cluster's name.
        cluster: String,
        /// A login name or a user id (`u-xxxxx`).
        user: String,
        /// The role template.
        #[arg(long, default_value = "cluster-member")]
        role: String,
    },
    /// Take a user's roles in the cluster away (only `--role`, when given).
    #[command(alias = "delete")]
    Rm {
        /// The cluster's name.
        cluster: String,
        /// A login name or a user id (`u-xxxxx`).
        user: String,
        /// Only this role template.
        #[arg(long)]
        role: Option<String>,
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
        /// Output format.
        #[command(flatten)]
        out: OutputArg,
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
        /// Output format.
        #[command(flatten)]
        out: OutputArg,
    },
    /// Delete a project.
    #[command(alias = "delete")]
    Rm {
        /// `CLUSTER:p-xxxxx`, or `CLUSTER:<display name>`.
        id: String,
    },
    /// Rename a project or change its description.
    Edit {
        /// `CLUSTER:p-xxxxx`, or `CLUSTER:<display name>`.
        id: String,
        /// The name people see.
        #[arg(long)]
        display_name: Option<String>,
        /// Free text.
        #[arg(long)]
        description: Option<String>,
    },
    /// The project's members (project role template bindings).
    #[command(subcommand)]
    Members(ProjectMembersCommand),
}

/// `rancherctl project members …`.
#[derive(Debug, Subcommand)]
pub enum ProjectMembersCommand {
    /// List who holds which role in the project.
    #[command(alias = "list")]
    Ls {
        /// `CLUSTER:PROJECT`, PROJECT being the project's id (`p-xxxxx`) or its display name.
        project: String,
        /// Output format.
        #[command(flatten)]
        out: OutputArg,
    },
    /// Give a user a role in the project.
    Add {
        /// `CLUSTER:PROJECT`, PROJECT being the project's id (`p-xxxxx`) or its display name.
        project: String,
        /// A login name or a user id (`u-xxxxx`).
        user: String,
        /// The role template.
        #[arg(long, default_value = "project-member")]
        role: String,
    },
    /// Take a user's roles in the project away (only `--role`, when given).
    #[command(alias = "delete")]
    Rm {
        /// `CLUSTER:PROJECT`, PROJECT being the project's id (`p-xxxxx`) or its display name.
        project: String,
        /// A login name or a user id (`u-xxxxx`).
        user: String,
        /// Only this role template.
        #[arg(long)]
        role: Option<String>,
    },
}

/// `rancherctl token …`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// List your tokens: id, kind, description, cluster, expiry; `*` marks the one this context uses.
    #[command(alias = "list")]
    Ls(OutputArg),
    /// Revoke one of your tokens (revoking this context's own token logs it out).
    #[command(alias = "delete")]
    Rm {
        /// The token's id (`token-xxxxx`).
        id: String,
    },
}

/// `rancherctl credential …`.
#[derive(Debug, Subcommand)]
pub enum CredentialCommand {
    /// Create a credential (its secret is read from a file, or stdin with `-`; the server seals it
    /// and never shows it again).
    Create {
        /// The cloud and its settings.
        #[command(subcommand)]
        cloud: NewCredential,
    },
    /// List the credentials you may use (an admin sees everyone's): cloud, key id, owner. Never a secret.
    #[command(alias = "list")]
    Ls(OutputArg),
    /// Delete a credential (refused while a cluster names it).
    #[command(alias = "delete")]
    Rm {
        /// The credential's name.
        name: String,
    },
    /// Replace a credential's secret (the AWS secret key, the GCP key file, the Azure client secret);
    /// clusters using it use the new one from their next call to the cloud.
    Rotate {
        /// The credential's name.
        name: String,
        /// The new secret: a file, or `-` for stdin.
        #[arg(
            long = "secret-file",
            visible_aliases = ["secret-key-file", "key-file", "client-secret-file"],
            value_name = "FILE"
        )]
        secret_file: std::path::PathBuf,
    },
}

/// `rancherctl credential create <cloud>`.
#[derive(Debug, Subcommand)]
pub enum NewCredential {
    /// AWS access keys (for EKS).
    Aws {
        /// The credential's name (a DNS-1123 label); clusters name it.
        name: String,
        /// The access key id (`AKIA…`).
        #[arg(long)]
        access_key: String,
        /// A file holding the secret access key, or `-` for stdin.
        #[arg(long, value_name = "FILE")]
        secret_key_file: std::path::PathBuf,
        /// The region used when a cluster names none.
        #[arg(long, default_value = "")]
        region: String,
        /// Free text.
        #[arg(long, default_value = "")]
        description: String,
        /// Output format.
        #[command(flatten)]
        out: OutputArg,
    },
    /// A GCP service-account key (for GKE).
    Gcp {
        /// The credential's name (a DNS-1123 label); clusters name it.
        name: String,
        /// The service-account key file (JSON, as GCP's console downloads it), or `-` for stdin.
        #[arg(long, value_name = "FILE")]
        key_file: std::path::PathBuf,
        /// Free text.
        #[arg(long, default_value = "")]
        description: String,
        /// Output format.
        #[command(flatten)]
        out: OutputArg,
    },
    /// An Azure client credential (a service principal, for AKS).
    Azure {
        /// The credential's name (a DNS-1123 label); clusters name it.
        name: String,
        /// The application (client) id.
        #[arg(long)]
        client_id: String,
        /// A file holding the client secret, or `-` for stdin.
        #[arg(long, value_name = "FILE")]
        client_secret_file: std::path::PathBuf,
        /// The subscription id.
        #[arg(long)]
        subscription_id: String,
        /// The directory (tenant) id.
        #[arg(long)]
        tenant_id: String,
        /// AzurePublicCloud, AzureChinaCloud, AzureUSGovernmentCloud or AzureGermanCloud.
        #[arg(long, default_value = "AzurePublicCloud")]
        environment: String,
        /// Free text.
        #[arg(long, default_value = "")]
        description: String,
        /// Output format.
        #[command(flatten)]
        out: OutputArg,
    },
}

/// Runs a command; returns what to print on stdout.
///
/// # Errors
/// [`CliError`], worded for the terminal.
pub async fn run(cli: Cli) -> Result<String, CliError> {
    commands::run(cli).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_consistent() {
        // Catches what clap only finds at run time: a subcommand's flag shadowing a global one
        // (`--context`), two flags of one name, a default its parser refuses.
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
