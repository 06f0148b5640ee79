//! The stored form of a large hash (see `docs/format.md`).
//!
//! A hash record's value starts with a format byte: 0 = compact (the fields inline, see
//! `db/hash_codec.rs`), 1 = table:
//!
//! ```text
//! hash record value (16 bytes): | 1 | 0 x 7 | table offset u64 |
//!
//! table block (64 + 8 * 2^k bytes):
//! 0        8              12       16         24            32         64
//! | EHTABLE1 | log2_parts k | rsvd  | count u64 | count_epoch | rsvd ... | part[0] .. part[2^k-1] |
//!
//! part block (8 + len bytes, in a heap block that may hold more):
//! | len u32 | crc32c u32 | fields (len bytes) |
//! ```
//! A field lives in part `xxh3(field) >> (64 - k)`. The part's first 8 bytes are its header
//! word; `crc32c` covers the `len` bytes after it. The fields are counted (`count u32 |
//! pairs`) in pools without `INCOMPAT_APPEND_PARTS`, a run of pairs in pools with it.
//!
//! A change replaces a part: the new part, built in a new block, is published with one 8-byte
//! store into the table when no other entry names its block; a split of a shared block, and
//! anything wider, goes through the write-ahead log (`db/hash_store.rs`, `replace_parts`). In a pool
//! with `INCOMPAT_APPEND_PARTS`, a change that only adds fields to one part whose block has room
//! appends them in place instead: the pairs go past `len`, where no reader looks, then one
//! 8-byte store of the header word (the new `len` and the checksum extended over them)
//! publishes them. `count` is trusted only when `count_epoch` equals the pool's recovery epoch
//! (every crash moves the epoch on, so a count that reached the media without its part, or the
//! other way round, is recounted). The table and its parts belong to the one record naming the
//! table.
//!
//! In a pool with `INCOMPAT_SHARED_PARTS` the table doubles without rewriting its parts: the new
//! table names each old part's block from both entries it splits into, so a block may be named
//! by a run of adjacent entries (2^m of them, aligned, after m doublings). The part of entry `j`
//! is the fields of its block that hash to `j`; a block may also hold fields that hash to none
//! of the entries naming it (a two-word split that a crash interrupted, in a pool written by a
//! build before splits were logged), which every reader that lists fields leaves out. A shared block is split at the first change to any of its entries:
//! each entry of the run gets a block of its own fields, and the old block is retired once.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::pmem::Region;
use crate::record::{RecordKind, RecordRef};

/// Bytes before the part offsets in a table block.
pub const TABLE_HEADER: u64 = 64;
/// Bytes before the fields in a part block.
pub const PART_HEADER: u64 = 8;
/// Most parts a table may have (2^24: 128 MiB of offsets).
pub const MAX_LOG2_PARTS: u32 = 24;

const MAGIC: &[u8; 8] = b"EHTABLE1";
const FORMAT_TABLE: u8 = 1;

/// Size of a table block with 2^k parts.
pub fn table_size(k: u32) -> u64 {
    TABLE_HEADER + 8 * (1u64 << k)
}

/// The record value naming a table.
pub fn write_table_ref(table: u64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[0] = FORMAT_TABLE;
    v[8..16].copy_from_slice(&table.to_le_bytes());
    v
}

/// The table a hash record's value names, if it is in table form.
pub fn table_ref(value: &[u8]) -> Option<u64> {
    if value.len() == 16 && value[0] == FORMAT_TABLE {
        Some(u64::from_le_bytes(value[8..16].try_into().ok()?))
    } else {
        None
    }
}

/// A validated view of a table block.
#[derive(Clone, Copy)]
pub struct Table<'a> {
    region: &'a Region,
    /// Its offset.
    pub offset: u64,
    /// log2 of its number of parts.
    pub log2_parts: u32,
}

impl<'a> Table<'a> {
    /// Validates the header at `offset`; `None` if it is no table.
    pub fn open(region: &'a Region, offset: u64) -> Option<Table<'a>> {
        let mut head = [0u8; 16];
        if !region.read(offset, &mut head) || &head[0..8] != MAGIC {
            return None;
        }
        let k = u32::from_le_bytes(head[8..12].try_into().ok()?);
        (k <= MAX_LOG2_PARTS && region.contains(offset, table_size(k)) && offset.is_multiple_of(8))
            .then_some(Table {
                region,
                offset,
                log2_parts: k,
            })
    }

    /// Writes a table of twice `from`'s parts, each of `from`'s blocks named by both entries it
    /// splits into (entries `2i` and `2i + 1` name `from`'s entry `i`), flushed (not fenced).
    /// The caller must not grow a table past [`MAX_LOG2_PARTS`].
    ///
    /// # Safety
    /// The caller owns `offset..offset + table_size(from.log2_parts + 1)` exclusively (just
    /// allocated).
    pub unsafe fn init_doubled(
        region: &'a Region,
        offset: u64,
        from: &Table<'_>,
        count: u64,
        epoch: u64,
    ) -> Table<'a> {
        let mut entries = Vec::with_capacity(16 << from.log2_parts);
        for i in 0..from.parts() {
            let block = from.part(i).to_le_bytes();
            entries.extend_from_slice(&block);
            entries.extend_from_slice(&block);
        }
        // SAFETY: the caller's obligation.
        unsafe { Self::write(region, offset, from.log2_parts + 1, count, epoch, &entries) }
    }

    /// Writes a new table header with 2^k parts all empty, flushed (not fenced).
    ///
    /// # Safety
    /// The caller owns `offset..offset + table_size(k)` exclusively (just allocated).
    pub unsafe fn init(
        region: &'a Region,
        offset: u64,
        k: u32,
        count: u64,
        epoch: u64,
    ) -> Table<'a> {
        // SAFETY: the caller's obligation.
        unsafe { Self::write(region, offset, k, count, epoch, &vec![0u8; 8 << k]) }
    }

    /// Writes a table's header and its `8 * 2^k` bytes of part words, flushed (not fenced).
    ///
    /// # Safety
    /// The caller owns `offset..offset + table_size(k)` exclusively (just allocated).
    unsafe fn write(
        region: &'a Region,
        offset: u64,
        k: u32,
        count: u64,
        epoch: u64,
        words: &[u8],
    ) -> Table<'a> {
        debug_assert_eq!(words.len() as u64, table_size(k) - TABLE_HEADER);
        let mut head = [0u8; TABLE_HEADER as usize];
        head[0..8].copy_from_slice(MAGIC);
        head[8..12].copy_from_slice(&k.to_le_bytes());
        head[16..24].copy_from_slice(&count.to_le_bytes());
        head[24..32].copy_from_slice(&epoch.to_le_bytes());
        // SAFETY: exclusive ownership is the caller's obligation; `write` checks bounds.
        unsafe {
            region.write(offset, &head);
            region.write(offset + TABLE_HEADER, words);
        }
        region.flush(offset, table_size(k) as usize);
        Table {
            region,
            offset,
            log2_parts: k,
        }
    }

    /// Number of parts.
    pub fn parts(&self) -> u64 {
        1 << self.log2_parts
    }

    /// The part holding a field with this hash.
    pub fn part_of(&self, field_hash: u64) -> u64 {
        if self.log2_parts == 0 {
            0
        } else {
            field_hash >> (64 - self.log2_parts)
        }
    }

    fn word(&self, at: u64) -> &'a AtomicU64 {
        self.region
            .atomic_u64(self.offset + at)
            .expect("validated in open")
    }

    /// Offset of part `i`'s word (for logged stores).
    pub fn part_word(&self, i: u64) -> u64 {
        self.offset + TABLE_HEADER + 8 * i
    }

    /// Part `i`'s block, 0 if empty.
    pub fn part(&self, i: u64) -> u64 {
        self.word(TABLE_HEADER + 8 * i).load(Ordering::Acquire)
    }

    /// The entries `lo..hi` that name part `i`'s block: the run of adjacent entries equal to
    /// it (just `i` for an empty part, or a block no other entry names).
    pub fn group(&self, i: u64) -> (u64, u64) {
        let block = self.part(i);
        let (mut lo, mut hi) = (i, i + 1);
        if block != 0 {
            while lo > 0 && self.part(lo - 1) == block {
                lo -= 1;
            }
            while hi < self.parts() && self.part(hi) == block {
                hi += 1;
            }
        }
        (lo, hi)
    }

    /// Publishes part `i`: one failure-atomic store, flushed, not fenced (the caller's next
    /// fence makes it durable). The caller fenced the part's contents first.
    pub fn publish_part(&self, i: u64, block: u64) {
        self.word(TABLE_HEADER + 8 * i)
            .store(block, Ordering::Release);
        self.region.flush(self.part_word(i), 8);
    }

    /// Sets part `i` of a table not yet reachable (no persist: the caller flushes the table).
    pub fn set_part_unpublished(&self, i: u64, block: u64) {
        self.word(TABLE_HEADER + 8 * i)
            .store(block, Ordering::Relaxed);
    }

    /// The field count, if trusted in `epoch`.
    pub fn count(&self, epoch: u64) -> Option<u64> {
        (self.word(24).load(Ordering::Acquire) == epoch)
            .then(|| self.word(16).load(Ordering::Acquire))
    }

    /// Stores the count (and, if it changed, the epoch it is trusted in), flushed, not fenced:
    /// the caller's next fence makes them durable before the operation returns.
    ///
    /// Ordering: none needed between these stores, or against the part they count. A count is
    /// trusted only in the epoch its `count_epoch` names, and every open after a crash starts a
    /// new epoch, so whatever subset of them a crash keeps is recounted; after a clean close
    /// every change was fenced before its operation returned.
    pub fn store_count(&self, count: u64, epoch: u64) {
        self.word(16).store(count, Ordering::Release);
        self.region.flush(self.offset + 16, 8);
        if self.word(24).load(Ordering::Acquire) != epoch {
            self.word(24).store(epoch, Ordering::Release);
            self.region.flush(self.offset + 24, 8);
        }
    }
}

/// A part's header word: `len u32 | crc32c u32`, little-endian.
fn header_word(len: u32, crc: u32) -> u64 {
    u64::from(len) | (u64::from(crc) << 32)
}

/// Builds a part block in one buffer: `PART_HEADER` bytes for the header, then the fields
/// that `body` appends to the buffer it is given (counted or a run, as the pool's format says).
pub fn build_part(body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = vec![0u8; PART_HEADER as usize];
    body(&mut out);
    let fields = &out[PART_HEADER as usize..];
    let word = header_word(fields.len() as u32, crc32c::crc32c(fields));
    out[..PART_HEADER as usize].copy_from_slice(&word.to_le_bytes());
    out
}

/// A part as found in the pool: its header word, and its fields borrowed from the mapping.
pub struct Part<'a> {
    /// Its offset.
    pub offset: u64,
    /// The header word read (`len | crc << 32`).
    pub header: u64,
    /// The `len` bytes of fields (see [`Part::verify`]).
    pub fields: &'a [u8],
}

/// Opens part `offset`: reads its header word, checks its bounds, and borrows its fields from
/// the mapping (no copy). `Err` names what is damaged. The checksum is left to
/// [`Part::verify`]: every reader calls it; a writer that only appends need not, since its new
/// header word extends the stored checksum (damage to the bytes it did not write stays
/// detectable), and a writer that copies the part calls it first.
///
/// # Safety
/// While the returned fields are in use, nothing frees the part or writes its first `8 + len`
/// bytes: the caller holds the lock of the hash's key (shared or exclusive), under which the
/// part stays the one its table names (a writer retires a replaced part while it holds the
/// lock exclusively), and appends write only past `len`.
pub unsafe fn open_part(region: &Region, offset: u64) -> Result<Part<'_>, String> {
    let header = region
        .atomic_u64(offset)
        .ok_or_else(|| format!("hash part {offset:#x} is misaligned or outside the pool"))?
        .load(Ordering::Acquire);
    let len = header as u32 as u64;
    if len == 0 {
        // No part is written empty (a table names no block for an empty part), and a zeroed
        // word would pass the checksum: a table naming a free, zeroed block.
        return Err(format!("hash part {offset:#x} is empty (not a part)"));
    }
    let p = region
        .ptr(offset + PART_HEADER, len)
        .ok_or_else(|| format!("hash part {offset:#x} runs past the pool"))?;
    // SAFETY: `ptr` checked the bounds; the caller guarantees nothing writes or frees these
    // bytes while they are borrowed.
    let fields = unsafe { std::slice::from_raw_parts(p, len as usize) };
    Ok(Part {
        offset,
        header,
        fields,
    })
}

impl Part<'_> {
    /// Checks the fields against the header word's checksum.
    pub fn verify(&self) -> Result<(), String> {
        if crc32c::crc32c(self.fields) != (self.header >> 32) as u32 {
            return Err(format!("hash part {:#x}: checksum mismatch", self.offset));
        }
        Ok(())
    }
}

/// Appends encoded pairs to a part in place: writes them past its `len` and flushes them (not
/// fenced, not yet visible). Returns the header word that publishes them, for
/// [`publish_append`] after a fence.
///
/// # Safety
/// The caller holds the lock of the hash's key exclusively, `part` is the part its table
/// names now, and the part's heap block holds `8 + len + pairs.len()` bytes.
pub unsafe fn append_to_part(region: &Region, part: &Part<'_>, pairs: &[u8]) -> u64 {
    let len = part.fields.len() as u64;
    let at = part.offset + PART_HEADER + len;
    // SAFETY: the bytes past `len` are the block's slack (the caller checked the block holds
    // them): no reader looks there, and the exclusive key lock keeps other writers out.
    unsafe { region.write(at, pairs) };
    region.flush(at, pairs.len());
    header_word(
        (len + pairs.len() as u64) as u32,
        crc32c::crc32c_append((part.header >> 32) as u32, pairs),
    )
}

/// Publishes an append: one failure-atomic store of the part's header word, flushed, not
/// fenced (the caller's next fence makes it durable). The caller fenced the appended pairs
/// first, so a crash keeps either the old header (the pairs are slack again) or the new one
/// with every byte it covers.
pub fn publish_append(region: &Region, part: u64, word: u64) {
    region
        .atomic_u64(part)
        .expect("opened by open_part")
        .store(word, Ordering::Release);
    region.flush(part, 8);
}

/// A block owned by a record (besides the record itself), with the bytes it must hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Child {
    /// Its offset.
    pub offset: u64,
    /// The bytes it uses.
    pub size: u64,
    /// What it is.
    pub what: &'static str,
}

/// Whether a record owns heap blocks (it is a hash stored as a table).
pub fn owns_blocks(record: &RecordRef<'_>) -> bool {
    record.kind() == RecordKind::Hash && table_ref(record.value()).is_some()
}

/// The blocks a record owns: a large hash's table and the table's parts (none for a string or
/// a compact hash). With `shared` (pools with `INCOMPAT_SHARED_PARTS`) a block named by a run
/// of words is one child; in other pools every word names a child of its own, so `check`
/// reports two words naming one block. `Err` names what is damaged.
pub fn children(
    region: &Region,
    record: &RecordRef<'_>,
    shared: bool,
) -> Result<Vec<Child>, String> {
    if record.kind() != RecordKind::Hash {
        return Ok(Vec::new());
    }
    let Some(t) = table_ref(record.value()) else {
        return Ok(Vec::new());
    };
    let table = Table::open(region, t).ok_or_else(|| format!("hash table {t:#x} is damaged"))?;
    let mut out = vec![Child {
        offset: t,
        size: table_size(table.log2_parts),
        what: "hash table",
    }];
    let mut previous = 0;
    for i in 0..table.parts() {
        let p = table.part(i);
        // A block named by a run of entries (a doubled table's shared part) is one child.
        if p != 0 && !(shared && p == previous) {
            // The header word is read atomically: an append may store it concurrently (the
            // sweep runs beside writers).
            let header = region
                .atomic_u64(p)
                .ok_or_else(|| format!("hash part {p:#x} is misaligned or outside the pool"))?
                .load(Ordering::Acquire);
            out.push(Child {
                offset: p,
                size: PART_HEADER + (header as u32) as u64,
                what: "hash part",
            });
        }
        previous = p;
    }
    Ok(out)
}
