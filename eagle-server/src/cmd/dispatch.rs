//! Running one command: look it up, check its arity, apply it, turn errors into replies.

use bytes::Bytes;
use eagle_core::resp::Frame;

use super::ctx::Ctx;
use super::parse::Parse;
use super::table::{lookup, unknown_command, wrong_arity};

/// Executes one command and returns its reply.
pub fn execute(ctx: &mut Ctx<'_>, argv: Vec<Bytes>) -> Frame {
    let Some(name) = argv.first() else {
        return Frame::Null;
    };
    let Some(spec) = lookup(name) else {
        return unknown_command(&argv).frame();
    };
    if !spec.arity_ok(argv.len()) {
        return wrong_arity(spec.name).frame();
    }
    let mut parse = Parse::new(argv);
    match (spec.run)(&mut parse, ctx) {
        Ok(frame) => frame,
        Err(e) => e.frame(),
    }
}
