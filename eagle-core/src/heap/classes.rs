//! Size classes. Small objects share a 256 KiB chunk of equal blocks; larger ones take whole,
//! contiguous chunks.

/// Bytes per chunk.
pub const CHUNK: u64 = 256 << 10;

/// Bytes of a Dash segment (header line + 68 buckets): given its own class so segments pack
/// into chunks without waste.
pub const SEGMENT_CLASS_SIZE: u32 = 64 + 68 * 256;

/// Block sizes of the small classes, ascending; every one a multiple of 64 (cache-line aligned).
pub const CLASS_SIZES: &[u32] = &[
    64,
    128,
    192,
    256,
    320,
    384,
    448,
    512,
    640,
    768,
    896,
    1024,
    1280,
    1536,
    1792,
    2048,
    2560,
    3072,
    3584,
    4096,
    5120,
    6144,
    7168,
    8192,
    10240,
    12288,
    14336,
    16384,
    SEGMENT_CLASS_SIZE,
    20480,
    24576,
    28672,
    32768,
    40960,
    49152,
    65536,
];

/// The largest size served from a small class.
pub const MAX_SMALL: u64 = 65536;

/// The class whose blocks fit `size` bytes, or `None` if it needs whole chunks.
pub fn class_for(size: u64) -> Option<u8> {
    if size > MAX_SMALL {
        return None;
    }
    let i = CLASS_SIZES.partition_point(|&c| (c as u64) < size.max(1));
    Some(i as u8)
}

/// Block size of class `k`.
pub fn class_size(k: u8) -> u64 {
    CLASS_SIZES[k as usize] as u64
}

/// Blocks per chunk of class `k`.
pub fn blocks_per_chunk(k: u8) -> u32 {
    (CHUNK / class_size(k)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_size_gets_the_smallest_class_that_fits() {
        assert!(CLASS_SIZES.windows(2).all(|w| w[0] < w[1]));
        assert!(CLASS_SIZES.iter().all(|c| c % 64 == 0));
        for size in [0u64, 1, 63, 64, 65, 1000, 17472, 17473, 65536] {
            let k = class_for(size).unwrap();
            assert!(class_size(k) >= size);
            assert!(k == 0 || class_size(k - 1) < size);
        }
        assert_eq!(class_for(65537), None);
        assert_eq!(
            class_size(class_for(SEGMENT_CLASS_SIZE as u64).unwrap()),
            SEGMENT_CLASS_SIZE as u64
        );
    }
}
