//! ASN.1 reading (BER, which includes DER) and DER writing, just what CMS needs.
//!
//! The reader takes definite and indefinite lengths (the streamed form
//! `openssl cms -stream`, Outlook and others write) and constructed OCTET
//! STRINGs, and is bounded: nesting depth is limited ([`MAX_DEPTH`]), lengths
//! are checked against the input, and only low tag numbers (< 31) are
//! accepted, which is all CMS and X.509 use. The writer produces DER for the
//! structures Sealgate builds.
//!
//! Trusts: nothing; every byte read here is attacker-controlled. Must never:
//! index out of bounds, recurse without bound, or allocate more than the
//! input's size.

use crate::error::Error;

/// Deepest nesting the reader follows (CMS messages need about 12).
pub const MAX_DEPTH: usize = 40;

/// Universal tags and context tags used by CMS.
pub mod tag {
    pub const BOOLEAN: u8 = 0x01;
    pub const INTEGER: u8 = 0x02;
    pub const BIT_STRING: u8 = 0x03;
    pub const OCTET_STRING: u8 = 0x04;
    pub const NULL: u8 = 0x05;
    pub const OID: u8 = 0x06;
    pub const UTF8_STRING: u8 = 0x0c;
    pub const SEQUENCE: u8 = 0x30;
    pub const SET: u8 = 0x31;
    pub const UTC_TIME: u8 = 0x17;
    pub const GENERALIZED_TIME: u8 = 0x18;
    /// Context-specific, constructed `[n]`.
    pub const fn ctx(n: u8) -> u8 {
        0xa0 | n
    }
    /// Context-specific, primitive `[n]`.
    pub const fn ctx_prim(n: u8) -> u8 {
        0x80 | n
    }
}

/// The constructed bit of an identifier octet.
const CONSTRUCTED: u8 = 0x20;

/// One element: its identifier octet and its content bytes (for an
/// indefinite-length element, the content without the end-of-contents octets).
#[derive(Debug, Clone, Copy)]
pub struct Tlv<'a> {
    /// Identifier octet (class, constructed bit, tag number).
    pub tag: u8,
    /// Content octets.
    pub body: &'a [u8],
    /// The whole encoding (header, content and end-of-contents), for hashing
    /// or re-emitting exactly what was received.
    pub raw: &'a [u8],
    depth: usize,
}

fn malformed(what: &str) -> Error {
    Error::Malformed(what.to_owned())
}

/// Reads one element at the start of `input`; returns it and the rest.
pub fn read(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), Error> {
    read_at(input, 0)
}

/// Reads exactly one element filling all of `input`.
pub fn read_all(input: &[u8]) -> Result<Tlv<'_>, Error> {
    let (tlv, rest) = read(input)?;
    if rest.is_empty() {
        Ok(tlv)
    } else {
        Err(malformed("trailing data after ASN.1 element"))
    }
}

fn read_at(input: &[u8], depth: usize) -> Result<(Tlv<'_>, &[u8]), Error> {
    if depth > MAX_DEPTH {
        return Err(Error::Limit("ASN.1 nesting depth"));
    }
    let (&tag, after_tag) = input
        .split_first()
        .ok_or_else(|| malformed("truncated ASN.1 element"))?;
    if tag & 0x1f == 0x1f {
        return Err(malformed("high ASN.1 tag numbers are not used in CMS"));
    }
    let (&first, mut rest) = after_tag
        .split_first()
        .ok_or_else(|| malformed("truncated ASN.1 length"))?;
    let header_len;
    let body;
    let total;
    if first == 0x80 {
        // Indefinite length: children until the end-of-contents octets.
        if tag & CONSTRUCTED == 0 {
            return Err(malformed("indefinite length on a primitive element"));
        }
        header_len = 2;
        let start = rest;
        let mut used = 0usize;
        loop {
            if rest.starts_with(&[0, 0]) {
                break;
            }
            let (child, next) = read_at(rest, depth + 1)?;
            used += child.raw.len();
            rest = next;
        }
        body = start
            .get(..used)
            .ok_or_else(|| malformed("indefinite length"))?;
        total = header_len + used + 2;
    } else {
        let (len, n) = if first < 0x80 {
            (usize::from(first), 0)
        } else {
            let n = usize::from(first & 0x7f);
            if n > 4 {
                return Err(Error::Limit("ASN.1 length over 4 GiB"));
            }
            let bytes = rest
                .get(..n)
                .ok_or_else(|| malformed("truncated ASN.1 length"))?;
            let mut len = 0usize;
            for b in bytes {
                len = (len << 8) | usize::from(*b);
            }
            rest = rest.get(n..).unwrap_or_default();
            (len, n)
        };
        header_len = 2 + n;
        body = rest
            .get(..len)
            .ok_or_else(|| malformed("ASN.1 length beyond the input"))?;
        total = header_len + len;
    }
    let raw = input
        .get(..total)
        .ok_or_else(|| malformed("ASN.1 element beyond the input"))?;
    let rest = input.get(total..).unwrap_or_default();
    Ok((
        Tlv {
            tag,
            body,
            raw,
            depth,
        },
        rest,
    ))
}

impl<'a> Tlv<'a> {
    /// Whether the element is constructed.
    pub fn constructed(&self) -> bool {
        self.tag & CONSTRUCTED != 0
    }

    /// Whether the identifier octet is exactly `tag`.
    fn is(&self, tag: u8) -> bool {
        self.tag == tag
    }

    /// The children of a constructed element, in order.
    pub fn children(&self) -> Children<'a> {
        Children {
            rest: if self.constructed() { self.body } else { &[] },
            depth: self.depth + 1,
        }
    }

    /// Requires tag `tag`; `what` names the field in the error.
    pub fn expect(self, tag: u8, what: &str) -> Result<Tlv<'a>, Error> {
        if self.is(tag) {
            Ok(self)
        } else {
            Err(Error::Malformed(format!(
                "{what}: expected tag {tag:#04x}, found {:#04x}",
                self.tag
            )))
        }
    }

    /// The content of an OCTET STRING (or an implicitly tagged one with the
    /// given primitive tag number), joining the segments of a constructed
    /// (BER) string. `limit` bounds the result.
    pub fn octets(&self, limit: usize) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        self.append_octets(&mut out, limit)?;
        Ok(out)
    }

    /// Appends the content of an OCTET STRING (see [`Tlv::octets`]) to
    /// `out`, which is grown once to the exact size: the segments of a
    /// constructed string go straight to their place, with no intermediate
    /// copy. `limit` bounds what is appended.
    pub fn append_octets(&self, out: &mut Vec<u8>, limit: usize) -> Result<(), Error> {
        out.reserve(self.octets_len(limit)?);
        self.for_each_segment(&mut |segment| {
            out.extend_from_slice(segment);
            Ok(())
        })
    }

    /// The length of the content of an OCTET STRING, at most `limit`.
    pub fn octets_len(&self, limit: usize) -> Result<usize, Error> {
        let mut len = 0usize;
        self.for_each_segment(&mut |segment| {
            len = len.saturating_add(segment.len());
            if len > limit {
                return Err(Error::Limit("content size"));
            }
            Ok(())
        })?;
        Ok(len)
    }

    /// Calls `f` with each primitive segment of an OCTET STRING in order
    /// (the string itself when it is primitive). Recursion is bounded by
    /// the reader's nesting limit.
    fn for_each_segment(
        &self,
        f: &mut dyn FnMut(&'a [u8]) -> Result<(), Error>,
    ) -> Result<(), Error> {
        if !self.constructed() {
            return f(self.body);
        }
        for child in self.children() {
            let child = child?;
            if child.tag & 0x1f != tag::OCTET_STRING {
                return Err(malformed("segment of a constructed OCTET STRING"));
            }
            child.for_each_segment(f)?;
        }
        Ok(())
    }

    /// An unsigned INTEGER that fits in a u64.
    pub fn small_uint(&self) -> Result<u64, Error> {
        if self.tag != tag::INTEGER || self.body.is_empty() || self.body.len() > 9 {
            return Err(malformed("small INTEGER"));
        }
        if self.body.first().is_some_and(|b| b & 0x80 != 0) {
            return Err(malformed("negative INTEGER"));
        }
        let mut v: u64 = 0;
        for b in self.body {
            v = v.checked_shl(8).ok_or_else(|| malformed("INTEGER"))? | u64::from(*b);
        }
        Ok(v)
    }
}

/// Iterator over the children of a constructed element.
#[derive(Debug, Clone)]
pub struct Children<'a> {
    rest: &'a [u8],
    depth: usize,
}

impl<'a> Iterator for Children<'a> {
    type Item = Result<Tlv<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        match read_at(self.rest, self.depth) {
            Ok((tlv, rest)) => {
                self.rest = rest;
                Some(Ok(tlv))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

impl<'a> Children<'a> {
    /// The next child, which must exist.
    pub fn need(&mut self, what: &str) -> Result<Tlv<'a>, Error> {
        self.next()
            .unwrap_or_else(|| Err(Error::Malformed(format!("{what}: missing"))))
    }

    /// The next child if it has tag `tag`; otherwise nothing is consumed.
    pub fn optional(&mut self, tag: u8) -> Result<Option<Tlv<'a>>, Error> {
        let save = self.clone();
        match self.next() {
            Some(Ok(t)) if t.tag == tag => Ok(Some(t)),
            Some(Err(e)) => Err(e),
            _ => {
                *self = save;
                Ok(None)
            }
        }
    }

    /// The next child if any, without consuming it.
    pub fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }
}

// ---------------------------------------------------------------- writing

/// Appends a DER length.
fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        let significant = bytes.get(skip..).unwrap_or_default();
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
}

/// The identifier and length octets of an element with `len` content octets
/// (to assemble large elements without copying their content twice).
pub fn header(tag: u8, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(6);
    out.push(tag);
    push_len(&mut out, len);
    out
}

/// One DER element with identifier `tag` and content `body`.
pub fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 6);
    out.push(tag);
    push_len(&mut out, body.len());
    out.extend_from_slice(body);
    out
}

/// A constructed element with the concatenated `parts` as content.
pub fn cons(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = Vec::with_capacity(len + 6);
    out.push(tag);
    push_len(&mut out, len);
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

/// A SEQUENCE of `parts`.
pub fn seq(parts: &[&[u8]]) -> Vec<u8> {
    cons(tag::SEQUENCE, parts)
}

/// A DER SET OF: the encoded elements sorted as DER requires.
pub fn set_of(mut parts: Vec<Vec<u8>>) -> Vec<u8> {
    parts.sort();
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    cons(tag::SET, &refs)
}

/// An OCTET STRING.
pub fn octets(body: &[u8]) -> Vec<u8> {
    tlv(tag::OCTET_STRING, body)
}

/// An OBJECT IDENTIFIER from its content octets.
pub fn oid(content: &[u8]) -> Vec<u8> {
    tlv(tag::OID, content)
}

/// A non-negative INTEGER.
pub fn uint(value: u64) -> Vec<u8> {
    uint_bytes(&value.to_be_bytes())
}

/// A non-negative INTEGER from big-endian bytes.
pub fn uint_bytes(be: &[u8]) -> Vec<u8> {
    let skip = be.iter().take_while(|b| **b == 0).count();
    let mut body = Vec::with_capacity(be.len() + 1);
    let significant = be.get(skip..).unwrap_or_default();
    if significant.first().is_none_or(|b| b & 0x80 != 0) {
        body.push(0);
    }
    body.extend_from_slice(significant);
    tlv(tag::INTEGER, &body)
}

/// A BIT STRING with no unused bits.
pub fn bits(body: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(body.len() + 1);
    content.push(0);
    content.extend_from_slice(body);
    tlv(tag::BIT_STRING, &content)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn definite_and_indefinite_agree() {
        let der = seq(&[&octets(b"abc"), &uint(300)]);
        let t = read_all(&der).unwrap();
        let kids: Vec<_> = t.children().map(Result::unwrap).collect();
        assert_eq!(kids[0].octets(10).unwrap(), b"abc");
        assert_eq!(kids[1].small_uint().unwrap(), 300);

        // SEQUENCE (indefinite) { OCTET STRING (constructed, indefinite) { "ab", "c" } }
        let ber = [
            0x30, 0x80, 0x24, 0x80, 0x04, 0x02, b'a', b'b', 0x04, 0x01, b'c', 0, 0, 0, 0,
        ];
        let t = read_all(&ber).unwrap();
        let s = t.children().next().unwrap().unwrap();
        assert_eq!(s.octets(10).unwrap(), b"abc");
        assert!(s.octets(2).is_err());
    }

    #[test]
    fn refuses_deep_nesting_and_truncation() {
        let mut deep = Vec::new();
        for _ in 0..100 {
            deep.extend_from_slice(&[0x30, 0x80]);
        }
        assert!(read(&deep).is_err());
        assert!(read(&[0x30, 0x05, 0x01]).is_err());
        assert!(read(&[0x04, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(read(&[0x1f, 0x01, 0x00]).is_err());
    }
}
