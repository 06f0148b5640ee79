//! The version lock of a Dash bucket: a sequence lock over one 32-bit word.
//!
//! Bit 31 is set while a writer holds the bucket; bits 0..31 are a version bumped at every
//! unlock. Writers take the lock with a CAS, write, and unlock by storing the next version with
//! the lock bit clear. Readers never write the word: they snapshot it ([`read_version`]), read
//! the bucket with atomic loads, and accept what they read only if the word still holds the
//! snapshot ([`validate`]); otherwise they retry.
//!
//! The protocol is written once, generic over [`VersionWord`], so that [`Bucket`] runs it on a
//! `std` atomic laid over persistent memory and the tests below run the very same functions on
//! `shuttle` atomics, under a scheduler that explores thread interleavings.
//!
//! Memory ordering (the slots are atomics, written with relaxed stores under the lock):
//! - `read_version` loads with `Acquire`: it pairs with the `Release` store of the last unlock,
//!   so the reader sees at least what the last writer to finish wrote.
//! - `try_lock` issues a `Release` fence after its CAS succeeds. A CAS cannot order the stores
//!   that follow it: without the fence a reader could see a slot store of this writer yet still
//!   read the old, unlocked version word (allowed by the language model, and by Arm hardware).
//!   With it, a reader whose slot load reads one of this writer's stores and then passes its own
//!   `Acquire` fence (in `validate`) synchronises with this writer, so the re-load sees the locked
//!   word or a later one. On x86 the fence only stops the compiler.
//! - `validate` issues an `Acquire` fence before its relaxed re-load: the fence keeps every slot
//!   load before it from being reordered after the re-load, and completes the synchronisation
//!   above. An `Acquire` re-load would not do: acquire orders the operations after a load, not
//!   the ones before it.
//! - `unlock` stores with `Release`, so every slot store of the critical section is visible to a
//!   reader that snapshots the new version.
//!
//! [`Bucket`]: super::Bucket

use std::sync::atomic::{AtomicU32, Ordering};

/// The lock bit of the version word.
pub(crate) const LOCKED: u32 = 1 << 31;

/// A 32-bit atomic word, and the memory model it lives in: what the version lock runs on.
pub(crate) trait VersionWord {
    /// Atomic load.
    fn load(&self, order: Ordering) -> u32;
    /// Atomic store.
    fn store(&self, value: u32, order: Ordering);
    /// Atomic compare-and-exchange.
    fn compare_exchange(
        &self,
        current: u32,
        new: u32,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u32, u32>;
    /// A memory fence of this word's memory model.
    fn fence(order: Ordering);
}

impl VersionWord for AtomicU32 {
    #[inline]
    fn load(&self, order: Ordering) -> u32 {
        AtomicU32::load(self, order)
    }

    #[inline]
    fn store(&self, value: u32, order: Ordering) {
        AtomicU32::store(self, value, order);
    }

    #[inline]
    fn compare_exchange(
        &self,
        current: u32,
        new: u32,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u32, u32> {
        AtomicU32::compare_exchange(self, current, new, success, failure)
    }

    #[inline]
    fn fence(order: Ordering) {
        std::sync::atomic::fence(order);
    }
}

/// The unlocked word that follows `v`: the next version, wrapping within bits 0..31.
#[inline]
fn next_version(v: u32) -> u32 {
    (v & !LOCKED).wrapping_add(1) & !LOCKED
}

/// A version snapshot for an optimistic read, or `None` if a writer holds the word.
#[inline]
pub(crate) fn read_version<W: VersionWord>(word: &W) -> Option<u32> {
    let v = word.load(Ordering::Acquire);
    (v & LOCKED == 0).then_some(v)
}

/// Whether the word still holds the snapshot `v`: no writer has held it since `v` was taken, so
/// the atomic loads made since then read one consistent state.
#[inline]
pub(crate) fn validate<W: VersionWord>(word: &W, v: u32) -> bool {
    // Orders the reader's loads before the re-load below (see the module documentation).
    W::fence(Ordering::Acquire);
    word.load(Ordering::Relaxed) == v
}

/// Takes the lock if it is free; returns the version it was taken at, for [`unlock_at`].
#[inline]
pub(crate) fn try_lock<W: VersionWord>(word: &W) -> Option<u32> {
    let v = word.load(Ordering::Relaxed);
    if v & LOCKED != 0
        || word
            .compare_exchange(v, v | LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
    {
        return None;
    }
    // Orders the lock before the writer's stores that follow (see the module documentation).
    W::fence(Ordering::Release);
    Some(v)
}

/// Takes the lock, calling `wait` with the word a holder keeps between attempts (it spins,
/// yields, or gives up by returning an error, which this returns); returns the version the lock
/// was taken at, for [`unlock_at`].
#[inline]
pub(crate) fn lock_with<W: VersionWord, E>(
    word: &W,
    mut wait: impl FnMut(u32) -> Result<(), E>,
) -> Result<u32, E> {
    loop {
        if let Some(v) = try_lock(word) {
            return Ok(v);
        }
        wait(word.load(Ordering::Relaxed))?;
    }
}

/// Releases the lock and bumps the version. Only the lock's holder calls it.
#[inline]
pub(crate) fn unlock<W: VersionWord>(word: &W) {
    let v = word.load(Ordering::Relaxed);
    word.store(next_version(v), Ordering::Release);
}

/// [`unlock`] for a holder that kept the version `v` its lock was taken at: a store without
/// the load. Only the holder writes the word while it is locked (besides [`reset_lock`], which
/// repair runs only on buckets no live writer holds), so the word still holds `v | LOCKED`. The load matters on CPUs whose flush evicts the line (clwb on Skylake and
/// Cascade Lake): a writer has just flushed the bucket header, and the load would wait for a
/// full miss inside the critical section, where the store only queues.
#[inline]
pub(crate) fn unlock_at<W: VersionWord>(word: &W, v: u32) {
    debug_assert_eq!(word.load(Ordering::Relaxed), v | LOCKED);
    word.store(next_version(v), Ordering::Release);
}

/// Forgets a lock left held by a writer that no longer exists (after a crash, with no other
/// thread about), and bumps the version.
#[inline]
pub(crate) fn reset_lock<W: VersionWord>(word: &W) {
    let v = word.load(Ordering::Relaxed);
    word.store(next_version(v), Ordering::Release);
}

#[cfg(test)]
mod tests {
    //! Shuttle tests: the production functions above, over shuttle's atomics, under schedulers
    //! that pick thread interleavings (random, PCT, and exhaustive for a small case). Shuttle runs
    //! every atomic operation as `SeqCst`, so these tests check the protocol's logic (lock bit,
    //! version bumps, the snapshot/validate window), not the weaker orderings; those are argued
    //! in the module documentation.

    use std::sync::atomic::Ordering;

    use shuttle::scheduler::{DfsScheduler, PctScheduler, RandomScheduler, Scheduler};
    use shuttle::sync::Arc;
    use shuttle::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
    use shuttle::{Config, Runner, thread};

    use super::*;

    impl VersionWord for AtomicU32 {
        fn load(&self, order: Ordering) -> u32 {
            AtomicU32::load(self, order)
        }

        fn store(&self, value: u32, order: Ordering) {
            AtomicU32::store(self, value, order);
        }

        fn compare_exchange(
            &self,
            current: u32,
            new: u32,
            success: Ordering,
            failure: Ordering,
        ) -> Result<u32, u32> {
            AtomicU32::compare_exchange(self, current, new, success, failure)
        }

        fn fence(order: Ordering) {
            shuttle::sync::atomic::fence(order);
        }
    }

    /// A blocking lock over [`lock_with`], yielding to shuttle's scheduler between attempts.
    fn lock(word: &AtomicU32) -> u32 {
        lock_with(word, |_| {
            thread::yield_now();
            Ok::<(), ()>(())
        })
        .expect("this wait never gives up")
    }

    fn run(scheduler: impl Scheduler + 'static, test: impl Fn() + Send + Sync + 'static) {
        let mut config = Config::new();
        // Shuttle warns that it runs relaxed orderings as SeqCst; the module docs say so.
        config.silence_warnings = true;
        Runner::new(scheduler, config).run(test);
    }

    /// The invariant every writer keeps between a slot's two words.
    fn hash_of(record: u64) -> u64 {
        record.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5bd1_e995
    }

    /// A bucket reduced to what the protocol guards: the version word and one slot.
    struct Cell {
        version: AtomicU32,
        record: AtomicU64,
        hash: AtomicU64,
    }

    impl Cell {
        fn new() -> Self {
            Cell {
                version: AtomicU32::new(0),
                record: AtomicU64::new(1),
                hash: AtomicU64::new(hash_of(1)),
            }
        }

        /// A writer: locks, writes the slot's two words with separate stores (as
        /// `Bucket::write_slot` does), unlocks.
        fn write(&self, record: u64) {
            lock(&self.version);
            self.record.store(record, Ordering::Relaxed);
            self.hash.store(hash_of(record), Ordering::Relaxed);
            unlock(&self.version);
        }

        /// One optimistic read, loading the slot as `Dash::search_bucket` does: the slot's
        /// `(record, hash)` if the read validated.
        fn read(&self) -> Option<(u64, u64)> {
            let v = read_version(&self.version)?;
            let hash = self.hash.load(Ordering::Relaxed);
            let record = self.record.load(Ordering::Acquire);
            validate(&self.version, v).then_some((record, hash))
        }
    }

    /// `writers` writers storing `writes` records each (writer `w` stores `100 * (w + 1) + k`)
    /// while `readers` readers make `attempts` optimistic reads each and check every accepted
    /// one against the invariant.
    fn torn_read_scenario(writers: u64, writes: u64, readers: usize, attempts: usize) {
        let cell = Arc::new(Cell::new());
        let mut threads = Vec::new();
        for w in 0..writers {
            let cell = Arc::clone(&cell);
            threads.push(thread::spawn(move || {
                for k in 0..writes {
                    cell.write(100 * (w + 1) + k);
                }
            }));
        }
        for _ in 0..readers {
            let cell = Arc::clone(&cell);
            threads.push(thread::spawn(move || {
                for _ in 0..attempts {
                    if let Some((record, hash)) = cell.read() {
                        assert_eq!(
                            hash,
                            hash_of(record),
                            "a validated read saw a torn slot (record {record})"
                        );
                    }
                }
            }));
        }
        for t in threads {
            t.join().unwrap();
        }
        // Quiescent: a read validates, and sees a whole slot.
        let (record, hash) = cell.read().expect("no writer holds the lock");
        assert_eq!(hash, hash_of(record), "the slot was left torn");
    }

    #[test]
    fn optimistic_reader_never_accepts_a_torn_slot() {
        run(RandomScheduler::new(20_000), || {
            torn_read_scenario(2, 2, 2, 3)
        });
        run(PctScheduler::new(3, 20_000), || {
            torn_read_scenario(2, 2, 2, 3)
        });
    }

    #[test]
    fn optimistic_reader_never_accepts_a_torn_slot_in_any_interleaving() {
        // Every interleaving of one writer's write against two optimistic reads.
        run(DfsScheduler::new(None, false), || {
            torn_read_scenario(1, 2, 1, 2)
        });
    }

    /// Threads each increment a plain counter (a load, then a store) `rounds` times under the
    /// lock: the first `blocking` use `lock`, the rest `try_lock` in a loop (as `Held::try_add`
    /// callers retry).
    fn mutual_exclusion_scenario(threads: u32, blocking: u32, rounds: u32) {
        let word = Arc::new(AtomicU32::new(0));
        let counter = Arc::new(AtomicU64::new(0));
        let inside = Arc::new(AtomicBool::new(false));
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (word, counter, inside) =
                    (Arc::clone(&word), Arc::clone(&counter), Arc::clone(&inside));
                thread::spawn(move || {
                    for round in 0..rounds {
                        let v = if t < blocking {
                            lock(&word)
                        } else {
                            loop {
                                if let Some(v) = try_lock(&*word) {
                                    break v;
                                }
                                thread::yield_now();
                            }
                        };
                        assert!(read_version(&*word).is_none(), "a held lock reads as free");
                        assert!(try_lock(&*word).is_none(), "a held lock was taken again");
                        assert!(!inside.swap(true, Ordering::Relaxed), "two holders at once");
                        let c = counter.load(Ordering::Relaxed);
                        counter.store(c + 1, Ordering::Relaxed);
                        inside.store(false, Ordering::Relaxed);
                        // Both ways out: the load-and-store unlock and the holder's `unlock_at`.
                        if round % 2 == 0 {
                            unlock(&*word);
                        } else {
                            unlock_at(&*word, v);
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let total = threads * rounds;
        assert_eq!(
            counter.load(Ordering::Relaxed),
            u64::from(total),
            "lost update"
        );
        assert_eq!(
            word.load(Ordering::Relaxed),
            total,
            "one version bump per unlock"
        );
    }

    #[test]
    fn lock_gives_mutual_exclusion() {
        run(RandomScheduler::new(5_000), || {
            mutual_exclusion_scenario(3, 2, 3)
        });
        run(PctScheduler::new(3, 5_000), || {
            mutual_exclusion_scenario(3, 2, 3)
        });
    }

    #[test]
    fn reset_lock_frees_a_lock_left_held_and_invalidates_snapshots() {
        run(RandomScheduler::new(1), || {
            let word = AtomicU32::new(7);
            // A snapshot taken before the crash...
            let before = read_version(&word).unwrap();
            // ...and a writer that died holding the lock.
            assert!(try_lock(&word).is_some());
            assert_eq!(read_version(&word), None);
            assert!(try_lock(&word).is_none());
            reset_lock(&word);
            assert_eq!(read_version(&word), Some(8), "unlocked, version bumped");
            assert!(
                !validate(&word, before),
                "an old snapshot must not validate"
            );
            // Resetting a free lock bumps the version too.
            let free = read_version(&word).unwrap();
            reset_lock(&word);
            assert_eq!(read_version(&word), Some(9));
            assert!(!validate(&word, free));
            assert!(
                try_lock(&word).is_some(),
                "the lock can be taken after a reset"
            );
            unlock(&word);
            assert_eq!(read_version(&word), Some(10));
        });
    }

    #[test]
    fn reset_lock_releases_a_blocked_writer() {
        // Repair resets a word the dead writer left locked; a writer already waiting gets in,
        // and readers see one version for the reset and one for its write.
        run(RandomScheduler::new(2_000), || {
            let word = Arc::new(AtomicU32::new(LOCKED | 5));
            let waiter = {
                let word = Arc::clone(&word);
                thread::spawn(move || {
                    lock(&word);
                    unlock(&*word);
                })
            };
            assert_eq!(read_version(&*word), None);
            reset_lock(&*word);
            waiter.join().unwrap();
            assert_eq!(read_version(&*word), Some(7));
        });
    }

    #[test]
    fn version_wraps_without_setting_the_lock_bit() {
        let word = std::sync::atomic::AtomicU32::new(LOCKED - 1);
        assert!(try_lock(&word).is_some());
        unlock(&word);
        assert_eq!(read_version(&word), Some(0));
        let word = std::sync::atomic::AtomicU32::new(LOCKED | (LOCKED - 1));
        reset_lock(&word);
        assert_eq!(read_version(&word), Some(0));
    }
}
