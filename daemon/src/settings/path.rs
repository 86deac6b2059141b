//! One setting by its dotted key, and what differs between two versions.
//!
//! Keys are the TOML keys of the settings schema joined by dots
//! (`delivery.smarthost`); a segment with a dot inside is quoted, as in
//! TOML (`policy.domain."partner.example".action`); a list element is its
//! index (`policy.rule.0.action`).
//!
//! Trusts: nothing; a changed tree is decoded again into the schema, so an
//! unknown key or a value of the wrong type is refused, naming the key.

use sealgate_api::FieldError;
use sealgate_api::ops::settings::Change;
use sealgate_api::settings::Settings;
use serde_json::Value;

/// Splits a dotted key into segments, honouring double quotes.
pub fn segments(key: &str) -> Result<Vec<String>, FieldError> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut was_quoted = false;
    for c in key.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                was_quoted = true;
            }
            '.' if !quoted => {
                if current.is_empty() && !was_quoted {
                    return Err(FieldError::new(key, "empty segment in the key"));
                }
                out.push(std::mem::take(&mut current));
                was_quoted = false;
            }
            c => current.push(c),
        }
    }
    if quoted {
        return Err(FieldError::new(key, "unbalanced quote in the key"));
    }
    if current.is_empty() && !was_quoted {
        return Err(FieldError::new(key, "empty segment in the key"));
    }
    out.push(current);
    Ok(out)
}

fn as_value(settings: &Settings) -> Result<Value, FieldError> {
    serde_json::to_value(settings).map_err(|e| FieldError::new("", e.to_string()))
}

/// The value at `key`.
pub fn get(settings: &Settings, key: &str) -> Result<Value, FieldError> {
    let root = as_value(settings)?;
    let mut value = &root;
    for segment in segments(key)? {
        value = match value {
            Value::Object(map) => map.get(&segment),
            Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        }
        .ok_or_else(|| FieldError::new(key, "no such setting"))?;
    }
    Ok(value.clone())
}

/// `settings` with `key` set to `value`; checked against the schema.
pub fn set(settings: &Settings, key: &str, value: Value) -> Result<Settings, FieldError> {
    let path = segments(key)?;
    let mut root = as_value(settings)?;
    let mut slot = &mut root;
    for segment in &path {
        slot = match slot {
            Value::Null => {
                // An absent optional table (`ldap`): create it.
                *slot = Value::Object(Default::default());
                match slot {
                    Value::Object(map) => map.entry(segment.clone()).or_insert(Value::Null),
                    _ => return Err(FieldError::new(key, "no such setting")),
                }
            }
            Value::Object(map) => map.entry(segment.clone()).or_insert(Value::Null),
            Value::Array(items) => segment
                .parse::<usize>()
                .ok()
                .and_then(|i| items.get_mut(i))
                .ok_or_else(|| FieldError::new(key, "no such list element"))?,
            _ => return Err(FieldError::new(key, "no such setting")),
        };
    }
    *slot = value;
    serde_json::from_value(root).map_err(|e| FieldError::new(key, e.to_string()))
}

/// Every key whose value differs from `before` to `after`, in key order.
/// Tables are compared key by key and lists of tables element by element;
/// a list of plain values is one value.
pub fn diff(before: &Settings, after: &Settings) -> Result<Vec<Change>, FieldError> {
    let mut a = std::collections::BTreeMap::new();
    let mut b = std::collections::BTreeMap::new();
    flatten("", &as_value(before)?, &mut a);
    flatten("", &as_value(after)?, &mut b);
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    Ok(keys
        .into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| Change {
            key: k.clone(),
            before: a.get(k).cloned(),
            after: b.get(k).cloned(),
        })
        .collect())
}

fn flatten(prefix: &str, value: &Value, out: &mut std::collections::BTreeMap<String, Value>) {
    let join = |segment: &str| {
        let segment = if segment.contains('.') || segment.is_empty() {
            format!("\"{segment}\"")
        } else {
            segment.to_owned()
        };
        if prefix.is_empty() {
            segment
        } else {
            format!("{prefix}.{segment}")
        }
    };
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                flatten(&join(k), v, out);
            }
        }
        Value::Array(items) if items.iter().any(Value::is_object) => {
            for (i, v) in items.iter().enumerate() {
                flatten(&join(&i.to_string()), v, out);
            }
        }
        Value::Null => {}
        other => {
            out.insert(prefix.to_owned(), other.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn get_set_and_diff_by_dotted_key() {
        let s = Settings::default();
        assert_eq!(get(&s, "delivery.mode").unwrap(), "outbox");
        let changed = set(&s, "delivery.smarthost", "mail.example:25".into()).unwrap();
        let changed = set(&changed, "delivery.mode", "smarthost".into()).unwrap();
        let changed = set(
            &changed,
            "policy.domain.\"partner.example\".action",
            "encrypt-required".into(),
        )
        .unwrap();
        let changed = set(&changed, "ldap.url", "ldap://127.0.0.1:389".into()).unwrap();
        assert_eq!(
            changed.policy.domain["partner.example"].action,
            Some(sealgate_api::settings::policy::Action::EncryptRequired)
        );
        assert_eq!(changed.ldap.as_ref().unwrap().mail_attribute, "mail");
        let keys: Vec<String> = diff(&s, &changed)
            .unwrap()
            .into_iter()
            .map(|c| c.key)
            .collect();
        assert!(keys.contains(&"delivery.mode".to_owned()), "{keys:?}");
        assert!(
            keys.contains(&"policy.domain.\"partner.example\".action".to_owned()),
            "{keys:?}"
        );
        assert!(!keys.contains(&"delivery.retry_max_secs".to_owned()));
        // Unknown keys and wrong types are refused, naming the key.
        assert_eq!(
            set(&s, "delivery.smarthots", "x".into()).unwrap_err().key,
            "delivery.smarthots"
        );
        assert!(set(&s, "smtp.max_recipients", "many".into()).is_err());
        assert!(get(&s, "nope.nothing").is_err());
        assert!(segments("a..b").is_err());
    }
}
