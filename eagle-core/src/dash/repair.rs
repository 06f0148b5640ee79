//! Recovery: repair of a segment before it is first used after a crash, and the sweep that tells
//! the heap which blocks are reachable. For now `Dash::open` runs the sweep, which repairs every
//! segment, before the index is returned: open time grows with the index. Making the sweep a
//! background task (and repair truly lazy) is the instant-recovery work of the WAL issue.
//!
//! Repair of a segment S (directory lock held; no other thread touches S's buckets, since every
//! operation repairs a segment before locking or reading it):
//! 1. if S was created by a split that may not have finished (`parent` set), repair the parent,
//!    which finishes that split;
//! 2. reset every bucket lock (a crash can leave them held);
//! 3. if S was splitting (`sibling` set), roll the split forward (`finish_split`);
//! 4. drop duplicate slots (a crash during displacement leaves a record in two buckets), fix
//!    probe bits, rebuild fingerprints and overflow metadata from the slots' hashes: everything
//!    but the alloc bits and slot contents is derivable;
//! 5. persist S, then tag it with the current recovery epoch (persisted last: a crash during
//!    repair repeats it, every step being idempotent).

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use super::bucket::set_bits;
use super::error::{IndexError, corrupted};
use super::index::Dash;
use super::segment::{ALL_BUCKETS, BUCKETS, Segment, bucket_index};
use super::split::rebuild_overflow;
use crate::heap::SEGMENT_CLASS_SIZE;

impl Dash {
    /// Repairs the segment at `seg_off` if it needs it.
    pub(crate) fn repair(&self, seg_off: u64) -> Result<(), IndexError> {
        let _dir = self.dir_lock.lock();
        self.repair_locked(seg_off)
    }

    fn repair_locked(&self, seg_off: u64) -> Result<(), IndexError> {
        let region = self.region();
        let seg = self.checked_segment(seg_off, "the directory")?;
        let parent = seg.header.parent.load(Ordering::Acquire);
        if parent != 0 {
            let p = self.checked_segment(parent, "a segment's parent word")?;
            if p.header.sibling.load(Ordering::Acquire) == seg_off {
                self.repair_segment(parent, p)?;
            }
            // Ordering: the parent's split is complete and durable (finish_split persisted it)
            // before this segment stops pointing at it.
            seg.header.parent.store(0, Ordering::Release);
            region.persist(seg_off, 64);
        }
        if seg.header.repaired_epoch.load(Ordering::Acquire) != self.epoch {
            self.repair_segment(seg_off, seg)?;
        }
        Ok(())
    }

    fn repair_segment(&self, seg_off: u64, seg: &Segment) -> Result<(), IndexError> {
        let region = self.region();
        // The sibling is checked before any write: its bucket locks are reset below.
        let sibling = seg.header.sibling.load(Ordering::Acquire);
        let sibling_seg = match sibling {
            0 => None,
            s => Some(self.checked_segment(s, "a segment's sibling word")?),
        };
        for bi in 0..ALL_BUCKETS {
            seg.bucket(bi).reset_lock();
        }
        if let Some(s) = sibling_seg {
            for bi in 0..ALL_BUCKETS {
                s.bucket(bi).reset_lock();
            }
            self.finish_split(seg_off, seg, sibling)?;
        }
        let (d, p) = seg.depth_pattern();
        let mut seen = HashSet::new();
        for bi in 0..ALL_BUCKETS {
            let bucket = seg.bucket(bi);
            let (mut alloc, mut probe) = (0u32, 0u32);
            for i in set_bits(bucket.alloc_bits()) {
                let rec = bucket.slots[i].record.load(Ordering::Relaxed);
                let h = bucket.slots[i].hash.load(Ordering::Relaxed);
                if super::segment::prefix(h, d) != p {
                    return Err(corrupted(format!(
                        "segment {seg_off:#x} (depth {d}, pattern {p:#x}) holds a record of hash {h:#018x}"
                    )));
                }
                let home = bucket_index(h);
                let legal = bi == home || bi == (home + 1) % BUCKETS || bi >= BUCKETS;
                if !legal {
                    return Err(corrupted(format!(
                        "segment {seg_off:#x} bucket {bi} holds a record of bucket {home}"
                    )));
                }
                if !seen.insert(rec) {
                    continue; // the second copy left by an interrupted displacement
                }
                alloc |= 1 << i;
                if bi < BUCKETS && bi != home {
                    probe |= 1 << i;
                }
                bucket.set_fp(i, h);
            }
            bucket.set_bitmap(alloc, probe);
        }
        rebuild_overflow(seg);
        region.persist(seg_off, SEGMENT_CLASS_SIZE as usize);
        // Ordering: the repaired contents are durable before the tag says so; a crash before the
        // tag's persist repeats the repair, which is idempotent.
        seg.header
            .repaired_epoch
            .store(self.epoch, Ordering::Release);
        region.persist(seg_off, 64);
        Ok(())
    }

    /// Calls `f` with each distinct segment offset in directory order.
    pub(crate) fn for_each_segment(
        &self,
        mut f: impl FnMut(u64) -> Result<(), IndexError>,
    ) -> Result<(), IndexError> {
        // Pinned: a doubling on another thread may retire this directory while it is read (the
        // background sweep walks it while writes go on).
        let _guard = self.pin();
        let dir = self.directory()?;
        let mut prev = None;
        for i in 0..dir.len() {
            let s = dir.entry(i).load(Ordering::Acquire);
            if prev != Some(s) {
                f(s)?;
                prev = Some(s);
            }
        }
        Ok(())
    }
}
