//! Opening and creating pools: every way a file can be wrong gets an error naming the path and
//! the problem, and leaves the file as it was.

use std::path::{Path, PathBuf};

use eagle_core::pmem::{CpuFlushCaps, FlushMode, PoolKind};
use eagle_core::pool::{FORMAT_VERSION, HEADER_BLOCK, MAGIC, MIN_POOL_SIZE};
use eagle_core::{Pool, PoolError, PoolOptions};

const SIZE: u64 = 4 << 20;

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("eagle-pool-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn path(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn opts() -> PoolOptions {
    PoolOptions {
        size: SIZE,
        flush: Some(FlushMode::None),
        ..PoolOptions::default()
    }
}

fn open_existing(path: &Path) -> Result<Pool, PoolError> {
    Pool::open(
        path,
        PoolOptions {
            create: false,
            ..opts()
        },
    )
}

fn make_pool(path: &Path) -> Vec<u8> {
    Pool::open(path, opts()).unwrap().close().unwrap();
    std::fs::read(path).unwrap()
}

fn assert_names_path(e: &PoolError, path: &Path, needle: &str) {
    let msg = e.to_string();
    assert!(msg.contains(path.to_str().unwrap()), "no path in: {msg}");
    assert!(msg.contains(needle), "'{needle}' not in: {msg}");
}

#[test]
fn created_pool_reopens_with_the_same_identity() {
    let d = TempDir::new("reopen");
    let p = d.path("a.pool");
    let pool = Pool::open(&p, opts()).unwrap();
    assert!(pool.created() && pool.was_clean());
    assert_eq!(pool.kind(), PoolKind::Emulated);
    let header = *pool.header();
    assert_eq!(header.version, FORMAT_VERSION);
    assert_eq!(header.pool_size, SIZE);
    assert_eq!(std::fs::metadata(&p).unwrap().len(), SIZE);
    pool.close().unwrap();
    let pool = open_existing(&p).unwrap();
    assert!(!pool.created() && pool.was_clean());
    assert_eq!(*pool.header(), header);
}

#[test]
fn opening_a_file_that_is_not_a_pool_fails_and_leaves_it_untouched() {
    let d = TempDir::new("foreign");
    let p = d.path("notes.txt");
    let content = b"shopping list: eggs, milk\n".repeat(400);
    std::fs::write(&p, &content).unwrap();
    for create in [false, true] {
        let e = Pool::open(&p, PoolOptions { create, ..opts() })
            .err()
            .unwrap();
        assert!(matches!(e, PoolError::NotAPool { .. }), "{e}");
        assert_names_path(&e, &p, "not an EagleDB pool");
    }
    assert_eq!(std::fs::read(&p).unwrap(), content);
}

#[test]
fn opening_a_truncated_pool_names_both_sizes() {
    let d = TempDir::new("trunc");
    let p = d.path("a.pool");
    make_pool(&p);
    let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    f.set_len(SIZE / 2).unwrap();
    let e = open_existing(&p).err().unwrap();
    assert!(matches!(e, PoolError::Truncated { .. }), "{e}");
    assert_names_path(
        &e,
        &p,
        &format!("{} bytes, the pool needs {SIZE}", SIZE / 2),
    );
    // Shorter than the header itself.
    f.set_len(100).unwrap();
    let e = open_existing(&p).err().unwrap();
    assert!(matches!(e, PoolError::Truncated { .. }), "{e}");
    assert_names_path(&e, &p, &format!("needs {HEADER_BLOCK}"));
}

#[test]
fn opening_a_future_format_version_asks_for_an_upgrade() {
    let d = TempDir::new("future");
    let p = d.path("a.pool");
    let mut bytes = make_pool(&p);
    bytes[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    std::fs::write(&p, &bytes).unwrap();
    let e = open_existing(&p).err().unwrap();
    assert!(matches!(e, PoolError::FutureVersion { .. }), "{e}");
    assert_names_path(&e, &p, "upgrade");
    assert_eq!(
        std::fs::read(&p).unwrap(),
        bytes,
        "a refused pool must stay as it was"
    );
}

#[test]
fn opening_a_pool_with_a_bad_checksum_reports_it() {
    let d = TempDir::new("crc");
    let p = d.path("a.pool");
    let mut bytes = make_pool(&p);
    bytes[40] ^= 0x10; // a bit of the metadata offset
    std::fs::write(&p, &bytes).unwrap();
    let e = open_existing(&p).err().unwrap();
    assert!(matches!(e, PoolError::ChecksumMismatch { .. }), "{e}");
    assert_names_path(&e, &p, "checksum");
}

#[test]
fn a_garbled_clean_marker_is_reported_as_corruption() {
    let d = TempDir::new("marker");
    let p = d.path("a.pool");
    let mut bytes = make_pool(&p);
    bytes[130] ^= 0xff;
    std::fs::write(&p, &bytes).unwrap();
    let e = open_existing(&p).err().unwrap();
    assert!(matches!(e, PoolError::Corrupted { .. }), "{e}");
    assert_names_path(&e, &p, "clean-shutdown marker");
}

#[test]
fn opening_a_missing_pool_without_create_is_not_found_and_creates_nothing() {
    let d = TempDir::new("missing");
    let p = d.path("none.pool");
    let e = open_existing(&p).err().unwrap();
    assert!(matches!(e, PoolError::NotFound { .. }), "{e}");
    assert!(!p.exists());
}

#[test]
fn a_pool_cannot_be_opened_twice_at_once() {
    let d = TempDir::new("lock");
    let p = d.path("a.pool");
    let first = Pool::open(&p, opts()).unwrap();
    let e = open_existing(&p).err().unwrap();
    assert!(matches!(e, PoolError::Locked { .. }), "{e}");
    drop(first);
    open_existing(&p).unwrap();
}

#[test]
fn clean_close_is_remembered_and_a_crash_bumps_the_recovery_epoch() {
    let d = TempDir::new("epoch");
    let p = d.path("a.pool");
    let pool = Pool::open(&p, opts()).unwrap();
    let e0 = pool.recovery_epoch();
    drop(pool); // no close: as if the process died
    let pool = open_existing(&p).unwrap();
    assert!(!pool.was_clean());
    assert_eq!(pool.recovery_epoch(), e0 + 1);
    pool.record_recovery(1234, 5678);
    pool.close().unwrap();
    let pool = open_existing(&p).unwrap();
    assert!(pool.was_clean());
    assert_eq!(pool.recovery_epoch(), e0 + 1);
    assert_eq!(pool.last_recovery(), Some((1234, 5678)));
}

#[test]
fn an_unfinished_creation_is_redone_but_only_with_create() {
    let d = TempDir::new("creating");
    let p = d.path("a.pool");
    let mut bytes = make_pool(&p);
    bytes[0..8].copy_from_slice(b"EAGLINIT");
    std::fs::write(&p, &bytes).unwrap();
    assert!(matches!(
        open_existing(&p).err().unwrap(),
        PoolError::NotFound { .. }
    ));
    let pool = Pool::open(&p, opts()).unwrap();
    assert!(pool.created());
    pool.close().unwrap();
    assert_eq!(&std::fs::read(&p).unwrap()[0..8], &MAGIC);
}

#[test]
fn an_empty_or_zeroed_file_becomes_a_pool_with_create() {
    let d = TempDir::new("blank");
    let p = d.path("a.pool");
    std::fs::write(&p, b"").unwrap();
    let pool = Pool::open(&p, opts()).unwrap();
    assert!(pool.created());
    assert_eq!(pool.header().pool_size, SIZE);
    drop(pool);
    let q = d.path("zero.pool");
    std::fs::write(&q, vec![0u8; 3 << 20]).unwrap();
    let pool = Pool::open(&q, opts()).unwrap();
    assert!(pool.created());
    assert_eq!(
        pool.header().pool_size,
        3 << 20,
        "an existing zeroed file keeps its size"
    );
}

#[test]
fn a_pool_size_below_the_minimum_is_refused() {
    let d = TempDir::new("small");
    let p = d.path("a.pool");
    let e = Pool::open(
        &p,
        PoolOptions {
            size: MIN_POOL_SIZE - 4096,
            ..opts()
        },
    )
    .err()
    .unwrap();
    assert!(matches!(e, PoolError::InvalidSize { .. }), "{e}");
    assert_names_path(&e, &p, "between");
}

#[test]
fn require_dax_refuses_a_plain_file() {
    let d = TempDir::new("dax");
    let p = d.path("a.pool");
    let e = Pool::open(
        &p,
        PoolOptions {
            require_dax: true,
            ..opts()
        },
    )
    .err()
    .unwrap();
    assert_names_path(&e, &p, "require_dax");
}

#[test]
fn every_flush_mode_this_cpu_has_persists_across_reopen() {
    let caps = CpuFlushCaps::detect();
    let d = TempDir::new("modes");
    let mut tried = Vec::new();
    for name in FlushMode::NAMES {
        let mode: FlushMode = name.parse().unwrap();
        if !mode.supported_by(caps) {
            continue;
        }
        let p = d.path(&format!("{name}.pool"));
        let pool = Pool::open(
            &p,
            PoolOptions {
                flush: Some(mode),
                ..opts()
            },
        )
        .unwrap();
        assert_eq!(pool.flush_mode(), mode);
        let region = pool.region();
        let at = pool.layout().heap.offset + 4096 + 24;
        // Span two cache lines so the flush loop covers more than one line.
        let data: Vec<u8> = (0..100u8).collect();
        // SAFETY: the test owns the pool exclusively; the range is inside the heap.
        unsafe { region.write(at, &data) };
        region.persist(at, data.len());
        assert!(!region.persister().has_failed());
        pool.close().unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(&bytes[at as usize..at as usize + 100], &data[..], "{name}");
        tried.push(*name);
    }
    // This CPU (and every x86-64 CI machine) has at least clflush, msync and none.
    assert!(tried.len() >= 3, "only {tried:?}");
}

#[test]
fn persist_outside_the_region_is_a_caller_bug_and_panics() {
    let d = TempDir::new("oob");
    let pool = Pool::open(d.path("a.pool"), opts()).unwrap();
    let len = pool.region().len() as u64;
    assert!(pool.region().atomic_u64(len).is_none());
    assert!(pool.region().atomic_u64(12).is_none(), "misaligned");
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pool.region().persist(len - 4, 8)
    }));
    assert!(r.is_err());
}

#[test]
fn a_private_open_recovers_in_memory_and_never_writes_the_file() {
    use eagle_core::db::SetOptions;
    use eagle_core::{Db, DbOptions};
    let dir = TempDir::new("private");
    let path = dir.path("p");
    let db_opts = |private: bool| DbOptions {
        pool: PoolOptions {
            create: !private,
            private,
            ..opts()
        },
        ..DbOptions::default()
    };
    let db = Db::open(&path, db_opts(false)).unwrap();
    for i in 0..100u32 {
        db.set(&i.to_le_bytes(), b"before", SetOptions::default())
            .unwrap();
    }
    drop(db); // a crash: the next open recovers
    let crashed = std::fs::read(&path).unwrap();

    let private = Db::open(&path, db_opts(true)).unwrap();
    assert_eq!(
        private.get(&7u32.to_le_bytes()).unwrap().as_deref(),
        Some(&b"before"[..])
    );
    private
        .set(b"only-in-memory", b"x", SetOptions::default())
        .unwrap();
    drop(private);
    assert!(
        std::fs::read(&path).unwrap() == crashed,
        "a private open wrote the file"
    );

    let shared = Db::open(&path, db_opts(false)).unwrap();
    assert_eq!(shared.get(b"only-in-memory").unwrap(), None);
    assert_eq!(
        shared.get(&99u32.to_le_bytes()).unwrap().as_deref(),
        Some(&b"before"[..])
    );
    drop(shared);

    let missing = dir.path("missing");
    let e = Db::open(&missing, db_opts(true))
        .err()
        .expect("no pool to open");
    assert!(e.to_string().contains("missing"), "{e}");
    assert!(!missing.exists(), "a private open must not create the file");
}
