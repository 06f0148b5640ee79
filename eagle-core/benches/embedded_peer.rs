//! Point writes and reads through the embedded `Db` against LMDB (heed) with `NO_SYNC`: an
//! embedded store that, like a pool on /dev/shm, survives a process crash but not a power loss.
//!
//! Run: `cargo bench -p eagle-core --bench embedded_peer -- [KEYS] [OPS] [ROUNDS]` (defaults
//! 1,000,000, 1,000,000, 3). Both stores live on /dev/shm (or `EAGLE_BENCH_DIR`). Each round
//! runs eagle then LMDB on fresh files: preload KEYS keys (8-byte keys and values, untimed),
//! then time OPS writes of random existing keys (one durable write per call: `Db::set`, and
//! one LMDB write transaction committed per put) and OPS reads of random keys (`Db::get`, and
//! one LMDB read transaction per get). A second eagle read phase, `read-ref`, uses
//! `Db::get_with`, which lends the value instead of copying it into a new `Vec`: the same terms
//! as LMDB's `get`, whose value is borrowed from its read transaction. The two read phases
//! alternate which runs first from round to round. Single thread. Prints ops
//! per second and the ratio (both read rows against LMDB's reads).

use std::path::Path;
use std::time::Instant;

use eagle_core::db::SetOptions;
use heed::types::Bytes;
use heed::{CommitOrAbort, Database, EnvFlags, EnvOpenOptions};

mod common;
use common::{bench_dir, fresh_db, random_below};

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let keys = args.first().copied().unwrap_or(1_000_000);
    let ops = args.get(1).copied().unwrap_or(1_000_000);
    let rounds = args.get(2).copied().unwrap_or(3);
    let dir = bench_dir();
    println!(
        "{keys} keys, {ops} ops per phase, {rounds} rounds, files in {}",
        dir.display()
    );
    println!("round  op        eagle ops/s   lmdb ops/s   eagle/lmdb");
    for round in 1..=rounds {
        let e = eagle(&dir, keys, ops, round % 2 == 0);
        let l = lmdb(&dir, keys, ops);
        for (name, a, b) in [
            ("write", e.0, l.0),
            ("read", e.1, l.1),
            ("read-ref", e.2, l.1),
        ] {
            println!("{round:>5}  {name:<8} {a:>12.0} {b:>12.0} {:>11.2}x", a / b);
        }
    }
}

fn key(i: u64) -> [u8; 8] {
    i.to_be_bytes()
}

/// Runs `op` `n` times; operations per second.
fn rate(n: u64, mut op: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        op();
    }
    n as f64 / t.elapsed().as_secs_f64()
}

/// (writes/s, reads/s, borrowed reads/s) for eagle's embedded `Db`. The two read phases run
/// in turn, borrowed first when `ref_first` (rounds alternate, so neither always finds the
/// caches the other warmed).
fn eagle(dir: &Path, keys: u64, ops: u64, ref_first: bool) -> (f64, f64, f64) {
    let (db, path) = fresh_db(dir, "peer", 4 << 30);
    for i in 0..keys {
        db.set(&key(i), &i.to_le_bytes(), SetOptions::default())
            .expect("preload");
    }
    let mut next = random_below(keys);
    let writes = rate(ops, || {
        let k = next();
        db.set(&key(k), &(k + 1).to_le_bytes(), SetOptions::default())
            .expect("set");
    });
    let mut found = 0u64;
    let mut copied = || {
        rate(ops, || {
            found += db.get(&key(next())).expect("get").is_some() as u64;
        })
    };
    let mut lent = 0u64;
    let mut next_ref = random_below(keys);
    let mut borrowed = || {
        rate(ops, || {
            lent += db
                .get_with(&key(next_ref()), |v| v.len())
                .expect("get")
                .is_some() as u64;
        })
    };
    let (reads, reads_ref) = if ref_first {
        let r = borrowed();
        (copied(), r)
    } else {
        let r = copied();
        (r, borrowed())
    };
    assert_eq!((found, lent), (ops, ops));
    db.close().expect("close");
    let _ = std::fs::remove_file(&path);
    (writes, reads, reads_ref)
}

/// (writes/s, reads/s) for LMDB with `NO_SYNC`.
fn lmdb(dir: &Path, keys: u64, ops: u64) -> (f64, f64) {
    let path = dir.join(format!("eagle-peer-lmdb-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir_all(&path).expect("lmdb directory");
    // SAFETY: the directory is new and this process is its only user; NO_SYNC only drops the
    // fsync at commit (durable against a process crash, not a power loss: the point here).
    let env = unsafe {
        EnvOpenOptions::new()
            .map_size(4 << 30)
            .flags(EnvFlags::NO_SYNC)
            .open(&path)
    }
    .expect("open lmdb");
    let wtxn = env.write_txn().expect("txn");
    let db: Database<Bytes, Bytes> = env
        .create_databases_and_commit(wtxn, |dbo, wtxn| {
            dbo.create_database(wtxn, None)
                .map(CommitOrAbort::<_, ()>::Commit)
        })
        .expect("create the database")
        .unwrap_commit();
    let mut i = 0;
    while i < keys {
        let mut wtxn = env.write_txn().expect("txn");
        for j in i..(i + 10_000).min(keys) {
            db.put(&mut wtxn, &key(j), &j.to_le_bytes())
                .expect("preload");
        }
        wtxn.commit().expect("commit");
        i += 10_000;
    }
    let mut next = random_below(keys);
    let writes = rate(ops, || {
        let k = next();
        let mut wtxn = env.write_txn().expect("txn");
        db.put(&mut wtxn, &key(k), &(k + 1).to_le_bytes())
            .expect("put");
        wtxn.commit().expect("commit");
    });
    let mut found = 0u64;
    let reads = rate(ops, || {
        let rtxn = env.read_txn().expect("txn");
        found += db.get(&rtxn, &key(next())).expect("get").is_some() as u64;
    });
    assert_eq!(found, ops);
    drop(env);
    let _ = std::fs::remove_dir_all(&path);
    (writes, reads)
}
