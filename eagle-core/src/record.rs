//! Records: the key, value and metadata of one entry, in a heap block. Immutable once published
//! (an update writes a new record and swaps the slot's 8-byte offset), except `expire_at`, which is
//! one aligned 8-byte word updated in place with a single failure-atomic store.
//!
//! ```text
//! 0         4    5     6         8              16             24       28       32
//! | key_len | kind | flags | rsvd | value_len     | expire_at_ms  | crc32c | rsvd   | key .. | value .. |
//! ```
//! `crc32c` covers bytes 0..16, the key and the value (not `expire_at`, which changes in place).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::pmem::Region;

/// Bit 0 of a slot's record word, in pools with `INCOMPAT_OWNER_TAGS`: the record owns heap
/// blocks (a large hash's table and parts). Set in the same 8-byte store that publishes the
/// record, so it can never disagree with the record it names. Record blocks are at least
/// 16-byte aligned, so an offset's low bits are free.
pub const SLOT_OWNS_BLOCKS: u64 = 1;

/// The record offset in a slot's record word.
#[inline]
pub fn slot_record(word: u64) -> u64 {
    word & !SLOT_OWNS_BLOCKS
}

/// Bytes before the key.
pub const RECORD_HEADER: u64 = 32;

/// Offset of the expiry word (`expire_at`, u64 ms) in a record.
pub const EXPIRE_AT: u64 = 16;

/// What a record's value is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    /// A Redis string.
    String = 1,
    /// A Redis hash.
    Hash = 2,
}

impl RecordKind {
    fn from_u8(b: u8) -> Option<RecordKind> {
        match b {
            1 => Some(RecordKind::String),
            2 => Some(RecordKind::Hash),
            _ => None,
        }
    }
}

/// A validated view of a published record. Only the engine creates these, and only inside an
/// epoch guard, handing them to callbacks whose results cannot borrow them: while one exists,
/// the record can be neither freed nor reused, so its bytes are immutable.
#[derive(Clone, Copy)]
pub struct RecordRef<'a> {
    region: &'a Region,
    offset: u64,
    key_len: u64,
    value_len: u64,
    kind: RecordKind,
}

/// Total bytes of a record with this key and value.
pub fn record_size(key: &[u8], value_len: u64) -> u64 {
    RECORD_HEADER + key.len() as u64 + value_len
}

/// Writes a record into the block at `offset`, unflushed; returns its length in bytes. The
/// caller flushes those bytes before the fence that precedes the store publishing the record:
/// a put flushes them under the bucket locks, just before that fence (a flush issued before the
/// lock's CAS made the CAS wait for its write-back, one more round trip per insert); a
/// prepared record is flushed at once, before the log can name it.
///
/// # Safety
/// The caller owns `offset..offset+record_size(key, value.len())` exclusively: a block just
/// allocated and not yet reachable by any reader.
#[must_use = "the caller must flush these bytes before the record is published"]
pub unsafe fn write_record(
    region: &Region,
    offset: u64,
    kind: RecordKind,
    key: &[u8],
    value: &[u8],
    expire_at_ms: u64,
) -> u64 {
    let mut head = [0u8; RECORD_HEADER as usize];
    head[0..4].copy_from_slice(&(key.len() as u32).to_le_bytes());
    head[4] = kind as u8;
    head[8..16].copy_from_slice(&(value.len() as u64).to_le_bytes());
    head[16..24].copy_from_slice(&expire_at_ms.to_le_bytes());
    let total = record_size(key, value.len() as u64);
    let body = offset + RECORD_HEADER;
    let body_len = total - RECORD_HEADER;
    // SAFETY: exclusive ownership of the block is the caller's obligation; the ranges are in
    // bounds (Region::write asserts it, and `ptr` checks the body's range).
    unsafe {
        region.write(body, key);
        region.write(body + key.len() as u64, value);
        let p = region
            .ptr(body, body_len)
            .expect("the body was just written inside the region");
        // Key and value are contiguous here: one checksum call covers both.
        let crc = checksum(
            head[0..16].try_into().expect("16 bytes"),
            std::slice::from_raw_parts(p, body_len as usize),
        );
        head[24..28].copy_from_slice(&crc.to_le_bytes());
        region.write(offset, &head);
    }
    total
}

/// The record checksum: crc32c over header bytes 0..16, then the key and value (`body`).
#[inline]
fn checksum(head: &[u8; 16], body: &[u8]) -> u32 {
    crate::checksum::crc32c_pair(head, body)
}

/// Whether two byte strings of the same length are equal. A key of 8 to 16 bytes (the common
/// case) is compared as two overlapping words instead of through a `memcmp` call: a lookup's
/// hot path, where fewer instructions let the CPU start the next lookup's misses sooner.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n == b.len() && (8..=16).contains(&n) {
        let word = |s: &[u8], at: usize| -> [u8; 8] { s[at..at + 8].try_into().expect("8 bytes") };
        return word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8);
    }
    a == b
}

impl<'a> RecordRef<'a> {
    /// Reads and bounds-checks the header of the record at `offset`; `None` if it cannot be a
    /// record (out of the region, unknown kind, lengths past the region). The checksum is not
    /// verified here (see [`verify`](Self::verify)).
    pub(crate) fn open(region: &'a Region, offset: u64) -> Option<RecordRef<'a>> {
        let mut head = [0u8; 16];
        if !region.read(offset, &mut head) {
            return None;
        }
        let key_len = u32::from_le_bytes(head[0..4].try_into().ok()?) as u64;
        let kind = RecordKind::from_u8(head[4])?;
        let value_len = u64::from_le_bytes(head[8..16].try_into().ok()?);
        let total = RECORD_HEADER.checked_add(key_len)?.checked_add(value_len)?;
        region.contains(offset, total).then_some(RecordRef {
            region,
            offset,
            key_len,
            value_len,
            kind,
        })
    }

    /// [`open`](Self::open) for a lookup of `key`: `Ok(None)` if the record's key length differs
    /// from `key`'s or (once the header passed `open`'s checks) its key bytes differ;
    /// `Err(offset)` if its first word cannot be read or, with a matching key length, the
    /// header fails `open`'s checks (kind, lengths within the region). Reads the header once,
    /// as two words, and compares the key in place.
    #[inline]
    pub(crate) fn open_keyed(
        region: &'a Region,
        offset: u64,
        key: &[u8],
    ) -> Result<Option<RecordRef<'a>>, u64> {
        let word = |at: u64| {
            region
                .atomic_u64(at)
                .map(|w| u64::from_le(w.load(Ordering::Relaxed)))
                .ok_or(offset)
        };
        let head = word(offset)?;
        let key_len = head as u32 as u64;
        if key_len != key.len() as u64 {
            return Ok(None);
        }
        let kind = RecordKind::from_u8((head >> 32) as u8).ok_or(offset)?;
        let value_len = word(offset.wrapping_add(8))?;
        let total = RECORD_HEADER
            .checked_add(key_len)
            .and_then(|t| t.checked_add(value_len))
            .ok_or(offset)?;
        let p = region
            .contains(offset, total)
            .then(|| region.ptr(offset + RECORD_HEADER, key_len))
            .flatten()
            .ok_or(offset)?;
        // SAFETY: `ptr` checked the range against the region; the record is immutable while the
        // caller's epoch guard holds it (see the type's documentation).
        let stored = unsafe { std::slice::from_raw_parts(p, key.len()) };
        Ok(same_bytes(stored, key).then_some(RecordRef {
            region,
            offset,
            key_len,
            value_len,
            kind,
        }))
    }

    /// The record's offset.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Its kind.
    pub fn kind(&self) -> RecordKind {
        self.kind
    }

    /// Total bytes.
    pub fn size(&self) -> u64 {
        RECORD_HEADER + self.key_len + self.value_len
    }

    /// The key bytes.
    pub fn key(&self) -> &'a [u8] {
        let p = self
            .region
            .ptr(self.offset + RECORD_HEADER, self.key_len)
            .expect("bounds checked in open");
        // SAFETY: in bounds (checked in `open`); immutable while this RecordRef exists (see the
        // type's documentation).
        unsafe { std::slice::from_raw_parts(p, self.key_len as usize) }
    }

    /// The value bytes.
    pub fn value(&self) -> &'a [u8] {
        let p = self
            .region
            .ptr(self.offset + RECORD_HEADER + self.key_len, self.value_len)
            .expect("bounds checked in open");
        // SAFETY: as for `key`.
        unsafe { std::slice::from_raw_parts(p, self.value_len as usize) }
    }

    /// Offset in the pool of the expiry word (changed in place; outside the checksum).
    pub fn expire_at_offset(&self) -> u64 {
        self.offset + EXPIRE_AT
    }

    /// The expiry word (ms since the Unix epoch, 0 = none), updatable in place.
    pub fn expire_at(&self) -> &'a AtomicU64 {
        self.region
            .atomic_u64(self.offset + EXPIRE_AT)
            .expect("records are 16-byte aligned and bounds checked")
    }

    /// Expiry time, 0 for none.
    pub fn expire_at_ms(&self) -> u64 {
        self.expire_at().load(Ordering::Acquire)
    }

    /// Whether the checksum matches.
    pub fn verify(&self) -> bool {
        // One bounds check, no copy, one checksum call: a keyspace read verifies every record
        // it returns, and the fewer instructions wait on the record's cache miss, the sooner
        // the CPU can reach the next lookup's misses (docs/benchmarks.md, thirty-second
        // session: lookups with a verify under a held pin ran 60-70% faster).
        let p = self
            .region
            .ptr(self.offset, self.size())
            .expect("bounds checked in open");
        let body_len = (self.key_len + self.value_len) as usize;
        // SAFETY: in bounds (checked just above, and in `open`). Bytes 0..16, the checksum at
        // 24..28 and the key and value are immutable while this RecordRef exists (see the
        // type's documentation); the slices leave out the expiry word (16..24), which EXPIRE
        // stores in place.
        let (head, stored, body) = unsafe {
            (
                &*p.cast::<[u8; 16]>(),
                p.add(24).cast::<u32>().read_unaligned(),
                std::slice::from_raw_parts(p.add(RECORD_HEADER as usize), body_len),
            )
        };
        checksum(head, body) == u32::from_le(stored)
    }
}

#[cfg(test)]
mod tests {
    use super::{RecordKind, RecordRef, write_record};

    #[test]
    fn open_keyed_matches_only_the_exact_key_and_refuses_a_damaged_header() {
        let engine = crate::engine::temp_engine("open-keyed", 8 << 20);
        let index = engine.index();
        let region = index.region();
        // Lengths below, inside and above the two-word comparison's 8..=16.
        for len in [1usize, 7, 8, 12, 16, 17, 40] {
            let key: Vec<u8> = (0..len as u8).map(|i| b'a' + i % 26).collect();
            let value = b"value";
            let off = index.heap.alloc(super::record_size(&key, 5)).unwrap();
            // SAFETY: the block was just allocated and nothing else can reach it.
            let _ = unsafe { write_record(region, off, RecordKind::String, &key, value, 0) };
            let rec = RecordRef::open_keyed(region, off, &key)
                .unwrap()
                .expect("its own key");
            assert_eq!((rec.key(), rec.value()), (&key[..], &value[..]));
            // A difference in any byte (first, middle, last) or in the length is another key.
            for at in [0, len / 2, len - 1] {
                let mut other = key.clone();
                other[at] ^= 0x20;
                assert!(
                    RecordRef::open_keyed(region, off, &other)
                        .unwrap()
                        .is_none()
                );
            }
            let longer = [&key[..], b"x"].concat();
            assert!(
                RecordRef::open_keyed(region, off, &longer)
                    .unwrap()
                    .is_none()
            );
            // An unknown kind, a value length that overflows or one that runs past the pool: not
            // a record, for any key of its length.
            // SAFETY: the block is this test's; no reader holds it.
            unsafe { region.write(off + 4, &[9]) };
            assert_eq!(RecordRef::open_keyed(region, off, &key).err(), Some(off));
            // SAFETY: as above.
            unsafe { region.write(off + 4, &[RecordKind::String as u8]) };
            for value_len in [u64::MAX, region.len() as u64] {
                // SAFETY: as above.
                unsafe { region.write(off + 8, &value_len.to_le_bytes()) };
                assert_eq!(RecordRef::open_keyed(region, off, &key).err(), Some(off));
            }
        }
        // Past the end of the pool, or misaligned: refused, not read.
        for bad in [region.len() as u64, 4 << 20 | 4] {
            assert_eq!(RecordRef::open_keyed(region, bad, b"k").err(), Some(bad));
        }
    }
}
