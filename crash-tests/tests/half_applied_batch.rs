//! A batch that fails half applied (injected: its second operation fails, or its run of puts
//! fails after its first group, as a full pool would make it): the engine refuses writes, `close` reports it and leaves the pool as after a
//! crash, and the next open finishes the batch, or, inside a transaction, rolls the whole
//! transaction back.

use crash_tests::Scratch;
use eagle_core::db::SetOptions;
use eagle_core::fault::{self, Fault};
use eagle_core::{Db, DbError};

fn open(path: &std::path::Path) -> Db {
    Db::open(path, crash_tests::small_unflushed()).unwrap()
}

fn get(db: &Db, k: &[u8]) -> Option<Vec<u8>> {
    db.get(k).unwrap()
}

#[test]
fn a_half_applied_batch_refuses_writes_and_is_finished_by_the_next_open() {
    let scratch = Scratch::new("half-batch");
    let path = scratch.path("eagle.pool");
    let db = open(&path);
    db.set(b"a", b"0", SetOptions::default()).unwrap();
    let failed = fault::with(Fault::FailBatchMidway, || {
        db.mset(&[(b"a", b"1"), (b"b", b"1"), (b"c", b"1")])
    });
    assert!(failed.is_err());
    assert!(!db.engine().writable());
    assert!(matches!(
        db.set(b"d", b"1", SetOptions::default()),
        Err(DbError::ReadOnly)
    ));
    assert!(
        db.close().is_err(),
        "close must report the half-applied batch"
    );

    let db = open(&path);
    assert_eq!(db.engine().replayed_batches(), 1);
    for k in [&b"a"[..], b"b", b"c"] {
        assert_eq!(get(&db, k).as_deref(), Some(&b"1"[..]));
    }
    assert!(db.engine().check().is_clean());
    db.close().unwrap();
}

#[test]
fn a_batch_that_fails_after_its_first_group_is_finished_whole_by_the_next_open() {
    let scratch = Scratch::new("half-batch-group");
    let path = scratch.path("eagle.pool");
    let db = open(&path);
    // Keys 0..10 exist; the MSET overwrites them and adds 10..40, published in groups.
    let key = |i: usize| format!("key-{i:03}").into_bytes();
    for i in 0..10 {
        db.set(&key(i), b"old", SetOptions::default()).unwrap();
    }
    let keys: Vec<Vec<u8>> = (0..40).map(key).collect();
    let pairs: Vec<(&[u8], &[u8])> = keys.iter().map(|k| (&k[..], &b"new"[..])).collect();
    let failed = fault::with(Fault::FailRunAfterGroup, || db.mset(&pairs));
    assert!(failed.is_err(), "the run's failure must fail the batch");
    assert!(!db.engine().writable());
    // What the first group published is there; the rest is not.
    let new = keys
        .iter()
        .filter(|k| get(&db, k).as_deref() == Some(&b"new"[..]))
        .count();
    assert!(
        (2..40).contains(&new),
        "{new} of 40 keys applied before the failure"
    );
    assert!(db.close().is_err());

    let db = open(&path);
    assert_eq!(db.engine().replayed_batches(), 1);
    for k in &keys {
        assert_eq!(get(&db, k).as_deref(), Some(&b"new"[..]));
    }
    assert_eq!(db.dbsize(), 40);
    assert!(db.engine().check().is_clean());
    db.close().unwrap();
}

#[test]
fn a_transaction_whose_batch_fails_half_applied_is_rolled_back_whole_by_the_next_open() {
    let scratch = Scratch::new("half-batch-tx");
    let path = scratch.path("eagle.pool");
    let db = open(&path);
    db.set(b"a", b"0", SetOptions::default()).unwrap();
    db.set(b"x", b"0", SetOptions::default()).unwrap();
    {
        let _atomic = db.atomic();
        db.set(b"x", b"tx", SetOptions::default()).unwrap();
        db.expire_at(
            b"x",
            4_000_000_000_000,
            eagle_core::db::ExpireCondition::Always,
        )
        .unwrap();
        let failed = fault::with(Fault::FailBatchMidway, || {
            db.mset(&[(b"a", b"1"), (b"b", b"1"), (b"c", b"1")])
        });
        assert!(failed.is_err());
    }
    let expires_before_close = db.stats().expires;
    assert_eq!(expires_before_close, 1);
    assert!(db.close().is_err());

    let db = open(&path);
    assert!(db.engine().rolled_back_undo_records() > 0);
    assert_eq!(get(&db, b"x").as_deref(), Some(&b"0"[..]));
    assert_eq!(get(&db, b"a").as_deref(), Some(&b"0"[..]));
    assert_eq!(get(&db, b"b"), None);
    assert_eq!(get(&db, b"c"), None);
    db.engine().index().wait_recovered().unwrap();
    assert_eq!(db.stats().expires, 0, "recounted after the rollback");
    let report = db.engine().check();
    assert!(report.is_clean(), "{:?}", report.problems);
    db.close().unwrap();
}

#[test]
fn a_large_hash_write_that_fails_half_applied_keeps_its_new_parts_for_the_redo() {
    let scratch = Scratch::new("half-batch-hash");
    let path = scratch.path("eagle.pool");
    let db = open(&path);
    let fields: Vec<Vec<u8>> = (0..600).map(|i| format!("f{i}").into_bytes()).collect();
    for chunk in fields.chunks(100) {
        let pairs: Vec<(&[u8], &[u8])> = chunk.iter().map(|f| (&f[..], &b"old"[..])).collect();
        db.hset(b"h", &pairs).unwrap();
    }
    // Existing fields spread over many parts: their new parts are published by one logged
    // batch of part words, whose second word's store fails.
    let changed: Vec<&[u8]> = fields.iter().step_by(37).map(|f| &f[..]).collect();
    let pairs: Vec<(&[u8], &[u8])> = changed.iter().map(|f| (*f, &b"new"[..])).collect();
    let failed = fault::with(Fault::FailBatchMidway, || db.hset(b"h", &pairs));
    assert!(matches!(failed, Err(DbError::ReadOnly)), "{failed:?}");
    let want = |f: &[u8]| {
        if changed.contains(&f) {
            &b"new"[..]
        } else {
            &b"old"[..]
        }
    };
    // Readers go on while writes wait for the reopen: every field reads its old or new value.
    for f in &fields {
        let got = db.hget(b"h", f).unwrap();
        assert!(
            got.as_deref() == Some(&b"old"[..]) || got.as_deref() == Some(want(f)),
            "field {} reads {got:?} while the batch is half applied",
            String::from_utf8_lossy(f)
        );
    }
    assert!(db.close().is_err());

    let db = open(&path);
    assert_eq!(db.engine().replayed_batches(), 1);
    assert_eq!(db.hlen(b"h").unwrap(), fields.len() as u64);
    for f in &fields {
        assert_eq!(db.hget(b"h", f).unwrap().as_deref(), Some(want(f)));
    }
    db.engine().index().wait_recovered().unwrap();
    let report = db.engine().check();
    assert!(report.is_clean(), "{:?}", report.problems);
    db.close().unwrap();
}

#[test]
fn a_large_hash_write_applied_behind_a_batch_that_fails_is_not_reported_done() {
    use std::sync::{Arc, mpsc};
    use std::time::Duration;

    let scratch = Scratch::new("half-batch-behind");
    let path = scratch.path("eagle.pool");
    let db = Arc::new(open(&path));
    let fields: Vec<Vec<u8>> = (0..600).map(|i| format!("f{i}").into_bytes()).collect();
    for chunk in fields.chunks(100) {
        let pairs: Vec<(&[u8], &[u8])> = chunk.iter().map(|f| (&f[..], &b"old"[..])).collect();
        db.hset(b"h", &pairs).unwrap();
    }
    // The three writers' keys in distinct key-lock stripes (the low 10 bits of the key's hash),
    // so each waits for the log, not for another's locks.
    let stripe = |k: &[u8]| db.engine().index().hash(k) & 1023;
    let mut taken = vec![stripe(b"h")];
    let mut pick = |prefix: &str| {
        let k = (0..)
            .map(|i| format!("{prefix}{i}").into_bytes())
            .find(|k| !taken.contains(&stripe(k)))
            .unwrap();
        taken.push(stripe(&k));
        k
    };
    let (a1, a2, c1, c2) = (pick("a"), pick("a"), pick("c"), pick("c"));
    let appends = || db.engine().wal().stats().appends;
    let logged_before = appends();
    // A: logged, then held before it applies anything: the log's head stays at its record.
    let older = {
        let db = db.clone();
        std::thread::spawn(move || {
            fault::with(Fault::PauseAfterBatchLog, || {
                let _ = db.mset(&[(&a1[..], &b"A"[..]), (&a2[..], &b"A"[..])]);
            })
        })
    };
    assert!(
        fault::wait_paused(Duration::from_secs(30)),
        "A never paused"
    );
    // B: existing fields over many parts, published by one logged batch of part words, which
    // applies and then waits for the head to pass its record, behind A's.
    let changed: Vec<Vec<u8>> = fields.iter().step_by(37).cloned().collect();
    let (sent, result) = mpsc::channel();
    let behind = {
        let (db, changed) = (db.clone(), changed.clone());
        std::thread::spawn(move || {
            let pairs: Vec<(&[u8], &[u8])> =
                changed.iter().map(|f| (&f[..], &b"new"[..])).collect();
            sent.send(db.hset(b"h", &pairs)).unwrap();
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while appends() < logged_before + 2 {
        assert!(std::time::Instant::now() < deadline, "B never logged");
        std::thread::yield_now();
    }
    // C fails half applied: the engine refuses writes, and B's wait gives up with its record
    // still in the log, so the next open applies B again. B must not report success (nor go on
    // as if done: free the blocks it published, or double the table they are in).
    let failed = fault::with(Fault::FailBatchMidway, || {
        db.mset(&[(&c1[..], &b"C"[..]), (&c2[..], &b"C"[..])])
    });
    assert!(failed.is_err());
    let b = result
        .recv_timeout(Duration::from_secs(30))
        .expect("B ended");
    fault::release_paused();
    older.join().unwrap();
    behind.join().unwrap();
    assert!(
        matches!(b, Err(DbError::ReadOnly)),
        "B's HSET, applied behind a failed batch, returned {b:?}"
    );
    let db = Arc::into_inner(db).unwrap();
    assert!(db.close().is_err());

    let db = open(&path);
    // A, released, finished and passed the head over B's record too: only C is redone.
    assert_eq!(db.engine().replayed_batches(), 1);
    assert_eq!(db.hlen(b"h").unwrap(), fields.len() as u64);
    for f in &fields {
        let want = if changed.contains(f) { "new" } else { "old" };
        assert_eq!(db.hget(b"h", f).unwrap().as_deref(), Some(want.as_bytes()));
    }
    db.engine().index().wait_recovered().unwrap();
    let report = db.engine().check();
    assert!(report.is_clean(), "{:?}", report.problems);
    db.close().unwrap();
}
