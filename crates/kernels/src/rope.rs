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
    for head in x.chunks_exact_mut(head_dim) {
        for (i, &(c, s)) in cs.iter().enumerate() {
            let a = head[2 * i];
            let b = head[2 * i + 1];
            head[2 * i] = a * c - b * s;
            head[2 * i + 1] = a * s + b * c;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
