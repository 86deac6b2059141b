//! Failed attempts per client address (logins, setup tokens), with
//! growing delays: after `free` failures an address must wait 1 s, then
//! 2 s, 4 s … up to 15 minutes before its next attempt is even looked at.
//! A success clears the address. The admin service throttles per account
//! on top of this (shared by every node); this table is per node and in
//! memory, bounded in size (the oldest entries go first).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most addresses remembered at once.
const MAX_ENTRIES: usize = 10_000;
/// The longest wait.
const MAX_DELAY: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    until: Instant,
    last: Instant,
}

/// One table of failures by address.
pub struct Throttle {
    free: u32,
    entries: Mutex<HashMap<IpAddr, Entry>>,
}

impl Throttle {
    /// `free` failures are allowed before delays begin.
    pub fn new(free: u32) -> Throttle {
        Throttle {
            free,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `Err(wait)` when the address must wait before trying again.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        match self.lock().get(&ip) {
            Some(e) if e.until > now => Err(e.until - now),
            _ => Ok(()),
        }
    }

    /// Records a failure; returns the wait it now imposes.
    pub fn failed(&self, ip: IpAddr) -> Duration {
        let now = Instant::now();
        let mut entries = self.lock();
        if entries.len() >= MAX_ENTRIES
            && !entries.contains_key(&ip)
            && let Some(oldest) = entries.iter().min_by_key(|(_, e)| e.last).map(|(k, _)| *k)
        {
            entries.remove(&oldest);
        }
        let entry = entries.entry(ip).or_insert(Entry {
            failures: 0,
            until: now,
            last: now,
        });
        entry.failures = entry.failures.saturating_add(1);
        entry.last = now;
        let wait = if entry.failures <= self.free {
            Duration::ZERO
        } else {
            let doublings = (entry.failures - self.free - 1).min(20);
            Duration::from_secs(1u64 << doublings).min(MAX_DELAY)
        };
        entry.until = now + wait;
        wait
    }

    /// A success: the address starts afresh.
    pub fn succeeded(&self, ip: IpAddr) {
        self.lock().remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_a_success_clears_them() {
        let t = Throttle::new(3);
        let ip: IpAddr = [127, 0, 0, 9].into();
        for _ in 0..3 {
            assert_eq!(t.failed(ip), Duration::ZERO);
            assert!(t.check(ip).is_ok());
        }
        assert_eq!(t.failed(ip), Duration::from_secs(1));
        assert!(t.check(ip).is_err());
        assert_eq!(t.failed(ip), Duration::from_secs(2));
        assert_eq!(t.failed(ip), Duration::from_secs(4));
        for _ in 0..30 {
            t.failed(ip);
        }
        assert_eq!(t.failed(ip), MAX_DELAY);
        assert!(t.check([127, 0, 0, 10].into()).is_ok(), "per address");
        t.succeeded(ip);
        assert!(t.check(ip).is_ok());
    }
}
