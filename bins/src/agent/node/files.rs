//! Writing a plan's files: atomically (a temporary file in the same directory, then a rename), with
//! the plan's mode from the first byte on, parent directories created, unchanged files left alone.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use base64::Engine;
use rancher_provision::plan::PlanFile;

/// Whether a file was written or already held the plan's content and mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Written {
    /// Written now.
    Changed,
    /// Already as planned; not touched.
    Unchanged,
}

/// Writes `file` unless it already holds this content with this mode.
///
/// # Errors
/// A message naming the path and the step that failed.
pub(crate) fn write(file: &PlanFile) -> Result<Written, String> {
    let path = Path::new(&file.path);
    let content = base64::engine::general_purpose::STANDARD
        .decode(&file.content)
        .map_err(|_| format!("file {:?}: content is not base64", file.path))?;
    let mode = file.mode & 0o7777;
    if let Ok(meta) = std::fs::symlink_metadata(path)
        && meta.is_file()
        && meta.permissions().mode() & 0o7777 == mode
        && meta.len() == content.len() as u64
        && std::fs::read(path).is_ok_and(|old| old == content)
    {
        return Ok(Written::Unchanged);
    }
    let parent = path.parent().ok_or_else(|| format!("file {:?} has no parent directory", file.path))?;
    std::fs::create_dir_all(parent)
        .map_err(|e| format!("file {:?}: creating {}: {e}", file.path, parent.display()))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f =
            std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
        // The umask may have narrowed the mode given at creation; a reused temp file kept its old one.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(&content)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("file {:?}: writing: {e}", file.path));
    }
    Ok(Written::Changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &Path, content: &[u8], mode: u32) -> PlanFile {
        PlanFile {
            path: path.to_str().unwrap().into(),
            content: base64::engine::general_purpose::STANDARD.encode(content),
            mode,
        }
    }

    #[test]
    fn writes_with_mode_creates_parents_and_skips_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("a/b/key.pem");
        assert_eq!(write(&file(&key, b"secret", 0o600)).unwrap(), Written::Changed);
        assert_eq!(std::fs::read(&key).unwrap(), b"secret");
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o7777, 0o600);
        let before = std::fs::metadata(&key).unwrap().modified().unwrap();
        assert_eq!(write(&file(&key, b"secret", 0o600)).unwrap(), Written::Unchanged);
        assert_eq!(std::fs::metadata(&key).unwrap().modified().unwrap(), before);
        // A mode change alone rewrites it; so does new content.
        assert_eq!(write(&file(&key, b"secret", 0o644)).unwrap(), Written::Changed);
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o7777, 0o644);
        assert_eq!(write(&file(&key, b"other", 0o644)).unwrap(), Written::Changed);
        assert_eq!(std::fs::read(&key).unwrap(), b"other");
        // No temporary file is left behind.
        let left: Vec<_> =
            std::fs::read_dir(key.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 1, "{left:?}");
    }

    #[test]
    fn a_failure_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("blocker");
        std::fs::write(&blocker, b"x").unwrap();
        let err = write(&file(&blocker.join("f"), b"x", 0o644)).unwrap_err();
        assert!(err.contains("blocker/f"), "{err}");
    }
}
