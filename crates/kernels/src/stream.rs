//! A plain read pass over memory, the way the decode kernels read their weights: in order,
//! several 64-byte lines in flight, and a software prefetch [`PREFETCH_BYTES`] ahead with the
//! kernels' hint ([`prefetch_stream`]). It is the yardstick of a memory-bandwidth probe: a probe
//! that reads with less help than the kernels get would measure less than they reach, and no
//! ceiling at all.

#[cfg(target_arch = "x86_64")]
use crate::avx2_dot::PREFETCH_BYTES;

/// Wrapping sum of `x` (so the reads cannot be skipped), read sequentially with prefetch.
pub fn sum_words(x: &[u64]) -> u64 {
    let mut acc = [0u64; 8];
    let mut lines = x.chunks_exact(8);
    for (i, line) in (&mut lines).enumerate() {
        #[cfg(target_arch = "x86_64")]
        prefetch_ahead(x, i * 8);
        #[cfg(not(target_arch = "x86_64"))]
        let _ = i;
        for (a, &v) in acc.iter_mut().zip(line) {
            *a = a.wrapping_add(v);
        }
    }
    let rest = lines
        .remainder()
        .iter()
        .fold(0u64, |a, &v| a.wrapping_add(v));
    acc.iter().fold(rest, |a, &v| a.wrapping_add(v))
}

/// Asks for the line [`PREFETCH_BYTES`] past word `at` of `x` (a hint: an address past the end
/// is never dereferenced).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch_ahead(x: &[u64], at: usize) {
    prefetch_stream(x.as_ptr().wrapping_add(at + PREFETCH_BYTES / 8) as usize, 1);
}

/// Asks for every cache line of `b` (hints, never faulting).
pub fn prefetch_range(b: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    prefetch_lines::<{ std::arch::x86_64::_MM_HINT_T0 }>(b.as_ptr() as usize, b.len().div_ceil(64));
    #[cfg(not(target_arch = "x86_64"))]
    let _ = b;
}

/// Asks for `n` cache lines from address `addr` of weights a decode kernel reads next, as they
/// stream from memory (hints: the addresses are never dereferenced, so any value is harmless).
/// A loop that moves `step` bytes per iteration and asks for `step.div_ceil(64)` lines from a
/// point a fixed distance ahead leaves no line out, wherever the lines fall.
///
/// The lines go to the core's L2 cache ([`stream_into_l2`]), except on AMD's cores, where
/// they go to L1 as they were measured.
#[inline(always)]
pub(crate) fn prefetch_stream(addr: usize, n: usize) {
    #[cfg(target_arch = "x86_64")]
    if stream_into_l2() {
        prefetch_lines::<{ std::arch::x86_64::_MM_HINT_T1 }>(addr, n);
    } else {
        prefetch_lines::<{ std::arch::x86_64::_MM_HINT_T0 }>(addr, n);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (addr, n);
}

/// Whether [`prefetch_stream`] asks for lines into L2 rather than L1. On the Intel Xeon
/// (Emerald Rapids) herd is measured on, L2 prefetches 16 KiB ahead read the weights 13–17%
/// faster than L1 prefetches for TinyLlama F16 decode, 0–12% for Q4_K_M and 0–8% for Q8_0 at
/// two threads (alternating runs of `herd bench -n 64`): an L1 prefetch holds one of the core's
/// few L1 miss buffers until its line arrives, an L2 prefetch only the L2's deeper queue, so
/// more lines are in flight. AMD's cores keep L1 prefetches (the distances tuned there were
/// measured with them).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn stream_into_l2() -> bool {
    !crate::cpu::vendor_is_amd()
}

/// Asks for `n` cache lines from address `addr` into the core's L2 cache (hints: the addresses
/// are never dereferenced, so any value is harmless).
#[inline]
pub(crate) fn prefetch_lines_l2(addr: usize, n: usize) {
    #[cfg(target_arch = "x86_64")]
    prefetch_lines::<{ std::arch::x86_64::_MM_HINT_T1 }>(addr, n);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (addr, n);
}

/// `n` prefetches of the hint `HINT`, one per 64 bytes from `addr`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch_lines<const HINT: i32>(addr: usize, n: usize) {
    for i in 0..n {
        let p = addr.wrapping_add(64 * i) as *const i8;
        // SAFETY: prefetching is a hint that never faults, whatever the address.
        unsafe { std::arch::x86_64::_mm_prefetch::<HINT>(p) };
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sums_every_word_once() {
        for n in [0, 1, 7, 8, 9, 1003, 5000] {
            let x: Vec<u64> = (0..n as u64).collect();
            assert_eq!(super::sum_words(&x), (0..n as u64).sum::<u64>(), "{n}");
        }
    }
}
