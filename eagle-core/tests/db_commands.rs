//! The keyspace's command semantics (Redis 7's), one property per test, on a manual clock.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use eagle_core::db::{
    Clock, ExpireCondition, GetExExpiry, KeyType, SetCondition, SetExpiry, SetOptions, Ttl,
};
use eagle_core::pmem::FlushMode;
use eagle_core::{Db, DbError, DbOptions, PoolOptions};

const T0: u64 = 1_700_000_000_000;

struct Fixture {
    db: Option<Db>,
    time: Arc<AtomicU64>,
    path: PathBuf,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let dir = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let path = dir.join(format!("eagle-db-{}-{name}.pool", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let time = Arc::new(AtomicU64::new(T0));
        let mut f = Fixture {
            db: None,
            time,
            path,
        };
        f.reopen(false);
        f
    }

    fn reopen(&mut self, crash: bool) {
        if let Some(db) = self.db.take() {
            if crash {
                drop(db);
            } else {
                db.close().unwrap();
            }
        }
        let opts = DbOptions {
            pool: PoolOptions {
                size: 16 << 20,
                flush: Some(FlushMode::None),
                ..PoolOptions::default()
            },
            clock: Clock::Manual(self.time.clone()),
            recovery: None,
        };
        self.db = Some(Db::open(&self.path, opts).unwrap());
    }

    fn advance(&self, ms: u64) {
        self.time.fetch_add(ms, Ordering::Relaxed);
    }
}

impl std::ops::Deref for Fixture {
    type Target = Db;
    fn deref(&self) -> &Db {
        self.db.as_ref().unwrap()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn s(v: &[u8]) -> Option<Vec<u8>> {
    Some(v.to_vec())
}

#[test]
fn set_conditions_get_and_keepttl_follow_redis() {
    let db = Fixture::new("set");
    let nx = SetOptions {
        condition: SetCondition::IfAbsent,
        ..Default::default()
    };
    let xx = SetOptions {
        condition: SetCondition::IfPresent,
        ..Default::default()
    };
    assert!(!db.set(b"k", b"1", xx).unwrap().written);
    assert!(db.set(b"k", b"1", nx).unwrap().written);
    assert!(!db.set(b"k", b"2", nx).unwrap().written);
    assert_eq!(db.get(b"k").unwrap(), s(b"1"));
    let get = SetOptions {
        get: true,
        expiry: SetExpiry::At(T0 + 5000),
        ..Default::default()
    };
    assert_eq!(db.set(b"k", b"2", get).unwrap().old, s(b"1"));
    let keep = SetOptions {
        expiry: SetExpiry::Keep,
        ..Default::default()
    };
    db.set(b"k", b"3", keep).unwrap();
    assert_eq!(db.ttl(b"k").unwrap(), Ttl::At(T0 + 5000));
    db.set(b"k", b"4", SetOptions::default()).unwrap();
    assert_eq!(db.ttl(b"k").unwrap(), Ttl::Persistent);
    db.hset(b"h", &[(b"f", b"v")]).unwrap();
    assert_eq!(db.set(b"h", b"x", get), Err(DbError::WrongType));
    db.set(b"h", b"x", SetOptions::default()).unwrap(); // plain SET overwrites any type
    assert_eq!(db.key_type(b"h").unwrap(), Some(KeyType::String));
}

#[test]
fn a_run_of_sets_leaves_what_the_sets_one_by_one_would_expiries_included() {
    let db = Fixture::new("set-run");
    let ex = |at| SetOptions {
        expiry: SetExpiry::At(at),
        ..Default::default()
    };
    db.set(b"old", b"1", ex(T0 + 100)).unwrap();
    db.hset(b"h", &[(b"f", b"v")]).unwrap();
    let run = db.set_run(&[
        (b"a", b"1", 0),
        (b"b", b"2", T0 + 5000),
        (b"h", b"3", 0),
        (b"old", b"4", 0),
    ]);
    run.result.unwrap();
    assert_eq!((run.applied, run.grouped), (4, 4));
    assert_eq!(db.ttl(b"a").unwrap(), Ttl::Persistent);
    assert_eq!(db.ttl(b"b").unwrap(), Ttl::At(T0 + 5000));
    assert_eq!(
        db.ttl(b"old").unwrap(),
        Ttl::Persistent,
        "a plain SET clears it"
    );
    assert_eq!(db.key_type(b"h").unwrap(), Some(KeyType::String));
    assert_eq!(db.get(b"h").unwrap(), s(b"3"));
    assert_eq!(db.stats().expires, 1);
    // An expiry already past deletes the key, as SET ... PXAT does.
    let run = db.set_run(&[(b"c", b"1", 0), (b"a", b"x", T0 - 1), (b"b", b"y", T0 + 1)]);
    run.result.unwrap();
    assert_eq!(run.applied, 3);
    assert_eq!(db.get(b"a").unwrap(), None);
    assert_eq!(db.get(b"b").unwrap(), s(b"y"));
    assert_eq!(db.get(b"c").unwrap(), s(b"1"));
    assert_eq!(db.stats().keys, 4); // b, c, h, old
    assert_eq!(db.stats().expires, 1);
    db.advance(2);
    assert_eq!(db.get(b"b").unwrap(), None);
}

#[test]
fn expired_keys_vanish_on_access_and_by_the_sweep() {
    let db = Fixture::new("expiry");
    db.set(b"a", b"1", SetOptions::default()).unwrap();
    db.set(b"b", b"1", SetOptions::default()).unwrap();
    assert!(
        db.expire_at(b"a", (T0 + 1000) as i64, ExpireCondition::Always)
            .unwrap()
    );
    assert!(
        !db.expire_at(b"a", (T0 + 2000) as i64, ExpireCondition::Nx)
            .unwrap()
    );
    assert!(
        !db.expire_at(b"a", (T0 + 500) as i64, ExpireCondition::Gt)
            .unwrap()
    );
    assert!(
        db.expire_at(b"a", (T0 + 500) as i64, ExpireCondition::Lt)
            .unwrap()
    );
    assert!(
        !db.expire_at(b"b", (T0 + 500) as i64, ExpireCondition::Gt)
            .unwrap()
    );
    assert!(
        db.expire_at(b"b", (T0 + 500) as i64, ExpireCondition::Lt)
            .unwrap()
    );
    assert!(db.persist(b"b").unwrap());
    assert_eq!(db.ttl(b"a").unwrap(), Ttl::At(T0 + 500));
    db.advance(500);
    assert_eq!(db.get(b"a").unwrap(), None);
    assert_eq!(db.ttl(b"a").unwrap(), Ttl::Missing);
    assert_eq!(db.exists(&[b"a", b"b", b"b"]).unwrap(), 2);
    assert_eq!(db.dbsize(), 2); // not yet removed, as in Redis
    let mut removed = 0;
    for _ in 0..10 {
        removed += db.expire_cycle(100).unwrap().1;
    }
    assert_eq!(removed, 1);
    assert_eq!(db.dbsize(), 1);
    // An expiry in the past deletes at once.
    assert!(db.expire_at(b"b", 1, ExpireCondition::Always).unwrap());
    assert_eq!(db.dbsize(), 0);
}

#[test]
fn expiry_times_survive_crash_and_clean_reopen() {
    let mut db = Fixture::new("expiry-reopen");
    let opts = SetOptions {
        expiry: SetExpiry::At(T0 + 10_000),
        ..Default::default()
    };
    db.set(b"k", b"v", opts).unwrap();
    db.reopen(true);
    assert_eq!(db.ttl(b"k").unwrap(), Ttl::At(T0 + 10_000));
    db.reopen(false);
    db.advance(10_000);
    assert_eq!(db.get(b"k").unwrap(), None);
}

#[test]
fn counters_reject_non_integers_and_overflow() {
    let db = Fixture::new("incr");
    assert_eq!(db.incr_by(b"n", 5).unwrap(), 5);
    assert_eq!(db.incr_by(b"n", -7).unwrap(), -2);
    db.set(b"big", b"9223372036854775806", SetOptions::default())
        .unwrap();
    assert_eq!(db.incr_by(b"big", 1).unwrap(), i64::MAX);
    assert_eq!(db.incr_by(b"big", 1), Err(DbError::Overflow));
    for bad in [&b"1.5"[..], b" 1", b"01", b"", b"abc"] {
        db.set(b"x", bad, SetOptions::default()).unwrap();
        assert_eq!(db.incr_by(b"x", 1), Err(DbError::NotInteger));
    }
    assert_eq!(db.incr_by_float(b"f", 10.5).unwrap(), "10.5");
    assert_eq!(db.incr_by_float(b"f", 0.1).unwrap(), "10.6");
    let big = db.incr_by_float(b"f", 1e308).unwrap();
    assert_eq!((big.len(), &big[..4]), (309, "1000"));
    assert_eq!(db.incr_by_float(b"f", 1e308), Err(DbError::NanOrInfinity));
    db.hset(b"h", &[(b"f", b"1")]).unwrap();
    assert_eq!(db.incr_by(b"h", 1), Err(DbError::WrongType));
}

#[test]
fn ranges_follow_redis_index_rules() {
    let db = Fixture::new("ranges");
    db.set(b"s", b"Hello World", SetOptions::default()).unwrap();
    assert_eq!(db.getrange(b"s", 0, 4).unwrap(), b"Hello");
    assert_eq!(db.getrange(b"s", -5, -1).unwrap(), b"World");
    assert_eq!(db.getrange(b"s", -1, -5).unwrap(), b"");
    assert_eq!(db.getrange(b"s", 5, 1000).unwrap(), b" World");
    assert_eq!(db.getrange(b"missing", 0, -1).unwrap(), b"");
    assert_eq!(db.setrange(b"s", 6, b"Redis").unwrap(), 11);
    assert_eq!(db.get(b"s").unwrap(), s(b"Hello Redis"));
    assert_eq!(db.setrange(b"pad", 3, b"x").unwrap(), 4);
    assert_eq!(db.get(b"pad").unwrap(), s(b"\0\0\0x"));
    assert_eq!(db.setrange(b"none", 5, b"").unwrap(), 0);
    assert_eq!(db.exists(&[b"none"]).unwrap(), 0);
    assert_eq!(
        db.setrange(b"s", 512 * 1024 * 1024, b"x"),
        Err(DbError::StringTooLong)
    );
    assert_eq!(db.append(b"s", b"\r\n\0").unwrap(), 14);
    assert_eq!(db.strlen(b"s").unwrap(), 14);
}

#[test]
fn multi_key_commands_are_atomic_and_survive_reopen() {
    let mut db = Fixture::new("multi");
    db.mset(&[(b"a", b"1"), (b"b", b"2"), (b"a", b"3")])
        .unwrap();
    assert_eq!(
        db.mget(&[b"a", b"b", b"c"]).unwrap(),
        vec![s(b"3"), s(b"2"), None]
    );
    assert!(!db.msetnx(&[(b"c", b"1"), (b"a", b"x")]).unwrap());
    assert_eq!(db.get(b"c").unwrap(), None);
    assert!(db.msetnx(&[(b"c", b"1"), (b"d", b"2")]).unwrap());
    db.reopen(true);
    assert_eq!(
        db.mget(&[b"a", b"c", b"d"]).unwrap(),
        vec![s(b"3"), s(b"1"), s(b"2")]
    );
    assert!(db.rename(b"a", b"z", false).unwrap());
    assert_eq!(db.rename(b"a", b"z", false), Err(DbError::NoSuchKey));
    assert!(!db.rename(b"z", b"b", true).unwrap());
    assert!(db.rename(b"z", b"z", false).unwrap());
    assert_eq!(db.del(&[b"b", b"c", b"b", b"nope"]).unwrap(), 2);
    assert!(db.copy(b"z", b"y", false).unwrap());
    assert!(!db.copy(b"z", b"y", false).unwrap());
    assert_eq!(db.copy(b"z", b"z", false), Err(DbError::SameObject));
    db.reopen(false);
    let mut keys = db.keys(b"*").unwrap();
    keys.sort();
    assert_eq!(keys, vec![b"d".to_vec(), b"y".to_vec(), b"z".to_vec()]);
    assert!(db.engine().check().is_clean());
    db.flushall().unwrap();
    assert_eq!(db.dbsize(), 0);
    db.reopen(true);
    assert_eq!(db.dbsize(), 0);
    assert!(db.engine().check().is_clean());
}

#[test]
fn hashes_keep_insertion_order_and_drop_empty_keys() {
    let db = Fixture::new("hash");
    assert_eq!(
        db.hset(b"h", &[(b"a", b"1"), (b"b", b"2"), (b"a", b"3")])
            .unwrap(),
        2
    );
    assert_eq!(
        db.hgetall(b"h").unwrap(),
        vec![
            (b"a".to_vec(), b"3".to_vec()),
            (b"b".to_vec(), b"2".to_vec())
        ]
    );
    assert!(!db.hsetnx(b"h", b"a", b"x").unwrap());
    assert_eq!(db.hincrby(b"h", b"n", 5).unwrap(), 5);
    assert_eq!(db.hincrby(b"h", b"a", i64::MAX), Err(DbError::Overflow));
    db.hset(b"h", &[(b"s", b"x")]).unwrap();
    assert_eq!(db.hincrby(b"h", b"s", 1), Err(DbError::HashNotInteger));
    assert_eq!(db.hincrbyfloat(b"h", b"s", 1.0), Err(DbError::HashNotFloat));
    assert_eq!(db.hincrbyfloat(b"h", b"n", 0.5).unwrap(), "5.5");
    assert_eq!(db.hlen(b"h").unwrap(), 4);
    assert_eq!(db.hstrlen(b"h", b"n").unwrap(), 3);
    assert_eq!(db.hmget(b"h", &[b"b", b"zz"]).unwrap(), vec![s(b"2"), None]);
    assert_eq!(db.hrandfield(b"h", Some(10), true).unwrap().len(), 4);
    assert_eq!(db.hrandfield(b"h", Some(-10), true).unwrap().len(), 10);
    assert_eq!(db.hrandfield(b"h", Some(i64::MAX), false).unwrap().len(), 4);
    assert_eq!(
        db.hrandfield(b"h", Some(i64::MIN), false),
        Err(DbError::ValueOutOfRange)
    );
    // A missing key answers first, as in Redis.
    assert_eq!(
        db.hrandfield(b"none", Some(i64::MIN), false),
        Ok(Vec::new())
    );
    assert_eq!(db.hdel(b"h", &[b"a", b"b", b"n", b"s", b"x"]).unwrap(), 4);
    assert_eq!(db.exists(&[b"h"]).unwrap(), 0);
    db.set(b"str", b"v", SetOptions::default()).unwrap();
    assert_eq!(db.hget(b"str", b"f"), Err(DbError::WrongType));
    assert_eq!(db.get(b"str").unwrap(), s(b"v"));
}

#[test]
fn getex_and_getdel_change_expiry_and_presence() {
    let db = Fixture::new("getex");
    db.set(b"k", b"v", SetOptions::default()).unwrap();
    assert_eq!(
        db.getex(b"k", Some(GetExExpiry::At(T0 + 100))).unwrap(),
        s(b"v")
    );
    assert_eq!(db.ttl(b"k").unwrap(), Ttl::At(T0 + 100));
    assert_eq!(db.getex(b"k", Some(GetExExpiry::Persist)).unwrap(), s(b"v"));
    assert_eq!(db.ttl(b"k").unwrap(), Ttl::Persistent);
    assert_eq!(db.getdel(b"k").unwrap(), s(b"v"));
    assert_eq!(db.getdel(b"k").unwrap(), None);
}

#[test]
fn scan_filters_by_pattern_and_type_and_visits_every_key() {
    let db = Fixture::new("scan");
    for i in 0..3000u32 {
        db.set(format!("user:{i}").as_bytes(), b"v", SetOptions::default())
            .unwrap();
    }
    db.hset(b"user:h", &[(b"f", b"v")]).unwrap();
    let (mut cursor, mut seen) = (0, std::collections::HashSet::new());
    loop {
        let (next, keys) = db
            .scan(cursor, Some(b"user:1*"), 10, Some(KeyType::String))
            .unwrap();
        seen.extend(keys);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let want = (0..3000u32)
        .map(|i| format!("user:{i}"))
        .filter(|k| k.starts_with("user:1"))
        .count();
    assert_eq!(seen.len(), want);
    assert!(db.randomkey().unwrap().is_some());
}

#[test]
fn large_hashes_move_to_a_table_and_survive_reopen_rename_copy_and_delete() {
    let mut db = Fixture::new("big-hash");
    let empty = db.engine().check().heap_used; // the index's own segment and directory
    let n = 5000u32;
    for chunk in (0..n).collect::<Vec<_>>().chunks(7) {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = chunk
            .iter()
            .map(|i| (format!("f{i}").into_bytes(), format!("v{i}").into_bytes()))
            .collect();
        let refs: Vec<(&[u8], &[u8])> = pairs.iter().map(|(f, v)| (&f[..], &v[..])).collect();
        assert_eq!(db.hset(b"big", &refs).unwrap(), chunk.len() as u64);
    }
    assert_eq!(db.hlen(b"big").unwrap(), n as u64);
    assert_eq!(db.hget(b"big", b"f1234").unwrap(), s(b"v1234"));
    assert_eq!(db.hincrby(b"big", b"counter", 3).unwrap(), 3);
    assert_eq!(db.hdel(b"big", &[b"f0", b"f1", b"nope"]).unwrap(), 2);
    assert!(db.engine().check().is_clean(), "{:?}", db.engine().check());
    db.reopen(true);
    assert_eq!(db.hlen(b"big").unwrap(), n as u64 - 1); // recounted after the crash
    assert_eq!(db.hgetall(b"big").unwrap().len(), n as usize - 1);
    assert!(db.rename(b"big", b"moved", false).unwrap());
    assert!(db.copy(b"moved", b"copy", false).unwrap());
    assert_eq!(db.hdel(b"moved", &[b"f2"]).unwrap(), 1);
    assert_eq!(db.hget(b"copy", b"f2").unwrap(), s(b"v2"));
    db.reopen(false);
    assert!(db.engine().check().is_clean(), "{:?}", db.engine().check());
    assert_eq!(db.hlen(b"moved").unwrap(), n as u64 - 2);
    assert_eq!(db.del(&[b"moved", b"copy"]).unwrap(), 2);
    db.reopen(false);
    let report = db.engine().check();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.heap_used, empty, "every table and part reclaimed");
}

#[test]
fn a_string_shaped_like_a_table_reference_is_just_a_string() {
    let mut db = Fixture::new("table-shaped");
    let v = [1u8; 16]; // format byte 1 and 16 bytes long, like a large hash's value
    db.set(b"s", &v, SetOptions::default()).unwrap();
    db.reopen(true); // the sweep walks every record's owned blocks
    assert_eq!(db.get(b"s").unwrap(), s(&v));
    assert_eq!(db.dbsize(), 1);
    assert!(db.engine().check().is_clean());
    assert_eq!(db.del(&[b"s"]).unwrap(), 1);
}

#[test]
fn read_lookups_count_keyspace_hits_and_misses() {
    let db = Fixture::new("hits");
    let counts = |db: &Db| {
        let st = db.stats();
        (st.keyspace_hits, st.keyspace_misses)
    };
    db.set(b"s", b"v", SetOptions::default()).unwrap();
    let fields: Vec<(Vec<u8>, Vec<u8>)> = (0..100)
        .map(|i| (format!("f{i}").into_bytes(), b"v".to_vec()))
        .collect();
    let pairs: Vec<(&[u8], &[u8])> = fields.iter().map(|(f, v)| (&f[..], &v[..])).collect();
    db.hset(b"big", &pairs).unwrap(); // past the compact form: a table of parts
    db.expire_at(b"s", (T0 + 1000) as i64, ExpireCondition::Always)
        .unwrap();
    db.incr_by(b"n", 1).unwrap();
    assert_eq!(counts(&db), (0, 0), "writes do not count");

    assert_eq!(db.get(b"s").unwrap(), s(b"v"));
    assert_eq!(db.get(b"nosuch").unwrap(), None);
    assert_eq!(counts(&db), (1, 1));
    assert_eq!(db.get(b"big"), Err(DbError::WrongType)); // found: a hit
    assert_eq!(db.hget(b"big", b"f7").unwrap(), s(b"v"));
    assert_eq!(db.hmget(b"big", &[b"f1", b"nofield"]).unwrap().len(), 2);
    assert_eq!(db.hlen(b"big").unwrap(), 100);
    assert_eq!(
        counts(&db),
        (5, 1),
        "one lookup per command, whatever the fields"
    );
    let keys: [&[u8]; 3] = [b"s", b"nosuch", b"s"];
    assert_eq!(db.mget(&keys).unwrap().len(), 3);
    assert_eq!(db.exists(&keys).unwrap(), 2);
    assert_eq!(counts(&db), (9, 3), "one lookup per key");
    // WATCH's lookup does not count; TTL's does.
    assert_eq!(db.ttl_uncounted(b"s").unwrap(), Ttl::At(T0 + 1000));
    assert_eq!(counts(&db), (9, 3));
    assert_eq!(db.ttl(b"s").unwrap(), Ttl::At(T0 + 1000));
    assert_eq!(counts(&db), (10, 3));
    // An expired key is a miss.
    db.advance(1000);
    assert_eq!(db.get(b"s").unwrap(), None);
    assert_eq!(counts(&db), (10, 4));

    // Threads count on stripes of their own; the sum is exact once they are done.
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..1000 {
                    db.get(b"n").unwrap();
                    db.get(b"nosuch").unwrap();
                }
            });
        }
    });
    assert_eq!(counts(&db), (4010, 4004));

    // The sweep removes the expired key: counted in expired_keys.
    for _ in 0..100 {
        if db.stats().expired_keys > 0 {
            break;
        }
        db.expire_cycle(64).unwrap();
    }
    assert_eq!(db.stats().expired_keys, 1);
    db.reset_stats();
    let st = db.stats();
    assert_eq!(
        (st.keyspace_hits, st.keyspace_misses, st.expired_keys),
        (0, 0, 0)
    );
}

#[test]
fn get_with_answers_as_get_and_lends_only_live_strings() {
    let db = Fixture::new("get-with");
    let counts = |db: &Db| {
        let st = db.stats();
        (st.keyspace_hits, st.keyspace_misses)
    };
    let long = vec![b'x'; 5000];
    db.set(b"s", b"value", SetOptions::default()).unwrap();
    db.set(b"long", &long, SetOptions::default()).unwrap();
    db.set(b"soon", b"gone", SetOptions::default()).unwrap();
    db.expire_at(b"soon", (T0 + 10) as i64, ExpireCondition::Always)
        .unwrap();
    db.hset(b"h", &[(b"f", b"v")]).unwrap();

    assert_eq!(db.get_with(b"s", |v| v.to_vec()).unwrap(), s(b"value"));
    assert_eq!(
        db.get_with(b"long", |v| v == &long[..]).unwrap(),
        Some(true)
    );
    assert_eq!(db.get_with(b"nosuch", |v| v.len()).unwrap(), None);
    let mut called = false;
    assert_eq!(
        db.get_with(b"h", |_| called = true),
        Err(DbError::WrongType)
    );
    assert!(!called, "a hash's encoding is never lent as a string");
    assert_eq!(
        counts(&db),
        (3, 1),
        "counted as GET: a key of another type is a hit"
    );
    db.advance(20);
    assert_eq!(db.get_with(b"soon", |_| called = true).unwrap(), None);
    assert!(!called, "an expired key's value is never shown");
    assert_eq!(db.get(b"soon").unwrap(), None);
    assert_eq!(counts(&db), (3, 3));
}

/// `len` bytes of zeros that cost no memory until read: a private anonymous mapping, unmapped
/// on drop. For keys and fields longer than a record's 4-byte length holds.
struct Untouched {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Untouched {
    fn new(len: usize) -> Untouched {
        // SAFETY: a fresh anonymous mapping at an address of the kernel's choosing; nothing
        // else refers to it.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED, "mmap of {len} bytes");
        Untouched { ptr, len }
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is readable, `len` bytes long, and lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

impl Drop for Untouched {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, which no slice outlives (they borrow `self`).
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

#[test]
fn keys_and_hash_fields_longer_than_4_gib_are_refused_and_nothing_is_written() {
    let db = Fixture::new("too-long");
    let huge = Untouched::new(eagle_core::db::MAX_KEY_LEN + 1);
    let long = huge.bytes();
    let too_long = |r: Result<_, DbError>| matches!(r, Err(DbError::TooLong));
    assert!(too_long(
        db.set(long, b"v", SetOptions::default()).map(|_| ())
    ));
    // A batch with one such key writes none of its keys.
    assert!(too_long(db.mset(&[(b"short", b"v"), (long, b"v")])));
    db.set(b"src", b"v", SetOptions::default()).unwrap();
    assert!(too_long(db.rename(b"src", long, false).map(|_| ())));
    assert!(too_long(
        db.hset(b"h", &[(b"f", b"v"), (long, b"v")]).map(|_| ())
    ));
    assert!(too_long(db.hset(b"h", &[(b"f", long)]).map(|_| ())));
    assert!(too_long(db.hsetnx(b"h", long, b"v").map(|_| ())));
    // A value that fits alone, but not with its field and lengths in a part; into a hash
    // that already has parts (more than 32 fields) and into a new one.
    let fits_alone = &long[..eagle_core::db::MAX_KEY_LEN - 4];
    let fields: Vec<(Vec<u8>, &[u8])> = (0..40)
        .map(|i| (format!("f{i}").into_bytes(), &b"v"[..]))
        .collect();
    let pairs: Vec<(&[u8], &[u8])> = fields.iter().map(|(f, v)| (&f[..], *v)).collect();
    db.hset(b"big", &pairs).unwrap();
    assert!(too_long(db.hset(b"big", &[(b"f", fits_alone)]).map(|_| ())));
    assert!(too_long(db.hset(b"h", &[(b"f", fits_alone)]).map(|_| ())));
    assert_eq!(db.hlen(b"big").unwrap(), 40);
    db.hdel(b"big", &[b"f0"]).unwrap();
    // Deleting a field that long deletes nothing, as for any absent field.
    assert_eq!(db.hdel(b"big", &[long]).unwrap(), 0);
    assert_eq!(db.dbsize(), 2);
    assert_eq!(db.get(b"src").unwrap(), Some(b"v".to_vec()));
    assert_eq!(db.get(b"short").unwrap(), None);
    assert_eq!(db.hlen(b"h").unwrap(), 0);
    assert_eq!(db.hlen(b"big").unwrap(), 39);
}
