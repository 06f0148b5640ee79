//! Snapshots of the running server's keyspace (SAVE, BGSAVE, SHUTDOWN SAVE) to `dir` /
//! `dbfilename`: one at a time, and what LASTSAVE and INFO's persistence section report.
//!
//! A dump holds every key lock shared (`Db::snapshot_to`): writes wait for it, reads go on. A
//! BGSAVE runs on its own thread, and replies once that thread holds the key locks: the file
//! has every write acknowledged before the reply and none sent after it. Its command holds the
//! transaction gate (shared, as every command does) until then, so the point in time never
//! falls between two commands of an EXEC.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use eagle_core::Db;
use eagle_core::db::{SnapshotError, SnapshotStats};
use parking_lot::Mutex;

/// The state of snapshots.
pub struct Saves {
    /// Held for the whole of a dump: one at a time.
    running: Mutex<()>,
    /// A BGSAVE thread is running (set before it starts, cleared as it ends).
    background: AtomicBool,
    /// The last BGSAVE thread.
    thread: Mutex<Option<JoinHandle<()>>>,
    /// When the running BGSAVE started.
    bg_started: Mutex<Option<Instant>>,
    /// Unix seconds of the last successful save (the server's start before any).
    last_save: AtomicU64,
    last_bg_ok: AtomicBool,
    /// Seconds the last BGSAVE took (-1: none yet).
    last_bg_secs: AtomicI64,
    /// Successful saves.
    saves: AtomicU64,
    /// Write commands that succeeded since the last successful save.
    changes: AtomicU64,
}

/// What INFO's persistence section reports.
pub struct SaveInfo {
    /// Write commands that succeeded since the last save.
    pub changes: u64,
    /// Whether a BGSAVE is running.
    pub bgsave_in_progress: bool,
    /// Unix seconds of the last successful save.
    pub last_save: u64,
    /// Whether the last BGSAVE succeeded.
    pub last_bgsave_ok: bool,
    /// Seconds the last BGSAVE took (-1: none).
    pub last_bgsave_secs: i64,
    /// Seconds the running BGSAVE has taken so far (-1: none running).
    pub current_bgsave_secs: i64,
    /// Successful saves.
    pub saves: u64,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Saves {
    /// No save yet; LASTSAVE says `started_unix` until one succeeds (as Redis does).
    pub fn new(started_unix: u64) -> Saves {
        Saves {
            running: Mutex::new(()),
            background: AtomicBool::new(false),
            thread: Mutex::new(None),
            bg_started: Mutex::new(None),
            last_save: AtomicU64::new(started_unix),
            last_bg_ok: AtomicBool::new(true),
            last_bg_secs: AtomicI64::new(-1),
            saves: AtomicU64::new(0),
            changes: AtomicU64::new(0),
        }
    }

    /// Counts a write command that succeeded.
    pub fn changed(&self) {
        self.changes.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether a BGSAVE is running.
    pub fn in_progress(&self) -> bool {
        self.background.load(Ordering::Acquire)
    }

    /// Unix seconds of the last successful save.
    pub fn last_save(&self) -> u64 {
        self.last_save.load(Ordering::Relaxed)
    }

    /// Dumps `db` to `path` now, after any dump already running (SAVE, SHUTDOWN SAVE).
    pub fn save(&self, db: &Db, path: &Path) -> Result<SnapshotStats, SnapshotError> {
        self.save_with(db, path, || {})
    }

    /// `save`, calling `locked` once the point in time is fixed.
    fn save_with(
        &self,
        db: &Db,
        path: &Path,
        locked: impl FnOnce(),
    ) -> Result<SnapshotStats, SnapshotError> {
        let _one = self.running.lock();
        // Every write counted before this load is in the snapshot; the ones counted after it
        // may be too, and stay counted (the count errs high, never low).
        let before = self.changes.load(Ordering::Acquire);
        match db.snapshot_with(path, locked) {
            Ok(s) => {
                self.changes.fetch_sub(before, Ordering::AcqRel);
                self.last_save.store(unix_now(), Ordering::Relaxed);
                self.saves.fetch_add(1, Ordering::Relaxed);
                log::info!(
                    "DB saved on disk: {} keys, {} bytes in {} ms (writes waited {} ms) to {}",
                    s.keys,
                    s.bytes,
                    s.elapsed.as_millis(),
                    s.locked.as_millis(),
                    path.display()
                );
                Ok(s)
            }
            Err(e) => {
                log::warn!("Failed saving the DB: {e}");
                Err(e)
            }
        }
    }

    /// Starts a BGSAVE to `path` on its own thread and returns once it holds the key locks
    /// (or has failed); false if one is running already.
    pub fn start_background(self: &Arc<Self>, db: Arc<Db>, path: PathBuf) -> std::io::Result<bool> {
        if self.background.swap(true, Ordering::AcqRel) {
            return Ok(false);
        }
        let started = Instant::now();
        *self.bg_started.lock() = Some(started);
        let me = self.clone();
        let (locked_tx, locked_rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("eagle-bgsave".into())
            .spawn(move || {
                let result = me.save_with(&db, &path, move || {
                    let _ = locked_tx.send(());
                });
                // The keyspace is let go before the end is announced (shutdown waits for it).
                drop(db);
                let secs = started.elapsed().as_secs() as i64;
                me.last_bg_secs.store(secs, Ordering::Relaxed);
                me.last_bg_ok.store(result.is_ok(), Ordering::Relaxed);
                *me.bg_started.lock() = None;
                if result.is_ok() {
                    log::info!("Background saving terminated with success");
                } else {
                    log::warn!("Background saving error");
                }
                me.background.store(false, Ordering::Release);
            });
        match spawned {
            Ok(handle) => {
                *self.thread.lock() = Some(handle);
                log::info!("Background saving started");
                // An error (the sender dropped unsent) is the thread's to report.
                let _ = locked_rx.recv();
                Ok(true)
            }
            Err(e) => {
                *self.bg_started.lock() = None;
                self.background.store(false, Ordering::Release);
                Err(e)
            }
        }
    }

    /// Waits for a running BGSAVE to end (shutdown).
    pub fn wait(&self) {
        let handle = self.thread.lock().take();
        if let Some(h) = handle {
            if !h.is_finished() {
                log::warn!("Waiting for the background save to finish...");
            }
            let _ = h.join();
        }
    }

    /// For INFO.
    pub fn info(&self) -> SaveInfo {
        let current = *self.bg_started.lock();
        SaveInfo {
            changes: self.changes.load(Ordering::Relaxed),
            bgsave_in_progress: self.in_progress(),
            last_save: self.last_save(),
            last_bgsave_ok: self.last_bg_ok.load(Ordering::Relaxed),
            last_bgsave_secs: self.last_bg_secs.load(Ordering::Relaxed),
            current_bgsave_secs: current.map_or(-1, |t| t.elapsed().as_secs() as i64),
            saves: self.saves.load(Ordering::Relaxed),
        }
    }
}
