//! `backup.create` and `backup.restore`: the shared state that makes a
//! gateway this gateway (every settings version, the key directory and
//! its reviews, the accounts, the OpenPGP identity's metadata), sealed
//! with a passphrase.
//!
//! Not in a backup: private keys (they never leave the token: the HSM is
//! backed up by its own means, see docs/ARCHITECTURE.md), the queue and
//! tracking (each node's own disk), the audit log (it stays with the
//! node that wrote it), web sessions.
//!
//! The file: `SGBK1\n`, the Argon2id costs (m KiB, t, p: u32 big-endian
//! each), a 16-byte salt, a 12-byte nonce, then AES-256-GCM of the JSON
//! contents with everything before it as associated data. The key is
//! Argon2id(passphrase, salt) at 64 MiB, 3 passes.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use sealgate_api::ops::backup::{BackupCreate, BackupFile, BackupRestore, BackupSummary};
use sealgate_api::{Actor, ServiceError};
use serde::{Deserialize, Serialize};

use super::{Ctx, blocking, storage};
use crate::store::Space;

const MAGIC: &[u8] = b"SGBK1\n";
const FORMAT: &str = "sealgate-backup";
const M_COST_KIB: u32 = 64 * 1024;
const T_COST: u32 = 3;
const P_COST: u32 = 1;
/// Costs a restore accepts at most (a forged header must not make the
/// gateway spend gigabytes or minutes).
const MAX_M_COST_KIB: u32 = 1024 * 1024;
const MAX_T_COST: u32 = 16;
const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 12;
const HEADER_LEN: usize = 6 + 12 + SALT_LEN + NONCE_LEN;
/// The most one space may hold in a backup (a runaway store is refused).
const SCAN_LIMIT: usize = 10_000_000;

/// The spaces a backup carries, in restore order.
const SPACES: [Space; 5] = [
    Space::Settings,
    Space::Directory,
    Space::DirectoryIndex,
    Space::Reviews,
    Space::Accounts,
];

/// The decrypted contents.
#[derive(Serialize, Deserialize)]
struct Contents {
    format: String,
    version: u32,
    summary: BackupSummary,
    /// Space name → [key, value] pairs, base64.
    spaces: BTreeMap<String, Vec<(String, String)>>,
    /// Path under the data directory → contents, base64.
    files: BTreeMap<String, String>,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(what: &str, text: &str) -> Result<Vec<u8>, ServiceError> {
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| ServiceError::invalid(what, "not base64"))
}

fn check_passphrase(passphrase: &str) -> Result<(), ServiceError> {
    if passphrase.chars().count() < 12 {
        return Err(ServiceError::invalid(
            "passphrase",
            "At least 12 characters: the backup holds the accounts' password hashes.",
        ));
    }
    Ok(())
}

fn derive(passphrase: &str, salt: &[u8], m: u32, t: u32, p: u32) -> Result<[u8; 32], ServiceError> {
    let params = argon2::Params::new(m, t, p, Some(32))
        .map_err(|e| ServiceError::invalid("data", format!("the backup's key costs: {e}")))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = [0u8; 32];
    argon
        .hash_password_into(passphrase.as_bytes(), salt, &mut key)
        .map_err(|e| ServiceError::failed(format!("key derivation: {e}")))?;
    Ok(key)
}

fn aead_key(key: &[u8; 32]) -> Result<aws_lc_rs::aead::LessSafeKey, ServiceError> {
    let unbound = aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, key)
        .map_err(|_| ServiceError::failed("AES-256-GCM key"))?;
    Ok(aws_lc_rs::aead::LessSafeKey::new(unbound))
}

/// Seals `plain` under `passphrase`.
pub fn seal(passphrase: &str, plain: &[u8]) -> Result<Vec<u8>, ServiceError> {
    let mut salt = [0u8; SALT_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| ServiceError::failed("random salt"))?;
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| ServiceError::failed("random nonce"))?;
    let mut out = Vec::with_capacity(HEADER_LEN + plain.len() + 16);
    out.extend_from_slice(MAGIC);
    for n in [M_COST_KIB, T_COST, P_COST] {
        out.extend_from_slice(&n.to_be_bytes());
    }
    out.extend_from_slice(&salt);
    out.extend_from_slice(&nonce);
    let key = aead_key(&derive(passphrase, &salt, M_COST_KIB, T_COST, P_COST)?)?;
    let mut body = plain.to_vec();
    key.seal_in_place_append_tag(
        aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce),
        aws_lc_rs::aead::Aad::from(out.as_slice()),
        &mut body,
    )
    .map_err(|_| ServiceError::failed("AES-256-GCM sealing"))?;
    out.extend_from_slice(&body);
    Ok(out)
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

/// Opens a sealed backup; a wrong passphrase and an altered file are
/// the same answer (GCM cannot tell them apart).
pub fn open(passphrase: &str, sealed: &[u8]) -> Result<Vec<u8>, ServiceError> {
    let not_backup = || ServiceError::invalid("data", "not a Sealgate backup");
    if sealed.len() < HEADER_LEN + 16 || !sealed.starts_with(MAGIC) {
        return Err(not_backup());
    }
    let (m, t, p) = (
        u32_at(sealed, 6).ok_or_else(not_backup)?,
        u32_at(sealed, 10).ok_or_else(not_backup)?,
        u32_at(sealed, 14).ok_or_else(not_backup)?,
    );
    if m > MAX_M_COST_KIB || t > MAX_T_COST || p > 16 {
        return Err(ServiceError::invalid(
            "data",
            "the backup asks for more key-derivation work than a restore allows",
        ));
    }
    let (header, body) = sealed.split_at(HEADER_LEN);
    let salt = header.get(18..18 + SALT_LEN).ok_or_else(not_backup)?;
    let nonce: [u8; NONCE_LEN] = header
        .get(18 + SALT_LEN..HEADER_LEN)
        .and_then(|n| n.try_into().ok())
        .ok_or_else(not_backup)?;
    let key = aead_key(&derive(passphrase, salt, m, t, p)?)?;
    let mut body = body.to_vec();
    let plain = key
        .open_in_place(
            aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce),
            aws_lc_rs::aead::Aad::from(header),
            &mut body,
        )
        .map_err(|_| {
            ServiceError::invalid(
                "passphrase",
                "The backup does not open with this passphrase (or it was altered).",
            )
        })?;
    Ok(plain.to_vec())
}

/// The OpenPGP identity's metadata files (`openpgp/*.toml`; no key material).
fn openpgp_files(ctx: &Ctx) -> Result<BTreeMap<String, String>, ServiceError> {
    let dir = ctx.live.bootstrap().data_dir.join("openpgp");
    let mut files = BTreeMap::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(files),
        Err(e) => return Err(ServiceError::failed(format!("{}: {e}", dir.display()))),
    };
    for entry in entries {
        let entry = entry.map_err(|e| ServiceError::failed(format!("{}: {e}", dir.display())))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if path.is_file() && (name.ends_with(".toml") || name.ends_with(".asc")) {
            let bytes = std::fs::read(&path)
                .map_err(|e| ServiceError::failed(format!("{}: {e}", path.display())))?;
            files.insert(format!("openpgp/{name}"), b64(&bytes));
        }
    }
    Ok(files)
}

fn make(ctx: &Ctx, passphrase: &str) -> Result<BackupFile, ServiceError> {
    check_passphrase(passphrase)?;
    let mut spaces = BTreeMap::new();
    for space in SPACES {
        let pairs = ctx
            .shared
            .range(space, &[], None, false, SCAN_LIMIT)
            .map_err(storage)?;
        spaces.insert(
            space.name().to_owned(),
            pairs
                .iter()
                .map(|(k, v)| (b64(k), b64(v)))
                .collect::<Vec<_>>(),
        );
    }
    let count = |s: Space| spaces.get(s.name()).map_or(0, Vec::len);
    let files = openpgp_files(ctx)?;
    let node = ctx.live.bootstrap().node_name.clone();
    let created_ms = crate::envelope::now_ms();
    let summary = BackupSummary {
        created_ms,
        node: node.clone(),
        settings_versions: count(Space::Settings),
        settings_version: ctx
            .settings
            .current()
            .map_err(storage)?
            .map_or(0, |v| v.meta.version),
        directory_entries: count(Space::Directory),
        accounts: count(Space::Accounts),
        reviews: count(Space::Reviews),
        openpgp_files: files.len(),
    };
    let contents = Contents {
        format: FORMAT.to_owned(),
        version: 1,
        summary: summary.clone(),
        spaces,
        files,
    };
    let plain = serde_json::to_vec(&contents)
        .map_err(|e| ServiceError::failed(format!("backup contents: {e}")))?;
    let sealed = seal(passphrase, &plain)?;
    let stamp = crate::util::iso8601_ms(created_ms);
    let date = stamp.get(..10).unwrap_or("undated");
    let safe: String = node
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok(BackupFile {
        name: format!("sealgate-backup-{safe}-{date}.sgbk"),
        data: b64(&sealed),
        summary,
    })
}

pub async fn create(ctx: Arc<Ctx>, _: Actor, op: BackupCreate) -> Result<BackupFile, ServiceError> {
    blocking(move || make(&ctx, &op.passphrase)).await
}

fn restore_now(ctx: &Ctx, op: &BackupRestore) -> Result<BackupSummary, ServiceError> {
    let sealed = unb64("data", &op.data)?;
    let plain = open(&op.passphrase, &sealed)?;
    let contents: Contents = serde_json::from_slice(&plain)
        .map_err(|e| ServiceError::invalid("data", format!("the backup's contents: {e}")))?;
    if contents.format != FORMAT || contents.version != 1 {
        return Err(ServiceError::invalid(
            "data",
            format!(
                "backup format {} {} is not known here",
                contents.format, contents.version
            ),
        ));
    }
    // Decode everything first: a broken backup changes nothing.
    let mut decoded: Vec<(Space, crate::store::Pairs)> = Vec::new();
    for space in SPACES {
        let pairs = contents
            .spaces
            .get(space.name())
            .cloned()
            .unwrap_or_default();
        let mut out = Vec::with_capacity(pairs.len());
        for (k, v) in &pairs {
            out.push((unb64("data", k)?, unb64("data", v)?));
        }
        decoded.push((space, out));
    }
    let newest = decoded
        .iter()
        .find(|(s, _)| *s == Space::Settings)
        .and_then(|(_, pairs)| pairs.last())
        .ok_or_else(|| ServiceError::invalid("data", "the backup holds no settings"))?;
    let newest: sealgate_api::ops::settings::SettingsVersion = serde_json::from_slice(&newest.1)
        .map_err(|e| ServiceError::invalid("data", format!("the newest settings version: {e}")))?;
    // The settings must run on this node before anything is replaced.
    let runtime = ctx
        .live
        .build(newest.meta.version, &newest.settings)
        .map_err(|errors| ServiceError::Invalid { errors })?;
    let mut files = Vec::new();
    for (name, data) in &contents.files {
        let file = name
            .strip_prefix("openpgp/")
            .filter(|f| !f.is_empty() && !f.contains('/') && !f.starts_with('.'))
            .ok_or_else(|| ServiceError::invalid("data", format!("unexpected file {name}")))?;
        files.push((file.to_owned(), unb64("data", data)?));
    }
    // Replace, space by space.
    for (space, pairs) in &decoded {
        let old = ctx
            .shared
            .range(*space, &[], None, false, SCAN_LIMIT)
            .map_err(storage)?;
        for (k, _) in old {
            ctx.shared.remove(*space, &k).map_err(storage)?;
        }
        for (k, v) in pairs {
            ctx.shared.put(*space, k, v).map_err(storage)?;
        }
    }
    // Every session ends (the accounts they belonged to were replaced).
    for (k, _) in ctx
        .shared
        .range(Space::Sessions, &[], None, false, SCAN_LIMIT)
        .map_err(storage)?
    {
        ctx.shared.remove(Space::Sessions, &k).map_err(storage)?;
    }
    for (k, _) in ctx
        .shared
        .range(Space::Setup, &[], None, false, SCAN_LIMIT)
        .map_err(storage)?
    {
        ctx.shared.remove(Space::Setup, &k).map_err(storage)?;
    }
    ctx.shared.flush().map_err(storage)?;
    let data_dir = &ctx.live.bootstrap().data_dir;
    if !files.is_empty() {
        let dir = data_dir.join("openpgp");
        std::fs::create_dir_all(&dir)
            .map_err(|e| ServiceError::failed(format!("{}: {e}", dir.display())))?;
        for (name, bytes) in &files {
            let path = dir.join(name);
            std::fs::write(&path, bytes)
                .map_err(|e| ServiceError::failed(format!("{}: {e}", path.display())))?;
        }
    }
    ctx.live.install(runtime);
    // A gateway restored during its wizard is set up: its accounts came back.
    if !ctx.setup.state().completed {
        crate::setup_token::complete(data_dir)
            .map_err(|e| ServiceError::failed(format!("the setup token was not burned: {e}")))?;
    }
    tracing::info!(
        version = newest.meta.version,
        from = %contents.summary.node,
        "backup restored"
    );
    Ok(contents.summary)
}

pub async fn restore(
    ctx: Arc<Ctx>,
    _: Actor,
    op: BackupRestore,
) -> Result<BackupSummary, ServiceError> {
    let store = ctx.clone();
    let summary = blocking(move || restore_now(&store, &op)).await?;
    ctx.keys.reload().await;
    Ok(summary)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn sealed_backups_open_with_their_passphrase_only() {
        let sealed = seal("correct horse battery", b"{\"x\":1}").unwrap();
        assert_eq!(
            open("correct horse battery", &sealed).unwrap(),
            b"{\"x\":1}"
        );
        assert!(matches!(
            open("wrong horse battery!", &sealed),
            Err(ServiceError::Invalid { .. })
        ));
        let mut altered = sealed.clone();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert!(open("correct horse battery", &altered).is_err());
        // The costs are covered by the tag: lowering them is noticed.
        let mut cheaper = sealed.clone();
        cheaper[9] = 0x80;
        assert!(open("correct horse battery", &cheaper).is_err());
        assert!(open("correct horse battery", b"SGBK1\nshort").is_err());
    }
}
