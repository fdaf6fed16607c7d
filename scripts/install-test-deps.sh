#!/usr/bin/env bash
# Installs the real programs the tests start (idempotent: skips what is already there).
#   etcd            Debian etcd-server   the HA store backend's tests
#   etcdctl         Debian etcd-client   restoring etcd snapshots on RKE-style hosts
#   protoc          protobuf-compiler    builds the etcd client
#   nginx           nginx-light          the load balancer in front of the server in tunnel tests
#   nginx stream    libnginx-mod-stream  nginx as a TCP balancer (TLS passed through to the replicas)
#   sshd            openssh-server       SSH hosts in network namespaces (RKE-style provisioning tests)
#   ip              iproute2             those hosts' namespaces, veths and bridge
#   chromium        chromium             the web console's browser tests (headless, over WebDriver)
#   chromedriver    chromium-driver      …and the WebDriver server that drives it
#   cargo-nextest                        the test runner
#   slapd, oidc-provider                 identity-provider tests (scripts/install-auth-deps.sh)
#   moto_server                          S3-compatible storage for etcd snapshot uploads (scripts/install-moto.sh,
#                                        a venv in ~/.cache/rancher-rs/moto)
#   kube-apiserver & co. 1.20.2          built once per machine from Debian's source (scripts/build-kube.sh:
#                                        about 14 min the first time; a no-op once its cache is complete)
# kubectl (with its versioned binaries kubectl.1.27 … kubectl.1.33) is preinstalled on these machines.
set -euo pipefail

missing=()
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || missing+=(libnginx-mod-stream)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || missing+=(iproute2)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)

if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  # apt never starts daemons on these machines (policy-rc.d); tests start what they need on loopback.
  if ! $sudo apt-get install -y -qq "${missing[@]}" >/tmp/rancher-rs-apt.log 2>&1; then
    $sudo apt-get update -qq >>/tmp/rancher-rs-apt.log 2>&1
    $sudo apt-get install -y -qq "${missing[@]}" >>/tmp/rancher-rs-apt.log 2>&1 \
      || { tail -20 /tmp/rancher-rs-apt.log; exit 1; }
  fi
fi

"$(dirname "$0")/install-auth-deps.sh"
"$(dirname "$0")/install-moto.sh"

# Real control-plane tests (rancher-sim's simulated kubelet) need the real server binaries. When
# RANCHER_KUBE_BIN_DIR names them, they are used as they are.
if [ -z "${RANCHER_KUBE_BIN_DIR:-}" ]; then
  "$(dirname "$0")/build-kube.sh" >/dev/null
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install cargo-nextest --locked
fi

if ! ls /usr/lib/google-cloud-sdk/bin/kubectl.1.* >/dev/null 2>&1 && ! command -v kubectl >/dev/null 2>&1; then
  echo "warning: kubectl is not installed; the sim and end-to-end tests need it" >&2
fi
