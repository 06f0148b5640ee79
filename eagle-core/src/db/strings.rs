//! String commands.

use super::core::Db;
use super::error::DbError;
use super::num::{format_f64, parse_f64, parse_i64};
use crate::dash::RunDone;
use crate::engine::BatchOp;
use crate::record::RecordKind;

/// Redis's largest string (proto-max-bulk-len's default).
pub const MAX_STRING: u64 = 512 * 1024 * 1024;

/// SET's NX / XX.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SetCondition {
    /// Always set.
    #[default]
    Always,
    /// NX: only if absent.
    IfAbsent,
    /// XX: only if present.
    IfPresent,
}

/// SET's expiry options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SetExpiry {
    /// No option: the key loses any expiry.
    #[default]
    Clear,
    /// KEEPTTL.
    Keep,
    /// EX/PX/EXAT/PXAT, as an absolute time in ms.
    At(u64),
}

/// SET's options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetOptions {
    /// NX / XX.
    pub condition: SetCondition,
    /// Expiry.
    pub expiry: SetExpiry,
    /// GET: return the old value.
    pub get: bool,
}

/// What SET did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetOutcome {
    /// Whether the value was written (false: NX/XX condition failed).
    pub written: bool,
    /// With GET: the old value.
    pub old: Option<Vec<u8>>,
}

/// GETEX's options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GetExExpiry {
    /// PERSIST.
    Persist,
    /// EX/PX/EXAT/PXAT, absolute ms.
    At(u64),
}

impl Db {
    /// GET.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, DbError> {
        let _held = self.lock_read([key]);
        Ok(self.load_read_as(key, RecordKind::String)?.map(|e| e.value))
    }

    /// GET without a copy: `f` is called with the value borrowed from the pool, while the
    /// key's read lock and an epoch pin are held (as an LMDB read transaction's borrowed
    /// value), and its result returned. Counted, and typed, as GET: `WrongType` for a key of
    /// another type (`f` is not called).
    ///
    /// Keep `f` short, and let it neither call this `Db` nor wait for anything: it holds the
    /// read lock of the key's stripe (shared with about 1/1024 of all keys), so a write to any
    /// key of that stripe waits for it, and a read from inside `f` can deadlock behind such a
    /// writer; and its epoch pin holds back the freeing of every record retired meanwhile.
    pub fn get_with<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>, DbError> {
        let _held = self.lock_read([key]);
        let seen = self.visit(key, |kind, _, value| {
            (kind == RecordKind::String).then(|| f(value))
        })?;
        self.count_read(seen.is_some());
        match seen {
            None => Ok(None),
            Some(None) => Err(DbError::WrongType),
            Some(Some(r)) => Ok(Some(r)),
        }
    }

    /// SET with its options (SETNX, SETEX, PSETEX and GETSET are special cases).
    pub fn set(&self, key: &[u8], value: &[u8], opts: SetOptions) -> Result<SetOutcome, DbError> {
        let _held = self.lock_write([key])?;
        // With GET (and GETSET) Redis reads the old value as GET does: a counted lookup. A
        // plain SET (no NX/XX, no KEEPTTL) needs nothing from the old value: no lookup at all.
        let plain = opts.condition == SetCondition::Always && opts.expiry != SetExpiry::Keep;
        let old = if opts.get {
            self.load_read(key)?
        } else if plain {
            None
        } else {
            self.load(key)?
        };
        if opts.get && old.as_ref().is_some_and(|e| e.kind != RecordKind::String) {
            return Err(DbError::WrongType);
        }
        let exists = old.is_some();
        let allowed = match opts.condition {
            SetCondition::Always => true,
            SetCondition::IfAbsent => !exists,
            SetCondition::IfPresent => exists,
        };
        let old_expire = old.as_ref().map_or(0, |e| e.expire_at);
        let old_value = if opts.get { old.map(|e| e.value) } else { None };
        if !allowed {
            return Ok(SetOutcome {
                written: false,
                old: old_value,
            });
        }
        let expire_at = match opts.expiry {
            SetExpiry::Clear => 0,
            SetExpiry::Keep => old_expire,
            SetExpiry::At(t) => t,
        };
        if expire_at != 0 && expire_at <= self.now_ms() {
            // Already expired: Redis deletes the key rather than store it.
            self.remove(key)?;
        } else {
            self.store(key, RecordKind::String, value, expire_at)?;
        }
        Ok(SetOutcome {
            written: true,
            old: old_value,
        })
    }

    /// SETs of the first [`MAX_GROUP`] `items` (key, value, expiry in ms since the Unix epoch
    /// or 0 for none: a plain SET, or one with EX or PX; fewer if `items` is shorter), in order,
    /// under all their keys' locks: what the SETs one by one would leave, with the keys that
    /// can go in groups waiting for the media twice per group instead of twice per key
    /// ([`Dash::put_run`](crate::dash::Dash::put_run)). A pipeline's consecutive SETs are the
    /// use. Stops at the first error, which the item at `applied` met; every item before it is
    /// durable.
    ///
    /// [`MAX_GROUP`]: crate::dash::MAX_GROUP
    pub fn set_run(&self, items: &[(&[u8], &[u8], u64)]) -> RunDone<DbError> {
        let items = &items[..items.len().min(crate::dash::MAX_GROUP)];
        let _held = match self.lock_write(items.iter().map(|i| i.0)) {
            Ok(held) => held,
            Err(e) => return RunDone::failed(e),
        };
        let mut done = RunDone::new();
        let past = |at: u64| at != 0 && at <= self.now_ms();
        if !self.engine.in_atomic() && !items.iter().any(|i| past(i.2)) {
            return self.engine.index().put_run(items).map_err(DbError::from);
        }
        // One at a time, as SET does: inside an atomic transaction each key's undo record comes
        // before its put, and an expiry already past deletes the key rather than store it.
        for &(key, value, at) in items {
            let one = if past(at) {
                self.remove(key).map(drop)
            } else {
                self.store(key, RecordKind::String, value, at)
            };
            if let Err(e) = one {
                done.result = Err(e);
                break;
            }
            done.applied += 1;
        }
        done
    }

    /// Whether [`set_run`](Self::set_run) can save anything over SETs one by one: not where a
    /// flush is an msync and a fence nothing (`FlushMode::Msync`), where it puts every pair alone.
    pub fn groups_pay(&self) -> bool {
        self.engine.index().groups_pay()
    }

    /// GETDEL.
    pub fn getdel(&self, key: &[u8]) -> Result<Option<Vec<u8>>, DbError> {
        let _held = self.lock_write([key])?;
        let v = self.load_read_as(key, RecordKind::String)?.map(|e| e.value);
        if v.is_some() {
            self.remove(key)?;
        }
        Ok(v)
    }

    /// GETEX.
    pub fn getex(
        &self,
        key: &[u8],
        expiry: Option<GetExExpiry>,
    ) -> Result<Option<Vec<u8>>, DbError> {
        let _held = self.lock_write([key])?;
        let Some(e) = self.load_read_as(key, RecordKind::String)? else {
            return Ok(None);
        };
        match expiry {
            None => {}
            Some(GetExExpiry::Persist) if e.expire_at != 0 => {
                self.engine.set_expire_at(key, 0)?;
            }
            Some(GetExExpiry::Persist) => {}
            Some(GetExExpiry::At(t)) if t <= self.now_ms() => {
                self.remove(key)?;
            }
            Some(GetExExpiry::At(t)) => {
                self.engine.set_expire_at(key, t)?;
            }
        }
        Ok(Some(e.value))
    }

    /// MGET: `None` for missing keys and keys of other types.
    pub fn mget(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, DbError> {
        let _held = self.lock_read(keys.iter().copied());
        keys.iter()
            .map(|k| {
                Ok(self
                    .load_read(k)?
                    .filter(|e| e.kind == RecordKind::String)
                    .map(|e| e.value))
            })
            .collect()
    }

    /// MSET: all or nothing across a crash; a repeated key takes its last value.
    pub fn mset(&self, pairs: &[(&[u8], &[u8])]) -> Result<(), DbError> {
        let _held = self.lock_write(pairs.iter().map(|p| p.0))?;
        self.put_all(pairs)
    }

    /// MSETNX: sets all if none exists; all or nothing across a crash.
    pub fn msetnx(&self, pairs: &[(&[u8], &[u8])]) -> Result<bool, DbError> {
        let _held = self.lock_write(pairs.iter().map(|p| p.0))?;
        for (k, _) in pairs {
            if self.peek(k)?.is_some() {
                return Ok(false);
            }
        }
        self.put_all(pairs)?;
        Ok(true)
    }

    /// Writes string pairs as one atomic batch (one key needs no log). Keys locked by the caller.
    fn put_all(&self, pairs: &[(&[u8], &[u8])]) -> Result<(), DbError> {
        // Each key's last pair, in the order of the pairs (from the end, a key seen before is
        // one a later pair sets again). A set, not a scan of the rest: MSET may carry 100,000
        // pairs.
        let mut seen = std::collections::HashSet::with_capacity(pairs.len());
        let mut last: Vec<(&[u8], &[u8])> = Vec::with_capacity(pairs.len());
        for p in pairs.iter().rev() {
            if seen.insert(p.0) {
                last.push(*p);
            }
        }
        last.reverse();
        if let [(k, v)] = last[..] {
            return self.store(k, RecordKind::String, v, 0);
        }
        let index = self.engine.index();
        let mut ops = Vec::with_capacity(last.len());
        for (k, v) in &last {
            match index.prepare(k, v, RecordKind::String, 0) {
                Ok(record) => ops.push(BatchOp::Put {
                    key: k.to_vec(),
                    record,
                }),
                Err(e) => {
                    self.engine.discard_prepared(&ops);
                    return Err(e.into());
                }
            }
        }
        Ok(self.engine.apply_batch(&ops)?)
    }

    /// INCRBY (INCR, DECR, DECRBY): the new value. Keeps the key's expiry.
    pub fn incr_by(&self, key: &[u8], delta: i64) -> Result<i64, DbError> {
        let _held = self.lock_write([key])?;
        let e = self.load_as(key, RecordKind::String)?;
        let (old, expire_at) = match &e {
            None => (0, 0),
            Some(e) => (parse_i64(&e.value).ok_or(DbError::NotInteger)?, e.expire_at),
        };
        let new = old.checked_add(delta).ok_or(DbError::Overflow)?;
        self.store(
            key,
            RecordKind::String,
            new.to_string().as_bytes(),
            expire_at,
        )?;
        Ok(new)
    }

    /// INCRBYs of the first [`MAX_GROUP`] `items` (key, increment), in order, under all their
    /// keys' locks, as a run ([`Dash::put_run`](crate::dash::Dash::put_run)): what the INCRBYs
    /// one by one would leave, each key's expiry kept, with the new values put in groups that
    /// wait for the media twice per group instead of twice per key. A pipeline's consecutive
    /// INCRs are the use. The run ends before the first item that would fail (a value that is
    /// not an integer, an overflow, another type) or that names a key the run already names;
    /// that item is the caller's to run alone, and `result` is `Ok`. On an error of the run
    /// itself (`result`), the items before `applied` are durable. Returns the new values of
    /// the applied items.
    ///
    /// [`MAX_GROUP`]: crate::dash::MAX_GROUP
    pub fn incr_run(&self, items: &[(&[u8], i64)]) -> (RunDone<DbError>, Vec<i64>) {
        let items = &items[..items.len().min(crate::dash::MAX_GROUP)];
        let _held = match self.lock_write(items.iter().map(|i| i.0)) {
            Ok(held) => held,
            Err(e) => return (RunDone::failed(e), Vec::new()),
        };
        if self.engine.in_atomic() {
            // Each key's undo record comes before its put: one at a time, as INCR does.
            return (RunDone::new(), Vec::new());
        }
        let mut values = Vec::with_capacity(items.len());
        let mut expiries = [0u64; crate::dash::MAX_GROUP];
        for (i, &(key, delta)) in items.iter().enumerate() {
            if items[..i].iter().any(|earlier| earlier.0 == key) {
                break;
            }
            let new = match self.load_as(key, RecordKind::String) {
                Ok(None) => Some((0, 0)),
                Ok(Some(e)) => parse_i64(&e.value).map(|old| (old, e.expire_at)),
                Err(_) => None,
            }
            .and_then(|(old, at)| Some((old.checked_add(delta)?, at)));
            let Some((new, expire_at)) = new else {
                break;
            };
            expiries[values.len()] = expire_at;
            values.push(new);
        }
        let mut texts = [itoa::Buffer::new(); crate::dash::MAX_GROUP];
        let mut puts: [(&[u8], &[u8], u64); crate::dash::MAX_GROUP] =
            [(&[], &[], 0); crate::dash::MAX_GROUP];
        for ((put, text), i) in puts.iter_mut().zip(&mut texts).zip(0..values.len()) {
            *put = (items[i].0, text.format(values[i]).as_bytes(), expiries[i]);
        }
        let run = self.engine.index().put_run(&puts[..values.len()]);
        values.truncate(run.applied);
        (run.map_err(DbError::from), values)
    }

    /// INCRBYFLOAT: the new value as Redis prints it.
    pub fn incr_by_float(&self, key: &[u8], delta: f64) -> Result<String, DbError> {
        self.incr_by_float_arg(key, || Ok(delta))
    }

    /// INCRBYFLOAT with the increment still text: Redis checks the key's type, then the stored
    /// value, then the increment, all under the key's lock.
    pub fn incr_by_float_text(&self, key: &[u8], delta: &[u8]) -> Result<String, DbError> {
        self.incr_by_float_arg(key, || parse_f64(delta).ok_or(DbError::NotFloat))
    }

    fn incr_by_float_arg(
        &self,
        key: &[u8],
        delta: impl FnOnce() -> Result<f64, DbError>,
    ) -> Result<String, DbError> {
        let _held = self.lock_write([key])?;
        let e = self.load_as(key, RecordKind::String)?;
        let (old, expire_at) = match &e {
            None => (0.0, 0),
            Some(e) => (parse_f64(&e.value).ok_or(DbError::NotFloat)?, e.expire_at),
        };
        let new = old + delta()?;
        if !new.is_finite() {
            return Err(DbError::NanOrInfinity);
        }
        let text = format_f64(new);
        self.store(key, RecordKind::String, text.as_bytes(), expire_at)?;
        Ok(text)
    }

    /// APPEND: the new length. A string may grow to [`MAX_STRING`] bytes.
    pub fn append(&self, key: &[u8], suffix: &[u8]) -> Result<u64, DbError> {
        self.append_within(key, suffix, MAX_STRING)
    }

    /// [`append`](Self::append) with the longest string allowed given (Redis's
    /// `proto-max-bulk-len`): `StringTooLong` past it, the key left as it was.
    pub fn append_within(&self, key: &[u8], suffix: &[u8], max_len: u64) -> Result<u64, DbError> {
        let _held = self.lock_write([key])?;
        let e = self.load_as(key, RecordKind::String)?;
        let (mut value, expire_at) = e.map_or((Vec::new(), 0), |e| (e.value, e.expire_at));
        if value.len() as u64 + suffix.len() as u64 > max_len {
            return Err(DbError::StringTooLong);
        }
        value.extend_from_slice(suffix);
        self.store(key, RecordKind::String, &value, expire_at)?;
        Ok(value.len() as u64)
    }

    /// STRLEN.
    pub fn strlen(&self, key: &[u8]) -> Result<u64, DbError> {
        let _held = self.lock_read([key]);
        match self.peek_read(key)? {
            None => Ok(0),
            Some((RecordKind::String, _, len)) => Ok(len),
            Some(_) => Err(DbError::WrongType),
        }
    }

    /// GETRANGE with Redis's index rules.
    pub fn getrange(&self, key: &[u8], start: i64, end: i64) -> Result<Vec<u8>, DbError> {
        let _held = self.lock_read([key]);
        let Some(e) = self.load_read_as(key, RecordKind::String)? else {
            return Ok(Vec::new());
        };
        let len = e.value.len() as i64;
        if start < 0 && end < 0 && start > end {
            return Ok(Vec::new());
        }
        let mut s = if start < 0 { len + start } else { start };
        let mut t = if end < 0 { len + end } else { end };
        s = s.max(0);
        t = t.max(0);
        if t >= len {
            t = len - 1;
        }
        if s > t || len == 0 {
            return Ok(Vec::new());
        }
        Ok(e.value[s as usize..=t as usize].to_vec())
    }

    /// SETRANGE (offset already checked non-negative by the caller): the new length. A string
    /// may grow to [`MAX_STRING`] bytes.
    pub fn setrange(&self, key: &[u8], offset: u64, patch: &[u8]) -> Result<u64, DbError> {
        self.setrange_within(key, offset, patch, MAX_STRING)
    }

    /// [`setrange`](Self::setrange) with the longest string allowed given (Redis's
    /// `proto-max-bulk-len`): `StringTooLong` past it, the key left as it was.
    pub fn setrange_within(
        &self,
        key: &[u8],
        offset: u64,
        patch: &[u8],
        max_len: u64,
    ) -> Result<u64, DbError> {
        let _held = self.lock_write([key])?;
        let e = self.load_as(key, RecordKind::String)?;
        let Some(end) = offset.checked_add(patch.len() as u64) else {
            return Err(DbError::StringTooLong);
        };
        let (mut value, expire_at) = match e {
            None if patch.is_empty() => return Ok(0),
            None => (Vec::new(), 0),
            Some(e) if patch.is_empty() => return Ok(e.value.len() as u64),
            Some(e) => (e.value, e.expire_at),
        };
        if end > max_len {
            return Err(DbError::StringTooLong);
        }
        if (value.len() as u64) < end {
            value.resize(end as usize, 0);
        }
        value[offset as usize..end as usize].copy_from_slice(patch);
        self.store(key, RecordKind::String, &value, expire_at)?;
        Ok(value.len() as u64)
    }
}
