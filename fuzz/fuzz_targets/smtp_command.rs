//! Fuzzes the SMTP command parser and the session state machine.
//!
//! The whole input goes to `parse_command` as one line; then it is cut into
//! lines at LF (as the server's line reader does) and fed to a `Session`
//! whose client address, TLS offer and storage condition come from the first
//! byte. Whatever the client says, the session must not panic, every reply
//! must be a well-formed SMTP reply, and the protocol invariants must hold.

#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use sealgate::config::Config;
use sealgate::smtp::command::{MAX_ANY_LINE, parse_command};
use sealgate::smtp::reply::Reply;
use sealgate::smtp::session::{Conditions, Session, Step};

fn check_reply(reply: &Reply) {
    assert!((200..600).contains(&reply.code), "reply code {}", reply.code);
    let wire = reply.to_wire();
    assert!(wire.ends_with("\r\n"), "reply not CRLF-terminated: {wire:?}");
    // Every line is `ddd-` or `ddd ` and the framing holds: no bare CR or LF.
    let lines: Vec<&str> = wire.split_terminator("\r\n").collect();
    assert_eq!(lines.len(), reply.lines.len().max(1), "framing broken: {wire:?}");
    for (i, line) in lines.iter().enumerate() {
        assert!(!line.contains('\r') && !line.contains('\n'), "bare CR/LF in {wire:?}");
        let sep = if i + 1 < lines.len() { '-' } else { ' ' };
        assert_eq!(line.get(..3), Some(reply.code.to_string().as_str()));
        assert_eq!(line.chars().nth(3), Some(sep), "bad separator in {wire:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    // 1. The parser on its own, with any bytes (NUL, invalid UTF-8, huge).
    if let Ok(command) = parse_command(data, "example.org") {
        let _ = format!("{command:?}");
    }

    // 2. The session: the first byte picks the situation.
    let (flags, script) = match data.split_first() {
        Some((f, rest)) => (*f, rest),
        None => return,
    };
    let ip = if flags & 1 == 0 {
        IpAddr::V4(Ipv4Addr::LOCALHOST) // internal: may relay anywhere
    } else {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)) // outside: our domains only
    };
    let tls_available = flags & 2 == 0;
    let mut session = Session::new(Arc::new(Config::default()), ip, tls_available, "fuzz".into());
    check_reply(&session.greeting());
    let mut tls_active = false;
    let mut greeted = false;
    for (n, raw) in script.split(|&b| b == b'\n').enumerate() {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        let conditions = Conditions {
            storage_available: flags & 4 == 0 || n % 3 != 0,
        };
        let step = if line.len() > MAX_ANY_LINE {
            session.line_too_long()
        } else {
            session.handle_line(line, conditions)
        };
        let is_mail = line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"MAIL");
        match step {
            Step::Reply(reply) => {
                check_reply(&reply);
                if reply.code == 250 && line.len() >= 4 {
                    let verb = &line[..4];
                    if verb.eq_ignore_ascii_case(b"EHLO") || verb.eq_ignore_ascii_case(b"HELO") {
                        greeted = true;
                    }
                }
                // MAIL is never accepted before EHLO/HELO (also after STARTTLS).
                if is_mail && reply.code == 250 {
                    assert!(greeted, "MAIL accepted without a greeting");
                }
            }
            Step::Close(reply) => {
                check_reply(&reply);
                return;
            }
            Step::StartTls(reply) => {
                check_reply(&reply);
                assert_eq!(reply.code, 220);
                assert!(tls_available && !tls_active, "STARTTLS granted twice or without TLS");
                session.tls_started();
                tls_active = true;
                greeted = false;
            }
            Step::ReadData(reply) => {
                check_reply(&reply);
                assert_eq!(reply.code, 354);
                assert!(conditions.storage_available, "DATA accepted with no storage");
                // The message "arrives": alternate between a good and a refused verdict.
                let verdict = if n % 2 == 0 {
                    Ok(())
                } else {
                    Err(sealgate::smtp::reply::SessionError::BareLineEnding)
                };
                match session.finish_data(verdict, b"Subject: fuzz\r\n\r\nbody\r\n") {
                    Ok(envelope) => {
                        assert!(!envelope.recipients.is_empty(), "DATA with no recipients");
                        let queue_id = sealgate::envelope::QueueId::new();
                        let header = session.received_header(&queue_id, &envelope);
                        assert!(header.ends_with("\r\n"));
                        assert!(!header.contains("\r\r") && !header.contains("\n\n"));
                        if let Step::Reply(r) = session.stored(Ok(queue_id.clone())) {
                            check_reply(&r);
                            assert_eq!(r.code, 250);
                        }
                    }
                    Err(Step::Reply(r)) => check_reply(&r),
                    Err(Step::Close(r)) => {
                        check_reply(&r);
                        return;
                    }
                    Err(other) => panic!("unexpected step after DATA: {other:?}"),
                }
            }
        }
    }
});
