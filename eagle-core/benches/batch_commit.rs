//! Atomic batches under concurrency: MSETs of 4 keys from 1 to 8 threads (each its own keys),
//! pool on /dev/shm with the CPU's best flush mode. Prints MSETs per second and, from the log's
//! counters, how many appends shared one flush-and-fence round (group commit).
//!
//! Run: `cargo bench -p eagle-core --bench batch_commit [-- SECONDS]` (pool on /dev/shm or
//! `EAGLE_BENCH_DIR`).

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
    println!(
        "threads  msets_per_s  appends_per_sync  (4 keys of 16 B per MSET, {secs} s each, pool in {dir})"
    );
    for &threads in &[1u64, 2, 4, 8] {
        let path =
            std::path::Path::new(&dir).join(format!("eagle-batch-{}.pool", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let opts = DbOptions {
            pool: PoolOptions {
                size: 256 << 20,
                ..PoolOptions::default()
            },
            ..DbOptions::default()
        };
        let db = Arc::new(Db::open(&path, opts).expect("open"));
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
