//! The node agent's state directory: the plan applied last (`plan.json`), one record per process it
//! started (`processes.json`: pid, start time, command line, spec) so that after a restart it adopts
//! what still runs, and the processes' logs (`logs/<name>.log`). Everything is written atomically and
//! readable by root only: the plan holds private keys.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rancher_provision::plan::NodePlan;
use serde::{Deserialize, Serialize};
use tracing::warn;

/// What identifies a process the node agent started, and what it was started as.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Record {
    /// Its pid.
    pub(crate) pid: u32,
    /// Field 22 of `/proc/<pid>/stat` when it was started.
    pub(crate) start_ticks: u64,
    /// `/proc/<pid>/cmdline` right after it was started.
    pub(crate) cmdline: Vec<String>,
    /// The plan's binary, arguments and environment it was started with.
    pub(crate) spec: Spec,
    /// How often it was restarted.
    #[serde(default)]
    pub(crate) restarts: u32,
    /// When it started (RFC 3339).
    #[serde(default)]
    pub(crate) started_at: Option<String>,
}

/// The part of a plan's process that, changed, means the process must be restarted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Spec {
    pub(crate) binary: String,
    pub(crate) args: Vec<String>,
    pub(crate) env: BTreeMap<String, String>,
}

impl From<&rancher_provision::plan::PlanProcess> for Spec {
    fn from(p: &rancher_provision::plan::PlanProcess) -> Self {
        Spec { binary: p.binary.clone(), args: p.args.clone(), env: p.env.clone() }
    }
}

/// The state directory.
#[derive(Clone, Debug)]
pub(crate) struct StateDir {
    root: PathBuf,
}

const PLAN_FILE: &str = "plan.json";
const RECORDS_FILE: &str = "processes.json";

impl StateDir {
    /// Opens (creating, mode 0700) the state directory and its `logs`.
    ///
    /// # Errors
    /// A message naming the directory that could not be made.
    pub(crate) fn open(root: &Path) -> Result<StateDir, String> {
        for dir in [root.to_path_buf(), root.join("logs")] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|e| format!("state directory {}: {e}", dir.display()))?;
        }
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("state directory {}: {e}", root.display()))?;
        Ok(StateDir { root: root.to_path_buf() })
    }

    /// Where process `name` logs.
    pub(crate) fn log_path(&self, name: &str) -> PathBuf {
        self.root.join("logs").join(format!("{name}.log"))
    }

    /// The plan applied last, if any (an unreadable one is reported and ignored).
    pub(crate) fn load_plan(&self) -> Option<NodePlan> {
        self.load(PLAN_FILE)
    }

    /// Records the plan as applied.
    pub(crate) fn save_plan(&self, plan: &NodePlan) -> Result<(), String> {
        self.save(PLAN_FILE, plan)
    }

    /// The records of the processes started, by name.
    pub(crate) fn load_records(&self) -> BTreeMap<String, Record> {
        self.load(RECORDS_FILE).unwrap_or_default()
    }

    /// Replaces the records.
    pub(crate) fn save_records(&self, records: &BTreeMap<String, Record>) -> Result<(), String> {
        self.save(RECORDS_FILE, records)
    }

    fn load<T: serde::de::DeserializeOwned>(&self, name: &str) -> Option<T> {
        let path = self.root.join(name);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                warn!(path = %path.display(), error = %e, "cannot read the node agent's state");
                return None;
            }
        };
        serde_json::from_slice(&bytes)
            .inspect_err(
                |e| warn!(path = %path.display(), error = %e, "ignoring unreadable node agent state"),
            )
            .ok()
    }

    fn save<T: Serialize>(&self, name: &str, value: &T) -> Result<(), String> {
        let path = self.root.join(name);
        let tmp = self.root.join(format!(".{name}.tmp"));
        let bytes = serde_json::to_vec(value).map_err(|e| format!("encoding {name}: {e}"))?;
        let result = (|| {
            let mut f =
                std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        })();
        result.map_err(|e| format!("writing {}: {e}", path.display()))
    }
}

/// The last `lines` lines of `path` (at most 4 KiB read), for an error message.
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else { return String::new() };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(4096)));
    let mut buf = Vec::new();
    let _ = f.take(4096).read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_and_records_round_trip_readable_by_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("state");
        let s = StateDir::open(&root).unwrap();
        assert_eq!(std::fs::metadata(&root).unwrap().permissions().mode() & 0o777, 0o700);
        assert!(s.load_plan().is_none() && s.load_records().is_empty());
        let plan = NodePlan { revision: "r1".into(), ..Default::default() };
        s.save_plan(&plan).unwrap();
        assert_eq!(s.load_plan(), Some(plan));
        assert_eq!(std::fs::metadata(root.join(PLAN_FILE)).unwrap().permissions().mode() & 0o777, 0o600);
        let rec = Record {
            pid: 42,
            start_ticks: 7,
            cmdline: vec!["/bin/x".into()],
            spec: Spec { binary: "/bin/x".into(), ..Default::default() },
            restarts: 1,
            started_at: None,
        };
        s.save_records(&BTreeMap::from([("x".to_string(), rec.clone())])).unwrap();
        assert_eq!(s.load_records().get("x"), Some(&rec));
        std::fs::write(root.join(RECORDS_FILE), b"{not json").unwrap();
        assert!(s.load_records().is_empty(), "an unreadable file is ignored, not fatal");
    }

    #[test]
    fn log_tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l.log");
        std::fs::write(&p, "one\ntwo\n\nthree\nfour\n").unwrap();
        assert_eq!(log_tail(&p, 2), "three\nfour");
        assert_eq!(log_tail(&dir.path().join("none"), 2), "");
    }
}
