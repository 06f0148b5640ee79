//! The flush modes, how one is chosen (option > `EAGLE_FLUSH` > auto-detection), and what each
//! guarantees.

use std::fmt;
use std::str::FromStr;

use super::{CpuFlushCaps, PmemError};

/// Environment variable that selects the flush mode when no explicit option does.
pub const FLUSH_ENV: &str = "EAGLE_FLUSH";

/// How the engine makes a store durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlushMode {
    /// x86-64 `clwb` + `sfence`: writes the line back and may keep it cached.
    Clwb,
    /// x86-64 `clflushopt` + `sfence`: writes back and evicts.
    Clflushopt,
    /// x86-64 `clflush`: writes back and evicts; ordered by itself, so no fence is needed.
    Clflush,
    /// aarch64 `dc cvap` + `dsb ish`: clean to the point of persistence.
    DcCvap,
    /// aarch64 `dc cvac` + `dsb ish`: clean to the point of coherency (CPUs without ARMv8.2 DPB).
    DcCvac,
    /// `msync(MS_SYNC)` of the pages touched: power-loss durability for pools on ordinary storage.
    Msync,
    /// No flush, fence only: for eADR platforms (caches are power-protected) and tests.
    None,
    /// The power-failure simulator of `pmem-emulation` tracks flushes and fences (tests only).
    Simulated,
}

/// Who chose the flush mode in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushSource {
    /// An explicit option (configuration file, command line, or embedding program).
    Option,
    /// The `EAGLE_FLUSH` environment variable.
    Environment,
    /// Detected from the CPU.
    Auto,
}

impl FlushMode {
    /// The names accepted by [`FromStr`] and printed by [`fmt::Display`].
    pub const NAMES: &'static [&'static str] = &[
        "clwb",
        "clflushopt",
        "clflush",
        "dc-cvap",
        "dc-cvac",
        "msync",
        "none",
    ];

    /// The best cache-line flush this CPU offers: clwb > clflushopt > clflush on x86-64,
    /// dc cvap > dc cvac on aarch64; `None` where the CPU has no flush instruction we know.
    pub fn best_for(caps: CpuFlushCaps) -> FlushMode {
        if caps.clwb {
            FlushMode::Clwb
        } else if caps.clflushopt {
            FlushMode::Clflushopt
        } else if caps.clflush {
            FlushMode::Clflush
        } else if caps.dc_cvap {
            FlushMode::DcCvap
        } else if caps.dc_cvac {
            FlushMode::DcCvac
        } else {
            FlushMode::Msync
        }
    }

    /// Whether this CPU can execute the mode.
    pub fn supported_by(self, caps: CpuFlushCaps) -> bool {
        match self {
            FlushMode::Clwb => caps.clwb,
            FlushMode::Clflushopt => caps.clflushopt,
            FlushMode::Clflush => caps.clflush,
            FlushMode::DcCvap => caps.dc_cvap,
            FlushMode::DcCvac => caps.dc_cvac,
            FlushMode::Msync | FlushMode::None | FlushMode::Simulated => true,
        }
    }

    /// Whether the mode writes cache lines back with a CPU instruction.
    pub fn is_cache_flush(self) -> bool {
        matches!(
            self,
            FlushMode::Clwb
                | FlushMode::Clflushopt
                | FlushMode::Clflush
                | FlushMode::DcCvap
                | FlushMode::DcCvac
        )
    }

    /// Resolves the mode to use: `explicit` if given, else `EAGLE_FLUSH` (value `env`), else the
    /// best the CPU has. An explicit or environment choice the CPU cannot execute is an error, as
    /// is an unknown name in the environment.
    pub fn resolve(
        explicit: Option<FlushMode>,
        env: Option<&str>,
        caps: CpuFlushCaps,
    ) -> Result<(FlushMode, FlushSource), PmemError> {
        let (mode, source) = match (explicit, env.map(str::trim).filter(|s| !s.is_empty())) {
            (Some(mode), _) => (mode, FlushSource::Option),
            (None, Some(name)) if name.eq_ignore_ascii_case("auto") => {
                (FlushMode::best_for(caps), FlushSource::Auto)
            }
            (None, Some(name)) => (
                name.parse::<FlushMode>()
                    .map_err(|e| PmemError::InvalidFlushMode {
                        source_name: FLUSH_ENV,
                        message: e.to_string(),
                    })?,
                FlushSource::Environment,
            ),
            (None, None) => (FlushMode::best_for(caps), FlushSource::Auto),
        };
        if !mode.supported_by(caps) {
            return Err(PmemError::UnsupportedFlushMode { mode });
        }
        Ok((mode, source))
    }
}

impl fmt::Display for FlushMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FlushMode::Clwb => "clwb",
            FlushMode::Clflushopt => "clflushopt",
            FlushMode::Clflush => "clflush",
            FlushMode::DcCvap => "dc-cvap",
            FlushMode::DcCvac => "dc-cvac",
            FlushMode::Msync => "msync",
            FlushMode::None => "none",
            FlushMode::Simulated => "simulated",
        })
    }
}

/// Error for a flush-mode name that is not one of [`FlushMode::NAMES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownFlushMode(pub String);

impl fmt::Display for UnknownFlushMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown flush mode '{}' (expected auto or one of: {})",
            self.0,
            FlushMode::NAMES.join(", ")
        )
    }
}

impl std::error::Error for UnknownFlushMode {}

impl FromStr for FlushMode {
    type Err = UnknownFlushMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "clwb" => FlushMode::Clwb,
            "clflushopt" => FlushMode::Clflushopt,
            "clflush" => FlushMode::Clflush,
            "dc-cvap" | "dc_cvap" | "cvap" => FlushMode::DcCvap,
            "dc-cvac" | "dc_cvac" | "cvac" => FlushMode::DcCvac,
            "msync" => FlushMode::Msync,
            "none" | "eadr" => FlushMode::None,
            _ => return Err(UnknownFlushMode(s.to_string())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_X86: CpuFlushCaps = CpuFlushCaps {
        clflush: true,
        clflushopt: true,
        clwb: true,
        dc_cvap: false,
        dc_cvac: false,
    };

    #[test]
    fn auto_prefers_clwb_then_clflushopt_then_clflush() {
        assert_eq!(FlushMode::best_for(ALL_X86), FlushMode::Clwb);
        let no_clwb = CpuFlushCaps {
            clwb: false,
            ..ALL_X86
        };
        assert_eq!(FlushMode::best_for(no_clwb), FlushMode::Clflushopt);
        let only_clflush = CpuFlushCaps {
            clflush: true,
            ..CpuFlushCaps::default()
        };
        assert_eq!(FlushMode::best_for(only_clflush), FlushMode::Clflush);
        let arm = CpuFlushCaps {
            dc_cvap: true,
            dc_cvac: true,
            ..CpuFlushCaps::default()
        };
        assert_eq!(FlushMode::best_for(arm), FlushMode::DcCvap);
        let old_arm = CpuFlushCaps {
            dc_cvac: true,
            ..CpuFlushCaps::default()
        };
        assert_eq!(FlushMode::best_for(old_arm), FlushMode::DcCvac);
        assert_eq!(
            FlushMode::best_for(CpuFlushCaps::default()),
            FlushMode::Msync
        );
    }

    #[test]
    fn explicit_option_beats_environment_which_beats_auto() {
        let r = FlushMode::resolve(Some(FlushMode::Clflush), Some("none"), ALL_X86).unwrap();
        assert_eq!(r, (FlushMode::Clflush, FlushSource::Option));
        let r = FlushMode::resolve(None, Some("clflushopt"), ALL_X86).unwrap();
        assert_eq!(r, (FlushMode::Clflushopt, FlushSource::Environment));
        let r = FlushMode::resolve(None, Some("auto"), ALL_X86).unwrap();
        assert_eq!(r, (FlushMode::Clwb, FlushSource::Auto));
        let r = FlushMode::resolve(None, Some("  "), ALL_X86).unwrap();
        assert_eq!(r, (FlushMode::Clwb, FlushSource::Auto));
        let r = FlushMode::resolve(None, None, ALL_X86).unwrap();
        assert_eq!(r, (FlushMode::Clwb, FlushSource::Auto));
    }

    #[test]
    fn a_mode_the_cpu_lacks_is_refused() {
        let no_clwb = CpuFlushCaps {
            clwb: false,
            ..ALL_X86
        };
        let e = FlushMode::resolve(Some(FlushMode::Clwb), None, no_clwb).unwrap_err();
        assert!(e.to_string().contains("clwb"), "{e}");
        let e = FlushMode::resolve(None, Some("dc-cvap"), ALL_X86).unwrap_err();
        assert!(e.to_string().contains("dc-cvap"), "{e}");
    }

    #[test]
    fn unknown_environment_value_is_an_error_naming_the_variable() {
        let e = FlushMode::resolve(None, Some("fast"), ALL_X86).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(FLUSH_ENV) && msg.contains("fast"), "{msg}");
    }

    #[test]
    fn every_name_round_trips() {
        for name in FlushMode::NAMES {
            let mode: FlushMode = name.parse().unwrap();
            assert_eq!(mode.to_string(), *name);
        }
        assert!("simulated".parse::<FlushMode>().is_err());
    }
}
