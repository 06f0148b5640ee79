//! Readers, writers and scanners at once, while segments split and the directory doubles: no
//! reader sees a torn, phantom or stale-after-newer value, every scan returns every key that was
//! present throughout it, and the final state is exactly what the writers wrote. One writer puts
//! runs of keys as groups (`put_run`), whose buckets the other writer contends for.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use eagle_core::dash::{Dash, MAX_GROUP, PutMode};
use eagle_core::pmem::FlushMode;
use eagle_core::record::RecordKind;
use eagle_core::{Engine, PoolOptions};

const WRITERS: u64 = 2;
const KEYS_PER_WRITER: u64 = 60_000;
const STABLE: u64 = 5_000;

fn key(id: u64) -> Vec<u8> {
    format!("k{id:08}").into_bytes()
}

/// A self-describing value: key id, version, then a pattern derived from both, so a torn or
/// misdirected value is detectable.
fn value(id: u64, version: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(16 + 48);
    v.extend_from_slice(&id.to_le_bytes());
    v.extend_from_slice(&version.to_le_bytes());
    let n = 8 + ((id + version) % 40) as usize;
    v.extend((0..n).map(|i| (id as u8) ^ (version as u8) ^ (i as u8)));
    v
}

/// Parses and checks a value read for key `id`; returns its version.
fn parse(id: u64, v: &[u8]) -> Result<u64, String> {
    if v.len() < 16 {
        return Err(format!("key {id}: value of {} bytes", v.len()));
    }
    let got_id = u64::from_le_bytes(v[0..8].try_into().unwrap());
    let version = u64::from_le_bytes(v[8..16].try_into().unwrap());
    if got_id != id || v != value(id, version) {
        return Err(format!(
            "key {id}: torn or misdirected value (id {got_id}, version {version})"
        ));
    }
    Ok(version)
}

fn parse_key(k: &[u8]) -> Option<u64> {
    std::str::from_utf8(k.strip_prefix(b"k")?)
        .ok()?
        .parse()
        .ok()
}

#[test]
fn concurrent_readers_writers_and_scans_see_only_linearizable_states() {
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let path = dir.join(format!("eagle-concurrent-{}.pool", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let e = Engine::open(
        &path,
        PoolOptions {
            size: 128 << 20,
            flush: Some(FlushMode::Clwb)
                .filter(|_| cfg!(target_arch = "x86_64"))
                .or(Some(FlushMode::None)),
            ..PoolOptions::default()
        },
    )
    .unwrap();
    let idx = e.index();
    // Stable keys: present before and throughout the concurrent phase, never written again.
    let stable_base = WRITERS * KEYS_PER_WRITER;
    for id in stable_base..stable_base + STABLE {
        idx.put(
            &key(id),
            &value(id, 0),
            RecordKind::String,
            0,
            PutMode::Insert,
        )
        .unwrap();
    }
    let segments_before = idx.stats().segments;
    // Highest version each writer has acknowledged, per key (readers must never see a version
    // above it... nor go back below what they saw).
    let acked: Vec<AtomicU64> = (0..stable_base).map(|_| AtomicU64::new(u64::MAX)).collect();
    let done = AtomicBool::new(false);
    let errors = parking_lot_free_errors();

    let models: Vec<BTreeMap<u64, u64>> = std::thread::scope(|s| {
        let readers: Vec<_> = (0..2)
            .map(|r| {
                let (acked, done, errors) = (&acked, &done, &errors);
                s.spawn(move || {
                    let mut seen: Vec<u64> = vec![0; stable_base as usize];
                    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ r;
                    let mut reads = 0u64;
                    while !done.load(Ordering::Acquire) {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        let id = rng % (stable_base + STABLE);
                        // Keys with id % 3 != 0 are never deleted: once acknowledged they must be
                        // present, at the acknowledged version or a later one.
                        let floor = if id < stable_base && !id.is_multiple_of(3) {
                            acked[id as usize].load(Ordering::Acquire)
                        } else {
                            u64::MAX
                        };
                        let got = idx.get(&key(id), |rec| rec.value().to_vec()).unwrap();
                        reads += 1;
                        match got {
                            None if id >= stable_base => {
                                errors.push(format!("stable key {id} missing"))
                            }
                            None if floor != u64::MAX => errors.push(format!(
                                "key {id} acknowledged at version {floor} is missing"
                            )),
                            None => {}
                            Some(v)
                                if floor != u64::MAX
                                    && parse(id, &v).is_ok_and(|ver| ver < floor) =>
                            {
                                errors.push(format!(
                                    "key {id}: read an older version than the acknowledged {floor}"
                                ))
                            }
                            Some(v) => match parse(id, &v) {
                                Err(e) => errors.push(e),
                                Ok(ver) if id < stable_base => {
                                    // Versions only grow (deletes re-insert with a higher one).
                                    let i = id as usize;
                                    if ver < seen[i] {
                                        errors.push(format!(
                                            "key {id}: version went back from {} to {ver}",
                                            seen[i]
                                        ));
                                    }
                                    seen[i] = ver;
                                }
                                Ok(_) => {}
                            },
                        }
                    }
                    reads
                })
            })
            .collect();
        let scanner = {
            let (done, errors) = (&done, &errors);
            s.spawn(move || {
                let mut scans = 0;
                while !done.load(Ordering::Acquire) {
                    let mut stable_seen = HashSet::new();
                    let mut cursor = 0;
                    loop {
                        cursor = idx
                            .scan(cursor, 50, |rec| match parse_key(rec.key()) {
                                None => errors.push(format!(
                                    "scan returned a key never written: {:?}",
                                    rec.key()
                                )),
                                Some(id) => {
                                    if let Err(e) = parse(id, rec.value()) {
                                        errors.push(format!("scan: {e}"));
                                    }
                                    if id >= stable_base {
                                        stable_seen.insert(id);
                                    }
                                }
                            })
                            .unwrap();
                        if cursor == 0 {
                            break;
                        }
                    }
                    if stable_seen.len() as u64 != STABLE {
                        errors.push(format!(
                            "a scan returned {} of the {STABLE} stable keys",
                            stable_seen.len()
                        ));
                    }
                    scans += 1;
                }
                scans
            })
        };
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let acked = &acked;
                s.spawn(move || {
                    let mut model = BTreeMap::new();
                    let base = w * KEYS_PER_WRITER;
                    let mut version = 1;
                    // The last writer puts runs of keys as groups (`put_run`), the others one
                    // at a time.
                    let grouped = w == WRITERS - 1;
                    let mut run: Vec<(u64, u64)> = Vec::new();
                    let mut in_groups = 0;
                    for round in 0..3u64 {
                        for id in base..base + KEYS_PER_WRITER {
                            let del = round == 1 && id % 3 == 0;
                            if del {
                                in_groups += put_run(idx, &mut run, acked, &mut model);
                                idx.delete(&key(id)).unwrap();
                                model.remove(&id);
                            } else {
                                run.push((id, version));
                                if !grouped || run.len() == MAX_GROUP {
                                    in_groups += put_run(idx, &mut run, acked, &mut model);
                                }
                            }
                            version += 1;
                        }
                    }
                    in_groups += put_run(idx, &mut run, acked, &mut model);
                    if grouped {
                        assert!(
                            in_groups as u64 > KEYS_PER_WRITER,
                            "only {in_groups} puts went in groups"
                        );
                    }
                    model
                })
            })
            .collect();
        let models = writers.into_iter().map(|w| w.join().unwrap()).collect();
        done.store(true, Ordering::Release);
        let reads: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
        let scans = scanner.join().unwrap();
        println!("concurrent phase: {reads} reads, {scans} full scans");
        assert!(scans >= 1);
        models
    });
    let errs = errors.take();
    assert!(
        errs.is_empty(),
        "{} errors, first: {:#?}",
        errs.len(),
        &errs[..errs.len().min(10)]
    );
    let stats = idx.stats();
    assert!(
        stats.segments >= segments_before * 4,
        "the writers must split segments: {segments_before} -> {stats:?}"
    );
    let mut expected = 0;
    for model in &models {
        for (&id, &ver) in model {
            let v = idx
                .get(&key(id), |rec| rec.value().to_vec())
                .unwrap()
                .expect("written key present");
            assert_eq!(parse(id, &v).unwrap(), ver);
            expected += 1;
        }
    }
    assert_eq!(idx.len(), expected + STABLE);
    let report = e.check();
    assert!(report.is_clean(), "{report:#?}");
    e.close().unwrap();
    std::fs::remove_file(&path).unwrap();
}

/// Puts `run` (key ids with their versions), as groups where it has two or more, then
/// acknowledges them; returns how many were put in groups.
fn put_run(
    idx: &Dash,
    run: &mut Vec<(u64, u64)>,
    acked: &[AtomicU64],
    model: &mut BTreeMap<u64, u64>,
) -> usize {
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = run
        .iter()
        .map(|&(id, version)| (key(id), value(id, version)))
        .collect();
    let refs: Vec<(&[u8], &[u8], u64)> = pairs.iter().map(|(k, v)| (&k[..], &v[..], 0)).collect();
    let done = idx.put_run(&refs);
    done.result.unwrap();
    assert_eq!(done.applied, refs.len());
    for (id, version) in run.drain(..) {
        model.insert(id, version);
        acked[id as usize].store(version, Ordering::Release);
    }
    done.grouped
}

/// A tiny error sink shared by the threads.
struct Errors(std::sync::Mutex<Vec<String>>);

impl Errors {
    fn push(&self, e: String) {
        let mut v = self.0.lock().unwrap();
        if v.len() < 1000 {
            v.push(e);
        }
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

fn parking_lot_free_errors() -> Errors {
    Errors(std::sync::Mutex::new(Vec::new()))
}
