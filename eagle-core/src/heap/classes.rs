//! Size classes. Small objects share a 256 KiB chunk of equal blocks; larger ones take whole,
//! contiguous chunks.

/// Bytes per chunk.
pub const CHUNK: u64 = 256 << 10;

/// Bytes of a Dash segment (header line + 68 buckets): given its own class so segments pack
/// into chunks without waste.
pub const SEGMENT_CLASS_SIZE: u32 = 64 + 68 * 256;

/// The largest size served from a small class.
pub const MAX_SMALL: u64 = 65536;

/// Block sizes above 512 bytes, shared by both tables: four classes per doubling, plus the
/// segment class.
macro_rules! large_classes {
    () => {
        [
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
        ]
    };
}

/// The first table (pools without `INCOMPAT_FINE_CLASSES`): every size a multiple of 64, so
/// every block is cache-line aligned.
const COARSE: [u32; 36] = {
    let small = [64, 128, 192, 256, 320, 384, 448, 512];
    let large: [u32; 28] = large_classes!();
    concat(small, large)
};

/// The table of pools with `INCOMPAT_FINE_CLASSES`: 16-byte steps up to 256 bytes and 32-byte
/// steps up to 512, so a record wastes at most 15 (31) bytes there instead of 63. Every multiple
/// of 64 up to 512 is still a class, so a request whose size is a multiple of 64 still gets a
/// 64-byte aligned block; the others are 16-byte aligned.
const FINE: [u32; 49] = {
    let small = [
        64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256, 288, 320, 352, 384, 416, 448,
        480, 512,
    ];
    let large: [u32; 28] = large_classes!();
    concat(small, large)
};

const fn concat<const A: usize, const B: usize, const N: usize>(
    a: [u32; A],
    b: [u32; B],
) -> [u32; N] {
    assert!(A + B == N);
    let mut out = [0; N];
    let mut i = 0;
    while i < A {
        out[i] = a[i];
        i += 1;
    }
    while i < N {
        out[i] = b[i - A];
        i += 1;
    }
    out
}

/// A pool's table of small size classes. The class index is stored in chunk words, so which
/// table a pool uses is part of its format (the header's `INCOMPAT_FINE_CLASSES`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Classes(&'static [u32]);

impl Classes {
    /// The first table: 64-byte multiples.
    pub const COARSE: Classes = Classes(&COARSE);
    /// 16-byte steps up to 256 bytes, 32-byte steps up to 512.
    pub const FINE: Classes = Classes(&FINE);

    /// The table of a pool with (`true`) or without `INCOMPAT_FINE_CLASSES`.
    pub fn for_pool(fine: bool) -> Classes {
        if fine { Classes::FINE } else { Classes::COARSE }
    }

    /// Number of classes (valid indices are `0..count`).
    pub fn count(self) -> usize {
        self.0.len()
    }

    /// The class whose blocks fit `size` bytes, or `None` if it needs whole chunks.
    pub fn class_for(self, size: u64) -> Option<u8> {
        if size > MAX_SMALL {
            return None;
        }
        let i = self.0.partition_point(|&c| (c as u64) < size.max(1));
        Some(i as u8)
    }

    /// Block size of class `k`.
    pub fn size(self, k: u8) -> u64 {
        self.0[k as usize] as u64
    }

    /// Blocks per chunk of class `k`.
    pub fn blocks_per_chunk(self, k: u8) -> u32 {
        CHUNK as u32 / self.0[k as usize]
    }

    /// The block of a class-`k` chunk that starts `within` bytes into it: `None` unless
    /// `within` is a block boundary with a whole block after it (a chunk's tail past its last
    /// block is no block, though `within` may be a multiple of the size there).
    pub fn block_at(self, k: u8, within: u64) -> Option<u32> {
        // One 32-bit division (a free and a size lookup pay this; a 64-bit division and a
        // modulo cost several times as many cycles): a block boundary `q * size`, with a whole
        // block after it inside the chunk.
        let size = self.0[k as usize];
        let w = u32::try_from(within).ok()?;
        let q = w / size;
        (q * size == w && w.checked_add(size)? <= CHUNK as u32).then_some(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_size_gets_the_smallest_class_that_fits() {
        for classes in [Classes::COARSE, Classes::FINE] {
            let sizes = classes.0;
            assert!(sizes.windows(2).all(|w| w[0] < w[1]));
            assert!(sizes.iter().all(|c| c % 16 == 0));
            assert!(classes.count() <= 256, "class indices are u8");
            for size in [0u64, 1, 63, 64, 65, 142, 1000, 17472, 17473, 65536] {
                let k = classes.class_for(size).unwrap();
                assert!(classes.size(k) >= size);
                assert!(k == 0 || classes.size(k - 1) < size);
            }
            assert_eq!(classes.class_for(65537), None);
            let seg = classes.class_for(SEGMENT_CLASS_SIZE as u64).unwrap();
            assert_eq!(classes.size(seg), SEGMENT_CLASS_SIZE as u64);
        }
        assert!(Classes::COARSE.0.iter().all(|c| c % 64 == 0));
        assert_eq!(
            Classes::FINE.size(Classes::FINE.class_for(142).unwrap()),
            144
        );
        assert_eq!(
            Classes::COARSE.size(Classes::COARSE.class_for(142).unwrap()),
            192
        );
    }

    #[test]
    fn a_multiple_of_64_gets_a_block_of_exactly_its_size_in_both_tables() {
        // Blocks of a 64-multiple class start at 64-byte multiples of a 4 KiB aligned chunk:
        // callers that need cache-line alignment ask for a multiple of 64.
        for classes in [Classes::COARSE, Classes::FINE] {
            for size in (64..=512).step_by(64) {
                let k = classes.class_for(size).unwrap();
                assert_eq!(classes.size(k), size);
            }
        }
    }

    #[test]
    fn a_chunks_tail_past_its_last_block_is_no_block() {
        for classes in [Classes::COARSE, Classes::FINE] {
            for k in 0..classes.count() as u8 {
                let (size, n) = (classes.size(k), classes.blocks_per_chunk(k) as u64);
                assert_eq!(classes.block_at(k, 0), Some(0));
                assert_eq!(classes.block_at(k, (n - 1) * size), Some(n as u32 - 1));
                assert_eq!(classes.block_at(k, n * size), None, "class {k} ({size} B)");
                assert_eq!(classes.block_at(k, size + 16), None);
            }
        }
    }

    #[test]
    fn the_coarse_table_is_the_first_formats_list() {
        // Pools written before the fine table existed store these indices in their chunk words.
        assert_eq!(Classes::COARSE.count(), 36);
        assert_eq!(Classes::COARSE.size(0), 64);
        assert_eq!(Classes::COARSE.size(7), 512);
        assert_eq!(Classes::COARSE.size(8), 640);
        assert_eq!(Classes::COARSE.size(28), SEGMENT_CLASS_SIZE as u64);
        assert_eq!(Classes::COARSE.size(35), 65536);
    }
}
