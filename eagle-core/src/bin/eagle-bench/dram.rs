//! The DRAM ceiling: std `HashMap`s behind `RwLock`s, sharded by key hash so threads rarely
//! meet. Nothing is flushed or persisted: it bounds what a volatile in-memory map does with the
//! same key stream.

use std::collections::HashMap;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::workload::Store;

const SHARDS: usize = 64;

/// A sharded map from keys (up to 16 bytes, zero-padded; one run uses one key length) to values.
pub struct DramMap {
    shards: Vec<RwLock<HashMap<[u8; 16], u64>>>,
}

impl DramMap {
    /// An empty map (every shard starts empty and grows, as the Dash table does).
    pub fn new() -> DramMap {
        DramMap {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
        }
    }

    /// The padded key and its shard. The shard hash is a cheap mix of the key's bytes,
    /// independent of the `HashMap`'s own (SipHash) hashing inside the shard.
    fn locate(&self, key: &[u8]) -> ([u8; 16], &RwLock<HashMap<[u8; 16], u64>>) {
        let mut k = [0u8; 16];
        let n = key.len().min(16);
        k[..n].copy_from_slice(&key[..n]);
        let lo = u64::from_le_bytes(k[..8].try_into().unwrap_or_default());
        let hi = u64::from_le_bytes(k[8..].try_into().unwrap_or_default());
        let h = (lo ^ hi.rotate_left(32)).wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        (k, &self.shards[(h >> 58) as usize % SHARDS])
    }
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

impl Store for DramMap {
    fn insert(&self, key: &[u8], value: u64) -> Result<bool, String> {
        if key.len() > 16 {
            return Err(format!(
                "the DRAM map takes keys up to 16 bytes, not {}",
                key.len()
            ));
        }
        let (k, shard) = self.locate(key);
        let mut map = write(shard);
        Ok(match map.entry(k) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(value);
                true
            }
        })
    }

    fn get(&self, key: &[u8]) -> Result<Option<u64>, String> {
        let (k, shard) = self.locate(key);
        Ok(read(shard).get(&k).copied())
    }

    fn delete(&self, key: &[u8]) -> Result<bool, String> {
        let (k, shard) = self.locate(key);
        Ok(write(shard).remove(&k).is_some())
    }

    fn table_stats(&self) -> Option<(f64, u64, u32)> {
        None
    }
}
