//! A full pool over the wire: writes that do not fit get Redis's `-OOM` error and change
//! nothing, the server keeps serving, DEL and EXPIRE still work, space freed by DEL takes new
//! writes, and a restart finds every acknowledged key.

mod common;

use common::*;

#[test]
fn a_full_pool_answers_oom_keeps_serving_and_loses_nothing() {
    // common::Server makes a 64 MiB pool.
    let s = Server::start("full", &[]);
    let mut conn = s.redis();
    let value = vec![b'v'; 4000];
    let mut stored = 0usize;
    let err = loop {
        let r: redis::RedisResult<()> = redis::cmd("SET")
            .arg(format!("key:{stored}"))
            .arg(&value)
            .query(&mut conn);
        match r {
            Ok(()) => stored += 1,
            Err(e) => break e,
        }
        assert!(
            stored < 100_000,
            "a 64 MiB pool took {stored} values of 4 KB"
        );
    };
    assert_eq!(err.code(), Some("OOM"), "{err:?}");
    assert!(stored > 1000, "only {stored} keys fit");

    // A multi-key write is refused whole: none of its keys appears. (The fill may have stopped
    // at a split rather than a record, leaving small blocks free; a value of a whole chunk
    // cannot fit either way, since no chunk outside the reserve is free.)
    let big = vec![b'v'; 100_000];
    let mset: redis::RedisResult<()> = redis::cmd("MSET")
        .arg("new:a")
        .arg("small")
        .arg("new:b")
        .arg(&big)
        .arg("new:c")
        .arg("small")
        .query(&mut conn);
    assert_eq!(mset.unwrap_err().code(), Some("OOM"));
    let exists: u64 = redis::cmd("EXISTS")
        .arg(&["new:a", "new:b", "new:c"])
        .query(&mut conn)
        .unwrap();
    assert_eq!(exists, 0);

    // Reads, EXPIRE and DEL work on the full pool; deletes make room for new writes.
    let first: Vec<u8> = redis::cmd("GET").arg("key:0").query(&mut conn).unwrap();
    assert_eq!(first, value);
    let set: bool = redis::cmd("EXPIRE")
        .arg("key:1")
        .arg(100_000)
        .query(&mut conn)
        .unwrap();
    assert!(set);
    let doomed: Vec<String> = (2..200).map(|i| format!("key:{i}")).collect();
    let deleted: u64 = redis::cmd("DEL").arg(&doomed).query(&mut conn).unwrap();
    assert_eq!(deleted, 198);
    let _: () = redis::cmd("SET")
        .arg("after-delete")
        .arg(&value)
        .query(&mut conn)
        .unwrap();
    assert!(s.cli(&["SET", "cli-key", &"x".repeat(4000)]) == "OK");
    assert_eq!(s.cli(&["DBSIZE"]), (stored - 198 + 2).to_string());

    // Every acknowledged key survives a restart.
    let mut s = s;
    s.signal(libc::SIGTERM);
    assert!(s.wait_exit(30).success());
    let s = s.restart(&[]);
    let mut conn = s.redis();
    for i in (0..stored).filter(|i| !(2..200).contains(i)) {
        let v: Vec<u8> = redis::cmd("GET")
            .arg(format!("key:{i}"))
            .query(&mut conn)
            .unwrap();
        assert_eq!(v, value, "key:{i}");
    }
    let ttl: i64 = redis::cmd("TTL").arg("key:1").query(&mut conn).unwrap();
    assert!(ttl > 0, "{ttl}");
    assert_eq!(s.cli(&["DBSIZE"]), (stored - 198 + 2).to_string());
}
