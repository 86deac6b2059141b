//! SMTP: the protocol core (no I/O: [`command`], [`data`],
//! [`session`], [`reply`]), the inbound server ([`server`]) and the outbound
//! client ([`client`]).

pub mod client;
pub mod command;
pub mod data;
pub mod reply;
pub mod server;
pub mod session;
pub mod stream;
