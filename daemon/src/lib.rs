//! Sealgate: a server-side email encryption gateway.
//!
//! This crate is the daemon and its command-line verbs. The flow of one
//! message: [`smtp::server`] accepts it (relay rules, limits, STARTTLS),
//! [`queue`] makes it durable in the spool before `250`, the
//! [`queue::scheduler`] runs it through the [`pipeline`] and hands the result
//! to [`delivery`], and [`tracking`] records every step. `docs/ARCHITECTURE.md`
//! in the repository tells the whole story.

pub mod accounts;
pub mod address;
pub mod audit;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod console;
pub mod control;
pub mod daemon;
pub mod db;
pub mod delivery;
pub mod directory;
pub mod discovery;
pub mod dkim;
pub mod dnssec;
pub mod envelope;
pub mod expand;
pub mod https;
pub mod keys;
pub mod logging;
pub mod outbound_tls;
pub mod pipeline;
pub mod policy;
pub mod portal;
pub mod queue;
pub mod reason;
pub mod service;
pub mod settings;
pub mod setup_token;
pub mod smime_trust;
pub mod smtp;
pub mod store;
pub mod tls;
pub mod tracking;
pub mod trust;
pub mod util;
