//! The snapshot file format: the bytes match docs/format.md, entries round trip, and damage of
//! any kind (a flipped byte anywhere, a truncation anywhere, bytes appended, random bytes after
//! a valid header) is an error naming where, never a panic and never an entry handed on.

use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::snapshot_error::SnapshotError;
use super::snapshot_file::{Entry, Reader, SNAPSHOT_VERSION, Value, Writer, temp_path};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("eagle-snapfile-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("dump.eagle")
}

fn sample() -> Vec<Entry> {
    vec![
        Entry {
            key: b"k\0\r\n".to_vec(),
            expire_at: 0,
            value: Value::String(b"v\r\n\0".to_vec()),
        },
        Entry {
            key: Vec::new(),
            expire_at: 1_700_000_000_123,
            value: Value::String(Vec::new()),
        },
        Entry {
            key: b"h".to_vec(),
            expire_at: 42,
            value: Value::Hash(vec![
                (b"f1".to_vec(), b"x".to_vec()),
                (Vec::new(), b"\0".to_vec()),
            ]),
        },
    ]
}

fn write(path: &Path, entries: &[Entry]) -> Vec<u8> {
    let mut w = Writer::create(path, 1_234_567).unwrap();
    for e in entries {
        match &e.value {
            Value::String(v) => w.string(&e.key, e.expire_at, v).unwrap(),
            Value::Hash(f) => w.hash(&e.key, e.expire_at, f).unwrap(),
        }
    }
    let size = w.finish().unwrap();
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(size, bytes.len() as u64);
    assert!(!temp_path(path).exists(), "the temporary file was renamed");
    bytes
}

/// A header as docs/format.md describes it.
fn header(created_ms: u64) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(b"EAGLSNAP");
    h.extend_from_slice(&1u32.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes());
    h.extend_from_slice(&created_ms.to_le_bytes());
    h.extend_from_slice(&[0; 36]);
    h.extend_from_slice(&crc32c::crc32c(&h).to_le_bytes());
    h
}

fn read_all(bytes: &[u8]) -> Result<Vec<Entry>, SnapshotError> {
    let mut r = Reader::new(bytes, bytes.len() as u64, Path::new("mem"))?;
    let mut out = Vec::new();
    while let Some(e) = r.next()? {
        out.push(e);
    }
    Ok(out)
}

#[test]
fn entries_round_trip_with_binary_keys_and_values() {
    let path = scratch("roundtrip");
    let bytes = write(&path, &sample());
    assert_eq!(read_all(&bytes).unwrap(), sample());
    let mut r = Reader::open(&path).unwrap();
    assert_eq!(r.header.version, SNAPSHOT_VERSION);
    assert_eq!(r.header.created_ms, 1_234_567);
    while r.next().unwrap().is_some() {}
    assert_eq!(r.entries(), 3);
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

#[test]
fn the_bytes_are_those_docs_format_md_describes() {
    let path = scratch("golden");
    let entries = vec![
        Entry {
            key: b"ab".to_vec(),
            expire_at: 7,
            value: Value::String(b"xyz".to_vec()),
        },
        Entry {
            key: b"h".to_vec(),
            expire_at: 0,
            value: Value::Hash(vec![(b"f".to_vec(), b"vv".to_vec())]),
        },
    ];
    let bytes = write(&path, &entries);
    let mut want = header(1_234_567);
    let mut crcs = Vec::new();
    for (ty, key, expire, value) in [
        (1u8, &b"ab"[..], 7u64, b"xyz".to_vec()),
        // count 1, field_len 1, "f", value_len 2, "vv"
        (
            2,
            b"h",
            0,
            [
                &1u32.to_le_bytes()[..],
                &1u32.to_le_bytes(),
                b"f",
                &2u32.to_le_bytes(),
                b"vv",
            ]
            .concat(),
        ),
    ] {
        let mut e = Vec::new();
        e.extend_from_slice(&(key.len() as u32).to_le_bytes());
        e.push(ty);
        e.extend_from_slice(&expire.to_le_bytes());
        e.extend_from_slice(&(value.len() as u64).to_le_bytes());
        e.extend_from_slice(key);
        e.extend_from_slice(&value);
        let crc = crc32c::crc32c(&e);
        e.extend_from_slice(&crc.to_le_bytes());
        crcs.extend_from_slice(&crc.to_le_bytes());
        want.extend_from_slice(&e);
    }
    let mut trailer = Vec::new();
    trailer.extend_from_slice(b"EAGLSEND");
    trailer.extend_from_slice(&2u64.to_le_bytes());
    trailer.extend_from_slice(&crc32c::crc32c(&crcs).to_le_bytes());
    trailer.extend_from_slice(&crc32c::crc32c(&trailer).to_le_bytes());
    want.extend_from_slice(&trailer);
    assert_eq!(bytes, want);
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

#[test]
fn every_flipped_byte_and_every_truncation_is_an_error_never_a_panic() {
    let path = scratch("damage");
    let bytes = write(&path, &sample());
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    let mut errors = 0;
    for i in 0..bytes.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut b = bytes.clone();
            b[i] ^= mask;
            match read_all(&b) {
                Err(_) => errors += 1,
                Ok(_) => panic!("byte {i} ^ {mask:#x} went unnoticed"),
            }
        }
    }
    for cut in 0..bytes.len() {
        assert!(read_all(&bytes[..cut]).is_err(), "truncated to {cut} bytes");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    let e = read_all(&longer).unwrap_err();
    assert!(e.to_string().contains("1 bytes after it"), "{e}");
    assert_eq!(errors, bytes.len() * 3);
}

#[test]
fn a_damaged_entry_is_named_by_number_and_offset() {
    let path = scratch("named");
    let mut bytes = write(&path, &sample());
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    // The second entry starts after the header and the first entry (21 + 4 + 4 + 4 bytes).
    let second = 64 + 21 + 4 + 4 + 4;
    bytes[second + 21 - 1] ^= 1; // its value_len's high byte
    let e = read_all(&bytes).unwrap_err().to_string();
    assert!(e.contains(&format!("entry 1 at byte {second}")), "{e}");
}

#[test]
fn not_a_snapshot_and_a_newer_version_are_told_apart_from_damage() {
    let path = scratch("kinds");
    let bytes = write(&path, &sample());
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    let mut other = bytes.clone();
    other[0] = b'X';
    assert!(matches!(
        read_all(&other),
        Err(SnapshotError::NotASnapshot { .. })
    ));
    let mut newer = bytes.clone();
    newer[8..12].copy_from_slice(&2u32.to_le_bytes());
    let crc = crc32c::crc32c(&newer[..60]);
    newer[60..64].copy_from_slice(&crc.to_le_bytes());
    assert!(matches!(
        read_all(&newer),
        Err(SnapshotError::FutureVersion { found: 2, .. })
    ));
}

proptest! {
    #[test]
    fn random_bytes_after_a_valid_header_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut b = header(0);
        b.extend_from_slice(&tail);
        prop_assert!(read_all(&b).is_err());
    }
}
