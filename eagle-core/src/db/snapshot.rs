//! Snapshots of a keyspace (`snapshot_file.rs` has the bytes): `Db::snapshot_to` dumps every
//! live key at one point in time, `Db::restore_from` loads a dump into an empty keyspace.
//!
//! A dump holds every key lock shared for as long as it reads the keyspace: writes wait for it,
//! reads go on, and the file holds exactly the keyspace as it was when the last lock was taken.
//! It is logical (keys, values, absolute expiry times), so it can be restored into a pool of
//! any size or format version that reads its snapshot version.

use std::path::Path;
use std::time::{Duration, Instant};

use super::core::Db;
use super::error::DbError;
use super::hash_store::hash_form;
use super::snapshot_error::SnapshotError;
use super::snapshot_file::{Reader, SnapshotHeader, Value, Writer};
use crate::record::RecordKind;

/// What a snapshot wrote.
#[derive(Clone, Copy, Debug)]
pub struct SnapshotStats {
    /// Keys written.
    pub keys: u64,
    /// Keys left out because they had expired (not yet removed from the pool).
    pub expired: u64,
    /// Size of the file.
    pub bytes: u64,
    /// How long the keys were locked (writes waited this long).
    pub locked: Duration,
    /// How long the whole snapshot took (the file made durable included).
    pub elapsed: Duration,
}

/// How to restore.
#[derive(Clone, Copy, Debug, Default)]
pub struct RestoreOptions {
    /// Replace the keyspace's keys (they are removed, once the file has been verified) instead
    /// of refusing a keyspace that has any.
    pub replace: bool,
}

/// What a restore loaded.
#[derive(Clone, Copy, Debug)]
pub struct RestoreStats {
    /// Keys restored.
    pub keys: u64,
    /// Entries left out because they have expired since the snapshot was taken.
    pub expired: u64,
    /// Keys the keyspace held before, removed (`replace`).
    pub replaced: u64,
    /// Size of the file.
    pub bytes: u64,
    /// When the snapshot was taken (ms since the Unix epoch).
    pub created_ms: u64,
    /// How long it took.
    pub elapsed: Duration,
}

/// What a verified snapshot file holds.
#[derive(Clone, Copy, Debug)]
pub struct SnapshotInfo {
    /// Its header.
    pub header: SnapshotHeader,
    /// Entries.
    pub entries: u64,
    /// Size of the file.
    pub bytes: u64,
}

/// Reads the whole snapshot at `path`, verifying every checksum, the trailer and the end of the
/// file; what it holds.
pub fn verify_snapshot(path: impl AsRef<Path>) -> Result<SnapshotInfo, SnapshotError> {
    let path = path.as_ref();
    let mut r = Reader::open(path)?;
    while r.next()?.is_some() {}
    let bytes = std::fs::metadata(path)
        .map_err(|source| SnapshotError::Io {
            path: path.to_path_buf(),
            op: "stat",
            source,
        })?
        .len();
    Ok(SnapshotInfo {
        header: r.header,
        entries: r.entries(),
        bytes,
    })
}

impl Db {
    /// Writes a snapshot of every live key to `path` (through `path.tmp`, renamed into place
    /// once durable, so `path` is never a partial file). Point in time: every key lock is held
    /// shared while the keyspace is read, so writes wait and reads go on.
    pub fn snapshot_to(&self, path: impl AsRef<Path>) -> Result<SnapshotStats, SnapshotError> {
        self.snapshot_with(path, || {})
    }

    /// [`snapshot_to`](Self::snapshot_to), calling `locked` as soon as the point in time is
    /// fixed (every key lock held): every write that completed before is in the snapshot, none
    /// that starts after is. (A server replies to BGSAVE then.)
    pub fn snapshot_with(
        &self,
        path: impl AsRef<Path>,
        locked: impl FnOnce(),
    ) -> Result<SnapshotStats, SnapshotError> {
        let started = Instant::now();
        // After a crash with background recovery, a repair may still move records between
        // segments, and a scan could then see one twice: let it finish first.
        self.engine
            .index()
            .wait_recovered()
            .map_err(DbError::from)?;
        let held = self.lock_read_all();
        let locked_at = Instant::now();
        locked();
        let now = self.now_ms();
        let mut out = Writer::create(path.as_ref(), now)?;
        let (keys, expired) = self.dump(&mut out, now)?;
        // Nothing changes the index while every key lock is held: the count must agree.
        let len = self.engine.index().len();
        if keys + expired != len {
            return Err(DbError::Corrupted {
                what: format!(
                    "the index counts {len} keys but a scan found {}",
                    keys + expired
                ),
            }
            .into());
        }
        drop(held);
        let locked = locked_at.elapsed();
        let bytes = out.finish()?;
        Ok(SnapshotStats {
            keys,
            expired,
            bytes,
            locked,
            elapsed: started.elapsed(),
        })
    }

    /// Writes every key (all key locks held); (keys written, expired keys left out).
    fn dump(&self, out: &mut Writer, now: u64) -> Result<(u64, u64), SnapshotError> {
        let (mut keys, mut expired) = (0u64, 0u64);
        let mut failed: Option<SnapshotError> = None;
        // Hashes are read after each scan step (a large one's fields are in other blocks).
        let mut hashes: Vec<(Vec<u8>, u64, Vec<u8>)> = Vec::new();
        let mut cursor = 0;
        loop {
            cursor = self
                .engine
                .index()
                .scan(cursor, 1024, |r| {
                    let at = r.expire_at_ms();
                    if failed.is_some() {
                        return;
                    }
                    if at != 0 && at <= now {
                        expired += 1;
                        return;
                    }
                    if !r.verify() {
                        failed = Some(
                            DbError::Corrupted {
                                what: format!("the record at {:#x} fails its checksum", r.offset()),
                            }
                            .into(),
                        );
                        return;
                    }
                    keys += 1;
                    match r.kind() {
                        RecordKind::String => {
                            if let Err(e) = out.string(r.key(), at, r.value()) {
                                failed = Some(e);
                            }
                        }
                        RecordKind::Hash => hashes.push((r.key().to_vec(), at, r.value().to_vec())),
                    }
                })
                .map_err(DbError::from)?;
            if let Some(e) = failed {
                return Err(e);
            }
            for (key, at, value) in hashes.drain(..) {
                let fields = self.hash_all(hash_form(value)?)?;
                out.hash(&key, at, &fields)?;
            }
            if cursor == 0 {
                return Ok((keys, expired));
            }
        }
    }

    /// Loads the snapshot at `path`. The whole file is verified (every checksum, the trailer,
    /// the end of the file) before anything is written; a keyspace that has keys is refused
    /// unless `opts.replace`. Expiry times are kept (absolute); entries already expired are
    /// left out. Holds every key lock exclusively throughout. Not atomic across a crash: a
    /// crash part way leaves part of the snapshot (restore again with `replace`).
    pub fn restore_from(
        &self,
        path: impl AsRef<Path>,
        opts: RestoreOptions,
    ) -> Result<RestoreStats, SnapshotError> {
        let started = Instant::now();
        let path = path.as_ref();
        let _held = self.lock_all()?;
        let replaced = self.engine.index().len();
        if replaced > 0 && !opts.replace {
            return Err(SnapshotError::NotEmpty { keys: replaced });
        }
        let info = verify_snapshot(path)?;
        let (mut keys, mut expired) = (0u64, 0u64);
        let interrupted = |restored, cause| SnapshotError::Interrupted {
            restored,
            cause: Box::new(cause),
        };
        if replaced > 0 {
            self.engine
                .flush_all()
                .map_err(|e| interrupted(0, DbError::from(e).into()))?;
        }
        // Read again: the file is not held in memory, and is verified again as it is read.
        let mut r = Reader::open(path).map_err(|e| interrupted(0, e))?;
        let now = self.now_ms();
        while let Some(e) = r.next().map_err(|e| interrupted(keys, e))? {
            if e.expire_at != 0 && e.expire_at <= now {
                expired += 1;
                continue;
            }
            match e.value {
                Value::String(v) => self.store(&e.key, RecordKind::String, &v, e.expire_at),
                Value::Hash(fields) => self.store_hash(&e.key, &fields, e.expire_at),
            }
            .map_err(|err| interrupted(keys, err.into()))?;
            keys += 1;
        }
        let len = self.engine.index().len();
        if len != keys {
            let what = format!(
                "{keys} entries restored but the keyspace has {len} keys: a key appears twice"
            );
            return Err(interrupted(
                keys,
                SnapshotError::Corrupted {
                    path: path.to_path_buf(),
                    what,
                },
            ));
        }
        Ok(RestoreStats {
            keys,
            expired,
            replaced,
            bytes: info.bytes,
            created_ms: info.header.created_ms,
            elapsed: started.elapsed(),
        })
    }
}
