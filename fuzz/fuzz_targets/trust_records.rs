//! Fuzzes what the outbound TLS policy reads from the network: MTA-STS
//! TXT records and policy files (RFC 8461), TLS-RPT records (RFC 8460),
//! and DNS answers as the DNSSEC-aware stub reads them. Nothing may
//! panic, and what parses must hold together: a policy's patterns are
//! lower case and bounded, a policy allows only hosts its patterns name,
//! a parsed record's id is what the input said.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sealgate::outbound_tls::{mta_sts, report};

fuzz_target!(|data: &[u8]| {
    if let Ok(policy) = mta_sts::parse_policy(data) {
        assert!(policy.mx.len() <= mta_sts::MAX_MX_PATTERNS);
        assert!(policy.max_age <= mta_sts::MAX_AGE_LIMIT);
        for pattern in &policy.mx {
            assert_eq!(*pattern, pattern.to_ascii_lowercase());
            let host = pattern.trim_start_matches("*.");
            // A pattern allows the host it names (or one label below a wildcard).
            if pattern.starts_with("*.") {
                assert!(policy.allows(&format!("mx.{host}")));
            } else {
                assert!(policy.allows(host));
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(record) = mta_sts::parse_record(text) {
            assert!(!record.id.is_empty() && record.id.len() <= 32);
            assert!(text.contains(&record.id));
        }
        if let Ok(ruas) = report::parse_record(text) {
            assert!(!ruas.is_empty() && ruas.len() <= 10 * text.matches("rua=").count().max(1));
        }
    }
});
