//! Pipelined plain SETs run in groups (`Db::set_run`), INCRs and DECRs too (`Db::incr_run`),
//! and consecutive HSETs of one key under one take of its lock (`Db::hset_run`): random
//! pipelines of them, with options, reads, deletes, type errors, MULTI blocks and skipped
//! replies, sent as one write to eagle-server and to a real `redis-server`, must get the same
//! replies in the same order and leave the same keys.

mod common;

use common::*;
use eagle_core::resp::Frame;

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// A random pipeline: mostly plain SETs over a few keys (so keys repeat within a group), mixed
/// with what must not join a group or must see its effects.
fn pipeline(rng: &mut Rng, len: usize) -> Vec<Vec<String>> {
    let mut cmds = Vec::new();
    while cmds.len() < len {
        let key = format!("k{}", rng.below(24));
        let value = format!("v{}", rng.below(1000));
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let cmd = match rng.below(100) {
            0..50 => s(&["SET", &key, &value]),
            // Grouped too: EX and PX (any case) with a valid number. A long one, so nothing
            // expires during the test.
            50..60 => s(&[
                "SET",
                &key,
                &value,
                ["EX", "px", "Ex", "PX"][rng.below(4) as usize],
                ["1000", "2000000", "3000"][rng.below(3) as usize],
            ]),
            // Not grouped: the same options with numbers SET rejects.
            60..61 => s(&[
                "SET",
                &key,
                &value,
                ["EX", "PX"][rng.below(2) as usize],
                ["0", "-5", "abc", "9223372036854775807", ""][rng.below(5) as usize],
            ]),
            61..64 => s(&[
                "SET",
                &key,
                &value,
                ["NX", "XX", "GET", "EX"][rng.below(4) as usize],
            ]),
            64..74 => s(&["GET", &key]),
            74..78 => s(&["DEL", &key]),
            78..82 => s(&["APPEND", &key, &value]),
            82..86 => s(&["INCR", &key]),
            86..90 => s(&["HSET", &key, "f", &value]),
            90..93 => s(&["MGET", &key, "k1", "k2"]),
            93..95 => s(&["SET", &key]),
            95..97 => s(&["CLIENT", "REPLY", "SKIP"]),
            _ => {
                cmds.push(s(&["MULTI"]));
                cmds.push(s(&["SET", &key, &value]));
                cmds.push(s(&["SET", "k1", &value]));
                s(&["EXEC"])
            }
        };
        // EX needs its number: a long one, so nothing expires during the test.
        let cmd = if cmd.last().is_some_and(|a| a == "EX") {
            [cmd, vec!["1000".to_string()]].concat()
        } else {
            cmd
        };
        cmds.push(cmd);
    }
    // The reply the last SKIP drops must not be the closing PING's.
    cmds.push(vec!["GET".to_string(), "k0".to_string()]);
    cmds
}

/// Sends `cmds` and a final PING as one write; returns every reply before the PONG.
fn replies(conn: &mut Raw, cmds: &[Vec<String>]) -> Vec<Frame> {
    let mut bytes = Vec::new();
    for cmd in cmds.iter().chain([&vec!["PING".to_string()]]) {
        let args: Vec<&[u8]> = cmd.iter().map(|a| a.as_bytes()).collect();
        bytes.extend(encode_cmd(&args));
    }
    conn.send(&bytes);
    let mut out = Vec::new();
    loop {
        match conn.read() {
            Some(f) if f == simple("PONG") => return out,
            Some(f) => out.push(f),
            None => panic!("connection closed after {} replies", out.len()),
        }
    }
}

/// Sends 30 pipelines from `next` to both servers; every reply must be the same. Returns how
/// many were compared.
fn same_replies(
    ours: &mut Raw,
    theirs: &mut Raw,
    mut next: impl FnMut() -> Vec<Vec<String>>,
) -> usize {
    let mut compared = 0;
    for round in 0..30 {
        let cmds = next();
        let (a, b) = (replies(ours, &cmds), replies(theirs, &cmds));
        assert_eq!(a.len(), b.len(), "round {round}: reply counts\n{cmds:?}");
        for (i, (a, b)) in a.iter().zip(&b).enumerate() {
            assert_eq!(a, b, "round {round}, reply {i}\n{cmds:?}");
        }
        compared += a.len();
    }
    compared
}

/// The same keys, with the same types, string values and expiries (give or take the seconds
/// that passed between the reads), are left on both servers.
fn same_strings(ours: &mut Raw, theirs: &mut Raw, keys: impl Iterator<Item = String>) {
    for key in keys {
        assert_eq!(
            ours.cmd(&["TYPE", &key]),
            theirs.cmd(&["TYPE", &key]),
            "{key}"
        );
        if ours.cmd(&["TYPE", &key]) == simple("string") {
            assert_eq!(
                ours.cmd(&["GET", &key]),
                theirs.cmd(&["GET", &key]),
                "{key}"
            );
            let ttl = |c: &mut Raw| match c.cmd(&["PTTL", &key]) {
                Frame::Integer(ms) => ms,
                other => panic!("PTTL {key}: {other:?}"),
            };
            let (a, b) = (ttl(ours), ttl(theirs));
            assert!(
                (a < 0) == (b < 0) && (a - b).abs() < 5_000,
                "{key}: PTTL {a} and {b}"
            );
        }
    }
}

#[test]
fn pipelined_sets_reply_and_store_like_redis_server() {
    let redis = RedisServer::start();
    let eagle = Server::start("pipelined-sets", &[]);
    let (mut theirs, mut ours) = (Raw::connect(redis.port), eagle.raw());
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let compared = same_replies(&mut ours, &mut theirs, || {
        let len = 16 + rng.below(200) as usize;
        pipeline(&mut rng, len)
    });
    same_strings(&mut ours, &mut theirs, (0..24).map(|k| format!("k{k}")));
    assert_eq!(ours.cmd(&["DBSIZE"]), theirs.cmd(&["DBSIZE"]));
    let grouped: u64 = eagle.info_field("stats", "grouped_sets").parse().unwrap();
    assert!(grouped > 1000, "only {grouped} SETs ran in groups");
    println!("pipelined sets: {compared} replies compared with redis-server, 0 differences");
}

#[test]
fn grouped_sets_are_counted_as_sets() {
    let s = Server::start("grouped-counts", &[]);
    let mut c = s.raw();
    let mut batch = Vec::new();
    for i in 0..40 {
        // Every fifth key repeats the one before: its group closes there.
        let key = format!("k{}", i - (i % 5 == 4) as i32);
        batch.extend(encode_cmd(&[b"SET", key.as_bytes(), b"v"]));
    }
    batch.extend(encode_cmd(&[b"INFO", b"commandstats"]));
    c.send(&batch);
    for _ in 0..40 {
        assert_eq!(c.read(), Some(ok()));
    }
    let Some(Frame::Bulk(info)) = c.read() else {
        panic!("INFO's reply")
    };
    let info = String::from_utf8_lossy(&info).into_owned();
    assert!(info.contains("cmdstat_set:calls=40,"), "{info}");
    assert_eq!(c.cmd(&["DBSIZE"]), Frame::Integer(32));
    let (_, body) = s.http_get("/metrics");
    assert!(
        body.contains("eagle_command_duration_seconds_count{cmd=\"set\"} 40\n"),
        "{body}"
    );
}

#[test]
fn a_grouped_set_aborts_the_exec_of_a_client_watching_its_key() {
    let s = Server::start("grouped-watch", &[]);
    let (mut a, mut b) = (s.raw(), s.raw());
    assert_eq!(b.cmd(&["WATCH", "k"]), ok());
    let mut batch = encode_cmd(&[b"SET", b"k", b"a"]);
    batch.extend(encode_cmd(&[b"SET", b"x", b"1"]));
    a.send(&batch);
    assert_eq!((a.read(), a.read()), (Some(ok()), Some(ok())));
    assert_eq!(
        s.info_field("stats", "grouped_sets"),
        "2",
        "the SETs ran as a group"
    );
    assert_eq!(b.cmd(&["MULTI"]), ok());
    assert_eq!(b.cmd(&["SET", "k", "b"]), simple("QUEUED"));
    assert_eq!(b.cmd(&["EXEC"]), Frame::NullArray);
    assert_eq!(b.cmd(&["GET", "k"]), bulk("a"));
}

/// A random pipeline of mostly HSETs of one hash (fields repeat, and the hash grows past its
/// compact form), mixed with what must end a run or see its effects.
fn hash_pipeline(rng: &mut Rng, len: usize) -> Vec<Vec<String>> {
    let mut cmds = Vec::new();
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    while cmds.len() < len {
        let key = ["h", "h", "h", "h", "h2", "s"][rng.below(6) as usize];
        let (f, g) = (format!("f{}", rng.below(80)), format!("f{}", rng.below(80)));
        let value = format!("v{}", rng.below(1000));
        let cmd = match rng.below(100) {
            0..70 => s(&["HSET", key, &f, &value]),
            70..78 => s(&["HSET", key, &f, &value, &g, &value]),
            78..80 => s(&["HSET", key, &f]),
            80..84 => s(&["HGET", key, &f]),
            84..88 => s(&["HDEL", key, &f, &g]),
            88..90 => s(&["HLEN", key]),
            90..91 => s(&["DEL", key]),
            91..93 => s(&["SET", "s", &value]),
            93..95 => s(&["CLIENT", "REPLY", "SKIP"]),
            _ => {
                cmds.push(s(&["MULTI"]));
                cmds.push(s(&["HSET", key, &f, &value]));
                s(&["EXEC"])
            }
        };
        cmds.push(cmd);
    }
    cmds.push(s(&["HLEN", "h"]));
    cmds
}

#[test]
fn pipelined_hsets_of_one_key_reply_and_store_like_redis_server() {
    let redis = RedisServer::start();
    let eagle = Server::start("pipelined-hsets", &[]);
    let (mut theirs, mut ours) = (Raw::connect(redis.port), eagle.raw());
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let compared = same_replies(&mut ours, &mut theirs, || {
        let len = 16 + rng.below(100) as usize;
        hash_pipeline(&mut rng, len)
    });
    for key in ["h", "h2", "s"] {
        assert_eq!(
            ours.cmd(&["TYPE", key]),
            theirs.cmd(&["TYPE", key]),
            "{key}"
        );
        let sorted = |c: &mut Raw| match c.cmd(&["HGETALL", key]) {
            Frame::Array(items) => {
                let mut pairs: Vec<String> = items
                    .chunks(2)
                    .map(|p| format!("{:?}={:?}", p[0], p.get(1)))
                    .collect();
                pairs.sort();
                pairs
            }
            other => vec![format!("{other:?}")],
        };
        assert_eq!(sorted(&mut ours), sorted(&mut theirs), "{key}");
    }
    println!("pipelined hsets: {compared} replies compared with redis-server, 0 differences");
}

/// A random pipeline of mostly INCRs and DECRs over a few keys (so keys repeat within a run),
/// mixed with what must end a run (values that are no integer or about to overflow, another
/// type) or see its effects, and with expiries an INCR must keep.
fn counter_pipeline(rng: &mut Rng, len: usize) -> Vec<Vec<String>> {
    let mut cmds = Vec::new();
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    while cmds.len() < len {
        let key = format!("c{}", rng.below(12));
        let cmd = match rng.below(100) {
            0..50 => s(&["INCR", &key]),
            50..70 => s(&["DECR", &key]),
            70..72 => s(&["SET", &key, "abc"]),
            72..74 => s(&["SET", &key, "9223372036854775806"]),
            74..76 => s(&["SET", &key, "-9223372036854775807"]),
            76..78 => s(&["SET", &key, "7", "EX", "1000"]),
            78..80 => s(&["HSET", &key, "f", "1"]),
            80..84 => s(&["GET", &key]),
            84..86 => s(&["DEL", &key]),
            86..88 => s(&[
                "INCRBY",
                &key,
                ["5", "-3", "x", "9223372036854775807"][rng.below(4) as usize],
            ]),
            88..89 => s(&[
                "DECRBY",
                &key,
                ["2", "-9223372036854775808", "1.5"][rng.below(3) as usize],
            ]),
            89..90 => s(&["INCR", &key, "extra"]),
            90..92 => s(&["EXPIRE", &key, "2000"]),
            92..94 => s(&["CLIENT", "REPLY", "SKIP"]),
            _ => {
                cmds.push(s(&["MULTI"]));
                cmds.push(s(&["INCR", &key]));
                cmds.push(s(&["DECR", "c1"]));
                s(&["EXEC"])
            }
        };
        cmds.push(cmd);
    }
    cmds.push(s(&["GET", "c0"]));
    cmds
}

#[test]
fn pipelined_incrs_reply_and_store_like_redis_server() {
    let redis = RedisServer::start();
    let eagle = Server::start("pipelined-incrs", &[]);
    let (mut theirs, mut ours) = (Raw::connect(redis.port), eagle.raw());
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let compared = same_replies(&mut ours, &mut theirs, || {
        let len = 16 + rng.below(200) as usize;
        counter_pipeline(&mut rng, len)
    });
    same_strings(&mut ours, &mut theirs, (0..12).map(|k| format!("c{k}")));
    let grouped: u64 = eagle.info_field("stats", "grouped_incrs").parse().unwrap();
    assert!(grouped > 500, "only {grouped} INCRs ran in groups");
    println!("pipelined incrs: {compared} replies compared with redis-server, 0 differences");
}

#[test]
fn grouped_incrs_are_counted_as_their_commands() {
    let s = Server::start("grouped-incr-counts", &[]);
    let mut c = s.raw();
    let mut batch = Vec::new();
    for i in 0..40 {
        let cmd: &[u8] = if i % 4 == 3 { b"DECR" } else { b"INCR" };
        batch.extend(encode_cmd(&[cmd, format!("n{}", i % 8).as_bytes()]));
    }
    batch.extend(encode_cmd(&[b"INFO", b"commandstats"]));
    c.send(&batch);
    let mut model = [0i64; 8];
    for i in 0..40 {
        model[i % 8] += if i % 4 == 3 { -1 } else { 1 };
        assert_eq!(c.read(), Some(Frame::Integer(model[i % 8])), "reply {i}");
    }
    let Some(Frame::Bulk(info)) = c.read() else {
        panic!("INFO's reply")
    };
    let info = String::from_utf8_lossy(&info).into_owned();
    assert!(info.contains("cmdstat_incr:calls=30,"), "{info}");
    assert!(info.contains("cmdstat_decr:calls=10,"), "{info}");
    let grouped: u64 = s.info_field("stats", "grouped_incrs").parse().unwrap();
    assert!(grouped >= 16, "only {grouped} INCRs ran in groups");
}

/// GETs answered in place (their values copied straight into the reply): in RESP2 and RESP3,
/// found, missing, of another type, expired, and with replies skipped or turned off, as
/// redis-server answers them in the same pipeline.
#[test]
fn pipelined_gets_reply_like_redis_server_in_both_protocols() {
    let redis = RedisServer::start();
    let eagle = Server::start("pipelined-gets", &[]);
    let (mut theirs, mut ours) = (Raw::connect(redis.port), eagle.raw());
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let big = "x".repeat(5000);
    let cmds = vec![
        s(&["SET", "a", "1"]),
        s(&["SET", "big", &big]),
        s(&["HSET", "h", "f", "v"]),
        s(&["SET", "gone", "v", "PX", "1"]),
        s(&["GET", "a"]),
        s(&["GET", "big"]),
        s(&["GET", "missing"]),
        s(&["GET", "h"]),
        s(&["GET", "a", "extra"]),
        s(&["CLIENT", "REPLY", "SKIP"]),
        s(&["GET", "a"]),
        s(&["GET", "big"]),
        s(&["CLIENT", "REPLY", "OFF"]),
        s(&["GET", "a"]),
        s(&["GET", "h"]),
        s(&["CLIENT", "REPLY", "ON"]),
        s(&["GET", "a"]),
        // ON right after SKIP answers (Redis clears both); SKIP while OFF does nothing.
        s(&["CLIENT", "REPLY", "SKIP"]),
        s(&["CLIENT", "REPLY", "ON"]),
        s(&["GET", "a"]),
        s(&["CLIENT", "REPLY", "OFF"]),
        s(&["CLIENT", "REPLY", "SKIP"]),
        s(&["CLIENT", "REPLY", "ON"]),
        s(&["GET", "big"]),
        s(&["MULTI"]),
        s(&["GET", "a"]),
        s(&["EXEC"]),
    ];
    for proto in ["2", "3"] {
        // HELLO's own reply differs between the two servers: not compared.
        let _ = (ours.cmd(&["HELLO", proto]), theirs.cmd(&["HELLO", proto]));
        std::thread::sleep(std::time::Duration::from_millis(5));
        let (a, b) = (replies(&mut ours, &cmds), replies(&mut theirs, &cmds));
        assert_eq!(a, b, "RESP{proto}");
        // Past the 1 ms expiry on both.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut gets = vec![s(&["GET", "gone"]); 3];
        gets.push(s(&["GET", "missing"]));
        assert_eq!(
            replies(&mut ours, &gets),
            replies(&mut theirs, &gets),
            "RESP{proto}"
        );
        // A missing key's null as each protocol writes it ($-1 or _), and a found value.
        let wire = |c: &mut Raw| {
            let mut batch = encode_cmd(&[b"GET", b"missing"]);
            batch.extend(encode_cmd(&[b"GET", b"a"]));
            c.send(&batch);
            (c.read_wire().unwrap().1, c.read_wire().unwrap().1)
        };
        assert_eq!(wire(&mut ours), wire(&mut theirs), "RESP{proto}");
    }
    let _ = (ours.cmd(&["HELLO", "2"]), theirs.cmd(&["HELLO", "2"]));
    let Frame::Bulk(info) = ours.cmd(&["INFO", "stats"]) else {
        panic!("INFO")
    };
    let info = String::from_utf8_lossy(&info).into_owned();
    let Frame::Bulk(theirs_info) = theirs.cmd(&["INFO", "stats"]) else {
        panic!("INFO")
    };
    let theirs_info = String::from_utf8_lossy(&theirs_info).into_owned();
    for field in ["keyspace_hits", "keyspace_misses"] {
        let value = |text: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{field}:")))
                .map(str::to_string)
        };
        assert_eq!(value(&info), value(&theirs_info), "{field}");
    }
}
