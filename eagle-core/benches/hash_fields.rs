//! HSET and HGET cost against the hash's size: 10 to 1,000,000 fields. With the table form
//! (parts of about 16-32 fields), a field operation reads and rewrites one part, so the cost
//! should stay flat once the hash passes the compact limit (128 fields).
//!
//! Run: `cargo bench -p eagle-core --bench hash_fields` (pool on /dev/shm or `EAGLE_BENCH_DIR`).
//! Per size: builds the hash, then times 100,000 HSETs of existing fields and 100,000 HGETs
//! (random fields, fixed seed); prints ns per operation, and the same for a DRAM peer (a
//! `HashMap` of `HashMap`s behind a lock, as an in-memory server keeps hashes): the peer shows
//! what the memory hierarchy alone costs as the hash grows. Sizes may be given as arguments.

use std::collections::HashMap;
use std::time::Instant;

use std::path::Path;

mod common;
use common::{bench_dir, fresh_db, random_below};
use parking_lot::Mutex;

/// Operations per timed phase: `EAGLE_BENCH_OPS`, else 100,000 (more, to profile one phase).
fn ops() -> u64 {
    std::env::var("EAGLE_BENCH_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

fn main() {
    let dir = bench_dir();
    println!(
        "fields      hset_ns  hget_ns   dram_hset  dram_hget  (pool in {}, {} ops each; \
         dram: a HashMap of HashMaps behind a Mutex, the same operations)",
        dir.display(),
        ops()
    );
    // Sizes from the command line (`-- 1000000`), else all of them.
    let mut sizes: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    if sizes.is_empty() {
        sizes = vec![10, 100, 1_000, 10_000, 100_000, 1_000_000];
    }
    for n in sizes {
        let (hset, hget) = eagle(&dir, n);
        let (dram_hset, dram_hget) = dram(n);
        println!("{n:>9} {hset:>10.0} {hget:>8.0} {dram_hset:>11.0} {dram_hget:>10.0}");
    }
}

fn field(i: u64) -> Vec<u8> {
    format!("field:{i:08}").into_bytes()
}

/// Times `OPS` calls of `op`; ns per call.
fn time(mut op: impl FnMut()) -> f64 {
    let n = ops();
    let t = Instant::now();
    for _ in 0..n {
        op();
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

fn eagle(dir: &Path, n: u64) -> (f64, f64) {
    let (db, path) = fresh_db(dir, "hash", 2 << 30);
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
    // Building the hash rebuilt its table at every doubling and retired the old tables and
    // parts; freeing them belongs to the build, not to the HSETs timed next (they would pay it
    // as they pin). The timed phase frees its own garbage before the clock stops.
    let index = db.engine().index();
    index.reclaim();
    let mut next = random_below(n);
    let hset = time(|| {
        let f = field(next());
        db.hset(b"h", &[(&f, b"value-16-bytes??")]).expect("hset");
    }) + {
        let t = Instant::now();
        index.reclaim();
        t.elapsed().as_nanos() as f64 / ops() as f64
    };
    let mut found = 0;
    let hget = time(|| {
        found += db.hget(b"h", &field(next())).expect("hget").is_some() as u64;
    });
    assert_eq!(found, ops());
    db.close().expect("close");
    let _ = std::fs::remove_file(&path);
    (hset, hget)
}

type Hashes = Mutex<HashMap<Vec<u8>, HashMap<Vec<u8>, Vec<u8>>>>;

fn dram(n: u64) -> (f64, f64) {
    let db: Hashes = Mutex::default();
    db.lock()
        .entry(b"h".to_vec())
        .or_default()
        .extend((0..n).map(|j| (field(j), b"value-16-bytes!!".to_vec())));
    let mut next = random_below(n);
    let hset = time(|| {
        let f = field(next());
        let mut g = db.lock();
        let h = g.get_mut(&b"h"[..]).expect("hash");
        h.insert(f, b"value-16-bytes??".to_vec());
    });
    let mut found = 0;
    let hget = time(|| {
        let f = field(next());
        let g = db.lock();
        found += g[&b"h"[..]].get(&f).map(|v| v.to_vec()).is_some() as u64;
    });
    assert_eq!(found, ops());
    (hset, hget)
}
