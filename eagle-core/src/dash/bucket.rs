//! A Dash bucket: 256 bytes, four cache lines, 14 slots.
//!
//! ```text
//! line 0  0        4        8                22       26 27 28 29   32       48       64
//!         | lock   | bitmap | fingerprints x14 | ovf fp | om| oi| oc| . | slot 0 | slot 1 |
//! line 1  | slot 2 | slot 3 | slot 4 | slot 5 |
//! line 2  | slot 6 | slot 7 | slot 8 | slot 9 |
//! line 3  | slot 10| slot 11| slot 12| slot 13|
//! ```
//! - `lock`: bit 31 set while a writer holds the bucket; bits 0..31 a version bumped at every
//!   unlock. Readers snapshot it and re-check it; they never write it. Not meaningful on the media
//!   (a crash can leave it set): repair resets it. The protocol is in `version_lock.rs`.
//! - `bitmap`: bits 0..14 say which slots hold a record (the only bucket state recovery trusts,
//!   with the slots); bits 14..28 mark records that belong to the previous bucket ("probe").
//! - fingerprints: the low byte of each slot's hash; `ovf fp`/`om`/`oi`/`oc`: up to four
//!   fingerprints of this bucket's records that went to the stash, their valid bits, which stash
//!   bucket (2 bits each), and a count of stashed records beyond those four. Everything but the
//!   alloc bits and the slots is derivable and rebuilt by repair.
//! - slot: 8-byte record offset, 8-byte full hash (so splits and repair never read records).

use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

use super::version_lock;
use crate::pmem::PmemObject;

/// Slots per bucket.
pub const SLOTS: usize = 14;
/// Overflow fingerprints per bucket.
pub const OVERFLOW_FPS: usize = 4;
const ALLOC_MASK: u32 = (1 << SLOTS) - 1;

/// A record reference: where the record is, and its key's hash.
#[repr(C)]
pub struct Slot {
    /// Offset of the record in the pool.
    pub record: AtomicU64,
    /// The full 64-bit hash of the record's key.
    pub hash: AtomicU64,
}

/// One bucket; see the module documentation for the layout.
#[repr(C, align(64))]
pub struct Bucket {
    lock: AtomicU32,
    bitmap: AtomicU32,
    fps: [AtomicU8; SLOTS],
    overflow_fps: [AtomicU8; OVERFLOW_FPS],
    overflow_valid: AtomicU8,
    overflow_index: AtomicU8,
    overflow_count: AtomicU8,
    _reserved: [AtomicU8; 3],
    /// The record slots.
    pub slots: [Slot; SLOTS],
}

const _: () = assert!(std::mem::size_of::<Bucket>() == 256);
const _: () = assert!(std::mem::align_of::<Bucket>() == 64);

// SAFETY: every field is an atomic (or an array of them); any bit pattern is a valid value.
unsafe impl PmemObject for Bucket {}

/// The indices of the set bits of `bits`, ascending.
#[inline]
pub fn set_bits(mut bits: u32) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        (bits != 0).then(|| {
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            i
        })
    })
}

/// The fingerprint of a hash.
#[inline]
pub fn fingerprint(hash: u64) -> u8 {
    hash as u8
}

impl Bucket {
    // ---- the version lock (the protocol lives in `version_lock.rs`) ----

    /// A version snapshot for an optimistic read, or `None` if a writer holds the bucket.
    #[inline]
    pub fn read_version(&self) -> Option<u32> {
        version_lock::read_version(&self.lock)
    }

    /// Whether the version is still `v` (no writer has held the bucket since the snapshot).
    #[inline]
    pub fn validate(&self, v: u32) -> bool {
        version_lock::validate(&self.lock, v)
    }

    /// Takes the lock if it is free; returns the version it was taken at.
    #[inline]
    pub fn try_lock(&self) -> Option<u32> {
        version_lock::try_lock(&self.lock)
    }

    /// Spins until the lock is taken; returns the version it was taken at.
    #[inline]
    pub fn lock(&self) -> u32 {
        version_lock::lock(&self.lock)
    }

    /// Releases the lock and bumps the version.
    #[inline]
    pub fn unlock(&self) {
        version_lock::unlock(&self.lock);
    }

    /// Releases a lock taken at version `v` (what `lock` or `try_lock` returned) without
    /// reading the word: see [`version_lock::unlock_at`].
    #[inline]
    pub fn unlock_at(&self, v: u32) {
        version_lock::unlock_at(&self.lock, v);
    }

    /// After a crash: forget a lock held by a writer that no longer exists.
    pub fn reset_lock(&self) {
        version_lock::reset_lock(&self.lock);
    }

    // ---- slots ----

    /// Bit set of slots holding a record.
    #[inline]
    pub fn alloc_bits(&self) -> u32 {
        self.bitmap.load(Ordering::Acquire) & ALLOC_MASK
    }

    /// Whether slot `i` holds a record of the previous bucket.
    #[inline]
    pub fn is_probe(&self, i: usize) -> bool {
        self.bitmap.load(Ordering::Acquire) & (1 << (SLOTS + i)) != 0
    }

    /// Number of records in the bucket.
    #[inline]
    pub fn count(&self) -> u32 {
        self.alloc_bits().count_ones()
    }

    /// A free slot, if any.
    #[inline]
    pub fn free_slot(&self) -> Option<usize> {
        let free = !self.alloc_bits() & ALLOC_MASK;
        (free != 0).then(|| free.trailing_zeros() as usize)
    }

    /// Slots whose fingerprint equals `fp` and that hold a record.
    #[inline]
    pub fn match_fp(&self, fp: u8) -> u32 {
        let mut bits = self.alloc_bits();
        let mut out = 0;
        while bits != 0 {
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            if self.fps[i].load(Ordering::Relaxed) == fp {
                out |= 1 << i;
            }
        }
        out
    }

    /// Writes slot `i`'s contents (not yet visible: the alloc bit publishes them).
    #[inline]
    pub fn write_slot(&self, i: usize, record: u64, hash: u64) {
        self.slots[i].record.store(record, Ordering::Relaxed);
        self.slots[i].hash.store(hash, Ordering::Relaxed);
    }

    /// Publishes slot `i`: fingerprint, then the alloc bit (and probe bit) in one 32-bit store.
    #[inline]
    pub fn publish(&self, i: usize, hash: u64, probe: bool) {
        self.fps[i].store(fingerprint(hash), Ordering::Relaxed);
        let mut b = self.bitmap.load(Ordering::Relaxed) | (1 << i);
        if probe {
            b |= 1 << (SLOTS + i);
        } else {
            b &= !(1 << (SLOTS + i));
        }
        self.bitmap.store(b, Ordering::Release);
    }

    /// Removes slot `i` (one 32-bit store clears its alloc and probe bits).
    #[inline]
    pub fn unpublish(&self, i: usize) {
        let b = self.bitmap.load(Ordering::Relaxed) & !(1 << i) & !(1 << (SLOTS + i));
        self.bitmap.store(b, Ordering::Release);
    }

    /// Replaces the alloc/probe bitmap wholesale (repair and split, with the bucket locked).
    pub fn set_bitmap(&self, alloc: u32, probe: u32) {
        self.bitmap.store(
            (alloc & ALLOC_MASK) | ((probe & ALLOC_MASK) << SLOTS),
            Ordering::Release,
        );
    }

    /// Rewrites slot `i`'s fingerprint from its hash (repair).
    pub fn set_fp(&self, i: usize, hash: u64) {
        self.fps[i].store(fingerprint(hash), Ordering::Relaxed);
    }

    // ---- overflow metadata (records of this bucket in the stash) ----

    /// Stash buckets that may hold a record of this bucket with fingerprint `fp`, as a bit set
    /// over stash indices; all of them if some stashed records have no overflow fingerprint.
    #[inline]
    pub fn stash_candidates(&self, fp: u8, stash_buckets: usize) -> u32 {
        if self.overflow_count.load(Ordering::Relaxed) > 0 {
            return (1 << stash_buckets) - 1;
        }
        let valid = self.overflow_valid.load(Ordering::Relaxed);
        if valid == 0 {
            return 0;
        }
        let index = self.overflow_index.load(Ordering::Relaxed);
        let mut out = 0;
        for j in 0..OVERFLOW_FPS {
            if valid & (1 << j) != 0 && self.overflow_fps[j].load(Ordering::Relaxed) == fp {
                out |= 1 << ((index >> (2 * j)) & 3);
            }
        }
        out
    }

    /// Notes that a record with fingerprint `fp` of this bucket went to stash bucket `s`.
    pub fn add_overflow(&self, fp: u8, s: usize) {
        let valid = self.overflow_valid.load(Ordering::Relaxed);
        let free = !valid & ((1 << OVERFLOW_FPS) - 1);
        if free == 0 {
            let c = self.overflow_count.load(Ordering::Relaxed);
            self.overflow_count
                .store(c.saturating_add(1), Ordering::Relaxed);
            return;
        }
        let j = free.trailing_zeros() as usize;
        self.overflow_fps[j].store(fp, Ordering::Relaxed);
        let index = self.overflow_index.load(Ordering::Relaxed) & !(3 << (2 * j));
        self.overflow_index
            .store(index | ((s as u8) << (2 * j)), Ordering::Relaxed);
        self.overflow_valid
            .store(valid | (1 << j), Ordering::Relaxed);
    }

    /// Notes that a stashed record with fingerprint `fp` in stash bucket `s` is gone.
    pub fn remove_overflow(&self, fp: u8, s: usize) {
        let valid = self.overflow_valid.load(Ordering::Relaxed);
        let index = self.overflow_index.load(Ordering::Relaxed);
        for j in 0..OVERFLOW_FPS {
            if valid & (1 << j) != 0
                && self.overflow_fps[j].load(Ordering::Relaxed) == fp
                && ((index >> (2 * j)) & 3) as usize == s
            {
                self.overflow_valid
                    .store(valid & !(1 << j), Ordering::Relaxed);
                return;
            }
        }
        let c = self.overflow_count.load(Ordering::Relaxed);
        self.overflow_count
            .store(c.saturating_sub(1), Ordering::Relaxed);
    }

    /// Forgets all overflow metadata (repair rebuilds it).
    pub fn clear_overflow(&self) {
        self.overflow_valid.store(0, Ordering::Relaxed);
        self.overflow_index.store(0, Ordering::Relaxed);
        self.overflow_count.store(0, Ordering::Relaxed);
    }
}
