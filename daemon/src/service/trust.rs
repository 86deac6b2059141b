//! The trust model's operations: the review queue of key changes, S/MIME
//! anchors and CRLs, key discovery on demand, and what we publish.

use std::sync::Arc;

use base64::Engine as _;
use sealgate_api::ops::Done;
use sealgate_api::ops::directory::DirectoryItem;
use sealgate_api::ops::trust::{
    Anchor, AnchorsList, CrlInfo, CrlList, CrlUpload, Discovered, DiscoveryLookup, DiscoveryResult,
    KeyReview, KeyReviewDetail, PublishRecords, Published, ReviewAccept, ReviewList, ReviewReject,
    ReviewShow, WkdAnswer, WkdLookup,
};
use sealgate_api::{Actor, ServiceError};

use super::{Ctx, blocking, storage};
use crate::directory::{Entry, Kind, Trust};
use crate::trust::review::Pending;

fn view(p: &Pending) -> KeyReview {
    KeyReview {
        id: p.id.clone(),
        address: p.address.clone(),
        fingerprint: p.candidate.fingerprint.clone(),
        trust: p.candidate.trust,
        source: p.candidate.source.clone(),
        why: p.why.clone(),
        since_ms: p.since_ms,
        seen: p.seen,
        current: p.current.clone(),
    }
}

fn item(e: &Entry) -> DirectoryItem {
    DirectoryItem {
        entry: super::directory::view(e),
        armored: super::directory::armored(e),
    }
}

fn find(ctx: &Ctx, id: &str) -> Result<Pending, ServiceError> {
    ctx.trust
        .reviews
        .find(id)
        .map_err(storage)?
        .ok_or_else(|| ServiceError::NotFound {
            what: format!("key change {id} (see `review list`)"),
        })
}

pub async fn list(ctx: Arc<Ctx>, _: Actor, _: ReviewList) -> Result<Vec<KeyReview>, ServiceError> {
    blocking(move || {
        Ok(ctx
            .trust
            .reviews
            .all()
            .map_err(storage)?
            .iter()
            .map(view)
            .collect())
    })
    .await
}

pub async fn show(
    ctx: Arc<Ctx>,
    _: Actor,
    op: ReviewShow,
) -> Result<KeyReviewDetail, ServiceError> {
    blocking(move || {
        let p = find(&ctx, &op.id)?;
        let directory = ctx.queue.directory();
        let current: Vec<DirectoryItem> = directory
            .lookup(&p.address)?
            .iter()
            .filter(|e| e.kind == p.candidate.kind)
            .map(item)
            .collect();
        Ok(KeyReviewDetail {
            review: view(&p),
            candidate: item(&p.candidate),
            current,
        })
    })
    .await
}

pub async fn accept(ctx: Arc<Ctx>, actor: Actor, op: ReviewAccept) -> Result<Done, ServiceError> {
    blocking(move || {
        let p = find(&ctx, &op.id)?;
        let directory = ctx.queue.directory();
        let mut entry = p.candidate.clone();
        entry.source = format!(
            "review accepted by {} (was {}: {})",
            actor.name, entry.trust, entry.source
        );
        // An administrator vouched for it.
        entry.trust = Trust::Manual;
        let stored = directory.store(vec![entry.clone()])?;
        // The keys it replaces leave, where it covers all they served.
        let mut removed = Vec::new();
        for fp in &p.current {
            if let Some(old) = directory.get(fp)?
                && old.kind == entry.kind
                && old.fingerprint != entry.fingerprint
                && old
                    .index_keys()
                    .iter()
                    .all(|k| entry.index_keys().contains(k))
            {
                directory.remove(&old.fingerprint)?;
                removed.push(old.fingerprint);
            }
        }
        ctx.trust.reviews.remove(&p.id).map_err(storage)?;
        ctx.trust.keys_arrived(vec![p.address.clone()]);
        Ok(Done {
            text: format!(
                "key {} for {} accepted{}",
                crate::trust::short(&entry.fingerprint),
                p.address,
                if removed.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; replaced {}",
                        removed
                            .iter()
                            .map(|f| crate::trust::short(f).to_owned())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            ),
            changed: stored.into_iter().map(|e| e.fingerprint).collect(),
            ..Done::default()
        })
    })
    .await
}

pub async fn reject(ctx: Arc<Ctx>, _: Actor, op: ReviewReject) -> Result<Done, ServiceError> {
    blocking(move || {
        let p = find(&ctx, &op.id)?;
        ctx.trust.reviews.remove(&p.id).map_err(storage)?;
        // Mail that waited on the review goes with the key in use.
        ctx.trust.keys_arrived(vec![p.address.clone()]);
        Ok(Done {
            text: format!(
                "key {} for {} rejected; the current key stays in use",
                crate::trust::short(&p.candidate.fingerprint),
                p.address
            ),
            changed: vec![p.id],
            ..Done::default()
        })
    })
    .await
}

fn smime(ctx: &Ctx) -> Result<Arc<crate::smime_trust::SmimeTrust>, ServiceError> {
    let config = ctx.live.get().config.clone();
    ctx.trust
        .smime(&config)
        .map_err(|e| ServiceError::invalid("smime.trust_anchors", e))
}

pub async fn anchors(ctx: Arc<Ctx>, _: Actor, _: AnchorsList) -> Result<Vec<Anchor>, ServiceError> {
    blocking(move || {
        let trust = smime(&ctx)?;
        Ok(trust
            .anchors()
            .iter()
            .map(|c| {
                let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, c.der());
                Anchor {
                    subject: x509_parser::parse_x509_certificate(c.der())
                        .map(|(_, x)| x.subject().to_string())
                        .unwrap_or_default(),
                    fingerprint: digest.as_ref().iter().map(|b| format!("{b:02x}")).collect(),
                    not_after_ms: u64::try_from(c.not_after).unwrap_or(0).saturating_mul(1000),
                }
            })
            .collect())
    })
    .await
}

fn crl_view(c: crate::smime_trust::CrlInfo) -> CrlInfo {
    CrlInfo {
        origin: c.origin,
        issuer: c.issuer,
        this_update_ms: c.this_update_ms,
        next_update_ms: c.next_update_ms,
        revoked: c.revoked,
    }
}

pub async fn crl_list(ctx: Arc<Ctx>, _: Actor, _: CrlList) -> Result<Vec<CrlInfo>, ServiceError> {
    blocking(move || Ok(smime(&ctx)?.list().into_iter().map(crl_view).collect())).await
}

pub async fn crl_upload(ctx: Arc<Ctx>, _: Actor, op: CrlUpload) -> Result<CrlInfo, ServiceError> {
    blocking(move || {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(op.data.as_bytes())
            .map_err(|e| ServiceError::invalid("data", format!("not base64: {e}")))?;
        let trust = smime(&ctx)?;
        // Issuers the directory knows besides the anchors: intermediates
        // that came with certificates.
        let issuers: Vec<sealgate_smime::Certificate> = ctx
            .queue
            .directory()
            .all()?
            .iter()
            .flat_map(|e| e.issuers.iter())
            .filter_map(|d| sealgate_smime::Certificate::from_der(d).ok())
            .collect();
        let info = trust
            .upload(&bytes, &issuers)
            .map_err(|e| ServiceError::invalid("data", e))?;
        Ok(crl_view(info))
    })
    .await
}

pub async fn discover(
    ctx: Arc<Ctx>,
    _: Actor,
    op: DiscoveryLookup,
) -> Result<DiscoveryResult, ServiceError> {
    let address = op.address.trim().to_ascii_lowercase();
    if !address.contains('@') {
        return Err(ServiceError::invalid("address", "not a mail address"));
    }
    let config = ctx.live.get().config.clone();
    let discovery = ctx
        .trust
        .discovery(&config)
        .map_err(|e| ServiceError::invalid("discovery", e))?;
    let Some(discovery) = discovery else {
        return Ok(DiscoveryResult {
            address,
            status: "off".into(),
            found: Vec::new(),
            error: Some("no [discovery] order is set".into()),
        });
    };
    discovery.forget(&address);
    let status = discovery.lookup(&address, None).await;
    let (status_word, found, error) = match &status {
        crate::discovery::Status::Found(found) => ("found", found.to_vec(), None),
        crate::discovery::Status::Missing => ("missing", Vec::new(), None),
        crate::discovery::Status::Failed(why) => ("failed", Vec::new(), Some(why.to_string())),
        crate::discovery::Status::Pending => ("pending", Vec::new(), None),
    };
    let listed: Vec<Discovered> = found
        .iter()
        .map(|d| Discovered {
            source: crate::discovery::source_name(d.source).to_owned(),
            origin: d.origin.clone(),
            kind: d.kind,
            domain: d.domain.clone(),
        })
        .collect();
    if !found.is_empty() {
        let ctx2 = ctx.clone();
        blocking(move || {
            let now = crate::envelope::now_ms();
            let smime = ctx2.trust.smime(&config).ok();
            let entries: Vec<Entry> = found
                .iter()
                .flat_map(|d| crate::trust::resolve::discovered_entries(d, smime.as_deref(), now))
                .collect();
            let offered = crate::trust::offer::offer(
                ctx2.queue.directory(),
                &ctx2.trust.reviews,
                entries,
                &|_: &str| Vec::new(),
                None,
                now,
            )?;
            ctx2.trust.keys_arrived(offered.addresses());
            Ok(())
        })
        .await?;
    }
    Ok(DiscoveryResult {
        address,
        status: status_word.into(),
        found: listed,
        error,
    })
}

/// A key of ours to publish: for whom, which kind, its bytes.
struct Ours {
    address: String,
    kind: Kind,
    data: Vec<u8>,
}

/// Whether an entry of the directory is one we vouch for in public: an
/// administrator's import or the corporate directory's. Keys taken from
/// mail, and keys the world published, are not ours to republish.
fn vouched(e: &Entry) -> bool {
    matches!(e.trust, Trust::Manual | Trust::Ldap)
}

/// The keys we publish: the gateway's OpenPGP identity and the usable,
/// vouched-for directory entries of addresses in our domains; with
/// `only`, just those for that address.
fn published_keys(ctx: &Ctx, only: Option<&str>) -> Result<Vec<Ours>, ServiceError> {
    let config = ctx.live.get().config.clone();
    let wanted = |address: &str| only.is_none_or(|o| o.eq_ignore_ascii_case(address));
    let mut keys = Vec::new();
    if let Some(identity) = ctx.keys.current().keys().and_then(|k| k.openpgp()) {
        let addresses: Vec<String> = identity
            .email_addresses()
            .into_iter()
            .map(|a| a.to_ascii_lowercase())
            .filter(|a| wanted(a))
            .collect();
        if !addresses.is_empty() {
            let binary = identity
                .export_binary()
                .map_err(|e| ServiceError::failed(format!("gateway OpenPGP key: {e}")))?;
            for address in addresses {
                keys.push(Ours {
                    address,
                    kind: Kind::Openpgp,
                    data: binary.clone(),
                });
            }
        }
    }
    let directory = ctx.queue.directory();
    let entries = match only {
        Some(address) => directory.lookup(address)?,
        None => directory.all()?,
    };
    let now = crate::envelope::now_ms();
    for e in entries.iter().filter(|e| vouched(e) && e.usable(now)) {
        for address in e.addresses.iter().filter(|a| wanted(a)) {
            let ours = address
                .rsplit_once('@')
                .is_some_and(|(_, d)| config.is_local_domain(d));
            if ours {
                keys.push(Ours {
                    address: address.clone(),
                    kind: e.kind,
                    data: e.data.clone(),
                });
            }
        }
    }
    Ok(keys)
}

pub async fn publish(
    ctx: Arc<Ctx>,
    _: Actor,
    _: PublishRecords,
) -> Result<Vec<Published>, ServiceError> {
    blocking(move || {
        let mut out = Vec::new();
        for Ours {
            address,
            kind,
            data,
        } in published_keys(&ctx, None)?
        {
            let Some((local, domain)) = address.rsplit_once('@') else {
                continue;
            };
            let label = crate::discovery::dane::label(local);
            match kind {
                Kind::Openpgp => {
                    out.push(Published {
                        address: address.clone(),
                        kind: "OPENPGPKEY".into(),
                        name: format!("{label}._openpgpkey.{domain}."),
                        data: base64::engine::general_purpose::STANDARD.encode(&data),
                    });
                    let hash = crate::discovery::wkd::local_part_hash(local);
                    for path in [
                        format!("/.well-known/openpgpkey/{domain}/hu/{hash}"),
                        format!("/.well-known/openpgpkey/hu/{hash}"),
                    ] {
                        out.push(Published {
                            address: address.clone(),
                            kind: "WKD".into(),
                            name: path,
                            data: String::new(),
                        });
                    }
                }
                Kind::Smime => out.push(Published {
                    address: address.clone(),
                    kind: "SMIMEA".into(),
                    name: format!("{label}._smimecert.{domain}."),
                    data: format!(
                        "3 0 0 {}",
                        data.iter().map(|b| format!("{b:02X}")).collect::<String>()
                    ),
                }),
            }
        }
        Ok(out)
    })
    .await
}

/// The Web Key Directory: our published OpenPGP keys for one hashed local
/// part, or (without a hash) the policy file of one of our domains.
pub async fn wkd(ctx: Arc<Ctx>, _: Actor, op: WkdLookup) -> Result<WkdAnswer, ServiceError> {
    let not_found = || ServiceError::NotFound {
        what: "no published key".to_owned(),
    };
    let domain = op.domain.trim_end_matches('.').to_ascii_lowercase();
    if !ctx.live.get().config.is_local_domain(&domain) {
        return Err(not_found());
    }
    let Some(hash) = op.hash else {
        return Ok(WkdAnswer::default());
    };
    blocking(move || {
        let hash = hash.to_ascii_lowercase();
        // With the local part (`l=`), one directory lookup; without it,
        // every key we publish is hashed and compared.
        let only = op
            .local
            .filter(|l| crate::discovery::wkd::local_part_hash(l) == hash)
            .map(|l| format!("{}@{domain}", l.to_lowercase()));
        let mut keys = Vec::new();
        for ours in published_keys(&ctx, only.as_deref())? {
            let matches = ours.kind == Kind::Openpgp
                && ours.address.rsplit_once('@').is_some_and(|(l, d)| {
                    d == domain && crate::discovery::wkd::local_part_hash(l) == hash
                });
            if matches && !keys.contains(&ours.data) {
                keys.push(ours.data);
            }
        }
        if keys.is_empty() {
            return Err(not_found());
        }
        Ok(WkdAnswer {
            keys: base64::engine::general_purpose::STANDARD.encode(keys.concat()),
        })
    })
    .await
}
