#!/usr/bin/env bash
# Installs moto's S3 (and IAM) server, the S3-compatible counterpart of the etcd snapshot upload tests,
# into a virtualenv outside the checkout (idempotent: skips when its moto_server is already there).
#   RANCHER_MOTO_DIR   where the venv goes (default ~/.cache/rancher-rs/moto)
# The tests find it there (rancher_test_support::moto); RANCHER_MOTO_SERVER may name another moto_server.
set -euo pipefail

dir="${RANCHER_MOTO_DIR:-$HOME/.cache/rancher-rs/moto}"
if [ -x "$dir/bin/moto_server" ] && "$dir/bin/python" -c 'import moto.s3, moto.iam, flask, flask_cors' 2>/dev/null; then
  exit 0
fi

python="$(command -v python3 || true)"
[ -n "$python" ] || { echo "install-moto: python3 is needed" >&2; exit 1; }
echo "installing moto into $dir"
rm -rf "$dir"
mkdir -p "$(dirname "$dir")"
"$python" -m venv "$dir"
# The lean set (no cfn-lint, sympy …): S3 for the objects, IAM for the access keys whose signatures
# moto checks once authentication is switched on.
"$dir/bin/pip" install -q --disable-pip-version-check 'moto[s3,iam]==5.2.5' flask flask-cors \
  >/tmp/rancher-rs-moto-pip.log 2>&1 || { tail -20 /tmp/rancher-rs-moto-pip.log; exit 1; }
"$dir/bin/python" -c 'import moto.s3, moto.iam, flask, flask_cors'
echo "moto $("$dir/bin/python" -c 'import moto; print(moto.__version__)') installed: $dir/bin/moto_server"
