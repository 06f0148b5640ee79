//! A run of SETs (`Db::set_run`, a pipeline's consecutive SETs) that fails part way (injected:
//! after its first group, as a full pool would make it): it reports exactly what it applied,
//! every applied SET is there and no later one, nothing is poisoned, and the caller can go on
//! with the SET it stopped at, as the server does (it runs that SET alone).

use std::collections::BTreeMap;

use crash_tests::Scratch;
use eagle_core::Db;
use eagle_core::db::SetOptions;
use eagle_core::fault::{self, Fault};

#[test]
fn a_run_of_sets_that_fails_after_a_group_reports_exactly_what_it_applied() {
    let scratch = Scratch::new("failed-run");
    let path = scratch.path("eagle.pool");
    let db = Db::open(&path, crash_tests::small_unflushed()).unwrap();
    let key = |i: usize| format!("run-{i:02}").into_bytes();
    for i in (0..16).step_by(2) {
        db.set(&key(i), b"old", SetOptions::default()).unwrap();
    }
    // Sixteen SETs (a run's most); the repeat of run-00 closes the first group, so the run
    // goes on to a second, before which the fault fails it.
    let keys: Vec<Vec<u8>> = (0..16).map(|i| key(if i == 8 { 0 } else { i })).collect();
    let value = |i: usize| if i == 8 { &b"again"[..] } else { &b"new"[..] };
    let items: Vec<(&[u8], &[u8], u64)> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (&k[..], value(i), 0))
        .collect();
    let run = fault::with(Fault::FailRunAfterGroup, || db.set_run(&items));
    assert!(run.result.is_err(), "the injected failure must be reported");
    assert_eq!((run.applied, run.grouped), (8, 8));
    // What the SETs one by one would leave after the first `applied`.
    let expect = |applied: usize| {
        let mut m: BTreeMap<Vec<u8>, &[u8]> =
            (0..16).step_by(2).map(|i| (key(i), &b"old"[..])).collect();
        for &(k, v, _) in &items[..applied] {
            m.insert(k.to_vec(), v);
        }
        m
    };
    let verify = |db: &Db, applied: usize| {
        let m = expect(applied);
        for i in 0..16 {
            let got = db.get(&key(i)).unwrap();
            assert_eq!(got.as_deref(), m.get(&key(i)).copied(), "run-{i:02}");
        }
        assert_eq!(db.dbsize(), m.len() as u64);
    };
    verify(&db, run.applied);
    // Not a logged batch: the engine still takes writes, and the rest of the run goes through.
    assert!(db.engine().writable());
    let rest = db.set_run(&items[run.applied..]);
    assert!(rest.result.is_ok());
    assert_eq!(rest.applied, 16 - run.applied);
    verify(&db, 16);
    db.close().unwrap();
    let db = Db::open(&path, crash_tests::small_unflushed()).unwrap();
    verify(&db, 16);
    assert!(db.engine().check().is_clean());
    db.close().unwrap();
}
