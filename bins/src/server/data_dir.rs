//! The data directory is private: it holds the embedded store (password and token hashes), the
//! secrets key and the serving certificate's key. It is created 0700 (or tightened to it) before anything is written in it, and what the
//! server keeps there loses any group or other permission at every start, with a log line for each
//! file that had them.

use std::path::Path;

/// Creates `dir` (and missing parents) owner-only, or makes an existing one so.
///
/// # Errors
/// I/O errors of creating or changing the mode.
pub(crate) fn create_private(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        tighten(dir, true)
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)
}

/// Takes group and other permissions off everything in `dir` and in its subdirectories (`tls/`);
/// symbolic links are left alone. `found` says whether the files were there before this start (a
/// warning each) or made by it (a debug line).
///
/// # Errors
/// I/O errors of reading the directory or changing a mode.
pub(crate) fn tighten_contents(dir: &Path, found: bool) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_symlink() {
            continue;
        }
        tighten(&entry.path(), found)?;
        if kind.is_dir() {
            for inner in std::fs::read_dir(entry.path())? {
                let inner = inner?;
                if !inner.file_type()?.is_symlink() {
                    tighten(&inner.path(), found)?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(unix)]
fn tighten(path: &Path, found: bool) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::symlink_metadata(path)?.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    let private = mode & !0o077;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(private))?;
    if found {
        tracing::warn!(path = %path.display(), "was readable by others (mode {mode:o}): now {private:o}");
    } else {
        tracing::debug!(path = %path.display(), "mode {mode:o} → {private:o}");
    }
    Ok(())
}

#[cfg(not(unix))]
fn tighten(_path: &Path, _found: bool) -> std::io::Result<()> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn creates_private_and_tightens_what_is_there() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/data");
        create_private(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir(dir.join("tls")).unwrap();
        std::fs::write(dir.join("store"), b"x").unwrap();
        std::fs::write(dir.join("tls/key"), b"x").unwrap();
        std::fs::set_permissions(dir.join("store"), std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(dir.join("tls/key"), std::fs::Permissions::from_mode(0o664)).unwrap();
        let outside = tmp.path().join("outside");
        std::fs::write(&outside, b"x").unwrap();
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("link")).unwrap();

        create_private(&dir).unwrap();
        tighten_contents(&dir, true).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("store")), 0o600);
        assert_eq!(mode(&dir.join("tls")), 0o700);
        assert_eq!(mode(&dir.join("tls/key")), 0o600);
        assert_eq!(mode(&outside), 0o644, "a link's target is not ours to change");
    }
}
