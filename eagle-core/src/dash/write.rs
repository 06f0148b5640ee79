//! Inserts, upserts and deletes. Every persistent write below carries its ordering argument.
//!
//! **Bookkeeping first.** A write does its DRAM bookkeeping (the key counts, retiring what it
//! replaces or removes) under its bucket locks but before its flushes, not after its last
//! fence. That bookkeeping runs locked instructions (atomic adds, an `Arc` clone), and on x86
//! a locked instruction waits until every earlier store and cache-line write-back has
//! completed: after the last fence it would wait for the flushed lines to reach memory
//! (measured at 45% of an insert's time, docs/benchmarks.md); before the flushes it waits for
//! nothing, and the write-backs complete while the caller starts its next operation. None of
//! it shows on the media: a count lives in DRAM, and a retired block is freed only after this
//! thread unpins, so after the write is durable.

use std::sync::atomic::Ordering;

use super::bucket::fingerprint;
use super::bucket::set_bits;
use super::error::{IndexError, corrupted};
use super::index::{Dash, Found};
use super::segment::{BUCKETS, STASH, Segment, bucket_index, bucket_offset};
use crate::fault::{self, Fault};
use crate::pmem::FlushMode;
use crate::record::{RecordKind, record_size, write_record};

/// Whether a put may replace an existing record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutMode {
    /// Only if the key is absent.
    Insert,
    /// Insert or replace.
    Upsert,
    /// Insert or replace, keeping a replaced large hash's parts: only its record and table are
    /// reclaimed, because the new record's table names the same parts (a table doubled
    /// without rewriting them).
    UpsertKeepParts,
}

/// A written record on its way to a slot (`publish_record`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct NewRecord {
    /// Where it is.
    pub offset: u64,
    /// The word its slot will hold: `offset`, tagged as `slot_word` says.
    pub word: u64,
    /// 1 if it has an expiry, else 0 (passed in, so the record is not read back under the
    /// bucket locks).
    pub expires: i64,
    /// How many of its bytes (from `offset`) are not flushed yet: `publish_record` flushes them
    /// before the fence that precedes the publishing store. 0 for a record already flushed.
    pub unflushed: u64,
}

/// What a put did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// The key was absent and now holds the record.
    Inserted,
    /// The key held a record, now replaced.
    Replaced,
    /// `PutMode::Insert` and the key exists: nothing changed.
    Exists,
}

/// The buckets a writer holds, with the version each was locked at, released in reverse on
/// drop.
/// (Kept small, 48 bytes: it is returned by value on every write.)
pub(super) struct Held<'a> {
    seg: &'a Segment,
    /// Bucket indices (below `ALL_BUCKETS`, so a byte each).
    buckets: [u8; 8],
    versions: [u32; 8],
    n: usize,
}

const _: () = assert!(super::segment::ALL_BUCKETS <= u8::MAX as usize);

impl<'a> Held<'a> {
    /// Locks the home bucket and its neighbour in index order.
    fn home(seg: &'a Segment, b: usize, b1: usize) -> Result<Held<'a>, IndexError> {
        let (lo, hi) = if b < b1 { (b, b1) } else { (b1, b) };
        let vlo = seg.bucket(lo).lock()?;
        let vhi = match seg.bucket(hi).lock() {
            Ok(v) => v,
            Err(e) => {
                seg.bucket(lo).unlock_at(vlo);
                return Err(e);
            }
        };
        let mut held = Held {
            seg,
            buckets: [0; 8],
            versions: [0; 8],
            n: 2,
        };
        (held.buckets[0], held.versions[0]) = (lo as u8, vlo);
        (held.buckets[1], held.versions[1]) = (hi as u8, vhi);
        Ok(held)
    }

    fn holds(&self, i: usize) -> bool {
        self.buckets[..self.n].iter().any(|&h| h as usize == i)
    }

    fn push(&mut self, i: usize, v: u32) {
        (self.buckets[self.n], self.versions[self.n]) = (i as u8, v);
        self.n += 1;
    }

    /// Locks one more bucket, blocking: only for buckets after every one held (stash).
    fn add(&mut self, i: usize) -> Result<(), IndexError> {
        debug_assert!(self.buckets[..self.n].iter().all(|&h| (h as usize) < i));
        let v = self.seg.bucket(i).lock()?;
        self.push(i, v);
        Ok(())
    }

    /// Tries to lock one more bucket in any order (never blocks, so never deadlocks).
    fn try_add(&mut self, i: usize) -> bool {
        if self.holds(i) {
            return false;
        }
        let Some(v) = self.seg.bucket(i).try_lock() else {
            return false;
        };
        self.push(i, v);
        true
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        // `unlock_at`: the headers were usually just flushed, and on CPUs whose clwb evicts the
        // line a load here would wait for a miss; the store only queues.
        for j in (0..self.n).rev() {
            self.seg
                .bucket(self.buckets[j] as usize)
                .unlock_at(self.versions[j]);
        }
    }
}

impl Dash {
    /// Inserts or replaces `key` with a record of `kind` holding `value`. On return the change is
    /// durable.
    pub fn put(
        &self,
        key: &[u8],
        value: &[u8],
        kind: RecordKind,
        expire_at_ms: u64,
        mode: PutMode,
    ) -> Result<PutOutcome, IndexError> {
        let region = self.region();
        let h = self.hash(key);
        // The home bucket's misses overlap with the pin, and with writing the record.
        let mut guard = self.pin_prefetched(h);
        // The record is written before any lock is taken (it is private until published) and
        // flushed under the locks, by `publish_record`.
        let size = record_size(key, value.len() as u64);
        loop {
            let rec = match self.alloc(size) {
                Ok(rec) => rec,
                Err(e) => {
                    // Unpinned, a full pool can reclaim deferred frees (see
                    // `space_may_free_up`), which this thread's pin would hold back.
                    drop(guard);
                    if !self.space_may_free_up(&e) {
                        return Err(e);
                    }
                    guard = self.pin();
                    continue;
                }
            };
            // SAFETY: `rec` was just allocated; nothing else can reach it.
            let mut len = unsafe { write_record(region, rec, kind, key, value, expire_at_ms) };
            if region.flush_mode() == FlushMode::Msync {
                // A flush is an msync here, not a round trip the lock's CAS would wait for:
                // issued now, it is not added to the time the bucket locks are held.
                region.flush(rec, len as usize);
                len = 0;
            }
            let new = NewRecord {
                offset: rec,
                // Only a hash record can own blocks: a string's word is known without
                // reading the record back.
                word: match kind {
                    RecordKind::Hash => self.slot_word(rec),
                    RecordKind::String => rec,
                },
                expires: (expire_at_ms != 0) as i64,
                unflushed: len,
            };
            match self.publish_record(key, h, new, mode, true, &guard) {
                Err(e) => {
                    drop(guard);
                    // Never published: free it now rather than leave it to the next sweep.
                    let _ = self.heap.free(rec);
                    if !self.space_may_free_up(&e) {
                        return Err(e);
                    }
                    guard = self.pin();
                }
                outcome => return outcome,
            }
        }
    }

    /// Pins, having started the misses on hash `h`'s home bucket: before the pin from the DRAM
    /// hints ([`prefetch_home`](Self::prefetch_home)), or after it through the pool's directory
    /// where the hints have no copy of it (a directory deeper than `hints::MAX_HINT_DEPTH`).
    fn pin_prefetched(&self, h: u64) -> crossbeam_epoch::Guard {
        let hinted = self.prefetch_home(h);
        let guard = self.pin();
        if !hinted && let Ok((at, _)) = self.locate(h) {
            self.prefetch_buckets(at.segment, h);
        }
        guard
    }

    /// Publishes the written record `new` under `key` (hash `h`). A new key may `displace` a
    /// record to make room (not for a batch's puts: see `room.rs`).
    pub(crate) fn publish_record(
        &self,
        key: &[u8],
        h: u64,
        new: NewRecord,
        mode: PutMode,
        displace: bool,
        guard: &crossbeam_epoch::Guard,
    ) -> Result<PutOutcome, IndexError> {
        let region = self.region();
        let (b, b1) = (bucket_index(h), (bucket_index(h) + 1) % BUCKETS);
        let NewRecord {
            offset: rec,
            word,
            expires: rec_expires,
            unflushed,
        } = new;
        debug_assert_eq!(word, self.slot_word(rec));
        loop {
            let (seg_off, seg, mut held) = self.lock_home(h)?;
            if let Some(found) = self.search(seg, h, key)? {
                if mode == PutMode::Insert {
                    drop(held);
                    // Never published: no reader can have seen it, so it is freed at once.
                    self.heap.free(rec)?;
                    return Ok(PutOutcome::Exists);
                }
                let slot = &seg.bucket(found.bucket).slots[found.slot];
                // Bookkeeping first (see the module doc). The old record is
                // freed only once this thread unpins, after the swap below is durable.
                let old = found.rec.offset();
                self.count(seg_off, 0, rec_expires - self.has_expiry(old));
                // Retired with the bucket still locked: see `retire`.
                self.retire_record(guard, old, mode != PutMode::UpsertKeepParts);
                // Ordering: this flush and fence make the record durable before the slot's
                // 8-byte store points to it. The swap is failure-atomic: after a crash the slot
                // holds the old or the new offset, each naming a complete record.
                if !fault::armed(Fault::SkipRecordFlushOnUpsert) {
                    region.flush(rec, unflushed as usize);
                }
                region.fence();
                slot.record.store(word, Ordering::Release);
                region.persist(slot_offset(seg_off, found.bucket, found.slot), 8);
                drop(held);
                return Ok(PutOutcome::Replaced);
            }
            let target = match self.pick_slot(seg, seg_off, &mut held, (b, b1), displace)? {
                Some(t) => t,
                None => {
                    if !seg.covers(h) {
                        // A split changes a segment's pattern and its directory entries under
                        // all its bucket locks, so a segment the directory still names for `h`
                        // (checked under these locks) covers `h`, unless its header is damaged:
                        // the split below would find room "elsewhere" and this loop never end.
                        let (d, p) = seg.depth_pattern();
                        return Err(corrupted(format!(
                            "segment {seg_off:#x} (depth {d}, pattern {p:#x}) does not cover the \
                             hash {h:#x} its directory entry maps to"
                        )));
                    }
                    drop(held);
                    self.split(seg_off, h)?;
                    continue;
                }
            };
            // Counted before the flushes (bookkeeping first: see the module doc).
            self.count(seg_off, 1, rec_expires);
            let (bi, i) = target;
            let bucket = seg.bucket(bi);
            bucket.write_slot(i, word, h);
            if !fault::armed(Fault::SkipRecordFlushOnInsert) {
                region.flush(rec, unflushed as usize);
            }
            region.flush(slot_offset(seg_off, bi, i), 16);
            // Ordering: record and slot contents are durable before the alloc bit publishes them
            // (a crash before this fence leaves the bit clear: the record is unreachable and
            // the sweep reclaims it).
            if !fault::armed(Fault::SkipFenceBeforePublish) {
                region.fence();
            }
            bucket.publish(i, h, bi == b1);
            region.flush(bucket_off(seg_off, bi), 8 + 14);
            if bi >= BUCKETS {
                // Stashed: note it in the home bucket's overflow metadata. Derivable, so it may
                // share the fence: repair rebuilds it from the stash if the crash tears it.
                seg.bucket(b).add_overflow(fingerprint(h), bi - BUCKETS);
                region.flush(bucket_off(seg_off, b), 32);
            }
            // Ordering: the alloc bit is durable before the bucket is unlocked, so no reader
            // (they wait for unlocked buckets) ever sees a record that a crash could take away.
            if !fault::armed(Fault::SkipFenceAfterPublish) {
                region.fence();
            }
            drop(held);
            return Ok(PutOutcome::Inserted);
        }
    }

    /// A free slot for a new record of home bucket `b`: the less full of `b` and `b1` (`b` on a
    /// tie), else the other, else one made by displacing a record (if `displace`), else one in
    /// the stash. `None`: the segment must split. (`room.rs` simulates this rule.)
    fn pick_slot(
        &self,
        seg: &Segment,
        seg_off: u64,
        held: &mut Held<'_>,
        (b, b1): (usize, usize),
        displace: bool,
    ) -> Result<Option<(usize, usize)>, IndexError> {
        let (c0, c1) = (seg.bucket(b).count(), seg.bucket(b1).count());
        let first = if c0 <= c1 { b } else { b1 };
        let second = if first == b { b1 } else { b };
        for bi in [first, second] {
            if let Some(i) = seg.bucket(bi).free_slot() {
                return Ok(Some((bi, i)));
            }
        }
        if displace && let Some(t) = self.displace(seg, seg_off, held, b, b1) {
            return Ok(Some(t));
        }
        for s in 0..STASH {
            held.add(BUCKETS + s)?;
            if let Some(i) = seg.stash(s).free_slot() {
                return Ok(Some((BUCKETS + s, i)));
            }
        }
        Ok(None)
    }

    /// Frees a slot in `b1` by moving one of its own records to `b2` (as a probe record), or a
    /// slot in `b` by moving a probe record back to its home `b - 1`.
    fn displace(
        &self,
        seg: &Segment,
        seg_off: u64,
        held: &mut Held<'_>,
        b: usize,
        b1: usize,
    ) -> Option<(usize, usize)> {
        let b2 = (b1 + 1) % BUCKETS;
        let b0 = (b + BUCKETS - 1) % BUCKETS;
        // (from, to, which records may move, moved record is probe in `to`)
        for (from, to, move_probe, probe_in_to) in [(b1, b2, false, true), (b, b0, true, false)] {
            if seg.bucket(to).free_slot().is_none() || !held.try_add(to) {
                continue;
            }
            let Some(j) = seg.bucket(to).free_slot() else {
                continue;
            };
            let src = seg.bucket(from);
            for i in set_bits(src.alloc_bits()) {
                if src.is_probe(i) != move_probe {
                    continue;
                }
                self.move_slot(seg, seg_off, (from, i), (to, j), probe_in_to);
                return Some((from, i));
            }
        }
        None
    }

    /// Copies a published slot to a free slot of another bucket, then removes the original.
    /// Both buckets are locked by the caller.
    fn move_slot(
        &self,
        seg: &Segment,
        seg_off: u64,
        (from, i): (usize, usize),
        (to, j): (usize, usize),
        probe: bool,
    ) {
        let region = self.region();
        let src = &seg.bucket(from).slots[i];
        let (rec, h) = (
            src.record.load(Ordering::Relaxed),
            src.hash.load(Ordering::Relaxed),
        );
        let dst = seg.bucket(to);
        dst.write_slot(j, rec, h);
        region.flush(slot_offset(seg_off, to, j), 16);
        region.fence();
        dst.publish(j, h, probe);
        region.flush(bucket_off(seg_off, to), 8 + 14);
        // Ordering: the copy is durable before the original is removed. A crash between the
        // two fences leaves the record in both buckets; repair removes the duplicate.
        region.fence();
        seg.bucket(from).unpublish(i);
        region.persist(bucket_off(seg_off, from), 8);
    }

    /// Locks the home bucket pair of `h` in the segment that holds `h` now (retrying across
    /// splits that move it).
    pub(super) fn lock_home(&self, h: u64) -> Result<(u64, &Segment, Held<'_>), IndexError> {
        let (b, b1) = (bucket_index(h), (bucket_index(h) + 1) % BUCKETS);
        loop {
            let (at, seg) = self.locate(h)?;
            let held = Held::home(seg, b, b1)?;
            if self.still_current(&at) {
                return Ok((at.segment, seg, held));
            }
        }
    }

    /// Deletes `key`; true if it was present. On return the deletion is durable. The record
    /// and the blocks it owns (a large hash's table and parts) are reclaimed.
    pub fn delete(&self, key: &[u8]) -> Result<bool, IndexError> {
        self.delete_inner(key, true)
    }

    /// Deletes `key` but reclaims only its record, not the blocks it owns: they have been
    /// handed to another record (RENAME of a large hash).
    pub fn delete_detached(&self, key: &[u8]) -> Result<bool, IndexError> {
        self.delete_inner(key, false)
    }

    fn delete_inner(&self, key: &[u8], with_children: bool) -> Result<bool, IndexError> {
        let h = self.hash(key);
        // The slot lines and the neighbour's header load alongside the home header, rather than
        // one after another under the locks.
        let guard = self.pin_prefetched(h);
        let b = bucket_index(h);
        let (seg_off, seg, mut held) = self.lock_home(h)?;
        let Some(Found { bucket, slot, rec }) = self.search(seg, h, key)? else {
            return Ok(false);
        };
        let record = rec.offset();
        if bucket >= BUCKETS {
            held.add(bucket)?;
        }
        // Bookkeeping first (see the module doc): the record is freed only
        // once this thread unpins, after `unlink` made its removal durable.
        self.count(seg_off, -1, -self.has_expiry(record));
        if with_children {
            self.retire_record(&guard, record, true);
        } else {
            self.retire(&guard, record);
        }
        self.unlink(seg, seg_off, bucket, slot, b, h);
        drop(held);
        Ok(true)
    }

    /// Removes slot `i` of bucket `bi` (home bucket `b`, all locked) durably.
    pub(crate) fn unlink(
        &self,
        seg: &Segment,
        seg_off: u64,
        bi: usize,
        i: usize,
        b: usize,
        h: u64,
    ) {
        let region = self.region();
        seg.bucket(bi).unpublish(i);
        if !fault::armed(Fault::SkipUnlinkFlush) {
            region.flush(bucket_off(seg_off, bi), 8);
        }
        if bi >= BUCKETS {
            seg.bucket(b).remove_overflow(fingerprint(h), bi - BUCKETS);
            region.flush(bucket_off(seg_off, b), 32);
        }
        // Ordering: the cleared alloc bit is durable before the bucket is unlocked and before
        // the record is retired; the record is only freed after every reader that could have
        // seen it has unpinned.
        region.fence();
    }

    /// Retires a record and the blocks it owns (see `hashtab::children`), a large hash's parts
    /// only if `parts` (without them, only its table: the parts' headers are not read).
    /// Damaged children are left to the next open's sweep (which reclaims whatever nothing
    /// reaches).
    pub(crate) fn retire_record(&self, guard: &crossbeam_epoch::Guard, record: u64, parts: bool) {
        if let Some(r) = crate::record::RecordRef::open(self.region(), record) {
            if !parts {
                if crate::hashtab::owns_blocks(&r)
                    && let Some(t) = crate::hashtab::table_ref(r.value())
                {
                    self.retire(guard, t);
                }
            } else if let Ok(children) = self.children(&r) {
                for c in children {
                    self.retire(guard, c.offset);
                }
            }
        }
        self.retire(guard, record);
    }

    /// Hands a block (a replaced or deleted record, an old directory) to epoch reclamation:
    /// freed (zeroed) once no reader can hold it. Counted as pending garbage until then.
    ///
    /// Called while the block's last reference is still locked (its bucket, or the directory
    /// lock for a directory): a background sweep that has not yet visited it must count it as
    /// in use, or it would free it too and the deferred free would later free a reallocated
    /// block. The sweep visits under the same locks, so either it saw the reference or this
    /// keeps the block.
    pub(crate) fn retire(&self, guard: &crossbeam_epoch::Guard, block: u64) {
        let size = self.heap.block_size(block).unwrap_or(0);
        // An open atomic transaction may roll back to this block: held until it ends (see
        // `deferral.rs`). During a rollback at open, the sweep decides.
        let route = self.deferral.route(block, size);
        if route == super::deferral::Route::ToSweep {
            return;
        }
        self.heap.keep(block);
        self.garbage.bytes.add(size as i64);
        if route == super::deferral::Route::Free {
            self.defer_free(guard, block, size);
        }
    }

    /// Keeps `block` through a background sweep, for a writer about to unlink it from a
    /// reference that the sweep reads under locks the writer does not hold (a large hash's part
    /// word: the sweep reads it under the record's segment lock, the writer holds the key's
    /// lock). Called before the store that unlinks it, then [`retire`](Self::retire) after:
    /// either the sweep read the old reference and marked the block, or this marked it, so a
    /// sweep that ends in between does not free it under the later deferred free.
    pub(crate) fn keep(&self, block: u64) {
        self.heap.keep(block);
    }

    /// Frees `block` once no reader pinned now can still see it.
    pub(crate) fn defer_free(&self, guard: &crossbeam_epoch::Guard, block: u64, size: u64) {
        let garbage = self.garbage.clone();
        guard.defer(move || {
            // If the index is gone, the block stays allocated on the media and the next open's
            // sweep reclaims it (nothing reaches it).
            if let Some(heap) = garbage.heap.upgrade() {
                let _ = heap.free(block);
                garbage.bytes.add(-(size as i64));
            }
        });
    }
}

/// Offset of bucket `bi` of the segment at `seg_off`.
pub(crate) fn bucket_off(seg_off: u64, bi: usize) -> u64 {
    seg_off + bucket_offset(bi)
}

/// Offset of slot `i` of bucket `bi`.
pub(crate) fn slot_offset(seg_off: u64, bi: usize, i: usize) -> u64 {
    bucket_off(seg_off, bi) + 32 + 16 * i as u64
}
