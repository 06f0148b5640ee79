//! Corrupted and foreign pools: flip random bytes in each region of a pool holding strings, a
//! compact and a large hash (header, metadata words, write-ahead log, allocator chunk table,
//! index segments and directories, records, hash tables and parts), or truncate it, then open
//! it, read every key and run `check`. Opening must recover or refuse with an error that says
//! what is damaged; reads and `check` report damage as errors. Then writes of most kinds run:
//! they may fail, and where nothing saw the damage they must leave `check` clean. Never a
//! panic, never a hang.
//!
//! Prints `corruptions: N tried, P panics, H hangs` (and how the rest ended).
//! `EAGLE_CRASH_LONG=1` tries twenty times as many.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use crash_tests::Scratch;
use eagle_core::pmem::FlushMode;
use eagle_core::{Db, DbOptions, PoolOptions};
use pmem_emulation::SplitMix64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Open refused with an error.
    Refused,
    /// Opened; a read or `check` reported damage.
    Detected,
    /// Opened, everything read, `check` clean (the flip hit unused bytes or was repaired).
    Clean,
    /// A panic (a bug).
    Panic,
    /// No answer within the time limit (a bug).
    Hang,
    /// Opened with every read and `check` clean, and writes then left `check` finding damage
    /// (a bug: damage nothing could see spread).
    Broken,
}

fn options() -> DbOptions {
    DbOptions {
        pool: PoolOptions {
            create: false,
            flush: Some(FlushMode::None),
            ..PoolOptions::default()
        },
        ..DbOptions::default()
    }
}

/// Opens the pool, reads every key by type and runs `check`.
fn probe(path: &Path) -> Outcome {
    let db = match Db::open(path, options()) {
        Ok(db) => db,
        Err(_) => return Outcome::Refused,
    };
    let mut damaged = false;
    match db.keys(b"*") {
        Err(_) => damaged = true,
        Ok(keys) => {
            for k in keys {
                let read = match db.key_type(&k) {
                    Ok(Some(eagle_core::db::KeyType::Hash)) => {
                        db.hgetall(&k).map(drop).and(db.hlen(&k).map(drop))
                    }
                    // Listed by KEYS but not found by a lookup (the pool holds no expiring
                    // key): damage the lookup path does not report as an error.
                    Ok(None) => {
                        damaged = true;
                        Ok(())
                    }
                    Ok(_) => db.get(&k).map(drop),
                    Err(e) => Err(e),
                };
                damaged |= read.is_err();
            }
        }
    }
    damaged |= !db.engine().check().is_clean();
    if !damaged {
        // Damage that nothing saw must not make writes break the pool.
        writes(&db);
        // (A logged write that failed half-way leaves its records to the redo at the next
        // open, as a crash would, and stops writes: not a pool broken by the writes.)
        if db.engine().writable() && !db.engine().check().is_clean() {
            return Outcome::Broken;
        }
    } else {
        writes(&db);
    }
    drop(db); // as after a crash: the next trial starts from a fresh copy anyway
    if damaged {
        Outcome::Detected
    } else {
        Outcome::Clean
    }
}

/// Writes to the damaged pool's keys and new ones (strings, MSET, DEL, RENAME, hash fields
/// added, changed and deleted, INCR): each may fail with an error, never panic or hang.
fn writes(db: &Db) {
    use eagle_core::db::SetOptions;
    let note = |r: Result<(), eagle_core::db::DbError>| drop(r);
    for i in (0..400u32).step_by(23) {
        let v = vec![b'w'; (i * 7 % 300) as usize];
        note(
            db.set(format!("key:{i}").as_bytes(), &v, SetOptions::default())
                .map(drop),
        );
        note(
            db.set(format!("new:{i}").as_bytes(), &v, SetOptions::default())
                .map(drop),
        );
    }
    note(db.mset(&[(b"key:5", b"x"), (b"m1", b"y"), (b"fresh", b"z")]));
    note(db.del(&[b"key:7", b"key:8", b"m2"]).map(drop));
    note(db.rename(b"key:9", b"renamed", false).map(drop));
    note(db.rename(b"small", b"small2", false).map(drop));
    for i in (0..700u32).step_by(31) {
        let f = format!("field:{i}");
        note(db.hset(b"big", &[(f.as_bytes(), b"changed")]).map(drop));
    }
    note(
        db.hdel(b"big", &[b"field:1", b"field:2", b"field:600"])
            .map(drop),
    );
    note(db.hset(b"small2", &[(b"h", b"x")]).map(drop));
    note(db.hdel(b"small2", &[b"f"]).map(drop));
    note(db.incr_by(b"counter", 3).map(drop));
    note(db.del(&[b"big"]).map(drop));
}

/// Runs `probe` on a thread with a time limit, catching panics.
fn probe_guarded(path: PathBuf) -> Outcome {
    guarded(move || probe(&path), Duration::from_secs(20))
}

fn guarded(f: impl FnOnce() -> Outcome + Send + 'static, limit: Duration) -> Outcome {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(Outcome::Panic);
        let _ = tx.send(outcome);
    });
    rx.recv_timeout(limit).unwrap_or(Outcome::Hang)
}

#[test]
fn the_guard_reports_panics_and_hangs() {
    // Printing a panic's backtrace can take a while: a generous limit for it.
    let limit = Duration::from_secs(10);
    assert_eq!(guarded(|| panic!("on purpose"), limit), Outcome::Panic);
    assert_eq!(guarded(|| Outcome::Refused, limit), Outcome::Refused);
    let hang = || {
        std::thread::sleep(Duration::from_secs(3));
        Outcome::Clean
    };
    assert_eq!(guarded(hang, Duration::from_millis(300)), Outcome::Hang);
}

/// A pool with strings, a compact hash and a large (table-form) hash; its bytes and the byte
/// ranges of each region worth damaging.
fn build(scratch: &Scratch) -> (Vec<u8>, Vec<(&'static str, u64, u64)>) {
    let path = scratch.path("base.pool");
    let db = Db::open(
        &path,
        DbOptions {
            pool: PoolOptions {
                size: 16 << 20, // 256 KiB chunks per size class: small pools fill fast
                flush: Some(FlushMode::None),
                ..PoolOptions::default()
            },
            ..DbOptions::default()
        },
    )
    .expect("create");
    for i in 0..400u32 {
        let v = vec![b'a' + (i % 26) as u8; (i % 90) as usize];
        db.set(format!("key:{i}").as_bytes(), &v, Default::default())
            .unwrap();
    }
    db.hset(b"small", &[(b"f", b"v"), (b"g", b"w")]).unwrap();
    for i in 0..600u32 {
        let f = format!("field:{i}");
        db.hset(b"big", &[(f.as_bytes(), b"value")]).unwrap();
    }
    db.mset(&[(b"m1", b"1"), (b"m2", b"2")]).unwrap();
    let layout = *db.engine().pool().layout();
    let mut records = Vec::new();
    let mut cursor = 0;
    loop {
        cursor = db
            .engine()
            .index()
            .scan(cursor, 100, |r| records.push((r.offset(), r.size())))
            .unwrap();
        if cursor == 0 {
            break;
        }
    }
    db.close().expect("close");
    let bytes = std::fs::read(&path).expect("read pool");
    let heap = layout.heap;
    let mut regions = vec![
        ("header", 0, 4096),
        ("metadata words", layout.meta.offset, 256),
        ("write-ahead log", layout.wal.offset, 8192),
        ("chunk table", heap.offset, 4096),
        // The first chunks hold the first segment, directories, tables and early records.
        ("heap (index and tables)", heap.offset + 4096, 1 << 20),
    ];
    for (i, &(off, size)) in records.iter().enumerate().step_by(37) {
        let _ = i;
        regions.push(("record", off, size));
    }
    (bytes, regions)
}

#[test]
fn damaged_pools_are_refused_or_reported_never_a_panic_or_hang() {
    let long = std::env::var_os("EAGLE_CRASH_LONG").is_some();
    let trials = if long { 10_000 } else { 500 };
    let scratch = Scratch::new("corrupt");
    let (base, regions) = build(&scratch);
    let mut rng = SplitMix64::new(0x2545_F491_4F6C_DD1D);
    let mut below = |n: u64| rng.below(n.max(1) as usize) as u64;
    let mut counts = std::collections::BTreeMap::<&str, u64>::new();
    let mut bad = Vec::new();
    for t in 0..trials {
        let mut img = base.clone();
        let what = if t % 10 == 9 {
            // Truncation to a random length (a cut file).
            let len = below(img.len() as u64) as usize;
            img.truncate(len);
            "truncated"
        } else {
            let (name, off, len) = regions[(t as usize) % regions.len()];
            for _ in 0..1 + below(8) {
                let at = (off + below(len)) as usize;
                if at < img.len() {
                    img[at] ^= 1 << below(8);
                }
            }
            name
        };
        let path = scratch.write("trial.pool", &img);
        let outcome = probe_guarded(path);
        *counts
            .entry(match outcome {
                Outcome::Refused => "refused",
                Outcome::Detected => "detected",
                Outcome::Clean => "clean",
                Outcome::Panic => "panics",
                Outcome::Hang => "hangs",
                Outcome::Broken => "broken",
            })
            .or_default() += 1;
        if matches!(outcome, Outcome::Panic | Outcome::Hang | Outcome::Broken) {
            bad.push(format!("trial {t} ({what}): {outcome:?}"));
            if outcome == Outcome::Hang {
                break; // the hung thread still holds the trial file
            }
        }
    }
    let n = |k| counts.get(k).copied().unwrap_or(0);
    println!(
        "corruptions: {trials} tried, {} panics, {} hangs, {} broken by writes ({} refused at open, {} reported by reads or check, {} harmless)",
        n("panics"),
        n("hangs"),
        n("broken"),
        n("refused"),
        n("detected"),
        n("clean")
    );
    assert!(bad.is_empty(), "{bad:#?}");
    assert!(
        n("refused") > 0 && n("detected") > 0,
        "the damage must be seen: {counts:?}"
    );
}
