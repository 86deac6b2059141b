//! The daemon's side of `sealgate_api::portal::PortalService`, and the
//! step the scheduler takes for a recipient whose method is `portal`.
//!
//! Every mailbox call resolves the session to its address first and
//! then looks the message up under that address only ([`super::store`]),
//! so a session can never reach another address's message. Every access
//! to a message is a tracking event (kind `portal`: stored, read,
//! downloaded, replied, deleted, expired).

mod mailbox;

use std::sync::Arc;

use sealgate_api::portal::{
    AttachmentData, KeyUploaded, MessageSummary, MessageView, OwnKey, PasskeyChallenge,
    PortalLogin, PortalService, Preferences, SessionInfo, SessionOrigin,
};
use sealgate_api::{BoxFuture, ServiceError};

use super::accounts::{self, Outcome};
use super::{Portal, PortalError, view};
use crate::address::Address;
use crate::config::Config;
use crate::envelope::{Envelope, now_ms};
use crate::queue::Queue;
use crate::tracking::{Direction, EventKind};

/// Serves recipient `index` of `envelope` by `method`: pull stores
/// `content` here; push seals it into the notification and keeps only
/// the wrapped key (a message too large to travel in a form post is
/// stored as pull). Blocking parts (the token) run in place. Answers what
/// tracking records as the delivery's reply and the notification to send
/// (the scheduler sends it, [`crate::queue`]).
pub async fn deliver(
    queue: &Queue,
    config: &Config,
    envelope: &Envelope,
    queue_id: &str,
    (index, method): (usize, super::Method),
    content: &[u8],
) -> Result<Done, PortalError> {
    let recipient = envelope
        .recipients
        .get(index)
        .ok_or(PortalError::NotFound)?
        .address
        .clone();
    let sender = envelope.sender_text_or_empty();
    let (summary, attachments) = view::summarise(content, &sender);
    let named = if sender.is_empty() {
        summary.from.clone()
    } else {
        sender.clone()
    };
    let copy = Delivery {
        recipient: &recipient,
        sender: &sender,
        named: &named,
        queue_id,
        days: config
            .portal
            .settings
            .retention_for(&recipient.domain_lower()),
        language: queue
            .portal()
            .accounts
            .language(&recipient.to_string())
            .unwrap_or_default(),
    };
    if method == super::Method::Push && content.len() <= super::push::MAX_MESSAGE {
        tokio::task::block_in_place(|| push_copy(queue.portal(), config, &copy, content))
    } else {
        let too_large = method == super::Method::Push;
        tokio::task::block_in_place(|| {
            pull_copy(
                queue.portal(),
                config,
                &copy,
                (&summary, attachments),
                content,
                too_large,
            )
        })
    }
}

/// One recipient's portal delivery, as both methods need it.
struct Delivery<'a> {
    recipient: &'a Address,
    /// The envelope sender (may be empty).
    sender: &'a str,
    /// Who the notification names: the envelope sender, else From.
    named: &'a str,
    queue_id: &'a str,
    days: u32,
    /// The recipient's chosen language, if any.
    language: Option<String>,
}

/// What tracking says of a delivery, and the notification to send.
pub type Done = (String, (Envelope, Vec<u8>));

/// Push: seals `content` into the notification's attachment; only the
/// wrapped key is stored. Blocking (the token).
fn push_copy(
    portal: &Portal,
    config: &Config,
    copy: &Delivery<'_>,
    content: &[u8],
) -> Result<Done, PortalError> {
    let sealed = portal.push.seal(
        &copy.recipient.to_string(),
        copy.sender,
        copy.queue_id,
        content,
        now_ms(),
        copy.days,
    )?;
    let language = super::notify::language_for(config, copy.recipient, copy.language.as_deref());
    let page = super::push::page(&config.portal.settings.url, language, copy.named, &sealed);
    Ok((
        format!(
            "pushed {}: sealed in the notification's attachment, only its wrapped key kept, for {} days",
            sealed.record.id, copy.days
        ),
        super::notify::push_notification(
            config,
            copy.named,
            copy.recipient,
            copy.queue_id,
            language,
            &page,
        ),
    ))
}

/// Pull: stores `content` sealed here; the notification links to the
/// portal. Blocking (the token).
fn pull_copy(
    portal: &Portal,
    config: &Config,
    copy: &Delivery<'_>,
    (summary, attachments): (&super::store::Summary, usize),
    content: &[u8],
    too_large_for_push: bool,
) -> Result<Done, PortalError> {
    let recipient = copy.recipient.to_string();
    if let Some(quota) = config.portal.settings.quota_bytes() {
        let used = portal.messages.usage(&recipient)?;
        let size = content.len() as u64;
        if used.saturating_add(size) > quota {
            return Err(PortalError::OverQuota { used, size, quota });
        }
    }
    portal.messages.store(
        &super::store::Incoming {
            recipient: &recipient,
            queue_id: copy.queue_id,
            summary,
            attachments,
            content,
        },
        now_ms(),
        copy.days,
    )?;
    let too_large = if too_large_for_push {
        " (too large for push)"
    } else {
        ""
    };
    Ok((
        format!(
            "stored in the portal{too_large}, encrypted at rest, for {} days",
            copy.days
        ),
        super::notify::notification(
            config,
            copy.named,
            copy.recipient,
            copy.queue_id,
            copy.language.as_deref(),
        ),
    ))
}

/// A read receipt ready to queue, and whose reading it tells of.
struct Receipt {
    envelope: Envelope,
    mail: Vec<u8>,
    queue_id: String,
    reader: String,
}

/// The portal service over the queue (its store and tracking) and the
/// settings in force.
pub struct PortalServer {
    queue: Queue,
    live: Arc<crate::settings::live::Live>,
}

impl PortalServer {
    pub fn new(queue: Queue, live: Arc<crate::settings::live::Live>) -> PortalServer {
        PortalServer { queue, live }
    }

    fn portal(&self) -> &Portal {
        self.queue.portal()
    }

    fn config(&self) -> Arc<Config> {
        Arc::clone(&self.live.get().config)
    }

    fn track(&self, queue_id: &str, address: &str, detail: &str) {
        self.queue.tracker().record(
            queue_id,
            EventKind::Portal,
            Direction::Out,
            "",
            address,
            "portal",
            detail,
        );
    }

    fn address_of(&self, session: &str) -> Result<String, ServiceError> {
        self.portal().accounts.session(session)
    }

    fn summary_of(&self, entry: &super::store::IndexEntry) -> Result<MessageSummary, PortalError> {
        let s = self.portal().messages.summary(entry)?;
        Ok(mailbox::message_summary(entry, s))
    }

    /// The passkeys' relying party: `portal.url`'s host and origin.
    fn relying_party(&self) -> Result<webauthn_rs::Webauthn, ServiceError> {
        accounts::passkey::relying_party(&self.config().portal.settings.url)
    }

    /// What a login or enrolment's outcome shows. Blocking (the store).
    fn login_of(&self, outcome: Outcome, address: &str) -> Result<PortalLogin, ServiceError> {
        Ok(match outcome {
            Outcome::Session(id) => PortalLogin::Session(id),
            Outcome::EnrolTotp { enrolment, secret } => {
                // A passkey instead of TOTP, where one can be offered.
                let passkey = self
                    .relying_party()
                    .and_then(|rp| self.portal().accounts.begin_enrol_passkey(&rp, &enrolment))
                    .map_err(|e| tracing::debug!(error = %e, "portal: no passkey offered"))
                    .ok();
                PortalLogin::EnrolTotp {
                    enrolment,
                    secret_base32: crate::accounts::totp::base32(&secret),
                    uri: crate::accounts::totp::uri(address, &secret),
                    passkey,
                }
            }
            Outcome::Passkey { address, totp } => PortalLogin::Passkey {
                challenge: self
                    .portal()
                    .accounts
                    .begin_login(&self.relying_party()?, &address)?,
                totp,
            },
        })
    }

    /// Whether `address`'s domain requires a second factor.
    fn factor_required(&self, address: &str) -> bool {
        let domain = address.rsplit_once('@').map_or("", |(_, d)| d);
        self.config().portal.settings.totp_required(domain)
    }

    fn parse(address: &str) -> Result<Address, ServiceError> {
        Address::parse(address.trim()).ok_or_else(accounts::bad_address)
    }

    fn blocking<T: Send + 'static>(
        f: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
    ) -> BoxFuture<'static, Result<T, ServiceError>> {
        Box::pin(async move {
            tokio::task::spawn_blocking(f)
                .await
                .map_err(|e| ServiceError::failed(format!("stopped: {e}")))?
        })
    }

    /// The directory's keys for `address`, as the preferences page shows them.
    fn own_keys(&self, address: &str) -> Result<Vec<OwnKey>, ServiceError> {
        let now = now_ms();
        let entries = self
            .queue
            .directory()
            .lookup(address)
            .map_err(|e| storage_error(&e))?;
        Ok(entries.iter().map(|e| own_key(e, now)).collect())
    }

    /// The deliveries `address` may choose between (none unless the
    /// portal is on and the address's methods name both push and portal),
    /// and the one its domain's setting gives.
    fn deliveries(&self, address: &str) -> (Vec<super::Method>, super::Method) {
        use sealgate_api::settings::policy::MethodName;
        let runtime = self.live.get();
        let portal = &runtime.config.portal.settings;
        let methods = crate::policy::decide::methods(&runtime.policy, address);
        let domain = address.rsplit_once('@').map_or("", |(_, d)| d);
        let by_domain =
            super::choose(portal, &methods, domain, None).map_or(super::Method::Pull, |s| s.method);
        let offered = if portal.enabled
            && methods.contains(&MethodName::Push)
            && methods.contains(&MethodName::Portal)
        {
            vec![super::Method::Push, super::Method::Pull]
        } else {
            Vec::new()
        };
        (offered, by_domain)
    }

    /// The read receipt to send on a message's first opening, where
    /// `portal.read_receipts` asks for them and the sender is an address.
    fn receipt_for(
        &self,
        first: bool,
        summary: &super::store::Summary,
        (queue_id, reader, stored_ms): (&str, &str, u64),
    ) -> Option<Receipt> {
        let config = self.config();
        if !first || !config.portal.settings.read_receipts {
            return None;
        }
        let sender = Address::parse(&summary.sender)?;
        let (env, mail) = super::notify::receipt(
            &config,
            &sender,
            reader,
            &summary.subject,
            summary.message_id.as_deref(),
            stored_ms,
        );
        Some(Receipt {
            envelope: env,
            mail,
            queue_id: queue_id.to_owned(),
            reader: reader.to_owned(),
        })
    }

    /// The first opening, where the policy asks for receipts: the sender
    /// hears of it. A receipt not queued is logged and tracked; the
    /// reader still reads.
    async fn send_receipt(&self, receipt: Option<Receipt>) {
        let Some(r) = receipt else { return };
        let detail = match self.queue.inject(&r.envelope, &r.mail).await {
            Ok(id) => format!("read receipt to the sender queued as {id}"),
            Err(e) => {
                tracing::warn!(error = %e, "portal: read receipt not queued");
                "read receipt to the sender not queued".to_owned()
            }
        };
        self.track(&r.queue_id, &r.reader, &detail);
    }

    fn clone_handle(&self) -> PortalServer {
        PortalServer {
            queue: self.queue.clone(),
            live: Arc::clone(&self.live),
        }
    }
}

impl PortalService for PortalServer {
    fn request_code<'a>(
        &'a self,
        address: &'a str,
        _from: Option<String>,
    ) -> BoxFuture<'a, Result<(), ServiceError>> {
        Box::pin(async move {
            let address = Self::parse(address)?;
            let text = address.to_string().to_ascii_lowercase();
            // A code goes only where mail waits or an account exists (the
            // gateway sends codes to nobody else), and the answer is the
            // same either way.
            let known = self
                .portal()
                .messages
                .has_mail_for(&text)
                .map_err(ServiceError::from)?
                || self
                    .portal()
                    .push
                    .has_mail_for(&text, now_ms())
                    .map_err(ServiceError::from)?
                || self.portal().accounts.exists(&text)?;
            if !known {
                return Ok(());
            }
            let Some(code) = self.portal().accounts.new_code(&text)? else {
                return Ok(());
            };
            let language = self.portal().accounts.language(&text)?;
            let (env, mail) =
                super::notify::code_mail(&self.config(), &address, &code, language.as_deref());
            match self.queue.inject(&env, &mail).await {
                Ok(id) => self.track(id.as_str(), &text, "one-time code sent"),
                Err(e) => {
                    tracing::warn!(error = %e, "portal: code mail not queued");
                    return Err(ServiceError::Unavailable {
                        what: "sending the code".into(),
                    });
                }
            }
            Ok(())
        })
    }

    fn enrol<'a>(
        &'a self,
        address: &'a str,
        code: &'a str,
        password: &'a str,
        _from: Option<String>,
    ) -> BoxFuture<'a, Result<PortalLogin, ServiceError>> {
        let me = self.clone_handle();
        let (address, code, password) = (
            address.trim().to_ascii_lowercase(),
            code.to_owned(),
            password.to_owned(),
        );
        Self::blocking(move || {
            let parsed = Self::parse(&address)?;
            let totp = me
                .config()
                .portal
                .settings
                .totp_required(&parsed.domain_lower());
            let outcome = me
                .portal()
                .accounts
                .enrol(&address, &code, &password, totp)?;
            me.track("-", &address, "enrolled: address confirmed, password set");
            me.login_of(outcome, &address)
        })
    }

    fn reset_address<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<String, ServiceError>> {
        Box::pin(async move { self.portal().accounts.link_address(token) })
    }

    fn reset<'a>(
        &'a self,
        token: &'a str,
        password: &'a str,
        _from: Option<String>,
    ) -> BoxFuture<'a, Result<PortalLogin, ServiceError>> {
        let me = self.clone_handle();
        let (token, password) = (token.to_owned(), password.to_owned());
        Self::blocking(move || {
            let config = me.config();
            let (address, outcome) =
                me.portal()
                    .accounts
                    .reset_with_link(&token, &password, |address| {
                        let domain = address.rsplit_once('@').map_or("", |(_, d)| d);
                        config.portal.settings.totp_required(domain)
                    })?;
            me.track("-", &address, "password set with the mailed link");
            me.login_of(outcome, &address)
        })
    }

    fn confirm_totp<'a>(
        &'a self,
        enrolment: &'a str,
        code: &'a str,
    ) -> BoxFuture<'a, Result<String, ServiceError>> {
        Box::pin(async move { self.portal().accounts.confirm_totp(enrolment, code) })
    }

    fn login<'a>(
        &'a self,
        address: &'a str,
        password: &'a str,
        code: Option<&'a str>,
        _from: Option<String>,
    ) -> BoxFuture<'a, Result<PortalLogin, ServiceError>> {
        let me = self.clone_handle();
        let (address, password, code) = (
            address.trim().to_ascii_lowercase(),
            password.to_owned(),
            code.map(str::to_owned),
        );
        Self::blocking(move || {
            let config = me.config();
            let settings = &config.portal.settings;
            let domain = address.rsplit_once('@').map_or("", |(_, d)| d).to_owned();
            let outcome = me.portal().accounts.login(
                &address,
                &password,
                code.as_deref(),
                settings.totp_required(&domain),
                (settings.lockout_after, settings.lockout_secs),
            )?;
            me.login_of(outcome, &address)
        })
    }

    fn session<'a>(&'a self, session: &'a str) -> BoxFuture<'a, Result<String, ServiceError>> {
        Box::pin(async move { self.address_of(session) })
    }

    fn passkey_enrol<'a>(
        &'a self,
        ceremony: &'a str,
        name: &'a str,
        answer: &'a str,
    ) -> BoxFuture<'a, Result<String, ServiceError>> {
        let me = self.clone_handle();
        let (ceremony, name, answer) = (ceremony.to_owned(), name.to_owned(), answer.to_owned());
        Self::blocking(move || {
            let rp = me.relying_party()?;
            let (address, session) = me
                .portal()
                .accounts
                .finish_enrol_passkey(&rp, &ceremony, &name, &answer)?;
            me.track("-", &address, "second factor enrolled: a passkey");
            Ok(session)
        })
    }

    fn passkey_login<'a>(
        &'a self,
        ceremony: &'a str,
        answer: &'a str,
        _from: Option<String>,
    ) -> BoxFuture<'a, Result<String, ServiceError>> {
        let me = self.clone_handle();
        let (ceremony, answer) = (ceremony.to_owned(), answer.to_owned());
        Self::blocking(move || {
            let rp = me.relying_party()?;
            let settings = &me.config().portal.settings;
            let (_, session) = me.portal().accounts.finish_login(
                &rp,
                &ceremony,
                &answer,
                (settings.lockout_after, settings.lockout_secs),
            )?;
            Ok(session)
        })
    }

    fn passkey_login_totp<'a>(
        &'a self,
        ceremony: &'a str,
        code: &'a str,
        _from: Option<String>,
    ) -> BoxFuture<'a, Result<String, ServiceError>> {
        let me = self.clone_handle();
        let (ceremony, code) = (ceremony.to_owned(), code.to_owned());
        Self::blocking(move || {
            let settings = &me.config().portal.settings;
            let (_, session) = me.portal().accounts.finish_login_totp(
                &ceremony,
                &code,
                (settings.lockout_after, settings.lockout_secs),
            )?;
            Ok(session)
        })
    }

    fn passkey_add_begin<'a>(
        &'a self,
        session: &'a str,
    ) -> BoxFuture<'a, Result<PasskeyChallenge, ServiceError>> {
        let me = self.clone_handle();
        let session = session.to_owned();
        Self::blocking(move || {
            let address = me.address_of(&session)?;
            me.portal()
                .accounts
                .begin_add_passkey(&me.relying_party()?, &address)
        })
    }

    fn passkey_add<'a>(
        &'a self,
        session: &'a str,
        ceremony: &'a str,
        name: &'a str,
        answer: &'a str,
    ) -> BoxFuture<'a, Result<(), ServiceError>> {
        let me = self.clone_handle();
        let (session, ceremony, name, answer) = (
            session.to_owned(),
            ceremony.to_owned(),
            name.to_owned(),
            answer.to_owned(),
        );
        Self::blocking(move || {
            let address = me.address_of(&session)?;
            let rp = me.relying_party()?;
            me.portal()
                .accounts
                .finish_add_passkey(&rp, &address, &ceremony, &name, &answer)?;
            me.track("-", &address, "passkey added by the recipient");
            Ok(())
        })
    }

    fn passkey_remove<'a>(
        &'a self,
        session: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<(), ServiceError>> {
        let me = self.clone_handle();
        let (session, id) = (session.to_owned(), id.to_owned());
        Self::blocking(move || {
            let address = me.address_of(&session)?;
            let required = me.factor_required(&address);
            let name = me
                .portal()
                .accounts
                .remove_passkey(&address, &id, required)?;
            me.track(
                "-",
                &address,
                &format!("passkey removed by the recipient: {name}"),
            );
            Ok(())
        })
    }

    fn session_origin<'a>(
        &'a self,
        session: &'a str,
        origin: SessionOrigin,
    ) -> BoxFuture<'a, Result<(), ServiceError>> {
        let me = self.clone_handle();
        let session = session.to_owned();
        Self::blocking(move || {
            me.portal()
                .accounts
                .set_origin(&session, &origin.ip, &origin.agent)
        })
    }

    fn sessions<'a>(
        &'a self,
        session: &'a str,
    ) -> BoxFuture<'a, Result<Vec<SessionInfo>, ServiceError>> {
        let me = self.clone_handle();
        let session = session.to_owned();
        Self::blocking(move || me.portal().accounts.sessions_of(&session))
    }

    fn end_session<'a>(
        &'a self,
        session: &'a str,
        handle: &'a str,
    ) -> BoxFuture<'a, Result<(), ServiceError>> {
        let me = self.clone_handle();
        let (session, handle) = (session.to_owned(), handle.to_owned());
        Self::blocking(move || {
            let address = me.portal().accounts.end_session(&session, &handle)?;
            me.track(
                "-",
                &address,
                "a session ended by the recipient from another one",
            );
            Ok(())
        })
    }

    fn end_other_sessions<'a>(
        &'a self,
        session: &'a str,
    ) -> BoxFuture<'a, Result<usize, ServiceError>> {
        let me = self.clone_handle();
        let session = session.to_owned();
        Self::blocking(move || {
            let (address, n) = me.portal().accounts.end_other_sessions(&session)?;
            me.track(
                "-",
                &address,
                &format!("other sessions ended by the recipient: {n}"),
            );
            Ok(n)
        })
    }

    fn logout<'a>(&'a self, session: &'a str) -> BoxFuture<'a, Result<(), ServiceError>> {
        Box::pin(async move { self.portal().accounts.logout(session) })
    }

    fn inbox<'a>(
        &'a self,
        session: &'a str,
    ) -> BoxFuture<'a, Result<Vec<MessageSummary>, ServiceError>> {
        let me = self.clone_handle();
        let session = session.to_owned();
        Self::blocking(move || {
            let address = me.address_of(&session)?;
            let mut out = Vec::new();
            for entry in me.portal().messages.entries(&address)? {
                out.push(me.summary_of(&entry)?);
            }
            out.sort_by_key(|m| std::cmp::Reverse(m.stored_ms));
            Ok(out)
        })
    }

    fn read<'a>(
        &'a self,
        session: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<MessageView, ServiceError>> {
        let me = self.clone_handle();
        let (session, id) = (session.to_owned(), id.to_owned());
        let opening = Self::blocking(move || {
            let address = me.address_of(&session)?;
            let opened = me.portal().messages.read(&address, &id)?;
            let first = me.portal().messages.mark_read(&opened.entry)?;
            me.track(&opened.entry.queue_id, &address, &format!("read {id}"));
            let receipt = me.receipt_for(
                first,
                &opened.summary,
                (&opened.entry.queue_id, &address, opened.entry.stored_ms),
            );
            let body = view::body(&opened.content);
            let view = message_view(
                MessageSummary {
                    read: true,
                    ..mailbox::message_summary(&opened.entry, opened.summary.clone())
                },
                body,
            );
            Ok((view, receipt))
        });
        Box::pin(async move {
            let (view, receipt) = opening.await?;
            self.send_receipt(receipt).await;
            Ok(view)
        })
    }

    fn body<'a>(
        &'a self,
        session: &'a str,
        id: &'a str,
        images: bool,
    ) -> BoxFuture<'a, Result<String, ServiceError>> {
        let me = self.clone_handle();
        let (session, id) = (session.to_owned(), id.to_owned());
        Self::blocking(move || {
            let address = me.address_of(&session)?;
            let opened = me.portal().messages.read(&address, &id)?;
            Ok(view::html(&opened.content, images_of(images)).unwrap_or_default())
        })
    }

    fn attachment<'a>(
        &'a self,
        session: &'a str,
        id: &'a str,
        index: usize,
    ) -> BoxFuture<'a, Result<AttachmentData, ServiceError>> {
        let me = self.clone_handle();
        let (session, id) = (session.to_owned(), id.to_owned());
        Self::blocking(move || {
            let address = me.address_of(&session)?;
            let opened = me.portal().messages.read(&address, &id)?;
            let data =
                view::attachment(&opened.content, index).ok_or_else(|| ServiceError::NotFound {
                    what: "attachment".into(),
                })?;
            me.track(
                &opened.entry.queue_id,
                &address,
                &format!("downloaded attachment {} of {id}", index + 1),
            );
            Ok(data)
        })
    }

    fn delete<'a>(
        &'a self,
        session: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<(), ServiceError>> {
        let me = self.clone_handle();
        let (session, id) = (session.to_owned(), id.to_owned());
        Self::blocking(move || {
            let address = me.address_of(&session)?;
            let (entry, done) = match me.portal().messages.discard(&address, &id)? {
                super::store::Discarded::Trashed(e) => (e, "moved to Trash"),
                super::store::Discarded::Destroyed(e) => (e, "its key is destroyed"),
            };
            me.track(
                &entry.queue_id,
                &address,
                &format!("deleted {id} by the recipient: {done}"),
            );
            Ok(())
        })
    }

    fn reply<'a>(
        &'a self,
        session: &'a str,
        id: &'a str,
        draft: &'a sealgate_api::portal::mailbox::Draft,
    ) -> BoxFuture<'a, Result<String, ServiceError>> {
        Box::pin(self.send_reply(session, id, draft, false))
    }

    fn open_push<'a>(
        &'a self,
        session: &'a str,
        id: &'a str,
        sealed: Arc<Vec<u8>>,
    ) -> BoxFuture<'a, Result<MessageView, ServiceError>> {
        let me = self.clone_handle();
        let (session, id) = (session.to_owned(), id.to_owned());
        let opening = Self::blocking(move || {
            let address = me.address_of(&session)?;
            let (record, content) = me.portal().push.unseal(&address, &id, &sealed, now_ms())?;
            let first = me.portal().push.mark_read(&record)?;
            me.track(&record.queue_id, &address, &format!("read pushed {id}"));
            let (summary, attachments) = view::summarise(&content, &record.sender);
            let receipt = me.receipt_for(
                first,
                &summary,
                (&record.queue_id, &address, record.stored_ms),
            );
            let view = message_view(
                MessageSummary {
                    id: record.id,
                    from: summary.from,
                    subject: summary.subject,
                    stored_ms: record.stored_ms,
                    expires_ms: record.expires_ms,
                    size: record.size,
                    attachments,
                    read: true,
                    // Not kept in any folder: shown as from the inbox.
                    folder: "inbox".to_owned(),
                },
                view::body(&content),
            );
            Ok((view, receipt))
        });
        Box::pin(async move {
            let (view, receipt) = opening.await?;
            self.send_receipt(receipt).await;
            Ok(view)
        })
    }

    fn push_body<'a>(
        &'a self,
        session: &'a str,
        id: &'a str,
        sealed: Arc<Vec<u8>>,
        images: bool,
    ) -> BoxFuture<'a, Result<String, ServiceError>> {
        let me = self.clone_handle();
        let (session, id) = (session.to_owned(), id.to_owned());
        Self::blocking(move || {
            let address = me.address_of(&session)?;
            let (_, content) = me.portal().push.unseal(&address, &id, &sealed, now_ms())?;
            Ok(view::html(&content, images_of(images)).unwrap_or_default())
        })
    }

    fn push_attachment<'a>(
        &'a self,
        session: &'a str,
        id: &'a str,
        sealed: Arc<Vec<u8>>,
        index: usize,
    ) -> BoxFuture<'a, Result<AttachmentData, ServiceError>> {
        let me = self.clone_handle();
        let (session, id) = (session.to_owned(), id.to_owned());
        Self::blocking(move || {
            let address = me.address_of(&session)?;
            let (record, content) = me.portal().push.unseal(&address, &id, &sealed, now_ms())?;
            let data = view::attachment(&content, index).ok_or_else(|| ServiceError::NotFound {
                what: "attachment".into(),
            })?;
            me.track(
                &record.queue_id,
                &address,
                &format!("downloaded attachment {} of pushed {id}", index + 1),
            );
            Ok(data)
        })
    }

    fn preferences<'a>(
        &'a self,
        session: &'a str,
    ) -> BoxFuture<'a, Result<Preferences, ServiceError>> {
        let me = self.clone_handle();
        let session = session.to_owned();
        Self::blocking(move || {
            let address = me.address_of(&session)?;
            let domain = address.rsplit_once('@').map_or("", |(_, d)| d).to_owned();
            let config = me.config();
            let (deliveries, by_domain) = me.deliveries(&address);
            let (passkeys, totp) = me.portal().accounts.passkeys(&address)?;
            Ok(Preferences {
                delivery: me.portal().accounts.delivery(&address)?,
                effective_delivery: by_domain.as_str().to_owned(),
                deliveries: deliveries.iter().map(|m| m.as_str().to_owned()).collect(),
                language: me.portal().accounts.language(&address)?,
                effective_language: config.portal.settings.language_for(&domain).to_owned(),
                languages: super::notify::LANGUAGES
                    .iter()
                    .map(|l| (*l).to_owned())
                    .collect(),
                keys: me.own_keys(&address)?,
                used_bytes: me.portal().messages.usage(&address)?,
                quota_bytes: config.portal.settings.quota_bytes(),
                passkeys,
                totp,
                second_factor_required: config.portal.settings.totp_required(&domain),
                passkeys_offered: me.relying_party().is_ok(),
                address,
            })
        })
    }

    fn set_delivery<'a>(
        &'a self,
        session: &'a str,
        delivery: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), ServiceError>> {
        Box::pin(async move {
            let address = self.address_of(session)?;
            let (offered, _) = self.deliveries(&address);
            let chosen = match delivery {
                None => None,
                Some(d) => Some(
                    super::Method::parse(d)
                        .filter(|m| offered.contains(m))
                        .ok_or_else(|| {
                            ServiceError::invalid("delivery", "Choose one of the ways listed.")
                        })?,
                ),
            };
            self.portal()
                .accounts
                .set_delivery(&address, chosen.map(super::Method::as_str))?;
            self.track(
                "-",
                &address,
                &format!(
                    "delivery set to {}",
                    chosen.map_or("the domain's", super::Method::as_str)
                ),
            );
            Ok(())
        })
    }

    fn set_language<'a>(
        &'a self,
        session: &'a str,
        language: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), ServiceError>> {
        Box::pin(async move {
            let address = self.address_of(session)?;
            if let Some(l) = language
                && !super::notify::LANGUAGES.contains(&l)
            {
                return Err(ServiceError::invalid(
                    "language",
                    "Choose one of the languages listed.",
                ));
            }
            self.portal().accounts.set_language(&address, language)?;
            self.track(
                "-",
                &address,
                &format!("language set to {}", language.unwrap_or("the domain's")),
            );
            Ok(())
        })
    }

    fn upload_key<'a>(
        &'a self,
        session: &'a str,
        data: &'a [u8],
    ) -> BoxFuture<'a, Result<KeyUploaded, ServiceError>> {
        let me = self.clone_handle();
        let (session, data) = (session.to_owned(), data.to_vec());
        Box::pin(async move {
            let (address, stored) = Self::blocking(move || {
                let address = me.address_of(&session)?;
                let now = now_ms();
                let directory = me.queue.directory();
                let mut entries = entries_for(&data, &address, now)?;
                // An entry the directory already has keeps the addresses
                // it serves; this upload adds this one.
                for e in &mut entries {
                    if let Some(known) = directory
                        .get(&e.fingerprint)
                        .map_err(|e| storage_error(&e))?
                    {
                        for a in known.addresses {
                            if !e.addresses.contains(&a) {
                                e.addresses.push(a);
                            }
                        }
                    }
                }
                let stored = directory.store(entries).map_err(|e| storage_error(&e))?;
                Ok((address, stored))
            })
            .await?;
            let now = now_ms();
            let fingerprints: Vec<&str> = stored.iter().map(|e| e.fingerprint.as_str()).collect();
            self.track(
                "-",
                &address,
                &format!("key uploaded by the recipient: {}", fingerprints.join(", ")),
            );
            // Held mail for the address is decided again now.
            let _ = self
                .queue
                .request(crate::queue::SchedulerRequest::KeysArrived(vec![
                    address.clone(),
                ]));
            Ok(KeyUploaded {
                keys: stored.iter().map(|e| own_key(e, now)).collect(),
            })
        })
    }

    fn change_password<'a>(
        &'a self,
        session: &'a str,
        current: &'a str,
        new: &'a str,
    ) -> BoxFuture<'a, Result<(), ServiceError>> {
        let me = self.clone_handle();
        let (session, current, new) = (session.to_owned(), current.to_owned(), new.to_owned());
        Self::blocking(move || {
            let address = me.address_of(&session)?;
            let settings = &me.config().portal.settings;
            me.portal().accounts.change_password(
                &address,
                &session,
                &current,
                &new,
                (settings.lockout_after, settings.lockout_secs),
            )?;
            me.track(
                "-",
                &address,
                "password changed by the recipient; other sessions ended",
            );
            Ok(())
        })
    }
}

/// A message as the reading page shows it (pull and push alike).
fn message_view(summary: MessageSummary, body: view::Body) -> MessageView {
    MessageView {
        summary,
        to: body.to,
        date: body.date,
        text: body.text,
        html: body.html,
        remote_images: body.remote_images,
        attachments: body.attachments,
    }
}

fn images_of(shown: bool) -> view::Images {
    if shown {
        view::Images::Shown
    } else {
        view::Images::Blocked
    }
}

fn storage_error(e: &dyn std::fmt::Display) -> ServiceError {
    tracing::warn!(error = %e, "portal: directory storage failed");
    ServiceError::Unavailable {
        what: "the key directory".into(),
    }
}

fn own_key(e: &crate::directory::Entry, now: u64) -> OwnKey {
    OwnKey {
        kind: match e.kind {
            crate::directory::Kind::Smime => "S/MIME",
            crate::directory::Kind::Openpgp => "OpenPGP",
        }
        .to_owned(),
        fingerprint: e.fingerprint.clone(),
        expires_ms: e.not_after_ms,
        usable: e.usable(now),
        trust: e.trust.as_str().to_owned(),
    }
}

/// Parses an upload into directory entries for `address` alone, with the
/// `portal` level: the recipient proved control of `address` and of
/// nothing else, so whatever else a certificate names is not taken from
/// here. Refused (naming the field `key`) when nothing in it is for
/// `address` or can encrypt now.
pub fn entries_for(
    data: &[u8],
    address: &str,
    now: u64,
) -> Result<Vec<crate::directory::Entry>, ServiceError> {
    use crate::directory::{DirectoryError, Trust};
    let invalid = |m: &str| ServiceError::invalid("key", m);
    if data.iter().all(u8::is_ascii_whitespace) {
        return Err(invalid("Choose a file or paste a certificate or key."));
    }
    let source = format!("portal:{address}");
    let entries = match crate::directory::parse(data, None, Trust::Portal, &source, now) {
        Ok(e) => e,
        Err(e @ DirectoryError::Storage(_)) => return Err(storage_error(&e)),
        Err(DirectoryError::NoAddress) => {
            return Err(invalid(&format!(
                "This certificate names no e-mail address: it must name {address}."
            )));
        }
        Err(e) => {
            return Err(invalid(&format!(
                "This is not an S/MIME certificate or OpenPGP public key we can use: {e}."
            )));
        }
    };
    let mine: Vec<_> = entries
        .into_iter()
        .filter(|e| e.domain.is_none() && e.addresses.iter().any(|a| a == address))
        .map(|mut e| {
            e.addresses = vec![address.to_owned()];
            e
        })
        .collect();
    if mine.is_empty() {
        return Err(invalid(&format!(
            "Nothing in this file is for {address}: the certificate or key must name your address."
        )));
    }
    if !mine.iter().any(|e| e.usable(now)) {
        return Err(invalid(
            "This certificate or key cannot be used to encrypt (expired, not yet valid, or for signing only).",
        ));
    }
    Ok(mine)
}

/// Destroys expired portal messages every ten minutes (each a tracking event).
pub async fn expire_loop(queue: Queue) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(600));
    loop {
        tick.tick().await;
        let q = queue.clone();
        let expired = tokio::task::spawn_blocking(move || {
            let now = now_ms();
            let pulled = q.portal().messages.expire(now)?;
            let pushed = q.portal().push.expire(now)?;
            let keys = pulled
                .into_iter()
                .map(|e| (e.queue_id, e.recipient, e.id))
                .chain(pushed.into_iter().map(|r| (r.queue_id, r.recipient, r.id)));
            Ok::<_, PortalError>(keys.collect::<Vec<_>>())
        })
        .await;
        match expired {
            Ok(Ok(destroyed)) => {
                for (queue_id, recipient, id) in destroyed {
                    queue.tracker().record(
                        &queue_id,
                        EventKind::Portal,
                        Direction::Out,
                        "",
                        &recipient,
                        "portal",
                        &format!("expired {id}: its key is destroyed"),
                    );
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "portal expiry failed; tried again later"),
            Err(e) => tracing::warn!(error = %e, "portal expiry stopped"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;

    fn cert(emails: &[&str], usage: rcgen::KeyUsagePurpose, days: i64) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = emails
            .iter()
            .map(|e| rcgen::SanType::Rfc822Name((*e).try_into().unwrap()))
            .collect();
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(2);
        params.not_after = now + time::Duration::days(days);
        params.key_usages = vec![usage];
        params.self_signed(&key).unwrap().pem().into_bytes()
    }

    #[test]
    fn an_upload_serves_the_session_address_alone_at_the_portal_level() {
        let now = now_ms();
        let both = cert(
            &["dan@ext.example", "ceo@ext.example"],
            rcgen::KeyUsagePurpose::KeyAgreement,
            30,
        );
        let entries = entries_for(&both, "dan@ext.example", now).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].addresses, vec!["dan@ext.example".to_owned()]);
        assert_eq!(entries[0].trust, crate::directory::Trust::Portal);
        assert_eq!(entries[0].source, "portal:dan@ext.example");
        let field = |e: ServiceError| match e {
            ServiceError::Invalid { errors } => errors[0].key.clone(),
            other => panic!("{other:?}"),
        };
        // Someone else's certificate, a signing-only one, an expired one,
        // nothing, and garbage: refused next to the field.
        let other = cert(
            &["eva@ext.example"],
            rcgen::KeyUsagePurpose::KeyAgreement,
            30,
        );
        assert_eq!(
            field(entries_for(&other, "dan@ext.example", now).unwrap_err()),
            "key"
        );
        let signing = cert(
            &["dan@ext.example"],
            rcgen::KeyUsagePurpose::DigitalSignature,
            30,
        );
        assert_eq!(
            field(entries_for(&signing, "dan@ext.example", now).unwrap_err()),
            "key"
        );
        let expired = cert(
            &["dan@ext.example"],
            rcgen::KeyUsagePurpose::KeyAgreement,
            -1,
        );
        assert_eq!(
            field(entries_for(&expired, "dan@ext.example", now).unwrap_err()),
            "key"
        );
        assert_eq!(
            field(entries_for(b"  \n", "dan@ext.example", now).unwrap_err()),
            "key"
        );
        assert_eq!(
            field(
                entries_for(
                    b"-----BEGIN CERTIFICATE-----\nnope\n",
                    "dan@ext.example",
                    now
                )
                .unwrap_err()
            ),
            "key"
        );
    }
}
