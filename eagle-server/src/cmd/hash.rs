//! Hash commands.

use bytes::Bytes;
use eagle_core::db::KeyType;
use eagle_core::resp::{Frame, Protocol};

use super::ctx::Ctx;
use super::keys::{cursor, key_before_arguments, scan_options, scan_reply};
use super::parse::{CmdError, Parse};
use super::table::reply::{bulk, int, opt_bulk};
use super::table::{Command, Spec, run};

/// HSET and HMSET.
struct HSet {
    key: Bytes,
    pairs: Vec<(Bytes, Bytes)>,
    hmset: bool,
}
impl Command for HSet {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        let key = p.bytes()?;
        if !p.remaining().is_multiple_of(2) {
            return Err(super::table::wrong_arity(p.name));
        }
        let mut pairs = Vec::with_capacity(p.remaining() / 2);
        while p.remaining() > 0 {
            pairs.push((p.bytes()?, p.bytes()?));
        }
        Ok(HSet {
            key,
            pairs,
            hmset: p.name == "hmset",
        })
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        let pairs: Vec<(&[u8], &[u8])> = self.pairs.iter().map(|(f, v)| (&f[..], &v[..])).collect();
        let added = ctx.db().hset(&self.key, &pairs)?;
        Ok(if self.hmset { Frame::ok() } else { int(added) })
    }
}

struct HSetNx(Bytes, Bytes, Bytes);
impl Command for HSetNx {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        let c = HSetNx(p.bytes()?, p.bytes()?, p.bytes()?);
        p.finish()?;
        Ok(c)
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        Ok(int(ctx.db().hsetnx(&self.0, &self.1, &self.2)? as i64))
    }
}

/// HGET, HEXISTS, HSTRLEN: one field.
struct Field(Bytes, Bytes, &'static str);
impl Command for Field {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        let c = Field(p.bytes()?, p.bytes()?, p.name);
        p.finish()?;
        Ok(c)
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        let db = ctx.db();
        Ok(match self.2 {
            "hget" => opt_bulk(db.hget(&self.0, &self.1)?),
            "hexists" => int(db.hexists(&self.0, &self.1)? as i64),
            _ => int(db.hstrlen(&self.0, &self.1)?),
        })
    }
}

/// HMGET and HDEL: many fields.
struct Fields(Bytes, Vec<Bytes>, &'static str);
impl Command for Fields {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        Ok(Fields(p.bytes()?, p.rest(), p.name))
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        let fields: Vec<&[u8]> = self.1.iter().map(|f| &f[..]).collect();
        Ok(if self.2 == "hmget" {
            let values = ctx.db().hmget(&self.0, &fields)?;
            Frame::Array(values.into_iter().map(opt_bulk).collect())
        } else {
            int(ctx.db().hdel(&self.0, &fields)?)
        })
    }
}

/// HLEN, HGETALL, HKEYS, HVALS: the whole hash.
struct Whole(Bytes, &'static str);
impl Command for Whole {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        let c = Whole(p.bytes()?, p.name);
        p.finish()?;
        Ok(c)
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        if self.1 == "hlen" {
            return Ok(int(ctx.db().hlen(&self.0)?));
        }
        let fields = ctx.db().hgetall(&self.0)?;
        Ok(match self.1 {
            "hgetall" => Frame::Map(
                fields
                    .into_iter()
                    .map(|(f, v)| (bulk(f), bulk(v)))
                    .collect(),
            ),
            "hkeys" => Frame::Array(fields.into_iter().map(|(f, _)| bulk(f)).collect()),
            _ => Frame::Array(fields.into_iter().map(|(_, v)| bulk(v)).collect()),
        })
    }
}

struct HIncrBy(Bytes, Bytes, i64);
impl Command for HIncrBy {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        let c = HIncrBy(p.bytes()?, p.bytes()?, p.i64()?);
        p.finish()?;
        Ok(c)
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        Ok(Frame::Integer(ctx.db().hincrby(&self.0, &self.1, self.2)?))
    }
}

struct HIncrByFloat(Bytes, Bytes, f64);
impl Command for HIncrByFloat {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        let c = HIncrByFloat(p.bytes()?, p.bytes()?, p.f64()?);
        p.finish()?;
        if !c.2.is_finite() {
            return Err(CmdError::new("ERR value is NaN or Infinity"));
        }
        Ok(c)
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        Ok(bulk(ctx.db().hincrbyfloat(&self.0, &self.1, self.2)?))
    }
}

/// The key and its options, or why they were refused: Redis answers a missing key (an empty
/// scan) or a string (WRONGTYPE) before it reads the options.
struct HScan(Bytes, Result<super::keys::ScanOptions, CmdError>);
impl Command for HScan {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        let key = p.bytes()?;
        cursor(p)?;
        Ok(HScan(key, scan_options(p, false)))
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        let options = match self.1 {
            Ok(options) => options,
            Err(e) => {
                let empty = scan_reply(0, Vec::new());
                return key_before_arguments(ctx, &self.0, KeyType::Hash, empty, e);
            }
        };
        let fields = ctx.db().hscan(&self.0, options.pattern.as_deref())?;
        let items = fields
            .into_iter()
            .flat_map(|(f, v)| [bulk(f), bulk(v)])
            .collect();
        Ok(scan_reply(0, items))
    }
}

struct HRandField {
    key: Bytes,
    count: Option<i64>,
    with_values: bool,
}
impl Command for HRandField {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        let key = p.bytes()?;
        let count = if p.remaining() > 0 {
            Some(p.i64()?)
        } else {
            None
        };
        // In Redis's order: the count's range, the option, the count's range with values (a
        // positive count beyond the hash returns all of it, and the keyspace refuses too many
        // repeats of a negative one).
        if count == Some(i64::MIN) {
            return Err(CmdError::new(
                "ERR value is out of range, value must between -9223372036854775807 and \
                 9223372036854775807",
            ));
        }
        let mut with_values = false;
        if p.remaining() > 0 {
            if p.keyword()? != "WITHVALUES" {
                return Err(CmdError::syntax());
            }
            with_values = true;
        }
        p.finish()?;
        if with_values && count.is_some_and(|c| c.unsigned_abs() > (i64::MAX / 2) as u64) {
            return Err(CmdError::new("ERR value is out of range"));
        }
        Ok(HRandField {
            key,
            count,
            with_values,
        })
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        let fields = ctx
            .db()
            .hrandfield(&self.key, self.count, self.with_values)?;
        if self.count.is_none() {
            return Ok(opt_bulk(fields.into_iter().next().map(|(f, _)| f)));
        }
        Ok(Frame::Array(if !self.with_values {
            fields.into_iter().map(|(f, _)| bulk(f)).collect()
        } else if ctx.session.protocol == Protocol::Resp3 {
            fields
                .into_iter()
                .map(|(f, v)| Frame::Array(vec![bulk(f), bulk(v)]))
                .collect()
        } else {
            fields
                .into_iter()
                .flat_map(|(f, v)| [bulk(f), bulk(v)])
                .collect()
        }))
    }
}

const WF: &[&str] = &["write", "denyoom", "fast"];
const RF: &[&str] = &["readonly", "fast"];
const R: &[&str] = &["readonly"];

/// The hash commands.
#[rustfmt::skip]
pub static SPECS: &[Spec] = &[
    Spec { name: "hset", arity: -4, flags: WF, keys: (1, 1, 1), run: run::<HSet> },
    Spec { name: "hmset", arity: -4, flags: WF, keys: (1, 1, 1), run: run::<HSet> },
    Spec { name: "hsetnx", arity: 4, flags: WF, keys: (1, 1, 1), run: run::<HSetNx> },
    Spec { name: "hget", arity: 3, flags: RF, keys: (1, 1, 1), run: run::<Field> },
    Spec { name: "hexists", arity: 3, flags: RF, keys: (1, 1, 1), run: run::<Field> },
    Spec { name: "hstrlen", arity: 3, flags: RF, keys: (1, 1, 1), run: run::<Field> },
    Spec { name: "hmget", arity: -3, flags: RF, keys: (1, 1, 1), run: run::<Fields> },
    Spec { name: "hdel", arity: -3, flags: &["write", "fast"], keys: (1, 1, 1), run: run::<Fields> },
    Spec { name: "hlen", arity: 2, flags: RF, keys: (1, 1, 1), run: run::<Whole> },
    Spec { name: "hgetall", arity: 2, flags: R, keys: (1, 1, 1), run: run::<Whole> },
    Spec { name: "hkeys", arity: 2, flags: R, keys: (1, 1, 1), run: run::<Whole> },
    Spec { name: "hvals", arity: 2, flags: R, keys: (1, 1, 1), run: run::<Whole> },
    Spec { name: "hincrby", arity: 4, flags: WF, keys: (1, 1, 1), run: run::<HIncrBy> },
    Spec { name: "hincrbyfloat", arity: 4, flags: WF, keys: (1, 1, 1), run: run::<HIncrByFloat> },
    Spec { name: "hscan", arity: -3, flags: R, keys: (1, 1, 1), run: run::<HScan> },
    Spec { name: "hrandfield", arity: -2, flags: R, keys: (1, 1, 1), run: run::<HRandField> },
];
