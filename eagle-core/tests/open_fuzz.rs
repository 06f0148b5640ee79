//! Fuzzing the door where pool bytes come in: a real pool (strings, a compact and a large hash,
//! after a crash so the log and the sweep have work) with random bytes overwritten anywhere
//! (biased to the header, metadata and log at the front) and sometimes truncated, then opened,
//! every key read and `check` run. Any outcome but a panic is fine: an error naming the damage,
//! or a pool that opens. `PROPTEST_CASES=N` sets the number of inputs (default 256).

mod common;

use std::sync::OnceLock;

use common::pool_path;
use eagle_core::pmem::FlushMode;
use eagle_core::{Db, DbOptions, PoolOptions};
use proptest::prelude::*;

/// The pristine pool's bytes, built once.
fn pristine() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let path = pool_path("fuzz-pristine");
        let db = Db::open(&path, options(true)).unwrap();
        for i in 0..300u32 {
            db.set(
                format!("key:{i}").as_bytes(),
                format!("value:{i}").as_bytes(),
                Default::default(),
            )
            .unwrap();
        }
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..80u32)
            .map(|i| (format!("f{i}").into_bytes(), format!("v{i}").into_bytes()))
            .collect();
        let refs: Vec<(&[u8], &[u8])> = pairs.iter().map(|(f, v)| (&f[..], &v[..])).collect();
        db.hset(b"big", &refs).unwrap();
        db.hset(b"small", &refs[..3]).unwrap();
        db.mset(&[(b"a", b"1"), (b"b", b"2")]).unwrap();
        drop(db); // a crash
        let bytes = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        bytes
    })
}

/// A 4 MiB pool without flushes (the tests crash by dropping).
fn options(create: bool) -> DbOptions {
    DbOptions {
        pool: PoolOptions {
            create,
            size: 4 << 20,
            flush: Some(FlushMode::None),
            ..PoolOptions::default()
        },
        ..DbOptions::default()
    }
}

/// Opens the damaged bytes and uses everything; panics are the only failure.
fn exercise(bytes: &[u8], name: &str) {
    let path = pool_path(name);
    std::fs::write(&path, bytes).unwrap();
    if let Ok(db) = Db::open(&path, options(false)) {
        read_everything(&db);
        let _ = db.engine().check();
        let _ = db.close();
    }
    let _ = std::fs::remove_file(&path);
}

fn read_everything(db: &Db) {
    for i in 0..300u32 {
        let _ = db.get(format!("key:{i}").as_bytes());
    }
    let _ = db.hgetall(b"big");
    let _ = db.hgetall(b"small");
    let _ = db.keys(b"*");
    let _ = db.dbsize();
}

fn mutation() -> impl Strategy<Value = (usize, u8)> {
    // Half of the hits in the first 64 KiB (header, metadata, log), the rest anywhere.
    let front = (0usize..64 << 10, any::<u8>());
    let anywhere = (0usize..4 << 20, any::<u8>());
    prop_oneof![front, anywhere]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn opening_any_damaged_pool_never_panics(
        hits in prop::collection::vec(mutation(), 1..12),
        truncate in prop::option::weighted(0.1, 0usize..4 << 20),
    ) {
        let mut bytes = pristine().to_vec();
        for (at, b) in hits {
            let at = at % bytes.len();
            bytes[at] = b;
        }
        if let Some(len) = truncate {
            bytes.truncate(len);
        }
        exercise(&bytes, "fuzz-case");
    }
}
