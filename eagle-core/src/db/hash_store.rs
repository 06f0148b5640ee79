//! Where a hash's fields live: inline in its record while small (format 0, up to `COMPACT_MAX`
//! fields, like Redis's listpack), else in a table of parts (`hashtab`), where a field operation
//! reads one part of about 16-32 fields (2-4 KiB when values are large) whatever the hash's size,
//! and either appends new fields to it in place or rewrites it. Every change is durable on return
//! and atomic across a crash: a compact hash by one record swap; a table by one part header store
//! (an append), by the stores of one part's words (one entry's change, see `replace_parts`), or by
//! one logged batch; a table grows by one record swap (see `double_table`).

use super::core::{Db, Entry};
use super::error::DbError;
use super::hash_codec::{
    Fields, FieldsRef, count, decode, decode_ref, decode_run, encode, encode_into, encoded_len,
    run_contains,
};
use crate::dash::{IndexError, PutMode};
use crate::engine::BatchOp;
use crate::hashtab::{
    MAX_LOG2_PARTS, PART_HEADER, Part, Table, append_to_part, build_part, open_part,
    publish_append, table_ref, table_size, write_table_ref,
};
use crate::heap::{HeapError, MAX_SMALL};
use crate::record::RecordKind;

/// Most fields kept inline. Redis keeps 128 in a listpack; decoding a compact record costs
/// about 0.3 us per field here (measured by `benches/hash_fields.rs`), so past 32 fields the
/// table (one part of 16-32 fields per operation) is faster.
pub(super) const COMPACT_MAX: usize = 32;
/// Average fields per part before the table doubles.
const PART_MAX: u64 = 32;
/// Bytes of a part past which a change that adds to it doubles the table, while the parts hold
/// more than `PART_MIN` fields on average: with large values a part's scan (for a field's
/// presence) and its rewrite (an overwrite, a split) cost its bytes, and 32 fields of 1 KiB
/// made every overwrite copy 24 KiB or more.
const PART_BYTES: u64 = 4096;
/// Average fields per part below which parts' bytes do not double the table: so one large
/// field, or a few, cannot grow it without end.
const PART_MIN: u64 = 4;
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

    /// The table block at `t`, its size checked against the heap block holding it: the header
    /// has no checksum, and a damaged `k` would have part words read (and stored) past the
    /// block, in another owner's bytes.
    fn table(&self, t: u64) -> Result<Table<'_>, DbError> {
        let damaged = || corrupt(format!("hash table {t:#x} is damaged"));
        let table = Table::open(self.engine.pool().region(), t).ok_or_else(damaged)?;
        match self.engine.index().heap().block_size(t) {
            Some(size) if size >= table_size(table.log2_parts) => Ok(table),
            _ => Err(damaged()),
        }
    }

    /// Whether this pool's parts are runs that grow in place (`INCOMPAT_APPEND_PARTS`).
    fn runs(&self) -> bool {
        self.engine.pool().append_parts()
    }

    /// Whether this pool's tables double without rewriting their parts
    /// (`INCOMPAT_SHARED_PARTS`).
    fn shared(&self) -> bool {
        self.engine.pool().shared_parts()
    }

    /// Part `block`, checksum verified, its fields borrowed from the pool; `None` for no part
    /// (0). The caller holds the hash's key lock while it uses them.
    fn part(&self, block: u64) -> Result<Option<Part<'_>>, DbError> {
        let part = self.part_unverified(block)?;
        if let Some(p) = &part {
            p.verify().map_err(corrupt)?;
        }
        Ok(part)
    }

    /// [`part`](Self::part) without its checksum checked: for a writer, which checks it
    /// ([`verified`]) before it copies the part, and need not when it only appends.
    fn part_unverified(&self, block: u64) -> Result<Option<Part<'_>>, DbError> {
        if block == 0 {
            return Ok(None);
        }
        // SAFETY: the functions of this file run inside commands that hold the hash's key lock
        // (shared or exclusive), under which its parts are neither replaced nor freed.
        unsafe { open_part(self.engine.pool().region(), block) }
            .map(Some)
            .map_err(corrupt)
    }

    /// A part's fields, borrowed from it (none for no part).
    fn part_fields<'a>(&self, part: Option<&Part<'a>>) -> Result<FieldsRef<'a>, DbError> {
        let Some(p) = part else {
            return Ok(Vec::new());
        };
        if self.runs() {
            decode_run(p.fields)
        } else {
            decode_ref(p.fields)
        }
        .map_err(|e| corrupt(format!("hash part {:#x}: {e}", p.offset)))
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
                        let part = self.part(table.part(table.part_of(self.hash(w))))?;
                        let fields = self.part_fields(part.as_ref())?;
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
                self.each_part(&table, |_, fields| all.append(&mut owned(&fields)))?;
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
        let mut n = 0;
        self.each_part(table, |_, fields| n += fields.len() as u64)?;
        Ok(n)
    }

    /// The words naming entry `i`'s block ([`Table::group`]); in pools without shared parts
    /// just `i` (two words naming one block there are damage, which `check` reports).
    fn group(&self, table: &Table<'_>, i: u64) -> (u64, u64) {
        if self.shared() {
            table.group(i)
        } else {
            (i, i + 1)
        }
    }

    /// Calls `f(lo, fields)` for each entry of each block the table names, with `lo` the first
    /// of the entries naming the block and `fields` that entry's own (see
    /// [`own_fields`](Self::own_fields)).
    fn each_part<'a>(
        &'a self,
        table: &Table<'a>,
        mut f: impl FnMut(u64, FieldsRef<'a>),
    ) -> Result<(), DbError> {
        let mut lo = 0;
        while lo < table.parts() {
            let (_, hi) = self.group(table, lo);
            if let Some(part) = self.part(table.part(lo))? {
                let fields = self.part_fields(Some(&part))?;
                for own in self.own_fields(table, lo, hi, fields) {
                    f(lo, own);
                }
            }
            lo = hi;
        }
        Ok(())
    }

    /// A block's fields sorted out to the entries `lo..hi` that name it: one list per entry,
    /// its part. Fields that hash to none of them (left by a split a crash interrupted) are
    /// dropped. Pools without shared parts name a block from one entry and hold no such
    /// fields: their list is the block's, unhashed.
    fn own_fields<'a>(
        &self,
        table: &Table<'_>,
        lo: u64,
        hi: u64,
        fields: FieldsRef<'a>,
    ) -> Vec<FieldsRef<'a>> {
        if hi - lo == 1
            && (!self.shared() || crate::fault::armed(crate::fault::Fault::UnfilteredParts))
        {
            return vec![fields];
        }
        let mut own: Vec<FieldsRef<'a>> = (lo..hi).map(|_| Vec::new()).collect();
        for (f, v) in fields {
            let j = table.part_of(self.hash(f));
            if (lo..hi).contains(&j) {
                own[(j - lo) as usize].push((f, v));
            }
        }
        own
    }

    /// Applies `changes` in order (key locked exclusively by the caller); the number of fields
    /// added and removed. A hash left empty is deleted, as in Redis.
    pub(super) fn hash_update(
        &self,
        key: &[u8],
        found: Option<(Form, u64)>,
        changes: &[Change<'_>],
    ) -> Result<(u64, u64), DbError> {
        // The encodings store a field's and a value's length in 4 bytes each, and a part its
        // pairs' length in 4 bytes: a pair (two lengths, the field, the value) must fit that.
        // (A field to delete that long is in no hash: nothing to refuse.)
        let too_long =
            |f: &[u8], v: &[u8]| (8 + f.len()).saturating_add(v.len()) > super::MAX_KEY_LEN;
        if changes
            .iter()
            .any(|(f, v)| v.is_some_and(|v| too_long(f, v)))
        {
            return Err(DbError::TooLong);
        }
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
                table.store_count(n, epoch);
                // Fenced here, once per hash and recovery epoch, so it is durable however this
                // write ends (a clean close trusts counts; a count needs no other ordering).
                self.engine.pool().region().fence();
                n
            }
        };
        if let [change] = changes
            && let Some(done) = self.append_new_field(&table, before, epoch, change)?
        {
            return Ok(done);
        }
        // The touched parts, each block opened once (with the run of entries naming it), and
        // the entry each change falls in.
        let mut groups: Vec<(u64, u64, Option<Part<'_>>)> = Vec::new();
        let mut entries = Vec::with_capacity(changes.len());
        for change in changes {
            let i = table.part_of(self.hash(change.0));
            let at = match groups.iter().position(|g| (g.0..g.1).contains(&i)) {
                Some(at) => at,
                None => {
                    let (lo, hi) = self.group(&table, i);
                    let block = table.part(i);
                    if block != 0
                        && groups
                            .iter()
                            .any(|g| g.2.as_ref().map(|p| p.offset) == Some(block))
                    {
                        return Err(corrupt(format!(
                            "hash table {t:#x} names part {block:#x} from entries that are not adjacent"
                        )));
                    }
                    groups.push((lo, hi, self.part_unverified(block)?));
                    groups.len() - 1
                }
            };
            entries.push((i, at));
        }
        let mut fields: Vec<FieldsRef<'_>> = Vec::with_capacity(groups.len());
        for g in &groups {
            fields.push(self.part_fields(g.2.as_ref())?);
        }
        let (mut added, mut removed) = (0, 0);
        let mut changed = vec![false; groups.len()];
        // The entries whose fields changed: the first, and whether it is the only one.
        let (mut first, mut one_entry) = (None, true);
        for (change, &(i, at)) in changes.iter().zip(&entries) {
            let (a, r) = apply_changes(&mut fields[at], std::slice::from_ref(change));
            added += a;
            removed += r;
            // A part that only lost fields it did not have is left as it is.
            if change.1.is_some() || r > 0 {
                changed[at] = true;
                one_entry &= *first.get_or_insert(i) == i;
            }
        }
        if !changed.contains(&true) {
            // Only fields that were not there removed: nothing to write.
            return Ok((0, 0));
        }
        // The stored count is trusted in its epoch but read from the media: a count that this
        // change would take below zero, or to zero (which deletes the hash), is checked against
        // a recount first, so a damaged count cannot delete fields the parts still hold.
        let count = match before
            .checked_add(added)
            .and_then(|n| n.checked_sub(removed))
        {
            Some(n) if n > 0 => n,
            _ => {
                let actual = self.recount(&table)?;
                (actual + added).checked_sub(removed).ok_or_else(|| {
                    corrupt(format!(
                        "hash table {t:#x}: a change removes {removed} of its {actual} fields"
                    ))
                })?
            }
        };
        if count == 0 {
            self.remove(key)?;
            return Ok((added, removed));
        }
        let in_atomic = self.engine.in_atomic();
        // Only a change that adds fields doubles the table: one that only removes (HDEL, which
        // runs on the heap's reserve) must not grow the hash.
        let grown = groups
            .iter()
            .filter_map(|g| g.2.as_ref())
            .map(|p| p.fields.len() as u64)
            .max()
            .unwrap_or(0)
            + added_bytes(changes);
        let due = added > 0 && growth_due(&table, count, grown);
        // A change that more than doubles the hash (a bulk HSET) pays for a rebuild sized for
        // it: one doubling would leave its parts far above the average.
        let bulk = count > 2 * PART_MAX * table.parts();
        if due && (!self.shared() || in_atomic || bulk) {
            verified(&groups)?;
            // The table is rebuilt for about 16 fields (or 2 KiB) per part, every part
            // rewritten (pools without shared parts; atomic transactions, whose undo covers the
            // record, not a table's ownership of parts; and bulk changes).
            let mut all = Vec::new();
            self.each_part(&table, |lo, own| {
                if !groups.iter().any(|g| (g.0..g.1).contains(&lo)) {
                    all.append(&mut owned(&own));
                }
            })?;
            for (g, touched) in groups.iter().zip(fields) {
                for own in self.own_fields(&table, g.0, g.1, touched) {
                    all.append(&mut owned(&own));
                }
            }
            self.store_table(key, &all, expire_at)?;
            return Ok((added, removed));
        }
        // Only new fields, all in one part that no other entry names: appended in place if its
        // block has room. Not inside an atomic transaction, whose undo covers words, not a
        // part's bytes.
        let appended = matches!(&groups[..], [(lo, hi, Some(part))]
            if hi - lo == 1
                && removed == 0
                && added == changes.len() as u64
                && self.runs()
                && !in_atomic
                && self.append_fields(&table, part, changes, count, epoch));
        if !appended {
            // The parts are copied: checked first, so damage is reported, not laundered into
            // a new checksum. (An append extends the stored checksum instead.)
            verified(&groups)?;
            let (mut rewrite, mut olds) = (Vec::new(), Vec::new());
            for ((g, fields), changed) in groups.iter().zip(fields).zip(changed) {
                if changed {
                    rewrite.push((g.0, g.1, fields));
                    olds.extend(g.2.as_ref().map(|p| p.offset));
                }
            }
            // Plain stores only for one entry's change to a block no other entry names: a
            // crash keeping some of a run's stores leaves the old block named by the entries
            // whose words it did not keep, holding the changed entry's old fields, which no
            // reader sees but no later write of those entries removes either (an HDEL's value
            // stayed in the pool; `deleted_values.rs`). So a split of a shared block is logged,
            // and a crash leaves it wholly done or not done.
            let single = one_entry && rewrite.iter().all(|(lo, hi, _)| hi - lo == 1);
            // The background sweep reads part words under the record's segment lock, which
            // this writer does not hold: the old blocks are kept before their words change, or
            // a sweep that read the new words and ended before the retire below would free
            // them as unreachable, and the retire's deferred free would free them again,
            // perhaps reallocated by then.
            for &old in &olds {
                self.engine.index().keep(old);
            }
            self.replace_parts(&table, rewrite, single, count, epoch)?;
            crate::fault::pause_point(crate::fault::Fault::PauseBeforePartRetire);
            let guard = self.engine.index().pin();
            for old in olds {
                self.engine.index().retire(&guard, old);
            }
        }
        if due {
            // The change above is durable (and acknowledged) whatever happens here: a table that
            // cannot double now (a full pool) keeps its size, and the next change tries again.
            let _ = self.double_table(key, &table, count, expire_at);
        }
        Ok((added, removed))
    }

    /// The common change to a large hash, one new field (redis-benchmark's HSET): appended to
    /// its part in place as `table_update` would append it, but found absent by a scan of the
    /// part instead of a decoded copy of it. `None` (nothing written, `table_update` goes on):
    /// the field exists, its part is shared or has no room, the table is due to double, or an
    /// append is not allowed (an atomic transaction, a pool without `APPEND_PARTS`).
    fn append_new_field(
        &self,
        table: &Table<'_>,
        before: u64,
        epoch: u64,
        change: &Change<'_>,
    ) -> Result<Option<(u64, u64)>, DbError> {
        let Some(count) = before.checked_add(1) else {
            return Ok(None);
        };
        if change.1.is_none() || !self.runs() || self.engine.in_atomic() {
            return Ok(None);
        }
        let i = table.part_of(self.hash(change.0));
        let (lo, hi) = self.group(table, i);
        if hi - lo != 1 {
            return Ok(None);
        }
        let Some(part) = self.part_unverified(table.part(i))? else {
            return Ok(None);
        };
        let grown = part.fields.len() as u64 + added_bytes(std::slice::from_ref(change));
        if growth_due(table, count, grown) {
            return Ok(None);
        }
        let present = run_contains(part.fields, change.0)
            .map_err(|e| corrupt(format!("hash part {:#x}: {e}", part.offset)))?;
        let appended = !present
            && self.append_fields(table, &part, std::slice::from_ref(change), count, epoch);
        Ok(appended.then_some((1, 0)))
    }

    /// Writes changed parts as new blocks and publishes them: each entry `lo..hi` of a
    /// changed block gets a block of its own fields (a block that several entries named is
    /// split among them), or none if it has no fields left. If the change's fields all fall in
    /// one entry whose block no other entry names (`single`), the new block is published with
    /// a plain 8-byte store; else through one logged batch. The caller retires the replaced
    /// blocks.
    fn replace_parts(
        &self,
        table: &Table<'_>,
        rewrite: Vec<(u64, u64, FieldsRef<'_>)>,
        single: bool,
        count: u64,
        epoch: u64,
    ) -> Result<(), DbError> {
        let index = self.engine.index();
        let discard = |words: &[(u64, u64)]| {
            for &(_, block) in words {
                if block != 0 {
                    let _ = index.discard(block);
                }
            }
        };
        // Each changed entry's new part, encoded (None: the entry is left empty).
        let mut parts: Vec<(u64, Option<Vec<u8>>)> = Vec::new();
        for (lo, hi, fields) in rewrite {
            // A block of one entry is copied whole: fields of other entries that an
            // interrupted split left in it stay invisible there (every listing drops them),
            // and the next split of the block drops them; sorting them out here would cost a
            // hash per field of every rewrite.
            let owns = if hi - lo == 1 {
                vec![fields]
            } else {
                self.own_fields(table, lo, hi, fields)
            };
            for (j, own) in (lo..hi).zip(owns) {
                parts.push((j, (!own.is_empty()).then(|| self.encode_part(&own))));
            }
        }
        // Placed largest first: on a full pool (HDEL on the heap's reserve) the first part may
        // take the last free chunk, for its class, and the smaller parts can then take that
        // chunk's blocks (a larger class will do there) instead of each needing a chunk.
        // (The words' order does not matter: one plain store between two fences, or one batch.)
        parts.sort_by_key(|p| std::cmp::Reverse(p.1.as_ref().map_or(0, Vec::len)));
        let mut words: Vec<(u64, u64)> = Vec::with_capacity(parts.len());
        for (j, bytes) in &parts {
            let block = match bytes.as_deref().map(|b| self.place_part(b)).transpose() {
                Ok(block) => block.unwrap_or(0),
                Err(e) => {
                    discard(&words);
                    return Err(e);
                }
            };
            words.push((*j, block));
        }
        let t = table.offset;
        if single {
            // Inside an atomic transaction the words changed in place are logged first.
            if self.engine.in_atomic() {
                let mut undo: Vec<u64> = words.iter().map(|w| table.part_word(w.0)).collect();
                undo.extend([t + 16, t + 24]);
                if let Err(e) = self.engine.save_undo_words(&undo) {
                    discard(&words);
                    return Err(e.into());
                }
            }
            // Ordering: the new part's bytes (flushed by place_part) are durable before the
            // 8-byte store that publishes it; the second fence makes that store and the count
            // durable before the command returns (the count in any order: see `store_count`).
            // One entry, whose block no other entry names: a crash between the fences leaves
            // the change wholly done or not done, and the old block named by nothing (the
            // retire below, or the next open's sweep, frees and zeroes it).
            let region = self.engine.pool().region();
            region.fence();
            for &(j, block) in &words {
                table.publish_part(j, block);
            }
            table.store_count(count, epoch);
            if !crate::fault::armed(crate::fault::Fault::SkipFenceAfterPartPublish) {
                region.fence();
            }
        } else {
            let mut ops: Vec<BatchOp> = words
                .iter()
                .map(|&(j, block)| BatchOp::SetWord {
                    offset: table.part_word(j),
                    value: block,
                })
                .collect();
            ops.push(BatchOp::SetWord {
                offset: t + 16,
                value: count,
            });
            // A batch whose record stays in the log (it failed half-applied, or was applied
            // behind one that did) has published some or all of the blocks, and the redo at the
            // next open publishes them all: they are freed only if it was never logged.
            self.engine.apply_batch(&ops).inspect_err(|e| {
                if !e.logged() {
                    discard(&words)
                }
            })?;
        }
        Ok(())
    }

    /// Doubles the table of the hash at `key` without rewriting its parts: a new table names
    /// each block from both entries it splits into (the blocks split at their next change),
    /// and replaces the old one in the hash's record, which reclaims the old table but not the
    /// parts. Not inside an atomic transaction. Caller holds the key's lock exclusively.
    fn double_table(
        &self,
        key: &[u8],
        table: &Table<'_>,
        count: u64,
        expire_at: u64,
    ) -> Result<(), DbError> {
        let index = self.engine.index();
        let t = index.alloc_block(table_size(table.log2_parts + 1))?;
        let region = self.engine.pool().region();
        let epoch = self.engine.pool().recovery_epoch();
        // SAFETY: just allocated, reachable from nothing.
        unsafe { Table::init_doubled(region, t, table, count, epoch) };
        // Ordering: the put fences the new table (flushed by init_doubled) before the 8-byte
        // slot store that publishes its record. A crash before that store keeps the old record
        // and table, which name the same parts; the new table is then reachable from nothing
        // and the next open's sweep reclaims it. After it, the old record and table are
        // reachable from nothing (retired, or reclaimed by the sweep), and the parts stay
        // named by the new table.
        index
            .put(
                key,
                &write_table_ref(t),
                RecordKind::Hash,
                expire_at,
                PutMode::UpsertKeepParts,
            )
            .inspect_err(|_| {
                let _ = index.discard(t);
            })?;
        self.table_doublings.add(1);
        Ok(())
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

    /// Appends `changes` (fields new to `part`, each with a value) to the part in place, if
    /// its heap block has room; `false` (nothing written) if not. Two fences: the pairs, then
    /// the header word that publishes them together with the count. Caller holds the key's
    /// lock exclusively.
    fn append_fields(
        &self,
        table: &Table<'_>,
        part: &Part<'_>,
        changes: &[Change<'_>],
        count: u64,
        epoch: u64,
    ) -> bool {
        let pairs: Vec<(&[u8], &[u8])> =
            changes.iter().filter_map(|&(f, v)| Some((f, v?))).collect();
        let len = PART_HEADER + (part.fields.len() + encoded_len(&pairs, false)) as u64;
        let room = self.engine.index().block_size(part.offset).unwrap_or(0);
        if pairs.len() != changes.len() || len > room || len - PART_HEADER > u64::from(u32::MAX) {
            return false;
        }
        let mut bytes = Vec::new();
        encode_into(&mut bytes, &pairs, false);
        let region = self.engine.pool().region();
        // SAFETY: the caller holds the key's lock exclusively, `part` is the part its table
        // names (opened under that lock), and its block holds the bytes (checked above).
        let word = unsafe { append_to_part(region, part, &bytes) };
        // Ordering: the appended pairs are durable before the header word that covers them. A
        // crash before the word reaches the media keeps the old header: the pairs are slack
        // again, and the part reads as before. The second fence makes the word and the count
        // durable before the command returns (the count in any order: see `store_count`).
        if !crate::fault::armed(crate::fault::Fault::SkipFenceBeforeAppend) {
            region.fence();
        }
        publish_append(region, part.offset, word);
        table.store_count(count, epoch);
        if !crate::fault::armed(crate::fault::Fault::SkipFenceAfterAppend) {
            region.fence();
        }
        self.part_appends.add(1);
        true
    }

    /// Writes a part block (flushed, not fenced); its offset. In a pool whose parts grow in
    /// place the block has room for half as many bytes again, so later additions append.
    fn write_part<F: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        fields: &[(F, V)],
    ) -> Result<u64, DbError> {
        self.place_part(&self.encode_part(fields))
    }

    /// The bytes of a part holding `fields`.
    fn encode_part<F: AsRef<[u8]>, V: AsRef<[u8]>>(&self, fields: &[(F, V)]) -> Vec<u8> {
        let runs = self.runs();
        build_part(|out| encode_into(out, fields, !runs))
    }

    /// [`write_part`](Self::write_part) of a part already encoded.
    fn place_part(&self, bytes: &[u8]) -> Result<u64, DbError> {
        let runs = self.runs();
        let size = bytes.len() as u64;
        // The header stores the fields' length in 4 bytes: a part of fields longer than that
        // (one pair near the limit of each is enough) would be written with a wrong length.
        if size - PART_HEADER > u64::from(u32::MAX) {
            return Err(DbError::TooLong);
        }
        // Room never takes a part out of the small classes (whole chunks past them), and a
        // full pool still takes the part without it. None on the heap's reserve (HDEL): it
        // holds what it frees, no more.
        let room = if runs && size <= MAX_SMALL && !crate::heap::in_reserve_scope() {
            (size + size / 2).min(MAX_SMALL)
        } else {
            size
        };
        let index = self.engine.index();
        let (block, room) = match index.alloc_block(room) {
            Err(IndexError::Heap(HeapError::OutOfSpace { .. })) if room > size => {
                (index.alloc_block(size)?, size)
            }
            r => (r?, room),
        };
        let region = self.engine.pool().region();
        // SAFETY: just allocated, reachable from nothing.
        unsafe { region.write(block, bytes) };
        self.part_writes.add(1);
        // The room past the part is zero in memory (as every free block is) but a freed
        // block's zeroes may not have reached the media (`Heap::alloc` flushes only past the
        // size it was asked for): flushed here, so the publishing fence makes them durable and
        // a crash cannot bring old bytes back where an append will write.
        region.flush(block, room as usize);
        Ok(block)
    }

    /// Stores `fields` as a new table (parts for about 16 fields or 2 KiB each) under `key`,
    /// replacing its record (and so retiring the old table and parts, if any).
    pub(super) fn store_table<F: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        key: &[u8],
        fields: &[(F, V)],
        expire_at: u64,
    ) -> Result<(), DbError> {
        let n = fields.len() as u64;
        let bytes: u64 = fields
            .iter()
            .map(|(f, v)| (8 + f.as_ref().len() + v.as_ref().len()) as u64)
            .sum();
        // Parts of about half what doubles a table: 16 fields, or PART_BYTES / 2 bytes while
        // that leaves them more than PART_MIN / 2 fields on average.
        let mut k = 0;
        while k < crate::hashtab::MAX_LOG2_PARTS
            && ((1u64 << k) * (PART_MAX / 2) < n
                || ((1u64 << k) * (PART_BYTES / 2) < bytes && (1u64 << k) * (PART_MIN / 2) < n))
        {
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

/// Whether a change that adds fields, leaving the hash `count` fields and the part it grows
/// about `part_bytes` bytes, doubles `table`: more than `PART_MAX` fields per word on average,
/// or a part over `PART_BYTES` while words hold more than `PART_MIN` on average.
fn growth_due(table: &Table<'_>, count: u64, part_bytes: u64) -> bool {
    let parts = table.parts();
    table.log2_parts < MAX_LOG2_PARTS
        && (count > PART_MAX * parts || (part_bytes > PART_BYTES && count > PART_MIN * parts))
}

/// Bytes `changes` add to a part at most (each new value as a pair of its own).
fn added_bytes(changes: &[Change<'_>]) -> u64 {
    changes
        .iter()
        .filter_map(|(f, v)| v.map(|v| (8 + f.len() + v.len()) as u64))
        .sum()
}

/// Checks the checksums of parts opened unverified.
fn verified(groups: &[(u64, u64, Option<Part<'_>>)]) -> Result<(), DbError> {
    for part in groups.iter().filter_map(|g| g.2.as_ref()) {
        part.verify().map_err(corrupt)?;
    }
    Ok(())
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
