//! Runs the policy case files in `daemon/tests/policy/`: each holds one
//! `[policy]` table and many small `[[case]]`s (facts, a recipient, the
//! expected action and what decided it).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use serde::Deserialize;

use super::{Action, MessageFacts, Policy, PolicyConfig, Recipient, Source, decide};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    policy: PolicyConfig,
    case: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default)]
    facts: MessageFacts,
    to: String,
    #[serde(default)]
    internal: bool,
    expect: Action,
    /// `rule:NAME`, `address:PATTERN`, `domain:PATTERN`, `global` or `default`.
    by: String,
    #[serde(default)]
    sign: bool,
    strip: Option<String>,
}

fn source_text(source: &Source) -> String {
    match source {
        Source::Rule { name, .. } => format!("rule:{name}"),
        Source::Address { pattern } => format!("address:{pattern}"),
        Source::Domain { pattern } => format!("domain:{pattern}"),
        Source::Global => "global".into(),
        Source::Default => "default".into(),
    }
}

fn run(file: &str, text: &str) -> usize {
    let cases: CaseFile = toml::from_str(text).unwrap_or_else(|e| panic!("{file}: {e}"));
    let policy = Policy::compile(cases.policy).unwrap_or_else(|(k, e)| panic!("{file}: {k}: {e}"));
    let mut failures = Vec::new();
    for case in &cases.case {
        let recipient = Recipient {
            address: case.to.clone(),
            internal: case.internal,
            released: false,
        };
        let d = decide(&policy, &case.facts, &recipient);
        let by = source_text(&d.source);
        if d.action != case.expect
            || by != case.by
            || d.sign != case.sign
            || d.strip_keyword != case.strip
        {
            failures.push(format!(
                "{file}: case \"{}\": got {:?} by {by} sign={} strip={:?}, want {:?} by {} sign={} strip={:?}\n    {}",
                case.name, d.action, d.sign, d.strip_keyword, case.expect, case.by, case.sign, case.strip, d.explain()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    cases.case.len()
}

#[test]
fn case_files() {
    let n = run("rules.toml", include_str!("../../tests/policy/rules.toml"))
        + run(
            "settings.toml",
            include_str!("../../tests/policy/settings.toml"),
        );
    assert!(n >= 40, "only {n} cases");
}

#[test]
fn subject_keyword_is_cut_out() {
    use super::decide::strip_keyword;
    assert_eq!(strip_keyword("[secure] Contract", "[SECURE]"), "Contract");
    assert_eq!(
        strip_keyword("Re: the [secure] deal", "[secure]"),
        "Re: the deal"
    );
    assert_eq!(strip_keyword("no keyword", "[secure]"), "no keyword");
}

#[test]
fn bad_policies_are_refused_with_the_key() {
    let bad = |t: &str| {
        let c: PolicyConfig = toml::from_str(t).unwrap();
        Policy::compile(c).err().map(|(k, _)| k)
    };
    assert_eq!(bad("[[rule]]\nname = \"x\"\n"), Some("action"));
    assert_eq!(bad("[[rule]]\naction = \"clear\"\n"), Some("name"));
    assert_eq!(
        bad("[[rule]]\nname = \"x\"\naction = \"clear\"\nbody_regex = [\"(\"]\n"),
        Some("body_regex")
    );
    assert_eq!(
        bad("trigger_header = \"X: y\"\n"),
        Some("policy.trigger_header")
    );
    assert!(
        toml::from_str::<PolicyConfig>("[[rule]]\nname = \"x\"\naction = \"shred\"\n").is_err()
    );
    assert!(toml::from_str::<PolicyConfig>("[[rule]]\nname = \"x\"\nsubjekt = [\"a\"]\n").is_err());
}
