//! Delivery: sends one outgoing message to a group of recipients by their
//! routes and reports a result per recipient.
//!
//! The route of a recipient, first match wins: the most specific
//! `delivery.routes` entry for its domain (`partner.example`,
//! `*.partner.example`); the internal mail server (`delivery.internal_server`)
//! for our own domains; then `delivery.mode` (the local outbox, the smart
//! host, or the domain's MX hosts). So inbound mail for our domains goes to
//! the internal server while the rest goes by MX or smart host.
//!
//! Never decides policy: it delivers what the pipeline produced. The
//! outbound TLS policy (`outbound_tls`) says per recipient domain which
//! hosts to try and what TLS each must give (a domain in
//! `require_tls_domains` at least STARTTLS); if that cannot be had, the
//! recipients are deferred with the reason, never sent in clear or over a
//! connection the policy does not allow.

pub mod mx;
pub mod outbox;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::address::Address;
use crate::config::{Config, DeliveryMode, split_host_port};
use crate::envelope::{Envelope, EnvelopeRecipient};
use crate::outbound_tls::{Hop, OutboundTls, RouteError, TlsPolicy, report};
use crate::reason::Reason;
use crate::smtp::client::{ClientError, Sent, SmtpClient, Transaction};

pub use crate::smtp::client::Outcome;

/// A per-recipient result, with the host that gave it.
#[derive(Debug, Clone)]
pub struct RecipientResult {
    pub index: usize,
    pub outcome: Outcome,
    pub remote: String,
}

/// Where one recipient's copy goes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Route {
    /// A file in the local outbox.
    Outbox,
    /// One next hop: a route, the internal server or the smart host.
    Host { host: String, port: u16 },
    /// The MX hosts of this domain.
    Mx(String),
}

impl Route {
    /// The route for `address` under `config`.
    pub fn of(config: &Config, address: &Address) -> Result<Route, String> {
        let domain = address.domain_lower();
        let hop =
            |text: &str| split_host_port(text, 25).map(|(host, port)| Route::Host { host, port });
        // The most specific route: an exact domain before `*.` patterns,
        // longer patterns before shorter ones.
        if let Some((_, next)) = config
            .delivery
            .routes
            .iter()
            .filter(|(pattern, _)| crate::policy::glob::matches_address(pattern, &domain))
            .max_by_key(|(pattern, _)| (!pattern.contains('*'), pattern.len()))
        {
            return hop(next);
        }
        if let Some(internal) = &config.delivery.internal_server
            && config.is_local_domain(&domain)
        {
            return hop(internal);
        }
        match config.delivery.mode {
            DeliveryMode::Outbox => Ok(Route::Outbox),
            DeliveryMode::Smarthost => match config.delivery.smarthost.as_deref() {
                Some(host) => hop(host),
                None => Err("no smart host configured".to_owned()),
            },
            DeliveryMode::Mx => Ok(Route::Mx(domain)),
        }
    }
}

/// Delivers outgoing messages: one SMTP client (and its connection pool)
/// and the MX resolvers, shared by every settings version.
pub struct Deliverer {
    client: SmtpClient,
    resolvers: Mutex<HashMap<Option<SocketAddr>, Arc<mx::MxResolver>>>,
    tls: Arc<OutboundTls>,
}

impl Deliverer {
    /// The deliverer; removes what an interrupted run left in the outbox.
    pub fn new(config: &Config, tls: Arc<OutboundTls>) -> std::io::Result<Deliverer> {
        let removed = outbox::remove_leftovers(&config.outbox_dir())?;
        if removed > 0 {
            tracing::info!(
                removed,
                "removed partial outbox files left by an interrupted run"
            );
        }
        Ok(Deliverer {
            client: SmtpClient::new(
                config.hostname.clone(),
                std::time::Duration::from_secs(config.delivery.timeout_secs),
            ),
            resolvers: Mutex::new(HashMap::new()),
            tls,
        })
    }

    fn resolver(&self, dns_server: Option<SocketAddr>) -> std::io::Result<Arc<mx::MxResolver>> {
        let mut resolvers = self.resolvers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(resolver) = resolvers.get(&dns_server) {
            return Ok(resolver.clone());
        }
        let resolver = Arc::new(mx::MxResolver::new(dns_server)?);
        resolvers.insert(dns_server, resolver.clone());
        Ok(resolver)
    }

    /// Delivers `content` from `envelope.sender` to `recipients` (queue
    /// index, recipient) under `config`, one transaction per route.
    pub async fn deliver(
        &self,
        config: &Config,
        envelope: &Envelope,
        recipients: &[(usize, &EnvelopeRecipient)],
        content: &[u8],
    ) -> Vec<RecipientResult> {
        self.client.configure(
            &config.hostname,
            std::time::Duration::from_secs(config.delivery.timeout_secs),
        );
        let mut groups: BTreeMap<Route, Vec<(usize, &EnvelopeRecipient)>> = BTreeMap::new();
        let mut results = Vec::new();
        for r in recipients {
            match Route::of(config, &r.1.address) {
                Ok(route) => groups.entry(route).or_default().push(*r),
                Err(why) => results.extend(defer_all(
                    std::slice::from_ref(r),
                    &Reason::Local {
                        detail: why,
                        config: true,
                    },
                    "",
                )),
            }
        }
        let needs_tls = groups.keys().any(|r| !matches!(r, Route::Outbox));
        let policy = if needs_tls {
            match self.tls.policy(config) {
                Ok(p) => Some(p),
                Err(e) => {
                    let reason = Reason::Local {
                        detail: format!("outbound TLS policy: {e}"),
                        config: true,
                    };
                    for group in groups.values() {
                        results.extend(defer_all(group, &reason, ""));
                    }
                    return results;
                }
            }
        } else {
            None
        };
        for (route, group) in groups {
            let sent = match (route, &policy) {
                (Route::Outbox, _) => {
                    outbox::deliver(&config.outbox_dir(), envelope, &group, content).await
                }
                (Route::Host { host, port }, Some(policy)) => {
                    self.send_by_relay(policy, &host, port, envelope, &group, content)
                        .await
                }
                (Route::Mx(domain), Some(policy)) => {
                    self.send_by_mx(config, policy, &domain, envelope, &group, content)
                        .await
                }
                (_, None) => defer_all(&group, &Reason::local("no outbound TLS policy"), ""),
            };
            results.extend(sent);
        }
        results
    }

    /// To one relay (a route, the internal server, the smart host):
    /// recipients whose domains ask the same TLS of it share a transaction.
    async fn send_by_relay(
        &self,
        policy: &TlsPolicy,
        host: &str,
        port: u16,
        envelope: &Envelope,
        group: &[(usize, &EnvelopeRecipient)],
        content: &[u8],
    ) -> Vec<RecipientResult> {
        let mut results = Vec::new();
        let mut by_requirement: Vec<(Hop, Vec<(usize, &EnvelopeRecipient)>)> = Vec::new();
        let mut by_domain: BTreeMap<String, Vec<(usize, &EnvelopeRecipient)>> = BTreeMap::new();
        for r in group {
            by_domain
                .entry(r.1.address.domain_lower())
                .or_default()
                .push(*r);
        }
        for (domain, members) in by_domain {
            match policy.relay_hop(&domain, host, port).await {
                Ok(tls) => match by_requirement
                    .iter_mut()
                    .find(|(hop, _)| hop.tls.pool_id() == tls.pool_id())
                {
                    Some((_, list)) => list.extend(members),
                    None => by_requirement.push((
                        Hop {
                            name: host.to_owned(),
                            address: host.to_owned(),
                            tls,
                            policy: report::PolicyRef::none(&domain),
                        },
                        members,
                    )),
                },
                Err(RouteError::Temporary(e) | RouteError::Permanent(e)) => results.extend(
                    defer_all(&members, &Reason::TlsRequired { detail: e }, host),
                ),
            }
        }
        for (hop, members) in by_requirement {
            results.extend(
                self.send_to_hops(&[hop], port, envelope, &members, content)
                    .await,
            );
        }
        results
    }

    async fn send_by_mx(
        &self,
        config: &Config,
        policy: &TlsPolicy,
        domain: &str,
        envelope: &Envelope,
        group: &[(usize, &EnvelopeRecipient)],
        content: &[u8],
    ) -> Vec<RecipientResult> {
        let resolver = match self.resolver(config.delivery.dns_server) {
            Ok(resolver) => resolver,
            Err(e) => return defer_all(group, &Reason::local(format!("no DNS resolver: {e}")), ""),
        };
        let port = config.delivery.mx_port;
        let route = self
            .tls
            .route(
                policy,
                domain,
                port,
                resolver.as_ref(),
                crate::envelope::now_ms(),
            )
            .await;
        match route {
            Ok(hops) => {
                self.send_to_hops(&hops, port, envelope, group, content)
                    .await
            }
            Err(RouteError::Temporary(e)) if e.starts_with("DNS lookup for") => defer_all(
                group,
                &Reason::Dns {
                    detail: e,
                    permanent: false,
                    null_mx: false,
                },
                "",
            ),
            Err(RouteError::Temporary(e)) => defer_all(
                group,
                &Reason::TlsRequired {
                    detail: format!("delivery to {domain}: {e}"),
                },
                "",
            ),
            Err(RouteError::Permanent(e)) => {
                let reason = Reason::Dns {
                    null_mx: e.contains("null MX"),
                    detail: format!("domain {domain}: {e}"),
                    permanent: true,
                };
                group
                    .iter()
                    .map(|(i, _)| RecipientResult {
                        index: *i,
                        outcome: Outcome::Bounced(reason.clone()),
                        remote: String::new(),
                    })
                    .collect()
            }
        }
    }

    /// Tries `hops` in order until one gives an answer about the
    /// recipients; each attempt counts for the domain's TLS report.
    async fn send_to_hops(
        &self,
        hops: &[Hop],
        port: u16,
        envelope: &Envelope,
        recipients: &[(usize, &EnvelopeRecipient)],
        content: &[u8],
    ) -> Vec<RecipientResult> {
        let transaction = Transaction {
            sender: envelope.sender.as_ref(),
            recipients: recipients.iter().map(|(_, r)| *r).collect(),
            ret: envelope.ret,
            envid: envelope.envid.as_deref(),
            // What goes out may be 8-bit though the client did not say so
            // (or the gateway decrypted it): announce what it is (RFC 6152).
            eight_bit: envelope.body_type == crate::smtp::command::BodyType::EightBitMime
                || !content.is_ascii(),
            smtputf8: envelope.smtputf8,
            content,
        };
        let mut last_error = Reason::Dns {
            detail: "no mail exchanger".to_owned(),
            permanent: false,
            null_mx: false,
        };
        let mut last_remote = String::new();
        for hop in hops {
            let remote = if hop.name == hop.address {
                format!("{}:{port}", hop.address)
            } else {
                format!("{}:{port} ({})", hop.address, hop.name)
            };
            let attempt = self.client.send(hop, port, &transaction).await;
            self.report_attempt(hop, &attempt);
            match attempt {
                Ok(sent) => {
                    let tls = sent.tls;
                    return recipients
                        .iter()
                        .zip(sent.outcomes)
                        .map(|((index, _), outcome)| RecipientResult {
                            index: *index,
                            // What protected the hop, for tracking.
                            outcome: match (outcome, &tls) {
                                (Outcome::Delivered(reply), Some(tls)) => {
                                    Outcome::Delivered(format!("{reply} (TLS: {tls})"))
                                }
                                (Outcome::Delivered(reply), None) => {
                                    Outcome::Delivered(format!("{reply} (no TLS)"))
                                }
                                (other, _) => other,
                            },
                            remote: remote.clone(),
                        })
                        .collect();
                }
                Err(e) if e.is_permanent_refusal() => {
                    let reason = e.reason();
                    return recipients
                        .iter()
                        .map(|(index, _)| RecipientResult {
                            index: *index,
                            outcome: Outcome::Bounced(reason.clone()),
                            remote: remote.clone(),
                        })
                        .collect();
                }
                Err(e) => {
                    tracing::debug!(host = %remote, error = %e, "delivery attempt failed; trying next host");
                    last_error = e.reason();
                    last_remote = remote;
                }
            }
        }
        defer_all(recipients, &last_error, &last_remote)
    }

    /// Counts an attempt for the TLS report of the domain's published policy.
    fn report_attempt(&self, hop: &Hop, attempt: &Result<Sent, ClientError>) {
        if hop.policy.kind == "no-policy-found" && hop.tls.allows_clear() {
            return;
        }
        let reports = &self.tls.reports;
        match attempt {
            Ok(_) => reports.success(&hop.policy),
            Err(ClientError::TlsRequired(why)) => reports.failure(
                &hop.policy,
                &hop.name,
                &hop.address,
                report::Failure::StarttlsNotSupported,
                why,
            ),
            Err(ClientError::Tls { error, .. }) => reports.failure(
                &hop.policy,
                &hop.name,
                &hop.address,
                report::Failure::of_tls_error(error),
                &error.to_string(),
            ),
            Err(_) => {}
        }
    }
}

fn defer_all(
    recipients: &[(usize, &EnvelopeRecipient)],
    reason: &Reason,
    remote: &str,
) -> Vec<RecipientResult> {
    recipients
        .iter()
        .map(|(index, _)| RecipientResult {
            index: *index,
            outcome: Outcome::Deferred(reason.clone()),
            remote: remote.to_string(),
        })
        .collect()
}
