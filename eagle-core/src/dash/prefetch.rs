//! Prefetches for operations known ahead of time (the commands of a pipeline), so that their
//! cache misses overlap instead of adding up: a positive lookup pays two dependent misses, its
//! bucket and then its record, and a pipeline of 16 lookups run one by one pays 32.

use std::sync::atomic::Ordering;

use super::bucket::{fingerprint, set_bits};
use super::index::Dash;
use super::segment::{BUCKETS, bucket_index};
use crate::record::slot_record;

/// Keys whose hashes one pass keeps on the stack.
const PASS: usize = 16;

/// Lines fetched of a record: its header and key, and the value of a small one.
const RECORD_LINES: u64 = 2;

impl Dash {
    /// Starts fetching what lookups or writes of `keys` will read: every key's home bucket
    /// first, then, once those are on their way, the record of each slot in the two candidate
    /// buckets whose full hash is the key's. Only a hint: it locks nothing, writes nothing and
    /// changes no result; a slot it reads may change before the operation runs, which then
    /// pays the miss it would have paid anyway.
    pub fn prefetch(&self, keys: &[&[u8]]) {
        for chunk in keys.chunks(PASS) {
            let mut hashes = [0u64; PASS];
            for (h, key) in hashes.iter_mut().zip(chunk) {
                *h = self.hash(key);
                self.prefetch_home(*h);
            }
            self.prefetch_records(&hashes[..chunk.len()]);
        }
    }

    /// The second pass of [`prefetch`](Self::prefetch): the records the hashes' buckets name.
    /// Reads the buckets (waiting for the first of the misses the first pass started, while the
    /// others complete) under one epoch pin, as a lookup does.
    fn prefetch_records(&self, hashes: &[u64]) {
        // Until the open-time sweep has repaired every segment, one may hold what a crash left,
        // which a lookup repairs before it reads it; a hint does not write, so it skips them all.
        if !self.all_repaired.load(Ordering::Acquire) {
            return;
        }
        let _guard = self.pin();
        let Ok(dir) = self.directory() else {
            return;
        };
        let region = self.region();
        for &h in hashes {
            let Ok(seg) = self.segment(dir.entry(dir.index_of(h)).load(Ordering::Acquire)) else {
                continue;
            };
            let (b, fp) = (bucket_index(h), fingerprint(h));
            for bucket in [seg.bucket(b), seg.bucket((b + 1) % BUCKETS)] {
                for i in set_bits(bucket.match_fp(fp)) {
                    let slot = &bucket.slots[i];
                    if slot.hash.load(Ordering::Relaxed) == h {
                        // A prefetch of any address is harmless: a slot being rewritten may
                        // hold anything.
                        let record = slot_record(slot.record.load(Ordering::Relaxed));
                        region.prefetch_lines(record, RECORD_LINES);
                    }
                }
            }
        }
    }
}
