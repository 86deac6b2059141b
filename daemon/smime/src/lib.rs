//! Sealgate's S/MIME engine (issue 4): a pure library, MIME in and MIME out,
//! with private keys reached only through the `sealgate-hsm` traits.
