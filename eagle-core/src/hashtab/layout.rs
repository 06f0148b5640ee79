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
//! part block (8 + len bytes): | len u32 | crc32c u32 | compact fields (len bytes) |
//! ```
//! A field lives in part `xxh3(field) >> (64 - k)`. Parts are immutable: a write builds a new
//! part and publishes it with one 8-byte store into the table (several parts at once go
//! through the write-ahead log). `count` is trusted only when `count_epoch` equals the pool's
//! recovery epoch (a crash between a part's store and the count's leaves the count stale; the
//! next epoch recounts). The table and its parts belong to the one record naming the table.

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
        let mut head = [0u8; TABLE_HEADER as usize];
        head[0..8].copy_from_slice(MAGIC);
        head[8..12].copy_from_slice(&k.to_le_bytes());
        head[16..24].copy_from_slice(&count.to_le_bytes());
        head[24..32].copy_from_slice(&epoch.to_le_bytes());
        let zeros = vec![0u8; 8 << k];
        // SAFETY: exclusive ownership is the caller's obligation; `write` checks bounds.
        unsafe {
            region.write(offset, &head);
            region.write(offset + TABLE_HEADER, &zeros);
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

    /// Publishes part `i`: one failure-atomic store, persisted. The caller fenced the part's
    /// contents first.
    pub fn set_part(&self, i: u64, block: u64) {
        self.word(TABLE_HEADER + 8 * i)
            .store(block, Ordering::Release);
        self.region.persist(self.part_word(i), 8);
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

    /// Stores the count (and, if it changed, the epoch it is trusted in), persisted. Ordering:
    /// the count is stored before the epoch word that vouches for it, each persisted in turn,
    /// so a crash between them leaves an old epoch (recount) rather than a wrong trusted count.
    pub fn set_count(&self, count: u64, epoch: u64) {
        self.word(16).store(count, Ordering::Release);
        self.region.persist(self.offset + 16, 8);
        if self.word(24).load(Ordering::Acquire) != epoch {
            self.word(24).store(epoch, Ordering::Release);
            self.region.persist(self.offset + 24, 8);
        }
    }
}

/// Encodes a part block from compact field bytes (`u32 count | fields`).
pub fn encode_part(fields: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(PART_HEADER as usize + fields.len());
    out.extend_from_slice(&(fields.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(fields).to_le_bytes());
    out.extend_from_slice(fields);
    out
}

/// Reads part block `offset`: its compact field bytes, if intact.
pub fn decode_part(region: &Region, offset: u64) -> Result<Vec<u8>, String> {
    let mut head = [0u8; PART_HEADER as usize];
    if !region.read(offset, &mut head) {
        return Err(format!("hash part {offset:#x} is outside the pool"));
    }
    let len = u32::from_le_bytes(head[0..4].try_into().expect("4 bytes")) as u64;
    let crc = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes"));
    if !region.contains(offset + PART_HEADER, len) {
        return Err(format!("hash part {offset:#x} runs past the pool"));
    }
    let mut body = vec![0u8; len as usize];
    region.read(offset + PART_HEADER, &mut body);
    if crc32c::crc32c(&body) != crc {
        return Err(format!("hash part {offset:#x}: checksum mismatch"));
    }
    Ok(body)
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
/// a compact hash). `Err` names what is damaged.
pub fn children(region: &Region, record: &RecordRef<'_>) -> Result<Vec<Child>, String> {
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
    for i in 0..table.parts() {
        let p = table.part(i);
        if p != 0 {
            let mut len = [0u8; 4];
            if !region.read(p, &mut len) {
                return Err(format!("hash part {p:#x} is outside the pool"));
            }
            out.push(Child {
                offset: p,
                size: PART_HEADER + u32::from_le_bytes(len) as u64,
                what: "hash part",
            });
        }
    }
    Ok(out)
}
