//! The settings forms: one section of the settings tree as form fields
//! and back again.
//!
//! Built from the api's table of settings
//! ([`sealgate_api::settings::fields`]) over the serialized value tree, so
//! a setting added there shows up here with no code of its own. A section's
//! submitted text is parsed field by field into the tree of the version it
//! was edited from; what does not parse (a word in a number field, a
//! network that is none) is an error of its field, never a 500 and never a
//! lost edit. Whether the result is a good configuration is the service's
//! to say (`SettingsApply`); this module only gets the types right.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use sealgate_api::FieldError;
use sealgate_api::settings::fields::{self, Field, Kind};
use sealgate_api::settings::{IpNetwork, Settings};
use serde_json::{Map, Value};

/// A section's fields as text, as the form holds them: dotted key → value
/// (a checkbox: `"true"` or nothing).
pub type Raw = BTreeMap<String, String>;

/// What a checked checkbox sends.
pub const CHECKED: &str = "true";

/// The settings as a value tree.
fn tree(settings: &Settings) -> Result<Value, FieldError> {
    serde_json::to_value(settings).map_err(|e| FieldError::new("settings", e.to_string()))
}

/// The defaults with the optional tables present: what their fields show
/// while a table is unset, and what a table starts as when it is turned on.
fn shape() -> Value {
    let mut s = Settings {
        ldap: Some(Default::default()),
        ..Settings::default()
    };
    s.discovery.ldap = Some(Default::default());
    serde_json::to_value(s).unwrap_or(Value::Null)
}

fn at<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    key.split('.').try_fold(v, |v, k| v.get(k))
}

/// Puts `value` at `key`, making the tables on the way.
fn put(tree: &mut Value, key: &str, value: Value) {
    let mut slot = tree;
    for k in key.split('.') {
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        let Value::Object(map) = slot else { return };
        slot = map.entry(k.to_owned()).or_insert(Value::Null);
    }
    *slot = value;
}

fn last(key: &str) -> &str {
    key.rsplit('.').next().unwrap_or(key)
}

/// The values of one section of `settings` as form text.
pub fn raw_of(settings: &Settings, section: &str) -> Raw {
    let current = tree(settings).unwrap_or(Value::Null);
    let shape = shape();
    fields::section_fields(section)
        .map(|f| {
            let v = at(&current, f.key).or_else(|| at(&shape, f.key));
            (f.key.to_owned(), text_of(f, v.unwrap_or(&Value::Null)))
        })
        .collect()
}

fn text_of(f: &Field, v: &Value) -> String {
    match (f.kind, v) {
        (_, Value::Null) => String::new(),
        (Kind::Bool, v) => flag(v.as_bool() == Some(true)),
        (Kind::Presence, _) => flag(true),
        (Kind::OptBool, Value::Bool(b)) => b.to_string(),
        (Kind::Table, v) => toml_of(last(f.key), v),
        (_, Value::String(s)) => s.clone(),
        (_, Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join("\n"),
        (_, v) => v.to_string(),
    }
}

fn flag(on: bool) -> String {
    if on {
        CHECKED.to_owned()
    } else {
        String::new()
    }
}

/// Unset values are left out of TOML (it has no null).
fn without_nulls(v: Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_nulls).collect()),
        v => v,
    }
}

/// A subtree as a TOML document: a map as it is, a list of records as
/// `[[name]]` tables.
fn toml_of(name: &str, v: &Value) -> String {
    let empty = match v {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    };
    if empty {
        return String::new();
    }
    let v = without_nulls(v.clone());
    let doc = if v.is_object() {
        v
    } else {
        let mut m = Map::new();
        m.insert(name.to_owned(), v);
        Value::Object(m)
    };
    // JSON is no TOML: if this ever failed, saving the text back is
    // refused rather than the subtree silently emptied.
    toml::to_string(&doc).unwrap_or_else(|_| doc.to_string())
}

/// `section`'s submitted text put into `base` (the version it was edited
/// from): the new settings, or an error for each field that does not parse.
pub fn apply(section: &str, raw: &Raw, base: &Settings) -> Result<Settings, Vec<FieldError>> {
    let mut tree = tree(base).map_err(|e| vec![e])?;
    let shape = shape();
    let mut errors = Vec::new();
    let mut off: Vec<&str> = Vec::new();
    for f in fields::section_fields(section) {
        if off
            .iter()
            .any(|p| f.key.strip_prefix(p).is_some_and(|r| r.starts_with('.')))
        {
            continue;
        }
        let text = raw.get(f.key).map_or("", String::as_str);
        if f.kind == Kind::Presence {
            if text.is_empty() {
                off.push(f.key);
                put(&mut tree, f.key, Value::Null);
            } else if at(&tree, f.key).is_none_or(Value::is_null) {
                let fresh = at(&shape, f.key).cloned().unwrap_or_default();
                put(&mut tree, f.key, fresh);
            }
            continue;
        }
        let like = at(&shape, f.key).unwrap_or(&Value::Null);
        match parse(f, text, like) {
            Ok(v) => put(&mut tree, f.key, v),
            Err(message) => errors.push(FieldError::new(f.key, message)),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    serde_json::from_value(tree).map_err(|e| vec![FieldError::new(section, e.to_string())])
}

/// One field's text as a value of its kind; `like` is its default (the
/// shape of a table).
fn parse(f: &Field, text: &str, like: &Value) -> Result<Value, String> {
    let one = text.trim();
    let lines = || super::super::lines(text);
    Ok(match f.kind {
        Kind::Bool => Value::Bool(!text.is_empty()),
        Kind::Presence => Value::Null,
        Kind::OptBool => match one {
            "" => Value::Null,
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return Err("choose yes, no or unset".into()),
        },
        Kind::Number { max } => match one.parse::<u64>() {
            Ok(n) if n <= max => Value::from(n),
            _ if one.is_empty() => return Err("a number is needed".into()),
            _ if max == u64::MAX => return Err("a whole number, 0 or more".into()),
            _ => return Err(format!("a whole number from 0 to {max}")),
        },
        Kind::Text => Value::from(one),
        Kind::OptText | Kind::OptSocketAddr | Kind::OptChoice(_) if one.is_empty() => Value::Null,
        Kind::OptText => Value::from(one),
        Kind::OptLongText if one.is_empty() => Value::Null,
        Kind::OptLongText => Value::from(text.replace("\r\n", "\n")),
        Kind::OptSocketAddr => match one.parse::<SocketAddr>() {
            Ok(_) => Value::from(one),
            Err(_) => return Err("an address and port, like 10.0.0.53:53 or [::1]:53".into()),
        },
        Kind::Choice(choices) | Kind::OptChoice(choices) => {
            if !choices.contains(&one) {
                return Err(format!("one of {}", choices.join(", ")));
            }
            Value::from(one)
        }
        Kind::Lines => Value::from(lines()),
        Kind::OptLines => {
            let l = lines();
            if l.is_empty() {
                Value::Null
            } else {
                Value::from(l)
            }
        }
        Kind::Networks => {
            let l = lines();
            for n in &l {
                n.parse::<IpNetwork>()?;
            }
            Value::from(l)
        }
        Kind::ChoiceLines(choices) => {
            let l = lines();
            if let Some(bad) = l.iter().find(|v| !choices.contains(&v.as_str())) {
                return Err(format!("`{bad}` is none of {}", choices.join(", ")));
            }
            Value::from(l)
        }
        Kind::Table => table(f.key, text, like)?,
    })
}

/// A TOML document as the subtree at `key`, checked against its type.
fn table(key: &str, text: &str, like: &Value) -> Result<Value, String> {
    let doc: toml::Table = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| {
            text.get(..s.start)
                .unwrap_or_default()
                .lines()
                .count()
                .max(1)
        });
        match line {
            Some(l) => format!("line {l}: {}", e.message()),
            None => e.message().to_owned(),
        }
    })?;
    let mut doc = serde_json::to_value(doc).map_err(|e| e.to_string())?;
    if like.is_array() {
        let name = last(key);
        let Value::Object(map) = &mut doc else {
            return Err("not a table".into());
        };
        if let Some(other) = map.keys().find(|k| *k != name) {
            return Err(format!("only [[{name}]] tables here, not `{other}`"));
        }
        doc = map.remove(name).unwrap_or(Value::Array(Vec::new()));
    }
    // The types of the subtree: in otherwise default settings.
    let mut check = serde_json::to_value(Settings::default()).map_err(|e| e.to_string())?;
    put(&mut check, key, doc.clone());
    serde_json::from_value::<Settings>(check).map_err(|e| e.to_string())?;
    Ok(doc)
}

/// The raw form text of `section` from a submitted form: the fields it
/// names, in the table's order (anything else is ignored).
pub fn raw_from(section: &str, submitted: &[(String, String)]) -> Raw {
    fields::section_fields(section)
        .filter_map(|f| {
            submitted
                .iter()
                .find(|(k, _)| k == f.key)
                .map(|(_, v)| (f.key.to_owned(), v.clone()))
        })
        .collect()
}

/// One field as the template shows it.
pub struct FieldView {
    pub key: &'static str,
    /// The element id: the key with `-` for `.`.
    pub id: String,
    pub label: &'static str,
    pub help: &'static str,
    /// `checkbox`, `tristate`, `number`, `text`, `longtext`, `select`,
    /// `lines` or `toml`.
    pub widget: &'static str,
    pub value: String,
    /// For `select`: the values, and whether "unset" is one.
    pub options: &'static [&'static str],
    pub optional: bool,
    pub error: Option<String>,
    /// Lines the textarea shows.
    pub rows: usize,
}

impl FieldView {
    pub fn checked(&self) -> bool {
        !self.value.is_empty()
    }

    /// The ids of the help line and, when there is one, the error.
    pub fn described_by(&self) -> String {
        match self.error {
            Some(_) => format!("hint-{0} err-{0}", self.id),
            None => format!("hint-{}", self.id),
        }
    }

    pub fn is(&self, option: &&str) -> bool {
        self.value == *option
    }
}

/// The fields of `section` with `raw`'s values and `errors`' messages.
pub fn views(section: &str, raw: &Raw, errors: &super::super::Errors) -> Vec<FieldView> {
    fields::section_fields(section)
        .map(|f| {
            let value = raw.get(f.key).cloned().unwrap_or_default();
            let (widget, options, optional) = match f.kind {
                Kind::Bool | Kind::Presence => ("checkbox", &[][..], false),
                Kind::OptBool => ("tristate", &[][..], true),
                Kind::Number { .. } => ("number", &[][..], false),
                Kind::Text | Kind::OptText | Kind::OptSocketAddr => ("text", &[][..], false),
                Kind::OptLongText => ("longtext", &[][..], true),
                Kind::Choice(c) => ("select", c, false),
                Kind::OptChoice(c) => ("select", c, true),
                Kind::Lines | Kind::OptLines | Kind::Networks | Kind::ChoiceLines(_) => {
                    ("lines", &[][..], false)
                }
                Kind::Table => ("toml", &[][..], false),
            };
            let rows = value.lines().count().clamp(3, 16) + usize::from(widget == "toml");
            FieldView {
                key: f.key,
                id: f.key.replace('.', "-"),
                label: f.label,
                help: f.help,
                widget,
                // An optional table's own errors only: its fields show theirs.
                error: if f.kind == Kind::Presence {
                    errors
                        .0
                        .iter()
                        .find(|e| e.key == f.key)
                        .map(|e| e.message.clone())
                } else {
                    errors.get(f.key).map(str::to_owned)
                },
                value,
                options,
                optional,
                rows,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )]
    use super::*;
    use sealgate_api::settings::fields::{SECTIONS, sample_all_set};

    /// Every section's form text of `s` put back into `base`.
    fn round_trip(s: &Settings, base: &Settings) -> Settings {
        SECTIONS.iter().fold(base.clone(), |acc, section| {
            let raw = raw_of(s, section.name);
            apply(section.name, &raw, &acc).unwrap_or_else(|e| panic!("{}: {e:?}", section.name))
        })
    }

    #[test]
    fn the_defaults_survive_the_forms() {
        let d = Settings::default();
        assert_eq!(round_trip(&d, &d), d);
        // and the forms alone carry them: from a fully set version back
        assert_eq!(round_trip(&d, &sample_all_set()), d);
    }

    #[test]
    fn every_optional_value_survives_the_forms() {
        let s = sample_all_set();
        assert_eq!(round_trip(&s, &s), s);
        assert_eq!(round_trip(&s, &Settings::default()), s);
    }

    #[test]
    fn a_section_changes_only_its_own_keys() {
        let base = sample_all_set();
        let mut raw = raw_of(&base, "smtp");
        raw.insert("smtp.max_recipients".into(), " 42 ".into());
        raw.insert("smtp.tls_private_key".into(), String::new());
        let new = apply("smtp", &raw, &base).unwrap();
        let mut want = base.clone();
        want.smtp.max_recipients = 42;
        want.smtp.tls_private_key = None;
        assert_eq!(new, want);
    }

    #[test]
    fn checkboxes_lists_and_choices() {
        let base = Settings::default();
        let mut raw = raw_of(&base, "relay");
        raw.insert(
            "relay.domains".into(),
            "a.example\r\n\r\n b.example \n".into(),
        );
        let new = apply("relay", &raw, &base).unwrap();
        assert_eq!(new.relay.domains, ["a.example", "b.example"]);

        let mut raw = raw_of(&base, "policy");
        assert_eq!(raw["policy.boundary_only"], CHECKED);
        raw.remove("policy.boundary_only"); // an unticked box is not sent
        raw.insert("policy.settings.sign".into(), "false".into());
        raw.insert("policy.default.inbound".into(), "reject".into());
        let new = apply("policy", &raw, &base).unwrap();
        assert!(!new.policy.boundary_only);
        assert_eq!(new.policy.settings.sign, Some(false));
        assert_eq!(new.policy.default.inbound.as_str(), "reject");
    }

    #[test]
    fn an_optional_table_is_turned_on_and_off() {
        let base = Settings::default();
        let mut raw = raw_of(&base, "ldap");
        assert_eq!(raw["ldap"], "");
        assert_eq!(raw["ldap.member_attribute"], "member"); // defaults shown
        raw.insert("ldap".into(), CHECKED.into());
        raw.insert("ldap.url".into(), "ldap://dir.example".into());
        let on = apply("ldap", &raw, &base).unwrap();
        assert_eq!(on.ldap.as_ref().unwrap().url, "ldap://dir.example");
        raw.remove("ldap");
        raw.insert("ldap.timeout_secs".into(), "not looked at".into());
        assert_eq!(apply("ldap", &raw, &on).unwrap().ldap, None);
    }

    #[test]
    fn wrong_types_are_errors_of_their_fields() {
        let base = Settings::default();
        let mut raw = raw_of(&base, "smtp");
        raw.insert("smtp.max_recipients".into(), "abc".into());
        raw.insert("smtp.max_errors".into(), "99999999999".into());
        let errors = apply("smtp", &raw, &base).unwrap_err();
        let keys: Vec<_> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["smtp.max_recipients", "smtp.max_errors"]);

        let mut raw = raw_of(&base, "delivery");
        raw.insert("delivery.mode".into(), "pigeon".into());
        raw.insert("delivery.dns_server".into(), "resolver".into());
        raw.insert("delivery.mx_port".into(), "70000".into());
        raw.insert("delivery.routes".into(), "\"a.example\" = 5".into());
        let errors = apply("delivery", &raw, &base).unwrap_err();
        let keys: Vec<_> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "delivery.mode",
                "delivery.routes",
                "delivery.mx_port",
                "delivery.dns_server"
            ]
        );

        let mut raw = raw_of(&base, "relay");
        raw.insert(
            "relay.internal_networks".into(),
            "10.0.0.0/8\nnowhere".into(),
        );
        let errors = apply("relay", &raw, &base).unwrap_err();
        assert_eq!(errors[0].key, "relay.internal_networks");
        assert!(errors[0].message.contains("nowhere"));

        let mut raw = raw_of(&base, "policy");
        raw.insert(
            "policy.rule".into(),
            "[[rule]]\nname = \"x\"\nnope = 1\n".into(),
        );
        raw.insert("policy.methods".into(), "smime\ncarrier-pigeon".into());
        let errors = apply("policy", &raw, &base).unwrap_err();
        let keys: Vec<_> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["policy.rule", "policy.methods"]);
    }

    #[test]
    fn rules_are_shown_as_tables() {
        let s = sample_all_set();
        let raw = raw_of(&s, "policy");
        assert!(
            raw["policy.rule"].contains("[[rule]]"),
            "{}",
            raw["policy.rule"]
        );
        assert!(raw["policy.domain"].contains("partner.example"));
        assert_eq!(raw_of(&Settings::default(), "policy")["policy.rule"], "");
    }

    #[test]
    fn a_submitted_form_keeps_only_its_sections_fields() {
        let submitted = vec![
            ("_version".to_owned(), "3".to_owned()),
            ("smtp.max_errors".to_owned(), "7".to_owned()),
            ("relay.domains".to_owned(), "x".to_owned()),
        ];
        let raw = raw_from("smtp", &submitted);
        assert_eq!(raw.len(), 1);
        assert_eq!(raw["smtp.max_errors"], "7");
    }
}
