//! Atomic batches run concurrently (group commit): MSETs from several threads, some on shared
//! keys, stay all-or-nothing and every acknowledged one survives a crash.

mod common;

use std::sync::Arc;

use common::{open_db as open, pool_path};

#[test]
fn concurrent_msets_are_atomic_and_survive_a_crash() {
    let path = pool_path("batches");
    let db = Arc::new(open(&path));
    const THREADS: u64 = 4;
    const ROUNDS: u64 = 300;
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let db = db.clone();
            std::thread::spawn(move || {
                for g in 1..=ROUNDS {
                    let v = format!("{t}-{g}").into_bytes();
                    let own: Vec<Vec<u8>> = (0..4)
                        .map(|k| format!("own:{t}:{k}").into_bytes())
                        .collect();
                    let mut pairs: Vec<(&[u8], &[u8])> =
                        own.iter().map(|k| (&k[..], &v[..])).collect();
                    // Every third MSET also writes the two shared keys.
                    if g % 3 == 0 {
                        pairs.push((b"shared:a", &v));
                        pairs.push((b"shared:b", &v));
                    }
                    db.mset(&pairs).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let stats = db.engine().wal().stats();
    println!("group commit: {stats:?}");
    let db = Arc::into_inner(db).unwrap();
    drop(db); // a crash
    let db = open(&path);
    for t in 0..THREADS {
        for k in 0..4 {
            let got = db.get(format!("own:{t}:{k}").as_bytes()).unwrap();
            assert_eq!(
                got,
                Some(format!("{t}-{ROUNDS}").into_bytes()),
                "thread {t} key {k}"
            );
        }
    }
    let a = db.get(b"shared:a").unwrap();
    assert!(a.is_some());
    assert_eq!(
        a,
        db.get(b"shared:b").unwrap(),
        "shared keys from different MSETs"
    );
    db.engine().index().wait_recovered().unwrap();
    let report = db.engine().check();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    db.close().unwrap();
    let _ = std::fs::remove_file(&path);
}

/// A reader never sees an MSET half applied (reads take the keys' shared locks, `db/stripes.rs`):
/// of the keys an MSET always sets to one rising number, the key read second never holds an
/// older number than the key read first, in either order, with `get` and with `get_with`
/// under a held pin. (Each MSET names 64 keys, so that its publication takes long enough for a
/// reader to land inside it.)
#[test]
fn concurrent_reads_never_see_an_mset_half_applied() {
    let path = pool_path("isolated-reads");
    let db = Arc::new(open(&path));
    const MSETS: u64 = 3_000;
    let keys: Vec<Vec<u8>> = (0..64).map(|k| format!("k{k}").into_bytes()).collect();
    let mset = |db: &eagle_core::Db, i: u64| {
        let v = i.to_be_bytes();
        let pairs: Vec<(&[u8], &[u8])> = keys.iter().map(|k| (&k[..], &v[..])).collect();
        db.mset(&pairs).unwrap();
    };
    mset(&db, 0);
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (db, done) = (db.clone(), done.clone());
        let (first, last) = (keys[0].clone(), keys[63].clone());
        std::thread::spawn(move || {
            let read = |k: &[u8], pinned: bool| {
                let v = if pinned {
                    db.get_with(k, |v| v.to_vec()).unwrap()
                } else {
                    db.get(k).unwrap()
                };
                u64::from_be_bytes(v.expect("present").try_into().unwrap())
            };
            let mut reads = 0u64;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let pinned = reads % 2 == 1;
                let _pin = pinned.then(|| db.engine().index().pinned());
                for (a, b) in [(&first, &last), (&last, &first)] {
                    let x = read(a, pinned);
                    let y = read(b, pinned);
                    assert!(y >= x, "read {a:?} = {x}, then {b:?} = {y}");
                }
                reads += 1;
            }
            reads
        })
    };
    for i in 1..=MSETS {
        mset(&db, i);
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads = reader.join().unwrap();
    assert!(reads > 100, "only {reads} rounds of reads");
    drop(db);
    let _ = std::fs::remove_file(&path);
}
