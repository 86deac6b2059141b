//! Resource limits applied to everything that arrives from outside.
//!
//! A message or certificate is attacker-controlled: keys with 100,000+
//! signatures exist, a 1 KB compressed packet can inflate to gigabytes, and
//! compressed packets can nest. Every parser entry point in this crate takes
//! a [`Limits`] and refuses input beyond it before doing expensive work.
//! Trusts nothing; the values are the operator's.

/// Bounds on input size and shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted input message or certificate blob, in bytes.
    pub max_input: usize,
    /// Largest plaintext released after decryption and decompression, in
    /// bytes; decryption holds up to this much while it checks integrity.
    pub max_plaintext: usize,
    /// Compressed-data packets allowed in one message (nesting or sequence).
    pub max_compression_layers: usize,
    /// Largest public key accepted, in bits (RSA modulus).
    pub max_key_bits: usize,
    /// Signatures accepted on one certificate (all components together).
    pub max_signatures_per_cert: usize,
    /// Certificates accepted from one blob (keyring, Autocrypt header, part).
    pub max_certs_per_blob: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_input: 64 << 20,
            max_plaintext: 64 << 20,
            max_compression_layers: 1,
            max_key_bits: 8192,
            max_signatures_per_cert: 1024,
            max_certs_per_blob: 16,
        }
    }
}
