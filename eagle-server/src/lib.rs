//! EagleDB's Redis-protocol server: commands (`cmd`), shared server state (`state`).

pub mod cmd;
pub mod state;
