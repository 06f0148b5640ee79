//! A large hash's parts: in pools with `INCOMPAT_APPEND_PARTS` new fields are appended to their
//! part in place; pools without it rewrite the part for every change. In pools with
//! `INCOMPAT_SHARED_PARTS` a table doubles without rewriting its parts; pools without it
//! rebuild it. All read the same.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{clear_incompat_feature, open_db as open, pool_path};
use eagle_core::Db;
use eagle_core::pool::{INCOMPAT_APPEND_PARTS, INCOMPAT_SHARED_PARTS};

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

/// The word at `offset` in hash `h`'s table block, for a test to damage.
fn table_word(db: &Db, offset: u64) -> &std::sync::atomic::AtomicU64 {
    let record = db.engine().index().get(b"h", |r| r.value().to_vec());
    let table = eagle_core::hashtab::table_ref(&record.unwrap().unwrap()).unwrap();
    db.engine()
        .pool()
        .region()
        .atomic_u64(table + offset)
        .unwrap()
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

/// What the churn of [`exercise`] did to the parts.
struct Churned {
    appends: u64,
    writes: u64,
    doublings: u64,
}

/// Builds the hash (200 fields: table form), churns it, verifies, reopens and verifies again.
/// `cleared`: the incompatible feature bits cleared before the first open (a pool written by
/// an older build).
fn exercise(path: &Path, cleared: &[u64]) -> Churned {
    if !cleared.is_empty() {
        open(path).close().unwrap();
        for &bit in cleared {
            clear_incompat_feature(path, bit);
        }
    }
    let db = open(path);
    assert_eq!(
        db.engine().pool().append_parts(),
        !cleared.contains(&INCOMPAT_APPEND_PARTS)
    );
    assert_eq!(
        db.engine().pool().shared_parts(),
        !cleared.contains(&INCOMPAT_SHARED_PARTS)
    );
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
    Churned {
        appends: after.hash_part_appends - before.hash_part_appends,
        writes: after.hash_part_writes - before.hash_part_writes,
        doublings: after.hash_table_doublings - before.hash_table_doublings,
    }
}

#[test]
fn new_fields_are_appended_in_place_and_read_back_after_a_reopen() {
    let c = exercise(&pool_path("hash-parts-append"), &[]);
    println!(
        "appendable, shared parts: {} appends, {} part writes, {} doublings",
        c.appends, c.writes, c.doublings
    );
    // Half the first churn's 1,500 commands add one new field; most find room in their part.
    assert!(
        c.appends > 600,
        "{} appends, {} writes",
        c.appends,
        c.writes
    );
    // The hash grows from 200 fields past 1,024: its table of 16 parts doubles at least twice.
    assert!(c.doublings >= 2, "{} doublings", c.doublings);
}

#[test]
fn pools_without_shared_parts_rebuild_the_table_and_read_the_same() {
    let c = exercise(&pool_path("hash-parts-unshared"), &[INCOMPAT_SHARED_PARTS]);
    println!(
        "appendable, unshared parts: {} appends, {} part writes",
        c.appends, c.writes
    );
    assert_eq!(c.doublings, 0);
    assert!(c.appends > 600, "{} appends", c.appends);
}

#[test]
fn pools_without_appendable_parts_rewrite_every_part_and_read_the_same() {
    let c = exercise(
        &pool_path("hash-parts-counted"),
        &[INCOMPAT_APPEND_PARTS, INCOMPAT_SHARED_PARTS],
    );
    println!(
        "counted parts: {} appends, {} part writes",
        c.appends, c.writes
    );
    assert_eq!((c.appends, c.doublings), (0, 0));
    assert!(c.writes > 1000, "{} writes", c.writes);
}

/// Adds one new field at a time until the table doubles; the part writes of that HSET.
fn part_writes_of_the_doubling(db: &Db, m: &mut Model) -> u64 {
    let start = db.stats();
    for i in m.len().. {
        let before = db.stats();
        db.hset(b"h", &[(&field(i), b"v")]).unwrap();
        m.insert(field(i), b"v".to_vec());
        let after = db.stats();
        // Unshared pools rebuild the table: a fresh 2^k parts, all written in that HSET.
        let rebuilt = after.hash_part_writes - before.hash_part_writes > 8;
        if after.hash_table_doublings > start.hash_table_doublings || rebuilt {
            return after.hash_part_writes - before.hash_part_writes;
        }
    }
    unreachable!()
}

#[test]
fn a_table_doubles_without_rewriting_its_parts() {
    let (shared, unshared) = (
        pool_path("hash-parts-double"),
        pool_path("hash-parts-rebuild"),
    );
    open(&unshared).close().unwrap();
    clear_incompat_feature(&unshared, INCOMPAT_SHARED_PARTS);
    let mut writes = Vec::new();
    for path in [&shared, &unshared] {
        let db = open(path);
        // 200 fields: 16 parts, doubled past 512 fields.
        let mut m = build(&db, 200);
        writes.push(part_writes_of_the_doubling(&db, &mut m));
        // Every part is split at its first change since: one more field per part.
        for i in 0..200 {
            let f = format!("later-{i}").into_bytes();
            db.hset(b"h", &[(&f, b"w")]).unwrap();
            m.insert(f, b"w".to_vec());
        }
        verify(&db, &m);
        db.close().unwrap();
        let db = open(path);
        verify(&db, &m);
        db.close().unwrap();
        let _ = std::fs::remove_file(path);
    }
    println!(
        "part writes of the doubling HSET: shared {}, rebuilt {}",
        writes[0], writes[1]
    );
    // Shared: at most the one new field's part (it may append instead). Rebuilt: all 32 parts.
    assert!(writes[0] <= 1, "{writes:?}");
    assert!(writes[1] >= 30, "{writes:?}");
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

#[test]
fn a_bulk_hset_rebuilds_the_table_for_its_size() {
    let path = pool_path("hash-parts-bulk");
    let db = open(&path);
    let mut m = build(&db, 200);
    let before = db.stats();
    // 200 + 2,000 fields: past twice the 512 that 16 parts double at. One doubling would leave
    // about 69 fields per part; the rebuild makes parts for about 16 (256 of them).
    let bulk: Vec<(Vec<u8>, Vec<u8>)> = (200..2200).map(|i| (field(i), b"b".to_vec())).collect();
    let refs: Vec<(&[u8], &[u8])> = bulk.iter().map(|(f, v)| (&f[..], &v[..])).collect();
    assert_eq!(db.hset(b"h", &refs).unwrap(), 2000);
    m.extend(bulk);
    let after = db.stats();
    assert_eq!(after.hash_table_doublings, before.hash_table_doublings);
    assert!(after.hash_part_writes - before.hash_part_writes >= 200);
    verify(&db, &m);
    db.close().unwrap();
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_hash_of_large_values_doubles_for_its_parts_bytes() {
    let path = pool_path("hash-parts-large-values");
    let db = open(&path);
    let mut m = Model::new();
    // One field at a time: compact up to 32 fields, then a table with parts of about 2 KiB
    // (33 KiB of fields: 32 parts). By field count alone (32 per part on average) 300 fields
    // would not double it; by bytes (parts past 4 KiB while they average more than 4 fields)
    // it doubles at about 128 and 256 fields.
    for i in 0..300 {
        let value = vec![b'a' + (i % 26) as u8; 1000 + i % 50];
        assert_eq!(db.hset(b"h", &[(&field(i), &value)]).unwrap(), 1);
        m.insert(field(i), value);
    }
    let doublings = db.stats().hash_table_doublings;
    assert!(doublings >= 2, "{doublings} doublings");
    // Overwrites and removals rewrite those parts; new fields append to them.
    churn(&db, &mut m, 300, 300, 11);
    verify(&db, &m);
    db.close().unwrap();
    let db = open(&path);
    verify(&db, &m);
    db.close().unwrap();
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_damaged_field_count_does_not_delete_the_fields_its_parts_hold() {
    let path = pool_path("hash-parts-damaged-count");
    let db = open(&path);
    let mut m = build(&db, 200);
    db.hlen(b"h").unwrap(); // the count is trusted in this epoch from here on
    // Damage the table's count (offset 16) to 1: deleting one field would take it to zero.
    table_word(&db, 16).store(1, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(db.hdel(b"h", &[&field(3)]).unwrap(), 1);
    m.remove(&field(3));
    // Counted again rather than trusted to zero: the hash keeps its 199 other fields.
    verify(&db, &m);
    db.close().unwrap();
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_table_whose_size_outgrows_its_block_is_reported_damaged() {
    let path = pool_path("hash-parts-damaged-size");
    let db = open(&path);
    build(&db, 200);
    // The table's log2 of parts (the low half of the word at offset 8), grown by 4: its part
    // words would reach sixteen times past its block.
    table_word(&db, 8).fetch_add(4, std::sync::atomic::Ordering::Relaxed);
    for got in [
        db.hset(b"h", &[(b"new", b"v")]).map(|_| ()),
        db.hget(b"h", &field(1)).map(|_| ()),
    ] {
        assert!(
            matches!(got, Err(eagle_core::DbError::Corrupted { .. })),
            "{got:?}"
        );
    }
    let _ = std::fs::remove_file(&path);
}

/// A hash record whose table reference was damaged into another hash's table (its checksum
/// no longer matches): deleting it retires nothing it names, so the other hash keeps its table
/// and parts.
#[test]
fn deleting_a_hash_whose_table_reference_was_damaged_frees_no_other_hashs_blocks() {
    let path = pool_path("hash-parts-damaged-ref");
    let db = open(&path);
    let m: Model = (0..200).map(|i| (field(i), b"v".to_vec())).collect();
    let refs: Vec<(&[u8], &[u8])> = m
        .iter()
        .map(|(f, v)| (f.as_slice(), v.as_slice()))
        .collect();
    for k in [&b"hashkey0"[..], b"hashkey1"] {
        db.hset(k, &refs).unwrap();
    }
    let index = db.engine().index();
    let (record, value) = index
        .get(b"hashkey0", |r| (r.offset(), r.value().to_vec()))
        .unwrap()
        .unwrap();
    assert!(eagle_core::hashtab::table_ref(&value).is_some());
    let other = index
        .get(b"hashkey1", |r| eagle_core::hashtab::table_ref(r.value()))
        .unwrap()
        .flatten()
        .unwrap();
    // The value's offset word (record header 32 bytes, the 8-byte key, then byte 8 of the
    // value).
    let word = record + 32 + 8 + 8;
    db.engine()
        .pool()
        .region()
        .atomic_u64(word)
        .unwrap()
        .store(other, std::sync::atomic::Ordering::Relaxed);
    let _ = db.del(&[&b"hashkey0"[..]]);
    index.reclaim();
    let all: Result<Model, _> = db.hgetall(b"hashkey1").map(|v| v.into_iter().collect());
    assert!(
        matches!(&all, Ok(a) if *a == m),
        "the other hash lost its table or parts: {:?}",
        all.map(|a| a.len())
    );
    let _ = std::fs::remove_file(&path);
}
