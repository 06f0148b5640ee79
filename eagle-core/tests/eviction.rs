//! Eviction from a full pool (`Db::evict`, `Db::with_eviction`): with an evicting policy every
//! write of a stream several times the pool's size succeeds, the keys left are exactly the
//! ones written minus the ones counted as evicted, each with its last value, and the pool checks
//! clean and reopens with them; 4 threads writing at once almost never fail. `volatile-ttl`
//! never evicts a key without an expiry, prefers the soonest to expire, and refuses once its
//! samples find no key with an expiry.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{open_db_sized, pool_path};
use eagle_core::Db;
use eagle_core::db::{DbError, EvictionPolicy, SetExpiry, SetOptions};
use pmem_emulation::SplitMix64;

const POOL: u64 = 32 << 20;

fn key(i: u64) -> Vec<u8> {
    format!("key:{i:08}").into_bytes()
}

fn value(i: u64, version: u64) -> Vec<u8> {
    let mut v = format!("{i}/{version}:").into_bytes();
    v.resize(100, b'v');
    v
}

/// What a stream of writes left, as the test expects it.
struct Written {
    /// Each key's last acknowledged value (whether or not it was evicted since).
    model: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Acknowledged writes that created a key (it was absent just before).
    created: u64,
    /// The first error.
    err: Option<DbError>,
}

/// A stream of SETs (mostly of new keys, some overwrites, which may recreate an evicted key)
/// and three-key MSETs, each run through `with_eviction`.
fn write_stream(db: &Db, writes: u64, seed: u64) -> Written {
    let mut rng = SplitMix64::new(seed);
    let mut model = BTreeMap::new();
    let mut created = 0;
    let mut next = 0u64;
    for version in 0..writes {
        let r = rng.next_u64() % 10;
        let ids: Vec<u64> = if r < 7 || next < 10 {
            next += 1;
            vec![next - 1]
        } else if r < 9 {
            vec![rng.next_u64() % next]
        } else {
            next += 3;
            vec![next - 3, next - 2, next - 1]
        };
        let pairs: Vec<(Vec<u8>, Vec<u8>)> =
            ids.iter().map(|&i| (key(i), value(i, version))).collect();
        let keys: Vec<&[u8]> = pairs.iter().map(|p| &p.0[..]).collect();
        // Eviction never takes a key of the write it makes room for, so this stays true.
        let absent = keys.len() as u64 - db.exists(&keys).unwrap();
        let done = db.with_eviction(&keys, |_| match &pairs[..] {
            [(k, v)] => db.set(k, v, SetOptions::default()).map(drop),
            _ => {
                let refs: Vec<(&[u8], &[u8])> =
                    pairs.iter().map(|(k, v)| (&k[..], &v[..])).collect();
                db.mset(&refs)
            }
        });
        if let Err(err) = done {
            return Written {
                model,
                created,
                err: Some(err),
            };
        }
        created += absent;
        model.extend(pairs);
    }
    Written {
        model,
        created,
        err: None,
    }
}

/// Every key `db` holds is in `model` with the model's value; `db` holds exactly `expect` keys.
fn assert_survivors_hold_their_last_values(
    db: &Db,
    model: &BTreeMap<Vec<u8>, Vec<u8>>,
    expect: u64,
) {
    let mut held = 0u64;
    for (k, v) in model {
        if let Some(got) = db.get(k).unwrap() {
            assert_eq!(
                &got,
                v,
                "{} holds a stale value",
                String::from_utf8_lossy(k)
            );
            held += 1;
        }
    }
    assert_eq!(held, expect, "keys held");
    assert_eq!(db.dbsize(), expect, "DBSIZE");
    assert_eq!(db.keys(b"*").unwrap().len() as u64, expect, "KEYS *");
}

#[test]
fn allkeys_random_lets_a_stream_several_times_the_pool_succeed_and_loses_only_counted_keys() {
    let path = pool_path("evict-allkeys");
    let db = open_db_sized(&path, POOL);
    db.set_eviction(EvictionPolicy::AllKeysRandom);
    let Written {
        model,
        created,
        err,
    } = write_stream(&db, 450_000, 7);
    assert_eq!(err, None, "a write failed with eviction on");
    let stats = db.stats();
    assert!(
        stats.evicted_keys > created / 3,
        "evicted {} of {created} keys created: the stream did not overfill the pool",
        stats.evicted_keys,
    );
    let expect = created - stats.evicted_keys;
    assert_survivors_hold_their_last_values(&db, &model, expect);
    let report = db.engine().check();
    assert!(report.is_clean(), "check after eviction: {report:?}");
    // Inside a transaction evicting would make no room (its frees wait for its end): nothing
    // is evicted and a write that does not fit fails.
    {
        let _tx = db.atomic();
        let big = vec![b'b'; 300_000];
        let r = db.with_eviction(&[b"big"], |_| db.set(b"big", &big, SetOptions::default()));
        assert_eq!(r.unwrap_err(), DbError::OutOfMemory);
        assert_eq!(db.stats().evicted_keys, stats.evicted_keys);
    }
    println!(
        "{created} keys created, {} evicted, {} held; heap {:?}",
        stats.evicted_keys, expect, stats.heap
    );
    db.close().unwrap();
    let db = open_db_sized(&path, POOL);
    assert_survivors_hold_their_last_values(&db, &model, expect);
    db.close().unwrap();
    let _ = std::fs::remove_file(&path);
}

#[test]
fn noeviction_refuses_the_same_stream_once_the_pool_is_full() {
    let path = pool_path("evict-none");
    let db = open_db_sized(&path, POOL);
    let Written {
        model,
        created,
        err,
    } = write_stream(&db, 450_000, 7);
    assert_eq!(err, Some(DbError::OutOfMemory));
    assert_eq!(db.stats().evicted_keys, 0);
    assert_eq!(created, model.len() as u64);
    assert_survivors_hold_their_last_values(&db, &model, created);
    db.close().unwrap();
    let _ = std::fs::remove_file(&path);
}

#[test]
fn volatile_ttl_evicts_only_keys_with_an_expiry_soonest_first_and_refuses_once_it_finds_none() {
    let path = pool_path("evict-volatile-ttl");
    let db = open_db_sized(&path, POOL);
    db.set_eviction(EvictionPolicy::VolatileTtl);
    let (hour, day) = (3_600_000u64, 86_400_000u64);
    let now = db.now_ms();
    // Persistent keys in about a third of the pool.
    let persistent: Vec<u64> = (0..60_000).collect();
    for &i in &persistent {
        db.set(&key(i), &value(i, 0), SetOptions::default())
            .unwrap();
    }
    // Keys with an expiry, alternately soon and late, well past the pool's size.
    let mut soon = BTreeSet::new();
    let mut late = BTreeSet::new();
    for i in 1_000_000..1_250_000u64 {
        let ttl = if i % 2 == 0 { hour } else { day };
        let opts = SetOptions {
            expiry: SetExpiry::At(now + ttl),
            ..SetOptions::default()
        };
        let k = key(i);
        db.with_eviction(&[&k], |_| db.set(&k, &value(i, 0), opts))
            .unwrap_or_else(|e| panic!("SET of key {i} with an expiry: {e}"));
        if ttl == hour {
            soon.insert(i)
        } else {
            late.insert(i)
        };
    }
    for &i in &persistent {
        assert!(
            db.get(&key(i)).unwrap().is_some(),
            "persistent key {i} was evicted"
        );
    }
    let gone = |set: &BTreeSet<u64>| {
        set.iter()
            .filter(|&&i| db.get(&key(i)).unwrap().is_none())
            .count()
    };
    let (soon_gone, late_gone) = (gone(&soon), gone(&late));
    assert_eq!(soon_gone + late_gone, db.stats().evicted_keys as usize);
    assert!(
        soon_gone > 2 * late_gone,
        "volatile-ttl evicted {soon_gone} keys of 1 h and {late_gone} of 24 h"
    );
    // Persistent keys now: eviction takes the keys with an expiry until none is left, then
    // the pool refuses.
    let mut refused = None;
    for i in 2_000_000..2_400_000u64 {
        let k = key(i);
        if let Err(e) = db.with_eviction(&[&k], |_| {
            db.set(&k, &value(i, 0), SetOptions::default()).map(drop)
        }) {
            refused = Some((i, e));
            break;
        }
    }
    let (at, e) = refused.expect("persistent writes never filled the pool");
    assert_eq!(e, DbError::OutOfMemory);
    for &i in persistent
        .iter()
        .chain(&(2_000_000..at).collect::<Vec<_>>())
    {
        assert!(
            db.get(&key(i)).unwrap().is_some(),
            "persistent key {i} was evicted"
        );
    }
    assert!(db.engine().check().is_clean());
    println!(
        "volatile-ttl: evicted {soon_gone} of 1 h, {late_gone} of 24 h; refused at persistent key {at}"
    );
    db.close().unwrap();
    let _ = std::fs::remove_file(&path);
}

#[test]
fn concurrent_writers_on_a_full_pool_almost_never_fail_under_allkeys_random() {
    let path = pool_path("evict-concurrent");
    let db = open_db_sized(&path, POOL);
    db.set_eviction(EvictionPolicy::AllKeysRandom);
    let failures = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (db, failures) = (&db, &failures);
            s.spawn(move || {
                let value = vec![b'x'; 1000];
                for i in 0..40_000u64 {
                    let k = key(t * 1_000_000 + i);
                    if let Err(e) = db.with_eviction(&[&k], |_| {
                        db.set(&k, &value, SetOptions::default()).map(drop)
                    }) {
                        assert_eq!(e, DbError::OutOfMemory);
                        failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let stats = db.stats();
    let failed = failures.into_inner();
    println!(
        "4 threads x 40,000 SETs of 1,000 B: {failed} failed, {} evicted, {} held",
        stats.evicted_keys,
        db.dbsize()
    );
    // Not zero: with more threads than cores, a thread preempted while pinned can hold back
    // the victims' blocks for all 32 rounds. Measured (4 threads, 2 cores): 0 to 3 failures a
    // run; 1,213 with two victims a round and no growth (a run on a busier machine gave 54-79
    // with growth but no extra reclamation; later runs of that code gave 0).
    assert!(failed <= 16, "{failed} writes failed with eviction on");
    assert_eq!(db.dbsize() + stats.evicted_keys, 160_000 - failed);
    assert!(db.engine().check().is_clean());
    db.close().unwrap();
    let _ = std::fs::remove_file(&path);
}
