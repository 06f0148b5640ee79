//! `eagle-admin` on real pool files: `info` and `check` (a healthy pool checks clean, a flipped
//! byte in a record is reported and makes `check` exit 1, a missing pool exits 2, `--no-repair`
//! leaves a crashed pool's file as it was), and `backup`
//! / `restore` (a restored pool serves the same keyspace; a pool in use, a non-empty target and
//! a damaged snapshot are refused; a BGSAVE taken under concurrent writes restores to a point in
//! time that holds every write acknowledged before it).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use eagle_core::dash::PutMode;
use eagle_core::pmem::FlushMode;
use eagle_core::record::RecordKind;
use eagle_core::{Engine, PoolOptions};

use common::{Server, eventually};

fn admin(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_eagle-admin"))
        .args(args)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

fn make_pool(name: &str, keys: u32) -> (PathBuf, u64) {
    let p = std::env::temp_dir().join(format!("eagle-admin-{}-{name}.pool", std::process::id()));
    let _ = std::fs::remove_file(&p);
    let e = Engine::open(
        &p,
        PoolOptions {
            size: 16 << 20,
            flush: Some(FlushMode::None),
            ..PoolOptions::default()
        },
    )
    .unwrap();
    for i in 0..keys {
        e.index()
            .put(
                format!("key{i}").as_bytes(),
                b"some value",
                RecordKind::String,
                0,
                PutMode::Insert,
            )
            .unwrap();
    }
    let rec = e.index().get(b"key7", |r| r.offset()).unwrap().unwrap();
    e.close().unwrap();
    (p, rec)
}

#[test]
fn info_reports_the_pool_and_check_passes_on_a_healthy_pool() {
    let (p, _) = make_pool("healthy", 3000);
    let path = p.to_str().unwrap();
    let (code, out) = admin(&["info", path]);
    assert_eq!(code, 0, "{out}");
    for needle in [
        "format version:   1",
        "keys:             3000",
        "clean shutdown:   yes",
        "kind:             emulated",
    ] {
        assert!(out.contains(needle), "'{needle}' not in:\n{out}");
    }
    let (code, out) = admin(&["check", path]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("3000 records") && out.contains("check: ok"),
        "{out}"
    );
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn check_with_no_repair_recovers_a_crashed_pool_in_memory_and_leaves_the_file_as_it_was() {
    let (p, _) = make_pool("no-repair", 500);
    let e = Engine::open(
        &p,
        PoolOptions {
            create: false,
            flush: Some(FlushMode::None),
            ..PoolOptions::default()
        },
    )
    .unwrap();
    e.index()
        .put(b"late", b"v", RecordKind::String, 0, PutMode::Insert)
        .unwrap();
    drop(e); // a crash: not closed
    let crashed = std::fs::read(&p).unwrap();
    let path = p.to_str().unwrap();
    let (code, out) = admin(&["check", "--no-repair", path]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("501 records") && out.contains("check: ok"),
        "{out}"
    );
    let (code, out) = admin(&["info", "--no-repair", path]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("recovered in memory only"), "{out}");
    assert!(
        std::fs::read(&p).unwrap() == crashed,
        "--no-repair wrote the pool"
    );
    // Without the flag the open repairs the file: the next info sees a clean shutdown.
    assert_eq!(admin(&["check", path]).0, 0);
    let (_, out) = admin(&["info", path]);
    assert!(out.contains("clean shutdown:   yes"), "{out}");
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn check_reports_a_damaged_record_and_exits_1() {
    let (p, rec) = make_pool("damaged", 100);
    let mut bytes = std::fs::read(&p).unwrap();
    // The value starts after the 32-byte header and the 4-byte key "key7".
    bytes[rec as usize + 32 + 4] ^= 0x01;
    std::fs::write(&p, &bytes).unwrap();
    let (code, out) = admin(&["check", p.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("checksum mismatch") && out.contains("DAMAGED"),
        "{out}"
    );
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn a_missing_pool_is_an_error_naming_it() {
    let (code, out) = admin(&["check", "/nonexistent/eagle.pool"]);
    assert_eq!(code, 2);
    assert!(out.contains("/nonexistent/eagle.pool"), "{out}");
}

/// Strings (binary ones too), a small and a large hash, keys with an expiry.
fn populate(s: &Server) {
    let mut c = s.redis();
    let mut p = redis::pipe();
    for i in 0..2000 {
        p.cmd("SET")
            .arg(format!("key:{i}"))
            .arg(format!("value:{i}"));
    }
    p.cmd("SET")
        .arg(&b"bin\0key\r\n"[..])
        .arg(&b"\0\r\n\xff"[..]);
    p.cmd("HSET")
        .arg("h:small")
        .arg(&b"f\0\r\n"[..])
        .arg("1")
        .arg("g")
        .arg(&b""[..]);
    for i in 0..100 {
        p.cmd("HSET")
            .arg("h:large")
            .arg(format!("field{i}"))
            .arg(format!("v{i}"));
    }
    p.cmd("SET").arg("expiring").arg("x").arg("EX").arg(600);
    p.cmd("PEXPIRE").arg("h:large").arg(900_000);
    let _: () = p.query(&mut c).unwrap();
}

/// Every key of a server: its type, its value (a hash's pairs sorted), its absolute expiry.
type Keyspace = BTreeMap<Vec<u8>, (String, Vec<Vec<u8>>, i64)>;

fn keyspace(s: &Server) -> Keyspace {
    let mut c = s.redis();
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
    let mut out = BTreeMap::new();
    for k in keys {
        let ty: String = redis::cmd("TYPE").arg(&k).query(&mut c).unwrap();
        let value = if ty == "hash" {
            let flat: Vec<Vec<u8>> = redis::cmd("HGETALL").arg(&k).query(&mut c).unwrap();
            let mut pairs: Vec<Vec<u8>> = flat.chunks(2).map(|p| p.concat()).collect();
            pairs.sort();
            pairs
        } else {
            vec![redis::cmd("GET").arg(&k).query(&mut c).unwrap()]
        };
        let at: i64 = redis::cmd("PEXPIRETIME").arg(&k).query(&mut c).unwrap();
        out.insert(k, (ty, value, at));
    }
    out
}

fn stop(s: &mut Server) {
    s.signal(libc::SIGTERM);
    assert_eq!(s.wait_exit(30).code(), Some(0), "{}", s.output());
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_backup_restored_into_a_new_pool_of_another_size_serves_the_same_keyspace() {
    let mut s1 = Server::start("admin-backup", &[]);
    populate(&s1);
    let want = keyspace(&s1);
    assert_eq!(want.len(), 2004);
    let (pool, file) = (s1.pool.clone(), s1.dir.join("backup.eagle"));
    // The running server has the pool locked: the tool says to ask the server instead.
    let (code, out) = admin(&["backup", path_str(&pool), path_str(&file)]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("in use by another process") && out.contains("redis-cli SAVE"),
        "{out}"
    );
    assert!(!file.exists());
    stop(&mut s1);

    let (code, out) = admin(&["backup", path_str(&pool), path_str(&file)]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("backup: 2004 keys (0 expired left out)"),
        "{out}"
    );
    let restored = s1.dir.join("restored.pool");
    let (code, out) = admin(&[
        "restore",
        path_str(&file),
        path_str(&restored),
        "--pool-size",
        "32mb",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("restore: 2004 keys"), "{out}");
    assert_eq!(std::fs::metadata(&restored).unwrap().len(), 32 << 20);
    assert!(!s1.dir.join("restored.pool.restoring").exists());

    let mut s2 = Server::start_on(s1.dir.clone(), restored.clone(), &[]);
    assert_eq!(keyspace(&s2), want);
    stop(&mut s2);

    // Into a pool that has keys: refused, unless --force.
    let (code, out) = admin(&["restore", path_str(&file), path_str(&restored)]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("not empty (2004 keys)") && out.contains("--force"),
        "{out}"
    );
    let (code, out) = admin(&["restore", path_str(&file), path_str(&restored), "--force"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("2004 replaced"), "{out}");
}

#[test]
fn a_damaged_snapshot_is_refused_and_no_pool_is_created() {
    let mut s = Server::start("admin-damaged", &[]);
    populate(&s);
    // SAVE writes dir/dbfilename: the server's working directory, dump.eagle.
    assert_eq!(s.cli(&["SAVE"]), "OK");
    stop(&mut s);
    let file = s.dir.join("dump.eagle");
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x04;
    std::fs::write(&file, &bytes).unwrap();
    let target = s.dir.join("new.pool");
    let (code, out) = admin(&["restore", path_str(&file), path_str(&target)]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("snapshot is corrupted: entry"), "{out}");
    assert!(!target.exists() && !s.dir.join("new.pool.restoring").exists());
}

#[test]
fn bgsave_under_concurrent_writes_holds_every_write_acknowledged_before_it_and_none_after() {
    let mut s = Server::start("admin-bgsave", &[]);
    populate(&s);
    // Two writers set w{t}:0, w{t}:1, ... in order, each acknowledged before the next is sent:
    // a point in time holds a prefix of each sequence.
    let stop_writers = Arc::new(AtomicBool::new(false));
    let acked: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let writers: Vec<_> = (0..2)
        .map(|t| {
            let (mut c, stop, acked) = (s.redis(), stop_writers.clone(), acked.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let _: () = redis::cmd("SET")
                        .arg(format!("w{t}:{i}"))
                        .arg(i)
                        .query(&mut c)
                        .unwrap();
                    i += 1;
                    acked[t].store(i, Ordering::Release);
                }
            })
        })
        .collect();
    eventually(30, "writers to get going", || {
        acked.iter().all(|a| a.load(Ordering::Acquire) >= 500)
    });
    let mut c = s.raw();
    assert_eq!(c.cmd(&["SET", "before", "1"]), common::ok());
    let before: Vec<u64> = acked.iter().map(|a| a.load(Ordering::Acquire)).collect();
    assert_eq!(
        c.cmd(&["BGSAVE"]),
        common::simple("Background saving started")
    );
    // Sent after the reply: the point in time was fixed before it.
    assert_eq!(c.cmd(&["SET", "after", "1"]), common::ok());
    eventually(30, "the background save to end", || {
        s.cli(&["INFO", "persistence"])
            .contains("rdb_bgsave_in_progress:0")
    });
    let info = s.cli(&["INFO", "persistence"]);
    assert!(info.contains("rdb_last_bgsave_status:ok"), "{info}");
    std::thread::sleep(std::time::Duration::from_millis(50));
    stop_writers.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    stop(&mut s);

    let restored = s.dir.join("restored.pool");
    let file = s.dir.join("dump.eagle");
    let (code, out) = admin(&["restore", path_str(&file), path_str(&restored)]);
    assert_eq!(code, 0, "{out}");
    let s2 = Server::start_on(s.dir.clone(), restored, &[]);
    assert_eq!(s2.cli(&["GET", "before"]), "1");
    assert_eq!(s2.cli(&["GET", "after"]), "");
    assert_eq!(s2.cli(&["GET", "key:1999"]), "value:1999");
    let mut c2 = s2.redis();
    for (t, &min) in before.iter().enumerate() {
        let n: Vec<Vec<u8>> = redis::cmd("KEYS")
            .arg(format!("w{t}:*"))
            .query(&mut c2)
            .unwrap();
        let n = n.len() as u64;
        assert!(
            n >= min,
            "writer {t}: {n} keys, {min} acknowledged before BGSAVE"
        );
        let names: Vec<String> = (0..n).map(|i| format!("w{t}:{i}")).collect();
        let values: Vec<Option<u64>> = redis::cmd("MGET").arg(&names).query(&mut c2).unwrap();
        let missing = values.iter().position(|v| v.is_none());
        assert_eq!(missing, None, "writer {t}: not a prefix of its sequence");
    }
}
