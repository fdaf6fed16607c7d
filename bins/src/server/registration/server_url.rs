//! The server's external URL — what agents dial (`CATTLE_SERVER`) and import commands fetch: the
//! checked `--server-url`, or one derived from the listen address. A URL on a loopback address is
//! reachable only from the server's own host, so the import manifest carrying it is handed only to
//! clients there ([`is_loopback_url`], used by the manifest route).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

use tracing::{info, warn};

/// Why a `--server-url` is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ServerUrlError {
    /// It does not parse as a URL.
    #[error("{url:?} is not a URL: {source}")]
    NotAUrl {
        /// The value given.
        url: String,
        /// Why it does not parse.
        #[source]
        source: url::ParseError,
    },
    /// Its scheme is neither `https` nor `http`.
    #[error("{0:?} must be an https:// URL")]
    Scheme(String),
    /// It names no host.
    #[error("{0:?} names no host")]
    NoHost(String),
    /// It carries a user name or password.
    #[error("{0:?} must not carry credentials")]
    Credentials(String),
    /// It has a path, a query or a fragment.
    #[error("{0:?} must be scheme://host[:port], without a path or query")]
    NotJustHost(String),
    /// Its scheme does not match how the server listens (`--insecure-http` or not).
    #[error(
        "{url:?} must start with {}:// ({} --insecure-http)",
        if *.insecure_http { "http" } else { "https" },
        if *.insecure_http { "with" } else { "without" }
    )]
    SchemeMismatch {
        /// The value given.
        url: String,
        /// Whether the server listens with `--insecure-http`.
        insecure_http: bool,
    },
}

/// Checks a `--server-url`: `http(s)://host[:port]`, nothing else (no path, query, fragment or
/// credentials). Returns it without a trailing `/`. Whether the scheme fits `--insecure-http` is
/// checked when the server is built.
///
/// # Errors
/// A [`ServerUrlError`] naming what is wrong.
pub fn check_server_url(raw: &str) -> Result<String, ServerUrlError> {
    let url =
        url::Url::parse(raw).map_err(|source| ServerUrlError::NotAUrl { url: raw.to_owned(), source })?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(ServerUrlError::Scheme(raw.to_owned()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ServerUrlError::NoHost(raw.to_owned()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ServerUrlError::Credentials(raw.to_owned()));
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err(ServerUrlError::NotJustHost(raw.to_owned()));
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

/// The URL agents and import commands use: `configured` when given (checked), otherwise
/// `https://<listen address>`, an unspecified address replaced by the host's first non-loopback
/// address (or its name, or `127.0.0.1`) — which is logged, as is a URL only this host can reach.
///
/// # Errors
/// A [`ServerUrlError`] naming what is wrong with `configured`.
pub(crate) fn external_url(
    configured: Option<&str>,
    listen: SocketAddr,
    insecure_http: bool,
) -> Result<String, ServerUrlError> {
    let scheme = if insecure_http { "http" } else { "https" };
    if let Some(raw) = configured {
        let url = check_server_url(raw)?;
        if !url.starts_with(&format!("{scheme}://")) {
            return Err(ServerUrlError::SchemeMismatch { url: raw.to_owned(), insecure_http });
        }
        if is_loopback_url(&url) {
            warn!(
                server_url = %url,
                "--server-url is a loopback address: only agents on this host can reach it; import \
                 manifests are handed out to clients on this host only"
            );
        }
        return Ok(url);
    }
    let (url, how) = listen_url(scheme, listen);
    if let Some(how) = how {
        info!(
            server_url = %url,
            "no --server-url: agents and import commands will use {how}; set --server-url if they \
             reach this server under another name"
        );
    }
    if is_loopback_url(&url) {
        warn!(
            server_url = %url,
            "the server's URL is a loopback address: only agents on this host can reach it; set \
             --server-url (and listen on a reachable address) to import clusters elsewhere"
        );
    }
    Ok(url)
}

/// `scheme://<listen address>:<port>`, with an unspecified address replaced by the host's first
/// non-loopback address (else its name, else loopback), and how the host was chosen when it was.
fn listen_url(scheme: &str, listen: SocketAddr) -> (String, Option<&'static str>) {
    let (host, how) = if listen.ip().is_unspecified() {
        match first_non_loopback(listen.is_ipv6()) {
            Some(ip) => (bracketed(ip), Some("the host's first non-loopback address")),
            None => match host_name() {
                Some(name) => (name, Some("the host's name")),
                None => ("127.0.0.1".to_owned(), Some("loopback: the host has no other address or name")),
            },
        }
    } else {
        (bracketed(listen.ip()), None)
    };
    (format!("{scheme}://{host}:{}", listen.port()), how)
}

/// The URL the other servers sharing the store reach this one at: `--peer-url`, else the listen
/// address as [`external_url`] makes it.
///
/// # Errors
/// As [`check_server_url`], or a scheme other than the listener's.
pub(crate) fn peer_url(
    configured: Option<&str>,
    listen: SocketAddr,
    insecure_http: bool,
) -> Result<String, ServerUrlError> {
    let scheme = if insecure_http { "http" } else { "https" };
    match configured {
        Some(raw) => {
            let url = check_server_url(raw)?;
            if !url.starts_with(&format!("{scheme}://")) {
                return Err(ServerUrlError::SchemeMismatch { url: raw.to_owned(), insecure_http });
            }
            Ok(url)
        }
        None => Ok(listen_url(scheme, listen).0),
    }
}

fn bracketed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// The address this host would send from to a public destination: the first non-loopback address
/// of the interface holding the default route. A connected UDP socket sends nothing; it only asks
/// the kernel to pick the route.
fn first_non_loopback(prefer_v6: bool) -> Option<IpAddr> {
    let probe = |bind: IpAddr, to: IpAddr| -> Option<IpAddr> {
        let sock = UdpSocket::bind(SocketAddr::new(bind, 0)).ok()?;
        // Documentation addresses (RFC 5737, RFC 3849): routed like any public one, never answered.
        sock.connect(SocketAddr::new(to, 9)).ok()?;
        let ip = sock.local_addr().ok()?.ip();
        (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
    };
    let v4 = || probe(Ipv4Addr::UNSPECIFIED.into(), Ipv4Addr::new(192, 0, 2, 1).into());
    let v6 = || probe(Ipv6Addr::UNSPECIFIED.into(), Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).into());
    if prefer_v6 { v6().or_else(v4) } else { v4() }
}

/// The host's name, when it is a valid DNS name.
fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty() && crate::protocol::connect::is_node_name(h))
}

/// Whether `url`'s host is a loopback address (`127.0.0.0/8`, `::1`) or `localhost`.
pub(crate) fn is_loopback_url(url: &str) -> bool {
    let Some(host) = url::Url::parse(url).ok().and_then(|u| u.host().map(|h| h.to_owned())) else {
        return false;
    };
    match host {
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
        url::Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
    }
}

/// Whether a client at `peer`, connected to the server's `local` address, runs on the server's host.
pub(crate) fn is_same_host(peer: IpAddr, local: Option<IpAddr>) -> bool {
    let canonical = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    let peer = canonical(peer);
    peer.is_loopback() || local.map(canonical).is_some_and(|l| l == peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_are_scheme_host_and_port_only() {
        assert_eq!(check_server_url("https://rancher.example.com/").unwrap(), "https://rancher.example.com");
        assert_eq!(check_server_url("https://10.0.0.5:8443").unwrap(), "https://10.0.0.5:8443");
        assert_eq!(check_server_url("https://[fd00::5]:8443").unwrap(), "https://[fd00::5]:8443");
        for bad in [
            "rancher.example.com",
            "ftp://rancher.example.com",
            "https://rancher.example.com/rancher",
            "https://rancher.example.com?x=1",
            "https://rancher.example.com/#frag",
            "https://user:pw@rancher.example.com",
            "https://",
        ] {
            assert!(check_server_url(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn the_scheme_must_fit_insecure_http() {
        let listen: SocketAddr = "127.0.0.1:8443".parse().unwrap();
        assert!(external_url(Some("http://a.example:80"), listen, false).is_err());
        assert!(external_url(Some("https://a.example"), listen, true).is_err());
        assert_eq!(external_url(Some("https://a.example/"), listen, false).unwrap(), "https://a.example");
        assert_eq!(external_url(None, listen, false).unwrap(), "https://127.0.0.1:8443");
        let v6: SocketAddr = "[::1]:8443".parse().unwrap();
        assert_eq!(external_url(None, v6, true).unwrap(), "http://[::1]:8443");
    }

    #[test]
    fn an_unspecified_listen_address_is_replaced_by_one_agents_can_dial() {
        let url = external_url(None, "0.0.0.0:8443".parse().unwrap(), false).unwrap();
        let host = url::Url::parse(&url).unwrap().host_str().unwrap().to_owned();
        assert!(url.ends_with(":8443") && host != "0.0.0.0", "{url}");
        // Whatever the host offers, it is a usable name: never the unspecified address itself.
        if let Some(ip) = first_non_loopback(false) {
            assert_eq!(url, format!("https://{ip}:8443"));
            assert!(!is_loopback_url(&url));
        }
    }

    #[test]
    fn loopback_urls_and_same_host_clients() {
        for url in
            ["https://127.0.0.1:8443", "https://127.1.2.3", "https://[::1]:1", "https://localhost:8443"]
        {
            assert!(is_loopback_url(url), "{url}");
        }
        for url in ["https://10.0.0.5:8443", "https://rancher.example.com", "https://[fd00::1]"] {
            assert!(!is_loopback_url(url), "{url}");
        }
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(is_same_host(ip("127.0.0.1"), None));
        assert!(is_same_host(ip("::1"), Some(ip("::1"))));
        assert!(is_same_host(ip("::ffff:10.0.0.5"), Some(ip("10.0.0.5"))), "v4-mapped");
        assert!(is_same_host(ip("10.0.0.5"), Some(ip("10.0.0.5"))), "its own address");
        assert!(!is_same_host(ip("10.0.0.6"), Some(ip("10.0.0.5"))));
        assert!(!is_same_host(ip("10.0.0.6"), None));
    }
}
