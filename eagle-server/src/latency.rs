//! Per-command latency histograms, exposed as `eagle_command_duration_seconds`.
//!
//! A connection counts its commands' durations into buckets of its own [`Tally`], and adds them
//! to the shared [`Latency`] of each command once per batch of requests. A command costs a
//! bucket search and a local increment; the exporter's histogram, recorded per command, added
//! 11.5% to the server's instructions on pipelined SET and GET (callgrind, docs/benchmarks.md).
//!
//! [`Tally`]: crate::cmd::ctx::Tally

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// The metric's name.
pub const METRIC: &str = "eagle_command_duration_seconds";

/// Upper bounds of the buckets, in nanoseconds (1 µs to 1 s). One more bucket, `+Inf`, follows.
pub const BOUNDS_NS: [u64; 19] = [
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
];

/// Number of buckets, `+Inf` included.
pub const BUCKETS: usize = BOUNDS_NS.len() + 1;

/// Calls per bucket, counted by one connection (not cumulative).
pub type Counts = [u32; BUCKETS];

/// The bucket of a run that took `nanos`: the first whose bound is at least `nanos`
/// (Prometheus's `le`).
#[inline]
pub fn bucket_of(nanos: u64) -> usize {
    BOUNDS_NS.partition_point(|&b| b < nanos)
}

/// One command's histogram, shared by every connection.
#[derive(Default)]
pub struct Latency {
    /// Calls per bucket (not cumulative).
    counts: [AtomicU64; BUCKETS],
    /// Nanoseconds of every call counted.
    nanos: AtomicU64,
}

impl Latency {
    /// Adds what a connection counted.
    pub fn add(&self, counts: &Counts, nanos: u64) {
        for (shared, &n) in self.counts.iter().zip(counts) {
            if n != 0 {
                shared.fetch_add(u64::from(n), Ordering::Relaxed);
            }
        }
        self.nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Appends this command's exposition lines to `out` (none if it never ran). The buckets are
    /// read once each and summed, so `+Inf` and `_count` agree with them.
    fn render(&self, cmd: &str, out: &mut String) {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        if counts.iter().all(|&n| n == 0) {
            return;
        }
        let mut total = 0;
        for (i, n) in counts.iter().enumerate() {
            total += n;
            let le = match BOUNDS_NS.get(i) {
                Some(&b) => format!("{}", b as f64 / 1e9),
                None => "+Inf".to_string(),
            };
            let _ = writeln!(out, "{METRIC}_bucket{{cmd=\"{cmd}\",le=\"{le}\"}} {total}");
        }
        let seconds = self.nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{METRIC}_sum{{cmd=\"{cmd}\"}} {seconds}");
        let _ = writeln!(out, "{METRIC}_count{{cmd=\"{cmd}\"}} {total}");
    }
}

/// The exposition text of every command that ran, by name.
pub fn render<'a>(cmds: impl Iterator<Item = (&'a str, &'a Latency)>) -> String {
    let mut cmds: Vec<_> = cmds.collect();
    cmds.sort_unstable_by_key(|c| c.0);
    let mut out = format!(
        "# HELP {METRIC} Time to run a command (parse and apply), by command.\n\
         # TYPE {METRIC} histogram\n"
    );
    for (name, latency) in cmds {
        latency.render(name, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_falls_in_the_first_bucket_whose_bound_holds_it() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(1_000), 0);
        assert_eq!(bucket_of(1_001), 1);
        assert_eq!(bucket_of(2_500), 1);
        assert_eq!(bucket_of(999_999_999), BUCKETS - 2);
        assert_eq!(bucket_of(1_000_000_000), BUCKETS - 2);
        assert_eq!(bucket_of(1_000_000_001), BUCKETS - 1);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn rendered_buckets_are_cumulative_and_agree_with_the_count() {
        let (get, set) = (Latency::default(), Latency::default());
        let mut counts = [0u32; BUCKETS];
        counts[bucket_of(800)] += 2; // le 1e-6
        counts[bucket_of(3_000)] += 1; // le 5e-6
        counts[bucket_of(5_000_000_000)] += 1; // +Inf
        get.add(&counts, 2 * 800 + 3_000 + 5_000_000_000);
        get.add(&counts, 2 * 800 + 3_000 + 5_000_000_000);
        let text = render([("set", &set), ("get", &get)].into_iter());
        assert!(text.starts_with("# HELP eagle_command_duration_seconds "));
        assert!(text.contains("# TYPE eagle_command_duration_seconds histogram\n"));
        for line in [
            "eagle_command_duration_seconds_bucket{cmd=\"get\",le=\"0.000001\"} 4\n",
            "eagle_command_duration_seconds_bucket{cmd=\"get\",le=\"0.0000025\"} 4\n",
            "eagle_command_duration_seconds_bucket{cmd=\"get\",le=\"0.000005\"} 6\n",
            "eagle_command_duration_seconds_bucket{cmd=\"get\",le=\"1\"} 6\n",
            "eagle_command_duration_seconds_bucket{cmd=\"get\",le=\"+Inf\"} 8\n",
            "eagle_command_duration_seconds_sum{cmd=\"get\"} 10.0000092\n",
            "eagle_command_duration_seconds_count{cmd=\"get\"} 8\n",
        ] {
            assert!(text.contains(line), "no {line:?} in\n{text}");
        }
        // A command that never ran has no lines.
        assert!(!text.contains("cmd=\"set\""), "{text}");
        assert_eq!(text.matches("_bucket{").count(), BUCKETS);
    }
}
