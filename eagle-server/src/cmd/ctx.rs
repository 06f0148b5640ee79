//! What a command runs against: the state shared by every connection, and its own session.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use eagle_core::Db;
use eagle_core::resp::Protocol;

/// State shared by all connections.
pub struct Shared {
    /// The keyspace.
    pub db: Arc<Db>,
    /// Server-wide state (configuration, clients, statistics, shutdown).
    pub server: crate::state::ServerState,
}

/// One client connection's state.
pub struct Session {
    /// CLIENT ID.
    pub id: u64,
    /// RESP2 until `HELLO 3`.
    pub protocol: Protocol,
    /// Whether AUTH succeeded (or no password is set).
    pub authenticated: bool,
    /// CLIENT SETNAME.
    pub name: Option<Bytes>,
    /// Set by QUIT (and SHUTDOWN): close after this reply.
    pub close: bool,
    /// Transaction state (MULTI/EXEC/WATCH).
    pub multi: crate::cmd::multi::MultiState,
    /// CLIENT REPLY OFF: no replies until ON (or RESET).
    pub reply_off: bool,
    /// The replies of the command running now are dropped: the command before it was CLIENT
    /// REPLY SKIP (Redis's `CLIENT_REPLY_SKIP`). Cleared by ON.
    pub reply_skip: bool,
    /// CLIENT REPLY SKIP ran in this command (at top level, or queued in the EXEC running now):
    /// the next command's replies are dropped (`CLIENT_REPLY_SKIP_NEXT`). Cleared by RESET.
    pub skip_next: bool,
    /// The command that just ran sends no reply of its own: CLIENT REPLY OFF and SKIP (Redis
    /// adds none, so an EXEC running one answers fewer elements than its array header says),
    /// and a successful SHUTDOWN.
    pub silent: bool,
    /// Set by an EXEC that ran its queue: whether its array header goes out (the reply state
    /// when it began), how many commands it ran, and the replies that went out, each decided
    /// and encoded when its command ended, as Redis sends them.
    pub exec_reply: Option<ExecReply>,
    /// The last command's name (CLIENT LIST `cmd=`).
    pub last_cmd: &'static str,
    /// This connection's entry in the client registry (none outside a connection).
    pub client: Option<Arc<crate::state::ClientInfo>>,
    /// Commands run since the counters were last updated.
    pub tally: Tally,
}

/// Command counts and times kept by one connection and added to the server's counters once per
/// batch of pipelined commands (and before INFO or CONFIG reads or resets them), so two worker
/// threads do not pass the counters' cache lines back and forth on every command.
#[derive(Default)]
pub struct Tally {
    total: u64,
    /// Per command; a batch rarely holds more than a few kinds.
    by_cmd: Vec<Counted>,
}

/// One command's runs in a [`Tally`].
struct Counted {
    name: &'static str,
    calls: u64,
    nanos: u64,
    /// Runs per latency bucket.
    buckets: crate::latency::Counts,
}

impl Tally {
    /// Counts one run of `name` that took `nanos`.
    #[inline]
    pub fn add(&mut self, name: &'static str, nanos: u64) {
        self.total += 1;
        // The names are the command table's statics: the same command, the same pointer and
        // length (`ptr::eq` on `&str` compares both).
        let e = match self.by_cmd.iter().position(|e| std::ptr::eq(e.name, name)) {
            Some(i) => &mut self.by_cmd[i],
            None => {
                self.by_cmd.push(Counted {
                    name,
                    calls: 0,
                    nanos: 0,
                    buckets: [0; crate::latency::BUCKETS],
                });
                self.by_cmd.last_mut().expect("just pushed")
            }
        };
        e.calls += 1;
        e.nanos += nanos;
        e.buckets[crate::latency::bucket_of(nanos)] += 1;
    }

    /// Adds what was counted to the server's counters and starts over.
    pub fn flush(&mut self, stats: &crate::state::Stats) {
        if self.total == 0 {
            return;
        }
        stats
            .commands_processed
            .fetch_add(self.total, Ordering::Relaxed);
        self.total = 0;
        for e in self.by_cmd.drain(..) {
            if let Some(stat) = stats.cmds().get(e.name) {
                stat.calls.fetch_add(e.calls, Ordering::Relaxed);
                stat.usec.fetch_add(e.nanos / 1000, Ordering::Relaxed);
                stat.latency.add(&e.buckets, e.nanos);
            }
        }
    }
}

/// An EXEC's reply as it goes out (see [`Session::exec_reply`]).
#[derive(Debug)]
pub struct ExecReply {
    /// Whether the array header goes out.
    pub header: bool,
    /// The element count the header gives: every command the transaction ran.
    pub len: usize,
    /// The replies that go out, each encoded in the protocol of its time (a queued HELLO
    /// changes it for the replies after it, and for its own).
    pub encoded: bytes::BytesMut,
}

impl Session {
    /// Whether the reply of the command that just ran goes out, under CLIENT REPLY OFF and
    /// SKIP as Redis applies them to a reply when it is added. Also used for each command an
    /// EXEC runs, and for EXEC's array header when it begins.
    pub fn answers(&mut self) -> bool {
        let silent = std::mem::take(&mut self.silent);
        !silent && !self.reply_off && !self.reply_skip
    }

    /// Ends a top-level command (Redis's `resetClient`): a SKIP it ran drops the next
    /// command's replies.
    pub fn command_done(&mut self) {
        self.reply_skip = std::mem::take(&mut self.skip_next);
    }

    /// Whether the reply of the top-level command that just ran goes out; ends the command.
    pub fn answers_reply(&mut self) -> bool {
        let answer = self.answers();
        self.command_done();
        answer
    }

    /// A new session with this id.
    pub fn new(id: u64) -> Session {
        Session {
            id,
            protocol: Protocol::Resp2,
            authenticated: false,
            name: None,
            close: false,
            multi: Default::default(),
            reply_off: false,
            reply_skip: false,
            skip_next: false,
            silent: false,
            exec_reply: None,
            last_cmd: "NULL",
            client: None,
            tally: Tally::default(),
        }
    }
}

/// A command's view: the shared state and the calling session.
pub struct Ctx<'a> {
    /// Shared by all connections.
    pub shared: &'a Shared,
    /// The caller.
    pub session: &'a mut Session,
}

impl Ctx<'_> {
    /// The keyspace.
    pub fn db(&self) -> &Db {
        &self.shared.db
    }

    /// Server-wide state.
    pub fn server(&self) -> &crate::state::ServerState {
        &self.shared.server
    }
}
