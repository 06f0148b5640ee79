use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::*;

#[repr(align(64))]
struct AlignedLine([AtomicU64; WORDS_PER_LINE]);

/// A simulated region backed by atomics (so test stores cannot race UB-wise with the simulator).
struct Fixture {
    // Declared before `region`, so it is dropped first.
    sim: Simulator,
    region: Box<[AlignedLine]>,
}

impl Fixture {
    fn new(lines: usize) -> Fixture {
        let region: Box<[AlignedLine]> = (0..lines)
            .map(|_| AlignedLine(Default::default()))
            .collect();
        // SAFETY: the boxed slice is 64-byte aligned (`AlignedLine`), `lines * LINE` bytes long,
        // owned by the fixture and dropped after `sim` (field order); moving the box into the
        // fixture does not move the heap allocation.
        let sim = unsafe { Simulator::new(region.as_ptr().cast(), lines * LINE) };
        Fixture { sim, region }
    }

    fn store(&self, word: usize, value: u64) {
        self.region[word / WORDS_PER_LINE].0[word % WORDS_PER_LINE].store(value, Ordering::Relaxed);
    }

    /// Flush the line holding `word`.
    fn flush_word(&self, word: usize) {
        self.sim.flush(word * WORD, WORD);
    }
}

/// What the hook recorded at one fence: (fence number, fence_count() inside the hook, None image).
type HookRecord = (u64, u64, Vec<u8>);
/// Per fence: (fence number, images under [None, All, Random, Strict]).
type ImagesAtFence = (u64, [Vec<u8>; 4]);

fn word_of(image: &[u8], word: usize) -> u64 {
    let bytes = &image[word * WORD..(word + 1) * WORD];
    u64::from_ne_bytes(bytes.try_into().unwrap())
}

fn all_policies(seed: u64) -> [Eviction; 4] {
    [
        Eviction::None,
        Eviction::All,
        Eviction::Random { seed },
        Eviction::Strict { seed },
    ]
}

#[test]
fn unflushed_store_is_absent_from_none_image() {
    let f = Fixture::new(4);
    f.store(9, 0xAB);
    assert_eq!(word_of(&f.sim.crash_image(&Eviction::None), 9), 0);
    assert_eq!(word_of(&f.sim.durable_image(), 9), 0);
    assert_eq!(word_of(&f.sim.crash_image(&Eviction::All), 9), 0xAB);
    assert_eq!(f.sim.dirty_lines(), 1);
    assert_eq!(f.sim.pending_lines(), 0);
}

#[test]
fn flushed_but_unfenced_store_may_or_may_not_survive() {
    let f = Fixture::new(4);
    f.store(17, 0xFEED);
    f.flush_word(17);
    assert_eq!(f.sim.pending_lines(), 1);
    assert_eq!(word_of(&f.sim.crash_image(&Eviction::None), 17), 0);
    assert_eq!(word_of(&f.sim.crash_image(&Eviction::All), 17), 0xFEED);
    let (mut survived, mut lost) = (false, false);
    for seed in 0..64 {
        match word_of(&f.sim.crash_image(&Eviction::Random { seed }), 17) {
            0xFEED => survived = true,
            0 => lost = true,
            other => panic!("word holds neither old nor new value: {other:#x}"),
        }
    }
    assert!(survived && lost, "survived={survived} lost={lost}");
}

#[test]
fn flushed_and_fenced_store_survives_every_policy() {
    let f = Fixture::new(4);
    f.store(3, 0x1234);
    f.store(30, 0x5678);
    f.sim.flush(3 * WORD, 28 * WORD); // covers words 3..31, i.e. lines 0..=3
    f.sim.fence();
    assert_eq!(f.sim.pending_lines(), 0);
    assert_eq!(f.sim.dirty_lines(), 0);
    for seed in 0..16 {
        for policy in all_policies(seed) {
            let image = f.sim.crash_image(&policy);
            assert_eq!(word_of(&image, 3), 0x1234, "{policy:?}");
            assert_eq!(word_of(&image, 30), 0x5678, "{policy:?}");
        }
    }
}

#[test]
fn strict_mode_tears_lines_at_8_byte_granularity() {
    const OLD: u64 = 0x1111_1111_1111_1111;
    const NEW: u64 = 0x2222_2222_2222_2222;
    let f = Fixture::new(2);
    for w in 8..16 {
        f.store(w, OLD);
    }
    f.sim.make_all_durable();
    for w in 8..16 {
        f.store(w, NEW);
    }
    let mut torn = false;
    for seed in 0..64 {
        let image = f.sim.crash_image(&Eviction::Strict { seed });
        let words: Vec<u64> = (8..16).map(|w| word_of(&image, w)).collect();
        assert!(
            words.iter().all(|&v| v == OLD || v == NEW),
            "a word tore inside itself: {words:x?}"
        );
        torn |= words.contains(&OLD) && words.contains(&NEW);
    }
    assert!(torn, "no seed tore the line");
}

#[test]
fn random_mode_keeps_lines_whole() {
    let f = Fixture::new(2);
    for w in 0..8 {
        f.store(w, 0xAA);
    }
    let (mut old, mut new) = (false, false);
    for seed in 0..64 {
        let image = f.sim.crash_image(&Eviction::Random { seed });
        let words: Vec<u64> = (0..8).map(|w| word_of(&image, w)).collect();
        assert!(
            words.iter().all(|&v| v == words[0]),
            "line tore: {words:x?}"
        );
        old |= words[0] == 0;
        new |= words[0] == 0xAA;
    }
    assert!(old && new);
}

#[test]
fn randomized_images_are_reproducible_from_the_seed() {
    let f = Fixture::new(16);
    for w in (0..128).step_by(3) {
        f.store(w, w as u64 + 1);
    }
    f.sim.flush(0, 8 * LINE);
    for w in (0..128).step_by(5) {
        f.store(w, w as u64 + 1000);
    }
    for policy in [Eviction::Random { seed: 5 }, Eviction::Strict { seed: 5 }] {
        assert_eq!(f.sim.crash_image(&policy), f.sim.crash_image(&policy));
    }
}

#[test]
fn fence_only_makes_the_calling_threads_flushes_durable() {
    let f = Fixture::new(4);
    f.store(0, 1); // line 0, by this thread
    f.flush_word(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            f.store(8, 2); // line 1, by another thread
            f.flush_word(8);
            f.sim.fence();
        });
    });
    let durable = f.sim.durable_image();
    assert_eq!(word_of(&durable, 8), 2, "other thread's fenced flush");
    assert_eq!(word_of(&durable, 0), 0, "our flush must still be pending");
    assert_eq!(f.sim.pending_lines(), 1);
    f.sim.fence();
    assert_eq!(word_of(&f.sim.durable_image(), 0), 1);
    assert_eq!(f.sim.pending_lines(), 0);
}

#[test]
fn fence_hook_sees_state_before_the_fence_takes_effect() {
    let f = Fixture::new(4);
    let seen: Arc<Mutex<Vec<HookRecord>>> = Arc::default();
    let log = Arc::clone(&seen);
    f.sim.set_fence_hook(Some(Box::new(move |sim, n| {
        log.lock()
            .push((n, sim.fence_count(), sim.crash_image(&Eviction::None)));
    })));
    assert_eq!(f.sim.fence_count(), 0);

    f.store(0, 0xA);
    f.flush_word(0);
    f.sim.fence();
    assert_eq!(f.sim.fence_count(), 1);
    assert_eq!(word_of(&f.sim.durable_image(), 0), 0xA);

    f.store(8, 0xB);
    f.flush_word(8);
    f.sim.fence();
    assert_eq!(word_of(&f.sim.durable_image(), 8), 0xB);

    let seen = seen.lock();
    assert_eq!(seen.len(), 2);
    let (n1, count1, image1) = &seen[0];
    assert_eq!((*n1, *count1), (1, 1), "fence numbering starts at 1");
    assert_eq!(
        word_of(image1, 0),
        0,
        "fence 1 not yet in effect in its hook"
    );
    let (n2, count2, image2) = &seen[1];
    assert_eq!((*n2, *count2), (2, 2));
    assert_eq!(word_of(image2, 0), 0xA, "fence 1 durable at fence 2");
    assert_eq!(
        word_of(image2, 8),
        0,
        "fence 2 not yet in effect in its hook"
    );
}

#[test]
fn store_after_flush_is_not_made_durable_by_the_fence() {
    let f = Fixture::new(2);
    f.store(0, 0xA);
    f.flush_word(0);
    f.store(1, 0xB); // same line, after the flush
    f.sim.fence();
    let durable = f.sim.durable_image();
    assert_eq!(word_of(&durable, 0), 0xA);
    assert_eq!(word_of(&durable, 1), 0);
    assert_eq!(f.sim.dirty_lines(), 1);
}

#[test]
fn latest_flush_of_a_line_wins_at_fence() {
    let f = Fixture::new(1);
    f.store(0, 1);
    f.flush_word(0);
    f.store(0, 2);
    f.flush_word(0);
    assert_eq!(f.sim.pending_lines(), 2);
    f.store(0, 3);
    f.sim.fence();
    assert_eq!(word_of(&f.sim.durable_image(), 0), 2);
}

#[test]
fn randomized_policies_choose_among_durable_pending_and_current() {
    let f = Fixture::new(1);
    f.store(0, 1);
    f.flush_word(0);
    f.store(0, 2);
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..64 {
        for policy in [Eviction::Random { seed }, Eviction::Strict { seed }] {
            seen.insert(word_of(&f.sim.crash_image(&policy), 0));
        }
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), [0, 1, 2]);
}

#[test]
fn hook_can_take_crash_images_at_every_fence() {
    const WRITES: usize = 12;
    let f = Fixture::new(WRITES);
    let images: Arc<Mutex<Vec<ImagesAtFence>>> = Arc::default();
    let log = Arc::clone(&images);
    let mut reused = vec![0u8; f.sim.len()];
    f.sim.set_fence_hook(Some(Box::new(move |sim, n| {
        let [none, all, random, strict] = all_policies(n);
        sim.crash_image_into(&strict, &mut reused);
        let taken = [
            sim.crash_image(&none),
            sim.crash_image(&all),
            sim.crash_image(&random),
            reused.clone(),
        ];
        log.lock().push((n, taken));
    })));
    // Write k (1-based) stores k into word 0 of line k-1, flushes it and issues fence k.
    for k in 1..=WRITES {
        f.store((k - 1) * WORDS_PER_LINE, k as u64);
        f.sim.flush((k - 1) * LINE, LINE);
        f.sim.fence();
    }
    f.sim.set_fence_hook(None);
    f.sim.fence(); // no hook any more
    let images = images.lock();
    assert_eq!(images.len(), WRITES);
    for (i, (n, [none, all, random, strict])) in images.iter().enumerate() {
        assert_eq!(*n, i as u64 + 1);
        for k in 1..=WRITES {
            let word = (k - 1) * WORDS_PER_LINE;
            let durable_expected = if (k as u64) < *n { k as u64 } else { 0 };
            let current_expected = if (k as u64) <= *n { k as u64 } else { 0 };
            assert_eq!(
                word_of(none, word),
                durable_expected,
                "fence {n}, write {k}"
            );
            assert_eq!(word_of(all, word), current_expected, "fence {n}, write {k}");
            for image in [random, strict] {
                let got = word_of(image, word);
                if k as u64 == *n {
                    assert!(got == 0 || got == k as u64, "fence {n}, write {k}: {got}");
                } else {
                    assert_eq!(got, durable_expected, "fence {n}, write {k}");
                }
            }
        }
    }
}

#[test]
fn make_all_durable_forgets_pending_snapshots() {
    let f = Fixture::new(2);
    f.store(0, 1);
    f.flush_word(0);
    f.store(8, 2);
    f.sim.make_all_durable();
    assert_eq!((f.sim.pending_lines(), f.sim.dirty_lines()), (0, 0));
    for policy in all_policies(1) {
        let image = f.sim.crash_image(&policy);
        assert_eq!((word_of(&image, 0), word_of(&image, 8)), (1, 2));
    }
}

#[test]
fn flush_range_covers_every_overlapping_line() {
    let f = Fixture::new(4);
    f.sim.flush(LINE - 1, 2); // straddles lines 0 and 1
    assert_eq!(f.sim.pending_lines(), 2);
    f.sim.flush(LINE, 0); // empty range: nothing
    assert_eq!(f.sim.pending_lines(), 2);
    f.sim.flush(0, 4 * LINE);
    assert_eq!(f.sim.pending_lines(), 6);
}

#[test]
#[should_panic(expected = "outside the 128-byte region")]
fn out_of_range_flush_panics() {
    let f = Fixture::new(2);
    f.sim.flush(LINE + 8, LINE);
}

#[test]
#[should_panic(expected = "wrong length")]
fn crash_image_into_rejects_wrong_length() {
    let f = Fixture::new(2);
    f.sim.crash_image_into(&Eviction::None, &mut [0; LINE]);
}

#[test]
fn concurrent_stores_flushes_and_fences_keep_every_word_whole() {
    const THREADS: usize = 2;
    const ROUNDS: u64 = 200;
    let f = Fixture::new(THREADS);
    f.sim
        .set_delays(Duration::from_nanos(10), Duration::from_nanos(10));
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let f = &f;
            s.spawn(move || {
                for r in 1..=ROUNDS {
                    for w in 0..WORDS_PER_LINE {
                        f.store(t * WORDS_PER_LINE + w, r);
                    }
                    f.sim.flush(t * LINE, LINE);
                    f.sim.fence();
                }
            });
        }
        for seed in 0..20 {
            let image = f.sim.crash_image(&Eviction::Strict { seed });
            for w in 0..THREADS * WORDS_PER_LINE {
                assert!(word_of(&image, w) <= ROUNDS);
            }
        }
    });
    assert_eq!(f.sim.fence_count(), THREADS as u64 * ROUNDS);
    assert_eq!(f.sim.dirty_lines(), 0);
    let durable = f.sim.durable_image();
    assert!((0..THREADS * WORDS_PER_LINE).all(|w| word_of(&durable, w) == ROUNDS));
}

#[test]
fn simulator_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Simulator>();
}

#[test]
fn an_older_flush_from_another_thread_never_overwrites_a_newer_durable_line() {
    let f = Arc::new(Fixture::new(2));
    // Thread A flushes the line holding 1 (a freed block's zeroes, say) and does not fence yet.
    f.store(0, 1);
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let a = {
        let f = f.clone();
        std::thread::spawn(move || {
            f.flush_word(0);
            wait.recv().unwrap();
            f.sim.fence();
        })
    };
    while f.sim.pending_lines() == 0 {
        std::thread::yield_now();
    }
    // Thread B (this one) then stores 2 there, flushes and fences: 2 is durable.
    f.store(0, 2);
    f.flush_word(0);
    f.sim.fence();
    assert_eq!(word_of(&f.sim.durable_image(), 0), 2);
    // A's snapshot of 1 is older than what is durable: no crash image may hold it any more.
    for seed in 0..64 {
        for policy in all_policies(seed) {
            assert_eq!(word_of(&f.sim.crash_image(&policy), 0), 2, "{policy:?}");
        }
    }
    // And A's fence does not bring it back.
    go.send(()).unwrap();
    a.join().unwrap();
    assert_eq!(word_of(&f.sim.durable_image(), 0), 2);
}
