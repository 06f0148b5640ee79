//! Running one command: look it up, check its arity and the caller's authentication, queue it
//! inside MULTI, else run it (holding the transaction gate; a write refused by a full pool again
//! after evicting, if the policy evicts), count it, turn errors into replies.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use eagle_core::db::EvictionPolicy;
use eagle_core::resp::Frame;

use super::ctx::Ctx;
use super::multi;
use super::parse::{CmdError, Parse};
use super::table::{Spec, lookup, unknown_command, wrong_arity};
use crate::stopwatch;

/// Commands a client may send before authenticating.
const NO_AUTH: &[&str] = &["auth", "hello", "quit", "reset"];

/// A parsed request, its command looked up, waiting its turn in a pipeline.
pub struct Request {
    pub(super) argv: Vec<Bytes>,
    pub(super) spec: Option<&'static Spec>,
}

impl Request {
    /// Looks the command up.
    pub fn new(argv: Vec<Bytes>) -> Request {
        Request::after(argv, &mut None)
    }

    /// Where the parser skipped an empty command: it runs nothing and answers nothing, but
    /// ends a command as any other does ([`Session::command_done`](super::ctx::Session::command_done)).
    pub fn empty() -> Request {
        Request {
            argv: Vec::new(),
            spec: None,
        }
    }

    /// Whether this is [`empty`](Self::empty).
    pub fn is_empty(&self) -> bool {
        self.argv.is_empty()
    }

    /// Looks the command up, trying `recent` (the command this connection's previous request
    /// named) before the table: a pipeline mostly repeats one command, and comparing a name
    /// costs a fraction of a table lookup. `recent` becomes this request's command.
    pub fn after(argv: Vec<Bytes>, recent: &mut Option<&'static Spec>) -> Request {
        let name = argv.first().map_or(&[][..], |n| &n[..]);
        let spec = match *recent {
            Some(spec) if name.eq_ignore_ascii_case(spec.name.as_bytes()) => Some(spec),
            _ => lookup(name),
        };
        if spec.is_some() {
            *recent = spec;
        }
        Request { argv, spec }
    }

    /// Whether running it may change how the requests after it are parsed: CONFIG (the bulk
    /// limit), AUTH, HELLO and RESET (authentication, whose limits are tighter), and EXEC (which
    /// runs the CONFIG or AUTH a transaction queued).
    pub fn changes_parsing(&self) -> bool {
        self.spec
            .is_some_and(|s| matches!(s.name, "config" | "auth" | "hello" | "reset" | "exec"))
    }

    /// The first key it names, if it is a known command with keys and the right arity: what a
    /// connection prefetches ([`Db::prefetch`](eagle_core::Db::prefetch)) for the requests of
    /// a pipeline before it runs them, so that their cache misses overlap.
    pub fn first_key(&self) -> Option<&[u8]> {
        let spec = self.spec?;
        if spec.keys.0 <= 0 || !spec.arity_ok(self.argv.len()) {
            return None;
        }
        self.argv.get(spec.keys.0 as usize).map(|k| &k[..])
    }
}

/// Executes one command and returns its reply.
pub fn execute(ctx: &mut Ctx<'_>, argv: Vec<Bytes>) -> Frame {
    execute_request(ctx, Request::new(argv))
}

/// Executes one request, its command already looked up, and returns its reply.
///
/// Order of checks as Redis's `processCommand`: unknown command, arity, authentication (each
/// rejection also dooms an open transaction), then queueing inside MULTI.
pub fn execute_request(ctx: &mut Ctx<'_>, request: Request) -> Frame {
    let Request { argv, spec } = request;
    if argv.is_empty() {
        return Frame::Null;
    }
    let Some(spec) = spec else {
        ctx.session.last_cmd = "NULL";
        return reject(ctx, None, unknown_command(&argv));
    };
    note_last_cmd(ctx, spec);
    if !spec.arity_ok(argv.len()) {
        return reject(ctx, Some(spec), wrong_arity(spec.name));
    }
    let shared = ctx.shared;
    if shared.server.password_set() && !ctx.session.authenticated && !NO_AUTH.contains(&spec.name) {
        return reject(
            ctx,
            Some(spec),
            CmdError::new("NOAUTH Authentication required."),
        );
    }
    if ctx.session.multi.active() {
        if spec.flags.contains(&"no_multi") {
            return reject(
                ctx,
                Some(spec),
                CmdError::new("ERR Command not allowed inside a transaction"),
            );
        }
        if !multi::runs_inside_multi(spec.name) {
            return multi::queue(ctx, spec, argv);
        }
    }
    if spec.name == "exec" {
        // EXEC takes the gate exclusively itself.
        return run(ctx, spec, argv);
    }
    let _gate = shared.server.gate.shared(ctx.session.id);
    run(ctx, spec, argv)
}

/// Records `spec` as the session's last command (CLIENT LIST's `cmd`).
pub(super) fn note_last_cmd(ctx: &mut Ctx<'_>, spec: &'static Spec) {
    if !std::ptr::eq(ctx.session.last_cmd, spec.name) {
        ctx.session.last_cmd = spec.name;
        if let Some(c) = &ctx.session.client {
            *c.last_cmd.lock() = spec.name;
        }
    }
}

/// A command refused before running: counted, and it dooms an open transaction. A refused
/// EXEC discards the transaction and says why, as Redis's `execCommandAbort`.
fn reject(ctx: &mut Ctx<'_>, spec: Option<&'static Spec>, err: CmdError) -> Frame {
    let err = if spec.is_some_and(|s| s.name == "exec") {
        multi::reset(ctx);
        let why = err.0.strip_prefix("ERR ").unwrap_or(&err.0);
        CmdError::new(format!("EXECABORT Transaction discarded because of: {why}"))
    } else {
        err
    };
    let server = &ctx.shared.server;
    server.stats.error(err.0.as_bytes());
    if let Some(stat) = spec.and_then(|s| server.stats.cmds().get(s.name)) {
        stat.rejected.fetch_add(1, Ordering::Relaxed);
    }
    ctx.session.multi.flag_dirty();
    err.frame()
}

/// Runs a command that passed the checks (EXEC runs its queue through here, holding the gate).
pub(crate) fn run(ctx: &mut Ctx<'_>, spec: &'static Spec, argv: Vec<Bytes>) -> Frame {
    let server = &ctx.shared.server;
    let touched: Option<Vec<Bytes>> = (spec.is_write() && server.watches.any()).then(|| {
        spec.key_args(&argv)
            .into_iter()
            .map(Bytes::copy_from_slice)
            .collect()
    });
    if matches!(spec.name, "info" | "config") {
        // They read or reset the counters: what this connection ran before is in them.
        ctx.session.tally.flush(&server.stats);
    }
    let started = stopwatch::now();
    let may_evict =
        spec.flags.contains(&"denyoom") && ctx.db().eviction() != EvictionPolicy::NoEviction;
    let result = if may_evict {
        evict_and_retry(ctx, spec, argv)
    } else {
        (spec.run)(&mut Parse::new(spec.name, argv), ctx)
    };
    let nanos = stopwatch::nanos_between(started, stopwatch::now());
    ctx.session.tally.add(spec.name, nanos);
    let server = &ctx.shared.server;
    let frame = match result {
        Ok(frame) => {
            if let Some(keys) = touched {
                server.watches.touch(keys.iter().map(|k| &k[..]));
            }
            if spec.is_write() {
                server.saves.changed();
            }
            frame
        }
        Err(e) => e.frame(),
    };
    if let Frame::Error(text) = &frame {
        count_error(server, spec, text);
    }
    frame
}

/// Counts an error reply of `spec`: by its code, and as a failed call of the command.
pub(super) fn count_error(server: &crate::state::ServerState, spec: &Spec, text: &[u8]) {
    server.stats.error(text);
    if let Some(stat) = server.stats.cmds().get(spec.name) {
        stat.failed.fetch_add(1, Ordering::Relaxed);
    }
}

/// A `denyoom` command run through `Db::with_eviction`: while it fails because the pool is full
/// and the policy finds keys to evict, it runs again after each round, at most
/// `EVICTION_ROUNDS` times, then once more if the evicted keys' frees came after a wait (up to
/// about 13 ms, on this worker thread, holding the transaction gate shared). The failed runs changed nothing (a write that does not fit changes
/// nothing), so running the command again is safe for every command, INCR and APPEND included.
/// Evicted keys touch their watchers, as Redis's evictions do.
fn evict_and_retry(
    ctx: &mut Ctx<'_>,
    spec: &'static Spec,
    argv: Vec<Bytes>,
) -> Result<Frame, CmdError> {
    let shared = ctx.shared;
    let keys = spec.key_args(&argv);
    shared.db.with_eviction(&keys, |evicted| {
        let watches = &shared.server.watches;
        if !evicted.is_empty() && watches.any() {
            watches.touch(evicted.iter().map(|k| &k[..]));
        }
        (spec.run)(&mut Parse::new(spec.name, argv.clone()), ctx)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recent_command_is_reused_only_for_its_own_name_in_any_case() {
        let mut recent = None;
        let names = [
            "GET", "get", "gEt", "SET", "getx", "", "set", "GET", "hset", "HSETNX",
        ];
        for name in names {
            let argv = vec![Bytes::copy_from_slice(name.as_bytes())];
            let before = recent;
            let r = Request::after(argv, &mut recent);
            let want = lookup(name.as_bytes());
            assert_eq!(r.spec.map(|s| s.name), want.map(|s| s.name), "{name:?}");
            // An unknown name leaves the remembered command as it was.
            let kept = if want.is_some() { want } else { before };
            assert_eq!(recent.map(|s| s.name), kept.map(|s| s.name), "{name:?}");
        }
        assert!(Request::after(Vec::new(), &mut recent).spec.is_none());
    }
}
