//! `delivery.test`: a short SMTP dialogue with a next hop (greeting,
//! EHLO, STARTTLS, EHLO, QUIT) that shows an administrator what the
//! gateway would meet there; no mail is sent. Every step is bounded by a
//! timeout and every reply line by its length.
//!
//! Trusts: nothing the server says (shown, escaped by the web page).

use std::time::Duration;

use sealgate_api::ServiceError;
use sealgate_api::ops::delivery::{DeliveryTest, DeliveryTestReport, TestStep};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

const STEP_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_LINE: usize = 1000;
const MAX_LINES: usize = 100;

/// One reply: its code and its text lines.
async fn reply<S: AsyncRead + Unpin>(reader: &mut BufReader<S>) -> Result<(u16, String), String> {
    let mut text = Vec::new();
    for _ in 0..MAX_LINES {
        let mut line = String::new();
        let n = tokio::time::timeout(STEP_TIMEOUT, reader.read_line(&mut line))
            .await
            .map_err(|_| "no answer within 10 s".to_owned())?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the server closed the connection".to_owned());
        }
        let line: String = line.trim_end().chars().take(MAX_LINE).collect();
        let code = line.get(..3).and_then(|c| c.parse::<u16>().ok());
        let more = line.as_bytes().get(3) == Some(&b'-');
        text.push(line);
        if !more {
            return match code {
                Some(code) => Ok((code, text.join("\n"))),
                None => Err(format!("not an SMTP reply: {}", text.join(" "))),
            };
        }
    }
    Err("a reply of more than 100 lines".to_owned())
}

async fn say<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut BufReader<S>,
    line: &str,
) -> Result<(u16, String), String> {
    tokio::time::timeout(
        STEP_TIMEOUT,
        stream.get_mut().write_all(format!("{line}\r\n").as_bytes()),
    )
    .await
    .map_err(|_| "could not send within 10 s".to_owned())?
    .map_err(|e| e.to_string())?;
    reply(stream).await
}

struct Steps(Vec<TestStep>);

impl Steps {
    fn push(&mut self, what: &str, ok: bool, detail: impl Into<String>) -> bool {
        self.0.push(TestStep {
            what: what.to_owned(),
            ok,
            detail: detail.into(),
        });
        ok
    }

    fn reply(
        &mut self,
        what: &str,
        result: Result<(u16, String), String>,
        want: u16,
    ) -> Option<String> {
        match result {
            Ok((code, text)) => {
                let ok = code == want;
                self.push(what, ok, text.clone());
                ok.then_some(text)
            }
            Err(e) => {
                self.push(what, false, e);
                None
            }
        }
    }
}

/// `delivery.test`, saying EHLO with the host name in force.
pub async fn test(
    ctx: std::sync::Arc<super::Ctx>,
    _actor: sealgate_api::Actor,
    op: DeliveryTest,
) -> Result<DeliveryTestReport, ServiceError> {
    let hostname = ctx.live.get().config.hostname.clone();
    run(&hostname, &op).await
}

/// Runs the test.
pub async fn run(hostname: &str, op: &DeliveryTest) -> Result<DeliveryTestReport, ServiceError> {
    let host = op.host.trim();
    if host.is_empty() || op.port == 0 {
        return Err(ServiceError::invalid("host", "host and port, please"));
    }
    let mut steps = Steps(Vec::new());
    let mut tls = false;
    let ok = dialogue(hostname, host, op, &mut steps, &mut tls).await;
    Ok(DeliveryTestReport {
        ok,
        tls,
        steps: steps.0,
    })
}

async fn dialogue(
    hostname: &str,
    host: &str,
    op: &DeliveryTest,
    steps: &mut Steps,
    tls: &mut bool,
) -> bool {
    let tcp = match tokio::time::timeout(
        STEP_TIMEOUT,
        tokio::net::TcpStream::connect((host, op.port)),
    )
    .await
    {
        Ok(Ok(s)) => {
            let peer = s.peer_addr().map(|a| a.to_string()).unwrap_or_default();
            steps.push("connect", true, format!("connected to {peer}"));
            s
        }
        Ok(Err(e)) => return steps.push("connect", false, e.to_string()),
        Err(_) => return steps.push("connect", false, "no connection within 10 s"),
    };
    let mut plain = BufReader::new(tcp);
    if steps
        .reply("greeting", reply(&mut plain).await, 220)
        .is_none()
    {
        return false;
    }
    let Some(ehlo) = steps.reply(
        "EHLO",
        say(&mut plain, &format!("EHLO {hostname}")).await,
        250,
    ) else {
        return false;
    };
    let offers_tls = ehlo.lines().any(|l| {
        l.get(4..)
            .is_some_and(|k| k.trim().eq_ignore_ascii_case("STARTTLS"))
    });
    if !offers_tls {
        steps.push(
            "STARTTLS",
            !op.require_tls,
            if op.require_tls {
                "not offered, and TLS is required: mail would wait, never go in clear"
            } else {
                "not offered: mail would go unencrypted on this hop"
            },
        );
        let _ = say(&mut plain, "QUIT").await;
        return !op.require_tls;
    }
    if steps
        .reply("STARTTLS", say(&mut plain, "STARTTLS").await, 220)
        .is_none()
    {
        return false;
    }
    let connector = tokio_rustls::TlsConnector::from(crate::tls::opportunistic_client_config());
    let Ok(name) = rustls::pki_types::ServerName::try_from(host.to_owned()) else {
        return steps.push("TLS", false, format!("`{host}` is not a host name"));
    };
    let stream =
        match tokio::time::timeout(STEP_TIMEOUT, connector.connect(name, plain.into_inner())).await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return steps.push("TLS", false, e.to_string()),
            Err(_) => return steps.push("TLS", false, "no TLS handshake within 10 s"),
        };
    let (_, session) = stream.get_ref();
    let detail = format!(
        "{} with {}",
        session
            .protocol_version()
            .map_or_else(|| "?".to_owned(), |v| format!("{v:?}")),
        session
            .negotiated_cipher_suite()
            .map_or_else(|| "?".to_owned(), |c| format!("{:?}", c.suite()))
    );
    *tls = true;
    steps.push("TLS", true, detail);
    let mut secure = BufReader::new(stream);
    if steps
        .reply(
            "EHLO (TLS)",
            say(&mut secure, &format!("EHLO {hostname}")).await,
            250,
        )
        .is_none()
    {
        return false;
    }
    let quit = say(&mut secure, "QUIT").await;
    steps.reply("QUIT", quit, 221);
    true
}
