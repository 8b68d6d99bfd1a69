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

/// `(cos, sin)` of `pos · inv_freq[i]` for every pair: the rotation of one position, computed
/// once and applied to the queries and keys of every layer.
pub fn rope_cos_sin(pos: usize, freqs: &RopeFreqs) -> Vec<(f32, f32)> {
    freqs
        .inv_freq
        .iter()
        .map(|&f| {
            let angle = pos as f32 * f;
            (angle.cos(), angle.sin())
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
    /// `[n][pairs]`.
    cs: Vec<(f32, f32)>,
}

impl RopeTable {
    /// The rotations of positions below `n_positions.min(ROPE_TABLE_POSITIONS)`.
    pub fn new(freqs: RopeFreqs, n_positions: usize) -> Self {
        let n = n_positions.min(ROPE_TABLE_POSITIONS);
        let cs = (0..n).flat_map(|pos| rope_cos_sin(pos, &freqs)).collect();
        RopeTable { freqs, cs }
    }

    /// Positions held.
    pub fn len(&self) -> usize {
        match self.freqs.inv_freq.len() {
            0 => 0,
            pairs => self.cs.len() / pairs,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rotation of position `pos`: from the table, or computed past its end.
    pub fn at(&self, pos: usize) -> std::borrow::Cow<'_, [(f32, f32)]> {
        let pairs = self.freqs.inv_freq.len();
        if pos < self.len() {
            std::borrow::Cow::Borrowed(&self.cs[pos * pairs..(pos + 1) * pairs])
        } else {
            std::borrow::Cow::Owned(rope_cos_sin(pos, &self.freqs))
        }
    }
}

/// Rotates each head of `x` (`n_heads` × `head_dim`, heads contiguous) in the interleaved
/// layout: pairs `(x[2i], x[2i+1])` turn by the angle whose `(cos, sin)` is `cs[i]` (from
/// [`rope_cos_sin`]). Dimensions past `2 · cs.len()` are left as they are.
pub fn rope_interleaved(x: &mut [f32], head_dim: usize, cs: &[(f32, f32)]) {
    assert!(
        2 * cs.len() <= head_dim,
        "more rotated pairs than a head holds"
    );
    match crate::cpu::Level::new(crate::isa()).unwrap_or(crate::cpu::Level::Scalar) {
        #[cfg(target_arch = "x86_64")]
        crate::cpu::Level::Avx512(_) if 2 * cs.len() <= MAX_ROTATED => {
            // SAFETY: the level proves AVX-512 F; the pairs fit the tables (checked).
            unsafe { rope_avx512(x, head_dim, cs) }
        }
        _ => rope_generic(x, head_dim, cs),
    }
}

/// The plain rotation: each pair `(a, b)` becomes `(a·c − b·s, a·s + b·c)`, products rounded
/// apart (no fused multiply-add).
fn rope_generic(x: &mut [f32], head_dim: usize, cs: &[(f32, f32)]) {
    for head in x.chunks_exact_mut(head_dim) {
        for (i, &(c, s)) in cs.iter().enumerate() {
            let a = head[2 * i];
            let b = head[2 * i + 1];
            head[2 * i] = a * c - b * s;
            head[2 * i + 1] = a * s + b * c;
        }
    }
}

/// Rotated values of a head [`rope_avx512`] takes (heads of up to 256).
const MAX_ROTATED: usize = 256;

/// [`rope_generic`] sixteen values at a time: `x·C + swap(x)·S` with `C = (c, c, ...)`, `S =
/// (−s, s, ...)` and `swap` exchanging the values of each pair. The same bits: the even value
/// is `a·c + (−(b·s))`, which is `a·c − b·s`, and the odd one `b·c + a·s`, the same sum in the
/// other order. A prompt's RoPE took about 2% of a stories15M pp512 profile with the plain loop.
///
/// # Safety
/// AVX-512 F available; `2 · cs.len() ≤ MAX_ROTATED` and `≤ head_dim`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn rope_avx512(x: &mut [f32], head_dim: usize, cs: &[(f32, f32)]) {
    use std::arch::x86_64::*;
    let n = 2 * cs.len();
    let (mut c2, mut s2) = ([0f32; MAX_ROTATED], [0f32; MAX_ROTATED]);
    for (i, &(c, s)) in cs.iter().enumerate() {
        (c2[2 * i], c2[2 * i + 1]) = (c, c);
        (s2[2 * i], s2[2 * i + 1]) = (-s, s);
    }
    let whole = n / 16 * 16;
    for head in x.chunks_exact_mut(head_dim) {
        for j in (0..whole).step_by(16) {
            // SAFETY: `j + 16 ≤ n ≤ head_dim` values of the head and of both tables.
            unsafe {
                let v = _mm512_loadu_ps(head.as_ptr().add(j));
                let swapped = _mm512_permute_ps::<0b10_11_00_01>(v);
                let r = _mm512_add_ps(
                    _mm512_mul_ps(v, _mm512_loadu_ps(c2.as_ptr().add(j))),
                    _mm512_mul_ps(swapped, _mm512_loadu_ps(s2.as_ptr().add(j))),
                );
                _mm512_storeu_ps(head.as_mut_ptr().add(j), r);
            }
        }
        if whole < n {
            rope_generic(&mut head[whole..n], n - whole, &cs[whole / 2..]);
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
