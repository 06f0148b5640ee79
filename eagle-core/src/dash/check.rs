//! A full walk of the index that verifies every reachable structure and the heap's accounting:
//! the basis of `eagle-admin check` and of the crash harnesses' leak check. Each record must
//! also be what a lookup of its key finds, so damaged fingerprints or overflow metadata and
//! duplicate keys are reported too, and its probe bit must name its home bucket.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use super::bucket::set_bits;
use super::index::Dash;
use super::segment::{ALL_BUCKETS, BUCKETS, bucket_index, prefix};
use crate::record::RecordRef;

/// What a check found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Records reached.
    pub records: u64,
    /// Records reached that have an expiry.
    pub expiring: u64,
    /// Segments reached.
    pub segments: u64,
    /// Bytes of every reachable block (directory, segments, records), at block size.
    pub reachable_bytes: u64,
    /// Bytes the heap accounts as in use.
    pub heap_used: u64,
    /// Bytes retired to epoch reclamation, not yet freed (in use, but unreachable).
    pub garbage: u64,
    /// Everything wrong, one line each.
    pub problems: Vec<String>,
}

impl CheckReport {
    /// No problem found, and the heap's accounting equals the reachable bytes (no leak).
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty() && self.reachable_bytes + self.garbage == self.heap_used
    }
}

impl Dash {
    /// Walks the whole index. Run it while no writer is active (the sweep at open must be done).
    pub fn check(&self) -> CheckReport {
        if let Err(e) = self.wait_recovered() {
            return CheckReport {
                problems: vec![format!("recovery: {e}")],
                ..CheckReport::default()
            };
        }
        let mut r = CheckReport {
            heap_used: self.heap.stats().used,
            garbage: self.garbage.bytes(),
            ..CheckReport::default()
        };
        let _guard = self.pin();
        let dir = match self.validated_directory() {
            Ok(d) => d,
            Err(e) => {
                r.problems.push(e.to_string());
                return r;
            }
        };
        let mut blocks = HashSet::new();
        let mut block = |r: &mut CheckReport, off: u64, what: &str, at_least: u64| match self
            .heap
            .block_size(off)
        {
            None => r
                .problems
                .push(format!("{what} at {off:#x} is not an allocated block")),
            Some(size) if size < at_least => r.problems.push(format!(
                "{what} at {off:#x} ({at_least} bytes) overflows its {size}-byte block"
            )),
            Some(size) if blocks.insert(off) => r.reachable_bytes += size,
            Some(_) => r
                .problems
                .push(format!("{what} at {off:#x} is referenced twice")),
        };
        block(
            &mut r,
            dir.offset,
            "directory",
            super::directory::dir_size(dir.global_depth),
        );
        let mut i = 0;
        while i < dir.len() {
            let s = dir.entry(i).load(Ordering::Acquire);
            let Ok(seg) = self.segment(s) else {
                r.problems.push(format!(
                    "directory entry {i} names {s:#x}, outside the pool"
                ));
                i += 1;
                continue;
            };
            let (d, p) = seg.depth_pattern();
            if !seg.has_magic() || d > dir.global_depth {
                r.problems.push(format!(
                    "directory entry {i}: {s:#x} is no segment, or deeper ({d}) than the directory"
                ));
                i += 1;
                continue;
            }
            let span = 1u64 << (dir.global_depth - d);
            if i % span != 0 || i >> (dir.global_depth - d) != p {
                r.problems.push(format!(
                    "directory entry {i}: segment {s:#x} pattern {p:#x}/{d} does not cover it"
                ));
            }
            for j in i..(i + span).min(dir.len()) {
                if dir.entry(j).load(Ordering::Acquire) != s {
                    r.problems.push(format!(
                        "directory entries {i}..{} do not all name segment {s:#x}",
                        i + span
                    ));
                    break;
                }
            }
            if seg.header.sibling.load(Ordering::Acquire) != 0
                || seg.header.parent.load(Ordering::Acquire) != 0
            {
                r.problems
                    .push(format!("segment {s:#x} is in the middle of a split"));
            }
            block(&mut r, s, "segment", crate::heap::SEGMENT_CLASS_SIZE as u64);
            r.segments += 1;
            for bi in 0..ALL_BUCKETS {
                let b = seg.bucket(bi);
                for k in set_bits(b.alloc_bits()) {
                    let word = b.slots[k].record.load(Ordering::Acquire);
                    let rec = crate::record::slot_record(word);
                    let h = b.slots[k].hash.load(Ordering::Acquire);
                    r.records += 1;
                    let home = bucket_index(h);
                    if prefix(h, d) != p
                        || !(bi == home || bi == (home + 1) % BUCKETS || bi >= BUCKETS)
                    {
                        r.problems.push(format!("segment {s:#x} bucket {bi} slot {k}: hash {h:#018x} does not belong there"));
                    }
                    // Displacement moves records by their probe bit (a home record of `b1` on
                    // to `b2`, a probe record of `b` back to its home `b - 1`): a wrong bit would
                    // move a record out of its key's reach, so the bit must name its home.
                    let probe = bi < BUCKETS && bi != home;
                    if b.is_probe(k) != probe {
                        r.problems.push(format!(
                            "segment {s:#x} bucket {bi} slot {k}: probe bit {} for a record of bucket {home} (should be {})",
                            b.is_probe(k) as u8,
                            probe as u8
                        ));
                    }
                    match RecordRef::open(self.region(), rec) {
                        None => r.problems.push(format!(
                            "record {rec:#x} (segment {s:#x} bucket {bi} slot {k}) is unreadable"
                        )),
                        Some(rr) => {
                            if !rr.verify() {
                                r.problems
                                    .push(format!("record {rec:#x}: checksum mismatch"));
                            } else if self.hash(rr.key()) != h {
                                r.problems.push(format!(
                                    "record {rec:#x}: its key does not hash to its slot's hash"
                                ));
                            } else {
                                // What readers rely on besides the slots: the fingerprints and
                                // the overflow metadata lead a lookup of the key to this slot,
                                // and to no other (a second slot of the key is a duplicate).
                                match self.find(seg, h, rr.key()) {
                                    Ok(Some(f)) if (f.bucket, f.slot) == (bi, k) => {}
                                    Ok(Some(f)) => r.problems.push(format!(
                                        "record {rec:#x} (segment {s:#x} bucket {bi} slot {k}): a lookup of its key finds bucket {} slot {} (the key is in two slots)",
                                        f.bucket, f.slot
                                    )),
                                    Ok(None) => r.problems.push(format!(
                                        "record {rec:#x} (segment {s:#x} bucket {bi} slot {k}): a lookup of its key does not find it (fingerprint or overflow metadata damaged)"
                                    )),
                                    Err(other) => r.problems.push(format!(
                                        "record {rec:#x}: a lookup of its key reads record {other:#x}, which is unreadable"
                                    )),
                                }
                            }
                            block(&mut r, rec, "record", rr.size());
                            r.expiring += (rr.expire_at_ms() != 0) as u64;
                            let owns = crate::hashtab::owns_blocks(&rr);
                            if owns && !self.may_own_blocks(word) {
                                r.problems.push(format!(
                                    "record {rec:#x} owns blocks but its slot is not tagged (the sweep would free them)"
                                ));
                            }
                            match self.children(&rr) {
                                Ok(children) => {
                                    for c in children {
                                        block(&mut r, c.offset, c.what, c.size);
                                    }
                                }
                                Err(e) => r.problems.push(format!("record {rec:#x}: {e}")),
                            }
                        }
                    }
                }
            }
            i += span;
        }
        if r.records != self.len() {
            r.problems.push(format!(
                "{} records reachable, the index counts {}",
                r.records,
                self.len()
            ));
        }
        if r.expiring != self.expires() {
            r.problems.push(format!(
                "{} records with an expiry reachable, the index counts {}",
                r.expiring,
                self.expires()
            ));
        }
        if r.reachable_bytes + r.garbage != r.heap_used {
            r.problems.push(format!(
                "heap accounts {} bytes in use, {} are reachable and {} await reclamation",
                r.heap_used, r.reachable_bytes, r.garbage
            ));
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::super::bucket::set_bits;
    use super::super::segment::{ALL_BUCKETS, BUCKETS};
    use crate::Engine;
    use crate::engine::temp_engine_with_keys;

    /// The first published slot of a normal bucket (`stash` false) or of a stash bucket, as
    /// (segment, bucket, slot).
    fn first_slot(e: &Engine, stash: bool) -> (&crate::dash::segment::Segment, usize, usize) {
        let index = e.index();
        let dir = index.directory().unwrap();
        let seg = index.segment(dir.entry(0).load(Ordering::Acquire)).unwrap();
        let range = if stash {
            BUCKETS..ALL_BUCKETS
        } else {
            0..BUCKETS
        };
        for bi in range {
            if let Some(k) = set_bits(seg.bucket(bi).alloc_bits()).next() {
                return (seg, bi, k);
            }
        }
        panic!("no published slot (stash: {stash})");
    }

    /// `check` reports a problem whose text contains `what`.
    fn assert_reports(e: &Engine, what: &str) {
        let report = e.check();
        assert!(
            report.problems.iter().any(|p| p.contains(what)),
            "{report:?}"
        );
    }

    #[test]
    fn check_reports_a_fingerprint_that_hides_its_record() {
        let e = temp_engine_with_keys("check-fp", 16 << 20, 50);
        let (seg, bi, k) = first_slot(&e, false);
        let h = seg.bucket(bi).slots[k].hash.load(Ordering::Relaxed);
        seg.bucket(bi).set_fp(k, h ^ 0x5a);
        assert_reports(&e, "does not find it");
    }

    #[test]
    fn check_reports_stashed_records_their_overflow_metadata_forgets() {
        // 900 keys in one segment of 896 normal slots: some are stashed.
        let e = temp_engine_with_keys("check-overflow", 16 << 20, 900);
        let (seg, bi, k) = first_slot(&e, true);
        let h = seg.bucket(bi).slots[k].hash.load(Ordering::Relaxed);
        let home = super::super::segment::bucket_index(h);
        seg.bucket(home).clear_overflow();
        assert_reports(&e, "does not find it");
    }

    #[test]
    fn check_reports_a_probe_bit_that_misnames_a_records_home() {
        // 600 keys in one segment (896 normal slots): some records sit in their neighbour bucket.
        let e = temp_engine_with_keys("check-probe", 16 << 20, 600);
        let index = e.index();
        let dir = index.directory().unwrap();
        let seg = index.segment(dir.entry(0).load(Ordering::Acquire)).unwrap();
        assert!(e.check().is_clean(), "{:?}", e.check());
        // Flip the bit of a home record and of a probe record: both are reported.
        let mut flipped = [false, false];
        for bi in 0..BUCKETS {
            let b = seg.bucket(bi);
            for k in set_bits(b.alloc_bits()) {
                let probe = b.is_probe(k);
                if flipped[probe as usize] {
                    continue;
                }
                flipped[probe as usize] = true;
                let bits = |f: &dyn Fn(usize) -> bool| {
                    set_bits(b.alloc_bits())
                        .filter(|&i| f(i))
                        .fold(0u32, |m, i| m | 1 << i)
                };
                let probes = bits(&|i| b.is_probe(i) != (i == k));
                b.set_bitmap(b.alloc_bits(), probes);
                assert_reports(
                    &e,
                    &format!("bucket {bi} slot {k}: probe bit {}", !probe as u8),
                );
                // Restored, the check is clean again.
                b.set_bitmap(b.alloc_bits(), bits(&|i| b.is_probe(i) != (i == k)));
                assert!(e.check().is_clean(), "{:?}", e.check());
            }
        }
        assert_eq!(flipped, [true, true], "no probe record to flip");
    }

    #[test]
    fn check_reports_a_key_published_in_two_slots() {
        let e = temp_engine_with_keys("check-dup", 16 << 20, 50);
        let (seg, bi, k) = first_slot(&e, false);
        let (word, h) = (
            seg.bucket(bi).slots[k].record.load(Ordering::Relaxed),
            seg.bucket(bi).slots[k].hash.load(Ordering::Relaxed),
        );
        // The same record in a free slot of the same bucket (as an interrupted displacement
        // would leave it, before repair).
        let free = seg.bucket(bi).free_slot().unwrap();
        seg.bucket(bi).write_slot(free, word, h);
        seg.bucket(bi).publish(free, h, seg.bucket(bi).is_probe(k));
        assert_reports(&e, "in two slots");
    }
}
