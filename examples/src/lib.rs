//! Examples of embedding rancher-rs.
