//! The open's log scrub (`Wal::scrub`): zeroes and flushes every non-zero line of the WAL ring
//! outside its live records. Times it on the largest ring (a 4 GiB pool, 64 MiB of log) when
//! the ring is clean, after two laps of checkpointed records (erased in memory by the
//! checkpoints), and when all of it is dirty (what a power failure can leave on the media).
//!
//! Run: `cargo bench -p eagle-core --bench wal_scrub` (pool on /dev/shm or `EAGLE_BENCH_DIR`).
//! Prints one line per case; repeats each 3 times.

use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Instant;

use eagle_core::pool::Layout;
use eagle_core::wal::Wal;
use eagle_core::{Pool, PoolOptions};

const POOL: u64 = 4 << 30;

fn open(path: &std::path::Path) -> Wal {
    let opts = PoolOptions {
        size: POOL,
        ..PoolOptions::default()
    };
    Wal::open(Arc::new(Pool::open(path, opts).expect("pool")))
        .expect("wal")
        .0
}

fn timed(case: &str, wal: &Wal) {
    let t = Instant::now();
    wal.scrub(|| false);
    println!(
        "{case:<36} {:>8.1} ms ({} MiB ring)",
        t.elapsed().as_secs_f64() * 1e3,
        wal.capacity() >> 20
    );
}

fn main() {
    let dir = std::env::var("EAGLE_BENCH_DIR").unwrap_or_else(|_| "/dev/shm".into());
    let path = std::path::Path::new(&dir).join(format!("eagle-scrub-{}.pool", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let wal = open(&path);
    let ring = Layout::for_size(POOL, None).expect("layout").wal;
    // The first pass faults the ring's pages in; it is not a case.
    wal.scrub(|| false);
    for _ in 0..3 {
        timed("clean ring", &wal);
    }
    let payload = vec![7u8; 1000];
    for _ in 0..3 {
        let mut lsns = Vec::new();
        for _ in 0..2 * wal.capacity() / 1000 {
            lsns.push(wal.append(1, &payload).expect("append"));
            if lsns.len() == 64 {
                wal.checkpoint_many(&lsns);
                lsns.clear();
            }
        }
        wal.checkpoint_many(&lsns);
        timed("after two checkpointed laps", &wal);
    }
    drop(wal);
    for _ in 0..3 {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("pool file");
        file.write_all_at(&vec![0x5a; ring.len as usize], ring.offset)
            .expect("dirty the ring");
        drop(file);
        timed("dirty ring (all of it)", &open(&path));
    }
    let _ = std::fs::remove_file(&path);
}
