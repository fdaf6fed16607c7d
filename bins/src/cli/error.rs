//! What `rancherctl` tells the user when something fails.

use rancher_core::Status;

/// A failure of a `rancherctl` command, worded for the person at the terminal.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// No saved login.
    #[error("not logged in: run `rancherctl login https://SERVER --username USER` first")]
    NotLoggedIn,
    /// The saved login's token was refused (expired, revoked, or its user deleted).
    #[error("the saved login is no longer valid ({0}): run `rancherctl login` again")]
    SessionInvalid(String),
    /// Login was refused.
    #[error("login failed: wrong username or password")]
    LoginFailed,
    /// No TCP/TLS connection could be made.
    #[error("cannot reach {url}: {reason}")]
    Unreachable {
        /// The server URL.
        url: String,
        /// Why, in a few words (`connection refused`, `timed out`, …).
        reason: String,
    },
    /// The server's certificate does not verify.
    #[error("the server's certificate is not trusted: pass --cacert FILE or --insecure")]
    Untrusted,
    /// The API answered with an error `Status`.
    #[error("{}", .0.message)]
    Api(Box<Status>),
    /// The config file or a flag's file could not be read or written.
    #[error("{0}")]
    Config(String),
    /// A command-line value is unusable.
    #[error("{0}")]
    Input(String),
    /// The command exists but is not built yet.
    #[error("not implemented yet: {0}")]
    NotImplemented(String),
    /// A cluster's provisioning failed.
    #[error("{0}")]
    Provisioning(String),
    /// What was waited for (a provisioning followed, `rancherctl wait`) did not come within the time
    /// allowed; it may still come.
    #[error("{0}")]
    TimedOut(String),
    /// Any other HTTP failure.
    #[error("{0}")]
    Http(String),
    /// A program rancherctl ran on the terminal (kubectl) exited with this code; it has said why.
    #[error("exited with {0}")]
    Exited(u8),
    /// A command across clusters failed in some of them: `output` has every cluster's row.
    #[error("{failed} of {total} clusters failed")]
    SomeClustersFailed {
        /// The table of every cluster's result.
        output: String,
        /// How many failed.
        failed: usize,
        /// How many were asked.
        total: usize,
    },
}

/// The exit codes a script can rely on, for `rancherctl --help`.
pub(super) const EXIT_CODES: &str = "\
Exit codes:
  0  done
  1  failed (the message says why; a provisioning that failed)
  2  wrong usage: an unknown command or flag, or a value that cannot be used
  3  not logged in, the login was refused, or the saved login is no longer valid
  4  permission denied: the server refused the request for your user (403)
  5  not found (404)
  6  conflict: it exists already, or someone changed it meanwhile (409)
  7  the server cannot be reached, or its certificate is not trusted
  8  timed out waiting (`wait`, or following a change); what was waited for may still come
  `rancherctl kubectl CLUSTER -- …` exits with kubectl's own code instead (any number: kubectl's, or
  that of the command `exec` ran)";

impl CliError {
    /// The process's exit code for this error (see [`EXIT_CODES`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Input(_) => 2,
            CliError::NotLoggedIn | CliError::SessionInvalid(_) | CliError::LoginFailed => 3,
            CliError::Api(status) => match status.code {
                403 => 4,
                404 => 5,
                409 => 6,
                400 | 422 => 2,
                _ => 1,
            },
            CliError::Unreachable { .. } | CliError::Untrusted => 7,
            CliError::TimedOut(_) => 8,
            CliError::Exited(code) => *code,
            CliError::Config(_)
            | CliError::NotImplemented(_)
            | CliError::Provisioning(_)
            | CliError::Http(_)
            | CliError::SomeClustersFailed { .. } => 1,
        }
    }

    /// Classifies a transport error from reqwest.
    pub fn from_transport(url: &str, e: &reqwest::Error) -> Self {
        let mut source: Option<&dyn std::error::Error> = Some(e);
        let mut io_reason = None;
        while let Some(s) = source {
            if let Some(tls) = s.downcast_ref::<rustls::Error>()
                && matches!(
                    tls,
                    rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
                )
            {
                return CliError::Untrusted;
            }
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                if io.get_ref().is_some_and(|inner| {
                    inner
                        .downcast_ref::<rustls::Error>()
                        .is_some_and(|t| matches!(t, rustls::Error::InvalidCertificate(_)))
                }) {
                    return CliError::Untrusted;
                }
                io_reason.get_or_insert_with(|| match io.kind() {
                    std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
                    std::io::ErrorKind::TimedOut => "timed out".to_owned(),
                    _ => io.to_string(),
                });
            }
            source = s.source();
        }
        let (display, debug) = error_chain(e);
        if let Some(https) = url.strip_prefix("http://")
            && !e.is_connect()
            && !e.is_timeout()
            && spoke_tls(&debug)
        {
            return CliError::Input(format!(
                "{url} answered in TLS: the server speaks HTTPS: use https://{https}"
            ));
        }
        // rustls' errors may arrive wrapped in types we cannot downcast through; their text is stable.
        let lower = debug.to_ascii_lowercase();
        if lower.contains("certificate") && (lower.contains("invalid") || lower.contains("unknownissuer")) {
            return CliError::Untrusted;
        }
        if e.is_connect() || e.is_timeout() {
            let reason = io_reason
                .unwrap_or_else(|| if e.is_timeout() { "timed out".into() } else { display.clone() });
            return CliError::Unreachable { url: url.to_owned(), reason };
        }
        CliError::Http(if display.is_empty() { e.to_string() } else { format!("{e}: {display}") })
    }
}

/// True when a plain-HTTP request failed the way it does against a TLS listener: the answer (a TLS
/// alert) does not parse as HTTP, or the connection closes without one.
fn spoke_tls(debug: &str) -> bool {
    let lower = debug.to_ascii_lowercase();
    ["invalid http version", "connection closed before message completed", "incompletemessage"]
        .iter()
        .any(|m| lower.contains(m))
}

/// The error's sources, as text for people and as `Debug` text for classification.
fn error_chain(e: &dyn std::error::Error) -> (String, String) {
    let (mut display, mut debug) = (Vec::new(), Vec::new());
    let mut source = e.source();
    while let Some(s) = source {
        display.push(s.to_string());
        debug.push(format!("{s} {s:?}"));
        source = s.source();
    }
    (display.join(": "), debug.join(": "))
}
