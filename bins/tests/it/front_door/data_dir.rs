//! Row 11: the data directory holds password and token hashes, the secrets key (which seals the CA's
//! and the registration key in the store) and the serving certificate's key, so only the server's
//! user may read it — on a fresh start, and after a start on files left readable.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common::{ADMIN_PASSWORD, Api, ServerProc};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

const PRIVATE: [(&str, u32); 5] =
    [("", 0o700), ("rancher.redb", 0o600), ("secrets.key", 0o600), ("tls", 0o700), ("tls/server.key", 0o600)];

fn assert_private(data: &Path, when: &str) {
    for (file, want) in PRIVATE {
        let got = mode(&data.join(file));
        assert_eq!(got, want, "{when}: {}/{file} is {got:o}, not {want:o}", data.display());
    }
}

/// Stops the server once it serves: rancher-server installs its SIGTERM handler only when it starts
/// serving, just after it prints its address.
async fn stop(server: ServerProc) {
    assert_eq!(Api::new(&server).get("/ping").await.code, 200);
    server.stop();
}

// Two threads: `stop` blocks one while the client's connection task closes on the other (the
// server drains open connections before it exits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_directory_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = ServerProc::start(&data, 0, Some(ADMIN_PASSWORD), &[]);
    assert_private(&data, "a fresh start");
    stop(server).await;

    // As an older version (or a `cp -r`, or an operator's umask) left them: world-readable.
    for (file, _) in PRIVATE {
        let path = data.join(file);
        set_mode(&path, if path.is_dir() { 0o755 } else { 0o644 });
    }
    let server = ServerProc::start(&data, 0, Some(ADMIN_PASSWORD), &[]);
    assert_private(&data, "a start on loose modes");
    stop(server).await;
}
