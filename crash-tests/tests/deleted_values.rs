//! Deleted values do not outlive the next open. A DEL or an overwrite frees the old record, and
//! the heap zeroes the freed block. After a power failure at any fence, the next open (once its
//! sweep has ended) must leave no byte of an acknowledged deleted value anywhere in the pool:
//! not in a free block, not in the slack of a reused block, not in a chunk that was released.
//!
//! Every value carries a marker `SECRET` and its six-digit id. A check copies the crash image,
//! opens it, waits for the sweep, closes it, and looks for the marker of every value whose DEL
//! or overwrite had returned before the crash.
//!
//! Keys too: commands that go through the write-ahead log (MSET, multi-key DEL, RENAME, atomic
//! transactions) write the names of their keys into its records, which the log erases once it
//! no longer needs them, and the next open erases what a crash kept. Those keys' names carry
//! the marker.
//!
//! `EAGLE_CRASH_LONG=1` checks an image at every fence (by default, one fence in 16).

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use crash_tests::{FenceImages, Report, Scratch, standard_policies};
use eagle_core::db::SetOptions;
use eagle_core::pmem::FlushMode;
use eagle_core::{Db, DbOptions, EngineError, PoolError, PoolOptions};
use parking_lot::Mutex;
use pmem_emulation::SplitMix64;

const POOL: u64 = 6 << 20;
const MARK: &[u8] = b"SECRET";

/// A value of `len` bytes (at least 12) holding the marker and `id` at its start and end, so
/// both its first and its last cache line are found if they linger.
fn secret(id: u32, len: usize) -> Vec<u8> {
    let tag = format!("SECRET{id:06}");
    let mut v = vec![b'.'; len.max(2 * tag.len())];
    let n = v.len();
    v[..tag.len()].copy_from_slice(tag.as_bytes());
    v[n - tag.len()..].copy_from_slice(tag.as_bytes());
    v
}

/// The ids of every marker in `bytes`.
fn markers(bytes: &[u8]) -> HashSet<u32> {
    let mut found = HashSet::new();
    let mut at = 0;
    while let Some(p) = bytes[at..].windows(MARK.len()).position(|w| w == MARK) {
        let start = at + p + MARK.len();
        if let Some(digits) = bytes.get(start..start + 6)
            && let Some(id) = std::str::from_utf8(digits)
                .ok()
                .and_then(|s| s.parse().ok())
        {
            found.insert(id);
        }
        at = start;
    }
    found
}

/// Which values are live (key -> id) and which are gone for good (acknowledged deletions).
#[derive(Default)]
struct Model {
    live: std::collections::HashMap<Vec<u8>, u32>,
    gone: HashSet<u32>,
    /// An HDEL under way (hash key, field, its value's id): an image taken during it is
    /// checked after the HDEL is made again on the reopened pool (and so acknowledged).
    retry: Option<(Vec<u8>, Vec<u8>, u32)>,
    /// Fences not imaged (a phase that only builds what the checked one needs).
    quiet: bool,
}

impl Model {
    /// The value under `key` was replaced or deleted, and the call returned.
    fn forget(&mut self, key: &[u8]) {
        if let Some(id) = self.live.remove(key) {
            self.gone.insert(id);
        }
    }
}

fn plain() -> PoolOptions {
    PoolOptions {
        create: false,
        size: POOL,
        flush: Some(FlushMode::None),
        ..PoolOptions::default()
    }
}

/// Opens a copy of `image`, lets its sweep end, makes the HDEL `retry` names again (its value
/// is then gone too), closes it, and looks for deleted values.
fn verify(
    scratch: &Scratch,
    image: &[u8],
    gone: &HashSet<u32>,
    retry: Option<(Vec<u8>, Vec<u8>, u32)>,
) -> Result<(), String> {
    let path = scratch.write("reopened.pool", image);
    let opened = Db::open(
        &path,
        DbOptions {
            pool: plain(),
            ..DbOptions::default()
        },
    );
    let db = match opened {
        // A crash while the pool is being created: nothing was written, nothing deleted.
        Err(EngineError::Pool(PoolError::NotFound { .. })) if gone.is_empty() => return Ok(()),
        Err(e) => return Err(format!("open: {e}")),
        Ok(db) => db,
    };
    db.engine()
        .index()
        .wait_recovered()
        .map_err(|e| format!("recovery: {e}"))?;
    let mut gone = gone.clone();
    if let Some((key, field, id)) = retry {
        db.hdel(&key, &[&field[..]])
            .map_err(|e| format!("hdel again: {e}"))?;
        gone.insert(id);
    }
    db.close().map_err(|e| format!("close: {e}"))?;
    lingering(&path, &gone)
}

fn lingering(path: &Path, gone: &HashSet<u32>) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let mut left: Vec<u32> = markers(&bytes).intersection(gone).copied().collect();
    left.sort_unstable();
    if left.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} deleted values still in the pool after reopening (ids {:?}...)",
            left.len(),
            &left[..left.len().min(6)]
        ))
    }
}

/// A live pool under the simulator whose fences (one in `every`) yield crash images, each
/// checked against the model's acknowledged deletions at that moment.
fn live_pool(name: &str, every: u64) -> (Arc<Scratch>, Arc<Mutex<Model>>, Db, FenceImages) {
    live_pool_sized(name, every, POOL)
}

/// [`live_pool`] of `size` bytes.
fn live_pool_sized(
    name: &str,
    every: u64,
    size: u64,
) -> (Arc<Scratch>, Arc<Mutex<Model>>, Db, FenceImages) {
    let scratch = Arc::new(Scratch::new(name));
    let model = Arc::new(Mutex::new(Model::default()));
    let (sc, m, quiet) = (scratch.clone(), model.clone(), model.clone());
    let (policies, every_policy) = (standard_policies(2), standard_policies(2));
    let (hook, images) = FenceImages::hook_choosing(
        scratch.path("image.pool"),
        move |fence| {
            let m = quiet.lock();
            if m.retry.is_some() {
                // The fences of an HDEL under way, under every policy.
                every_policy.clone()
            } else if fence.is_multiple_of(every) && !m.quiet {
                vec![policies[(fence / every % policies.len() as u64) as usize]]
            } else {
                Vec::new()
            }
        },
        move |_, _, image| {
            let (gone, retry) = {
                let m = m.lock();
                (m.gone.clone(), m.retry.clone())
            };
            verify(&sc, image.bytes, &gone, retry)
        },
    );
    let opts = PoolOptions {
        size,
        ..PoolOptions::default()
    }
    .simulated(Some(hook));
    let db = Db::open(
        scratch.path("live.pool"),
        DbOptions {
            pool: opts,
            ..DbOptions::default()
        },
    )
    .expect("open the live pool");
    (scratch, model, db, images)
}

/// Adds to `report` a power failure after the last command, under every policy, then drops
/// the live pool.
fn check_the_end(scratch: &Scratch, model: &Mutex<Model>, db: Db, report: &mut Report) {
    let sim = crash_tests::simulator_of(db.engine());
    let gone = model.lock().gone.clone();
    for policy in standard_policies(4) {
        report.checked += 1;
        if let Err(v) = verify(scratch, &sim.crash_image(&policy), &gone, None) {
            report
                .violations
                .push(format!("power failure at the end ({policy:?}): {v}"));
        }
    }
}

/// Writes, deletes, overwrites with shorter values, and reuses the freed blocks with short
/// records; `every` > 1 checks one fence in `every`.
fn run(seed: u64, every: u64) -> Report {
    let (scratch, model, db, images) = live_pool(&format!("deleted-{seed}"), every);
    let mut rng = SplitMix64::new(seed);
    let mut next_id = 0u32;
    let mut set = |db: &Db, key: &[u8], len: usize| {
        next_id += 1;
        db.set(key, &secret(next_id, len), SetOptions::default())
            .expect("set");
        let mut m = model.lock();
        m.forget(key);
        m.live.insert(key.to_vec(), next_id);
    };
    // Values from one cache line to several, over many size classes.
    let lens = [16usize, 40, 100, 200, 300, 450, 700, 1000, 2500];
    let keys: Vec<Vec<u8>> = (0..240).map(|i| format!("k{i}").into_bytes()).collect();
    for k in &keys {
        set(&db, k, lens[rng.below(lens.len())]);
    }
    for (i, k) in keys.iter().enumerate() {
        match i % 3 {
            0 => {
                db.del(&[k.as_slice()]).expect("del");
                model.lock().forget(k);
            }
            // A shorter value: the old block is freed, its size class is reused.
            1 => set(&db, k, 12 + rng.below(40)),
            _ => set(&db, k, lens[rng.below(lens.len())]),
        }
    }
    // Short records without a marker fill the freed blocks (and larger classes' blocks once
    // the pool's chunks run out), leaving slack after them.
    let fill: Vec<Vec<u8>> = (0..400).map(|i| format!("f{i}").into_bytes()).collect();
    for k in &fill {
        let v = vec![b'f'; 1 + rng.below(60)];
        db.set(k, &v, SetOptions::default()).expect("fill");
    }
    // Blocks of one size class reused by shorter values: the old value's last lines (and
    // its closing marker) lie in the new owner's slack. (Value lengths paired so both
    // records, 34 or 35 bytes longer, fall in the classes of 768, 1536 and 2560 bytes.)
    let pairs = [(720usize, 660usize), (1500, 1260), (2500, 2030)];
    let big: Vec<Vec<u8>> = (0..60).map(|i| format!("b{i}").into_bytes()).collect();
    let reused: Vec<Vec<u8>> = (0..60).map(|i| format!("r{i}").into_bytes()).collect();
    for (i, k) in big.iter().enumerate() {
        set(&db, k, pairs[i % 3].0);
    }
    for k in &big {
        db.del(&[k.as_slice()]).expect("del");
        model.lock().forget(k);
    }
    for (i, k) in reused.iter().enumerate() {
        set(&db, k, pairs[i % 3].1);
    }
    // Large objects (whole chunks of their own), freed by an overwrite and by a DEL.
    let large: Vec<Vec<u8>> = (0..3).map(|i| format!("l{i}").into_bytes()).collect();
    for (i, k) in large.iter().enumerate() {
        set(&db, k, 70_000 + 60_000 * i);
    }
    set(&db, &large[0], 100);
    // Empty whole chunks: their release must not leave old bytes behind.
    for k in keys.iter().chain(&fill).chain(&reused).chain(&large) {
        db.del(&[k.as_slice()]).expect("del");
        model.lock().forget(k);
    }
    let mut report = images.report();
    check_the_end(&scratch, &model, db, &mut report);
    report
}

/// Keys named by the marker (`secret` of 240 bytes: the same name always, a distinct id each)
/// written and deleted by commands that go through the write-ahead log, whose records hold
/// the names: MSET, multi-key DEL, RENAME, and atomic transactions (undo records). Values hold
/// no marker. The log (256 KiB) laps about twice.
fn run_keys(seed: u64, every: u64) -> Report {
    let (scratch, model, db, images) = live_pool(&format!("deleted-keys-{seed}"), every);
    let mut rng = SplitMix64::new(seed);
    let mut next_id = 0u32;
    let mut fresh = || {
        next_id += 1;
        (next_id, secret(next_id, 240))
    };
    let gone = |ids: &[u32]| model.lock().gone.extend(ids);
    let mut live: Vec<(u32, Vec<u8>)> = Vec::new();
    for _ in 0..100 {
        let named: Vec<(u32, Vec<u8>)> = (0..6).map(|_| fresh()).collect();
        let value = vec![b'v'; 8 + rng.below(40)];
        let pairs: Vec<(&[u8], &[u8])> = named
            .iter()
            .map(|(_, k)| (k.as_slice(), value.as_slice()))
            .collect();
        db.mset(&pairs).expect("mset");
        let dead: Vec<&[u8]> = named[..3].iter().map(|(_, k)| k.as_slice()).collect();
        assert_eq!(db.del(&dead).expect("del"), 3);
        gone(&[named[0].0, named[1].0, named[2].0]);
        let (to_id, to) = fresh();
        assert!(db.rename(&named[3].1, &to, false).expect("rename"));
        gone(&[named[3].0]);
        let (new_id, new) = fresh();
        {
            let _tx = db.atomic();
            db.set(&new, &value, SetOptions::default()).expect("set");
            assert_eq!(db.del(&[named[4].1.as_slice()]).expect("del"), 1);
        }
        // Acknowledged only once the transaction has ended: a crash inside it rolls it back.
        gone(&[named[4].0]);
        live.extend([named[5].clone(), (to_id, to), (new_id, new)]);
    }
    for batch in live.chunks(10) {
        let keys: Vec<&[u8]> = batch.iter().map(|(_, k)| k.as_slice()).collect();
        assert_eq!(db.del(&keys).expect("del"), keys.len() as u64);
        gone(&batch.iter().map(|(id, _)| *id).collect::<Vec<_>>());
    }
    let mut report = images.report();
    check_the_end(&scratch, &model, db, &mut report);
    report
}

/// One large hash whose field values carry the marker: new fields (appended to their part in
/// place while it has room), overwrites and HDELs (the part written anew, the old one freed),
/// then the whole hash deleted. New parts reuse the blocks of freed ones, and the room an
/// append will use must not keep their bytes.
fn run_hash(seed: u64, every: u64) -> Report {
    // Parts of many sizes take a chunk per size class: a larger pool than the others.
    let (scratch, model, db, images) =
        live_pool_sized(&format!("deleted-hash-{seed}"), every, 16 << 20);
    let mut rng = SplitMix64::new(seed);
    let mut next_id = 0u32;
    let mut hset = |db: &Db, field: &[u8], len: usize| {
        next_id += 1;
        db.hset(b"h", &[(field, &secret(next_id, len))])
            .expect("hset");
        let mut m = model.lock();
        m.forget(field);
        m.live.insert(field.to_vec(), next_id);
    };
    let mut fields: Vec<Vec<u8>> = Vec::new();
    for _ in 0..900 {
        let len = 12 + rng.below(70);
        match rng.below(5) {
            0 if !fields.is_empty() => {
                let f = &fields[rng.below(fields.len())];
                db.hdel(b"h", &[f.as_slice()]).expect("hdel");
                model.lock().forget(f);
            }
            1 if !fields.is_empty() => {
                let f = fields[rng.below(fields.len())].clone();
                hset(&db, &f, len);
            }
            _ => {
                let f = format!("field{}", fields.len()).into_bytes();
                hset(&db, &f, len);
                fields.push(f);
            }
        }
    }
    let stats = db.stats();
    assert!(
        stats.hash_part_appends > 100 && stats.hash_part_writes > 100,
        "{} appends, {} part writes",
        stats.hash_part_appends,
        stats.hash_part_writes
    );
    db.del(&[b"h"]).expect("del");
    {
        let mut m = model.lock();
        let ids: Vec<u32> = m.live.drain().map(|(_, id)| id).collect();
        m.gone.extend(ids);
    }
    let mut report = images.report();
    check_the_end(&scratch, &model, db, &mut report);
    report
}

/// HDELs of a large hash's fields just after its table doubled, when every part block is named
/// by two entries and the first change to each writes both words. A power failure at a fence
/// of one of them, the open, and the same HDEL again (acknowledged now): the value is nowhere
/// in the pool, not even in the old block, which a crash that kept one of the two words would
/// leave named by the other entry (whose reads skip the field).
fn run_hash_split(every: u64) -> Report {
    let (scratch, model, db, images) = live_pool_sized("deleted-hash-split", every, 16 << 20);
    model.lock().quiet = true;
    let field = |i: u32| format!("field{i}").into_bytes();
    let mut n = 0u32;
    while db.stats().hash_table_doublings == 0 {
        n += 1;
        assert!(n < 10_000, "the table never doubled");
        db.hset(b"h", &[(&field(n)[..], &secret(n, 40))])
            .expect("hset");
        model.lock().live.insert(field(n), n);
    }
    model.lock().quiet = false;
    for i in 1..=n.min(16) {
        model.lock().retry = Some((b"h".to_vec(), field(i), i));
        db.hdel(b"h", &[&field(i)[..]]).expect("hdel");
        let mut m = model.lock();
        m.retry = None;
        m.forget(&field(i));
    }
    let mut report = images.report();
    check_the_end(&scratch, &model, db, &mut report);
    report
}

#[test]
fn a_power_failure_during_a_split_of_a_shared_part_leaves_no_deleted_value_behind() {
    let report = run_hash_split(1);
    assert!(report.checked > 16, "{}", report.summary());
    report.assert_clean();
}

#[test]
fn deleted_hash_fields_are_gone_after_a_power_failure_and_the_next_open() {
    let every = if crash_tests::long_mode() { 1 } else { 16 };
    let report = run_hash(9, every);
    assert!(report.checked > 100, "{}", report.summary());
    report.assert_clean();
}

#[test]
fn deleted_keys_are_gone_from_the_log_after_a_power_failure_and_the_next_open() {
    let every = if crash_tests::long_mode() { 1 } else { 16 };
    let report = run_keys(5, every);
    assert!(report.checked > 100, "{}", report.summary());
    report.assert_clean();
}

#[test]
fn deleted_values_are_gone_after_a_power_failure_and_the_next_open() {
    let every = if crash_tests::long_mode() { 1 } else { 16 };
    let report = run(3, every);
    assert!(report.checked > 100, "{}", report.summary());
    report.assert_clean();
}

#[test]
fn markers_are_found_in_the_first_and_last_line_of_a_value() {
    let mut bytes = vec![0u8; 4096];
    let v = secret(42, 300);
    bytes[1000..1300].copy_from_slice(&v);
    assert_eq!(markers(&bytes), HashSet::from([42]));
    bytes[1000..1064].fill(0);
    assert_eq!(markers(&bytes), HashSet::from([42]), "the last line alone");
    bytes[1236..1300].fill(0);
    assert!(markers(&bytes).is_empty());
}
