//! The loop over tiles of a packed panel: `RM` rows × `TM` tokens at a time, smaller tiles at
//! the edges, each result handed to an `emit(row, token, value)` callback.

/// A source of tiles: rows `r0..r0 + R` of a panel against tokens `t0..t0 + T`.
pub(crate) trait Tiler {
    fn tile<const R: usize, const T: usize>(&self, r0: usize, t0: usize) -> [[f32; T]; R];
}

/// Every (row, token) pair of `n_rows` panel rows and `n_tokens` tokens, by tiles of `RM × TM`
/// (`TM` 8, 4, 2 or 1); token groups outermost, so a group's activations stay in cache across
/// the panel. Edges take tiles of one row, and of 4, 2 or 1 tokens.
pub(crate) fn run_tiles<const RM: usize, const TM: usize, K: Tiler>(
    k: &K,
    n_rows: usize,
    n_tokens: usize,
    mut emit: impl FnMut(usize, usize, f32),
) {
    assert!(matches!(TM, 1 | 2 | 4 | 8));
    let mut t0 = 0;
    while t0 < n_tokens {
        let nt = (n_tokens - t0).min(TM);
        let mut r0 = 0;
        while r0 < n_rows {
            if n_rows - r0 >= RM {
                rows_tile::<RM, TM, K>(k, r0, t0, nt, &mut emit);
                r0 += RM;
            } else {
                rows_tile::<1, TM, K>(k, r0, t0, nt, &mut emit);
                r0 += 1;
            }
        }
        t0 += nt;
    }
}

/// Tiles of `R` rows covering `nt ≤ TM` tokens from `t0`.
fn rows_tile<const R: usize, const TM: usize, K: Tiler>(
    k: &K,
    r0: usize,
    t0: usize,
    nt: usize,
    emit: &mut impl FnMut(usize, usize, f32),
) {
    if nt == TM {
        return put(k.tile::<R, TM>(r0, t0), r0, t0, emit);
    }
    let mut t = t0;
    while t < t0 + nt {
        let left = t0 + nt - t;
        if left >= 4 {
            put(k.tile::<R, 4>(r0, t), r0, t, emit);
            t += 4;
        } else if left >= 2 {
            put(k.tile::<R, 2>(r0, t), r0, t, emit);
            t += 2;
        } else {
            put(k.tile::<R, 1>(r0, t), r0, t, emit);
            t += 1;
        }
    }
}

fn put<const R: usize, const T: usize>(
    res: [[f32; T]; R],
    r0: usize,
    t0: usize,
    emit: &mut impl FnMut(usize, usize, f32),
) {
    for (r, row) in res.iter().enumerate() {
        for (t, &v) in row.iter().enumerate() {
            emit(r0 + r, t0 + t, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tiles whose values name their (row, token).
    struct Probe;
    impl Tiler for Probe {
        fn tile<const R: usize, const T: usize>(&self, r0: usize, t0: usize) -> [[f32; T]; R] {
            std::array::from_fn(|r| std::array::from_fn(|t| ((r0 + r) * 1000 + t0 + t) as f32))
        }
    }

    #[test]
    fn every_pair_once() {
        for (n_rows, n_tokens) in [(1, 1), (5, 3), (8, 4), (9, 17), (3, 2), (7, 15), (6, 31)] {
            let mut seen = vec![0u32; n_rows * n_tokens];
            let mut check = |r: usize, t: usize, v: f32| {
                assert_eq!(v, (r * 1000 + t) as f32);
                seen[r * n_tokens + t] += 1;
            };
            run_tiles::<4, 4, _>(&Probe, n_rows, n_tokens, &mut check);
            run_tiles::<3, 8, _>(&Probe, n_rows, n_tokens, &mut check);
            run_tiles::<2, 2, _>(&Probe, n_rows, n_tokens, &mut check);
            assert!(seen.iter().all(|&c| c == 3), "{n_rows}x{n_tokens}");
        }
    }
}
