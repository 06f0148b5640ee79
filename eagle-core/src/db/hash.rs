//! Hash commands over the stored form in `hash_codec.rs`.

use super::core::Db;
use super::error::DbError;
use super::glob::glob_match;
use super::hash_codec::{Fields, count, decode, encode};
use super::keys::random_u64;
use super::num::{format_f64, parse_f64, parse_i64};
use crate::record::RecordKind;

impl Db {
    /// The hash at `key` (locked by the caller) and its expiry; empty if absent.
    fn load_hash(&self, key: &[u8]) -> Result<(Fields, u64), DbError> {
        match self.load_as(key, RecordKind::Hash)? {
            None => Ok((Vec::new(), 0)),
            Some(e) => Ok((decode(&e.value)?, e.expire_at)),
        }
    }

    /// Writes the hash back; an empty hash deletes the key (as in Redis).
    fn store_hash(&self, key: &[u8], fields: &Fields, expire_at: u64) -> Result<(), DbError> {
        if fields.is_empty() {
            self.remove(key)?;
            Ok(())
        } else {
            self.store(key, RecordKind::Hash, &encode(fields), expire_at)
        }
    }

    /// HSET (HMSET): how many fields were added (not updated). Atomic: one record swap.
    pub fn hset(&self, key: &[u8], pairs: &[(&[u8], &[u8])]) -> Result<u64, DbError> {
        let _held = self.lock_write([key])?;
        let (mut fields, expire_at) = self.load_hash(key)?;
        let mut added = 0;
        for (f, v) in pairs {
            match fields.iter_mut().find(|(k, _)| k == f) {
                Some(slot) => slot.1 = v.to_vec(),
                None => {
                    fields.push((f.to_vec(), v.to_vec()));
                    added += 1;
                }
            }
        }
        self.store_hash(key, &fields, expire_at)?;
        Ok(added)
    }

    /// HSETNX.
    pub fn hsetnx(&self, key: &[u8], field: &[u8], value: &[u8]) -> Result<bool, DbError> {
        let _held = self.lock_write([key])?;
        let (mut fields, expire_at) = self.load_hash(key)?;
        if fields.iter().any(|(k, _)| k == field) {
            return Ok(false);
        }
        fields.push((field.to_vec(), value.to_vec()));
        self.store_hash(key, &fields, expire_at)?;
        Ok(true)
    }

    /// HGET.
    pub fn hget(&self, key: &[u8], field: &[u8]) -> Result<Option<Vec<u8>>, DbError> {
        let _held = self.lock_read([key]);
        let (fields, _) = self.load_hash(key)?;
        Ok(fields.into_iter().find(|(k, _)| k == field).map(|(_, v)| v))
    }

    /// HMGET.
    pub fn hmget(&self, key: &[u8], wanted: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, DbError> {
        let _held = self.lock_read([key]);
        let (fields, _) = self.load_hash(key)?;
        Ok(wanted
            .iter()
            .map(|w| fields.iter().find(|(k, _)| k == w).map(|(_, v)| v.clone()))
            .collect())
    }

    /// HDEL: how many fields were removed; the key goes with its last field.
    pub fn hdel(&self, key: &[u8], gone: &[&[u8]]) -> Result<u64, DbError> {
        let _held = self.lock_write([key])?;
        let (mut fields, expire_at) = self.load_hash(key)?;
        let before = fields.len();
        fields.retain(|(k, _)| !gone.contains(&k.as_slice()));
        let removed = (before - fields.len()) as u64;
        if removed > 0 {
            self.store_hash(key, &fields, expire_at)?;
        }
        Ok(removed)
    }

    /// HLEN.
    pub fn hlen(&self, key: &[u8]) -> Result<u64, DbError> {
        let _held = self.lock_read([key]);
        match self.load_as(key, RecordKind::Hash)? {
            None => Ok(0),
            Some(e) => count(&e.value),
        }
    }

    /// HEXISTS.
    pub fn hexists(&self, key: &[u8], field: &[u8]) -> Result<bool, DbError> {
        Ok(self.hget(key, field)?.is_some())
    }

    /// HGETALL (HKEYS and HVALS take a half of it).
    pub fn hgetall(&self, key: &[u8]) -> Result<Fields, DbError> {
        let _held = self.lock_read([key]);
        Ok(self.load_hash(key)?.0)
    }

    /// HSTRLEN.
    pub fn hstrlen(&self, key: &[u8], field: &[u8]) -> Result<u64, DbError> {
        Ok(self.hget(key, field)?.map_or(0, |v| v.len() as u64))
    }

    /// HINCRBY: the new value.
    pub fn hincrby(&self, key: &[u8], field: &[u8], delta: i64) -> Result<i64, DbError> {
        let _held = self.lock_write([key])?;
        let (mut fields, expire_at) = self.load_hash(key)?;
        let pos = fields.iter().position(|(k, _)| k == field);
        let old = match pos {
            None => 0,
            Some(i) => parse_i64(&fields[i].1).ok_or(DbError::HashNotInteger)?,
        };
        let new = old.checked_add(delta).ok_or(DbError::Overflow)?;
        let text = new.to_string().into_bytes();
        match pos {
            Some(i) => fields[i].1 = text,
            None => fields.push((field.to_vec(), text)),
        }
        self.store_hash(key, &fields, expire_at)?;
        Ok(new)
    }

    /// HINCRBYFLOAT: the new value as Redis prints it.
    pub fn hincrbyfloat(&self, key: &[u8], field: &[u8], delta: f64) -> Result<String, DbError> {
        let _held = self.lock_write([key])?;
        let (mut fields, expire_at) = self.load_hash(key)?;
        let pos = fields.iter().position(|(k, _)| k == field);
        let old = match pos {
            None => 0.0,
            Some(i) => parse_f64(&fields[i].1).ok_or(DbError::HashNotFloat)?,
        };
        let new = old + delta;
        if !new.is_finite() {
            return Err(DbError::NanOrInfinity);
        }
        let text = format_f64(new);
        match pos {
            Some(i) => fields[i].1 = text.clone().into_bytes(),
            None => fields.push((field.to_vec(), text.clone().into_bytes())),
        }
        self.store_hash(key, &fields, expire_at)?;
        Ok(text)
    }

    /// HSCAN: the stored form is compact, so (like Redis for listpack hashes) the whole hash
    /// comes in one call with cursor 0, filtered by MATCH.
    pub fn hscan(&self, key: &[u8], pattern: Option<&[u8]>) -> Result<Fields, DbError> {
        let mut fields = self.hgetall(key)?;
        if let Some(p) = pattern {
            fields.retain(|(f, _)| glob_match(p, f));
        }
        Ok(fields)
    }

    /// HRANDFIELD: without `count`, one field; with a positive count, up to that many distinct
    /// fields; with a negative one, that many with repeats.
    pub fn hrandfield(&self, key: &[u8], count: Option<i64>) -> Result<Fields, DbError> {
        let mut fields = self.hgetall(key)?;
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
