//! Time-based one-time passwords (RFC 6238 over RFC 4226): HMAC-SHA-1,
//! 6 digits, 30-second steps, as every authenticator app reads them.
//!
//! A code is accepted for the current step and one step either side
//! (clock drift), and only for a step later than the last one the
//! account used: a code, once accepted, is never accepted again (the
//! caller stores the step it returns).

use aws_lc_rs::hmac;

/// Seconds per step.
pub const STEP: u64 = 30;
/// Octets of a new secret (160 bits, as RFC 4226 recommends).
pub const SECRET_LEN: usize = 20;

/// A fresh random secret.
pub fn new_secret() -> Vec<u8> {
    let bytes: [u8; SECRET_LEN] = rand::random();
    bytes.to_vec()
}

/// The 6-digit code of `secret` at step `counter`.
pub fn code(secret: &[u8], counter: u64) -> u32 {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let tag = hmac::sign(&key, &counter.to_be_bytes());
    let mac = tag.as_ref();
    let offset = usize::from(mac.last().copied().unwrap_or(0) & 0x0f);
    let word = mac
        .get(offset..offset + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, u32::from_be_bytes);
    (word & 0x7fff_ffff) % 1_000_000
}

/// The step `code` belongs to, if it is right for `now_secs` (±1 step)
/// and later than `last_step`.
pub fn verify(secret: &[u8], code_text: &str, now_secs: u64, last_step: u64) -> Option<u64> {
    let digits: String = code_text.chars().filter(|c| !c.is_whitespace()).collect();
    if digits.len() != 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let presented: u32 = digits.parse().ok()?;
    let now = now_secs / STEP;
    let mut found = None;
    // Check every candidate step, so the time taken does not say which matched.
    for step in [now.saturating_sub(1), now, now + 1] {
        if code(secret, step) == presented && step > last_step && found.is_none() {
            found = Some(step);
        }
    }
    found
}

/// RFC 4648 base32 without padding (what authenticator apps take).
pub fn base32(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for byte in data {
        buffer = (buffer << 8) | u32::from(*byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            let index = ((buffer >> bits) & 31) as usize;
            out.push(char::from(ALPHABET.get(index).copied().unwrap_or(b'A')));
        }
    }
    if bits > 0 {
        let index = ((buffer << (5 - bits)) & 31) as usize;
        out.push(char::from(ALPHABET.get(index).copied().unwrap_or(b'A')));
    }
    out
}

/// The `otpauth://` URI for an authenticator app.
pub fn uri(account: &str, secret: &[u8]) -> String {
    let account: String = account
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!(
        "otpauth://totp/Sealgate:{account}?secret={}&issuer=Sealgate&algorithm=SHA1&digits=6&period=30",
        base32(secret)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 (8 digits there; the last 6 here).
    #[test]
    fn rfc_6238_vectors() {
        let secret = b"12345678901234567890";
        for (time, expected) in [
            (59u64, 94_287_082u32),
            (1_111_111_109, 7_081_804),
            (1_111_111_111, 14_050_471),
            (1_234_567_890, 89_005_924),
            (2_000_000_000, 69_279_037),
        ] {
            assert_eq!(code(secret, time / STEP), expected % 1_000_000, "t={time}");
        }
    }

    #[test]
    fn a_code_is_accepted_once_and_near_its_time_only() {
        let secret = b"12345678901234567890";
        let now = 1_111_111_111;
        let c = format!("{:06}", code(secret, now / STEP));
        let step = verify(secret, &c, now, 0);
        assert_eq!(step, Some(now / STEP));
        assert_eq!(verify(secret, &c, now, now / STEP), None, "replayed");
        assert_eq!(verify(secret, &c, now + 3 * STEP, 0), None, "too late");
        assert_eq!(verify(secret, "12345", now, 0), None);
        assert_eq!(
            verify(secret, &format!("{} {}", &c[..3], &c[3..]), now, 0),
            step
        );
    }

    #[test]
    fn base32_as_rfc_4648() {
        assert_eq!(base32(b""), "");
        assert_eq!(base32(b"f"), "MY");
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(
            base32(b"12345678901234567890"),
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
        );
    }
}
