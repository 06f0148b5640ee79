//! The heap's size-class table is part of a pool's format (`INCOMPAT_FINE_CLASSES`): new pools
//! round records up to 16-byte steps, pools written before the fine table keep the 64-byte
//! table they were written with, and both survive a crash sweep with `check` clean.

mod common;

use std::path::Path;

use common::{clear_incompat_feature, open_db as open, pool_path};
use std::sync::Arc;

use eagle_core::heap::Heap;
use eagle_core::pool::{INCOMPAT_FINE_CLASSES, Pool};
use eagle_core::{Db, PoolOptions};

/// A 10-byte key and a 100-byte value: a 142-byte record (32-byte header).
fn key(i: u32) -> Vec<u8> {
    format!("key:{i:06}").into_bytes()
}

fn value(i: u32, round: u32) -> Vec<u8> {
    let mut v = format!("value:{i}:{round}:").into_bytes();
    v.resize(100, b'v');
    v
}

fn fill(db: &Db, n: u32, round: u32) {
    for i in 0..n {
        db.set(&key(i), &value(i, round), Default::default())
            .unwrap();
    }
}

/// Every key reads back, every record's block is `block` bytes, and `check` is clean.
fn verify(db: &Db, n: u32, round: u32, block: u64) {
    let engine = db.engine();
    engine.index().wait_recovered().unwrap();
    for i in 0..n {
        assert_eq!(db.get(&key(i)).unwrap(), Some(value(i, round)), "key {i}");
        let rec = engine
            .index()
            .get(&key(i), |r| r.offset())
            .unwrap()
            .unwrap();
        assert_eq!(
            engine.index().heap().block_size(rec),
            Some(block),
            "key {i}"
        );
    }
    let report = engine.check();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

/// Creates an empty pool at `path` without the fine-classes feature, as a build before it would
/// have: only the header is written, and the heap and index are created at the next open.
fn create_coarse_pool(path: &Path) {
    let opts = PoolOptions {
        size: 32 << 20,
        ..PoolOptions::default()
    };
    Pool::open(path, opts).unwrap().close().unwrap();
    clear_incompat_feature(path, INCOMPAT_FINE_CLASSES);
}

#[test]
fn new_pools_round_a_142_byte_record_up_to_144_bytes() {
    let path = pool_path("fine-classes");
    let db = open(&path);
    assert!(db.engine().index().heap().pool().fine_classes());
    fill(&db, 3000, 1);
    verify(&db, 3000, 1, 144);
    drop(db); // a crash: the next open sweeps the heap with the same table
    let db = open(&path);
    verify(&db, 3000, 1, 144);
    fill(&db, 3000, 2); // every old record freed and its block reused
    verify(&db, 3000, 2, 144);
    db.close().unwrap();
    let _ = std::fs::remove_file(&path);
}

#[test]
fn pools_without_fine_classes_keep_the_64_byte_table_across_crashes() {
    let path = pool_path("coarse-classes");
    create_coarse_pool(&path);
    let db = open(&path);
    assert!(!db.engine().index().heap().pool().fine_classes());
    fill(&db, 3000, 1);
    verify(&db, 3000, 1, 192);
    drop(db);
    let db = open(&path);
    verify(&db, 3000, 1, 192);
    fill(&db, 3000, 2);
    drop(db);
    let db = open(&path);
    verify(&db, 3000, 2, 192);
    db.close().unwrap();
    let _ = std::fs::remove_file(&path);
}

/// The heap of a new 4 MiB pool at `path`, swept (a new pool has nothing to sweep).
fn small_heap(path: &Path) -> Heap {
    let opts = PoolOptions {
        size: 4 << 20,
        flush: Some(eagle_core::pmem::FlushMode::None),
        ..PoolOptions::default()
    };
    let heap = Heap::open(Arc::new(Pool::open(path, opts).unwrap())).unwrap();
    heap.finish_sweep().unwrap();
    heap
}

#[test]
fn a_full_heap_serves_smaller_blocks_from_free_blocks_of_larger_classes() {
    let path = pool_path("class-fallback");
    let heap = small_heap(&path);
    // 128-byte blocks until every chunk is assigned to that class (but the reserve, which
    // only allocations in a reserve scope may take).
    let mut blocks = Vec::new();
    while let Ok(b) = heap.alloc(128) {
        blocks.push(b);
    }
    assert!(blocks.len() > 10_000, "only {} blocks fit", blocks.len());
    let reserved = heap.stats().reserved_chunks;
    assert!(reserved > 0);
    assert_eq!(heap.stats().free_chunks, reserved);
    // Free every other block: every chunk keeps half its blocks, so none is released.
    for b in blocks.iter().skip(1).step_by(2) {
        heap.free(*b).unwrap();
    }
    assert_eq!(heap.stats().free_chunks, reserved);
    // 112-byte requests: their class has no chunk and no chunk but the reserve is free, so they take the freed
    // 128-byte blocks, every one of them.
    let mut reused = Vec::new();
    for _ in blocks.iter().skip(1).step_by(2) {
        let b = heap
            .alloc(112)
            .expect("a freed 128-byte block holds 112 bytes");
        assert_eq!(heap.block_size(b), Some(128));
        reused.push(b);
    }
    reused.sort_unstable();
    let mut freed: Vec<u64> = blocks.iter().skip(1).step_by(2).copied().collect();
    freed.sort_unstable();
    assert_eq!(reused, freed);
    assert!(heap.alloc(112).is_err(), "the heap is full again");
    drop(heap);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_request_of_a_multiple_of_64_bytes_never_falls_back_to_an_unaligned_class() {
    let path = pool_path("class-fallback-aligned");
    let heap = small_heap(&path);
    let mut blocks = Vec::new();
    while let Ok(b) = heap.alloc(80) {
        blocks.push(b);
    }
    for b in blocks.iter().step_by(2) {
        heap.free(*b).unwrap();
    }
    // 80-byte blocks are 16-byte aligned: a 64-byte request (class 64, none free) must not
    // take one; a 48-byte request (same class, no alignment promised) may.
    assert!(heap.alloc(64).is_err());
    let b = heap.alloc(48).expect("a free 80-byte block holds 48 bytes");
    assert_eq!(heap.block_size(b), Some(80));
    drop(heap);
    let _ = std::fs::remove_file(&path);
}

/// Twelve keys a round, kept: values of twelve sizes, so records of twelve classes.
fn kept(round: u32, j: u32) -> (Vec<u8>, Vec<u8>) {
    (
        format!("r{round}:{j}").into_bytes(),
        vec![round as u8; (j * 100) as usize],
    )
}

#[test]
fn reopens_do_not_leave_a_nearly_empty_pool_without_free_chunks() {
    // A small pool (119 chunks of 256 KiB) reopened many times, holding a few hundred small
    // records: each open spreads the chunks in use over the shards, so the writing thread's
    // shard starts without them, and each class it writes took a fresh chunk, which the
    // records kept assigned.
    let path = pool_path("reopens-chunks");
    let rounds = 60u32;
    for round in 0..rounds {
        let db = open(&path);
        for j in 0..12 {
            let (k, v) = kept(round, j);
            db.set(&k, &v, Default::default()).unwrap();
        }
        if round % 2 == 0 {
            db.close().unwrap();
        } else {
            drop(db); // a crash
        }
    }
    let db = open(&path);
    db.engine().index().wait_recovered().unwrap();
    let stats = db.engine().index().heap().stats();
    // Whole chunks are still to be had: a 1 MiB value (four chunks) fits.
    db.set(b"large", &vec![7u8; 1 << 20], Default::default())
        .unwrap_or_else(|e| panic!("{e}; {stats:?}"));
    for round in 0..rounds {
        for j in 0..12 {
            let (k, v) = kept(round, j);
            assert_eq!(db.get(&k).unwrap(), Some(v));
        }
    }
    assert!(db.engine().check().is_clean());
    db.close().unwrap();
    let _ = std::fs::remove_file(&path);
}

/// Whether the page holding pool byte `offset` is in memory (`mincore`).
fn resident(heap: &Heap, offset: u64) -> bool {
    let base = heap.pool().region().mapping().base();
    // SAFETY: `offset` lies inside the mapping; the page start is at or after its base (which
    // is page aligned), and mincore reads no byte of the page.
    unsafe {
        let page = (base.add(offset as usize) as usize) & !4095;
        let mut v = 0u8;
        assert_eq!(libc::mincore(page as *mut libc::c_void, 4096, &mut v), 0);
        v & 1 == 1
    }
}

#[test]
fn a_chunk_handed_out_has_its_pages_faulted_in_before_they_are_written() {
    let path = pool_path("populate");
    let heap = small_heap(&path);
    // The first block of a class is the first of a fresh chunk: nothing has touched the
    // chunk's last page, which only later allocations would write.
    let block = heap.alloc(64).unwrap();
    let last = block + eagle_core::heap::CHUNK - 1;
    assert!(resident(&heap, last), "the new chunk's last page is not in");
    // A chunk no allocation took stays out.
    assert!(!resident(&heap, last + 2 * eagle_core::heap::CHUNK));
    // A large object: the pages it will hold, not the rest of its last chunk.
    let chunk = eagle_core::heap::CHUNK;
    let large = heap.alloc(chunk + 4096).unwrap();
    assert!(
        resident(&heap, large + chunk + 4095),
        "the object's last page is not in"
    );
    assert!(
        !resident(&heap, large + 2 * chunk - 1),
        "the unused tail is in"
    );
    drop(heap);
    let _ = std::fs::remove_file(&path);
}
