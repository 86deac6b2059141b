//! TLS reporting (RFC 8460): how our deliveries to a domain fared under
//! its published policy (DANE TLSA or MTA-STS), counted per period and
//! sent to the addresses the domain names in its `_smtp._tls` TXT record
//! (`v=TLSRPTv1; rua=mailto:...,https://...`), by mail or HTTPS POST.
//!
//! Counts live in memory for the current period (a crash loses at most
//! one period's statistics, never mail); a report is written only for a
//! domain that asks for one and had sessions in the period.
//!
//! Trusts: nothing; the report holds only counts, host names and
//! addresses of our own attempts.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::mta_sts;

/// Most failure-detail rows kept per policy and period.
const MAX_DETAILS: usize = 100;
/// Most domains counted per period.
const MAX_DOMAINS: usize = 10_000;

/// The published policy an attempt counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyRef {
    pub domain: String,
    /// `tlsa`, `sts` or `no-policy-found`.
    pub kind: &'static str,
    /// The policy as text (MTA-STS lines), for the report.
    pub strings: Vec<String>,
    pub mx_host: Vec<String>,
}

impl PolicyRef {
    pub fn none(domain: &str) -> PolicyRef {
        PolicyRef {
            domain: domain.to_owned(),
            kind: "no-policy-found",
            strings: Vec::new(),
            mx_host: Vec::new(),
        }
    }

    pub fn tlsa(domain: &str) -> PolicyRef {
        PolicyRef {
            kind: "tlsa",
            ..PolicyRef::none(domain)
        }
    }

    pub fn sts(domain: &str) -> PolicyRef {
        PolicyRef {
            kind: "sts",
            ..PolicyRef::none(domain)
        }
    }

    pub fn with_sts(mut self, policy: &mta_sts::Policy) -> PolicyRef {
        let mode = match policy.mode {
            mta_sts::Mode::Enforce => "enforce",
            mta_sts::Mode::Testing => "testing",
            mta_sts::Mode::None => "none",
        };
        self.strings = vec!["version: STSv1".to_owned(), format!("mode: {mode}")];
        self.strings
            .extend(policy.mx.iter().map(|m| format!("mx: {m}")));
        self.strings.push(format!("max_age: {}", policy.max_age));
        self.mx_host = policy.mx.clone();
        self
    }
}

/// Why a session failed, as RFC 8460 §4.3 names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    StarttlsNotSupported,
    CertificateHostMismatch,
    CertificateExpired,
    CertificateNotTrusted,
    ValidationFailure,
    TlsaInvalid,
    Dnssec,
    Sts(&'static str),
}

impl Failure {
    pub fn result_type(self) -> &'static str {
        match self {
            Failure::StarttlsNotSupported => "starttls-not-supported",
            Failure::CertificateHostMismatch => "certificate-host-mismatch",
            Failure::CertificateExpired => "certificate-expired",
            Failure::CertificateNotTrusted => "certificate-not-trusted",
            Failure::ValidationFailure => "validation-failure",
            Failure::TlsaInvalid => "tlsa-invalid",
            Failure::Dnssec => "dnssec-invalid",
            Failure::Sts(t) => t,
        }
    }

    /// The failure a handshake error stands for.
    pub fn of_tls_error(e: &std::io::Error) -> Failure {
        use rustls::{CertificateError, Error};
        let inner = e.get_ref().and_then(|i| i.downcast_ref::<Error>());
        match inner {
            Some(Error::InvalidCertificate(CertificateError::NotValidForName))
            | Some(Error::InvalidCertificate(CertificateError::NotValidForNameContext {
                ..
            })) => Failure::CertificateHostMismatch,
            Some(Error::InvalidCertificate(CertificateError::Expired))
            | Some(Error::InvalidCertificate(CertificateError::ExpiredContext { .. })) => {
                Failure::CertificateExpired
            }
            Some(Error::InvalidCertificate(CertificateError::UnknownIssuer))
            | Some(Error::InvalidCertificate(CertificateError::BadSignature)) => {
                Failure::CertificateNotTrusted
            }
            Some(Error::General(text)) if text.starts_with("DANE") => Failure::TlsaInvalid,
            _ => Failure::ValidationFailure,
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    success: u64,
    failure: u64,
    /// (result type, MX host, receiving IP) → (sessions, last reason).
    details: BTreeMap<(&'static str, String, String), (u64, String)>,
}

/// The counts of the current period.
pub struct Reports {
    period: Mutex<Period>,
}

struct Period {
    start_ms: u64,
    policies: BTreeMap<PolicyRef, Counts>,
}

impl Reports {
    pub fn new() -> Reports {
        Reports {
            period: Mutex::new(Period {
                start_ms: crate::envelope::now_ms(),
                policies: BTreeMap::new(),
            }),
        }
    }

    fn with<F: FnOnce(&mut Counts)>(&self, policy: &PolicyRef, f: F) {
        let mut period = self
            .period
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !period.policies.contains_key(policy) && period.policies.len() >= MAX_DOMAINS {
            return;
        }
        f(period.policies.entry(policy.clone()).or_default());
    }

    /// A session under `policy` succeeded.
    pub fn success(&self, policy: &PolicyRef) {
        self.with(policy, |c| c.success += 1);
    }

    /// A session (or the policy itself) failed.
    pub fn failure(&self, policy: &PolicyRef, mx: &str, ip: &str, failure: Failure, why: &str) {
        self.with(policy, |c| {
            c.failure += 1;
            let key = (failure.result_type(), mx.to_owned(), ip.to_owned());
            if c.details.len() < MAX_DETAILS || c.details.contains_key(&key) {
                let entry = c.details.entry(key).or_default();
                entry.0 += 1;
                entry.1 = why.chars().take(200).collect();
            }
        });
    }

    /// When the current period began (ms).
    pub fn started_ms(&self) -> u64 {
        self.period
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .start_ms
    }

    /// Ends the period: its counts, and a new period from `now_ms`.
    fn take(&self, now_ms: u64) -> (u64, BTreeMap<PolicyRef, Counts>) {
        let mut period = self
            .period
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let start = period.start_ms;
        period.start_ms = now_ms;
        (start, std::mem::take(&mut period.policies))
    }
}

/// A report in RFC 8460 §4 form.
#[derive(Debug, Serialize)]
pub struct Report {
    #[serde(rename = "organization-name")]
    pub organization: String,
    #[serde(rename = "date-range")]
    pub date_range: DateRange,
    #[serde(rename = "contact-info")]
    pub contact: String,
    #[serde(rename = "report-id")]
    pub report_id: String,
    pub policies: Vec<PolicyReport>,
}

#[derive(Debug, Serialize)]
pub struct DateRange {
    #[serde(rename = "start-datetime")]
    pub start: String,
    #[serde(rename = "end-datetime")]
    pub end: String,
}

#[derive(Debug, Serialize)]
pub struct PolicyReport {
    pub policy: PolicyDescription,
    pub summary: Summary,
    #[serde(rename = "failure-details", skip_serializing_if = "Vec::is_empty")]
    pub failure_details: Vec<FailureDetail>,
}

#[derive(Debug, Serialize)]
pub struct PolicyDescription {
    #[serde(rename = "policy-type")]
    pub kind: String,
    #[serde(rename = "policy-string", skip_serializing_if = "Vec::is_empty")]
    pub strings: Vec<String>,
    #[serde(rename = "policy-domain")]
    pub domain: String,
    #[serde(rename = "mx-host", skip_serializing_if = "Vec::is_empty")]
    pub mx_host: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    #[serde(rename = "total-successful-session-count")]
    pub success: u64,
    #[serde(rename = "total-failure-session-count")]
    pub failure: u64,
}

#[derive(Debug, Serialize)]
pub struct FailureDetail {
    #[serde(rename = "result-type")]
    pub result_type: String,
    #[serde(
        rename = "receiving-mx-hostname",
        skip_serializing_if = "String::is_empty"
    )]
    pub mx: String,
    #[serde(rename = "receiving-ip", skip_serializing_if = "String::is_empty")]
    pub ip: String,
    #[serde(rename = "failed-session-count")]
    pub count: u64,
    #[serde(
        rename = "additional-information",
        skip_serializing_if = "String::is_empty"
    )]
    pub why: String,
}

/// Where a domain wants its reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rua {
    Mail(String),
    Https(String),
}

/// Reads a `_smtp._tls` record: `v=TLSRPTv1; rua=mailto:a@b,https://...`.
pub fn parse_record(text: &str) -> Result<Vec<Rua>, String> {
    if text.len() > 2048 {
        return Err("record too long".into());
    }
    let mut fields = text.split(';').map(str::trim).filter(|f| !f.is_empty());
    if fields.next() != Some("v=TLSRPTv1") {
        return Err("not a TLSRPTv1 record".into());
    }
    let mut out = Vec::new();
    for field in fields {
        let Some(("rua", value)) = field.split_once('=').map(|(k, v)| (k.trim(), v)) else {
            continue;
        };
        for uri in value.split(',').map(str::trim).take(10) {
            if let Some(address) = uri.strip_prefix("mailto:") {
                let address = address.split('?').next().unwrap_or("");
                if address.contains('@') && !address.contains(['<', '>', ' ', '\r', '\n']) {
                    out.push(Rua::Mail(address.to_owned()));
                }
            } else if uri.starts_with("https://") && !uri.contains([' ', '\r', '\n']) {
                out.push(Rua::Https(uri.to_owned()));
            }
        }
    }
    if out.is_empty() {
        return Err("no usable rua".into());
    }
    Ok(out)
}

impl Default for Reports {
    fn default() -> Self {
        Reports::new()
    }
}

/// Sends the reports every `interval_secs` of the settings in force, for
/// as long as the daemon runs (a period ends when its interval passed).
pub async fn run(
    tls: Arc<super::OutboundTls>,
    queue: crate::queue::Queue,
    live: Arc<crate::settings::live::Live>,
) {
    loop {
        let config = live.get().config.clone();
        let settings = config.outbound_tls.report.clone();
        let interval_ms = settings.interval_secs.max(1).saturating_mul(1000);
        let since = crate::envelope::now_ms().saturating_sub(tls.reports.started_ms());
        if since < interval_ms {
            let wait = (interval_ms - since).min(60_000);
            tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
            continue;
        }
        let now = crate::envelope::now_ms();
        let (start, counts) = tls.reports.take(now);
        if !settings.enabled || counts.is_empty() {
            continue;
        }
        let policy = match tls.policy(&config) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "TLS reports not sent: no outbound TLS policy");
                continue;
            }
        };
        let hostname = config.hostname.clone();
        let organization = settings
            .organization
            .clone()
            .unwrap_or_else(|| hostname.clone());
        let contact = settings
            .contact
            .clone()
            .unwrap_or_else(|| format!("postmaster@{hostname}"));
        for (domain_policy, c) in counts {
            if let Err(e) = send_one(
                &policy,
                &queue,
                &hostname,
                &organization,
                &contact,
                start,
                now,
                &domain_policy,
                &c,
            )
            .await
            {
                tracing::info!(domain = %domain_policy.domain, error = %e, "TLS report not sent");
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn send_one(
    tls: &super::TlsPolicy,
    queue: &crate::queue::Queue,
    hostname: &str,
    organization: &str,
    contact: &str,
    start_ms: u64,
    end_ms: u64,
    policy: &PolicyRef,
    counts: &Counts,
) -> Result<(), String> {
    let answer = tls
        .dns()
        .query(
            &format!("_smtp._tls.{}", policy.domain),
            hickory_proto::rr::RecordType::TXT,
        )
        .await
        .map_err(|e| e.to_string())?;
    let ruas: Vec<Rua> = answer
        .records()
        .iter()
        .filter_map(|r| match r {
            hickory_proto::rr::RData::TXT(t) => {
                let joined: Vec<u8> = t.txt_data.iter().flat_map(|s| s.iter().copied()).collect();
                std::str::from_utf8(&joined)
                    .ok()
                    .and_then(|s| parse_record(s).ok())
            }
            _ => None,
        })
        .flatten()
        .collect();
    if ruas.is_empty() {
        return Ok(());
    }
    let report_id = format!(
        "{}.{}@{hostname}",
        start_ms / 1000,
        crate::util::new_session_id()
    );
    let report = Report {
        organization: organization.to_owned(),
        date_range: DateRange {
            start: crate::util::iso8601_ms(start_ms),
            end: crate::util::iso8601_ms(end_ms),
        },
        contact: contact.to_owned(),
        report_id: report_id.clone(),
        policies: vec![PolicyReport {
            policy: PolicyDescription {
                kind: policy.kind.to_owned(),
                strings: policy.strings.clone(),
                domain: policy.domain.clone(),
                mx_host: policy.mx_host.clone(),
            },
            summary: Summary {
                success: counts.success,
                failure: counts.failure,
            },
            failure_details: counts
                .details
                .iter()
                .map(|((kind, mx, ip), (n, why))| FailureDetail {
                    result_type: (*kind).to_owned(),
                    mx: mx.clone(),
                    ip: ip.clone(),
                    count: *n,
                    why: why.clone(),
                })
                .collect(),
        }],
    };
    let json = serde_json::to_vec_pretty(&report).map_err(|e| e.to_string())?;
    for rua in ruas {
        match rua {
            Rua::Https(url) => tls
                .https()
                .post(&url, "application/tlsrpt+json", json.clone())
                .await
                .map_err(|e| format!("{url}: {e}"))?,
            Rua::Mail(to) => {
                let recipient = crate::address::Address::parse(&to)
                    .ok_or_else(|| format!("`{to}` is not an address"))?;
                let content = report_mail(
                    hostname,
                    &policy.domain,
                    &report_id,
                    &to,
                    start_ms,
                    end_ms,
                    &json,
                );
                let envelope = crate::envelope::Envelope {
                    gateway_notice: true,
                    sender: crate::address::Address::parse(contact),
                    ..crate::envelope::Envelope::from_gateway(
                        recipient,
                        hostname,
                        format!("tlsrpt-{}", crate::util::new_session_id()),
                    )
                };
                queue
                    .inject(&envelope, &content)
                    .await
                    .map_err(|e| format!("report for {to} not queued: {e}"))?;
            }
        }
    }
    tracing::info!(domain = %policy.domain, success = counts.success, failure = counts.failure, "TLS report sent");
    Ok(())
}

/// The report as a message (RFC 8460 §5.3): `multipart/report;
/// report-type="tlsrpt"` with the JSON attached.
fn report_mail(
    hostname: &str,
    domain: &str,
    report_id: &str,
    to: &str,
    start_ms: u64,
    end_ms: u64,
    json: &[u8],
) -> Vec<u8> {
    let boundary = format!("tlsrpt-{}", crate::util::new_session_id());
    let mut m = String::new();
    m.push_str(&format!("From: TLS reporting <postmaster@{hostname}>\r\n"));
    m.push_str(&format!("To: <{to}>\r\n"));
    m.push_str(&format!("Date: {}\r\n", crate::util::rfc5322_date_now()));
    m.push_str(&format!(
        "Subject: Report Domain: {domain} Submitter: {hostname} Report-ID: <{report_id}>\r\n"
    ));
    m.push_str(&format!("Message-ID: <{report_id}>\r\n"));
    m.push_str(&format!("TLS-Report-Domain: {domain}\r\n"));
    m.push_str(&format!("TLS-Report-Submitter: {hostname}\r\n"));
    m.push_str("MIME-Version: 1.0\r\n");
    m.push_str(&format!(
        "Content-Type: multipart/report; report-type=\"tlsrpt\"; boundary=\"{boundary}\"\r\n\r\n"
    ));
    m.push_str(&format!(
        "--{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
    ));
    m.push_str(&format!(
        "This is an aggregate TLS report from {hostname} for {domain}.\r\n\r\n"
    ));
    m.push_str(&format!(
        "--{boundary}\r\nContent-Type: application/tlsrpt+json\r\nContent-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"{hostname}!{domain}!{}!{}.json\"\r\n\r\n",
        start_ms / 1000,
        end_ms / 1000
    ));
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(json);
    for chunk in encoded.as_bytes().chunks(76) {
        m.push_str(std::str::from_utf8(chunk).unwrap_or(""));
        m.push_str("\r\n");
    }
    m.push_str(&format!("--{boundary}--\r\n"));
    m.into_bytes()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn records() {
        assert_eq!(
            parse_record("v=TLSRPTv1; rua=mailto:tls@x.example,https://r.example/tlsrpt").unwrap(),
            vec![
                Rua::Mail("tls@x.example".into()),
                Rua::Https("https://r.example/tlsrpt".into())
            ]
        );
        assert!(parse_record("v=TLSRPTv1;").is_err());
        assert!(parse_record("v=spf1").is_err());
        assert!(parse_record("v=TLSRPTv1; rua=http://insecure.example/").is_err());
    }
}
