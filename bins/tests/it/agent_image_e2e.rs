//! The agent's container image, built without a container engine: `scripts/agent-image.sh` packs the
//! `rancher-agent` cargo built for these tests into an OCI layout; this test reads the layout with its
//! own code (every blob's digest and size checked, the config's diff ids against the unpacked layers),
//! unpacks the layers into a root filesystem, and runs the agent from there — `chroot`, as the image's
//! non-root user, with only the image's environment — against a `rancher-sim` imported into a real
//! `rancher-server`: the cluster becomes active, and the manifest names the image that was built.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::import_support::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The blob `digest` of the layout, checked against its digest and `size`.
fn blob(layout: &Path, desc: &Value) -> Vec<u8> {
    let digest = desc["digest"].as_str().unwrap_or_else(|| panic!("descriptor without digest: {desc}"));
    let hex = digest.strip_prefix("sha256:").unwrap_or_else(|| panic!("not a sha256 digest: {digest}"));
    let bytes = std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap();
    assert_eq!(format!("sha256:{}", hex::encode(Sha256::digest(&bytes))), digest, "blob content");
    assert_eq!(Some(bytes.len() as u64), desc["size"].as_u64(), "size of {digest}");
    bytes
}

/// A NUL-terminated field of a tar header.
fn field(h: &[u8]) -> String {
    let end = h.iter().position(|&b| b == 0).unwrap_or(h.len());
    String::from_utf8_lossy(&h[..end]).into_owned()
}

fn octal(h: &[u8]) -> u64 {
    let s = field(h);
    u64::from_str_radix(s.trim(), 8).unwrap_or_else(|_| panic!("bad octal field {s:?}"))
}

/// `path` of a pax extended header, if it sets one.
fn pax_path(records: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(records);
    text.lines()
        .find_map(|r| r.split_once(' ').and_then(|(_, kv)| kv.strip_prefix("path=")).map(str::to_owned))
}

/// Unpacks an uncompressed tar (ustar/pax: files, directories, symlinks) under `root`, refusing
/// entries that would land outside it. Returns the paths unpacked.
fn untar(tar: &[u8], root: &Path) -> Vec<String> {
    let mut at = 0;
    let mut next_path: Option<String> = None;
    let mut paths = Vec::new();
    while at + 512 <= tar.len() {
        let h = &tar[at..at + 512];
        if h.iter().all(|&b| b == 0) {
            break;
        }
        // The checksum counts its own field as spaces.
        let sum: u64 = h
            .iter()
            .enumerate()
            .map(|(i, &b)| u64::from(if (148..156).contains(&i) { b' ' } else { b }))
            .sum();
        assert_eq!(octal(&h[148..156]), sum, "header checksum");
        let size = usize::try_from(octal(&h[124..136])).unwrap();
        let data = &tar[at + 512..at + 512 + size];
        at += 512 + size.div_ceil(512) * 512;
        let kind = h[156];
        if kind == b'x' {
            next_path = pax_path(data);
            continue;
        }
        if kind == b'g' {
            continue;
        }
        let prefix = field(&h[345..500]);
        let name = field(&h[0..100]);
        let path =
            next_path.take().unwrap_or(if prefix.is_empty() { name } else { format!("{prefix}/{name}") });
        let rel = path.trim_start_matches("./").trim_end_matches('/').to_owned();
        assert!(
            !rel.starts_with('/') && !rel.split('/').any(|c| c == ".." || c.starts_with(".wh.")),
            "unexpected layer entry {path:?}"
        );
        let target = root.join(&rel);
        let mode = u32::try_from(octal(&h[100..108])).unwrap();
        use std::os::unix::fs::PermissionsExt;
        match kind {
            b'0' | 0 => {
                std::fs::create_dir_all(target.parent().unwrap()).unwrap();
                std::fs::write(&target, data).unwrap();
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode)).unwrap();
            }
            b'5' => {
                std::fs::create_dir_all(&target).unwrap();
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode)).unwrap();
            }
            b'2' => std::os::unix::fs::symlink(field(&h[157..257]), &target).unwrap(),
            other => panic!("layer entry {path:?} of tar type {other}"),
        }
        paths.push(rel);
    }
    paths
}

/// What the image's config says to run.
struct Image {
    root: PathBuf,
    entrypoint: Vec<String>,
    user: String,
    env: Vec<(String, String)>,
    files: Vec<String>,
}

/// Reads the OCI layout at `layout`, checks it, and unpacks the image tagged `tag` into `root`.
fn unpack(layout: &Path, tag: &str, root: &Path) -> Image {
    let oci_layout: Value =
        serde_json::from_slice(&std::fs::read(layout.join("oci-layout")).unwrap()).unwrap();
    assert_eq!(oci_layout["imageLayoutVersion"], "1.0.0");
    let index: Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["schemaVersion"], 2);
    let manifests = index["manifests"].as_array().unwrap();
    let desc = manifests
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no manifest tagged {tag} in {index}"));
    assert_eq!(desc["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(desc["platform"]["architecture"], "amd64");
    let manifest: Value = serde_json::from_slice(&blob(layout, desc)).unwrap();
    assert_eq!(manifest["config"]["mediaType"], "application/vnd.oci.image.config.v1+json");
    let config: Value = serde_json::from_slice(&blob(layout, &manifest["config"])).unwrap();
    assert_eq!((config["os"].as_str(), config["architecture"].as_str()), (Some("linux"), Some("amd64")));

    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), diff_ids.len());
    std::fs::create_dir_all(root).unwrap();
    let mut files = Vec::new();
    for (layer, diff_id) in layers.iter().zip(diff_ids) {
        assert_eq!(layer["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip");
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(blob(layout, layer).as_slice()).read_to_end(&mut tar).unwrap();
        assert_eq!(&format!("sha256:{}", hex::encode(Sha256::digest(&tar))), diff_id, "diff id");
        files.extend(untar(&tar, root));
    }
    let c = &config["config"];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array().map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect()).unwrap_or_default()
    };
    let env = strings(&c["Env"])
        .into_iter()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect();
    Image {
        root: root.to_owned(),
        entrypoint: strings(&c["Entrypoint"]),
        user: c["User"].as_str().unwrap_or_default().to_owned(),
        env,
        files,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_built_image_unpacks_and_its_agent_imports_a_sim() {
    install_crypto();
    let uid = Command::new("id").arg("-u").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&uid.stdout).trim(), "0", "chroot needs root");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("agent-image");

    // Build: the daemonless script, from the agent the tests use (a release build takes too long here).
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let built = Command::new("bash")
        .arg(repo.join("scripts/agent-image.sh"))
        .args(["--agent-bin", env!("CARGO_BIN_EXE_rancher-agent"), "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let said =
        format!("{}{}", String::from_utf8_lossy(&built.stdout), String::from_utf8_lossy(&built.stderr));
    assert!(built.status.success(), "agent-image.sh: {said}");
    assert!(said.contains(&format!("image {}", rancher::protocol::IMAGE_REF)), "{said}");
    assert!(out.join("rancher-agent.oci.tar").metadata().unwrap().len() > 0);

    // Read it back: the tag the server deploys by default, a non-root user, the agent and what it needs.
    let (_, tag) = rancher::protocol::IMAGE_REF.rsplit_once(':').unwrap();
    let image = unpack(&out.join("oci"), tag, &dir.path().join("rootfs"));
    assert_eq!(image.entrypoint, ["/usr/local/bin/rancher-agent"]);
    let user_id = image.user.split(':').next().unwrap().to_owned();
    assert!(!user_id.is_empty() && user_id != "0" && user_id != "root", "user {:?}", image.user);
    let passwd = std::fs::read_to_string(image.root.join("etc/passwd")).unwrap();
    assert!(passwd.lines().any(|l| l.split(':').nth(2) == Some(&user_id)), "{passwd}");
    let ca = std::fs::read_to_string(image.root.join("etc/ssl/certs/ca-certificates.crt")).unwrap();
    assert!(ca.contains("BEGIN CERTIFICATE"));
    assert!(image.files.iter().any(|f| f.contains("ld-linux")), "glibc's loader: {:?}", image.files);
    assert!(image.files.iter().any(|f| f.ends_with("/libc.so.6")), "{:?}", image.files);

    // A server, a sim imported into it, and its manifest naming the image just built.
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let server_log = dir.path().join("server.log");
    let server = Server::start(&dir.path().join("data"), 0, &server_log, &[]).await;
    login_admin(&home, &server.url);
    let sim = rancher_sim::Sim::builder().name("img").nodes(2).start().await.unwrap();
    let status = create_imported(&server.url, &login(&server.url).await, "img").await;
    let url = status["manifestUrl"].as_str().unwrap().to_owned();
    let manifest = insecure_client().get(&url).send().await.unwrap().text().await.unwrap();
    assert!(manifest.contains(&format!("image: \"{}\"", rancher::protocol::IMAGE_REF)), "{manifest}");
    let kc = dir.path().join("img.kubeconfig");
    std::fs::write(&kc, sim.kubeconfig_yaml()).unwrap();
    let env = apply_manifest(&url, &kc, dir.path()).await;

    // The agent from the unpacked image: chroot, the image's user and environment only.
    std::fs::copy(&kc, image.root.join("kubeconfig")).unwrap();
    // By path: the child's PATH is the image's.
    let chroot = ["/usr/sbin/chroot", "/usr/bin/chroot", "/sbin/chroot"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("chroot (coreutils) is installed");
    let mut cmd = Command::new(chroot);
    cmd.arg(format!("--userspec={}", image.user))
        .arg(&image.root)
        .args(&image.entrypoint)
        .args(["--kubeconfig", "/kubeconfig"])
        .env_clear()
        .envs(image.env.iter().map(|(k, v)| (k, v)))
        .env("RUST_LOG", "info")
        .env("CATTLE_SERVER", &env.server)
        .env("CATTLE_CA_CHECKSUM", &env.checksum)
        .env("CATTLE_TOKEN", &env.token)
        .env("CATTLE_CLUSTER", "true");
    let agent_log = dir.path().join("agent.log");
    let agent = Proc::spawn(cmd, &agent_log);
    let row = wait_state(&home, "img", "active", WAIT).await;
    assert_eq!(row[3], rancher_sim::DEFAULT_VERSION, "{row:?}");
    assert_eq!(row[4], "2", "{row:?}");

    // Logs written to files carry no terminal colour codes.
    for log in [&agent_log, &server_log] {
        let raw = std::fs::read_to_string(log).unwrap();
        assert!(!raw.contains('\u{1b}'), "colour codes in {}: {raw}", log.display());
        assert!(raw.contains("INFO"), "{raw}");
    }
    agent.kill9().await;
    server.stop().await;
    sim.shutdown().await;
}
