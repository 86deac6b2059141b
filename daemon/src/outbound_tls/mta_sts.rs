//! MTA-STS (RFC 8461): a domain says, in a TXT record and a policy file
//! served over HTTPS, that its mail servers offer TLS with certificates
//! valid for their MX names, and which MX names those are.
//!
//! The record `_mta-sts.<domain>` (`v=STSv1; id=...;`) only announces
//! that a policy exists and its version; the policy itself comes from
//! `https://mta-sts.<domain>/.well-known/mta-sts.txt`, fetched with a
//! certificate verified for that name (system roots and the configured
//! anchors), without redirects, bounded in size and time. Policies are
//! cached until their `max_age` passes (persisted, so a restart does not
//! forget them: RFC 8461 §5 makes the cache what defeats an attacker who
//! strips the record) and fetched again when the record's id changes. A
//! failed fetch keeps the cached policy.
//!
//! Trusts: the HTTPS server authenticated as `mta-sts.<domain>`; the TXT
//! record only as a hint to fetch. Parsers are bounded and fuzzed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Largest policy file read (RFC 8461 §3.3 suggests 64 KiB).
pub const MAX_POLICY_SIZE: usize = 64 * 1024;
/// Most `mx` lines taken from a policy.
pub const MAX_MX_PATTERNS: usize = 64;
/// Longest `max_age` believed (RFC 8461 §3.2: 31557600, a year).
pub const MAX_AGE_LIMIT: u64 = 31_557_600;

/// The `_mta-sts` TXT record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsRecord {
    /// The policy's version id (1 to 32 letters and digits).
    pub id: String,
}

/// Reads an `_mta-sts` TXT record (`v=STSv1; id=20160831085700Z;`).
pub fn parse_record(text: &str) -> Result<StsRecord, String> {
    if text.len() > 1024 {
        return Err("record too long".into());
    }
    let mut fields = text.split(';').map(str::trim).filter(|f| !f.is_empty());
    if fields.next() != Some("v=STSv1") {
        return Err("not an STSv1 record".into());
    }
    let mut id = None;
    for field in fields {
        let (key, value) = field
            .split_once('=')
            .ok_or_else(|| format!("`{field}` is not key=value"))?;
        if key.trim() == "id" {
            let value = value.trim();
            if value.is_empty()
                || value.len() > 32
                || !value.bytes().all(|b| b.is_ascii_alphanumeric())
            {
                return Err("the id must be 1 to 32 letters and digits".into());
            }
            id = Some(value.to_owned());
        }
    }
    id.map(|id| StsRecord { id })
        .ok_or_else(|| "no id".to_owned())
}

/// What a policy asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Deliver only to matching MX hosts over verified TLS.
    Enforce,
    /// Report failures, deliver anyway.
    Testing,
    /// No policy (a domain withdrawing its policy).
    None,
}

/// A policy file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub mode: Mode,
    /// MX patterns, lower case: `mail.example.com` or `*.example.net`.
    pub mx: Vec<String>,
    /// Seconds it may be cached.
    pub max_age: u64,
}

impl Policy {
    /// Whether `host` is an MX the policy allows (a `*.` pattern covers
    /// exactly one more label, RFC 8461 §4.1).
    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.mx
            .iter()
            .any(|pattern| match pattern.strip_prefix("*.") {
                Some(suffix) => host
                    .split_once('.')
                    .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
                None => *pattern == host,
            })
    }
}

/// Reads a policy file (RFC 8461 §3.2): `key: value` lines, `version:
/// STSv1`, `mode`, `max_age`, and `mx` lines (required unless mode is none).
pub fn parse_policy(body: &[u8]) -> Result<Policy, String> {
    if body.len() > MAX_POLICY_SIZE {
        return Err("policy too large".into());
    }
    let text = std::str::from_utf8(body).map_err(|_| "policy is not UTF-8".to_owned())?;
    let (mut version, mut mode, mut max_age) = (None, None, None);
    let mut mx = Vec::new();
    for line in text.split('\n').take(1000) {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            return Err(format!("`{}` is not `key: value`", shorten(line)));
        };
        let value = value.trim();
        match key.trim() {
            "version" => version = Some(value.to_owned()),
            "mode" => {
                mode = Some(match value {
                    "enforce" => Mode::Enforce,
                    "testing" => Mode::Testing,
                    "none" => Mode::None,
                    other => return Err(format!("unknown mode `{}`", shorten(other))),
                })
            }
            "max_age" => {
                if value.is_empty()
                    || value.len() > 10
                    || !value.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err("max_age must be a number of seconds".into());
                }
                max_age = value.parse::<u64>().ok();
            }
            "mx" => {
                let pattern = value.trim_end_matches('.').to_ascii_lowercase();
                let host = pattern.strip_prefix("*.").unwrap_or(&pattern);
                if host.is_empty()
                    || host.len() > 253
                    || !host.contains('.')
                    || !host
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                {
                    return Err(format!("`{}` is not an MX pattern", shorten(value)));
                }
                if mx.len() >= MAX_MX_PATTERNS {
                    return Err("too many mx lines".into());
                }
                mx.push(pattern);
            }
            // Unknown keys are ignored (RFC 8461 §3.2: extensions).
            _ => {}
        }
    }
    if version.as_deref() != Some("STSv1") {
        return Err("version must be STSv1".into());
    }
    let mode = mode.ok_or("no mode")?;
    let max_age = max_age.ok_or("no max_age")?.min(MAX_AGE_LIMIT);
    if mode != Mode::None && mx.is_empty() {
        return Err("no mx lines".into());
    }
    Ok(Policy { mode, mx, max_age })
}

fn shorten(s: &str) -> String {
    s.chars().take(60).collect()
}

/// A cached policy with the record id it was fetched for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cached {
    pub id: String,
    pub policy: Policy,
    pub fetched_ms: u64,
    pub expires_ms: u64,
}

/// What is known about a domain's policy now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// A policy (fresh or cached).
    Policy(Cached),
    /// The domain publishes none and none is cached.
    None,
    /// A record announces a policy, but it could not be fetched and none
    /// is cached (RFC 8460 `sts-policy-fetch-error` / `sts-policy-invalid`).
    Failed {
        result_type: &'static str,
        why: String,
    },
}

/// Fetches and caches policies. The cache lives in memory and in the
/// node's state store (tree `mta_sts`), so it survives restarts.
pub struct MtaSts {
    tree: crate::db::Tree,
    /// Policies with when their record was last looked at (ms): the
    /// record is asked at most once a minute.
    memory: Mutex<HashMap<String, (Cached, u64)>>,
}

/// How often the TXT record is looked at for a domain with a cached policy.
const RECHECK_MS: u64 = 60_000;

impl MtaSts {
    pub fn new(db: &crate::db::Db) -> MtaSts {
        MtaSts {
            tree: db.tree("mta_sts"),
            memory: Mutex::new(HashMap::new()),
        }
    }

    fn stored(&self, domain: &str) -> Option<Cached> {
        self.tree
            .get(domain.as_bytes())
            .ok()
            .flatten()
            .and_then(|v| serde_json::from_slice(&v).ok())
    }

    fn store(&self, domain: &str, cached: &Cached, now_ms: u64) {
        if let Ok(v) = serde_json::to_vec(cached)
            && let Err(e) = self.tree.insert(domain.as_bytes(), v)
        {
            tracing::warn!(domain, error = %e, "MTA-STS policy not persisted");
        }
        self.memory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(domain.to_owned(), (cached.clone(), now_ms));
    }

    /// The policy for `domain` now: the cached one while its record id is
    /// unchanged, else a fresh fetch (a failed fetch keeps the cache).
    pub async fn lookup(
        &self,
        domain: &str,
        now_ms: u64,
        https: &crate::https::HttpsClient,
        dns: &crate::dnssec::SecureDns,
    ) -> Lookup {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let remembered = self
            .memory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&domain)
            .cloned();
        if let Some((cached, checked)) = &remembered
            && now_ms < cached.expires_ms
            && now_ms.saturating_sub(*checked) < RECHECK_MS
        {
            return Lookup::Policy(cached.clone());
        }
        let cached = remembered
            .map(|(c, _)| c)
            .or_else(|| self.stored(&domain))
            .filter(|c| now_ms < c.expires_ms);
        let record = record(dns, &domain).await;
        let id = match (record, &cached) {
            (Ok(Some(r)), _) => r.id,
            // No record: a cached policy stays in force until it expires
            // (the record may have been stripped on the way).
            (Ok(None), Some(c)) | (Err(_), Some(c)) => {
                let c = c.clone();
                self.remember_checked(&domain, &c, now_ms);
                return Lookup::Policy(c);
            }
            (Ok(None), None) => return Lookup::None,
            (Err(why), None) => {
                return Lookup::Failed {
                    result_type: "sts-policy-fetch-error",
                    why,
                };
            }
        };
        if let Some(c) = &cached
            && c.id == id
        {
            let c = c.clone();
            self.remember_checked(&domain, &c, now_ms);
            return Lookup::Policy(c);
        }
        match fetch(https, &domain).await {
            Ok(policy) => {
                let fresh = Cached {
                    id,
                    expires_ms: now_ms.saturating_add(policy.max_age.saturating_mul(1000)),
                    policy,
                    fetched_ms: now_ms,
                };
                self.store(&domain, &fresh, now_ms);
                Lookup::Policy(fresh)
            }
            Err((result_type, why)) => {
                tracing::info!(domain, %why, "MTA-STS policy not fetched");
                match cached {
                    Some(c) => Lookup::Policy(c),
                    None => Lookup::Failed { result_type, why },
                }
            }
        }
    }

    fn remember_checked(&self, domain: &str, cached: &Cached, now_ms: u64) {
        self.memory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(domain.to_owned(), (cached.clone(), now_ms));
    }
}

/// The domain's `_mta-sts` record: `Ok(None)` when there is none (or
/// none that is STSv1).
async fn record(dns: &crate::dnssec::SecureDns, domain: &str) -> Result<Option<StsRecord>, String> {
    let answer = dns
        .query(
            &format!("_mta-sts.{domain}"),
            hickory_proto::rr::RecordType::TXT,
        )
        .await
        .map_err(|e| e.to_string())?;
    let records: Vec<StsRecord> = answer
        .records()
        .iter()
        .filter_map(|r| match r {
            hickory_proto::rr::RData::TXT(txt) => {
                let joined: Vec<u8> = txt
                    .txt_data
                    .iter()
                    .flat_map(|s| s.iter().copied())
                    .collect();
                std::str::from_utf8(&joined)
                    .ok()
                    .and_then(|t| parse_record(t).ok())
            }
            _ => None,
        })
        .collect();
    // RFC 8461 §3.1: more than one STSv1 record is as if none.
    Ok(match records.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    })
}

async fn fetch(
    https: &crate::https::HttpsClient,
    domain: &str,
) -> Result<Policy, (&'static str, String)> {
    let url = format!("https://mta-sts.{domain}/.well-known/mta-sts.txt");
    let body = https
        .get(&url, MAX_POLICY_SIZE, Some("text/plain"))
        .await
        .map_err(|e| {
            let kind = if e.is_certificate() {
                "sts-webpki-invalid"
            } else {
                "sts-policy-fetch-error"
            };
            (kind, format!("{url}: {e}"))
        })?;
    parse_policy(&body).map_err(|e| ("sts-policy-invalid", format!("{url}: {e}")))
}

/// How long one policy fetch may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(20);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn records() {
        assert_eq!(
            parse_record("v=STSv1; id=20160831085700Z;").unwrap().id,
            "20160831085700Z"
        );
        assert!(parse_record("v=STSv1;").is_err());
        assert!(parse_record("v=spf1 -all").is_err());
        assert!(parse_record("v=STSv1; id=bad-id;").is_err());
    }

    #[test]
    fn policies() {
        let p = parse_policy(
            b"version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n",
        )
        .unwrap();
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(p.max_age, 604_800);
        assert!(p.allows("mail.example.com."));
        assert!(p.allows("MX1.example.net"));
        assert!(!p.allows("a.b.example.net"), "one label only");
        assert!(!p.allows("example.net"));
        assert!(!p.allows("evil.example.com"));
        assert!(parse_policy(b"version: STSv1\nmode: enforce\nmax_age: 1\n").is_err());
        assert!(parse_policy(b"mode: enforce\nmx: a.b\nmax_age: 1\n").is_err());
        assert!(parse_policy(b"version: STSv1\nmode: none\nmax_age: 1\n").is_ok());
        let huge = parse_policy(b"version: STSv1\nmode: none\nmax_age: 999999999\n").unwrap();
        assert_eq!(huge.max_age, MAX_AGE_LIMIT);
    }
}
