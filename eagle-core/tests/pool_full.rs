//! A full pool: a write that does not fit fails with `OutOfMemory` and changes nothing; every
//! acknowledged write stays readable; deletes make room for later writes; the index and heap
//! stay consistent (no leak), and the pool reopens with the same contents.

mod common;

use std::collections::BTreeMap;

use common::{open_db_sized, pool_path};
use eagle_core::Db;
use eagle_core::db::{DbError, ExpireCondition, GetExExpiry, SetOptions};
use pmem_emulation::SplitMix64;

/// String keys the writes choose from.
const KEYS: usize = 20_000;

/// Fields the hash writes choose from.
const FIELDS: usize = 5_000;

/// Strings and hashes, as the test expects them.
#[derive(Default)]
struct Model {
    strings: BTreeMap<Vec<u8>, Vec<u8>>,
    hashes: BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl Model {
    fn forget(&mut self, key: &[u8]) -> bool {
        self.strings.remove(key).is_some() | self.hashes.remove(key).is_some()
    }

    /// Every key and value of the model is in `db`, and `db` holds no other key.
    fn assert_held_by(&self, db: &Db, when: &str) {
        for (k, v) in &self.strings {
            let got = db.get(k).unwrap();
            assert_eq!(got.as_ref(), Some(v), "{when}: string {}", show(k));
        }
        for (k, fields) in &self.hashes {
            let got: BTreeMap<_, _> = db.hgetall(k).unwrap().into_iter().collect();
            assert!(got == *fields, "{when}: hash {}", show(k));
        }
        let keys = (self.strings.len() + self.hashes.len()) as u64;
        assert_eq!(db.dbsize(), keys, "{when}: key count");
    }

    /// String `key` reads as the model has it (after a write to it failed).
    fn assert_key_unchanged(&self, db: &Db, key: &[u8], op: &str) {
        let got = db.get(key).unwrap();
        let want = self.strings.get(key);
        assert_eq!(got.as_ref(), want, "a failed {op} changed {}", show(key));
    }

    /// Hash `key` has the model's number of fields, and `fields` as the model has them (after
    /// a write to them failed).
    fn assert_fields_unchanged(&self, db: &Db, key: &[u8], fields: &[Vec<u8>], op: &str) {
        let want = self.hashes.get(key);
        assert_eq!(
            db.hlen(key).unwrap(),
            want.map_or(0, |h| h.len() as u64),
            "a failed {op} changed the length of {}",
            show(key)
        );
        for f in fields {
            let got = db.hget(key, f).unwrap();
            assert_eq!(
                got.as_ref(),
                want.and_then(|h| h.get(f)),
                "a failed {op} changed {}.{}",
                show(key),
                show(f)
            );
        }
    }
}

fn show(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

/// Failures by operation, to show the test reached a full pool on every path.
#[derive(Default, Debug)]
struct Tally {
    ok: u64,
    oom_set: u64,
    oom_mset: u64,
    oom_append: u64,
    oom_hset: u64,
    oom_hdel: u64,
}

/// `ops` random writes over string keys and four hashes, sized so that together they would
/// need several times the pool: SET, MSET, APPEND, HSET (one field or many), HDEL and DEL.
/// Each that fails must fail with `OutOfMemory` and leave its keys as they were.
fn churn(db: &Db, m: &mut Model, rng: &mut SplitMix64, ops: usize) -> Tally {
    let mut t = Tally::default();
    let key = |i: usize| format!("key:{i}").into_bytes();
    let hash = |i: usize| format!("hash:{i}").into_bytes();
    for op in 0..ops {
        let value = vec![b'a' + (op % 26) as u8; 1 + rng.below(16_000)];
        let kind = rng.below(20);
        let result: Result<(), DbError> = match kind {
            0..=5 => {
                let k = key(rng.below(KEYS));
                if m.hashes.contains_key(&k) {
                    continue;
                }
                let r = db.set(&k, &value, SetOptions::default()).map(drop);
                if r.is_ok() {
                    m.strings.insert(k.clone(), value);
                } else {
                    t.oom_set += 1;
                    m.assert_key_unchanged(db, &k, "SET");
                }
                r
            }
            6 | 7 => {
                let ks: Vec<Vec<u8>> = (0..2 + rng.below(4))
                    .map(|_| key(rng.below(KEYS)))
                    .collect();
                let pairs: Vec<(&[u8], &[u8])> = ks
                    .iter()
                    .map(|k| (k.as_slice(), value.as_slice()))
                    .collect();
                let r = db.mset(&pairs);
                if r.is_ok() {
                    for k in ks {
                        m.hashes.remove(&k);
                        m.strings.insert(k, value.clone());
                    }
                } else {
                    t.oom_mset += 1;
                    for k in &ks {
                        m.assert_key_unchanged(db, k, "MSET");
                    }
                }
                r
            }
            8 | 9 => {
                let k = key(rng.below(KEYS));
                if m.hashes.contains_key(&k) {
                    continue;
                }
                let r = db.append(&k, &value[..value.len().min(200)]);
                match &r {
                    Ok(len) => {
                        let s = m.strings.entry(k).or_default();
                        s.extend_from_slice(&value[..value.len().min(200)]);
                        assert_eq!(*len, s.len() as u64);
                    }
                    Err(_) => {
                        t.oom_append += 1;
                        m.assert_key_unchanged(db, &k, "APPEND");
                    }
                }
                r.map(drop)
            }
            10..=15 => {
                let h = hash(rng.below(4));
                let small = &value[..value.len().min(1000)];
                let fields: Vec<Vec<u8>> = (0..if rng.below(8) == 0 { 40 } else { 1 })
                    .map(|_| format!("f{}", rng.below(FIELDS)).into_bytes())
                    .collect();
                let pairs: Vec<(&[u8], &[u8])> =
                    fields.iter().map(|f| (f.as_slice(), small)).collect();
                let r = db.hset(&h, &pairs).map(drop);
                if r.is_ok() {
                    let entry = m.hashes.entry(h).or_default();
                    for f in fields {
                        entry.insert(f, small.to_vec());
                    }
                } else {
                    t.oom_hset += 1;
                    m.assert_fields_unchanged(db, &h, &fields, "HSET");
                }
                r
            }
            16 | 17 => {
                let h = hash(rng.below(4));
                let gone: Vec<Vec<u8>> = (0..1 + rng.below(200))
                    .map(|_| format!("f{}", rng.below(FIELDS)).into_bytes())
                    .collect();
                let refs: Vec<&[u8]> = gone.iter().map(|f| f.as_slice()).collect();
                let r = db.hdel(&h, &refs);
                match &r {
                    Ok(removed) => {
                        let mut expect = 0;
                        if let Some(fields) = m.hashes.get_mut(&h) {
                            for f in &gone {
                                expect += fields.remove(f).is_some() as u64;
                            }
                            if fields.is_empty() {
                                m.hashes.remove(&h);
                            }
                        }
                        assert_eq!(*removed, expect, "HDEL {}", show(&h));
                    }
                    Err(_) => {
                        t.oom_hdel += 1;
                        m.assert_fields_unchanged(db, &h, &gone, "HDEL");
                    }
                }
                r.map(drop)
            }
            _ => {
                let ks: Vec<Vec<u8>> = (0..1 + rng.below(4))
                    .map(|_| key(rng.below(KEYS)))
                    .collect();
                let refs: Vec<&[u8]> = ks.iter().map(|k| k.as_slice()).collect();
                let r = db.del(&refs);
                let mut expect = 0;
                let mut seen = std::collections::BTreeSet::new();
                for k in &ks {
                    if seen.insert(k.clone()) {
                        expect += m.forget(k) as u64;
                    }
                }
                assert_eq!(r.as_ref().ok(), Some(&expect), "DEL: {r:?}");
                r.map(drop)
            }
        };
        match result {
            Ok(()) => t.ok += 1,
            Err(DbError::OutOfMemory) => {}
            Err(e) => panic!("operation {op} (kind {kind}): {e}"),
        }
    }
    t
}

#[test]
fn a_full_pool_refuses_writes_whole_and_keeps_every_acknowledged_one() {
    let path = pool_path("full-churn");
    let db = open_db_sized(&path, 64 << 20);
    let mut m = Model::default();
    let mut rng = SplitMix64::new(0x5eed);
    for round in 0..5 {
        let t = churn(&db, &mut m, &mut rng, 8_000);
        eprintln!(
            "round {round}: {t:?}, {} strings, {} hashes",
            m.strings.len(),
            m.hashes.len()
        );
        // The first round fills the pool; every later one must run into a full pool.
        assert!(
            round == 0 || (t.oom_set > 0 && t.oom_mset > 0 && t.oom_hset > 0),
            "round {round} never filled the pool: {t:?}"
        );
        m.assert_held_by(&db, &format!("after round {round}"));
    }
    db.engine().index().wait_recovered().unwrap();
    let report = db.engine().check();
    assert!(report.is_clean(), "{report:?}");
    db.close().unwrap();

    let db = open_db_sized(&path, 64 << 20);
    m.assert_held_by(&db, "after reopening");
    db.engine().index().wait_recovered().unwrap();
    let report = db.engine().check();
    assert!(report.is_clean(), "{report:?}");
    db.close().unwrap();
    let _ = std::fs::remove_file(&path);
}

/// Writes new string keys of every size until none fits any more.
fn fill(db: &Db) -> u64 {
    let sizes = [
        1, 40, 100, 200, 450, 900, 2_000, 5_000, 12_000, 30_000, 70_000, 300_000,
    ];
    let mut stored = 0;
    loop {
        let before = stored;
        for size in sizes {
            while db
                .set(
                    format!("fill:{stored}").as_bytes(),
                    &vec![b'f'; size],
                    SetOptions::default(),
                )
                .is_ok()
            {
                stored += 1;
            }
        }
        if stored == before {
            return stored;
        }
    }
}

#[test]
fn deletes_and_expiry_changes_work_on_a_pool_that_writes_have_filled() {
    let path = pool_path("full-shrink");
    let db = open_db_sized(&path, 16 << 20);
    let fields: Vec<Vec<u8>> = (0..400)
        .map(|i| format!("field-{i}").into_bytes())
        .collect();
    let value = [b'v'; 40];
    let pairs: Vec<(&[u8], &[u8])> = fields.iter().map(|f| (f.as_slice(), &value[..])).collect();
    db.hset(b"table", &pairs).unwrap();
    db.hset(b"compact", &pairs[..10]).unwrap();
    for k in [&b"a"[..], b"b", b"c", b"d"] {
        db.set(k, b"value", SetOptions::default()).unwrap();
    }
    db.expire_at(b"b", i64::MAX / 2, ExpireCondition::Always)
        .unwrap();
    let stored = fill(&db);
    assert!(stored > 100, "{stored}");

    // Redis accepts these on a full server (none is `denyoom`). HDEL and RENAME rewrite a part
    // or a record into a new block before they free the old one (the heap's reserve); EXPIRE,
    // PERSIST and GETEX store the expiry word in place.
    assert_eq!(db.hdel(b"table", &[b"field-3", b"field-300"]).unwrap(), 2);
    assert_eq!(db.hdel(b"compact", &[b"field-3"]).unwrap(), 1);
    assert!(
        db.expire_at(b"a", i64::MAX / 2, ExpireCondition::Always)
            .unwrap()
    );
    assert!(db.persist(b"b").unwrap());
    let ex = db.getex(b"c", Some(GetExExpiry::Persist)).unwrap();
    assert_eq!(ex.as_deref(), Some(&b"value"[..]));
    assert!(db.rename(b"d", b"renamed", false).unwrap());

    assert_eq!(db.hlen(b"table").unwrap(), 398);
    assert_eq!(db.hlen(b"compact").unwrap(), 9);
    assert_eq!(db.get(b"renamed").unwrap().as_deref(), Some(&b"value"[..]));
    assert_eq!(db.del(&[b"fill:0", b"fill:1"]).unwrap(), 2);
    db.engine().index().wait_recovered().unwrap();
    let report = db.engine().check();
    assert!(report.is_clean(), "{report:?}");
    db.close().unwrap();
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_batch_whose_new_keys_need_more_splits_than_the_pool_holds_is_refused_whole() {
    // One MSET of 16,000 new keys into an index of one segment needs about twenty splits and
    // several directory doublings. The pool is filled with chunk-sized values, which are then
    // deleted one at a time, so the MSET is tried with one more free chunk each time: first
    // its records do not fit, then they fit but its splits do not, then everything fits. In
    // the middle case it must be refused before it is logged. (Before `make_room` it failed
    // half-applied there: about half the keys written, the engine read-only, and the pool
    // unable to reopen because the redo had no room either.)
    let path = pool_path("full-mset-splits");
    let db = open_db_sized(&path, 16 << 20);
    let big = vec![b'b'; 200_000];
    let mut bigs = 0;
    while db
        .set(
            format!("big:{bigs}").as_bytes(),
            &big,
            SetOptions::default(),
        )
        .is_ok()
    {
        bigs += 1;
    }
    assert!(bigs > 40, "{bigs} chunk-sized values filled the pool");
    let keys: Vec<Vec<u8>> = (0..16_000)
        .map(|i| format!("new:{i}").into_bytes())
        .collect();
    let pairs: Vec<(&[u8], &[u8])> = keys.iter().map(|k| (&k[..], &b"12345678"[..])).collect();
    let (mut refused, mut refused_after_splitting) = (0, 0);
    for freed in 1..=bigs {
        assert_eq!(
            db.del(&[format!("big:{}", bigs - freed).as_bytes()])
                .unwrap(),
            1
        );
        let segments = db.engine().index().stats().segments;
        match db.mset(&pairs) {
            Ok(()) => break,
            Err(DbError::OutOfMemory) => {
                refused += 1;
                let keys_now = db.dbsize();
                assert_eq!(keys_now, (bigs - freed) as u64, "a refused MSET wrote keys");
                // Refused after its records were prepared: it split the index first.
                refused_after_splitting += (db.engine().index().stats().segments > segments) as u32;
                assert!(
                    db.engine().writable(),
                    "a refused MSET left the engine read-only"
                );
            }
            Err(e) => panic!("MSET with {freed} chunks freed: {e}"),
        }
    }
    assert!(
        refused_after_splitting > 0,
        "no MSET was refused for want of index room ({refused} refused): the test did not \
         reach its case"
    );
    assert_eq!(db.dbsize(), (bigs - refused - 1 + keys.len()) as u64);
    for k in keys.iter().step_by(97) {
        assert_eq!(db.get(k).unwrap().as_deref(), Some(&b"12345678"[..]));
    }
    db.engine().index().wait_recovered().unwrap();
    let report = db.engine().check();
    assert!(report.is_clean(), "{report:?}");
    db.close().unwrap();
    let db = open_db_sized(&path, 16 << 20);
    assert_eq!(db.dbsize(), (bigs - refused - 1 + keys.len()) as u64);
    db.close().unwrap();
    let _ = std::fs::remove_file(&path);
}
