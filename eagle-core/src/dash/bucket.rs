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
//!   (a crash can leave it set): repair resets it. In a pool closed cleanly it is clear; one
//!   that stays held is reported as damage by its waiters (`stall.rs`). The protocol is in
//!   `version_lock.rs`.
//! - `bitmap`: bits 0..14 say which slots hold a record (the only bucket state recovery trusts,
//!   with the slots); bits 14..28 mark records that belong to the previous bucket ("probe").
//! - fingerprints: the low byte of each slot's hash; `ovf fp`/`om`/`oi`/`oc`: up to four
//!   fingerprints of this bucket's records that went to the stash, their valid bits, which stash
//!   bucket (2 bits each), and a count of stashed records beyond those four. Everything but the
//!   alloc bits and the slots is derivable and rebuilt by repair.
//! - slot: 8-byte record offset, 8-byte full hash (so splits and repair never read records).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::error::{IndexError, corrupted};
use super::stall::Stall;
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
///
/// Bytes 8..32 (fingerprints, overflow metadata, reserved) are held as three little-endian
/// 8-byte words, so a lookup compares all 14 fingerprints with two loads (see
/// [`match_fp`](Bucket::match_fp)); the bytes on the media are the ones the layout above names.
/// Every write to them is a load and store of the word, made with the bucket locked (or by
/// repair, which has the segment to itself: it runs under the directory lock, before any
/// operation uses the segment), so no byte of a word is written by two threads at once.
#[repr(C, align(64))]
pub struct Bucket {
    lock: AtomicU32,
    bitmap: AtomicU32,
    meta: [AtomicU64; 3],
    /// The record slots.
    pub slots: [Slot; SLOTS],
}

/// Byte positions within `meta` (byte 0 is the bucket's byte 8).
const FP_AT: usize = 0;
const OVERFLOW_FP_AT: usize = FP_AT + SLOTS;
const OVERFLOW_VALID_AT: usize = OVERFLOW_FP_AT + OVERFLOW_FPS;
const OVERFLOW_INDEX_AT: usize = OVERFLOW_VALID_AT + 1;
const OVERFLOW_COUNT_AT: usize = OVERFLOW_INDEX_AT + 1;
const _: () = assert!(OVERFLOW_FP_AT == 14 && OVERFLOW_COUNT_AT < 24 && OVERFLOW_VALID_AT >= 16);
// `may_hold`'s word: slot matches, overflow matches, then the count from bit 24.
const _: () = assert!(SLOTS + OVERFLOW_FPS <= 24);
const _: () = assert!(std::mem::offset_of!(Bucket, meta) == 8);
const _: () = assert!(std::mem::offset_of!(Bucket, slots) == 32);

const LOW_BITS: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// Bit `k` set iff byte `k` of `w` equals `b` (exact: no false positives).
#[inline]
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn bytes_equal(w: u64, b: u8) -> u32 {
    let x = w ^ (u64::from(b) * 0x0101_0101_0101_0101);
    // High bit of each byte set iff the byte of `x` is non-zero (no carry crosses bytes: each
    // byte's low 7 bits plus 0x7f stay below 0x100).
    let nonzero = ((x & LOW_BITS) + LOW_BITS) | x;
    let zero = (!nonzero & !LOW_BITS) >> 7;
    // Gathers bit 8k to bit 56 + k; the other products land on distinct bits below 56, so
    // nothing carries into the top byte.
    (zero.wrapping_mul(0x0102_0408_1020_4080) >> 56) as u32
}

/// Bit `k` set iff byte `k` of the 16 bytes `lo, hi` (little-endian) equals `b`. On x86_64 one
/// SSE2 compare of the two words placed in a register: a lookup's instructions that wait for
/// the bucket's cache miss are few, so the CPU gets on with the next operation meanwhile. The
/// words are read with atomic loads first; nothing here reads memory.
#[inline]
fn match16(lo: u64, hi: u64, b: u8) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_movemask_epi8, _mm_set_epi64x, _mm_set1_epi8};
        // SAFETY: SSE2 is part of the x86_64 baseline (every x86_64 CPU has it), and these
        // intrinsics only compute on values in registers.
        unsafe {
            let eq = _mm_cmpeq_epi8(_mm_set_epi64x(hi as i64, lo as i64), _mm_set1_epi8(b as i8));
            _mm_movemask_epi8(eq) as u32
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        bytes_equal(lo, b) | bytes_equal(hi, b) << 8
    }
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

/// The error for a bucket whose lock word stayed `word` (held) while a writer or reader waited
/// the stall limit.
#[cold]
pub(crate) fn held_for_ever(word: u64) -> IndexError {
    corrupted(format!(
        "a bucket lock stayed held (word {word:#x}) for {:?}: its lock bit is set in the pool",
        super::stall::stall_limit()
    ))
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

    /// Waits until the lock is taken; returns the version it was taken at. `Corrupted` if the
    /// lock stays held, its word unchanged, for the stall limit: a lock bit the pool file holds
    /// set (no writer of this process took it), see `stall.rs`.
    #[inline]
    pub fn lock(&self) -> Result<u32, IndexError> {
        match self.try_lock() {
            Some(v) => Ok(v),
            None => self.lock_contended(),
        }
    }

    #[cold]
    #[inline(never)]
    fn lock_contended(&self) -> Result<u32, IndexError> {
        let mut stall = Stall::default();
        version_lock::lock_with(&self.lock, |word| stall.wait(word.into()))
            .map_err(|s| held_for_ever(s.value))
    }

    /// The lock word as it is now (what a waiting reader watches: see [`Stall`]).
    #[inline]
    pub(crate) fn lock_word(&self) -> u64 {
        self.lock.load(Ordering::Relaxed).into()
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
        // Fingerprints 0..14 are bytes 0..14 of words 0 and 1 (bytes 14 and 15 are overflow
        // fingerprints, masked off by the alloc bits).
        let m = match16(
            self.meta[0].load(Ordering::Relaxed),
            self.meta[1].load(Ordering::Relaxed),
            fp,
        );
        m & self.alloc_bits()
    }

    /// Whether a record with fingerprint `fp` may be in this bucket (`match_fp`) or, as one of
    /// this bucket's records, in the stash (`stash_candidates`): non-zero if so. Branch-free,
    /// so that a negative lookup decides with one branch whether to look any further.
    #[inline]
    pub fn may_hold(&self, fp: u8) -> u32 {
        let (w0, w1, w2) = (
            self.meta[0].load(Ordering::Relaxed),
            self.meta[1].load(Ordering::Relaxed),
            self.meta[2].load(Ordering::Relaxed),
        );
        let slots = match16(w0, w1, fp) & self.alloc_bits();
        // Overflow fingerprints are meta bytes 14..18: bytes 6..10 of words 1 and 2.
        let overflow = (match16(w1, w2, fp) >> (OVERFLOW_FP_AT - 8)) & ((1 << OVERFLOW_FPS) - 1);
        let valid = (w2 >> (8 * (OVERFLOW_VALID_AT - 16))) as u32 & 0xff;
        let count = (w2 >> (8 * (OVERFLOW_COUNT_AT - 16))) as u32 & 0xff;
        slots | (overflow & valid) << SLOTS | count << 24
    }

    /// Byte `at` of the metadata words.
    #[inline]
    fn meta_byte(&self, at: usize) -> u8 {
        (self.meta[at / 8].load(Ordering::Relaxed) >> (8 * (at % 8))) as u8
    }

    /// Sets byte `at` of the metadata words (the bucket is locked: see the type's documentation).
    #[inline]
    fn set_meta_byte(&self, at: usize, v: u8) {
        let word = &self.meta[at / 8];
        let shift = 8 * (at % 8);
        let w = word.load(Ordering::Relaxed) & !(0xff << shift);
        word.store(w | u64::from(v) << shift, Ordering::Relaxed);
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
        self.set_meta_byte(FP_AT + i, fingerprint(hash));
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
        self.set_meta_byte(FP_AT + i, fingerprint(hash));
    }

    // ---- overflow metadata (records of this bucket in the stash) ----

    /// Stash buckets that may hold a record of this bucket with fingerprint `fp`, as a bit set
    /// over stash indices; all of them if some stashed records have no overflow fingerprint.
    #[inline]
    pub fn stash_candidates(&self, fp: u8, stash_buckets: usize) -> u32 {
        if self.meta_byte(OVERFLOW_COUNT_AT) > 0 {
            return (1 << stash_buckets) - 1;
        }
        let valid = self.meta_byte(OVERFLOW_VALID_AT);
        if valid == 0 {
            return 0;
        }
        let index = self.meta_byte(OVERFLOW_INDEX_AT);
        let mut out = 0;
        for j in 0..OVERFLOW_FPS {
            if valid & (1 << j) != 0 && self.meta_byte(OVERFLOW_FP_AT + j) == fp {
                out |= 1 << ((index >> (2 * j)) & 3);
            }
        }
        out
    }

    /// Notes that a record with fingerprint `fp` of this bucket went to stash bucket `s`.
    pub fn add_overflow(&self, fp: u8, s: usize) {
        let valid = self.meta_byte(OVERFLOW_VALID_AT);
        let free = !valid & ((1 << OVERFLOW_FPS) - 1);
        if free == 0 {
            let c = self.meta_byte(OVERFLOW_COUNT_AT);
            self.set_meta_byte(OVERFLOW_COUNT_AT, c.saturating_add(1));
            return;
        }
        let j = free.trailing_zeros() as usize;
        self.set_meta_byte(OVERFLOW_FP_AT + j, fp);
        let index = self.meta_byte(OVERFLOW_INDEX_AT) & !(3 << (2 * j));
        self.set_meta_byte(OVERFLOW_INDEX_AT, index | ((s as u8) << (2 * j)));
        self.set_meta_byte(OVERFLOW_VALID_AT, valid | (1 << j));
    }

    /// Notes that a stashed record with fingerprint `fp` in stash bucket `s` is gone.
    pub fn remove_overflow(&self, fp: u8, s: usize) {
        let valid = self.meta_byte(OVERFLOW_VALID_AT);
        let index = self.meta_byte(OVERFLOW_INDEX_AT);
        for j in 0..OVERFLOW_FPS {
            if valid & (1 << j) != 0
                && self.meta_byte(OVERFLOW_FP_AT + j) == fp
                && ((index >> (2 * j)) & 3) as usize == s
            {
                self.set_meta_byte(OVERFLOW_VALID_AT, valid & !(1 << j));
                return;
            }
        }
        let c = self.meta_byte(OVERFLOW_COUNT_AT);
        self.set_meta_byte(OVERFLOW_COUNT_AT, c.saturating_sub(1));
    }

    /// Forgets all overflow metadata (repair rebuilds it).
    pub fn clear_overflow(&self) {
        self.set_meta_byte(OVERFLOW_VALID_AT, 0);
        self.set_meta_byte(OVERFLOW_INDEX_AT, 0);
        self.set_meta_byte(OVERFLOW_COUNT_AT, 0);
    }
}

#[cfg(test)]
mod tests {
    use pmem_emulation::SplitMix64;

    use super::*;

    /// The fingerprint match is exact: against a byte-by-byte comparison, over words that hold
    /// the fingerprint, its neighbours (borrows and carries), zero and 0xff in every position.
    #[test]
    fn fingerprint_match_finds_exactly_the_equal_bytes() {
        let mut stream = SplitMix64::new(0x9E37_79B9_7F4A_7C15);
        for round in 0..20_000u64 {
            let rng = stream.next_u64();
            let fp = (rng >> 56) as u8;
            let pick = [
                fp,
                fp.wrapping_add(1),
                fp.wrapping_sub(1),
                0,
                0xff,
                fp ^ 0x80,
            ];
            let mut bytes = rng.to_le_bytes();
            for (k, b) in bytes.iter_mut().enumerate() {
                if (round >> k) & 1 == 1 {
                    *b = pick[(rng >> (3 * k)) as usize % pick.len()];
                }
            }
            let w = u64::from_le_bytes(bytes);
            let want = (0..8)
                .filter(|&k| bytes[k] == fp)
                .fold(0, |m, k| m | 1 << k);
            assert_eq!(
                bytes_equal(w, fp),
                want,
                "word {w:#018x}, fingerprint {fp:#04x}"
            );
        }
    }

    #[test]
    fn match_fp_reports_only_allocated_slots_with_the_fingerprint() {
        let b = empty_bucket();
        for i in 0..SLOTS {
            b.write_slot(
                i,
                64 * i as u64,
                if i % 3 == 0 { 0x5a } else { 0x10 + i as u64 },
            );
            b.publish(i, if i % 3 == 0 { 0x5a } else { 0x10 + i as u64 }, false);
        }
        b.add_overflow(0x5a, 1);
        let want = (0..SLOTS)
            .filter(|i| i % 3 == 0)
            .fold(0u32, |m, i| m | 1 << i);
        assert_eq!(b.match_fp(0x5a), want);
        b.unpublish(3);
        assert_eq!(b.match_fp(0x5a), want & !(1 << 3));
        assert_eq!(b.stash_candidates(0x5a, 2), 0b10);
        b.remove_overflow(0x5a, 1);
        assert_eq!(b.stash_candidates(0x5a, 2), 0);
    }

    fn empty_bucket() -> Bucket {
        Bucket {
            lock: AtomicU32::new(0),
            bitmap: AtomicU32::new(0),
            meta: Default::default(),
            slots: std::array::from_fn(|_| Slot {
                record: AtomicU64::new(0),
                hash: AtomicU64::new(0),
            }),
        }
    }

    /// The SSE2 match (on x86_64; `bytes_equal` elsewhere) is exact over the whole byte range.
    #[test]
    fn match16_finds_exactly_the_equal_bytes() {
        let mut rng = SplitMix64::new(0x9E37_79B9_7F4A_7C15);
        let mut next = || rng.next_u64();
        for _ in 0..20_000 {
            let fp = next() as u8;
            let mut bytes = [0u8; 16];
            for b in bytes.iter_mut() {
                let r = next();
                // Half the bytes from the whole range, half equal to the fingerprint or next to it.
                *b = match r % 4 {
                    0 => fp,
                    1 => fp ^ 0x80,
                    _ => (r >> 8) as u8,
                };
            }
            let (lo, hi) = (
                u64::from_le_bytes(bytes[..8].try_into().unwrap()),
                u64::from_le_bytes(bytes[8..].try_into().unwrap()),
            );
            let want = (0..16)
                .filter(|&k| bytes[k] == fp)
                .fold(0, |m, k| m | 1 << k);
            assert_eq!(match16(lo, hi, fp), want, "{bytes:02x?}, {fp:#04x}");
        }
    }

    /// `may_hold` is non-zero exactly when the slow path (`match_fp`, `stash_candidates`) would
    /// find a candidate: over random buckets with slots, overflow fingerprints and counts.
    #[test]
    fn may_hold_is_zero_only_when_no_slot_or_stash_candidate_exists() {
        let mut rng = SplitMix64::new(0x2545_F491_4F6C_DD1D);
        let mut next = || rng.next_u64();
        for _ in 0..20_000 {
            let b = empty_bucket();
            // Few distinct fingerprints (so they collide), in either half of the byte range.
            let fp = (next() % 8) as u8 | (next() as u8 & 0x80);
            for i in 0..SLOTS {
                let r = next();
                if r & 1 == 1 {
                    b.publish(i, r >> 8 & 7 | r >> 16 & 0x80, false);
                } else {
                    b.set_fp(i, r >> 8 & 7 | r >> 16 & 0x80);
                }
            }
            for _ in 0..next() % 7 {
                b.add_overflow(
                    (next() % 8) as u8 | (next() as u8 & 0x80),
                    (next() % 4) as usize,
                );
            }
            if next().is_multiple_of(5) {
                b.remove_overflow((next() % 8) as u8, (next() % 4) as usize);
            }
            if next().is_multiple_of(7) {
                // A damaged valid byte: bits past the four fingerprints mean nothing.
                let valid = b.meta_byte(OVERFLOW_VALID_AT) | (next() as u8 & 0xf0);
                b.set_meta_byte(OVERFLOW_VALID_AT, valid);
            }
            let slow = b.match_fp(fp) != 0 || b.stash_candidates(fp, STASH_FOR_TEST) != 0;
            assert_eq!(b.may_hold(fp) != 0, slow, "fingerprint {fp}");
        }
    }

    const STASH_FOR_TEST: usize = 4;
}
