//! Reading what a flag names: a file, or standard input for `-`, never more than a limit (a flag
//! pointed at a device or a huge file fails instead of filling memory).

use std::io::Read;
use std::path::Path;

use super::error::CliError;

/// The text of `path` (`-`: stdin), at most `max` bytes, and how to name where it came from (`stdin`
/// or the path). `flag` begins every error (`--rules-file: /x is larger than 1048576 bytes`).
///
/// # Errors
/// [`CliError::Input`] when it cannot be read, is not UTF-8, or is larger than `max`.
pub(super) fn read_text(path: &Path, max: u64, flag: &str) -> Result<(String, String), CliError> {
    let mut text = String::new();
    let stdin = path.as_os_str() == "-";
    let from = if stdin { "stdin".to_owned() } else { path.display().to_string() };
    let read = if stdin {
        std::io::stdin().lock().take(max + 1).read_to_string(&mut text)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(max + 1).read_to_string(&mut text))
    };
    read.map_err(|e| CliError::Input(format!("{flag}: reading {from}: {e}")))?;
    if text.len() as u64 > max {
        return Err(CliError::Input(format!("{flag}: {from} is larger than {max} bytes")));
    }
    Ok((text, from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_read_up_to_its_limit_and_named_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "12345").unwrap();
        assert_eq!(read_text(&file, 5, "--x").unwrap().0, "12345");
        let e = read_text(&file, 4, "--x").unwrap_err().to_string();
        assert!(e.starts_with("--x: ") && e.ends_with("is larger than 4 bytes"), "{e}");
        let e = read_text(&dir.path().join("none"), 4, "--x").unwrap_err().to_string();
        assert!(e.contains("--x: reading"), "{e}");
    }
}
