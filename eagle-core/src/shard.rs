//! A small per-thread shard number, for spreading hot counters and allocator state over
//! independent locks and cache lines.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Number of shards everywhere they are used (a power of two).
pub const SHARDS: usize = 16;

static NEXT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
}

/// The calling thread's shard, in `0..SHARDS`; threads get consecutive shards as they first ask.
#[inline]
pub fn current() -> usize {
    SHARD.with(|s| *s)
}

/// A counter striped over cache lines, so threads counting at once do not share a line.
#[derive(Default)]
pub struct StripedCounter {
    stripes: [Stripe; SHARDS],
}

#[derive(Default)]
#[repr(align(128))]
struct Stripe(std::sync::atomic::AtomicI64);

impl StripedCounter {
    /// Adds `n` (may be negative) on the calling thread's stripe.
    #[inline]
    pub fn add(&self, n: i64) {
        self.stripes[current()].0.fetch_add(n, Ordering::Relaxed);
    }

    /// The sum over all stripes (not a snapshot: concurrent adds may or may not be counted).
    pub fn sum(&self) -> i64 {
        self.stripes
            .iter()
            .map(|s| s.0.load(Ordering::Relaxed))
            .sum()
    }

    /// [`sum`](Self::sum) for a count that cannot go below zero: a sum taken while other
    /// threads add can read below zero (a decrement counted, its increment not yet), which
    /// this reads as 0.
    pub fn total(&self) -> u64 {
        self.sum().max(0) as u64
    }

    /// Zeroes every stripe. Adds running at the same time may be kept or lost (fine for a
    /// statistic, not for a count that must stay exact: use [`set`](Self::set) there).
    pub fn reset(&self) {
        for s in &self.stripes {
            s.0.store(0, Ordering::Relaxed);
        }
    }

    /// Sets the total (on one stripe; the others are zeroed). Only when no thread adds.
    pub fn set(&self, v: i64) {
        for s in &self.stripes {
            s.0.store(0, Ordering::Relaxed);
        }
        self.stripes[0].0.store(v, Ordering::Relaxed);
    }
}
