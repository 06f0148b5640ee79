//! SAVE, BGSAVE, LASTSAVE, SHUTDOWN SAVE and their settings as a client sees them: Redis 7's
//! replies and errors, INFO's persistence fields, `dir` / `dbfilename` as protected configs,
//! and a snapshot file where they say.

mod common;

use common::*;
use eagle_core::db::verify_snapshot;
use eagle_core::resp::Frame;

fn info_field(s: &Server, field: &str) -> String {
    s.info_field("persistence", field)
}

#[test]
fn save_writes_dir_dbfilename_and_info_and_lastsave_report_it() {
    let s = Server::start("save-basic", &[]);
    let mut c = s.raw();
    let started = match c.cmd(&["LASTSAVE"]) {
        Frame::Integer(t) => t,
        other => panic!("{other:?}"),
    };
    assert_eq!(info_field(&s, "rdb_saves"), "0");
    assert_eq!(c.cmd(&["SET", "a", "1"]), ok());
    assert_eq!(c.cmd(&["HSET", "h", "f", "v"]), Frame::Integer(1));
    assert_eq!(info_field(&s, "rdb_changes_since_last_save"), "2");
    assert_eq!(c.cmd(&["SAVE"]), ok());
    let file = s.dir.join("dump.eagle");
    assert_eq!(verify_snapshot(&file).unwrap().entries, 2);
    assert_eq!(info_field(&s, "rdb_changes_since_last_save"), "0");
    assert_eq!(info_field(&s, "rdb_saves"), "1");
    assert!(matches!(c.cmd(&["LASTSAVE"]), Frame::Integer(t) if t >= started));
    eventually(10, "the log line", || {
        s.output().contains("DB saved on disk: 2 keys")
    });

    // Arity and syntax as Redis 7.
    assert_eq!(
        c.cmd(&["SAVE", "x"]),
        error("ERR wrong number of arguments for 'save' command")
    );
    assert_eq!(
        c.cmd(&["LASTSAVE", "x"]),
        error("ERR wrong number of arguments for 'lastsave' command")
    );
    assert_eq!(c.cmd(&["BGSAVE", "x"]), error("ERR syntax error"));
    assert_eq!(
        c.cmd(&["BGSAVE", "SCHEDULE"]),
        simple("Background saving started")
    );
    eventually(30, "the background save to end", || {
        info_field(&s, "rdb_bgsave_in_progress") == "0"
    });
    assert_eq!(info_field(&s, "rdb_last_bgsave_status"), "ok");
    assert_eq!(info_field(&s, "rdb_saves"), "2");
    // SAVE is refused inside MULTI, as in Redis.
    assert_eq!(c.cmd(&["MULTI"]), ok());
    assert_eq!(
        c.cmd(&["SAVE"]),
        error("ERR Command not allowed inside a transaction")
    );
}

#[test]
fn a_second_save_while_a_bgsave_runs_is_refused_as_in_redis() {
    let s = Server::start("save-busy", &[]);
    // Enough data that the dump outlasts two pipelined commands by far.
    let mut conn = s.redis();
    let big = vec![b'x'; 1 << 20];
    let mut p = redis::pipe();
    for i in 0..24 {
        p.cmd("SET").arg(format!("big:{i}")).arg(&big[..]);
    }
    let _: () = p.query(&mut conn).unwrap();
    let mut c = s.raw();
    // Pipelined: the second BGSAVE and the SAVE arrive while the first dump runs.
    let mut pipeline = encode_cmd(&[b"BGSAVE"]);
    pipeline.extend(encode_cmd(&[b"BGSAVE"]));
    pipeline.extend(encode_cmd(&[b"SAVE"]));
    c.send(&pipeline);
    assert_eq!(c.read().unwrap(), simple("Background saving started"));
    let busy = error("ERR Background save already in progress");
    assert_eq!(c.read().unwrap(), busy);
    assert_eq!(c.read().unwrap(), busy);
    eventually(30, "the background save to end", || {
        info_field(&s, "rdb_bgsave_in_progress") == "0"
    });
    assert_eq!(
        verify_snapshot(s.dir.join("dump.eagle")).unwrap().entries,
        24
    );
    assert_eq!(c.cmd(&["BGSAVE"]), simple("Background saving started"));
}

#[test]
fn dir_and_dbfilename_are_protected_configs_as_in_redis_7() {
    let s = Server::start("save-config", &[]);
    let mut c = s.raw();
    let canonical = std::fs::canonicalize(&s.dir.0).unwrap();
    assert_eq!(
        c.cmd(&["CONFIG", "GET", "dir"]),
        Frame::Array(vec![bulk("dir"), bulk(canonical.to_str().unwrap())])
    );
    assert_eq!(
        c.cmd(&["CONFIG", "GET", "dbfilename"]),
        Frame::Array(vec![bulk("dbfilename"), bulk("dump.eagle")])
    );
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "dir", "/tmp"]),
        error(
            "ERR CONFIG SET failed (possibly related to argument 'dir') - can't set protected config"
        )
    );
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "enable-protected-configs", "yes"]),
        error(
            "ERR CONFIG SET failed (possibly related to argument 'enable-protected-configs') - can't set immutable config"
        )
    );
    drop(s);

    // `local` lets loopback clients change them; the next SAVE writes there.
    let s = Server::start(
        "save-config-local",
        &[
            "--enable-protected-configs",
            "local",
            "--dbfilename",
            "x.eagle",
        ],
    );
    let sub = s.dir.join("backups");
    std::fs::create_dir(&sub).unwrap();
    let mut c = s.raw();
    assert_eq!(c.cmd(&["SET", "k", "v"]), ok());
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "dir", sub.to_str().unwrap()]),
        ok()
    );
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "dbfilename", "a/b"]),
        error(
            "ERR CONFIG SET failed (possibly related to argument 'dbfilename') - dbfilename can't be a path, just a filename"
        )
    );
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "dir", "/nonexistent/dir"]),
        error(
            "ERR CONFIG SET failed (possibly related to argument 'dir') - No such file or directory"
        )
    );
    assert_eq!(c.cmd(&["SAVE"]), ok());
    assert_eq!(verify_snapshot(sub.join("x.eagle")).unwrap().entries, 1);
    assert!(!s.dir.join("x.eagle").exists());
}

#[test]
fn shutdown_save_writes_a_snapshot_and_a_failed_save_cancels_the_shutdown() {
    let mut s = Server::start("save-shutdown", &[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["SET", "k", "v"]), ok());
    // A directory where the temporary file would go: the save fails, the server stays up.
    let blocker = s.dir.join("dump.eagle.tmp");
    std::fs::create_dir(&blocker).unwrap();
    assert_eq!(
        c.cmd(&["SHUTDOWN", "SAVE"]),
        error("ERR Errors trying to SHUTDOWN. Check logs.")
    );
    assert_eq!(c.cmd(&["PING"]), simple("PONG"));
    eventually(10, "the log line", || {
        s.output()
            .contains("Error trying to save the DB, can't exit.")
    });
    std::fs::remove_dir(&blocker).unwrap();
    c.send(&encode_cmd(&[b"SHUTDOWN", b"SAVE"]));
    assert!(c.closed());
    assert_eq!(s.wait_exit(30).code(), Some(0), "{}", s.output());
    assert_eq!(
        verify_snapshot(s.dir.join("dump.eagle")).unwrap().entries,
        1
    );
}
