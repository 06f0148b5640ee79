//! An index whose segment header or bucket lock was damaged (after the open's checks: a pool
//! closed cleanly is not repaired): operations report it as corrupted instead of overflowing a
//! shift or waiting for ever. (Waits give up after the stall limit, which these tests shorten
//! to 2 s with `set_stall_limit`.)

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{open_db, pool_path, try_open_db_sized};
use eagle_core::dash::{bucket_index, set_stall_limit};
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
    set_stall_limit(Duration::from_secs(2));
    assert!(matches!(
        damaged("damaged-depth", 63, 0),
        Err(DbError::Corrupted { .. })
    ));
}

#[test]
fn a_segment_that_does_not_cover_its_directory_range_is_reported_by_a_scan() {
    set_stall_limit(Duration::from_secs(2));
    // The one segment of a new table says it holds only the upper half of the hashes.
    assert!(matches!(
        damaged("damaged-pattern", 1, 1),
        Err(DbError::Corrupted { .. })
    ));
}

/// The offset of the directory entry that names `key`'s segment, and the segment's.
fn entry_and_segment_of(db: &Db, key: &[u8]) -> (u64, u64) {
    let region = db.engine().pool().region();
    let word = |at: u64| region.atomic_u64(at).unwrap().load(Ordering::Acquire);
    let h = db.engine().index().hash(key);
    let dir = word(db.engine().pool().layout().meta.offset);
    let g = word(dir + 8);
    let index = if g == 0 { 0 } else { h >> (64 - g) };
    let entry = dir + 64 + 8 * index;
    (entry, word(entry))
}

/// The offset of the segment the directory names for `key`.
fn segment_of(db: &Db, key: &[u8]) -> u64 {
    entry_and_segment_of(db, key).1
}

/// The 8-byte word at the start of `key`'s home bucket (its low 4 bytes are the lock word).
fn home_lock<'a>(db: &'a Db, key: &[u8]) -> &'a AtomicU64 {
    let h = db.engine().index().hash(key);
    let at = segment_of(db, key) + 64 + 256 * bucket_index(h) as u64;
    db.engine().pool().region().atomic_u64(at).unwrap()
}

const LOCK_BIT: u64 = 1 << 31;

fn is_corrupted<T: std::fmt::Debug>(r: Result<T, DbError>) -> bool {
    matches!(r, Err(DbError::Corrupted { .. }))
}

/// A pool of 100 keys `k0..k99`, closed cleanly.
fn hundred_keys(path: &Path) {
    let db = open_db(path);
    for i in 0..100 {
        db.set(format!("k{i}").as_bytes(), b"v", Default::default())
            .unwrap();
    }
    db.close().unwrap();
}

#[test]
fn a_bucket_lock_that_never_frees_fails_reads_and_writes_instead_of_hanging() {
    set_stall_limit(Duration::from_secs(2));
    let path = pool_path("held-lock");
    hundred_keys(&path);
    let db = open_db(&path);
    db.engine().index().wait_recovered().unwrap();
    let lock = home_lock(&db, b"k0");
    lock.fetch_or(LOCK_BIT, Ordering::AcqRel);
    let started = Instant::now();
    // (Side by side: each waits out the stall limit.)
    std::thread::scope(|s| {
        s.spawn(|| assert!(is_corrupted(db.get(b"k0")), "GET"));
        s.spawn(|| assert!(is_corrupted(db.set(b"k0", b"w", Default::default())), "SET"));
        s.spawn(|| assert!(is_corrupted(db.del(&[b"k0"])), "DEL"));
        s.spawn(|| {
            let (mut cursor, mut scanned) = (0, Ok(()));
            while scanned.is_ok() {
                scanned = db
                    .scan(cursor, None, 10, None)
                    .map(|(next, _)| cursor = next);
                if cursor == 0 {
                    break;
                }
            }
            assert!(is_corrupted(scanned), "SCAN");
        });
    });
    assert!(started.elapsed() < Duration::from_secs(20));
    // The others are served meanwhile, and with the bit clear again so is k0.
    // A key that reads neither k0's home bucket nor it as its neighbour.
    let b0 = bucket_index(db.engine().index().hash(b"k0"));
    let other = (1..100)
        .map(|i| format!("k{i}"))
        .find(|k| {
            let b = bucket_index(db.engine().index().hash(k.as_bytes()));
            b != b0 && (b + 1) % eagle_core::dash::BUCKETS != b0
        })
        .unwrap();
    assert_eq!(
        db.get(other.as_bytes()).unwrap().as_deref(),
        Some(&b"v"[..])
    );
    lock.fetch_and(!LOCK_BIT, Ordering::AcqRel);
    assert_eq!(db.get(b"k0").unwrap().as_deref(), Some(&b"v"[..]));
    db.close().unwrap();
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_lock_bit_set_in_a_cleanly_closed_pool_fails_the_background_sweep_and_the_close() {
    set_stall_limit(Duration::from_secs(2));
    let path = pool_path("held-lock-file");
    hundred_keys(&path);
    // Damage the file itself: the lock bit of k0's home bucket, in a pool marked clean.
    let offset = {
        let db = open_db(&path);
        db.engine().index().wait_recovered().unwrap();
        let lock = home_lock(&db, b"k0");
        let base = db.engine().pool().region().atomic_u64(0).unwrap();
        let offset = (lock as *const AtomicU64 as usize) - (base as *const AtomicU64 as usize);
        db.close().unwrap();
        offset
    };
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[offset + 3] |= 0x80;
    std::fs::write(&path, bytes).unwrap();
    let db = open_db(&path);
    assert!(
        matches!(
            db.engine().index().wait_recovered(),
            Err(eagle_core::dash::IndexError::Corrupted { .. })
        ),
        "the sweep waited for the lock for ever, or took it"
    );
    assert!(db.close().is_err(), "a close after a failed sweep");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_write_into_a_segment_that_does_not_cover_its_directory_range_is_refused() {
    set_stall_limit(Duration::from_secs(2));
    let path = pool_path("uncovered-write");
    let db = open_db(&path);
    for i in 0..5000 {
        db.set(format!("k{i}").as_bytes(), b"v", Default::default())
            .unwrap();
    }
    db.engine().index().wait_recovered().unwrap();
    // k0's segment says it holds its sibling's range, at its own depth (within the
    // directory's): a new key that finds its buckets full would split it "for" a hash it does
    // not hold, find room elsewhere, and try again, for ever.
    let region = db.engine().pool().region();
    let word = region.atomic_u64(segment_of(&db, b"k0") + 8).unwrap();
    let depth_pattern = word.load(Ordering::Acquire);
    assert!(
        depth_pattern >> 56 >= 1,
        "5000 keys make more than one segment"
    );
    word.store(depth_pattern ^ 1, Ordering::Release);
    let refused = (5000..200_000).find_map(|i| {
        db.set(format!("k{i}").as_bytes(), b"v", Default::default())
            .err()
    });
    assert!(
        matches!(refused, Some(DbError::Corrupted { .. })),
        "{refused:?}"
    );
    drop(db);
    let _ = std::fs::remove_file(&path);
}

/// The file offset of the directory entry that names `key`'s segment, and the segment's, in
/// a pool at `path` (opened and closed cleanly to find them).
fn directory_entry_of(path: &Path, key: &[u8]) -> (usize, u64) {
    let db = open_db(path);
    db.engine().index().wait_recovered().unwrap();
    let (entry, segment) = entry_and_segment_of(&db, key);
    db.close().unwrap();
    (entry as usize, segment)
}

/// The offset of `key`'s record in the pool at `path` (closed cleanly again).
fn record_of(path: &Path, key: &[u8]) -> u64 {
    let db = open_db(path);
    let r = db
        .engine()
        .index()
        .get(key, |r| r.offset())
        .unwrap()
        .unwrap();
    db.close().unwrap();
    r
}

/// A directory entry damaged into the pool header, the metadata region, or a live block that
/// is no segment (a record): the open refuses the pool, and writes nothing where the entry
/// points (a bucket's lock word there would land on the root, the log's head or a record).
#[test]
fn a_directory_entry_naming_no_segment_is_refused_at_open_before_anything_is_written() {
    let path = pool_path("entry-no-segment");
    hundred_keys(&path);
    let (entry, segment) = directory_entry_of(&path, b"k0");
    let record = record_of(&path, b"k1");
    let clean = std::fs::read(&path).unwrap();
    for target in [0u64, 4096, record, segment + 64] {
        let mut bytes = clean.clone();
        bytes[entry..entry + 8].copy_from_slice(&target.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let opened = try_open_db_sized(&path, 32 << 20);
        assert!(
            matches!(
                opened,
                Err(eagle_core::EngineError::Index(
                    eagle_core::dash::IndexError::Corrupted { .. }
                ))
            ),
            "entry {target:#x}: {:?}",
            opened.as_ref().err()
        );
        drop(opened);
        let after = std::fs::read(&path).unwrap();
        // (Only the header's shutdown state, which every open marks, may change.)
        let changed: Vec<usize> = (0..after.len())
            .filter(|&i| after[i] != bytes[i] && !(128..192).contains(&i))
            .collect();
        assert!(
            changed.is_empty(),
            "entry {target:#x}: the refused open wrote into the pool at {:?}",
            changed.iter().take(40).collect::<Vec<_>>()
        );
    }
    let _ = std::fs::remove_file(&path);
}

/// After a crash, a segment whose sibling word was damaged into the metadata region: its
/// repair reports the damage before it resets the "sibling's" bucket locks, which would
/// write into the index's root and the metadata beyond it.
#[test]
fn a_damaged_sibling_word_is_reported_before_repair_writes_through_it() {
    let path = pool_path("sibling-no-segment");
    hundred_keys(&path);
    let (_, segment) = directory_entry_of(&path, b"k0");
    {
        // Reopened and dropped without a close: the next open repairs every segment.
        let db = open_db(&path);
        db.engine().index().wait_recovered().unwrap();
        db.set(b"k0", b"w", Default::default()).unwrap();
    }
    let mut bytes = std::fs::read(&path).unwrap();
    let sibling = segment as usize + 16;
    bytes[sibling..sibling + 8].copy_from_slice(&4096u64.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let meta = bytes[4096..4096 + 64 + 256 * 68].to_vec();
    let db = try_open_db_sized(&path, 32 << 20).expect("the open itself reads no sibling word");
    assert!(
        is_corrupted(db.get(b"k0")),
        "GET through the damaged segment"
    );
    let region = db.engine().pool().region();
    let mut now = vec![0u8; meta.len()];
    assert!(region.read(4096, &mut now));
    assert!(now == meta, "repair wrote through the damaged sibling word");
    drop(db);
    let _ = std::fs::remove_file(&path);
}

/// A segment in a block of a larger size class (what a split takes on a nearly full pool,
/// `Heap::alloc`'s fallback) is a healthy segment: the open, the repair after a crash and the
/// sweep accept it, and its keys read back.
#[test]
fn a_segment_in_a_block_of_a_larger_class_opens_repairs_and_reads() {
    let path = pool_path("segment-larger-block");
    hundred_keys(&path);
    {
        let db = open_db(&path);
        db.engine().index().wait_recovered().unwrap();
        let (entry, segment) = entry_and_segment_of(&db, b"k0");
        let heap = db.engine().index().heap().clone();
        let class = u64::from(eagle_core::heap::SEGMENT_CLASS_SIZE);
        let block = heap.alloc(class + 4096).unwrap();
        assert!(heap.block_size(block).unwrap() > class);
        let region = db.engine().pool().region();
        let mut bytes = vec![0u8; class as usize];
        assert!(region.read(segment, &mut bytes));
        // SAFETY: the block was just allocated and nothing names it yet.
        unsafe { region.write(block, &bytes) };
        region.persist(block, bytes.len());
        // The directory names the copy (one entry: a hundred keys fill one segment).
        region
            .atomic_u64(entry)
            .unwrap()
            .store(block, Ordering::Release);
        region.persist(entry, 8);
        // Dropped without a close: the next open repairs every segment and sweeps.
    }
    let db = open_db(&path);
    db.engine().index().wait_recovered().unwrap();
    for i in 0..100 {
        assert_eq!(
            db.get(format!("k{i}").as_bytes()).unwrap().as_deref(),
            Some(&b"v"[..]),
            "k{i}"
        );
    }
    assert!(db.engine().check().is_clean());
    db.close().unwrap();
    let db = open_db(&path);
    db.engine().index().wait_recovered().unwrap();
    assert_eq!(db.get(b"k0").unwrap().as_deref(), Some(&b"v"[..]));
    db.close().unwrap();
    let _ = std::fs::remove_file(&path);
}

/// A bit flipped in a stored record (its key, its value, or a header byte the checksum covers)
/// is reported by GET as damage, never returned as a wrong value, borrowed or copied; the
/// record's expiry word, which EXPIRE stores in place, is not covered.
#[test]
fn a_damaged_record_reads_as_corrupted_not_as_a_wrong_value() {
    let path = pool_path("damaged-record");
    {
        let db = open_db(&path);
        db.set(b"key", b"the value", Default::default()).unwrap();
        db.close().unwrap();
    }
    let record = record_of(&path, b"key") as usize;
    let clean = std::fs::read(&path).unwrap();
    // Header byte 8 (the value's length), the key's first byte, the value's last byte.
    for at in [record + 8, record + 32, record + 32 + 3 + 8] {
        let mut bytes = clean.clone();
        bytes[at] ^= 0x04;
        std::fs::write(&path, &bytes).unwrap();
        let db = open_db(&path);
        // A damaged key byte makes it another key: not found, rather than a wrong value.
        let key_byte = at == record + 32;
        let got = db.get(b"key");
        let lent = db.get_with(b"key", |v| v.to_vec());
        if key_byte {
            assert_eq!((got, lent), (Ok(None), Ok(None)), "byte {}", at - record);
        } else {
            assert!(is_corrupted(got), "byte {}", at - record);
            assert!(is_corrupted(lent), "byte {}", at - record);
        }
        drop(db);
    }
    // The expiry word's top byte: no checksum covers it (EXPIRE stores it in place), so the
    // value reads back, now with an expiry decades away.
    let mut bytes = clean.clone();
    bytes[record + 23] ^= 0x04;
    std::fs::write(&path, &bytes).unwrap();
    let db = open_db(&path);
    assert_eq!(db.get(b"key").unwrap(), Some(b"the value".to_vec()));
    drop(db);
    let _ = std::fs::remove_file(&path);
}
