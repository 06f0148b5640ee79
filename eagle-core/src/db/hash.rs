//! Hash commands, over the two stored forms in `hash_store.rs`.

use super::core::Db;
use super::error::DbError;
use super::glob::glob_match;
use super::hash_codec::Fields;
use super::keys::random_u64;
use super::num::{format_f64, parse_f64, parse_i64};

/// The most fields HRANDFIELD returns for a negative count (fields repeated).
pub const MAX_RANDOM_REPEATS: u64 = 1 << 24;

impl Db {
    /// HSET (HMSET): how many fields were added (not updated). Atomic across a crash.
    pub fn hset(&self, key: &[u8], pairs: &[(&[u8], &[u8])]) -> Result<u64, DbError> {
        let _held = self.lock_write([key])?;
        self.hset_held(key, pairs)
    }

    /// HSETs of one key in a row (a pipeline's), under one take of the key's lock: each one's
    /// result, in order, as the HSETs one by one would give them (each atomic across a crash on
    /// its own). Where several connections write one hash, each HSET taking the lock made the
    /// workers hand it to one another (and park) once per command.
    pub fn hset_run(
        &self,
        key: &[u8],
        commands: &[&[(&[u8], &[u8])]],
    ) -> Vec<Result<u64, DbError>> {
        let held = self.lock_write([key]);
        commands
            .iter()
            .map(|pairs| match &held {
                Err(e) => Err(e.clone()),
                // An atomic batch that failed half-applied meanwhile (another key's) makes the
                // engine refuse writes, as `lock_write` would for each HSET alone.
                Ok(_) if !self.engine.writable() => Err(DbError::ReadOnly),
                Ok(_) => self.hset_held(key, pairs),
            })
            .collect()
    }

    /// HSET with the key's lock held.
    fn hset_held(&self, key: &[u8], pairs: &[(&[u8], &[u8])]) -> Result<u64, DbError> {
        let found = self.open_hash(key)?;
        let changes: Vec<_> = pairs.iter().map(|(f, v)| (*f, Some(*v))).collect();
        Ok(self.hash_update(key, found, &changes)?.0)
    }

    /// HSETNX.
    pub fn hsetnx(&self, key: &[u8], field: &[u8], value: &[u8]) -> Result<bool, DbError> {
        let _held = self.lock_write([key])?;
        let found = self.open_hash(key)?;
        if let Some((form, _)) = &found
            && self.hash_get(form, &[field])?[0].is_some()
        {
            return Ok(false);
        }
        self.hash_update(key, found, &[(field, Some(value))])?;
        Ok(true)
    }

    /// HGET.
    pub fn hget(&self, key: &[u8], field: &[u8]) -> Result<Option<Vec<u8>>, DbError> {
        Ok(self.hmget(key, &[field])?.pop().flatten())
    }

    /// HMGET.
    pub fn hmget(&self, key: &[u8], wanted: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, DbError> {
        let _held = self.lock_read([key]);
        match self.open_hash_read(key)? {
            None => Ok(vec![None; wanted.len()]),
            Some((form, _)) => self.hash_get(&form, wanted),
        }
    }

    /// HDEL: how many fields were removed; the key goes with its last field.
    pub fn hdel(&self, key: &[u8], gone: &[&[u8]]) -> Result<u64, DbError> {
        let _held = self.lock_write_when_full([key])?;
        let Some(found) = self.open_hash(key)? else {
            return Ok(0);
        };
        let changes: Vec<_> = gone.iter().map(|f| (*f, None)).collect();
        Ok(self.hash_update(key, Some(found), &changes)?.1)
    }

    /// HLEN.
    pub fn hlen(&self, key: &[u8]) -> Result<u64, DbError> {
        let _held = self.lock_read([key]);
        match self.open_hash_read(key)? {
            None => Ok(0),
            Some((form, _)) => self.hash_len(&form),
        }
    }

    /// HEXISTS.
    pub fn hexists(&self, key: &[u8], field: &[u8]) -> Result<bool, DbError> {
        Ok(self.hget(key, field)?.is_some())
    }

    /// HGETALL (HKEYS and HVALS take a half of it).
    pub fn hgetall(&self, key: &[u8]) -> Result<Fields, DbError> {
        let _held = self.lock_read([key]);
        match self.open_hash_read(key)? {
            None => Ok(Vec::new()),
            Some((form, _)) => self.hash_all(form),
        }
    }

    /// HSTRLEN.
    pub fn hstrlen(&self, key: &[u8], field: &[u8]) -> Result<u64, DbError> {
        Ok(self.hget(key, field)?.map_or(0, |v| v.len() as u64))
    }

    /// Reads one field, computes its new value with `f`, writes it: the shared body of HINCRBY
    /// and HINCRBYFLOAT.
    fn hash_rmw<T>(
        &self,
        key: &[u8],
        field: &[u8],
        f: impl FnOnce(Option<&[u8]>) -> Result<(Vec<u8>, T), DbError>,
    ) -> Result<T, DbError> {
        let _held = self.lock_write([key])?;
        let found = self.open_hash(key)?;
        let old = match &found {
            None => None,
            Some((form, _)) => self.hash_get(form, &[field])?.pop().flatten(),
        };
        let (new, out) = f(old.as_deref())?;
        self.hash_update(key, found, &[(field, Some(&new))])?;
        Ok(out)
    }

    /// HINCRBY: the new value.
    pub fn hincrby(&self, key: &[u8], field: &[u8], delta: i64) -> Result<i64, DbError> {
        self.hash_rmw(key, field, |old| {
            let old = match old {
                None => 0,
                Some(v) => parse_i64(v).ok_or(DbError::HashNotInteger)?,
            };
            let new = old.checked_add(delta).ok_or(DbError::Overflow)?;
            Ok((new.to_string().into_bytes(), new))
        })
    }

    /// HINCRBYFLOAT: the new value as Redis prints it.
    pub fn hincrbyfloat(&self, key: &[u8], field: &[u8], delta: f64) -> Result<String, DbError> {
        self.hash_rmw(key, field, |old| {
            let old = match old {
                None => 0.0,
                Some(v) => parse_f64(v).ok_or(DbError::HashNotFloat)?,
            };
            let new = old + delta;
            if !new.is_finite() {
                return Err(DbError::NanOrInfinity);
            }
            let text = format_f64(new);
            Ok((text.clone().into_bytes(), text))
        })
    }

    /// HSCAN: the whole hash in one call with cursor 0 (as Redis does for small hashes),
    /// filtered by MATCH.
    pub fn hscan(&self, key: &[u8], pattern: Option<&[u8]>) -> Result<Fields, DbError> {
        let mut fields = self.hgetall(key)?;
        if let Some(p) = pattern {
            fields.retain(|(f, _)| glob_match(p, f));
        }
        Ok(fields)
    }

    /// HRANDFIELD: without `count`, one field; with a positive count, up to that many distinct
    /// fields; with a negative one, that many with repeats, at most [`MAX_RANDOM_REPEATS`]
    /// (beyond it, [`DbError::ValueOutOfRange`]: the answer is built in memory, and Redis, which
    /// streams it, runs out of output buffer there too). Without `with_values` the values come
    /// back empty (and are not copied for every repeat).
    pub fn hrandfield(
        &self,
        key: &[u8],
        count: Option<i64>,
        with_values: bool,
    ) -> Result<Fields, DbError> {
        let mut fields = self.hgetall(key)?;
        // After the lookup, as Redis answers a missing key (or one of another type) first.
        if !fields.is_empty()
            && count.is_some_and(|c| c < 0 && c.unsigned_abs() > MAX_RANDOM_REPEATS)
        {
            return Err(DbError::ValueOutOfRange);
        }
        if !with_values {
            for (_, v) in &mut fields {
                *v = Vec::new();
            }
        }
        if fields.is_empty() {
            return Ok(fields);
        }
        let n = fields.len() as u64;
        match count {
            None => {
                let i = (random_u64() % n) as usize;
                Ok(vec![fields.swap_remove(i)])
            }
            Some(c) if c >= 0 => {
                let c = (c as u64).min(n) as usize;
                // Partial Fisher-Yates: the first c positions become a random selection.
                for i in 0..c {
                    let j = i + (random_u64() % (n - i as u64)) as usize;
                    fields.swap(i, j);
                }
                fields.truncate(c);
                Ok(fields)
            }
            Some(c) => Ok((0..c.unsigned_abs())
                .map(|_| fields[(random_u64() % n) as usize].clone())
                .collect()),
        }
    }
}
