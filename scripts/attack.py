#!/usr/bin/env python3
"""The attacker's script of issue 8: each row of the attack on the server, replayed from outside against
the release binaries, with raw sockets where a client library would normalise the request away.

    cargo build --release --bins && scripts/attack.py [--bin-dir target/release] [--only 1,2,...]

It starts a rancher-sim cluster, a rancher-server (audit log at request level, debug logs) and a real agent
that imports the sim, then plays a hostile tenant (a cluster member, a user with no membership, an anonymous
client). Each row prints `ok` or what the attacker got; the exit code is the number of rows that failed.
"""

import argparse
import base64
import json
import os
import random
import re
import shutil
import signal
import socket
import ssl
import stat
import string
import subprocess
import sys
import tempfile
import threading
import time

ADMIN_PW = "attack-Passw0rd-123"
MARK_TR = "tokenreview-secret-marker-7f3a"
MARK_SECRET = "secret-body-marker-91bc"
HEADER_TIMEOUT = 10  # --http-header-timeout for the run, so slowloris rows finish quickly


# --- plumbing ---------------------------------------------------------------------------------------

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def tls_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Resp:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        try:
            return json.loads(self.body or b"{}")
        except ValueError:
            return {}

    def __repr__(self):
        return f"{self.status} {self.body[:200]!r}"


def read_response(f, head_only=False):
    line = f.readline()
    if not line:
        raise ConnectionError("connection closed before a response")
    status = int(line.split()[1])
    headers = {}
    while True:
        h = f.readline()
        if h in (b"\r\n", b"\n", b""):
            break
        k, _, v = h.decode("latin1").partition(":")
        headers.setdefault(k.strip().lower(), []).append(v.strip())
    if head_only or status in (101, 204, 304):
        return Resp(status, headers, b"")
    if "chunked" in ",".join(headers.get("transfer-encoding", [])):
        body = b""
        while True:
            size = int(f.readline().split(b";")[0], 16)
            if size == 0:
                f.readline()
                break
            body += f.read(size)
            f.readline()
    elif "content-length" in headers:
        body = f.read(int(headers["content-length"][0]))
    else:
        body = f.read()
    return Resp(status, headers, body)


class Conn:
    """One TLS connection on which raw requests are written byte for byte."""

    def __init__(self, port, source="127.0.0.1", timeout=30):
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
        self.sock = tls_ctx().wrap_socket(raw, server_hostname="localhost")
        self.f = self.sock.makefile("rb")

    def send(self, method, path, headers=(), body=b"", head_only=False):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers = list(headers) + [("Content-Type", "application/json")]
        lines = [f"{method} {path} HTTP/1.1", "Host: localhost"]
        lines += [f"{k}: {v}" for k, v in headers]
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body)
        return read_response(self.f, head_only)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def req(port, method, path, token=None, body=b"", headers=(), source="127.0.0.1"):
    h = list(headers) + [("Connection", "close")]
    if token:
        h.append(("Authorization", f"Bearer {token}"))
    c = Conn(port, source)
    try:
        return c.send(method, path, h, body)
    finally:
        c.close()


class Env:
    def __init__(self, bins, tmp):
        self.bins, self.tmp, self.procs = bins, tmp, []
        self.kc = os.path.join(tmp, "sim.kubeconfig")
        self.data = os.path.join(tmp, "data")
        self.audit = os.path.join(tmp, "audit.log")
        self.server_log = os.path.join(tmp, "server.log")

    def spawn(self, name, args, env=None):
        log = open(os.path.join(self.tmp, f"{name}.log"), "wb")
        p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        self.procs.append(p)
        return p

    def kubectl(self, *args):
        return subprocess.run(["kubectl", "--kubeconfig", self.kc, *args], capture_output=True, text=True)

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()


def wait_for(what, fn, secs=60):
    end = time.time() + secs
    while time.time() < end:
        try:
            v = fn()
            if v:
                return v
        except (OSError, ConnectionError, ValueError):
            pass
        time.sleep(0.3)
    raise RuntimeError(f"timed out waiting for {what}")


def login(port, username, password, source="127.0.0.1", **extra):
    r = req(port, "POST", "/v3-public/localProviders/local?action=login",
            body={"username": username, "password": password, **extra}, source=source)
    return r


def token_of(r):
    assert r.status == 201, f"login failed: {r}"
    return r.json()["token"]


def make_user(env, admin, name):
    pw = f"{name}-Passw0rd-42"
    r = req(env.port, "POST", "/v3/users", admin, {"spec": {"username": name, "password": pw}})
    assert r.status == 201, f"create user {name}: {r}"
    return r.json()["metadata"]["name"], token_of(login(env.port, name, pw)), pw


def global_role(env, admin, name, rules):
    r = req(env.port, "POST", "/v3/globalroles", admin, {"metadata": {"name": name}, "spec": {"rules": rules}})
    assert r.status == 201, f"create global role: {r}"


def bind_global(env, admin, user_id, role):
    r = req(env.port, "POST", "/v3/globalrolebindings", admin,
            {"spec": {"userName": user_id, "globalRoleName": role}})
    assert r.status == 201, f"bind {role}: {r}"
    return r.json()["metadata"]["name"]


# --- set-up -----------------------------------------------------------------------------------------

def conn_flag(env, max_conns):
    """The connection cap, small enough to reach here (older servers have no such flag)."""
    help_text = subprocess.run([f"{env.bins}/rancher-server", "--help"], capture_output=True, text=True).stdout
    if "--max-connections" not in help_text:
        return []
    return ["--max-connections", str(max_conns), "--http-header-timeout", f"{HEADER_TIMEOUT}s"]


def start(env, max_conns):
    sp = free_port()
    env.spawn("sim", [f"{env.bins}/rancher-sim", "--listen", f"127.0.0.1:{sp}", "--kubeconfig-out", env.kc,
                      "--nodes", "2"])
    wait_for("sim kubeconfig", lambda: os.path.exists(env.kc) and os.path.getsize(env.kc) > 0)
    env.port = free_port()
    env.server = env.spawn("server", [
        f"{env.bins}/rancher-server", "--data-dir", env.data, "--https-listen", f"127.0.0.1:{env.port}",
        "--audit-log", env.audit, "--audit-level", "request", *conn_flag(env, max_conns)],
        env={"CATTLE_BOOTSTRAP_PASSWORD": ADMIN_PW, "RUST_LOG": "debug"})
    wait_for("server /ping", lambda: req(env.port, "GET", "/ping").status == 200)
    env.admin = token_of(login(env.port, "admin", ADMIN_PW))
    env.admin_id = req(env.port, "GET", "/v3/users?limit=50", env.admin).json()["data"][0]["metadata"]["name"]
    for u in req(env.port, "GET", "/v3/users", env.admin).json()["data"]:
        if u["spec"]["username"] == "admin":
            env.admin_id = u["metadata"]["name"]
    import_cluster(env, "edge")


def import_cluster(env, name):
    r = req(env.port, "POST", "/v3/clusters", env.admin, {"metadata": {"name": name}, "spec": {"importedConfig": {}}})
    assert r.status == 201, f"create cluster: {r}"
    crt = wait_for("registration token", lambda: [
        t for t in req(env.port, "GET", "/v3/clusterregistrationtokens", env.admin).json().get("data", [])
        if t["metadata"].get("namespace") == name])[0]
    url = crt["status"]["manifestUrl"]
    env.import_path = url[url.index("/v3/import/"):]
    env.reg_token = crt["status"]["token"]
    manifest = req(env.port, "GET", env.import_path).body.decode()
    checksum = re.search(r"CATTLE_CA_CHECKSUM\s*\n\s*value:\s*\"?([0-9a-f]{64})", manifest).group(1)
    mpath = os.path.join(env.tmp, "import.yaml")
    with open(mpath, "w") as f:
        f.write(manifest)
    out = env.kubectl("apply", "-f", mpath)
    assert out.returncode == 0, out.stderr
    env.agent = env.spawn("agent", [f"{env.bins}/rancher-agent", "--kubeconfig", env.kc], env={
        "CATTLE_SERVER": f"https://127.0.0.1:{env.port}", "CATTLE_CA_CHECKSUM": checksum,
        "CATTLE_TOKEN": env.reg_token, "CATTLE_CLUSTER": "true"})
    wait_for("cluster Active", lambda: req(env.port, "GET", f"/v3/clusters/{name}", env.admin).json()
             .get("status", {}).get("state", "") in ("active", "Active")
             or any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in req(env.port, "GET", f"/v3/clusters/{name}", env.admin).json()
                    .get("status", {}).get("conditions", [])), 90)


def cluster_member(env, name):
    uid, tok, pw = make_user(env, env.admin, name)
    r = req(env.port, "POST", "/v3/clusterroletemplatebindings", env.admin,
            {"spec": {"clusterName": "edge", "roleTemplateName": "cluster-member", "userName": uid}})
    assert r.status == 201, f"crtb: {r}"
    return uid, tok, pw


# --- the rows ---------------------------------------------------------------------------------------

def row1(env):
    """A member names the identity headers in Connection; the request must still run as the member."""
    uid, tok, _ = cluster_member(env, "ro1")
    crb = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
           "metadata": {"name": "pwned-ro1"},
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
           "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": uid}]}
    # The member reaches the cluster first (the binding is seen by the proxy's index within moments).
    wait_for("member reaches the cluster", lambda: req(env.port, "GET", "/k8s/clusters/edge/api", tok).status == 200, 20)
    every = ("Impersonate-User, Impersonate-Group, Impersonate-Uid, Impersonate-Extra-principalid, "
             "Impersonate-Extra-username, Impersonate-Extra-requesttokenid")
    tricks = [every, every.upper() + ", keep-alive", every.replace(", ", ",") + ",Authorization",
              "keep-alive, impersonate-user, IMPERSONATE-GROUP", "Impersonate-User,Impersonate-Group,Authorization"]
    for trick in tricks:
        for method, path, body in [
            ("GET", "/k8s/clusters/edge/api/v1/secrets", b""),
            ("POST", "/k8s/clusters/edge/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", crb),
        ]:
            c = Conn(env.port)
            r = c.send(method, path, [("Authorization", f"Bearer {tok}"), ("Connection", trick)], body)
            c.close()
            if r.status < 300:
                return f"{method} {path} with Connection: {trick} -> {r.status} (ran as the agent)"
    return None


def row2(env):
    """Deleting a project or a cluster leaves nothing another user can adopt."""
    # Projects: a PRTB of a deleted project stops granting.
    uid, tok, _ = make_user(env, env.admin, "projuser")
    r = req(env.port, "POST", "/v3/projects", env.admin, {"metadata": {"generateName": "p-"}, "spec": {"clusterName": "edge"}})
    assert r.status == 201, f"project: {r}"
    pid = r.json()["metadata"]["name"]
    r = req(env.port, "POST", "/v3/projectroletemplatebindings", env.admin,
            {"spec": {"projectName": f"edge:{pid}", "roleTemplateName": "read-only", "userName": uid}})
    assert r.status == 201, f"prtb: {r}"
    wait_for("project member reaches the cluster",
             lambda: req(env.port, "GET", "/k8s/clusters/edge/api", tok).status == 200, 20)
    assert req(env.port, "DELETE", f"/v3/projects/edge:{pid}", env.admin).status == 200
    time.sleep(2)
    r = req(env.port, "GET", "/k8s/clusters/edge/api", tok)
    if r.status == 200:
        return f"after the project was deleted its member still reaches the cluster ({r.status})"

    # Clusters: delete, recreate under the same name as a standard user.
    muid, mtok, _ = make_user(env, env.admin, "mallory2")
    assert req(env.port, "DELETE", "/v3/clusters/edge", env.admin).status == 200
    time.sleep(2)
    r = req(env.port, "POST", "/v3/clusters", mtok, {"metadata": {"name": "edge"}})
    if r.status != 201:
        return f"recreating the name failed unexpectedly: {r}"
    time.sleep(8)  # the old agent reconnects with jitter
    r = req(env.port, "GET", "/k8s/clusters/edge/api/v1/secrets", mtok)
    if r.status == 200:
        return "a new owner of the recreated name reads the old cluster's Secrets"
    if req(env.port, "GET", env.import_path).status == 200:
        return "the deleted cluster's import URL still serves a manifest"
    st = req(env.port, "GET", "/v3/clusters/edge", env.admin).json().get("status", {})
    conds = st.get("conditions", [])
    if isinstance(conds, dict):
        conds = [{"type": k, **(v if isinstance(v, dict) else {"status": v})} for k, v in conds.items()]
    if any(isinstance(c, dict) and c.get("type") in ("Connected", "Ready") and c.get("status") == "True"
           for c in conds):
        return f"the old agent serves the recreated cluster: {st.get('conditions')}"
    return None


def row3(env):
    """Whoever grants a right must hold it."""
    global_role(env, env.admin, "grb-creator", [{"verbs": ["create", "get", "list"],
                "apiGroups": ["management.cattle.io"], "resources": ["globalrolebindings"]}])
    gid, gtok, _ = make_user(env, env.admin, "granter")
    bind_global(env, env.admin, gid, "grb-creator")
    r = req(env.port, "POST", "/v3/globalrolebindings", gtok, {"spec": {"userName": gid, "globalRoleName": "admin"}})
    if r.status < 300:
        return f"a GRB creator bound themselves admin: {r.status}"
    global_role(env, env.admin, "user-editor", [{"verbs": ["get", "list", "update"],
                "apiGroups": ["management.cattle.io"], "resources": ["users"]}])
    eid, etok, _ = make_user(env, env.admin, "editor")
    bind_global(env, env.admin, eid, "user-editor")
    admin_obj = req(env.port, "GET", f"/v3/users/{env.admin_id}", env.admin).json()
    admin_obj["spec"]["password"] = "Attacker-owned-pw-123"
    for k in ("id", "type"):
        admin_obj.pop(k, None)
    r = req(env.port, "PUT", f"/v3/users/{env.admin_id}", etok, admin_obj)
    if r.status < 300 or login(env.port, "admin", "Attacker-owned-pw-123").status == 201:
        return f"a user editor reset the admin's password: {r.status}"
    if login(env.port, "admin", ADMIN_PW).status != 201:
        return "the admin's own password stopped working"
    return None


def row4(env):
    """A demoted admin loses cluster-admin downstream; non-members mint no cluster tokens."""
    xid, xtok, _ = make_user(env, env.admin, "exadmin")
    grb = bind_global(env, env.admin, xid, "admin")
    req(env.port, "GET", "/k8s/clusters/edge/api", xtok)
    wait_for("globaladmin binding downstream",
             lambda: env.kubectl("get", "clusterrolebinding", f"globaladmin-{xid}").returncode == 0, 30)
    assert req(env.port, "DELETE", f"/v3/globalrolebindings/{grb}", env.admin).status == 200
    try:
        wait_for("binding removed", lambda: env.kubectl("get", "clusterrolebinding", f"globaladmin-{xid}")
                 .returncode != 0, 15)
    except RuntimeError:
        return "15 s after demotion the former admin still holds cluster-admin downstream"
    _, ntok, _ = make_user(env, env.admin, "nonmember")
    r = req(env.port, "POST", "/v3/tokens", ntok, {"clusterId": "edge"})
    if r.status < 300:
        return f"a non-member minted a token scoped to edge: {r.status}"
    return None


def row5(env):
    """Made-up methods never become metric labels."""
    before = len(req(env.port, "GET", "/metrics").body)
    c = Conn(env.port)
    for i in range(2000):
        method = "X" + "".join(random.choices(string.ascii_uppercase, k=12))
        try:
            c.send(method, f"/nope{i}", [])
        except (ConnectionError, OSError, ValueError):
            c.close()
            c = Conn(env.port)
    c.close()
    after = len(req(env.port, "GET", "/metrics").body)
    if after > before + 20_000:
        return f"/metrics grew from {before} to {after} bytes"
    return None


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) // 1024


def row6(env):
    """Password hashing is bounded; the throttle counts before it checks."""
    codes, peak = [], [0]
    def one(i):
        try:
            codes.append(login(env.port, f"ghost{i}", "wrong-password-123", source=f"127.0.6.{i % 50 + 1}").status)
        except (OSError, ConnectionError) as e:
            codes.append(str(e))
    def watch():
        while len(codes) < 400:
            peak[0] = max(peak[0], rss_mb(env.server.pid))
            time.sleep(0.05)
    w = threading.Thread(target=watch)
    w.start()
    ts = [threading.Thread(target=one, args=(i,)) for i in range(400)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    w.join()
    if peak[0] > 600:
        return f"400 parallel logins took the server to {peak[0]} MB"
    # The race: many parallel wrong passwords for one user from one address.
    make_user(env, env.admin, "victim6")
    checked = []
    def guess(i):
        checked.append(login(env.port, "victim6", f"guess-{i}-password", source="127.0.0.6").status)
    ts = [threading.Thread(target=guess, args=(i,)) for i in range(150)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    n401 = checked.count(401)
    if n401 > 25:
        return f"{n401} of 150 parallel guesses were checked (the throttle raced)"
    print(f"    row 6: peak RSS {peak[0]} MB under 400 parallel logins; "
          f"{n401}/150 parallel guesses checked, {checked.count(429)} refused 429")
    return None


def row7(env, max_conns):
    """Slowloris connections are cut; a connection flood leaves the server answering."""
    c = Conn(env.port, timeout=120)
    c.sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n")
    start = time.time()
    closed = None
    while time.time() - start < 100:
        try:
            c.sock.sendall(b"X")
            time.sleep(2)
        except OSError:
            closed = time.time() - start
            break
        try:
            c.sock.settimeout(0.01)
            if c.sock.recv(1) == b"":
                closed = time.time() - start
                break
        except (socket.timeout, ssl.SSLWantReadError):
            pass
        except (OSError, ssl.SSLError):
            closed = time.time() - start
            break
        finally:
            c.sock.settimeout(120)
    c.close()
    if closed is None:
        return "a slowloris connection was still open after 100 s"
    # A flood of idle connections from eight addresses (a per-client cap alone would stop one).
    held = []
    for i in range(max_conns + 100):
        try:
            held.append(socket.create_connection(("127.0.0.1", env.port), timeout=5,
                                                 source_address=(f"127.0.7.{i % 8 + 1}", 0)))
        except OSError:
            pass
    # Connections beyond the caps are refused at once; the attacker's idle ones are cut within the
    # header timeout, so a newcomer is served within it while the attacker still holds its sockets.
    started = time.time()
    try:
        wait_for("/ping during the flood", lambda: req(env.port, "GET", "/ping").status == 200, HEADER_TIMEOUT + 5)
        ok = True
    except RuntimeError:
        ok = False
    served = time.time() - started
    for s in held:
        s.close()
    if not ok:
        return f"with {len(held)} idle connections open the server stopped answering /ping"
    print(f"    row 7: slowloris cut after {closed:.0f} s; /ping answered {served:.1f} s into a flood of "
          f"{len(held)} idle connections from 8 addresses (cap {max_conns})")
    return None


def row8(env):
    """An attacker's failures lock out the attacker, not the victim."""
    for i in range(30):
        login(env.port, "admin", f"not-the-password-{i}", source="127.0.0.8")
    r = login(env.port, "admin", ADMIN_PW)
    if r.status != 201:
        return f"admin locked out by another address's failures: {r.status}"
    return None


def row9(env):
    """Cookie sessions need a same-origin Origin and a CSRF token."""
    tok = env.admin
    env.kubectl("run", "shell9", "--image=busybox", "--restart=Never")
    wait_for("pod", lambda: "Running" in env.kubectl("get", "pod", "shell9").stdout, 30)
    key = base64.b64encode(os.urandom(16)).decode()
    c = Conn(env.port)
    r = c.send("GET", "/k8s/clusters/edge/api/v1/namespaces/default/pods/shell9/exec?command=sh&stdin=true&stdout=true",
               [("Cookie", f"R_SESS={tok}"), ("Origin", "https://evil.example"), ("Connection", "Upgrade"),
                ("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13"), ("Sec-WebSocket-Key", key),
                ("Sec-WebSocket-Protocol", "v4.channel.k8s.io")], head_only=True)
    c.close()
    if r.status == 101:
        return "a cross-origin WebSocket exec with the session cookie was upgraded"
    r = req(env.port, "POST", "/v3/tokens?action=logout", headers=[("Cookie", f"R_SESS={tok}"),
            ("Content-Type", "text/plain"), ("Origin", "https://evil.example")], body=b"{}")
    if r.status < 300 or req(env.port, "GET", "/v3/clusters", tok).status != 200:
        return f"a cross-site text/plain logout with the cookie was accepted: {r.status}"
    return None


def row10(env):
    """Tokens have a maximum lifetime."""
    limit = time.time() + 91 * 86400
    r = login(env.port, "admin", ADMIN_PW, ttl=0)
    r2 = req(env.port, "POST", "/v3/tokens", env.admin, {})
    for what, x in (("login ttl 0", r), ("POST /v3/tokens {}", r2)):
        exp = x.json().get("status", {}).get("expiresAt") or x.json().get("expiresAt")
        if not exp:
            return f"{what}: a token that never expires ({x.status})"
        t = time.mktime(time.strptime(exp[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
        if t > limit:
            return f"{what}: expires {exp}, beyond 90 days"
    return None


def row11(env):
    """The data directory is private."""
    mode = stat.S_IMODE(os.stat(env.data).st_mode)
    if mode & 0o077:
        return f"data dir mode {oct(mode)}"
    for root, dirs, files in os.walk(env.data):
        for name in dirs + files:
            p = os.path.join(root, name)
            m = stat.S_IMODE(os.stat(p).st_mode)
            # Certificates are public; everything else (the store, keys) is the server's alone.
            if m & 0o077 and not name.endswith(".crt"):
                return f"{p} mode {oct(m)}"
    return None


def row12(env):
    """The audit log and debug logs hold no tokens or Secret data."""
    tr = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": MARK_TR}}
    req(env.port, "POST", "/k8s/clusters/edge/apis/authentication.k8s.io/v1/tokenreviews", env.admin, tr)
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s12"}, "stringData": {"k": MARK_SECRET}}
    for path in ["/k8s/clusters/edge/api/v1/namespaces/default/./secrets",
                 "/k8s/clusters/edge/api/v1/namespaces/default//secrets",
                 "/k8s/clusters/edge/api/v1/namespaces/default/%73ecrets"]:
        req(env.port, "POST", path, env.admin, secret)
    time.sleep(1)
    audit = open(env.audit).read() if os.path.exists(env.audit) else ""
    logs = open(env.server_log, errors="replace").read()
    for where, text in (("audit log", audit), ("server log", logs)):
        for mark in (MARK_TR, MARK_SECRET, base64.b64encode(MARK_SECRET.encode()).decode()):
            if mark in text:
                return f"the {where} holds {mark}"
    if env.reg_token in logs:
        return "the debug log holds a registration token"
    if env.admin.split(":")[1] in logs + audit:
        return "a log holds the admin's token secret"
    return None


def row13(env):
    """No look-alike usernames."""
    for name in ["\u0430dmin", "Admin", "admin\u200b"]:
        r = req(env.port, "POST", "/v3/users", env.admin, {"spec": {"username": name, "password": "lookalike-Passw0rd-1"}})
        if r.status < 300:
            return f"created a user named {name!r}"
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin-dir", default=os.path.join(os.path.dirname(__file__), "..", "target", "release"))
    ap.add_argument("--only", default="", help="comma-separated row numbers")
    ap.add_argument("--max-connections", type=int, default=300)
    args = ap.parse_args()
    only = {int(x) for x in args.only.split(",") if x}
    tmp = tempfile.mkdtemp(prefix="attack.")
    env = Env(os.path.abspath(args.bin_dir), tmp)
    failures = 0
    try:
        start(env, args.max_connections)
        rows = [(1, row1), (9, row9), (4, row4), (3, row3), (10, row10), (12, row12), (13, row13),
                (11, row11), (5, row5), (8, row8), (6, row6), (7, lambda e: row7(e, args.max_connections)),
                (2, row2)]
        for n, fn in rows:
            if only and n not in only:
                continue
            try:
                problem = fn(env)
            except (AssertionError, RuntimeError, OSError, ConnectionError, KeyError) as e:
                problem = f"the attack could not be played: {e!r}"
            print(f"row {n:2}: {'ok' if not problem else 'FAIL: ' + problem}", flush=True)
            failures += bool(problem)
    finally:
        env.stop()
        if failures:
            print(f"logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"{failures} row(s) failed" if failures else "ok: every row of the attack got nothing")
    sys.exit(failures)


if __name__ == "__main__":
    main()
