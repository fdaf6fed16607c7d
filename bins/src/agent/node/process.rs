//! One process of the plan: starting it detached (its own process group, stdin null, output appended
//! to its log), telling whether it still runs (our child: `try_wait`, which also reaps it; adopted:
//! `/proc` with its start time), and stopping it (SIGTERM, SIGKILL after a grace period).

use std::os::unix::fs::OpenOptionsExt;
use std::process::Stdio;
use std::time::Duration;

use rustix::process::{Pid, Signal};
use tokio::time::Instant;

use super::procfs;
use super::state::{Record, Spec};

/// The `PATH` a process gets; the plan's environment is added to it.
const MIN_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// How long a stopped process has between SIGTERM and SIGKILL.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(10);

/// A running instance of a plan's process.
#[derive(Debug)]
pub(crate) struct Running {
    pub(crate) pid: u32,
    pub(crate) start_ticks: u64,
    pub(crate) cmdline: Vec<String>,
    /// Our child (started by this node agent); `None` once adopted after a restart.
    pub(crate) child: Option<tokio::process::Child>,
    /// When this node agent started or adopted it.
    pub(crate) since: Instant,
}

/// Starts `spec` detached, with its output appended to `log`.
///
/// # Errors
/// A message naming the binary and the step that failed.
pub(crate) async fn start(spec: &Spec, log: &std::path::Path) -> Result<Running, String> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(log)
        .map_err(|e| format!("opening the log {}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| format!("opening the log {}: {e}", log.display()))?;
    let mut cmd = tokio::process::Command::new(&spec.binary);
    cmd.args(&spec.args)
        .env_clear()
        .env("PATH", MIN_PATH)
        .envs(&spec.env)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        // Its own process group: signals to the node agent's group (a terminal's ^C, a service
        // manager's stop of the agent alone) do not reach it, and it outlives the agent.
        .process_group(0)
        .kill_on_drop(false);
    let child = cmd.spawn().map_err(|e| format!("starting {}: {e}", spec.binary))?;
    let pid = child.id().ok_or_else(|| format!("{} exited at once", spec.binary))?;
    let info = settled(pid).await;
    Ok(Running {
        pid,
        start_ticks: info.as_ref().map_or(0, |i| i.start_ticks),
        cmdline: info.map(|i| i.cmdline).unwrap_or_default(),
        child: Some(child),
        since: Instant::now(),
    })
}

/// `/proc`'s view of a process just spawned, once its exec has finished. `spawn` returns as soon as
/// the exec closed the child's close-on-exec descriptors, which is before the kernel has set up the
/// new program's arguments: until then `/proc/<pid>/cmdline` is empty or still the node agent's own.
/// `None` if it exited meanwhile (the next check notices that through the child).
async fn settled(pid: u32) -> Option<procfs::ProcInfo> {
    let own = procfs::live(std::process::id()).map(|i| i.cmdline);
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let info = procfs::live(pid)?;
        if (!info.cmdline.is_empty() && Some(&info.cmdline) != own.as_ref()) || Instant::now() >= deadline {
            return Some(info);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Adopts the process of `record` if it still runs as recorded: the same pid, start time and
/// command line (a recycled pid has another start time).
pub(crate) fn adopt(record: &Record) -> Option<Running> {
    let info = procfs::live(record.pid)?;
    (info.start_ticks == record.start_ticks && info.cmdline == record.cmdline && record.start_ticks != 0)
        .then(|| Running {
            pid: record.pid,
            start_ticks: record.start_ticks,
            cmdline: record.cmdline.clone(),
            child: None,
            since: Instant::now(),
        })
}

impl Running {
    /// `None` while it runs; how it ended once it has (and, for our child, it is reaped).
    pub(crate) fn exited(&mut self) -> Option<String> {
        match &mut self.child {
            Some(child) => match child.try_wait() {
                Ok(Some(status)) => Some(format!("exited with {status}")),
                Ok(None) => None,
                Err(e) => Some(format!("lost track of it: {e}")),
            },
            None => (!procfs::is_same(self.pid, self.start_ticks))
                .then(|| "exited (adopted after a node agent restart: exit status unknown)".to_owned()),
        }
    }

    fn signal(&self, sig: Signal) {
        // Only a process we can still identify is signalled: never a recycled pid.
        if self.child.is_none() && !procfs::is_same(self.pid, self.start_ticks) {
            return;
        }
        let Some(pid) = i32::try_from(self.pid).ok().and_then(Pid::from_raw) else { return };
        // The whole group it leads (it was started as a group leader), else the process alone.
        if rustix::process::kill_process_group(pid, sig).is_err() {
            let _ = rustix::process::kill_process(pid, sig);
        }
    }

    /// Stops it: SIGTERM, then SIGKILL after `grace`; returns once it is gone (or after a further
    /// few seconds, should even SIGKILL not end it).
    pub(crate) async fn stop(mut self, grace: Duration) {
        self.signal(Signal::TERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::warn!(pid = self.pid, "process ignored SIGTERM; killing it");
        self.signal(Signal::KILL);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && self.exited().is_none() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleep_spec(secs: &str) -> Spec {
        Spec { binary: "/bin/sleep".into(), args: vec![secs.into()], ..Default::default() }
    }

    #[tokio::test]
    async fn started_detached_reaped_and_adoptable_only_as_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = start(&sleep_spec("30"), &dir.path().join("s.log")).await.unwrap();
        assert_eq!(r.cmdline, ["/bin/sleep", "30"]);
        assert!(r.exited().is_none());
        // Its own process group.
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", r.pid)).unwrap();
        let pgrp: u32 =
            stat[stat.rfind(')').unwrap() + 1..].split_whitespace().nth(2).unwrap().parse().unwrap();
        assert_eq!(pgrp, r.pid);

        let rec = Record {
            pid: r.pid,
            start_ticks: r.start_ticks,
            cmdline: r.cmdline.clone(),
            spec: sleep_spec("30"),
            restarts: 0,
            started_at: None,
        };
        assert!(adopt(&rec).is_some());
        assert!(adopt(&Record { start_ticks: rec.start_ticks + 1, ..rec.clone() }).is_none(), "recycled pid");
        assert!(adopt(&Record { cmdline: vec!["/bin/other".into()], ..rec.clone() }).is_none());

        let pid = r.pid;
        r.stop(Duration::from_secs(5)).await;
        assert!(procfs::live(pid).is_none(), "stopped and reaped: not even a zombie");
        assert!(adopt(&rec).is_none());
    }

    #[tokio::test]
    async fn an_exit_is_reported_with_its_status() {
        let dir = tempfile::tempdir().unwrap();
        let spec =
            Spec { binary: "/bin/sh".into(), args: vec!["-c".into(), "exit 3".into()], ..Default::default() };
        let mut r = start(&spec, &dir.path().join("x.log")).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let how = loop {
            if let Some(how) = r.exited() {
                break how;
            }
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(how.contains("exit status: 3"), "{how}");
        let err = start(
            &Spec { binary: "/nonexistent/bin".into(), ..Default::default() },
            &dir.path().join("y.log"),
        )
        .await
        .unwrap_err();
        assert!(err.contains("/nonexistent/bin"), "{err}");
    }
}
