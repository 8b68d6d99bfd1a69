//! RMSNorm.

/// Partial sums of squares kept side by side: the sum over a row is then a lane-wise loop the
/// compiler vectorizes at any instruction set (one dependent chain of 2048 additions took about
/// 2 µs a row), and its order, so its bits, depend on nothing but the row's length.
const LANES: usize = 16;

/// RMSNorm: `out[i] = x[i] / sqrt(mean(x²) + eps) * weight[i]`, in `f32`. The squares are
/// summed in [`LANES`] interleaved partial sums (value `i` into sum `i % LANES`, the tail
/// after the last whole chunk into the first sums), then the sums pairwise.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    assert!(x.len() == weight.len() && x.len() == out.len());
    let mut part = [0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        let c: &[f32; LANES] = c.try_into().expect("a whole chunk");
        for j in 0..LANES {
            part[j] += c[j] * c[j];
        }
    }
    for (p, v) in part.iter_mut().zip(tail) {
        *p += v * v;
    }
    let mut n = LANES;
    while n > 1 {
        n /= 2;
        for i in 0..n {
            part[i] += part[i + n];
        }
    }
    let ss = part[0] / x.len() as f32;
    let inv = 1.0 / (ss + eps).sqrt();
    for ((o, v), w) in out.iter_mut().zip(x).zip(weight) {
        *o = w * (v * inv);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against a sum in f64, for lengths with and without a tail; and the output is unit RMS
    /// for unit weights.
    #[test]
    fn matches_f64_and_normalizes() {
        let mut s = 0x9e37_79b9u32;
        for n in [1usize, 5, 16, 17, 64, 2048, 2050] {
            let x: Vec<f32> = (0..n)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 17;
                    s ^= s << 5;
                    (s as f32 / u32::MAX as f32 - 0.5) * 8.0
                })
                .collect();
            let w = vec![1f32; n];
            let mut out = vec![0f32; n];
            rms_norm(&x, &w, 1e-6, &mut out);
            let ms = x.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / n as f64;
            let inv = 1.0 / (ms + 1e-6).sqrt();
            for (o, v) in out.iter().zip(&x) {
                let want = *v as f64 * inv;
                assert!(
                    (*o as f64 - want).abs() <= 1e-5 * want.abs().max(1.0),
                    "n {n}"
                );
            }
            let rms = (out.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / n as f64).sqrt();
            assert!((rms - 1.0).abs() < 1e-3, "n {n}: rms {rms}");
        }
    }
}
