//! A Dash segment: one header line, 64 normal buckets, 4 stash buckets (17,472 bytes).
//!
//! Header words (each an aligned 8-byte word, stored failure-atomically):
//! - `magic`: `DASHSEG1`;
//! - `depth_pattern`: `local_depth << 56 | pattern`: the segment holds the keys whose hash starts
//!   with the `local_depth` bits `pattern` (one word, so a split changes both at once);
//! - `sibling`: while this segment splits, the new segment taking half of it; 0 otherwise;
//! - `parent`: in a segment created by a split, the splitting segment until the split is done;
//! - `repaired_epoch`: the pool's recovery epoch in which this segment was last repaired (or
//!   created). A segment whose tag differs from the current epoch is repaired before use.

use std::sync::atomic::{AtomicU64, Ordering};

use super::bucket::Bucket;
use super::error::IndexError;
use crate::pmem::PmemObject;

/// Normal buckets per segment.
pub const BUCKETS: usize = 64;
/// Stash buckets per segment.
pub const STASH: usize = 4;
/// All buckets of a segment.
pub const ALL_BUCKETS: usize = BUCKETS + STASH;
/// `DASHSEG1`.
pub const SEGMENT_MAGIC: u64 = u64::from_le_bytes(*b"DASHSEG1");

/// The header line of a segment.
#[repr(C, align(64))]
pub struct SegmentHeader {
    magic: AtomicU64,
    depth_pattern: AtomicU64,
    /// See the module documentation.
    pub sibling: AtomicU64,
    /// See the module documentation.
    pub parent: AtomicU64,
    /// See the module documentation.
    pub repaired_epoch: AtomicU64,
    _reserved: [AtomicU64; 3],
}

/// A segment.
#[repr(C, align(64))]
pub struct Segment {
    /// The header line.
    pub header: SegmentHeader,
    buckets: [Bucket; ALL_BUCKETS],
}

const _: () = assert!(std::mem::size_of::<SegmentHeader>() == 64);
const _: () = assert!(std::mem::size_of::<Segment>() == 64 + 68 * 256);
const _: () = assert!(std::mem::size_of::<Segment>() as u32 == crate::heap::SEGMENT_CLASS_SIZE);

// SAFETY: built only of atomics and `Bucket` (itself a PmemObject); any bit pattern is valid.
unsafe impl PmemObject for Segment {}

/// Offset of bucket `i`'s first byte within a segment.
pub fn bucket_offset(i: usize) -> u64 {
    64 + i as u64 * 256
}

/// The normal bucket a hash belongs to.
#[inline]
pub fn bucket_index(hash: u64) -> usize {
    ((hash >> 8) as usize) & (BUCKETS - 1)
}

/// The first `depth` bits of `hash`.
#[inline]
pub fn prefix(hash: u64, depth: u32) -> u64 {
    if depth == 0 { 0 } else { hash >> (64 - depth) }
}

impl Segment {
    /// Bucket `i`: 0..64 normal, 64..68 stash.
    #[inline]
    pub fn bucket(&self, i: usize) -> &Bucket {
        &self.buckets[i]
    }

    /// Stash bucket `s`.
    #[inline]
    pub fn stash(&self, s: usize) -> &Bucket {
        &self.buckets[BUCKETS + s]
    }

    /// Whether the header carries the segment magic.
    pub fn has_magic(&self) -> bool {
        self.header.magic.load(Ordering::Acquire) == SEGMENT_MAGIC
    }

    /// `(local_depth, pattern)`.
    #[inline]
    pub fn depth_pattern(&self) -> (u32, u64) {
        let w = self.header.depth_pattern.load(Ordering::Acquire);
        ((w >> 56) as u32, w & ((1 << 56) - 1))
    }

    /// Whether this segment is where `hash` belongs.
    #[inline]
    pub fn covers(&self, hash: u64) -> bool {
        let (d, p) = self.depth_pattern();
        prefix(hash, d) == p
    }

    /// Sets depth and pattern with one 8-byte store (flush and fence are the caller's).
    pub fn set_depth_pattern(&self, depth: u32, pattern: u64) {
        self.header
            .depth_pattern
            .store((depth as u64) << 56 | pattern, Ordering::Release);
    }

    /// Writes a fresh header (a segment just allocated; the caller persists the whole segment).
    pub fn init_header(&self, depth: u32, pattern: u64, parent: u64, epoch: u64) {
        self.header.magic.store(SEGMENT_MAGIC, Ordering::Relaxed);
        self.set_depth_pattern(depth, pattern);
        self.header.sibling.store(0, Ordering::Relaxed);
        self.header.parent.store(parent, Ordering::Relaxed);
        self.header.repaired_epoch.store(epoch, Ordering::Relaxed);
    }

    /// Locks every bucket, in index order (the global lock order). On an error (a lock that
    /// never frees: see `Bucket::lock`) none is left held.
    pub fn lock_all(&self) -> Result<(), IndexError> {
        for (i, b) in self.buckets.iter().enumerate() {
            if let Err(e) = b.lock() {
                for taken in &self.buckets[..i] {
                    taken.unlock();
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Unlocks every bucket.
    pub fn unlock_all(&self) {
        for b in &self.buckets {
            b.unlock();
        }
    }
}
