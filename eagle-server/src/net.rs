//! The network side: listening sockets, the accept loops (maxclients), one task per connection
//! (protected mode, pipelined request parsing, one write per batch of replies, idle timeout,
//! CLIENT KILL), and the graceful shutdown (stop accepting, let every connection finish the
//! commands it has already received, then return so the caller closes the pool).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;
use eagle_core::resp::{Frame, Limits, RequestParser, encode, encode_array_header};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;

use crate::cmd::{
    Ctx, Request, Session, Shared, Spec, execute_get, execute_hsets, execute_incrs,
    execute_request, execute_sets, plain_get, plain_hset, plain_incr, plain_set, same_hash,
};
use crate::state::DRAIN_TIMEOUT;

/// Redis's reply to a client over `maxclients`.
pub const MAXCLIENTS_ERROR: &[u8] = b"-ERR max number of clients reached\r\n";

/// Redis 7's reply (the text of 7.0, `src/networking.c`) to a client refused by protected mode.
pub const PROTECTED_MODE_ERROR: &[u8] = b"-DENIED Redis is running in protected mode because \
protected mode is enabled and no password is set for the default user. In this mode connections \
are only accepted from the loopback interface. If you want to connect from external computers to \
Redis you may adopt one of the following solutions: 1) Just disable protected mode sending the \
command 'CONFIG SET protected-mode no' from the loopback interface by connecting to Redis from the \
same host the server is running, however MAKE SURE Redis is not publicly accessible from internet \
if you do so. Use CONFIG REWRITE to make this change permanent. 2) Alternatively you can just \
disable the protected mode by editing the Redis configuration file, and setting the protected mode \
option to 'no', and then restarting the server. 3) If you started the server manually just for \
testing, restart it with the '--protected-mode no' option. 4) Setup a an authentication password \
for the default user. NOTE: You only need to do one of the above things in order for the server to \
start accepting connections from the outside.\r\n";

/// Replies are written once the batch is done, or earlier when they pile up past this.
const WRITE_HIGH_WATER: usize = 1 << 20;
/// Requests taken in (and their keys' index lines prefetched) before the first of them runs:
/// redis-benchmark's `-P 16` depth.
const LOOKAHEAD: usize = 16;
/// Read buffer growth step.
const READ_CHUNK: usize = 16 * 1024;
/// An idle connection's buffers are given back above this size.
const KEEP_BUFFER: usize = 64 * 1024;
/// Listen backlog (Redis's `tcp-backlog` default).
const BACKLOG: u32 = 511;

/// Whether protected mode refuses a client from `peer`: protected mode on, no password, and the
/// client not on the loopback interface (IPv4 127/8, `::1`, or IPv4-mapped loopback).
pub fn protected_mode_denies(protected_mode: bool, password_set: bool, peer: IpAddr) -> bool {
    protected_mode && !password_set && !is_loopback(peer)
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Listens on `addr` with Redis's backlog (inside a runtime).
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Listens on every address of `bind` at `port` (inside a runtime). An address written with a
/// leading `-` (Redis's "optional") is skipped if it cannot be bound.
pub fn listen_all(bind: &[String], port: u16) -> io::Result<Vec<TcpListener>> {
    let mut out = Vec::new();
    for a in bind {
        let (optional, a) = match a.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, a.as_str()),
        };
        let ip: IpAddr = a
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("bad address {a}")))?;
        match listen(SocketAddr::new(ip, port)) {
            Ok(l) => out.push(l),
            Err(e) if optional => log::warn!("Could not bind to optional address {a}: {e}"),
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("could not listen on {a}:{port}: {e}"),
                ));
            }
        }
    }
    Ok(out)
}

/// Serves clients on `listeners` until a shutdown is asked for (SHUTDOWN, SIGTERM, SIGINT),
/// then drains: returns once every connection has finished what it had received (or after
/// `DRAIN_TIMEOUT`). The caller then drops the runtime and closes the pool.
pub async fn serve(shared: Arc<Shared>, listeners: Vec<TcpListener>, signals: Signals) {
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    tokio::spawn(watch_signals(signals, shared.clone()));
    tokio::spawn(sample_ops(shared.clone()));
    for l in listeners {
        tokio::spawn(accept_loop(l, shared.clone(), done_tx.clone()));
    }
    drop(done_tx);
    let mut shutdown = shared.server.shutdown_signal();
    let _ = shutdown.wait_for(|v| *v).await;
    log::info!("Stopped accepting; waiting for connections to finish their commands");
    if tokio::time::timeout(DRAIN_TIMEOUT, done_rx.recv())
        .await
        .is_err()
    {
        log::warn!(
            "{} connections still open after {:?}; dropping them",
            shared.server.clients.connected(),
            DRAIN_TIMEOUT
        );
    }
}

/// SIGTERM and SIGINT, caught from the moment this exists.
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

/// Catches SIGTERM and SIGINT (inside a runtime); call before announcing readiness, so that a
/// signal sent as soon as the server is up still shuts it down cleanly.
pub fn catch_signals() -> io::Result<Signals> {
    use tokio::signal::unix::{SignalKind, signal};
    Ok(Signals {
        term: signal(SignalKind::terminate())?,
        int: signal(SignalKind::interrupt())?,
    })
}

async fn watch_signals(signals: Signals, shared: Arc<Shared>) {
    let Signals { mut term, mut int } = signals;
    let mut received = 0;
    loop {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        received += 1;
        if received == 1 {
            log::warn!("Received {name} scheduling shutdown...");
            shared.server.trigger_shutdown();
        } else {
            log::warn!(
                "Received {name} again during shutdown: exiting now (the pool will recover)"
            );
            std::process::exit(1);
        }
    }
}

/// Redis's `instantaneous_ops_per_sec`, sampled every second.
async fn sample_ops(shared: Arc<Shared>) {
    let stats = &shared.server.stats;
    let mut last = stats.commands_processed.load(Ordering::Relaxed);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let now = stats.commands_processed.load(Ordering::Relaxed);
        stats
            .ops_per_sec
            .store(now.saturating_sub(last), Ordering::Relaxed);
        last = now;
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, done: mpsc::Sender<()>) {
    let mut shutdown = shared.server.shutdown_signal();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.wait_for(|v| *v) => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                let server = &shared.server;
                server
                    .stats
                    .connections_received
                    .fetch_add(1, Ordering::Relaxed);
                let max = server.with_config(|c| c.maxclients);
                if !server.clients.try_reserve(max) {
                    server
                        .stats
                        .rejected_connections
                        .fetch_add(1, Ordering::Relaxed);
                    log::debug!("Refusing {peer}: max number of clients reached");
                    tokio::spawn(refuse(stream, MAXCLIENTS_ERROR));
                    continue;
                }
                let shared = shared.clone();
                let done = done.clone();
                tokio::spawn(async move {
                    let _done = done;
                    handle_tcp(stream, peer, &shared).await;
                    shared.server.clients.release();
                });
            }
            Err(e) => {
                // Out of descriptors and the like: wait a little instead of spinning.
                log::warn!("Accepting a client connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Sends one error and closes, letting the client read it.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, error: &'static [u8]) {
    let _ = stream.write_all(error).await;
    close_gracefully(&mut stream).await;
}

/// Ends the write side and reads (and drops) what the client still sends for a moment, so that
/// closing does not reset the connection before the client has read our last reply.
async fn close_gracefully<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) {
    let _ = stream.shutdown().await;
    let mut scratch = vec![0u8; 16 * 1024];
    let drain = async {
        let mut total = 0usize;
        while let Ok(n) = stream.read(&mut scratch).await {
            total += n;
            if n == 0 || total > (4 << 20) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(500), drain).await;
}

async fn handle_tcp(stream: TcpStream, peer: SocketAddr, shared: &Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().unwrap_or(peer);
    let fd = stream.as_raw_fd();
    serve_connection(stream, peer, local, fd, shared).await;
}

/// What a batch of commands ended with.
enum Outcome {
    /// Read more.
    Continue,
    /// Close (QUIT, SHUTDOWN, CLIENT KILL of itself).
    Close,
    /// A malformed request: its error was sent; close.
    ProtocolError,
}

/// A connection's request parser, and the requests [`process`] has taken in but not yet run
/// (empty between calls; kept to reuse its allocation).
struct Intake {
    parser: RequestParser,
    window: Vec<Request>,
    /// The command the last request named (see [`Request::after`]).
    recent: Option<&'static Spec>,
    /// Consecutive plain SETs of the window, waiting to run as a group ([`execute_sets`]).
    sets: Vec<Request>,
    /// Consecutive HSETs of one key, waiting to run under one take of its lock
    /// ([`execute_hsets`]).
    hsets: Vec<Request>,
    /// Consecutive plain INCRs and DECRs, waiting to run as a group ([`execute_incrs`]).
    incrs: Vec<Request>,
}

/// Serves one client connection on `stream` until it closes, is killed, idles out, breaks the
/// protocol, or the server shuts down.
pub async fn serve_connection<S>(
    mut stream: S,
    peer: SocketAddr,
    local: SocketAddr,
    fd: i32,
    shared: &Arc<Shared>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let server = &shared.server;
    let protected = server.with_config(|c| c.protected_mode);
    if protected_mode_denies(protected, server.password_set(), peer.ip()) {
        refuse(stream, PROTECTED_MODE_ERROR).await;
        return;
    }
    let id = server.clients.next_id();
    let info = server
        .clients
        .register(id, peer, local, fd, server.now_ms());
    log::debug!("Accepted {peer} (id={id})");
    let mut session = Session::new(id);
    session.authenticated = !server.password_set();
    session.client = Some(info.clone());
    let mut ctx = Ctx {
        shared: shared.as_ref(),
        session: &mut session,
    };
    let mut intake = Intake {
        parser: RequestParser::new(Limits::default()),
        window: Vec::with_capacity(LOOKAHEAD),
        recent: None,
        sets: Vec::with_capacity(LOOKAHEAD),
        hsets: Vec::with_capacity(LOOKAHEAD),
        incrs: Vec::with_capacity(LOOKAHEAD),
    };
    let mut rbuf = BytesMut::with_capacity(4096);
    let mut wbuf = BytesMut::new();
    let mut shutdown = server.shutdown_signal();

    let result: io::Result<()> = async {
        loop {
            if info.killed.load(Ordering::Acquire) {
                return Ok(());
            }
            // Big requests or replies grow the buffers; an idle connection gives them back.
            if rbuf.is_empty() && rbuf.capacity() > KEEP_BUFFER {
                rbuf = BytesMut::with_capacity(4096);
            }
            if wbuf.capacity() > KEEP_BUFFER {
                wbuf = BytesMut::new();
            }
            if rbuf.capacity() - rbuf.len() < 1024 {
                rbuf.reserve(READ_CHUNK);
            }
            let idle = idle_timer(server.idle_timeout());
            let read = tokio::select! {
                r = stream.read_buf(&mut rbuf) => Some(r?),
                _ = info.kill.notified() => return Ok(()),
                _ = shutdown.wait_for(|v| *v) => None,
                _ = idle => {
                    log::debug!("Closing idle client id={id} addr={peer}");
                    return Ok(());
                }
            };
            let Some(n) = read else {
                // Shutting down: take what has already arrived, answer it, close.
                for _ in 0..64 {
                    rbuf.reserve(READ_CHUNK);
                    match tokio::time::timeout(Duration::ZERO, stream.read_buf(&mut rbuf)).await {
                        Ok(Ok(n)) if n > 0 => {
                            server
                                .stats
                                .net_input_bytes
                                .fetch_add(n as u64, Ordering::Relaxed);
                        }
                        _ => break,
                    }
                }
                let outcome =
                    process(&mut ctx, &mut intake, &mut rbuf, &mut wbuf, &mut stream).await?;
                if matches!(outcome, Outcome::ProtocolError) {
                    close_gracefully(&mut stream).await;
                } else {
                    let _ = stream.shutdown().await;
                }
                return Ok(());
            };
            if n == 0 {
                return Ok(());
            }
            server
                .stats
                .net_input_bytes
                .fetch_add(n as u64, Ordering::Relaxed);
            match process(&mut ctx, &mut intake, &mut rbuf, &mut wbuf, &mut stream).await? {
                Outcome::Continue => {}
                Outcome::Close => {
                    let _ = stream.shutdown().await;
                    return Ok(());
                }
                Outcome::ProtocolError => {
                    close_gracefully(&mut stream).await;
                    return Ok(());
                }
            }
        }
    }
    .await;
    if let Err(e) = result {
        log::debug!("Client id={id} addr={peer} closed: {e}");
    }
    crate::cmd::multi::reset(&mut ctx);
    server.clients.unregister(id);
}

async fn idle_timer(seconds: u64) {
    if seconds == 0 {
        std::future::pending::<()>().await
    } else {
        tokio::time::sleep(Duration::from_secs(seconds)).await
    }
}

/// Runs every complete command in `rbuf`, encoding the replies into `wbuf`, and writes them (in
/// one write unless they pass `WRITE_HIGH_WATER`).
async fn process<S>(
    ctx: &mut Ctx<'_>,
    intake: &mut Intake,
    rbuf: &mut BytesMut,
    wbuf: &mut BytesMut,
    stream: &mut S,
) -> io::Result<Outcome>
where
    S: AsyncWrite + Unpin,
{
    let server = &ctx.shared.server;
    let Intake {
        parser,
        window,
        recent,
        sets,
        hsets,
        incrs,
    } = intake;
    let mut outcome = Outcome::Continue;
    let mut ran = false;
    let mut refused = None;
    'batch: loop {
        // Take in up to `LOOKAHEAD` requests, start fetching what their keys' lookups read, then
        // run them: the misses of a pipeline's lookups overlap instead of adding up.
        // Until the client authenticates, one request at a time, parsed with the tighter
        // limits (`RequestParser::set_authenticated`): an AUTH lifts them for the next one.
        let authenticated = ctx.session.authenticated || !server.password_set();
        parser.set_authenticated(authenticated);
        // As set now: a CONFIG SET of proto-max-bulk-len applies to open connections too, as
        // in Redis.
        parser.set_max_bulk_len(server.max_bulk_len());
        let lookahead = if authenticated { LOOKAHEAD } else { 1 };
        while window.len() < lookahead {
            let parsed = parser.parse(rbuf);
            // Empty commands the parser skipped came before whatever it returned.
            if parser.take_skipped_empty() {
                window.push(Request::empty());
            }
            match parsed {
                Ok(Some(argv)) => {
                    let request = Request::after(argv, recent);
                    // The requests after one that may change how they are parsed (the bulk
                    // limit, authentication) are parsed once it has run, as Redis parses each
                    // request after the one before it ran.
                    let changes_limits = request.changes_parsing();
                    window.push(request);
                    if changes_limits {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            }
        }
        if window.is_empty() {
            break;
        }
        ran = true;
        let mut keys: [&[u8]; LOOKAHEAD] = [&[]; LOOKAHEAD];
        let mut n = 0;
        for key in window.iter().filter_map(Request::first_key) {
            keys[n] = key;
            n += 1;
        }
        // One request alone gains nothing from it and would look its key up twice.
        if n > 1 && ctx.session.authenticated {
            ctx.db().prefetch(&keys[..n]);
        }
        let mut pending = window.drain(..).peekable();
        // What the next request is, when a run before it looked ahead: a request a run waits
        // for is run as the look-ahead classed it, whatever another client changed meanwhile
        // (CONFIG SET of the eviction policy, a password), or the run would wait for ever or
        // its replies come out of order. The runs change nothing `run_kind` reads.
        let mut next_kind = None;
        while let Some(request) = pending.next() {
            if request.is_empty() {
                // A skipped empty command: nothing to run or answer, but the command before it
                // has ended (a CLIENT REPLY SKIP before it skips nothing more).
                next_kind = None;
                ctx.session.command_done();
                continue;
            }
            let kind = next_kind.take().unwrap_or_else(|| run_kind(ctx, &request));
            match kind {
                // Consecutive plain SETs run as groups, the last of them once the next request
                // is not one (or the window ends).
                RunKind::Set => {
                    sets.push(request);
                    next_kind = pending.peek().map(|next| run_kind(ctx, next));
                    if next_kind == Some(RunKind::Set) {
                        continue;
                    }
                    execute_sets(ctx, sets, |ctx, frame| reply(ctx, &frame, wbuf));
                }
                // Consecutive HSETs of one key run under one take of its lock.
                RunKind::Hset => {
                    hsets.push(request);
                    next_kind = pending.peek().map(|next| run_kind(ctx, next));
                    if next_kind == Some(RunKind::Hset)
                        && pending
                            .peek()
                            .is_some_and(|next| same_hash(&hsets[0], next))
                    {
                        continue;
                    }
                    execute_hsets(ctx, hsets, |ctx, frame| reply(ctx, &frame, wbuf));
                }
                // Consecutive INCRs and DECRs run as groups, as SETs do.
                RunKind::Incr => {
                    incrs.push(request);
                    next_kind = pending.peek().map(|next| run_kind(ctx, next));
                    if next_kind == Some(RunKind::Incr) {
                        continue;
                    }
                    execute_incrs(ctx, incrs, |ctx, frame| reply(ctx, &frame, wbuf));
                }
                RunKind::Get => execute_get(ctx, request, wbuf),
                RunKind::Alone => {
                    let frame = execute_request(ctx, request);
                    reply(ctx, &frame, wbuf);
                }
            }
            if ctx.session.close {
                // The requests taken in after this one are dropped unanswered, as those still
                // in the buffer are.
                outcome = Outcome::Close;
                break 'batch;
            }
            if wbuf.len() >= WRITE_HIGH_WATER {
                // Counted before the write, which may wait on the client or fail.
                ctx.session.tally.flush(&ctx.shared.server.stats);
                flush(stream, wbuf, ctx).await?;
            }
        }
        if refused.is_some() {
            break;
        }
    }
    // A malformed request is answered after every request before it ran, unless one of them
    // closed the connection.
    if let Some(e) = refused
        && matches!(outcome, Outcome::Continue)
    {
        server.stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
        server.stats.error(&e.message_bytes());
        if let Some(c) = &ctx.session.client {
            log::debug!(
                "Protocol error ({e}) from client: id={} addr={}",
                c.id,
                c.addr
            );
        }
        // Under CLIENT REPLY OFF or SKIP Redis drops this reply as any other.
        if ctx.session.answers() {
            encode(&e.to_frame(), ctx.session.protocol, wbuf);
        }
        outcome = Outcome::ProtocolError;
    }
    if let Some(c) = &ctx.session.client {
        c.qbuf.store(rbuf.len(), Ordering::Relaxed);
        if ran {
            c.last_active_ms.store(server.now_ms(), Ordering::Relaxed);
        }
    }
    ctx.session.tally.flush(&server.stats);
    flush(stream, wbuf, ctx).await?;
    Ok(outcome)
}

/// Which run a request may join: consecutive requests of one kind (and, for HSETs, one key) run
/// together.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RunKind {
    Set,
    Hset,
    Incr,
    /// A GET, answered in place (not a run).
    Get,
    Alone,
}

fn run_kind(ctx: &Ctx<'_>, request: &Request) -> RunKind {
    if plain_set(ctx, request) {
        RunKind::Set
    } else if plain_hset(ctx, request) {
        RunKind::Hset
    } else if plain_incr(ctx, request) {
        RunKind::Incr
    } else if plain_get(ctx, request) {
        RunKind::Get
    } else {
        RunKind::Alone
    }
}

/// Encodes a reply into `wbuf`, unless the client turned replies off or skips this one.
fn reply(ctx: &mut Ctx<'_>, frame: &Frame, wbuf: &mut BytesMut) {
    if let Some(exec) = ctx.session.exec_reply.take() {
        // An EXEC that ran its queue decided and encoded its header and each reply as it went
        // (`frame` holds the same replies, for callers of `execute`).
        if exec.header {
            encode_array_header(exec.len, wbuf);
        }
        wbuf.extend_from_slice(&exec.encoded);
        ctx.session.command_done();
        return;
    }
    if ctx.session.answers_reply() {
        encode(frame, ctx.session.protocol, wbuf);
    }
}

async fn flush<S: AsyncWrite + Unpin>(
    stream: &mut S,
    wbuf: &mut BytesMut,
    ctx: &Ctx<'_>,
) -> io::Result<()> {
    if wbuf.is_empty() {
        return Ok(());
    }
    // A client that does not read its replies blocks the write: CLIENT KILL and the idle
    // timeout still end it (as in Redis, where a client none of whose replies can be written
    // is idle; the timer restarts at each write that makes progress), or it would hold its
    // slot, buffers and replies until it reads.
    match &ctx.session.client {
        Some(info) => {
            let killed = || io::Error::new(io::ErrorKind::ConnectionAborted, "killed");
            let mut at = 0;
            while at < wbuf.len() {
                if info.killed.load(Ordering::Acquire) {
                    return Err(killed());
                }
                tokio::select! {
                    // The write first: when it is ready (nearly always) the timer is never
                    // polled, so no timer entry is registered for each flush.
                    biased;
                    n = stream.write(&wbuf[at..]) => match n? {
                        0 => return Err(io::ErrorKind::WriteZero.into()),
                        n => at += n,
                    },
                    _ = info.kill.notified() => return Err(killed()),
                    _ = idle_timer(ctx.shared.server.idle_timeout()) => {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "idle: none of its replies could be written",
                        ));
                    }
                }
            }
        }
        None => stream.write_all(wbuf).await?,
    }
    ctx.shared
        .server
        .stats
        .net_output_bytes
        .fetch_add(wbuf.len() as u64, Ordering::Relaxed);
    wbuf.clear();
    Ok(())
}
