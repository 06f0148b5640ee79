//! The write-ahead log: records come back in order after a reopen until checkpointed; the log
//! wraps around indefinitely without replaying stale records; a full log refuses, never
//! overwrites; damage truncates the log at the damaged record.

use std::path::PathBuf;
use std::sync::Arc;

use eagle_core::pmem::FlushMode;
use eagle_core::wal::{Wal, WalEntry, WalError};
use eagle_core::{Pool, PoolOptions};

struct Tmp(PathBuf);
impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn tmp(name: &str) -> Tmp {
    let p = std::env::temp_dir().join(format!("eagle-wal-{}-{name}.pool", std::process::id()));
    let _ = std::fs::remove_file(&p);
    Tmp(p)
}

/// A 2 MiB pool: its WAL is the minimum, 256 KiB.
fn open(p: &Tmp) -> (Wal, Vec<WalEntry>) {
    let pool = Pool::open(
        &p.0,
        PoolOptions {
            size: 2 << 20,
            flush: Some(FlushMode::None),
            ..PoolOptions::default()
        },
    )
    .unwrap();
    Wal::open(Arc::new(pool)).unwrap()
}

fn payload(i: u64) -> Vec<u8> {
    let n = (i * 37 % 300) as usize;
    (0..n).map(|j| (i as u8).wrapping_add(j as u8)).collect()
}

#[test]
fn appended_records_are_recovered_in_order_until_checkpointed() {
    let p = tmp("order");
    let (wal, rec) = open(&p);
    assert!(rec.is_empty());
    let lsns: Vec<u64> = (0..50)
        .map(|i| wal.append(1 + (i % 3) as u8, &payload(i)).unwrap())
        .collect();
    assert!(lsns.windows(2).all(|w| w[1] == w[0] + 1));
    for &l in &lsns[..20] {
        wal.checkpoint(l);
    }
    // Checkpointing out of order frees nothing until the older ones are done.
    wal.checkpoint(lsns[30]);
    drop(wal);
    let (wal, rec) = open(&p);
    let got: Vec<u64> = rec.iter().map(|e| e.lsn).collect();
    assert_eq!(got, lsns[20..].to_vec());
    for (e, i) in rec.iter().zip(20..) {
        assert_eq!(e.payload, payload(i));
        assert_eq!(e.kind, 1 + (i % 3) as u8);
    }
    // New records continue the sequence.
    assert_eq!(wal.append(9, b"x").unwrap(), lsns[49] + 1);
}

#[test]
fn the_log_wraps_many_times_and_never_replays_a_stale_record() {
    let p = tmp("wrap");
    let (wal, _) = open(&p);
    let cap = wal.capacity();
    let mut written = 0u64;
    let mut last = Vec::new();
    for i in 0..20_000u64 {
        let l = wal.append(2, &payload(i)).unwrap();
        written += payload(i).len() as u64 + 24;
        last.push((l, i));
        // Keep the three newest records live; checkpoint the rest.
        if last.len() > 3 {
            wal.checkpoint(last.remove(0).0);
        }
    }
    assert!(
        written > 10 * cap,
        "only {written} bytes through a {cap}-byte log"
    );
    drop(wal);
    let (_, rec) = open(&p);
    let got: Vec<(u64, Vec<u8>)> = rec.into_iter().map(|e| (e.lsn, e.payload)).collect();
    let want: Vec<(u64, Vec<u8>)> = last.iter().map(|&(l, i)| (l, payload(i))).collect();
    assert_eq!(got, want);
}

#[test]
fn a_full_log_refuses_appends_without_overwriting_and_recovers_after_checkpoint() {
    let p = tmp("full");
    let (wal, _) = open(&p);
    let big = vec![7u8; 10_000];
    let mut lsns = Vec::new();
    let err = loop {
        match wal.append(1, &big) {
            Ok(l) => lsns.push(l),
            Err(e) => break e,
        }
    };
    assert!(matches!(err, WalError::Full { .. }), "{err}");
    assert!(lsns.len() >= 20);
    assert!(matches!(
        wal.append(1, &vec![0; 1 << 20]),
        Err(WalError::TooLarge { .. })
    ));
    drop(wal);
    let (wal, rec) = open(&p);
    assert_eq!(
        rec.len(),
        lsns.len(),
        "a refused append must not damage the log"
    );
    for l in &lsns {
        wal.checkpoint(*l);
    }
    assert_eq!(wal.used(), 0);
    wal.append(1, &big).unwrap();
}

#[test]
fn a_damaged_record_truncates_the_log_there() {
    let p = tmp("damage");
    let (wal, _) = open(&p);
    for i in 0..10 {
        wal.append(1, &payload(i + 1)).unwrap();
    }
    drop(wal);
    // Find the WAL region and flip a byte in the payload of the fourth record.
    let mut bytes = std::fs::read(&p.0).unwrap();
    let wal_start = 256 << 10;
    let mut at = wal_start;
    for i in 0..3 {
        at += (16 + payload(i + 1).len() + 4).next_multiple_of(8);
    }
    bytes[at + 16] ^= 0xff;
    std::fs::write(&p.0, &bytes).unwrap();
    let (_, rec) = open(&p);
    assert_eq!(rec.len(), 3);
}

#[test]
fn concurrent_appenders_get_distinct_lsns_and_every_unchecked_record_is_recovered() {
    let p = tmp("group");
    let (wal, _) = open(&p);
    let wal = Arc::new(wal);
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let wal = wal.clone();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for i in 0..200u64 {
                    let id = t * 1000 + i;
                    let lsn = wal.append(1, &id.to_le_bytes()).unwrap();
                    // Checkpoint every other record (out of order across threads).
                    if i % 2 == 0 {
                        wal.checkpoint(lsn);
                    } else {
                        mine.push((lsn, id));
                    }
                }
                mine
            })
        })
        .collect();
    let mut kept: Vec<(u64, u64)> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    kept.sort();
    let stats = wal.stats();
    assert_eq!(stats.appends, 800);
    assert!(stats.syncs >= 1 && stats.syncs <= 800, "{stats:?}");
    drop(wal); // a crash: nothing after the first unchecked record was checkpointed durably
    let (_, recovered) = open(&p);
    let lsns: Vec<u64> = recovered.iter().map(|e| e.lsn).collect();
    assert!(lsns.windows(2).all(|w| w[1] == w[0] + 1), "not contiguous");
    // Every record not checkpointed comes back with its payload (checkpointed ones may too:
    // the head only passes a prefix of done records).
    for (lsn, id) in kept {
        let e = recovered
            .iter()
            .find(|e| e.lsn == lsn)
            .unwrap_or_else(|| panic!("lsn {lsn} lost"));
        assert_eq!(e.payload, id.to_le_bytes());
    }
}

#[test]
fn a_record_checkpointed_out_of_order_waits_until_the_head_passes_it() {
    let p = tmp("wait");
    let (wal, _) = open(&p);
    let wal = Arc::new(wal);
    let first = wal.append(1, b"older").unwrap();
    let second = wal.append(1, b"newer").unwrap();
    let returned = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let waiter = {
        let (wal, returned) = (wal.clone(), returned.clone());
        std::thread::spawn(move || {
            wal.checkpoint(second);
            wal.wait_passed(second, || false);
            returned.store(true, std::sync::atomic::Ordering::SeqCst);
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(
        !returned.load(std::sync::atomic::Ordering::SeqCst),
        "returned while an older record was not checkpointed"
    );
    wal.checkpoint(first);
    waiter.join().unwrap();
    assert!(returned.load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!(wal.used(), 0);
}

#[test]
fn a_waiter_gives_up_when_told_to() {
    let p = tmp("giveup");
    let (wal, _) = open(&p);
    let _older = wal.append(1, b"older").unwrap();
    let newer = wal.append(1, b"newer").unwrap();
    wal.checkpoint(newer);
    let started = std::time::Instant::now();
    wal.wait_passed(newer, || {
        started.elapsed() > std::time::Duration::from_millis(30)
    });
    assert!(wal.used() > 0, "the older record keeps the head");
}

/// Appends 1000-byte records until the log is full; their LSNs (all still live).
fn fill(wal: &Wal) -> Vec<u64> {
    let mut live = Vec::new();
    loop {
        match wal.append(1, &[7u8; 1000]) {
            Ok(lsn) => live.push(lsn),
            Err(WalError::Full { .. }) => return live,
            Err(e) => panic!("{e}"),
        }
    }
}

/// The appender's failed append and its look at the live records are two steps: when the last
/// live record is checkpointed between them, the log is empty and the appender must append,
/// not report the log full. `give_up` runs between the two steps, so it holds the appender
/// there while the main thread checkpoints.
#[test]
fn an_appender_waiting_on_a_full_log_appends_when_the_last_live_record_goes_meanwhile() {
    let p = tmp("throttle-race");
    let (wal, _) = open(&p);
    let wal = Arc::new(wal);
    let live = fill(&wal);
    let between = Arc::new(std::sync::Barrier::new(2));
    let appender = {
        let (wal, between) = (wal.clone(), between.clone());
        let first = std::sync::atomic::AtomicBool::new(true);
        std::thread::spawn(move || {
            wal.append_waiting(1, &[9u8; 1000], || {
                if first.swap(false, std::sync::atomic::Ordering::SeqCst) {
                    between.wait(); // the append failed: the log is full
                    between.wait(); // every record is checkpointed now
                }
                false
            })
        })
    };
    between.wait();
    wal.checkpoint_many(&live);
    between.wait();
    let lsn = appender
        .join()
        .unwrap()
        .expect("the log is empty: the append must succeed");
    wal.checkpoint(lsn);
}

#[test]
fn a_full_log_throttles_an_appender_until_live_records_are_checkpointed() {
    let p = tmp("throttle");
    let (wal, _) = open(&p);
    let wal = Arc::new(wal);
    // Fill the log with records that stay live (another writer's batches in flight).
    let live = fill(&wal);
    assert!(!live.is_empty());
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let appender = {
        let (wal, done) = (wal.clone(), done.clone());
        std::thread::spawn(move || {
            let lsn = wal.append_waiting(1, &[9u8; 1000], || false).unwrap();
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            lsn
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(
        !done.load(std::sync::atomic::Ordering::SeqCst),
        "appended into a full log"
    );
    for lsn in live {
        wal.checkpoint(lsn);
    }
    let lsn = appender.join().unwrap();
    assert!(done.load(std::sync::atomic::Ordering::SeqCst));
    wal.checkpoint(lsn);
    // With nothing live, a record that cannot fit fails at once instead of waiting.
    let started = std::time::Instant::now();
    assert!(matches!(
        wal.append_waiting(1, &vec![0u8; 1 << 20], || false),
        Err(WalError::TooLarge { .. })
    ));
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
}

/// How many times `mark` occurs in the pool file.
fn occurrences(p: &Tmp, mark: &[u8]) -> usize {
    let bytes = std::fs::read(&p.0).unwrap();
    bytes.windows(mark.len()).filter(|w| *w == mark).count()
}

fn marked(i: u64) -> Vec<u8> {
    let mut v = format!("GONE{i:06}").into_bytes();
    v.resize(40 + (i * 53 % 400) as usize, b'.');
    v
}

#[test]
fn checkpointed_records_are_erased_across_laps_and_only_live_ones_remain() {
    let p = tmp("erase");
    let (wal, _) = open(&p);
    let cap = wal.capacity();
    let (mut written, mut live) = (0, Vec::new());
    for i in 0..5_000u64 {
        live.push(wal.append(1, &marked(i)).unwrap());
        written += marked(i).len() as u64;
        // Checkpoint in bursts, so the head sometimes passes several records and the end of a
        // lap at once.
        if live.len() > 7 {
            wal.checkpoint_many(&live[..5]);
            live.drain(..5);
        }
    }
    assert!(written > 3 * cap, "{written} bytes through {cap}");
    // The memory is the file (a shared mapping), so the file shows erasures at once.
    assert_eq!(occurrences(&p, b"GONE"), live.len());
    drop(wal);
    let (_, rec) = open(&p);
    assert_eq!(rec.iter().map(|e| e.lsn).collect::<Vec<_>>(), live);
}

#[test]
fn scrub_erases_stale_bytes_outside_the_live_records_and_keeps_them() {
    let p = tmp("scrub");
    let (wal, _) = open(&p);
    let live: Vec<u64> = (0..5).map(|i| wal.append(1, &marked(i)).unwrap()).collect();
    drop(wal);
    // What a crash can leave in the free space: old records whose erasure never reached the
    // media, a torn record past the tail.
    let mut bytes = std::fs::read(&p.0).unwrap();
    let wal_start = 256 << 10;
    for at in [wal_start + (100 << 10), wal_start + (256 << 10) - 64] {
        bytes[at..at + 10].copy_from_slice(b"GONE999999");
    }
    std::fs::write(&p.0, &bytes).unwrap();
    assert_eq!(occurrences(&p, b"GONE"), 7);
    // The pool was not closed cleanly: the open scrubs before it returns.
    let (wal, rec) = open(&p);
    assert_eq!(rec.len(), 5);
    assert_eq!(occurrences(&p, b"GONE"), 5);
    wal.scrub(|| false);
    assert_eq!(occurrences(&p, b"GONE"), 5);
    drop(wal);
    let (_, rec) = open(&p);
    assert_eq!(rec.iter().map(|e| e.lsn).collect::<Vec<_>>(), live);
    assert_eq!(rec[4].payload, marked(4));
}

/// Appends a record of `len` bytes to the empty log `wal` (throttled appends give up only
/// when it can never fit), reopens, and checks it is the one record recovered; the reopened
/// log and the record's LSN.
fn append_to_empty_and_reopen(p: &Tmp, wal: Wal, len: u64) -> (Wal, u64) {
    let lsn = wal
        .append_waiting(1, &vec![b'b'; len as usize], || false)
        .expect("an empty log has room for a record that fits in a lap");
    drop(wal);
    let (wal, rec) = open(p);
    assert_eq!(rec.len(), 1);
    assert_eq!((rec[0].lsn, rec[0].payload.len() as u64), (lsn, len));
    (wal, lsn)
}

/// Appends and checkpoints records until head and tail sit about `percent`% into the ring
/// (a 4,000-byte payload takes a little more than 4,000 bytes of it); the log is left empty.
fn advance_empty(wal: &Wal, percent: u64) {
    for _ in 0..wal.capacity() * percent / 100 / 4100 {
        let lsn = wal.append(1, &[b'x'; 4000]).unwrap();
        wal.checkpoint(lsn);
    }
    assert_eq!(wal.used(), 0);
}

#[test]
fn scrub_erases_the_end_of_a_lap_past_its_marker_while_the_tail_is_a_lap_ahead() {
    let p = tmp("scrub-lap");
    let (wal, _) = open(&p);
    let cap = wal.capacity();
    advance_empty(&wal, 70);
    // A live record there, then one too big for the rest of the lap: the end-of-lap marker
    // goes after the first, the second to the start of the next lap, and the head stays behind.
    let live = [
        wal.append(1, &[b'a'; 4000]).unwrap(),
        wal.append(1, &vec![b'b'; (cap / 2) as usize]).unwrap(),
    ];
    drop(wal);
    // What a crash can leave past the marker: an older lap's record whose erasure never
    // reached the media.
    let mut bytes = std::fs::read(&p.0).unwrap();
    let at = (256 << 10) + cap as usize - 100;
    bytes[at..at + 10].copy_from_slice(b"GONE999999");
    std::fs::write(&p.0, &bytes).unwrap();
    assert_eq!(occurrences(&p, b"GONE"), 1);
    // The pool was not closed cleanly: the open scrubs before it returns.
    let (wal, rec) = open(&p);
    assert_eq!(rec.iter().map(|e| e.lsn).collect::<Vec<_>>(), live);
    assert_eq!(occurrences(&p, b"GONE"), 0);
    drop(wal);
    let (_, rec) = open(&p);
    assert_eq!(rec.iter().map(|e| e.lsn).collect::<Vec<_>>(), live);
    assert_eq!(rec[1].payload.len(), (cap / 2) as usize);
}

#[test]
fn an_empty_log_takes_any_record_that_fits_in_a_lap_wherever_its_tail_is() {
    let p = tmp("empty-lap");
    let (wal, _) = open(&p);
    let cap = wal.capacity();
    advance_empty(&wal, 55);
    // Fits neither after the tail nor before the head, but in a lap.
    let (wal, lsn) = append_to_empty_and_reopen(&p, wal, cap * 6 / 10);
    // And the log goes on from there.
    wal.checkpoint(lsn);
    let next = wal.append(1, b"after").unwrap();
    drop(wal);
    let (_, rec) = open(&p);
    assert_eq!(rec.iter().map(|e| e.lsn).collect::<Vec<_>>(), [next]);
}

#[test]
fn an_empty_log_whose_head_waits_at_a_marker_takes_any_record_that_fits_in_a_lap() {
    let p = tmp("empty-marker");
    let (wal, _) = open(&p);
    let cap = wal.capacity();
    advance_empty(&wal, 70);
    // Half a lap: it does not fit after the tail, so an end-of-lap marker goes there and the
    // record to the start of the next lap, with the head left at the marker.
    wal.append(1, &vec![b'b'; (cap / 2) as usize]).unwrap();
    drop(wal);
    // A crash that kept the marker and tore the record after it.
    let mut bytes = std::fs::read(&p.0).unwrap();
    bytes[(256 << 10) + 20] ^= 0xFF;
    std::fs::write(&p.0, &bytes).unwrap();
    let (wal, rec) = open(&p);
    assert!(rec.is_empty());
    // Nothing is live, the head waits at the marker (70% into its lap) and the tail is at the
    // start of the next: 80% of a lap fits neither after the tail nor before the head.
    append_to_empty_and_reopen(&p, wal, cap * 8 / 10);
}

#[test]
fn a_record_appended_over_a_torn_one_does_not_bring_back_the_record_behind_it() {
    let p = tmp("stale-behind-torn");
    let (wal, _) = open(&p);
    // X (LSN 1) and Y (LSN 2); then a crash tears X and keeps Y.
    let (x, y) = (payload(1), payload(2));
    wal.append(1, &x).unwrap();
    wal.append(1, &y).unwrap();
    drop(wal);
    let mut bytes = std::fs::read(&p.0).unwrap();
    bytes[(256 << 10) + 16] ^= 0xff;
    std::fs::write(&p.0, &bytes).unwrap();
    let (wal, rec) = open(&p);
    assert!(rec.is_empty(), "the torn record ends the log");
    // Z, as long as X, takes X's place and LSN: Y, still in the ring, would follow it.
    let z = vec![0x5a; x.len()];
    assert_eq!(wal.append(1, &z).unwrap(), 1);
    drop(wal);
    let (wal, rec) = open(&p);
    let payloads: Vec<&[u8]> = rec.iter().map(|e| &e.payload[..]).collect();
    assert_eq!(payloads, [&z[..]], "only Z was appended since the crash");
    // Z checkpointed: the head moves to where Y was, and must find nothing there.
    wal.checkpoint(1);
    drop(wal);
    let (_, rec) = open(&p);
    assert!(rec.is_empty(), "{rec:?}");
}
