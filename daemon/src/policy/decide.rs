//! The decision: message facts + one recipient + the policy → what to do and
//! why. A pure function: no I/O, no clock, the same answer every time, so it
//! is tested from a table of cases and `sealgate policy explain` shows
//! exactly what the pipeline will do.
//!
//! Order of evaluation:
//! 1. the rules, in order; the first whose conditions all hold decides the
//!    action (and may ask for a signature);
//! 2. otherwise the recipient's settings: address, then domain, then global,
//!    then the default for the direction;
//! 3. two guards that no rule can switch off: a message the sender encrypted
//!    for the gateway ("click-to-encrypt") requires encryption for every
//!    external recipient, and in boundary-only mode an internal recipient is
//!    never given an encrypting action.
//!
//! Trusts: the facts (see `facts`), and a policy checked by `Policy::compile`.

use serde::Serialize;

use super::facts::{Direction, MessageFacts, Recipient};
use super::glob;
use super::rules::{Action, Policy, Rule, Settings};
use sealgate_api::settings::policy::MethodName;

/// What decided: a rule, or the recipient's settings at some level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Source {
    /// Rule number `index` (1-based, in configuration order).
    Rule { index: usize, name: String },
    /// The settings of the recipient's address.
    Address { pattern: String },
    /// The settings of the recipient's domain.
    Domain { pattern: String },
    /// The global settings.
    Global,
    /// The default for the direction.
    Default,
}

/// The outcome for one recipient, with its reasons kept as data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub recipient: String,
    pub direction: Direction,
    pub action: Action,
    /// Sign what goes out.
    pub sign: bool,
    /// Replace the visible subject by a neutral one.
    pub neutral_subject: bool,
    /// The subject keyword that matched and is to be removed, if any.
    pub strip_keyword: Option<String>,
    /// The least trust level a key needs for encrypt-required mail
    /// ([`Settings::required_trust`], or `trust_harvested_keys`).
    pub required_trust: crate::directory::Trust,
    /// The keys this recipient is pinned to (empty: not pinned).
    pub pinned_keys: Vec<String>,
    /// Signed mail to this recipient carries the gateway's Autocrypt key.
    pub autocrypt: bool,
    /// The delivery methods for this recipient, in order (address →
    /// domain → global settings → `policy.methods`).
    pub methods: Vec<MethodName>,
    pub source: Source,
    /// Why, in words: the conditions that held and any guard that changed the action.
    pub because: Vec<String>,
}

impl Decision {
    /// What decided, in words: `rule 2 "secure"`, `settings of domain x`.
    pub fn source_text(&self) -> String {
        match &self.source {
            Source::Rule { index, name } => format!("rule {index} \"{name}\""),
            Source::Address { pattern } => format!("settings of address {pattern}"),
            Source::Domain { pattern } => format!("settings of domain {pattern}"),
            Source::Global => "global settings".to_owned(),
            Source::Default => format!("default for {} mail", self.direction.as_str()),
        }
    }

    /// One line for people: `bob@x.org: encrypt-required (rule 2 "secure"): subject contains "[secure]"`.
    pub fn explain(&self) -> String {
        let source = self.source_text();
        let mut line = format!(
            "{}: {}{} ({source})",
            self.recipient,
            self.action.as_str(),
            if self.sign { " + sign" } else { "" }
        );
        if !self.because.is_empty() {
            line.push_str(": ");
            line.push_str(&self.because.join("; "));
        }
        line
    }
}

/// Decides for one recipient.
pub fn decide(policy: &Policy, facts: &MessageFacts, recipient: &Recipient) -> Decision {
    let direction = Direction::of(facts.sender_internal, recipient.internal);
    let config = &policy.config;
    let (address_settings, domain_settings) = settings_for(policy, recipient);
    let inherited = |get: fn(&Settings) -> Option<bool>| {
        address_settings
            .and_then(|(_, s)| get(s))
            .or_else(|| domain_settings.and_then(|(_, s)| get(s)))
            .or_else(|| get(&config.settings))
    };

    let mut because = Vec::new();
    let mut strip_keyword = None;
    let matched = config.rule.iter().enumerate().find_map(|(i, rule)| {
        let regexes = policy.regexes.get(i).map_or(&[][..], Vec::as_slice);
        let mut why = Vec::new();
        let mut keyword = None;
        rule_matches(
            rule,
            regexes,
            facts,
            recipient,
            direction,
            &mut why,
            &mut keyword,
        )
        .then_some((i, rule, why, keyword))
    });
    let (action, source, rule_sign) = match matched {
        Some((i, rule, why, keyword)) => {
            because = why;
            strip_keyword = keyword.filter(|_| config.strip_subject_keyword);
            (
                rule.action.unwrap_or(Action::Clear),
                Source::Rule {
                    index: i + 1,
                    name: rule.name.clone(),
                },
                rule.sign,
            )
        }
        None => {
            if let Some((pattern, action)) =
                address_settings.and_then(|(p, s)| s.action.map(|a| (p, a)))
            {
                (
                    action,
                    Source::Address {
                        pattern: pattern.to_owned(),
                    },
                    None,
                )
            } else if let Some((pattern, action)) =
                domain_settings.and_then(|(p, s)| s.action.map(|a| (p, a)))
            {
                (
                    action,
                    Source::Domain {
                        pattern: pattern.to_owned(),
                    },
                    None,
                )
            } else if let Some(action) = config.settings.action {
                (action, Source::Global, None)
            } else {
                (
                    config.default.for_direction(direction),
                    Source::Default,
                    None,
                )
            }
        }
    };

    let action = if action == Action::Quarantine && recipient.released {
        because.push("released from quarantine by an administrator".to_owned());
        Action::EncryptIfPossible
    } else {
        action
    };
    let action = apply_guards(config, facts, recipient.internal, action, &mut because);

    let sign =
        rule_sign.or_else(|| inherited(|s| s.sign)).unwrap_or(false) || action == Action::Sign;
    let neutral_subject = action.encrypts() && inherited(|s| s.neutral_subject).unwrap_or(false);
    Decision {
        recipient: recipient.address.clone(),
        direction,
        action,
        sign,
        neutral_subject,
        strip_keyword,
        required_trust: address_settings
            .and_then(|(_, s)| s.required_trust())
            .or_else(|| domain_settings.and_then(|(_, s)| s.required_trust()))
            .or_else(|| config.settings.required_trust())
            .unwrap_or(crate::directory::Trust::DEFAULT_REQUIRED),
        pinned_keys: address_settings
            .and_then(|(_, s)| s.pinned_keys.clone())
            .or_else(|| domain_settings.and_then(|(_, s)| s.pinned_keys.clone()))
            .unwrap_or_default(),
        autocrypt: inherited(|s| s.autocrypt).unwrap_or(false),
        methods: methods_from(config, address_settings, domain_settings),
        source,
        because,
    }
}

/// The least trust level encrypt-required mail to `address` needs
/// ([`Settings::required_trust`] or `trust_harvested_keys`, address →
/// domain → global; default `portal`).
pub fn required_trust(policy: &Policy, address: &str) -> crate::directory::Trust {
    let recipient = Recipient {
        address: address.to_ascii_lowercase(),
        internal: false,
        released: false,
    };
    let (address_settings, domain_settings) = settings_for(policy, &recipient);
    address_settings
        .and_then(|(_, s)| s.required_trust())
        .or_else(|| domain_settings.and_then(|(_, s)| s.required_trust()))
        .or_else(|| policy.config.settings.required_trust())
        .unwrap_or(crate::directory::Trust::DEFAULT_REQUIRED)
}

/// The delivery methods for `address`, in order (its own `methods`, else
/// its domain's, else the global settings', else `policy.methods`).
pub fn methods(policy: &Policy, address: &str) -> Vec<MethodName> {
    let recipient = Recipient {
        address: address.to_ascii_lowercase(),
        internal: false,
        released: false,
    };
    let (address_settings, domain_settings) = settings_for(policy, &recipient);
    methods_from(&policy.config, address_settings, domain_settings)
}

fn methods_from(
    config: &super::rules::PolicyConfig,
    address_settings: Option<Named<'_>>,
    domain_settings: Option<Named<'_>>,
) -> Vec<MethodName> {
    address_settings
        .and_then(|(_, s)| s.methods.clone())
        .or_else(|| domain_settings.and_then(|(_, s)| s.methods.clone()))
        .or_else(|| config.settings.methods.clone())
        .unwrap_or_else(|| config.methods.clone())
}

/// The keys `address` (or its domain) is pinned to (empty: not pinned).
pub fn pinned_keys(policy: &Policy, address: &str) -> Vec<String> {
    let recipient = Recipient {
        address: address.to_ascii_lowercase(),
        internal: false,
        released: false,
    };
    let (address_settings, domain_settings) = settings_for(policy, &recipient);
    address_settings
        .and_then(|(_, s)| s.pinned_keys.clone())
        .or_else(|| domain_settings.and_then(|(_, s)| s.pinned_keys.clone()))
        .unwrap_or_default()
}

/// Settings with the pattern they were configured under.
type Named<'p> = (&'p str, &'p Settings);

/// The two guards no rule can switch off, applied to `action`: a message
/// the sender encrypted for the gateway requires encryption for an external
/// recipient; in boundary-only mode an internal recipient is never given an
/// encrypting action. Each change is explained in `because`.
pub fn apply_guards(
    config: &super::rules::PolicyConfig,
    facts: &MessageFacts,
    recipient_internal: bool,
    mut action: Action,
    because: &mut Vec<String>,
) -> Action {
    if let Some(wrapping) = facts.encrypted_for_gateway
        && !recipient_internal
        && matches!(
            action,
            Action::Clear | Action::Sign | Action::EncryptIfPossible
        )
    {
        because.push(format!(
            "the sender encrypted the message for the gateway ({wrapping:?}): external recipients require encryption"
        ));
        action = Action::EncryptRequired;
    }
    if config.boundary_only && recipient_internal && action.encrypts() {
        because.push("boundary only: internal recipients are not encrypted for".to_owned());
        action = Action::Clear;
    }
    action
}

/// The most specific address and domain settings for the recipient: an exact
/// key before a wildcard one; among wildcards, the longest pattern.
fn settings_for<'p>(
    policy: &'p Policy,
    recipient: &Recipient,
) -> (Option<Named<'p>>, Option<Named<'p>>) {
    let best = |map: &'p std::collections::BTreeMap<String, Settings>| {
        map.iter()
            .filter(|(pattern, _)| glob::matches_address(pattern, &recipient.address))
            .max_by_key(|(pattern, _)| (!pattern.contains('*'), pattern.len()))
            .map(|(p, s)| (p.as_str(), s))
    };
    let address = best(&policy.config.address).filter(|(p, _)| p.contains('@'));
    let domain = best(&policy.config.domain).filter(|(p, _)| !p.contains('@'));
    (address, domain)
}

/// Whether every condition of `rule` holds; pushes a phrase per condition that held.
fn rule_matches(
    rule: &Rule,
    regexes: &[regex::Regex],
    facts: &MessageFacts,
    recipient: &Recipient,
    direction: Direction,
    why: &mut Vec<String>,
    keyword: &mut Option<String>,
) -> bool {
    if !rule.sender.is_empty() {
        match rule
            .sender
            .iter()
            .find(|p| glob::matches_address(p, &facts.sender))
        {
            Some(p) => why.push(format!("sender matches {p}")),
            None => return false,
        }
    }
    if !rule.sender_group.is_empty() {
        match rule.sender_group.iter().find(|g| {
            facts
                .sender_groups
                .iter()
                .any(|s| s.eq_ignore_ascii_case(g))
        }) {
            Some(g) => why.push(format!("sender is in group {g}")),
            None => return false,
        }
    }
    if !rule.recipient.is_empty() {
        match rule
            .recipient
            .iter()
            .find(|p| glob::matches_address(p, &recipient.address))
        {
            Some(p) => why.push(format!("recipient matches {p}")),
            None => return false,
        }
    }
    if let Some(internal) = rule.recipient_internal {
        if recipient.internal != internal {
            return false;
        }
        why.push(
            if internal {
                "recipient is internal"
            } else {
                "recipient is external"
            }
            .into(),
        );
    }
    if !rule.direction.is_empty() {
        if !rule.direction.contains(&direction) {
            return false;
        }
        why.push(format!("direction {}", direction.as_str()));
    }
    if !rule.subject_keyword.is_empty() {
        let subject = facts.subject.to_lowercase();
        match rule
            .subject_keyword
            .iter()
            .find(|k| subject.contains(&k.to_lowercase()))
        {
            Some(k) => {
                why.push(format!("subject contains \"{k}\""));
                *keyword = Some(k.clone());
            }
            None => return false,
        }
    }
    if !rule.body_keyword.is_empty() {
        let body = facts.body_text.to_lowercase();
        match rule
            .body_keyword
            .iter()
            .find(|k| body.contains(&k.to_lowercase()))
        {
            Some(k) => why.push(format!("body contains \"{k}\"")),
            None => return false,
        }
    }
    if !regexes.is_empty() {
        match regexes.iter().find(|re| re.is_match(&facts.body_text)) {
            Some(re) => why.push(format!("body matches /{}/", re.as_str())),
            None => return false,
        }
    }
    if let Some(wanted) = rule.has_attachment {
        if facts.attachments.is_empty() == wanted {
            return false;
        }
        why.push(
            if wanted {
                "has attachments"
            } else {
                "has no attachments"
            }
            .into(),
        );
    }
    if !rule.attachment_name.is_empty() {
        let hit = rule.attachment_name.iter().find_map(|p| {
            facts
                .attachments
                .iter()
                .filter_map(|a| a.name.as_deref())
                .find(|n| glob::matches(p, n))
                .map(|n| (p, n))
        });
        match hit {
            Some((p, n)) => why.push(format!("attachment \"{n}\" matches {p}")),
            None => return false,
        }
    }
    if !rule.attachment_type.is_empty() {
        let hit = rule.attachment_type.iter().find_map(|p| {
            facts
                .attachments
                .iter()
                .find(|a| glob::matches(p, &a.content_type))
                .map(|a| (p, &a.content_type))
        });
        match hit {
            Some((p, t)) => why.push(format!("attachment of type {t} matches {p}")),
            None => return false,
        }
    }
    if let Some(min) = rule.min_size {
        if facts.size < min {
            return false;
        }
        why.push(format!("size {} >= {min}", facts.size));
    }
    if let Some(max) = rule.max_size {
        if facts.size > max {
            return false;
        }
        why.push(format!("size {} <= {max}", facts.size));
    }
    if !rule.trigger.is_empty() {
        let Some(value) = facts
            .trigger_header
            .as_deref()
            .filter(|_| facts.trigger_trusted)
        else {
            return false;
        };
        match rule.trigger.iter().find(|p| glob::matches(p, value.trim())) {
            Some(_) => why.push(format!(
                "trigger header from a trusted host says \"{}\"",
                value.trim()
            )),
            None => return false,
        }
    }
    if let Some(wanted) = rule.encrypted_for_gateway {
        if facts.encrypted_for_gateway.is_some() != wanted {
            return false;
        }
        why.push(
            if wanted {
                "encrypted for the gateway"
            } else {
                "not encrypted for the gateway"
            }
            .into(),
        );
    }
    true
}

/// Removes the first case-insensitive occurrence of `keyword` from `subject`
/// and tidies the spaces around it.
pub fn strip_keyword(subject: &str, keyword: &str) -> String {
    let lower = subject.to_lowercase();
    let needle = keyword.to_lowercase();
    // Lower-casing can change byte lengths outside ASCII; only cut when the
    // positions still line up.
    match lower.find(&needle) {
        Some(at) if lower.len() == subject.len() && subject.is_char_boundary(at) => {
            let end = at + needle.len();
            let (head, tail) = (
                subject.get(..at).unwrap_or(""),
                subject.get(end..).unwrap_or(""),
            );
            let joined = format!("{} {}", head.trim_end(), tail.trim_start());
            joined.trim().to_owned()
        }
        _ => subject.to_owned(),
    }
}
