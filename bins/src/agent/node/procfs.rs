//! What `/proc` says about a pid: whether it is alive (a zombie is not), when it started (field 22 of
//! `/proc/<pid>/stat`, clock ticks since boot) and its command line. Together they identify one
//! process across a restart of the node agent: a recycled pid has another start time.

use std::path::PathBuf;

/// A process as `/proc` shows it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ProcInfo {
    /// Field 22 of `/proc/<pid>/stat`.
    pub(crate) start_ticks: u64,
    /// `/proc/<pid>/cmdline`, split at NULs.
    pub(crate) cmdline: Vec<String>,
}

fn proc_dir(pid: u32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}"))
}

/// The state letter and start time from the text of `/proc/<pid>/stat`. The command name (field 2)
/// is in parentheses and may hold spaces and parentheses itself: fields are counted after the last `)`.
pub(crate) fn parse_stat(stat: &str) -> Option<(char, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    // Fields 3 (state) … ; start time is field 22, i.e. the 20th after the command name.
    let state = fields.next()?.chars().next()?;
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// The live (not zombie, not dead) process `pid`, or `None`.
pub(crate) fn live(pid: u32) -> Option<ProcInfo> {
    let stat = std::fs::read_to_string(proc_dir(pid).join("stat")).ok()?;
    let (state, start_ticks) = parse_stat(&stat)?;
    if matches!(state, 'Z' | 'X' | 'x') {
        return None;
    }
    let raw = std::fs::read(proc_dir(pid).join("cmdline")).ok()?;
    let cmdline = raw
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    Some(ProcInfo { start_ticks, cmdline })
}

/// True when `pid` is alive and still the process that started at `start_ticks`.
pub(crate) fn is_same(pid: u32, start_ticks: u64) -> bool {
    live(pid).is_some_and(|p| p.start_ticks == start_ticks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let stat = "1234 (a (weird) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 \
                    1000 200 18446744073709551615";
        assert_eq!(parse_stat(stat), Some(('S', 987654)));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
    }

    #[test]
    fn this_process_is_alive_with_a_stable_start_time() {
        let me = std::process::id();
        let info = live(me).expect("this process is alive");
        assert!(info.start_ticks > 0);
        assert!(!info.cmdline.is_empty());
        assert!(is_same(me, info.start_ticks));
        assert!(!is_same(me, info.start_ticks + 1), "another start time is another process");
        assert!(live(u32::MAX - 1).is_none());
    }
}
