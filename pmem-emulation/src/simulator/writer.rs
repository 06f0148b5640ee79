//! Successive crash images into one buffer, rewriting only the lines that can have changed.
//!
//! A whole image costs a pass over the region, the durable shadow and the output. Harnesses
//! take several images per fence, one fence after another, and between two images only a few
//! lines differ: those the last fence made durable, those the previous image took from somewhere
//! other than the durable shadow, and the dirty or pending lines of the new one. An
//! [`ImageWriter`] rewrites exactly those.

use std::sync::atomic::Ordering;

use super::{LINE, LineWords, Simulator, WORDS_PER_LINE, write_words};
use crate::eviction::{Eviction, resolve_line};

/// Writes crash images into a buffer that keeps what the writer last wrote (a file mapping,
/// say), touching only lines that may differ from the previous image.
///
/// Use: [`scan`](Self::scan) once at the moment the images should show (a fence hook), then
/// [`write`](Self::write) once per policy. The result equals
/// [`Simulator::crash_image`] taken at the scan, except that a line first dirtied between the
/// scan and a `write` counts as not written back (a legal outcome of every policy).
#[derive(Debug, Default)]
pub struct ImageWriter {
    /// Lines whose current bytes differed from the durable shadow at the last scan.
    dirty: Vec<usize>,
    /// Lines the buffer holds with other bytes than the durable shadow had at `seen`.
    shown: Vec<usize>,
    /// The simulator's change count the buffer reflects; `None`: the buffer is unknown.
    seen: Option<u64>,
}

impl ImageWriter {
    /// A writer whose first image is written whole.
    pub fn new() -> ImageWriter {
        ImageWriter::default()
    }

    /// Finds the lines whose current bytes differ from the durable image (one pass over the
    /// region and the shadow, no copies).
    pub fn scan(&mut self, sim: &Simulator) {
        let state = sim.state.lock();
        self.dirty.clear();
        let region = sim.region.words();
        let lines = region
            .chunks_exact(WORDS_PER_LINE)
            .zip(state.durable.chunks_exact(WORDS_PER_LINE));
        for (line, (current, durable)) in lines.enumerate() {
            let differ = current
                .iter()
                .zip(durable)
                .fold(0, |acc, (c, d)| acc | (c.load(Ordering::Relaxed) ^ d));
            if differ != 0 {
                self.dirty.push(line);
            }
        }
    }

    /// Writes the crash image under `eviction` into `out`, which must hold what this writer
    /// wrote last (or anything, after [`new`](Self::new)).
    ///
    /// Panics unless `out.len() == sim.len()`.
    pub fn write(&mut self, sim: &Simulator, eviction: &Eviction, out: &mut [u8]) {
        assert_eq!(
            out.len(),
            sim.len(),
            "pmem-emulation: crash image buffer has the wrong length"
        );
        let state = sim.state.lock();
        let total = state.landed_base + state.landed.len() as u64;
        let put = |out: &mut [u8], line: usize, words: &LineWords| {
            write_words(&mut out[line * LINE..(line + 1) * LINE], words);
        };
        // Back to the durable image: the lines that changed since the last image, and the
        // lines that image took from elsewhere.
        match self.seen {
            Some(seen) if seen >= state.landed_base => {
                let from = usize::try_from(seen - state.landed_base).expect("log index");
                for &line in state.landed[from..].iter().chain(&self.shown) {
                    put(out, line, state.durable_line(line));
                }
            }
            _ => write_words(out, &state.durable),
        }
        self.shown.clear();
        self.seen = Some(total);
        match *eviction {
            Eviction::None => {}
            Eviction::All => {
                for &line in &self.dirty {
                    put(out, line, &sim.region.load_line(line));
                    self.shown.push(line);
                }
            }
            Eviction::Random { seed } | Eviction::Strict { seed } => {
                let per_word = matches!(eviction, Eviction::Strict { .. });
                let snapshots = state.live_snapshots();
                let mut lines: Vec<usize> = snapshots.iter().map(|s| s.line).collect();
                lines.extend_from_slice(&self.dirty);
                lines.sort_unstable();
                lines.dedup();
                let mut next = 0;
                let mut pending: Vec<&LineWords> = Vec::new();
                for line in lines {
                    pending.clear();
                    while next < snapshots.len() && snapshots[next].line < line {
                        next += 1;
                    }
                    while next < snapshots.len() && snapshots[next].line == line {
                        pending.push(&snapshots[next].words);
                        next += 1;
                    }
                    let durable = state.durable_line(line);
                    let current = sim.region.load_line(line);
                    if pending.is_empty() && current == *durable {
                        continue;
                    }
                    let chosen = resolve_line(seed, per_word, line, durable, &pending, &current);
                    put(out, line, &chosen);
                    self.shown.push(line);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SplitMix64;
    use std::sync::atomic::AtomicU64;

    #[repr(align(64))]
    struct Lines([AtomicU64; 8 * 64]);

    #[test]
    fn incremental_images_equal_whole_images() {
        let region = Lines(std::array::from_fn(|_| AtomicU64::new(0)));
        let words = region.0.len();
        // SAFETY: `region` is 64-byte aligned, a multiple of 64 bytes long and outlives `sim`.
        let sim = unsafe { Simulator::new(region.0.as_ptr().cast(), words * 8) };
        let policies = [
            Eviction::None,
            Eviction::All,
            Eviction::Random { seed: 3 },
            Eviction::Strict { seed: 4 },
        ];
        let mut writer = ImageWriter::new();
        let mut out = vec![0xEEu8; sim.len()];
        let mut rng = SplitMix64::new(11);
        for step in 0..3000u64 {
            match rng.below(10) {
                0..=5 => region.0[rng.below(words)].store(step + 1, Ordering::Relaxed),
                6..=7 => {
                    let w = rng.below(words);
                    sim.flush(w * 8, 8 * (1 + rng.below(20)).min(words - w));
                }
                _ => sim.fence(),
            }
            if step == 1500 {
                sim.make_all_durable();
            }
            writer.scan(&sim);
            for policy in &policies {
                writer.write(&sim, policy, &mut out);
                assert!(
                    out == sim.crash_image(policy),
                    "step {step}, {policy:?}: the incremental image differs"
                );
            }
        }
    }
}
