//! Just enough DER to write public keys (SubjectPublicKeyInfo), unwrap the
//! `CKA_EC_POINT` octet string and convert ECDSA signatures.
//!
//! Trusts: nothing; every reader returns `None` on malformed input. Must
//! never: index out of bounds or accept trailing garbage where it matters.

/// `rsaEncryption` OID (1.2.840.113549.1.1.1), full TLV.
pub(crate) const OID_RSA_ENCRYPTION: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];
/// `id-ecPublicKey` OID (1.2.840.10045.2.1), full TLV.
pub(crate) const OID_EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// `prime256v1` OID (1.2.840.10045.3.1.7), full TLV; also the `CKA_EC_PARAMS` value.
pub(crate) const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// `secp384r1` OID (1.3.132.0.34), full TLV; also the `CKA_EC_PARAMS` value.
pub(crate) const OID_P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

/// PEM with Unix line endings (the `pem` crate defaults to CRLF), one block per DER.
pub(crate) fn pem_lf(tag: &str, ders: &[Vec<u8>]) -> String {
    let blocks: Vec<pem::Pem> = ders.iter().map(|d| pem::Pem::new(tag, d.clone())).collect();
    pem::encode_many_config(
        &blocks,
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// One TLV with a definite length.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        let significant = bytes.get(skip..).unwrap_or(&[]);
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
    out.extend_from_slice(content);
    out
}

/// SEQUENCE of already encoded parts.
pub(crate) fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

/// Non-negative INTEGER from big-endian magnitude bytes.
pub(crate) fn uint(magnitude: &[u8]) -> Vec<u8> {
    let skip = magnitude.iter().take_while(|b| **b == 0).count();
    let trimmed = magnitude.get(skip..).unwrap_or(&[]);
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_none_or(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(trimmed);
    tlv(0x02, &content)
}

/// BIT STRING with no unused bits.
pub(crate) fn bit_string(bytes: &[u8]) -> Vec<u8> {
    let mut content = vec![0u8];
    content.extend_from_slice(bytes);
    tlv(0x03, &content)
}

/// Reads one TLV: returns (tag, content, rest).
pub(crate) fn read_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let (len_bytes, rest) = rest.split_at_checked(n)?;
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, rest)
    };
    let (content, rest) = rest.split_at_checked(len)?;
    Some((tag, content, rest))
}

/// ECDSA signature: raw `r || s` (PKCS#11 form) to DER `SEQUENCE { r, s }` (X.509/CMS form).
pub fn ecdsa_raw_to_der(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.is_empty() || !raw.len().is_multiple_of(2) {
        return None;
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    Some(seq(&[&uint(r), &uint(s)]))
}

/// ECDSA signature: DER `SEQUENCE { r, s }` to raw `r || s` with each half `half` bytes
/// (32 for P-256, 48 for P-384), the form OpenPGP and JOSE use.
pub fn ecdsa_der_to_raw(der: &[u8], half: usize) -> Option<Vec<u8>> {
    let (tag, body, rest) = read_tlv(der)?;
    if tag != 0x30 || !rest.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(half * 2);
    let mut body = body;
    for _ in 0..2 {
        let (tag, int, rest) = read_tlv(body)?;
        if tag != 0x02 {
            return None;
        }
        let skip = int.iter().take_while(|b| **b == 0).count();
        let mag = int.get(skip..)?;
        if mag.len() > half {
            return None;
        }
        out.extend(std::iter::repeat_n(0u8, half - mag.len()));
        out.extend_from_slice(mag);
        body = rest;
    }
    body.is_empty().then_some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn ecdsa_round_trip_keeps_leading_zero_halves() {
        let mut raw = vec![0u8; 64];
        raw[1] = 0x80;
        raw[40] = 0x7f;
        let der = ecdsa_raw_to_der(&raw).unwrap();
        assert_eq!(ecdsa_der_to_raw(&der, 32).unwrap(), raw);
    }

    #[test]
    fn long_lengths_round_trip() {
        let content = vec![7u8; 300];
        let enc = tlv(0x04, &content);
        let (tag, body, rest) = read_tlv(&enc).unwrap();
        assert_eq!((tag, body, rest.len()), (0x04, &content[..], 0));
    }
}
