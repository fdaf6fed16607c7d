#!/usr/bin/env bash
# Builds the real kube-apiserver, kube-controller-manager and kube-scheduler 1.20.2 from Debian's
# `kubernetes` source package (Debian ships the source but no server binaries), once per machine,
# into a cache outside the checkout. Prints the directory holding the three binaries.
#
#   scripts/build-kube.sh            # build if missing (about 14 min on two cores), print the dir
#   KUBE_CACHE=/some/dir scripts/build-kube.sh
#
# Idempotent: a complete cache (the three binaries and a .complete stamp) is used as is. The build
# runs at low priority (nice 19) so it does not starve other work on the machine.
set -euo pipefail

version="1.20.2"
cache="${KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rancher-rs/kube-$version}"
components=(kube-apiserver kube-controller-manager kube-scheduler)

if [ -f "$cache/.complete" ]; then
  echo "$cache"
  exit 0
fi

log() { echo "build-kube: $*" >&2; }

sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
need=()
command -v go >/dev/null 2>&1 || need+=(golang-go)
[ -d /usr/share/gocode/src/github.com/modern-go/reflect2 ] || need+=(golang-github-modern-go-reflect2-dev)
command -v rsync >/dev/null 2>&1 || need+=(rsync)
if ((${#need[@]})); then
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! $sudo apt-get install -y -qq "${need[@]}" >/tmp/rancher-rs-kube-apt.log 2>&1; then
    $sudo apt-get update -qq >>/tmp/rancher-rs-kube-apt.log 2>&1
    $sudo apt-get install -y -qq "${need[@]}" >>/tmp/rancher-rs-kube-apt.log 2>&1 \
      || { tail -20 /tmp/rancher-rs-kube-apt.log >&2; exit 1; }
  fi
fi

work="$cache.work"
mkdir -p "$work"
src="$work/src"

if [ ! -f "$src/.unpacked" ]; then
  # The source package, fetched without touching the machine's apt sources.
  mirror="$({ grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null || true; } \
    | awk '{print $2}' | grep -v security | head -1 || true)"
  mirror="${mirror:-http://deb.debian.org/debian}"
  lists="$work/apt"
  mkdir -p "$lists/lists/partial"
  echo "deb-src $mirror bookworm main" >"$lists/sources.list"
  opts=(-o "Dir::Etc::SourceList=$lists/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$lists/lists")
  log "fetching Debian's kubernetes source package from $mirror"
  apt-get "${opts[@]}" update -qq >"$work/apt.log" 2>&1 || { tail -20 "$work/apt.log" >&2; exit 1; }
  (cd "$work" && apt-get "${opts[@]}" source --download-only kubernetes >>"$work/apt.log" 2>&1) \
    || { tail -20 "$work/apt.log" >&2; exit 1; }
  orig="$(ls "$work"/kubernetes_*.orig.tar.gz | head -1)"
  rm -rf "$src" && mkdir -p "$src"
  tar -xzf "$orig" -C "$src" --strip-components=1
  # The vendored reflect2 1.0.1 crashes under Go >= 1.18; Debian's 1.0.2 does not.
  rm -rf "$src/vendor/github.com/modern-go/reflect2"
  cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 "$src/vendor/github.com/modern-go/reflect2"
  rm -f "$src/vendor/github.com/modern-go/reflect2/go.mod"
  touch "$src/.unpacked"
fi

export GOPATH="$src/.go" CGO_ENABLED=0
mkdir -p "$src/.go/src/k8s.io"
[ -e "$src/.go/src/k8s.io/kubernetes" ] || ln -s ../../.. "$src/.go/src/k8s.io/kubernetes"
for c in "${components[@]}"; do
  if [ ! -x "$src/_output/bin/$c" ]; then
    log "building $c (minutes; log: $work/build-$c.log)"
    (cd "$src/.go/src/k8s.io/kubernetes" && nice -n 19 make WHAT="cmd/$c" >"$work/build-$c.log" 2>&1) \
      || { tail -30 "$work/build-$c.log" >&2; exit 1; }
  fi
done

mkdir -p "$cache"
for c in "${components[@]}"; do
  install -m 0755 "$src/_output/bin/$c" "$cache/$c"
done
"$cache/kube-apiserver" --version >&2
touch "$cache/.complete"
rm -rf "$work"
echo "$cache"
