//! What a pool kind plus a flush mode guarantee, in words an operator can act on.

use super::{FlushMode, PoolKind};

/// How much a write that the engine acknowledged survives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Survives a process crash and a power loss.
    PowerLoss,
    /// Survives a process crash (and a kernel that keeps running), not a power loss.
    ProcessCrash,
    /// Survives a process crash only while the machine keeps running (DRAM-backed file).
    ProcessCrashUntilReboot,
    /// Test mode: the power-failure simulator decides.
    Simulated,
}

impl Durability {
    /// The guarantee of a pool of `kind` flushed with `mode` (`on_tmpfs`: the file is in DRAM).
    pub fn of(kind: PoolKind, mode: FlushMode, on_tmpfs: bool) -> Durability {
        match (kind, mode) {
            (_, FlushMode::Simulated) => Durability::Simulated,
            (PoolKind::Emulated, _) if on_tmpfs => Durability::ProcessCrashUntilReboot,
            (PoolKind::Emulated, FlushMode::Msync) => Durability::PowerLoss,
            (PoolKind::Emulated, _) => Durability::ProcessCrash,
            // On DAX the flush instructions reach the media; `none` is right only on eADR
            // platforms, which the operator asserts by choosing it. msync on DAX also works.
            (PoolKind::DevDax | PoolKind::FsDax, _) => Durability::PowerLoss,
        }
    }

    /// One sentence for the startup banner.
    pub fn describe(self, kind: PoolKind, mode: FlushMode) -> String {
        match self {
            Durability::PowerLoss if mode == FlushMode::None => format!(
                "{kind} pool with flush mode none: survives a power loss only on an eADR platform \
                 (caches protected by the power supply)"
            ),
            Durability::PowerLoss => {
                format!("{kind} pool with {mode}: acknowledged writes survive a power loss")
            }
            Durability::ProcessCrash => format!(
                "emulated pool on a page-cache file with {mode}: survives a process crash, not a \
                 power loss; use --flush msync (or EAGLE_FLUSH=msync) or a DAX device for that"
            ),
            Durability::ProcessCrashUntilReboot => format!(
                "emulated pool on tmpfs (DRAM) with {mode}: survives a process crash, not a reboot \
                 or power loss"
            ),
            Durability::Simulated => "simulated pool: durability decided by the power-failure \
                                      simulator (tests only)"
                .to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_msync_or_dax_promise_power_loss_durability() {
        use Durability::*;
        assert_eq!(
            Durability::of(PoolKind::Emulated, FlushMode::Clwb, false),
            ProcessCrash
        );
        assert_eq!(
            Durability::of(PoolKind::Emulated, FlushMode::Msync, false),
            PowerLoss
        );
        assert_eq!(
            Durability::of(PoolKind::Emulated, FlushMode::Msync, true),
            ProcessCrashUntilReboot
        );
        assert_eq!(
            Durability::of(PoolKind::FsDax, FlushMode::Clwb, false),
            PowerLoss
        );
        assert_eq!(
            Durability::of(PoolKind::DevDax, FlushMode::Clflushopt, false),
            PowerLoss
        );
        let s = ProcessCrash.describe(PoolKind::Emulated, FlushMode::Clwb);
        assert!(
            s.contains("not a power loss") && s.contains("EAGLE_FLUSH=msync"),
            "{s}"
        );
        let s = PowerLoss.describe(PoolKind::FsDax, FlushMode::None);
        assert!(s.contains("eADR"), "{s}");
    }
}
