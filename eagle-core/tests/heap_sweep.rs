//! The heap's sweep after an open settles the chunks that were in use: what the index marks stays
//! allocated, everything else becomes free. A free that arrives while the sweep is still running
//! (a DEL served during background recovery) only clears its block's mark; the sweep then frees
//! the block once, and the space accounting counts it once.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::pool_path;
use eagle_core::heap::{CHUNK, Heap};
use eagle_core::{Pool, PoolOptions};

fn open(path: &Path) -> Heap {
    try_open(path).unwrap()
}

fn try_open(path: &Path) -> Result<Heap, eagle_core::heap::HeapError> {
    let opts = PoolOptions {
        size: 8 << 20,
        flush: Some(eagle_core::pmem::FlushMode::None),
        ..PoolOptions::default()
    };
    Heap::open(Arc::new(Pool::open(path, opts).unwrap()))
}

fn fill(heap: &Heap, at: u64, len: u64, byte: u8) {
    let region = heap.pool().region();
    let p = region.ptr(at, len).unwrap();
    // SAFETY: the block was just allocated to this test and nothing else touches it.
    unsafe { std::ptr::write_bytes(p, byte, len as usize) };
}

fn is_zero(heap: &Heap, at: u64, len: u64) -> bool {
    let mut buf = vec![0u8; len as usize];
    heap.pool().region().read(at, &mut buf);
    buf.iter().all(|&b| b == 0)
}

#[test]
fn a_block_freed_during_the_sweep_is_freed_once_and_counted_once() {
    let path = pool_path("heap-sweep-free");
    let (kept, freed, unmarked, large, large_kept);
    {
        let heap = open(&path);
        heap.finish_sweep().unwrap();
        kept = heap.alloc(100).unwrap();
        freed = heap.alloc(100).unwrap();
        unmarked = heap.alloc(100).unwrap();
        large = heap.alloc(CHUNK + 1).unwrap();
        large_kept = heap.alloc(CHUNK + 1).unwrap();
        for (at, byte) in [(kept, 1), (freed, 2), (unmarked, 3)] {
            fill(&heap, at, 100, byte);
        }
        fill(&heap, large, CHUNK + 1, 4);
        fill(&heap, large_kept, CHUNK + 1, 5);
    }
    let heap = open(&path);
    let small = heap.block_size(kept).unwrap();
    let big = heap.block_size(large).unwrap();
    assert_eq!(
        heap.block_size(freed),
        Some(small),
        "same chunk, same class"
    );
    // The index's sweep reaches these, then two of them are deleted before the sweep ends.
    for b in [kept, freed, large, large_kept] {
        heap.mark(b).unwrap();
    }
    heap.free(freed).unwrap();
    heap.free(large).unwrap();
    // The freed blocks are zeroed at once, the others wait for the sweep.
    assert!(is_zero(&heap, freed, small) && is_zero(&heap, large, big));
    assert!(!is_zero(&heap, unmarked, small));
    // Reclaimed by the sweep: `unmarked` (not zero yet) and the large block's chunks, which it
    // releases; the small freed block is already zero and free of its mark, so not counted.
    assert_eq!(heap.finish_sweep(), Ok(2));
    assert!(is_zero(&heap, unmarked, small));
    assert_eq!(
        heap.stats().used,
        small + big,
        "only `kept` and `large_kept`"
    );
    // Freed exactly once: a second free is refused, the live blocks free normally.
    assert!(heap.free(freed).is_err());
    assert!(heap.free(large).is_err());
    heap.free(kept).unwrap();
    heap.free(large_kept).unwrap();
    assert_eq!(heap.stats().used, 0);
    // Every chunk is empty again, so all of them are free and a reopen finds nothing in use.
    assert_eq!(heap.stats().chunk_bytes, 0);
    drop(heap);
    let heap = open(&path);
    assert_eq!(heap.finish_sweep(), Ok(0));
    assert_eq!(heap.stats().chunk_bytes, 0);
    drop(heap);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_large_object_said_to_reach_past_the_last_chunk_is_damage() {
    let path = pool_path("heap-large-past-end");
    let heap = open(&path);
    heap.alloc(3 * CHUNK).unwrap();
    // The head's word in the chunk table (kind 2 in its top byte), its chunk count grown past
    // the heap's end.
    let table = heap.pool().layout().heap.offset;
    let region = heap.pool().region();
    let word = (0..64)
        .map(|c| region.atomic_u64(table + 8 * c).unwrap())
        .find(|w| w.load(std::sync::atomic::Ordering::Relaxed) >> 56 == 2)
        .expect("the large object's head word");
    word.fetch_add(1 << 20, std::sync::atomic::Ordering::Relaxed);
    drop(heap);
    let err = try_open(&path).err();
    assert!(
        matches!(err, Some(eagle_core::heap::HeapError::Corrupted { .. })),
        "{err:?}"
    );
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_live_large_object_whose_tail_word_is_damaged_is_reported_not_freed() {
    // The word of its second chunk damaged into "free", into "a small class's chunk", into
    // "the head of a one-chunk object" (which nothing reaches: it would be freed), then into
    // "the second tail of an object" (a tail without its head: an orphan, it would be freed).
    for damaged in [0u64, 1 << 56, 2 << 56 | 1, 3 << 56 | 2] {
        let path = pool_path("heap-large-torn-tail");
        let large;
        {
            let heap = open(&path);
            heap.finish_sweep().unwrap();
            large = heap.alloc(3 * CHUNK).unwrap();
            fill(&heap, large, 3 * CHUNK, 9);
            let table = heap.pool().layout().heap.offset;
            let region = heap.pool().region();
            let head = (0..64)
                .find(|&c| {
                    let w = region.atomic_u64(table + 8 * c).unwrap();
                    w.load(std::sync::atomic::Ordering::Relaxed) >> 56 == 2
                })
                .expect("the large object's head word");
            region
                .atomic_u64(table + 8 * (head + 1))
                .unwrap()
                .store(damaged, std::sync::atomic::Ordering::Relaxed);
        }
        let heap = open(&path);
        // The index still reaches it.
        heap.mark(large).unwrap();
        let swept = heap.finish_sweep();
        assert!(
            matches!(swept, Err(eagle_core::heap::HeapError::Corrupted { .. })),
            "{swept:?}"
        );
        // Not zeroed under the value, and never handed out again.
        let mut buf = vec![0u8; 3 * CHUNK as usize];
        heap.pool().region().read(large, &mut buf);
        assert!(buf.iter().all(|&b| b == 9), "the value was zeroed");
        while let Ok(b) = heap.alloc(CHUNK) {
            assert!(
                b + CHUNK <= large || b >= large + 3 * CHUNK,
                "chunk {b:#x} of the live object was allocated again"
            );
        }
        drop(heap);
        let _ = std::fs::remove_file(&path);
    }
}
