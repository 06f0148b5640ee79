//! Keyspace commands: DEL, EXISTS, TYPE, RENAME, COPY, TOUCH, DBSIZE, FLUSHALL, KEYS, SCAN,
//! RANDOMKEY.

use std::hash::{BuildHasher, Hasher};

use super::core::{Db, KeyType};
use super::error::DbError;
use super::glob::glob_match;
use crate::engine::BatchOp;

impl Db {
    /// Starts fetching the index lines and records that commands on `keys` will read, so that
    /// the commands of a pipeline overlap their cache misses ([`Dash::prefetch`]). Only a hint:
    /// no key lock, no effect on any result.
    ///
    /// [`Dash::prefetch`]: crate::dash::Dash::prefetch
    pub fn prefetch(&self, keys: &[&[u8]]) {
        self.engine.index().prefetch(keys);
    }

    /// DEL / UNLINK: how many of the keys existed. Several keys go as one atomic batch.
    pub fn del(&self, keys: &[&[u8]]) -> Result<u64, DbError> {
        let _held = self.lock_write(keys.iter().copied())?;
        let mut present: Vec<&[u8]> = Vec::new();
        for k in keys {
            if !present.contains(k) && self.peek(k)?.is_some() {
                present.push(k);
            }
        }
        match present[..] {
            [] => {}
            [k] => {
                self.remove(k)?;
            }
            _ => {
                let ops: Vec<BatchOp> = present
                    .iter()
                    .map(|k| BatchOp::Delete { key: k.to_vec() })
                    .collect();
                self.engine.apply_batch(&ops)?;
            }
        }
        Ok(present.len() as u64)
    }

    /// EXISTS: counts repeats.
    pub fn exists(&self, keys: &[&[u8]]) -> Result<u64, DbError> {
        let _held = self.lock_read(keys.iter().copied());
        let mut n = 0;
        for k in keys {
            n += self.peek_read(k)?.is_some() as u64;
        }
        Ok(n)
    }

    /// TOUCH: how many exist (no access times are kept).
    pub fn touch(&self, keys: &[&[u8]]) -> Result<u64, DbError> {
        self.exists(keys)
    }

    /// TYPE.
    pub fn key_type(&self, key: &[u8]) -> Result<Option<KeyType>, DbError> {
        let _held = self.lock_read([key]);
        Ok(self.peek_read(key)?.map(|(k, _, _)| KeyType::of(k)))
    }

    /// RENAME (`nx`: RENAMENX). Returns whether it renamed; all or nothing across a crash.
    pub fn rename(&self, src: &[u8], dst: &[u8], nx: bool) -> Result<bool, DbError> {
        let _held = self.lock_write_when_full([src, dst])?;
        let Some(e) = self.load(src)? else {
            return Err(DbError::NoSuchKey);
        };
        if src == dst {
            return Ok(!nx);
        }
        if nx && self.peek(dst)?.is_some() {
            return Ok(false);
        }
        let record = self
            .engine
            .index()
            .prepare(dst, &e.value, e.kind, e.expire_at)?;
        let ops = [
            BatchOp::Put {
                key: dst.to_vec(),
                record,
            },
            // Detach: a large hash's table and parts now belong to `dst`'s record.
            BatchOp::Detach { key: src.to_vec() },
        ];
        self.engine.apply_batch(&ops)?;
        Ok(true)
    }

    /// COPY: whether it copied (false if `src` is missing, or `dst` exists without REPLACE).
    pub fn copy(&self, src: &[u8], dst: &[u8], replace: bool) -> Result<bool, DbError> {
        if src == dst {
            return Err(DbError::SameObject);
        }
        let _held = self.lock_write([src, dst])?;
        // Redis reads COPY's source with a counted lookup (`lookupKeyRead`).
        let Some(e) = self.load_read(src)? else {
            return Ok(false);
        };
        if !replace && self.peek(dst)?.is_some() {
            return Ok(false);
        }
        match crate::hashtab::table_ref(&e.value) {
            // A large hash is copied deep: the copy owns its own table and parts.
            Some(_) if e.kind == crate::record::RecordKind::Hash => {
                let Some((form, _)) = self.open_hash(src)? else {
                    return Ok(false);
                };
                let fields = self.hash_all(form)?;
                self.store_table(dst, &fields, e.expire_at)?;
            }
            _ => self.store(dst, e.kind, &e.value, e.expire_at)?,
        }
        Ok(true)
    }

    /// DBSIZE (expired keys not yet removed included, as in Redis).
    pub fn dbsize(&self) -> u64 {
        self.engine.index().len()
    }

    /// FLUSHALL / FLUSHDB: all or nothing across a crash.
    pub fn flushall(&self) -> Result<(), DbError> {
        let _held = self.lock_all()?;
        self.engine.flush_all()?;
        Ok(())
    }

    /// KEYS: every live key matching `pattern`.
    pub fn keys(&self, pattern: &[u8]) -> Result<Vec<Vec<u8>>, DbError> {
        let mut out = Vec::new();
        let mut cursor = 0;
        loop {
            let (next, mut batch) = self.scan(cursor, Some(pattern), 1024, None)?;
            out.append(&mut batch);
            if next == 0 {
                return Ok(out);
            }
            cursor = next;
        }
    }

    /// SCAN: live keys from `cursor` (about `count` examined), filtered by MATCH and TYPE;
    /// the next cursor (0 at the end). Every key present for the whole scan is returned.
    pub fn scan(
        &self,
        cursor: u64,
        pattern: Option<&[u8]>,
        count: usize,
        of_type: Option<KeyType>,
    ) -> Result<(u64, Vec<Vec<u8>>), DbError> {
        let now = self.now_ms();
        let mut out = Vec::new();
        let next = self.engine.index().scan(cursor, count.max(1), |r| {
            let at = r.expire_at_ms();
            if (at != 0 && at <= now)
                || of_type.is_some_and(|t| t != KeyType::of(r.kind()))
                || pattern.is_some_and(|p| !glob_match(p, r.key()))
            {
                return;
            }
            out.push(r.key().to_vec());
        })?;
        Ok((next, out))
    }

    /// RANDOMKEY.
    pub fn randomkey(&self) -> Result<Option<Vec<u8>>, DbError> {
        if self.dbsize() == 0 {
            return Ok(None);
        }
        for _ in 0..64 {
            // A random position in the hash space (low bits: the bucket to start at).
            let start = random_u64();
            let (_, keys) = self.scan(start, None, 1, None)?;
            if let Some(k) = keys.into_iter().next() {
                return Ok(Some(k));
            }
        }
        // Mostly expired or a sparse end of the hash space: take the first live key.
        let mut cursor = 0;
        loop {
            let (next, keys) = self.scan(cursor, None, 64, None)?;
            if let Some(k) = keys.into_iter().next() {
                return Ok(Some(k));
            }
            if next == 0 {
                return Ok(None);
            }
            cursor = next;
        }
    }
}

/// A random number for sampling (not cryptographic).
pub(crate) fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    h.finish()
}
