//! Benchmarks of rancher-rs against the direct path, printed as tables; shared pieces live here.

pub mod http_load;
