//! Loopback ports for programs under test that cannot report the port they bound (etcd, slapd,
//! nginx, an OIDC provider). Programs that can say which port they got (`rancher-server`,
//! `rancher-sim`) should bind port 0 instead.

use std::fs::{File, OpenOptions};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

/// Ports handed out: below Linux's ephemeral range (32768–60999 by default), so no `bind(0)` and no
/// outgoing connection of another test is ever given one of them.
const RANGE: std::ops::Range<u16> = 20_000..32_000;

/// The reservations this process holds: a reserved port's lock file stays locked until the process
/// (the test) exits, so no other test process is handed the same port meanwhile.
static HELD: Mutex<Vec<File>> = Mutex::new(Vec::new());

fn lock_dir() -> PathBuf {
    std::env::temp_dir().join("rancher-rs-test-ports")
}

/// A loopback port that is free now and reserved for this test process until it exits.
///
/// Picking a port by binding port 0 and releasing it races: between the release and the program's own
/// bind, the kernel can give the same port to another test's `bind(0)` or connection, and another test
/// can pick it the same way. Here each port comes from [`RANGE`], outside the kernel's ephemeral range,
/// and is claimed with an exclusive lock on a file named after it, which every test process honours.
///
/// # Panics
/// When the lock directory cannot be made, or no port in the range is free.
pub fn free_port() -> u16 {
    let dir = lock_dir();
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let span = RANGE.end - RANGE.start;
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let start = (std::process::id() ^ nanos) % u32::from(span);
    for i in 0..u32::from(span) {
        let port = RANGE.start + u16::try_from((start + i) % u32::from(span)).unwrap_or(0);
        let path = dir.join(format!("{port}.lock"));
        let Ok(file) = OpenOptions::new().create(true).truncate(false).write(true).open(&path) else {
            continue;
        };
        if file.try_lock().is_err() {
            continue; // another test process holds it
        }
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue; // something outside the tests has it
        }
        HELD.lock().unwrap_or_else(PoisonError::into_inner).push(file);
        return port;
    }
    panic!("no free port in {RANGE:?}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_bindable_distinct_and_outside_the_ephemeral_range() {
        let ports: Vec<u16> = (0..20).map(|_| free_port()).collect();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len(), "{ports:?}");
        for p in ports {
            assert!(RANGE.contains(&p), "{p}");
            TcpListener::bind(("127.0.0.1", p)).unwrap();
        }
    }

    #[test]
    fn a_port_reserved_by_another_process_is_not_handed_out() {
        // The lock is per open file description: a second open of the same lock file, as another
        // process would make, cannot take it while this process holds it.
        let p = free_port();
        let other = OpenOptions::new().write(true).open(lock_dir().join(format!("{p}.lock"))).unwrap();
        assert!(other.try_lock().is_err());
    }
}
