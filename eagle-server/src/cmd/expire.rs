//! Expiry commands: EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT (NX/XX/GT/LT), TTL, PTTL, EXPIRETIME,
//! PEXPIRETIME, PERSIST.

use bytes::Bytes;
use eagle_core::db::{ExpireCondition, Ttl};
use eagle_core::resp::Frame;

use super::ctx::Ctx;
use super::parse::{CmdError, Parse};
use super::table::reply::int;
use super::table::{Command, Spec, run};

struct Expire {
    key: Bytes,
    when: i64,
    cond: ExpireCondition,
    name: &'static str,
}
impl Command for Expire {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        let key = p.bytes()?;
        let when = p.bytes()?;
        let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
        while let Some(opt) = p.maybe_bytes() {
            match opt.to_ascii_uppercase().as_slice() {
                b"NX" => nx = true,
                b"XX" => xx = true,
                b"GT" => gt = true,
                b"LT" => lt = true,
                // As the client spelled it (Redis quotes the argument, not its upper case).
                _ => {
                    return Err(CmdError::new(format!(
                        "ERR Unsupported option {}",
                        String::from_utf8_lossy(&opt)
                    )));
                }
            }
        }
        if nx && (xx || gt || lt) {
            return Err(CmdError::new(
                "ERR NX and XX, GT or LT options at the same time are not compatible",
            ));
        }
        if gt && lt {
            return Err(CmdError::new(
                "ERR GT and LT options at the same time are not compatible",
            ));
        }
        let cond = match (nx, xx, gt, lt) {
            (true, ..) => ExpireCondition::Nx,
            (_, _, true, _) => ExpireCondition::Gt,
            (_, true, _, true) => ExpireCondition::XxLt,
            (_, _, _, true) => ExpireCondition::Lt,
            (_, true, ..) => ExpireCondition::Xx,
            _ => ExpireCondition::Always,
        };
        let when = eagle_core::db::parse_i64(&when).ok_or_else(CmdError::not_integer)?;
        Ok(Expire {
            key,
            when,
            cond,
            name: p.name,
        })
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        let invalid = || {
            CmdError::new(format!(
                "ERR invalid expire time in '{}' command",
                self.name
            ))
        };
        let seconds = !self.name.starts_with('p');
        let base = if self.name.ends_with("at") {
            0
        } else {
            ctx.db().now_ms() as i64
        };
        let mut when = self.when;
        if seconds {
            if !(i64::MIN / 1000..=i64::MAX / 1000).contains(&when) {
                return Err(invalid());
            }
            when *= 1000;
        }
        if when > i64::MAX - base {
            return Err(invalid());
        }
        when += base;
        // XX with GT is GT (a persistent key never passes GT); XX with LT is `XxLt`.
        Ok(int(ctx.db().expire_at(&self.key, when, self.cond)? as i64))
    }
}

/// TTL, PTTL, EXPIRETIME, PEXPIRETIME.
struct TtlCmd(Bytes, &'static str);
impl Command for TtlCmd {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        let k = p.bytes()?;
        p.finish()?;
        Ok(TtlCmd(k, p.name))
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        let now = ctx.db().now_ms() as i64;
        Ok(Frame::Integer(match ctx.db().ttl(&self.0)? {
            Ttl::Missing => -2,
            Ttl::Persistent => -1,
            Ttl::At(at) => {
                let at = at as i64;
                match self.1 {
                    "ttl" => ((at - now).max(0) + 500) / 1000,
                    "pttl" => (at - now).max(0),
                    "expiretime" => at / 1000,
                    _ => at,
                }
            }
        }))
    }
}

struct Persist(Bytes);
impl Command for Persist {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        let k = p.bytes()?;
        p.finish()?;
        Ok(Persist(k))
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        Ok(int(ctx.db().persist(&self.0)? as i64))
    }
}

const WF: &[&str] = &["write", "fast"];
const RF: &[&str] = &["readonly", "fast"];

/// The expiry commands.
#[rustfmt::skip]
pub static SPECS: &[Spec] = &[
    Spec { name: "expire", arity: -3, flags: WF, keys: (1, 1, 1), run: run::<Expire> },
    Spec { name: "pexpire", arity: -3, flags: WF, keys: (1, 1, 1), run: run::<Expire> },
    Spec { name: "expireat", arity: -3, flags: WF, keys: (1, 1, 1), run: run::<Expire> },
    Spec { name: "pexpireat", arity: -3, flags: WF, keys: (1, 1, 1), run: run::<Expire> },
    Spec { name: "ttl", arity: 2, flags: RF, keys: (1, 1, 1), run: run::<TtlCmd> },
    Spec { name: "pttl", arity: 2, flags: RF, keys: (1, 1, 1), run: run::<TtlCmd> },
    Spec { name: "expiretime", arity: 2, flags: RF, keys: (1, 1, 1), run: run::<TtlCmd> },
    Spec { name: "pexpiretime", arity: 2, flags: RF, keys: (1, 1, 1), run: run::<TtlCmd> },
    Spec { name: "persist", arity: 2, flags: WF, keys: (1, 1, 1), run: run::<Persist> },
];
