//! The checks a plan passes before anything of it touches the host: every path absolute, without
//! `..`, inside an allowed root; process names usable as file names and unique; contents decodable.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use base64::Engine;
use rancher_provision::plan::NodePlan;

/// Why a plan was refused; the message names the offending path, process or field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("plan refused: {0}")]
pub(crate) struct PlanRefused(pub(crate) String);

/// Longest process name accepted (it names a log file).
const MAX_NAME_LEN: usize = 63;

/// `path` is absolute, has no `..` and lies inside one of `roots`.
fn check_path(what: &str, path: &str, roots: &[PathBuf]) -> Result<PathBuf, PlanRefused> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(PlanRefused(format!("{what} {path:?} is not an absolute path")));
    }
    if p.components().any(|c| matches!(c, Component::ParentDir)) || path.contains('\0') {
        return Err(PlanRefused(format!("{what} {path:?} contains \"..\" or a NUL")));
    }
    if !roots.iter().any(|r| p.starts_with(r)) {
        let roots: Vec<_> = roots.iter().map(|r| r.display().to_string()).collect();
        return Err(PlanRefused(format!("{what} {path:?} lies outside the allowed roots {roots:?}")));
    }
    Ok(p.to_path_buf())
}

fn check_name(name: &str) -> Result<(), PlanRefused> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(PlanRefused(format!(
            "process name {name:?} must be 1..={MAX_NAME_LEN} of [A-Za-z0-9._-], not starting with '.'"
        )))
    }
}

/// Checks `plan` against the allowed `roots`.
///
/// # Errors
/// [`PlanRefused`] naming the first offending path or process.
pub(crate) fn check(plan: &NodePlan, roots: &[PathBuf]) -> Result<(), PlanRefused> {
    if plan.revision.trim().is_empty() {
        return Err(PlanRefused("the plan has no revision".into()));
    }
    let mut paths = HashSet::new();
    for f in &plan.files {
        let p = check_path("file", &f.path, roots)?;
        if p.file_name().is_none() || f.path.ends_with('/') {
            return Err(PlanRefused(format!("file {:?} names a directory, not a file", f.path)));
        }
        if !paths.insert(p) {
            return Err(PlanRefused(format!("file {:?} appears twice", f.path)));
        }
        if f.mode > 0o7777 {
            return Err(PlanRefused(format!("file {:?}: mode {:o} is not a file mode", f.path, f.mode)));
        }
        if base64::engine::general_purpose::STANDARD.decode(&f.content).is_err() {
            return Err(PlanRefused(format!("file {:?}: content is not base64", f.path)));
        }
    }
    let mut names = HashSet::new();
    for p in &plan.processes {
        check_name(&p.name)?;
        if !names.insert(p.name.as_str()) {
            return Err(PlanRefused(format!("process {:?} appears twice", p.name)));
        }
        check_path(&format!("process {:?}: binary", p.name), &p.binary, roots)?;
        for (k, v) in &p.env {
            if k.is_empty() || k.contains(['=', '\0']) || v.contains('\0') {
                return Err(PlanRefused(format!(
                    "process {:?}: environment variable {k:?} is malformed",
                    p.name
                )));
            }
        }
        if p.args.iter().any(|a| a.contains('\0')) {
            return Err(PlanRefused(format!("process {:?}: an argument holds a NUL", p.name)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rancher_provision::plan::{PlanFile, PlanProcess};

    use super::*;

    fn plan(files: &[&str], binary: &str) -> NodePlan {
        NodePlan {
            revision: "r1".into(),
            files: files
                .iter()
                .map(|p| PlanFile { path: (*p).into(), content: "aGk=".into(), mode: 0o644 })
                .collect(),
            processes: vec![PlanProcess { name: "etcd".into(), binary: binary.into(), ..Default::default() }],
        }
    }

    #[test]
    fn paths_must_be_absolute_clean_and_inside_the_roots() {
        let roots = [PathBuf::from("/etc/kubernetes"), PathBuf::from("/usr/bin")];
        assert_eq!(check(&plan(&["/etc/kubernetes/ssl/ca.pem"], "/usr/bin/etcd"), &roots), Ok(()));
        let err = |files: &[&str], bin: &str| check(&plan(files, bin), &roots).unwrap_err().to_string();
        assert!(
            err(&["etc/kubernetes/x"], "/usr/bin/etcd").contains("\"etc/kubernetes/x\" is not an absolute")
        );
        assert!(
            err(&["/etc/kubernetes/../shadow"], "/usr/bin/etcd").contains("\"/etc/kubernetes/../shadow\"")
        );
        let outside = err(&["/etc/passwd"], "/usr/bin/etcd");
        assert!(outside.contains("\"/etc/passwd\" lies outside the allowed roots"), "{outside}");
        // A sibling that shares a prefix is not inside the root.
        assert!(err(&["/etc/kubernetes-evil/x"], "/usr/bin/etcd").contains("outside"));
        assert!(err(&[], "/bin/sh").contains("binary \"/bin/sh\" lies outside"));
        assert!(err(&["/etc/kubernetes/a", "/etc/kubernetes/a"], "/usr/bin/etcd").contains("twice"));
    }

    #[test]
    fn names_env_and_contents_are_checked() {
        let roots = [PathBuf::from("/")];
        let mut p = plan(&[], "/usr/bin/etcd");
        p.processes[0].name = "../x".into();
        assert!(check(&p, &roots).unwrap_err().to_string().contains("process name \"../x\""));
        let mut p = plan(&[], "/usr/bin/etcd");
        p.processes.push(p.processes[0].clone());
        assert!(check(&p, &roots).unwrap_err().to_string().contains("\"etcd\" appears twice"));
        let mut p = plan(&[], "/usr/bin/etcd");
        p.processes[0].env.insert("A=B".into(), "x".into());
        assert!(check(&p, &roots).unwrap_err().to_string().contains("\"A=B\" is malformed"));
        let mut p = plan(&["/x"], "/usr/bin/etcd");
        p.files[0].content = "not base64!".into();
        assert!(check(&p, &roots).unwrap_err().to_string().contains("\"/x\": content is not base64"));
        let mut p = plan(&[], "/usr/bin/etcd");
        p.revision.clear();
        assert!(check(&p, &roots).is_err());
    }
}
