//! Where a hash's fields live: inline in its record while small (format 0, up to
//! `COMPACT_MAX` fields, like Redis's listpack), else in a table of parts (`hashtab`), where a
//! field operation reads and rewrites one part of about 16-32 fields whatever the hash's size.
//! Every change is durable on return and atomic across a crash: a compact hash by one record
//! swap; a table by one part store, or, for changes that span parts, one logged batch.

use super::core::{Db, Entry};
use super::error::DbError;
use super::hash_codec::{Fields, FieldsRef, count, decode, decode_ref, encode};
use crate::engine::BatchOp;
use crate::hashtab::{Table, decode_part, encode_part, table_ref, table_size, write_table_ref};
use crate::record::RecordKind;

/// Most fields kept inline. Redis keeps 128 in a listpack; decoding a compact record costs
/// about 0.3 us per field here (measured by `benches/hash_fields.rs`), so past 32 fields the
/// table (one part of 16-32 fields per operation) is faster.
pub(super) const COMPACT_MAX: usize = 32;
/// Average fields per part before the table doubles.
const PART_MAX: u64 = 32;
const FORMAT_COMPACT: u8 = 0;

/// A hash as found under its key.
pub(super) enum Form {
    /// The record's value: the format byte, then the encoded fields, decoded borrowed where
    /// they are used (`fields_of`): a lookup allocates for the value it returns, not for every
    /// field.
    Compact(Vec<u8>),
    Table(u64),
}

/// A change to one field: a new value, or removal.
pub(super) type Change<'a> = (&'a [u8], Option<&'a [u8]>);

fn corrupt(e: String) -> DbError {
    DbError::Corrupted { what: e }
}

impl Db {
    /// The hash at `key` and its expiry (key locked by the caller); `None` if absent.
    pub(super) fn open_hash(&self, key: &[u8]) -> Result<Option<(Form, u64)>, DbError> {
        hash_of(self.load_as(key, RecordKind::Hash)?)
    }

    /// [`open_hash`](Self::open_hash) for a read command: counted as a keyspace hit or miss.
    pub(super) fn open_hash_read(&self, key: &[u8]) -> Result<Option<(Form, u64)>, DbError> {
        hash_of(self.load_read_as(key, RecordKind::Hash)?)
    }

    fn table(&self, t: u64) -> Result<Table<'_>, DbError> {
        Table::open(self.engine.pool().region(), t)
            .ok_or_else(|| corrupt(format!("hash table {t:#x} is damaged")))
    }

    fn read_part(&self, block: u64) -> Result<Fields, DbError> {
        decode(&self.part_bytes(block)?).map_err(|e| corrupt(format!("hash part {block:#x}: {e}")))
    }

    /// A part's encoded field list (checksum verified); an empty list for no part (0).
    fn part_bytes(&self, block: u64) -> Result<Vec<u8>, DbError> {
        if block == 0 {
            return Ok(encode::<&[u8], &[u8]>(&[]));
        }
        decode_part(self.engine.pool().region(), block).map_err(corrupt)
    }

    /// The values of `wanted` fields.
    pub(super) fn hash_get(
        &self,
        form: &Form,
        wanted: &[&[u8]],
    ) -> Result<Vec<Option<Vec<u8>>>, DbError> {
        match form {
            Form::Compact(value) => {
                let fields = decode_ref(fields_of(value))?;
                Ok(wanted
                    .iter()
                    .map(|w| fields.iter().find(|(f, _)| f == w).map(|(_, v)| v.to_vec()))
                    .collect())
            }
            Form::Table(t) => {
                let table = self.table(*t)?;
                wanted
                    .iter()
                    .map(|w| {
                        let part = table.part(table.part_of(self.hash(w)));
                        let bytes = self.part_bytes(part)?;
                        let fields = decode_ref(&bytes)
                            .map_err(|e| corrupt(format!("hash part {part:#x}: {e}")))?;
                        Ok(fields.iter().find(|(f, _)| f == w).map(|(_, v)| v.to_vec()))
                    })
                    .collect()
            }
        }
    }

    /// Every field.
    pub(super) fn hash_all(&self, form: Form) -> Result<Fields, DbError> {
        match form {
            Form::Compact(value) => decode(fields_of(&value)),
            Form::Table(t) => {
                let table = self.table(t)?;
                let mut all = Vec::new();
                for i in 0..table.parts() {
                    all.append(&mut self.read_part(table.part(i))?);
                }
                Ok(all)
            }
        }
    }

    /// Number of fields.
    pub(super) fn hash_len(&self, form: &Form) -> Result<u64, DbError> {
        match form {
            Form::Compact(value) => count(fields_of(value)),
            Form::Table(t) => {
                let table = self.table(*t)?;
                match table.count(self.engine.pool().recovery_epoch()) {
                    Some(n) => Ok(n),
                    None => self.recount(&table),
                }
            }
        }
    }

    fn recount(&self, table: &Table<'_>) -> Result<u64, DbError> {
        let region = self.engine.pool().region();
        let mut n = 0;
        for i in 0..table.parts() {
            let p = table.part(i);
            if p != 0 {
                n += count(&decode_part(region, p).map_err(corrupt)?)?;
            }
        }
        Ok(n)
    }

    /// Applies `changes` in order (key locked exclusively by the caller); the number of fields
    /// added and removed. A hash left empty is deleted, as in Redis.
    pub(super) fn hash_update(
        &self,
        key: &[u8],
        found: Option<(Form, u64)>,
        changes: &[Change<'_>],
    ) -> Result<(u64, u64), DbError> {
        let empty = || [&[FORMAT_COMPACT][..], &encode::<&[u8], &[u8]>(&[])].concat();
        let (form, expire_at) = found.unwrap_or_else(|| (Form::Compact(empty()), 0));
        match form {
            Form::Compact(old) => {
                let mut fields = decode_ref(fields_of(&old))?;
                let (added, removed) = apply_changes(&mut fields, changes);
                if added == 0 && removed == 0 && changes.iter().all(|c| c.1.is_none()) {
                    return Ok((0, 0)); // nothing to write
                }
                if fields.is_empty() {
                    self.remove(key)?;
                } else {
                    self.store_hash(key, &fields, expire_at)?;
                }
                Ok((added, removed))
            }
            Form::Table(t) => self.table_update(key, t, expire_at, changes),
        }
    }

    fn table_update(
        &self,
        key: &[u8],
        t: u64,
        expire_at: u64,
        changes: &[Change<'_>],
    ) -> Result<(u64, u64), DbError> {
        let table = self.table(t)?;
        let epoch = self.engine.pool().recovery_epoch();
        let before = match table.count(epoch) {
            Some(n) => n,
            None => {
                let n = self.recount(&table)?;
                table.set_count(n, epoch);
                n
            }
        };
        // The touched parts (read once each), then their fields borrowed from those bytes,
        // each part rewritten once with all its changes.
        let mut touched: Vec<(u64, Vec<u8>)> = Vec::new();
        for change in changes {
            let i = table.part_of(self.hash(change.0));
            if !touched.iter().any(|p| p.0 == i) {
                touched.push((i, self.part_bytes(table.part(i))?));
            }
        }
        let mut parts: Vec<(u64, FieldsRef<'_>)> = Vec::with_capacity(touched.len());
        for (i, bytes) in &touched {
            let fields = decode_ref(bytes)
                .map_err(|e| corrupt(format!("hash part {:#x}: {e}", table.part(*i))))?;
            parts.push((*i, fields));
        }
        let (mut added, mut removed) = (0, 0);
        for change in changes {
            let i = table.part_of(self.hash(change.0));
            let at = parts.iter().position(|p| p.0 == i).expect("read above");
            let (a, r) = apply_changes(&mut parts[at].1, std::slice::from_ref(change));
            added += a;
            removed += r;
        }
        let count = before + added - removed;
        if count == 0 {
            self.remove(key)?;
            return Ok((added, removed));
        }
        if count > PART_MAX * table.parts() {
            let mut all = Vec::new();
            for i in 0..table.parts() {
                match parts.iter().position(|p| p.0 == i) {
                    Some(at) => all.append(&mut owned(&parts[at].1)),
                    None => all.append(&mut self.read_part(table.part(i))?),
                }
            }
            self.store_table(key, &all, expire_at)?;
            return Ok((added, removed));
        }
        let index = self.engine.index();
        let mut new_parts = Vec::with_capacity(parts.len());
        for (i, fields) in &parts {
            let block = if fields.is_empty() {
                0
            } else {
                self.write_part(fields)?
            };
            new_parts.push((*i, block, table.part(*i)));
        }
        if let [(i, block, _)] = new_parts[..] {
            // Inside an atomic transaction the words changed in place are logged first.
            let undo = self
                .engine
                .save_undo_words(&[table.part_word(i), t + 16, t + 24]);
            if let Err(e) = undo {
                if block != 0 {
                    let _ = index.discard(block);
                }
                return Err(e.into());
            }
            // Ordering: the part's bytes (flushed by write_part) are durable before the
            // 8-byte store publishes it; the count follows (a crash in between leaves the
            // count's epoch stale, so it is recounted).
            self.engine.pool().region().fence();
            table.set_part(i, block);
            table.set_count(count, epoch);
        } else {
            let mut ops: Vec<BatchOp> = new_parts
                .iter()
                .map(|&(i, block, _)| BatchOp::SetWord {
                    offset: table.part_word(i),
                    value: block,
                })
                .collect();
            ops.push(BatchOp::SetWord {
                offset: t + 16,
                value: count,
            });
            self.engine.apply_batch(&ops).inspect_err(|_| {
                for &(_, block, _) in &new_parts {
                    if block != 0 {
                        let _ = index.discard(block);
                    }
                }
            })?;
        }
        let guard = index.pin();
        for (_, _, old) in new_parts {
            if old != 0 {
                index.retire(&guard, old);
            }
        }
        Ok((added, removed))
    }

    /// Stores `fields` (at least one) under `key` in the form their number calls for,
    /// replacing its record: inline up to `COMPACT_MAX`, else a table. Caller holds the key's
    /// lock exclusively.
    pub(super) fn store_hash<F: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        key: &[u8],
        fields: &[(F, V)],
        expire_at: u64,
    ) -> Result<(), DbError> {
        if fields.len() > COMPACT_MAX {
            return self.store_table(key, fields, expire_at);
        }
        let mut value = vec![FORMAT_COMPACT];
        value.extend_from_slice(&encode(fields));
        self.store(key, RecordKind::Hash, &value, expire_at)
    }

    /// Writes a part block (flushed, not fenced); its offset.
    fn write_part<F: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        fields: &[(F, V)],
    ) -> Result<u64, DbError> {
        let bytes = encode_part(&encode(fields));
        let block = self.engine.index().alloc_block(bytes.len() as u64)?;
        // SAFETY: just allocated, reachable from nothing.
        unsafe { self.engine.pool().region().write(block, &bytes) };
        self.engine.pool().region().flush(block, bytes.len());
        Ok(block)
    }

    /// Stores `fields` as a new table (parts for about 16 fields each) under `key`, replacing
    /// its record (and so retiring the old table and parts, if any).
    pub(super) fn store_table<F: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        key: &[u8],
        fields: &[(F, V)],
        expire_at: u64,
    ) -> Result<(), DbError> {
        let n = fields.len() as u64;
        let mut k = 0;
        while (1u64 << k) * (PART_MAX / 2) < n && k < crate::hashtab::MAX_LOG2_PARTS {
            k += 1;
        }
        let region = self.engine.pool().region();
        let index = self.engine.index();
        let t = index.alloc_block(table_size(k))?;
        let epoch = self.engine.pool().recovery_epoch();
        // SAFETY: just allocated, reachable from nothing.
        let table = unsafe { Table::init(region, t, k, n, epoch) };
        let mut buckets: Vec<FieldsRef<'_>> = (0..table.parts()).map(|_| Vec::new()).collect();
        for (f, v) in fields {
            let (f, v) = (f.as_ref(), v.as_ref());
            let i = table.part_of(self.hash(f)) as usize;
            buckets[i].push((f, v));
        }
        let mut written = vec![t];
        for (i, b) in buckets.iter().enumerate() {
            if b.is_empty() {
                continue;
            }
            match self.write_part(b) {
                Ok(block) => {
                    // Not yet reachable: a plain store, flushed with the table below.
                    table.set_part_unpublished(i as u64, block);
                    written.push(block);
                }
                Err(e) => {
                    for w in written {
                        let _ = index.discard(w);
                    }
                    return Err(e);
                }
            }
        }
        region.flush(t, table_size(k) as usize);
        // The record's publication fences the table and parts before its slot store.
        self.store(key, RecordKind::Hash, &write_table_ref(t), expire_at)
            .inspect_err(|_| {
                for &w in &written {
                    let _ = index.discard(w);
                }
            })
    }
}

/// Owned copies of borrowed pairs.
fn owned(fields: &FieldsRef<'_>) -> Fields {
    fields
        .iter()
        .map(|(f, v)| (f.to_vec(), v.to_vec()))
        .collect()
}

/// A hash record's form and expiry.
fn hash_of(e: Option<Entry>) -> Result<Option<(Form, u64)>, DbError> {
    e.map(|e| Ok((hash_form(e.value)?, e.expire_at)))
        .transpose()
}

/// The form of a hash record's value.
pub(super) fn hash_form(value: Vec<u8>) -> Result<Form, DbError> {
    match (value.first(), table_ref(&value)) {
        (_, Some(t)) => Ok(Form::Table(t)),
        // Validated where decoded: every use returns `Corrupted` for damaged fields.
        (Some(&FORMAT_COMPACT), _) => Ok(Form::Compact(value)),
        _ => Err(corrupt("hash record of an unknown format".into())),
    }
}

/// The encoded fields of a compact hash record's value (after the format byte).
fn fields_of(value: &[u8]) -> &[u8] {
    value.get(1..).unwrap_or_default()
}

/// Applies changes to a field list; (added, removed).
fn apply_changes<'a>(fields: &mut FieldsRef<'a>, changes: &[Change<'a>]) -> (u64, u64) {
    let (mut added, mut removed) = (0, 0);
    for &(f, v) in changes {
        let pos = fields.iter().position(|(x, _)| *x == f);
        match (pos, v) {
            (Some(i), Some(v)) => fields[i].1 = v,
            (None, Some(v)) => {
                fields.push((f, v));
                added += 1;
            }
            (Some(i), None) => {
                fields.remove(i);
                removed += 1;
            }
            (None, None) => {}
        }
    }
    (added, removed)
}
