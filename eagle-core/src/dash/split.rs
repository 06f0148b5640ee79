//! Segment split and directory doubling.
//!
//! A split of segment S (local depth d, pattern P) into S and a new segment N, all of S's
//! buckets locked and the directory lock held:
//! 1. allocate N, write it empty with depth d+1, pattern P·1, `parent` = S; persist N;
//! 2. `S.sibling = N`; persist. From here a crash is rolled forward by repair;
//! 3. copy every record of S whose hash has bit d set into N; persist N;
//! 4. clear those records from S; persist S;
//! 5. point N's half of S's directory entries at N; persist;
//! 6. `S.depth_pattern = (d+1, P·0)` (one word); persist;
//! 7. `S.sibling = 0`; persist; `N.parent = 0`; persist.
//!
//! Repair of S with a sibling redoes 3-7 (each step idempotent, see `repair.rs`); N with a parent
//! is repaired by repairing the parent first. Local depth is persisted only after the directory
//! update (step 6 after 5), the bug that makes keys unreachable in CCEH.

use std::sync::atomic::Ordering;

use super::bucket::set_bits;
use super::directory::{DIR_HEADER, Directory, MAX_GLOBAL_DEPTH, dir_size};
use super::error::{IndexError, corrupted};
use super::index::Dash;
use super::segment::{ALL_BUCKETS, BUCKETS, Segment, bucket_index, prefix};
use super::write::bucket_off;

impl Dash {
    /// Splits the segment at `seg_off`, which had no room for a record of hash `h` (unless
    /// another writer split it, or made room, meanwhile).
    pub(crate) fn split(&self, seg_off: u64, h: u64) -> Result<(), IndexError> {
        self.split_if(seg_off, |seg| !has_room(seg, h))
    }

    /// Splits the segment at `seg_off` if it still has the depth and pattern `expect` (else
    /// another writer split it since it was read, and the caller looks again).
    pub(crate) fn split_unchanged(
        &self,
        seg_off: u64,
        expect: (u32, u64),
    ) -> Result<(), IndexError> {
        self.split_if(seg_off, |seg| seg.depth_pattern() == expect)
    }

    /// Splits the segment at `seg_off` if `needed` says so, asked under the directory lock with
    /// all the segment's buckets locked (as every split holds them).
    fn split_if(
        &self,
        seg_off: u64,
        needed: impl FnOnce(&Segment) -> bool,
    ) -> Result<(), IndexError> {
        let _dir = self.dir_lock.lock();
        let seg = self.segment(seg_off)?;
        seg.lock_all()?;
        let result = if needed(seg) {
            self.split_locked(seg_off, seg)
        } else {
            Ok(())
        };
        seg.unlock_all();
        result
    }

    fn split_locked(&self, seg_off: u64, seg: &Segment) -> Result<(), IndexError> {
        let region = self.region();
        let (d, p) = seg.depth_pattern();
        if d as usize >= 56 {
            return Err(corrupted(format!(
                "segment {seg_off:#x} at depth {d} cannot split"
            )));
        }
        if d >= self.directory()?.global_depth {
            self.double()?;
        }
        // Step 1.
        let new_off = self.new_segment(d + 1, p << 1 | 1, seg_off)?;
        self.note_split(seg_off, new_off);
        // Step 2. Ordering: N is durable (new_segment persisted it) before S names it.
        seg.header.sibling.store(new_off, Ordering::Release);
        region.persist(seg_off, 64);
        self.finish_split(seg_off, seg, new_off)
    }

    /// Steps 3-7, also the roll-forward of a split interrupted by a crash. Idempotent.
    pub(crate) fn finish_split(
        &self,
        seg_off: u64,
        seg: &Segment,
        new_off: u64,
    ) -> Result<(), IndexError> {
        let region = self.region();
        let new = self.segment(new_off)?;
        if !new.has_magic() {
            return Err(corrupted(format!(
                "segment {seg_off:#x} names {new_off:#x} as its sibling, which is no segment"
            )));
        }
        let (nd, np) = new.depth_pattern();
        if nd == 0 || nd > 56 {
            return Err(corrupted(format!(
                "new segment {new_off:#x} has depth {nd}"
            )));
        }
        // N holds the upper half of S's range: its pattern is S's with a 1 appended (S's depth
        // already nd if step 6 was done before the crash). Anything else is damage, and its
        // directory entries (step 5) could lie past the directory or be another segment's.
        let (sd, sp) = seg.depth_pattern();
        let halves = np >> nd == 0
            && np & 1 == 1
            && ((sd + 1 == nd && sp == np >> 1) || (sd == nd && sp == np & !1));
        if !halves {
            return Err(corrupted(format!(
                "segment {seg_off:#x} (depth {sd}, pattern {sp:#x}) names {new_off:#x} (depth \
                 {nd}, pattern {np:#x}) as the half it splits into"
            )));
        }
        // Checked before anything moves: a split that stopped at step 5 would leave N's half of
        // the records in N, which nothing names.
        let dir = self.directory()?;
        let g = dir.global_depth;
        if nd > g {
            return Err(corrupted(format!(
                "segment depth {nd} exceeds global depth {g}"
            )));
        }
        // Step 3: copy N's records (those whose prefix of depth nd is N's pattern) into N,
        // unless already there (a previous attempt copied them before the crash).
        let mut moved = Vec::new();
        for bi in 0..ALL_BUCKETS {
            let bucket = seg.bucket(bi);
            for i in set_bits(bucket.alloc_bits()) {
                let h = bucket.slots[i].hash.load(Ordering::Relaxed);
                if prefix(h, nd) == np {
                    moved.push((bi, i, bucket.slots[i].record.load(Ordering::Relaxed), h));
                }
            }
        }
        // Each record keeps its bucket and slot (and probe bit). Until step 7 nothing but this
        // step writes N (it is unreachable, or reachable only through a directory entry whose
        // users repair N, and so finish this split, first). So N's copy of a position is this
        // record, or, after a crash tore the previous attempt, zeroes or a half-written slot:
        // rewriting every position is both correct and idempotent.
        for &(bi, i, rec, h) in &moved {
            let dst = new.bucket(bi);
            dst.write_slot(i, rec, h);
            dst.publish(i, h, seg.bucket(bi).is_probe(i));
        }
        rebuild_overflow(new);
        // Ordering: N's copies are durable before S loses the originals (step 4), so every
        // record is in S or N (or both) at every moment.
        if crate::fault::armed(crate::fault::Fault::SkipFenceBeforeSplitUnpublish) {
            region.flush(new_off, crate::heap::SEGMENT_CLASS_SIZE as usize);
        } else {
            region.persist(new_off, crate::heap::SEGMENT_CLASS_SIZE as usize);
        }
        // Step 4.
        for &(bi, i, _, _) in &moved {
            seg.bucket(bi).unpublish(i);
        }
        rebuild_overflow(seg);
        for bi in 0..ALL_BUCKETS {
            region.flush(bucket_off(seg_off, bi), 32);
        }
        region.fence();
        // Step 5: every directory entry whose prefix of depth nd is N's pattern points to N.
        let first = np << (g - nd);
        let count = 1u64 << (g - nd);
        for i in first..first + count {
            dir.entry(i).store(new_off, Ordering::Release);
        }
        self.hints.repoint(g, first, count, new_off);
        region.flush(dir.entry_offset(first), (count * 8) as usize);
        // Ordering: the directory names N before S's depth says it no longer holds N's half.
        region.fence();
        // Step 6.
        seg.set_depth_pattern(nd, np & !1);
        region.persist(seg_off, 64);
        // Step 7.
        seg.header.sibling.store(0, Ordering::Release);
        region.persist(seg_off, 64);
        new.header.parent.store(0, Ordering::Release);
        region.persist(new_off, 64);
        Ok(())
    }

    /// Doubles the directory: a new one with every entry twice, persisted, then published by the
    /// root's 8-byte store; the old one is retired through the epoch. Directory lock held.
    fn double(&self) -> Result<(), IndexError> {
        let region = self.region();
        let old = self.directory()?;
        let g = old.global_depth + 1;
        if g > MAX_GLOBAL_DEPTH {
            return Err(corrupted(format!(
                "directory would exceed depth {MAX_GLOBAL_DEPTH}"
            )));
        }
        let new_off = self.alloc(dir_size(g))?;
        let new = Directory::init(region, new_off, g);
        for i in 0..old.len() {
            let seg = old.entry(i).load(Ordering::Acquire);
            new.entry(2 * i).store(seg, Ordering::Relaxed);
            new.entry(2 * i + 1).store(seg, Ordering::Relaxed);
        }
        region.persist(new_off, (DIR_HEADER + (8 << g)) as usize);
        // Ordering: the new directory is durable before the root names it. A crash before the
        // root store leaves the old directory in place and the new block unreachable (reclaimed
        // by the sweep); after it, the old one is unreachable (likewise).
        self.root().store(new_off, Ordering::Release);
        region.persist(self.root_at, 8);
        self.note_directory(&new);
        let guard = self.pin();
        self.retire(&guard, old.offset);
        Ok(())
    }
}

/// Whether a record of hash `h` fits in `seg` without a split (or `seg` no longer holds `h`).
fn has_room(seg: &Segment, h: u64) -> bool {
    let b = bucket_index(h);
    !seg.covers(h)
        || seg.bucket(b).free_slot().is_some()
        || seg.bucket((b + 1) % BUCKETS).free_slot().is_some()
        || (0..super::segment::STASH).any(|s| seg.stash(s).free_slot().is_some())
}

/// Rebuilds every bucket's overflow metadata from the stash contents.
pub(crate) fn rebuild_overflow(seg: &Segment) {
    for bi in 0..BUCKETS {
        seg.bucket(bi).clear_overflow();
    }
    for s in 0..super::segment::STASH {
        let st = seg.stash(s);
        for i in set_bits(st.alloc_bits()) {
            let h = st.slots[i].hash.load(Ordering::Relaxed);
            seg.bucket(bucket_index(h))
                .add_overflow(super::bucket::fingerprint(h), s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dash::IndexError;

    /// Segment 0 of a table of 3,000 keys, the directory doubled past its depth (so a half of it
    /// fits in the directory), with a new segment of `depth` and `pattern` named as the half it
    /// splits into; the roll-forward must refuse it and leave every record where it was.
    fn refused(name: &str, half: impl Fn(u32, u64) -> (u32, u64)) {
        let e = crate::engine::temp_engine_with_keys(name, 16 << 20, 3000);
        let index = e.index();
        {
            let _dir = index.dir_lock.lock();
            index.double().unwrap();
        }
        let seg_off = index.directory().unwrap().entry(0).load(Ordering::Acquire);
        let seg = index.segment(seg_off).unwrap();
        let (d, p) = seg.depth_pattern();
        let records = |seg: &Segment| -> u32 {
            (0..ALL_BUCKETS)
                .map(|bi| seg.bucket(bi).alloc_bits().count_ones())
                .sum()
        };
        let before = records(seg);
        let (nd, np) = half(d, p);
        let new_off = index.new_segment(nd, np, seg_off).unwrap();
        assert!(matches!(
            index.finish_split(seg_off, seg, new_off),
            Err(IndexError::Corrupted { .. })
        ));
        assert_eq!(records(seg), before, "records left the segment");
    }

    #[test]
    fn a_split_whose_new_half_is_the_lower_half_is_refused_before_anything_moves() {
        // Half of the segment's records match it: they would move to it, and its directory
        // entries would be the segment's own.
        refused("split-lower-half", |d, p| (d + 1, p << 1));
    }

    #[test]
    fn a_split_whose_new_half_is_wider_than_its_depth_is_refused() {
        // A pattern with a bit beyond its depth: its directory entries would start past the
        // directory.
        refused("split-wide-pattern", |d, p| {
            (d + 1, (p << 1 | 1) | 1 << (d + 1))
        });
    }
}
