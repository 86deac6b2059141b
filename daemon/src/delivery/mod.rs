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
//! Never decides policy: it delivers what the pipeline produced. A domain in
//! `require_tls_domains` is only ever sent over STARTTLS; if TLS cannot be
//! had, the recipients are deferred, never sent in clear.

pub mod mx;
pub mod outbox;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::address::Address;
use crate::config::{Config, DeliveryMode, split_host_port};
use crate::envelope::{Envelope, EnvelopeRecipient};
use crate::reason::Reason;
use crate::smtp::client::{SmtpClient, Transaction};

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
}

impl Deliverer {
    /// The deliverer; removes what an interrupted run left in the outbox.
    pub fn new(config: &Config) -> std::io::Result<Deliverer> {
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

    fn requires_tls(config: &Config, address: &Address) -> bool {
        let domain = address.domain_lower();
        config
            .delivery
            .require_tls_domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(&domain))
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
        let mut groups: BTreeMap<(Route, bool), Vec<(usize, &EnvelopeRecipient)>> = BTreeMap::new();
        let mut results = Vec::new();
        for r in recipients {
            match Route::of(config, &r.1.address) {
                Ok(route) => groups
                    .entry((route, Self::requires_tls(config, &r.1.address)))
                    .or_default()
                    .push(*r),
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
        for ((route, require_tls), group) in groups {
            let sent = match route {
                Route::Outbox => {
                    outbox::deliver(&config.outbox_dir(), envelope, &group, content).await
                }
                Route::Host { host, port } => {
                    self.send_to_hosts(&[host], port, require_tls, envelope, &group, content)
                        .await
                }
                Route::Mx(domain) => {
                    self.send_by_mx(config, &domain, require_tls, envelope, &group, content)
                        .await
                }
            };
            results.extend(sent);
        }
        results
    }

    async fn send_by_mx(
        &self,
        config: &Config,
        domain: &str,
        require_tls: bool,
        envelope: &Envelope,
        group: &[(usize, &EnvelopeRecipient)],
        content: &[u8],
    ) -> Vec<RecipientResult> {
        let resolver = match self.resolver(config.delivery.dns_server) {
            Ok(resolver) => resolver,
            Err(e) => return defer_all(group, &Reason::local(format!("no DNS resolver: {e}")), ""),
        };
        match resolver.lookup(domain).await {
            Ok(hosts) => {
                let hosts = resolver.connect_addresses(&hosts).await;
                self.send_to_hosts(
                    &hosts,
                    config.delivery.mx_port,
                    require_tls,
                    envelope,
                    group,
                    content,
                )
                .await
            }
            Err(mx::MxError::Temporary(e)) => defer_all(
                group,
                &Reason::Dns {
                    detail: format!("DNS lookup for {domain} failed: {e}"),
                    permanent: false,
                    null_mx: false,
                },
                "",
            ),
            Err(mx::MxError::Permanent(e)) => {
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

    /// Tries `hosts` in order until one gives an answer about the recipients.
    async fn send_to_hosts(
        &self,
        hosts: &[String],
        port: u16,
        require_tls: bool,
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
        for host in hosts {
            let remote = format!("{host}:{port}");
            match self
                .client
                .send(host, port, require_tls, &transaction)
                .await
            {
                Ok(outcomes) => {
                    return recipients
                        .iter()
                        .zip(outcomes)
                        .map(|((index, _), outcome)| RecipientResult {
                            index: *index,
                            outcome,
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
