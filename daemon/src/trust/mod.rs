//! The trust model: how much each key in the directory is believed, what
//! that allows, and what happens when a different key turns up for an
//! address that already has one.
//!
//! Levels, strongest first ([`Level`]): imported by an administrator;
//! chained to a configured S/MIME trust anchor with revocation checked;
//! published by the recipient's domain over DNSSEC (DANE SMIMEA or
//! OPENPGPKEY); published by the domain's Web Key Directory over verified
//! HTTPS; from the corporate LDAP directory; provided by a recipient
//! authenticated in the portal; harvested from mail whose `From` domain
//! passed DKIM (aligned); harvested from mail without that (trust on
//! first use: anyone on the path could have sent it).
//!
//! What they allow ([`Requirement`]): any level serves
//! `encrypt-if-possible` (better than clear); `encrypt-required` (and
//! releasing held mail) needs at least the domain's `required_trust`
//! (default `portal`: an administrator's, anchored, DANE, WKD or LDAP key,
//! or one from the portal). A pin (per address or domain) overrides both:
//! only the pinned keys are used there.
//!
//! A key change ([`judge_change`]) never silently replaces a key of
//! higher trust: a different key from a weaker source, or any different
//! key taken from mail, goes to the review queue (an administrator
//! accepts or rejects it, with both keys side by side) unless the old key
//! vouches for it (OpenPGP: the mail was signed by the old key, or the
//! new certificate carries the old key's certification) or it is stronger
//! on its own (an S/MIME certificate that chains to an anchor). Mail for
//! an address whose key change waits for review waits too.
//!
//! Pure: decisions over values, no storage. Trusts its inputs.

pub mod offer;
pub mod resolve;
pub mod review;
pub mod services;
pub mod settings;

/// How a key came to the directory, weakest first: the directory's trust
/// level (`sealgate_api::ops::directory::Trust`; "manual" is the
/// administrator's level).
pub use sealgate_api::ops::directory::Trust as Level;

/// The least a key must be trusted for mail that must be encrypted, by
/// default: an administrator's, anchored, DANE, WKD or LDAP key, or the portal.
pub const DEFAULT_REQUIRED: Level = Level::Portal;

/// What a decision needs of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requirement {
    /// The least level usable at all (encrypt-if-possible: any).
    pub minimum: Level,
}

impl Requirement {
    /// For a recipient: `required` (encrypt-required, or releasing held
    /// mail) needs `required_trust`; otherwise any key will do.
    pub fn for_decision(required: bool, required_trust: Level) -> Requirement {
        Requirement {
            minimum: if required {
                required_trust
            } else {
                Level::Harvested
            },
        }
    }

    pub fn allows(&self, level: Level) -> bool {
        level >= self.minimum
    }
}

/// A key already in the directory for the address (or domain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub fingerprint: String,
    pub level: Level,
    /// Usable now (valid, may encrypt, not revoked).
    pub usable: bool,
}

/// A key that just turned up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub fingerprint: String,
    pub level: Level,
    /// The old key vouches for it (OpenPGP: signed the mail or certified
    /// the new certificate), with which old key.
    pub vouched_by: Option<String>,
}

/// What to do with a candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The same key again: refresh what is known (last seen, a stronger level).
    Refresh,
    /// Nothing usable of its kind for the address yet: take it.
    New,
    /// Take it: it is at least as strong as what is there, or the old key
    /// vouched for it; why.
    Accept(String),
    /// Keep it aside for an administrator; why.
    Review(String),
    /// The address (or domain) is pinned to other keys: keep it aside; why.
    Pinned(String),
}

/// Decides what a candidate key for an address does to the keys of the
/// same kind already there (`known`), given the administrator's pins for
/// it (fingerprints; empty: not pinned).
pub fn judge_change(candidate: &Candidate, known: &[Known], pins: &[String]) -> Change {
    let fp = candidate.fingerprint.to_ascii_lowercase();
    if known
        .iter()
        .any(|k| k.fingerprint.eq_ignore_ascii_case(&fp))
    {
        return Change::Refresh;
    }
    if !pins.is_empty() {
        return if pins.iter().any(|p| p.eq_ignore_ascii_case(&fp)) {
            Change::Accept("it is the pinned key".into())
        } else {
            Change::Pinned("the address is pinned to another key".into())
        };
    }
    let usable: Vec<&Known> = known.iter().filter(|k| k.usable).collect();
    let Some(best) = usable.iter().map(|k| k.level).max() else {
        return Change::New;
    };
    if let Some(old) = &candidate.vouched_by
        && usable
            .iter()
            .any(|k| k.fingerprint.eq_ignore_ascii_case(old))
    {
        return Change::Accept(format!("the current key {} vouches for it", short(old)));
    }
    if candidate.level.is_harvested() {
        return Change::Review(format!(
            "a different key taken from mail ({}) for an address that has a {} key",
            candidate.level, best
        ));
    }
    if candidate.level < best {
        return Change::Review(format!(
            "a different key from a weaker source ({} below {})",
            candidate.level, best
        ));
    }
    Change::Accept(format!(
        "{} is at least as strong as the current {} key",
        candidate.level, best
    ))
}

/// The first 16 hex digits, for messages.
pub fn short(fingerprint: &str) -> &str {
    fingerprint.get(..16).unwrap_or(fingerprint)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(fp: &str, level: Level) -> Known {
        Known {
            fingerprint: fp.into(),
            level,
            usable: true,
        }
    }

    fn candidate(fp: &str, level: Level) -> Candidate {
        Candidate {
            fingerprint: fp.into(),
            level,
            vouched_by: None,
        }
    }

    #[test]
    fn levels_order_and_names() {
        assert!(Level::Manual > Level::Anchored);
        assert!(Level::Anchored > Level::Dane);
        assert!(Level::Dane > Level::Wkd);
        assert!(Level::Wkd > Level::Ldap);
        assert!(Level::Ldap > Level::Portal);
        assert!(Level::Portal > Level::HarvestedDkim);
        assert!(Level::HarvestedDkim > Level::Harvested);
        for l in Level::ALL {
            assert_eq!(Level::parse(l.as_str()), Some(l));
        }
        // Entries stored before the levels existed still read.
        let old: Level = serde_json::from_str("\"manual\"").unwrap_or(Level::Harvested);
        assert_eq!(old, Level::Manual);
        let old: Level = serde_json::from_str("\"verified\"").unwrap_or(Level::Harvested);
        assert_eq!(old, Level::Anchored);
        assert_eq!(Level::parse("Harvested-DKIM"), Some(Level::HarvestedDkim));
    }

    #[test]
    fn what_levels_allow() {
        let required = Requirement::for_decision(true, DEFAULT_REQUIRED);
        assert!(required.allows(Level::Ldap) && required.allows(Level::Portal));
        assert!(!required.allows(Level::HarvestedDkim) && !required.allows(Level::Harvested));
        let tofu_ok = Requirement::for_decision(true, Level::HarvestedDkim);
        assert!(tofu_ok.allows(Level::HarvestedDkim) && !tofu_ok.allows(Level::Harvested));
        let possible = Requirement::for_decision(false, DEFAULT_REQUIRED);
        assert!(possible.allows(Level::Harvested));
    }

    /// One row: its name, what is there, what comes, the pins, what must happen.
    type Case = (
        &'static str,
        Vec<Known>,
        Candidate,
        Vec<String>,
        fn(&Change) -> bool,
    );

    #[test]
    fn key_changes() {
        use Change::*;
        let review = |c: &Change| matches!(c, Review(_));
        let accept = |c: &Change| matches!(c, Accept(_));
        let cases: Vec<Case> = vec![
            (
                "first key",
                vec![],
                candidate("aa", Level::Harvested),
                vec![],
                |c| *c == New,
            ),
            (
                "same key again",
                vec![known("AA", Level::Harvested)],
                candidate("aa", Level::Dane),
                vec![],
                |c| *c == Refresh,
            ),
            (
                "harvested over harvested",
                vec![known("aa", Level::Harvested)],
                candidate("bb", Level::Harvested),
                vec![],
                review,
            ),
            (
                "harvested with DKIM over admin",
                vec![known("aa", Level::Manual)],
                candidate("bb", Level::HarvestedDkim),
                vec![],
                review,
            ),
            (
                "WKD over harvested",
                vec![known("aa", Level::Harvested)],
                candidate("bb", Level::Wkd),
                vec![],
                accept,
            ),
            (
                "LDAP under admin",
                vec![known("aa", Level::Manual)],
                candidate("bb", Level::Ldap),
                vec![],
                review,
            ),
            (
                "WKD rotated",
                vec![known("aa", Level::Wkd)],
                candidate("bb", Level::Wkd),
                vec![],
                accept,
            ),
            (
                "anchored over harvested",
                vec![known("aa", Level::Harvested)],
                candidate("bb", Level::Anchored),
                vec![],
                accept,
            ),
            (
                "pinned elsewhere",
                vec![known("aa", Level::Manual)],
                candidate("bb", Level::Manual),
                vec!["aa".into()],
                |c| matches!(c, Pinned(_)),
            ),
            (
                "the pinned key itself",
                vec![known("aa", Level::Harvested)],
                candidate("bb", Level::Harvested),
                vec!["BB".into()],
                accept,
            ),
            (
                "old key unusable now",
                vec![Known {
                    usable: false,
                    ..known("aa", Level::Manual)
                }],
                candidate("bb", Level::Harvested),
                vec![],
                |c| *c == New,
            ),
        ];
        for (name, known, cand, pins, ok) in cases {
            let got = judge_change(&cand, &known, &pins);
            assert!(ok(&got), "{name}: {got:?}");
        }
        // Vouched for by the old key: accepted even from mail.
        let vouched = Candidate {
            vouched_by: Some("aa".into()),
            ..candidate("bb", Level::Harvested)
        };
        assert!(matches!(
            judge_change(&vouched, &[known("aa", Level::Manual)], &[]),
            Accept(_)
        ));
        // ... but not by a key that is not the current one.
        let stranger = Candidate {
            vouched_by: Some("cc".into()),
            ..candidate("bb", Level::Harvested)
        };
        assert!(matches!(
            judge_change(&stranger, &[known("aa", Level::Manual)], &[]),
            Review(_)
        ));
    }
}
