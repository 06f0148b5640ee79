//! Stopping and restarting on the same pool: SIGTERM and SHUTDOWN drain and close the pool
//! cleanly (exit 0, the next banner says so, every key is there); `kill -9` loses nothing that
//! was acknowledged; a SIGTERM in the middle of a pipeline answers what had arrived.

mod common;

use common::*;
use eagle_core::resp::Frame;

fn write_keys(s: &Server, n: usize) {
    let mut conn = s.redis();
    let mut p = redis::pipe();
    for i in 0..n {
        p.cmd("SET")
            .arg(format!("key:{i}"))
            .arg(format!("value:{i}"));
    }
    p.cmd("INCRBY").arg("counter").arg(n);
    let _: () = p.query(&mut conn).unwrap();
    assert_eq!(s.cli(&["SET", "from-cli", "yes"]), "OK");
}

fn check_keys(s: &Server, n: usize) {
    let mut conn = s.redis();
    let keys: Vec<String> = (0..n).map(|i| format!("key:{i}")).collect();
    let values: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query(&mut conn).unwrap();
    for (i, v) in values.iter().enumerate() {
        assert_eq!(v.as_deref(), Some(format!("value:{i}").as_str()), "key:{i}");
    }
    assert_eq!(s.cli(&["GET", "counter"]), n.to_string());
    assert_eq!(s.cli(&["GET", "from-cli"]), "yes");
    assert_eq!(s.cli(&["DBSIZE"]), (n + 2).to_string());
}

#[test]
fn sigterm_closes_cleanly_and_a_restart_finds_everything() {
    let mut s = Server::start("sigterm", &[]);
    assert!(s.output().contains("created (new pool)"), "{}", s.output());
    write_keys(&s, 2000);
    let mut idle = s.raw();
    assert_eq!(idle.cmd(&["PING"]), simple("PONG"));
    s.signal(libc::SIGTERM);
    let status = s.wait_exit(30);
    assert_eq!(status.code(), Some(0), "{}", s.output());
    assert!(s.output().contains("Received SIGTERM scheduling shutdown"));
    assert!(
        s.output().contains("ready to exit, bye bye"),
        "{}",
        s.output()
    );
    assert!(idle.closed(), "an idle client was left open");

    let s2 = s.restart(&[]);
    let out = s2.output();
    assert!(out.contains("opened after a clean shutdown"), "{out}");
    assert!(out.contains("2002 recovered"), "{out}");
    check_keys(&s2, 2000);
}

#[test]
fn shutdown_command_closes_cleanly_and_a_restart_finds_everything() {
    let mut s = Server::start("shutdown", &[]);
    write_keys(&s, 500);
    let mut other = s.raw();
    assert_eq!(other.cmd(&["PING"]), simple("PONG"));
    let mut c = s.raw();
    assert_eq!(
        c.cmd(&["SHUTDOWN", "ABORT"]),
        error("ERR No shutdown in progress.")
    );
    assert_eq!(c.cmd(&["SHUTDOWN", "LATER"]), error("ERR syntax error"));
    // Like Redis: no reply, the connection closes, the process exits 0.
    c.send(&encode_cmd(&[b"SHUTDOWN", b"NOSAVE"]));
    assert!(c.closed());
    assert_eq!(s.wait_exit(30).code(), Some(0), "{}", s.output());
    assert!(s.output().contains("User requested shutdown"));
    assert!(other.closed());

    let s2 = s.restart(&[]);
    assert!(
        s2.output().contains("opened after a clean shutdown"),
        "{}",
        s2.output()
    );
    check_keys(&s2, 500);
    // And through redis-cli.
    let mut s2 = s2;
    let _ = s2.cli(&["SHUTDOWN", "SAVE"]);
    assert_eq!(s2.wait_exit(30).code(), Some(0));
    let s3 = s2.restart(&[]);
    assert!(s3.output().contains("opened after a clean shutdown"));
    check_keys(&s3, 500);
}

#[test]
fn kill_9_loses_no_acknowledged_write() {
    let mut s = Server::start("kill9", &[]);
    write_keys(&s, 3000);
    // A transaction and single writes acknowledged just before the kill.
    let mut c = s.raw();
    assert_eq!(c.cmd(&["MULTI"]), ok());
    assert_eq!(c.cmd(&["SET", "tx:a", "1"]), simple("QUEUED"));
    assert_eq!(c.cmd(&["SET", "tx:b", "2"]), simple("QUEUED"));
    assert_eq!(c.cmd(&["EXEC"]), Frame::Array(vec![ok(), ok()]));
    assert_eq!(c.cmd(&["MSET", "m1", "x", "m2", "y"]), ok());
    s.kill9();

    let s2 = s.restart(&[]);
    let out = s2.output();
    assert!(out.contains("recovered after a crash"), "{out}");
    let mut c = s2.raw();
    assert_eq!(c.cmd(&["GET", "tx:a"]), bulk("1"));
    assert_eq!(c.cmd(&["GET", "tx:b"]), bulk("2"));
    assert_eq!(c.cmd(&["GET", "m2"]), bulk("y"));
    assert_eq!(c.cmd(&["GET", "counter"]), bulk("3000"));
    let mut s2 = s2;
    s2.signal(libc::SIGTERM);
    assert_eq!(s2.wait_exit(30).code(), Some(0));
    let s3 = s2.restart(&[]);
    assert!(s3.output().contains("opened after a clean shutdown"));
    let mut conn = s3.redis();
    let n: i64 = redis::cmd("DBSIZE").query(&mut conn).unwrap();
    assert_eq!(n, 3000 + 2 + 4);
}

#[test]
fn sigterm_during_a_pipeline_answers_what_arrived_and_keeps_what_it_acknowledged() {
    let mut s = Server::start("drain", &[]);
    let mut c = s.raw();
    let mut batch = Vec::new();
    const N: usize = 20_000;
    for i in 0..N {
        batch.extend(encode_cmd(&[
            b"SET",
            format!("d:{i}").as_bytes(),
            format!("{i}").as_bytes(),
        ]));
    }
    c.send(&batch);
    s.signal(libc::SIGTERM);
    let mut acked = 0;
    while let Some(f) = c.read() {
        assert_eq!(f, ok(), "reply {acked}");
        acked += 1;
    }
    assert_eq!(s.wait_exit(30).code(), Some(0), "{}", s.output());
    assert!(acked > 0, "nothing was answered");

    let s2 = s.restart(&[]);
    assert!(s2.output().contains("opened after a clean shutdown"));
    let mut c = s2.raw();
    for i in (0..acked).step_by(97).chain([acked - 1]) {
        assert_eq!(
            c.cmd(&["GET", &format!("d:{i}")]),
            bulk(&i.to_string()),
            "acknowledged d:{i} lost ({acked} acknowledged)"
        );
    }
}
