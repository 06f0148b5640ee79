//! What a command runs against: the state shared by every connection, and its own session.

use std::sync::Arc;

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
}

impl Session {
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
