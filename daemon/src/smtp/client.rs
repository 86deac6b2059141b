//! The outbound SMTP client: one transaction per call, with PIPELINING when
//! offered, opportunistic STARTTLS (mandatory when the caller requires it),
//! DSN parameters passed on, dot-stuffing, and a pool of idle connections
//! per destination so a busy queue does not reconnect for every message.
//!
//! Trusts nothing the server says: replies are read with a line and line
//! count limit and every read has a timeout. What goes out never contains a
//! bare CR or LF.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::address::Address;
use crate::envelope::EnvelopeRecipient;
use crate::reason::Reason;
use crate::smtp::command::Ret;

use super::stream::MaybeTls;

/// Longest reply line we read, and most lines in one reply.
const MAX_REPLY_LINE: usize = 4096;
const MAX_REPLY_LINES: usize = 100;
/// How long an idle pooled connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(30);
/// Most idle connections kept per destination.
const POOL_MAX_PER_DESTINATION: usize = 32;

/// What happened to one recipient in a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The next hop accepted it; the text is its reply.
    Delivered(String),
    /// Try again later.
    Deferred(Reason),
    /// Failed for good.
    Bounced(Reason),
}

/// A reply from the remote server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteReply {
    pub code: u16,
    pub text: String,
}

impl RemoteReply {
    /// The reply as a reason: its code kept as the next hop gave it.
    pub fn reason(&self) -> Reason {
        Reason::remote(self.code, &self.text)
    }

    fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    fn is_permanent(&self) -> bool {
        self.code >= 500
    }
}

impl std::fmt::Display for RemoteReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.text)
    }
}

/// A transaction failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connection to {0} failed: {1}")]
    Connect(String, io::Error),
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    #[error("timed out waiting for the server")]
    Timeout,
    #[error("server rejected the transaction: {0}")]
    Rejected(RemoteReply),
    #[error("server sent a malformed reply")]
    Protocol,
    #[error("TLS is required for this destination but the server does not offer STARTTLS")]
    TlsRequired,
    #[error("TLS handshake failed: {0}")]
    Tls(io::Error),
}

/// What one transaction sends.
pub struct Transaction<'a> {
    pub sender: Option<&'a Address>,
    pub recipients: Vec<&'a EnvelopeRecipient>,
    pub ret: Option<Ret>,
    pub envid: Option<&'a str>,
    pub eight_bit: bool,
    pub smtputf8: bool,
    pub content: &'a [u8],
}

struct Connection {
    stream: MaybeTls,
    input: Vec<u8>,
    extensions: Vec<String>,
}

impl Connection {
    fn has(&self, extension: &str) -> bool {
        self.extensions.iter().any(|e| {
            e.split(' ')
                .next()
                .is_some_and(|k| k.eq_ignore_ascii_case(extension))
        })
    }
}

/// The SMTP client with its connection pool.
pub struct SmtpClient {
    /// The name said in EHLO, and the connect and reply timeout: settings
    /// that may change while the client runs ([`SmtpClient::configure`]).
    params: std::sync::RwLock<(String, Duration)>,
    tls: TlsConnector,
    pool: Mutex<HashMap<String, Vec<(Instant, Connection)>>>,
}

impl SmtpClient {
    pub fn new(hostname: String, timeout: Duration) -> SmtpClient {
        SmtpClient {
            params: std::sync::RwLock::new((hostname, timeout)),
            tls: TlsConnector::from(crate::tls::opportunistic_client_config()),
            pool: Mutex::new(HashMap::new()),
        }
    }

    /// Takes the EHLO name and timeout of a new settings version.
    pub fn configure(&self, hostname: &str, timeout: Duration) {
        let mut params = self.params.write().unwrap_or_else(|p| p.into_inner());
        if params.0 != hostname || params.1 != timeout {
            *params = (hostname.to_owned(), timeout);
        }
    }

    fn hostname(&self) -> String {
        self.params
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }

    fn timeout(&self) -> Duration {
        self.params.read().unwrap_or_else(|p| p.into_inner()).1
    }

    fn checkout(&self, key: &str) -> Option<Connection> {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        let list = pool.get_mut(key)?;
        while let Some((since, conn)) = list.pop() {
            if since.elapsed() < POOL_IDLE {
                return Some(conn);
            }
        }
        None
    }

    fn checkin(&self, key: String, conn: Connection) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        let list = pool.entry(key).or_default();
        if list.len() < POOL_MAX_PER_DESTINATION {
            list.push((Instant::now(), conn));
        }
    }

    /// Sends one transaction to `host:port`; per-recipient outcomes on success.
    pub async fn send(
        &self,
        host: &str,
        port: u16,
        require_tls: bool,
        tx: &Transaction<'_>,
    ) -> Result<Vec<Outcome>, ClientError> {
        let key = format!("{host}:{port}:{require_tls}");
        let stuffed = dot_stuff(tx.content);
        if let Some(mut conn) = self.checkout(&key) {
            // A pooled connection may have been closed by the server; an
            // error before any recipient was accepted is retried afresh.
            match self.transaction(&mut conn, tx, &stuffed).await {
                Ok(outcomes) => {
                    self.checkin(key, conn);
                    return Ok(outcomes);
                }
                Err(ClientError::Io(_) | ClientError::Timeout | ClientError::Protocol) => {}
                Err(other) => return Err(other),
            }
        }
        let mut conn = self.connect(host, port, require_tls).await?;
        let outcomes = self.transaction(&mut conn, tx, &stuffed).await?;
        self.checkin(key, conn);
        Ok(outcomes)
    }

    async fn connect(
        &self,
        host: &str,
        port: u16,
        require_tls: bool,
    ) -> Result<Connection, ClientError> {
        let target = format!("{host}:{port}");
        let tcp = tokio::time::timeout(self.timeout(), TcpStream::connect((host, port)))
            .await
            .map_err(|_| {
                ClientError::Connect(
                    target.clone(),
                    io::Error::new(io::ErrorKind::TimedOut, "connect timeout"),
                )
            })?
            .map_err(|e| ClientError::Connect(target.clone(), e))?;
        let _ = tcp.set_nodelay(true);
        let mut conn = Connection {
            stream: MaybeTls::Plain(tcp),
            input: Vec::new(),
            extensions: Vec::new(),
        };
        let greeting = self.read_reply(&mut conn).await?;
        if greeting.code != 220 {
            return Err(rejected(&greeting));
        }
        self.ehlo(&mut conn).await?;
        if conn.has("STARTTLS") {
            self.write(&mut conn, b"STARTTLS\r\n").await?;
            let reply = self.read_reply(&mut conn).await?;
            if reply.code == 220 {
                conn.input.clear();
                let tcp = conn.stream.take_plain()?;
                // Opportunistic TLS authenticates nobody; the name only feeds SNI.
                let name = rustls::pki_types::ServerName::try_from(host.to_string())
                    .unwrap_or_else(|_| placeholder_server_name());
                let tls = tokio::time::timeout(self.timeout(), self.tls.connect(name, tcp))
                    .await
                    .map_err(|_| ClientError::Timeout)?
                    .map_err(ClientError::Tls)?;
                conn.stream = MaybeTls::Client(Box::new(tls));
                self.ehlo(&mut conn).await?;
            } else if require_tls {
                return Err(ClientError::TlsRequired);
            }
        } else if require_tls {
            return Err(ClientError::TlsRequired);
        }
        Ok(conn)
    }

    async fn ehlo(&self, conn: &mut Connection) -> Result<(), ClientError> {
        self.write(conn, format!("EHLO {}\r\n", self.hostname()).as_bytes())
            .await?;
        let (reply, lines) = self.read_reply_lines(conn).await?;
        if reply.code != 250 {
            return Err(rejected(&reply));
        }
        conn.extensions = lines.into_iter().skip(1).collect();
        Ok(())
    }

    async fn transaction(
        &self,
        conn: &mut Connection,
        tx: &Transaction<'_>,
        stuffed: &[u8],
    ) -> Result<Vec<Outcome>, ClientError> {
        // Never send what the next hop did not agree to carry (RFC 6531 §3.2, RFC 6152).
        if tx.smtputf8 && !conn.has("SMTPUTF8") {
            let ascii = tx.sender.is_none_or(Address::is_ascii)
                && tx.recipients.iter().all(|r| r.address.is_ascii());
            if !ascii {
                return Err(ClientError::Rejected(RemoteReply {
                    code: 553,
                    text: "5.6.7 the next hop does not support SMTPUTF8, needed for a non-ASCII address".into(),
                }));
            }
        }
        if tx.eight_bit && !conn.has("8BITMIME") && tx.content.iter().any(|b| *b >= 0x80) {
            return Err(ClientError::Rejected(RemoteReply {
                code: 554,
                text: "5.6.3 the next hop does not support 8BITMIME, needed for this 8-bit message"
                    .into(),
            }));
        }
        let dsn = conn.has("DSN");
        let mut mail = format!(
            "MAIL FROM:<{}>",
            tx.sender.map(ToString::to_string).unwrap_or_default()
        );
        if conn.has("SIZE") {
            mail.push_str(&format!(" SIZE={}", tx.content.len()));
        }
        if tx.eight_bit && conn.has("8BITMIME") {
            mail.push_str(" BODY=8BITMIME");
        }
        if tx.smtputf8 && conn.has("SMTPUTF8") {
            mail.push_str(" SMTPUTF8");
        }
        if dsn {
            if let Some(ret) = tx.ret {
                mail.push_str(match ret {
                    Ret::Full => " RET=FULL",
                    Ret::Headers => " RET=HDRS",
                });
            }
            if let Some(envid) = tx.envid {
                mail.push_str(&format!(" ENVID={envid}"));
            }
        }
        mail.push_str("\r\n");
        let mut rcpts = Vec::with_capacity(tx.recipients.len());
        for r in &tx.recipients {
            let mut line = format!("RCPT TO:<{}>", r.address);
            if dsn {
                if let Some(n) = r.notify {
                    line.push_str(&format!(" NOTIFY={}", n.to_param()));
                }
                if let Some(orcpt) = &r.orcpt {
                    line.push_str(&format!(" ORCPT={orcpt}"));
                }
            }
            line.push_str("\r\n");
            rcpts.push(line);
        }
        let pipelining = conn.has("PIPELINING");
        let mut outcomes = Vec::with_capacity(rcpts.len());
        let mail_reply;
        if pipelining {
            let mut batch = mail.into_bytes();
            for r in &rcpts {
                batch.extend_from_slice(r.as_bytes());
            }
            batch.extend_from_slice(b"DATA\r\n");
            self.write(conn, &batch).await?;
            mail_reply = self.read_reply(conn).await?;
            for _ in &rcpts {
                outcomes.push(self.read_reply(conn).await?);
            }
        } else {
            self.write(conn, mail.as_bytes()).await?;
            mail_reply = self.read_reply(conn).await?;
            if mail_reply.is_positive() {
                for r in &rcpts {
                    self.write(conn, r.as_bytes()).await?;
                    outcomes.push(self.read_reply(conn).await?);
                }
            }
        }
        let any_accepted = outcomes.iter().any(RemoteReply::is_positive);
        if !pipelining && mail_reply.is_positive() && any_accepted {
            self.write(conn, b"DATA\r\n").await?;
        }
        let data_reply = if pipelining || (mail_reply.is_positive() && any_accepted) {
            Some(self.read_reply(conn).await?)
        } else {
            None
        };
        if !mail_reply.is_positive() {
            self.reset(conn).await?;
            return Err(rejected(&mail_reply));
        }
        let data_reply = match data_reply {
            Some(r) if r.code == 354 && any_accepted => r,
            Some(r) if r.code == 354 => {
                // Nobody accepted but the server wants data: send an empty message and drop it.
                let _ = r;
                self.write(conn, b".\r\n").await?;
                let _ = self.read_reply(conn).await?;
                return Ok(outcomes.iter().map(rcpt_outcome).collect());
            }
            Some(r) => {
                if any_accepted {
                    self.reset(conn).await?;
                    return Err(rejected(&r));
                }
                self.reset(conn).await?;
                return Ok(outcomes.iter().map(rcpt_outcome).collect());
            }
            None => {
                self.reset(conn).await?;
                return Ok(outcomes.iter().map(rcpt_outcome).collect());
            }
        };
        let _ = data_reply;
        self.write(conn, stuffed).await?;
        let final_reply = self.read_reply(conn).await?;
        Ok(outcomes
            .iter()
            .map(|r| {
                if !r.is_positive() {
                    rcpt_outcome(r)
                } else if final_reply.is_positive() {
                    Outcome::Delivered(final_reply.to_string())
                } else if final_reply.is_permanent() {
                    Outcome::Bounced(final_reply.reason())
                } else {
                    Outcome::Deferred(final_reply.reason())
                }
            })
            .collect())
    }

    async fn reset(&self, conn: &mut Connection) -> Result<(), ClientError> {
        self.write(conn, b"RSET\r\n").await?;
        let _ = self.read_reply(conn).await?;
        Ok(())
    }

    async fn write(&self, conn: &mut Connection, bytes: &[u8]) -> Result<(), ClientError> {
        tokio::time::timeout(self.timeout(), async {
            conn.stream.write_all(bytes).await?;
            conn.stream.flush().await
        })
        .await
        .map_err(|_| ClientError::Timeout)??;
        Ok(())
    }

    async fn read_reply(&self, conn: &mut Connection) -> Result<RemoteReply, ClientError> {
        Ok(self.read_reply_lines(conn).await?.0)
    }

    /// Reads one (possibly multi-line) reply; also returns the text lines.
    async fn read_reply_lines(
        &self,
        conn: &mut Connection,
    ) -> Result<(RemoteReply, Vec<String>), ClientError> {
        let mut lines = Vec::new();
        loop {
            let line = self.read_line(conn).await?;
            let code = line
                .get(..3)
                .and_then(|c| c.parse::<u16>().ok())
                .filter(|c| (200..600).contains(c))
                .ok_or(ClientError::Protocol)?;
            let more = line.as_bytes().get(3) == Some(&b'-');
            lines.push(line.get(4..).unwrap_or("").to_string());
            if !more {
                let text = lines.last().cloned().unwrap_or_default();
                return Ok((RemoteReply { code, text }, lines));
            }
            if lines.len() >= MAX_REPLY_LINES {
                return Err(ClientError::Protocol);
            }
        }
    }

    async fn read_line(&self, conn: &mut Connection) -> Result<String, ClientError> {
        loop {
            if let Some(pos) = conn.input.iter().position(|&b| b == b'\n') {
                let raw: Vec<u8> = conn.input.drain(..=pos).collect();
                let text = String::from_utf8_lossy(&raw);
                return Ok(text.trim_end_matches(['\r', '\n']).to_string());
            }
            if conn.input.len() > MAX_REPLY_LINE {
                return Err(ClientError::Protocol);
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(self.timeout(), conn.stream.read(&mut chunk))
                .await
                .map_err(|_| ClientError::Timeout)??;
            if n == 0 {
                return Err(ClientError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "server closed the connection",
                )));
            }
            conn.input.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
        }
    }
}

fn placeholder_server_name() -> rustls::pki_types::ServerName<'static> {
    rustls::pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into())
}

fn rejected(reply: &RemoteReply) -> ClientError {
    ClientError::Rejected(reply.clone())
}

fn rcpt_outcome(reply: &RemoteReply) -> Outcome {
    if reply.is_positive() {
        Outcome::Deferred(Reason::Network {
            detail: format!("recipient accepted but message not sent: {reply}"),
            no_answer: false,
        })
    } else if reply.is_permanent() {
        Outcome::Bounced(reply.reason())
    } else {
        Outcome::Deferred(reply.reason())
    }
}

impl ClientError {
    /// Whether the next hop refused for good (no other host will do better).
    pub fn is_permanent_refusal(&self) -> bool {
        matches!(self, ClientError::Rejected(reply) if reply.is_permanent())
    }

    /// Why the recipients of a failed transaction are where they are.
    pub fn reason(&self) -> Reason {
        match self {
            ClientError::Rejected(reply) => reply.reason(),
            ClientError::TlsRequired => Reason::TlsRequired {
                detail: self.to_string(),
            },
            ClientError::Connect(..) => Reason::Network {
                detail: self.to_string(),
                no_answer: true,
            },
            ClientError::Io(_)
            | ClientError::Timeout
            | ClientError::Protocol
            | ClientError::Tls(_) => Reason::Network {
                detail: self.to_string(),
                no_answer: false,
            },
        }
    }
}

/// The DATA payload: every line ending made CRLF, leading dots doubled,
/// and the terminating `.` line added.
pub fn dot_stuff(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + content.len() / 50 + 5);
    let mut at_line_start = true;
    let mut rest = content;
    while !rest.is_empty() {
        if at_line_start && rest.first() == Some(&b'.') {
            out.push(b'.');
        }
        // Copy the line's text in one go, up to its line end.
        let text_len = rest
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .unwrap_or(rest.len());
        let (text, tail) = rest.split_at(text_len);
        out.extend_from_slice(text);
        rest = match tail {
            [b'\r', b'\n', more @ ..] | [b'\r' | b'\n', more @ ..] => {
                out.extend_from_slice(b"\r\n");
                at_line_start = true;
                more
            }
            _ => {
                at_line_start &= text.is_empty();
                &[]
            }
        };
    }
    if !at_line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Shared client handle.
pub type SharedClient = Arc<SmtpClient>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuffing_and_line_endings() {
        assert_eq!(dot_stuff(b"a\r\n.b\r\n"), b"a\r\n..b\r\n.\r\n");
        assert_eq!(dot_stuff(b".\r\n"), b"..\r\n.\r\n");
        assert_eq!(dot_stuff(b"x\ny\rz"), b"x\r\ny\r\nz\r\n.\r\n");
        assert_eq!(dot_stuff(b""), b".\r\n");
        assert_eq!(dot_stuff(b".\r\n.\r\n"), b"..\r\n..\r\n.\r\n");
        assert_eq!(dot_stuff(b"a\r\n."), b"a\r\n..\r\n.\r\n");
        assert_eq!(dot_stuff(b"a.b\r\n\r\n.."), b"a.b\r\n\r\n...\r\n.\r\n");
    }
}
