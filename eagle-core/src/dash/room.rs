//! Room for a logged batch's new keys, made before the batch is logged.
//!
//! Once its log record is durable a batch must complete (only the redo at the next open could
//! finish it otherwise), so its puts must not need a segment split that a full pool cannot
//! give. [`Dash::make_room`] runs before the log record is written: it simulates, on DRAM
//! copies of the bucket counts, where the batch's new keys will go, and splits every segment
//! that would run out of slots, until the simulation places every key. A split that fails for
//! lack of space refuses the batch before anything is logged. The splits already made stay
//! (they do not change the keyspace, and each is crash consistent by itself), and so does the
//! space they took: segments never merge.
//!
//! Why the simulation is exact enough. A batch's puts are published with
//! `Dash::publish` (`prepared.rs`), which places a new key like an insert but never
//! displaces: the less full of its two buckets (the home bucket on a tie), else the other,
//! else any stash slot. The simulation applies that rule to the counts it read. If the real
//! counts have at least as many free slots in every bucket and in the stash as the simulated
//! ones (they do at the start, when the keys' segments are as read and the batch's deletes
//! only free slots), the rule keeps it so after each placement: both place in the same bucket,
//! or the real one chose a bucket with a free slot the simulation lacked; and a real key goes
//! to the stash only when both its buckets are full, so the simulated key did too. So every key
//! the simulation places finds a slot, also in a redo of the batch after a crash (which starts
//! from a state the applied prefix reached by the same rule). Consecutive puts are published in
//! groups (`group.rs`), of which a crash may keep any subset, not a prefix; so a group of a
//! batch's records takes no two new keys whose bucket pairs meet. Each new key of a group then
//! finds its buckets as the keys before the group left them, whichever of the group the crash
//! kept, and the redo places it where the group did.
//!
//! What it cannot promise: another thread's write between the simulation and the batch's put
//! may fill a counted slot (an insert of another key into the same buckets, or a displacement
//! into them), or split a segment between the simulation's directory read and its count read.
//! That put then splits, with the heap's reserve (`heap/reserve.rs`) behind it.

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
    /// Splits segments until every new key of the batch has a slot waiting (see the module
    /// documentation). `puts` lists the batch's puts that may need a slot, in order: a key, and
    /// whether it is new for certain (deleted earlier in the batch); otherwise it is new if the
    /// index lacks it now. Returns the number of splits made. On an error (the pool is full),
    /// the batch must be refused.
    pub(crate) fn make_room(&self, puts: &[(&[u8], bool)]) -> Result<u32, IndexError> {
        let mut splits = 0;
        loop {
            let full = self.segments_without_room(puts)?;
            if full.is_empty() {
                return Ok(splits);
            }
            for f in full {
                match self.split_unchanged(f.seg_off, f.depth_pattern) {
                    Ok(()) => splits += 1,
                    // Unpinned here: deferred frees or the running recovery may give the
                    // space back, as they do for a plain insert.
                    Err(e) if self.space_may_free_up(&e) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }

    /// Every segment that the simulation finds too full for the batch's new keys (one pass,
    /// so a batch that needs many splits is read once per round of splits, not per split).
    fn segments_without_room(&self, puts: &[(&[u8], bool)]) -> Result<Vec<TooFull>, IndexError> {
        let _guard = self.pin();
        let mut new = Vec::new();
        for &(key, surely_new) in puts {
            let h = self.hash(key);
            let (at, seg) = self.locate(h)?;
            // Read without locks, like a lookup; a record it cannot read counts as absent.
            if surely_new || !matches!(self.find(seg, h, key), Ok(Some(_))) {
                new.push((at.segment, h, seg));
            }
        }
        // Grouped by segment, each in the batch's order (a stable sort).
        new.sort_by_key(|n| n.0);
        let mut full = Vec::new();
        let mut counts: Option<Counts<'_>> = None;
        for (seg_off, h, seg) in new {
            let c = match &mut counts {
                Some(c) if c.seg_off == seg_off => c,
                _ => counts.insert(Counts::new(seg_off, seg)),
            };
            if full.last().is_some_and(|f: &TooFull| f.seg_off == seg_off) {
                continue;
            }
            if !c.place(h) {
                full.push(TooFull {
                    seg_off,
                    depth_pattern: c.depth_pattern,
                });
            }
        }
        Ok(full)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use crate::dash::PutMode;
    use crate::record::RecordKind;
    use pmem_emulation::SplitMix64;

    #[test]
    fn a_batch_placed_after_make_room_never_splits() {
        let engine = crate::engine::temp_engine("room", 64 << 20);
        let index = engine.index();
        let mut rng = SplitMix64::new(0x9e37_79b9_7f4a_7c15);
        let (mut next_key, mut splits_made) = (0u64, 0u32);
        for round in 0..300 {
            // Ordinary inserts (which displace) bring the table to a new fill, then one batch
            // of new keys, some of them repeated, and some existing keys, some deleted first.
            for _ in 0..rng.next_u64() % 2_000 {
                next_key += 1;
                let key = format!("plain:{next_key}");
                index
                    .put(key.as_bytes(), b"v", RecordKind::String, 0, PutMode::Upsert)
                    .unwrap();
            }
            let mut keys: Vec<Vec<u8>> = (0..1 + rng.next_u64() % 400)
                .map(|_| {
                    next_key += 1;
                    format!("batch:{next_key}").into_bytes()
                })
                .collect();
            for _ in 0..rng.next_u64() % 8 {
                let k = format!("plain:{}", 1 + rng.next_u64() % next_key.max(1));
                keys.push(k.into_bytes());
            }
            if keys.len() > 2 {
                keys.push(keys[0].clone());
            }
            let deleted: HashSet<&[u8]> = keys
                .iter()
                .filter(|k| k.starts_with(b"plain:") && rng.next_u64().is_multiple_of(2))
                .map(|k| &k[..])
                .collect();
            let puts: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
            // As the batch lists them: the repeated key is a replace the second time; a key
            // deleted first is new for certain.
            let counted: Vec<(&[u8], bool)> = puts[..puts.len() - (keys.len() > 2) as usize]
                .iter()
                .map(|k| (*k, deleted.contains(k)))
                .collect();
            splits_made += index.make_room(&counted).unwrap();
            let segments = index.stats().segments;
            for k in &deleted {
                index.delete(k).unwrap();
            }
            for k in &puts {
                let rec = index.prepare(k, b"w", RecordKind::String, 0).unwrap();
                index.publish(k, rec, PutMode::Upsert).unwrap();
                assert_eq!(
                    index.stats().segments,
                    segments,
                    "round {round}: a put split after make_room found room"
                );
            }
        }
        assert!(
            splits_made > 20,
            "the batches never needed room: {splits_made}"
        );
    }
}
