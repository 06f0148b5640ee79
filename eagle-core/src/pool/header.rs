//! The pool header: identity, format version and region layout in the first two cache lines,
//! protected by a crc32c. Its bytes are drawn in `docs/format.md`.

use std::path::Path;

use super::{Extent, Layout, PoolError};

/// Magic of a complete pool, at offset 0.
pub const MAGIC: [u8; 8] = *b"EAGLPOOL";
/// Magic while a pool is being created: the file is ours, and creation may be redone.
pub const CREATING_MAGIC: [u8; 8] = *b"EAGLINIT";
/// The format version this build writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;
/// Incompatible feature: bit 0 of a slot's record word says whether the record owns heap
/// blocks (a large hash's table and parts), so recovery's sweep opens only those records.
/// Pools without it (written before the bit existed) are swept by opening every record, and
/// their slots are never tagged.
pub const INCOMPAT_OWNER_TAGS: u64 = 1;
/// Incompatible feature: the heap's small size classes step by 16 bytes up to 256 and by 32 up
/// to 512 (`heap::Classes::FINE`), instead of by 64. Chunk words store a class index, so the
/// table is part of the format: pools without the bit keep the first table.
pub const INCOMPAT_FINE_CLASSES: u64 = 2;
/// Incompatible feature: a large hash's parts hold their fields as a run without a count
/// prefix, so a new field is appended in place and published by the part's header word
/// (`hashtab`). Pools without the bit keep counted parts, rewritten on every change.
pub const INCOMPAT_APPEND_PARTS: u64 = 4;
/// Incompatible feature: a large hash's table doubles without rewriting its parts, so a part's
/// block may be named by a run of adjacent table entries, and a part is the fields of its
/// block that hash to its entry (`hashtab`). Pools without the bit rewrite every part when
/// their table doubles, and a block is named by one entry.
pub const INCOMPAT_SHARED_PARTS: u64 = 8;
/// The incompatible features this build understands.
pub const KNOWN_INCOMPAT: u64 =
    INCOMPAT_OWNER_TAGS | INCOMPAT_FINE_CLASSES | INCOMPAT_APPEND_PARTS | INCOMPAT_SHARED_PARTS;
/// The header block: identity (bytes 0..128), shutdown state (128..192), the rest reserved.
pub const HEADER_BLOCK: u64 = 4096;
/// Bytes covered by the checksum, including the checksum field itself.
pub const IDENTITY_LEN: usize = 128;
const CRC_AT: usize = IDENTITY_LEN - 4;

/// The immutable part of the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Format version the pool was written with.
    pub version: u32,
    /// Random identifier of this pool; mixed into WAL checksums so foreign records never validate.
    pub uuid: [u8; 16],
    /// Bytes of the pool (the file or device may be longer).
    pub pool_size: u64,
    /// Where the regions are.
    pub layout: Layout,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
    /// Features a reader must understand (none in version 1).
    pub incompat_features: u64,
    /// Features a reader may ignore.
    pub compat_features: u64,
}

/// What the first bytes of a file say it is.
#[derive(Debug, PartialEq, Eq)]
pub enum Probe {
    /// All zero (or empty): no pool, safe to create one.
    Blank,
    /// A pool whose creation did not finish: ours, safe to create again.
    Creating,
    /// A complete pool.
    Pool(Header),
}

impl Header {
    /// The 128 identity bytes, with `magic` at offset 0 and the checksum at 124. The checksum is
    /// always computed as if the magic were [`MAGIC`], so the same bytes validate before and after
    /// creation publishes the real magic.
    pub fn encode(&self, magic: [u8; 8]) -> [u8; IDENTITY_LEN] {
        let mut b = [0u8; IDENTITY_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&self.version.to_le_bytes());
        b[12..16].copy_from_slice(&(IDENTITY_LEN as u32).to_le_bytes());
        b[16..32].copy_from_slice(&self.uuid);
        let words = [
            self.pool_size,
            self.layout.meta.offset,
            self.layout.meta.len,
            self.layout.wal.offset,
            self.layout.wal.len,
            self.layout.heap.offset,
            self.layout.heap.len,
            self.created_unix_ms,
            self.incompat_features,
            self.compat_features,
        ];
        for (i, w) in words.iter().enumerate() {
            b[32 + 8 * i..40 + 8 * i].copy_from_slice(&w.to_le_bytes());
        }
        let crc = crc32c::crc32c(&b[..CRC_AT]);
        b[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        b[0..8].copy_from_slice(&magic);
        b
    }

    /// Reads the header from the start of a file. `block` holds the first
    /// `min(file_len, HEADER_BLOCK)` bytes; `file_len` is the file's (or device's) length.
    pub fn probe(path: &Path, block: &[u8], file_len: u64) -> Result<Probe, PoolError> {
        let not_a_pool = |why: &str| PoolError::NotAPool {
            path: path.to_path_buf(),
            why: why.to_string(),
        };
        if block.iter().all(|&b| b == 0) && (file_len == 0 || file_len >= HEADER_BLOCK) {
            return Ok(Probe::Blank);
        }
        if block.len() < MAGIC.len() {
            return Err(not_a_pool("file too short to hold a header"));
        }
        let magic = &block[0..8];
        if magic != MAGIC && magic != CREATING_MAGIC {
            return Err(not_a_pool(&format!(
                "magic bytes {} instead of {}",
                printable(magic),
                printable(&MAGIC)
            )));
        }
        if (block.len() as u64) < HEADER_BLOCK {
            return Err(PoolError::Truncated {
                path: path.to_path_buf(),
                expected: HEADER_BLOCK,
                actual: file_len,
            });
        }
        if magic == CREATING_MAGIC {
            return Ok(Probe::Creating);
        }
        let b = &block[..IDENTITY_LEN];
        let u32_at = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"));
        let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        let corrupted = |what: String| PoolError::Corrupted {
            path: path.to_path_buf(),
            what,
        };
        // The version is read before the checksum: a future format may lay the rest out
        // differently, and the right message for it is "upgrade", not "corrupted".
        let version = u32_at(8);
        if version > FORMAT_VERSION {
            return Err(PoolError::FutureVersion {
                path: path.to_path_buf(),
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let stored = u32_at(CRC_AT);
        let computed = crc32c::crc32c(&b[..CRC_AT]);
        if stored != computed {
            return Err(PoolError::ChecksumMismatch {
                path: path.to_path_buf(),
                stored,
                computed,
            });
        }
        if version == 0 {
            return Err(corrupted("format version 0".into()));
        }
        let header_len = u32_at(12);
        if header_len as usize != IDENTITY_LEN {
            return Err(corrupted(format!(
                "header length {header_len}, expected {IDENTITY_LEN}"
            )));
        }
        let extent = |at: usize| Extent {
            offset: u64_at(at),
            len: u64_at(at + 8),
        };
        let header = Header {
            version,
            uuid: b[16..32].try_into().expect("16 bytes"),
            pool_size: u64_at(32),
            layout: Layout {
                meta: extent(40),
                wal: extent(56),
                heap: extent(72),
            },
            created_unix_ms: u64_at(88),
            incompat_features: u64_at(96),
            compat_features: u64_at(104),
        };
        if header.incompat_features & !KNOWN_INCOMPAT != 0 {
            return Err(corrupted(format!(
                "unknown incompatible features {:#x}",
                header.incompat_features & !KNOWN_INCOMPAT
            )));
        }
        header
            .layout
            .validate(header.pool_size)
            .map_err(|e| corrupted(format!("header layout: {e}")))?;
        if file_len < header.pool_size {
            return Err(PoolError::Truncated {
                path: path.to_path_buf(),
                expected: header.pool_size,
                actual: file_len,
            });
        }
        Ok(Probe::Pool(header))
    }
}

fn printable(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&c| {
            if c.is_ascii_graphic() {
                (c as char).to_string()
            } else {
                format!("\\x{c:02x}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            version: FORMAT_VERSION,
            uuid: *b"0123456789abcdef",
            pool_size: 4 << 20,
            layout: Layout::for_size(4 << 20, None).unwrap(),
            created_unix_ms: 1_700_000_000_000,
            incompat_features: 0,
            compat_features: 0,
        }
    }

    fn block_of(id: [u8; IDENTITY_LEN]) -> Vec<u8> {
        let mut block = vec![0u8; HEADER_BLOCK as usize];
        block[..IDENTITY_LEN].copy_from_slice(&id);
        block
    }

    #[test]
    fn header_round_trips() {
        let h = sample();
        let got = Header::probe(Path::new("p"), &block_of(h.encode(MAGIC)), 4 << 20).unwrap();
        assert_eq!(got, Probe::Pool(h));
    }

    #[test]
    fn creating_magic_and_zeroes_are_recognised() {
        let p = Path::new("p");
        let block = block_of(sample().encode(CREATING_MAGIC));
        assert_eq!(Header::probe(p, &block, 4 << 20).unwrap(), Probe::Creating);
        assert_eq!(
            Header::probe(p, &[0u8; 4096], 4 << 20).unwrap(),
            Probe::Blank
        );
        assert_eq!(Header::probe(p, &[], 0).unwrap(), Probe::Blank);
    }

    #[test]
    fn every_flipped_bit_in_the_identity_is_detected() {
        let good = block_of(sample().encode(MAGIC));
        for bit in 0..IDENTITY_LEN * 8 {
            let mut b = good.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            let r = Header::probe(Path::new("p"), &b, 4 << 20);
            assert!(r.is_err(), "bit {bit} flipped went unnoticed: {r:?}");
        }
    }
}
