//! Local passwords: argon2id hashes in PHC string form, and the minimum-strength rule.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

/// The shortest password [`check_strength`] accepts.
pub const MIN_PASSWORD_LEN: usize = 12;

/// What went wrong with a password.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// The password is shorter than [`MIN_PASSWORD_LEN`] characters.
    #[error("the password must be at least {min} characters long")]
    TooShort {
        /// The minimum length.
        min: usize,
    },
    /// The password is entirely whitespace or repeats one character.
    #[error("the password is too easy to guess: use a mix of different characters")]
    TooSimple,
    /// Hashing failed (argon2 refused its input, or the random salt could not be drawn).
    #[error("hashing the password failed: {0}")]
    Hash(String),
}

/// Checks the minimum strength: at least [`MIN_PASSWORD_LEN`] characters, not all the same character.
///
/// # Errors
/// [`PasswordError::TooShort`] or [`PasswordError::TooSimple`].
pub fn check_strength(password: &str) -> Result<(), PasswordError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(PasswordError::TooShort { min: MIN_PASSWORD_LEN });
    }
    let mut chars = password.chars();
    let first = chars.next();
    if password.trim().is_empty() || chars.all(|c| Some(c) == first) {
        return Err(PasswordError::TooSimple);
    }
    Ok(())
}

/// Hashes a password with argon2id (default parameters, a fresh random salt) into a PHC string
/// (`$argon2id$v=19$m=…$<salt>$<hash>`). Does not check strength: call [`check_strength`] first for
/// passwords people choose.
///
/// ```
/// let hash = rancher_auth::password::hash_password("correct horse battery").unwrap();
/// assert!(rancher_auth::password::verify_password("correct horse battery", &hash));
/// assert!(!rancher_auth::password::verify_password("wrong", &hash));
/// ```
///
/// # Errors
/// [`PasswordError::Hash`] when argon2 or the salt source fails.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    let hash: PasswordHash = Argon2::default()
        .hash_password(password.as_bytes())
        .map_err(|e| PasswordError::Hash(e.to_string()))?;
    Ok(hash.to_string())
}

/// True when `password` matches the PHC `hash`. A malformed or empty hash never matches.
pub fn verify_password(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// [`verify_password`] on argon2 memory the caller keeps: a worker that checks many passwords reuses one
/// buffer (~19 MiB at the default parameters) instead of allocating it for every check, which the
/// allocator would keep. A hash asking for more than `max_blocks` blocks (1 KiB each) never matches.
pub fn verify_password_with_memory(
    password: &str,
    hash: &str,
    memory: &mut Vec<argon2::Block>,
    max_blocks: usize,
) -> bool {
    use argon2::{Algorithm, Params, Version};
    use subtle::ConstantTimeEq as _;
    let Ok(phc) = PasswordHash::new(hash) else { return false };
    let (Some(salt), Some(expected)) = (&phc.salt, &phc.hash) else { return false };
    let (Ok(params), Ok(algorithm)) = (Params::try_from(&phc), Algorithm::try_from(phc.algorithm.as_str()))
    else {
        return false;
    };
    let Ok(version) = phc.version.map_or(Ok(Version::default()), Version::try_from) else { return false };
    let needed = params.block_count();
    if needed > max_blocks {
        tracing::warn!(blocks = needed, "a stored password hash asks for more argon2 memory than allowed");
        return false;
    }
    if memory.len() < needed {
        memory.resize(needed, argon2::Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut memory[..needed])
        .is_ok()
        && bool::from(out.as_slice().ct_eq(expected.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_salted_and_verify() {
        let a = hash_password("a long enough password").unwrap();
        let b = hash_password("a long enough password").unwrap();
        assert_ne!(a, b, "each hash has its own salt");
        assert!(a.starts_with("$argon2id$"));
        assert!(verify_password("a long enough password", &a));
        assert!(verify_password("a long enough password", &b));
        assert!(!verify_password("a long enough passworD", &a));
        assert!(!verify_password("a long enough password", ""));
        assert!(!verify_password("a long enough password", "not-a-phc-string"));
    }

    #[test]
    fn strength_rule() {
        assert!(matches!(check_strength("short"), Err(PasswordError::TooShort { min: 12 })));
        assert!(matches!(check_strength("aaaaaaaaaaaaaaaa"), Err(PasswordError::TooSimple)));
        assert!(matches!(check_strength("                "), Err(PasswordError::TooSimple)));
        assert!(check_strength("bar-Passw0rd-123").is_ok());
    }
}
