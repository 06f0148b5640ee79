//! A large hash's parts: in pools with `INCOMPAT_APPEND_PARTS` new fields are appended to their
//! part in place; pools without it rewrite the part for every change. Both read the same.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{clear_incompat_feature, open_db as open, pool_path};
use eagle_core::Db;
use eagle_core::pool::INCOMPAT_APPEND_PARTS;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn field(i: usize) -> Vec<u8> {
    format!("field-{i:05}").into_bytes()
}

/// Random HSETs of one new field, of several, of existing fields, and HDELs, on one hash
/// that starts in table form; the model follows. New fields are numbered from `first_new`,
/// above every field named before.
fn churn(db: &Db, m: &mut Model, first_new: usize, rounds: usize, seed: u64) {
    let mut x = seed;
    let mut rnd = |n: usize| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((x >> 33) as usize) % n
    };
    let mut next = first_new;
    for i in 0..rounds {
        let value = vec![b'a' + (i % 26) as u8; rnd(60)];
        match rnd(6) {
            0 => {
                let gone: Vec<Vec<u8>> = (0..1 + rnd(3)).map(|_| field(rnd(next))).collect();
                let refs: Vec<&[u8]> = gone.iter().map(|f| f.as_slice()).collect();
                let removed = db.hdel(b"h", &refs).unwrap();
                let mut expect = 0;
                for f in &gone {
                    expect += m.remove(f).is_some() as u64;
                }
                assert_eq!(removed, expect);
            }
            1 => {
                let f = field(rnd(next));
                db.hset(b"h", &[(&f, &value)]).unwrap();
                m.insert(f, value);
            }
            2 => {
                let fs: Vec<Vec<u8>> = (0..2 + rnd(4)).map(|j| field(next + j)).collect();
                next += fs.len();
                let pairs: Vec<(&[u8], &[u8])> = fs
                    .iter()
                    .map(|f| (f.as_slice(), value.as_slice()))
                    .collect();
                assert_eq!(db.hset(b"h", &pairs).unwrap(), fs.len() as u64);
                for f in fs {
                    m.insert(f, value.clone());
                }
            }
            _ => {
                let f = field(next);
                next += 1;
                assert_eq!(db.hset(b"h", &[(&f, &value)]).unwrap(), 1);
                m.insert(f, value);
            }
        }
    }
}

/// Writes hash `h` with `n` fields (table form past 32) in one HSET; its model.
fn build(db: &Db, n: usize) -> Model {
    let m: Model = (0..n).map(|i| (field(i), b"v".to_vec())).collect();
    let refs: Vec<(&[u8], &[u8])> = m
        .iter()
        .map(|(f, v)| (f.as_slice(), v.as_slice()))
        .collect();
    db.hset(b"h", &refs).unwrap();
    m
}

fn verify(db: &Db, m: &Model) {
    assert_eq!(db.hlen(b"h").unwrap(), m.len() as u64);
    let all: Model = db.hgetall(b"h").unwrap().into_iter().collect();
    assert!(all == *m, "HGETALL differs from the model");
    for (f, v) in m.iter().step_by(7) {
        assert_eq!(db.hget(b"h", f).unwrap().as_deref(), Some(v.as_slice()));
    }
    let report = db.engine().check();
    assert!(report.is_clean(), "{:?}", report.problems);
}

/// Builds the hash (200 fields: table form), churns it, verifies, reopens and verifies again.
/// Returns the appends and part writes of the churn.
fn exercise(path: &Path, appendable: bool) -> (u64, u64) {
    if !appendable {
        // A pool written before the feature: created, closed, the bit cleared.
        open(path).close().unwrap();
        clear_incompat_feature(path, INCOMPAT_APPEND_PARTS);
    }
    let db = open(path);
    assert_eq!(db.engine().pool().append_parts(), appendable);
    let mut m = build(&db, 200);
    let before = db.stats();
    churn(&db, &mut m, 200, 1500, 7);
    let after = db.stats();
    verify(&db, &m);
    db.close().unwrap();
    let db = open(path);
    verify(&db, &m);
    // New fields after the reopen append to the parts written before it.
    churn(&db, &mut m, 50_000, 300, 8);
    verify(&db, &m);
    db.close().unwrap();
    let _ = std::fs::remove_file(path);
    (
        after.hash_part_appends - before.hash_part_appends,
        after.hash_part_writes - before.hash_part_writes,
    )
}

#[test]
fn new_fields_are_appended_in_place_and_read_back_after_a_reopen() {
    let (appends, writes) = exercise(&pool_path("hash-parts-append"), true);
    println!("appendable parts: {appends} appends, {writes} part writes");
    // Half the first churn's 1,500 commands add one new field; most find room in their part. (Part
    // writes also count every part of the table's rebuilds as the hash grows.)
    assert!(appends > 600, "{appends} appends, {writes} writes");
}

#[test]
fn pools_without_appendable_parts_rewrite_every_part_and_read_the_same() {
    let (appends, writes) = exercise(&pool_path("hash-parts-counted"), false);
    println!("counted parts: {appends} appends, {writes} part writes");
    assert_eq!(appends, 0);
    assert!(writes > 1000, "{writes} writes");
}

#[test]
fn removing_fields_that_are_not_there_writes_no_part() {
    let path = pool_path("hash-parts-absent");
    let db = open(&path);
    build(&db, 100);
    let before = db.stats().hash_part_writes;
    assert_eq!(db.hdel(b"h", &[b"absent", b"field-99999"]).unwrap(), 0);
    assert_eq!(db.stats().hash_part_writes, before);
    // Only the part that held the field is written (the other one is left as it is).
    assert_eq!(db.hdel(b"h", &[b"absent", &field(5)]).unwrap(), 1);
    assert_eq!(db.stats().hash_part_writes, before + 1);
    assert_eq!(db.hlen(b"h").unwrap(), 99);
    db.close().unwrap();
    let _ = std::fs::remove_file(&path);
}
