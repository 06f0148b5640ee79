//! SCAN: a cursor over the hash space. The cursor is the start of a segment's hash range with
//! the bucket to resume at in its low 6 bits. Segments only ever split (never merge), and a
//! split divides a range into two contiguous halves, so every key present for the whole scan is
//! returned at least once, even across splits and directory doublings: a range already passed
//! is never revisited, a range not yet reached is visited whole (in one segment or in two).

use std::sync::atomic::Ordering;

use super::bucket::{held_for_ever, set_bits};
use super::directory::MAX_GLOBAL_DEPTH;
use super::error::{IndexError, corrupted};
use super::index::Dash;
use super::segment::{BUCKETS, STASH, Segment, bucket_index};
use super::stall::Stall;
use crate::record::RecordRef;

impl Dash {
    /// A cursor from which a scan first visits the records whose home bucket is `key`'s, in
    /// the segment `key` maps to: the records whose slots a new `key` competes for.
    pub fn cursor_near(&self, key: &[u8]) -> u64 {
        let h = self.hash(key);
        (h & !(BUCKETS as u64 - 1)) | bucket_index(h) as u64
    }

    /// Visits the records of home buckets from `cursor` on, at least `count` of them unless the
    /// scan ends; returns the cursor to continue from, 0 when the whole index was visited.
    pub fn scan(
        &self,
        cursor: u64,
        count: usize,
        mut f: impl FnMut(RecordRef<'_>),
    ) -> Result<u64, IndexError> {
        let _guard = self.pin();
        let mut pos = cursor & !(BUCKETS as u64 - 1);
        let mut j = (cursor & (BUCKETS as u64 - 1)) as usize;
        let mut seen = 0;
        let mut batch = Vec::new();
        // A segment found for `pos` that does not cover it, its directory entry unchanged (a
        // split between its two stores, or damage if it lasts), and a bucket that stays held,
        // are waited for with a `Stall`: each is reported as damage if it never changes.
        let mut uncovered = Stall::default();
        let mut held = Stall::default();
        'segment: loop {
            let (at, seg) = self.locate(pos)?;
            let (d, p) = seg.depth_pattern();
            if d > MAX_GLOBAL_DEPTH || p >> d != 0 {
                return Err(corrupted(format!(
                    "segment {:#x} has depth {d} and pattern {p:#x}",
                    at.segment
                )));
            }
            if !seg.covers(pos) || !self.still_current(&at) {
                if self.still_current(&at) {
                    uncovered.wait(at.segment).map_err(|_| {
                        corrupted(format!(
                            "segment {:#x} (depth {d}, pattern {p:#x}) does not cover the \
                             position {pos:#x} its directory entry maps to",
                            at.segment
                        ))
                    })?;
                } else {
                    uncovered.progress();
                }
                continue;
            }
            uncovered.progress();
            let start = if d == 0 { 0 } else { p << (64 - d) };
            let end = if d == 0 {
                0
            } else {
                start.wrapping_add(1 << (64 - d))
            };
            while j < BUCKETS {
                batch.clear();
                match read_home(seg, j, &mut batch) {
                    Ok(()) => held.progress(),
                    // A writer was active: read the bucket again.
                    Err(None) => {
                        held.progress();
                        continue;
                    }
                    Err(Some(word)) => {
                        held.wait(word).map_err(|s| held_for_ever(s.value))?;
                        continue;
                    }
                }
                // A split of this segment since `locate` moved the upper half of its range (and
                // of bucket j) elsewhere: find the segment for `pos` again and re-read bucket j
                // there (duplicates are allowed, misses are not); the moved half is visited
                // when the scan reaches its range.
                if seg.depth_pattern() != (d, p) || !self.still_current(&at) {
                    continue 'segment;
                }
                for &rec in &batch {
                    let r = RecordRef::open(self.region(), rec)
                        .ok_or_else(|| corrupted(format!("record {rec:#x} is unreadable")))?;
                    f(r);
                }
                seen += batch.len();
                j += 1;
                if seen >= count && j < BUCKETS {
                    return Ok(start | j as u64);
                }
            }
            if end == 0 {
                return Ok(0);
            }
            pos = end;
            j = 0;
            if seen >= count {
                return Ok(pos);
            }
        }
    }
}

/// Collects the records whose home is bucket `j` (in `j`, in `j + 1` as probes, or in the
/// stash) under optimistic validation. `Err(Some(word))` if a bucket was held (its lock word),
/// `Err(None)` if a writer changed one meanwhile.
fn read_home(seg: &Segment, j: usize, out: &mut Vec<u64>) -> Result<(), Option<u64>> {
    let j1 = (j + 1) % BUCKETS;
    let mut versions = [0u32; 2 + STASH];
    let mut buckets = [0usize; 2 + STASH];
    buckets[0] = j;
    buckets[1] = j1;
    for s in 0..STASH {
        buckets[2 + s] = BUCKETS + s;
    }
    for (v, &bi) in versions.iter_mut().zip(&buckets) {
        match seg.bucket(bi).read_version() {
            Some(x) => *v = x,
            None => return Err(Some(seg.bucket(bi).lock_word())),
        }
    }
    for &bi in &buckets {
        let b = seg.bucket(bi);
        for i in set_bits(b.alloc_bits()) {
            if bucket_index(b.slots[i].hash.load(Ordering::Relaxed)) == j {
                out.push(crate::record::slot_record(
                    b.slots[i].record.load(Ordering::Acquire),
                ));
            }
        }
    }
    let unchanged = versions
        .iter()
        .zip(&buckets)
        .all(|(&v, &bi)| seg.bucket(bi).validate(v));
    if unchanged { Ok(()) } else { Err(None) }
}
