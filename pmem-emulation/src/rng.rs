//! A tiny deterministic PRNG (splitmix64) used to pick crash outcomes.
//!
//! Crash images must be reproducible from a seed, and the choice made for one cache line must not
//! depend on how many other lines happened to be dirty. So every line gets its own stream, derived
//! from `(seed, line index)`.

/// Weyl-sequence increment of splitmix64 (2^64 / golden ratio).
const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The splitmix64 generator (Steele, Lea, Flood: "Fast splittable pseudorandom number generators").
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// An independent stream for one cache line under one seed.
    pub(crate) fn for_line(seed: u64, line: usize) -> Self {
        // Mix the seed first so that nearby seeds give unrelated streams, then separate lines.
        let mixed_seed = mix(seed.wrapping_add(GOLDEN_GAMMA));
        SplitMix64::new(mixed_seed ^ (line as u64).wrapping_mul(GOLDEN_GAMMA))
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix(self.state)
    }

    /// A value in `0..n` (Lemire's multiply-shift; the bias is negligible for the tiny `n` used here).
    pub fn below(&mut self, n: usize) -> usize {
        assert!(n > 0, "SplitMix64::below(0)");
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// The splitmix64 output function (a bijective 64-bit finalizer).
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_gives_same_stream() {
        let mut a = SplitMix64::new(42);
        let mut b = SplitMix64::new(42);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn splitmix64_matches_reference_output() {
        // Reference values of splitmix64 seeded with 1234567.
        let mut r = SplitMix64::new(1_234_567);
        assert_eq!(r.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(r.next_u64(), 3_203_168_211_198_807_973);
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut r = SplitMix64::new(7);
        let mut seen = [0usize; 3];
        for _ in 0..3000 {
            seen[r.below(3)] += 1;
        }
        assert!(seen.iter().all(|&c| c > 800), "{seen:?}");
    }

    #[test]
    fn line_streams_differ_across_lines_and_seeds() {
        let a = SplitMix64::for_line(1, 0).next_u64();
        let b = SplitMix64::for_line(1, 1).next_u64();
        let c = SplitMix64::for_line(2, 0).next_u64();
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, SplitMix64::for_line(1, 0).next_u64());
    }
}
