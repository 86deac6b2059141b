//! Delivery status notifications (RFC 3464 `multipart/report`): written when
//! recipients fail for good or the queue lifetime expires, and sent to the
//! envelope sender unless it is `<>` or the recipient asked for NOTIFY=NEVER.
//!
//! A DSN quotes the original headers (RET=HDRS or by default) or the whole
//! message (RET=FULL), never more, and is itself sent from `<>` so it can
//! never cause another DSN.

use crate::config::Config;
use crate::envelope::{Envelope, EnvelopeRecipient, now_ms};
use crate::reason::Reason;
use crate::smtp::command::{BodyType, Ret};
use crate::util::rfc5322_date_now;

/// Why a recipient is in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportAction {
    Failed,
    Delayed,
}

/// One recipient line of the report.
pub struct ReportedRecipient<'a> {
    pub recipient: &'a EnvelopeRecipient,
    pub action: ReportAction,
    pub reason: &'a Reason,
    pub remote: &'a str,
}

/// Builds the DSN message and its envelope, or `None` if none is owed.
pub fn build(
    config: &Config,
    queue_id: &str,
    original: &Envelope,
    content: &[u8],
    recipients: &[ReportedRecipient<'_>],
) -> Option<(Envelope, Vec<u8>)> {
    let sender = original.sender.clone()?;
    let wanted: Vec<_> = recipients
        .iter()
        .filter(|r| {
            let n = r.recipient.notify_or_default();
            !n.never
                && match r.action {
                    ReportAction::Failed => n.failure,
                    ReportAction::Delayed => n.delay,
                }
        })
        .collect();
    if wanted.is_empty() {
        return None;
    }
    let boundary = format!("{queue_id}/{}", config.hostname);
    let delayed = wanted.iter().all(|r| r.action == ReportAction::Delayed);
    let subject = if delayed {
        "Delivery delayed: message still queued"
    } else {
        "Undelivered Mail Returned to Sender"
    };
    let mut out = String::new();
    out.push_str(&format!(
        "From: Mail Delivery System <MAILER-DAEMON@{}>\r\n",
        config.hostname
    ));
    out.push_str(&format!("To: <{sender}>\r\n"));
    out.push_str(&format!("Subject: {subject}\r\n"));
    out.push_str(&format!("Date: {}\r\n", rfc5322_date_now()));
    out.push_str(&format!(
        "Message-ID: <{queue_id}.{}.dsn@{}>\r\n",
        now_ms(),
        config.hostname
    ));
    out.push_str("Auto-Submitted: auto-replied\r\n");
    out.push_str("MIME-Version: 1.0\r\n");
    out.push_str(&format!("Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n\r\n"));
    out.push_str("This is a MIME-encapsulated message.\r\n\r\n");
    out.push_str(&format!(
        "--{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
    ));
    out.push_str(&format!(
        "This is the mail system at host {}.\r\n\r\n",
        config.hostname
    ));
    if delayed {
        out.push_str("Your message could not be delivered yet. It is still queued and\r\ndelivery will be retried; you do not need to resend it.\r\n\r\n");
    } else {
        out.push_str("Your message could not be delivered to one or more recipients.\r\nIt is attached below.\r\n\r\n");
    }
    for r in &wanted {
        out.push_str(&format!(
            "<{}>: {}\r\n",
            r.recipient.address,
            single_line(&r.reason.text())
        ));
    }
    out.push_str(&format!(
        "\r\n--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n"
    ));
    out.push_str(&format!("Reporting-MTA: dns; {}\r\n", config.hostname));
    if let Some(envid) = &original.envid {
        out.push_str(&format!("Original-Envelope-Id: {envid}\r\n"));
    }
    out.push_str(&format!("X-Sealgate-Queue-ID: {queue_id}\r\n"));
    out.push_str(&format!(
        "Arrival-Date: {}\r\n",
        crate::util::rfc5322_date_ms(original.received_at_ms)
    ));
    for r in &wanted {
        out.push_str("\r\n");
        if let Some(orcpt) = &r.recipient.orcpt {
            out.push_str(&format!("Original-Recipient: {orcpt}\r\n"));
        }
        let addr_type = if r.recipient.address.is_ascii() {
            "rfc822"
        } else {
            "utf-8"
        };
        out.push_str(&format!(
            "Final-Recipient: {addr_type}; {}\r\n",
            r.recipient.address
        ));
        // The code comes from the reason itself; the class from what is reported.
        let (action, status) = match r.action {
            ReportAction::Failed => ("failed", r.reason.status().with_class(5)),
            ReportAction::Delayed => ("delayed", r.reason.status().with_class(4)),
        };
        out.push_str(&format!("Action: {action}\r\nStatus: {status}\r\n"));
        if !r.remote.is_empty() {
            out.push_str(&format!("Remote-MTA: dns; {}\r\n", single_line(r.remote)));
        }
        if let Some(reply) = r.reason.remote_reply() {
            out.push_str(&format!(
                "Diagnostic-Code: smtp; {}\r\n",
                single_line(&reply)
            ));
        }
    }
    let full = original.ret == Some(Ret::Full) && !delayed;
    let (part_type, quoted) = if full {
        ("message/rfc822", content)
    } else {
        ("text/rfc822-headers", header_section(content))
    };
    out.push_str(&format!(
        "\r\n--{boundary}\r\nContent-Type: {part_type}\r\n\r\n"
    ));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(quoted);
    if !bytes.ends_with(b"\r\n") {
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let mut envelope = Envelope::from_gateway(sender, &config.hostname, format!("dsn-{queue_id}"));
    if full && original.body_type == BodyType::EightBitMime {
        envelope.body_type = BodyType::EightBitMime;
    }
    envelope.smtputf8 = original.smtputf8;
    Some((envelope, bytes))
}

/// The header section of a message (up to the blank line), with its line end.
fn header_section(content: &[u8]) -> &[u8] {
    content
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .and_then(|p| content.get(..p + 2))
        .unwrap_or(content)
}

fn single_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::address::Address;
    use crate::smtp::command::Notify;

    fn envelope(sender: Option<&str>, notify: Option<Notify>) -> Envelope {
        Envelope {
            sender: sender.and_then(Address::parse),
            recipients: vec![EnvelopeRecipient {
                address: Address::parse("r@example.net").unwrap(),
                notify,
                orcpt: Some("rfc822;r@example.net".into()),
            }],
            ret: None,
            envid: Some("ENV1".into()),
            body_type: BodyType::SevenBit,
            smtputf8: false,
            client_ip: "127.0.0.1".into(),
            helo: "c".into(),
            tls: false,
            session_id: "s".into(),
            received_at_ms: 0,
            sender_groups: Vec::new(),
            gateway_notice: false,
        }
    }

    #[test]
    fn failure_report_has_rfc3464_fields_and_only_headers() {
        let env = envelope(Some("s@example.org"), None);
        let content = b"Subject: secret plan\r\n\r\nthe body text\r\n";
        let reported = [ReportedRecipient {
            recipient: &env.recipients[0],
            action: ReportAction::Failed,
            reason: &Reason::remote(550, "5.1.1 no such user"),
            remote: "mx.example.net:25",
        }];
        let (dsn_env, dsn) = build(&Config::default(), "Q1", &env, content, &reported).unwrap();
        let text = String::from_utf8(dsn).unwrap();
        assert!(dsn_env.sender.is_none());
        assert_eq!(dsn_env.recipients[0].address.to_string(), "s@example.org");
        assert!(text.contains("report-type=delivery-status"));
        assert!(text.contains("Action: failed\r\nStatus: 5.1.1"));
        assert!(text.contains("Original-Envelope-Id: ENV1"));
        assert!(text.contains("Original-Recipient: rfc822;r@example.net"));
        assert!(text.contains("Subject: secret plan"));
        assert!(!text.contains("the body text"));
    }

    #[test]
    fn no_dsn_to_null_sender_or_never() {
        let env = envelope(None, None);
        let r = [ReportedRecipient {
            recipient: &env.recipients[0],
            action: ReportAction::Failed,
            reason: &Reason::local("x"),
            remote: "",
        }];
        assert!(build(&Config::default(), "Q", &env, b"", &r).is_none());
        let never = Notify {
            never: true,
            ..Default::default()
        };
        let env = envelope(Some("s@example.org"), Some(never));
        let r = [ReportedRecipient {
            recipient: &env.recipients[0],
            action: ReportAction::Failed,
            reason: &Reason::local("x"),
            remote: "",
        }];
        assert!(build(&Config::default(), "Q", &env, b"", &r).is_none());
    }
}
