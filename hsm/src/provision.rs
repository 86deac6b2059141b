//! Provisioning (placeholder).
