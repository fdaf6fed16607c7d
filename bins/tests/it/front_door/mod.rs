//! Issue 8, "the front door holds": what a client without credentials can make the server spend —
//! metric series, password checks, connections — and who may read the data directory. Every test
//! talks to the real `rancher-server` binary.

mod data_dir;
mod logins;
mod long_lived;
mod metrics_labels;
mod raw;
mod slow_clients;
