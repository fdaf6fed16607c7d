//! What one stalled stream costs the others: 8 streams' bulk throughput with and without a 9th stream
//! whose reader stopped (its window full), per path. Measured as interleaved repeats — each repeat
//! runs both cases on every path, alternating which case goes first — and reported as the median of
//! the per-repeat slowdowns with their range, since a single pair swings with the machine's load.

use std::time::Duration;

use anyhow::Result;
use tokio::io::AsyncReadExt;

use super::{Dests, Path, bulk};

/// Throughput of 8 streams, optionally while a 9th stream's reader has stopped.
async fn with_stall(path: &Path, d: Dests, total: usize, stall: bool) -> Result<f64> {
    let _stalled = if stall {
        let mut s = path.open(d.firehose).await?;
        let mut first = [0u8; 1];
        s.read_exact(&mut first).await?;
        tokio::time::sleep(Duration::from_millis(200)).await; // let its window fill
        Some(s)
    } else {
        None
    };
    bulk(path, d.discard, 8, total).await
}

/// The median, the minimum and the maximum of `v` (not empty).
fn median_and_range(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
    (median, v[0], v[n - 1])
}

/// Measures `repeats` interleaved (without, with) pairs on each of `paths` (`total` bytes per
/// bulk run) and prints the table.
pub(super) async fn table(
    paths: &[&Path],
    dests: &dyn Fn(&Path) -> Dests,
    total: usize,
    repeats: usize,
) -> Result<()> {
    let repeats = repeats.max(1);
    println!(
        "One stalled stream: 8 streams × {} MiB total, with and without a 9th stream whose reader stopped;",
        total >> 20
    );
    println!("{repeats} interleaved repeats per path, median (range) of the repeats");
    println!("{:<18} {:>22} {:>22} {:>24}", "path", "without MiB/s", "with MiB/s", "slowdown");
    let mut pairs = vec![Vec::new(); paths.len()];
    for repeat in 0..repeats {
        for (i, p) in paths.iter().enumerate() {
            // Alternate the order so neither case always runs second.
            let pair = if repeat % 2 == 0 {
                let without = with_stall(p, dests(p), total, false).await?;
                (without, with_stall(p, dests(p), total, true).await?)
            } else {
                let with = with_stall(p, dests(p), total, true).await?;
                (with_stall(p, dests(p), total, false).await?, with)
            };
            pairs[i].push(pair);
        }
    }
    for (p, pairs) in paths.iter().zip(pairs) {
        let (w0, w0_lo, w0_hi) = median_and_range(pairs.iter().map(|p| p.0).collect());
        let (w1, w1_lo, w1_hi) = median_and_range(pairs.iter().map(|p| p.1).collect());
        let (s, s_lo, s_hi) =
            median_and_range(pairs.iter().map(|(w0, w1)| (1.0 - w1 / w0) * 100.0).collect());
        println!(
            "{:<18} {:>22} {:>22} {:>24}",
            p.name(),
            format!("{w0:.0} ({w0_lo:.0}–{w0_hi:.0})"),
            format!("{w1:.0} ({w1_lo:.0}–{w1_hi:.0})"),
            format!("{s:.1}% ({s_lo:.1} to {s_hi:.1})"),
        );
    }
    println!(
        "(target: ≤ 5 % median slowdown; a negative slowdown is a run with the stall that went faster)\n"
    );
    Ok(())
}
