//! K-quant weight quantizers: `f32` rows into Q2_K, Q3_K, Q4_K, Q5_K and Q6_K super-blocks by
//! ggml's reference algorithms (`quantize_row_q*_K_ref`, what llama.cpp uses without an
//! importance matrix).
//!
//! Per sub-block a scale (and for Q2_K / Q4_K / Q5_K a min) is fitted by a small search for the
//! least weighted error; the sub-block scales are then themselves quantized against one f16
//! super-block scale, and every value is re-quantized with the scale it will be decoded with.
//! Each step uses the same `f32` operations in the same order as the reference (no fused
//! multiply-adds), so the bytes match ggml's built without floating-point contraction.

use half::f16;

use super::layout::{q2_k, q3_k, q4_k, q5_k, q6_k, scale_min_k4};
use super::{nearest_int, QK_K};

/// Below this largest magnitude a group counts as all zeros (ggml's `GROUP_MAX_EPS`).
const GROUP_MAX_EPS: f32 = 1e-15;

#[inline]
fn to_f16(x: f32) -> f16 {
    f16::from_f32(x)
}

/// Symmetric fit for `x` with levels −nmax..nmax−1 (stored as l + nmax in `levels`), weights
/// x², trying 19 scales around −nmax / max and keeping the one of least weighted squared
/// error; returns the scale (negative when the largest magnitude is positive).
fn fit_symmetric(x: &[f32], nmax: i32, levels: &mut [i8]) -> f32 {
    let mut max = 0f32;
    let mut amax = 0f32;
    for &v in x {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        levels.fill(0);
        return 0.0;
    }
    let nmaxf = nmax as f32;
    let clamp = |l: i32| l.clamp(-nmax, nmax - 1);
    let mut iscale = -nmaxf / max;
    let mut sumlx = 0f32;
    let mut suml2 = 0f32;
    for (&v, q) in x.iter().zip(levels.iter_mut()) {
        let l = clamp(nearest_int(iscale * v));
        *q = (l + nmax) as i8;
        let w = v * v;
        let lf = l as f32;
        sumlx += w * v * lf;
        suml2 += w * lf * lf;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in -9..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmaxf + 0.1 * is as f32) / max;
        sumlx = 0.0;
        suml2 = 0.0;
        for &v in x {
            let l = clamp(nearest_int(iscale * v)) as f32;
            let w = v * v;
            sumlx += w * v * l;
            suml2 += w * l * l;
        }
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for (&v, q) in x.iter().zip(levels.iter_mut()) {
                *q = (clamp(nearest_int(iscale * v)) + nmax) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// Q3_K's sub-block fit (ggml's `make_q3_quants` with RMSE refinement): levels −nmax..nmax−1
/// from −nmax / max, then up to 5 passes moving single levels where that lowers the x²-weighted
/// error; levels are stored as l + nmax.
fn fit_q3(x: &[f32], nmax: i32, levels: &mut [i8]) -> f32 {
    let mut max = 0f32;
    let mut amax = 0f32;
    for &v in x {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        levels.fill(0);
        return 0.0;
    }
    let clamp = |l: i32| l.clamp(-nmax, nmax - 1);
    let iscale = -(nmax as f32) / max;
    let mut sumlx = 0f32;
    let mut suml2 = 0f32;
    for (&v, q) in x.iter().zip(levels.iter_mut()) {
        let l = clamp(nearest_int(iscale * v));
        *q = l as i8;
        let w = v * v;
        sumlx += w * v * l as f32;
        suml2 += w * l as f32 * l as f32;
    }
    for _ in 0..5 {
        let mut changed = 0;
        for (&v, q) in x.iter().zip(levels.iter_mut()) {
            let w = v * v;
            let cur = *q as f32;
            let mut slx = sumlx - w * v * cur;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * cur * cur;
                let new_l = clamp(nearest_int(v * sl2 / slx));
                if new_l != *q as i32 {
                    let nl = new_l as f32;
                    slx += w * v * nl;
                    sl2 += w * nl * nl;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        *q = new_l as i8;
                        sumlx = slx;
                        suml2 = sl2;
                        changed += 1;
                    }
                }
            }
        }
        if changed == 0 {
            break;
        }
    }
    for q in levels.iter_mut() {
        *q += nmax as i8;
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}

/// Asymmetric fit (ggml's `make_qkx2_quants`): value ≈ scale·l − min with l in 0..=nmax and
/// min ≥ 0, minimising the weighted squared (or, with `use_mad`, absolute) error over
/// `nstep + 1` candidate scales (rmin + rdelta·is + nmax) / (max − min), each refitted by
/// weighted least squares. Returns (scale, min); `aux` is scratch of `x.len()`.
#[allow(clippy::too_many_arguments)]
fn fit_with_min(
    x: &[f32],
    weights: &[f32],
    nmax: i32,
    levels: &mut [u8],
    aux: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
) -> (f32, f32) {
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for (&v, &w) in x.iter().zip(weights).skip(1) {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
        sum_w += w;
        sum_x += w * v;
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        levels.fill(0);
        return (0.0, -min);
    }
    let nmaxf = nmax as f32;
    let err = |d: f32| if use_mad { d.abs() } else { d * d };
    let mut iscale = nmaxf / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0f32;
    for ((&v, &w), q) in x.iter().zip(weights).zip(levels.iter_mut()) {
        let l = nearest_int(iscale * (v - min)).clamp(0, nmax);
        *q = l as u8;
        let diff = scale * l as f32 + min - v;
        best_error += w * err(diff);
    }
    if nstep < 1 {
        return (scale, -min);
    }
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmaxf) / (max - min);
        let mut sum_l = 0f32;
        let mut sum_l2 = 0f32;
        let mut sum_xl = 0f32;
        for ((&v, &w), a) in x.iter().zip(weights).zip(aux.iter_mut()) {
            let l = nearest_int(iscale * (v - min)).clamp(0, nmax);
            *a = l as u8;
            let lf = l as f32;
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * v;
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0f32;
            for ((&v, &w), &a) in x.iter().zip(weights).zip(aux.iter()) {
                let diff = this_scale * a as f32 + this_min - v;
                cur_error += w * err(diff);
            }
            if cur_error < best_error {
                levels.copy_from_slice(aux);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// Packs the 16 six-bit values of Q3_K's scales (each 0..63) into 12 bytes.
fn pack_q3_scales(ls: &[i32; 16], out: &mut [u8]) {
    out[..12].fill(0);
    for (j, &l) in ls.iter().enumerate() {
        if j < 8 {
            out[j] = (l & 0xF) as u8;
        } else {
            out[j - 8] |= ((l & 0xF) << 4) as u8;
        }
        out[j % 4 + 8] |= ((l >> 4) << (2 * (j / 4))) as u8;
    }
}

/// Packs 8 six-bit scales and 8 six-bit mins of Q4_K / Q5_K into 12 bytes.
fn pack_k4_scales(ls: &[u8; 8], lm: &[u8; 8], out: &mut [u8]) {
    for j in 0..8 {
        let (s, m) = (ls[j], lm[j]);
        if j < 4 {
            out[j] = s;
            out[j + 4] = m;
        } else {
            out[j + 4] = (s & 0xF) | ((m & 0xF) << 4);
            out[j - 4] |= (s >> 4) << 6;
            out[j] |= (m >> 4) << 6;
        }
    }
}

/// Stores 256 2-bit values: byte l of each 32-byte group holds values l, l+32, l+64, l+96 of
/// its 128, in bit pairs from the bottom.
fn pack_2bit(levels: &[u8; QK_K], qs: &mut [u8]) {
    for (j, q) in (0..QK_K).step_by(128).zip(qs.chunks_exact_mut(32)) {
        for (l, b) in q.iter_mut().enumerate() {
            let at = |k: usize| levels[j + l + 32 * k];
            *b = at(0) | (at(1) << 2) | (at(2) << 4) | (at(3) << 6);
        }
    }
}

/// The 6-bit scales and mins of the Q4_K / Q5_K sub-blocks: each fitted with
/// [`fit_with_min`] (weights: the sub-block's RMS + |x|), then quantized against the largest
/// scale and the largest min; fills the block's d, dmin and scale bytes and returns the levels
/// re-fitted to the stored scales.
fn k4_block(x: &[f32], nmax: i32, rmin: f32, rdelta: f32, nstep: i32, b: &mut [u8]) -> [u8; QK_K] {
    let mut levels = [0u8; QK_K];
    let mut aux = [0u8; 32];
    let mut weights = [0f32; 32];
    let mut scales = [0f32; 8];
    let mut mins = [0f32; 8];
    let mut max_scale = 0f32;
    let mut max_min = 0f32;
    for j in 0..8 {
        let xs = &x[32 * j..32 * j + 32];
        let mut sum_x2 = 0f32;
        for &v in xs {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        for (w, &v) in weights.iter_mut().zip(xs) {
            *w = av_x + v.abs();
        }
        let (s, m) = fit_with_min(
            xs,
            &weights,
            nmax,
            &mut levels[32 * j..32 * j + 32],
            &mut aux,
            rmin,
            rdelta,
            nstep,
            false,
        );
        scales[j] = s;
        mins[j] = m;
        if s > max_scale {
            max_scale = s;
        }
        if m > max_min {
            max_min = m;
        }
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut ls = [0u8; 8];
    let mut lm = [0u8; 8];
    for j in 0..8 {
        // The reference stores nearest_int into a u8 before clamping.
        ls[j] = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        lm[j] = (nearest_int(inv_min * mins[j]) as u8).min(63);
    }
    // Q4_K and Q5_K share the d, dmin, scales prefix.
    let packed = &mut b[q4_k::SCALES..q4_k::SCALES + 12];
    pack_k4_scales(&ls, &lm, packed);
    let d = to_f16(max_scale / 63.0);
    let dmin = to_f16(max_min / 63.0);
    b[q4_k::D..q4_k::D + 2].copy_from_slice(&d.to_le_bytes());
    b[q4_k::DMIN..q4_k::DMIN + 2].copy_from_slice(&dmin.to_le_bytes());
    let (d, dmin) = (d.to_f32(), dmin.to_f32());
    let packed = &b[q4_k::SCALES..q4_k::SCALES + 12];
    for j in 0..8 {
        let (sc, m) = scale_min_k4(j, packed);
        let dj = d * sc as f32;
        if dj == 0.0 {
            continue;
        }
        let dm = dmin * m as f32;
        for i in 32 * j..32 * j + 32 {
            levels[i] = nearest_int((x[i] + dm) / dj).clamp(0, nmax) as u8;
        }
    }
    levels
}

/// One Q4_K super-block (144 bytes) from 256 values, as ggml's `quantize_row_q4_K_ref`.
fn block_q4_k(x: &[f32], b: &mut [u8]) {
    b.fill(0);
    let levels = k4_block(x, 15, -1.0, 0.1, 20, b);
    let qs = &mut b[q4_k::QS..q4_k::QS + 128];
    for (j, q) in (0..QK_K).step_by(64).zip(qs.chunks_exact_mut(32)) {
        for (l, byte) in q.iter_mut().enumerate() {
            *byte = levels[j + l] | (levels[j + l + 32] << 4);
        }
    }
}

/// One Q5_K super-block (176 bytes), as ggml's `quantize_row_q5_K_ref`.
fn block_q5_k(x: &[f32], b: &mut [u8]) {
    b.fill(0);
    let levels = k4_block(x, 31, -0.5, 0.1, 15, b);
    let (head, ql) = b.split_at_mut(q5_k::QS);
    let qh = &mut head[q5_k::QH..q5_k::QH + 32];
    let (mut m1, mut m2) = (1u8, 2u8);
    for (n, ql) in (0..QK_K).step_by(64).zip(ql.chunks_exact_mut(32)) {
        for j in 0..32 {
            let mut l1 = levels[n + j];
            if l1 > 15 {
                l1 -= 16;
                qh[j] |= m1;
            }
            let mut l2 = levels[n + j + 32];
            if l2 > 15 {
                l2 -= 16;
                qh[j] |= m2;
            }
            ql[j] = l1 | (l2 << 4);
        }
        m1 <<= 2;
        m2 <<= 2;
    }
}

/// One Q2_K super-block (84 bytes), as ggml's `quantize_row_q2_K_ref`: per sub-block of 16 a
/// scale and min fitted with weights |x| and absolute error, both quantized to 4 bits against
/// the largest.
fn block_q2_k(x: &[f32], b: &mut [u8]) {
    b.fill(0);
    const Q4SCALE: f32 = 15.0;
    let mut levels = [0u8; QK_K];
    let mut aux = [0u8; 16];
    let mut weights = [0f32; 16];
    let mut scales = [0f32; 16];
    let mut mins = [0f32; 16];
    let mut max_scale = 0f32;
    let mut max_min = 0f32;
    for j in 0..16 {
        let xs = &x[16 * j..16 * j + 16];
        for (w, &v) in weights.iter_mut().zip(xs) {
            *w = v.abs();
        }
        let (s, m) = fit_with_min(
            xs,
            &weights,
            3,
            &mut levels[16 * j..16 * j + 16],
            &mut aux,
            -0.5,
            0.1,
            15,
            true,
        );
        scales[j] = s;
        mins[j] = m;
        if s > max_scale {
            max_scale = s;
        }
        if m > max_min {
            max_min = m;
        }
    }
    let sc = &mut b[q2_k::SCALES..q2_k::SCALES + 16];
    let d = if max_scale > 0.0 {
        let iscale = Q4SCALE / max_scale;
        for (s, &v) in sc.iter_mut().zip(&scales) {
            *s = nearest_int(iscale * v) as u8;
        }
        to_f16(max_scale / Q4SCALE)
    } else {
        to_f16(0.0)
    };
    let dmin = if max_min > 0.0 {
        let iscale = Q4SCALE / max_min;
        for (s, &v) in sc.iter_mut().zip(&mins) {
            *s |= (nearest_int(iscale * v) << 4) as u8;
        }
        to_f16(max_min / Q4SCALE)
    } else {
        to_f16(0.0)
    };
    b[q2_k::D..q2_k::D + 2].copy_from_slice(&d.to_le_bytes());
    b[q2_k::DMIN..q2_k::DMIN + 2].copy_from_slice(&dmin.to_le_bytes());
    let (d, dmin) = (d.to_f32(), dmin.to_f32());
    for j in 0..16 {
        let s = b[q2_k::SCALES + j];
        let dj = d * (s & 0xF) as f32;
        if dj == 0.0 {
            continue;
        }
        let dm = dmin * (s >> 4) as f32;
        for i in 16 * j..16 * j + 16 {
            levels[i] = nearest_int((x[i] + dm) / dj).clamp(0, 3) as u8;
        }
    }
    pack_2bit(&levels, &mut b[q2_k::QS..q2_k::QS + 64]);
}

/// One Q3_K super-block (110 bytes), as ggml's `quantize_row_q3_K_ref`: per sub-block of 16
/// a symmetric 3-bit fit, scales quantized to 6 bits against the one of largest magnitude,
/// the top bit of each level in the high-bit mask.
fn block_q3_k(x: &[f32], b: &mut [u8]) {
    b.fill(0);
    let mut levels = [0i8; QK_K];
    let mut scales = [0f32; 16];
    let mut max_scale = 0f32;
    let mut amax = 0f32;
    for j in 0..16 {
        scales[j] = fit_q3(&x[16 * j..16 * j + 16], 4, &mut levels[16 * j..16 * j + 16]);
        let a = scales[j].abs();
        if a > amax {
            amax = a;
            max_scale = scales[j];
        }
    }
    let d = if max_scale != 0.0 {
        let iscale = -32.0 / max_scale;
        let mut ls = [0i32; 16];
        for (l, &s) in ls.iter_mut().zip(&scales) {
            // The reference narrows to i8 before clamping.
            *l = (nearest_int(iscale * s) as i8 as i32).clamp(-32, 31) + 32;
        }
        pack_q3_scales(&ls, &mut b[q3_k::SCALES..q3_k::SCALES + 12]);
        to_f16(1.0 / iscale)
    } else {
        to_f16(0.0)
    };
    b[q3_k::D..q3_k::D + 2].copy_from_slice(&d.to_le_bytes());
    let d = d.to_f32();
    let packed = &b[q3_k::SCALES..q3_k::SCALES + 12];
    for j in 0..16 {
        let low = if j < 8 {
            packed[j] & 0xF
        } else {
            packed[j - 8] >> 4
        };
        let sc = (low | (((packed[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) as i32 - 32;
        let dj = d * sc as f32;
        if dj == 0.0 {
            continue;
        }
        for i in 16 * j..16 * j + 16 {
            levels[i] = (nearest_int(x[i] / dj).clamp(-4, 3) + 4) as i8;
        }
    }
    let mut low = [0u8; QK_K];
    let hmask = &mut b[q3_k::HMASK..q3_k::HMASK + 32];
    for (j, (&l, lo)) in levels.iter().zip(low.iter_mut()).enumerate() {
        let mut l = l as u8;
        if l > 3 {
            hmask[j % 32] |= 1 << (j / 32);
            l -= 4;
        }
        *lo = l;
    }
    pack_2bit(&low, &mut b[q3_k::QS..q3_k::QS + 64]);
}

/// One Q6_K super-block (210 bytes), as ggml's `quantize_row_q6_K_ref`: per sub-block of 16 a
/// symmetric 6-bit fit, scales quantized to i8 against the one of largest magnitude.
fn block_q6_k(x: &[f32], b: &mut [u8]) {
    b.fill(0);
    let mut levels = [0i8; QK_K];
    let mut scales = [0f32; 16];
    let mut max_scale = 0f32;
    let mut max_abs = 0f32;
    for j in 0..16 {
        let s = fit_symmetric(
            &x[16 * j..16 * j + 16],
            32,
            &mut levels[16 * j..16 * j + 16],
        );
        scales[j] = s;
        if s.abs() > max_abs {
            max_abs = s.abs();
            max_scale = s;
        }
    }
    if max_abs < GROUP_MAX_EPS {
        return;
    }
    let iscale = -128.0 / max_scale;
    let d = to_f16(1.0 / iscale);
    b[q6_k::D..q6_k::D + 2].copy_from_slice(&d.to_le_bytes());
    let d = d.to_f32();
    for j in 0..16 {
        let s = nearest_int(iscale * scales[j]).min(127) as i8;
        b[q6_k::SCALES + j] = s as u8;
        let dj = d * s as f32;
        if dj == 0.0 {
            continue;
        }
        for i in 16 * j..16 * j + 16 {
            levels[i] = (nearest_int(x[i] / dj).clamp(-32, 31) + 32) as i8;
        }
    }
    let (ql, rest) = b.split_at_mut(q6_k::QH);
    let qh = &mut rest[..64];
    for (n, (ql, qh)) in (0..QK_K)
        .step_by(128)
        .zip(ql.chunks_exact_mut(64).zip(qh.chunks_exact_mut(32)))
    {
        for l in 0..32 {
            let at = |k: usize| levels[n + l + 32 * k] as u8;
            ql[l] = (at(0) & 0xF) | ((at(2) & 0xF) << 4);
            ql[l + 32] = (at(1) & 0xF) | ((at(3) & 0xF) << 4);
            qh[l] = (at(0) >> 4) | ((at(1) >> 4) << 2) | ((at(2) >> 4) << 4) | ((at(3) >> 4) << 6);
        }
    }
}

fn quantize_blocks(x: &[f32], out: &mut [u8], bytes: usize, block: fn(&[f32], &mut [u8])) {
    assert!(
        x.len().is_multiple_of(QK_K) && out.len() == x.len() / QK_K * bytes,
        "{} values need {} bytes of output, got {}",
        x.len(),
        x.len() / QK_K * bytes,
        out.len()
    );
    for (x, b) in x.chunks_exact(QK_K).zip(out.chunks_exact_mut(bytes)) {
        block(x, b);
    }
}

/// `x` (whole super-blocks of 256) as Q2_K into `out` (84 bytes per super-block).
pub fn quantize_row_q2_k(x: &[f32], out: &mut [u8]) {
    quantize_blocks(x, out, q2_k::BYTES, block_q2_k);
}

/// `x` (whole super-blocks of 256) as Q3_K into `out` (110 bytes per super-block).
pub fn quantize_row_q3_k(x: &[f32], out: &mut [u8]) {
    quantize_blocks(x, out, q3_k::BYTES, block_q3_k);
}

/// `x` (whole super-blocks of 256) as Q4_K into `out` (144 bytes per super-block).
pub fn quantize_row_q4_k(x: &[f32], out: &mut [u8]) {
    quantize_blocks(x, out, q4_k::BYTES, block_q4_k);
}

/// `x` (whole super-blocks of 256) as Q5_K into `out` (176 bytes per super-block).
pub fn quantize_row_q5_k(x: &[f32], out: &mut [u8]) {
    quantize_blocks(x, out, q5_k::BYTES, block_q5_k);
}

/// `x` (whole super-blocks of 256) as Q6_K into `out` (210 bytes per super-block).
pub fn quantize_row_q6_k(x: &[f32], out: &mut [u8]) {
    quantize_blocks(x, out, q6_k::BYTES, block_q6_k);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{dequantize, WeightType};

    /// Largest RMS round-trip error allowed, relative to the RMS of normally distributed
    /// input. A uniform grid of step s has RMS error s/√12; the steps are a sub-block's range
    /// over its level count: Q2_K 3 steps over 16 values (≈ 1.1σ each → 0.32σ), Q3_K 7 over
    /// 16 (≈ 0.5σ → 0.15σ), Q4_K 15 over 32 (≈ 0.27σ → 0.077σ), Q5_K 31 over 32 (≈ 0.13σ →
    /// 0.037σ), Q6_K 63 over 16 (≈ 0.06σ → 0.017σ); the bounds add about 15% for the fitted
    /// (not grid-aligned) ranges and the 4–8-bit quantization of scales and mins.
    const RMS_BOUNDS: [(WeightType, f64); 5] = [
        (WeightType::Q2_K, 0.36),
        (WeightType::Q3_K, 0.175),
        (WeightType::Q4_K, 0.085),
        (WeightType::Q5_K, 0.043),
        (WeightType::Q6_K, 0.021),
    ];

    /// Deterministic normal samples (xorshift + Box-Muller).
    fn normal(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed | 1;
        let mut unit = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        (0..n)
            .map(|_| {
                let (u, v) = (unit(), unit());
                ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
            })
            .collect()
    }

    fn round_trip(ty: WeightType, x: &[f32]) -> Vec<f32> {
        let mut bytes = vec![0u8; ty.row_bytes(x.len())];
        crate::quantize_into(ty, x, &mut bytes);
        let mut back = vec![0f32; x.len()];
        dequantize(ty, &bytes, &mut back);
        back
    }

    fn rel_rms(x: &[f32], y: &[f32]) -> f64 {
        let err: f64 = x
            .iter()
            .zip(y)
            .map(|(a, b)| (a - b) as f64 * (a - b) as f64)
            .sum();
        let sig: f64 = x.iter().map(|a| *a as f64 * *a as f64).sum();
        (err / sig).sqrt()
    }

    #[test]
    fn round_trip_error_is_within_the_grid_bound() {
        for (seed, scale) in [(1u64, 1.0f32), (2, 0.02), (3, 300.0)] {
            let x: Vec<f32> = normal(64 * QK_K, seed).iter().map(|v| v * scale).collect();
            for (ty, bound) in RMS_BOUNDS {
                let e = rel_rms(&x, &round_trip(ty, &x));
                assert!(
                    e < bound,
                    "{ty:?} scale {scale}: relative RMS error {e} ≥ {bound}"
                );
            }
        }
    }

    #[test]
    fn more_bits_give_smaller_errors() {
        let x = normal(16 * QK_K, 7);
        let errs: Vec<f64> = [
            WeightType::Q2_K,
            WeightType::Q3_K,
            WeightType::Q4_K,
            WeightType::Q5_K,
            WeightType::Q6_K,
        ]
        .iter()
        .map(|&ty| rel_rms(&x, &round_trip(ty, &x)))
        .collect();
        assert!(errs.windows(2).all(|w| w[1] < w[0]), "{errs:?}");
    }

    #[test]
    fn zeros_and_constants_round_trip() {
        for (ty, _) in RMS_BOUNDS {
            let z = vec![0f32; QK_K];
            assert!(round_trip(ty, &z).iter().all(|&v| v == 0.0), "{ty:?}");
            // A constant block: the min (or the scale) carries it.
            let c = vec![0.5f32; QK_K];
            let back = round_trip(ty, &c);
            let e = back.iter().map(|v| (v - 0.5).abs()).fold(0f32, f32::max);
            assert!(e < 0.01, "{ty:?}: constant 0.5 came back off by {e}");
        }
    }

    #[test]
    fn outliers_and_mixed_magnitudes_stay_finite_and_bounded() {
        let mut x = normal(4 * QK_K, 11);
        x[3] = 1000.0;
        x[300] = -1e-30;
        x[600] = 1e6;
        for v in &mut x[QK_K..2 * QK_K] {
            *v *= 1e-12;
        }
        for (ty, _) in RMS_BOUNDS {
            let back = round_trip(ty, &x);
            assert!(back.iter().all(|v| v.is_finite()), "{ty:?}");
            // Each super-block's error is at most its largest magnitude.
            for (xs, bs) in x.chunks(QK_K).zip(back.chunks(QK_K)) {
                let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
                let e = xs
                    .iter()
                    .zip(bs)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(e <= amax * 1.01, "{ty:?}: error {e} > max {amax}");
            }
        }
    }

    #[test]
    fn parallel_rows_equal_row_by_row() {
        let (rows, cols) = (37, 2 * QK_K);
        let x = normal(rows * cols, 5);
        for (ty, _) in RMS_BOUNDS {
            let rb = ty.row_bytes(cols);
            let mut par = vec![0u8; rows * rb];
            crate::quantize_rows(ty, &x, cols, &mut par);
            for (r, d) in x.chunks(cols).zip(par.chunks(rb)) {
                let mut one = vec![0u8; rb];
                crate::quantize_into(ty, r, &mut one);
                assert_eq!(one, d, "{ty:?}");
            }
        }
    }
}
