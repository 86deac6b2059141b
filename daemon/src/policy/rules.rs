//! The policy as the administrator writes it (the `[policy]` table; its
//! schema is `sealgate_api::settings::policy`) and its checked, compiled
//! form.
//!
//! Trusts: nothing; every pattern and regex is checked when the settings
//! are loaded or changed, regexes with a size limit so none can exhaust
//! memory.

pub use sealgate_api::settings::policy::{
    Action, Defaults, EngineOptions, PolicyConfig, RecipientSettings as Settings, Rule,
};

/// Most rules a policy may have, and most values per condition.
pub const MAX_RULES: usize = 1000;
pub const MAX_VALUES: usize = 1000;
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A checked policy, regexes compiled.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub config: PolicyConfig,
    /// `body_regex` of each rule, compiled, in rule order.
    pub(super) regexes: Vec<Vec<regex::Regex>>,
}

impl Policy {
    /// Checks the table; the error names the key and what is wrong.
    pub fn compile(config: PolicyConfig) -> Result<Policy, (&'static str, String)> {
        if config.rule.len() > MAX_RULES {
            return Err(("policy.rule", format!("at most {MAX_RULES} rules")));
        }
        if config.trigger_header.is_empty()
            || !config
                .trigger_header
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b':')
        {
            return Err(("policy.trigger_header", "not a header name".into()));
        }
        let mut regexes = Vec::with_capacity(config.rule.len());
        for (i, rule) in config.rule.iter().enumerate() {
            let n = i + 1;
            if rule.name.is_empty() {
                return Err(("name", format!("rule {n} has no name")));
            }
            if rule.action.is_none() {
                return Err(("action", format!("rule {n} ({}) has no action", rule.name)));
            }
            let lists = [
                &rule.sender,
                &rule.sender_group,
                &rule.recipient,
                &rule.subject_keyword,
                &rule.body_keyword,
                &rule.body_regex,
                &rule.attachment_name,
                &rule.attachment_type,
                &rule.trigger,
            ];
            if lists.iter().any(|l| l.len() > MAX_VALUES)
                || lists.iter().any(|l| l.iter().any(String::is_empty))
            {
                return Err((
                    "policy.rule",
                    format!(
                        "rule {n} ({}): empty value or more than {MAX_VALUES} values",
                        rule.name
                    ),
                ));
            }
            let mut compiled = Vec::with_capacity(rule.body_regex.len());
            for source in &rule.body_regex {
                let re = regex::RegexBuilder::new(source)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| ("body_regex", format!("rule {n} ({}): {e}", rule.name)))?;
                compiled.push(re);
            }
            regexes.push(compiled);
        }
        Ok(Policy { config, regexes })
    }
}
