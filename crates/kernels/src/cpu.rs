//! Which SIMD instruction sets the matmul kernels may use on this CPU, detected once.
//!
//! [`detected`] is what the hardware offers; [`isa`] is what the kernels use: the detected level,
//! lowered by the environment variable `HERD_ISA=scalar|avx2|avx512` when it names a lower one
//! (for tests and comparisons; a higher or unknown value is ignored).
//!
//! The SIMD kernels take a proof token ([`Avx2`], [`Avx512`]) that only this module constructs,
//! and only after the features were detected: holding a token is what makes calling a
//! `#[target_feature]` function sound.

use std::sync::OnceLock;

/// Instruction-set level of the kernels, from least to most capable (each implies the ones
/// before it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Portable Rust, no explicit SIMD.
    Scalar,
    /// x86-64 AVX2 + FMA + F16C (Haswell, Zen 1 and later).
    Avx2,
    /// x86-64 AVX-512 F/BW/VL/VNNI on top of [`Isa::Avx2`] (Ice Lake, Sapphire Rapids, Zen 4 and
    /// later). AVX-512 CPUs without VNNI (Skylake-SP) run at [`Isa::Avx2`].
    Avx512,
}

impl Isa {
    /// Every level, lowest first.
    pub const ALL: [Isa; 3] = [Isa::Scalar, Isa::Avx2, Isa::Avx512];

    /// The lowercase name `HERD_ISA` accepts.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// Parses a [`Isa::name`] (case-insensitive).
    pub fn from_name(name: &str) -> Option<Isa> {
        Isa::ALL
            .into_iter()
            .find(|isa| isa.name().eq_ignore_ascii_case(name.trim()))
    }

    /// Whether this CPU can run kernels of this level.
    pub fn is_supported(self) -> bool {
        self <= detected()
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The highest level this CPU supports (detected once).
pub fn detected() -> Isa {
    static DETECTED: OnceLock<Isa> = OnceLock::new();
    *DETECTED.get_or_init(detect)
}

/// The level the kernels use: [`detected`], lowered by `HERD_ISA` (read once).
pub fn isa() -> Isa {
    static CHOSEN: OnceLock<Isa> = OnceLock::new();
    *CHOSEN.get_or_init(|| {
        let forced = std::env::var("HERD_ISA")
            .ok()
            .and_then(|v| Isa::from_name(&v));
        match forced {
            Some(f) => f.min(detected()),
            None => detected(),
        }
    })
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Isa {
    let avx2 = is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c");
    let avx512 = is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vnni");
    match (avx2, avx512) {
        (true, true) => Isa::Avx512,
        (true, false) => Isa::Avx2,
        _ => Isa::Scalar,
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Isa {
    Isa::Scalar
}

/// Proof that AVX2, FMA and F16C are available.
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Avx2(());

/// Proof that everything of [`Isa::Avx512`] (and so of [`Isa::Avx2`]) is available.
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Avx512(());

#[cfg(target_arch = "x86_64")]
impl Avx512 {
    /// The AVX2 token this level implies.
    pub(crate) fn avx2(self) -> Avx2 {
        Avx2(())
    }
}

/// The kernels a level runs, with the proof token of its features.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Level {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2(Avx2),
    #[cfg(target_arch = "x86_64")]
    Avx512(Avx512),
}

impl Level {
    /// The level for `isa`, or `None` when this CPU does not support it.
    pub(crate) fn new(isa: Isa) -> Option<Level> {
        if !isa.is_supported() {
            return None;
        }
        Some(match isa {
            Isa::Scalar => Level::Scalar,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => Level::Avx2(Avx2(())),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => Level::Avx512(Avx512(())),
            // Unreachable: `is_supported` is false for SIMD levels off x86-64.
            #[cfg(not(target_arch = "x86_64"))]
            _ => Level::Scalar,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_order() {
        for isa in Isa::ALL {
            assert_eq!(Isa::from_name(isa.name()), Some(isa));
        }
        assert_eq!(Isa::from_name(" AVX2 "), Some(Isa::Avx2));
        assert_eq!(Isa::from_name("sse"), None);
        assert!(Isa::Scalar < Isa::Avx2 && Isa::Avx2 < Isa::Avx512);
    }

    #[test]
    fn chosen_level_is_supported() {
        assert!(isa() <= detected());
        assert!(Isa::Scalar.is_supported());
        for isa in Isa::ALL {
            assert_eq!(Level::new(isa).is_some(), isa.is_supported());
        }
    }
}
