//! The heap's last sweep step settles the chunks in use at open one at a time: a free (or a
//! writer's `keep`, which may hold bucket locks meanwhile) waits for one chunk's settling, not
//! for the whole step. Alone in its binary: its pause point is process-wide.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use crash_tests::Scratch;
use eagle_core::PoolOptions;
use eagle_core::fault::{self, Fault};
use eagle_core::heap::{Heap, HeapError};
use eagle_core::pool::Pool;

fn opts() -> PoolOptions {
    PoolOptions {
        size: 8 << 20,
        flush: Some(eagle_core::pmem::FlushMode::None),
        ..PoolOptions::default()
    }
}

#[test]
fn frees_during_the_last_sweep_step_wait_for_one_chunk_not_all() {
    let scratch = Scratch::new("settling-chunks");
    let path = scratch.path("eagle.pool");
    // Blocks of two classes over several chunks, left in use (the heap is dropped as in a
    // crash: the next open settles every chunk from the marks).
    let mut blocks = Vec::new();
    {
        let heap = Heap::open(Arc::new(Pool::open(&path, opts()).unwrap())).unwrap();
        heap.finish_sweep().unwrap();
        for _ in 0..3000 {
            blocks.push(heap.alloc(128).unwrap());
            blocks.push(heap.alloc(1000).unwrap());
        }
    }
    blocks.sort_unstable();
    let heap = Heap::open(Arc::new(Pool::open(&path, opts()).unwrap())).unwrap();
    for &b in &blocks {
        heap.mark(b).unwrap();
    }
    let size = |b: u64| heap.block_size(b).unwrap();
    let used_before: u64 = blocks.iter().map(|&b| size(b)).sum();
    let (first, last) = (blocks[0], *blocks.last().unwrap());
    let freed_bytes = size(first) + size(last);
    std::thread::scope(|s| {
        let sweeper =
            s.spawn(|| fault::with(Fault::PauseBetweenSettledChunks, || heap.finish_sweep()));
        assert!(
            fault::wait_paused(Duration::from_secs(30)),
            "the sweep never paused"
        );
        // Paused after settling the lowest chunk: a free there is an ordinary free, one in the
        // highest chunk (not settled yet) clears its mark. Neither waits for the sweep.
        let (tx, rx) = mpsc::channel();
        let heap = &heap;
        s.spawn(move || {
            let freed = (heap.free(first), heap.free(last));
            tx.send(freed).unwrap();
        });
        let freed = rx.recv_timeout(Duration::from_secs(10));
        // Let the sweep go on (one pause per chunk) before judging, so nothing is left hanging.
        while !sweeper.is_finished() {
            fault::release_paused();
            std::thread::sleep(Duration::from_millis(1));
        }
        let freed = freed.expect("the frees waited for the whole sweep step");
        assert_eq!(freed, (Ok(()), Ok(())));
        sweeper.join().unwrap().unwrap();
    });
    // Both blocks are free (a second free is refused as a double free), the rest in use.
    for b in [first, last] {
        assert!(
            matches!(heap.free(b), Err(HeapError::BadFree { .. })),
            "block {b:#x} was not freed"
        );
    }
    assert_eq!(heap.stats().used, used_before - freed_bytes);
}
