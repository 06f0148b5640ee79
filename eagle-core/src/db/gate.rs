//! A reader-sharded lock: many holders at once, each on the shard its caller picks (so holders
//! on different threads or clients rarely share a cache line), or one holder of every shard.
//! The keyspace's writers hold it shared against an atomic transaction (`Db::atomic`), which
//! holds it exclusively; the server's transaction gate is another one.

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

const SHARDS: usize = 16;

#[repr(align(128))]
#[derive(Default)]
struct Shard(RwLock<()>);

/// The lock.
pub struct Gate {
    shards: Box<[Shard]>,
}

impl Default for Gate {
    fn default() -> Gate {
        Gate {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
        }
    }
}

impl Gate {
    /// Shared, on the shard of `id`. Not recursive: a queued exclusive holder makes new shared
    /// holders wait (so it is never starved), so a holder must not take it again.
    pub fn shared(&self, id: u64) -> RwLockReadGuard<'_, ()> {
        self.shards[id as usize % SHARDS].0.read()
    }

    /// Every shard, once no shared holder is left.
    pub fn exclusive(&self) -> Vec<RwLockWriteGuard<'_, ()>> {
        self.shards.iter().map(|s| s.0.write()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exclusive_holder_waits_for_every_shared_one() {
        let gate = Gate::default();
        let a = gate.shared(1);
        let b = gate.shared(2);
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                let _all = gate.exclusive();
            });
            std::thread::sleep(std::time::Duration::from_millis(20));
            assert!(!waiter.is_finished());
            drop(a);
            std::thread::sleep(std::time::Duration::from_millis(20));
            assert!(!waiter.is_finished(), "still held on another shard");
            drop(b);
            waiter.join().unwrap();
        });
    }
}
