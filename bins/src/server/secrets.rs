//! Secrets at rest: values the server must keep but never store or show in plain text (the SSH private
//! keys of `rkeConfig`) are sealed with AES-256-GCM under a key of the data directory
//! (`secrets.key`, made once, mode 0600). A sealed value reads `sealed:v1:<base64(nonce|ciphertext)>`;
//! responses show [`SEALED_PLACEHOLDER`] instead.
//!
//! Servers sharing one store (etcd) must share the key too (`--secrets-key-file`): a value sealed by
//! one is opened by whichever server provisions the cluster, and the servers' CA and registration key
//! are kept in the store sealed with it (`shared_secrets`).

use std::io::Write;
use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::SecretString;

/// What reads show instead of a sealed value; sent back in an update, it keeps the stored value.
pub(crate) const SEALED_PLACEHOLDER: &str = "[sealed]";
/// The prefix of a sealed value.
pub(crate) const SEALED_PREFIX: &str = "sealed:v1:";
/// The key file in the data directory.
const KEY_FILE: &str = "secrets.key";
/// What the ciphertext is bound to, so a value sealed for another purpose does not open as this one.
const AAD: &[u8] = b"rancher-rs sealed secret v1";

/// Why the sealing key could not be loaded, or a value not opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The key file could not be created or read.
    #[error("the secrets key {path}: {source}")]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The key file given (`--secrets-key-file`) does not exist.
    #[error(
        "the secrets key {path} does not exist: make one (head -c 32 /dev/urandom > {path}) and give \
         every server sharing the store the same file"
    )]
    KeyMissing {
        /// The key file.
        path: PathBuf,
    },
    /// The key file does not hold a 32-byte key.
    #[error("the secrets key {path} holds {len} bytes, not 32: restore it from a backup")]
    KeyLength {
        /// The key file.
        path: PathBuf,
        /// Its length.
        len: usize,
    },
    /// The value is not `sealed:v1:` and base64 of a nonce and a ciphertext.
    #[error("the value is not a sealed secret")]
    Malformed,
    /// The value does not open with this server's key (another key, or tampered with).
    #[error("the sealed value does not open with this server's secrets key")]
    Open,
}

/// Seals and opens secret values with the data directory's key.
pub(crate) struct Sealer {
    key: LessSafeKey,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<key>)")
    }
}

impl Sealer {
    /// The sealer of `data_dir`'s key, making the key (32 random bytes, mode 0600) on first use.
    ///
    /// # Errors
    /// [`SealError::KeyFile`] or [`SealError::KeyLength`].
    pub(crate) fn load_or_create(data_dir: &Path) -> Result<Sealer, SealError> {
        let path = data_dir.join(KEY_FILE);
        let key_err = |source| SealError::KeyFile { path: path.clone(), source };
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        match opts.open(&path) {
            Ok(mut file) => {
                let mut key = [0u8; 32];
                aws_lc_rs::rand::fill(&mut key)
                    .map_err(|_| key_err(std::io::Error::other("no random bytes")))?;
                file.write_all(&key).and_then(|()| file.sync_all()).map_err(key_err)?;
                Ok(Sealer::from_key(&key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Sealer::load(&path),
            Err(e) => Err(key_err(e)),
        }
    }

    /// The sealer of the key in `path` (32 bytes), which must exist: the file every server sharing a
    /// store is given alike.
    ///
    /// # Errors
    /// [`SealError::KeyMissing`], [`SealError::KeyFile`] or [`SealError::KeyLength`].
    pub(crate) fn load(path: &Path) -> Result<Sealer, SealError> {
        let bytes = std::fs::read(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => SealError::KeyMissing { path: path.to_owned() },
            _ => SealError::KeyFile { path: path.to_owned(), source },
        })?;
        let key: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| SealError::KeyLength { path: path.to_owned(), len: bytes.len() })?;
        Ok(Sealer::from_key(&key))
    }

    /// A sealer of this key.
    pub(crate) fn from_key(key: &[u8; 32]) -> Sealer {
        let unbound = UnboundKey::new(&AES_256_GCM, key).unwrap_or_else(|_| unreachable!("32 bytes"));
        Sealer { key: LessSafeKey::new(unbound) }
    }

    /// `plain` sealed under a fresh random nonce.
    pub(crate) fn seal(&self, plain: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        // The system RNG failing is not something to carry on from with a fixed nonce.
        aws_lc_rs::rand::fill(&mut nonce).unwrap_or_else(|_| panic!("the system random generator failed"));
        let mut in_out = plain.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(AAD), &mut in_out)
            .unwrap_or_else(|_| unreachable!("sealing fails only for inputs over 64 GiB"));
        let mut out = nonce.to_vec();
        out.extend_from_slice(&in_out);
        format!("{SEALED_PREFIX}{}", STANDARD.encode(out))
    }

    /// The plain text of a value [`seal`](Self::seal) made.
    ///
    /// # Errors
    /// [`SealError::Malformed`], or [`SealError::Open`] for another key's value or a tampered one.
    pub(crate) fn open(&self, sealed: &str) -> Result<SecretString, SealError> {
        let b64 = sealed.strip_prefix(SEALED_PREFIX).ok_or(SealError::Malformed)?;
        let mut bytes = STANDARD.decode(b64).map_err(|_| SealError::Malformed)?;
        if bytes.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(SealError::Malformed);
        }
        let mut ciphertext = bytes.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&bytes).map_err(|_| SealError::Malformed)?;
        let plain =
            self.key.open_in_place(nonce, Aad::from(AAD), &mut ciphertext).map_err(|_| SealError::Open)?;
        let text = String::from_utf8(plain.to_vec()).map_err(|_| SealError::Malformed)?;
        Ok(SecretString::from(text))
    }
}

/// Whether `value` is a sealed secret.
pub(crate) fn is_sealed(value: &str) -> bool {
    value.starts_with(SEALED_PREFIX)
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn seals_with_a_fresh_nonce_and_opens_only_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let sealer = Sealer::load_or_create(dir.path()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let plain = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE=\n";
        let a = sealer.seal(plain);
        let b = sealer.seal(plain);
        assert!(is_sealed(&a) && a != b, "a random nonce per value");
        assert!(!a.contains("OPENSSH") && !a.contains("b3BlbnNzaC1rZXktdjE"));
        assert_eq!(sealer.open(&a).unwrap().expose_secret(), plain);

        let again = Sealer::load_or_create(dir.path()).unwrap();
        assert_eq!(again.open(&b).unwrap().expose_secret(), plain, "the key is made once and kept");
        let other = Sealer::from_key(&[7; 32]);
        assert!(matches!(other.open(&a), Err(SealError::Open)));
        let mut tampered = a.clone();
        let tail = if a.ends_with("AAAA") { "BBBB" } else { "AAAA" };
        tampered.replace_range(tampered.len() - 4.., tail);
        assert!(matches!(sealer.open(&tampered), Err(SealError::Open | SealError::Malformed)));
        assert!(matches!(sealer.open("plain"), Err(SealError::Malformed)));
        assert!(matches!(sealer.open("sealed:v1:AAAA"), Err(SealError::Malformed)));
        assert_eq!(format!("{sealer:?}"), "Sealer(<key>)");

        let given = Sealer::load(&dir.path().join(KEY_FILE)).unwrap();
        assert_eq!(given.open(&a).unwrap().expose_secret(), plain, "the same key, given by path");
        let missing = Sealer::load(&dir.path().join("nope")).unwrap_err().to_string();
        assert!(missing.contains("nope does not exist") && missing.contains("head -c 32"), "{missing}");

        std::fs::write(dir.path().join(KEY_FILE), b"short").unwrap();
        let err = Sealer::load_or_create(dir.path()).unwrap_err().to_string();
        assert!(err.contains("holds 5 bytes, not 32"), "{err}");
    }
}
