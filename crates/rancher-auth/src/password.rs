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
