//! Finding ASCII-armored OpenPGP blocks in the text of a mail part (inline
//! PGP, RFC 9580 §6.2 and the cleartext signature framework, §7).
//!
//! Only locates blocks by their header and footer lines; Sequoia parses
//! them. Trusts nothing; total on any text.

/// What an armored block holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `BEGIN PGP MESSAGE`: encrypted or signed data.
    Message,
    /// `BEGIN PGP SIGNED MESSAGE` … `END PGP SIGNATURE`: cleartext signature.
    Signed,
    /// `BEGIN PGP PUBLIC KEY BLOCK`: a certificate.
    PublicKey,
}

/// One armored block, header to footer line inclusive.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Block<'a> {
    pub(crate) kind: Kind,
    pub(crate) text: &'a str,
}

const KINDS: [(Kind, &str, &str); 3] = [
    (
        Kind::Signed,
        "-----BEGIN PGP SIGNED MESSAGE-----",
        "-----END PGP SIGNATURE-----",
    ),
    (
        Kind::Message,
        "-----BEGIN PGP MESSAGE-----",
        "-----END PGP MESSAGE-----",
    ),
    (
        Kind::PublicKey,
        "-----BEGIN PGP PUBLIC KEY BLOCK-----",
        "-----END PGP PUBLIC KEY BLOCK-----",
    ),
];

/// The armored blocks of `text`, in order. A block without its footer is ignored.
pub(crate) fn blocks(text: &str) -> Vec<Block<'_>> {
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        let rest = text.get(pos..).unwrap_or_default();
        let next = KINDS
            .iter()
            .filter_map(|(k, begin, end)| {
                rest.find(begin)
                    .filter(|&i| i == 0 || rest.get(..i).is_some_and(|b| b.ends_with('\n')))
                    .map(|i| (i, *k, *end))
            })
            .min_by_key(|(i, _, _)| *i);
        let Some((start, kind, end)) = next else {
            break;
        };
        let after = rest.get(start..).unwrap_or_default();
        let Some(e) = after.find(end) else {
            break;
        };
        let stop = start + e + end.len();
        if let Some(t) = rest.get(start..stop) {
            out.push(Block { kind, text: t });
        }
        pos += stop;
    }
    out
}

/// The armored `PGP SIGNATURE` block at the end of a cleartext-signed
/// block (RFC 9580 §7), header to footer line inclusive.
pub(crate) fn signature_of(signed: &str) -> Option<&str> {
    let begin = "-----BEGIN PGP SIGNATURE-----";
    let start = signed.rfind(begin)?;
    signed.get(start..)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn finds_blocks_in_order() {
        let t = "hi\n-----BEGIN PGP MESSAGE-----\nx\n-----END PGP MESSAGE-----\nmid\n\
                 -----BEGIN PGP SIGNED MESSAGE-----\nH\n-----BEGIN PGP SIGNATURE-----\ny\n\
                 -----END PGP SIGNATURE-----\n-----BEGIN PGP MESSAGE-----\nno end";
        let b = blocks(t);
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].kind, Kind::Message);
        assert_eq!(b[1].kind, Kind::Signed);
        assert!(b[1].text.ends_with("-----END PGP SIGNATURE-----"));
        assert!(
            signature_of(b[1].text)
                .unwrap()
                .starts_with("-----BEGIN PGP SIGNATURE-----\ny")
        );
    }
}
