//! Atomic batches under concurrency: MSETs of 4 keys from 1 to 8 threads (each its own keys),
//! pool on /dev/shm with the CPU's best flush mode. Prints MSETs per second and, from the log's
//! counters, how many appends shared one flush-and-fence round (group commit).
//!
//! Run: `cargo bench -p eagle-core --bench batch_commit [-- SECONDS]` (pool on /dev/shm or
//! `EAGLE_BENCH_DIR`). `EAGLE_BENCH_FENCE_NS=N` runs the pool under the power-failure simulator
//! with every fence taking N ns and every flushed line 100 ns (a stand-in for Optane, whose
//! fences cost hundreds of ns; the simulator's bookkeeping slows everything else too).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use eagle_core::{Db, DbOptions, PoolOptions};

fn main() {
    let secs: f64 = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(3.0);
    let dir = std::env::var("EAGLE_BENCH_DIR").unwrap_or_else(|_| "/dev/shm".into());
    let fence = std::env::var("EAGLE_BENCH_FENCE_NS").map_or("the CPU's flushes".into(), |n| {
        format!("simulator, fences of {n} ns")
    });
    println!(
        "threads  msets_per_s  appends_per_sync  (4 keys of 16 B per MSET, {secs} s each, pool in {dir}, {fence})"
    );
    for &threads in &[1u64, 2, 4, 8] {
        let path =
            std::path::Path::new(&dir).join(format!("eagle-batch-{}.pool", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let fence_ns: Option<u64> = std::env::var("EAGLE_BENCH_FENCE_NS")
            .ok()
            .and_then(|v| v.parse().ok());
        let mut pool = PoolOptions {
            size: 64 << 20,
            ..PoolOptions::default()
        };
        if fence_ns.is_some() {
            pool = pool.simulated(None);
        }
        let opts = DbOptions {
            pool,
            ..DbOptions::default()
        };
        let db = Arc::new(Db::open(&path, opts).expect("open"));
        if let Some(ns) = fence_ns {
            let sim = db.engine().pool().region().persister().simulator().cloned();
            sim.expect("simulated pool")
                .set_delays(Duration::from_nanos(100), Duration::from_nanos(ns));
        }
        let before = db.engine().wal().stats();
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (db, stop, done) = (db.clone(), stop.clone(), done.clone());
                std::thread::spawn(move || {
                    let keys: Vec<Vec<u8>> = (0..4)
                        .map(|k| format!("t{t}:key:{k}").into_bytes())
                        .collect();
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let v = format!("{n:016}");
                        let pairs: Vec<(&[u8], &[u8])> =
                            keys.iter().map(|k| (&k[..], v.as_bytes())).collect();
                        db.mset(&pairs).expect("mset");
                        n += 1;
                    }
                    done.fetch_add(n, Ordering::Relaxed);
                })
            })
            .collect();
        let started = Instant::now();
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.join().expect("worker");
        }
        let elapsed = started.elapsed().as_secs_f64();
        let after = db.engine().wal().stats();
        let (appends, syncs) = (after.appends - before.appends, after.syncs - before.syncs);
        println!(
            "{threads:>7}  {:>11.0}  {:>16.2}",
            done.load(Ordering::Relaxed) as f64 / elapsed,
            appends as f64 / syncs.max(1) as f64
        );
        Arc::into_inner(db)
            .expect("workers joined")
            .close()
            .expect("close");
        let _ = std::fs::remove_file(&path);
    }
}
