//! Background recovery against a model: random inserts, upserts, runs of upserts in groups,
//! deletes and lookups, with crash (drop without close) and clean reopens, each reopen in
//! background mode so the operations race the recovery sweep (repairing segments on first touch, allocating while the
//! sweep rebuilds the free lists). After every reopen and at the end, every key holds its
//! model value and `check` finds no corruption and no leak.
//!
//! Seeds: `EAGLE_BG_SEEDS` (default 12; long runs use hundreds).

use std::collections::BTreeMap;
use std::path::PathBuf;

use eagle_core::dash::PutMode;
use eagle_core::engine::RecoveryMode;
use eagle_core::pmem::FlushMode;
use eagle_core::record::RecordKind;
use eagle_core::{Engine, PoolOptions};
use pmem_emulation::SplitMix64;

fn pool_path(seed: u64) -> PathBuf {
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    dir.join(format!("eagle-bg-{}-{seed}.pool", std::process::id()))
}

fn open(path: &std::path::Path) -> Engine {
    let opts = PoolOptions {
        size: 32 << 20,
        flush: Some(FlushMode::None),
        ..PoolOptions::default()
    };
    Engine::open_with(path, opts, RecoveryMode::Background).expect("open")
}

fn verify(e: &Engine, model: &BTreeMap<Vec<u8>, Vec<u8>>, when: &str) {
    for (k, v) in model {
        let got = e.index().get(k, |r| r.value().to_vec()).unwrap();
        assert_eq!(got.as_ref(), Some(v), "{when}: key {k:?}");
    }
    let report = e.check(); // waits for the sweep
    assert!(report.is_clean(), "{when}: {report:?}");
    assert_eq!(e.index().len(), model.len() as u64, "{when}: key count");
}

fn run(seed: u64) {
    let path = pool_path(seed);
    let _ = std::fs::remove_file(&path);
    let mut rng = SplitMix64::new(seed);
    let mut model = BTreeMap::new();
    let mut e = open(&path);
    for round in 0..6 {
        for _ in 0..1500 {
            let k = format!("k{}", rng.below(4000)).into_bytes();
            match rng.below(10) {
                0..=5 => {
                    let v = vec![b'a' + (rng.below(26) as u8); 1 + rng.below(200)];
                    e.index()
                        .put(&k, &v, RecordKind::String, 0, PutMode::Upsert)
                        .unwrap();
                    model.insert(k, v);
                }
                6 | 7 => {
                    let was = e.index().delete(&k).unwrap();
                    assert_eq!(was, model.remove(&k).is_some(), "seed {seed}: delete {k:?}");
                }
                8 => {
                    // A run of upserts in groups (the server's pipelined SETs), keys maybe
                    // repeated: the groups' records are allocated and published beside the sweep.
                    let items: Vec<(Vec<u8>, Vec<u8>)> = (0..2 + rng.below(12))
                        .map(|_| {
                            let k = format!("k{}", rng.below(4000)).into_bytes();
                            (k, vec![b'A' + (rng.below(26) as u8); 1 + rng.below(200)])
                        })
                        .collect();
                    let run: Vec<(&[u8], &[u8], u64)> =
                        items.iter().map(|(k, v)| (&k[..], &v[..], 0)).collect();
                    let done = e.index().put_run(&run);
                    assert!(done.result.is_ok(), "seed {seed}: run {:?}", done.result);
                    assert_eq!(done.applied, run.len(), "seed {seed}: run");
                    model.extend(items);
                }
                _ => {
                    let got = e.index().get(&k, |r| r.value().to_vec()).unwrap();
                    assert_eq!(got.as_ref(), model.get(&k), "seed {seed}: get {k:?}");
                }
            }
        }
        if round % 2 == 0 {
            // Before the reopen, whose sweep would reclaim a leaked block unnoticed.
            verify(&e, &model, &format!("seed {seed} before reopen {round}"));
        }
        if rng.below(2) == 0 {
            drop(e); // a crash
        } else {
            e.close().unwrap();
        }
        e = open(&path);
        if round % 2 == 1 {
            verify(&e, &model, &format!("seed {seed} round {round}"));
        }
    }
    verify(&e, &model, &format!("seed {seed} end"));
    e.close().unwrap();
    let _ = std::fs::remove_file(&path);
}

#[test]
fn operations_racing_background_recovery_match_the_model() {
    let seeds: u64 = std::env::var("EAGLE_BG_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    for seed in 0..seeds {
        run(seed);
    }
    println!("background recovery: {seeds} seeds x 6 reopens, 0 mismatches");
}
