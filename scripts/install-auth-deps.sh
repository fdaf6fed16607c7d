#!/usr/bin/env bash
# Installs the real identity providers that rancher-auth's provider tests start (idempotent).
#   slapd, ldap-utils   Debian    OpenLDAP server + ldapadd/ldapmodify (tests run slapd as a plain
#                                  process on loopback; the debconf preseed keeps apt from creating a
#                                  database, and policy-rc.d keeps it from starting a daemon)
#   oidc-provider@9     npm       OpenID provider, installed into .test-deps/oidc under the repo
# node (>= 20) must already be on PATH.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"

missing=()
command -v slapd >/dev/null 2>&1 || [ -x /usr/sbin/slapd ] || missing+=(slapd)
command -v ldapmodify >/dev/null 2>&1 || missing+=(ldap-utils)

if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  # Never let the package start slapd on ldap:/// (all interfaces): no init script runs.
  if [ ! -x /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod +x /usr/sbin/policy-rc.d
  fi
  # Without this the postinst builds a default database from the host name.
  echo "slapd slapd/no_configuration boolean true" | $sudo debconf-set-selections
  export DEBIAN_FRONTEND=noninteractive
  if ! $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/rancher-rs-auth-apt.log 2>&1; then
    $sudo apt-get update -qq >>/tmp/rancher-rs-auth-apt.log 2>&1
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >>/tmp/rancher-rs-auth-apt.log 2>&1 \
      || { tail -20 /tmp/rancher-rs-auth-apt.log; exit 1; }
  fi
fi

oidc_dir="$repo/.test-deps/oidc"
if [ ! -f "$oidc_dir/node_modules/oidc-provider/package.json" ]; then
  command -v npm >/dev/null 2>&1 || { echo "npm is not installed; install Node.js >= 20" >&2; exit 1; }
  echo "installing: npm oidc-provider@9 into $oidc_dir"
  mkdir -p "$oidc_dir"
  [ -f "$oidc_dir/package.json" ] || printf '{ "name": "rancher-rs-oidc-test", "private": true, "type": "module" }\n' >"$oidc_dir/package.json"
  (cd "$oidc_dir" && npm install --no-audit --no-fund --loglevel=error oidc-provider@9 >/dev/null)
fi

echo "auth test dependencies ready: slapd $(command -v slapd || echo /usr/sbin/slapd), oidc-provider in $oidc_dir"
