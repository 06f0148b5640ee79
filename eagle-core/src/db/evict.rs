//! Eviction: Redis's `maxmemory-policy` for a full pool. A write that does not fit fails with
//! `OutOfMemory` and changes nothing (see `heap/reserve.rs`), so a caller that may evict asks
//! [`Db::evict`] for room and runs the write again ([`Db::with_eviction`], through which the server
//! runs every `denyoom` command).
//!
//! What a full pool lacks is one of two things, and a round of eviction frees keys for each:
//! - a slot for a new key: its two candidate buckets and the stash are full, and no chunk is free
//!   for a segment split. A key whose home bucket is the new key's frees a slot the new key can
//!   take, so the first victim is the first key the policy allows scanning on from that bucket
//!   (`Dash::cursor_near`; usually in it or the next). Without it, random victims alone left
//!   writes of `tests/eviction.rs` failing with `OutOfMemory`;
//! - heap blocks of the new record's size class. The other victims are sampled at random places
//!   in the hash space (more each round, see `Db::evict`); each record frees a block of its own
//!   class (and, inside a reserve scope, any larger class serves). A write whose size class no
//!   victim shares gets room only once a whole chunk is free, so it may still fail after every
//!   round.
//!
//! Each eviction is a DEL of one key under its key lock, durable on return like any DEL; a crash
//! between evictions leaves some keys evicted and the write not done, which is what a crash
//! before the write would have left. Inside an atomic transaction (`Db::atomic`, the server's
//! EXEC) nothing is evicted: what the transaction retires is freed only when it ends, so an
//! eviction would lose a key and make no room; such a write fails as under `noeviction`.
//!
//! LRU and LFU are not offered: reads never write to the pool, so it keeps no access times.

use std::sync::atomic::Ordering;

use super::core::Db;
use super::error::DbError;

/// Which keys a full pool may evict.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EvictionPolicy {
    /// Never: a write that does not fit fails with `OutOfMemory` (Redis's default).
    #[default]
    NoEviction,
    /// Any key.
    AllKeysRandom,
    /// Only keys with an expiry.
    VolatileRandom,
    /// Only keys with an expiry, the soonest to expire of a few sampled first.
    VolatileTtl,
}

impl EvictionPolicy {
    /// Every policy, in the order of their codes.
    pub const ALL: [EvictionPolicy; 4] = [
        EvictionPolicy::NoEviction,
        EvictionPolicy::AllKeysRandom,
        EvictionPolicy::VolatileRandom,
        EvictionPolicy::VolatileTtl,
    ];

    /// Redis's name for it.
    pub fn name(self) -> &'static str {
        match self {
            EvictionPolicy::NoEviction => "noeviction",
            EvictionPolicy::AllKeysRandom => "allkeys-random",
            EvictionPolicy::VolatileRandom => "volatile-random",
            EvictionPolicy::VolatileTtl => "volatile-ttl",
        }
    }

    /// The policy Redis calls `name` (any case), if EagleDB offers it.
    pub fn parse(name: &str) -> Option<EvictionPolicy> {
        Self::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(name))
    }

    fn volatile_only(self) -> bool {
        matches!(
            self,
            EvictionPolicy::VolatileRandom | EvictionPolicy::VolatileTtl
        )
    }

    pub(super) fn code(self) -> u8 {
        self as u8
    }

    pub(super) fn from_code(code: u8) -> EvictionPolicy {
        Self::ALL
            .get(code as usize)
            .copied()
            .unwrap_or(EvictionPolicy::NoEviction)
    }
}

/// Rounds of eviction before a write is given up as `OutOfMemory`.
pub const EVICTION_ROUNDS: usize = 32;

/// Records one sample examines at most.
const SAMPLE_RECORDS: usize = 256;
/// Keys `volatile-ttl` compares per sample (Redis's `maxmemory-samples` default).
const TTL_SAMPLES: usize = 5;

impl Db {
    /// The eviction policy (`noeviction` unless set).
    pub fn eviction(&self) -> EvictionPolicy {
        EvictionPolicy::from_code(self.eviction_code.load(Ordering::Relaxed))
    }

    /// Sets the eviction policy.
    pub fn set_eviction(&self, policy: EvictionPolicy) {
        self.eviction_code.store(policy.code(), Ordering::Relaxed);
    }

    /// Round `round` (from 0) of eviction for a write of `keys` that failed with
    /// `OutOfMemory`: removes, as the policy allows, a key whose home bucket is one of `keys`'
    /// and `2^round` keys (at most 32) at random places; never one of `keys`. Returns the keys
    /// removed (expired ones included, counted as expired rather than evicted); none when the
    /// policy is `noeviction`, inside an atomic transaction, or when it found nothing to remove.
    /// The caller holds no key lock.
    ///
    /// Why the rounds grow: concurrent writers on a full pool all evict, and the blocks one
    /// frees go to whichever allocates first once no reader can see them (the write that runs
    /// again frees them as any write on a full pool does: `Dash::space_may_free_up`). With a
    /// fixed two victims a round, 4 threads writing 1 KB values to a full pool
    /// (`tests/eviction.rs`) once had writes that needed up to about 900 rounds, and 1,213 of
    /// 160,000 failed after 32.
    pub fn evict(&self, keys: &[&[u8]], round: usize) -> Result<Vec<Vec<u8>>, DbError> {
        let policy = self.eviction();
        // Inside an atomic transaction nothing retired is freed until it ends (see
        // `engine/tx.rs`), so evicting would lose keys and make no room.
        if policy == EvictionPolicy::NoEviction || self.engine.in_atomic() {
            return Ok(Vec::new());
        }
        let random = super::keys::random_u64();
        let mut cursors = Vec::new();
        // A multi-key write does not say which key lacked a slot: each round tries near a
        // random one of them.
        if !keys.is_empty() {
            let near = keys[(random >> 32) as usize % keys.len()];
            cursors.push(self.engine.index().cursor_near(near));
        }
        cursors.push(random);
        for _ in 1..1usize << round.min(5) {
            cursors.push(super::keys::random_u64());
        }
        let mut removed = Vec::new();
        for cursor in cursors {
            let evicted = match self.sample(cursor, policy, keys) {
                Ok(Some(victim)) => self.evict_key(&victim, policy).map(|e| e.then_some(victim)),
                Ok(None) => Ok(None),
                Err(e) => Err(e),
            };
            match evicted {
                Ok(Some(victim)) => removed.push(victim),
                Ok(None) => {}
                // The keys already removed are returned, so the caller's watchers hear of them.
                Err(_) if !removed.is_empty() => break,
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }

    /// Runs `write`, and while it fails with `OutOfMemory` and [`evict`](Self::evict) finds
    /// keys to remove, evicts and runs it again, at most [`EVICTION_ROUNDS`] times, then once
    /// more if waiting for the deferred frees (up to about 13 ms, holding no key lock) freed
    /// something. `write` must take its own key locks (and `keys` name them), as every `Db`
    /// write does, and must change nothing when it fails with `OutOfMemory` (every `Db` write
    /// is so). Each run is handed the keys the round before it evicted (none on the first run,
    /// nor on the run after the wait: the run before it was handed them), so a caller can tell
    /// their watchers, as the server does for WATCH. `E` is the caller's error:
    /// `E::from(DbError::OutOfMemory)` is the failure that asks for room, and an error of
    /// `evict` itself is returned converted.
    pub fn with_eviction<T, E>(
        &self,
        keys: &[&[u8]],
        mut write: impl FnMut(&[Vec<u8>]) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<DbError> + PartialEq,
    {
        let oom = E::from(DbError::OutOfMemory);
        let (mut round, mut evicted, mut waited) = (0, Vec::new(), false);
        loop {
            let done = write(&evicted);
            if done.as_ref().err() != Some(&oom) {
                return done;
            }
            if round == EVICTION_ROUNDS {
                // Last resort, once: the keys evicted may still be waiting for another thread's
                // pin to end (`Dash::wait_for_frees`); when they are freed, one more run.
                if waited || !self.engine.index().wait_for_frees() {
                    return done;
                }
                (waited, evicted) = (true, Vec::new());
                continue;
            }
            evicted = self.evict(keys, round)?;
            if evicted.is_empty() {
                return done;
            }
            round += 1;
        }
    }

    /// A key the policy may evict, found by scanning from `cursor` (wrapping once at the end of
    /// the hash space): the first one seen, or for `volatile-ttl` the soonest to expire of the
    /// first few. Not one of `avoid`.
    fn sample(
        &self,
        cursor: u64,
        policy: EvictionPolicy,
        avoid: &[&[u8]],
    ) -> Result<Option<Vec<u8>>, DbError> {
        let want = if policy == EvictionPolicy::VolatileTtl {
            TTL_SAMPLES
        } else {
            1
        };
        let (mut seen, mut found) = (0, 0);
        let mut best: Option<(u64, Vec<u8>)> = None;
        let (mut cursor, mut wrapped) = (cursor, false);
        while found < want && seen < SAMPLE_RECORDS {
            let next = self.engine.index().scan(cursor, 16, |r| {
                seen += 1;
                let at = r.expire_at_ms();
                if found >= want || (policy.volatile_only() && at == 0) || avoid.contains(&r.key())
                {
                    return;
                }
                found += 1;
                if best.as_ref().is_none_or(|(b, _)| at < *b) {
                    best = Some((at, r.key().to_vec()));
                }
            })?;
            if next == 0 {
                if wrapped {
                    break;
                }
                wrapped = true;
            }
            cursor = next;
        }
        Ok(best.map(|(_, k)| k))
    }

    /// Removes `key` under its lock if the policy still allows it (another client may have
    /// made it persistent since it was sampled); true if it did. A live key counts as evicted,
    /// an expired one as expired.
    fn evict_key(&self, key: &[u8], policy: EvictionPolicy) -> Result<bool, DbError> {
        let _held = self.lock_write([key])?;
        match self.engine.index().get(key, |r| r.expire_at_ms())? {
            None => return Ok(false),
            Some(0) if policy.volatile_only() => return Ok(false),
            Some(_) => {}
        }
        if self.remove(key)? {
            self.evicted.fetch_add(1, Ordering::Relaxed);
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_from_their_redis_names_in_any_case() {
        for p in EvictionPolicy::ALL {
            assert_eq!(EvictionPolicy::parse(p.name()), Some(p));
            assert_eq!(
                EvictionPolicy::parse(&p.name().to_ascii_uppercase()),
                Some(p)
            );
            assert_eq!(EvictionPolicy::from_code(p.code()), p);
        }
        assert_eq!(EvictionPolicy::parse("allkeys-lru"), None);
        assert_eq!(EvictionPolicy::parse(""), None);
    }
}
