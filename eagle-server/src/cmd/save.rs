//! Snapshot commands: SAVE, BGSAVE, LASTSAVE (the dumps themselves are `crate::save`). Both
//! write `dir`/`dbfilename` (a snapshot file, docs/format.md), restored with
//! `eagle-admin restore`.

use bytes::Bytes;
use eagle_core::resp::Frame;

use super::ctx::Ctx;
use super::parse::{CmdError, Parse};
use super::table::{Command, Spec, run};

fn in_progress() -> CmdError {
    CmdError::new("ERR Background save already in progress")
}

/// SAVE: dumps now; the reply comes once the file is durable.
struct Save;
impl Command for Save {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        p.finish()?;
        Ok(Save)
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        let server = ctx.server();
        if server.saves.in_progress() {
            return Err(in_progress());
        }
        let path = server.with_config(|c| c.snapshot_path());
        server
            .saves
            .save(ctx.db(), &path)
            .map_err(|e| CmdError::new(format!("ERR {e}")))?;
        Ok(Frame::ok())
    }
}

/// BGSAVE [SCHEDULE]: dumps on a thread of its own, replying once the point in time is fixed.
/// (Inside EXEC the snapshot is taken at BGSAVE's place in the transaction; Redis schedules it
/// for after the transaction and replies "Background saving scheduled".)
struct BgSave;
impl Command for BgSave {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        if let Some(opt) = p.maybe_bytes()
            && !opt.eq_ignore_ascii_case(b"SCHEDULE")
        {
            return Err(CmdError::syntax());
        }
        p.finish()?;
        Ok(BgSave)
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        let shared = ctx.shared;
        let server = &shared.server;
        let path = server.with_config(|c| c.snapshot_path());
        match server.saves.start_background(shared.db.clone(), path) {
            Ok(true) => Ok(Frame::Simple(Bytes::from_static(
                b"Background saving started",
            ))),
            Ok(false) => Err(in_progress()),
            Err(e) => {
                log::warn!("Can't save in background: {e}");
                Err(CmdError::new(format!("ERR Can't save in background: {e}")))
            }
        }
    }
}

/// LASTSAVE: Unix time of the last successful save (the server's start before any).
struct LastSave;
impl Command for LastSave {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        p.finish()?;
        Ok(LastSave)
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        Ok(Frame::Integer(ctx.server().saves.last_save() as i64))
    }
}

/// This family's commands.
#[rustfmt::skip]
pub static SPECS: &[Spec] = &[
    Spec { name: "save", arity: 1, flags: &["admin", "noscript", "no_async_loading", "no_multi"], keys: (0, 0, 0), run: run::<Save> },
    Spec { name: "bgsave", arity: -1, flags: &["admin", "noscript", "no_async_loading"], keys: (0, 0, 0), run: run::<BgSave> },
    Spec { name: "lastsave", arity: 1, flags: &["loading", "stale", "fast"], keys: (0, 0, 0), run: run::<LastSave> },
];
