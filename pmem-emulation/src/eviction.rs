//! Crash-image policies: which bytes of a not-yet-durable cache line are on the media after a
//! power failure.

use crate::rng::SplitMix64;
use crate::simulator::LineWords;

/// What a power failure leaves on the media for lines that are not (or not only) durable.
///
/// A line is *undecided* if its current bytes differ from its durable bytes, or if some thread
/// holds a flushed-but-unfenced snapshot of it. Durable-and-clean lines are always taken from the
/// durable image; the policy only decides the undecided ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Eviction {
    /// Only durable lines: nothing that was not flushed+fenced survives.
    None,
    /// Every dirty line reached the media with its current bytes (as if the cache was written back).
    All,
    /// Each line that is dirty (current bytes != durable bytes) or has a flushed-but-unfenced snapshot
    /// independently ends up as one of: its durable bytes, its pending flushed snapshot (if any), or its
    /// current bytes — chosen by a seeded PRNG (whole lines: hardware evicts whole lines).
    Random { seed: u64 },
    /// Like Random, but each aligned 8-byte word of such a line is chosen independently, so lines tear
    /// at 8-byte granularity (the only failure-atomic unit on x86 PMEM).
    Strict { seed: u64 },
}

/// Resolve one undecided line under a randomized policy.
///
/// The candidates are, in this order: the durable bytes, every pending snapshot of the line (from
/// any thread, oldest first per thread), and the current bytes; each is equally likely. With
/// `per_word` every 8-byte word picks its candidate independently. The choice depends only on
/// `(seed, line)`, so an image is reproducible and one line's outcome does not shift when other
/// lines become dirty.
pub(crate) fn resolve_line(
    seed: u64,
    per_word: bool,
    line: usize,
    durable: &LineWords,
    pending: &[&LineWords],
    current: &LineWords,
) -> LineWords {
    let candidates = pending.len() + 2;
    let pick = |k: usize| -> &LineWords {
        match k {
            0 => durable,
            k if k <= pending.len() => pending[k - 1],
            _ => current,
        }
    };
    let mut rng = SplitMix64::for_line(seed, line);
    if per_word {
        std::array::from_fn(|word| pick(rng.below(candidates))[word])
    } else {
        *pick(rng.below(candidates))
    }
}
