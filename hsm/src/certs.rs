//! Certificates (placeholder).
