//! Eviction over the wire: with `--maxmemory-policy allkeys-random` a full pool takes every
//! write (outside MULTI/EXEC), INFO counts the evicted keys, and every key the server holds
//! survives a restart;
//! CONFIG SET switches the policy at run time (and back to `noeviction`, which answers -OOM);
//! `volatile-ttl` evicts only keys with an expiry, and a command the full pool refused runs
//! again once, not twice;
//! policies EagleDB does not offer are refused with the list of those it does; an evicted key
//! aborts the EXEC of a client that WATCHes it.

mod common;

use common::*;

/// SETs `{prefix}{i}` to `value` for `i` in `0..n` (with `EX ex` if given), in pipelines of 500;
/// every SET must succeed.
fn set_in_batches(
    conn: &mut redis::Connection,
    prefix: &str,
    n: usize,
    value: &[u8],
    ex: Option<u64>,
) {
    for batch in 0..n.div_ceil(500) {
        let mut pipe = redis::pipe();
        for i in batch * 500..((batch + 1) * 500).min(n) {
            let set = pipe.cmd("SET").arg(format!("{prefix}{i}")).arg(value);
            if let Some(ex) = ex {
                set.arg("EX").arg(ex);
            }
            set.ignore();
        }
        let r: redis::RedisResult<()> = pipe.query(conn);
        r.unwrap_or_else(|e| panic!("{prefix} batch {batch}: {e}"));
    }
}

#[test]
fn allkeys_random_takes_every_write_on_a_full_pool_and_counts_what_it_evicts() {
    // common::Server makes a 64 MiB pool: about 15,000 values of 4 KB fit.
    let s = Server::start("evict", &["--maxmemory-policy", "allkeys-random"]);
    let mut conn = s.redis();
    assert_eq!(s.info_field("memory", "maxmemory_policy"), "allkeys-random");
    let value = vec![b'v'; 4000];
    const KEYS: usize = 40_000;
    set_in_batches(&mut conn, "key:", KEYS, &value, None);
    let evicted: usize = s.info_field("stats", "evicted_keys").parse().unwrap();
    let dbsize: usize = redis::cmd("DBSIZE").query(&mut conn).unwrap();
    assert!(evicted > KEYS / 2, "evicted {evicted} of {KEYS}");
    assert_eq!(
        dbsize + evicted,
        KEYS,
        "every key is held or counted as evicted"
    );

    // Inside MULTI/EXEC nothing is evicted (the transaction's frees would wait for its end):
    // a write that does not fit gets -OOM and no key is lost.
    let big = vec![b'b'; 300_000];
    let r: redis::RedisResult<()> = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg("tx:a")
        .arg(&big)
        .query(&mut conn);
    let e = r.unwrap_err();
    assert!(e.to_string().contains("OOM"), "{e:?}");
    assert_eq!(s.info_field("stats", "evicted_keys"), evicted.to_string());
    let same: usize = redis::cmd("DBSIZE").query(&mut conn).unwrap();
    assert_eq!(same, dbsize);

    // Policies EagleDB does not offer are refused, saying which it does.
    let lru: redis::RedisResult<()> = redis::cmd("CONFIG")
        .arg(&["SET", "maxmemory-policy", "allkeys-lru"])
        .query(&mut conn);
    let why = lru.unwrap_err().to_string();
    assert!(
        why.contains("allkeys-random") && why.contains("volatile-ttl"),
        "{why}"
    );

    // Back to noeviction: the full pool answers -OOM.
    assert_eq!(
        s.cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]),
        "OK"
    );
    assert_eq!(
        s.cli(&["CONFIG", "GET", "maxmemory-policy"]),
        "maxmemory-policy\nnoeviction"
    );
    let mut refused = None;
    for i in 0..2000 {
        let r: redis::RedisResult<()> = redis::cmd("SET")
            .arg(format!("more:{i}"))
            .arg(&value)
            .query(&mut conn);
        if let Err(e) = r {
            refused = Some(e);
            break;
        }
    }
    assert_eq!(
        refused.expect("noeviction never refused").code(),
        Some("OOM")
    );
    let held: usize = redis::cmd("DBSIZE").query(&mut conn).unwrap();

    // What the server holds survives a restart, and the flag applies again.
    let mut s = s;
    s.signal(libc::SIGTERM);
    assert!(s.wait_exit(30).success());
    let s = s.restart(&["--maxmemory-policy", "volatile-ttl"]);
    let mut conn = s.redis();
    assert_eq!(s.info_field("memory", "maxmemory_policy"), "volatile-ttl");
    let after: usize = redis::cmd("DBSIZE").query(&mut conn).unwrap();
    assert_eq!(after, held);
    let got: Option<Vec<u8>> = redis::cmd("GET").arg("tx:a").query(&mut conn).unwrap();
    assert_eq!(got, None, "the refused transaction wrote nothing");
}

#[test]
fn volatile_ttl_keeps_persistent_keys_and_a_refused_command_runs_again_only_once() {
    let s = Server::start("evict-ttl", &["--maxmemory-policy", "volatile-ttl"]);
    let mut conn = s.redis();
    let value = vec![b'v'; 4000];
    for k in 0..10 {
        let _: () = redis::cmd("SET")
            .arg(format!("keep:{k}"))
            .arg(&value)
            .query(&mut conn)
            .unwrap();
    }
    // Keys with an expiry, twice what the 64 MiB pool holds.
    set_in_batches(&mut conn, "vol:", 30_000, &value, Some(3600));
    let evicted: usize = s.info_field("stats", "evicted_keys").parse().unwrap();
    assert!(evicted > 10_000, "evicted {evicted}");
    // APPEND rewrites the record into a new block of the same size class, which the full pool
    // has only once a key with an expiry is evicted: a refused APPEND runs again, and must
    // append once. (Blocks the last evictions freed beyond what the SETs needed serve the
    // first APPENDs, so they run, in rounds of ten, until one needed an eviction.)
    let mut rounds = 0;
    let mut after = evicted;
    while after == evicted && rounds < 100 {
        for k in 0..10 {
            let len: usize = redis::cmd("APPEND")
                .arg(format!("keep:{k}"))
                .arg("x")
                .query(&mut conn)
                .unwrap();
            assert_eq!(len, 4000 + rounds + 1, "APPEND {rounds} of keep:{k}");
        }
        rounds += 1;
        after = s.info_field("stats", "evicted_keys").parse().unwrap();
    }
    assert!(after > evicted, "the APPENDs never needed an eviction");
    for k in 0..10 {
        let len: usize = redis::cmd("STRLEN")
            .arg(format!("keep:{k}"))
            .query(&mut conn)
            .unwrap();
        assert_eq!(len, 4000 + rounds);
    }
}

#[test]
fn an_eviction_aborts_the_exec_of_a_client_watching_the_evicted_key() {
    let s = Server::start("evict-watch", &["--maxmemory-policy", "allkeys-random"]);
    let mut watcher = s.redis();
    let mut writer = s.redis();
    let value = vec![b'v'; 4000];
    const WATCHED: usize = 2000;
    let watched: Vec<String> = (0..WATCHED).map(|i| format!("w:{i}")).collect();
    set_in_batches(&mut watcher, "w:", WATCHED, &value, None);
    let () = redis::cmd("WATCH")
        .arg(&watched)
        .query(&mut watcher)
        .unwrap();
    // Another client fills the pool with keys of its own: only eviction touches the watched
    // keys.
    set_in_batches(&mut writer, "fill:", 30_000, &value, None);
    let left: usize = redis::cmd("EXISTS")
        .arg(&watched)
        .query(&mut writer)
        .unwrap();
    assert!(left < WATCHED, "no watched key was evicted");
    let () = redis::cmd("MULTI").query(&mut watcher).unwrap();
    let queued: String = redis::cmd("SET")
        .arg("after")
        .arg("1")
        .query(&mut watcher)
        .unwrap();
    assert_eq!(queued, "QUEUED");
    let exec: redis::Value = redis::cmd("EXEC").query(&mut watcher).unwrap();
    assert_eq!(
        exec,
        redis::Value::Nil,
        "EXEC ran although a watched key was evicted"
    );
}
