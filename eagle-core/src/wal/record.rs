//! WAL record encoding.
//!
//! ```text
//! 0        4      5       6          8               16           16+len     +4
//! | len    | kind | flags | reserved | lsn           | payload ...  | crc32c   | pad to 8 |
//! ```
//! `len` is the payload length; `crc32c` covers the 16-byte header and the payload, and is seeded
//! with the pool's UUID and the log's generation (the lap of the circular log), so a record of
//! another pool, or a stale record of an earlier lap left in reused space, never validates
//! (raft-engine's per-file signature, here per lap). Kind `WRAP` (0xFF) marks the end of a lap:
//! the next record is at the start of the region, in the next generation.

/// Bytes before the payload.
pub const HEADER: usize = 16;
/// Bytes after it (the checksum).
pub const TRAILER: usize = 4;
/// Kind of the end-of-lap marker.
pub const WRAP: u8 = 0xFF;

/// Total bytes a record with a payload of `len` bytes occupies (8-byte aligned).
pub fn footprint(len: usize) -> usize {
    (HEADER + len + TRAILER).next_multiple_of(8)
}

/// The checksum seed for a generation of a pool's log.
pub fn seed(uuid: &[u8; 16], generation: u32) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(uuid), &generation.to_le_bytes())
}

/// Encodes a record into `out` (exactly `footprint(payload.len())` bytes).
pub fn encode(out: &mut [u8], seed: u32, kind: u8, lsn: u64, payload: &[u8]) {
    debug_assert_eq!(out.len(), footprint(payload.len()));
    out[0..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    out[4] = kind;
    out[5..8].fill(0);
    out[8..16].copy_from_slice(&lsn.to_le_bytes());
    out[HEADER..HEADER + payload.len()].copy_from_slice(payload);
    let crc = crc32c::crc32c_append(seed, &out[..HEADER + payload.len()]);
    let at = HEADER + payload.len();
    out[at..at + TRAILER].copy_from_slice(&crc.to_le_bytes());
    out[at + TRAILER..].fill(0);
}

/// A decoded record header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Payload bytes.
    pub len: usize,
    /// Record kind.
    pub kind: u8,
    /// Log sequence number.
    pub lsn: u64,
}

/// Decodes the header at the start of `bytes`, if `bytes` can hold it.
pub fn header(bytes: &[u8]) -> Option<Header> {
    if bytes.len() < HEADER {
        return None;
    }
    Some(Header {
        len: u32::from_le_bytes(bytes[0..4].try_into().ok()?) as usize,
        kind: bytes[4],
        lsn: u64::from_le_bytes(bytes[8..16].try_into().ok()?),
    })
}

/// Whether `bytes` (starting with a record whose header says `h`) holds that whole record with
/// a valid checksum under `seed`.
pub fn valid(bytes: &[u8], h: &Header, seed: u32) -> bool {
    let end = HEADER + h.len;
    if bytes.len() < end + TRAILER || bytes[5..8] != [0, 0, 0] {
        return false;
    }
    let stored = u32::from_le_bytes(bytes[end..end + TRAILER].try_into().expect("4 bytes"));
    crc32c::crc32c_append(seed, &bytes[..end]) == stored
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_any_flipped_bit_or_other_seed_invalidates_it() {
        let s = seed(b"0123456789abcdef", 7);
        let mut buf = vec![0u8; footprint(5)];
        encode(&mut buf, s, 3, 42, b"hello");
        let h = header(&buf).unwrap();
        assert_eq!(
            h,
            Header {
                len: 5,
                kind: 3,
                lsn: 42
            }
        );
        assert!(valid(&buf, &h, s));
        assert!(
            !valid(&buf, &h, seed(b"0123456789abcdef", 8)),
            "another generation"
        );
        assert!(
            !valid(&buf, &h, seed(b"fedcba9876543210", 7)),
            "another pool"
        );
        for bit in 0..(HEADER + 5 + TRAILER) * 8 {
            let mut b = buf.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            let ok = header(&b).is_some_and(|h2| valid(&b, &h2, s) && h2 == h);
            assert!(!ok, "bit {bit}");
        }
    }
}
