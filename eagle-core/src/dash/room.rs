//! Room for a logged batch's new keys, made before the batch is logged.
//!
//! Once its log record is durable a batch must complete (only the redo at the next open could
//! finish it otherwise), so its puts must not need a segment split that a full pool cannot
//! give. [`Dash::make_room`] runs before the log record is written: it simulates, on DRAM
//! copies of the bucket counts, where the batch's new keys will go, and splits every segment
//! that would run out of slots, until the simulation places every key. A split it makes is
//! harmless if the batch is then refused (splits do not change the keyspace, and each is crash
//! consistent by itself); a split that fails for lack of space refuses the batch before
//! anything is logged.
//!
//! Why the simulation is exact enough. A batch's puts are published with
//! [`Dash::publish`](super::index::Dash), which places a new key like an insert but never
//! displaces: the less full of its two buckets (the home bucket on a tie), else the other,
//! else any stash slot. The simulation applies that rule to the counts it read. If the real
//! counts have at least as many free slots in every bucket and in the stash as the simulated
//! ones (they do at the start, when the keys' segments are as read and the batch's deletes
//! only free slots), the rule keeps it so after each placement: both place in the same bucket,
//! or the real one chose a bucket with a free slot the simulation lacked; and a real key goes
//! to the stash only when both its buckets are full, so the simulated key did too. So every key
//! the simulation places finds a slot, also in a redo of the batch after a crash (which starts
//! from a state the applied prefix reached by the same rule).
//!
//! What it cannot promise: another thread's insert may take a counted slot between the
//! simulation and the batch's put (the keys differ, the buckets may not). That put then splits,
//! with the heap's reserve (`heap/reserve.rs`) behind it.

use std::collections::HashSet;

use super::bucket::SLOTS;
use super::error::IndexError;
use super::index::Dash;
use super::segment::{BUCKETS, STASH, Segment, bucket_index};

/// A segment the batch's new keys do not fit in: where it is, and its depth and pattern as
/// read (so a split is made only if no other writer has split it since).
struct TooFull {
    seg_off: u64,
    depth_pattern: (u32, u64),
}

/// A bucket count not read yet.
const UNREAD: u8 = u8::MAX;

/// Simulated counts of one segment: its buckets (read when first needed), and the stash's
/// free slots.
struct Counts<'a> {
    seg_off: u64,
    seg: &'a Segment,
    depth_pattern: (u32, u64),
    buckets: [u8; BUCKETS],
    stash_free: u32,
}

impl<'a> Counts<'a> {
    fn new(seg_off: u64, seg: &'a Segment) -> Counts<'a> {
        Counts {
            seg_off,
            seg,
            depth_pattern: seg.depth_pattern(),
            buckets: [UNREAD; BUCKETS],
            stash_free: (0..STASH)
                .map(|s| SLOTS as u32 - seg.stash(s).count())
                .sum(),
        }
    }

    fn count(&mut self, b: usize) -> u8 {
        if self.buckets[b] == UNREAD {
            self.buckets[b] = self.seg.bucket(b).count() as u8;
        }
        self.buckets[b]
    }

    /// Places a new key of hash `h` as `Dash::publish` would; false if it finds no slot.
    fn place(&mut self, h: u64) -> bool {
        let (b, b1) = (bucket_index(h), (bucket_index(h) + 1) % BUCKETS);
        let (c0, c1) = (self.count(b), self.count(b1));
        let (first, second) = if c0 <= c1 { (b, b1) } else { (b1, b) };
        for bi in [first, second] {
            if usize::from(self.buckets[bi]) < SLOTS {
                self.buckets[bi] += 1;
                return true;
            }
        }
        if self.stash_free > 0 {
            self.stash_free -= 1;
            return true;
        }
        false
    }
}

impl Dash {
    /// Splits segments until every key of `puts` that is absent now, or that `deleted` names
    /// (the batch deletes it before it puts it), has a slot waiting (see the module
    /// documentation). A key put twice is counted twice (batches rarely repeat one). Returns
    /// the number of splits made. On an error (the pool is full), the batch must be refused.
    pub(crate) fn make_room(
        &self,
        puts: &[&[u8]],
        deleted: &HashSet<&[u8]>,
    ) -> Result<u32, IndexError> {
        let mut splits = 0;
        while let Some(full) = self.first_without_room(puts, deleted)? {
            self.split_unchanged(full.seg_off, full.depth_pattern)?;
            splits += 1;
        }
        Ok(splits)
    }

    /// The first segment that the simulation finds too full for the batch's new keys.
    fn first_without_room(
        &self,
        puts: &[&[u8]],
        deleted: &HashSet<&[u8]>,
    ) -> Result<Option<TooFull>, IndexError> {
        let _guard = self.pin();
        let mut new = Vec::new();
        for key in puts {
            let h = self.hash(key);
            let (at, seg) = self.locate(h)?;
            // Read without locks, like a lookup; a record it cannot read counts as absent.
            let present = matches!(self.find(seg, h, key), Ok(Some(_)));
            if !present || (!deleted.is_empty() && deleted.contains(key)) {
                new.push((at.segment, h, seg));
            }
        }
        // Grouped by segment, each in the batch's order (a stable sort).
        new.sort_by_key(|n| n.0);
        let mut counts: Option<Counts<'_>> = None;
        for (seg_off, h, seg) in new {
            let c = match &mut counts {
                Some(c) if c.seg_off == seg_off => c,
                _ => counts.insert(Counts::new(seg_off, seg)),
            };
            if !c.place(h) {
                return Ok(Some(TooFull {
                    seg_off,
                    depth_pattern: c.depth_pattern,
                }));
            }
        }
        Ok(None)
    }
}
