//! The policy dry run: what would happen to a message, per recipient, and
//! why; nothing is queued or sent. The same decision code as the pipeline
//! (`pipeline::decide::decide_all`) and the same key lookup
//! (`pipeline::find_method`), so the dry run shows exactly what delivery does.

use std::sync::Arc;

use base64::Engine as _;
use sealgate_api::ops::policy::{Explanation, KeyRef, PolicyExplain};
use sealgate_api::settings::policy::Action;
use sealgate_api::{Actor, ServiceError};

use super::Ctx;
use crate::pipeline::decide::{Asked, Origin};

pub async fn explain(
    ctx: Arc<Ctx>,
    _: Actor,
    op: PolicyExplain,
) -> Result<Vec<Explanation>, ServiceError> {
    let runtime = ctx.live.get();
    let config = &runtime.config;
    let content = base64::engine::general_purpose::STANDARD
        .decode(op.message.as_bytes())
        .map_err(|_| ServiceError::invalid("message", "not base64"))?;
    if u64::try_from(content.len()).unwrap_or(u64::MAX) > config.smtp.max_message_size {
        return Err(ServiceError::invalid(
            "message",
            format!(
                "larger than smtp.max_message_size ({})",
                config.smtp.max_message_size
            ),
        ));
    }
    let headers = mail_parser::MessageParser::default().parse_headers(&content[..]);
    let header_addresses = |which: &[&str]| -> Vec<String> {
        let Some(message) = headers.as_ref() else {
            return Vec::new();
        };
        which
            .iter()
            .filter_map(|name| message.header(*name))
            .filter_map(|value| value.as_address())
            .flat_map(|list| list.iter())
            .filter_map(|a| a.address())
            .map(str::to_owned)
            .collect()
    };
    let sender = op
        .sender
        .clone()
        .or_else(|| header_addresses(&["From"]).into_iter().next())
        .unwrap_or_default();
    let recipients = if op.recipients.is_empty() {
        header_addresses(&["To", "Cc", "Bcc"])
    } else {
        op.recipients.clone()
    };
    if recipients.is_empty() {
        return Err(ServiceError::invalid(
            "recipients",
            "no recipients: name them, or give a message with To/Cc headers",
        ));
    }
    let mut sender_groups = runtime
        .expander
        .local_groups_of(&sender.to_ascii_lowercase());
    if let Some(ldap) = &config.ldap {
        let mut session = crate::expand::ldap::Session::connect(ldap)
            .await
            .map_err(|e| ServiceError::Unavailable {
                what: format!("the LDAP directory for sender groups ({e})"),
            })?;
        let found = session.groups_of(&sender.to_ascii_lowercase()).await;
        session.close().await;
        sender_groups.extend(found.map_err(|e| ServiceError::Unavailable {
            what: format!("the LDAP directory for sender groups ({e})"),
        })?);
    }
    let client_ip = op
        .client_ip
        .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
    tokio::task::spawn_blocking(move || {
        let origin = Origin {
            sender: &sender,
            client_ip: Some(client_ip),
            sender_groups: &sender_groups,
            arrived_encrypted: None,
        };
        let asked: Vec<Asked> = recipients.iter().map(|r| Asked::new(r)).collect();
        let (_, decisions) = crate::pipeline::decide::decide_all(
            &runtime.config,
            &runtime.policy,
            &content,
            &origin,
            &asked,
        )
        .map_err(|e| ServiceError::invalid("message", format!("cannot be processed: {e}")))?;
        let now = crate::envelope::now_ms();
        let directory = ctx.queue.directory();
        let keys = ctx.keys.current();
        let context = crate::pipeline::Context {
            config: &runtime.config,
            policy: &runtime.policy,
            directory,
            keys: &keys,
            trust: &ctx.trust,
            portal_accounts: Some(&ctx.queue.portal().accounts),
        };
        decisions
            .into_iter()
            .map(|d| {
                let (key, outcome) = match d.action {
                    Action::EncryptRequired | Action::EncryptIfPossible => {
                        match crate::pipeline::find_method(&context, &d.recipient, &d, now)
                            .map_err(|r| ServiceError::Unavailable { what: r.text() })?
                        {
                            crate::trust::resolve::Found::Method(method) => {
                                let e = method.entry();
                                let described = method.describe();
                                (
                                    Some(KeyRef {
                                        kind: e.kind,
                                        fingerprint: e.fingerprint.clone(),
                                        trust: e.trust,
                                        description: described.clone(),
                                    }),
                                    format!("encrypted for {described}"),
                                )
                            }
                            crate::trust::resolve::Found::Wait(reason) => {
                                (None, format!("waits: {}", reason.text()))
                            }
                            crate::trust::resolve::Found::None(why)
                                if let Some(served) =
                                    crate::pipeline::portal_method(&context, &d) =>
                            {
                                (None, served.outcome(&why))
                            }
                            crate::trust::resolve::Found::None(why)
                                if d.action == Action::EncryptRequired =>
                            {
                                (None, format!("held: encryption required and {why}"))
                            }
                            crate::trust::resolve::Found::None(why) => {
                                (None, format!("sent in clear: {why}"))
                            }
                        }
                    }
                    Action::Sign => (None, "signed, not encrypted".to_owned()),
                    Action::Clear => (None, "sent as it is".to_owned()),
                    Action::Quarantine => (None, "quarantined for an administrator".to_owned()),
                    Action::Reject => {
                        (None, "refused; the sender gets a failure notice".to_owned())
                    }
                };
                Ok(Explanation {
                    recipient: d.recipient.clone(),
                    direction: d.direction,
                    action: d.action,
                    sign: d.sign,
                    strip_keyword: d.strip_keyword.clone(),
                    decided_by: d.source_text(),
                    because: d.because.clone(),
                    key,
                    outcome,
                    line: d.explain(),
                })
            })
            .collect()
    })
    .await
    .map_err(|e| ServiceError::failed(format!("the dry run stopped: {e}")))?
}
