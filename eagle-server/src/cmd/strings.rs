//! String commands.

use bytes::Bytes;
use eagle_core::db::{GetExExpiry, KeyType, SetCondition, SetExpiry, SetOptions};
use eagle_core::resp::Frame;

use super::ctx::Ctx;
use super::keys::key_before_arguments;
use super::parse::{CmdError, Parse};
use super::table::reply::{bulk, int, opt_bulk};
use super::table::{Command, Spec, run};

/// EX / PX / EXAT / PXAT arguments to an absolute time in ms, with Redis's checks.
pub(super) fn expire_time(
    unit_ms: bool,
    absolute: bool,
    v: i64,
    now: u64,
    cmd: &str,
) -> Result<u64, CmdError> {
    let invalid = || CmdError::new(format!("ERR invalid expire time in '{cmd}' command"));
    if v <= 0 || (!unit_ms && v > i64::MAX / 1000) {
        return Err(invalid());
    }
    let ms = if unit_ms { v } else { v * 1000 };
    let at = if absolute {
        ms
    } else {
        ms.checked_add(now as i64).ok_or_else(invalid)?
    };
    Ok(at as u64)
}

/// The TTL in ms of SET's option `option` `number` when it is EX or PX (any case) with a
/// number Redis accepts and at most `i64::MAX / 2` ms (so adding it to the time cannot
/// overflow); `None` for anything else, which SET itself then parses (and may reject).
pub(crate) fn relative_ttl_ms(option: &[u8], number: &[u8]) -> Option<u64> {
    let unit_ms = if option.eq_ignore_ascii_case(b"EX") {
        false
    } else if option.eq_ignore_ascii_case(b"PX") {
        true
    } else {
        return None;
    };
    let v = eagle_core::db::parse_i64(number)?;
    let ms = if unit_ms { v } else { v.checked_mul(1000)? };
    (v > 0 && ms <= i64::MAX / 2).then_some(ms as u64)
}

struct Get(Bytes);
impl Command for Get {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        let k = p.bytes()?;
        p.finish()?;
        Ok(Get(k))
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        Ok(opt_bulk(ctx.db().get(&self.0)?))
    }
}

struct Set {
    key: Bytes,
    value: Bytes,
    opts: SetOptions,
    /// Where EX/PX given relative to now: resolved at apply time.
    expiry: Option<(String, i64)>,
    name: &'static str,
}
impl Command for Set {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        let key = p.bytes()?;
        let value = p.bytes()?;
        let mut opts = SetOptions::default();
        let mut expiry = None;
        let mut keepttl = false;
        let mut expiry_text = None;
        while p.remaining() > 0 {
            let kw = p.keyword()?;
            // As Redis's parseExtendedStringArgumentsOrReply: an option may repeat (the last
            // value wins) but not meet a conflicting one.
            let same_unit = |e: &Option<(String, i64)>| e.as_ref().is_none_or(|(k, _)| *k == kw);
            match kw.as_str() {
                "NX" if opts.condition != SetCondition::IfPresent => {
                    opts.condition = SetCondition::IfAbsent
                }
                "XX" if opts.condition != SetCondition::IfAbsent => {
                    opts.condition = SetCondition::IfPresent
                }
                "GET" => opts.get = true,
                "KEEPTTL" if expiry.is_none() => keepttl = true,
                "EX" | "PX" | "EXAT" | "PXAT"
                    if same_unit(&expiry) && !keepttl && p.remaining() > 0 =>
                {
                    expiry_text = Some(p.bytes()?);
                    expiry = Some((kw, 0));
                }
                _ => return Err(CmdError::syntax()),
            }
        }
        // Redis reads the (last) number only after the whole syntax is accepted.
        if let (Some((_, v)), Some(text)) = (expiry.as_mut(), expiry_text) {
            *v = eagle_core::db::parse_i64(&text).ok_or_else(CmdError::not_integer)?;
        }
        if keepttl {
            opts.expiry = SetExpiry::Keep;
        }
        Ok(Set {
            key,
            value,
            opts,
            expiry,
            name: p.name,
        })
    }
    fn apply(mut self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        if let Some((kw, v)) = &self.expiry {
            let (unit_ms, absolute) = (kw.starts_with('P'), kw.ends_with("AT"));
            let at = expire_time(unit_ms, absolute, *v, ctx.db().now_ms(), self.name)?;
            self.opts.expiry = SetExpiry::At(at);
        }
        let out = ctx.db().set(&self.key, &self.value, self.opts)?;
        Ok(if self.opts.get {
            opt_bulk(out.old)
        } else if out.written {
            Frame::ok()
        } else {
            Frame::Null
        })
    }
}

/// SETNX, SETEX, PSETEX, GETSET: SET's special cases.
struct SetVariant {
    key: Bytes,
    value: Bytes,
    ttl: Option<i64>,
    name: &'static str,
}
impl Command for SetVariant {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        let key = p.bytes()?;
        let ttl = if p.name.ends_with("setex") {
            Some(p.i64()?)
        } else {
            None
        };
        let value = p.bytes()?;
        p.finish()?;
        Ok(SetVariant {
            key,
            value,
            ttl,
            name: p.name,
        })
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        let db = ctx.db();
        let mut opts = SetOptions::default();
        if let Some(v) = self.ttl {
            let ms = self.name == "psetex";
            opts.expiry = SetExpiry::At(expire_time(ms, false, v, db.now_ms(), self.name)?);
        }
        match self.name {
            "setnx" => {
                opts.condition = SetCondition::IfAbsent;
                Ok(int(db.set(&self.key, &self.value, opts)?.written as i64))
            }
            "getset" => {
                opts.get = true;
                Ok(opt_bulk(db.set(&self.key, &self.value, opts)?.old))
            }
            _ => {
                db.set(&self.key, &self.value, opts)?;
                Ok(Frame::ok())
            }
        }
    }
}

struct GetDel(Bytes);
impl Command for GetDel {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        let k = p.bytes()?;
        p.finish()?;
        Ok(GetDel(k))
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        Ok(opt_bulk(ctx.db().getdel(&self.0)?))
    }
}

struct GetEx {
    key: Bytes,
    /// The option and its value's text (empty for PERSIST).
    option: Option<(String, Bytes)>,
    name: &'static str,
}
impl Command for GetEx {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        let key = p.bytes()?;
        // Redis's rules: an option may be repeated (the last value counts, and only it is
        // read as a number), not combined with another; one without its value is a syntax
        // error.
        let mut option: Option<(String, Bytes)> = None;
        while p.remaining() > 0 {
            let kw = p.keyword()?;
            let repeat_or_first = option.as_ref().is_none_or(|(k, _)| *k == kw);
            match kw.as_str() {
                "PERSIST" if repeat_or_first => option = Some((kw, Bytes::new())),
                "EX" | "PX" | "EXAT" | "PXAT" if repeat_or_first && p.remaining() > 0 => {
                    let v = p.bytes()?;
                    option = Some((kw, v));
                }
                _ => return Err(CmdError::syntax()),
            }
        }
        Ok(GetEx {
            key,
            option,
            name: p.name,
        })
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        let db = ctx.db();
        let expiry = match &self.option {
            None => Ok(None),
            Some((kw, _)) if kw == "PERSIST" => Ok(Some(GetExExpiry::Persist)),
            Some((kw, v)) => {
                let (unit_ms, absolute) = (kw.starts_with('P'), kw.ends_with("AT"));
                eagle_core::db::parse_i64(v)
                    .ok_or_else(CmdError::not_integer)
                    .and_then(|v| expire_time(unit_ms, absolute, v, db.now_ms(), self.name))
                    .map(|at| Some(GetExExpiry::At(at)))
            }
        };
        let expiry = match expiry {
            Ok(expiry) => expiry,
            // Redis looks the key up before it reads the time: a missing key answers nil and
            // a hash WRONGTYPE, whatever the time says.
            Err(e) => {
                return key_before_arguments(ctx, &self.key, KeyType::String, Frame::Null, e);
            }
        };
        Ok(opt_bulk(db.getex(&self.key, expiry)?))
    }
}

struct MGet(Vec<Bytes>);
impl Command for MGet {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        Ok(MGet(p.rest()))
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        let keys: Vec<&[u8]> = self.0.iter().map(|k| &k[..]).collect();
        let values = ctx.db().mget(&keys)?;
        Ok(Frame::Array(values.into_iter().map(opt_bulk).collect()))
    }
}

struct MSet {
    pairs: Vec<(Bytes, Bytes)>,
    nx: bool,
}
impl Command for MSet {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        if !p.remaining().is_multiple_of(2) {
            return Err(super::table::wrong_arity(p.name));
        }
        let mut pairs = Vec::with_capacity(p.remaining() / 2);
        while p.remaining() > 0 {
            pairs.push((p.bytes()?, p.bytes()?));
        }
        Ok(MSet {
            pairs,
            nx: p.name == "msetnx",
        })
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        let pairs: Vec<(&[u8], &[u8])> = self.pairs.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        if self.nx {
            Ok(int(ctx.db().msetnx(&pairs)? as i64))
        } else {
            ctx.db().mset(&pairs)?;
            Ok(Frame::ok())
        }
    }
}

/// INCR, DECR, INCRBY, DECRBY.
struct IncrBy {
    key: Bytes,
    delta: i64,
}
impl Command for IncrBy {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        let key = p.bytes()?;
        let delta = match p.name {
            "incr" => 1,
            "decr" => -1,
            "incrby" => p.i64()?,
            _ => p
                .i64()?
                .checked_neg()
                .ok_or_else(|| CmdError::new("ERR decrement would overflow"))?,
        };
        p.finish()?;
        Ok(IncrBy { key, delta })
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        Ok(Frame::Integer(ctx.db().incr_by(&self.key, self.delta)?))
    }
}

struct IncrByFloat(Bytes, Bytes);
impl Command for IncrByFloat {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        let c = IncrByFloat(p.bytes()?, p.bytes()?);
        p.finish()?;
        Ok(c)
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        // The Db checks the key's type, then the stored value, then the increment, as Redis.
        Ok(bulk(ctx.db().incr_by_float_text(&self.0, &self.1)?))
    }
}

struct Append(Bytes, Bytes);
impl Command for Append {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        let (k, v) = (p.bytes()?, p.bytes()?);
        p.finish()?;
        Ok(Append(k, v))
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        let max = ctx.server().with_config(|c| c.proto_max_bulk_len);
        Ok(int(ctx.db().append_within(&self.0, &self.1, max)?))
    }
}

struct StrLen(Bytes);
impl Command for StrLen {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        let k = p.bytes()?;
        p.finish()?;
        Ok(StrLen(k))
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        Ok(int(ctx.db().strlen(&self.0)?))
    }
}

struct GetRange(Bytes, i64, i64);
impl Command for GetRange {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        let k = p.bytes()?;
        let (s, e) = (p.i64()?, p.i64()?);
        p.finish()?;
        Ok(GetRange(k, s, e))
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        Ok(bulk(ctx.db().getrange(&self.0, self.1, self.2)?))
    }
}

struct SetRange(Bytes, i64, Bytes);
impl Command for SetRange {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        let k = p.bytes()?;
        let off = p.i64()?;
        let v = p.bytes()?;
        p.finish()?;
        Ok(SetRange(k, off, v))
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        if self.1 < 0 {
            return Err(CmdError::new("ERR offset is out of range"));
        }
        let max = ctx.server().with_config(|c| c.proto_max_bulk_len);
        Ok(int(ctx.db().setrange_within(
            &self.0,
            self.1 as u64,
            &self.2,
            max,
        )?))
    }
}

const W: &[&str] = &["write", "denyoom"];
const WF: &[&str] = &["write", "denyoom", "fast"];
const RF: &[&str] = &["readonly", "fast"];

/// The string commands.
#[rustfmt::skip]
pub static SPECS: &[Spec] = &[
    Spec { name: "get", arity: 2, flags: RF, keys: (1, 1, 1), run: run::<Get> },
    Spec { name: "set", arity: -3, flags: W, keys: (1, 1, 1), run: run::<Set> },
    Spec { name: "setnx", arity: 3, flags: WF, keys: (1, 1, 1), run: run::<SetVariant> },
    Spec { name: "setex", arity: 4, flags: W, keys: (1, 1, 1), run: run::<SetVariant> },
    Spec { name: "psetex", arity: 4, flags: W, keys: (1, 1, 1), run: run::<SetVariant> },
    Spec { name: "getset", arity: 3, flags: WF, keys: (1, 1, 1), run: run::<SetVariant> },
    Spec { name: "getdel", arity: 2, flags: &["write", "fast"], keys: (1, 1, 1), run: run::<GetDel> },
    Spec { name: "getex", arity: -2, flags: &["write", "fast"], keys: (1, 1, 1), run: run::<GetEx> },
    Spec { name: "mget", arity: -2, flags: RF, keys: (1, -1, 1), run: run::<MGet> },
    Spec { name: "mset", arity: -3, flags: W, keys: (1, -1, 2), run: run::<MSet> },
    Spec { name: "msetnx", arity: -3, flags: W, keys: (1, -1, 2), run: run::<MSet> },
    Spec { name: "incr", arity: 2, flags: WF, keys: (1, 1, 1), run: run::<IncrBy> },
    Spec { name: "decr", arity: 2, flags: WF, keys: (1, 1, 1), run: run::<IncrBy> },
    Spec { name: "incrby", arity: 3, flags: WF, keys: (1, 1, 1), run: run::<IncrBy> },
    Spec { name: "decrby", arity: 3, flags: WF, keys: (1, 1, 1), run: run::<IncrBy> },
    Spec { name: "incrbyfloat", arity: 3, flags: WF, keys: (1, 1, 1), run: run::<IncrByFloat> },
    Spec { name: "append", arity: 3, flags: WF, keys: (1, 1, 1), run: run::<Append> },
    Spec { name: "strlen", arity: 2, flags: RF, keys: (1, 1, 1), run: run::<StrLen> },
    Spec { name: "getrange", arity: 4, flags: &["readonly"], keys: (1, 1, 1), run: run::<GetRange> },
    Spec { name: "substr", arity: 4, flags: &["readonly"], keys: (1, 1, 1), run: run::<GetRange> },
    Spec { name: "setrange", arity: 4, flags: W, keys: (1, 1, 1), run: run::<SetRange> },
];
