//! Render stage: the outgoing form of a message for a group of recipients.
//!
//! The message as received, or with its subject rewritten (a matched
//! policy keyword such as `[secure]` removed), or encrypted for one
//! recipient's method ([`encrypt`]) by the S/MIME or OpenPGP engine. An
//! encrypted copy is made per recipient, so no recipient (Bcc included) is
//! named in another's copy.
//!
//! Header edits work on the raw header section: the Subject field (with its
//! folded continuation lines) is replaced by one new field, RFC 2047-encoded
//! when it is not plain ASCII; every other octet is kept as it was.
//!
//! Trusts: nothing in the content; a message without a header/body separator
//! is treated as all header.

use base64::Engine as _;

/// The header in which the gateway tells internal recipients what it found
/// (decrypted, signature verdict). Never believed from outside: every copy
/// that arrives is removed before delivery.
pub const VERDICT_HEADER: &str = "X-Sealgate-Verdict";

/// `content` without any header field named `name` (case-insensitive,
/// folded continuation lines included), or `None` if there was none.
pub fn strip_header(content: &[u8], name: &str) -> Option<Vec<u8>> {
    let header_end = content
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(content.len(), |p| p + 2);
    let (head, rest) = content.split_at(header_end.min(content.len()));
    let prefix = format!("{name}:");
    let mut out = Vec::with_capacity(content.len());
    let mut skipping = false;
    let mut found = false;
    for line in head.split_inclusive(|b| *b == b'\n') {
        let continuation = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if skipping && continuation {
            continue;
        }
        skipping = line.len() >= prefix.len()
            && line
                .get(..prefix.len())
                .is_some_and(|n| n.eq_ignore_ascii_case(prefix.as_bytes()));
        if skipping {
            found = true;
            continue;
        }
        out.extend_from_slice(line);
    }
    if !found {
        return None;
    }
    out.extend_from_slice(rest);
    Some(out)
}

/// Why a message could not be encrypted for a recipient.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncryptError {
    /// The engine refused (unusable certificate, message over its limits).
    #[error("{0}")]
    Engine(String),
}

/// `content` encrypted for `methods` (one copy every one of them opens:
/// one RecipientInfo, or one PKESK, each); with `protected`, the
/// header-protected split of it (RFC 9788, [`super::protect`]) is
/// encrypted. The methods are all S/MIME or all OpenPGP; the S/MIME
/// engine's options come from [`smime_options`], the one place that
/// chooses them (`ciphers`: the per-domain `smime.cipher` setting).
pub fn encrypt(
    content: &[u8],
    protected: Option<super::protect::Protected>,
    methods: &[&super::resolve::Method],
    options: &crate::policy::rules::EngineOptions,
    ciphers: &Ciphers,
) -> Result<Vec<u8>, EncryptError> {
    use super::resolve::Method;
    let entries: Vec<&crate::directory::Entry> = methods.iter().map(|m| m.entry()).collect();
    match methods.first() {
        None => Err(EncryptError::Engine("no recipient to encrypt for".into())),
        Some(Method::Smime(_)) => {
            let certs = entries
                .iter()
                .map(|e| sealgate_smime::Certificate::from_der(&e.data))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| EncryptError::Engine(format!("certificate: {e}")))?;
            let certs: Vec<&sealgate_smime::Certificate> = certs.iter().collect();
            let opts = smime_options(options, smime_gcm(&entries, ciphers));
            match protected {
                Some(p) => sealgate_smime::encrypt_entity(p.outer, p.inner, &certs, opts),
                None => sealgate_smime::encrypt_message(content, &certs, opts),
            }
            .map_err(|e| EncryptError::Engine(e.to_string()))
        }
        Some(Method::Openpgp(_)) => {
            let limits = sealgate_openpgp::Limits::default();
            let mut certs = Vec::new();
            for entry in &entries {
                certs.extend(
                    sealgate_openpgp::parse_certs(&entry.data, &limits)
                        .map_err(|e| EncryptError::Engine(format!("OpenPGP key: {e}")))?,
                );
            }
            let opts = sealgate_openpgp::EncryptOptions::new();
            match protected {
                Some(p) => sealgate_openpgp::encrypt_entity(p.outer, &p.inner, &certs, None, opts),
                None => sealgate_openpgp::encrypt(content, &certs, None, opts, &limits),
            }
            .map_err(|e| EncryptError::Engine(e.to_string()))
        }
    }
}

/// The per-domain S/MIME content cipher setting (`smime.cipher`).
pub type Ciphers = std::collections::BTreeMap<String, sealgate_api::settings::trust::SmimeCipher>;

/// The S/MIME engine's options for the pipeline's copies: AES-256-GCM
/// (AuthEnvelopedData) when `gcm` (see [`smime_gcm`]), else AES-256-CBC,
/// which every client reads; PKCS#1 v1.5 key transport unless
/// `policy.engine.smime_rsa_oaep` asks for RSA-OAEP (gpgsm 2.2 reads no OAEP).
pub fn smime_options(
    options: &crate::policy::rules::EngineOptions,
    gcm: bool,
) -> sealgate_smime::EncryptOptions {
    let rsa = if options.smime_rsa_oaep {
        sealgate_smime::RsaTransport::OaepSha256
    } else {
        sealgate_smime::RsaTransport::default()
    };
    sealgate_smime::EncryptOptions { gcm, rsa }
}

/// Whether one S/MIME copy for `entries` is sealed with AES-256-GCM:
/// only when every one of them gets GCM. Per entry, the `smime.cipher`
/// setting of its domain decides (`gcm`, `cbc`); without one, or with
/// `auto`, the capabilities its holder announced do: GCM only when they
/// name an AES-GCM cipher. Unknown capabilities stay CBC, because NSS
/// (Thunderbird) and gpgsm read no AuthEnvelopedData.
pub fn smime_gcm(entries: &[&crate::directory::Entry], ciphers: &Ciphers) -> bool {
    use sealgate_api::settings::trust::SmimeCipher;
    !entries.is_empty()
        && entries.iter().all(|entry| {
            let domain = entry.domain.clone().or_else(|| {
                entry
                    .addresses
                    .first()
                    .and_then(|a| a.rsplit_once('@'))
                    .map(|(_, d)| d.to_ascii_lowercase())
            });
            match domain.and_then(|d| ciphers.get(&d)) {
                Some(SmimeCipher::Gcm) => true,
                Some(SmimeCipher::Cbc) => false,
                Some(SmimeCipher::Auto) | None => {
                    entry.capabilities.iter().any(|c| c.ends_with("-gcm"))
                }
            }
        })
}

/// `content` signed by the gateway (detached `multipart/signed`, made CRLF
/// and 7-bit first so no relay can break the signature). `Err(true)` when
/// the token is unreachable (defer the message), `Err(false)` otherwise.
pub fn sign(content: &[u8], store: &crate::keys::KeyStore) -> Result<Vec<u8>, (bool, String)> {
    if let crate::keys::KeyStore::Unavailable(why) = store {
        return Err((true, format!("the key store is unavailable ({why})")));
    }
    let identity = store
        .keys()
        .and_then(crate::keys::GatewayKeys::signing)
        .ok_or((
            false,
            "no signing key with a certificate on the token".to_owned(),
        ))?;
    sealgate_smime::sign_message(
        content,
        &identity,
        sealgate_smime::SignOptions { opaque: false },
    )
    .map_err(|e| (e.is_temporary(), e.to_string()))
}

/// `Autocrypt: addr=…; prefer-encrypt=mutual; keydata=…` folded at 76
/// columns (Autocrypt Level 1): `cert` is a binary OpenPGP key.
pub fn autocrypt_field(address: &str, cert: &[u8]) -> String {
    let keydata = base64::engine::general_purpose::STANDARD.encode(cert);
    let mut field = format!("Autocrypt: addr={address}; prefer-encrypt=mutual; keydata=\r\n");
    for chunk in keydata.as_bytes().chunks(72) {
        field.push(' ');
        field.push_str(&String::from_utf8_lossy(chunk));
        field.push_str("\r\n");
    }
    field
}

/// The `Autocrypt:` field that tells the recipients of mail from one of
/// our users to encrypt to the gateway's OpenPGP key (the domain key: the
/// gateway opens such mail and delivers it inside): `addr` is the
/// message's `From` address, as Autocrypt requires. `None` when `From` is
/// not in one of our domains or the gateway has no OpenPGP identity.
pub fn domain_autocrypt(
    content: &[u8],
    store: &crate::keys::KeyStore,
    config: &crate::config::Config,
) -> Option<String> {
    let parsed = mail_parser::MessageParser::default().parse_headers(content)?;
    let from = parsed
        .header_raw("From")
        .and_then(sealgate_smime::verify::from_address)?;
    let (_, domain) = from.rsplit_once('@')?;
    if !config.is_local_domain(domain) {
        return None;
    }
    let cert = store.keys()?.openpgp()?.export_binary().ok()?;
    Some(autocrypt_field(&from, &cert))
}

/// `content` with `field` (one complete header field) in front.
pub fn prepend_field(field: &str, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len() + content.len());
    out.extend_from_slice(field.as_bytes());
    out.extend_from_slice(content);
    out
}

/// `content` with its Subject field replaced by `subject` (added if absent).
pub fn replace_subject(content: &[u8], subject: &str) -> Vec<u8> {
    let header_end = content
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(content.len(), |p| p + 2);
    let (head, rest) = content.split_at(header_end.min(content.len()));
    let field = encode_field("Subject", subject);
    let mut out = Vec::with_capacity(content.len() + field.len());
    let mut replaced = false;
    let mut skipping = false;
    for line in head.split_inclusive(|b| *b == b'\n') {
        let continuation = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if skipping && continuation {
            continue;
        }
        skipping = false;
        let is_subject = line.len() > 8
            && line
                .get(..8)
                .is_some_and(|n| n.eq_ignore_ascii_case(b"subject:"));
        if is_subject {
            skipping = true;
            if !replaced {
                out.extend_from_slice(field.as_bytes());
                replaced = true;
            }
            continue;
        }
        out.extend_from_slice(line);
    }
    if !replaced {
        out.extend_from_slice(field.as_bytes());
    }
    out.extend_from_slice(rest);
    out
}

/// `Name: value\r\n`, the value RFC 2047 B-encoded (in 39-octet chunks of
/// whole characters, folded) unless it is short printable ASCII.
fn encode_field(name: &str, value: &str) -> String {
    let value: String = value.chars().filter(|c| !c.is_control()).collect();
    if value.is_ascii() && value.len() + name.len() < 76 && !value.contains("=?") {
        return format!("{name}: {value}\r\n");
    }
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in value.chars() {
        if chunk.len() + c.len_utf8() > 39 {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(c);
    }
    if !chunk.is_empty() || words.is_empty() {
        words.push(chunk);
    }
    let encoded: Vec<String> = words
        .iter()
        .map(|w| {
            format!(
                "=?utf-8?b?{}?=",
                base64::engine::general_purpose::STANDARD.encode(w.as_bytes())
            )
        })
        .collect();
    format!("{name}: {}\r\n", encoded.join("\r\n "))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn subject_of(raw: &[u8]) -> Option<String> {
        mail_parser::MessageParser::default()
            .parse(raw)
            .and_then(|m| m.subject().map(str::to_owned))
    }

    fn smime_entry(address: &str, capabilities: &[&str]) -> crate::directory::Entry {
        crate::directory::Entry {
            kind: crate::directory::Kind::Smime,
            fingerprint: "00".into(),
            subject: String::new(),
            addresses: vec![address.into()],
            domain: None,
            not_before_ms: 0,
            not_after_ms: u64::MAX,
            can_encrypt: true,
            trust: crate::directory::Trust::Manual,
            source: "test".into(),
            first_seen_ms: 0,
            last_seen_ms: 0,
            data: Vec::new(),
            capabilities: capabilities.iter().map(|c| (*c).to_owned()).collect(),
            issuers: Vec::new(),
        }
    }

    #[test]
    fn gcm_only_when_every_recipient_reads_it_or_the_domain_says_so() {
        use sealgate_api::settings::trust::SmimeCipher;
        let gcm = smime_entry("bob@a.example", &["aes256-gcm", "aes256-cbc"]);
        let cbc = smime_entry("carol@b.example", &["aes256-cbc"]);
        let unknown = smime_entry("dan@c.example", &[]);
        let none = Ciphers::new();
        assert!(smime_gcm(&[&gcm], &none));
        assert!(!smime_gcm(&[&cbc], &none));
        assert!(
            !smime_gcm(&[&unknown], &none),
            "unknown capabilities stay CBC"
        );
        assert!(
            !smime_gcm(&[&gcm, &unknown], &none),
            "one copy: GCM only if all read it"
        );
        assert!(!smime_gcm(&[], &none));
        let mut set = Ciphers::new();
        set.insert("c.example".into(), SmimeCipher::Gcm);
        set.insert("a.example".into(), SmimeCipher::Cbc);
        assert!(smime_gcm(&[&unknown], &set), "a domain set to gcm gets it");
        assert!(!smime_gcm(&[&gcm], &set), "a domain set to cbc keeps CBC");
        set.insert("b.example".into(), SmimeCipher::Auto);
        assert!(!smime_gcm(&[&cbc], &set));
    }

    #[test]
    fn replaces_a_folded_subject_and_keeps_the_rest() {
        let raw =
            b"From: a@b\r\nSubject: [secure]\r\n contract\r\nTo: c@d\r\n\r\nSubject: body line\r\n";
        let out = replace_subject(raw, "contract");
        assert_eq!(
            out,
            b"From: a@b\r\nSubject: contract\r\nTo: c@d\r\n\r\nSubject: body line\r\n".to_vec()
        );
    }

    #[test]
    fn encodes_non_ascii_and_long_subjects() {
        let raw = b"Subject: x\r\n\r\nbody\r\n";
        let long = "Grüße aus München ".repeat(8);
        let out = replace_subject(raw, &long);
        assert_eq!(subject_of(&out).as_deref(), Some(long.as_str()));
        assert!(out.split(|b| *b == b'\n').all(|l| l.len() <= 78));
        assert!(out.ends_with(b"\r\n\r\nbody\r\n"));
    }

    #[test]
    fn strips_forged_verdict_headers_only_in_the_header_section() {
        let raw = b"From: a@b\r\nx-sealgate-verdict: decrypted;\r\n signature=valid\r\nTo: c@d\r\n\r\nX-Sealgate-Verdict: body text stays\r\n";
        let out = strip_header(raw, VERDICT_HEADER).unwrap();
        assert_eq!(
            out,
            b"From: a@b\r\nTo: c@d\r\n\r\nX-Sealgate-Verdict: body text stays\r\n".to_vec()
        );
        assert_eq!(
            strip_header(b"From: a@b\r\n\r\nx\r\n", VERDICT_HEADER),
            None
        );
    }

    #[test]
    fn adds_a_missing_subject_and_drops_header_injection() {
        let out = replace_subject(b"From: a@b\r\n\r\nhi\r\n", "new\r\nBcc: evil@x");
        assert_eq!(subject_of(&out).as_deref(), Some("newBcc: evil@x"));
        assert!(!out.windows(5).any(|w| w == b"\nBcc:"));
    }

    #[test]
    fn autocrypt_keydata_is_folded_and_reads_back() {
        let cert: Vec<u8> = (0..=255u8).cycle().take(700).collect();
        let field = autocrypt_field("gateway@example.org", &cert);
        assert!(field.lines().all(|l| l.len() <= 78));
        let value = field
            .trim_start_matches("Autocrypt: ")
            .replace("\r\n ", "")
            .replace("\r\n", "");
        let keydata = value
            .split_once("keydata=")
            .map(|(_, k)| k)
            .unwrap_or_default();
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(keydata)
                .unwrap_or_default(),
            cert
        );
    }
}
