//! Passkeys (WebAuthn) as the portal's second factor, beside TOTP.
//!
//! The ceremonies (register, authenticate) are `webauthn-rs`'s: it makes
//! the challenges and verifies the authenticator's answers (signatures,
//! origin, relying party id, user verification). This module keeps their
//! state server-side between the two requests of a ceremony: in
//! `portal_codes` under `p:<SHA-256 of the ceremony id>`, with the address
//! and purpose it was started for, for [`CEREMONY_MS`], used once, at most
//! [`MAX_CEREMONIES`] live at a time. The browser only carries the
//! ceremony id and the JSON of the options and the answer.
//!
//! Relying party: id = the host of `portal.url`, origin = `portal.url`.
//!
//! Trusts: nothing the browser sends; the stored state and passkeys.

use serde::{Deserialize, Serialize};
use webauthn_rs::prelude::{
    Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Url, Uuid, Webauthn, WebauthnBuilder,
};

use sealgate_api::ServiceError;
use sealgate_api::portal::{PasskeyChallenge, PasskeyInfo};

use super::{
    Account, Enrolment, PortalAccounts, code_failed, login_failed, sha256_hex, storage, totp, unhex,
};
use crate::envelope::now_ms;

/// At most this many passkeys per account.
pub const MAX_PASSKEYS: usize = 10;
/// A passkey's name: at most this many characters.
pub const NAME_MAX: usize = 60;
/// A ceremony must end within this time.
pub const CEREMONY_MS: u64 = 5 * 60 * 1000;
/// At most this many ceremonies live at once (then: busy).
pub const MAX_CEREMONIES: usize = 1000;
/// The largest answer from the browser accepted (JSON).
pub const MAX_ANSWER: usize = 64 * 1024;
/// The TOTP enrolment a passkey enrolment replaces must still be live.
const ENROLMENT_MS: u64 = super::ENROLMENT_MS;

/// One registered passkey, in the account record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredPasskey {
    /// What the recipient called it.
    pub name: String,
    pub created_ms: u64,
    /// webauthn-rs's credential (id, public key, counter).
    pub key: Passkey,
}

/// What a ceremony was started for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Purpose {
    /// The second factor at enrolment, instead of TOTP: the TOTP
    /// enrolment's storage key, removed when the passkey is registered.
    Enrol { enrolment: String },
    /// Another passkey, from the preferences.
    Add,
    /// The second step of a login.
    Login,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Ceremony {
    address: String,
    purpose: Purpose,
    created_ms: u64,
    /// webauthn-rs's state (`PasskeyRegistration` or
    /// `PasskeyAuthentication`), as its JSON.
    state: serde_json::Value,
}

fn ceremony_key(id: &str) -> String {
    format!("p:{}", sha256_hex(id))
}

fn ceremony_failed() -> ServiceError {
    ServiceError::invalid(
        "passkey",
        "The passkey was not accepted, or this page is older than 5 minutes. Try again.",
    )
}

fn failed(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::failed(format!("passkey: {e}"))
}

/// The relying party for `portal_url`: its host is the id, the URL's
/// origin the only origin accepted.
pub fn relying_party(portal_url: &str) -> Result<Webauthn, ServiceError> {
    let url = Url::parse(portal_url).map_err(failed)?;
    // An IP address is not a valid relying party id: browsers refuse it,
    // so passkeys are not offered on such a portal.
    let host = url
        .domain()
        .ok_or_else(|| {
            failed("portal.url names no host name (an IP address is not a valid RP id)")
        })?
        .to_owned();
    WebauthnBuilder::new(&host, &url)
        .and_then(|b| b.rp_name("Sealgate secure mail").build())
        .map_err(failed)
}

/// The user handle the authenticator keeps for `address`: derived, so a
/// reset gives the same one; it names nothing by itself.
fn user_handle(address: &str) -> Uuid {
    let digest = sha256_hex(&format!("sealgate-portal-user\0{address}"));
    let mut bytes = [0u8; 16];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = digest
            .get(i * 2..i * 2 + 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .unwrap_or(0);
    }
    Uuid::from_bytes(bytes)
}

/// A passkey's id as the pages name it (base64url).
fn id_text(key: &Passkey) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.cred_id())
}

/// A name as given, checked: trimmed, no control characters, at most
/// [`NAME_MAX`] characters; empty: "Passkey".
pub fn check_name(name: &str) -> Result<String, ServiceError> {
    let name = name.trim();
    if name.chars().any(char::is_control) || name.chars().count() > NAME_MAX {
        return Err(ServiceError::invalid(
            "name",
            "A passkey's name has at most 60 characters and no control characters.",
        ));
    }
    Ok(if name.is_empty() {
        "Passkey".to_owned()
    } else {
        name.to_owned()
    })
}

fn parse_answer<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, ServiceError> {
    if json.len() > MAX_ANSWER {
        return Err(ceremony_failed());
    }
    serde_json::from_str(json).map_err(|_| ceremony_failed())
}

impl PortalAccounts {
    fn account(&self, address: &str) -> Result<Account, ServiceError> {
        Self::get::<Account>(&self.accounts, address)?.ok_or_else(|| ServiceError::NotFound {
            what: "account".into(),
        })
    }

    /// Stores a new ceremony; expired ones are removed on the way, and
    /// past [`MAX_CEREMONIES`] live ones nothing new starts.
    fn start(
        &self,
        address: &str,
        purpose: Purpose,
        state: serde_json::Value,
    ) -> Result<String, ServiceError> {
        let now = now_ms();
        let mut live = 0usize;
        let mut expired = Vec::new();
        for item in self.codes.scan_prefix(b"p:").map_err(storage)? {
            let (k, v) = item.map_err(storage)?;
            // Only what reads as a ceremony is counted or removed.
            if let Ok(c) = serde_json::from_slice::<Ceremony>(&v) {
                if now.saturating_sub(c.created_ms) <= CEREMONY_MS {
                    live += 1;
                } else {
                    expired.push(k);
                }
            }
        }
        for k in expired {
            self.codes.remove(k).map_err(storage)?;
        }
        if live >= MAX_CEREMONIES {
            return Err(ServiceError::Busy {
                what: "Too many sign-ins at once; try again in a few minutes.".into(),
            });
        }
        let id = super::new_token()?;
        Self::put(
            &self.codes,
            &ceremony_key(&id),
            &Ceremony {
                address: address.to_owned(),
                purpose,
                created_ms: now,
                state,
            },
        )?;
        Ok(id)
    }

    /// Takes a ceremony (used once): live, started for `purpose`.
    fn take(&self, id: &str, purpose: impl Fn(&Purpose) -> bool) -> Result<Ceremony, ServiceError> {
        // Taken by removing it: of two requests with one ceremony id,
        // only the one whose removal found it goes on.
        let Some(bytes) = self
            .codes
            .remove(ceremony_key(id).as_bytes())
            .map_err(storage)?
        else {
            return Err(ceremony_failed());
        };
        let c: Ceremony = serde_json::from_slice(&bytes).map_err(|_| ceremony_failed())?;
        if now_ms().saturating_sub(c.created_ms) > CEREMONY_MS || !purpose(&c.purpose) {
            return Err(ceremony_failed());
        }
        Ok(c)
    }

    fn begin_registration(
        &self,
        rp: &Webauthn,
        address: &str,
        purpose: Purpose,
    ) -> Result<PasskeyChallenge, ServiceError> {
        let account = self.account(address)?;
        if account.passkeys.len() >= MAX_PASSKEYS {
            return Err(ServiceError::invalid(
                "passkey",
                "This account has 10 passkeys, the most it can have. Remove one first.",
            ));
        }
        let exclude = account
            .passkeys
            .iter()
            .map(|p| p.key.cred_id().clone())
            .collect::<Vec<_>>();
        let (options, state) = rp
            .start_passkey_registration(user_handle(address), address, address, Some(exclude))
            .map_err(failed)?;
        let state = serde_json::to_value(&state).map_err(failed)?;
        let ceremony = self.start(address, purpose, state)?;
        Ok(PasskeyChallenge {
            ceremony,
            options: serde_json::to_string(&options).map_err(failed)?,
        })
    }

    /// Checks a registration's answer and stores the passkey; answers the
    /// address and the ceremony's purpose.
    fn finish_registration(
        &self,
        rp: &Webauthn,
        ceremony: &str,
        name: &str,
        answer: &str,
        purpose: impl Fn(&Purpose) -> bool,
    ) -> Result<(String, Purpose), ServiceError> {
        let name = check_name(name)?;
        let c = self.take(ceremony, purpose)?;
        let answer: RegisterPublicKeyCredential = parse_answer(answer)?;
        let state: PasskeyRegistration =
            serde_json::from_value(c.state).map_err(|_| ceremony_failed())?;
        let key = rp
            .finish_passkey_registration(&answer, &state)
            .map_err(|e| {
                tracing::info!(address = %c.address, error = %e, "portal: passkey registration refused");
                ceremony_failed()
            })?;
        let mut account = self.account(&c.address)?;
        if account.passkeys.len() >= MAX_PASSKEYS {
            return Err(ceremony_failed());
        }
        if account
            .passkeys
            .iter()
            .any(|p| p.key.cred_id() == key.cred_id())
        {
            return Err(ceremony_failed());
        }
        account.passkeys.push(StoredPasskey {
            name,
            created_ms: now_ms(),
            key,
        });
        Self::put(&self.accounts, &c.address, &account)?;
        Ok((c.address, c.purpose))
    }

    /// The second factor at enrolment as a passkey: the ceremony for the
    /// address of a live TOTP enrolment (which the passkey replaces).
    pub fn begin_enrol_passkey(
        &self,
        rp: &Webauthn,
        enrolment: &str,
    ) -> Result<PasskeyChallenge, ServiceError> {
        let key = format!("e:{}", sha256_hex(enrolment));
        let Some(e) = Self::get::<Enrolment>(&self.sessions, &key)? else {
            return Err(code_failed());
        };
        if now_ms().saturating_sub(e.created_ms) > ENROLMENT_MS {
            return Err(code_failed());
        }
        self.begin_registration(rp, &e.address, Purpose::Enrol { enrolment: key })
    }

    /// Ends an enrolment with a passkey: the TOTP enrolment is void and
    /// the session begins. Answers the address and the session id.
    pub fn finish_enrol_passkey(
        &self,
        rp: &Webauthn,
        ceremony: &str,
        name: &str,
        answer: &str,
    ) -> Result<(String, String), ServiceError> {
        let (address, purpose) = self.finish_registration(rp, ceremony, name, answer, |p| {
            matches!(p, Purpose::Enrol { .. })
        })?;
        if let Purpose::Enrol { enrolment } = purpose {
            self.sessions
                .remove(enrolment.as_bytes())
                .map_err(storage)?;
        }
        let session = self.open_session(&address)?;
        Ok((address, session))
    }

    /// Another passkey for the account of `address` (a live session's).
    pub fn begin_add_passkey(
        &self,
        rp: &Webauthn,
        address: &str,
    ) -> Result<PasskeyChallenge, ServiceError> {
        self.begin_registration(rp, address, Purpose::Add)
    }

    /// Stores the passkey of an add ceremony started for `address`.
    pub fn finish_add_passkey(
        &self,
        rp: &Webauthn,
        address: &str,
        ceremony: &str,
        name: &str,
        answer: &str,
    ) -> Result<(), ServiceError> {
        // The ceremony must be this address's: checked before it counts.
        let key = ceremony_key(ceremony);
        match Self::get::<Ceremony>(&self.codes, &key)? {
            Some(c) if c.address == address => {}
            _ => return Err(ceremony_failed()),
        }
        self.finish_registration(rp, ceremony, name, answer, |p| *p == Purpose::Add)
            .map(|_| ())
    }

    /// The second step of a login (after the right password): a
    /// challenge for the account's passkeys.
    pub fn begin_login(
        &self,
        rp: &Webauthn,
        address: &str,
    ) -> Result<PasskeyChallenge, ServiceError> {
        let account = self.account(address)?;
        let keys: Vec<Passkey> = account.passkeys.iter().map(|p| p.key.clone()).collect();
        let (options, state) = rp.start_passkey_authentication(&keys).map_err(failed)?;
        let state = serde_json::to_value(&state).map_err(failed)?;
        let ceremony = self.start(address, Purpose::Login, state)?;
        Ok(PasskeyChallenge {
            ceremony,
            options: serde_json::to_string(&options).map_err(failed)?,
        })
    }

    /// Checks the passkey's answer to a login's challenge; a session
    /// begins. A refused answer counts as a failed login (lockout) and
    /// gives [`login_failed`]. Answers the address and the session id.
    pub fn finish_login(
        &self,
        rp: &Webauthn,
        ceremony: &str,
        answer: &str,
        lockout: (u32, u64),
    ) -> Result<(String, String), ServiceError> {
        let (c, mut account, now) = self.login_step(ceremony)?;
        let checked = parse_answer::<PublicKeyCredential>(answer)
            .ok()
            .zip(serde_json::from_value::<PasskeyAuthentication>(c.state).ok())
            .and_then(|(answer, state)| {
                rp.finish_passkey_authentication(&answer, &state)
                    .map_err(|e| {
                        tracing::info!(address = %c.address, error = %e, "portal: passkey refused");
                    })
                    .ok()
            });
        let Some(result) = checked else {
            return self.refuse_login(&c.address, account, now, lockout);
        };
        for p in &mut account.passkeys {
            p.key.update_credential(&result);
        }
        account.failures = 0;
        Self::put(&self.accounts, &c.address, &account)?;
        let session = self.open_session(&c.address)?;
        Ok((c.address, session))
    }

    /// A login's second step begins: its ceremony taken (used once), the
    /// account read and not locked; every refusal is [`login_failed`].
    fn login_step(&self, ceremony: &str) -> Result<(Ceremony, Account, u64), ServiceError> {
        let c = self
            .take(ceremony, |p| *p == Purpose::Login)
            .map_err(|_| login_failed())?;
        let account = self.account(&c.address).map_err(|_| login_failed())?;
        let now = now_ms();
        if account.locked_until_ms > now {
            return Err(login_failed());
        }
        Ok((c, account, now))
    }

    /// The second step of a login with the TOTP code instead of the
    /// passkey (an account with both; works without JavaScript): as
    /// [`Self::finish_login`].
    pub fn finish_login_totp(
        &self,
        ceremony: &str,
        code: &str,
        lockout: (u32, u64),
    ) -> Result<(String, String), ServiceError> {
        let (c, mut account, now) = self.login_step(ceremony)?;
        let step = account
            .totp_secret
            .as_deref()
            .and_then(unhex)
            .and_then(|secret| totp::verify(&secret, code, now / 1000, account.totp_last_step));
        let Some(step) = step else {
            return self.refuse_login(&c.address, account, now, lockout);
        };
        account.totp_last_step = step;
        account.failures = 0;
        Self::put(&self.accounts, &c.address, &account)?;
        let session = self.open_session(&c.address)?;
        Ok((c.address, session))
    }

    /// A refused second step: counts towards the lockout.
    fn refuse_login<T>(
        &self,
        address: &str,
        mut account: Account,
        now: u64,
        lockout: (u32, u64),
    ) -> Result<T, ServiceError> {
        account.failures += 1;
        if account.failures >= lockout.0 {
            account.failures = 0;
            account.locked_until_ms = now.saturating_add(lockout.1.saturating_mul(1000));
            tracing::info!(address = %address, "portal account locked after failed logins");
        }
        Self::put(&self.accounts, address, &account)?;
        Err(login_failed())
    }

    /// The account's passkeys, oldest first, and whether it has TOTP.
    pub fn passkeys(&self, address: &str) -> Result<(Vec<PasskeyInfo>, bool), ServiceError> {
        let Some(account) = Self::get::<Account>(&self.accounts, address)? else {
            return Ok((Vec::new(), false));
        };
        let list = account
            .passkeys
            .iter()
            .map(|p| PasskeyInfo {
                id: id_text(&p.key),
                name: p.name.clone(),
                created_ms: p.created_ms,
            })
            .collect();
        Ok((list, account.totp_secret.is_some()))
    }

    /// Removes one of the account's passkeys (by its id); refused where it
    /// is the last second factor and `required`. Answers its name.
    pub fn remove_passkey(
        &self,
        address: &str,
        id: &str,
        required: bool,
    ) -> Result<String, ServiceError> {
        let mut account = self.account(address)?;
        let Some(at) = account.passkeys.iter().position(|p| id_text(&p.key) == id) else {
            return Err(ServiceError::NotFound {
                what: "passkey".into(),
            });
        };
        if required && account.totp_secret.is_none() && account.passkeys.len() == 1 {
            return Err(ServiceError::invalid(
                "passkey",
                "This is your only second factor, and your domain requires one: add another passkey before removing this one.",
            ));
        }
        let removed = account.passkeys.remove(at);
        Self::put(&self.accounts, address, &account)?;
        Ok(removed.name)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::super::Outcome;
    use super::*;

    fn accounts() -> (std::path::PathBuf, PortalAccounts) {
        let n: u64 = rand::random();
        let dir = std::env::temp_dir().join(format!("sealgate-portal-pk-{n:x}"));
        let db = crate::db::Db::open(&dir).unwrap();
        let shared: std::sync::Arc<dyn crate::store::SharedStore> =
            std::sync::Arc::new(crate::store::SledStore::new(&db));
        (dir, PortalAccounts::open(&shared))
    }

    const GOOD: &str = "violet staple gravel orbit";

    #[test]
    fn the_relying_party_is_the_portal_host_name() {
        assert!(relying_party("https://mail.example.org").is_ok());
        assert!(relying_party("https://localhost:8443").is_ok());
        assert!(relying_party("https://127.0.0.1:8443").is_err());
        assert!(relying_party("https://[::1]:8443").is_err());
        assert!(relying_party("not a url").is_err());
    }

    #[test]
    fn a_record_without_passkeys_still_reads() {
        let old = r#"{"address":"dan@ext.example","password_hash":"x","totp_secret":null,
            "totp_last_step":0,"failures":0,"locked_until_ms":0,"created_ms":1}"#;
        let account: Account = serde_json::from_str(old).unwrap();
        assert!(account.passkeys.is_empty());
        // And one without passkeys is written as before.
        assert!(
            !serde_json::to_string(&account)
                .unwrap()
                .contains("passkeys")
        );
    }

    /// A stored credential (webauthn-rs-core's own test vector, P-256).
    fn a_passkey(name: &str) -> StoredPasskey {
        let json = r#"{"cred":{"cred_id":"uZcVDBVS68E_MtAgeQpElJxldF_6cY9sSvbWqx_qRh8wiu42lyRBRmh5yFeD_r9k130dMbFHBHI9RTFgdJQIzQ","cred":{"type_":"ES256","key":{"EC_EC2":{"curve":"SECP256R1","x":[194,126,127,109,252,23,131,21,252,6,223,99,44,254,140,27,230,17,94,5,133,28,104,41,144,69,171,149,161,26,200,243],"y":[143,123,183,156,24,178,21,248,117,159,162,69,171,52,188,252,26,59,6,47,103,92,19,58,117,103,249,0,219,8,95,196]}}},"counter":2,"user_verified":true,"backup_eligible":false,"backup_state":false,"registration_policy":"required","extensions":{"cred_protect":"NotRequested","hmac_create_secret":"NotRequested"},"attestation":{"data":"None","metadata":"None"},"attestation_format":"None"}}"#;
        StoredPasskey {
            name: name.to_owned(),
            created_ms: 1,
            key: serde_json::from_str(json).unwrap(),
        }
    }

    /// An account for dan with `keys` passkeys (no TOTP).
    fn with_passkeys(a: &PortalAccounts, keys: usize) {
        let code = a.new_code("dan@ext.example").unwrap().unwrap().code;
        a.enrol("dan@ext.example", &code, GOOD, false).unwrap();
        let mut account = a.account("dan@ext.example").unwrap();
        account.passkeys = (0..keys).map(|i| a_passkey(&format!("key {i}"))).collect();
        PortalAccounts::put(&a.accounts, "dan@ext.example", &account).unwrap();
    }

    #[test]
    fn an_account_with_passkeys_needs_one_after_the_password() {
        let (dir, a) = accounts();
        let rp = relying_party("https://localhost:8443").unwrap();
        with_passkeys(&a, 1);
        // The record with a passkey reads back.
        let (list, totp) = a.passkeys("dan@ext.example").unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].name, "key 0");
        assert!(!totp);
        // The right password leads to the passkey step, never to a
        // session; a code does not stand in for the passkey.
        for code in [None, Some("123456")] {
            let outcome = a
                .login("dan@ext.example", GOOD, code, true, (9, 60))
                .unwrap();
            assert_eq!(
                outcome,
                Outcome::Passkey {
                    address: "dan@ext.example".into(),
                    totp: false
                }
            );
        }
        assert!(
            a.login("dan@ext.example", "wrong", None, true, (9, 60))
                .is_err()
        );
        // The challenge names the credential; a junk answer is refused
        // and counts as a failed login.
        let challenge = a.begin_login(&rp, "dan@ext.example").unwrap();
        assert!(challenge.options.contains("uZcVDBVS68E_MtAgeQpElJxldF_6"));
        let before = a.account("dan@ext.example").unwrap().failures;
        assert_eq!(
            a.finish_login(&rp, &challenge.ceremony, r#"{"id":"x"}"#, (9, 60))
                .unwrap_err(),
            login_failed()
        );
        assert_eq!(a.account("dan@ext.example").unwrap().failures, before + 1);
        // Used up: the same ceremony does not answer twice.
        assert!(
            a.finish_login(&rp, &challenge.ceremony, "{}", (9, 60))
                .is_err()
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn with_totp_as_well_the_code_ends_the_second_step() {
        let (dir, a) = accounts();
        let rp = relying_party("https://localhost:8443").unwrap();
        with_passkeys(&a, 1);
        let secret = totp::new_secret();
        let mut account = a.account("dan@ext.example").unwrap();
        account.totp_secret = Some(crate::accounts::hex(&secret));
        PortalAccounts::put(&a.accounts, "dan@ext.example", &account).unwrap();
        // Without a code: the passkey step, saying TOTP works too.
        let outcome = a
            .login("dan@ext.example", GOOD, None, true, (9, 60))
            .unwrap();
        assert!(matches!(outcome, Outcome::Passkey { totp: true, .. }));
        let challenge = a.begin_login(&rp, "dan@ext.example").unwrap();
        // A wrong code is refused and counts; the ceremony is used up.
        assert!(
            a.finish_login_totp(&challenge.ceremony, "000000", (9, 60))
                .is_err()
        );
        assert_eq!(a.account("dan@ext.example").unwrap().failures, 1);
        let now = now_ms() / 1000;
        let code = format!("{:06}", totp::code(&secret, now / totp::STEP));
        assert!(
            a.finish_login_totp(&challenge.ceremony, &code, (9, 60))
                .is_err()
        );
        // A new step with the right code: a session; the code is not
        // accepted twice.
        let challenge = a.begin_login(&rp, "dan@ext.example").unwrap();
        let (address, session) = a
            .finish_login_totp(&challenge.ceremony, &code, (9, 60))
            .unwrap();
        assert_eq!(a.session(&session).unwrap(), address);
        assert_eq!(a.account("dan@ext.example").unwrap().failures, 0);
        let challenge = a.begin_login(&rp, "dan@ext.example").unwrap();
        assert!(
            a.finish_login_totp(&challenge.ceremony, &code, (9, 60))
                .is_err()
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn limits_last_factor_and_reset() {
        let (dir, a) = accounts();
        let rp = relying_party("https://localhost:8443").unwrap();
        with_passkeys(&a, MAX_PASSKEYS);
        assert!(a.begin_add_passkey(&rp, "dan@ext.example").is_err());
        let id = a.passkeys("dan@ext.example").unwrap().0[0].id.clone();
        // Nine of the same test credential remain after one removal.
        assert_eq!(
            a.remove_passkey("dan@ext.example", &id, true).unwrap(),
            "key 0"
        );
        assert!(a.begin_add_passkey(&rp, "dan@ext.example").is_ok());
        let mut account = a.account("dan@ext.example").unwrap();
        account.passkeys.truncate(1);
        PortalAccounts::put(&a.accounts, "dan@ext.example", &account).unwrap();
        // The last second factor of a domain that requires one stays.
        assert!(matches!(
            a.remove_passkey("dan@ext.example", &id, true),
            Err(ServiceError::Invalid { .. })
        ));
        assert!(matches!(
            a.remove_passkey("dan@ext.example", "unknown", false),
            Err(ServiceError::NotFound { .. })
        ));
        // A reset (new code, new password) clears the passkeys and asks
        // for the second factor again.
        a.codes.remove(b"dan@ext.example").unwrap();
        let code = a.new_code("dan@ext.example").unwrap().unwrap().code;
        let outcome = a
            .enrol("dan@ext.example", &code, "amber lantern cobalt fjord", true)
            .unwrap();
        assert!(matches!(outcome, Outcome::EnrolTotp { .. }));
        assert!(a.passkeys("dan@ext.example").unwrap().0.is_empty());
        assert!(a.remove_passkey("dan@ext.example", &id, false).is_err());
        // Where no second factor is required, the last one goes.
        let mut account = a.account("dan@ext.example").unwrap();
        account.passkeys = vec![a_passkey("only")];
        PortalAccounts::put(&a.accounts, "dan@ext.example", &account).unwrap();
        assert_eq!(
            a.remove_passkey("dan@ext.example", &id, false).unwrap(),
            "only"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn unknown_expired_and_misused_ceremonies_are_refused() {
        let (dir, a) = accounts();
        let rp = relying_party("https://localhost:8443").unwrap();
        let code = a.new_code("dan@ext.example").unwrap().unwrap().code;
        let Outcome::EnrolTotp { enrolment, .. } =
            a.enrol("dan@ext.example", &code, GOOD, true).unwrap()
        else {
            panic!("no enrolment");
        };
        // Unknown ceremony, unknown enrolment.
        assert!(a.finish_enrol_passkey(&rp, "nope", "Laptop", "{}").is_err());
        assert!(a.begin_enrol_passkey(&rp, "nope").is_err());
        let challenge = a.begin_enrol_passkey(&rp, &enrolment).unwrap();
        assert!(challenge.options.contains("\"localhost\""));
        // A login ceremony id does not finish an enrolment, nor the
        // reverse; a used ceremony is gone.
        assert!(
            a.finish_login(&rp, &challenge.ceremony, "{}", (9, 60))
                .is_err()
        );
        assert!(
            a.finish_enrol_passkey(&rp, &challenge.ceremony, "Laptop", "{}")
                .is_err()
        );
        // An expired one is refused even with its id.
        let challenge = a.begin_enrol_passkey(&rp, &enrolment).unwrap();
        let key = ceremony_key(&challenge.ceremony);
        let mut c: Ceremony = PortalAccounts::get(&a.codes, &key).unwrap().unwrap();
        c.created_ms = now_ms() - CEREMONY_MS - 1;
        PortalAccounts::put(&a.codes, &key, &c).unwrap();
        assert!(a.take(&challenge.ceremony, |_| true).is_err());
        // Another address's add ceremony is refused before it is used.
        let add = a.begin_add_passkey(&rp, "dan@ext.example").unwrap();
        assert!(
            a.finish_add_passkey(&rp, "eve@ext.example", &add.ceremony, "x", "{}")
                .is_err()
        );
        assert!(
            PortalAccounts::get::<Ceremony>(&a.codes, &ceremony_key(&add.ceremony))
                .unwrap()
                .is_some()
        );
        // Names are bounded; an oversized answer is refused unread.
        assert!(check_name(&"x".repeat(NAME_MAX + 1)).is_err());
        assert!(check_name("a\u{7}b").is_err());
        assert_eq!(check_name("  ").unwrap(), "Passkey");
        assert!(parse_answer::<serde_json::Value>(&" ".repeat(MAX_ANSWER + 1)).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
