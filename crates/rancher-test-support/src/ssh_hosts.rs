//! Real OpenSSH hosts for tests: each host is a network namespace with its own mount namespace
//! running `/usr/sbin/sshd`, attached to a bridge in the root namespace, with a private `/srv/node`.
//!
//! Layout of one [`SshHosts`] set (K is taken per set, see below):
//!
//! | what | value |
//! |---|---|
//! | bridge (root namespace) | `rrsbrK`, address `10.213.K.1/24` ([`SshHost::bridge_address`]) |
//! | host I (1-based) | netns `rrs-K-hI`, veth `rrsvK-I` on the bridge, `eth0` inside at `10.213.K.(10+I)` |
//! | sshd | port 22 on the host's address, key-only, `UsePAM no`, SFTP built in, hostname `nodeI` |
//! | login | `root` (uid 0), whose login shell inside the host is `/bin/sh` (a private `/etc/passwd` is bind-mounted in the host's mount namespace, so root's `.bashrc` is not sourced and the machine's own passwd is untouched) |
//! | private directory | [`SshHost::root_dir`] is bind-mounted over `/srv/node` inside the host; everything else of the filesystem is shared with the machine |
//!
//! Test processes run in parallel, so each set takes its own K (1–250) with an exclusive lock file
//! that every test process honours. On drop (also on panic) a set kills every process in its
//! namespaces and deletes the namespaces, veths and bridge; what a killed run left behind is
//! removed by the next start (any set whose lock nobody holds). Addresses are numeric only: DNS inside a namespace hangs.
//!
//! ```no_run
//! # async fn example() {
//! use rancher_test_support::ssh_hosts::SshHosts;
//!
//! let hosts = SshHosts::start(2);
//! let h1 = &hosts.hosts()[0];
//! let out = h1.exec("hostname; echo hi > /srv/node/x").await;
//! assert_eq!(out.stdout.trim(), "node1");
//! assert_eq!(std::fs::read_to_string(h1.root_dir().join("x")).unwrap(), "hi\n");
//! # }
//! ```

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The SSH user of every host (uid 0, login shell `/bin/sh`).
pub const USER: &str = "root";

/// How long a host's sshd may take to answer after it was started.
const READY: Duration = Duration::from_secs(15);

/// The range of set numbers K (third octet of `10.213.K.0/24`); 0 is left to hand-made setups.
const SETS: std::ops::RangeInclusive<u8> = 1..=250;

fn lock_dir() -> PathBuf {
    std::env::temp_dir().join("rancher-rs-test-ssh-hosts")
}

/// Runs a command, panicking with its output when it fails.
fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "{} failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a command for its output, ignoring failure (for clean-up and listing).
fn output(args: &[&str]) -> String {
    Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn quiet(args: &[&str]) {
    let _ = Command::new(args[0]).args(&args[1..]).stdin(Stdio::null()).output();
}

/// Kills every process in network namespace `netns` with SIGKILL.
fn kill_netns_processes(netns: &str) {
    for pid in output(&["ip", "netns", "pids", netns]).split_whitespace() {
        quiet(&["kill", "-KILL", pid]);
    }
}

/// Removes what a run that crashed left for set `k`: processes in its namespaces, the namespaces,
/// the veths and the bridge. Only called while holding `k`'s lock, so nothing of it is live.
fn clean_set(k: u8) {
    let ns_prefix = format!("rrs-{k}-h");
    for line in output(&["ip", "netns", "list"]).lines() {
        let Some(name) = line.split_whitespace().next() else { continue };
        if name.starts_with(&ns_prefix) {
            kill_netns_processes(name);
            quiet(&["ip", "netns", "del", name]);
        }
    }
    let veth_prefix = format!("rrsv{k}-");
    let bridge = format!("rrsbr{k}");
    for line in output(&["ip", "-o", "link", "show"]).lines() {
        // "12: rrsv3-1@if11: <BROADCAST,…"
        let Some(name) = line.split(": ").nth(1).and_then(|n| n.split('@').next()) else { continue };
        if name.starts_with(&veth_prefix) || name == bridge {
            quiet(&["ip", "link", "del", name]);
        }
    }
}

/// The set numbers that have namespaces or links on this machine now.
fn sets_present() -> Vec<u8> {
    let mut ks = Vec::new();
    for line in output(&["ip", "netns", "list"]).lines() {
        // "rrs-3-h1 (id: 0)"
        if let Some(k) =
            line.strip_prefix("rrs-").and_then(|r| r.split('-').next()).and_then(|k| k.parse().ok())
        {
            ks.push(k);
        }
    }
    for line in output(&["ip", "-o", "link", "show"]).lines() {
        let Some(name) = line.split(": ").nth(1).and_then(|n| n.split('@').next()) else { continue };
        let k = name
            .strip_prefix("rrsbr")
            .or_else(|| name.strip_prefix("rrsv").and_then(|r| r.split('-').next()));
        if let Some(k) = k.and_then(|k| k.parse().ok()) {
            ks.push(k);
        }
    }
    ks.sort_unstable();
    ks.dedup();
    ks
}

/// Removes the leftovers of every set no live process holds (runs that were killed).
fn clean_abandoned_sets(dir: &Path) {
    for k in sets_present() {
        let Ok(file) =
            OpenOptions::new().create(true).truncate(false).write(true).open(dir.join(format!("{k}.lock")))
        else {
            continue;
        };
        if file.try_lock().is_ok() {
            clean_set(k);
        }
    }
}

/// Takes a free set number with an exclusive lock held until the returned file is dropped.
fn take_set() -> (u8, File) {
    let dir = lock_dir();
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    clean_abandoned_sets(&dir);
    let span = u32::from(SETS.end() - SETS.start()) + 1;
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let start = (std::process::id() ^ nanos) % span;
    for i in 0..span {
        let k = SETS.start() + u8::try_from((start + i) % span).unwrap_or(0);
        let path = dir.join(format!("{k}.lock"));
        let Ok(file) = OpenOptions::new().create(true).truncate(false).write(true).open(&path) else {
            continue;
        };
        if file.try_lock().is_ok() {
            return (k, file);
        }
    }
    panic!("all {span} SSH host sets are in use");
}

fn keygen(path: &Path, comment: &str) {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(path.with_extension("pub"));
    let p = path.to_str().expect("utf-8 path");
    run(&["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", p]);
}

/// "ssh-ed25519 AAAA…" of a `.pub` file (without its comment).
fn public_key_of(private: &Path) -> String {
    let pubfile = private.with_extension("pub");
    let text = std::fs::read_to_string(&pubfile).unwrap_or_else(|e| panic!("{}: {e}", pubfile.display()));
    text.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// What a command run through the `ssh` CLI did.
#[derive(Clone, Debug)]
pub struct HostOutput {
    /// Exit code of `ssh` (the remote command's, or 255 when SSH itself failed).
    pub status: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl HostOutput {
    /// Whether the command exited 0.
    pub fn ok(&self) -> bool {
        self.status == 0
    }
}

/// A set of SSH hosts on one bridge; everything is removed on drop.
pub struct SshHosts {
    k: u8,
    bridge: String,
    hosts: Vec<SshHost>,
    client_key: String,
    client_public_key: String,
    /// Held (locked) until drop, after clean-up.
    _lock: File,
    /// Keys, configs, logs and the hosts' private directories.
    _dir: tempfile::TempDir,
}

/// One SSH host of an [`SshHosts`] set.
pub struct SshHost {
    index: usize,
    netns: String,
    veth: String,
    address: String,
    bridge_address: String,
    dir: PathBuf,
    root_dir: PathBuf,
    client_key_path: PathBuf,
    sshd: Mutex<Option<Child>>,
}

impl SshHosts {
    /// Starts `n` hosts (1–200) and waits until each one's sshd answers.
    ///
    /// # Panics
    /// When not run as root, `sshd`/`ip`/`ssh-keygen` are missing, or a host does not come up; what
    /// was made until then is removed.
    pub fn start(n: usize) -> SshHosts {
        assert!((1..=200).contains(&n), "SshHosts::start({n}): between 1 and 200 hosts");
        assert!(
            Path::new("/usr/sbin/sshd").exists(),
            "/usr/sbin/sshd is missing: run scripts/install-test-deps.sh"
        );
        for d in ["/run/sshd", "/srv/node"] {
            std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("{d}: {e}"));
        }
        let (k, lock) = take_set();
        clean_set(k);
        let dir = tempfile::Builder::new().prefix("rrs-ssh-").tempdir().expect("temp dir");
        let client_key_path = dir.path().join("id_ed25519");
        keygen(&client_key_path, "rancher-rs-test");
        let bridge = format!("rrsbr{k}");
        let mut set = SshHosts {
            k,
            bridge: bridge.clone(),
            hosts: Vec::with_capacity(n),
            client_key: read(&client_key_path),
            client_public_key: public_key_of(&client_key_path),
            _lock: lock,
            _dir: dir,
        };
        let bridge_address = format!("10.213.{k}.1");
        run(&["ip", "link", "add", &bridge, "type", "bridge"]);
        run(&["ip", "addr", "add", &format!("{bridge_address}/24"), "dev", &bridge]);
        run(&["ip", "link", "set", &bridge, "up"]);
        let mut passwd = String::new();
        for line in read(Path::new("/etc/passwd")).lines() {
            match line.strip_prefix("root:") {
                // name:password:uid:gid:gecos:home:shell → the same with /bin/sh
                Some(rest) => {
                    let mut fields: Vec<&str> = rest.split(':').collect();
                    if let Some(shell) = fields.last_mut() {
                        *shell = "/bin/sh";
                    }
                    passwd.push_str(&format!("root:{}\n", fields.join(":")));
                }
                None => passwd.push_str(&format!("{line}\n")),
            }
        }
        let passwd_path = set._dir.path().join("passwd");
        write(&passwd_path, &passwd);
        for i in 1..=n {
            let h = set._dir.path().join(format!("h{i}"));
            let root_dir = h.join("fs");
            std::fs::create_dir_all(&root_dir).expect("host dir");
            let host = SshHost {
                index: i,
                netns: format!("rrs-{k}-h{i}"),
                veth: format!("rrsv{k}-{i}"),
                address: format!("10.213.{k}.{}", 10 + i),
                bridge_address: bridge_address.clone(),
                dir: h.clone(),
                root_dir,
                client_key_path: client_key_path.clone(),
                sshd: Mutex::new(None),
            };
            run(&["ip", "netns", "add", &host.netns]);
            set.hosts.push(host);
            let host = set.hosts.last().expect("just pushed");
            run(&[
                "ip",
                "link",
                "add",
                &host.veth,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &host.netns,
            ]);
            run(&["ip", "link", "set", &host.veth, "master", &bridge, "up"]);
            let ns = |args: &[&str]| {
                let mut all = vec!["ip", "netns", "exec", host.netns.as_str()];
                all.extend_from_slice(args);
                run(&all);
            };
            ns(&["ip", "addr", "add", &format!("{}/24", host.address), "dev", "eth0"]);
            ns(&["ip", "link", "set", "eth0", "up"]);
            ns(&["ip", "link", "set", "lo", "up"]);
            keygen(&h.join("hostkey"), &format!("node{i}"));
            write(&h.join("authorized_keys"), &format!("{}\n", set.client_public_key));
            let p = |f: &str| h.join(f).display().to_string();
            let config = [
                format!("ListenAddress {}", host.address),
                "Port 22".into(),
                format!("HostKey {}", p("hostkey")),
                format!("PidFile {}", p("sshd.pid")),
                format!("AuthorizedKeysFile {}", p("authorized_keys")),
                "PermitRootLogin prohibit-password".into(),
                "PasswordAuthentication no".into(),
                "KbdInteractiveAuthentication no".into(),
                "UsePAM no".into(),
                "StrictModes no".into(),
                "UseDNS no".into(),
                "PrintMotd no".into(),
                "MaxStartups 100".into(),
                "MaxSessions 100".into(),
                "Subsystem sftp internal-sftp".into(),
                "LogLevel ERROR".into(),
            ];
            write(&h.join("sshd_config"), &(config.join("\n") + "\n"));
            host.write_known_hosts();
            host.spawn_sshd(&passwd_path);
        }
        for host in &set.hosts {
            host.wait_ready();
        }
        set
    }

    /// The hosts, in order (host I is `hosts()[I-1]`).
    pub fn hosts(&self) -> &[SshHost] {
        &self.hosts
    }

    /// The set number K: the hosts are in `10.213.K.0/24`.
    pub fn set_number(&self) -> u8 {
        self.k
    }

    /// The SSH user every host accepts the client key for ([`USER`]).
    pub fn user(&self) -> &str {
        USER
    }

    /// The client's private key (ed25519, OpenSSH format) that every host accepts.
    pub fn client_key(&self) -> &str {
        &self.client_key
    }

    /// The client's public key, `ssh-ed25519 AAAA…`.
    pub fn client_public_key(&self) -> &str {
        &self.client_public_key
    }

    /// A `known_hosts` text with every host's current key.
    pub fn known_hosts(&self) -> String {
        self.hosts.iter().map(SshHost::known_hosts_line).collect::<Vec<_>>().join("\n") + "\n"
    }
}

impl Drop for SshHosts {
    fn drop(&mut self) {
        for host in &self.hosts {
            host.stop_sshd();
            quiet(&["ip", "netns", "del", &host.netns]);
            quiet(&["ip", "link", "del", &host.veth]);
        }
        quiet(&["ip", "link", "del", &self.bridge]);
        // Anything a half-made start left (a netns made before its host was recorded).
        clean_set(self.k);
    }
}

impl SshHost {
    /// The host's number in its set, from 1 (its hostname is `node<index>`).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The host's IP address (where its sshd listens).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The root namespace's address on the bridge: where the host reaches a server that listens in
    /// the root namespace (on this address or on all addresses).
    pub fn bridge_address(&self) -> &str {
        &self.bridge_address
    }

    /// The SSH port (22).
    pub fn ssh_port(&self) -> u16 {
        22
    }

    /// The directory mounted as `/srv/node` inside this host only.
    pub fn root_dir(&self) -> &Path {
        &self.root_dir
    }

    /// The network namespace's name (for `ip netns exec`).
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// The pids of the host's processes (those in its network namespace: every host shares the
    /// machine's pid namespace and paths, so a plain `pgrep` would find other hosts' too) whose
    /// command line, program first, `matches`.
    pub fn pids_matching(&self, matches: impl Fn(&[String]) -> bool) -> Vec<u32> {
        output(&["ip", "netns", "pids", &self.netns])
            .split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok())
            .filter(|pid| {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let words: Vec<String> =
                    cmdline.split(|b| *b == 0).map(|w| String::from_utf8_lossy(w).into_owned()).collect();
                matches(&words)
            })
            .collect()
    }

    /// The host's current public key, `ssh-ed25519 AAAA…` (what a client pins).
    pub fn host_public_key(&self) -> String {
        public_key_of(&self.dir.join("hostkey"))
    }

    /// `<address> ssh-ed25519 AAAA…`, the host's `known_hosts` line.
    pub fn known_hosts_line(&self) -> String {
        format!("{} {}", self.address, self.host_public_key())
    }

    /// sshd's log (errors only).
    pub fn sshd_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }

    /// Runs `cmd` on the host through the `ssh` CLI as [`USER`], with strict host-key checking.
    pub async fn exec(&self, cmd: &str) -> HostOutput {
        let key = self.client_key_path.display().to_string();
        let known = self.dir.join("known_hosts").display().to_string();
        let out = tokio::process::Command::new("ssh")
            .args([
                "-i",
                &key,
                "-o",
                &format!("UserKnownHostsFile={known}"),
                "-o",
                "StrictHostKeyChecking=yes",
            ])
            .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR"])
            .args(["-F", "/dev/null", &format!("{USER}@{}", self.address), "--", cmd])
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap_or_else(|e| panic!("ssh: {e}"));
        HostOutput {
            status: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Brings the host's link up or down (its veth on the bridge): down, nothing reaches the host
    /// and the host reaches nothing.
    pub fn set_link(&self, up: bool) {
        run(&["ip", "link", "set", &self.veth, if up { "up" } else { "down" }]);
    }

    /// Limits how fast the host receives to `rate` (as `tc` writes it, e.g. `"80mbit"`) with a token
    /// bucket on its veth, or lifts the limit (`None`): a test can then act in the middle of a
    /// transfer to the host. The limit goes with the host.
    pub fn limit_rate(&self, rate: Option<&str>) {
        match rate {
            Some(r) => run(&[
                "tc", "qdisc", "replace", "dev", &self.veth, "root", "tbf", "rate", r, "burst", "64kb",
                "latency", "1s",
            ]),
            None => quiet(&["tc", "qdisc", "del", "dev", &self.veth, "root"]),
        }
    }

    /// Gives the host a new host key and restarts its sshd with it (running sessions end); waits
    /// until it answers again. Returns the new public key.
    pub fn regenerate_host_key(&self) -> String {
        self.stop_sshd();
        keygen(&self.dir.join("hostkey"), &format!("node{}", self.index));
        self.write_known_hosts();
        self.spawn_sshd(&self.dir.parent().expect("set dir").join("passwd"));
        self.wait_ready();
        self.host_public_key()
    }

    fn write_known_hosts(&self) {
        write(&self.dir.join("known_hosts"), &format!("{}\n", self.known_hosts_line()));
    }

    fn spawn_sshd(&self, passwd: &Path) {
        let log = File::create(self.dir.join("sshd.log")).expect("sshd log");
        let script = format!(
            "hostname node{i} && mount --bind {fs} /srv/node && mount --bind {passwd} /etc/passwd \
             && exec /usr/sbin/sshd -D -e -f {cfg}",
            i = self.index,
            fs = self.root_dir.display(),
            passwd = passwd.display(),
            cfg = self.dir.join("sshd_config").display(),
        );
        let child = Command::new("ip")
            .args(["netns", "exec", &self.netns, "unshare", "--uts", "--mount", "--propagation", "private"])
            .args(["sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("start sshd in {}: {e}", self.netns));
        *self.sshd.lock().unwrap_or_else(PoisonError::into_inner) = Some(child);
    }

    fn stop_sshd(&self) {
        kill_netns_processes(&self.netns);
        if let Some(mut child) = self.sshd.lock().unwrap_or_else(PoisonError::into_inner).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until sshd sends its banner on the host's address.
    fn wait_ready(&self) {
        let addr: SocketAddr = format!("{}:22", self.address).parse().expect("numeric address");
        let deadline = Instant::now() + READY;
        loop {
            if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 4];
                if s.read_exact(&mut buf).is_ok() && &buf == b"SSH-" {
                    return;
                }
            }
            if let Some(child) = self.sshd.lock().unwrap_or_else(PoisonError::into_inner).as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("sshd of {} exited ({status}): {}", self.netns, self.sshd_log());
            }
            assert!(
                Instant::now() < deadline,
                "sshd of {} not answering after {READY:?}: {}",
                self.netns,
                self.sshd_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hosts_have_their_own_address_hostname_and_srv_node_and_are_removed_on_drop() {
        let hosts = SshHosts::start(2);
        let (k, netns) = (hosts.set_number(), hosts.hosts()[1].netns().to_owned());
        for h in hosts.hosts() {
            let out = h.exec("echo $(hostname) $SHELL $(id -u) > /srv/node/who; cat /srv/node/who").await;
            assert!(out.ok(), "{out:?} {}", h.sshd_log());
            assert_eq!(out.stdout.trim(), format!("node{} /bin/sh 0", h.index()));
            assert_eq!(read(&h.root_dir().join("who")).trim(), out.stdout.trim());
            assert!(h.address().starts_with(&format!("10.213.{k}.")));
        }
        assert!(!Path::new("/srv/node/who").exists(), "the machine's /srv/node was written");
        let out = hosts.hosts()[0].exec("exit 7").await;
        assert_eq!(out.status, 7);
        // The machine's passwd still gives root its own shell.
        assert!(
            read(Path::new("/etc/passwd")).lines().any(|l| l.starts_with("root:") && !l.ends_with("/bin/sh"))
        );
        drop(hosts);
        assert!(!output(&["ip", "netns", "list"]).contains(&netns));
        assert!(!output(&["ip", "-o", "link", "show"]).contains(&format!("rrsbr{k}:")));
    }

    #[test]
    fn a_panicking_test_leaves_nothing_behind() {
        let payload = std::thread::spawn(|| {
            let hosts = SshHosts::start(1);
            panic!("{}", hosts.hosts()[0].netns());
        })
        .join()
        .unwrap_err();
        let netns = payload.downcast_ref::<String>().expect("the netns name");
        assert!(netns.starts_with("rrs-"), "{netns}");
        assert!(!output(&["ip", "netns", "list"]).contains(netns.as_str()));
    }

    #[tokio::test]
    async fn a_cut_link_makes_a_host_unreachable_and_a_new_host_key_is_served() {
        let hosts = SshHosts::start(1);
        let h = &hosts.hosts()[0];
        let old = h.host_public_key();
        h.set_link(false);
        let out = h.exec("true").await;
        assert_ne!(out.status, 0);
        h.set_link(true);
        let new = h.regenerate_host_key();
        assert_ne!(old, new);
        let out = h.exec("true").await;
        assert!(out.ok(), "{out:?}");
        assert!(hosts.known_hosts().contains(&new));
    }
}
