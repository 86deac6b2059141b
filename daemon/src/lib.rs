//! Sealgate: a server-side email encryption gateway.
