/// Per-pair inverse frequencies of rotary position embedding, `head_dim / 2` of them, already
/// adjusted for any context-extension scaling.
#[derive(Debug, Clone, PartialEq)]
pub struct RopeFreqs {
    pub inv_freq: Vec<f32>,
}

/// `theta^(-2i/d)` for `i < n_rot/2`, each divided by `divisors[i]` when given (llama3 / linear
/// scaling are expressed as divisors by the caller).
pub fn rope_inv_freqs(n_rot: usize, theta: f32, divisors: Option<&[f32]>) -> RopeFreqs {
    let inv_freq = (0..n_rot / 2)
        .map(|i| {
            let f = 1.0 / (theta as f64).powf(2.0 * i as f64 / n_rot as f64);
            let div = divisors.map_or(1.0, |d| d[i] as f64);
            (f / div) as f32
        })
        .collect();
    RopeFreqs { inv_freq }
}

/// `cos` and `sin` of `pos · inv_freq[i]` for every pair `i`, side by side (`[cos₀, sin₀,
/// cos₁, sin₁, ...]`): the rotation of one position, computed once and applied to the queries
/// and keys of every layer.
pub fn rope_cos_sin(pos: usize, freqs: &RopeFreqs) -> Vec<f32> {
    freqs
        .inv_freq
        .iter()
        .flat_map(|&f| {
            let angle = pos as f32 * f;
            [angle.cos(), angle.sin()]
        })
        .collect()
}

/// Positions a [`RopeTable`] holds at most: a table for a context of 8192 positions and heads
/// of 128 takes 4 MiB; positions past it are computed when asked for (the same values).
pub const ROPE_TABLE_POSITIONS: usize = 8192;

/// The rotations of positions `0..n` ([`rope_cos_sin`] of each, the same bits), computed once
/// when a model is made; a forward pass looks its positions up instead of evaluating
/// `head_dim / 2` cosines and sines for each.
#[derive(Debug, Clone, PartialEq)]
pub struct RopeTable {
    freqs: RopeFreqs,
    /// `[n][pairs][cos, sin]`.
    cs: Vec<f32>,
}

impl RopeTable {
    /// The rotations of positions below `n_positions.min(ROPE_TABLE_POSITIONS)`.
    pub fn new(freqs: RopeFreqs, n_positions: usize) -> Self {
        let n = n_positions.min(ROPE_TABLE_POSITIONS);
        let cs = (0..n).flat_map(|pos| rope_cos_sin(pos, &freqs)).collect();
        RopeTable { freqs, cs }
    }

    /// Values of one position's rotation.
    fn row_len(&self) -> usize {
        2 * self.freqs.inv_freq.len()
    }

    /// Positions held.
    pub fn len(&self) -> usize {
        match self.row_len() {
            0 => 0,
            n => self.cs.len() / n,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rotation of position `pos`: from the table, or computed past its end.
    pub fn at(&self, pos: usize) -> std::borrow::Cow<'_, [f32]> {
        let n = self.row_len();
        if pos < self.len() {
            std::borrow::Cow::Borrowed(&self.cs[pos * n..(pos + 1) * n])
        } else {
            std::borrow::Cow::Owned(rope_cos_sin(pos, &self.freqs))
        }
    }
}

/// Rotates each head of `x` (`n_heads` × `head_dim`, heads contiguous) in the interleaved
/// layout: pair `(x[2i], x[2i+1])` turns by the angle whose `cos` and `sin` are `cs[2i]` and
/// `cs[2i+1]` (from [`rope_cos_sin`]). Dimensions past `cs.len()` are left as they are.
pub fn rope_interleaved(x: &mut [f32], head_dim: usize, cs: &[f32]) {
    assert!(cs.len().is_multiple_of(2), "cos and sin in pairs");
    assert!(
        cs.len() <= head_dim,
        "more rotated values than a head holds"
    );
    match crate::cpu::Level::new(crate::isa()).unwrap_or(crate::cpu::Level::Scalar) {
        #[cfg(target_arch = "x86_64")]
        crate::cpu::Level::Avx512(_) => {
            // SAFETY: the level proves AVX-512 F; the pairs fit a head (checked).
            unsafe { rope_avx512(x, head_dim, cs) }
        }
        _ => rope_generic(x, head_dim, cs),
    }
}

/// The plain rotation: each pair `(a, b)` becomes `(a·c − b·s, a·s + b·c)`, products rounded
/// apart (no fused multiply-add).
fn rope_generic(x: &mut [f32], head_dim: usize, cs: &[f32]) {
    for head in x.chunks_exact_mut(head_dim) {
        for (ab, cs) in head.chunks_exact_mut(2).zip(cs.chunks_exact(2)) {
            let (a, b, c, s) = (ab[0], ab[1], cs[0], cs[1]);
            ab[0] = a * c - b * s;
            ab[1] = a * s + b * c;
        }
    }
}

/// [`rope_generic`] sixteen values at a time, straight from the `[cos, sin]` pairs:
/// `x·C + swap(x)·S` with `C = (c, c, ...)` and `S = (−s, s, ...)` made of the pairs in
/// registers, `swap` exchanging the values of each pair. The same bits: the even value is
/// `a·c + (−(b·s))`, which is `a·c − b·s`, and the odd one `b·c + a·s`, the same sum in the
/// other order. A prompt's RoPE took about 2% of a stories15M pp512 profile with the plain loop.
///
/// # Safety
/// AVX-512 F available; `cs.len() ≤ head_dim`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn rope_avx512(x: &mut [f32], head_dim: usize, cs: &[f32]) {
    use std::arch::x86_64::*;
    let n = cs.len();
    let whole = n / 16 * 16;
    // The sign bit of every even lane.
    let even_sign = _mm512_castsi512_ps(_mm512_set1_epi64(0x8000_0000));
    for head in x.chunks_exact_mut(head_dim) {
        for j in (0..whole).step_by(16) {
            // SAFETY: `j + 16 ≤ n ≤ head_dim` values of the head and of `cs`.
            unsafe {
                let v = _mm512_loadu_ps(head.as_ptr().add(j));
                let pairs = _mm512_loadu_ps(cs.as_ptr().add(j));
                let c = _mm512_moveldup_ps(pairs);
                let s = _mm512_xor_ps(_mm512_movehdup_ps(pairs), even_sign);
                let swapped = _mm512_permute_ps::<0b10_11_00_01>(v);
                let r = _mm512_add_ps(_mm512_mul_ps(v, c), _mm512_mul_ps(swapped, s));
                _mm512_storeu_ps(head.as_mut_ptr().add(j), r);
            }
        }
        if whole < n {
            rope_generic(&mut head[whole..n], n - whole, &cs[whole..]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every level rotates bitwise as the plain loop, whole vectors and tails, at heads of 8
    /// to 128 with all or part of each head rotated.
    #[test]
    fn rotation_is_the_same_on_every_level() {
        let mut rng = crate::kernel_tests::Rng(0x2545f4914f6cdd1d);
        for (head_dim, n_rot) in [(8, 8), (48, 48), (64, 64), (128, 128), (64, 40), (96, 34)] {
            let freqs = rope_inv_freqs(n_rot, 10000.0, None);
            let x: Vec<f32> = (0..3 * head_dim).map(|_| 4.0 * rng.f32()).collect();
            for pos in [0, 1, 7, 1000] {
                let cs = rope_cos_sin(pos, &freqs);
                let mut want = x.clone();
                rope_generic(&mut want, head_dim, &cs);
                let mut got = x.clone();
                rope_interleaved(&mut got, head_dim, &cs);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&got),
                    bits(&want),
                    "head {head_dim}, {n_rot} rotated, {pos}"
                );
            }
        }
    }

    /// The table holds what `rope_cos_sin` computes, and positions past it are computed.
    #[test]
    fn table_rows_are_the_computed_rotations() {
        let freqs = rope_inv_freqs(48, 10000.0, None);
        let table = RopeTable::new(freqs.clone(), 300);
        assert_eq!(table.len(), 300);
        for pos in [0, 1, 17, 299, 300, 5000] {
            assert_eq!(
                &*table.at(pos),
                &rope_cos_sin(pos, &freqs)[..],
                "position {pos}"
            );
        }
        let big = RopeTable::new(freqs.clone(), usize::MAX);
        assert_eq!(big.len(), ROPE_TABLE_POSITIONS);
        let last = ROPE_TABLE_POSITIONS + 3;
        assert_eq!(&*big.at(last), &rope_cos_sin(last, &freqs)[..]);
        assert!(RopeTable::new(rope_inv_freqs(0, 10000.0, None), 10)
            .at(3)
            .is_empty());
    }
}
