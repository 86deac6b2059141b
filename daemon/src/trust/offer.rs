//! Offering keys to the directory: every key that turns up (imported,
//! harvested, discovered, accepted from the portal) passes the trust
//! model's judgement ([`super::judge_change`]) against the keys of the
//! same kind the directory already has for each address it serves. What
//! passes is stored; a change that must not happen silently is set aside
//! in the review queue.

use crate::directory::{Directory, DirectoryError, Entry};

use super::review::{Pending, Reviews};
use super::{Candidate, Change, Known};

/// What an offer did.
#[derive(Debug, Default)]
pub struct Offered {
    /// Stored (new, refreshed, or accepted as a change).
    pub stored: Vec<Entry>,
    /// Set aside for review (or because the address is pinned elsewhere).
    pub set_aside: Vec<Pending>,
}

impl Offered {
    /// The addresses (or `@domain`s) whose usable keys changed.
    pub fn addresses(&self) -> Vec<String> {
        let mut out: Vec<String> = self.stored.iter().flat_map(Entry::index_keys).collect();
        out.sort();
        out.dedup();
        out
    }
}

/// Offers `candidates`. `pins(address)` gives the fingerprints an address
/// (or its domain) is pinned to; `vouched_by` the fingerprint of a key
/// that vouches for the candidates (it signed the mail that carried them).
pub fn offer(
    directory: &Directory,
    reviews: &Reviews,
    candidates: Vec<Entry>,
    pins: &dyn Fn(&str) -> Vec<String>,
    vouched_by: Option<&str>,
    now_ms: u64,
) -> Result<Offered, DirectoryError> {
    let mut offered = Offered::default();
    let mut to_store = Vec::new();
    for entry in candidates {
        let candidate = Candidate {
            fingerprint: entry.fingerprint.clone(),
            level: entry.trust,
            vouched_by: vouched_by.map(str::to_owned),
        };
        let mut aside: Option<(String, Vec<String>, String)> = None;
        for key in entry.index_keys() {
            let known: Vec<Known> = directory
                .lookup(&key)?
                .into_iter()
                .filter(|e| e.kind == entry.kind)
                .map(|e| Known {
                    usable: e.usable(now_ms),
                    fingerprint: e.fingerprint,
                    level: e.trust,
                })
                .collect();
            match super::judge_change(&candidate, &known, &pins(&key)) {
                Change::Review(why) | Change::Pinned(why) => {
                    let current = known
                        .iter()
                        .filter(|k| k.usable)
                        .map(|k| k.fingerprint.clone())
                        .collect();
                    aside = Some((key, current, why));
                    break;
                }
                Change::Refresh | Change::New | Change::Accept(_) => {}
            }
        }
        match aside {
            Some((address, current, why)) => {
                tracing::info!(
                    %address,
                    fingerprint = %entry.fingerprint,
                    %why,
                    "key change set aside for review"
                );
                let pending = reviews
                    .put(&address, entry, current, &why, now_ms)
                    .map_err(DirectoryError::from)?;
                offered.set_aside.push(pending);
            }
            None => to_store.push(entry),
        }
    }
    if !to_store.is_empty() {
        offered.stored = directory.store(to_store)?;
    }
    Ok(offered)
}
