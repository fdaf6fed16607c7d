#!/usr/bin/env bash
# Builds the rancher-agent container image without a container engine: an OCI image layout in
# target/agent-image/oci and the same as an oci-archive, target/agent-image/rancher-agent.oci.tar.
#
#   scripts/agent-image.sh                      # cargo build --release, then the image
#   scripts/agent-image.sh --agent-bin PATH     # image of an already built rancher-agent
#   scripts/agent-image.sh --out DIR --ref NAME:TAG
#
# The image reference defaults to the one the server's manifest deploys (rancher-server's
# --agent-image default), printed by the agent itself (`rancher-agent --print-image-ref`).
# Push it with skopeo, or load it into a node's containerd:
#   skopeo copy oci-archive:target/agent-image/rancher-agent.oci.tar docker://REGISTRY/rancher-agent:TAG
#   ctr -n k8s.io images import target/agent-image/rancher-agent.oci.tar      (kind: kind load image-archive)
# Needs python3 and ldd (glibc's libc-bin); the agent links glibc, whose loader and libraries are copied in.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
agent_bin=""
out="$root/target/agent-image"
ref=""

usage() { sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --agent-bin) agent_bin="${2:?--agent-bin needs a path}"; shift 2 ;;
    --out) out="${2:?--out needs a directory}"; shift 2 ;;
    --ref) ref="${2:?--ref needs NAME:TAG}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "agent-image.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done

if [[ "$(uname -m)" != x86_64 ]]; then
  echo "agent-image.sh: builds linux/amd64 images only (this is $(uname -m))" >&2
  exit 1
fi
if [[ -z "$agent_bin" ]]; then
  (cd "$root" && cargo build --release --locked --bin rancher-agent)
  agent_bin="$root/target/release/rancher-agent"
fi
if [[ ! -x "$agent_bin" ]]; then
  echo "agent-image.sh: $agent_bin is not an executable" >&2
  exit 1
fi
if [[ -z "$ref" ]]; then
  ref="$("$agent_bin" --print-image-ref)"
fi
exec python3 "$root/scripts/oci_image.py" --binary "$agent_bin" --ref "$ref" --out "$out"
