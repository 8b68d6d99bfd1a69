//! Reference quantizers: `f32` values into the stored weight types, byte for byte as ggml's
//! `quantize_row_q8_0_ref` / `quantize_row_q4_0_ref` and the K-quant `quantize_row_q*_K_ref`
//! ([`crate::kquants`]), plus plain rounding conversions for the float types. Meant for
//! building weights (quantizing a model, random models for benchmarks), not for activations on
//! the hot path; [`quantize_rows`] spreads whole matrices over threads.

use half::{bf16, f16};
use rayon::prelude::*;

use crate::{kquants, WeightType};

/// The weight types [`quantize_into`] produces for any row of whole 32-value blocks (what
/// synthetic models are built in). It also produces the K-quant types (Q2_K ... Q6_K) for rows
/// of whole 256-value super-blocks; see [`K_QUANTIZE_TYPES`].
pub const QUANTIZE_TYPES: &[WeightType] = &[
    WeightType::F32,
    WeightType::F16,
    WeightType::BF16,
    WeightType::Q8_0,
    WeightType::Q4_0,
];

/// The K-quant types [`quantize_into`] produces, for rows of whole 256-value super-blocks.
pub const K_QUANTIZE_TYPES: &[WeightType] = &[
    WeightType::Q2_K,
    WeightType::Q3_K,
    WeightType::Q4_K,
    WeightType::Q5_K,
    WeightType::Q6_K,
];

/// Values per Q8_0 / Q4_0 block.
const QK: usize = 32;

/// Whether `ty` is one of [`QUANTIZE_TYPES`] (any row of whole 32-value blocks can take it).
pub fn can_quantize(ty: WeightType) -> bool {
    QUANTIZE_TYPES.contains(&ty)
}

/// Encodes `src` as `ty` into `dst` (exactly `ty.row_bytes(src.len())` bytes; `src.len()` a
/// multiple of the block size).
///
/// # Panics
/// On a length mismatch, or for the grouped K-quant layouts ([`WeightType::Q4_Kx16`] ...), whose
/// rows are not made one at a time (quantize to the stored type, then [`crate::repack`] the
/// matrix). Every other type is supported
/// ([`QUANTIZE_TYPES`] and [`K_QUANTIZE_TYPES`] list the ones files take).
pub fn quantize_into(ty: WeightType, src: &[f32], dst: &mut [u8]) {
    assert_eq!(
        dst.len(),
        ty.row_bytes(src.len()),
        "{} values of {ty:?} need {} bytes",
        src.len(),
        ty.row_bytes(src.len())
    );
    match ty {
        WeightType::F32 => {
            for (d, &x) in dst.chunks_exact_mut(4).zip(src) {
                d.copy_from_slice(&x.to_le_bytes());
            }
        }
        WeightType::F16 => {
            // A slice conversion (eight values per instruction where the CPU has F16C; a KV
            // cache stores its rows this way at every step), through a small buffer since
            // `dst` may not be 2-byte aligned; the same rounding (to nearest even) as
            // `f16::from_f32` one value at a time.
            use half::slice::HalfFloatSliceExt;
            let mut buf = [f16::ZERO; 64];
            for (d, s) in dst.chunks_mut(128).zip(src.chunks(64)) {
                let b = &mut buf[..s.len()];
                b.convert_from_f32_slice(s);
                for (d, h) in d.chunks_exact_mut(2).zip(b.iter()) {
                    d.copy_from_slice(&h.to_le_bytes());
                }
            }
        }
        WeightType::BF16 => {
            for (d, &x) in dst.chunks_exact_mut(2).zip(src) {
                d.copy_from_slice(&bf16::from_f32(x).to_le_bytes());
            }
        }
        WeightType::Q8_0 => {
            for (d, x) in dst.chunks_exact_mut(34).zip(src.chunks_exact(QK)) {
                block_q8_0(x, d);
            }
        }
        WeightType::Q4_0 => {
            for (d, x) in dst.chunks_exact_mut(18).zip(src.chunks_exact(QK)) {
                block_q4_0(x, d);
            }
        }
        WeightType::Q4_0x16 | WeightType::Q8_0x16 => {
            let kind = if ty == WeightType::Q4_0x16 {
                crate::qx16::X16::Q4_0
            } else {
                crate::qx16::X16::Q8_0
            };
            let mut blocks = vec![0u8; kind.stored().row_bytes(src.len())];
            quantize_into(kind.stored(), src, &mut blocks);
            crate::qx16::repack_row(kind, &blocks, dst);
        }
        WeightType::Q2_K => kquants::quantize_row_q2_k(src, dst),
        WeightType::Q3_K => kquants::quantize_row_q3_k(src, dst),
        WeightType::Q4_K => kquants::quantize_row_q4_k(src, dst),
        WeightType::Q2_Kx16
        | WeightType::Q3_Kx16
        | WeightType::Q4_Kx16
        | WeightType::Q5_Kx16
        | WeightType::Q6_Kx16 => {
            panic!("{ty:?} is made from whole matrices of its stored type (repack)")
        }
        WeightType::Q5_K => kquants::quantize_row_q5_k(src, dst),
        WeightType::Q6_K => kquants::quantize_row_q6_k(src, dst),
    }
}

/// Rows of `n_cols` values (`src.len()` a multiple of `n_cols`, `n_cols` a multiple of the
/// block size of `ty`) encoded as `ty` into `dst` (`ty.row_bytes(n_cols)` bytes per row),
/// rows spread over rayon's threads. Each row is encoded exactly as [`quantize_into`] would.
///
/// # Panics
/// As [`quantize_into`], or when `n_cols` is zero or does not divide `src.len()`.
pub fn quantize_rows(ty: WeightType, src: &[f32], n_cols: usize, dst: &mut [u8]) {
    assert!(
        n_cols > 0 && src.len().is_multiple_of(n_cols) && n_cols.is_multiple_of(ty.block_elems()),
        "{} values are not whole rows of {n_cols} whole {ty:?} blocks",
        src.len()
    );
    let row_bytes = ty.row_bytes(n_cols);
    assert_eq!(dst.len(), src.len() / n_cols * row_bytes, "output size");
    // A few rows per task keep the scheduling cost small next to K-quant fitting.
    let rows_per_task = (64 * 1024 / n_cols).max(1);
    src.par_chunks(n_cols * rows_per_task)
        .zip(dst.par_chunks_mut(row_bytes * rows_per_task))
        .for_each(|(s, d)| {
            for (s, d) in s.chunks_exact(n_cols).zip(d.chunks_exact_mut(row_bytes)) {
                quantize_into(ty, s, d);
            }
        });
}

/// [`quantize_rows`], except that Q4_0 blocks get the scale that minimizes their squared
/// error ([`block_q4_0_fitted`]) instead of ggml's reference rule (largest value ↦ −8),
/// weighted per column by `importance` (`n_cols` values) when given. The bytes are valid Q4_0
/// for every reader; only the choice of scale and rounding differs.
pub fn quantize_rows_fitted(
    ty: WeightType,
    src: &[f32],
    n_cols: usize,
    importance: Option<&[f32]>,
    dst: &mut [u8],
) {
    if ty != WeightType::Q4_0 {
        return quantize_rows(ty, src, n_cols, dst);
    }
    assert!(
        n_cols > 0 && src.len().is_multiple_of(n_cols) && n_cols.is_multiple_of(QK),
        "{} values are not whole rows of {n_cols} whole Q4_0 blocks",
        src.len()
    );
    assert_eq!(dst.len(), ty.row_bytes(src.len()), "output size");
    if let Some(imp) = importance {
        assert_eq!(imp.len(), n_cols, "one importance per column");
    }
    src.par_chunks(n_cols)
        .zip(dst.par_chunks_mut(ty.row_bytes(n_cols)))
        .for_each(|(s, d)| {
            for (b, (x, out)) in s.chunks_exact(QK).zip(d.chunks_exact_mut(18)).enumerate() {
                block_q4_0_fitted(x, importance.map(|w| &w[b * QK..(b + 1) * QK]), out);
            }
        });
}

/// A Q4_0 block whose scale is fitted: for candidate scales around ggml's choice, round to
/// the 16 levels, refit the scale by least squares for those levels, and keep the pair with
/// the least squared error (measured with the scale rounded to f16, as stored). With
/// `importance` (32 non-negative weights, e.g. the mean squares of the inputs these columns
/// meet), the error is weighted by it. ggml's own choice is one candidate, so the (weighted)
/// error is never larger than the reference quantizer's.
pub fn block_q4_0_fitted(x: &[f32], importance: Option<&[f32]>, out: &mut [u8]) {
    block_q4_0(x, out);
    let x: &[f32; QK] = x.try_into().expect("a block of 32 values");
    let mut w = [1f32; QK];
    if let Some(imp) = importance {
        w.copy_from_slice(imp);
    }
    let mut wx = [0f32; QK];
    for i in 0..QK {
        wx[i] = w[i] * x[i];
    }
    let sxx: f32 = (0..QK).map(|i| wx[i] * x[i]).sum();
    // Σw(x − d·l)² = Σwx² − 2d·Σwxl + d²·Σwl², from the two sums a rounding gives.
    let sums = |q: &[u8; QK]| -> (f32, f32) {
        let (mut sxq, mut sqq) = (0f32, 0f32);
        for i in 0..QK {
            let l = q[i] as f32 - 8.0;
            sxq += wx[i] * l;
            sqq += w[i] * l * l;
        }
        (sxq, sqq)
    };
    let err_of = |d: f32, (sxq, sqq): (f32, f32)| sxx - 2.0 * d * sxq + d * d * sqq;
    let mut best_q = [0u8; QK];
    for j in 0..QK / 2 {
        best_q[j] = out[2 + j] & 15;
        best_q[QK / 2 + j] = out[2 + j] >> 4;
    }
    let mut best_d = f16::from_le_bytes([out[0], out[1]]).to_f32();
    let mut best_err = err_of(best_d, sums(&best_q));
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    if amax == 0.0 {
        return;
    }
    let max = x.iter().copied().find(|v| v.abs() == amax).unwrap_or(0.0);
    for step in -FIT_STEPS..=FIT_STEPS {
        // Levels of the largest value from −6 to −10 (ggml: −8); each candidate is refined by
        // alternating rounding and weighted least-squares refits.
        let mut d = max / (-8.0 + step as f32 * 2.0 / FIT_STEPS as f32);
        for _ in 0..FIT_REFITS {
            let id = 1.0 / d;
            let mut q = [0u8; QK];
            for i in 0..QK {
                q[i] = (x[i] * id + 8.5).clamp(0.0, 15.0) as u8;
            }
            let (sxq, sqq) = sums(&q);
            if sqq == 0.0 {
                break;
            }
            d = f16::from_f32(sxq / sqq).to_f32();
            if d == 0.0 {
                break;
            }
            let err = err_of(d, (sxq, sqq));
            if err < best_err {
                (best_err, best_d, best_q) = (err, d, q);
            }
        }
    }
    out[..2].copy_from_slice(&f16::from_f32(best_d).to_le_bytes());
    for j in 0..QK / 2 {
        out[2 + j] = best_q[j] | (best_q[QK / 2 + j] << 4);
    }
}

/// Candidate scales of [`block_q4_0_fitted`] on each side of ggml's, and the rounding and
/// refitting rounds per candidate. More of either changes stories260K's perplexity by less
/// than its noise (±0.1%) and costs quantizing time in proportion.
const FIT_STEPS: i32 = 5;
const FIT_REFITS: usize = 2;

/// `src` (a multiple of 32 values) as Q8_0 blocks, identical to ggml's `quantize_row_q8_0_ref`.
pub fn quantize_q8_0(src: &[f32]) -> Vec<u8> {
    quantize(WeightType::Q8_0, src)
}

/// `src` (a multiple of 32 values) as Q4_0 blocks, identical to ggml's `quantize_row_q4_0_ref`.
pub fn quantize_q4_0(src: &[f32]) -> Vec<u8> {
    quantize(WeightType::Q4_0, src)
}

fn quantize(ty: WeightType, src: &[f32]) -> Vec<u8> {
    assert!(
        src.len().is_multiple_of(QK),
        "{} values are not whole blocks of {QK}",
        src.len()
    );
    let mut out = vec![0u8; ty.row_bytes(src.len())];
    quantize_into(ty, src, &mut out);
    out
}

/// One Q8_0 block: d = amax / 127 (stored as f16), q = round(x / d) via the inverse scale.
fn block_q8_0(x: &[f32], out: &mut [u8]) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
    for (q, &v) in out[2..].iter_mut().zip(x) {
        // `round` rounds half away from zero, as C's roundf.
        *q = ((v * id).round() as i8) as u8;
    }
}

/// One Q4_0 block: the value of largest magnitude (the first one, sign kept) maps to -8;
/// d = max / -8, q = min(15, trunc(x / d + 8.5)); value j in the low nibble of byte j, value
/// j + 16 in its high nibble.
fn block_q4_0(x: &[f32], out: &mut [u8]) {
    // Same choice as ggml's strict `amax < |v|` scan, in loops that vectorize; an all-zero
    // block keeps max = +0.0 (so d = -0.0) as there.
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let max = if amax > 0.0 {
        x.iter().copied().find(|v| v.abs() == amax).unwrap_or(0.0)
    } else {
        0.0
    };
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
    let mut q = [0u8; QK];
    for (q, &v) in q.iter_mut().zip(x) {
        *q = ((v * id + 8.5) as i8).min(15) as u8;
    }
    for j in 0..QK / 2 {
        out[2 + j] = q[j] | (q[QK / 2 + j] << 4);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dequantize;

    /// F16 rows (converted a slice at a time) give the bytes of `f16::from_f32` value by value,
    /// over normal, subnormal, overflowing and halfway values, and rows of every length.
    #[test]
    fn f16_rows_round_as_one_value_at_a_time() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut src: Vec<f32> = (0..1000)
            .map(|_| {
                let r = next();
                let mag = f32::from_bits(
                    (r as u32 & 0x007f_ffff) | ((100 + (r >> 32) % 60) as u32) << 23,
                );
                if r >> 63 == 1 {
                    -mag
                } else {
                    mag
                }
            })
            .collect();
        src.extend([
            0.0,
            -0.0,
            65504.0,
            65520.0,
            1e9,
            -1e9,
            f32::INFINITY,
            6.1e-5,
            3e-8,
            1.0 + 1.0 / 2048.0,
        ]);
        for n in [1, 63, 64, 65, 130, src.len()] {
            let mut got = vec![0u8; 2 * n];
            quantize_into(WeightType::F16, &src[..n], &mut got);
            let want: Vec<u8> = src[..n]
                .iter()
                .flat_map(|&x| f16::from_f32(x).to_le_bytes())
                .collect();
            assert_eq!(got, want, "{n} values");
        }
    }

    #[test]
    fn fitted_q4_0_is_never_worse_than_the_reference() {
        let mut seed = 11u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        for weighted in [false, true] {
            let (mut e_ref, mut e_fit) = (0f64, 0f64);
            for b in 0..500 {
                // Gaussian-ish blocks, some with an outlier.
                let mut x: Vec<f32> = (0..QK).map(|_| next() + next() + next()).collect();
                if b % 5 == 0 {
                    x[b % QK] *= 4.0;
                }
                // Importance spread over two orders of magnitude.
                let w: Vec<f32> = (0..QK)
                    .map(|_| {
                        if weighted {
                            10f32.powf(next() * 2.0)
                        } else {
                            1.0
                        }
                    })
                    .collect();
                let (mut r, mut f) = ([0u8; 18], [0u8; 18]);
                block_q4_0(&x, &mut r);
                block_q4_0_fitted(&x, weighted.then_some(&w[..]), &mut f);
                let (mut dr, mut df) = ([0f32; QK], [0f32; QK]);
                dequantize(WeightType::Q4_0, &r, &mut dr);
                dequantize(WeightType::Q4_0, &f, &mut df);
                let err = |d: &[f32]| -> f64 {
                    x.iter()
                        .zip(d)
                        .zip(&w)
                        .map(|((a, b), w)| *w as f64 * ((a - b) as f64).powi(2))
                        .sum()
                };
                let (er, ef) = (err(&dr), err(&df));
                assert!(
                    ef <= er * (1.0 + 1e-5),
                    "block {b} (weighted {weighted}): fitted {ef} > reference {er}"
                );
                e_ref += er;
                e_fit += ef;
            }
            // The fit is worth doing at all: a clearly smaller total error.
            assert!(
                e_fit < 0.95 * e_ref,
                "weighted {weighted}: fitted {e_fit} vs reference {e_ref}"
            );
        }
    }

    fn ramp(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 40.0)
            .collect()
    }

    #[test]
    fn round_trips_within_a_step() {
        let x = ramp(96);
        for (ty, tol) in [
            (WeightType::F32, 0.0),
            (WeightType::F16, 1e-3),
            (WeightType::BF16, 1e-2),
            (WeightType::Q8_0, 1.25 / 127.0),
            (WeightType::Q4_0, 1.25 / 8.0 + 1e-3),
        ] {
            let bytes = quantize(ty, &x);
            let mut back = vec![0f32; x.len()];
            dequantize(ty, &bytes, &mut back);
            for (a, b) in x.iter().zip(&back) {
                assert!((a - b).abs() <= tol, "{ty:?}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn zero_block_has_zero_scale() {
        let q8 = quantize_q8_0(&[0.0; 32]);
        assert!(q8.iter().all(|&b| b == 0));
        let q4 = quantize_q4_0(&[0.0; 32]);
        // d = 0 / -8 is -0.0, as in ggml.
        assert_eq!(&q4[..2], &[0x00, 0x80]);
        assert!(q4[2..].iter().all(|&b| b == 0x88));
    }

    #[test]
    fn q4_0_largest_magnitude_maps_to_minus_eight() {
        let mut x = [0.1f32; 32];
        x[5] = -2.0;
        let q = quantize_q4_0(&x);
        assert_eq!(f16::from_le_bytes([q[0], q[1]]).to_f32(), 0.25);
        assert_eq!(q[2 + 5] & 0x0f, 0);
        // Equal magnitudes: the first one sets the sign of d.
        let (mut a, mut b) = ([0.1f32; 32], [0.1f32; 32]);
        (a[3], a[7], b[3], b[7]) = (2.0, -2.0, -2.0, 2.0);
        let scale = |q: Vec<u8>| f16::from_le_bytes([q[0], q[1]]).to_f32();
        assert_eq!(scale(quantize_q4_0(&a)), -0.25);
        assert_eq!(scale(quantize_q4_0(&b)), 0.25);
        // All zeros, -0.0 first: max stays +0.0, d = -0.0.
        let mut z = [0.0f32; 32];
        z[0] = -0.0;
        assert_eq!(&quantize_q4_0(&z)[..2], &[0x00, 0x80]);
    }
}
