//! The background sweep beside a large hash's writer: the sweep reads a hash's part words under
//! the record's segment lock, the writer changes them under the key's lock. A sweep that runs
//! between the writer's publication of a new part and its retire of the old block must not
//! free that block (the retire's deferred free would free it a second time, perhaps handed
//! out again by then). Alone in its binary: it holds every sweep process-wide.

use crash_tests::Scratch;
use eagle_core::engine::RecoveryMode;
use eagle_core::fault::{self, Fault};
use eagle_core::{Db, DbOptions};

fn open(path: &std::path::Path) -> Db {
    let opts = DbOptions {
        recovery: Some(RecoveryMode::Background),
        ..crash_tests::small_unflushed()
    };
    Db::open(path, opts).unwrap()
}

#[test]
fn a_sweep_between_a_part_rewrite_and_its_retire_keeps_the_old_part() {
    use std::time::Duration;

    let scratch = Scratch::new("sweep-beside-hash");
    let path = scratch.path("eagle.pool");
    let fields: Vec<Vec<u8>> = (0..600).map(|i| format!("f{i}").into_bytes()).collect();
    {
        let db = open(&path);
        for chunk in fields.chunks(100) {
            let pairs: Vec<(&[u8], &[u8])> = chunk.iter().map(|f| (&f[..], &b"old"[..])).collect();
            db.hset(b"h", &pairs).unwrap();
        }
        // Dropped without closing: the next open sweeps the chunks in use.
    }
    fault::hold_sweeps(true);
    let db = std::sync::Arc::new(open(&path));
    // An overwrite of one field: its part is rewritten and published (a logged split, if the
    // table doubled since the block was written), then the writer stops before it retires the
    // old block.
    let writer = {
        let db = db.clone();
        std::thread::spawn(move || {
            fault::with(Fault::PauseBeforePartRetire, || {
                db.hset(b"h", &[(b"f7", b"new")]).unwrap()
            })
        })
    };
    assert!(
        fault::wait_paused(Duration::from_secs(30)),
        "writer never paused"
    );
    // The sweep now reads the new part's word, not the old block's.
    fault::hold_sweeps(false);
    db.engine().index().wait_recovered().unwrap();
    // Take every free block of every size class (an allocation takes a block at most four
    // times its class's size): if the sweep freed the old part, it is among them.
    let heap = db.engine().index().heap().clone();
    let mut taken = Vec::new();
    for size in (16..=16384).step_by(16) {
        while let Ok(block) = heap.alloc(size) {
            taken.push(block);
        }
    }
    fault::release_paused();
    assert_eq!(writer.join().unwrap(), 0);
    // The writer's retire frees the old part once no reader can see it.
    db.engine().index().reclaim();
    let refused: Vec<String> = taken
        .iter()
        .filter_map(|&b| heap.free(b).err().map(|e| format!("{b:#x}: {e}")))
        .collect();
    assert!(
        refused.is_empty(),
        "blocks the heap handed out were freed under their owner: {refused:?}"
    );
    drop(heap);
    let db = std::sync::Arc::into_inner(db).unwrap();
    db.close().unwrap();

    let db = open(&path);
    db.engine().index().wait_recovered().unwrap();
    for f in &fields {
        let want: &[u8] = if f == b"f7" { b"new" } else { b"old" };
        assert_eq!(db.hget(b"h", f).unwrap().as_deref(), Some(want));
    }
    let report = db.engine().check();
    assert!(report.is_clean(), "{:?}", report.problems);
    db.close().unwrap();
}
