//! rancher-tunnel (being written).
