//! Policy stage: a parsed message and its recipients → one decision each.
//!
//! Works out who is internal (own domains, internal networks), whether the
//! trigger header may be believed (the connecting host is one of the
//! policy's trusted hosts), fills the facts and runs the pure decision
//! function for every recipient. The pipeline and `sealgate policy explain`
//! both call [`decide_all`], so the dry run shows exactly what delivery does.
//!
//! Trusts: the configuration; the message content only as far as `parse` does.

use std::net::IpAddr;

use crate::config::Config;
use crate::pipeline::parse::{self, Context, Limits, ParseError};
use crate::policy::{Decision, MessageFacts, Policy, Recipient, decide};

/// Who sent the message and from where.
#[derive(Debug, Clone)]
pub struct Origin<'a> {
    /// The envelope sender (empty for `<>`).
    pub sender: &'a str,
    /// The connecting client.
    pub client_ip: Option<IpAddr>,
    /// The sender's groups, as the expand stage found them.
    pub sender_groups: &'a [String],
    /// Set when the unwrap stage opened the message: it arrived encrypted
    /// for the gateway (the content given is the decrypted one).
    pub arrived_encrypted: Option<crate::policy::Wrapping>,
}

/// One recipient to decide for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked {
    pub address: String,
    /// An administrator released it from quarantine.
    pub released: bool,
}

impl Asked {
    pub fn new(address: &str) -> Asked {
        Asked {
            address: address.to_owned(),
            released: false,
        }
    }
}

/// The facts of `content` and a decision for each recipient, in order.
pub fn decide_all(
    config: &Config,
    policy: &Policy,
    content: &[u8],
    origin: &Origin<'_>,
    recipients: &[Asked],
) -> Result<(MessageFacts, Vec<Decision>), ParseError> {
    let sender_domain = origin.sender.rsplit_once('@').map(|(_, d)| d);
    let from_inside = origin.client_ip.is_some_and(|ip| config.is_internal(ip));
    let sender_internal = from_inside && sender_domain.is_some_and(|d| config.is_local_domain(d));
    let trigger_trusted = origin.client_ip.is_some_and(|ip| {
        policy
            .config
            .trusted_trigger_hosts
            .iter()
            .any(|n| n.contains(ip))
    });
    let context = Context {
        sender: origin.sender,
        sender_internal,
        trigger_header: &policy.config.trigger_header,
        trigger_trusted,
    };
    let mut facts = parse::facts(content, &context, Limits::default())?;
    facts.sender_groups = origin.sender_groups.to_vec();
    if origin.arrived_encrypted.is_some() {
        facts.encrypted_for_gateway = origin.arrived_encrypted;
    }
    let decisions = recipients
        .iter()
        .map(|asked| {
            let internal = asked
                .address
                .rsplit_once('@')
                .is_some_and(|(_, d)| config.is_local_domain(d));
            decide(
                policy,
                &facts,
                &Recipient {
                    address: asked.address.clone(),
                    internal,
                    released: asked.released,
                },
            )
        })
        .collect();
    Ok((facts, decisions))
}
