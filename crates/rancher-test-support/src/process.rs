//! A program under test as a child process whose stdout and stderr go to a log file the test can read
//! (and print when it fails); killed when dropped, so a failed test leaves nothing running.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// A log file's text without terminal colour codes.
pub fn read_log(path: &Path) -> String {
    let raw = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A child process logging to a file; killed on drop.
pub struct Proc {
    /// The process.
    pub child: Child,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
}

impl Proc {
    /// Spawns `cmd` with stdout and stderr to `log` (created or truncated) and no stdin.
    ///
    /// # Panics
    /// When the log cannot be created or the program cannot be started.
    pub fn spawn(mut cmd: Command, log: &Path) -> Proc {
        let f = std::fs::File::create(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        cmd.stdout(Stdio::from(f.try_clone().expect("clone the log file")))
            .stderr(Stdio::from(f))
            .stdin(Stdio::null());
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        Proc { child, log: log.to_owned() }
    }

    /// The log so far, without colour codes.
    pub fn log_text(&self) -> String {
        read_log(&self.log)
    }

    /// Sends signal `sig` (`"TERM"`, `"KILL"`, `"STOP"`, …) with `kill(1)`.
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill").arg(format!("-{sig}")).arg(self.child.id().to_string()).status();
    }

    /// Waits for the process to exit; `None` when it is still running after `wait`.
    pub async fn exit_within(&mut self, wait: Duration) -> Option<ExitStatus> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return Some(st);
            }
            if tokio::time::Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL, and wait (briefly) for the exit.
    pub async fn kill9(mut self) {
        self.signal("KILL");
        let _ = self.exit_within(Duration::from_secs(10)).await;
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
