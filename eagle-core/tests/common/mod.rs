//! Helpers shared by the integration tests: scratch pool paths and opening a `Db`.

// Each test binary uses some of these helpers, not all.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use eagle_core::pmem::FlushMode;
use eagle_core::{Db, DbOptions, PoolOptions};

/// A fresh pool path named after `name` and the process, on /dev/shm when it exists.
pub fn pool_path(name: &str) -> PathBuf {
    let dir = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let path = dir.join(format!("eagle-test-{}-{name}.pool", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

/// Opens (creating) a 32 MiB `Db` at `path`, without flushes (the tests crash by dropping).
pub fn open_db(path: &Path) -> Db {
    open_db_sized(path, 32 << 20)
}

/// [`open_db`] with a pool of `size` bytes (when created).
pub fn open_db_sized(path: &Path, size: u64) -> Db {
    try_open_db_sized(path, size).unwrap()
}

/// [`open_db_sized`], its error returned (a damaged pool the open must refuse).
pub fn try_open_db_sized(path: &Path, size: u64) -> Result<Db, eagle_core::EngineError> {
    let opts = DbOptions {
        pool: PoolOptions {
            size,
            flush: Some(FlushMode::None),
            ..PoolOptions::default()
        },
        ..DbOptions::default()
    };
    Db::open(path, opts)
}

/// Clears the incompatible feature bit `feature` in a closed pool's header and re-seals the
/// header's checksum, as a pool written before the feature existed would have it.
pub fn clear_incompat_feature(path: &Path, feature: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    assert!(bytes.len() as u64 > eagle_core::pool::HEADER_BLOCK);
    let features = u64::from_le_bytes(bytes[96..104].try_into().unwrap());
    assert_ne!(
        features & feature,
        0,
        "new pools carry feature {feature:#x}"
    );
    bytes[96..104].copy_from_slice(&(features & !feature).to_le_bytes());
    let crc = crc32c::crc32c(&bytes[..124]);
    bytes[124..128].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(path, bytes).unwrap();
}
