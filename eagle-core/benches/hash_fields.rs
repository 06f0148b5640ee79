//! HSET and HGET cost against the hash's size: 10 to 1,000,000 fields. With the table form
//! (parts of about 16-32 fields), a field operation reads and rewrites one part, so the cost
//! should stay flat once the hash passes the compact limit (128 fields).
//!
//! Run: `cargo bench -p eagle-core --bench hash_fields` (pool on /dev/shm or `EAGLE_BENCH_DIR`).
//! Per size: builds the hash, then times 100,000 HSETs of existing fields and 100,000 HGETs
//! (random fields, fixed seed); prints ns per operation.

use std::time::Instant;

use eagle_core::{Db, DbOptions, PoolOptions};

const OPS: u64 = 100_000;

fn main() {
    let dir = std::env::var("EAGLE_BENCH_DIR").unwrap_or_else(|_| "/dev/shm".into());
    println!("fields      hset_ns  hget_ns  (pool in {dir}, {OPS} ops each)");
    for &n in &[10u64, 100, 1_000, 10_000, 100_000, 1_000_000] {
        let path =
            std::path::Path::new(&dir).join(format!("eagle-hash-{}.pool", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let opts = DbOptions {
            pool: PoolOptions {
                size: 2 << 30,
                ..PoolOptions::default()
            },
            ..DbOptions::default()
        };
        let db = Db::open(&path, opts).expect("open");
        let field = |i: u64| format!("field:{i:08}").into_bytes();
        let mut i = 0;
        while i < n {
            let batch: Vec<(Vec<u8>, Vec<u8>)> = (i..(i + 1000).min(n))
                .map(|j| (field(j), b"value-16-bytes!!".to_vec()))
                .collect();
            let refs: Vec<(&[u8], &[u8])> = batch.iter().map(|(f, v)| (&f[..], &v[..])).collect();
            db.hset(b"h", &refs).expect("hset");
            i += 1000;
        }
        assert_eq!(db.hlen(b"h").expect("hlen"), n);
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let t = Instant::now();
        for _ in 0..OPS {
            let f = field(next());
            db.hset(b"h", &[(&f, b"value-16-bytes??")]).expect("hset");
        }
        let hset = t.elapsed().as_nanos() as f64 / OPS as f64;
        let t = Instant::now();
        let mut found = 0;
        for _ in 0..OPS {
            found += db.hget(b"h", &field(next())).expect("hget").is_some() as u64;
        }
        let hget = t.elapsed().as_nanos() as f64 / OPS as f64;
        assert_eq!(found, OPS);
        println!("{n:>9} {hset:>10.0} {hget:>8.0}");
        db.close().expect("close");
        let _ = std::fs::remove_file(&path);
    }
}
