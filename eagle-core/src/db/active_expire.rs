//! Active expiry, like Redis's: every 100 ms, sample keys along a cursor that walks the whole
//! keyspace and remove the expired ones; go on while more than a quarter of a sample had
//! expired, for at most 25 ms per cycle (bounded CPU, as Redis's `ACTIVE_EXPIRE_CYCLE_SLOW`).

use std::sync::Weak;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::core::Db;

const PERIOD: Duration = Duration::from_millis(100);
const BUDGET: Duration = Duration::from_millis(25);
const SAMPLE: usize = 20;

pub(crate) fn run(db: Weak<Db>, stop: std::sync::Arc<AtomicBool>) {
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(PERIOD);
        let Some(db) = db.upgrade() else { return };
        let started = Instant::now();
        while started.elapsed() < BUDGET && !stop.load(Ordering::Acquire) {
            match db.expire_cycle(SAMPLE) {
                Ok((sampled, expired)) if sampled > 0 && expired * 4 > sampled => continue,
                _ => break,
            }
        }
    }
}

impl Db {
    /// One sample of the active expiry: examines about `count` keys from the sweep's cursor,
    /// removes the expired ones; (keys sampled, keys removed).
    pub fn expire_cycle(&self, count: usize) -> Result<(usize, usize), super::DbError> {
        let now = self.now_ms();
        let mut sampled = 0;
        let (mut ttl_sum, mut ttl_n) = (0u64, 0u64);
        let mut candidates = Vec::new();
        let cursor = self.expiry_cursor.load(Ordering::Relaxed);
        let next = self.engine.index().scan(cursor, count, |r| {
            sampled += 1;
            let at = r.expire_at_ms();
            if at != 0 && at <= now {
                candidates.push(r.key().to_vec());
            } else if at != 0 {
                ttl_sum = ttl_sum.saturating_add(at - now);
                ttl_n += 1;
            }
        })?;
        self.expiry_cursor.store(next, Ordering::Relaxed);
        if let Some(sample) = ttl_sum.checked_div(ttl_n) {
            // Redis's running estimate: each sample's mean weighs 1/50.
            let old = self.avg_ttl.load(Ordering::Relaxed);
            let avg = if old == 0 {
                sample
            } else {
                old / 50 * 49 + sample / 50
            };
            self.avg_ttl.store(avg, Ordering::Relaxed);
        }
        let mut removed = 0;
        for k in candidates {
            removed += self.remove_if_expired(&k)? as usize;
        }
        Ok((sampled, removed))
    }
}
