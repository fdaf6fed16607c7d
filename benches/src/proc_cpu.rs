//! CPU time other processes have used, from `/proc/<pid>/stat`: user + system time of every thread,
//! those that exited included, in clock ticks (`getconf CLK_TCK`, 100 on Linux: a resolution of 10 ms,
//! so a figure per request wants thousands of requests).

use std::sync::OnceLock;

use anyhow::{Context, Result};

/// Clock ticks per second of `/proc`'s times.
fn ticks_per_second() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Seconds of CPU (user + system) process `pid` has used so far.
///
/// # Errors
/// When the process is gone or its `stat` cannot be read.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("process {pid}"))?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("/proc/<pid>/stat without a command")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime and stime are fields 14 and 15.
    let field = |n: usize| -> Result<f64> {
        fields.get(n - 3).context("/proc/<pid>/stat too short")?.parse::<f64>().context("a tick count")
    };
    Ok((field(14)? + field(15)?) / ticks_per_second())
}

/// The CPU seconds of several processes, read together.
#[derive(Clone, Debug)]
pub struct CpuSnapshot(Vec<f64>);

impl CpuSnapshot {
    /// Reads the CPU time of each of `pids`.
    ///
    /// # Errors
    /// When one of them is gone.
    pub fn take(pids: &[u32]) -> Result<CpuSnapshot> {
        Ok(CpuSnapshot(pids.iter().map(|&p| cpu_seconds(p)).collect::<Result<_>>()?))
    }

    /// Microseconds each process spent since `earlier`, per one of `requests`.
    pub fn micros_per_request_since(&self, earlier: &CpuSnapshot, requests: usize) -> Vec<f64> {
        self.0.iter().zip(&earlier.0).map(|(now, then)| (now - then) * 1e6 / requests.max(1) as f64).collect()
    }
}
