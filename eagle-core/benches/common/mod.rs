//! What the benches share: their directory, a fresh `Db`, and a reproducible random stream.

use std::path::{Path, PathBuf};

use eagle_core::{Db, DbOptions, PoolOptions};

/// Where pools go: `EAGLE_BENCH_DIR`, else /dev/shm (DRAM, so the figures are the engine's).
pub fn bench_dir() -> PathBuf {
    PathBuf::from(std::env::var("EAGLE_BENCH_DIR").unwrap_or_else(|_| "/dev/shm".into()))
}

/// A fresh `Db` in a new pool file `name` (with the process id) under `dir`, `size` bytes
/// (sparse); the path, to remove afterwards.
pub fn fresh_db(dir: &Path, name: &str, size: u64) -> (Db, PathBuf) {
    let path = dir.join(format!("eagle-{name}-{}.pool", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let opts = DbOptions {
        pool: PoolOptions {
            size,
            ..PoolOptions::default()
        },
        ..DbOptions::default()
    };
    (Db::open(&path, opts).expect("open the pool"), path)
}

/// Numbers below `n` (xorshift, fixed seed: every run and every peer sees the same stream).
pub fn random_below(n: u64) -> impl FnMut() -> u64 {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    }
}
