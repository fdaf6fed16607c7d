#!/usr/bin/env python3
"""Builds the agent's OCI image without a container engine (called by scripts/agent-image.sh).

It assembles a root filesystem — the `rancher-agent` binary, the shared libraries `ldd` says it
links (glibc's loader included), the CA roots, `/etc/passwd` and `/etc/group` with a non-root user,
`/etc/nsswitch.conf` and `/tmp` — as ONE gzip-compressed tar layer, and writes an OCI image layout
(https://github.com/opencontainers/image-spec/blob/main/image-layout.md): `oci-layout`, `index.json`
and content-addressed `blobs/sha256/<digest>` for the layer, the image config and the manifest. The
same layout is also packed as an `oci-archive` tarball.

The output is reproducible: every entry has mode, owner and mtime fixed (mtime from
SOURCE_DATE_EPOCH, default 0), entries are sorted, and gzip's header carries no time or name.
Standard library only.
"""

import argparse
import datetime
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile

ENTRYPOINT = "/usr/local/bin/rancher-agent"
USER_ID = 10001
USER_NAME = "rancher"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def fail(message):
    print(f"oci_image: {message}", file=sys.stderr)
    sys.exit(1)


def linked_libraries(binary):
    """The absolute paths `ldd` resolves for `binary` (the loader included, the vDSO left out)."""
    try:
        out = subprocess.run(["ldd", binary], check=True, capture_output=True, text=True).stdout
    except FileNotFoundError:
        fail("ldd is not installed (it comes with libc-bin)")
    except subprocess.CalledProcessError as e:
        if "not a dynamic executable" in (e.stdout + e.stderr):
            return []
        fail(f"ldd {binary}: {e.stderr.strip()}")
    paths = []
    for line in out.splitlines():
        line = line.strip()
        if "not found" in line:
            fail(f"{binary} links a library this host lacks: {line}")
        # "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        m = re.match(r"^(?:\S+\s+=>\s+)?(/\S+)\s+\(0x[0-9a-f]+\)$", line)
        if m:
            paths.append(m.group(1))
    return sorted(set(paths))


def etc_files():
    """The small files under /etc a non-root, name-resolving process expects."""
    passwd = (
        "root:x:0:0:root:/root:/usr/sbin/nologin\n"
        f"{USER_NAME}:x:{USER_ID}:{USER_ID}:rancher-agent:/nonexistent:/usr/sbin/nologin\n"
    )
    group = f"root:x:0:\n{USER_NAME}:x:{USER_ID}:\n"
    nsswitch = "passwd: files\ngroup: files\nhosts: files dns\n"
    return {
        "etc/passwd": passwd.encode(),
        "etc/group": group.encode(),
        "etc/nsswitch.conf": nsswitch.encode(),
    }


def layer_tar(binary, libraries, ca_bundle, mtime):
    """The root filesystem as an uncompressed tar (bytes)."""
    files = {}  # path in the image → (bytes, mode)
    with open(binary, "rb") as f:
        files[ENTRYPOINT.lstrip("/")] = (f.read(), 0o755)
    for lib in libraries:
        # Copies the file a symlink points to, under the name the binary asks for.
        with open(os.path.realpath(lib), "rb") as f:
            files[lib.lstrip("/")] = (f.read(), 0o755)
    with open(ca_bundle, "rb") as f:
        files[CA_BUNDLE.lstrip("/")] = (f.read(), 0o644)
    for path, data in etc_files().items():
        files[path] = (data, 0o644)

    dirs = {"tmp"}
    for path in files:
        parent = os.path.dirname(path)
        while parent:
            dirs.add(parent)
            parent = os.path.dirname(parent)

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in sorted(dirs):
            info = tarfile.TarInfo(d + "/")
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if d == "tmp" else 0o755
            info.mtime = mtime
            tar.addfile(info)
        for path in sorted(files):
            data, mode = files[path]
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = mode
            info.mtime = mtime
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def put_blob(layout, data):
    """Writes `data` under blobs/sha256/ and returns its descriptor fields."""
    digest = sha256(data)
    path = os.path.join(layout, "blobs", "sha256", digest.split(":", 1)[1])
    with open(path, "wb") as f:
        f.write(data)
    return {"digest": digest, "size": len(data)}


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def write_layout(layout, layer, image_ref, created):
    """Writes the OCI layout for one single-layer linux/amd64 image into `layout` (emptied first)."""
    if os.path.exists(layout):
        shutil.rmtree(layout)
    os.makedirs(os.path.join(layout, "blobs", "sha256"))
    compressed = gzip.compress(layer, compresslevel=6, mtime=0)
    layer_desc = dict(mediaType=MT_LAYER, **put_blob(layout, compressed))
    name, _, tag = image_ref.rpartition(":")
    config = {
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": f"{USER_ID}:{USER_ID}",
            "Entrypoint": [ENTRYPOINT],
            "Env": [
                "PATH=/usr/local/bin:/usr/bin:/bin",
                f"SSL_CERT_FILE={CA_BUNDLE}",
            ],
            "WorkingDir": "/",
            "Labels": {"org.opencontainers.image.title": "rancher-agent"},
        },
        "rootfs": {"type": "layers", "diff_ids": [sha256(layer)]},
        "history": [{"created": created, "created_by": "scripts/agent-image.sh"}],
    }
    config_desc = dict(mediaType=MT_CONFIG, **put_blob(layout, canonical(config)))
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": config_desc,
        "layers": [layer_desc],
        "annotations": {"org.opencontainers.image.title": "rancher-agent"},
    }
    manifest_desc = dict(mediaType=MT_MANIFEST, **put_blob(layout, canonical(manifest)))
    # `ref.name` is the tag (skopeo's `oci:DIR:TAG`); containerd (`ctr import`, kind, k3s) names the
    # image from `io.containerd.image.name`, which must be fully qualified.
    qualified = name if "/" in name and "." in name.split("/", 1)[0] else f"docker.io/{name}"
    manifest_desc["platform"] = {"architecture": "amd64", "os": "linux"}
    manifest_desc["annotations"] = {
        "org.opencontainers.image.ref.name": tag,
        "io.containerd.image.name": f"{qualified}:{tag}",
    }
    index = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [manifest_desc]}
    with open(os.path.join(layout, "index.json"), "wb") as f:
        f.write(canonical(index))
    with open(os.path.join(layout, "oci-layout"), "wb") as f:
        f.write(canonical({"imageLayoutVersion": "1.0.0"}))
    return manifest_desc["digest"]


def write_archive(layout, archive, mtime):
    """The layout as an `oci-archive` (a tar of the layout directory's contents)."""
    tmp = archive + ".partial"
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for root, dirs, files in os.walk(layout):
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(root, name)
                info = tar.gettarinfo(path, arcname=os.path.relpath(path, layout))
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mode = 0o644
                info.mtime = mtime
                with open(path, "rb") as f:
                    tar.addfile(info, f)
    os.replace(tmp, archive)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--binary", required=True, help="the rancher-agent executable")
    p.add_argument("--ref", required=True, help="image reference NAME:TAG, e.g. rancher-rs/rancher-agent:v0.1.0")
    p.add_argument("--out", required=True, help="output directory (the layout goes to OUT/oci)")
    p.add_argument("--ca-bundle", default=CA_BUNDLE, help="CA roots to include (PEM)")
    args = p.parse_args()

    name, _, tag = args.ref.rpartition(":")
    if not re.fullmatch(r"[a-z0-9][a-z0-9._/:-]*", name) or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", tag):
        fail(f"--ref {args.ref!r} is not NAME:TAG")
    if not os.access(args.binary, os.X_OK):
        fail(f"{args.binary} is not an executable")
    if not os.path.isfile(args.ca_bundle):
        fail(f"{args.ca_bundle} is missing (apt-get install ca-certificates)")
    mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    created = datetime.datetime.fromtimestamp(mtime, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    libraries = linked_libraries(args.binary)
    layer = layer_tar(args.binary, libraries, args.ca_bundle, mtime)
    os.makedirs(args.out, exist_ok=True)
    layout = os.path.join(args.out, "oci")
    with tempfile.TemporaryDirectory(dir=args.out) as staging:
        staged = os.path.join(staging, "oci")
        digest = write_layout(staged, layer, args.ref, created)
        if os.path.exists(layout):
            shutil.rmtree(layout)
        os.replace(staged, layout)
    archive = os.path.join(args.out, "rancher-agent.oci.tar")
    write_archive(layout, archive, mtime)
    print(f"image {args.ref}")
    print(f"  manifest  {digest}")
    print(f"  libraries {' '.join(libraries) or '(static)'}")
    print(f"  layout    {layout}")
    print(f"  archive   {archive}")


if __name__ == "__main__":
    main()
