//! The resident memory of processes while something runs: `VmRSS` read from `/proc` at a fixed
//! period, keeping each process's peak.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::rke::status_kb;

/// The resident memory of `pid` now, in kB (0 when it cannot be read).
pub fn rss_kb(pid: u32) -> u64 {
    status_kb(pid, "VmRSS:").unwrap_or(0)
}

/// The anonymous (heap, stacks) and file-backed (the program's own pages, libraries) parts of
/// the resident memory of `pid`, in kB.
pub fn rss_split_kb(pid: u32) -> (u64, u64) {
    (status_kb(pid, "RssAnon:").unwrap_or(0), status_kb(pid, "RssFile:").unwrap_or(0))
}

/// Samples the resident memory of some processes until stopped.
pub struct PeakRss {
    stop: CancellationToken,
    task: JoinHandle<Vec<u64>>,
}

impl PeakRss {
    /// Starts sampling `pids` every `every`.
    pub fn start(pids: Vec<u32>, every: Duration) -> PeakRss {
        let stop = CancellationToken::new();
        let until = stop.clone();
        let task = tokio::spawn(async move {
            let mut peak = vec![0; pids.len()];
            let mut tick = tokio::time::interval(every);
            loop {
                for (p, pid) in peak.iter_mut().zip(&pids) {
                    *p = (*p).max(rss_kb(*pid));
                }
                tokio::select! {
                    () = until.cancelled() => return peak,
                    _ = tick.tick() => {}
                }
            }
        });
        PeakRss { stop, task }
    }

    /// Stops sampling; each process's peak in kB, in the order of the pids given to `start`.
    pub async fn stop(self) -> Vec<u64> {
        self.stop.cancel();
        self.task.await.unwrap_or_default()
    }
}
