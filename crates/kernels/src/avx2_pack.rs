//! AVX2 twins of the panel packers of `pack.rs` (also used at the AVX-512 level: packing is a
//! small share of the work).

use std::arch::x86_64::*;

use crate::act_q8::{GROUP_BLOCKS, GROUP_BYTES};
use crate::avx2_dot::{float_bytes, load1, load8, nibbles, BF16, F16, F32};
use crate::cpu::Avx2;
use crate::pack::{f32_row_len, quant_shape};
use crate::qx16::{QUANTS_AT, X16};
use crate::WeightType;

/// Converts one stored float row into `out`; see [`crate::pack::pack_float_row`].
pub(crate) fn pack_float_row(_: Avx2, ty: WeightType, row: &[u8], out: &mut [f32]) {
    let kind = match ty {
        WeightType::F32 => F32,
        WeightType::F16 => F16,
        WeightType::BF16 => BF16,
        _ => panic!("not a float type: {ty:?}"),
    };
    let n = row.len() / float_bytes(kind);
    assert!(row.len() == n * float_bytes(kind) && out.len() == f32_row_len(n));
    // SAFETY: the token proves the features; `row` holds n values, `out` at least n.
    unsafe {
        match kind {
            F32 => convert_avx2::<F32>(row.as_ptr(), &mut out[..n]),
            F16 => convert_avx2::<F16>(row.as_ptr(), &mut out[..n]),
            _ => convert_avx2::<BF16>(row.as_ptr(), &mut out[..n]),
        }
    }
    out[n..].fill(0.0);
}

/// # Safety
/// AVX2/FMA/F16C available; `w` holds `out.len()` values of `KIND`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn convert_avx2<const KIND: u8>(w: *const u8, out: &mut [f32]) {
    let n = out.len();
    let mut i = 0;
    // SAFETY: every index stays below n.
    unsafe {
        while i + 8 <= n {
            _mm256_storeu_ps(out.as_mut_ptr().add(i), load8::<KIND>(w, i));
            i += 8;
        }
        for (j, o) in out.iter_mut().enumerate().skip(i) {
            *o = load1::<KIND>(w, j);
        }
    }
}

/// Packs one stored Q8_0 / Q4_0 row; see [`crate::pack::pack_quant_row`].
pub(crate) fn pack_quant_row(_: Avx2, ty: WeightType, row: &[u8], qs: &mut [u8], d: &mut [f32]) {
    let (bytes, nb) = quant_shape(ty, row);
    let ng = nb.div_ceil(GROUP_BLOCKS);
    assert!(qs.len() == ng * GROUP_BYTES && d.len() == ng * GROUP_BLOCKS);
    // SAFETY: the token proves the features; lengths checked above.
    unsafe {
        if ty == WeightType::Q4_0 {
            pack_quant_avx2::<true>(row.as_ptr(), bytes, nb, qs, d)
        } else {
            pack_quant_avx2::<false>(row.as_ptr(), bytes, nb, qs, d)
        }
    }
}

/// # Safety
/// AVX2/FMA/F16C available; `row` holds `nb` blocks of `bytes`; `qs` and `d` sized for
/// `ceil(nb / 16)` groups.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn pack_quant_avx2<const Q4: bool>(
    row: *const u8,
    bytes: usize,
    nb: usize,
    qs: &mut [u8],
    d: &mut [f32],
) {
    for g in 0..nb.div_ceil(GROUP_BLOCKS) {
        for h in 0..2 {
            let mut r = [_mm256_setzero_si256(); 8];
            let mut bits = [0u16; 8];
            for (i, (ri, bi)) in r.iter_mut().zip(bits.iter_mut()).enumerate() {
                let b = g * GROUP_BLOCKS + h * 8 + i;
                if b >= nb {
                    break;
                }
                // SAFETY: block b < nb lies inside the row.
                unsafe {
                    let blk = row.add(b * bytes);
                    *bi = (blk as *const u16).read_unaligned();
                    *ri = if Q4 {
                        nibbles(blk.add(2))
                    } else {
                        let q = _mm256_loadu_si256(blk.add(2) as *const __m256i);
                        _mm256_xor_si256(q, _mm256_set1_epi8(-128))
                    };
                }
            }
            let cols = transpose8x8(r);
            // SAFETY: group g, half h of qs and d are in bounds (sizes checked by the caller).
            unsafe {
                let base = qs.as_mut_ptr().add(g * GROUP_BYTES + h * 32);
                for (k, c) in cols.iter().enumerate() {
                    _mm256_storeu_si256(base.add(k * 64) as *mut __m256i, *c);
                }
                let scales = _mm256_cvtph_ps(_mm_loadu_si128(bits.as_ptr() as *const __m128i));
                _mm256_storeu_ps(d.as_mut_ptr().add(g * GROUP_BLOCKS + h * 8), scales);
            }
        }
    }
}

/// Packs one repacked Q8_0 / Q4_0 row (`qx16.rs`): bitwise [`crate::qx16::pack_tiles_row`],
/// Q8_0's bytes copied, Q4_0's nibbles split 32 bytes at a time, the scales widened 8 at a time.
pub(crate) fn pack_x16_row(_: Avx2, kind: X16, row: &[u8], qs: &mut [u8], d: &mut [f32]) {
    assert!(row.len().is_multiple_of(kind.block_bytes()));
    let nb = row.len() / kind.block_bytes();
    let (whole, ng) = (nb / GROUP_BLOCKS, nb.div_ceil(GROUP_BLOCKS));
    assert!(qs.len() == ng * GROUP_BYTES && d.len() == ng * GROUP_BLOCKS);
    // SAFETY: the token proves the features; lengths checked above.
    unsafe { pack_x16_avx2(kind, row.as_ptr(), whole, qs, d) };
    if whole < ng {
        // The partial last group as the whole group it stands for, from a copy.
        let pad = crate::qx16::whole_group(kind, row, whole);
        let (q, d) = (
            &mut qs[whole * GROUP_BYTES..],
            &mut d[whole * GROUP_BLOCKS..],
        );
        // SAFETY: as above; the copy holds a whole group, `q` and `d` one group's room.
        unsafe { pack_x16_avx2(kind, pad.as_ptr(), 1, q, d) };
    }
}

/// # Safety
/// AVX2/FMA/F16C available; `row` holds `ng` whole groups of `kind`, `qs` `ng · 512` bytes,
/// `d` `ng · 16` values.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn pack_x16_avx2(kind: X16, row: *const u8, ng: usize, qs: &mut [u8], d: &mut [f32]) {
    let (group, low) = (kind.group_bytes(), _mm256_set1_epi8(0x0f));
    for g in 0..ng {
        // SAFETY: group g of the row, of `qs` and of `d` is in bounds (checked by the caller).
        unsafe {
            let (grp, q) = (row.add(g * group), qs.as_mut_ptr().add(g * GROUP_BYTES));
            let quants = grp.add(QUANTS_AT);
            match kind {
                X16::Q8_0 => std::ptr::copy_nonoverlapping(quants, q, GROUP_BYTES),
                X16::Q4_0 => {
                    for j in (0..GROUP_BYTES / 2).step_by(32) {
                        let v = _mm256_loadu_si256(quants.add(j) as *const __m256i);
                        let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), low);
                        _mm256_storeu_si256(q.add(j) as *mut __m256i, _mm256_and_si256(v, low));
                        _mm256_storeu_si256(q.add(GROUP_BYTES / 2 + j) as *mut __m256i, hi);
                    }
                }
            }
            for h in 0..2 {
                let bits = _mm_loadu_si128(grp.add(16 * h) as *const __m128i);
                let at = d.as_mut_ptr().add(g * GROUP_BLOCKS + 8 * h);
                _mm256_storeu_ps(at, _mm256_cvtph_ps(bits));
            }
        }
    }
}

/// Transposes eight rows of eight 32-bit values: `out[k]` lane `i` = `r[i]` lane `k`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn transpose8x8(r: [__m256i; 8]) -> [__m256i; 8] {
    let t0 = _mm256_unpacklo_epi32(r[0], r[1]);
    let t1 = _mm256_unpackhi_epi32(r[0], r[1]);
    let t2 = _mm256_unpacklo_epi32(r[2], r[3]);
    let t3 = _mm256_unpackhi_epi32(r[2], r[3]);
    let t4 = _mm256_unpacklo_epi32(r[4], r[5]);
    let t5 = _mm256_unpackhi_epi32(r[4], r[5]);
    let t6 = _mm256_unpacklo_epi32(r[6], r[7]);
    let t7 = _mm256_unpackhi_epi32(r[6], r[7]);
    let u0 = _mm256_unpacklo_epi64(t0, t2);
    let u1 = _mm256_unpackhi_epi64(t0, t2);
    let u2 = _mm256_unpacklo_epi64(t1, t3);
    let u3 = _mm256_unpackhi_epi64(t1, t3);
    let u4 = _mm256_unpacklo_epi64(t4, t6);
    let u5 = _mm256_unpackhi_epi64(t4, t6);
    let u6 = _mm256_unpacklo_epi64(t5, t7);
    let u7 = _mm256_unpackhi_epi64(t5, t7);
    [
        _mm256_permute2x128_si256::<0x20>(u0, u4),
        _mm256_permute2x128_si256::<0x20>(u1, u5),
        _mm256_permute2x128_si256::<0x20>(u2, u6),
        _mm256_permute2x128_si256::<0x20>(u3, u7),
        _mm256_permute2x128_si256::<0x31>(u0, u4),
        _mm256_permute2x128_si256::<0x31>(u1, u5),
        _mm256_permute2x128_si256::<0x31>(u2, u6),
        _mm256_permute2x128_si256::<0x31>(u3, u7),
    ]
}
