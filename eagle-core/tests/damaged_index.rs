//! An index whose segment header was damaged (after the open's checks: a pool closed cleanly is
//! not repaired): a scan reports it as corrupted instead of overflowing a shift or looping.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};

use common::{open_db, pool_path};
use eagle_core::{Db, DbError};

/// The `depth_pattern` word of the first segment the directory names.
fn depth_pattern(db: &Db) -> &AtomicU64 {
    let region = db.engine().pool().region();
    let word = |at: u64| region.atomic_u64(at).unwrap().load(Ordering::Acquire);
    let dir = word(db.engine().pool().layout().meta.offset);
    let segment = word(dir + 64);
    region.atomic_u64(segment + 8).unwrap()
}

fn scan_all(db: &Db) -> Result<usize, DbError> {
    let (mut cursor, mut n) = (0, 0);
    loop {
        let (next, keys) = db.scan(cursor, None, 100, None)?;
        n += keys.len();
        if next == 0 {
            return Ok(n);
        }
        cursor = next;
    }
}

fn damaged(name: &str, depth: u64, pattern: u64) -> Result<usize, DbError> {
    let path = pool_path(name);
    let db = open_db(&path);
    for i in 0..100 {
        db.set(format!("k{i}").as_bytes(), b"v", Default::default())
            .unwrap();
    }
    db.engine().index().wait_recovered().unwrap();
    assert_eq!(scan_all(&db), Ok(100));
    depth_pattern(&db).store(depth << 56 | pattern, Ordering::Release);
    let scanned = scan_all(&db);
    drop(db);
    let _ = std::fs::remove_file(&path);
    scanned
}

#[test]
fn a_segment_deeper_than_any_directory_is_reported_by_a_scan() {
    assert!(matches!(
        damaged("damaged-depth", 63, 0),
        Err(DbError::Corrupted { .. })
    ));
}

#[test]
fn a_segment_that_does_not_cover_its_directory_range_is_reported_by_a_scan() {
    // The one segment of a new table says it holds only the upper half of the hashes.
    assert!(matches!(
        damaged("damaged-pattern", 1, 1),
        Err(DbError::Corrupted { .. })
    ));
}
