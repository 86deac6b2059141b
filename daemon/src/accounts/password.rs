//! Passwords: the policy a new password must meet, and Argon2id hashes.
//!
//! A password has at least 12 characters and must not be guessable:
//! zxcvbn's estimate (its embedded lists of common passwords, English
//! words and names, keyboard walks, sequences, dates, l33t) must put it
//! beyond 10^10 guesses (score 4 of 0–4 … 3 is "safely unguessable"
//! online; we ask 3 at least), and it must not contain the account
//! name. Hashes are Argon2id with the crate's defaults (19 MiB, 2
//! passes), in PHC string form, so parameters can rise later without
//! breaking stored hashes.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use sealgate_api::FieldError;

/// Shortest password accepted.
pub const MIN_LENGTH: usize = 12;
/// Longest (Argon2 would take more, but nobody types this much).
pub const MAX_LENGTH: usize = 1024;

/// Checks a new password for `account`; the error names the field `key`.
pub fn check(password: &str, account: &str, key: &str) -> Result<(), FieldError> {
    let length = password.chars().count();
    if length < MIN_LENGTH {
        return Err(FieldError::new(
            key,
            format!("At least {MIN_LENGTH} characters, please (this one has {length})."),
        ));
    }
    if length > MAX_LENGTH {
        return Err(FieldError::new(
            key,
            format!("At most {MAX_LENGTH} characters."),
        ));
    }
    let lower = password.to_lowercase();
    if !account.is_empty() && lower.contains(&account.to_lowercase()) {
        return Err(FieldError::new(
            key,
            "The password must not contain the account name.",
        ));
    }
    let estimate = zxcvbn::zxcvbn(password, &[account, "sealgate", "admin"]);
    if (estimate.score() as u8) < 3 {
        return Err(FieldError::new(
            key,
            "This password is too common or too easy to guess. A few unrelated words make a good one.",
        ));
    }
    Ok(())
}

/// The Argon2id hash of `password` with a fresh salt (PHC string).
pub fn hash(password: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| format!("password not hashed: {e}"))
}

/// Whether `password` matches the stored `hash` (false for a damaged hash).
pub fn verify(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash to verify against when the account does not exist, so that an
/// unknown name costs the same time as a wrong password.
pub fn decoy() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash("decoy password never matches").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_passwords_are_refused() {
        assert!(check("short", "admin", "password").is_err());
        assert!(check("password1234", "admin", "password").is_err());
        assert!(check("qwertyuiop123", "admin", "password").is_err());
        assert!(check("aliceliddell-2024", "aliceliddell", "password").is_err());
        assert!(check("correct horse battery staple", "admin", "password").is_ok());
        assert!(check("Vm4-tolu-rapid-cedar", "admin", "password").is_ok());
    }

    #[test]
    fn hashes_verify_and_are_argon2id() {
        let h = hash("correct horse battery staple").unwrap_or_default();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify("correct horse battery staple", &h));
        assert!(!verify("correct horse battery stapler", &h));
        assert!(!verify("x", "not a hash"));
    }
}
