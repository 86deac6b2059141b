//! SMTP command parsing: one command line (without its CRLF) in, one typed
//! [`Command`] out.
//!
//! Pure and bounded: the caller has already cut the line at its limit; this
//! module never allocates more than the line's size and never panics. It
//! knows the syntax of RFC 5321 and of the parameters of SIZE (RFC 1870),
//! 8BITMIME (RFC 6152), SMTPUTF8 (RFC 6531) and DSN (RFC 3461).

use serde::{Deserialize, Serialize};

use super::reply::SessionError;
use crate::address::{ParsedPath, parse_path, unquoted_chars};

/// Longest command line for ordinary commands, CRLF excluded (RFC 5321 §4.5.3.1.4: 512 with CRLF).
pub const MAX_COMMAND_LINE: usize = 510;
/// MAIL may be 100 octets longer when DSN is offered (RFC 3461 §4: ENVID, RET).
pub const MAX_MAIL_LINE: usize = MAX_COMMAND_LINE + 100;
/// RCPT may be 500 octets longer when DSN is offered (RFC 3461 §4: ORCPT, NOTIFY).
pub const MAX_RCPT_LINE: usize = MAX_COMMAND_LINE + 500;
/// The reader's hard cap: no command can be longer than this.
pub const MAX_ANY_LINE: usize = MAX_RCPT_LINE;

/// A parsed SMTP command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ehlo(String),
    Helo(String),
    Mail(ParsedPath, MailParams),
    Rcpt(ParsedPath, RcptParams),
    Data,
    Rset,
    Noop,
    Quit,
    Vrfy,
    Expn,
    Help,
    StartTls,
}

/// What the body contains, as declared with `BODY=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum BodyType {
    #[default]
    SevenBit,
    EightBitMime,
}

/// `RET=` of RFC 3461: how much of the message a DSN returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ret {
    Full,
    Headers,
}

/// Parameters of MAIL FROM.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MailParams {
    pub size: Option<u64>,
    pub body: BodyType,
    pub smtputf8: bool,
    pub ret: Option<Ret>,
    /// ENVID, still xtext-encoded as received (RFC 3461 §4.4).
    pub envid: Option<String>,
}

/// NOTIFY= of RFC 3461 as flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Notify {
    pub never: bool,
    pub success: bool,
    pub failure: bool,
    pub delay: bool,
}

impl Notify {
    /// The RFC 3461 default when NOTIFY is absent: failure and (our choice) delay.
    pub fn default_when_absent() -> Notify {
        Notify {
            never: false,
            success: false,
            failure: true,
            delay: true,
        }
    }

    /// The NOTIFY= value to pass on when relaying.
    pub fn to_param(&self) -> String {
        if self.never {
            return "NEVER".into();
        }
        let mut parts = Vec::new();
        if self.success {
            parts.push("SUCCESS");
        }
        if self.failure {
            parts.push("FAILURE");
        }
        if self.delay {
            parts.push("DELAY");
        }
        parts.join(",")
    }
}

/// Parameters of RCPT TO.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RcptParams {
    pub notify: Option<Notify>,
    /// ORCPT as `addr-type;xtext`, kept encoded (RFC 3461 §4.2).
    pub orcpt: Option<String>,
}

/// Parses one command line. `postmaster_domain` completes `RCPT TO:<postmaster>`.
pub fn parse_command(line: &[u8], postmaster_domain: &str) -> Result<Command, SessionError> {
    if line.contains(&0) {
        return Err(SessionError::Syntax("NUL character in command"));
    }
    let line = std::str::from_utf8(line).map_err(|_| SessionError::Syntax("invalid UTF-8"))?;
    let (verb, rest) = match line.find(' ') {
        Some(i) => (line.get(..i).unwrap_or(""), line.get(i + 1..).unwrap_or("")),
        None => (line, ""),
    };
    let verb = verb.to_ascii_uppercase();
    let limit = match verb.as_str() {
        "MAIL" => MAX_MAIL_LINE,
        "RCPT" => MAX_RCPT_LINE,
        _ => MAX_COMMAND_LINE,
    };
    if line.len() > limit {
        return Err(SessionError::LineTooLong);
    }
    let rest = rest.trim_matches(' ');
    let no_args = |cmd: Command| {
        if rest.is_empty() {
            Ok(cmd)
        } else {
            Err(SessionError::Syntax("this command takes no arguments"))
        }
    };
    match verb.as_str() {
        "EHLO" | "HELO" => {
            let name = rest.split(' ').next().unwrap_or("");
            if name.is_empty() {
                return Err(SessionError::Syntax("a host name is required"));
            }
            if !name.chars().all(|c| c.is_ascii_graphic() || !c.is_ascii()) {
                return Err(SessionError::Syntax("invalid host name"));
            }
            Ok(if verb == "EHLO" {
                Command::Ehlo(name.to_string())
            } else {
                Command::Helo(name.to_string())
            })
        }
        "MAIL" => {
            let args = strip_keyword(rest, "FROM:")
                .ok_or(SessionError::Syntax("expected MAIL FROM:<address>"))?;
            let (path, params) = split_path(args)?;
            let path = parse_path(path, true, postmaster_domain).ok_or(SessionError::BadAddress)?;
            Ok(Command::Mail(path, parse_mail_params(params)?))
        }
        "RCPT" => {
            let args = strip_keyword(rest, "TO:")
                .ok_or(SessionError::Syntax("expected RCPT TO:<address>"))?;
            let (path, params) = split_path(args)?;
            let path =
                parse_path(path, false, postmaster_domain).ok_or(SessionError::BadAddress)?;
            Ok(Command::Rcpt(path, parse_rcpt_params(params)?))
        }
        "DATA" => no_args(Command::Data),
        "RSET" => no_args(Command::Rset),
        "NOOP" => Ok(Command::Noop),
        "QUIT" => no_args(Command::Quit),
        "VRFY" => Ok(Command::Vrfy),
        "EXPN" => Ok(Command::Expn),
        "HELP" => Ok(Command::Help),
        "STARTTLS" => no_args(Command::StartTls),
        _ => Err(SessionError::UnknownCommand),
    }
}

/// Strips `FROM:`/`TO:` case-insensitively, allowing a space after the colon.
fn strip_keyword<'a>(text: &'a str, keyword: &str) -> Option<&'a str> {
    let head = text.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    Some(text.get(keyword.len()..)?.trim_start_matches(' '))
}

/// Splits `<path> params` at the end of the path (quotes may hold spaces and `>`).
fn split_path(text: &str) -> Result<(&str, &str), SessionError> {
    if text.starts_with('<') {
        let (end, _) = unquoted_chars(text)
            .find(|&(_, ch)| ch == '>')
            .ok_or(SessionError::BadAddress)?;
        let (path, rest) = text.split_at(end + 1);
        if !rest.is_empty() && !rest.starts_with(' ') {
            return Err(SessionError::Syntax("expected a space after the address"));
        }
        return Ok((path, rest.trim_start_matches(' ')));
    }
    Ok(match text.split_once(' ') {
        Some((path, rest)) => (path, rest.trim_start_matches(' ')),
        None => (text, ""),
    })
}

/// `KEY[=VALUE]` pairs separated by spaces; at most 16 of them.
fn params(text: &str) -> Result<Vec<(String, Option<&str>)>, SessionError> {
    let list: Vec<_> = text
        .split(' ')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_ascii_uppercase(), Some(v)),
            None => (p.to_ascii_uppercase(), None),
        })
        .collect();
    if list.len() > 16 {
        return Err(SessionError::BadParameter("too many parameters"));
    }
    Ok(list)
}

fn parse_mail_params(text: &str) -> Result<MailParams, SessionError> {
    let mut out = MailParams::default();
    for (key, value) in params(text)? {
        match (key.as_str(), value) {
            ("SIZE", Some(v)) if out.size.is_none() => {
                out.size = Some(v.parse().map_err(|_| SessionError::BadParameter("SIZE"))?)
            }
            ("BODY", Some(v)) => {
                out.body = match v.to_ascii_uppercase().as_str() {
                    "7BIT" => BodyType::SevenBit,
                    "8BITMIME" => BodyType::EightBitMime,
                    _ => return Err(SessionError::BadParameter("BODY")),
                }
            }
            ("SMTPUTF8", None) => out.smtputf8 = true,
            ("RET", Some(v)) if out.ret.is_none() => {
                out.ret = Some(match v.to_ascii_uppercase().as_str() {
                    "FULL" => Ret::Full,
                    "HDRS" => Ret::Headers,
                    _ => return Err(SessionError::BadParameter("RET")),
                })
            }
            ("ENVID", Some(v)) if out.envid.is_none() => {
                if v.len() > 100 || !is_xtext(v) {
                    return Err(SessionError::BadParameter("ENVID"));
                }
                out.envid = Some(v.to_string());
            }
            _ => {
                return Err(SessionError::BadParameter(
                    "MAIL FROM parameter not recognised",
                ));
            }
        }
    }
    Ok(out)
}

fn parse_rcpt_params(text: &str) -> Result<RcptParams, SessionError> {
    let mut out = RcptParams::default();
    for (key, value) in params(text)? {
        match (key.as_str(), value) {
            ("NOTIFY", Some(v)) if out.notify.is_none() => out.notify = Some(parse_notify(v)?),
            ("ORCPT", Some(v)) if out.orcpt.is_none() => {
                let (kind, addr) = v
                    .split_once(';')
                    .ok_or(SessionError::BadParameter("ORCPT"))?;
                if kind.is_empty() || addr.is_empty() || addr.len() > 500 || !is_xtext(addr) {
                    return Err(SessionError::BadParameter("ORCPT"));
                }
                out.orcpt = Some(v.to_string());
            }
            _ => {
                return Err(SessionError::BadParameter(
                    "RCPT TO parameter not recognised",
                ));
            }
        }
    }
    Ok(out)
}

fn parse_notify(value: &str) -> Result<Notify, SessionError> {
    let mut n = Notify::default();
    for word in value.split(',') {
        match word.to_ascii_uppercase().as_str() {
            "NEVER" => n.never = true,
            "SUCCESS" => n.success = true,
            "FAILURE" => n.failure = true,
            "DELAY" => n.delay = true,
            _ => return Err(SessionError::BadParameter("NOTIFY")),
        }
    }
    if n.never && (n.success || n.failure || n.delay) {
        return Err(SessionError::BadParameter(
            "NOTIFY=NEVER cannot be combined",
        ));
    }
    Ok(n)
}

/// xtext of RFC 3461 §4: printable ASCII except `+` and `=`, or `+XX` hex.
fn is_xtext(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'+' {
            let hex = |j: usize| {
                bytes
                    .get(j)
                    .is_some_and(|c| matches!(c, b'0'..=b'9' | b'A'..=b'F'))
            };
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
        } else if (33..=126).contains(&b) && b != b'=' {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn parse(line: &str) -> Result<Command, SessionError> {
        parse_command(line.as_bytes(), "example.org")
    }

    #[test]
    fn verbs_case_insensitive() {
        assert_eq!(
            parse("ehlo client.example").unwrap(),
            Command::Ehlo("client.example".into())
        );
        assert_eq!(parse("QuIt").unwrap(), Command::Quit);
        assert_eq!(parse("NOOP anything").unwrap(), Command::Noop);
        assert_eq!(parse("FOO").unwrap_err(), SessionError::UnknownCommand);
        assert!(parse("EHLO").is_err());
        assert!(parse("DATA x").is_err());
    }

    #[test]
    fn mail_with_every_parameter() {
        let Command::Mail(path, p) =
            parse("MAIL FROM:<a@b.example> SIZE=1000 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=QQ+2B1")
                .unwrap()
        else {
            panic!("not MAIL")
        };
        assert_eq!(path.mailbox.unwrap().to_string(), "a@b.example");
        assert_eq!(p.size, Some(1000));
        assert_eq!(p.body, BodyType::EightBitMime);
        assert!(p.smtputf8);
        assert_eq!(p.ret, Some(Ret::Headers));
        assert_eq!(p.envid.as_deref(), Some("QQ+2B1"));
    }

    #[test]
    fn rcpt_dsn_parameters() {
        let Command::Rcpt(_, p) =
            parse("RCPT TO:<x@y.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x+40y.example")
                .unwrap()
        else {
            panic!("not RCPT")
        };
        let n = p.notify.unwrap();
        assert!(n.success && n.failure && !n.delay);
        assert_eq!(p.orcpt.as_deref(), Some("rfc822;x+40y.example"));
        assert!(parse("RCPT TO:<x@y.example> NOTIFY=NEVER,SUCCESS").is_err());
        assert!(parse("RCPT TO:<x@y.example> FOO=1").is_err());
        assert!(parse("RCPT TO:<x@y.example> ORCPT=rfc822;a=b").is_err());
    }

    #[test]
    fn lenient_space_after_colon_and_bare_address() {
        assert!(matches!(
            parse("MAIL FROM: <a@b.example>").unwrap(),
            Command::Mail(..)
        ));
        assert!(matches!(
            parse("RCPT TO:c@d.example").unwrap(),
            Command::Rcpt(..)
        ));
    }

    #[test]
    fn limits_and_nul() {
        let long = format!("NOOP {}", "x".repeat(MAX_COMMAND_LINE));
        assert_eq!(parse(&long).unwrap_err(), SessionError::LineTooLong);
        assert!(parse_command(b"MAIL FROM:<a@b\0.example>", "x").is_err());
        assert!(parse_command(b"\xff\xfe", "x").is_err());
    }
}
