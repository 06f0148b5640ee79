//! Server-wide state shared by every connection.

/// Configuration, clients, statistics and shutdown (to be written).
#[derive(Default)]
pub struct ServerState {}
