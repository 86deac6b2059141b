//! Constant-time RSA padding decoders for the raw-RSA path.
//!
//! The token does the private-key operation (`CKM_RSA_X_509`); the padding
//! is removed here, in software, without branches or memory accesses that
//! depend on secret bytes (the `subtle` crate's `Choice`). This covers
//! PKCS#1 v1.5 with implicit rejection (always) and OAEP with hashes the
//! token lacks (SHA-256 on SoftHSM 2.6.1).
//!
//! Trusts: the token's raw RSA result. Must never: branch on a padding byte,
//! return early on the first bad byte, or report *which* check failed.

use aws_lc_rs::digest;
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

use crate::error::Error;

/// Hash used by OAEP (for both the label hash and MGF1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OaepHash {
    /// SHA-1 (what most S/MIME clients still send).
    Sha1,
    /// SHA-256.
    Sha256,
}

impl OaepHash {
    fn algorithm(self) -> &'static digest::Algorithm {
        match self {
            OaepHash::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            OaepHash::Sha256 => &digest::SHA256,
        }
    }

    fn len(self) -> usize {
        match self {
            OaepHash::Sha1 => 20,
            OaepHash::Sha256 => 32,
        }
    }
}

fn mgf1_xor(out: &mut [u8], hash: OaepHash, seed: &[u8]) {
    let mut counter: u32 = 0;
    for chunk in out.chunks_mut(hash.len()) {
        let mut ctx = digest::Context::new(hash.algorithm());
        ctx.update(seed);
        ctx.update(&counter.to_be_bytes());
        let block = ctx.finish();
        for (o, m) in chunk.iter_mut().zip(block.as_ref()) {
            *o ^= m;
        }
        counter = counter.wrapping_add(1);
    }
}

/// PKCS#1 v1.5 (type 2) decoding of `em` with implicit rejection: when the padding is
/// invalid or the message is not `expected_len` bytes long, `synthetic` is returned
/// instead, with the same timing and memory access pattern.
///
/// `em` is the raw RSA result, left-padded to the modulus length; `synthetic` is the
/// deterministic replacement of `expected_len` bytes.
pub(crate) fn pkcs1v15_implicit(em: &[u8], expected_len: usize, synthetic: &[u8]) -> Vec<u8> {
    let k = em.len();
    // Lengths are public: callers check `k >= expected_len + 11` beforehand.
    let sep = k.saturating_sub(expected_len + 1);
    let mut valid = Choice::from(1u8);
    for (i, b) in em.iter().enumerate() {
        let b = *b;
        let in_ps = Choice::from(u8::from(i >= 2 && i < sep));
        let at = |j: usize| Choice::from(u8::from(i == j));
        // em[0] == 0, em[1] == 2, PS bytes non-zero, em[sep] == 0.
        valid &= !at(0) | b.ct_eq(&0);
        valid &= !at(1) | b.ct_eq(&2);
        valid &= !in_ps | !b.ct_eq(&0);
        valid &= !at(sep) | b.ct_eq(&0);
    }
    valid &= Choice::from(u8::from(sep >= 10 && synthetic.len() == expected_len));
    let message = em.get(sep + 1..).unwrap_or(&[]);
    message
        .iter()
        .zip(synthetic)
        .map(|(m, s)| u8::conditional_select(s, m, valid))
        .collect()
}

/// OAEP decoding (RFC 8017 section 7.1.2) with an empty label. Every failure is
/// [`Error::Decrypt`]; the checks run over the whole block before the one final branch.
pub(crate) fn oaep_decode(em: &[u8], hash: OaepHash) -> Result<Vec<u8>, Error> {
    let h_len = hash.len();
    let k = em.len();
    if k < 2 * h_len + 2 {
        return Err(Error::Decrypt);
    }
    let (y, rest) = em.split_first().ok_or(Error::Decrypt)?;
    let (masked_seed, masked_db) = rest.split_at_checked(h_len).ok_or(Error::Decrypt)?;
    let mut seed = masked_seed.to_vec();
    mgf1_xor(&mut seed, hash, masked_db);
    let mut db = masked_db.to_vec();
    mgf1_xor(&mut db, hash, &seed);
    let l_hash = digest::digest(hash.algorithm(), b"");
    let (db_hash, ps_m) = db.split_at_checked(h_len).ok_or(Error::Decrypt)?;
    let mut good = y.ct_eq(&0) & db_hash.ct_eq(l_hash.as_ref());
    let mut looking = Choice::from(1u8);
    let mut index: u64 = 0;
    let mut bad_ps = Choice::from(0u8);
    for (i, b) in ps_m.iter().enumerate() {
        let is_one = b.ct_eq(&1);
        let is_zero = b.ct_eq(&0);
        index.conditional_assign(&(i as u64), looking & is_one);
        bad_ps |= looking & !is_one & !is_zero;
        looking &= !is_one;
    }
    good &= !looking & !bad_ps;
    if bool::from(good) {
        let start = usize::try_from(index).map_err(|_| Error::Decrypt)? + 1;
        Ok(ps_m.get(start..).ok_or(Error::Decrypt)?.to_vec())
    } else {
        Err(Error::Decrypt)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn pkcs1_block(k: usize, msg: &[u8]) -> Vec<u8> {
        let mut em = vec![0u8, 2];
        em.extend(std::iter::repeat_n(0x55u8, k - 3 - msg.len()));
        em.push(0);
        em.extend_from_slice(msg);
        em
    }

    #[test]
    fn pkcs1_valid_block_yields_message() {
        let msg = [9u8; 32];
        let em = pkcs1_block(256, &msg);
        assert_eq!(pkcs1v15_implicit(&em, 32, &[1u8; 32]), msg);
    }

    #[test]
    fn pkcs1_every_defect_yields_synthetic() {
        let msg = [9u8; 32];
        let synthetic = [1u8; 32];
        let good = pkcs1_block(256, &msg);
        let mut defects = Vec::new();
        let mut e = good.clone();
        e[0] = 1;
        defects.push(e);
        let mut e = good.clone();
        e[1] = 1;
        defects.push(e);
        let mut e = good.clone();
        e[5] = 0;
        defects.push(e);
        let mut e = good.clone();
        e[256 - 33] = 7;
        defects.push(e);
        // Message of the wrong length (separator earlier).
        defects.push(pkcs1_block(256, &[9u8; 24]));
        for em in defects {
            assert_eq!(pkcs1v15_implicit(&em, 32, &synthetic), synthetic);
        }
    }

    fn oaep_encode(k: usize, msg: &[u8], hash: OaepHash, seed: &[u8]) -> Vec<u8> {
        let h_len = hash.len();
        let mut db = digest::digest(hash.algorithm(), b"").as_ref().to_vec();
        db.extend(std::iter::repeat_n(0u8, k - msg.len() - 2 * h_len - 2));
        db.push(1);
        db.extend_from_slice(msg);
        let mut masked_db = db.clone();
        mgf1_xor(&mut masked_db, hash, seed);
        let mut masked_seed = seed.to_vec();
        mgf1_xor(&mut masked_seed, hash, &masked_db);
        let mut em = vec![0u8];
        em.extend(masked_seed);
        em.extend(masked_db);
        em
    }

    #[test]
    fn oaep_round_trip_and_rejection() {
        for hash in [OaepHash::Sha1, OaepHash::Sha256] {
            let seed = vec![3u8; hash.len()];
            let em = oaep_encode(256, b"data key", hash, &seed);
            assert_eq!(oaep_decode(&em, hash).unwrap(), b"data key");
            let mut bad = em.clone();
            bad[0] = 1;
            assert!(matches!(oaep_decode(&bad, hash), Err(Error::Decrypt)));
            let mut bad = em.clone();
            bad[100] ^= 1;
            assert!(matches!(oaep_decode(&bad, hash), Err(Error::Decrypt)));
        }
    }
}
