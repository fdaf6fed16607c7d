//! `rancher-server`'s flags, and turning them into a [`ServerBuilder`].

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

use super::ServerBuilder;
use super::tls::TlsSource;

/// Where the management model is kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// One redb file in the data directory.
    #[default]
    Embedded,
    /// An etcd v3 cluster (`--etcd-endpoints`); several servers may share it.
    Etcd,
}

/// The rancher-rs management server: the `/v3` API and login, the `/v3/connect` tunnel that cluster
/// agents dial, and the authentication proxy to downstream clusters at `/k8s/clusters/<id>`.
///
/// Log level: `RUST_LOG` (e.g. `RUST_LOG=debug`). The admin password on first start: set
/// `CATTLE_BOOTSTRAP_PASSWORD`, or a generated one is printed once to stdout.
#[derive(Clone, Debug, Parser)]
#[command(name = "rancher-server", version, about, long_about)]
pub struct ServerArgs {
    /// Directory for the embedded store and the generated TLS material.
    #[arg(long, value_name = "DIR", default_value = "./rancher-data")]
    pub data_dir: PathBuf,

    /// Address to serve HTTPS (or plain HTTP with --insecure-http) on.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8443")]
    pub https_listen: SocketAddr,

    /// Where to keep the management model.
    #[arg(long, value_enum, default_value_t = StoreKind::Embedded)]
    pub store: StoreKind,

    /// etcd client URLs for --store etcd, comma separated.
    #[arg(long, value_name = "URL,...", value_delimiter = ',')]
    pub etcd_endpoints: Vec<String>,

    /// The secrets key (32 bytes, e.g. `head -c 32 /dev/urandom`) sealing secrets at rest, among them
    /// the servers' CA and registration key in the store. Servers sharing one store need the same
    /// file (mount it from one Kubernetes Secret). Default: `secrets.key` in --data-dir, made on
    /// first start.
    #[arg(long, value_name = "FILE", env = "RANCHER_SECRETS_KEY_FILE")]
    pub secrets_key_file: Option<PathBuf>,

    /// With --store etcd: the URL the other servers sharing the store reach this one at
    /// (`https://host:port`), to forward requests and agent sessions of the clusters this one owns.
    /// Default: https://<--https-listen>, with 0.0.0.0 or :: replaced by the host's first
    /// non-loopback address. Its host goes into the generated serving certificate.
    #[arg(long, value_name = "URL", value_parser = super::registration::check_server_url)]
    pub peer_url: Option<String>,

    /// How many agents' sessions a second this server admits (a burst of as many); agents over the
    /// rate get 503 with Retry-After and come back after their backoff. 0: unbounded.
    #[arg(long, value_name = "PER_SECOND", env = "RANCHER_AGENT_CONNECT_RATE",
          default_value_t = super::registration::DEFAULT_AGENT_CONNECT_RATE)]
    pub agent_connect_rate: u32,

    /// Extra names (DNS or IP) for the generated serving certificate; repeat or comma separate.
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    pub tls_san: Vec<String>,

    /// Serve this certificate chain (PEM) instead of generating one; needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key (PEM) for --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// The CA (PEM) that signed --tls-cert, published as the `cacerts` setting for agents to pin.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_ca: Option<PathBuf>,

    /// Serve plain HTTP instead of HTTPS. Only for a trusted network or behind a TLS-terminating proxy.
    #[arg(long)]
    pub insecure_http: bool,

    /// The URL agents (in the imported clusters) and import commands use to reach this server:
    /// `https://host[:port]`, no path, e.g. a load balancer's `https://rancher.example.com`. Its host
    /// goes into the generated serving certificate. Default: https://<--https-listen>, with 0.0.0.0 or
    /// :: replaced by the host's first non-loopback address (logged at start). Import manifests
    /// pointing at a loopback address are handed only to clients on this host.
    #[arg(long, value_name = "URL", value_parser = super::registration::check_server_url)]
    pub server_url: Option<String>,

    /// The container image the import manifest deploys as the cluster agent (build it with
    /// scripts/agent-image.sh or the Dockerfile; push it where the clusters pull from).
    #[arg(
        long,
        value_name = "IMAGE",
        default_value = super::registration::DEFAULT_AGENT_IMAGE,
        value_parser = super::registration::check_image_ref
    )]
    pub agent_image: String,

    /// Write one JSON line per proxied request (`/k8s/clusters/...`) to this file, or `-` for stdout.
    #[arg(long, value_name = "PATH|-")]
    pub audit_log: Option<super::AuditTarget>,

    /// How much the audit log records: `metadata` (who, what, outcome) or `request` (also bodies).
    #[arg(long, value_enum, default_value_t = AuditLevelArg::Metadata, requires = "audit_log")]
    pub audit_level: AuditLevelArg,

    /// Lifetime of the tokens in generated kubeconfigs, e.g. `720h` or `30d` (`0`: as long as
    /// --auth-token-max-ttl allows).
    #[arg(long, value_name = "DURATION", default_value = "30d", value_parser = parse_duration)]
    pub kubeconfig_token_ttl: std::time::Duration,

    /// The longest any token lives (logins, API and kubeconfig tokens), whatever it asked for; a token
    /// asking for `ttl: 0` gets this. `0`: no maximum, and `ttl: 0` tokens never expire.
    #[arg(long, value_name = "DURATION", default_value = "90d", value_parser = parse_duration)]
    pub auth_token_max_ttl: std::time::Duration,

    /// Identity providers for login (YAML; e.g. an `openldap:` section), see the server README.
    #[arg(long, value_name = "FILE")]
    pub auth_config: Option<PathBuf>,

    /// Client connections open at once; more are closed at once (default: the open-file limit,
    /// raised to its hard limit at start, less a reserve; at most 65536).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,

    /// Client connections open at once from one address (IPv6: one /64); 0 turns the cap off, e.g.
    /// behind a load balancer (default: a quarter of --max-connections).
    #[arg(long, value_name = "N")]
    pub max_connections_per_client: Option<u32>,

    /// Time a client has to send a request head, e.g. `32s`.
    #[arg(long, value_name = "DURATION", default_value = "32s", value_parser = parse_timeout)]
    pub http_header_timeout: std::time::Duration,

    /// Time a connection may stay open with no request in progress, e.g. `90s`.
    #[arg(long, value_name = "DURATION", default_value = "90s", value_parser = parse_timeout)]
    pub http_idle_timeout: std::time::Duration,

    /// A directory of Kubernetes bundle manifests (`*.yaml`: a version and each component's path or
    /// URL and sha256) for clusters built on SSH hosts (`rkeConfig`); repeat for several.
    #[arg(long, value_name = "DIR")]
    pub bundle_dir: Vec<PathBuf>,

    /// GKE's `container/v1` base URL, when not Google's (a proxy, a test stand-in).
    #[arg(long, value_name = "URL")]
    pub gke_api_url: Option<String>,

    /// EKS's endpoint URL, when not AWS's (`https://…`, or `http://` on a loopback address).
    #[arg(long, value_name = "URL")]
    pub eks_api_url: Option<String>,

    /// PEM CA certificates to trust for the clouds' APIs (GKE, AKS, EKS) besides the system's.
    #[arg(long, value_name = "FILE")]
    pub cloud_ca_file: Option<PathBuf>,

    /// Password hashes and checks (argon2: ~19 MiB and a core each) run at once (default: half the
    /// cores, 1 to 8).
    #[arg(long, value_name = "N")]
    pub password_hash_workers: Option<std::num::NonZeroUsize>,

    /// Password checks that may wait for a worker; beyond it logins are answered 429 at once
    /// (default: four per worker).
    #[arg(long, value_name = "N")]
    pub password_hash_queue: Option<usize>,
}

/// `--audit-level`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum AuditLevelArg {
    /// Who, what and the outcome.
    #[default]
    Metadata,
    /// Also request bodies (never those of Secrets).
    Request,
}

/// A duration as a number with a unit: `90s`, `15m`, `720h`, `30d`; a bare `0` is zero.
///
/// # Errors
/// A message saying what is wrong.
pub(crate) fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits.parse().map_err(|_| format!("{s:?} is not a duration like 30d, 720h or 90s"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: the unit must be s, m, h or d")),
    };
    n.checked_mul(secs).map(std::time::Duration::from_secs).ok_or_else(|| format!("{s:?} is too long"))
}

/// A duration for a timeout: as [`parse_duration`], but never zero.
fn parse_timeout(s: &str) -> Result<std::time::Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err("a timeout must be longer than zero".into());
    }
    Ok(d)
}

impl ServerArgs {
    /// The listener limits from the flags.
    fn listener_limits(&self) -> super::ListenerLimits {
        let size = |n: u32| usize::try_from(n).unwrap_or(usize::MAX);
        super::ListenerLimits {
            max_connections: self.max_connections.map(size),
            max_connections_per_client: self.max_connections_per_client.map(size),
            header_timeout: self.http_header_timeout,
            idle_timeout: self.http_idle_timeout,
        }
    }

    /// The password hashing limits from the flags.
    fn hashing_limits(&self) -> super::HashingLimits {
        let default = super::HashingLimits::default();
        let workers = self.password_hash_workers.unwrap_or(default.workers);
        super::HashingLimits { workers, queue: self.password_hash_queue.unwrap_or(workers.get() * 4) }
    }

    /// A builder configured from the flags and `CATTLE_BOOTSTRAP_PASSWORD`.
    pub fn builder(&self) -> ServerBuilder {
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                TlsSource::Files { cert: cert.clone(), key: key.clone(), ca: self.tls_ca.clone() }
            }
            _ => TlsSource::Generated,
        };
        let mut b = super::Server::builder()
            .data_dir(&self.data_dir)
            .https_listen(self.https_listen)
            .store_kind(self.store)
            .etcd_endpoints(self.etcd_endpoints.clone())
            .tls_sans(self.tls_san.clone())
            .tls(tls)
            .insecure_http(self.insecure_http)
            .agent_image(self.agent_image.clone())
            .kubeconfig_token_ttl(self.kubeconfig_token_ttl)
            .auth_token_max_ttl(self.auth_token_max_ttl)
            .listener_limits(self.listener_limits())
            .hashing_limits(self.hashing_limits())
            .audit(super::AuditConfig {
                target: self.audit_log.clone(),
                level: match self.audit_level {
                    AuditLevelArg::Metadata => rancher_auth::proxy::AuditLevel::Metadata,
                    AuditLevelArg::Request => rancher_auth::proxy::AuditLevel::RequestBody,
                },
            });
        for dir in &self.bundle_dir {
            b = b.bundle_dir(dir);
        }
        b = b.cloud_endpoints(super::CloudEndpoints {
            gke: self.gke_api_url.clone(),
            eks: self.eks_api_url.clone(),
            extra_ca_pem: None,
        });
        if let Some(file) = &self.cloud_ca_file {
            b = b.cloud_ca_file(file);
        }
        if let Some(file) = &self.secrets_key_file {
            b = b.secrets_key_file(file);
        }
        b = b.agent_connect_rate(self.agent_connect_rate);
        if let Some(url) = &self.peer_url {
            b = b.peer_url(url.clone());
        }
        if let Some(path) = &self.auth_config {
            b = b.auth_config(path);
        }
        if let Some(url) = &self.server_url {
            b = b.server_url(url.clone());
        }
        if let Ok(pw) = std::env::var("CATTLE_BOOTSTRAP_PASSWORD") {
            b = b.bootstrap_password(pw);
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn flags_parse_and_help_is_consistent() {
        ServerArgs::command().debug_assert();
        let a = ServerArgs::parse_from(["rancher-server", "--etcd-endpoints", "http://a:2379,http://b:2379"]);
        assert_eq!(a.etcd_endpoints.len(), 2);
        assert_eq!(a.https_listen.port(), 8443);
        assert!(!a.insecure_http);
        assert!(ServerArgs::try_parse_from(["rancher-server", "--tls-cert", "x"]).is_err(), "cert needs key");
        assert_eq!(a.kubeconfig_token_ttl, std::time::Duration::from_secs(30 * 86_400));
        assert_eq!(a.audit_log, None);
        let a =
            ServerArgs::parse_from(["rancher-server", "--audit-log", "-", "--kubeconfig-token-ttl", "2h"]);
        assert_eq!(a.audit_log, Some(super::super::AuditTarget::Stdout));
        assert_eq!(a.kubeconfig_token_ttl, std::time::Duration::from_secs(7200));
        assert!(ServerArgs::try_parse_from(["rancher-server", "--kubeconfig-token-ttl", "2y"]).is_err());
        assert!(ServerArgs::try_parse_from(["rancher-server", "--audit-level", "request"]).is_err());
    }

    #[test]
    fn server_url_and_agent_image_are_checked() {
        let a = ServerArgs::parse_from(["rancher-server"]);
        assert_eq!((a.server_url, a.agent_image.as_str()), (None, crate::protocol::IMAGE_REF));
        let a = ServerArgs::parse_from([
            "rancher-server",
            "--server-url",
            "https://rancher.example.com:8443/",
            "--agent-image",
            "registry.example.com/rancher-agent:dev",
        ]);
        assert_eq!(a.server_url.as_deref(), Some("https://rancher.example.com:8443"));
        assert_eq!(a.agent_image, "registry.example.com/rancher-agent:dev");
        for bad in [
            ["--server-url", "https://rancher.example.com/v3"],
            ["--server-url", "https://rancher.example.com?a=b"],
            ["--server-url", "rancher.example.com:8443"],
            ["--agent-image", "Not An Image"],
        ] {
            let err = ServerArgs::try_parse_from(["rancher-server", bad[0], bad[1]]).unwrap_err();
            assert!(err.to_string().contains(bad[1]), "{bad:?}: {err}");
        }
    }

    #[test]
    fn tokens_live_90_days_at_most_unless_told_otherwise() {
        let day = 86_400;
        let a = ServerArgs::parse_from(["rancher-server"]);
        assert_eq!(a.auth_token_max_ttl, std::time::Duration::from_secs(90 * day));
        let a = ServerArgs::parse_from(["rancher-server", "--auth-token-max-ttl", "1h"]);
        assert_eq!(a.auth_token_max_ttl, std::time::Duration::from_secs(3600));
        let a = ServerArgs::parse_from(["rancher-server", "--auth-token-max-ttl", "0"]);
        assert_eq!(a.auth_token_max_ttl, std::time::Duration::ZERO);
        assert!(ServerArgs::try_parse_from(["rancher-server", "--auth-token-max-ttl", "forever"]).is_err());
    }

    #[test]
    fn listener_limits() {
        let l = ServerArgs::parse_from(["rancher-server"]).listener_limits();
        assert_eq!((l.max_connections, l.max_connections_per_client), (None, None));
        assert_eq!((l.header_timeout.as_secs(), l.idle_timeout.as_secs()), (32, 90));
        let flags = ["--max-connections", "100", "--max-connections-per-client", "0"];
        let a = ServerArgs::parse_from(
            ["rancher-server", "--http-header-timeout", "5s"].into_iter().chain(flags),
        );
        let l = a.listener_limits();
        assert_eq!((l.max_connections, l.max_connections_per_client), (Some(100), Some(0)));
        assert_eq!(l.header_timeout.as_secs(), 5);
        for bad in [["--http-idle-timeout", "0"], ["--max-connections", "0"]] {
            assert!(ServerArgs::try_parse_from(["rancher-server", bad[0], bad[1]]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hashing_limits() {
        let h = ServerArgs::parse_from(["rancher-server"]).hashing_limits();
        assert_eq!(h.queue, h.workers.get() * 4);
        let h = ServerArgs::parse_from(["rancher-server", "--password-hash-workers", "3"]).hashing_limits();
        assert_eq!((h.workers.get(), h.queue), (3, 12));
        assert!(ServerArgs::try_parse_from(["rancher-server", "--password-hash-workers", "0"]).is_err());
    }
}
