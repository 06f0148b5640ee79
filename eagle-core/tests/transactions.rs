//! Atomic transactions (`Db::atomic`, the server's EXEC) across a process crash (dropping the
//! `Db` without closing it). Power failures at every fence are the crash harness's
//! (`crash-tests/tests/keyspace_power_failure.rs`).

mod common;

use common::{open_db, pool_path};
use eagle_core::db::{ExpireCondition, SetOptions};
use eagle_core::pmem::FlushMode;
use eagle_core::{Db, DbError, DbOptions, PoolOptions};

fn seed(db: &Db) {
    db.set(b"a", b"1", SetOptions::default()).unwrap();
    db.set(b"gone", b"x", SetOptions::default()).unwrap();
    let fields: Vec<(Vec<u8>, Vec<u8>)> = (0..300)
        .map(|i| (format!("f{i}").into_bytes(), b"old".to_vec()))
        .collect();
    let f: Vec<(&[u8], &[u8])> = fields.iter().map(|(f, v)| (&f[..], &v[..])).collect();
    db.hset(b"big", &f).unwrap();
}

/// Writes of every kind: a SET, a run of SETs (a pipeline's), a DEL, an MSET (a logged batch),
/// a RENAME, an in-place expiry, a large hash's in-place part update and a multi-part one.
fn write_everything(db: &Db) {
    db.set(b"a", b"2", SetOptions::default()).unwrap();
    let run = db.set_run(&[(b"r1", b"x", 0), (b"r2", b"y", 4_000_000_000_000)]);
    run.result.unwrap();
    assert_eq!(run.applied, 2);
    db.del(&[b"gone"]).unwrap();
    db.mset(&[(b"m1", b"x"), (b"m2", b"y")]).unwrap();
    db.rename(b"m1", b"m3", false).unwrap();
    db.expire_at(b"a", 4_000_000_000_000, ExpireCondition::Always)
        .unwrap();
    db.hset(b"big", &[(b"f1", b"new")]).unwrap();
    let many: Vec<(Vec<u8>, Vec<u8>)> = (0..40)
        .map(|i| (format!("f{i}").into_bytes(), b"newer".to_vec()))
        .collect();
    let f: Vec<(&[u8], &[u8])> = many.iter().map(|(f, v)| (&f[..], &v[..])).collect();
    db.hset(b"big", &f).unwrap();
}

#[test]
fn a_transaction_a_crash_interrupts_is_rolled_back_at_open() {
    let path = pool_path("tx-rollback");
    let db = open_db(&path);
    seed(&db);
    let atomic = db.atomic();
    write_everything(&db);
    // The crash: the transaction never ends, the pool is never closed.
    std::mem::forget(atomic);
    drop(db);

    let db = open_db(&path);
    assert!(db.engine().replayed_batches() > 0);
    assert_eq!(db.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(db.get(b"gone").unwrap().as_deref(), Some(&b"x"[..]));
    for k in [&b"m1"[..], b"m2", b"m3", b"r1", b"r2"] {
        assert_eq!(db.get(k).unwrap(), None, "{}", String::from_utf8_lossy(k));
    }
    assert_eq!(db.ttl(b"a").unwrap(), eagle_core::db::Ttl::Persistent);
    assert_eq!(db.hlen(b"big").unwrap(), 300);
    for i in [0, 1, 39, 299] {
        let f = format!("f{i}");
        assert_eq!(
            db.hget(b"big", f.as_bytes()).unwrap().as_deref(),
            Some(&b"old"[..]),
            "{f}"
        );
    }
    db.engine().index().wait_recovered().unwrap();
    let report = db.engine().check();
    assert!(report.is_clean(), "{:?}", report.problems);
    db.close().unwrap();
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn a_transaction_that_ended_survives_a_crash() {
    let path = pool_path("tx-commit");
    let db = open_db(&path);
    seed(&db);
    {
        let _atomic = db.atomic();
        write_everything(&db);
    }
    drop(db); // the crash, after the transaction ended

    let db = open_db(&path);
    assert_eq!(
        db.engine().replayed_batches(),
        0,
        "the log is empty once it ended"
    );
    assert_eq!(db.get(b"a").unwrap().as_deref(), Some(&b"2"[..]));
    assert_eq!(db.get(b"gone").unwrap(), None);
    assert_eq!(db.get(b"m3").unwrap().as_deref(), Some(&b"x"[..]));
    assert_eq!(db.get(b"r2").unwrap().as_deref(), Some(&b"y"[..]));
    assert_eq!(
        db.ttl(b"r2").unwrap(),
        eagle_core::db::Ttl::At(4_000_000_000_000)
    );
    assert_eq!(
        db.ttl(b"a").unwrap(),
        eagle_core::db::Ttl::At(4_000_000_000_000)
    );
    assert_eq!(
        db.hget(b"big", b"f1").unwrap().as_deref(),
        Some(&b"newer"[..])
    );
    assert_eq!(
        db.hget(b"big", b"f299").unwrap().as_deref(),
        Some(&b"old"[..])
    );
    db.engine().index().wait_recovered().unwrap();
    assert!(db.engine().check().is_clean());
    db.close().unwrap();
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn a_transaction_too_large_for_the_log_fails_that_write_and_keeps_the_rest() {
    let path = pool_path("tx-full");
    let opts = || DbOptions {
        pool: PoolOptions {
            size: 32 << 20,
            wal_size: Some(256 << 10),
            flush: Some(FlushMode::None),
            ..PoolOptions::default()
        },
        ..DbOptions::default()
    };
    let db = Db::open(&path, opts()).unwrap();
    let key = |i: usize| format!("{i:04}-{}", "k".repeat(2000)).into_bytes();
    let mut written = 0;
    {
        let _atomic = db.atomic();
        loop {
            match db.set(&key(written), b"v", SetOptions::default()) {
                Ok(_) => written += 1,
                Err(DbError::BatchTooLarge) => break,
                Err(e) => panic!("{e}"),
            }
            assert!(written < 1000, "the log never filled");
        }
        assert!(written > 50, "only {written} writes fit");
        assert_eq!(
            db.get(&key(written)).unwrap(),
            None,
            "the failed write did nothing"
        );
    }
    // Ended: the log is free again, and what was written is kept across a crash.
    db.set(b"after", b"1", SetOptions::default()).unwrap();
    drop(db);
    let db = Db::open(&path, opts()).unwrap();
    assert_eq!(db.dbsize(), written as u64 + 1);
    db.close().unwrap();
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn a_transaction_opened_inside_another_is_part_of_it() {
    let path = pool_path("tx-nested");
    let db = open_db(&path);
    seed(&db);
    let outer = db.atomic();
    {
        let _inner = db.atomic(); // would deadlock if it waited for the outer one
        db.set(b"a", b"inner", SetOptions::default()).unwrap();
    }
    db.set(b"gone", b"outer", SetOptions::default()).unwrap();
    std::mem::forget(outer);
    drop(db); // the crash: the inner one's end did not commit anything

    let db = open_db(&path);
    assert_eq!(db.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(db.get(b"gone").unwrap().as_deref(), Some(&b"x"[..]));
    db.close().unwrap();
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn other_threads_writes_wait_for_a_transaction_and_their_reads_do_not() {
    let path = pool_path("tx-writers");
    let db = open_db(&path);
    seed(&db);
    let atomic = db.atomic();
    db.set(b"a", b"tx", SetOptions::default()).unwrap();
    std::thread::scope(|s| {
        // A single-key SET writes no log record: only the gate can hold it back.
        let writer = s.spawn(|| db.set(b"w2", b"1", SetOptions::default()).unwrap());
        let reader = s.spawn(|| db.get(b"gone").unwrap());
        assert_eq!(reader.join().unwrap().as_deref(), Some(&b"x"[..]));
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            !writer.is_finished(),
            "a write ran inside another thread's transaction"
        );
        drop(atomic);
        writer.join().unwrap();
    });
    assert_eq!(db.get(b"w2").unwrap().as_deref(), Some(&b"1"[..]));
    db.close().unwrap();
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn a_flushall_inside_a_transaction_a_crash_interrupts_restores_every_key() {
    let path = pool_path("tx-flushall");
    let db = open_db(&path);
    let keys: Vec<Vec<u8>> = (0..20_000)
        .map(|i| format!("key:{i}").into_bytes())
        .collect();
    for chunk in keys.chunks(500) {
        let pairs: Vec<(&[u8], &[u8])> = chunk.iter().map(|k| (&k[..], &b"v"[..])).collect();
        db.mset(&pairs).unwrap();
    }
    let atomic = db.atomic();
    db.flushall().unwrap();
    db.set(b"after", b"1", SetOptions::default()).unwrap();
    std::mem::forget(atomic);
    drop(db); // the crash

    let db = open_db(&path);
    assert_eq!(db.dbsize(), keys.len() as u64);
    assert_eq!(db.get(b"after").unwrap(), None);
    assert_eq!(db.get(b"key:19999").unwrap().as_deref(), Some(&b"v"[..]));
    db.close().unwrap();
    std::fs::remove_file(&path).unwrap();
}
