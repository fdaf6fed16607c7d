#!/usr/bin/env bash
# Checks that each cargo feature combination of our crates builds without warnings: the default build
# (all features on) cannot notice a missing `#[cfg(feature = …)]`. Library and binaries only (tests and
# examples need the default features). Not part of scripts/test.sh because each combination resolves
# dependency features differently and rebuilds part of the graph: see README "Run the tests" for the time.
set -euo pipefail
cd "$(dirname "$0")/.."

check() {
    local start=$SECONDS
    cargo clippy --quiet "$@" -- -D warnings
    echo "ok ($((SECONDS - start)) s): $*"
}

# rancher-auth: the trait alone, each identity provider alone, the mocks.
check -p rancher-auth --no-default-features
for feature in ldap github oidc mock; do
    check -p rancher-auth --no-default-features --features "$feature"
done
check -p rancher-provision --features mock
check -p rancher-tunnel --features mock

# rancher: only the protocol module, each part alone, the server without and with one provider.
check -p rancher --no-default-features
for feature in server agent cli; do
    check -p rancher --no-default-features --features "$feature"
done
check -p rancher --no-default-features --features server,oidc
check -p rancher --no-default-features --features agent,cli
check -p rancher
# rancher-test-support: without and with the real control plane.
check -p rancher-test-support
check -p rancher-test-support --features kube-control-plane
check -p rancher-test-support --features gke
