//! Time from opening a pool to the first served GET, after a clean close and after a crash
//! (the engine dropped without closing, as after kill -9), with N keys.
//!
//! Run: `[EAGLE_RECOVERY=background] cargo bench -p eagle-core --bench reopen -- N` (default
//! 1,000,000; pool on /dev/shm or `EAGLE_BENCH_DIR`). Prints one line per case (time to open,
//! to the first GET, and until the recovery sweep finished); repeats each 3 times.

use std::time::Instant;

use eagle_core::dash::PutMode;
use eagle_core::record::RecordKind;
use eagle_core::{Engine, PoolOptions};

fn main() {
    let n: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let dir = std::env::var("EAGLE_BENCH_DIR").unwrap_or_else(|_| "/dev/shm".into());
    let path = std::path::Path::new(&dir).join(format!("eagle-reopen-{}.pool", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let size = n * 200 + (256 << 20);
    let opts = |create| PoolOptions {
        create,
        size,
        ..PoolOptions::default()
    };
    let key = |i: u64| i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes();
    let e = Engine::open(&path, opts(true)).expect("create");
    let t = Instant::now();
    for i in 0..n {
        e.index()
            .put(
                &key(i),
                &i.to_le_bytes(),
                RecordKind::String,
                0,
                PutMode::Insert,
            )
            .expect("put");
    }
    println!(
        "reopen bench: {n} keys (8-byte keys and values) loaded in {:.2} s, {}",
        t.elapsed().as_secs_f64(),
        path.display()
    );
    e.close().expect("close");
    for case in ["clean", "crash", "clean", "crash", "clean", "crash"] {
        let t = Instant::now();
        let e = Engine::open(&path, opts(false)).expect("open");
        let opened = t.elapsed();
        let got = e
            .index()
            .get(&key(n / 2), |r| r.value().len())
            .expect("get");
        let first_get = t.elapsed();
        assert_eq!(got, Some(8));
        e.index().wait_recovered().expect("recovery");
        let recovered = t.elapsed();
        println!(
            "{case:>5} reopen ({:?} recovery): open {:8.2} ms, first GET served at {:8.2} ms, \
             recovery finished at {:8.2} ms (was clean: {})",
            eagle_core::engine::RecoveryMode::from_env(),
            opened.as_secs_f64() * 1e3,
            first_get.as_secs_f64() * 1e3,
            recovered.as_secs_f64() * 1e3,
            e.pool().was_clean()
        );
        if case == "clean" {
            // Leave it as a crash would for the next case.
            drop(e);
        } else {
            e.close().expect("close");
        }
    }
    let _ = std::fs::remove_file(&path);
}
