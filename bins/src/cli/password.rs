//! Reading a password: from stdin for scripts (`--password-stdin`), or asked for on the terminal with
//! echo off. The prompt talks to `/dev/tty`, not stdin/stdout, so it works while output is redirected.

use std::io::{BufRead, Read};

use super::error::CliError;

/// The longest password line read.
const MAX_LINE: usize = 4096;

/// The first line of stdin, without its line ending.
///
/// # Errors
/// [`CliError::Input`] when stdin cannot be read or holds nothing.
pub(super) fn from_stdin() -> Result<String, CliError> {
    let line = read_line(&mut std::io::stdin().lock())
        .map_err(|e| CliError::Input(format!("reading stdin: {e}")))?;
    if line.is_empty() {
        return Err(CliError::Input("--password-stdin: stdin held no password".into()));
    }
    Ok(line)
}

fn read_line<R: BufRead>(r: &mut R) -> std::io::Result<String> {
    let mut line = String::new();
    Read::take(r, MAX_LINE as u64).read_line(&mut line)?;
    if line.len() >= MAX_LINE && !line.ends_with('\n') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a password line is at most {} bytes", MAX_LINE - 1),
        ));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Asks for `who`'s password on the controlling terminal, with echo off.
///
/// # Errors
/// [`CliError::Input`] when there is no terminal (a script: use `--password-stdin`).
#[cfg(unix)]
pub(super) fn prompt(who: &str) -> Result<String, CliError> {
    ask(&format!("Password for {who}: "))
}

/// Asks for a secret on the controlling terminal with echo off, after `question`.
///
/// # Errors
/// [`CliError::Input`] when there is no terminal (a script: use the command's stdin flag), or the
/// answer is empty.
#[cfg(unix)]
pub(super) fn ask(question: &str) -> Result<String, CliError> {
    use std::io::Write;

    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};

    let no_tty = |e: std::io::Error| {
        CliError::Input(format!("no password: there is no terminal to ask on ({e}); pass --password-stdin"))
    };
    let tty = std::fs::OpenOptions::new().read(true).write(true).open("/dev/tty").map_err(no_tty)?;
    let saved = tcgetattr(&tty).map_err(|e| no_tty(e.into()))?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    quiet.local_modes.insert(LocalModes::ECHONL);
    // Echo goes off before the prompt shows, so nothing typed after it is ever echoed; type-ahead is
    // kept (not flushed).
    tcsetattr(&tty, OptionalActions::Now, &quiet).map_err(|e| no_tty(e.into()))?;
    if let Err(e) = (&tty).write_all(question.as_bytes()) {
        let _ = tcsetattr(&tty, OptionalActions::Now, &saved);
        return Err(no_tty(e));
    }
    let read = read_line(&mut std::io::BufReader::new(&tty));
    // Echo comes back whatever happened to the read.
    let restored = tcsetattr(&tty, OptionalActions::Now, &saved);
    let line = read.map_err(no_tty)?;
    restored.map_err(|e| no_tty(e.into()))?;
    if line.is_empty() {
        return Err(CliError::Input("no password given".into()));
    }
    Ok(line)
}

/// Without a Unix terminal there is no prompt.
///
/// # Errors
/// Always [`CliError::Input`].
#[cfg(not(unix))]
pub(super) fn prompt(_who: &str) -> Result<String, CliError> {
    Err(CliError::Input("no password: pass --password-stdin, --password, or set RANCHER_PASSWORD".into()))
}

/// Without a Unix terminal there is no prompt.
///
/// # Errors
/// Always [`CliError::Input`].
#[cfg(not(unix))]
pub(super) fn ask(_question: &str) -> Result<String, CliError> {
    Err(CliError::Input("there is no terminal to ask on: use the command's stdin flag".into()))
}

/// The first `n` lines of stdin, each non-empty, without their line endings.
///
/// # Errors
/// [`CliError::Input`] when stdin cannot be read or holds fewer lines.
pub(super) fn lines_from_stdin(n: usize, what: &str) -> Result<Vec<String>, CliError> {
    let mut stdin = std::io::stdin().lock();
    let mut lines = Vec::with_capacity(n);
    for _ in 0..n {
        let line = read_line(&mut stdin).map_err(|e| CliError::Input(format!("reading stdin: {e}")))?;
        if line.is_empty() {
            return Err(CliError::Input(format!("stdin must hold {what}, one per line")));
        }
        lines.push(line);
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::read_line;

    #[test]
    fn a_password_line_loses_its_line_ending_only() {
        assert_eq!(read_line(&mut &b" pass word \r\nnext\n"[..]).unwrap(), " pass word ");
        assert_eq!(read_line(&mut &b""[..]).unwrap(), "");
        assert!(read_line(&mut &vec![b'x'; 5000][..]).is_err(), "a longer line is refused, not cut");
    }
}
