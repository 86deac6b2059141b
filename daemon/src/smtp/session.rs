//! The SMTP server session as a pure state machine: command lines in,
//! replies and directions for the network layer out.
//!
//! No I/O happens here, so every dialogue can be replayed in unit tests and
//! fuzzed. The network layer ([`super::server`]) reads bounded lines, feeds
//! them in, writes the replies, performs STARTTLS when told to (discarding
//! any plaintext the client sent after the command) and hands DATA to
//! [`super::data::DataReader`].
//!
//! Trusts: the configuration and the client's IP address as seen by the
//! kernel. Everything else the client says is checked here: sequence,
//! syntax, limits and relay rights.

use std::net::IpAddr;
use std::sync::Arc;

use crate::config::Config;
use crate::envelope::{Envelope, EnvelopeRecipient, now_ms};

use super::command::{BodyType, Command, MailParams, parse_command};
use super::reply::{Reply, SessionError};
use crate::address::Address;

/// What the network layer must do after a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send the reply and read the next command.
    Reply(Reply),
    /// Send the reply and close the connection.
    Close(Reply),
    /// Send the reply (220), drop any buffered input, and start TLS.
    StartTls(Reply),
    /// Send the reply (354) and read the message with a `DataReader`.
    ReadData(Reply),
}

/// Facts about the system the session needs but cannot know by itself.
#[derive(Debug, Clone, Copy)]
pub struct Conditions {
    /// The spool has room for a message of the maximum size.
    pub storage_available: bool,
}

/// An open transaction: MAIL given, recipients being collected.
#[derive(Debug, Clone)]
struct Transaction {
    sender: Option<Address>,
    params: MailParams,
    recipients: Vec<EnvelopeRecipient>,
}

/// One SMTP session's protocol state.
#[derive(Debug)]
pub struct Session {
    config: Arc<Config>,
    client_ip: IpAddr,
    internal: bool,
    tls_available: bool,
    tls_active: bool,
    /// The EHLO/HELO name; `None` until the client greets (again after STARTTLS).
    helo: Option<String>,
    transaction: Option<Transaction>,
    errors: u32,
    session_id: String,
}

impl Session {
    pub fn new(
        config: Arc<Config>,
        client_ip: IpAddr,
        tls_available: bool,
        session_id: String,
    ) -> Session {
        let internal = config.is_internal(client_ip);
        Session {
            config,
            client_ip,
            internal,
            tls_available,
            tls_active: false,
            helo: None,
            transaction: None,
            errors: 0,
            session_id,
        }
    }

    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    pub fn greeting(&self) -> Reply {
        Reply::plain(220, format!("{} ESMTP Sealgate", self.config.hostname))
    }

    /// The maximum message size to hand to the `DataReader`.
    pub fn max_message_size(&self) -> u64 {
        self.config.smtp.max_message_size
    }

    /// Handles one command line (CRLF removed).
    pub fn handle_line(&mut self, line: &[u8], conditions: Conditions) -> Step {
        let postmaster_domain = self
            .config
            .relay
            .domains
            .first()
            .map_or("localhost", String::as_str);
        let result =
            parse_command(line, postmaster_domain).and_then(|cmd| self.handle(cmd, conditions));
        match result {
            Ok(step) => step,
            Err(error) => self.refuse(error),
        }
    }

    /// Called when a command line exceeded the reader's cap.
    pub fn line_too_long(&mut self) -> Step {
        self.refuse(SessionError::LineTooLong)
    }

    /// Turns an error into its reply, counting it and closing after too many.
    fn refuse(&mut self, error: SessionError) -> Step {
        if error.counts_as_error() {
            self.errors += 1;
            if self.errors >= self.config.smtp.max_errors {
                return Step::Close(SessionError::TooManyErrors.reply());
            }
        }
        Step::Reply(error.reply())
    }

    fn handle(&mut self, command: Command, conditions: Conditions) -> Result<Step, SessionError> {
        match command {
            Command::Ehlo(name) => Ok(Step::Reply(self.ehlo(name))),
            Command::Helo(name) => {
                self.helo = Some(name);
                self.transaction = None;
                Ok(Step::Reply(Reply::plain(250, self.config.hostname.clone())))
            }
            Command::Mail(path, params) => self.mail(path.mailbox, params, conditions),
            Command::Rcpt(path, params) => {
                let transaction = self
                    .transaction
                    .as_ref()
                    .ok_or(SessionError::BadSequence("need MAIL before RCPT"))?;
                let address = path.mailbox.ok_or(SessionError::BadAddress)?;
                if !transaction.params.smtputf8 && !address.is_ascii() {
                    return Err(SessionError::NeedsSmtputf8);
                }
                self.check_relay(&address, path.had_source_route)?;
                if transaction.recipients.len() >= self.config.smtp.max_recipients {
                    return Err(SessionError::TooManyRecipients);
                }
                let reply = Reply::new(250, "2.1.5", format!("Recipient <{address}> OK"));
                if let Some(t) = self.transaction.as_mut() {
                    t.recipients.push(EnvelopeRecipient {
                        address,
                        notify: params.notify,
                        orcpt: params.orcpt,
                    });
                }
                Ok(Step::Reply(reply))
            }
            Command::Data => {
                let transaction = self
                    .transaction
                    .as_ref()
                    .ok_or(SessionError::BadSequence("need MAIL before DATA"))?;
                if transaction.recipients.is_empty() {
                    return Err(SessionError::NoRecipients);
                }
                if !conditions.storage_available {
                    return Err(SessionError::InsufficientStorage);
                }
                Ok(Step::ReadData(Reply::plain(
                    354,
                    "End data with <CR><LF>.<CR><LF>",
                )))
            }
            Command::Rset => {
                self.transaction = None;
                Ok(Step::Reply(Reply::new(250, "2.0.0", "Reset OK")))
            }
            Command::Noop => Ok(Step::Reply(Reply::new(250, "2.0.0", "OK"))),
            Command::Quit => Ok(Step::Close(Reply::new(221, "2.0.0", "Bye"))),
            Command::Vrfy => Ok(Step::Reply(Reply::new(
                252,
                "2.5.0",
                "Cannot VRFY user, but will accept message and attempt delivery",
            ))),
            Command::Expn => Ok(Step::Reply(Reply::new(502, "5.5.1", "EXPN not available"))),
            Command::Help => Ok(Step::Reply(Reply::new(
                214,
                "2.0.0",
                "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP STARTTLS",
            ))),
            Command::StartTls => {
                if self.tls_active || !self.tls_available {
                    return Err(SessionError::TlsUnavailable);
                }
                Ok(Step::StartTls(Reply::new(
                    220,
                    "2.0.0",
                    "Ready to start TLS",
                )))
            }
        }
    }

    fn ehlo(&mut self, name: String) -> Reply {
        self.helo = Some(name);
        self.transaction = None;
        let mut lines = vec![
            format!("{} Hello", self.config.hostname),
            format!("SIZE {}", self.config.smtp.max_message_size),
            "8BITMIME".to_string(),
            "PIPELINING".to_string(),
            "ENHANCEDSTATUSCODES".to_string(),
            "SMTPUTF8".to_string(),
            "DSN".to_string(),
        ];
        if self.tls_available && !self.tls_active {
            lines.push("STARTTLS".to_string());
        }
        lines.push("HELP".to_string());
        Reply::multiline(250, lines)
    }

    fn mail(
        &mut self,
        sender: Option<Address>,
        params: MailParams,
        conditions: Conditions,
    ) -> Result<Step, SessionError> {
        if self.helo.is_none() {
            return Err(SessionError::BadSequence("send EHLO or HELO first"));
        }
        if self.transaction.is_some() {
            return Err(SessionError::BadSequence("nested MAIL command"));
        }
        if let Some(sender) = &sender
            && !params.smtputf8
            && !sender.is_ascii()
        {
            return Err(SessionError::NeedsSmtputf8);
        }
        if params
            .size
            .is_some_and(|s| s > self.config.smtp.max_message_size)
        {
            return Err(SessionError::SizeExceeded);
        }
        if !conditions.storage_available {
            return Err(SessionError::InsufficientStorage);
        }
        self.transaction = Some(Transaction {
            sender,
            params,
            recipients: Vec::new(),
        });
        Ok(Step::Reply(Reply::new(250, "2.1.0", "Sender OK")))
    }

    /// Relay control: inside clients may send anywhere; outside clients only
    /// to our own domains, and never with routing tricks.
    fn check_relay(&self, address: &Address, had_source_route: bool) -> Result<(), SessionError> {
        if self.internal {
            return Ok(());
        }
        if had_source_route || address.has_local_part_routing() {
            return Err(SessionError::RoutingDenied);
        }
        if address.is_literal() || !self.config.is_local_domain(&address.domain) {
            return Err(SessionError::RelayDenied);
        }
        Ok(())
    }

    /// After STARTTLS succeeded: forget everything said before (RFC 3207 §4.2).
    pub fn tls_started(&mut self) {
        self.tls_active = true;
        self.helo = None;
        self.transaction = None;
    }

    /// After the DATA section ended: the envelope if the message may be
    /// stored, or the refusal. The transaction ends either way.
    pub fn finish_data(
        &mut self,
        verdict: Result<(), SessionError>,
        headers: &[u8],
    ) -> Result<Envelope, Step> {
        let transaction = self.transaction.take();
        let outcome = verdict.and_then(|()| {
            let transaction = transaction.ok_or(SessionError::BadSequence("no transaction"))?;
            if count_received_headers(headers) > MAX_RECEIVED_HEADERS {
                return Err(SessionError::Loop);
            }
            Ok(transaction)
        });
        match outcome {
            Ok(t) => Ok(Envelope {
                sender: t.sender,
                recipients: t.recipients,
                ret: t.params.ret,
                envid: t.params.envid,
                body_type: t.params.body,
                smtputf8: t.params.smtputf8,
                client_ip: self.client_ip.to_string(),
                helo: self.helo.clone().unwrap_or_default(),
                tls: self.tls_active,
                session_id: self.session_id.clone(),
                received_at_ms: now_ms(),
                sender_groups: Vec::new(),
                gateway_notice: false,
            }),
            Err(error) => Err(self.refuse(error)),
        }
    }

    /// The reply after the spool answered.
    pub fn stored(&mut self, result: Result<crate::envelope::QueueId, SessionError>) -> Step {
        match result {
            Ok(queue_id) => Step::Reply(Reply::new(
                250,
                "2.0.0",
                format!("Ok: queued as {queue_id}"),
            )),
            Err(error) => self.refuse(error),
        }
    }

    /// The `Received:` header this gateway adds in front of the message.
    pub fn received_header(
        &self,
        queue_id: &crate::envelope::QueueId,
        envelope: &Envelope,
    ) -> String {
        let with = match (self.tls_active, envelope.smtputf8) {
            (true, true) => "UTF8SMTPS",
            (true, false) => "ESMTPS",
            (false, true) => "UTF8SMTP",
            (false, false) => "ESMTP",
        };
        let for_clause = match envelope.recipients.as_slice() {
            [one] => format!("\r\n\tfor <{}>", one.address),
            _ => String::new(),
        };
        let helo: String = envelope
            .helo
            .chars()
            .filter(|c| c.is_ascii_graphic() && *c != '(' && *c != ')')
            .take(64)
            .collect();
        format!(
            "Received: from {helo} ([{}])\r\n\tby {} (Sealgate) with {with} id {queue_id}{for_clause};\r\n\t{}\r\n",
            self.client_ip,
            self.config.hostname,
            crate::util::rfc5322_date_now(),
        )
    }

    pub fn body_is_8bit(&self) -> bool {
        self.transaction
            .as_ref()
            .is_some_and(|t| t.params.body == BodyType::EightBitMime)
    }
}

/// More `Received:` headers than this means a mail loop (RFC 5321 §6.3).
pub const MAX_RECEIVED_HEADERS: usize = 50;

/// Counts `Received:` header fields in the header section of `message`.
pub fn count_received_headers(message: &[u8]) -> usize {
    let mut count = 0;
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line.len() >= 9
            && line
                .get(..9)
                .is_some_and(|h| h.eq_ignore_ascii_case(b"received:"))
        {
            count += 1;
        }
    }
    count
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )]
    use super::*;

    const OK: Conditions = Conditions {
        storage_available: true,
    };

    fn config() -> Arc<Config> {
        let mut c = Config {
            hostname: "gw.example.org".into(),
            ..Config::default()
        };
        c.relay.domains = vec!["example.org".into()];
        c.relay.internal_networks = vec!["10.0.0.0/8".parse().unwrap()];
        c.smtp.max_recipients = 3;
        c.smtp.max_errors = 20;
        Arc::new(c)
    }

    fn session(ip: &str) -> Session {
        Session::new(config(), ip.parse().unwrap(), true, "s1".into())
    }

    /// Sends `line` and checks the reply starts with `expect`.
    fn cmd(s: &mut Session, line: &str, expect: &str) -> Step {
        let step = s.handle_line(line.as_bytes(), OK);
        let reply = match &step {
            Step::Reply(r) | Step::Close(r) | Step::StartTls(r) | Step::ReadData(r) => r.to_wire(),
        };
        assert!(
            reply.starts_with(expect),
            "{line:?}: got {reply:?}, expected {expect:?}"
        );
        step
    }

    #[test]
    fn full_dialogue_from_inside() {
        let mut s = session("10.1.2.3");
        cmd(&mut s, "EHLO client.example", "250-gw.example.org");
        cmd(&mut s, "MAIL FROM:<a@example.org>", "250 2.1.0");
        cmd(&mut s, "RCPT TO:<b@elsewhere.example>", "250 2.1.5");
        let step = cmd(&mut s, "DATA", "354");
        assert!(matches!(step, Step::ReadData(_)));
        let env = s.finish_data(Ok(()), b"Subject: x\r\n\r\n").unwrap();
        assert_eq!(env.recipients.len(), 1);
        assert_eq!(env.sender_text(), "a@example.org");
        cmd(&mut s, "QUIT", "221");
    }

    #[test]
    fn sequence_errors() {
        let mut s = session("10.1.2.3");
        cmd(&mut s, "MAIL FROM:<a@example.org>", "503 5.5.1");
        cmd(&mut s, "RCPT TO:<b@example.org>", "503 5.5.1");
        cmd(&mut s, "HELO x", "250");
        cmd(&mut s, "DATA", "503");
        cmd(&mut s, "MAIL FROM:<a@example.org>", "250");
        cmd(&mut s, "MAIL FROM:<a@example.org>", "503");
        cmd(&mut s, "DATA", "554 5.5.1");
        cmd(&mut s, "RSET", "250");
        cmd(&mut s, "VRFY someone", "252");
        cmd(&mut s, "HELP", "214");
        cmd(&mut s, "NOOP", "250");
    }

    #[test]
    fn outside_client_may_only_send_to_our_domains() {
        let mut s = session("192.0.2.7");
        cmd(&mut s, "EHLO outside.example", "250");
        cmd(&mut s, "MAIL FROM:<x@outside.example>", "250");
        cmd(&mut s, "RCPT TO:<victim@elsewhere.example>", "554 5.7.1");
        cmd(&mut s, "RCPT TO:<user@EXAMPLE.org>", "250");
        cmd(
            &mut s,
            "RCPT TO:<user%elsewhere.example@example.org>",
            "554 5.7.1",
        );
        cmd(
            &mut s,
            "RCPT TO:<elsewhere.example!user@example.org>",
            "554 5.7.1",
        );
    }

    #[test]
    fn recipient_limit_gets_452() {
        let mut s = session("10.0.0.1");
        cmd(&mut s, "EHLO c", "250");
        cmd(&mut s, "MAIL FROM:<>", "250");
        for i in 0..3 {
            cmd(&mut s, &format!("RCPT TO:<r{i}@x.example>"), "250");
        }
        cmd(&mut s, "RCPT TO:<r4@x.example>", "452 4.5.3");
    }

    #[test]
    fn starttls_resets_state_and_requires_new_ehlo() {
        let mut s = session("10.0.0.1");
        cmd(&mut s, "EHLO c", "250");
        cmd(&mut s, "MAIL FROM:<a@x.example>", "250");
        assert!(matches!(cmd(&mut s, "STARTTLS", "220"), Step::StartTls(_)));
        s.tls_started();
        cmd(&mut s, "MAIL FROM:<a@x.example>", "503");
        let step = cmd(&mut s, "EHLO c", "250");
        let Step::Reply(r) = step else { panic!() };
        assert!(!r.lines.iter().any(|l| l == "STARTTLS"));
        cmd(&mut s, "STARTTLS", "503");
    }

    #[test]
    fn too_many_errors_close_the_session() {
        let mut s = session("10.0.0.1");
        for _ in 0..19 {
            cmd(&mut s, "BOGUS", "500");
        }
        assert!(matches!(cmd(&mut s, "BOGUS", "421"), Step::Close(_)));
    }

    #[test]
    fn storage_shortage_gets_452_431() {
        let mut s = session("10.0.0.1");
        cmd(&mut s, "EHLO c", "250");
        let step = s.handle_line(
            b"MAIL FROM:<a@x.example>",
            Conditions {
                storage_available: false,
            },
        );
        assert_eq!(step, Step::Reply(SessionError::InsufficientStorage.reply()));
        assert!(
            SessionError::InsufficientStorage
                .reply()
                .to_wire()
                .starts_with("452 4.3.1")
        );
    }

    #[test]
    fn size_and_utf8() {
        let mut s = session("10.0.0.1");
        cmd(&mut s, "EHLO c", "250");
        cmd(&mut s, "MAIL FROM:<a@x.example> SIZE=999999999999", "552");
        cmd(&mut s, "MAIL FROM:<jö@x.example>", "553 5.6.7");
        cmd(&mut s, "MAIL FROM:<jö@x.example> SMTPUTF8", "250");
        cmd(&mut s, "RCPT TO:<ü@y.example>", "250");
    }

    #[test]
    fn loops_are_refused() {
        let mut s = session("10.0.0.1");
        cmd(&mut s, "EHLO c", "250");
        cmd(&mut s, "MAIL FROM:<a@x.example>", "250");
        cmd(&mut s, "RCPT TO:<b@y.example>", "250");
        cmd(&mut s, "DATA", "354");
        let headers = "Received: x\r\n".repeat(51) + "\r\n";
        let refused = s.finish_data(Ok(()), headers.as_bytes()).unwrap_err();
        assert_eq!(refused, Step::Reply(SessionError::Loop.reply()));
    }
}
