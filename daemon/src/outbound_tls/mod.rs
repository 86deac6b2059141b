//! Outbound TLS policy: how the connection to each recipient domain's next
//! hop must be protected, and the checks that make "protected" true.
//!
//! Levels per domain (`[outbound_tls]`, [`TlsLevel`]): `none`,
//! `opportunistic` (STARTTLS if offered, any certificate, else clear: what
//! SMTP does by default), `required` (STARTTLS always, any certificate),
//! `verify` (a certificate valid for the MX host name under the system
//! roots or the configured anchors), `dane` (RFC 7672: DNSSEC-validated
//! MX, address and TLSA records, and a matching certificate), `mta-sts`
//! (RFC 8461: the domain's policy, fetched over verified HTTPS and cached,
//! names the MX hosts and demands certificates valid for them), and
//! `auto` (DANE where published, else an enforced MTA-STS policy, else
//! opportunistic). `delivery.require_tls_domains` still means at least
//! `required`.
//!
//! [`OutboundTls::route`] turns a domain into [`Hop`]s: MX host name,
//! address and the [`TlsRequirement`] the SMTP client must meet there. The
//! client (`smtp::client`) never sends a byte of mail in clear when the
//! requirement is above opportunistic, and a handshake whose certificate
//! fails the requirement is an error: the recipients are deferred with
//! the reason, and the next hop is tried; nothing ever falls back to a
//! weaker level. Every attempt under a published policy is counted for
//! the domain's TLS reports (RFC 8460, [`report`]).
//!
//! Trusts: the validating resolver's AD bit (see `dnssec`), the root store
//! for `verify` and MTA-STS, TLSA records for DANE. Nothing the remote
//! server says.

pub mod dane;
pub mod mta_sts;
pub mod report;

use std::sync::Arc;

use rustls::ClientConfig;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use sealgate_api::settings::trust::{OutboundTlsSettings, TlsLevel};

use crate::dnssec::{Answer, SecureDns, Security};
use hickory_proto::rr::{RData, RecordType};

/// What the SMTP client must achieve on a connection.
#[derive(Clone)]
pub enum TlsRequirement {
    /// Never STARTTLS (level `none`).
    Never,
    /// STARTTLS when offered, any certificate; clear otherwise.
    Opportunistic,
    /// STARTTLS always, any certificate; `why` names the policy.
    Encrypted { why: Arc<str> },
    /// STARTTLS always, the certificate checked by `config`'s verifier.
    Authenticated(Arc<Authenticate>),
}

impl std::fmt::Debug for TlsRequirement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl TlsRequirement {
    /// Whether mail may go in clear under it.
    pub fn allows_clear(&self) -> bool {
        matches!(self, TlsRequirement::Never | TlsRequirement::Opportunistic)
    }

    /// A key for the connection pool: a connection made under one
    /// requirement is reused only under the same one.
    pub fn pool_id(&self) -> String {
        match self {
            TlsRequirement::Never => "never".into(),
            TlsRequirement::Opportunistic => "opportunistic".into(),
            TlsRequirement::Encrypted { .. } => "encrypted".into(),
            TlsRequirement::Authenticated(a) => format!("authenticated:{}", a.pool_id),
        }
    }

    /// For explanations: `dane (mx.partner.example)`.
    pub fn describe(&self) -> String {
        match self {
            TlsRequirement::Never => "no TLS (policy none)".into(),
            TlsRequirement::Opportunistic => "opportunistic TLS".into(),
            TlsRequirement::Encrypted { why } => format!("TLS required ({why})"),
            TlsRequirement::Authenticated(a) => {
                format!("authenticated TLS by {} for {}", a.method.name(), a.name)
            }
        }
    }
}

/// An authenticated connection's parameters.
pub struct Authenticate {
    /// The client configuration whose verifier decides.
    pub config: Arc<ClientConfig>,
    /// The name sent as SNI and checked (the MX host).
    pub name: String,
    pub method: AuthMethod,
    pool_id: String,
}

/// How the certificate is checked.
#[derive(Clone)]
pub enum AuthMethod {
    /// A certificate path to the root store, valid for the name (`verify`
    /// or MTA-STS).
    Webpki { policy: &'static str },
    /// TLSA records (the verifier says which one matched).
    Dane(Arc<dane::DaneVerifier>),
}

impl AuthMethod {
    pub fn name(&self) -> &'static str {
        match self {
            AuthMethod::Webpki { policy } => policy,
            AuthMethod::Dane(_) => "dane",
        }
    }

    /// After a handshake: what authenticated the server.
    pub fn verified_by(&self) -> String {
        match self {
            AuthMethod::Webpki { policy } => format!("{policy} (certificate path and name)"),
            AuthMethod::Dane(v) => format!(
                "dane ({})",
                v.matched().unwrap_or_else(|| "TLSA".to_owned())
            ),
        }
    }
}

/// What a TLS connection turned out to be, for tracking.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TlsFacts {
    pub version: String,
    pub cipher: String,
    /// How the certificate was verified, or `None` when it was not.
    pub verified: Option<String>,
}

impl std::fmt::Display for TlsFacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.version, self.cipher)?;
        match &self.verified {
            Some(how) => write!(f, ", certificate verified by {how}"),
            None => write!(f, ", certificate not verified"),
        }
    }
}

/// One place to try: the host's name, an address of it, what TLS must be
/// there, and the published policy an attempt counts for (TLS-RPT).
#[derive(Debug, Clone)]
pub struct Hop {
    pub name: String,
    pub address: String,
    pub tls: TlsRequirement,
    pub policy: report::PolicyRef,
}

/// Why no hop could be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// Try later (DNS trouble, a policy not met by any host now).
    Temporary(String),
    /// Never deliverable (no such domain, null MX).
    Permanent(String),
}

/// The next hops' names for a domain, as the MX lookup gives them.
pub trait MxHosts: Sync {
    /// MX host names best first (the domain itself for an implicit MX).
    fn hosts<'a>(
        &'a self,
        domain: &'a str,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Vec<String>, RouteError>> + Send + 'a>>;
    /// The addresses of one host.
    fn addresses<'a>(
        &'a self,
        host: &'a str,
    ) -> std::pin::Pin<Box<dyn Future<Output = Vec<String>> + Send + 'a>>;
}

/// What outlives settings versions: the MTA-STS cache, the TLS report
/// counts, and the policy of the version in force (built once per version).
pub struct OutboundTls {
    sts: mta_sts::MtaSts,
    pub reports: report::Reports,
    current: std::sync::Mutex<Option<(String, Arc<TlsPolicy>)>>,
}

impl OutboundTls {
    /// The caches; the MTA-STS policies persist in `db` (tree `mta_sts`).
    pub fn new(db: &crate::db::Db) -> OutboundTls {
        OutboundTls {
            sts: mta_sts::MtaSts::new(db),
            reports: report::Reports::new(),
            current: std::sync::Mutex::new(None),
        }
    }

    /// The policy of `config`'s settings version (built on first use).
    pub fn policy(&self, config: &crate::config::Config) -> Result<Arc<TlsPolicy>, String> {
        let key = serde_json::to_string(&(
            &config.outbound_tls,
            &config.delivery.require_tls_domains,
            config.delivery.dns_server,
            config.delivery.timeout_secs,
        ))
        .map_err(|e| e.to_string())?;
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((k, policy)) = current.as_ref()
            && *k == key
        {
            return Ok(policy.clone());
        }
        let policy = Arc::new(TlsPolicy::new(
            &config.outbound_tls,
            &config.delivery.require_tls_domains,
            config.delivery.dns_server,
            std::time::Duration::from_secs(config.delivery.timeout_secs),
        )?);
        *current = Some((key, policy.clone()));
        Ok(policy)
    }

    /// The hops for `domain` reached by MX on `port` under `policy`,
    /// each with its requirement, best first.
    pub async fn route(
        &self,
        policy: &TlsPolicy,
        domain: &str,
        port: u16,
        mx: &dyn MxHosts,
        now_ms: u64,
    ) -> Result<Vec<Hop>, RouteError> {
        policy.route(self, domain, port, mx, now_ms).await
    }
}

/// The outbound TLS policy of one settings version.
pub struct TlsPolicy {
    settings: OutboundTlsSettings,
    require_tls_domains: Vec<String>,
    provider: Arc<CryptoProvider>,
    /// `verify` and MTA-STS: one configuration, the name given per connection.
    webpki_config: Option<Arc<ClientConfig>>,
    dns: SecureDns,
    https: Arc<crate::https::HttpsClient>,
}

impl TlsPolicy {
    /// Builds the policy: the root store (system bundle if enabled, plus
    /// the configured anchors; an anchor file that does not read is an
    /// error), the DNSSEC stub on `dns_server`.
    pub fn new(
        settings: &OutboundTlsSettings,
        require_tls_domains: &[String],
        dns_server: Option<std::net::SocketAddr>,
        timeout: std::time::Duration,
    ) -> Result<TlsPolicy, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let roots = crate::https::root_store(settings.system_roots, &settings.trust_anchors)?;
        let webpki_config = if roots.is_empty() {
            None
        } else {
            let verifier = WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots.clone()),
                provider.clone(),
            )
            .build()
            .map_err(|e| e.to_string())?;
            Some(Arc::new(
                ClientConfig::builder_with_provider(provider.clone())
                    .with_safe_default_protocol_versions()
                    .map_err(|e| e.to_string())?
                    .with_webpki_verifier(verifier)
                    .with_no_client_auth(),
            ))
        };
        let dns = SecureDns::new(dns_server, timeout.min(std::time::Duration::from_secs(10)));
        let https = Arc::new(crate::https::HttpsClient::new(
            roots,
            dns_server,
            mta_sts::FETCH_TIMEOUT,
        )?);
        Ok(TlsPolicy {
            settings: settings.clone(),
            require_tls_domains: require_tls_domains
                .iter()
                .map(|d| d.to_ascii_lowercase())
                .collect(),
            provider,
            webpki_config,
            dns,
            https,
        })
    }

    pub fn https(&self) -> &Arc<crate::https::HttpsClient> {
        &self.https
    }

    pub fn settings(&self) -> &OutboundTlsSettings {
        &self.settings
    }

    pub fn dns(&self) -> &SecureDns {
        &self.dns
    }

    /// The level for `domain`: its own entry (exact, then the nearest
    /// `*.` wildcard), else the default; a `require_tls_domains` entry
    /// lifts it to at least `required`.
    pub fn level_for(&self, domain: &str) -> TlsLevel {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let mut level = self.settings.domain.get(&domain).copied().or_else(|| {
            let mut rest = domain.as_str();
            while let Some((_, parent)) = rest.split_once('.') {
                if let Some(l) = self.settings.domain.get(&format!("*.{parent}")) {
                    return Some(*l);
                }
                rest = parent;
            }
            None
        });
        if level.is_none() && self.require_tls_domains.contains(&domain) {
            level = Some(TlsLevel::Required);
        }
        let level = level.unwrap_or(self.settings.default);
        if self.require_tls_domains.contains(&domain)
            && matches!(level, TlsLevel::None | TlsLevel::Opportunistic)
        {
            return TlsLevel::Required;
        }
        level
    }

    async fn route(
        &self,
        shared: &OutboundTls,
        domain: &str,
        port: u16,
        mx: &dyn MxHosts,
        now_ms: u64,
    ) -> Result<Vec<Hop>, RouteError> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let level = self.level_for(&domain);
        match level {
            TlsLevel::None | TlsLevel::Opportunistic | TlsLevel::Required | TlsLevel::Verify => {
                let requirement = |host: &str| self.simple(level, host);
                self.plain_route(&domain, mx, requirement, report::PolicyRef::none(&domain))
                    .await
            }
            TlsLevel::Dane => match self.dane_route(shared, &domain, port, true).await? {
                DaneRoute::Hops(hops) => Ok(hops),
                DaneRoute::NotPublished(why) => Err(RouteError::Temporary(format!(
                    "TLS policy dane for {domain}: {why}; not sent without DANE"
                ))),
            },
            TlsLevel::MtaSts => self.sts_route(shared, &domain, mx, true, now_ms).await,
            TlsLevel::Auto => match self.dane_route(shared, &domain, port, false).await? {
                DaneRoute::Hops(hops) => Ok(hops),
                DaneRoute::NotPublished(_) => {
                    self.sts_route(shared, &domain, mx, false, now_ms).await
                }
            },
        }
    }

    /// The hop for a smart host or a configured route (`host:port`) under
    /// the level of the recipients' domain: `verify` checks the host's own
    /// name; `dane` its TLSA records; MTA-STS (a policy about the domain's
    /// own MX hosts) and `auto` mean `verify` and opportunistic here.
    pub async fn relay_hop(
        &self,
        domain: &str,
        host: &str,
        port: u16,
    ) -> Result<TlsRequirement, RouteError> {
        match self.level_for(domain) {
            TlsLevel::Dane => {
                let tlsa = self.tlsa(host, port).await?;
                match tlsa {
                    Some(records) => Ok(self.dane_requirement(host, domain, records)),
                    None => Err(RouteError::Temporary(format!(
                        "TLS policy dane for {domain}: the relay {host} publishes no DNSSEC-signed TLSA records"
                    ))),
                }
            }
            TlsLevel::MtaSts => Ok(self.simple(TlsLevel::Verify, host)),
            TlsLevel::Auto => Ok(TlsRequirement::Opportunistic),
            other => Ok(self.simple(other, host)),
        }
    }

    fn simple(&self, level: TlsLevel, host: &str) -> TlsRequirement {
        match level {
            TlsLevel::None => TlsRequirement::Never,
            TlsLevel::Required => TlsRequirement::Encrypted {
                why: Arc::from("policy required"),
            },
            TlsLevel::Verify | TlsLevel::MtaSts => self.webpki(host, level.as_str()),
            _ => TlsRequirement::Opportunistic,
        }
    }

    /// Authenticated by the root store for `host`. Without any root
    /// (system roots off, no anchors) nothing can verify: the requirement
    /// still demands it, so every handshake fails, closed.
    fn webpki(&self, host: &str, policy: &'static str) -> TlsRequirement {
        let config = self.webpki_config.clone().unwrap_or_else(|| {
            Arc::new(
                ClientConfig::builder_with_provider(self.provider.clone())
                    .with_safe_default_protocol_versions()
                    .map(|b| {
                        b.with_root_certificates(rustls::RootCertStore::empty())
                            .with_no_client_auth()
                    })
                    .unwrap_or_else(|_| {
                        ClientConfig::builder()
                            .with_root_certificates(rustls::RootCertStore::empty())
                            .with_no_client_auth()
                    }),
            )
        });
        TlsRequirement::Authenticated(Arc::new(Authenticate {
            config,
            name: host.to_owned(),
            method: AuthMethod::Webpki { policy },
            pool_id: format!("{policy}:{host}"),
        }))
    }

    fn dane_requirement(
        &self,
        host: &str,
        domain: &str,
        records: Vec<dane::Tlsa>,
    ) -> TlsRequirement {
        let usable: Vec<dane::Tlsa> = records.iter().filter(|r| r.usable()).cloned().collect();
        if usable.is_empty() {
            // RFC 7672 §2.2: TLSA records, none usable: TLS without authentication.
            return TlsRequirement::Encrypted {
                why: Arc::from(format!(
                    "dane: {host} has TLSA records, none usable for SMTP"
                )),
            };
        }
        let mut id = format!("dane:{host}");
        for r in &usable {
            id.push_str(&format!(":{}{}{}", r.usage, r.selector, r.matching));
            id.extend(r.data.iter().take(8).map(|b| format!("{b:02x}")));
        }
        let verifier = Arc::new(dane::DaneVerifier::new(
            usable,
            vec![host.to_owned(), domain.to_owned()],
            self.provider.clone(),
        ));
        let config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map(|b| {
                b.dangerous()
                    .with_custom_certificate_verifier(verifier.clone())
                    .with_no_client_auth()
            });
        match config {
            Ok(config) => TlsRequirement::Authenticated(Arc::new(Authenticate {
                config: Arc::new(config),
                name: host.to_owned(),
                method: AuthMethod::Dane(verifier),
                pool_id: id,
            })),
            // Cannot happen with aws-lc-rs; never weaker if it does.
            Err(e) => TlsRequirement::Authenticated(Arc::new(Authenticate {
                config: Arc::new(
                    ClientConfig::builder()
                        .with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth(),
                ),
                name: host.to_owned(),
                method: AuthMethod::Webpki {
                    policy: "dane (no configuration)",
                },
                pool_id: format!("broken:{e}"),
            })),
        }
    }

    async fn plain_route(
        &self,
        domain: &str,
        mx: &dyn MxHosts,
        requirement: impl Fn(&str) -> TlsRequirement,
        policy: report::PolicyRef,
    ) -> Result<Vec<Hop>, RouteError> {
        let mut hops = Vec::new();
        for host in mx.hosts(domain).await? {
            let tls = requirement(&host);
            for address in mx.addresses(&host).await {
                hops.push(Hop {
                    name: host.clone(),
                    address,
                    tls: tls.clone(),
                    policy: policy.clone(),
                });
            }
        }
        Ok(hops)
    }

    /// The TLSA records of `_port._tcp.host`: `Some` when DNSSEC-signed
    /// records exist, `None` when there are none (or no proof), an error
    /// when the lookup failed (a validation failure among them).
    async fn tlsa(&self, host: &str, port: u16) -> Result<Option<Vec<dane::Tlsa>>, RouteError> {
        let name = format!("_{port}._tcp.{}", host.trim_end_matches('.'));
        match self.dns.query(&name, RecordType::TLSA).await {
            Ok(Answer::Records {
                records,
                security: Security::Secure,
                ..
            }) => Ok(Some(
                records
                    .iter()
                    .filter_map(|r| match r {
                        RData::TLSA(t) => Some(dane::Tlsa::from(t)),
                        _ => None,
                    })
                    .collect(),
            )),
            Ok(_) => Ok(None),
            Err(e) => Err(RouteError::Temporary(format!(
                "DANE: TLSA lookup for {name} failed: {e}"
            ))),
        }
    }

    /// DANE per RFC 7672 §2.2: a secure MX RRset, then per host secure
    /// addresses and TLSA records. `mandatory` (level `dane`): hosts
    /// without DANE are skipped; otherwise (`auto`) they get opportunistic
    /// TLS, as long as some host of the domain has DANE.
    async fn dane_route(
        &self,
        shared: &OutboundTls,
        domain: &str,
        port: u16,
        mandatory: bool,
    ) -> Result<DaneRoute, RouteError> {
        let policy = report::PolicyRef::tlsa(domain);
        let answer =
            self.dns.query(domain, RecordType::MX).await.map_err(|e| {
                RouteError::Temporary(format!("MX lookup for {domain} failed: {e}"))
            })?;
        let (hosts, security) = match &answer {
            Answer::Records {
                records, security, ..
            } => {
                let mut mx: Vec<(u16, String)> = records
                    .iter()
                    .filter_map(|r| match r {
                        RData::MX(m) => Some((
                            m.preference,
                            m.exchange
                                .to_ascii()
                                .trim_end_matches('.')
                                .to_ascii_lowercase(),
                        )),
                        _ => None,
                    })
                    .collect();
                mx.sort();
                if mx.len() == 1 && mx.first().is_some_and(|(_, h)| h.is_empty()) {
                    return Err(RouteError::Permanent(
                        "does not accept mail (null MX)".into(),
                    ));
                }
                (
                    mx.into_iter()
                        .map(|(_, h)| h)
                        .filter(|h| !h.is_empty())
                        .collect::<Vec<_>>(),
                    *security,
                )
            }
            Answer::Nothing { nx: true, .. } => {
                return Err(RouteError::Permanent("domain does not exist".into()));
            }
            Answer::Nothing { security, .. } => (vec![domain.to_owned()], *security),
        };
        if security != Security::Secure {
            return Ok(DaneRoute::NotPublished(format!(
                "the MX records of {domain} are not DNSSEC-signed{}",
                if self.dns.trusts_ad() {
                    ""
                } else {
                    " (or the resolver is not on loopback: its AD bit is not trusted)"
                }
            )));
        }
        let mut hops = Vec::new();
        let mut skipped = Vec::new();
        let mut any_dane = false;
        for host in hosts {
            let addresses = match self.secure_addresses(&host).await {
                Ok((addrs, Security::Secure)) => addrs,
                Ok((addrs, Security::Insecure)) => {
                    if mandatory {
                        skipped.push(format!("{host}: address records not DNSSEC-signed"));
                    } else {
                        hops.extend(addrs.into_iter().map(|address| Hop {
                            name: host.clone(),
                            address,
                            tls: TlsRequirement::Opportunistic,
                            policy: policy.clone(),
                        }));
                    }
                    continue;
                }
                Err(e) => {
                    skipped.push(format!("{host}: {e}"));
                    continue;
                }
            };
            let tls = match self.tlsa(&host, port).await {
                Ok(Some(records)) => {
                    any_dane = true;
                    self.dane_requirement(&host, domain, records)
                }
                Ok(None) if mandatory => {
                    skipped.push(format!("{host}: no DNSSEC-signed TLSA records"));
                    continue;
                }
                Ok(None) => TlsRequirement::Opportunistic,
                Err(RouteError::Temporary(e) | RouteError::Permanent(e)) => {
                    // A TLSA lookup that fails (bogus, SERVFAIL) makes the
                    // host unusable: never a downgrade (RFC 7672 §2.2).
                    any_dane = true;
                    skipped.push(format!("{host}: {e}"));
                    continue;
                }
            };
            hops.extend(addresses.into_iter().map(|address| Hop {
                name: host.clone(),
                address,
                tls: tls.clone(),
                policy: policy.clone(),
            }));
        }
        if !mandatory && !any_dane {
            return Ok(DaneRoute::NotPublished(format!(
                "no MX host of {domain} publishes TLSA records"
            )));
        }
        if hops.is_empty() {
            let why = if skipped.is_empty() {
                "no usable host".to_owned()
            } else {
                skipped.join("; ")
            };
            shared
                .reports
                .failure(&policy, "", "", report::Failure::Dnssec, &why);
            return Err(RouteError::Temporary(format!(
                "TLS policy {} for {domain}: {why}; nothing sent",
                if mandatory {
                    "dane"
                } else {
                    "auto (DANE published)"
                }
            )));
        }
        Ok(DaneRoute::Hops(hops))
    }

    async fn secure_addresses(&self, host: &str) -> Result<(Vec<String>, Security), String> {
        if host.parse::<std::net::IpAddr>().is_ok() {
            return Ok((vec![host.to_owned()], Security::Insecure));
        }
        let mut out = Vec::new();
        let mut security = Security::Secure;
        let mut found = false;
        for rtype in [RecordType::A, RecordType::AAAA] {
            let answer = self
                .dns
                .query(host, rtype)
                .await
                .map_err(|e| format!("address lookup failed: {e}"))?;
            if let Answer::Records {
                records,
                security: s,
                ..
            } = &answer
            {
                found = true;
                security = security.min(*s);
                out.extend(records.iter().filter_map(|r| match r {
                    RData::A(a) => Some(a.0.to_string()),
                    RData::AAAA(a) => Some(a.0.to_string()),
                    _ => None,
                }));
            }
        }
        if !found {
            return Err("no address records".into());
        }
        Ok((out, security))
    }

    /// MTA-STS: the policy decides. `mandatory` (level `mta-sts`): a
    /// domain without a policy is not delivered to; otherwise (`auto`) it
    /// gets opportunistic TLS.
    async fn sts_route(
        &self,
        shared: &OutboundTls,
        domain: &str,
        mx: &dyn MxHosts,
        mandatory: bool,
        now_ms: u64,
    ) -> Result<Vec<Hop>, RouteError> {
        let policy_ref = report::PolicyRef::sts(domain);
        let cached = match shared
            .sts
            .lookup(domain, now_ms, &self.https, &self.dns)
            .await
        {
            mta_sts::Lookup::Policy(c) => c,
            mta_sts::Lookup::None if mandatory => {
                return Err(RouteError::Temporary(format!(
                    "TLS policy mta-sts for {domain}: the domain publishes no MTA-STS policy; not sent"
                )));
            }
            mta_sts::Lookup::None => {
                return self
                    .plain_route(
                        domain,
                        mx,
                        |_| TlsRequirement::Opportunistic,
                        report::PolicyRef::none(domain),
                    )
                    .await;
            }
            mta_sts::Lookup::Failed { result_type, why } => {
                shared.reports.failure(
                    &policy_ref,
                    "",
                    "",
                    report::Failure::Sts(result_type),
                    &why,
                );
                return Err(RouteError::Temporary(format!(
                    "MTA-STS policy of {domain} could not be fetched: {why}; not sent until it can"
                )));
            }
        };
        let policy_ref = policy_ref.with_sts(&cached.policy);
        match cached.policy.mode {
            mta_sts::Mode::Enforce => {
                let hosts = mx.hosts(domain).await?;
                let allowed: Vec<String> = hosts
                    .iter()
                    .filter(|h| cached.policy.allows(h))
                    .cloned()
                    .collect();
                if allowed.is_empty() {
                    let why = format!(
                        "none of the MX hosts of {domain} ({}) is allowed by its MTA-STS policy ({})",
                        hosts.join(", "),
                        cached.policy.mx.join(", ")
                    );
                    shared.reports.failure(
                        &policy_ref,
                        "",
                        "",
                        report::Failure::Sts("validation-failure"),
                        &why,
                    );
                    return Err(RouteError::Temporary(format!("{why}; not sent")));
                }
                let mut hops = Vec::new();
                for host in allowed {
                    let tls = self.webpki(&host, "mta-sts");
                    for address in mx.addresses(&host).await {
                        hops.push(Hop {
                            name: host.clone(),
                            address,
                            tls: tls.clone(),
                            policy: policy_ref.clone(),
                        });
                    }
                }
                Ok(hops)
            }
            mta_sts::Mode::Testing | mta_sts::Mode::None => {
                self.plain_route(domain, mx, |_| TlsRequirement::Opportunistic, policy_ref)
                    .await
            }
        }
    }
}

/// The delivery's MX resolver as the policy's source of host names.
impl MxHosts for crate::delivery::mx::MxResolver {
    fn hosts<'a>(
        &'a self,
        domain: &'a str,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Vec<String>, RouteError>> + Send + 'a>> {
        Box::pin(async move {
            self.lookup(domain).await.map_err(|e| match e {
                crate::delivery::mx::MxError::Temporary(e) => {
                    RouteError::Temporary(format!("DNS lookup for {domain} failed: {e}"))
                }
                crate::delivery::mx::MxError::Permanent(e) => RouteError::Permanent(e),
            })
        })
    }

    fn addresses<'a>(
        &'a self,
        host: &'a str,
    ) -> std::pin::Pin<Box<dyn Future<Output = Vec<String>> + Send + 'a>> {
        Box::pin(async move { self.connect_addresses(&[host.to_owned()]).await })
    }
}

enum DaneRoute {
    Hops(Vec<Hop>),
    /// The domain has no DANE (an unsigned MX RRset, no TLSA records).
    NotPublished(String),
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn policy(settings: OutboundTlsSettings, require: &[&str]) -> TlsPolicy {
        TlsPolicy::new(
            &settings,
            &require.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            Some("127.0.0.1:53".parse().unwrap()),
            std::time::Duration::from_secs(1),
        )
        .unwrap()
    }

    #[test]
    fn levels_per_domain_wildcards_and_require_tls() {
        let mut s = OutboundTlsSettings {
            system_roots: false,
            ..Default::default()
        };
        s.domain.insert("bank.example".into(), TlsLevel::Verify);
        s.domain.insert("*.partner.example".into(), TlsLevel::Dane);
        s.domain.insert("old.example".into(), TlsLevel::None);
        let p = policy(s, &["old.example", "strict.example"]);
        assert_eq!(p.level_for("Bank.Example."), TlsLevel::Verify);
        assert_eq!(p.level_for("mx.eu.partner.example"), TlsLevel::Dane);
        assert_eq!(p.level_for("partner.example"), TlsLevel::Opportunistic);
        assert_eq!(p.level_for("strict.example"), TlsLevel::Required);
        // require_tls_domains is never weakened by a per-domain level.
        assert_eq!(p.level_for("old.example"), TlsLevel::Required);
        assert!(!p.simple(TlsLevel::Verify, "mx.bank.example").allows_clear());
        assert!(p.simple(TlsLevel::Opportunistic, "x").allows_clear());
    }
}
