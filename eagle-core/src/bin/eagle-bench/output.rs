//! What the run prints: a header, one table per engine (a row per phase as it finishes), and the
//! ratios of eagle to each peer that ran (dram, std). With `--json`, stdout holds exactly one JSON line per engine and phase and
//! everything else goes to stderr.

use crate::args::Args;
use crate::stats::{percentile, utc_now};
use crate::workload::{PhaseResult, SAMPLE_EVERY};

/// Prints to stdout, or to stderr in JSON mode.
macro_rules! say {
    ($json:expr, $($arg:tt)*) => {
        if $json { errln!($($arg)*) } else { outln!($($arg)*) }
    };
}

/// The reporter for one run.
pub struct Output<'a> {
    pub args: &'a Args,
}

impl Output<'_> {
    /// Command line, timestamp, machine and workload.
    pub fn header(&self, argv: &[String]) {
        let a = self.args;
        let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
        let command: Vec<String> = argv.iter().map(|s| quote(s)).collect();
        say!(a.json, "command: {}", command.join(" "));
        say!(a.json, "time:    {}", utc_now());
        say!(a.json, "nproc:   {nproc}    cpu: {}", cpu_model());
        say!(
            a.json,
            "keys:    {} ({} B), values 8 B; preload {}, {} ops per phase, {} thread(s), \
             eagle pinned per {} op(s); latency sampled on ~1 op in {SAMPLE_EVERY} (not for std)",
            a.key.name(),
            match a.key {
                crate::args::KeyKind::Fixed => 8,
                crate::args::KeyKind::Var => 16,
            },
            a.preload,
            a.ops,
            a.threads,
            a.pin_batch,
        );
    }

    /// The line before an engine's table.
    pub fn engine_start(&self, engine: &str, detail: &str, preloaded: u64, preload_secs: f64) {
        let json = self.args.json;
        say!(json, "");
        say!(json, "{engine}: {detail}");
        say!(
            json,
            "  preload (untimed): {preloaded} keys in {preload_secs:.3} s"
        );
        if !json {
            outln!(
                "  {:<8} {:>9} {:>8} {:>8} {:>6} {:>9} {:>6} {:>9}",
                "phase",
                "Mops/s",
                "p50 ns",
                "p99 ns",
                "load",
                "segments",
                "depth",
                "time s"
            );
        }
    }

    /// One finished phase.
    pub fn phase(&self, engine: &str, r: &PhaseResult) {
        let a = self.args;
        // No samples (the calibration peer times whole loops): null in JSON, "-" in text.
        let (p50, p99) = if r.samples.is_empty() {
            ("null".to_string(), "null".to_string())
        } else {
            (
                percentile(&r.samples, 50.0).to_string(),
                percentile(&r.samples, 99.0).to_string(),
            )
        };
        if a.json {
            let lf = r
                .table
                .map_or_else(|| "null".to_string(), |(lf, _, _)| format!("{lf:.4}"));
            outln!(
                "{{\"engine\":\"{engine}\",\"op\":\"{}\",\"threads\":{},\"key\":\"{}\",\
                 \"preload\":{},\"ops\":{},\"mops\":{:.3},\"p50_ns\":{p50},\"p99_ns\":{p99},\
                 \"load_factor\":{lf},\"pin_batch\":{}}}",
                r.phase.name(),
                a.threads,
                a.key.name(),
                a.preload,
                a.ops,
                r.mops,
                a.pin_batch,
            );
        } else {
            let (lf, segs, depth) = match r.table {
                Some((lf, s, d)) => (format!("{lf:.3}"), s.to_string(), d.to_string()),
                None => ("-".into(), "-".into(), "-".into()),
            };
            let text = |p: String| if p == "null" { "-".to_string() } else { p };
            outln!(
                "  {:<8} {:>9.3} {:>8} {:>8} {:>6} {:>9} {:>6} {:>9.3}",
                r.phase.name(),
                r.mops,
                text(p50),
                text(p99),
                lf,
                segs,
                depth,
                r.elapsed.as_secs_f64()
            );
        }
    }

    /// Throughput and latency of eagle relative to a peer (`dram` or `std`), phase by phase.
    /// Latency ratios print as `-` for a peer without samples (std). Against std, eagle runs
    /// through the shared harness and std in plain loops: the ratio is eagle's throughput as
    /// a user of its API gets it, over the machine's plain-loop std figure.
    pub fn ratios(&self, eagle: &[PhaseResult], peer_results: &[PhaseResult], peer: &str) {
        let json = self.args.json;
        say!(json, "");
        say!(
            json,
            "eagle/{peer} (throughput ratio; latency ratios at p50 and p99)"
        );
        say!(
            json,
            "  {:<8} {:>12} {:>12} {:>7} {:>7} {:>7}",
            "phase",
            "eagle Mops/s",
            format!("{peer} Mops/s"),
            "ratio",
            "p50 x",
            "p99 x"
        );
        for (e, d) in eagle.iter().zip(peer_results) {
            let lat = |p: f64| {
                let (le, ld) = (percentile(&e.samples, p), percentile(&d.samples, p));
                if ld == 0 {
                    "-".to_string()
                } else {
                    format!("{:.2}", le as f64 / ld as f64)
                }
            };
            let ratio = if d.mops > 0.0 {
                e.mops / d.mops
            } else {
                f64::NAN
            };
            say!(
                json,
                "  {:<8} {:>12.3} {:>12.3} {:>7.3} {:>7} {:>7}",
                e.phase.name(),
                e.mops,
                d.mops,
                ratio,
                lat(50.0),
                lat(99.0)
            );
        }
    }

    /// A failure, on stderr.
    pub fn error(&self, engine: &str, msg: &str) {
        errln!("eagle-bench: {engine}: {msg}");
    }
}

/// Shell-quotes an argument if it needs it, so the printed command can be pasted back.
fn quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The CPU's model name from /proc/cpuinfo, if there is one.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}
