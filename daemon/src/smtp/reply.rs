//! SMTP replies, and the one place where every session error becomes a reply.
//!
//! A [`Reply`] is a code, an enhanced status code (RFC 3463) and text lines.
//! [`SessionError`] names every way a client can get something wrong or be
//! refused; [`SessionError::reply`] is the only mapping from those to wire
//! codes, so the same failure always gets the same answer.

use std::fmt::Write as _;

/// One SMTP reply, possibly multi-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// Enhanced status code (`"2.1.0"`), omitted on 220/221 greetings and EHLO.
    pub status: Option<&'static str>,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn new(code: u16, status: &'static str, text: impl Into<String>) -> Reply {
        Reply {
            code,
            status: Some(status),
            lines: vec![text.into()],
        }
    }

    /// A reply without an enhanced status code (greeting, EHLO).
    pub fn plain(code: u16, text: impl Into<String>) -> Reply {
        Reply {
            code,
            status: None,
            lines: vec![text.into()],
        }
    }

    pub fn multiline(code: u16, lines: Vec<String>) -> Reply {
        Reply {
            code,
            status: None,
            lines,
        }
    }

    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    /// The reply as it goes on the wire, every line ending in CRLF.
    pub fn to_wire(&self) -> String {
        let mut out = String::new();
        let count = self.lines.len().max(1);
        for i in 0..count {
            let text = self.lines.get(i).map_or("", String::as_str);
            let sep = if i + 1 < count { '-' } else { ' ' };
            let _ = write!(out, "{}{sep}", self.code);
            if let Some(status) = self.status {
                let _ = write!(out, "{status} ");
            }
            // Never let a reply text break the framing.
            for ch in text.chars() {
                out.push(if ch == '\r' || ch == '\n' { ' ' } else { ch });
            }
            out.push_str("\r\n");
        }
        out
    }
}

/// Everything that makes the session refuse a command or a message.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionError {
    /// The command line is longer than its limit.
    LineTooLong,
    /// The command is not one we know.
    UnknownCommand,
    /// The command's arguments do not parse.
    Syntax(&'static str),
    /// A parameter of MAIL or RCPT is not one we know or is malformed.
    BadParameter(&'static str),
    /// The command is not allowed in the current state (e.g. MAIL before EHLO).
    BadSequence(&'static str),
    /// The address does not parse.
    BadAddress,
    /// A non-ASCII address without the SMTPUTF8 parameter.
    NeedsSmtputf8,
    /// The client is outside and the recipient is not in one of our domains.
    RelayDenied,
    /// Local-part routing (`%`, `!`, quoted `@`, source routes) from outside.
    RoutingDenied,
    /// One recipient too many.
    TooManyRecipients,
    /// The declared size exceeds the maximum.
    SizeExceeded,
    /// The message exceeded the maximum size while it was being received.
    MessageTooBig,
    /// A text line of the message exceeds 1000 octets.
    TextLineTooLong,
    /// A bare CR or LF was found in the message (SMTP smuggling defence).
    BareLineEnding,
    /// A NUL octet in the message.
    NulInMessage,
    /// More `Received:` headers than a mail loop would need.
    Loop,
    /// The spool is short of disk space.
    InsufficientStorage,
    /// The spool could not store the message (write or fsync failed).
    StorageFailed,
    /// STARTTLS when TLS is already on, or not available.
    TlsUnavailable,
    /// Too many errors in one session.
    TooManyErrors,
    /// No valid recipients before DATA.
    NoRecipients,
    /// A distribution list could not be expanded now (directory server down).
    DirectoryUnavailable,
    /// Expanding the distribution lists gave more recipients than allowed.
    ExpansionTooLarge,
}

impl SessionError {
    /// The one mapping from error to what the client sees.
    pub fn reply(&self) -> Reply {
        use SessionError::*;
        match self {
            LineTooLong => Reply::new(500, "5.5.2", "Line too long"),
            UnknownCommand => Reply::new(500, "5.5.1", "Command unrecognized"),
            Syntax(what) => Reply::new(501, "5.5.4", format!("Syntax error: {what}")),
            BadParameter(what) => {
                Reply::new(555, "5.5.4", format!("Unsupported parameter: {what}"))
            }
            BadSequence(what) => {
                Reply::new(503, "5.5.1", format!("Bad sequence of commands: {what}"))
            }
            BadAddress => Reply::new(553, "5.1.3", "Bad address syntax"),
            NeedsSmtputf8 => Reply::new(553, "5.6.7", "Non-ASCII address requires SMTPUTF8"),
            RelayDenied => Reply::new(554, "5.7.1", "Relay access denied"),
            RoutingDenied => Reply::new(
                554,
                "5.7.1",
                "Source routing and local-part relaying are not allowed",
            ),
            TooManyRecipients => Reply::new(452, "4.5.3", "Too many recipients"),
            SizeExceeded => Reply::new(
                552,
                "5.3.4",
                "Message size exceeds fixed maximum message size",
            ),
            MessageTooBig => Reply::new(
                552,
                "5.3.4",
                "Message size exceeds fixed maximum message size",
            ),
            TextLineTooLong => Reply::new(
                554,
                "5.6.0",
                "Message has a line longer than 998 characters",
            ),
            BareLineEnding => Reply::new(
                554,
                "5.6.0",
                "Message contains a bare CR or LF; only CRLF ends a line",
            ),
            NulInMessage => Reply::new(554, "5.6.0", "Message contains a NUL character"),
            Loop => Reply::new(554, "5.4.6", "Too many hops: mail loop detected"),
            InsufficientStorage => {
                Reply::new(452, "4.3.1", "Insufficient system storage, try again later")
            }
            StorageFailed => Reply::new(
                451,
                "4.3.0",
                "Local error in processing, message not accepted, try again later",
            ),
            TlsUnavailable => Reply::new(503, "5.5.1", "TLS already active or not available"),
            TooManyErrors => Reply::new(421, "4.7.0", "Too many errors, closing connection"),
            NoRecipients => Reply::new(554, "5.5.1", "No valid recipients"),
            DirectoryUnavailable => Reply::new(
                451,
                "4.4.3",
                "Directory server unavailable for list expansion, try again later",
            ),
            ExpansionTooLarge => Reply::new(
                554,
                "5.5.3",
                "Too many recipients after distribution list expansion",
            ),
        }
    }

    /// Whether this counts toward the per-session error limit.
    pub fn counts_as_error(&self) -> bool {
        !matches!(
            self,
            SessionError::InsufficientStorage
                | SessionError::StorageFailed
                | SessionError::DirectoryUnavailable
                | SessionError::TooManyRecipients
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_single_and_multi() {
        assert_eq!(Reply::new(250, "2.0.0", "OK").to_wire(), "250 2.0.0 OK\r\n");
        let m = Reply::multiline(250, vec!["a".into(), "b".into()]);
        assert_eq!(m.to_wire(), "250-a\r\n250 b\r\n");
    }

    #[test]
    fn reply_text_cannot_break_framing() {
        let r = Reply::new(501, "5.5.4", "x\r\n250 fake");
        assert_eq!(r.to_wire(), "501 5.5.4 x  250 fake\r\n");
    }
}
