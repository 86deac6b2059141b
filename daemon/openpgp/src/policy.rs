//! The one OpenPGP policy every operation uses: Sequoia's `StandardPolicy`
//! with SHA-1 rejected outright. Sequoia 2.4's defaults already refuse
//! SHA-1 self-signatures (their second pre-image cutoff, February 2023, has
//! passed); rejecting it here keeps the gateway's rule explicit and
//! independent of a future default. Pure; trusts nothing.

use sequoia_openpgp::policy::StandardPolicy;
use sequoia_openpgp::types::HashAlgorithm;

/// The policy for certificates, signatures and recipients.
pub(crate) fn policy() -> StandardPolicy<'static> {
    let mut p = StandardPolicy::new();
    p.reject_hash(HashAlgorithm::SHA1);
    p
}
