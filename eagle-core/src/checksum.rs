//! CRC-32C (Castagnoli) for the short inputs of records: the same function as the `crc32c` crate
//! (which stays the implementation for long inputs and other CPUs), computed with the SSE4.2
//! `crc32` instruction in a plain loop. The crate splits every input into aligned parts and
//! dispatches among three strategies, about 120 instructions per call before the first byte; a
//! record's checksum covers some 40 bytes.

/// Inputs up to this length take the loop; longer ones the crate's interleaved version.
const SHORT: usize = 256;

/// The CRC-32C of `data`.
#[inline]
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c_append(0, data)
}

/// Extends `crc` (the CRC-32C of some bytes) with `data`: the CRC-32C of both, concatenated.
#[inline]
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if data.len() <= SHORT && std::arch::is_x86_feature_detected!("sse4.2") {
        // SAFETY: the CPU has SSE4.2, checked just above.
        return unsafe { short_sse42(crc, data) };
    }
    crc32c::crc32c_append(crc, data)
}

/// The CRC-32C of `head` followed by `body` (a record's checksum covers its first 16 bytes,
/// then its key and value): [`crc32c_append`]`(`[`crc32c`]`(head), body)` with one feature
/// check and one call, for a keyspace read's hot path.
#[inline]
pub fn crc32c_pair(head: &[u8; 16], body: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if body.len() <= SHORT && std::arch::is_x86_feature_detected!("sse4.2") {
        // SAFETY: the CPU has SSE4.2, checked just above.
        return unsafe { pair_sse42(head, body) };
    }
    crc32c_append(crc32c(head), body)
}

/// # Safety
/// The CPU must support SSE4.2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn pair_sse42(head: &[u8; 16], body: &[u8]) -> u32 {
    use std::arch::x86_64::_mm_crc32_u64;
    let word = |i: usize| u64::from_le_bytes(head[i..i + 8].try_into().expect("8 bytes"));
    let c = _mm_crc32_u64(_mm_crc32_u64(u64::from(!0u32), word(0)), word(8));
    // SAFETY: the caller's obligation, passed on.
    !unsafe { raw_sse42(c, body) }
}

/// # Safety
/// The CPU must support SSE4.2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn short_sse42(crc: u32, data: &[u8]) -> u32 {
    // The instruction updates the raw register; the standard CRC inverts before and after.
    // SAFETY: the caller's obligation, passed on.
    !unsafe { raw_sse42(u64::from(!crc), data) }
}

/// The raw CRC register `c` run over `data` (no inversions).
///
/// # Safety
/// The CPU must support SSE4.2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
#[inline]
unsafe fn raw_sse42(mut c: u64, data: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u8, _mm_crc32_u64};
    let (words, rest) = data.as_chunks::<8>();
    for w in words {
        c = _mm_crc32_u64(c, u64::from_le_bytes(*w));
    }
    let mut c = c as u32;
    for &b in rest {
        c = _mm_crc32_u8(c, b);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Same results as the crate for every length around the short/long boundary, from any
    /// starting CRC, and when a message is split in two anywhere.
    #[test]
    fn matches_the_crc32c_crate_for_every_length_and_split() {
        let data: Vec<u8> = (0..600u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for len in 0..data.len() {
            let d = &data[..len];
            assert_eq!(crc32c(d), crc32c::crc32c(d), "length {len}");
            let seed = (len as u32).wrapping_mul(0x9E37_79B9);
            assert_eq!(
                crc32c_append(seed, d),
                crc32c::crc32c_append(seed, d),
                "length {len} from {seed:#x}"
            );
        }
        let d = &data[..300];
        for split in 0..=d.len() {
            let (a, b) = d.split_at(split);
            assert_eq!(
                crc32c_append(crc32c(a), b),
                crc32c::crc32c(d),
                "split {split}"
            );
        }
        // A 16-byte head and a body of every length up to past the short/long boundary.
        for len in 0..300 {
            let head: &[u8; 16] = data[..16].try_into().unwrap();
            assert_eq!(
                crc32c_pair(head, &data[16..16 + len]),
                crc32c::crc32c(&data[..16 + len]),
                "body of {len}"
            );
        }
        // A known value: CRC-32C("123456789") = 0xE3069283.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }
}
