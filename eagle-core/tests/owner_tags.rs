//! Slots tag the records that own heap blocks (a large hash's table and parts), so recovery's
//! sweep opens only those records. These tests prove that a crash sweep keeps every owned block
//! in a tagged pool and in a legacy pool (written before the tag existed, swept by opening every
//! record), and that `check` finds no leak or overlap in either.

mod common;

use std::path::Path;

use common::{clear_incompat_feature, open_db as open, pool_path};
use eagle_core::Db;
use eagle_core::pool::INCOMPAT_OWNER_TAGS;

fn field(i: u32) -> Vec<u8> {
    format!("field:{i}").into_bytes()
}

fn value(i: u32, round: u32) -> Vec<u8> {
    format!("value:{i}:{round}").into_bytes()
}

/// Writes `fields` fields into each of three large hashes plus many strings, then crashes.
fn fill(db: &Db, fields: u32, round: u32) {
    for h in 0..3u32 {
        let key = format!("hash:{h}");
        for i in 0..fields {
            db.hset(key.as_bytes(), &[(&field(i), &value(i, round))])
                .unwrap();
        }
    }
    for i in 0..2000u32 {
        db.set(
            format!("s:{i}").as_bytes(),
            &value(i, round),
            Default::default(),
        )
        .unwrap();
    }
}

fn verify(db: &Db, fields: u32, round: u32) {
    for h in 0..3u32 {
        let key = format!("hash:{h}");
        assert_eq!(db.hlen(key.as_bytes()).unwrap(), fields as u64);
        for i in 0..fields {
            assert_eq!(
                db.hget(key.as_bytes(), &field(i)).unwrap(),
                Some(value(i, round)),
                "{key} field {i}"
            );
        }
    }
    let engine = db.engine();
    engine.index().wait_recovered().unwrap();
    let report = engine.check();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

/// Clears `INCOMPAT_OWNER_TAGS`, as a pool written before the tag existed would have it.
fn make_legacy(path: &Path) {
    clear_incompat_feature(path, INCOMPAT_OWNER_TAGS);
}

#[test]
fn crash_sweep_keeps_the_blocks_of_tagged_large_hashes() {
    let path = pool_path("tagged");
    let db = open(&path);
    fill(&db, 300, 1);
    drop(db); // a crash: the next open sweeps the heap
    let db = open(&path);
    verify(&db, 300, 1);
    // Rewrite everything (old parts retired and reclaimed), crash again.
    fill(&db, 300, 2);
    drop(db);
    let db = open(&path);
    verify(&db, 300, 2);
    db.close().unwrap();
    let _ = std::fs::remove_file(&path);
}

#[test]
fn legacy_pools_without_tags_are_swept_by_opening_every_record() {
    let path = pool_path("legacy");
    let db = open(&path);
    fill(&db, 300, 1);
    db.close().unwrap();
    make_legacy(&path);
    let db = open(&path);
    verify(&db, 300, 1);
    // Recreate the hashes: their new records, written into a legacy pool, are untagged, so only
    // the legacy sweep (which opens every record) keeps their tables and parts.
    let hashes: Vec<Vec<u8>> = (0..3).map(|h| format!("hash:{h}").into_bytes()).collect();
    let keys: Vec<&[u8]> = hashes.iter().map(|k| &k[..]).collect();
    assert_eq!(db.del(&keys).unwrap(), 3);
    fill(&db, 300, 2);
    drop(db);
    let db = open(&path);
    verify(&db, 300, 2);
    db.close().unwrap();
    let _ = std::fs::remove_file(&path);
}
