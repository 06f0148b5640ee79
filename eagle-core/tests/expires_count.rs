//! The count of keys with an expiry (INFO's `expires=`) stays exact: under every kind of write,
//! across a clean close (kept in the metadata region) and across a crash (recounted by the
//! background recovery while writes go on).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::pool_path;
use eagle_core::db::{Clock, ExpireCondition, GetExExpiry, SetExpiry, SetOptions};
use eagle_core::pmem::FlushMode;
use eagle_core::{Db, DbOptions, PoolOptions};
use pmem_emulation::SplitMix64;

const NOW: u64 = 1_700_000_000_000;

fn open(path: &std::path::Path, clock: &Arc<AtomicU64>) -> Db {
    Db::open(
        path,
        DbOptions {
            pool: PoolOptions {
                size: 64 << 20,
                flush: Some(FlushMode::None),
                ..PoolOptions::default()
            },
            clock: Clock::Manual(clock.clone()),
            recovery: None,
        },
    )
    .unwrap()
}

/// Records with an expiry word set, read from the index itself.
fn brute_force(db: &Db) -> u64 {
    let (mut cursor, mut n) = (0, 0);
    loop {
        cursor = db
            .engine()
            .index()
            .scan(cursor, 512, |r| n += (r.expire_at_ms() != 0) as u64)
            .unwrap();
        if cursor == 0 {
            return n;
        }
    }
}

/// One random write of a kind that can add, keep or drop an expiry.
fn random_write(db: &Db, rng: &mut SplitMix64, clock: &AtomicU64) {
    let key = |rng: &mut SplitMix64| format!("k{}", rng.below(300)).into_bytes();
    let k = key(rng);
    let later = clock.load(Ordering::Relaxed) + 1_000 + rng.below(10_000_000) as u64;
    let set = |expiry| SetOptions {
        expiry,
        ..SetOptions::default()
    };
    match rng.below(12) {
        0 => drop(db.set(&k, b"v", set(SetExpiry::Clear))),
        1 => drop(db.set(&k, b"v", set(SetExpiry::At(later)))),
        2 => drop(db.set(&k, b"w", set(SetExpiry::Keep))),
        3 => drop(db.expire_at(&k, later as i64, ExpireCondition::Always)),
        4 => drop(db.persist(&k)),
        5 => drop(db.del(&[&k])),
        6 => drop(db.rename(&k, &key(rng), false)),
        7 => drop(db.mset(&[(&k, b"m"), (&key(rng), b"n")])),
        8 => drop(db.getex(&k, Some(GetExExpiry::Persist))),
        9 => drop(db.incr_by(&k, 1)),
        10 => drop(db.hset(&k, &[(b"f", b"v")])),
        _ => {
            // Some keys expire; the sweep and lazy removal take them.
            clock.fetch_add(5_000, Ordering::Relaxed);
            for _ in 0..20 {
                db.expire_cycle(20).unwrap();
            }
            let _ = db.get(&k);
        }
    }
}

#[test]
fn the_expiry_count_is_exact_under_writes_a_clean_close_and_a_crash() {
    let path = pool_path("expires-count");
    let clock = Arc::new(AtomicU64::new(NOW));
    let mut rng = SplitMix64::new(99);
    let db = open(&path, &clock);
    for i in 0..3000 {
        random_write(&db, &mut rng, &clock);
        if i % 100 == 0 {
            assert_eq!(db.stats().expires, brute_force(&db), "after write {i}");
        }
    }
    let expected = brute_force(&db);
    assert!(
        expected > 20,
        "the workload left only {expected} keys with an expiry"
    );
    assert_eq!(db.stats().expires, expected);
    db.close().unwrap();

    // A clean close keeps the count.
    let db = open(&path, &clock);
    assert_eq!(db.stats().expires, expected);
    for _ in 0..500 {
        random_write(&db, &mut rng, &clock);
    }
    let expected = brute_force(&db);
    drop(db); // a crash

    // After a crash it is recounted, with writes running beside the recount.
    let db = open(&path, &clock);
    for _ in 0..500 {
        random_write(&db, &mut rng, &clock);
    }
    db.engine().index().wait_recovered().unwrap();
    assert_ne!(expected, 0);
    assert_eq!(db.stats().expires, brute_force(&db));
    db.close().unwrap();
    std::fs::remove_file(&path).unwrap();
}
