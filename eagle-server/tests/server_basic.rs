//! The server end to end with real clients: redis-cli round trips, RESP3 through HELLO with the
//! `redis` crate, AUTH and NOAUTH, CLIENT, INFO (keyspace hits and misses), CONFIG, the metrics
//! endpoint, idle timeout, worker threads pinned to CPUs, and how the command line and the
//! configuration file are checked.

mod common;

use std::process::Command;

use common::*;
use eagle_core::resp::Frame;

#[test]
fn set_and_get_round_trip_through_redis_cli() {
    let s = Server::start("cli", &[]);
    assert_eq!(s.cli(&["SET", "greeting", "hello world"]), "OK");
    assert_eq!(s.cli(&["GET", "greeting"]), "hello world");
    assert_eq!(s.cli(&["INCRBY", "n", "41"]), "41");
    assert_eq!(s.cli(&["INCR", "n"]), "42");
    assert_eq!(s.cli(&["GET", "missing"]), "");
    assert_eq!(s.cli(&["DBSIZE"]), "2");
    assert_eq!(s.cli(&["PING"]), "PONG");
    assert_eq!(s.cli(&["ECHO", "x y"]), "x y");
    // The same data through the redis crate.
    let mut c = s.redis();
    let v: String = redis::cmd("GET").arg("greeting").query(&mut c).unwrap();
    assert_eq!(v, "hello world");
    let err = redis::cmd("NOSUCH")
        .arg("a")
        .query::<String>(&mut c)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("unknown command 'NOSUCH', with args beginning with: 'a'"),
        "{err}"
    );
}

#[test]
fn hello_3_switches_to_resp3_and_replies_a_map() {
    let s = Server::start("hello", &[]);
    let mut raw = s.raw();
    // RESP2: a map is a flat array.
    match raw.cmd(&["HELLO"]) {
        Frame::Map(pairs) => panic!("RESP2 got a native map: {pairs:?}"),
        Frame::Array(items) => assert_eq!(items.len(), 14),
        other => panic!("{other:?}"),
    }
    let Frame::Map(pairs) = raw.cmd(&["HELLO", "3"]) else {
        panic!("HELLO 3 did not reply a map");
    };
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(key, _)| *key == bulk(k))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(get("server"), Some(bulk("redis")));
    assert_eq!(get("proto"), Some(Frame::Integer(3)));
    assert_eq!(get("mode"), Some(bulk("standalone")));
    assert!(matches!(get("id"), Some(Frame::Integer(id)) if id > 0));
    // Now nulls are RESP3 nulls, and HELLO 2 switches back.
    assert_eq!(raw.cmd(&["GET", "nothing"]), Frame::Null);
    assert_eq!(
        raw.cmd(&["HELLO", "4"]),
        error("NOPROTO unsupported protocol version")
    );
    assert_eq!(
        raw.cmd(&["HELLO", "three"]),
        error("ERR Protocol version is not an integer or out of range")
    );
    assert!(matches!(raw.cmd(&["HELLO", "2"]), Frame::Array(_)));

    // The redis crate negotiates RESP3 itself.
    let client = redis::Client::open(format!("{}?protocol=resp3", s.url())).unwrap();
    let mut c = client.get_connection().unwrap();
    let v: redis::Value = redis::cmd("HELLO").arg(3).query(&mut c).unwrap();
    assert!(matches!(v, redis::Value::Map(_)), "{v:?}");
    let v: redis::Value = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxclients")
        .query(&mut c)
        .unwrap();
    let redis::Value::Map(pairs) = v else {
        panic!("CONFIG GET in RESP3 is a map: {v:?}")
    };
    assert_eq!(pairs.len(), 1);
}

#[test]
fn requirepass_gates_commands_until_auth() {
    let s = Server::start("auth", &["--requirepass", "s3cret"]);
    let mut raw = s.raw();
    let noauth = error("NOAUTH Authentication required.");
    assert_eq!(raw.cmd(&["GET", "k"]), noauth);
    assert_eq!(raw.cmd(&["SET", "k", "v"]), noauth);
    // Unknown commands and arity errors come first, as in Redis.
    assert_eq!(
        raw.cmd(&["GET"]),
        error("ERR wrong number of arguments for 'get' command")
    );
    let wrongpass = error("WRONGPASS invalid username-password pair or user is disabled.");
    assert_eq!(raw.cmd(&["AUTH", "nope"]), wrongpass);
    assert_eq!(raw.cmd(&["AUTH", "someone", "s3cret"]), wrongpass);
    assert_eq!(raw.cmd(&["GET", "k"]), noauth);
    assert!(matches!(
        raw.cmd(&["HELLO", "3", "SETNAME", "early"]),
        Frame::Error(e) if e.starts_with(b"NOAUTH HELLO must be called with the client already authenticated")
    ));
    assert_eq!(raw.cmd(&["AUTH", "s3cret"]), ok());
    // The refused HELLO still named the client, as Redis 7.0 does (and kept RESP2).
    assert_eq!(raw.cmd(&["CLIENT", "GETNAME"]), bulk("early"));
    assert_eq!(raw.cmd(&["SET", "k", "v"]), ok());
    assert_eq!(raw.cmd(&["GET", "k"]), bulk("v"));
    // Before AUTH, Redis's limits on request size (nothing sent unauthenticated can make the
    // server hold much); an AUTH lifts them for the next request of the same pipeline.
    let mut fresh = s.raw();
    fresh.send(b"*11\r\n");
    assert_eq!(
        fresh.read(),
        Some(error(
            "ERR Protocol error: unauthenticated multibulk length"
        ))
    );
    assert_eq!(fresh.read(), None, "the connection closes");
    let mut fresh = s.raw();
    fresh.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$16385\r\n");
    assert_eq!(
        fresh.read(),
        Some(error("ERR Protocol error: unauthenticated bulk length"))
    );
    let mut fresh = s.raw();
    let large = "v".repeat(100_000);
    let mut pipeline = encode_cmd(&[b"AUTH", b"s3cret"]);
    pipeline.extend(encode_cmd(&[b"SET", b"large", large.as_bytes()]));
    fresh.send(&pipeline);
    assert_eq!(fresh.read(), Some(ok()));
    assert_eq!(fresh.read(), Some(ok()));
    // RESET forgets the authentication.
    assert_eq!(raw.cmd(&["RESET"]), simple("RESET"));
    assert_eq!(raw.cmd(&["GET", "k"]), noauth);
    // HELLO AUTH authenticates and switches protocol at once.
    let Frame::Map(_) = raw.cmd(&["HELLO", "3", "AUTH", "default", "s3cret"]) else {
        panic!("HELLO AUTH failed");
    };
    assert_eq!(raw.cmd(&["GET", "k"]), bulk("v"));

    // Real clients: the redis crate with a password in the URL, redis-cli -a.
    let mut c = redis::Client::open(format!("redis://:s3cret@127.0.0.1:{}/", s.port))
        .unwrap()
        .get_connection()
        .unwrap();
    let v: String = redis::cmd("GET").arg("k").query(&mut c).unwrap();
    assert_eq!(v, "v");
    assert_eq!(
        s.cli(&["--no-auth-warning", "-a", "s3cret", "GET", "k"]),
        "v"
    );
    assert!(s.cli(&["GET", "k"]).contains("NOAUTH"));

    // Without a password, AUTH <password> is Redis's configuration error.
    let open = Server::start("noauth", &[]);
    assert_eq!(
        open.raw().cmd(&["AUTH", "x"]),
        error(
            "ERR AUTH <password> called without any password configured for the default user. \
             Are you sure your configuration is correct?"
        )
    );
    assert_eq!(open.raw().cmd(&["AUTH", "default", "anything"]), ok());
}

#[test]
fn client_commands_select_info_and_config() {
    let s = Server::start("client", &[]);
    let mut a = s.raw();
    let mut b = s.raw();
    let Frame::Integer(a_id) = a.cmd(&["CLIENT", "ID"]) else {
        panic!()
    };
    assert_eq!(a.cmd(&["CLIENT", "SETNAME", "alpha"]), ok());
    assert_eq!(a.cmd(&["CLIENT", "GETNAME"]), bulk("alpha"));
    assert_eq!(
        a.cmd(&["CLIENT", "SETNAME", "has space"]),
        error("ERR Client names cannot contain spaces, newlines or special characters.")
    );
    let Frame::Bulk(list) = b.cmd(&["CLIENT", "LIST"]) else {
        panic!()
    };
    let list = String::from_utf8_lossy(&list).into_owned();
    assert!(list.contains(&format!("id={a_id} ")), "{list}");
    assert!(list.contains("name=alpha"), "{list}");
    assert_eq!(list.lines().count(), 2, "{list}");
    let Frame::Bulk(info) = a.cmd(&["CLIENT", "INFO"]) else {
        panic!()
    };
    assert!(String::from_utf8_lossy(&info).contains("cmd=client"));
    assert_eq!(
        b.cmd(&["CLIENT", "FOO"]),
        error("ERR unknown subcommand 'FOO'. Try CLIENT HELP.")
    );

    assert_eq!(a.cmd(&["SELECT", "0"]), ok());
    assert_eq!(
        a.cmd(&["SELECT", "1"]),
        error("ERR DB index is out of range")
    );

    // INFO with Redis's field names and the Eagle section.
    a.cmd(&["SET", "k", "v"]);
    let Frame::Bulk(info) = b.cmd(&["INFO"]) else {
        panic!()
    };
    let info = String::from_utf8_lossy(&info).into_owned();
    for field in [
        "redis_version:7.0.0\r\n",
        "connected_clients:2\r\n",
        "used_memory:",
        "db0:keys=1,expires=0,avg_ttl=0\r\n",
        "# Eagle\r\n",
        "pool_kind:emulated\r\n",
        "wal_bytes_capacity:",
        "recovery_time_ms:",
        "last_open:created\r\n",
    ] {
        assert!(info.contains(field), "INFO lacks {field:?}:\n{info}");
    }
    // The reserve is at least one chunk, and free chunks are counted beside it.
    let number = |name: &str| -> u64 {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.parse().ok())
            .unwrap_or_else(|| panic!("INFO lacks {name}:\n{info}"))
    };
    assert!(number("pool_reserved_chunks") >= 1, "{info}");
    assert!(number("pool_free_chunks") >= 1, "{info}");
    let Frame::Bulk(one) = b.cmd(&["INFO", "keyspace"]) else {
        panic!()
    };
    assert_eq!(
        &one[..],
        b"# Keyspace\r\ndb0:keys=1,expires=0,avg_ttl=0\r\n"
    );
    b.cmd(&["SET", "ttl-key", "v", "EX", "1000"]);
    let Frame::Bulk(two) = b.cmd(&["INFO", "keyspace"]) else {
        panic!()
    };
    let two = String::from_utf8_lossy(&two).into_owned();
    assert!(two.contains("db0:keys=2,expires=1,avg_ttl="), "{two}");
    b.cmd(&["DEL", "ttl-key"]);

    // CONFIG GET globs, CONFIG SET of settable and unknown parameters.
    let Frame::Array(kv) = b.cmd(&["CONFIG", "GET", "*clients"]) else {
        panic!()
    };
    assert_eq!(kv, vec![bulk("maxclients"), bulk("10000")]);
    let Frame::Array(kv) = b.cmd(&["CONFIG", "GET", "appendonly", "save", "databases"]) else {
        panic!()
    };
    assert_eq!(
        kv,
        vec![
            bulk("save"),
            bulk(""),
            bulk("appendonly"),
            bulk("no"),
            bulk("databases"),
            bulk("1")
        ]
    );
    assert_eq!(
        b.cmd(&["CONFIG", "SET", "fo", "1"]),
        error("ERR Unknown option or number of arguments for CONFIG SET - 'fo'")
    );
    assert_eq!(
        b.cmd(&["CONFIG", "SET", "maxclients", "lots"]),
        error(
            "ERR CONFIG SET failed (possibly related to argument 'maxclients') - argument \
             couldn't be parsed into an integer"
        )
    );
    assert_eq!(
        b.cmd(&["CONFIG", "SET", "port", "1"]),
        error(
            "ERR CONFIG SET failed (possibly related to argument 'port') - can't set immutable config"
        )
    );
    assert_eq!(b.cmd(&["CONFIG", "SET", "maxclients", "77"]), ok());
    let Frame::Array(kv) = b.cmd(&["CONFIG", "GET", "maxclients"]) else {
        panic!()
    };
    assert_eq!(kv, vec![bulk("maxclients"), bulk("77")]);

    // COMMAND is built from the command table.
    let Frame::Integer(n) = b.cmd(&["COMMAND", "COUNT"]) else {
        panic!()
    };
    let Frame::Array(all) = b.cmd(&["COMMAND"]) else {
        panic!()
    };
    assert_eq!(all.len() as i64, n);
    let Frame::Array(get) = b.cmd(&["COMMAND", "INFO", "get", "nosuch"]) else {
        panic!()
    };
    assert_eq!(get[1], Frame::Null);
    let Frame::Array(get) = &get[0] else { panic!() };
    assert_eq!(get[0], bulk("get"));
    assert_eq!(get[1], Frame::Integer(2));
    assert_eq!(
        &get[3..6],
        &[Frame::Integer(1), Frame::Integer(1), Frame::Integer(1)]
    );
    let Frame::Array(keys) = b.cmd(&["COMMAND", "GETKEYS", "MSET", "a", "1", "b", "2"]) else {
        panic!()
    };
    assert_eq!(keys, vec![bulk("a"), bulk("b")]);

    // CLIENT KILL closes the other connection.
    assert_eq!(
        b.cmd(&["CLIENT", "KILL", "ID", &a_id.to_string()]),
        Frame::Integer(1)
    );
    assert!(a.closed(), "killed client still open");
    assert_eq!(
        b.cmd(&["CLIENT", "KILL", "127.0.0.1:1"]),
        error("ERR No such client")
    );
    // MEMORY USAGE, TIME, LASTSAVE, SAVE, BGSAVE.
    assert!(matches!(b.cmd(&["MEMORY", "USAGE", "k"]), Frame::Integer(n) if n >= 33));
    assert_eq!(b.cmd(&["MEMORY", "USAGE", "nokey"]), Frame::Null);
    assert!(matches!(b.cmd(&["TIME"]), Frame::Array(t) if t.len() == 2));
    assert!(matches!(b.cmd(&["LASTSAVE"]), Frame::Integer(t) if t > 1_600_000_000));
    assert_eq!(b.cmd(&["SAVE"]), ok());
    assert_eq!(b.cmd(&["BGSAVE"]), simple("Background saving started"));
    assert_eq!(b.cmd(&["FLUSHALL"]), ok());
    assert_eq!(b.cmd(&["DBSIZE"]), Frame::Integer(0));
}

#[test]
fn client_reply_off_and_skip_drop_replies() {
    let s = Server::start("reply", &[]);
    let mut c = s.raw();
    // OFF: no reply to it or to what follows, until ON (which replies).
    let batch = encode_pipeline(&[
        &["CLIENT", "REPLY", "OFF"],
        &["SET", "a", "1"],
        &["CLIENT", "REPLY", "ON"],
        &["CLIENT", "REPLY", "SKIP"],
        &["GET", "a"],
        &["GET", "a"],
    ]);
    c.send(&batch);
    assert_eq!(c.read(), Some(ok()));
    assert_eq!(c.read(), Some(bulk("1")));
}

#[test]
fn metrics_health_and_command_counters() {
    let s = Server::start("metrics", &[]);
    let (status, body) = s.http_get("/health");
    assert_eq!((status, body.trim()), (200, "OK"));
    let mut c = s.raw();
    for i in 0..7 {
        c.cmd(&["SET", &format!("k{i}"), "v"]);
    }
    c.cmd(&["GET", "k1"]);
    let (status, body) = s.http_get("/metrics");
    assert_eq!(status, 200);
    assert!(
        body.contains("eagle_commands_total{cmd=\"set\"} 7\n"),
        "{body}"
    );
    assert!(
        body.contains("eagle_commands_total{cmd=\"get\"} 1\n"),
        "{body}"
    );
    assert!(
        body.contains("eagle_command_duration_seconds_bucket{cmd=\"set\",le=\"+Inf\"} 7\n"),
        "{body}"
    );
    assert!(
        body.contains("eagle_command_duration_seconds_count{cmd=\"set\"} 7\n"),
        "{body}"
    );
    assert!(
        body.contains("eagle_command_duration_seconds_count{cmd=\"get\"} 1\n"),
        "{body}"
    );
    assert!(body.contains("eagle_keys 7\n"), "{body}");
    for gauge in [
        "eagle_connected_clients 1\n",
        "eagle_pool_used_bytes ",
        "eagle_pool_free_bytes ",
        "eagle_pool_free_chunks ",
        "eagle_pool_reserved_chunks ",
        "eagle_wal_used_bytes ",
        "eagle_epoch_garbage_bytes ",
        "eagle_hash_part_appends_total ",
        "eagle_hash_part_writes_total ",
        "eagle_recovery_duration_seconds ",
    ] {
        assert!(body.contains(gauge), "no {gauge:?} in\n{body}");
    }
    assert_eq!(s.http_get("/nope").0, 404);
}

/// `cmdstat_<name>:calls=` and `total_commands_processed` from an INFO reply.
fn command_counts(info: &Frame, name: &str) -> (u64, u64) {
    let Frame::Bulk(info) = info else {
        panic!("INFO is a bulk string, not {info:?}")
    };
    let info = String::from_utf8_lossy(info).into_owned();
    let field = |prefix: &str, end: char| -> u64 {
        let line = info
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("INFO lacks {prefix}:\n{info}"));
        line.split(end).next().unwrap().parse().unwrap()
    };
    (
        field(&format!("cmdstat_{name}:calls="), ','),
        field("total_commands_processed:", '\r'),
    )
}

#[test]
fn info_counts_every_command_of_a_pipeline_that_ran_before_it() {
    let s = Server::start("cmdstats", &[]);
    let mut a = s.raw();
    // One write: 50 SETs and then INFO, parsed and run as one batch by one connection, whose
    // counters reach the server's once per batch; INFO must see all 50.
    let mut batch = Vec::new();
    for i in 0..50 {
        let key = format!("k{i}");
        batch.extend(encode_cmd(&[b"SET", key.as_bytes(), b"v"]));
    }
    batch.extend(encode_cmd(&[b"INFO", b"all"]));
    a.send(&batch);
    for _ in 0..50 {
        assert_eq!(a.read(), Some(ok()));
    }
    let info = a.read().expect("INFO's reply");
    let (sets, total) = command_counts(&info, "set");
    assert_eq!(sets, 50);
    assert!(total >= 50, "total_commands_processed {total}");
    // Another connection sees them too, and its own INFO after them.
    let mut b = s.raw();
    b.cmd(&["GET", "k1"]);
    let (sets, total_b) = command_counts(&b.cmd(&["INFO", "all"]), "set");
    assert_eq!(sets, 50);
    assert!(total_b >= total + 2, "{total_b} after {total}");
    assert_eq!(command_counts(&b.cmd(&["INFO", "all"]), "get").0, 1);
}

#[test]
fn idle_clients_are_closed_after_timeout() {
    let s = Server::start("timeout", &["--timeout", "1"]);
    let mut idle = s.raw();
    assert_eq!(idle.cmd(&["PING"]), simple("PONG"));
    let started = std::time::Instant::now();
    assert!(idle.closed());
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(900) && waited.as_secs() < 10,
        "{waited:?}"
    );
    // CONFIG SET timeout 0 turns it off for what comes next.
    let mut c = s.raw();
    assert_eq!(c.cmd(&["CONFIG", "SET", "timeout", "0"]), ok());
    std::thread::sleep(std::time::Duration::from_millis(1300));
    assert_eq!(c.cmd(&["PING"]), simple("PONG"));
}

fn run_server(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_eagle-server"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn configuration_errors_name_file_line_and_key() {
    let dir = TempDir::new("conf");
    let conf = dir.join("eagle.conf");
    std::fs::write(&conf, "# settings\nport 7000\n\nfo bar\n").unwrap();
    let (code, out) = run_server(&["--config", conf.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!("{}:4: unknown key 'fo'", conf.display())),
        "{out}"
    );
    std::fs::write(&conf, "maxclients many\n").unwrap();
    let (code, out) = run_server(&["--config", conf.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(
        out.contains(":1: 'maxclients': argument couldn't be parsed into an integer"),
        "{out}"
    );
    let (code, out) = run_server(&["--pool-size", "12parsecs"]);
    assert_eq!(code, Some(1));
    assert!(out.contains("--pool-size '12parsecs'"), "{out}");
    let (code, out) = run_server(&["--flush", "sometimes"]);
    assert_eq!(code, Some(1));
    assert!(out.contains("unknown flush mode 'sometimes'"), "{out}");

    // A valid file: its settings apply, and flags override it.
    std::fs::write(
        &conf,
        "requirepass \"from file\"\nmaxclients 42\ntimeout 3\n",
    )
    .unwrap();
    let s = Server::start(
        "conffile",
        &["--config", conf.to_str().unwrap(), "--timeout", "0"],
    );
    let mut c = s.raw();
    assert_eq!(c.cmd(&["AUTH", "from file"]), ok());
    let Frame::Array(kv) = c.cmd(&["CONFIG", "GET", "maxclients", "timeout"]) else {
        panic!()
    };
    assert_eq!(
        kv,
        vec![bulk("maxclients"), bulk("42"), bulk("timeout"), bulk("0")]
    );
}

#[test]
fn help_lists_every_flag() {
    let (code, out) = run_server(&["--help"]);
    assert_eq!(code, Some(0));
    for flag in [
        "--port",
        "--bind",
        "--pool ",
        "--pool-size",
        "--flush",
        "--require-dax",
        "--requirepass",
        "--maxclients",
        "--timeout",
        "--metrics-addr",
        "--loglevel",
        "--threads",
        "--server-cpulist",
        "--config",
        "--protected-mode",
    ] {
        assert!(out.contains(flag), "--help lacks {flag}:\n{out}");
    }
}

#[test]
fn a_busy_port_is_refused_before_the_pool_is_touched() {
    let s = Server::start("busy", &[]);
    let dir = TempDir::new("busy2");
    let pool = dir.join("never.pool");
    let (code, out) = run_server(&[
        "--pool",
        pool.to_str().unwrap(),
        "--port",
        &s.port.to_string(),
        "--metrics-addr",
        "off",
    ]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!("could not listen on 127.0.0.1:{}", s.port)),
        "{out}"
    );
    assert!(
        !pool.exists(),
        "the pool was created although the port was busy"
    );
    assert_eq!(s.cli(&["PING"]), "PONG");
}

/// keyspace_hits, keyspace_misses and expired_keys from `INFO stats`.
fn keyspace_stats(c: &mut Raw) -> (u64, u64, u64) {
    let Frame::Bulk(info) = c.cmd(&["INFO", "stats"]) else {
        panic!("INFO is a bulk string")
    };
    let info = String::from_utf8_lossy(&info).into_owned();
    let field = |name: &str| -> u64 {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("INFO lacks {name}:\n{info}"))
    };
    (
        field("keyspace_hits"),
        field("keyspace_misses"),
        field("expired_keys"),
    )
}

#[test]
fn keyspace_hits_and_misses_count_read_lookups_like_redis() {
    let s = Server::start("hits", &[]);
    let mut c = s.raw();
    c.cmd(&["SET", "s", "v"]);
    c.cmd(&["HSET", "h", "f", "v"]);
    c.cmd(&["SET", "e", "v", "PX", "1"]);
    assert_eq!(keyspace_stats(&mut c), (0, 0, 0), "writes do not count");
    // Each read counts one lookup per key (the expected numbers are redis-server 7.0's).
    let reads: &[(&[&str], (u64, u64))] = &[
        (&["GET", "s"], (1, 0)),
        (&["GET", "nosuch"], (0, 1)),
        (&["MGET", "s", "nosuch", "h"], (2, 1)),
        (&["GET", "h"], (1, 0)), // a key of another type: a hit, then WRONGTYPE
        (&["HGET", "h", "f"], (1, 0)),
        (&["HGET", "h", "nosuchfield"], (1, 0)), // the key was found
        (&["HMGET", "nosuch", "a", "b"], (0, 1)), // one lookup, whatever the fields
        (&["HGETALL", "h"], (1, 0)),
        (&["EXISTS", "s", "nosuch", "s"], (2, 1)),
        (&["TYPE", "nosuch"], (0, 1)),
        (&["TTL", "s"], (1, 0)),
        (&["STRLEN", "s"], (1, 0)),
        (&["GETRANGE", "s", "0", "0"], (1, 0)),
        (&["GETSET", "g", "1"], (0, 1)),
        (&["SET", "s", "v", "GET"], (1, 0)),
        (&["COPY", "s", "s2"], (1, 0)),
        // Writes look keys up uncounted.
        (&["SET", "s", "w"], (0, 0)),
        (&["INCR", "n"], (0, 0)),
        (&["APPEND", "s", "x"], (0, 0)),
        (&["HSET", "h", "g", "1"], (0, 0)),
        (&["EXPIRE", "s", "100"], (0, 0)),
        (&["DEL", "nosuch"], (0, 0)),
        (&["RENAME", "s2", "s3"], (0, 0)),
        (&["DBSIZE"], (0, 0)),
        (&["SCAN", "0"], (0, 0)),
        (&["MEMORY", "USAGE", "s"], (0, 0)),
    ];
    for (cmd, (hits, misses)) in reads {
        let (h0, m0, _) = keyspace_stats(&mut c);
        c.cmd(cmd);
        let (h1, m1, _) = keyspace_stats(&mut c);
        assert_eq!((h1 - h0, m1 - m0), (*hits, *misses), "{cmd:?}");
    }
    // An expired key is a miss.
    let (h0, m0, _) = keyspace_stats(&mut c);
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(c.cmd(&["GET", "e"]), Frame::Null);
    let (hits, misses, _) = keyspace_stats(&mut c);
    assert_eq!((hits, misses), (h0, m0 + 1));
    // WATCH does not count; the transaction's GET does.
    assert_eq!(c.cmd(&["WATCH", "s", "nosuch"]), ok());
    assert_eq!(c.cmd(&["MULTI"]), ok());
    c.cmd(&["GET", "s"]);
    c.cmd(&["EXEC"]);
    let (hits, misses, _) = keyspace_stats(&mut c);
    assert_eq!((hits, misses), (h0 + 1, m0 + 1));

    // The metrics endpoint has the same numbers.
    let (_, body) = s.http_get("/metrics");
    assert!(
        body.contains(&format!("eagle_keyspace_hits_total {hits}\n")),
        "{body}"
    );
    assert!(
        body.contains(&format!("eagle_keyspace_misses_total {misses}\n")),
        "{body}"
    );

    // CONFIG RESETSTAT zeroes them, and expired_keys, as in Redis. (Once the sweep has removed
    // the expired key, so that it cannot count it afterwards.)
    eventually(10, "the sweep to remove the expired key", || {
        keyspace_stats(&mut c).2 == 1
    });
    assert_eq!(c.cmd(&["CONFIG", "RESETSTAT"]), ok());
    assert_eq!(keyspace_stats(&mut c), (0, 0, 0));
}

#[test]
fn server_cpulist_pins_every_worker_thread() {
    // CPU 0, or the first CPU this process may run on.
    let cpu = eagle_server::affinity::allowed_cpus().unwrap()[0].to_string();
    let s = Server::start("cpulist", &["--server-cpulist", &cpu]);
    let pid = s.child.as_ref().unwrap().id();
    // None if the thread ended after the directory was listed (the background recovery
    // thread ends soon after start: ESRCH).
    let status_of = |task: &std::path::Path| -> Option<String> {
        let status = std::fs::read_to_string(task.join("status")).ok()?;
        Some(
            status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .expect("Cpus_allowed_list in /proc/*/status")
                .trim()
                .to_string(),
        )
    };
    let mut workers = 0;
    let mut main_thread = None;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().path();
        let (Ok(name), Some(cpus)) = (std::fs::read_to_string(task.join("comm")), status_of(&task))
        else {
            continue;
        };
        if name.trim() == "eagle-worker" {
            assert_eq!(cpus, cpu, "worker thread {}", task.display());
            workers += 1;
        } else if task.file_name().unwrap().to_str() == Some(&pid.to_string()) {
            main_thread = Some(cpus);
        }
    }
    assert!(workers >= 2, "{workers} worker threads found (--threads 2)");
    // Only the workers are pinned: the main thread keeps the CPUs it started with.
    assert_eq!(
        main_thread.as_deref(),
        status_of(std::path::Path::new("/proc/thread-self")).as_deref()
    );
    assert!(
        s.output().contains(&format!(
            "Pinning the 2 worker threads to CPUs {cpu} (server-cpulist {cpu}), one CPU each in turn"
        )),
        "{}",
        s.output()
    );
    let mut c = s.raw();
    assert_eq!(
        c.cmd(&["CONFIG", "GET", "server-cpulist"]),
        Frame::Array(vec![bulk("server-cpulist"), bulk(&cpu)])
    );
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "server-cpulist", &cpu]),
        error(
            "ERR CONFIG SET failed (possibly related to argument 'server-cpulist') - can't set immutable config"
        )
    );

    // A bad list stops the server before anything is opened, naming the flag or the file line.
    let (code, out) = run_server(&["--server-cpulist", "100000"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("--server-cpulist '100000': CPU 100000 does not exist"),
        "{out}"
    );
    let dir = TempDir::new("cpulist-conf");
    let conf = dir.join("eagle.conf");
    std::fs::write(&conf, "port 7000\nserver-cpulist 1-0\n").unwrap();
    let (code, out) = run_server(&["--config", conf.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "{}:2: 'server-cpulist': the range '1-0' ends before it starts",
            conf.display()
        )),
        "{out}"
    );
}

#[test]
fn a_client_connected_before_the_password_was_removed_sends_large_requests() {
    let s = Server::start("auth-removed", &["--requirepass", "s3cret"]);
    let mut early = s.raw();
    let mut admin = s.raw();
    assert_eq!(admin.cmd(&["AUTH", "s3cret"]), ok());
    assert_eq!(admin.cmd(&["CONFIG", "SET", "requirepass", ""]), ok());
    // As Redis: whether a client must authenticate is asked afresh, not fixed at connect.
    let large = "v".repeat(20_000);
    assert_eq!(early.cmd(&["SET", "k", &large]), ok());
}

/// CLIENT LIST ID and TYPE as Redis 7.0 answers them (checked against redis-server 7.0.15):
/// the clients of the ids given, in that order, repeats included; ids of no client list
/// nothing; TYPE and ID do not combine.
#[test]
fn client_list_by_id_follows_the_ids_given_and_type_stands_alone() {
    let s = Server::start("client-list-id", &[]);
    let (mut a, mut b) = (s.raw(), s.raw());
    let id = |c: &mut Raw| match c.cmd(&["CLIENT", "ID"]) {
        Frame::Integer(id) => id.to_string(),
        other => panic!("CLIENT ID: {other:?}"),
    };
    let (ia, ib) = (id(&mut a), id(&mut b));
    let ids_listed = |f: Frame| -> Vec<String> {
        let Frame::Bulk(list) = f else {
            panic!("CLIENT LIST: {f:?}")
        };
        String::from_utf8_lossy(&list)
            .lines()
            .map(|l| l.split(' ').next().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        ids_listed(a.cmd(&["CLIENT", "LIST", "ID", &ib, &ia, &ia])),
        [format!("id={ib}"), format!("id={ia}"), format!("id={ia}")]
    );
    assert!(ids_listed(a.cmd(&["CLIENT", "LIST", "ID", "-5", "0", "999999"])).is_empty());
    assert_eq!(
        a.cmd(&["CLIENT", "LIST", "ID", "x"]),
        error("ERR Invalid client ID")
    );
    for args in [
        &["CLIENT", "LIST", "TYPE", "normal", "ID", &ia][..],
        &["CLIENT", "LIST", "ID"],
        &["CLIENT", "LIST", "TYPE"],
    ] {
        assert_eq!(a.cmd(args), error("ERR syntax error"), "{args:?}");
    }
    assert_eq!(
        a.cmd(&["CLIENT", "LIST", "TYPE", "FOO"]),
        error("ERR Unknown client type 'FOO'")
    );
    assert_eq!(
        ids_listed(a.cmd(&["CLIENT", "LIST", "TYPE", "Normal"])).len(),
        2
    );
    assert!(ids_listed(a.cmd(&["CLIENT", "LIST", "TYPE", "pubsub"])).is_empty());
}
