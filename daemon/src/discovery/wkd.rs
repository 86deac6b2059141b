//! Web Key Directory (draft-koch-openpgp-webkey-service): a domain serves
//! its users' OpenPGP keys over HTTPS at a path made from a hash of the
//! local part. The advanced method asks `openpgpkey.<domain>` (so the key
//! directory can live on its own host); the direct method asks the domain
//! itself; advanced first, direct when the advanced host has none.
//!
//! Trusts: the HTTPS server authenticated as the domain's host (the root
//! store: system bundle and configured anchors). What it returns is
//! attacker-controlled until the OpenPGP engine parsed it; only keys with
//! a user ID naming the address are kept (the caller checks).

use std::sync::Arc;

use crate::https::{HttpsClient, HttpsError};

/// Largest answer read (many keys of one person fit easily).
pub const MAX_KEY_SIZE: usize = 256 * 1024;

const ZBASE32: &[u8; 32] = b"ybndrfg8ejkmcpqxot1uwisza345h769";

/// z-base-32 (the encoding WKD uses for its hash).
pub fn zbase32(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len() * 8 / 5 + 1);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &b in data {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            let index = ((buffer >> bits) & 0x1f) as usize;
            out.push(char::from(ZBASE32.get(index).copied().unwrap_or(b'y')));
        }
    }
    if bits > 0 {
        let index = ((buffer << (5 - bits)) & 0x1f) as usize;
        out.push(char::from(ZBASE32.get(index).copied().unwrap_or(b'y')));
    }
    out
}

/// The WKD hash of a local part: z-base-32 of the SHA-1 of its lower case.
pub fn local_part_hash(local: &str) -> String {
    let lower = local.to_lowercase();
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        lower.as_bytes(),
    );
    zbase32(digest.as_ref())
}

/// Percent-encodes the local part for the `l=` parameter.
fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The advanced and the direct URL for an address.
pub fn urls(local: &str, domain: &str) -> [String; 2] {
    let hash = local_part_hash(local);
    let l = query_escape(local);
    [
        format!("https://openpgpkey.{domain}/.well-known/openpgpkey/{domain}/hu/{hash}?l={l}"),
        format!("https://{domain}/.well-known/openpgpkey/hu/{hash}?l={l}"),
    ]
}

/// What a WKD lookup found: the key bytes and the URL they came from;
/// `Ok(None)` when neither method has a key for the address.
pub async fn fetch(
    https: &Arc<HttpsClient>,
    local: &str,
    domain: &str,
) -> Result<Option<(Vec<u8>, String)>, String> {
    let mut failure = None;
    for url in urls(local, domain) {
        match https.get(&url, MAX_KEY_SIZE, None).await {
            Ok(body) if !body.is_empty() => return Ok(Some((body, url))),
            Ok(_) | Err(HttpsError::NotFound) => {}
            // The advanced host may simply not exist: try the direct one.
            Err(e) => failure = Some(format!("{url}: {e}")),
        }
    }
    match failure {
        // Both failed (not "not found"): that is not an answer.
        Some(why) => Err(why),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_draft_example_hash() {
        // draft-koch-openpgp-webkey-service §3.1: Joe.Doe@Example.ORG.
        assert_eq!(
            local_part_hash("Joe.Doe"),
            "iy9q119eutrkn8s1mk4r39qejnbu3n5q"
        );
        let [advanced, direct] = urls("Joe.Doe", "example.org");
        assert_eq!(
            advanced,
            "https://openpgpkey.example.org/.well-known/openpgpkey/example.org/hu/iy9q119eutrkn8s1mk4r39qejnbu3n5q?l=Joe.Doe"
        );
        assert_eq!(
            direct,
            "https://example.org/.well-known/openpgpkey/hu/iy9q119eutrkn8s1mk4r39qejnbu3n5q?l=Joe.Doe"
        );
        assert_eq!(query_escape("a+b c"), "a%2Bb%20c");
    }
}
