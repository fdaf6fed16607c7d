#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the tests need, checks formatting and lints,
# then runs every test (unit, conformance against memory/redb/real etcd, integration against real
# kubectl) and the doctests. Extra arguments go to `cargo nextest run` (e.g. a test-name filter).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh

# The etcd backend and its tests are behind a feature so that a plain `cargo build` needs no protoc.
features="rancher/etcd,rancher-benches/etcd"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --features "$features" -- -D warnings
cargo nextest run --workspace --features "$features" --no-fail-fast "$@"
cargo test --workspace --doc --features "$features"
