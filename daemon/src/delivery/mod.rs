//! Delivery: sends one outgoing message to a group of recipients by the
//! configured route (local outbox, smart host, or MX) and reports a result
//! per recipient.
//!
//! Never decides policy: it delivers what the pipeline produced. The
//! outbound TLS policy (`outbound_tls`) says per recipient domain which
//! hosts to try and what TLS each must give (a domain in
//! `require_tls_domains` at least STARTTLS); if that cannot be had, the
//! recipients are deferred with the reason, never sent in clear or over
//! an unauthenticated connection the policy does not allow.

pub mod mx;
pub mod outbox;

use std::sync::Arc;

use crate::config::{Config, DeliveryMode, split_host_port};
use crate::envelope::Envelope;
use crate::outbound_tls::{Hop, OutboundTls, RouteError, report};
use crate::smtp::client::{ClientError, SmtpClient, Transaction};

/// What happened to one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The next hop accepted it; the text is its reply.
    Delivered(String),
    /// Try again later.
    Deferred(String),
    /// Failed for good.
    Bounced(String),
}

/// A per-recipient result, with the host that gave it.
#[derive(Debug, Clone)]
pub struct RecipientResult {
    pub index: usize,
    pub outcome: Outcome,
    pub remote: String,
}

/// Delivers outgoing messages.
pub struct Deliverer {
    config: Arc<Config>,
    client: SmtpClient,
    resolver: Option<mx::MxResolver>,
    tls: Arc<OutboundTls>,
}

impl Deliverer {
    pub fn new(config: Arc<Config>, tls: Arc<OutboundTls>) -> std::io::Result<Deliverer> {
        let resolver = match config.delivery.mode {
            DeliveryMode::Mx => Some(mx::MxResolver::new(config.delivery.dns_server)?),
            DeliveryMode::Outbox => {
                let removed = outbox::remove_leftovers(&config.outbox_dir())?;
                if removed > 0 {
                    tracing::info!(
                        removed,
                        "removed partial outbox files left by an interrupted run"
                    );
                }
                None
            }
            DeliveryMode::Smarthost => None,
        };
        Ok(Deliverer {
            client: SmtpClient::new(
                config.hostname.clone(),
                std::time::Duration::from_secs(config.delivery.timeout_secs),
            ),
            config,
            resolver,
            tls,
        })
    }

    /// Delivers `content` from `envelope.sender` to `recipients` (queue index, address).
    pub async fn deliver(
        &self,
        envelope: &Envelope,
        recipients: &[(usize, &crate::envelope::EnvelopeRecipient)],
        content: &[u8],
    ) -> Vec<RecipientResult> {
        match self.config.delivery.mode {
            DeliveryMode::Outbox => {
                let dir = self.config.outbox_dir();
                outbox::deliver(&dir, envelope, recipients, content).await
            }
            DeliveryMode::Smarthost => {
                let Some(Ok((host, port))) = self
                    .config
                    .delivery
                    .smarthost
                    .as_deref()
                    .map(|h| split_host_port(h, 25))
                else {
                    return defer_all(recipients, "no smart host configured", "");
                };
                let mut results = Vec::new();
                // Recipients whose domains ask the same TLS of the relay
                // share a transaction.
                let mut groups: Vec<(Hop, Vec<(usize, &crate::envelope::EnvelopeRecipient)>)> =
                    Vec::new();
                for (domain, group) in by_domain(recipients) {
                    match self.tls.relay_hop(&domain, &host, port).await {
                        Ok(tls) => match groups
                            .iter_mut()
                            .find(|(hop, _)| hop.tls.pool_id() == tls.pool_id())
                        {
                            Some((_, members)) => members.extend(group),
                            None => groups.push((
                                Hop {
                                    name: host.clone(),
                                    address: host.clone(),
                                    tls,
                                    policy: report::PolicyRef::none(&domain),
                                },
                                group,
                            )),
                        },
                        Err(RouteError::Temporary(e) | RouteError::Permanent(e)) => {
                            results.extend(defer_all(&group, &e, &host));
                        }
                    }
                }
                for (hop, group) in groups {
                    results.extend(
                        self.send_to_hops(&[hop], port, envelope, &group, content)
                            .await,
                    );
                }
                results
            }
            DeliveryMode::Mx => {
                let mut results = Vec::new();
                let port = self.config.delivery.mx_port;
                for (domain, group) in by_domain(recipients) {
                    let route = match &self.resolver {
                        Some(resolver) => {
                            self.tls
                                .route(&domain, port, resolver, crate::envelope::now_ms())
                                .await
                        }
                        None => Err(RouteError::Temporary("no resolver".into())),
                    };
                    match route {
                        Ok(hops) => results.extend(
                            self.send_to_hops(&hops, port, envelope, &group, content)
                                .await,
                        ),
                        Err(RouteError::Temporary(e)) => results.extend(defer_all(
                            &group,
                            &format!("delivery to {domain}: {e}"),
                            "",
                        )),
                        Err(RouteError::Permanent(e)) => {
                            results.extend(group.iter().map(|(i, _)| RecipientResult {
                                index: *i,
                                outcome: Outcome::Bounced(format!("domain {domain}: {e}")),
                                remote: String::new(),
                            }))
                        }
                    }
                }
                results
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
        recipients: &[(usize, &crate::envelope::EnvelopeRecipient)],
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
        let mut last_error = "no mail exchanger".to_string();
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
                Err(ClientError::Rejected {
                    permanent: true,
                    reply,
                }) => {
                    return recipients
                        .iter()
                        .map(|(index, _)| RecipientResult {
                            index: *index,
                            outcome: Outcome::Bounced(reply.clone()),
                            remote: remote.clone(),
                        })
                        .collect();
                }
                Err(e) => {
                    tracing::debug!(host = %remote, error = %e, "delivery attempt failed; trying next host");
                    last_error = e.to_string();
                    last_remote = remote;
                }
            }
        }
        defer_all(recipients, &last_error, &last_remote)
    }

    /// Counts an attempt for the TLS report of the domain's published policy.
    fn report_attempt(&self, hop: &Hop, attempt: &Result<crate::smtp::client::Sent, ClientError>) {
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

/// Recipients grouped by domain (lower case), in domain order.
fn by_domain<'a>(
    recipients: &[(usize, &'a crate::envelope::EnvelopeRecipient)],
) -> std::collections::BTreeMap<String, Vec<(usize, &'a crate::envelope::EnvelopeRecipient)>> {
    let mut out: std::collections::BTreeMap<String, Vec<_>> = Default::default();
    for r in recipients {
        out.entry(r.1.address.domain_lower()).or_default().push(*r);
    }
    out
}

fn defer_all(
    recipients: &[(usize, &crate::envelope::EnvelopeRecipient)],
    reason: &str,
    remote: &str,
) -> Vec<RecipientResult> {
    recipients
        .iter()
        .map(|(index, _)| RecipientResult {
            index: *index,
            outcome: Outcome::Deferred(reason.to_string()),
            remote: remote.to_string(),
        })
        .collect()
}
