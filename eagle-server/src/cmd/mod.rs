//! Commands, one file per family, each command a type that parses its arguments and applies
//! itself (`table.rs`), dispatched by `dispatch.rs`.

mod connection;
mod ctx;
mod dispatch;
mod expire;
mod hash;
mod keys;
pub mod multi;
mod parse;
mod runs;
mod save;
mod server;
mod strings;
mod table;

pub use ctx::{Ctx, Session, Shared};
pub use dispatch::{Request, execute, execute_request};
pub use parse::{CmdError, Parse};
pub use runs::{
    execute_get, execute_hsets, execute_incrs, execute_sets, plain_get, plain_hset, plain_incr,
    plain_set, same_hash,
};
pub use table::{Command, NameMap, Spec, lookup, table};

/// Every family's commands.
static FAMILIES: &[&[Spec]] = &[
    strings::SPECS,
    keys::SPECS,
    expire::SPECS,
    hash::SPECS,
    connection::SPECS,
    server::SPECS,
    save::SPECS,
    multi::SPECS,
];
