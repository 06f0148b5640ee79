//! The engine under test: an [`Engine`] on a fresh pool file, as a [`Store`].

use std::path::Path;

use eagle_core::dash::{PutMode, PutOutcome};
use eagle_core::record::RecordKind;
use eagle_core::{Engine, PoolOptions};

use crate::workload::Store;

impl Store for Engine {
    fn insert(&self, key: &[u8], value: u64) -> Result<bool, String> {
        let outcome = self
            .index()
            .put(
                key,
                &value.to_le_bytes(),
                RecordKind::String,
                0,
                PutMode::Insert,
            )
            .map_err(|e| format!("put: {e}"))?;
        Ok(outcome == PutOutcome::Inserted)
    }

    fn get(&self, key: &[u8]) -> Result<Option<u64>, String> {
        self.index()
            .get(key, |rec| {
                rec.value()
                    .try_into()
                    .map(u64::from_le_bytes)
                    .unwrap_or(u64::MAX)
            })
            .map_err(|e| format!("get: {e}"))
    }

    fn delete(&self, key: &[u8]) -> Result<bool, String> {
        self.index().delete(key).map_err(|e| format!("delete: {e}"))
    }

    fn table_stats(&self) -> Option<(f64, u64, u32)> {
        let s = self.index().stats();
        Some((s.load_factor, s.segments, s.global_depth))
    }

    fn batch(&self, ops: &mut dyn FnMut()) {
        let _pinned = self.index().pinned();
        ops()
    }
}

/// Removes a leftover pool file so the engine starts from a new, empty pool. Refuses anything
/// but a regular file (a DAX device must not be unlinked).
pub fn remove_pool(path: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("{}: {e}", path.display())),
        Ok(m) if m.is_file() => {
            std::fs::remove_file(path).map_err(|e| format!("cannot remove {}: {e}", path.display()))
        }
        Ok(_) => Err(format!(
            "{} exists and is not a regular file; eagle-bench only uses (and deletes) pool files",
            path.display()
        )),
    }
}

/// Opens a new pool of `size` bytes at `path` (after removing any old one; removing what a
/// failed open left).
pub fn open_fresh(path: &Path, size: u64) -> Result<Engine, String> {
    remove_pool(path)?;
    let opts = PoolOptions {
        size,
        ..PoolOptions::default()
    };
    Engine::open(path, opts).map_err(|e| {
        // Whatever is there now, the failed open created: do not leave it behind.
        let _ = remove_pool(path);
        format!("cannot open a pool at {}: {e}", path.display())
    })
}
