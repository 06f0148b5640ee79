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
            &head[0..16],
            std::slice::from_raw_parts(p, body_len as usize),
        );
        head[24..28].copy_from_slice(&crc.to_le_bytes());
        region.write(offset, &head);
    }
    total
}

/// The record checksum: crc32c over header bytes 0..16, then the key and value (`body`).
#[inline]
fn checksum(head: &[u8], body: &[u8]) -> u32 {
    crate::checksum::crc32c_append(crate::checksum::crc32c(head), body)
}

/// Whether the record at `offset` holds `key`; `None` if its key cannot be read (outside the
/// region). Reads only the key length and, if it matches, the key: a lookup's comparison, which
/// opens the whole record (kind and value bounds) only for the record it finds.
#[inline]
pub(crate) fn key_is(region: &Region, offset: u64, key: &[u8]) -> Option<bool> {
    // The key length is the header's first 4 bytes (little-endian); records are 16-byte aligned.
    let head = region
        .atomic_u64(offset)?
        .load(std::sync::atomic::Ordering::Relaxed);
    if head as u32 as usize != key.len() {
        return Some(false);
    }
    let p = region.ptr(offset.checked_add(RECORD_HEADER)?, key.len() as u64)?;
    // SAFETY: `ptr` checked the range against the region; the record is immutable while the
    // caller's epoch guard holds it (see RecordRef), so the bytes are not written meanwhile.
    Some(unsafe { std::slice::from_raw_parts(p, key.len()) } == key)
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
        let mut head = [0u8; 28];
        self.region.read(self.offset, &mut head);
        let stored = u32::from_le_bytes(head[24..28].try_into().expect("4 bytes"));
        let body = self
            .region
            .ptr(self.offset + RECORD_HEADER, self.key_len + self.value_len)
            .expect("bounds checked in open");
        // SAFETY: in bounds (checked in `open`); immutable while this RecordRef exists (see the
        // type's documentation). Key and value are contiguous.
        let body =
            unsafe { std::slice::from_raw_parts(body, (self.key_len + self.value_len) as usize) };
        checksum(&head[0..16], body) == stored
    }
}
