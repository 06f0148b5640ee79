//! Keys and phases: the same key stream for every engine, split over threads, timed with a
//! latency sample every [`SAMPLE_EVERY`] operations.

use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::args::KeyKind;

/// One op in this many (on average, at random gaps) is timed on its own for the latency
/// percentiles.
pub const SAMPLE_EVERY: u64 = 64;

/// Key ids of negative searches start here; inserted ids stay far below.
const NEGATIVE_BASE: u64 = 1 << 40;

/// A map under test. Each method reports the engine's result; a wrong answer (say a positive
/// search that misses) is judged by the phase, an `Err` stops it.
pub trait Store: Sync {
    /// Inserts a new key; `Ok(false)` if it was already there.
    fn insert(&self, key: &[u8], value: u64) -> Result<bool, String>;
    /// The value of `key`, if present.
    fn get(&self, key: &[u8]) -> Result<Option<u64>, String>;
    /// Deletes `key`; `Ok(false)` if it was absent.
    fn delete(&self, key: &[u8]) -> Result<bool, String>;
    /// Table statistics after a phase: (load factor, segments, global depth), if it has any.
    fn table_stats(&self) -> Option<(f64, u64, u32)>;
    /// Runs `ops` (a run of `--pin-batch` operations on this thread) as one batch: an engine may
    /// hold per-thread state across them, as eagle holds its epoch pin (`Dash::pinned`) and
    /// Dash's own benchmark holds its epoch guard across 1,000 operations.
    fn batch(&self, ops: &mut dyn FnMut()) {
        ops()
    }
}

/// A map owned by the benchmark thread (the calibration peer): no sharing, no locks, driven
/// by a plain loop.
pub trait LocalStore {
    /// Inserts a new key; `false` if it was already there.
    fn insert(&mut self, key: &[u8], value: u64) -> bool;
    /// The value of `key`, if present.
    fn get(&mut self, key: &[u8]) -> Option<u64>;
    /// Deletes `key`; `false` if it was absent.
    fn delete(&mut self, key: &[u8]) -> bool;
}

/// A timed phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Insert M new keys.
    Insert,
    /// M searches for present keys.
    Pos,
    /// M searches for keys never inserted.
    Neg,
    /// Delete M present keys (those the insert phase added).
    Delete,
    /// M ops: 80% positive search, 20% insert of fresh keys.
    Mixed,
}

impl Phase {
    /// Every phase, in the order `--op full` runs them.
    pub const ALL: [Phase; 5] = [
        Phase::Insert,
        Phase::Pos,
        Phase::Neg,
        Phase::Delete,
        Phase::Mixed,
    ];

    /// The name used on the command line and in the output.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Insert => "insert",
            Phase::Pos => "pos",
            Phase::Neg => "neg",
            Phase::Delete => "delete",
            Phase::Mixed => "mixed",
        }
    }

    /// The phase named `s`.
    pub fn from_name(s: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.name() == s)
    }
}

/// Key number `n` as the key id the hash sees: a bijection on u64 (odd multiplier), so distinct
/// numbers give distinct, non-sequential ids.
fn key_id(n: u64) -> u64 {
    n.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Writes key number `n` into `buf`; returns the key's bytes.
pub fn make_key(kind: KeyKind, n: u64, buf: &mut [u8; 16]) -> &[u8] {
    let id = key_id(n);
    match kind {
        KeyKind::Fixed => {
            buf[..8].copy_from_slice(&id.to_le_bytes());
            &buf[..8]
        }
        KeyKind::Var => {
            // 16 lowercase hex digits of the scrambled id: a printable key whose prefix varies.
            const HEX: &[u8; 16] = b"0123456789abcdef";
            for (i, b) in buf.iter_mut().enumerate() {
                *b = HEX[((id >> (60 - 4 * i)) & 0xf) as usize];
            }
            &buf[..]
        }
    }
}

/// The key numbers each phase uses, and which ones are in the table. Present keys are always
/// the contiguous range `0..live`.
pub struct Plan {
    pub kind: KeyKind,
    pub preload: u64,
    pub ops: u64,
    pub threads: usize,
    pub live: u64,
    /// Operations per [`Store::batch`].
    pub pin_batch: u64,
}

/// What a timed phase measured.
pub struct PhaseResult {
    pub phase: Phase,
    pub elapsed: Duration,
    pub mops: f64,
    /// Per-op latency samples in ns, sorted.
    pub samples: Vec<u64>,
    /// (load factor, segments, global depth) after the phase, for engines that have them.
    pub table: Option<(f64, u64, u32)>,
}

/// What operation `i` of a phase does, on which key number.
#[derive(Clone, Copy)]
enum Step {
    /// Insert a key that is not there (the value is the key number).
    Insert(u64),
    /// Search a present key (its value is its number).
    Find(u64),
    /// Search a key never inserted.
    Miss(u64),
    /// Delete a present key.
    Delete(u64),
}

impl Plan {
    /// Loads keys `0..count` (untimed, same threads) and marks them live.
    pub fn preload<S: Store>(&mut self, store: &S, count: u64) -> Result<Duration, String> {
        let kind = self.kind;
        let batch = |ops: &mut dyn FnMut()| store.batch(ops);
        let run = run_ops(self.threads, count, false, (self.pin_batch, &batch), |n| {
            with_key(kind, n, |k| store.insert(k, n))
        })
        .map_err(|e| format!("preload: {e}"))?;
        self.preloaded(run, count)
    }

    /// [`preload`](Self::preload) for a map owned by this thread.
    pub fn preload_local<S: LocalStore>(
        &mut self,
        store: &mut S,
        count: u64,
    ) -> Result<Duration, String> {
        let kind = self.kind;
        let run = local_ops(count, |n| with_key(kind, n, |k| store.insert(k, n)));
        self.preloaded(run, count)
    }

    fn preloaded(&mut self, run: Run, count: u64) -> Result<Duration, String> {
        check(
            run.wrong,
            count,
            "preload",
            "inserts found the key already present",
        )?;
        self.live = count;
        Ok(run.elapsed)
    }

    /// Operation `i` of `phase`. Keys N..N+M: the insert phase adds them (the preload stops
    /// at N), delete removes them. Mixed inserts use fresh keys past everything the other
    /// phases use; later phases never search them.
    #[inline(always)]
    fn step(&self, phase: Phase, i: u64) -> Step {
        let (n0, m, live) = (self.preload, self.ops, self.live);
        match phase {
            Phase::Insert => Step::Insert(n0 + i),
            Phase::Pos => Step::Find(i % live),
            Phase::Neg => Step::Miss(NEGATIVE_BASE + i),
            Phase::Delete => Step::Delete(n0 + i),
            Phase::Mixed if i.is_multiple_of(5) => Step::Insert(n0 + m + i),
            Phase::Mixed => Step::Find(i % live),
        }
    }

    fn searchable(&self, phase: Phase) -> Result<(), String> {
        if self.live == 0 && matches!(phase, Phase::Pos | Phase::Mixed) {
            return Err(format!("{}: no keys to search (empty table)", phase.name()));
        }
        Ok(())
    }

    /// Runs one timed phase and updates which keys are live.
    pub fn run<S: Store>(&mut self, store: &S, phase: Phase) -> Result<PhaseResult, String> {
        self.searchable(phase)?;
        let kind = self.kind;
        let batch = |ops: &mut dyn FnMut()| store.batch(ops);
        let run = run_ops(
            self.threads,
            self.ops,
            true,
            (self.pin_batch, &batch),
            |i| match self.step(phase, i) {
                Step::Insert(n) => with_key(kind, n, |k| store.insert(k, n)),
                Step::Find(n) => with_key(kind, n, |k| Ok(store.get(k)? == Some(n))),
                Step::Miss(n) => with_key(kind, n, |k| Ok(store.get(k)?.is_none())),
                Step::Delete(n) => with_key(kind, n, |k| store.delete(k)),
            },
        )
        .map_err(|e| format!("{}: {e}", phase.name()))?;
        self.finish(phase, run, store.table_stats())
    }

    /// [`run`](Self::run) for a map owned by this thread: a plain loop, no latency samples.
    pub fn run_local<S: LocalStore>(
        &mut self,
        store: &mut S,
        phase: Phase,
    ) -> Result<PhaseResult, String> {
        self.searchable(phase)?;
        let kind = self.kind;
        let plan = &*self;
        let run = local_ops(plan.ops, |i| match plan.step(phase, i) {
            Step::Insert(n) => with_key(kind, n, |k| store.insert(k, n)),
            Step::Find(n) => with_key(kind, n, |k| store.get(k) == Some(n)),
            Step::Miss(n) => with_key(kind, n, |k| store.get(k).is_none()),
            Step::Delete(n) => with_key(kind, n, |k| store.delete(k)),
        });
        self.finish(phase, run, None)
    }

    fn finish(
        &mut self,
        phase: Phase,
        run: Run,
        table: Option<(f64, u64, u32)>,
    ) -> Result<PhaseResult, String> {
        let (n0, m) = (self.preload, self.ops);
        let what = match phase {
            Phase::Insert => "inserts found the key already present",
            Phase::Pos => "positive searches missed or read a wrong value",
            Phase::Neg => "negative searches found a key",
            Phase::Delete => "deletes found no key",
            Phase::Mixed => "ops went wrong (insert of a present key, or a missed search)",
        };
        check(run.wrong, m, phase.name(), what)?;
        match phase {
            Phase::Insert => self.live = n0 + m,
            Phase::Delete => self.live = n0,
            Phase::Pos | Phase::Neg | Phase::Mixed => {}
        }
        let secs = run.elapsed.as_secs_f64();
        Ok(PhaseResult {
            phase,
            elapsed: run.elapsed,
            mops: if secs > 0.0 {
                m as f64 / secs / 1e6
            } else {
                0.0
            },
            samples: run.samples,
            table,
        })
    }
}

/// Calls `f` with key number `n`'s bytes (on the stack).
#[inline(always)]
fn with_key<R>(kind: KeyKind, n: u64, f: impl FnOnce(&[u8]) -> R) -> R {
    let mut buf = [0u8; 16];
    f(make_key(kind, n, &mut buf))
}

fn check(wrong: u64, total: u64, phase: &str, what: &str) -> Result<(), String> {
    if wrong == 0 {
        Ok(())
    } else {
        Err(format!("{phase}: {wrong} of {total} {what}"))
    }
}

struct Run {
    elapsed: Duration,
    wrong: u64,
    samples: Vec<u64>,
}

/// How a worker groups its operations: this many per call of the function (the store's
/// [`Store::batch`]).
type Batches<'a> = (u64, &'a (dyn Fn(&mut dyn FnMut()) + Sync));

/// Runs ops `0..count`, split into contiguous ranges over `threads` threads that start
/// together (they wait on a gate the spawning thread holds until all are spawned), each range
/// in `batches`. `op(i)` returns whether the engine answered as expected. The elapsed time
/// runs from the first thread's start to the last one's end.
fn run_ops<F>(
    threads: usize,
    count: u64,
    sample: bool,
    batches: Batches<'_>,
    op: F,
) -> Result<Run, String>
where
    F: Fn(u64) -> Result<bool, String> + Sync,
{
    let gate = RwLock::new(());
    let abort = AtomicBool::new(false);
    let mut spawn_error = None;
    let results: Vec<Result<Worker, String>> = std::thread::scope(|s| {
        let closed = gate.write().unwrap_or_else(|e| e.into_inner());
        let mut handles = Vec::with_capacity(threads);
        for t in 0..threads as u64 {
            let lo = count * t / threads as u64;
            let hi = count * (t + 1) / threads as u64;
            let (op, gate, abort) = (&op, &gate, &abort);
            let spawned = std::thread::Builder::new()
                .name(format!("bench-{t}"))
                .spawn_scoped(s, move || {
                    drop(gate.read().unwrap_or_else(|e| e.into_inner()));
                    if abort.load(Ordering::Acquire) {
                        return Err("aborted".to_string());
                    }
                    worker(lo..hi, sample, batches, op)
                });
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    spawn_error = Some(format!("cannot spawn worker thread {t}: {e}"));
                    abort.store(true, Ordering::Release);
                    break;
                }
            }
        }
        drop(closed);
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a worker thread panicked".into()))
            })
            .collect()
    });
    if let Some(e) = spawn_error {
        return Err(e);
    }
    let mut workers = Vec::with_capacity(threads);
    for r in results {
        workers.push(r?);
    }
    let start = workers.iter().map(|w| w.start).min();
    let end = workers.iter().map(|w| w.end).max();
    let elapsed = match (start, end) {
        (Some(s), Some(e)) => e.duration_since(s),
        _ => Duration::ZERO,
    };
    let mut samples: Vec<u64> = workers
        .iter()
        .flat_map(|w| w.samples.iter().copied())
        .collect();
    samples.sort_unstable();
    Ok(Run {
        elapsed,
        wrong: workers.iter().map(|w| w.wrong).sum(),
        samples,
    })
}

/// Runs ops `0..count` on this thread, timing the whole loop only.
fn local_ops(count: u64, mut op: impl FnMut(u64) -> bool) -> Run {
    let mut wrong = 0u64;
    let start = Instant::now();
    for i in 0..count {
        wrong += u64::from(!op(i));
    }
    Run {
        elapsed: start.elapsed(),
        wrong,
        samples: Vec::new(),
    }
}

struct Worker {
    start: Instant,
    end: Instant,
    wrong: u64,
    samples: Vec<u64>,
}

fn worker<F>(
    range: std::ops::Range<u64>,
    sample: bool,
    (per_batch, batch): Batches<'_>,
    op: &F,
) -> Result<Worker, String>
where
    F: Fn(u64) -> Result<bool, String>,
{
    // Room for twice the expected samples, so the timed loop never reallocates in practice.
    let samples = Vec::with_capacity(if sample {
        (range.end - range.start) as usize / SAMPLE_EVERY as usize * 2 + 16
    } else {
        0
    });
    // Sampled ops are `SAMPLE_EVERY` apart on average, at random gaps: a fixed stride would
    // alias with periodic work in the engine (epoch garbage is bagged and collected every 64 or
    // 128 operations) and time only the ops that pay for it.
    let mut state = Ops {
        rng: range.start ^ 0x2545_F491_4F6C_DD1D,
        next: 0,
        wrong: 0,
        samples,
    };
    state.next = range.start + state.gap() - 1;
    let start = Instant::now();
    if per_batch <= 1 {
        // No batches: eagle pins per operation.
        state.run(range, sample, op)?;
    } else {
        let mut lo = range.start;
        while lo < range.end {
            let hi = range.end.min(lo.saturating_add(per_batch));
            let mut outcome = Ok(());
            batch(&mut || outcome = state.run(lo..hi, sample, op));
            outcome?;
            lo = hi;
        }
    }
    let Ops { wrong, samples, .. } = state;
    Ok(Worker {
        start,
        end: Instant::now(),
        wrong,
        samples,
    })
}

/// A worker's running state.
struct Ops {
    rng: u64,
    /// The next op to time on its own.
    next: u64,
    wrong: u64,
    samples: Vec<u64>,
}

impl Ops {
    /// A random gap to the next timed op.
    fn gap(&mut self) -> u64 {
        1 + xorshift(&mut self.rng) % (2 * SAMPLE_EVERY - 1)
    }

    /// Runs ops `range`, timing one in [`SAMPLE_EVERY`] if `sample`.
    #[inline(always)]
    fn run<F>(&mut self, range: std::ops::Range<u64>, sample: bool, op: &F) -> Result<(), String>
    where
        F: Fn(u64) -> Result<bool, String>,
    {
        // The counters in locals, so that they stay in registers across the loop.
        let (mut wrong, mut next) = (0u64, self.next);
        for i in range {
            let ok = if sample && i == next {
                let t0 = Instant::now();
                let ok = op(i)?;
                self.samples.push(t0.elapsed().as_nanos() as u64);
                next = i + self.gap();
                ok
            } else {
                op(i)?
            };
            wrong += u64::from(!ok);
        }
        self.wrong += wrong;
        self.next = next;
        Ok(())
    }
}

/// One step of xorshift64 (state never zero).
fn xorshift(state: &mut u64) -> u64 {
    if *state == 0 {
        *state = 0x9E37_79B9_7F4A_7C15;
    }
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_distinct_and_have_the_right_length() {
        for kind in [KeyKind::Fixed, KeyKind::Var] {
            let mut seen = std::collections::HashSet::new();
            for n in (0..10_000).chain(NEGATIVE_BASE..NEGATIVE_BASE + 10_000) {
                let mut buf = [0u8; 16];
                let k = make_key(kind, n, &mut buf).to_vec();
                assert_eq!(k.len(), if kind == KeyKind::Fixed { 8 } else { 16 });
                assert!(seen.insert(k));
            }
        }
    }
}
