//! `eagle-admin info` and `check` on real pool files: a healthy pool checks clean, a flipped
//! byte in a record is reported and makes `check` exit 1, a missing pool exits 2.

use std::path::PathBuf;
use std::process::Command;

use eagle_core::dash::PutMode;
use eagle_core::pmem::FlushMode;
use eagle_core::record::RecordKind;
use eagle_core::{Engine, PoolOptions};

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
