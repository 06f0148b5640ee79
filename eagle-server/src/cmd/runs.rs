//! Runs of pipelined writes: consecutive plain SETs, INCRs and DECRs of a connection's
//! pipeline window run together (their keys' puts in groups that share the waits for the
//! media), and consecutive HSETs of one key under one take of its lock; and a GET answered in
//! place (its value copied once, into the reply). Each request is answered and counted as if it
//! ran alone.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::BytesMut;
use eagle_core::dash::{MAX_GROUP, RunDone};
use eagle_core::db::EvictionPolicy;
use eagle_core::resp::{Frame, encode, encode_bulk};

use super::ctx::Ctx;
use super::dispatch::{Request, count_error, execute_request, note_last_cmd};
use super::parse::CmdError;
use super::strings::relative_ttl_ms;
use super::table::Spec;
use crate::stopwatch;

/// Whether `request` is a plain SET (a key and a value, no option but EX or PX with a valid
/// number) that [`execute_sets`] may run in a group: one that would pass every check of
/// [`execute_request`] now and run without the eviction retry. Nothing a SET does changes the
/// answer for the next one.
pub fn plain_set(ctx: &Ctx<'_>, request: &Request) -> bool {
    request.spec.is_some_and(|s| s.name == "set")
        && match &request.argv[..] {
            [_, _, _] => true,
            [_, _, _, option, number] => relative_ttl_ms(option, number).is_some(),
            _ => false,
        }
        && groups_now(ctx)
}

/// Whether a request that would pass `execute_request`'s checks by its name and arity runs
/// now rather than being queued or refused: no MULTI open, the client authenticated (or no
/// password).
fn runs_now(ctx: &Ctx<'_>) -> bool {
    !ctx.session.multi.active() && (ctx.session.authenticated || !ctx.shared.server.password_set())
}

/// [`runs_now`], and a write may run in a run: not under an evicting policy, whose writes
/// go through the eviction retry one at a time.
fn groups_now(ctx: &Ctx<'_>) -> bool {
    runs_now(ctx) && ctx.db().eviction() == EvictionPolicy::NoEviction
}

/// Runs consecutive pipelined requests that each passed [`plain_set`], in order, in runs of
/// up to [`MAX_GROUP`] ([`Db::set_run`](eagle_core::Db::set_run)), whose keys go in groups where
/// they can: a group waits for the media twice in all, where each SET alone waits twice. A SET
/// a run fails on runs alone through [`execute_request`], which reports its error. Hands each
/// reply to `reply`, in order, and empties `sets`. A SET of a run is counted as a SET run alone
/// is, with an equal share of its run's time.
pub fn execute_sets(
    ctx: &mut Ctx<'_>,
    sets: &mut Vec<Request>,
    reply: impl FnMut(&mut Ctx<'_>, Frame),
) {
    execute_runs(ctx, sets, reply, run_sets);
}

/// [`execute_sets`] for requests that each passed [`plain_incr`] (INCR and DECR), in runs of
/// [`Db::incr_run`](eagle_core::Db::incr_run): an INCR a run stops before (its key holds no
/// integer, it would overflow, or its key came earlier in the run) runs alone or starts the
/// next run.
pub fn execute_incrs(
    ctx: &mut Ctx<'_>,
    incrs: &mut Vec<Request>,
    reply: impl FnMut(&mut Ctx<'_>, Frame),
) {
    execute_runs(ctx, incrs, reply, run_incrs);
}

/// What one run did: the replies of the requests it applied (the first ones, in order), its
/// time, and whether it stopped at an error of the run itself.
struct Ran {
    replies: Replies,
    nanos: u64,
    failed: bool,
}

/// The replies of a run's applied requests, in order.
enum Replies {
    /// `+OK` each (SETs).
    Ok(usize),
    /// The new values (INCRs).
    Integers(Vec<i64>),
}

impl Replies {
    fn len(&self) -> usize {
        match self {
            Replies::Ok(n) => *n,
            Replies::Integers(v) => v.len(),
        }
    }

    fn frames(self) -> impl Iterator<Item = Frame> {
        let (oks, integers) = match self {
            Replies::Ok(n) => (n, Vec::new()),
            Replies::Integers(v) => (0, v),
        };
        std::iter::repeat_with(Frame::ok)
            .take(oks)
            .chain(integers.into_iter().map(Frame::Integer))
    }
}

/// Runs `requests` in runs of `run` (each of at least two requests), a request a run did not
/// apply alone ([`execute_request`]); hands each reply to `reply`, in order, and empties
/// `requests`. Each applied request is counted under its own command with an equal share of
/// its run's time.
fn execute_runs(
    ctx: &mut Ctx<'_>,
    requests: &mut Vec<Request>,
    mut reply: impl FnMut(&mut Ctx<'_>, Frame),
    run: fn(&Ctx<'_>, &[Request]) -> Ran,
) {
    let mut done = 0;
    while done < requests.len() {
        let rest = &requests[done..];
        let ran = if rest.len() >= 2 && ctx.db().groups_pay() {
            run(ctx, rest)
        } else {
            Ran {
                replies: Replies::Ok(0),
                nanos: 0,
                failed: true,
            }
        };
        let applied = ran.replies.len();
        if applied > 0 {
            let share = ran.nanos / applied as u64;
            for frame in ran.replies.frames() {
                if let Some(spec) = requests[done].spec {
                    note_last_cmd(ctx, spec);
                    ctx.session.tally.add(spec.name, share);
                }
                reply(ctx, frame);
                done += 1;
            }
        }
        if (ran.failed || applied == 0) && done < requests.len() {
            let request = &mut requests[done];
            let alone = Request {
                argv: std::mem::take(&mut request.argv),
                spec: request.spec,
            };
            let frame = execute_request(ctx, alone);
            reply(ctx, frame);
            done += 1;
        }
    }
    requests.clear();
}

/// One run of the plain SETs `sets` (at least two): how many it applied, its time, and whether
/// it stopped at an error (an error of a read-only engine, say; the SET it stopped at is to
/// run alone). The applied SETs touch their watchers and count as changes before the
/// transaction gate is released, as a SET run alone does: an EXEC that takes the gate next
/// sees them.
fn run_sets(ctx: &Ctx<'_>, sets: &[Request]) -> Ran {
    let mut items: [(&[u8], &[u8], u64); MAX_GROUP] = [(&[], &[], 0); MAX_GROUP];
    let n = sets.len().min(MAX_GROUP);
    let server = &ctx.shared.server;
    // Timed once the gate is held, as `execute_request` times a command.
    let _gate = server.gate.shared(ctx.session.id);
    let started = stopwatch::now();
    // EX and PX count from now, as SET's `apply` does.
    let mut now = None;
    for (item, set) in items.iter_mut().zip(sets) {
        let expire_at = match &set.argv[..] {
            [_, _, _, option, number] => relative_ttl_ms(option, number)
                .map_or(0, |ms| *now.get_or_insert_with(|| ctx.db().now_ms()) + ms),
            _ => 0,
        };
        *item = (&set.argv[1], &set.argv[2], expire_at);
    }
    let run = ctx.db().set_run(&items[..n]);
    let replies = Replies::Ok(run.applied);
    ran(
        ctx,
        sets,
        &run,
        &server.stats.grouped_sets,
        replies,
        started,
    )
}

/// A run's end, before its caller releases the transaction gate: the applied requests' keys
/// touch their watchers and count as changes (an EXEC that takes the gate next sees them),
/// and the requests that went in groups are counted in `grouped`.
fn ran<E>(
    ctx: &Ctx<'_>,
    requests: &[Request],
    run: &RunDone<E>,
    grouped: &AtomicU64,
    replies: Replies,
    started: stopwatch::Stamp,
) -> Ran {
    let server = &ctx.shared.server;
    if run.applied > 0 {
        if server.watches.any() {
            server
                .watches
                .touch(requests[..run.applied].iter().map(|r| &r.argv[1][..]));
        }
        for _ in 0..run.applied {
            server.saves.changed();
        }
        grouped.fetch_add(run.grouped as u64, Ordering::Relaxed);
    }
    Ran {
        replies,
        nanos: stopwatch::nanos_between(started, stopwatch::now()),
        failed: run.result.is_err(),
    }
}

/// Whether `request` is an INCR, DECR, INCRBY or DECRBY that [`execute_incrs`] may run in a
/// run: one that would pass every check of [`execute_request`] now and run without the
/// eviction retry.
pub fn plain_incr(ctx: &Ctx<'_>, request: &Request) -> bool {
    incr_delta(request).is_some() && groups_now(ctx)
}

/// The increment of an INCR, DECR, INCRBY or DECRBY with its arguments right; `None` for
/// anything else, an increment that is no integer, and a DECRBY of the smallest integer (each
/// runs alone, for its error).
fn incr_delta(request: &Request) -> Option<i64> {
    let by = || eagle_core::db::parse_i64(request.argv.get(2)?);
    match (request.spec?.name, request.argv.len()) {
        ("incr", 2) => Some(1),
        ("decr", 2) => Some(-1),
        ("incrby", 3) => by(),
        ("decrby", 3) => by()?.checked_neg(),
        _ => None,
    }
}

/// One run of the INCRs and DECRs `incrs` (at least two), as [`run_sets`] runs SETs.
fn run_incrs(ctx: &Ctx<'_>, incrs: &[Request]) -> Ran {
    let mut items: [(&[u8], i64); MAX_GROUP] = [(&[], 0); MAX_GROUP];
    let n = incrs.len().min(MAX_GROUP);
    let server = &ctx.shared.server;
    // Timed once the gate is held, as `execute_request` times a command.
    let _gate = server.gate.shared(ctx.session.id);
    let started = stopwatch::now();
    for (item, incr) in items.iter_mut().zip(incrs) {
        *item = (&incr.argv[1], incr_delta(incr).unwrap_or(0));
    }
    let (run, values) = ctx.db().incr_run(&items[..n]);
    let replies = Replies::Integers(values);
    ran(
        ctx,
        incrs,
        &run,
        &server.stats.grouped_incrs,
        replies,
        started,
    )
}

/// Whether `request` is an HSET that [`execute_hsets`] may run together with the HSETs of the
/// same key next to it: one that would pass every check of [`execute_request`] now and run
/// without the eviction retry. (An HSET with an odd number of arguments runs alone, for its
/// arity error.)
pub fn plain_hset(ctx: &Ctx<'_>, request: &Request) -> bool {
    request.spec.is_some_and(|s| s.name == "hset")
        && request.argv.len() >= 4
        && request.argv.len().is_multiple_of(2)
        && groups_now(ctx)
}

/// Whether two requests that passed [`plain_hset`] name the same key.
pub fn same_hash(a: &Request, b: &Request) -> bool {
    a.argv[1] == b.argv[1]
}

/// Runs consecutive pipelined HSETs of one key (each passed [`plain_hset`]) under one take of
/// the key's lock ([`Db::hset_run`](eagle_core::Db::hset_run)), and hands each reply to `reply`,
/// in order; empties `hsets`. Each HSET is counted, and touches the key's watchers, as an HSET
/// run alone is, with an equal share of the run's time.
pub fn execute_hsets(
    ctx: &mut Ctx<'_>,
    hsets: &mut Vec<Request>,
    mut reply: impl FnMut(&mut Ctx<'_>, Frame),
) {
    if hsets.len() == 1 {
        let frame = execute_request(ctx, hsets.remove(0));
        reply(ctx, frame);
        return;
    }
    let Some(spec) = hsets.first().and_then(|r| r.spec) else {
        return;
    };
    note_last_cmd(ctx, spec);
    let server = &ctx.shared.server;
    let (results, nanos) = {
        // Timed once the gate is held, as `execute_request` times a command.
        let _gate = server.gate.shared(ctx.session.id);
        let started = stopwatch::now();
        let key = &hsets[0].argv[1][..];
        let pairs: Vec<Vec<(&[u8], &[u8])>> = hsets
            .iter()
            .map(|r| {
                r.argv[2..]
                    .chunks_exact(2)
                    .map(|p| (&p[0][..], &p[1][..]))
                    .collect()
            })
            .collect();
        let commands: Vec<&[(&[u8], &[u8])]> = pairs.iter().map(Vec::as_slice).collect();
        let results = ctx.db().hset_run(key, &commands);
        // Before the gate is released, as `run` does: an EXEC that takes it next sees them.
        let applied = results.iter().filter(|r| r.is_ok()).count();
        if applied > 0 && server.watches.any() {
            server.watches.touch(std::iter::once(key));
        }
        for _ in 0..applied {
            server.saves.changed();
        }
        (results, stopwatch::nanos_between(started, stopwatch::now()))
    };
    let share = nanos / results.len() as u64;
    for result in results {
        ctx.session.tally.add(spec.name, share);
        let frame = match result {
            Ok(added) => Frame::Integer(added.try_into().unwrap_or(i64::MAX)),
            Err(e) => failed(ctx, spec, e),
        };
        reply(ctx, frame);
    }
    hsets.clear();
}

/// Whether `request` is a GET that [`execute_get`] may answer in place: one that would pass
/// every check of [`execute_request`] now.
pub fn plain_get(ctx: &Ctx<'_>, request: &Request) -> bool {
    request.spec.is_some_and(|s| s.name == "get") && request.argv.len() == 2 && runs_now(ctx)
}

/// Runs a GET that passed [`plain_get`] and encodes its reply into `wbuf` as
/// [`execute_request`] and the connection's reply would (CLIENT REPLY OFF and SKIP included),
/// but with the value copied once, from the pool into `wbuf` under the key's read lock
/// ([`Db::get_with`](eagle_core::Db::get_with)), instead of into a value of its own first.
pub fn execute_get(ctx: &mut Ctx<'_>, request: Request, wbuf: &mut BytesMut) {
    let Some(spec) = request.spec else {
        return;
    };
    note_last_cmd(ctx, spec);
    // Decided first: a GET changes neither setting.
    let answer = ctx.session.answers_reply();
    let protocol = ctx.session.protocol;
    let server = &ctx.shared.server;
    let (found, nanos) = {
        // Timed once the gate is held, as `execute_request` times a command.
        let _gate = server.gate.shared(ctx.session.id);
        let started = stopwatch::now();
        let found = ctx.shared.db.get_with(&request.argv[1], |value| {
            if answer {
                encode_bulk(value, wbuf);
            }
        });
        (found, stopwatch::nanos_between(started, stopwatch::now()))
    };
    ctx.session.tally.add(spec.name, nanos);
    let frame = match found {
        Ok(Some(())) => return,
        Ok(None) => Frame::Null,
        Err(e) => failed(ctx, spec, e),
    };
    if answer {
        encode(&frame, protocol, wbuf);
    }
}

/// The error reply of a command of a run or fast path that failed, counted as
/// [`execute_request`] counts one.
fn failed(ctx: &Ctx<'_>, spec: &Spec, e: eagle_core::DbError) -> Frame {
    let e = CmdError::from(e);
    count_error(&ctx.shared.server, spec, e.0.as_bytes());
    e.frame()
}
