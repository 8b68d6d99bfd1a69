//! Which SIMD instruction sets the matmul kernels may use on this CPU, detected once.
//!
//! [`detected`] is what the hardware offers; [`isa`] is what the kernels use: the detected level,
//! lowered by the environment variable `HERD_ISA=scalar|avx2|avx512|amx` when it names a lower one
//! (for tests and comparisons; a higher or unknown value is ignored). `HERD_ISA=avx512` keeps the
//! AVX-512 VNNI kernels and turns the AMX ones off.
//!
//! The SIMD kernels take a proof token ([`Avx2`], [`Avx512`], [`Amx`]) that only this module
//! constructs, and only after the features were detected (for AMX: and the operating system
//! granted this process the tile state): holding a token is what makes calling a
//! `#[target_feature]` function, or executing the tile instructions, sound.

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
    /// AMX tiles (AMX-TILE + AMX-INT8 + AMX-BF16, Sapphire Rapids and later) on top of
    /// [`Isa::Avx512`], for the prefill of quantized weights (BF16 tiles); everything else runs the
    /// [`Isa::Avx512`] kernels. Needs the operating system's consent (on Linux, `arch_prctl`
    /// `ARCH_REQ_XCOMP_PERM`, asked once per process); without it the CPU runs at
    /// [`Isa::Avx512`].
    Amx,
}

impl Isa {
    /// Every level, lowest first.
    pub const ALL: [Isa; 4] = [Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Amx];

    /// The lowercase name `HERD_ISA` accepts.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Amx => "amx",
        }
    }

    /// Parses a [`Isa::name`] (case-insensitive).
    pub fn from_name(name: &str) -> Option<Isa> {
        Isa::ALL
            .into_iter()
            .find(|isa| isa.name().eq_ignore_ascii_case(name.trim()))
    }

    /// Whether this CPU (and, for [`Isa::Amx`], the operating system) can run kernels of this
    /// level.
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
    *DETECTED.get_or_init(|| {
        AMD.store(cpu_is_amd(), std::sync::atomic::Ordering::Relaxed);
        detect()
    })
}

/// The level the kernels use, fixed the first time it is asked for.
static CHOSEN: OnceLock<Isa> = OnceLock::new();

/// [`detected`], lowered by `HERD_ISA`.
fn chosen() -> Isa {
    let forced = std::env::var("HERD_ISA")
        .ok()
        .and_then(|v| Isa::from_name(&v));
    match forced {
        Some(f) => f.min(detected()),
        None => detected(),
    }
}

/// The level the kernels use: [`detected`], lowered by `HERD_ISA` (read once) or by
/// [`cap_isa`].
pub fn isa() -> Isa {
    *CHOSEN.get_or_init(chosen)
}

/// Lowers the level the kernels use to at most `max` for the rest of the process, if no kernel
/// has asked for the level yet; returns the level in force.
pub fn cap_isa(max: Isa) -> Isa {
    *CHOSEN.get_or_init(|| chosen().min(max))
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
        (true, true) if amx_usable() => Isa::Amx,
        (true, true) => Isa::Avx512,
        (true, false) => Isa::Avx2,
        _ => Isa::Scalar,
    }
}

/// Whether the CPU's vendor string is AMD's (some tuning differs between vendors): read from
/// the CPU by [`detected`], which runs before any [`Level`] exists. A plain load, since hot
/// loops ask it (their prefetch hints): a lazy initialisation's call on its cold path made the
/// compiler keep vector registers in memory around it.
pub(crate) fn vendor_is_amd() -> bool {
    AMD.load(std::sync::atomic::Ordering::Relaxed)
}

/// [`vendor_is_amd`], set by [`detected`].
static AMD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether the CPU's vendor string is AMD's, asked of the CPU.
fn cpu_is_amd() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        // Leaf 0: the vendor string in EBX, EDX, ECX.
        let r = std::arch::x86_64::__cpuid(0);
        let mut v = [0u8; 12];
        v[..4].copy_from_slice(&r.ebx.to_le_bytes());
        v[4..8].copy_from_slice(&r.edx.to_le_bytes());
        v[8..].copy_from_slice(&r.ecx.to_le_bytes());
        &v == b"AuthenticAMD"
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Whether the CPU has AMX-TILE, AMX-INT8 and AMX-BF16, the operating system saves the tile state
/// (XCR0 bits 17 and 18) and, on Linux, grants it to this process.
#[cfg(target_arch = "x86_64")]
fn amx_usable() -> bool {
    use std::arch::x86_64::__cpuid_count;
    // Leaf 7 is only read when leaf 0 reports it.
    if __cpuid_count(0, 0).eax < 7 {
        return false;
    }
    let (leaf1_ecx, leaf7_edx) = (__cpuid_count(1, 0).ecx, __cpuid_count(7, 0).edx);
    const OSXSAVE: u32 = 1 << 27; // leaf 1 ECX
    const AMX_TILE: u32 = 1 << 24; // leaf 7 EDX
    const AMX_INT8: u32 = 1 << 25; // leaf 7 EDX
    const AMX_BF16: u32 = 1 << 22; // leaf 7 EDX
    const AMX: u32 = AMX_TILE | AMX_INT8 | AMX_BF16;
    if leaf1_ecx & OSXSAVE == 0 || leaf7_edx & AMX != AMX {
        return false;
    }
    const XTILE_BITS: u64 = (1 << 17) | (1 << 18); // XTILECFG, XTILEDATA
    let (lo, hi): (u32, u32);
    // SAFETY: XGETBV with ECX = 0 is valid when OSXSAVE is set (checked above); it reads XCR0.
    unsafe {
        std::arch::asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi,
            options(nomem, nostack, preserves_flags));
    }
    let xcr0 = (hi as u64) << 32 | lo as u64;
    xcr0 & XTILE_BITS == XTILE_BITS && request_tile_permission()
}

/// Asks Linux for the tile data state (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`);
/// the grant is for the whole process and is asked once (through [`detected`]).
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request_tile_permission() -> bool {
    const SYS_ARCH_PRCTL: i64 = 158;
    const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
    const XFEATURE_XTILEDATA: i64 = 18;
    let ret: i64;
    // SAFETY: a raw system call that only changes which register state the kernel lets this
    // process use; it reads and writes no memory of ours. `syscall` clobbers RCX and R11.
    unsafe {
        std::arch::asm!("syscall",
            inlateout("rax") SYS_ARCH_PRCTL => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _, lateout("r11") _,
            options(nostack));
    }
    ret == 0
}

/// Other systems: tile state not requested, AMX not used.
#[cfg(all(target_arch = "x86_64", not(target_os = "linux")))]
fn request_tile_permission() -> bool {
    false
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Isa {
    Isa::Scalar
}

/// Proof that AVX2, FMA and F16C are available.
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Avx2(());

/// Proof that everything of [`Isa::Avx512`] (and so of [`Isa::Avx2`]) is available, and, at
/// [`Isa::Amx`], the AMX token.
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Avx512(Option<Amx>);

#[cfg(target_arch = "x86_64")]
impl Avx512 {
    /// The AVX2 token this level implies.
    pub(crate) fn avx2(self) -> Avx2 {
        Avx2(())
    }
    /// The AMX token, when the chosen level is [`Isa::Amx`].
    pub(crate) fn amx(self) -> Option<Amx> {
        self.0
    }
}

/// Proof that everything of [`Isa::Amx`] is available: AMX-TILE, AMX-INT8 and AMX-BF16 present, the tile
/// state granted to this process, and everything of [`Isa::Avx512`].
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Amx(());

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
    /// This level without its AMX token: at [`Isa::Amx`], the AVX-512 kernels (the tile
    /// path's, `matmul::MatmulPath::Tiles`); any other level unchanged.
    pub(crate) fn without_amx(self) -> Level {
        match self {
            #[cfg(target_arch = "x86_64")]
            Level::Avx512(_) => Level::Avx512(Avx512(None)),
            other => other,
        }
    }

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
            Isa::Avx512 => Level::Avx512(Avx512(None)),
            #[cfg(target_arch = "x86_64")]
            Isa::Amx => Level::Avx512(Avx512(Some(Amx(())))),
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
        assert!(Isa::Scalar < Isa::Avx2 && Isa::Avx2 < Isa::Avx512 && Isa::Avx512 < Isa::Amx);
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
