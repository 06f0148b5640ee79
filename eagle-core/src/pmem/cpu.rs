//! Which cache-line write-back instructions this CPU has, read once at run time.

/// The flush instructions the running CPU supports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuFlushCaps {
    /// x86-64 `clflush` (CPUID.01H:EDX bit 19).
    pub clflush: bool,
    /// x86-64 `clflushopt` (CPUID.(EAX=07H,ECX=0):EBX bit 23).
    pub clflushopt: bool,
    /// x86-64 `clwb` (CPUID.(EAX=07H,ECX=0):EBX bit 24).
    pub clwb: bool,
    /// aarch64 `dc cvap` (ARMv8.2 "dpb").
    pub dc_cvap: bool,
    /// aarch64 `dc cvac` (every ARMv8 CPU).
    pub dc_cvac: bool,
}

impl CpuFlushCaps {
    /// Reads the capabilities of the CPU this process runs on.
    pub fn detect() -> CpuFlushCaps {
        detect_impl()
    }
}

#[cfg(target_arch = "x86_64")]
fn detect_impl() -> CpuFlushCaps {
    use core::arch::x86_64::{__cpuid, __cpuid_count};
    // `is_x86_feature_detected!("clwb")` does not exist on stable, so read CPUID directly.
    // CPUID exists on every x86-64 CPU (the intrinsics are safe since Rust 1.87); leaf 0 reports
    // the highest supported leaf, and leaves 1 and 7 are only queried when it allows them.
    let max_leaf = __cpuid(0).eax;
    let leaf1_edx = if max_leaf >= 1 { __cpuid(1).edx } else { 0 };
    let leaf7_ebx = if max_leaf >= 7 {
        __cpuid_count(7, 0).ebx
    } else {
        0
    };
    caps_from_cpuid(leaf1_edx, leaf7_ebx)
}

/// Decodes the CPUID bits (split out so the decoding is testable with synthetic values).
#[cfg(target_arch = "x86_64")]
pub(crate) fn caps_from_cpuid(leaf1_edx: u32, leaf7_ebx: u32) -> CpuFlushCaps {
    CpuFlushCaps {
        clflush: leaf1_edx & (1 << 19) != 0,
        clflushopt: leaf7_ebx & (1 << 23) != 0,
        clwb: leaf7_ebx & (1 << 24) != 0,
        dc_cvap: false,
        dc_cvac: false,
    }
}

#[cfg(target_arch = "aarch64")]
fn detect_impl() -> CpuFlushCaps {
    CpuFlushCaps {
        dc_cvap: std::arch::is_aarch64_feature_detected!("dpb"),
        dc_cvac: true,
        ..CpuFlushCaps::default()
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn detect_impl() -> CpuFlushCaps {
    CpuFlushCaps::default()
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[test]
    fn cpuid_bits_decode_to_the_right_instructions() {
        assert_eq!(caps_from_cpuid(0, 0), CpuFlushCaps::default());
        let c = caps_from_cpuid(1 << 19, 1 << 23);
        assert!(c.clflush && c.clflushopt && !c.clwb);
        let c = caps_from_cpuid(0, 1 << 24);
        assert!(!c.clflush && !c.clflushopt && c.clwb);
        // Neighbouring bits must not be mistaken for ours.
        let c = caps_from_cpuid(!(1 << 19), !((1 << 23) | (1 << 24)));
        assert_eq!(c, CpuFlushCaps::default());
    }

    #[test]
    fn detection_agrees_with_the_kernels_cpu_flags() {
        let Ok(cpuinfo) = std::fs::read_to_string("/proc/cpuinfo") else {
            return;
        };
        let flags: Vec<&str> = cpuinfo
            .lines()
            .find(|l| l.starts_with("flags"))
            .map(|l| l.split_whitespace().collect())
            .unwrap_or_default();
        let caps = CpuFlushCaps::detect();
        assert_eq!(caps.clwb, flags.contains(&"clwb"), "clwb");
        assert_eq!(caps.clflushopt, flags.contains(&"clflushopt"), "clflushopt");
        assert_eq!(caps.clflush, flags.contains(&"clflush"), "clflush");
    }
}
