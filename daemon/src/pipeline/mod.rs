//! The pipeline between the spool and delivery: what each pending recipient
//! gets, decided per recipient and produced per group.
//!
//! Stages, data moving forward only (one module each):
//! [`unwrap`] (open mail encrypted for the gateway on the token: S/MIME or
//! OpenPGP) → [`harvest`] (certificates and keys that came with the mail
//! into the directory) → [`parse`] (bounded MIME parse, facts) → [`decide`]
//! (the policy, per recipient) → [`resolve`] (the recipient's method from
//! the directory: certificate, key, partner gateway) → [`render`] (the
//! outgoing form) → [`guard`] (fail-closed check, called by the scheduler
//! right before delivery). Distribution lists are expanded earlier, when
//! the message is accepted (`crate::expand`).
//!
//! Contract: a temporary error defers the whole message (it stays queued,
//! nothing is sent); a permanent one bounces the recipients it names; a
//! recipient whose decision requires encryption is never in a clear
//! [`Outgoing`]: it is sent encrypted, or held.

use std::sync::Arc;

pub mod decide;
pub mod guard;
pub mod harvest;
pub mod parse;
pub mod protect;
pub mod render;
pub mod resolve;
pub mod unwrap;

use crate::config::Config;
use crate::directory::Trust;
use crate::policy::{Action, Policy};
use crate::queue::spool::SpooledMessage;

/// One message to send, for some of the pending recipients.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Indices into the queue entry's recipient list.
    pub recipients: Vec<usize>,
    /// The exact content to send.
    pub content: Arc<Vec<u8>>,
    /// A recipient's decision requires encryption: [`guard::check`] refuses
    /// to let this go out unless the content is encrypted.
    pub must_be_encrypted: bool,
}

/// Why a recipient is not sent to now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waiting {
    /// Encryption required and no method yet.
    Held(String),
    /// Put aside by policy for an administrator.
    Quarantined(String),
}

/// What to do with each pending recipient.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub outgoing: Vec<Outgoing>,
    pub waiting: Vec<(usize, Waiting)>,
    /// Refused for good (policy `reject`); the sender gets a failure notice.
    pub refused: Vec<(usize, String)>,
    /// The policy's explanation per recipient, for tracking.
    pub explanations: Vec<(usize, String)>,
    /// Addresses whose certificate or key came with this message and was
    /// stored in the directory, and whose policy lets such a key serve
    /// encrypt-required mail: mail held for them can be released.
    pub harvested: Vec<String>,
}

/// How a group of recipients gets the message itself (not encrypted by us).
#[derive(Debug, Clone, PartialEq, Eq)]
struct ClearForm {
    /// The subject with a matched keyword removed, if one matched.
    subject: Option<String>,
    /// It arrived encrypted and must leave encrypted (the guard checks).
    must_be_encrypted: bool,
    /// Signed by the gateway.
    sign: bool,
}

/// What makes two partner-gateway copies the same: the partner's
/// certificate and everything the recipient's decision changes in the copy.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PartnerCopy {
    fingerprint: String,
    strip_keyword: Option<String>,
    sign: bool,
    neutral_subject: bool,
}

impl PartnerCopy {
    /// `Some` when `method` encrypts for a partner gateway (a domain's
    /// certificate): then recipients with the same decision share a copy.
    fn of(method: &resolve::Method, decision: &crate::policy::Decision) -> Option<PartnerCopy> {
        let entry = method.entry();
        entry.domain.as_ref()?;
        Some(PartnerCopy {
            fingerprint: entry.fingerprint.clone(),
            strip_keyword: decision.strip_keyword.clone(),
            sign: decision.sign,
            neutral_subject: decision.neutral_subject,
        })
    }
}

/// What the pipeline needs besides the message.
pub struct Context<'a> {
    pub config: &'a Config,
    pub policy: &'a Policy,
    pub directory: &'a crate::directory::Directory,
    /// The gateway's own keys: loaded, not set up, or unavailable.
    pub keys: &'a unwrap::KeyStore,
}

/// Why the pipeline could not produce a plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PipelineError {
    /// Try again later (a key store or directory is unreachable).
    #[error("temporary failure: {0}")]
    Temporary(String),
    /// This message cannot be processed, ever.
    #[error("permanent failure: {0}")]
    Permanent(String),
}

/// Processes a message for its `pending` recipients. `lifted` names the
/// recipients an administrator released from quarantine: for them a
/// quarantine decision becomes "encrypt if possible" (and the
/// click-to-encrypt guard still applies).
pub fn process(
    message: &SpooledMessage,
    pending: &[usize],
    lifted: &[usize],
    context: &Context<'_>,
) -> Result<Plan, PipelineError> {
    let mut plan = Plan::default();
    if pending.is_empty() {
        return Ok(plan);
    }
    if message.envelope.gateway_notice {
        // The gateway's own notice (an invitation): it holds nothing of
        // anyone's mail and goes out as written, without a policy decision.
        plan.outgoing.push(Outgoing {
            recipients: pending.to_vec(),
            content: Arc::clone(&message.content),
            must_be_encrypted: false,
        });
        plan.explanations.extend(pending.iter().map(|&i| {
            (
                i,
                "the gateway's own notice: sent as written, without a policy decision".to_owned(),
            )
        }));
        return Ok(plan);
    }
    let recipients: Vec<(usize, String)> = pending
        .iter()
        .filter_map(|&i| {
            message
                .envelope
                .recipients
                .get(i)
                .map(|r| (i, r.address.to_string()))
        })
        .collect();
    let addresses: Vec<String> = recipients.iter().map(|(_, a)| a.clone()).collect();
    let sender = message
        .envelope
        .sender
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    let opened = unwrap::unwrap(&message.content, context.keys, context.directory)?;
    let (content, verdict, opened_from, carried): (&[u8], Option<&str>, _, &[_]) = match &opened {
        unwrap::Unwrapped::AsIs => (&message.content, None, None, &[]),
        unwrap::Unwrapped::Opened {
            content,
            wrapping,
            verdict,
            carried,
        } => (content, Some(verdict.as_str()), Some(*wrapping), carried),
    };
    // Mail held for these addresses is decided again only where a key
    // taken from mail may serve encrypt-required mail.
    plan.harvested = harvest::harvest(
        content,
        carried,
        context.directory,
        &message.queue_id,
        crate::envelope::now_ms(),
    )
    .into_iter()
    .filter(|address| crate::policy::decide::trusts_harvested_keys(context.policy, address))
    .collect();
    let origin = decide::Origin {
        sender: &sender,
        client_ip: message.envelope.client_ip.parse().ok(),
        sender_groups: &message.envelope.sender_groups,
        // Opened on the token: the sender encrypted it for the gateway.
        arrived_encrypted: opened_from,
    };
    let (facts, decisions) =
        decide::decide_all(context.config, context.policy, content, &origin, &addresses).map_err(
            |e| PipelineError::Permanent(format!("the message cannot be processed: {e}")),
        )?;

    // Verdict headers are the gateway's own: copies that came with the message are forged.
    let base = match (
        render::strip_header(content, render::VERDICT_HEADER),
        &opened,
    ) {
        (Some(stripped), _) => Arc::new(stripped),
        (None, unwrap::Unwrapped::Opened { content, .. }) => Arc::new(content.clone()),
        (None, unwrap::Unwrapped::AsIs) => Arc::clone(&message.content),
    };
    // What internal recipients of opened mail see: the gateway's verdict.
    let with_verdict = |bytes: Vec<u8>| -> Arc<Vec<u8>> {
        match verdict {
            Some(v) => {
                let mut out = format!("{}: {v}\r\n", render::VERDICT_HEADER).into_bytes();
                out.extend_from_slice(&bytes);
                Arc::new(out)
            }
            None => Arc::new(bytes),
        }
    };
    let now = crate::envelope::now_ms();
    // Deliveries of the message itself, grouped by the form they get.
    let mut clear: Vec<(ClearForm, Vec<usize>)> = Vec::new();
    // Copies encrypted for a partner gateway: (what they hold, index in
    // plan.outgoing, the note for the explanation).
    let mut partner_copies: Vec<(PartnerCopy, usize, String)> = Vec::new();
    for ((index, address), decision) in recipients.iter().zip(&decisions) {
        let mut decision = decision.clone();
        if decision.action == Action::Quarantine && lifted.contains(index) {
            decision
                .because
                .push("released from quarantine by an administrator".to_owned());
            let recipient_internal = matches!(
                decision.direction,
                crate::policy::Direction::Inbound | crate::policy::Direction::Internal
            );
            decision.action = crate::policy::decide::apply_guards(
                &context.policy.config,
                &facts,
                recipient_internal,
                Action::EncryptIfPossible,
                &mut decision.because,
            );
        }
        let decision = &decision;
        let mut note = None;
        let send_as_is = |plan_clear: &mut Vec<(ClearForm, Vec<usize>)>, must: bool| {
            let form = ClearForm {
                subject: decision
                    .strip_keyword
                    .as_ref()
                    .map(|k| crate::policy::decide::strip_keyword(&facts.subject, k)),
                must_be_encrypted: must,
                // What arrived encrypted leaves as it came: never signed over.
                sign: decision.sign && !must,
            };
            match plan_clear.iter_mut().find(|(f, _)| *f == form) {
                Some((_, group)) => group.push(*index),
                None => plan_clear.push((form, vec![*index])),
            }
        };
        match decision.action {
            Action::Reject => plan.refused.push((
                *index,
                format!("refused by policy ({})", decision.explain()),
            )),
            Action::Quarantine => plan.waiting.push((
                *index,
                Waiting::Quarantined(format!("quarantined by policy ({})", decision.explain())),
            )),
            Action::EncryptRequired | Action::EncryptIfPossible
                if facts.encrypted_for_gateway.is_some() && verdict.is_none() =>
            {
                // Still encrypted as the sender wrote it (not for the gateway,
                // or no key opened it): it leaves as it came, never in clear.
                note = Some("already encrypted by the sender: sent as it came".to_owned());
                send_as_is(&mut clear, decision.action == Action::EncryptRequired);
            }
            Action::EncryptRequired | Action::EncryptIfPossible => {
                let required = decision.action == Action::EncryptRequired;
                // Keys taken from mail are trust on first use: whoever
                // controls the path can put one there, so they serve
                // encrypt-required mail only where the policy says so.
                let min_trust = if required && !decision.trust_harvested_keys {
                    Trust::Verified
                } else {
                    Trust::Harvested
                };
                let methods = &context.policy.config.methods;
                let lookup = |min_trust| {
                    resolve::method(context.directory, address, methods, now, min_trust).map_err(
                        |e| PipelineError::Temporary(format!("key directory not readable: {e}")),
                    )
                };
                let found = lookup(min_trust)?;
                let copy = found
                    .as_ref()
                    .and_then(|method| PartnerCopy::of(method, decision));
                let joined = copy.as_ref().and_then(|copy| {
                    partner_copies
                        .iter()
                        .find(|(known, _, _)| known == copy)
                        .map(|(_, at, note)| (*at, note.clone()))
                });
                if let Some((at, shared_note)) = joined {
                    // One copy for every recipient behind the same partner
                    // gateway, in one transaction, as an MTA would send it.
                    if let Some(out) = plan.outgoing.get_mut(at) {
                        out.recipients.push(*index);
                    }
                    note = Some(shared_note);
                } else {
                    let outcome = match &found {
                        Some(method) => {
                            encrypted_copy(&base, &facts.subject, decision, method, context)?
                        }
                        None if min_trust > Trust::Harvested
                            && lookup(Trust::Harvested)?.is_some() =>
                        {
                            Err(format!(
                                "the only key for {address} was taken from mail (trust on first use), \
                                 which encrypt-required mail does not accept"
                            ))
                        }
                        None => Err(format!("no certificate or key for {address} yet")),
                    };
                    match outcome {
                        Ok((encrypted, how)) => {
                            note = Some(how.clone());
                            plan.outgoing.push(Outgoing {
                                recipients: vec![*index],
                                content: Arc::new(encrypted),
                                must_be_encrypted: true,
                            });
                            if let Some(copy) = copy {
                                partner_copies.push((copy, plan.outgoing.len() - 1, how));
                            }
                        }
                        Err(why_not) if required => plan.waiting.push((
                            *index,
                            Waiting::Held(format!("encryption required and {why_not}")),
                        )),
                        Err(why_not) => {
                            note = Some(format!("{why_not}: sent in clear as the policy allows"));
                            send_as_is(&mut clear, false);
                        }
                    }
                }
            }
            Action::Sign | Action::Clear => send_as_is(&mut clear, false),
        }
        let mut explanation = decision.explain();
        if let Some(note) = note {
            explanation.push_str("; ");
            explanation.push_str(&note);
        }
        plan.explanations.push((*index, explanation));
    }
    for (form, group) in clear {
        let mut bytes = match &form.subject {
            Some(s) => render::replace_subject(&base, s),
            None => base.to_vec(),
        };
        if form.sign {
            match render::sign(&bytes, context.keys) {
                Ok(signed) => bytes = signed,
                Err((true, e)) => return Err(PipelineError::Temporary(e)),
                Err((false, e)) => {
                    for i in &group {
                        if let Some((_, text)) = plan.explanations.iter_mut().find(|(j, _)| j == i)
                        {
                            text.push_str(&format!("; not signed: {e}"));
                        }
                    }
                }
            }
        }
        let content = match (&form.subject, verdict, form.sign) {
            (None, None, false) => Arc::clone(&base),
            _ => with_verdict(bytes),
        };
        plan.outgoing.push(Outgoing {
            recipients: group,
            content,
            must_be_encrypted: form.must_be_encrypted,
        });
    }
    Ok(plan)
}

/// The copy encrypted for `method`, with what the recipient's decision asks
/// (keyword removed from the subject, signed, header protection), and how
/// it was made for the explanation: `Ok(Err(why not))` when the engine
/// cannot encrypt for it, `Err` when the token is away (defer).
fn encrypted_copy(
    base: &[u8],
    subject: &str,
    decision: &crate::policy::Decision,
    method: &resolve::Method,
    context: &Context<'_>,
) -> Result<Result<(Vec<u8>, String), String>, PipelineError> {
    let mut source = match &decision.strip_keyword {
        Some(keyword) => render::replace_subject(
            base,
            &crate::policy::decide::strip_keyword(subject, keyword),
        ),
        None => base.to_vec(),
    };
    let mut unsigned = String::new();
    if decision.sign {
        match render::sign(&source, context.keys) {
            Ok(signed) => source = signed,
            Err((true, e)) => return Err(PipelineError::Temporary(e)),
            Err((false, e)) => unsigned = format!("; not signed: {e}"),
        }
    }
    let signed = if decision.sign && unsigned.is_empty() {
        "signed and "
    } else {
        ""
    };
    let protection = decision.neutral_subject.then(|| protect::protect(&source));
    Ok(
        render::encrypt(&source, protection, method, &context.policy.config.engine)
            .map(|encrypted| {
                let how = method.describe();
                (encrypted, format!("{signed}encrypted for {how}{unsigned}"))
            })
            .map_err(|e| format!("{} found, but {e}", method.describe())),
    )
}
