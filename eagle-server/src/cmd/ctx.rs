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
    /// CLIENT REPLY OFF: no replies until ON.
    pub reply_off: bool,
    /// Replies still to drop (CLIENT REPLY SKIP drops its own and the next; a successful
    /// SHUTDOWN its own).
    pub skip_replies: u8,
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

impl Session {
    /// Whether the next reply goes to the client (CLIENT REPLY OFF and SKIP), counting it as
    /// given: a reply to skip is used up.
    pub fn answers_reply(&mut self) -> bool {
        if self.skip_replies > 0 {
            self.skip_replies -= 1;
            return false;
        }
        !self.reply_off
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
            skip_replies: 0,
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
