//! Expiry: EXPIRE and friends (one 8-byte store in the record, no copy), TTL, PERSIST. Expiry
//! times are absolute (ms since the Unix epoch), so they survive restarts.

use super::core::Db;
use super::error::DbError;

/// EXPIRE's NX / XX / GT / LT.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExpireCondition {
    /// No condition.
    #[default]
    Always,
    /// Only if the key has no expiry.
    Nx,
    /// Only if it has one.
    Xx,
    /// Only if the new time is later (no expiry counts as infinite).
    Gt,
    /// Only if it is earlier.
    Lt,
    /// XX and LT: only if it has one and the new time is earlier.
    XxLt,
}

/// A key's time to live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ttl {
    /// No such key (TTL -2).
    Missing,
    /// No expiry (TTL -1).
    Persistent,
    /// Expires at this absolute time (ms).
    At(u64),
}

impl Db {
    /// Sets the key's absolute expiry `at_ms` (in the past: the key is deleted). Whether it
    /// was set (false: no key, or the condition failed).
    pub fn expire_at(
        &self,
        key: &[u8],
        at_ms: i64,
        cond: ExpireCondition,
    ) -> Result<bool, DbError> {
        let _held = self.lock_write([key])?;
        let Some((_, current, _)) = self.peek(key)? else {
            return Ok(false);
        };
        let new = at_ms.max(0) as u64;
        let allowed = match cond {
            ExpireCondition::Always => true,
            ExpireCondition::Nx => current == 0,
            ExpireCondition::Xx => current != 0,
            ExpireCondition::Gt => current != 0 && new > current,
            ExpireCondition::Lt => current == 0 || new < current,
            ExpireCondition::XxLt => current != 0 && new < current,
        };
        if !allowed {
            return Ok(false);
        }
        if at_ms <= self.now_ms() as i64 {
            self.remove(key)?;
        } else {
            self.engine.set_expire_at(key, new)?;
        }
        Ok(true)
    }

    /// TTL / PTTL / EXPIRETIME / PEXPIRETIME's source (a read: counted as a keyspace hit or
    /// miss).
    pub fn ttl(&self, key: &[u8]) -> Result<Ttl, DbError> {
        self.ttl_counted(key, true)
    }

    /// The same, not counted as a keyspace hit or miss (Redis's `LOOKUP_NOSTATS`): for
    /// bookkeeping that is not a read of the key, such as WATCH.
    pub fn ttl_uncounted(&self, key: &[u8]) -> Result<Ttl, DbError> {
        self.ttl_counted(key, false)
    }

    fn ttl_counted(&self, key: &[u8], counted: bool) -> Result<Ttl, DbError> {
        let _held = self.lock_read([key]);
        let found = if counted {
            self.peek_read(key)?
        } else {
            self.peek(key)?
        };
        Ok(match found {
            None => Ttl::Missing,
            Some((_, 0, _)) => Ttl::Persistent,
            Some((_, at, _)) => Ttl::At(at),
        })
    }

    /// PERSIST: whether an expiry was removed.
    pub fn persist(&self, key: &[u8]) -> Result<bool, DbError> {
        let _held = self.lock_write([key])?;
        match self.peek(key)? {
            Some((_, at, _)) if at != 0 => {
                self.engine.set_expire_at(key, 0)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}
