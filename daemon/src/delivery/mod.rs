//! Delivery: sends one outgoing message to a group of recipients by the
//! configured route (local outbox, smart host, or MX) and reports a result
//! per recipient.
//!
//! Never decides policy: it delivers what the pipeline produced. A domain in
//! `require_tls_domains` is only ever sent over STARTTLS; if TLS cannot be
//! had, the recipients are deferred, never sent in clear.

pub mod mx;
pub mod outbox;

use std::sync::Arc;

use crate::config::{Config, DeliveryMode, split_host_port};
use crate::envelope::Envelope;
use crate::smtp::address::Address;
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
}

impl Deliverer {
    pub fn new(config: Arc<Config>) -> std::io::Result<Deliverer> {
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
        })
    }

    fn requires_tls(&self, address: &Address) -> bool {
        let domain = address.domain_lower();
        self.config
            .delivery
            .require_tls_domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(&domain))
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
                for require_tls in [false, true] {
                    let group: Vec<_> = recipients
                        .iter()
                        .filter(|(_, r)| self.requires_tls(&r.address) == require_tls)
                        .copied()
                        .collect();
                    if group.is_empty() {
                        continue;
                    }
                    results.extend(
                        self.send_to_hosts(
                            std::slice::from_ref(&host),
                            port,
                            require_tls,
                            envelope,
                            &group,
                            content,
                        )
                        .await,
                    );
                }
                results
            }
            DeliveryMode::Mx => {
                let mut by_domain: std::collections::BTreeMap<
                    String,
                    Vec<(usize, &crate::envelope::EnvelopeRecipient)>,
                > = Default::default();
                for r in recipients {
                    by_domain
                        .entry(r.1.address.domain_lower())
                        .or_default()
                        .push(*r);
                }
                let mut results = Vec::new();
                for (domain, group) in by_domain {
                    let hosts = match &self.resolver {
                        Some(resolver) => resolver.lookup(&domain).await,
                        None => Err(mx::MxError::Temporary("no resolver".into())),
                    };
                    match hosts {
                        Ok(hosts) => {
                            let hosts = match &self.resolver {
                                Some(resolver) => resolver.connect_addresses(&hosts).await,
                                None => hosts,
                            };
                            let require_tls = group
                                .first()
                                .is_some_and(|(_, r)| self.requires_tls(&r.address));
                            results.extend(
                                self.send_to_hosts(
                                    &hosts,
                                    self.config.delivery.mx_port,
                                    require_tls,
                                    envelope,
                                    &group,
                                    content,
                                )
                                .await,
                            );
                        }
                        Err(mx::MxError::Temporary(e)) => results.extend(defer_all(
                            &group,
                            &format!("DNS lookup for {domain} failed: {e}"),
                            "",
                        )),
                        Err(mx::MxError::Permanent(e)) => {
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

    /// Tries `hosts` in order until one gives an answer about the recipients.
    async fn send_to_hosts(
        &self,
        hosts: &[String],
        port: u16,
        require_tls: bool,
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
