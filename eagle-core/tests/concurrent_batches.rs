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
