//! Sealgate's OpenPGP engine (issue 5): a pure library, MIME in and MIME out,
//! with the gateway's private keys reached only through the `sealgate-hsm` traits.
