//! Envelope addresses: parsing RFC 5321 paths and the checks relay control
//! needs.
//!
//! Trusts nothing: input is a client's bytes. The parser keeps the local part
//! exactly as written (quoted or not) so relaying never rewrites an address,
//! and records every routing trick (source routes, `%`, `!`, a quoted `@`)
//! so the session can refuse them from outside clients.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest address we accept (RFC 5321 §4.5.3.1.3 path limit).
pub const MAX_PATH_LEN: usize = 256;

/// A mailbox `local@domain`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Address {
    /// The local part as written, quotes included.
    pub local: String,
    /// The domain as written (a name or an `[address literal]`).
    pub domain: String,
}

/// What a MAIL FROM or RCPT TO path held besides the mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedPath {
    /// `None` is the null reverse-path `<>`.
    pub mailbox: Option<Address>,
    /// An RFC 821 source route (`@a,@b:`) was present; it is ignored for delivery.
    pub had_source_route: bool,
}

impl Address {
    /// The domain in lower case, for comparisons and grouping.
    pub fn domain_lower(&self) -> String {
        self.domain.to_ascii_lowercase()
    }

    pub fn is_quoted(&self) -> bool {
        self.local.starts_with('"')
    }

    /// The domain is an address literal (`[192.0.2.1]`).
    pub fn is_literal(&self) -> bool {
        self.domain.starts_with('[')
    }

    pub fn is_ascii(&self) -> bool {
        self.local.is_ascii() && self.domain.is_ascii()
    }

    /// The local part tries to route mail further: `%` hack, bang path, or
    /// an `@` inside a quoted local part.
    pub fn has_local_part_routing(&self) -> bool {
        self.local.contains(['%', '!', '@'])
    }

    /// Parses `local@domain` without angle brackets.
    pub fn parse(text: &str) -> Option<Address> {
        let (local, domain) = split_mailbox(text)?;
        if !valid_local_part(local) || !valid_domain(domain) {
            return None;
        }
        Some(Address {
            local: local.to_string(),
            domain: domain.to_string(),
        })
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

/// Parses a path as it follows `MAIL FROM:` or `RCPT TO:`: `<...>` (or a
/// bare mailbox, as lenient MTAs accept). `allow_null` permits `<>`.
/// `postmaster_domain` completes a bare `<postmaster>` (RFC 5321 §4.5.1).
pub fn parse_path(text: &str, allow_null: bool, postmaster_domain: &str) -> Option<ParsedPath> {
    if text.len() > MAX_PATH_LEN + 2 {
        return None;
    }
    let inner = match text.strip_prefix('<') {
        Some(rest) => rest.strip_suffix('>')?,
        None => text,
    };
    if inner.is_empty() {
        return allow_null.then_some(ParsedPath {
            mailbox: None,
            had_source_route: false,
        });
    }
    if inner.eq_ignore_ascii_case("postmaster") {
        return Some(ParsedPath {
            mailbox: Some(Address {
                local: inner.to_string(),
                domain: postmaster_domain.to_string(),
            }),
            had_source_route: false,
        });
    }
    let (route, mailbox) = match inner.strip_prefix('@') {
        Some(_) => {
            let (route, mailbox) = inner.split_once(':')?;
            if !valid_source_route(route) {
                return None;
            }
            (true, mailbox)
        }
        None => (false, inner),
    };
    Some(ParsedPath {
        mailbox: Some(Address::parse(mailbox)?),
        had_source_route: route,
    })
}

/// The characters of `text` that stand outside quoted strings (RFC 5321
/// Quoted-string, with backslash escapes), with their byte offsets.
pub fn unquoted_chars(text: &str) -> impl Iterator<Item = (usize, char)> + '_ {
    let mut in_quotes = false;
    let mut escaped = false;
    text.char_indices().filter(move |&(_, ch)| {
        if escaped {
            escaped = false;
            return false;
        }
        match ch {
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            _ => return !in_quotes,
        }
        false
    })
}

/// Splits at the `@` that separates the local part from the domain, which is
/// the last `@` outside a quoted string.
fn split_mailbox(text: &str) -> Option<(&str, &str)> {
    let at = unquoted_chars(text).filter(|&(_, ch)| ch == '@').last()?.0;
    Some((text.get(..at)?, text.get(at + 1..)?))
}

fn is_atext(ch: char) -> bool {
    ch.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(ch) || !ch.is_ascii()
}

fn valid_local_part(local: &str) -> bool {
    if local.is_empty() || local.len() > 64 {
        return false;
    }
    if let Some(inner) = local.strip_prefix('"') {
        let Some(inner) = inner.strip_suffix('"') else {
            return false;
        };
        let mut escaped = false;
        for ch in inner.chars() {
            if escaped {
                if !(' '..='~').contains(&ch) {
                    return false;
                }
                escaped = false;
            } else if ch == '\\' {
                escaped = true;
            } else if ch == '"' || (ch.is_ascii() && !(' '..='~').contains(&ch)) {
                return false;
            }
        }
        return !escaped;
    }
    local
        .split('.')
        .all(|atom| !atom.is_empty() && atom.chars().all(is_atext))
}

fn valid_domain(domain: &str) -> bool {
    if domain.is_empty() || domain.len() > 255 {
        return false;
    }
    if let Some(literal) = domain.strip_prefix('[') {
        let Some(literal) = literal.strip_suffix(']') else {
            return false;
        };
        if let Some(v6) = literal.strip_prefix("IPv6:") {
            return v6.parse::<std::net::Ipv6Addr>().is_ok();
        }
        return literal.parse::<std::net::Ipv4Addr>().is_ok();
    }
    domain.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii())
    })
}

fn valid_source_route(route: &str) -> bool {
    route
        .split(',')
        .all(|hop| hop.strip_prefix('@').is_some_and(valid_domain))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn path(text: &str) -> Option<ParsedPath> {
        parse_path(text, true, "example.org")
    }

    #[test]
    fn plain_and_null_paths() {
        let p = path("<a.b@Example.ORG>").unwrap();
        let a = p.mailbox.unwrap();
        assert_eq!(a.local, "a.b");
        assert_eq!(a.domain_lower(), "example.org");
        assert_eq!(path("<>").unwrap().mailbox, None);
        assert!(parse_path("<>", false, "x").is_none());
    }

    #[test]
    fn routing_tricks_are_recorded() {
        let p = path("<@relay.example,@b.example:victim@target.example>").unwrap();
        assert!(p.had_source_route);
        assert_eq!(p.mailbox.unwrap().domain, "target.example");
        assert!(
            path("<user%target.example@example.org>")
                .unwrap()
                .mailbox
                .unwrap()
                .has_local_part_routing()
        );
        assert!(
            path("<target.example!user@example.org>")
                .unwrap()
                .mailbox
                .unwrap()
                .has_local_part_routing()
        );
        let q = path("<\"user@target.example\"@example.org>")
            .unwrap()
            .mailbox
            .unwrap();
        assert!(q.is_quoted() && q.has_local_part_routing());
        // user@domain@gw: the last @ splits; the local part "user@domain" is not a dot-string.
        assert!(path("<user@target.example@example.org>").is_none());
    }

    #[test]
    fn literals_and_bad_forms() {
        assert!(
            path("<a@[192.0.2.1]>")
                .unwrap()
                .mailbox
                .unwrap()
                .is_literal()
        );
        assert!(path("<a@[IPv6:::1]>").is_some());
        assert!(path("<a@[999.1.1.1]>").is_none());
        assert!(path("<a@>").is_none());
        assert!(path("<@>").is_none());
        assert!(path("<a..b@x>").is_none());
        assert!(path("<a@-x.org>").is_none());
        assert!(path("<a b@x.org>").is_none());
        assert!(path("<a@x.org").is_none());
        assert!(path(&format!("<{}@x.org>", "a".repeat(300))).is_none());
    }

    #[test]
    fn postmaster_without_domain() {
        let a = path("<Postmaster>").unwrap().mailbox.unwrap();
        assert_eq!(a.domain, "example.org");
    }

    #[test]
    fn utf8_addresses_parse_and_report_non_ascii() {
        let a = path("<jösé@bücher.example>").unwrap().mailbox.unwrap();
        assert!(!a.is_ascii());
    }
}
