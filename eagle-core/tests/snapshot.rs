//! Snapshots of a keyspace (`Db::snapshot_to`, `Db::restore_from`), one property per test:
//! they round trip every kind of value into a pool of another size, keep expiry times, are a
//! point in time under concurrent writes, and a damaged file or a non-empty target is refused
//! before anything is written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use eagle_core::db::{
    Clock, ExpireCondition, KeyType, RestoreOptions, SetOptions, SnapshotError, SnapshotStats, Ttl,
    verify_snapshot,
};
use eagle_core::pmem::FlushMode;
use eagle_core::{Db, DbOptions, PoolOptions};

const T0: u64 = 1_700_000_000_000;

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let d = base.join(format!("eagle-snapshot-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn open(path: &Path, size: u64, time: &Arc<AtomicU64>) -> Db {
    Db::open(
        path,
        DbOptions {
            pool: PoolOptions {
                size,
                flush: Some(FlushMode::None),
                ..PoolOptions::default()
            },
            clock: Clock::Manual(time.clone()),
            recovery: None,
        },
    )
    .unwrap()
}

#[derive(Debug, PartialEq, Eq)]
enum Val {
    Str(Vec<u8>),
    Hash(BTreeMap<Vec<u8>, Vec<u8>>),
}

/// Every live key: its value and its expiry.
fn contents(db: &Db) -> Contents {
    let mut out = BTreeMap::new();
    for k in db.keys(b"*").unwrap() {
        let v = match db.key_type(&k).unwrap().unwrap() {
            KeyType::String => Val::Str(db.get(&k).unwrap().unwrap()),
            KeyType::Hash => Val::Hash(db.hgetall(&k).unwrap().into_iter().collect()),
        };
        out.insert(k.clone(), (v, db.ttl(&k).unwrap()));
    }
    out
}

fn set(db: &Db, k: &[u8], v: &[u8]) {
    db.set(k, v, SetOptions::default()).unwrap();
}

/// Strings (binary keys and values, empty ones), a small hash, a hash past the compact limit
/// (table form), keys with an expiry, and one expired but not yet removed.
fn populate(db: &Db) {
    set(db, b"plain", b"value");
    set(db, b"bin\0key\r\n", b"\0\r\n\xff value with NUL and CRLF");
    set(db, b"", b"empty key");
    set(db, b"empty value", b"");
    set(db, &[b'x'; 3000], &vec![7u8; 100_000]);
    for i in 0..500 {
        set(
            db,
            format!("key:{i}").as_bytes(),
            format!("v{i}").as_bytes(),
        );
    }
    db.hset(
        b"small",
        &[(b"f1", b"a"), (b"f\0\r\n", b"b\r\n"), (b"", b"")],
    )
    .unwrap();
    let fields: Vec<(Vec<u8>, Vec<u8>)> = (0..200)
        .map(|i| {
            (
                format!("field{i}").into_bytes(),
                format!("value{i}").into_bytes(),
            )
        })
        .collect();
    let pairs: Vec<(&[u8], &[u8])> = fields.iter().map(|(f, v)| (&f[..], &v[..])).collect();
    db.hset(b"large", &pairs).unwrap();
    set(db, b"expiring", b"soon");
    db.expire_at(b"expiring", (T0 + 60_000) as i64, ExpireCondition::Always)
        .unwrap();
    db.expire_at(b"large", (T0 + 90_000) as i64, ExpireCondition::Always)
        .unwrap();
    set(db, b"expired", b"gone");
    db.expire_at(b"expired", (T0 + 10) as i64, ExpireCondition::Always)
        .unwrap();
}

type Contents = BTreeMap<Vec<u8>, (Val, Ttl)>;

/// A pool populated at T0, its snapshot taken 20 ms later (when "expired" has expired); the
/// snapshot's file, statistics and the keyspace's contents then.
fn populated_snapshot(dir: &Dir, time: &Arc<AtomicU64>) -> (PathBuf, SnapshotStats, Contents) {
    let src = open(&dir.join("src.pool"), 16 << 20, time);
    populate(&src);
    time.store(T0 + 20, Ordering::Relaxed);
    let file = dir.join("dump.eagle");
    let stats = src.snapshot_to(&file).unwrap();
    let want = contents(&src);
    src.close().unwrap();
    (file, stats, want)
}

#[test]
fn a_snapshot_round_trips_every_kind_of_value_into_a_pool_of_another_size() {
    let dir = Dir::new("roundtrip");
    let time = Arc::new(AtomicU64::new(T0));
    let (file, stats, want) = populated_snapshot(&dir, &time);
    assert_eq!(want.len(), 508);
    assert_eq!((stats.keys, stats.expired), (508, 1));
    assert_eq!(stats.bytes, std::fs::metadata(&file).unwrap().len());
    assert!(!dir.join("dump.eagle.tmp").exists());
    let info = verify_snapshot(&file).unwrap();
    assert_eq!((info.entries, info.header.created_ms), (508, T0 + 20));

    let dst = open(&dir.join("dst.pool"), 48 << 20, &time);
    let r = dst.restore_from(&file, RestoreOptions::default()).unwrap();
    assert_eq!((r.keys, r.expired, r.replaced), (508, 0, 0));
    assert_eq!(contents(&dst), want);
    assert_eq!(dst.ttl(b"expiring").unwrap(), Ttl::At(T0 + 60_000));
    assert_eq!(dst.ttl(b"large").unwrap(), Ttl::At(T0 + 90_000));
    assert_eq!(dst.hlen(b"large").unwrap(), 200);
    // The large hash is a working table again: a field update goes to its part.
    dst.hset(b"large", &[(b"field7", b"new")]).unwrap();
    assert_eq!(
        dst.hget(b"large", b"field7").unwrap(),
        Some(b"new".to_vec())
    );
    dst.close().unwrap();
    // And it survives a reopen.
    let dst = open(&dir.join("dst.pool"), 48 << 20, &time);
    assert_eq!(dst.dbsize(), 508);
    dst.close().unwrap();
}

#[test]
fn entries_expired_since_the_snapshot_are_left_out_of_a_restore() {
    let dir = Dir::new("expired");
    let time = Arc::new(AtomicU64::new(T0));
    let (file, _, _) = populated_snapshot(&dir, &time);
    time.store(T0 + 70_000, Ordering::Relaxed); // past "expiring", before "large"
    let dst = open(&dir.join("dst.pool"), 16 << 20, &time);
    let r = dst.restore_from(&file, RestoreOptions::default()).unwrap();
    assert_eq!((r.keys, r.expired), (507, 1));
    assert_eq!(dst.get(b"expiring").unwrap(), None);
    assert_eq!(dst.hlen(b"large").unwrap(), 200);
}

#[test]
fn a_restore_into_a_non_empty_keyspace_is_refused_unless_replacing() {
    let dir = Dir::new("nonempty");
    let time = Arc::new(AtomicU64::new(T0));
    let (file, _, want) = populated_snapshot(&dir, &time);
    let dst = open(&dir.join("dst.pool"), 16 << 20, &time);
    set(&dst, b"mine", b"keep me");
    let e = dst
        .restore_from(&file, RestoreOptions::default())
        .unwrap_err();
    assert!(matches!(e, SnapshotError::NotEmpty { keys: 1 }), "{e}");
    assert!(e.to_string().contains("not empty (1 keys)"), "{e}");
    assert_eq!(dst.get(b"mine").unwrap(), Some(b"keep me".to_vec()));
    assert_eq!(dst.dbsize(), 1);

    let r = dst
        .restore_from(&file, RestoreOptions { replace: true })
        .unwrap();
    assert_eq!(r.replaced, 1);
    assert_eq!(dst.get(b"mine").unwrap(), None);
    assert_eq!(contents(&dst), want);
}

#[test]
fn a_damaged_snapshot_is_refused_before_anything_is_written() {
    let dir = Dir::new("damaged");
    let time = Arc::new(AtomicU64::new(T0));
    let (file, _, _) = populated_snapshot(&dir, &time);
    let good = std::fs::read(&file).unwrap();
    let dst = open(&dir.join("dst.pool"), 16 << 20, &time);
    set(&dst, b"mine", b"keep me");

    // Damage near the end (the last entries), so a restore writing as it read would have
    // written most of the file before noticing.
    let mut bad = good.clone();
    let at = good.len() - 40;
    bad[at] ^= 0x10;
    std::fs::write(&file, &bad).unwrap();
    // With `replace`, the keyspace would be emptied first if the file were not verified first.
    let e = dst
        .restore_from(&file, RestoreOptions { replace: true })
        .unwrap_err();
    assert!(matches!(e, SnapshotError::Corrupted { .. }), "{e}");
    assert!(
        e.to_string().contains("snapshot is corrupted: entry"),
        "{e}"
    );
    assert!(verify_snapshot(&file).is_err());
    std::fs::write(&file, &good[..good.len() - 1]).unwrap();
    let e = dst
        .restore_from(&file, RestoreOptions { replace: true })
        .unwrap_err();
    assert!(matches!(e, SnapshotError::Corrupted { .. }), "{e}");
    std::fs::write(&file, b"REDIS0011 not ours").unwrap();
    let e = dst
        .restore_from(&file, RestoreOptions { replace: true })
        .unwrap_err();
    assert!(matches!(e, SnapshotError::NotASnapshot { .. }), "{e}");
    // Nothing was written, nothing removed.
    assert_eq!(dst.dbsize(), 1);
    assert_eq!(dst.get(b"mine").unwrap(), Some(b"keep me".to_vec()));
}

#[test]
fn a_failed_snapshot_leaves_nothing_under_the_final_name() {
    let dir = Dir::new("failed");
    let time = Arc::new(AtomicU64::new(T0));
    let db = open(&dir.join("src.pool"), 16 << 20, &time);
    set(&db, b"k", b"v");
    let e = db.snapshot_to(dir.join("missing/dump.eagle")).unwrap_err();
    assert!(matches!(e, SnapshotError::Io { op: "create", .. }), "{e}");
    assert!(e.to_string().contains("missing/dump.eagle.tmp"), "{e}");
    // An earlier snapshot stays whole until a new one has replaced it.
    let file = dir.join("dump.eagle");
    db.snapshot_to(&file).unwrap();
    let before = std::fs::read(&file).unwrap();
    std::fs::create_dir(dir.join("dump.eagle.tmp")).unwrap(); // the next one cannot be created
    assert!(db.snapshot_to(&file).is_err());
    assert_eq!(std::fs::read(&file).unwrap(), before);
}

#[test]
fn a_snapshot_under_concurrent_writes_is_a_point_in_time() {
    // One writer sets key 0, 1, 2, ... in order (each durable before the next): any point in
    // time holds exactly a prefix of that sequence, and a snapshot must too. A second writer
    // keeps two keys equal with MSET: a snapshot must never see them differ.
    let dir = Dir::new("concurrent");
    let time = Arc::new(AtomicU64::new(T0));
    let db = Arc::new(open(&dir.join("src.pool"), 64 << 20, &time));
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (db, stop, written) = (db.clone(), stop.clone(), written.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) && i < 100_000 {
                    if w == 0 {
                        set(&db, format!("seq:{i}").as_bytes(), b"x");
                        written.store(i + 1, Ordering::Release);
                    } else {
                        let v = i.to_string();
                        db.mset(&[(b"pair:a", v.as_bytes()), (b"pair:b", v.as_bytes())])
                            .unwrap();
                    }
                    i += 1;
                }
            })
        })
        .collect();
    let mut cut = 0;
    for round in 0..6 {
        while written.load(Ordering::Acquire) < 2000 * (round + 1) {
            std::thread::yield_now();
        }
        let before = written.load(Ordering::Acquire);
        let file = dir.join(&format!("dump{round}.eagle"));
        db.snapshot_to(&file).unwrap();
        let restored = open(&dir.join(&format!("r{round}.pool")), 64 << 20, &time);
        restored
            .restore_from(&file, RestoreOptions::default())
            .unwrap();
        let n = restored.keys(b"seq:*").unwrap().len() as u64;
        assert!(
            n >= before,
            "round {round}: {n} keys, {before} acknowledged before"
        );
        for i in 0..n {
            assert!(
                restored
                    .get(format!("seq:{i}").as_bytes())
                    .unwrap()
                    .is_some(),
                "round {round}: seq:{i} missing among {n}: not a point in time"
            );
        }
        assert_eq!(
            restored.get(b"pair:a").unwrap(),
            restored.get(b"pair:b").unwrap(),
            "round {round}: an MSET seen half done"
        );
        // The writer was still going: the snapshot cut its sequence (not merely its end).
        if n < 100_000 {
            cut += 1;
        }
        restored.close().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    assert!(cut > 0, "every snapshot came after the writer had finished");
}
