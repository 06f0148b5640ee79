//! Transactions: MULTI, EXEC, DISCARD, WATCH, UNWATCH, with Redis's semantics and replies.
//!
//! Inside MULTI the dispatcher queues every command (after the unknown-command, arity and
//! authentication checks, whose failure dooms the transaction) and replies `+QUEUED`; EXEC runs
//! the queue back to back while holding the server's transaction gate exclusively, so no other
//! client's command runs in between (Redis's isolation; only the background expiry sweep is not
//! gated). Arguments are parsed at EXEC, as Redis does: a syntax error there is one error in
//! EXEC's reply and the other commands still run.
//!
//! WATCH records the key's version in the server's watch table (bumped by every write command
//! to the key, FLUSHALL/FLUSHDB included) and its expiry time; EXEC replies a null array when a
//! version moved, the key was flushed, or it expired meanwhile. The check and the queue run
//! under the same exclusive gate, so nothing slips in between.

use bytes::Bytes;
use eagle_core::db::Ttl;
use eagle_core::resp::{Frame, encode};

use super::ctx::{Ctx, ExecReply};
use super::dispatch;
use super::parse::{CmdError, Parse};
use super::table::{Command, Spec, run};

/// Commands that run at once inside MULTI instead of being queued.
const IMMEDIATE: &[&str] = &["exec", "discard", "multi", "watch", "quit", "reset"];

/// Whether `name` runs immediately inside MULTI.
pub fn runs_inside_multi(name: &str) -> bool {
    IMMEDIATE.contains(&name)
}

struct Watched {
    key: Bytes,
    version: u64,
    existed: bool,
    expires_at: Option<u64>,
}

/// A connection's transaction state.
#[derive(Default)]
pub struct MultiState {
    active: bool,
    dirty: bool,
    queue: Vec<(&'static Spec, Vec<Bytes>)>,
    watched: Vec<Watched>,
    flushes_at_watch: u64,
}

impl MultiState {
    /// Inside MULTI.
    pub fn active(&self) -> bool {
        self.active
    }

    /// Dooms the open transaction (an error at queue time); no effect outside MULTI.
    pub fn flag_dirty(&mut self) {
        if self.active {
            self.dirty = true;
        }
    }

    /// Commands queued.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }
}

fn set_client_multi(ctx: &Ctx<'_>, n: i64) {
    if let Some(c) = &ctx.session.client {
        c.multi.store(n, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Queues a command inside MULTI.
pub fn queue(ctx: &mut Ctx<'_>, spec: &'static Spec, argv: Vec<Bytes>) -> Frame {
    ctx.session.multi.queue.push((spec, argv));
    set_client_multi(ctx, ctx.session.multi.queue.len() as i64);
    Frame::Simple(Bytes::from_static(b"QUEUED"))
}

/// Leaves MULTI and forgets every watched key (EXEC, DISCARD, RESET, disconnection).
pub fn reset(ctx: &mut Ctx<'_>) {
    let state = std::mem::take(&mut ctx.session.multi);
    for w in &state.watched {
        ctx.shared.server.watches.unwatch(&w.key);
    }
    set_client_multi(ctx, -1);
}

/// Whether a watched key changed since WATCH.
fn watched_changed(ctx: &Ctx<'_>, state: &MultiState) -> bool {
    let watches = &ctx.shared.server.watches;
    let flushed = watches.flushes() != state.flushes_at_watch;
    let now = ctx.db().now_ms();
    state.watched.iter().any(|w| {
        watches.version(&w.key) != w.version
            || (flushed && w.existed)
            || w.expires_at.is_some_and(|at| at <= now)
    })
}

struct Multi;
impl Command for Multi {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        p.finish()?;
        Ok(Multi)
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        if ctx.session.multi.active {
            return Err(CmdError::new("ERR MULTI calls can not be nested"));
        }
        ctx.session.multi.active = true;
        set_client_multi(ctx, 0);
        Ok(Frame::ok())
    }
}

struct Exec;
impl Command for Exec {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        p.finish()?;
        Ok(Exec)
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        if !ctx.session.multi.active {
            return Err(CmdError::new("ERR EXEC without MULTI"));
        }
        let mut state = std::mem::take(&mut ctx.session.multi);
        let queue = std::mem::take(&mut state.queue);
        ctx.session.multi = state;
        if ctx.session.multi.dirty {
            reset(ctx);
            return Err(CmdError::new(
                "EXECABORT Transaction discarded because of previous errors.",
            ));
        }
        let shared = ctx.shared;
        let _gate = shared.server.gate.exclusive();
        let changed = watched_changed(ctx, &ctx.session.multi);
        reset(ctx);
        if changed {
            return Ok(Frame::NullArray);
        }
        // All or nothing across a crash: a crash before `_atomic` is dropped (after the last
        // command) rolls every write of the transaction back at the next open.
        let _atomic = shared.db.atomic();
        // As Redis sends it: the header under the reply state EXEC began with, and each
        // command's reply under the state it left (a queued CLIENT REPLY OFF silences the
        // replies after it, ON brings them back, and OFF and SKIP answer nothing, so the
        // header may count more replies than follow). A queued SKIP drops the reply of the
        // command after EXEC.
        let header = ctx.session.answers();
        let len = queue.len();
        let mut replies = Vec::with_capacity(len);
        let mut encoded = bytes::BytesMut::new();
        for (spec, argv) in queue {
            let frame = dispatch::run(ctx, spec, argv);
            if ctx.session.answers() {
                encode(&frame, ctx.session.protocol, &mut encoded);
                replies.push(frame);
            }
        }
        drop(_atomic);
        ctx.session.exec_reply = Some(ExecReply {
            header,
            len,
            encoded,
        });
        Ok(Frame::Array(replies))
    }
}

struct Discard;
impl Command for Discard {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        p.finish()?;
        Ok(Discard)
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        if !ctx.session.multi.active {
            return Err(CmdError::new("ERR DISCARD without MULTI"));
        }
        reset(ctx);
        Ok(Frame::ok())
    }
}

struct Watch(Vec<Bytes>);
impl Command for Watch {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        Ok(Watch(p.rest()))
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        if ctx.session.multi.active {
            return Err(CmdError::new("ERR WATCH inside MULTI is not allowed"));
        }
        let shared = ctx.shared;
        if ctx.session.multi.watched.is_empty() {
            ctx.session.multi.flushes_at_watch = shared.server.watches.flushes();
        }
        for key in self.0 {
            if ctx.session.multi.watched.iter().any(|w| w.key == key) {
                continue;
            }
            // A copy: the argument is a slice of the connection's read buffer, which a key kept
            // for as long as the watch would keep whole (up to a pipeline of 512 MiB arguments).
            let key = Bytes::copy_from_slice(&key);
            let version = shared.server.watches.watch(&key);
            let ttl = shared.db.ttl_uncounted(&key)?;
            ctx.session.multi.watched.push(Watched {
                key,
                version,
                existed: ttl != Ttl::Missing,
                expires_at: match ttl {
                    Ttl::At(at) => Some(at),
                    _ => None,
                },
            });
        }
        Ok(Frame::ok())
    }
}

struct Unwatch;
impl Command for Unwatch {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        p.finish()?;
        Ok(Unwatch)
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        let watched = std::mem::take(&mut ctx.session.multi.watched);
        for w in &watched {
            ctx.shared.server.watches.unwatch(&w.key);
        }
        Ok(Frame::ok())
    }
}

const TX: &[&str] = &["noscript", "loading", "stale", "fast", "allow_busy"];

/// This family's commands.
#[rustfmt::skip]
pub static SPECS: &[Spec] = &[
    Spec { name: "multi", arity: 1, flags: TX, keys: (0, 0, 0), run: run::<Multi> },
    Spec { name: "exec", arity: 1, flags: &["noscript", "loading", "stale", "skip_slowlog"], keys: (0, 0, 0), run: run::<Exec> },
    Spec { name: "discard", arity: 1, flags: TX, keys: (0, 0, 0), run: run::<Discard> },
    Spec { name: "watch", arity: -2, flags: TX, keys: (1, -1, 1), run: run::<Watch> },
    Spec { name: "unwatch", arity: 1, flags: TX, keys: (0, 0, 0), run: run::<Unwatch> },
];
