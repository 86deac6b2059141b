//! The pipeline between the spool and delivery: what each pending recipient
//! gets, decided per recipient and produced per group.
//!
//! Stages, data moving forward only (one module each):
//! [`unwrap`] (open mail encrypted for the gateway on the token: S/MIME or
//! OpenPGP) → [`harvest`] (certificates and keys that came with the mail
//! into the directory) → [`parse`] (bounded MIME parse, facts) → [`decide`]
//! (the policy, per recipient) → [`resolve`] (the recipient's method from
//! the directory: certificate, key, partner gateway) → [`render`] (the
//! outgoing copies) → [`guard`] (the fail-closed check of every copy).
//! Distribution lists are expanded earlier, when the message is accepted
//! (`crate::expand`).
//!
//! [`process`] returns a guarded [`Plan`]: one [`Disposition`] per pending
//! recipient (send this copy, hold, quarantine, refuse) and the copies,
//! each already past the guard. A recipient whose decision requires
//! encryption is never in a clear copy: the guard turns any such copy into
//! holds before the plan leaves the pipeline, so the scheduler only applies
//! it. An `Err` is a [`Reason`] for the whole message: temporary (defer
//! everything, nothing is sent half-processed) or permanent (refuse).

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
use crate::envelope::Envelope;
use crate::policy::{Action, Decision, Policy};
use crate::reason::Reason;

/// One copy to send, to some of the pending recipients.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Indices into the envelope's recipient list.
    pub recipients: Vec<usize>,
    /// The exact content to send.
    pub content: Arc<Vec<u8>>,
    /// A recipient's decision requires encryption: [`guard::check`] lets
    /// this go out only if the content is encrypted.
    pub must_be_encrypted: bool,
}

/// What happens to one pending recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Send `plan.copies[copy]`.
    Send { copy: usize },
    /// Encryption required and no method yet (or the guard stopped the
    /// copy): kept, never sent in clear.
    Hold(Reason),
    /// Put aside by policy for an administrator.
    Quarantine(Reason),
    /// Refused for good (policy `reject`).
    Refuse(Reason),
    /// No key, and the portal serves the recipient: store
    /// `plan.portal[copy]` there (encrypted at rest) and notify them.
    Portal { copy: usize },
}

/// The message as one recipient reads it in the portal: never sent,
/// only stored encrypted at rest (`crate::portal`).
#[derive(Debug, Clone)]
pub struct PortalCopy {
    /// The message (subject keyword removed where the decision says so).
    pub content: Arc<Vec<u8>>,
    /// Pull (stored here) or push (sealed into the notification).
    pub method: crate::portal::Method,
}

/// The pipeline's answer for a message: guarded, ready to apply.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Every copy passed the fail-closed guard.
    pub copies: Vec<Outgoing>,
    /// One per pending recipient.
    pub dispositions: Vec<(usize, Disposition)>,
    /// The policy's explanation per recipient, for tracking.
    pub explanations: Vec<(usize, String)>,
    /// Addresses whose certificate or key came with this message and was
    /// stored in the directory, and whose policy lets such a key serve
    /// encrypt-required mail: mail held for them can be released.
    pub harvested: Vec<String>,
    /// Copies for the portal (`Disposition::Portal`).
    pub portal: Vec<PortalCopy>,
}

/// What the pipeline needs besides the message.
pub struct Context<'a> {
    pub config: &'a Config,
    pub policy: &'a Policy,
    pub directory: &'a crate::directory::Directory,
    /// The gateway's own keys: loaded, not set up, or unavailable.
    pub keys: &'a crate::keys::KeyStore,
    /// The trust machinery: review queue, discovery, anchors and CRLs, DKIM.
    pub trust: &'a crate::trust::services::Services,
    /// The portal's accounts: a recipient's own choice of push or pull
    /// (`None`: the domain's setting alone).
    pub portal_accounts: Option<&'a crate::portal::accounts::PortalAccounts>,
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
    /// With the gateway's key in an `Autocrypt:` header (signed mail only).
    autocrypt: bool,
}

/// What makes two encrypted copies the same, so that their recipients can
/// share one: the kind of key, the partner gateway (one copy per partner
/// domain certificate) or, for people's own keys, one copy for all the
/// visible (To/Cc) recipients, and everything the decision changes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CopyKey {
    kind: crate::directory::Kind,
    /// Encryption is required (a recipient that falls back to a copy of
    /// its own is then held, not sent in clear).
    required: bool,
    /// The partner gateway's certificate; `None` for personal keys.
    partner: Option<String>,
    strip_keyword: Option<String>,
    sign: bool,
    neutral_subject: bool,
}

impl CopyKey {
    /// `Some` when `method`'s recipient may share a copy: partner gateways
    /// always, personal keys only for visible recipients (a Bcc recipient
    /// must appear in no other copy).
    fn of(method: &resolve::Method, decision: &Decision, visible: bool) -> Option<CopyKey> {
        let entry = method.entry();
        if entry.domain.is_none() && !visible {
            return None;
        }
        Some(CopyKey {
            kind: entry.kind,
            required: decision.action == Action::EncryptRequired,
            partner: entry.domain.as_ref().map(|_| entry.fingerprint.clone()),
            strip_keyword: decision.strip_keyword.clone(),
            sign: decision.sign,
            neutral_subject: decision.neutral_subject,
        })
    }
}

/// One encrypted copy being planned: its recipients and their methods.
struct EncryptedGroup {
    key: Option<CopyKey>,
    members: Vec<(usize, resolve::Method)>,
    decision: Decision,
}

/// Processes a message (its envelope and bytes) for its `pending`
/// recipients. `lifted` names the recipients an administrator released
/// from quarantine (the policy then decides as for a released quarantine).
pub fn process(
    envelope: &Envelope,
    content: &Arc<Vec<u8>>,
    queue_id: &str,
    pending: &[usize],
    lifted: &[usize],
    context: &Context<'_>,
) -> Result<Plan, Reason> {
    let mut plan = Plan::default();
    if pending.is_empty() {
        return Ok(plan);
    }
    if envelope.gateway_notice {
        // The gateway's own notice (an invitation): it holds nothing of
        // anyone's mail and goes out as written, without a policy decision.
        plan.copies.push(Outgoing {
            recipients: pending.to_vec(),
            content: Arc::clone(content),
            must_be_encrypted: false,
        });
        for &i in pending {
            plan.dispositions.push((i, Disposition::Send { copy: 0 }));
            plan.explanations.push((
                i,
                "the gateway's own notice: sent as written, without a policy decision".to_owned(),
            ));
        }
        return Ok(plan);
    }
    let recipients: Vec<(usize, String)> = pending
        .iter()
        .filter_map(|&i| {
            envelope
                .recipients
                .get(i)
                .map(|r| (i, r.address.to_string()))
        })
        .collect();
    let sender = envelope.sender_text_or_empty();
    let opened = unwrap::unwrap(
        content,
        context.keys,
        context.directory,
        context.config.smime.refuse_unprotected,
    )?;
    let (clear, verdict, opened_from, carried): (&[u8], Option<&str>, _, &[_]) = match &opened {
        unwrap::Unwrapped::AsIs => (content, None, None, &[]),
        unwrap::Unwrapped::Opened {
            content,
            wrapping,
            verdict,
            carried,
        } => (content, Some(verdict.as_str()), Some(*wrapping), carried),
    };
    // Mail held for these addresses is decided again where a key that
    // came with this message is trusted enough for it.
    let harvested = harvest::harvest(clear, carried, context, queue_id, crate::envelope::now_ms());
    plan.harvested = harvested.release;
    let origin = decide::Origin {
        sender: &sender,
        client_ip: envelope.client_ip.parse().ok(),
        sender_groups: &envelope.sender_groups,
        // Opened on the token: the sender encrypted it for the gateway.
        arrived_encrypted: opened_from,
    };
    let asked: Vec<decide::Asked> = recipients
        .iter()
        .map(|(i, address)| decide::Asked {
            address: address.clone(),
            released: lifted.contains(i),
        })
        .collect();
    let (facts, decisions) =
        decide::decide_all(context.config, context.policy, clear, &origin, &asked).map_err(
            |e| Reason::Unprocessable {
                detail: e.to_string(),
            },
        )?;

    // Signed mail from outside: internal recipients are told what the
    // signature is worth (opened mail has its verdict from the unwrap stage).
    let told_signature = verdict.is_none() && !facts.sender_internal;
    let verdict: Option<&str> = match (verdict, &harvested.signature) {
        (Some(v), _) => Some(v),
        (None, Some(signature)) if told_signature => Some(signature.as_str()),
        _ => None,
    };

    // Verdict headers are the gateway's own: copies that came with the message are forged.
    let base = match (render::strip_header(clear, render::VERDICT_HEADER), &opened) {
        (Some(stripped), _) => Arc::new(stripped),
        (None, unwrap::Unwrapped::Opened { content, .. }) => Arc::new(content.clone()),
        (None, unwrap::Unwrapped::AsIs) => Arc::clone(content),
    };
    let visible = visible_recipients(&base);
    let now = crate::envelope::now_ms();
    let mut clear_groups: Vec<(ClearForm, Vec<usize>)> = Vec::new();
    let mut encrypted: Vec<EncryptedGroup> = Vec::new();
    let mut notes: Vec<(usize, String)> = Vec::new();
    for ((index, address), decision) in recipients.iter().zip(&decisions) {
        let send_as_is = |groups: &mut Vec<(ClearForm, Vec<usize>)>, must: bool| {
            let form = ClearForm {
                subject: decision
                    .strip_keyword
                    .as_ref()
                    .map(|k| crate::policy::decide::strip_keyword(&facts.subject, k)),
                must_be_encrypted: must,
                // What arrived encrypted leaves as it came: never signed over.
                sign: decision.sign && !must,
                autocrypt: decision.autocrypt && decision.sign && !must,
            };
            match groups.iter_mut().find(|(f, _)| *f == form) {
                Some((_, group)) => group.push(*index),
                None => groups.push((form, vec![*index])),
            }
        };
        match decision.action {
            Action::Reject => plan.dispositions.push((
                *index,
                Disposition::Refuse(Reason::PolicyRefused {
                    explanation: decision.explain(),
                }),
            )),
            Action::Quarantine => plan.dispositions.push((
                *index,
                Disposition::Quarantine(Reason::Quarantined {
                    explanation: format!("quarantined by policy ({})", decision.explain()),
                }),
            )),
            Action::EncryptRequired | Action::EncryptIfPossible
                if facts.encrypted_for_gateway.is_some() && verdict.is_none() =>
            {
                // Still encrypted as the sender wrote it (not for the gateway,
                // or no key opened it): it leaves as it came, never in clear.
                notes.push((
                    *index,
                    "already encrypted by the sender: sent as it came".to_owned(),
                ));
                send_as_is(
                    &mut clear_groups,
                    decision.action == Action::EncryptRequired,
                );
            }
            Action::EncryptRequired | Action::EncryptIfPossible => {
                let required = decision.action == Action::EncryptRequired;
                match find_method(context, address, decision, now)? {
                    crate::trust::resolve::Found::Method(method) => {
                        let key = CopyKey::of(
                            &method,
                            decision,
                            visible.contains(&address.to_ascii_lowercase()),
                        );
                        match encrypted
                            .iter_mut()
                            .find(|g| g.key.is_some() && g.key == key)
                        {
                            Some(group) => group.members.push((*index, method)),
                            None => encrypted.push(EncryptedGroup {
                                key,
                                members: vec![(*index, method)],
                                decision: decision.clone(),
                            }),
                        }
                    }
                    // A lookup runs, or a key change waits for review.
                    crate::trust::resolve::Found::Wait(reason) => {
                        plan.dispositions.push((*index, Disposition::Hold(reason)));
                    }
                    crate::trust::resolve::Found::None(why_not)
                        if let Some(served) = portal_method(context, decision) =>
                    {
                        let content = match &decision.strip_keyword {
                            Some(keyword) => Arc::new(render::replace_subject(
                                &base,
                                &crate::policy::decide::strip_keyword(&facts.subject, keyword),
                            )),
                            None => Arc::clone(&base),
                        };
                        plan.portal.push(PortalCopy {
                            content,
                            method: served.method,
                        });
                        plan.dispositions.push((
                            *index,
                            Disposition::Portal {
                                copy: plan.portal.len() - 1,
                            },
                        ));
                        notes.push((*index, format!("{why_not}: {}", served.describe())));
                    }
                    crate::trust::resolve::Found::None(why_not) if required => plan
                        .dispositions
                        .push((*index, Disposition::Hold(Reason::NoKey { detail: why_not }))),
                    crate::trust::resolve::Found::None(why_not) => {
                        notes.push((
                            *index,
                            format!("{why_not}: sent in clear as the policy allows"),
                        ));
                        send_as_is(&mut clear_groups, false);
                    }
                }
            }
            Action::Sign | Action::Clear => send_as_is(&mut clear_groups, false),
        }
    }
    for group in encrypted {
        render_encrypted(&mut plan, &mut notes, &base, &facts.subject, group, context)?;
    }
    for (form, group) in clear_groups {
        render_clear(&mut plan, &mut notes, &base, verdict, form, group, context)?;
    }
    for ((index, _), decision) in recipients.iter().zip(&decisions) {
        let mut explanation = decision.explain();
        if let Some(note) = &harvested.note {
            explanation.push_str("; ");
            explanation.push_str(note);
        }
        if let (true, Some(signature)) = (told_signature, &harvested.signature) {
            explanation.push_str("; S/MIME ");
            explanation.push_str(signature);
        }
        for (_, note) in notes.iter().filter(|(i, _)| i == index) {
            explanation.push_str("; ");
            explanation.push_str(note);
        }
        plan.explanations.push((*index, explanation));
    }
    guard_plan(&mut plan);
    Ok(plan)
}

/// The key to encrypt `address`'s copy with, under the trust model
/// (`crate::trust::resolve`): a method, a wait (a lookup runs, a key
/// change waits for review), or why there is none the decision accepts
/// (keys taken from mail are trust on first use: whoever controls the path
/// can put one there, so they serve encrypt-required mail only where the
/// policy's `required_trust` allows). `Err` when the directory cannot be
/// read (defer: never "no key").
pub fn find_method(
    context: &Context<'_>,
    address: &str,
    decision: &Decision,
    now: u64,
) -> Result<crate::trust::resolve::Found, Reason> {
    let kinds = sealgate_api::settings::policy::key_kinds(&decision.methods);
    crate::trust::resolve::Resolver {
        directory: context.directory,
        services: context.trust,
        config: context.config,
        methods: &kinds,
    }
    .method_for(address, decision, now)
}

/// How the portal takes a recipient that has no key, if it does: it is
/// enabled and encryption is required (or the portal's settings take
/// encrypt-if-possible recipients too); then the recipient's own choice
/// (push or pull, on the portal's preferences page) where the recipient's
/// methods (`decision.methods`: the address's, the domain's or
/// `policy.methods`) name that method, else push where they name `push`
/// and the recipient's domain is in `[portal] push_domains`, else pull
/// where they name `portal`.
pub fn portal_method(context: &Context<'_>, decision: &Decision) -> Option<crate::portal::Served> {
    let portal = &context.config.portal.settings;
    let required = decision.action == Action::EncryptRequired;
    if !portal.enabled || !(required || portal.encrypt_if_possible) {
        return None;
    }
    let address = decision.recipient.as_str();
    let chosen = match context.portal_accounts.map(|a| a.delivery(address)) {
        Some(Ok(chosen)) => chosen.and_then(|c| crate::portal::Method::parse(&c)),
        Some(Err(e)) => {
            // A preference that cannot be read: the domain's setting serves.
            tracing::warn!(error = %e, "portal: the recipient's delivery choice is unreadable");
            None
        }
        None => None,
    };
    let domain = address.rsplit_once('@').map_or("", |(_, d)| d);
    crate::portal::choose(portal, &decision.methods, domain, chosen)
}

/// The addresses in the To and Cc fields (lower case): recipients a copy
/// may name without revealing anyone (a Bcc recipient is in neither).
fn visible_recipients(content: &[u8]) -> Vec<String> {
    let Some(message) = mail_parser::MessageParser::default().parse_headers(content) else {
        return Vec::new();
    };
    ["To", "Cc"]
        .iter()
        .filter_map(|name| message.header(*name))
        .filter_map(|value| value.as_address())
        .flat_map(|list| list.iter())
        .filter_map(|a| a.address())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// Renders one encrypted copy for a group; a recipient whose key cannot
/// be used in the shared copy falls back to a copy of its own, and one
/// that cannot be encrypted for at all is held or sent as the policy says.
fn render_encrypted(
    plan: &mut Plan,
    notes: &mut Vec<(usize, String)>,
    base: &[u8],
    subject: &str,
    group: EncryptedGroup,
    context: &Context<'_>,
) -> Result<(), Reason> {
    let methods: Vec<&resolve::Method> = group.members.iter().map(|(_, m)| m).collect();
    let made = encrypted_copy(base, subject, &group.decision, &methods, context)?;
    let singles: Vec<(usize, resolve::Method)> = match made {
        Ok((bytes, how)) => {
            let copy = plan.copies.len();
            plan.copies.push(Outgoing {
                recipients: group.members.iter().map(|(i, _)| *i).collect(),
                content: Arc::new(bytes),
                must_be_encrypted: true,
            });
            for (i, _) in &group.members {
                plan.dispositions.push((*i, Disposition::Send { copy }));
                notes.push((*i, how.clone()));
            }
            return Ok(());
        }
        Err(_) if group.members.len() > 1 => group.members,
        Err(why_not) => {
            let Some((i, _)) = group.members.into_iter().next() else {
                return Ok(());
            };
            if group.decision.action == Action::EncryptRequired {
                plan.dispositions
                    .push((i, Disposition::Hold(Reason::NoKey { detail: why_not })));
            } else {
                notes.push((i, format!("{why_not}: sent in clear as the policy allows")));
                plan.copies.push(Outgoing {
                    recipients: vec![i],
                    content: Arc::new(base.to_vec()),
                    must_be_encrypted: false,
                });
                plan.dispositions.push((
                    i,
                    Disposition::Send {
                        copy: plan.copies.len() - 1,
                    },
                ));
            }
            return Ok(());
        }
    };
    for member in singles {
        render_encrypted(
            plan,
            notes,
            base,
            subject,
            EncryptedGroup {
                key: None,
                members: vec![member],
                decision: group.decision.clone(),
            },
            context,
        )?;
    }
    Ok(())
}

/// Renders the message itself for a group (subject rewritten, signed,
/// with the verdict header for opened mail).
fn render_clear(
    plan: &mut Plan,
    notes: &mut Vec<(usize, String)>,
    base: &Arc<Vec<u8>>,
    verdict: Option<&str>,
    form: ClearForm,
    group: Vec<usize>,
    context: &Context<'_>,
) -> Result<(), Reason> {
    let mut bytes = match &form.subject {
        Some(s) => render::replace_subject(base, s),
        None => base.to_vec(),
    };
    if form.sign {
        match render::sign(&bytes, context.keys) {
            Ok(signed) => {
                bytes = signed;
                if form.autocrypt
                    && let Some(field) =
                        render::domain_autocrypt(&bytes, context.keys, context.config)
                {
                    bytes = render::prepend_field(&field, &bytes);
                    notes.extend(group.iter().map(|i| (*i, "with Autocrypt".to_owned())));
                }
            }
            Err((true, e)) => return Err(Reason::KeyStoreUnavailable { detail: e }),
            Err((false, e)) => notes.extend(group.iter().map(|i| (*i, format!("not signed: {e}")))),
        }
    }
    let content = match (&form.subject, verdict, form.sign) {
        (None, None, false) => Arc::clone(base),
        _ => match verdict {
            // What internal recipients of opened mail see: the gateway's verdict.
            Some(v) => {
                let mut out = format!("{}: {v}\r\n", render::VERDICT_HEADER).into_bytes();
                out.extend_from_slice(&bytes);
                Arc::new(out)
            }
            None => Arc::new(bytes),
        },
    };
    let copy = plan.copies.len();
    plan.copies.push(Outgoing {
        recipients: group.clone(),
        content,
        must_be_encrypted: form.must_be_encrypted,
    });
    plan.dispositions
        .extend(group.into_iter().map(|i| (i, Disposition::Send { copy })));
    Ok(())
}

/// The fail-closed guard over the whole plan: a copy that must be
/// encrypted and is not is dropped, and its recipients are held.
fn guard_plan(plan: &mut Plan) {
    let stopped: Vec<usize> = plan
        .copies
        .iter()
        .enumerate()
        .filter(|(_, copy)| guard::check(copy).is_err())
        .map(|(n, _)| n)
        .collect();
    if stopped.is_empty() {
        return;
    }
    for (_, disposition) in &mut plan.dispositions {
        if let Disposition::Send { copy } = disposition
            && stopped.contains(copy)
        {
            tracing::error!("outgoing copy stopped by the fail-closed guard");
            *disposition = Disposition::Hold(Reason::GuardStopped {
                detail: guard::STOPPED.to_owned(),
            });
        }
    }
    for n in &stopped {
        if let Some(copy) = plan.copies.get_mut(*n) {
            copy.recipients.clear();
        }
    }
}

/// The copy encrypted for `methods`, with what the decision asks (keyword
/// removed from the subject, signed, header protection), and how it was
/// made for the explanation: `Ok(Err(why not))` when the engine cannot
/// encrypt for them, `Err` when the token is away (defer).
fn encrypted_copy(
    base: &[u8],
    subject: &str,
    decision: &Decision,
    methods: &[&resolve::Method],
    context: &Context<'_>,
) -> Result<Result<(Vec<u8>, String), String>, Reason> {
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
            Err((true, e)) => return Err(Reason::KeyStoreUnavailable { detail: e }),
            Err((false, e)) => unsigned = format!("; not signed: {e}"),
        }
    }
    let signed = if decision.sign && unsigned.is_empty() {
        "signed and "
    } else {
        ""
    };
    let described = methods
        .iter()
        .map(|m| m.describe())
        .collect::<Vec<_>>()
        .join(", ");
    let shared = if methods.len() > 1 {
        format!(" (one copy for {} recipients)", methods.len())
    } else {
        String::new()
    };
    // Our domain key for the recipients' replies, in the outer header.
    let autocrypt = (decision.autocrypt && !signed.is_empty())
        .then(|| render::domain_autocrypt(&source, context.keys, context.config))
        .flatten();
    let protection = decision.neutral_subject.then(|| protect::protect(&source));
    Ok(render::encrypt(
        &source,
        protection,
        methods,
        &context.policy.config.engine,
        &context.config.smime.cipher,
    )
    .map(|encrypted| match &autocrypt {
        Some(field) => (
            render::prepend_field(field, &encrypted),
            format!("{signed}encrypted for {described}{shared}{unsigned}, with Autocrypt"),
        ),
        None => (
            encrypted,
            format!("{signed}encrypted for {described}{shared}{unsigned}"),
        ),
    })
    .map_err(|e| format!("{described} found, but {e}")))
}
