//! Command durations, read from the CPU's time-stamp counter where the kernel itself keeps time
//! with it.
//!
//! Every command is timed (INFO commandstats, the latency histograms), so every command reads
//! the clock twice. `Instant::now` is a vDSO `clock_gettime`: two reads cost about 59 ns on
//! this machine (a KVM guest), 5-7% of a pipelined GET's server CPU in `perf`, where two
//! `rdtsc` cost about 23 ns (docs/benchmarks.md). The counter is used only when the kernel's
//! clocksource is `tsc`: the kernel then has checked that it runs at a constant rate, does not
//! stop, and agrees between CPUs (a command's two reads may come from different CPUs). Elsewhere,
//! and off x86-64, a stamp is `Instant`'s nanoseconds.
//!
//! The source is chosen once per process ([`calibrate`], or the first [`now`]) and never
//! changes, so two stamps always come from the same source.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A point in time from [`now`]; only differences between two stamps mean anything.
#[derive(Clone, Copy, Debug)]
pub struct Stamp(u64);

/// The process's source of stamps.
#[derive(Debug)]
enum Source {
    /// Raw time-stamp counter; nanoseconds = ticks * `ns_per_tick_q32` >> 32.
    Tsc { ns_per_tick_q32: u64 },
    /// Nanoseconds since `base`.
    Mono { base: Instant },
}

static SOURCE: OnceLock<Source> = OnceLock::new();

/// How long the counter is compared with `Instant` to find its rate. `Instant`'s reads are
/// good to about 50 ns, so the rate is good to about 1 part in 20,000.
const CALIBRATION: Duration = Duration::from_millis(1);

/// Chooses the source now (and measures the counter's rate: three spins of a millisecond), so
/// no command pays for it. Later calls do nothing. The clocksource is read only then: if the
/// kernel later stops trusting the counter, this process goes on using it.
pub fn calibrate() {
    source();
}

/// Whether stamps come from the time-stamp counter.
pub fn uses_tsc() -> bool {
    matches!(source(), Source::Tsc { .. })
}

/// The current stamp.
#[inline]
pub fn now() -> Stamp {
    match source() {
        Source::Tsc { .. } => Stamp(tsc()),
        Source::Mono { base } => Stamp(base.elapsed().as_nanos() as u64),
    }
}

/// Nanoseconds from `start` to `end` (0 if `end` is not later).
#[inline]
pub fn nanos_between(start: Stamp, end: Stamp) -> u64 {
    let d = end.0.saturating_sub(start.0);
    match source() {
        Source::Tsc { ns_per_tick_q32 } => {
            ((u128::from(d) * u128::from(*ns_per_tick_q32)) >> 32) as u64
        }
        Source::Mono { .. } => d,
    }
}

#[inline]
fn source() -> &'static Source {
    SOURCE.get_or_init(choose)
}

fn choose() -> Source {
    let trusted =
        std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
            .is_ok_and(|s| s.trim() == "tsc");
    if trusted
        && cfg!(target_arch = "x86_64")
        && let Some(ns_per_tick_q32) = measure_rate()
    {
        return Source::Tsc { ns_per_tick_q32 };
    }
    Source::Mono {
        base: Instant::now(),
    }
}

/// The counter's nanoseconds per tick in 32.32 fixed point: the median of three spins of
/// [`CALIBRATION`] (a thread descheduled between its paired reads skews one spin, not the
/// median); `None` if the counter did not advance or the rate is implausible (below 1 MHz or
/// above 100 GHz).
fn measure_rate() -> Option<u64> {
    let mut rates = [0u128; 3];
    for rate in &mut rates {
        let (i0, t0) = (Instant::now(), tsc());
        let (ns, ticks) = loop {
            let (ns, t) = (i0.elapsed().as_nanos(), tsc());
            if ns >= CALIBRATION.as_nanos() {
                break (ns, t.wrapping_sub(t0));
            }
        };
        if ticks == 0 {
            return None;
        }
        *rate = (ns << 32) / u128::from(ticks);
    }
    rates.sort_unstable();
    let q32 = rates[1];
    // 1 MHz is 1,000 ns per tick; 100 GHz is 0.01.
    ((1u128 << 32) / 100..=1_000u128 << 32)
        .contains(&q32)
        .then_some(q32 as u64)
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn tsc() -> u64 {
    // SAFETY: `rdtsc` exists on every x86-64 CPU and only reads the counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Never called: off x86-64 the source is always `Instant`.
#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn tsc() -> u64 {
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamped_interval_measures_what_instant_measures() {
        calibrate();
        for sleep_ms in [2u64, 20] {
            // Each stamp is bracketed by two `Instant` reads, so the true interval lies between
            // the inner and the outer one however long the thread waits between reads (tests
            // run in parallel); only the rate's error is left, far below the 5% allowed.
            let (o0, s0, i0) = (Instant::now(), now(), Instant::now());
            std::thread::sleep(Duration::from_millis(sleep_ms));
            let (i1, s1, o1) = (Instant::now(), now(), Instant::now());
            let ours = nanos_between(s0, s1) as f64;
            let inner = i1.duration_since(i0).as_nanos() as f64;
            let outer = o1.duration_since(o0).as_nanos() as f64;
            assert!(
                ours <= outer * 1.05 && ours >= inner * 0.95,
                "slept {sleep_ms} ms: stamps say {ours} ns, Instant {inner}..{outer} ns (tsc: {})",
                uses_tsc()
            );
        }
    }

    #[test]
    fn stamps_taken_out_of_order_give_zero_not_a_huge_duration() {
        let a = now();
        std::thread::sleep(Duration::from_micros(50));
        let b = now();
        assert!(nanos_between(a, b) >= 10_000);
        assert_eq!(nanos_between(b, a), 0);
    }
}
