//! Wildcard patterns for addresses and domains, as administrators write them
//! in policy rules: `*` matches any run of characters (including none), every
//! other character matches itself, ASCII case-insensitively.
//!
//! A pattern without `@` names a domain (`example.com`, `*.example.com`) and
//! is compared with the domain part of an address; a pattern with `@` is
//! compared with the whole address (`alice@*`, `*@example.com`).
//!
//! Trusts: nothing. Matching is iterative with backtracking to the last `*`
//! only, so it runs in O(pattern × text) whatever the input.

/// Whether `text` matches `pattern` (`*` wildcards, ASCII case-insensitive).
pub fn matches(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(c) if t.get(ti).is_some_and(|x| x.eq_ignore_ascii_case(c)) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|c| *c == b'*'))
}

/// Whether an address matches an address-or-domain pattern (see the module doc).
/// `*.example.com` also matches `example.com` itself.
pub fn matches_address(pattern: &str, address: &str) -> bool {
    if pattern.contains('@') {
        return matches(pattern, address);
    }
    let domain = address.rsplit_once('@').map_or(address, |(_, d)| d);
    matches(pattern, domain)
        || pattern
            .strip_prefix("*.")
            .is_some_and(|base| base.eq_ignore_ascii_case(domain))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(matches("*", ""));
        assert!(matches("a*c", "abbbc"));
        assert!(matches("A*C", "abc"));
        assert!(!matches("a*c", "abcd"));
        assert!(matches("*@example.com", "bob@EXAMPLE.com"));
        assert!(!matches("*@example.com", "bob@example.com.evil"));
        assert!(matches("**a**", "xxaxx"));
        assert!(!matches("", "x"));
    }

    #[test]
    fn domains_and_addresses() {
        assert!(matches_address("example.com", "a@example.com"));
        assert!(!matches_address("example.com", "a@sub.example.com"));
        assert!(matches_address("*.example.com", "a@sub.example.com"));
        assert!(matches_address("*.example.com", "a@example.com"));
        assert!(!matches_address("*.example.com", "a@badexample.com"));
        assert!(matches_address("alice@*", "alice@anywhere.org"));
        assert!(!matches_address("alice@*", "malice@anywhere.org"));
    }

    #[test]
    fn long_inputs_stay_linear() {
        let text = "a".repeat(10_000);
        let pattern = format!("{}b", "*a".repeat(50));
        assert!(!matches(&pattern, &text));
    }
}
