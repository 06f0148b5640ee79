//! `eagle-bench`: throughput and latency of the Dash index, against a DRAM ceiling, by the
//! method of the Dash paper (Lu et al., VLDB 2020, §6).
//!
//! # Method
//!
//! Each engine run starts from an empty table (for eagle: a new pool file, so inserts pay for
//! segment splits and directory doublings). N keys are preloaded (untimed), then each phase runs
//! M operations split over T threads, on one table, in this order (`--op full`):
//!
//! 1. `insert`: M new keys;
//! 2. `pos`: M searches for present keys;
//! 3. `neg`: M searches for keys never inserted;
//! 4. `delete`: the M keys the insert phase added;
//! 5. `mixed`: M ops, 80% positive searches and 20% inserts of fresh keys.
//!
//! `--op PHASE` runs one phase on a table holding just the preload (for `delete`, the preload
//! also loads the M keys it removes). Keys are key numbers scrambled by an odd multiplier (a
//! bijection, so distinct and non-sequential): 8 bytes little-endian (`--key fixed`) or 16 hex
//! digits (`--key var`); values are 8 bytes. Every answer is checked (a positive search must
//! find the right value, an insert must insert...), so a wrong engine fails instead of looking
//! fast. Throughput is M over the time from the first thread's start to the last one's end;
//! latency is sampled on one operation in 64 on average (two `Instant::now()` calls), at random
//! gaps rather than a fixed stride, which would alias with the engine's periodic work (epoch
//! garbage is bagged and collected every 64 or 128 operations), and reported as the p50 and p99
//! of the samples. eagle's load factor is `stats().load_factor` after each phase.
//!
//! The DRAM ceiling (`--engine dram`) is a std `HashMap` sharded 64 ways behind `RwLock`s, fed
//! the same key stream: no persistence, no flushes. With no `--engine`, eagle runs first, then
//! dram, and the ratio eagle/dram is printed per phase.
//!
//! The calibration peer (`--engine std`, or `all` for the three) is one std `HashMap` on one
//! thread, the peer of the Dash issue's reference figures for this machine. Its figures in the
//! same session tell how fast the machine runs now against when those were taken.
//!
//! # Reproducing
//!
//! ```sh
//! cargo build --release -p eagle-core --bin eagle-bench
//! ./target/release/eagle-bench                       # N = 1M, M = 2M, 1 thread, both engines
//! ./target/release/eagle-bench --threads 2 --key var --json > results.jsonl
//! ```
//!
//! The pool defaults to `/dev/shm/eagle-bench.pool` (emulated persistent memory; flush mode
//! from the CPU, or `EAGLE_FLUSH`); point `--pool` at a file on a DAX file system to measure real
//! persistent memory. The pool file is deleted before and after each eagle run. Record the
//! header (command, time, nproc, CPU) with the numbers; run on an otherwise idle machine.

/// `println!` that ignores a closed stdout (say, `eagle-bench | head`) instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `eprintln!` that ignores a closed stderr.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod args;
mod dram;
mod eagle;
mod output;
mod stats;
mod std_map;
mod workload;

use std::process::ExitCode;

use args::{Args, OpChoice, Parsed};
use output::Output;
use workload::{Phase, PhaseResult, Plan, Store};

fn main() -> ExitCode {
    let mut argv = Vec::new();
    for a in std::env::args_os() {
        match a.into_string() {
            Ok(s) => argv.push(s),
            Err(a) => return usage_error(&format!("argument {a:?} is not valid UTF-8")),
        }
    }
    let args = match args::parse(argv.get(1..).unwrap_or_default()) {
        Ok(Parsed::Run(a)) => a,
        Ok(Parsed::Help) => {
            outln!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => return usage_error(&e.0),
    };
    let out = Output { args: &args };
    out.header(&argv);

    let (run_eagle_engine, run_dram, run_std) = args.engine.runs();
    let eagle = if run_eagle_engine {
        match run_eagle(&args, &out) {
            Ok(r) => Some(r),
            Err(e) => {
                out.error("eagle", &e);
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let dram = if run_dram {
        let map = dram::DramMap::new();
        match bench(&map, "dram", "std HashMap, 64 RwLock shards", &args, &out) {
            Ok(r) => Some(r),
            Err(e) => {
                out.error("dram", &e);
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let std = if run_std {
        match bench_local(&args, &out) {
            Ok(r) => Some(r),
            Err(e) => {
                out.error("std", &e);
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    for (peer, name) in [(&dram, "dram"), (&std, "std")] {
        if let (Some(e), Some(p)) = (&eagle, peer) {
            out.ratios(e, p, name);
        }
    }
    ExitCode::SUCCESS
}

fn usage_error(msg: &str) -> ExitCode {
    errln!("eagle-bench: {msg}\n\n{}", args::USAGE);
    ExitCode::from(2)
}

/// Runs every phase on a new pool, then closes the engine and deletes the pool, even on error.
fn run_eagle(args: &Args, out: &Output<'_>) -> Result<Vec<PhaseResult>, String> {
    let engine = eagle::open_fresh(&args.pool, args.pool_size)?;
    let pool = engine.pool();
    let detail = format!(
        "pool {} ({} MiB, {}, flush {})",
        args.pool.display(),
        args.pool_size >> 20,
        pool.kind(),
        pool.flush_mode()
    );
    let result = bench(&engine, "eagle", &detail, args, out);
    let closed = engine.close().map_err(|e| format!("close: {e}"));
    let removed = eagle::remove_pool(&args.pool);
    let results = result?;
    closed?;
    removed?;
    Ok(results)
}

/// [`bench`] for the calibration peer: one std `HashMap`, plain loops on this thread.
fn bench_local(args: &Args, out: &Output<'_>) -> Result<Vec<PhaseResult>, String> {
    let mut map = std_map::StdMap::default();
    let mut plan = plan_of(args);
    let took = plan.preload_local(&mut map, preload_of(args))?;
    let detail = "one std HashMap, plain loops on one thread, no latency samples";
    out.engine_start("std", detail, preload_of(args), took.as_secs_f64());
    phases_of(args)
        .iter()
        .map(|&phase| {
            let r = plan.run_local(&mut map, phase)?;
            out.phase("std", &r);
            Ok(r)
        })
        .collect()
}

fn phases_of(args: &Args) -> &'static [Phase] {
    match args.op {
        OpChoice::Full => &Phase::ALL,
        OpChoice::One(p) => Phase::ALL
            .iter()
            .position(|&q| q == p)
            .map_or(&[], |i| &Phase::ALL[i..=i]),
    }
}

fn plan_of(args: &Args) -> Plan {
    Plan {
        kind: args.key,
        preload: args.preload,
        ops: args.ops,
        threads: args.threads,
        live: 0,
        pin_batch: args.pin_batch,
    }
}

/// Delete alone removes keys N..N+M, so they are preloaded too.
fn preload_of(args: &Args) -> u64 {
    if args.op == OpChoice::One(Phase::Delete) {
        args.preload + args.ops
    } else {
        args.preload
    }
}

/// Preloads, then runs the phases `args.op` asks for, printing each as it finishes.
fn bench<S: Store>(
    store: &S,
    name: &str,
    detail: &str,
    args: &Args,
    out: &Output<'_>,
) -> Result<Vec<PhaseResult>, String> {
    let mut plan = plan_of(args);
    let preload = preload_of(args);
    let took = plan.preload(store, preload)?;
    out.engine_start(name, detail, preload, took.as_secs_f64());
    let mut results = Vec::new();
    for &phase in phases_of(args) {
        let r = plan.run(store, phase)?;
        out.phase(name, &r);
        results.push(r);
    }
    Ok(results)
}
