//! Recovery in the background: after `Dash::open` returns (so the first request is served at
//! once), a thread repairs every segment, marks every reachable heap block, and, after a crash,
//! counts the keys; then the heap rebuilds its free lists. Operations meanwhile repair the
//! segment they touch first (`locate`), and allocate only from chunks that were free at open.
//!
//! Counting beside writers (the keys, and the keys with an expiry): a segment is counted once,
//! under all its bucket locks, and added to `counted`; a write adds to the counters only if its
//! segment is already counted (it checks while holding its bucket locks, so it is ordered with
//! the count); a split of a counted segment counts the new one too (its records were counted in
//! the old one).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use parking_lot::{Condvar, Mutex, RwLock};

use super::bucket::set_bits;
use super::error::{IndexError, corrupted};
use super::index::Dash;
use super::segment::ALL_BUCKETS;

/// The state of the background recovery.
#[derive(Default)]
pub(crate) struct Recovery {
    /// While keys are being counted (after a crash): the segments already counted.
    counted: RwLock<Option<HashSet<u64>>>,
    /// Fast-path flag for `counted.is_some()`.
    counting: AtomicBool,
    /// `Some` once the sweep ended (its result).
    done: Mutex<Option<Result<(), IndexError>>>,
    cond: Condvar,
    /// Set when the engine is dropped without closing: stop early.
    pub cancel: AtomicBool,
}

impl Recovery {
    /// Starts counting from zero (after a crash).
    pub fn count_from_zero(&self) {
        *self.counted.write() = Some(HashSet::new());
        self.counting.store(true, Ordering::Release);
    }

    fn stop_counting(&self) {
        *self.counted.write() = None;
        self.counting.store(false, Ordering::Release);
    }

    /// Whether the key count is still being established.
    pub fn counting(&self) -> bool {
        self.counting.load(Ordering::Acquire)
    }
}

/// Sleeps of [`Dash::wait_for_frees`]: 50 us doubling to 3.2 ms, about 13 ms in all.
const RECLAIM_NAPS: usize = 9;

impl Dash {
    /// Adds `delta` to the key count and `expires` to the count of keys with an expiry, for a
    /// write to the segment at `seg_off`. Called with the segment's bucket locks held.
    #[inline]
    pub(crate) fn count(&self, seg_off: u64, delta: i64, expires: i64) {
        if self.recovery.counting() {
            let c = self.recovery.counted.read();
            if let Some(set) = &*c
                && !set.contains(&seg_off)
            {
                return; // the sweep will count this segment as it is then
            }
        }
        if delta != 0 {
            self.len.add(delta);
        }
        if expires != 0 {
            self.expires.add(expires);
        }
    }

    /// 1 if the record at `rec` has an expiry, else 0 (for the counts).
    pub(crate) fn has_expiry(&self, rec: u64) -> i64 {
        self.region()
            .atomic_u64(rec + crate::record::EXPIRE_AT)
            .is_some_and(|w| w.load(Ordering::Acquire) != 0) as i64
    }

    /// A split of the segment at `from` created `new`: if `from` was counted, so are `new`'s
    /// records (they were counted in `from`). Called under the directory lock and `from`'s locks.
    pub(crate) fn note_split(&self, from: u64, new: u64) {
        if self.recovery.counting() {
            let mut c = self.recovery.counted.write();
            if let Some(set) = c.as_mut()
                && set.contains(&from)
            {
                set.insert(new);
            }
        }
    }

    /// The body of the recovery thread. Publishes its result for `wait_recovered`.
    pub fn run_recovery(&self) {
        let started = Instant::now();
        let result = self.sweep();
        // Whatever the result: a sweep that failed never reaches `finish_sweep`, and the heap
        // must not go on holding fresh chunks back for it.
        self.heap.sweep_ended();
        if result.is_ok() {
            self.all_repaired.store(true, Ordering::Release);
            let pool = self.heap.pool();
            if !pool.was_clean() {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                pool.record_recovery(now, started.elapsed().as_nanos() as u64);
            }
        }
        *self.recovery.done.lock() = Some(result);
        self.recovery.cond.notify_all();
    }

    /// Allocates from the heap, never waiting (callers may hold locks the recovery needs).
    pub(crate) fn alloc(&self, size: u64) -> Result<u64, IndexError> {
        Ok(self.heap.alloc(size)?)
    }

    /// Whether `e` is a lack of space that waiting may cure, in which case this waited and the
    /// caller, holding no lock, tries again: the running recovery hands back the chunks that
    /// were in use at open; and deferred frees (a DEL's records, say) free space once the epoch
    /// has moved on, so a caller that holds no pin (its own would hold the epoch back) runs
    /// them now, and tries again only if that freed something. A thread pinned meanwhile holds
    /// the epoch back (for a whole time slice if it was preempted while pinned, when threads
    /// outnumber cores), so this gives up the CPU and runs them again, up to 16 times, before
    /// it gives up. (Eviction depends on it: a full server under 50 pipelined clients stopped
    /// at an -OOM in 10 of 12 benchmark runs with one try, 3 of 12 with these.)
    pub(crate) fn space_may_free_up(&self, e: &IndexError) -> bool {
        let IndexError::Heap(crate::heap::HeapError::OutOfSpace { during_sweep, .. }) = e else {
            return false;
        };
        // The error says whether the sweep was running when the allocation began, not
        // `recovered()` now: a sweep that ended between the failure and this check (a writer
        // preempted there) left chunks the failed attempt never saw. Asking `recovered()`
        // alone, a nearly empty pool failed small writes with OutOfSpace about one run in ten
        // of `dash_index::random_operations_match_a_btreemap` with the CPU busy beside it.
        if *during_sweep || !self.recovered() {
            let _ = self.wait_recovered();
            return true;
        }
        self.reclaim_retrying(16, |_| std::thread::yield_now())
    }

    /// For a write about to fail for lack of space: waits, sleeping 50 us and doubling up to
    /// 3.2 ms (about 13 ms in all), until the deferred frees free something; whether they
    /// did. [`space_may_free_up`](Self::space_may_free_up) only yields, and another thread
    /// preempted while pinned holds them back for a whole time slice: after 32 rounds of
    /// eviction under 50 pipelined clients, a write that failed had 1.19 MB of evicted records
    /// still waiting, and 1 ms later all but 2.5 KB of them could be freed. Nothing is freed
    /// while the caller itself is pinned: it returns false at once.
    pub fn wait_for_frees(&self) -> bool {
        self.reclaim_retrying(RECLAIM_NAPS, |attempt| {
            let nap = 50u64 << attempt.min(6); // 50 us .. 3.2 ms
            std::thread::sleep(std::time::Duration::from_micros(nap));
        })
    }

    /// Runs the deferred frees, and after each of up to `tries` attempts that freed nothing,
    /// `pause(attempt)` and again; whether any attempt freed something. False at once if
    /// nothing awaits freeing or the caller is pinned (its own pin would hold the epoch back).
    fn reclaim_retrying(&self, tries: usize, mut pause: impl FnMut(usize)) -> bool {
        let before = self.garbage.bytes();
        if before == 0 || super::epoch::is_pinned(&self.collector) {
            return false;
        }
        for attempt in 0..tries {
            if self.reclaim() < before {
                return true;
            }
            pause(attempt);
        }
        self.reclaim() < before
    }

    /// Blocks until the background recovery has ended; its result.
    pub fn wait_recovered(&self) -> Result<(), IndexError> {
        let mut done = self.recovery.done.lock();
        while done.is_none() {
            self.recovery.cond.wait(&mut done);
        }
        done.clone().expect("set above")
    }

    /// Whether the background recovery has ended.
    pub fn recovered(&self) -> bool {
        self.recovery.done.lock().is_some()
    }

    fn sweep(&self) -> Result<(), IndexError> {
        crate::fault::sweep_gate();
        let mut visited = HashSet::new();
        loop {
            let mut pending = Vec::new();
            self.for_each_segment(|s| {
                if !visited.contains(&s) {
                    pending.push(s);
                }
                Ok(())
            })?;
            if pending.is_empty() {
                break;
            }
            for s in pending {
                if self.recovery.cancel.load(Ordering::Relaxed) {
                    return Err(corrupted("recovery cancelled: the engine was dropped"));
                }
                if visited.insert(s) {
                    self.visit(s)?;
                }
            }
        }
        {
            // Under the directory lock, so no doubling retires it between reading and marking.
            let _dir = self.dir_lock.lock();
            let dir = self.directory()?;
            self.heap
                .mark(dir.offset)
                .map_err(|e| corrupted(format!("directory: {e}")))?;
        }
        self.heap
            .finish_sweep()
            .map_err(|e| corrupted(format!("sweep: {e}")))?;
        self.recovery.stop_counting();
        Ok(())
    }

    /// Repairs (if needed), marks and counts one segment, all its buckets locked.
    fn visit(&self, s: u64) -> Result<(), IndexError> {
        let seg = self.segment(s)?;
        if seg.header.repaired_epoch.load(Ordering::Acquire) != self.epoch
            || seg.header.parent.load(Ordering::Acquire) != 0
        {
            self.repair(s)?;
        }
        let mark = |off: u64, what: &str| {
            self.heap
                .mark(off)
                .map_err(|e| corrupted(format!("{what}: {e}")))
        };
        // Pinned while it reads and marks: a large hash's writer changes part words under the
        // key's lock, not this segment's, and retires the old block after it kept it. Without
        // the pin that block's deferred free could run between this visit reading its word and
        // marking it, and the mark would then bring a freed block back to life (a leak).
        let _pinned = self.pin();
        // Before its "locks" are taken: they would be written into whatever is there.
        self.checked_segment(s, "the directory")?;
        seg.lock_all()?;
        let result = (|| {
            mark(s, "segment")?;
            let (mut n, mut expiring) = (0i64, 0i64);
            let counting = self.recovery.counting();
            for bi in 0..ALL_BUCKETS {
                let b = seg.bucket(bi);
                if counting {
                    // The expiry words below are one miss per key: start them all at once.
                    for i in set_bits(b.alloc_bits()) {
                        let word = b.slots[i].record.load(Ordering::Relaxed);
                        let rec = crate::record::slot_record(word);
                        self.region().prefetch(rec + crate::record::EXPIRE_AT);
                    }
                }
                for i in set_bits(b.alloc_bits()) {
                    let word = b.slots[i].record.load(Ordering::Relaxed);
                    let rec = crate::record::slot_record(word);
                    mark(rec, "record")?;
                    // The blocks the record owns (a large hash's table and parts). Only tagged
                    // records are opened: the sweep reads no record of a string or small hash.
                    if self.may_own_blocks(word)
                        && let Some(r) = crate::record::RecordRef::open(self.region(), rec)
                    {
                        let children = self.children(&r).map_err(corrupted)?;
                        for c in children {
                            mark(c.offset, c.what)?;
                        }
                    }
                    n += 1;
                    // After a crash only: one read of the record's first line per key.
                    if counting {
                        expiring += self.has_expiry(rec);
                    }
                }
            }
            if counting {
                let mut c = self.recovery.counted.write();
                if let Some(set) = c.as_mut()
                    && set.insert(s)
                {
                    self.len.add(n);
                    self.expires.add(expiring);
                }
            }
            Ok(())
        })();
        seg.unlock_all();
        result
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::dash::{Dash, PutMode};
    use crate::heap::{Heap, HeapError};
    use crate::pool::{Pool, PoolOptions};
    use crate::record::RecordKind;

    /// The race `space_may_free_up` must not lose: a write fails while the open's sweep holds
    /// chunks back, the sweep ends before the writer asks whether waiting helps, and the
    /// writer must still try again (the chunks it never saw are free now).
    #[test]
    fn a_write_that_failed_during_the_sweep_tries_again_after_the_sweep_ended_meanwhile() {
        let path =
            std::env::temp_dir().join(format!("eagle-sweep-race-{}.pool", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let opts = || PoolOptions {
            size: 32 << 20,
            flush: Some(crate::pmem::FlushMode::None),
            ..PoolOptions::default()
        };
        // Large values until fewer than an eighth of the chunks are free: the next open then
        // holds fresh chunks back until its sweep ends.
        let engine = crate::Engine::open(&path, opts()).unwrap();
        let mut i = 0u32;
        loop {
            let stats = engine.index().heap().stats();
            if (stats.free_chunks as u64) * 8 < stats.capacity / crate::heap::CHUNK {
                break;
            }
            let key = format!("large:{i}");
            let put = engine.index().put(
                key.as_bytes(),
                &vec![1u8; 1 << 20],
                RecordKind::String,
                0,
                PutMode::Insert,
            );
            put.unwrap_or_else(|e| panic!("{e:?} after {i} values; {stats:?}"));
            i += 1;
        }
        engine.close().unwrap();

        // Opened as the engine does, but the sweep is run by hand, between the failure and
        // the question.
        let pool = Arc::new(Pool::open(&path, opts()).unwrap());
        let heap = Arc::new(Heap::open(pool).unwrap());
        let index = Dash::open(heap).unwrap();
        let e = index
            .alloc(34)
            .expect_err("fresh chunks are held back during the sweep");
        assert!(
            matches!(
                e,
                super::IndexError::Heap(HeapError::OutOfSpace {
                    during_sweep: true,
                    ..
                })
            ),
            "{e:?}"
        );
        index.run_recovery();
        index.wait_recovered().unwrap();
        assert!(index.space_may_free_up(&e), "the ended sweep freed chunks");
        index
            .alloc(34)
            .expect("a chunk is free once the sweep ended");
        drop(index);
        let _ = std::fs::remove_file(&path);
    }
}
