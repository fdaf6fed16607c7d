//! What the server and its agents agree on outside the tunnel's byte streams: the connect header
//! ([`connect`]), the cluster report ([`report`]), the authorized cluster endpoint's token records
//! ([`ace`]), the node agent's plan API ([`node_plan`]), how the server's CA is checksummed ([`normalize_ca`]) and the agent's image
//! ([`IMAGE_REF`]).
//!
//! Both sides own this module, so it is built with either of them (and with the CLI, which prints
//! the agent's command line): a server-only build has no [`agent`](crate#features) module, an
//! agent-only build no server. Everything here is a wire contract between builds of different
//! versions; change a shape only compatibly.

pub mod ace;
pub mod connect;
pub mod node_plan;
pub mod report;

/// The container image the agent is published as: what the server's import manifest deploys by
/// default (`rancher-server --agent-image`), what `scripts/agent-image.sh` and the `Dockerfile` tag.
pub const IMAGE_REF: &str = concat!("rancher-rs/rancher-agent:v", env!("CARGO_PKG_VERSION"));

/// The server's CA PEM exactly as checksummed for `CATTLE_CA_CHECKSUM`: Rancher appends a `\n` to
/// the `cacerts` setting when it lacks one.
pub fn normalize_ca(value: &str) -> String {
    if value.ends_with('\n') { value.to_owned() } else { format!("{value}\n") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trailing_newline_is_added_once() {
        assert_eq!(normalize_ca("PEM"), "PEM\n");
        assert_eq!(normalize_ca("PEM\n"), "PEM\n");
    }
}
