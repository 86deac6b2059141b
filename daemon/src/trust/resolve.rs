//! Which key encrypts a recipient's copy, under the trust model: the
//! directory's keys that the decision accepts (its level, or the pinned
//! keys), S/MIME certificates checked against the anchors and their CRLs
//! at the time of use (a revoked one is never used), then key discovery
//! when the directory has none; a recipient whose lookup runs, or whose
//! key change waits for review, waits.
//!
//! Trusts: the directory, the review queue, what discovery bound to the
//! address; anchors and CRLs through `smime_trust`.

use std::sync::Arc;

use sealgate_smime::trust::{PathVerdict, Purpose};

use crate::config::Config;
use crate::directory::{Directory, Entry, Kind};
use crate::discovery::{Discovered, Status};
use crate::pipeline::resolve::Method;
use crate::policy::{Action, Decision};
use crate::reason::Reason;

use super::services::Services;
use super::{Level, Requirement};

/// What resolution found for a recipient.
#[derive(Debug, Clone)]
pub enum Found {
    /// Encrypt with this.
    Method(Method),
    /// Wait: a lookup runs, a revocation check is pending, or a key
    /// change waits for review (the reason says which).
    Wait(Reason),
    /// Nothing the decision accepts; why, in words.
    None(String),
}

/// What resolution reads.
pub struct Resolver<'a> {
    pub directory: &'a Directory,
    pub services: &'a Services,
    pub config: &'a Config,
    pub methods: &'a [Kind],
}

/// A directory entry with the level it has at the time of use.
struct Usable {
    entry: Entry,
    level: Level,
}

impl Resolver<'_> {
    /// The method for `address` under `decision` at `now_ms`. A storage
    /// error is an `Err` (defer: never "no key").
    pub fn method_for(
        &self,
        address: &str,
        decision: &Decision,
        now_ms: u64,
    ) -> Result<Found, Reason> {
        let address = address.to_ascii_lowercase();
        let domain = address
            .rsplit_once('@')
            .map(|(_, d)| d.to_owned())
            .unwrap_or_default();
        let required = decision.action == Action::EncryptRequired;
        let requirement = Requirement::for_decision(required, decision.required_trust);
        let storage =
            |e: &dyn std::fmt::Display| Reason::local(format!("key directory not readable: {e}"));
        let mut revocation_pending = None;
        let picked = self.pick(
            &address,
            &domain,
            decision,
            requirement,
            now_ms,
            &mut revocation_pending,
        )?;
        if required {
            let mut waiting = self
                .services
                .reviews
                .for_address(&address)
                .map_err(|e| storage(&e))?;
            waiting.extend(
                self.services
                    .reviews
                    .for_address(&format!("@{domain}"))
                    .map_err(|e| storage(&e))?,
            );
            // A change that could replace the key in use makes the mail
            // wait; one weaker than the key in use does not (else anyone
            // could stall mail to an address with a strong key).
            if let Some(p) = waiting.iter().find(|p| {
                picked
                    .as_ref()
                    .is_none_or(|m| p.candidate.trust >= m.entry().trust)
            }) {
                return Ok(Found::Wait(Reason::KeyReview {
                    detail: format!(
                        "a different key for {} ({}, {}) turned up and waits for review: {}",
                        p.address,
                        super::short(&p.candidate.fingerprint),
                        p.candidate.trust,
                        p.why
                    ),
                }));
            }
        }
        if let Some(method) = picked {
            return Ok(Found::Method(method));
        }
        let mut looked = false;
        if let Some(discovery) = self.discovery() {
            looked = true;
            let mut pending = Vec::new();
            let mut imported = false;
            for (candidate, partner) in discovery.candidates(&address) {
                match discovery.status(&candidate, partner.as_deref()) {
                    Status::Found(found) => {
                        imported |= self.import(&found, now_ms)?;
                    }
                    Status::Pending => pending.push(candidate),
                    Status::Missing | Status::Failed(_) => {}
                }
            }
            if imported
                && let Some(method) = self.pick(
                    &address,
                    &domain,
                    decision,
                    requirement,
                    now_ms,
                    &mut revocation_pending,
                )?
            {
                return Ok(Found::Method(method));
            }
            if !pending.is_empty() {
                let sources: Vec<&str> = discovery
                    .settings()
                    .order
                    .iter()
                    .map(|s| crate::discovery::source_name(*s))
                    .collect();
                return Ok(Found::Wait(Reason::KeyLookup {
                    detail: format!(
                        "looking up a key for {} ({})",
                        pending.join(", "),
                        sources.join(", ")
                    ),
                }));
            }
        }
        if let Some(why) = revocation_pending
            && required
        {
            return Ok(Found::Wait(Reason::KeyLookup { detail: why }));
        }
        Ok(Found::None(self.why_none(
            &address,
            &domain,
            requirement,
            decision,
            now_ms,
            looked,
        )?))
    }

    fn discovery(&self) -> Option<Arc<crate::discovery::Discovery>> {
        match self.services.discovery(self.config) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "key discovery not available");
                None
            }
        }
    }

    /// The best usable entry the decision accepts: the recipient's own
    /// before its domain's gateway, in the method order, the highest
    /// level, then the newest.
    fn pick(
        &self,
        address: &str,
        domain: &str,
        decision: &Decision,
        requirement: Requirement,
        now_ms: u64,
        revocation_pending: &mut Option<String>,
    ) -> Result<Option<Method>, Reason> {
        let pins: Vec<String> = decision
            .pinned_keys
            .iter()
            .map(|p| p.to_ascii_lowercase())
            .collect();
        for key in [address.to_owned(), format!("@{domain}")] {
            let entries = self
                .directory
                .lookup(&key)
                .map_err(|e| Reason::local(format!("key directory not readable: {e}")))?;
            let usable: Vec<Usable> = entries
                .into_iter()
                .filter(|e| e.usable(now_ms))
                .filter_map(|e| self.at_use(e, revocation_pending))
                .filter(|u| {
                    if pins.is_empty() {
                        requirement.allows(u.level)
                    } else {
                        pins.iter()
                            .any(|p| u.entry.fingerprint.starts_with(p.as_str()))
                    }
                })
                .collect();
            for kind in self.methods {
                if let Some(best) = usable
                    .iter()
                    .filter(|u| u.entry.kind == *kind)
                    .max_by_key(|u| (u.level, u.entry.not_before_ms))
                {
                    let mut entry = best.entry.clone();
                    entry.trust = best.level;
                    return Ok(Some(match kind {
                        Kind::Smime => Method::Smime(entry),
                        Kind::Openpgp => Method::Openpgp(entry),
                    }));
                }
            }
        }
        Ok(None)
    }

    /// The entry's level now: an S/MIME certificate is checked against the
    /// anchors and CRLs (revoked: never used; anchored: at least
    /// `anchored`; an anchoring that no longer holds counts for nothing
    /// more than taken from mail).
    fn at_use(&self, entry: Entry, revocation_pending: &mut Option<String>) -> Option<Usable> {
        if entry.kind != Kind::Smime {
            let level = entry.trust;
            return Some(Usable { entry, level });
        }
        let Ok(smime) = self.services.smime(self.config) else {
            let level = entry.trust;
            return Some(Usable { entry, level });
        };
        if smime.anchors().is_empty() {
            let level = match entry.trust {
                Level::Anchored => Level::Harvested,
                other => other,
            };
            return Some(Usable { entry, level });
        }
        let Ok(cert) = sealgate_smime::Certificate::from_der(&entry.data) else {
            return None;
        };
        let pool: Vec<sealgate_smime::Certificate> = entry
            .issuers
            .iter()
            .filter_map(|d| sealgate_smime::Certificate::from_der(d).ok())
            .collect();
        let level = match smime.check(&cert, &pool, Purpose::Encrypt).verdict {
            PathVerdict::Revoked { .. } => {
                tracing::info!(fingerprint = %entry.fingerprint, "a revoked certificate is not used");
                return None;
            }
            PathVerdict::Anchored { .. } => entry.trust.max(Level::Anchored),
            PathVerdict::RevocationUnknown(why) => {
                if revocation_pending.is_none() {
                    *revocation_pending = Some(format!(
                        "checking the revocation of certificate {}: {why}",
                        super::short(&entry.fingerprint)
                    ));
                }
                match entry.trust {
                    // Anchored means "revocation checked": not until it is.
                    Level::Anchored => Level::Harvested,
                    other => other,
                }
            }
            PathVerdict::Untrusted(_) => match entry.trust {
                Level::Anchored => Level::Harvested,
                other => other,
            },
        };
        Some(Usable { entry, level })
    }

    /// Stores what discovery found (through the trust model's judgement);
    /// whether anything was stored.
    fn import(&self, found: &[Discovered], now_ms: u64) -> Result<bool, Reason> {
        let storage =
            |e: &dyn std::fmt::Display| Reason::local(format!("key directory not writable: {e}"));
        let mut entries = Vec::new();
        for item in found {
            entries.extend(discovered_entries(
                item,
                self.services.smime(self.config).ok().as_deref(),
                now_ms,
            ));
        }
        if entries.is_empty() {
            return Ok(false);
        }
        let policy_pins = |_: &str| Vec::new();
        let offered = super::offer::offer(
            self.directory,
            &self.services.reviews,
            entries,
            &policy_pins,
            None,
            now_ms,
        )
        .map_err(|e| storage(&e))?;
        Ok(!offered.stored.is_empty())
    }

    /// Why nothing is accepted, in words for the hold reason.
    fn why_none(
        &self,
        address: &str,
        domain: &str,
        requirement: Requirement,
        decision: &Decision,
        now_ms: u64,
        looked: bool,
    ) -> Result<String, Reason> {
        let mut best: Option<Level> = None;
        for key in [address.to_owned(), format!("@{domain}")] {
            for e in self
                .directory
                .lookup(&key)
                .map_err(|e| Reason::local(format!("key directory not readable: {e}")))?
            {
                if e.usable(now_ms) && self.methods.contains(&e.kind) {
                    best = best.max(Some(e.trust));
                }
            }
        }
        let searched = if looked {
            " (key discovery found none)"
        } else {
            ""
        };
        Ok(match best {
            Some(_) if !decision.pinned_keys.is_empty() => format!(
                "{address} is pinned to other keys ({})",
                decision.pinned_keys.join(", ")
            ),
            Some(level) if !requirement.allows(level) => {
                if level.is_harvested() {
                    format!(
                        "the only key for {address} was taken from mail (trust on first use), \
                         trusted as {level}, which encrypt-required mail does not accept \
                         (it needs at least {})",
                        requirement.minimum
                    )
                } else {
                    format!(
                        "the only key for {address} is trusted as {level} ({}), below the {} this mail needs",
                        level.explain(),
                        requirement.minimum
                    )
                }
            }
            _ => format!("no certificate or key for {address} yet{searched}"),
        })
    }
}

/// What discovery found, as directory entries with the level of its
/// source (an S/MIME certificate that chains to an anchor is `anchored`).
pub fn discovered_entries(
    item: &Discovered,
    smime: Option<&crate::smime_trust::SmimeTrust>,
    now_ms: u64,
) -> Vec<Entry> {
    use sealgate_api::settings::trust::DiscoverySource;
    let mut level = match item.source {
        DiscoverySource::Ldap => Level::Ldap,
        DiscoverySource::Wkd => Level::Wkd,
        DiscoverySource::Dane => Level::Dane,
    };
    let source = format!(
        "discovered:{} {}",
        crate::discovery::source_name(item.source),
        item.origin
    );
    let parsed = match item.kind {
        Kind::Smime => {
            if let (Some(trust), Ok(cert)) =
                (smime, sealgate_smime::Certificate::from_der(&item.data))
                && matches!(
                    trust.check(&cert, &[], Purpose::Encrypt).verdict,
                    PathVerdict::Anchored { .. }
                )
            {
                level = level.max(Level::Anchored);
            }
            crate::directory::parse_x509(&item.data, item.domain.as_deref(), level, &source, now_ms)
        }
        Kind::Openpgp => {
            crate::directory::parse_openpgp(&item.data, level, &source, now_ms).map(|entries| {
                entries
                    .into_iter()
                    .map(|mut e| {
                        if let Some(d) = &item.domain {
                            e.domain = Some(d.clone());
                            e.addresses.clear();
                        }
                        e
                    })
                    .collect()
            })
        }
    };
    parsed.unwrap_or_else(|e| {
        tracing::info!(origin = %item.origin, error = %e, "discovered key not usable");
        Vec::new()
    })
}

/// The addresses of recipients held while a lookup (or a revocation
/// check) runs: a finished CRL fetch wakes them.
pub fn waiting_on_lookups(queue: &crate::queue::Queue) -> Vec<String> {
    let Ok(entries) = queue.state().all() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries {
        for r in &entry.recipients {
            if let crate::queue::state::RecipientStatus::Held {
                reason: Reason::KeyLookup { .. },
                ..
            } = &r.status
            {
                out.push(r.recipient.address.to_string().to_ascii_lowercase());
            }
        }
    }
    out.sort();
    out.dedup();
    out
}
