//! Every SIMD kernel against its scalar twin, on fresh pseudo-random inputs, at every level this
//! CPU supports: row (decode) kernels, tile (prefill) kernels and panel packers. Integer dot
//! products are checked exactly; float results within [`SUM_ORDER_TOL_PER_TERM`].

use half::{bf16, f16};

use crate::act_q8::{ActLayout, ActQ8};
use crate::cpu::{Isa, Level};
use crate::pack::{self, f32_row_len, n_groups, offset_of};
#[cfg(target_arch = "x86_64")]
use crate::pack::{Q4_0_OFFSET, Q8_0_OFFSET};
use crate::qx16::{Lanes, X16};
#[cfg(target_arch = "x86_64")]
use crate::tile_scalar::{self, ActRow, QuantRow};
use crate::{dot_scalar, WeightType};

/// Two `f32` sums of the same `n` products in different orders each err by at most
/// `γ_n · Σ|a·b| ≈ n · ε · Σ|a·b|` (Higham's bound for recursive summation), so they differ by at
/// most `2 · n · ε · Σ|a·b|`: this is the allowance per term, to multiply by `n · Σ|a·b|`.
const SUM_ORDER_TOL_PER_TERM: f32 = 2.0 * f32::EPSILON;

fn close(got: f32, want: f32, n: usize, abs_sum: f32) -> bool {
    (got - want).abs() <= SUM_ORDER_TOL_PER_TERM * n as f32 * abs_sum
}

/// xorshift64: small, deterministic, no dependency (the unit tests of the crate's modules use
/// it too).
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform in [-1, 1).
    pub(crate) fn f32(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    pub(crate) fn byte(&mut self) -> u8 {
        (self.next() >> 56) as u8
    }
}

/// The SIMD levels this CPU supports.
fn simd_levels() -> Vec<(Isa, Level)> {
    Isa::ALL
        .into_iter()
        .filter(|&isa| isa != Isa::Scalar)
        .filter_map(|isa| Some((isa, Level::new(isa)?)))
        .collect()
}

/// The lane order of a level's repacked Q4_0 / Q8_0 kernels (`qx16::dot_lanes`).
fn lanes_of(level: Level) -> Lanes {
    match level {
        Level::Avx2(_) => Lanes::L8,
        _ => Lanes::L16,
    }
}

fn float_row(rng: &mut Rng, ty: WeightType, n: usize) -> (Vec<u8>, Vec<f32>) {
    let vals: Vec<f32> = (0..n).map(|_| rng.f32()).collect();
    let mut bytes = Vec::new();
    for &v in &vals {
        match ty {
            WeightType::F32 => bytes.extend(v.to_le_bytes()),
            WeightType::F16 => bytes.extend(f16::from_f32(v).to_le_bytes()),
            _ => bytes.extend(bf16::from_f32(v).to_le_bytes()),
        }
    }
    let mut decoded = vec![0f32; n];
    crate::dequantize(ty, &bytes, &mut decoded);
    (bytes, decoded)
}

/// A random Q8_0 / Q4_0 row of `nb` blocks; scales 1.0 when `unit`, else random in ±[0.001, 1).
fn quant_row(rng: &mut Rng, ty: WeightType, nb: usize, unit: bool) -> Vec<u8> {
    let mut bytes = Vec::new();
    for _ in 0..nb {
        let d = if unit {
            1.0
        } else {
            rng.f32().abs().max(0.001)
        };
        bytes.extend(f16::from_f32(d).to_le_bytes());
        let n = if ty == WeightType::Q4_0 { 16 } else { 32 };
        bytes.extend((0..n).map(|_| rng.byte()));
    }
    bytes
}

/// Activations: random in ±`scale`, or (`unit`) integers in [-127, 127] with a ±127 in every
/// block, so that quantization keeps them as they are with a scale of exactly 1.
fn acts(rng: &mut Rng, n: usize, unit: bool) -> Vec<f32> {
    (0..n)
        .map(|i| match (unit, i % 32) {
            (false, _) => rng.f32() * 3.0,
            (true, 7) => 127.0,
            (true, _) => (rng.byte() as i32 % 255 - 127) as f32,
        })
        .collect()
}

/// `Σ w·a` with the row decoded (dequantized) and the activations as quantized, in f64, and
/// `Σ |w·a|`.
fn decoded_dot(ty: WeightType, row: &[u8], qs: &[i8], d: &[f32]) -> (f64, f32) {
    let mut w = vec![0f32; qs.len()];
    crate::dequantize(ty, row, &mut w);
    let (mut s, mut a) = (0f64, 0f32);
    for (i, (&wi, &q)) in w.iter().zip(qs).enumerate() {
        let x = d[i / 32] * q as f32;
        s += wi as f64 * x as f64;
        a += (wi * x).abs();
    }
    (s, a)
}

#[test]
fn float_row_kernels_match_scalar() {
    let mut rng = Rng(0x243f6a8885a308d3);
    for (isa, level) in simd_levels() {
        for ty in [WeightType::F32, WeightType::F16, WeightType::BF16] {
            for n in [1, 3, 8, 15, 16, 17, 33, 64, 100, 255, 1000, 2051] {
                let (w, wd) = float_row(&mut rng, ty, n);
                let x: Vec<f32> = (0..n).map(|_| rng.f32()).collect();
                let abs: f32 = wd.iter().zip(&x).map(|(a, b)| (a * b).abs()).sum();
                let want = match ty {
                    WeightType::F32 => dot_scalar::dot_f32(&w, &x),
                    WeightType::F16 => dot_scalar::dot_f16(&w, &x),
                    _ => dot_scalar::dot_bf16(&w, &x),
                };
                let got = crate::matmul_float::dot_row(level, ty, &w, &x);
                assert!(
                    close(got, want, n, abs),
                    "{isa} {ty:?} n={n}: {got} vs {want}"
                );
            }
        }
    }
}

/// The AVX-512 token, or a skip line where this CPU lacks it.
#[cfg(target_arch = "x86_64")]
fn avx512_or_skip() -> Option<crate::cpu::Avx512> {
    match Level::new(Isa::Avx512) {
        Some(Level::Avx512(k)) => Some(k),
        _ => {
            eprintln!("skip: AVX-512 not available");
            None
        }
    }
}

/// The tile kernels' token groups cover every token once, in order, four at a time while four
/// are left, then two, then one.
#[cfg(target_arch = "x86_64")]
#[test]
fn token_groups_cover_the_tokens_in_fours_then_two_then_one() {
    for n in 0..=13 {
        let groups: Vec<(usize, usize)> = crate::avx512_tile::token_groups(n).collect();
        let mut next = 0;
        for &(t0, nt) in &groups {
            assert_eq!(t0, next, "{n}: {groups:?}");
            assert!(
                nt == 4 || (nt == 2 && n - t0 < 4) || (nt == 1 && n - t0 == 1),
                "{n}: {groups:?}"
            );
            next += nt;
        }
        assert_eq!(next, n, "{n}: {groups:?}");
    }
    assert_eq!(
        crate::avx512_tile::token_groups(7).collect::<Vec<_>>(),
        [(0, 4), (4, 2), (6, 1)]
    );
}

/// The AVX-512 float row kernel for several tokens gives each token bitwise the one-token
/// kernel's sum (a prompt's row path and a decode agree).
#[cfg(target_arch = "x86_64")]
#[test]
fn float_row_kernel_for_tokens_equals_the_one_token_kernel_bitwise() {
    use crate::avx2_dot::{BF16, F16, F32};
    use crate::avx512_dot::{dot_float, dot_float_tokens, FLOAT_TOKENS};
    let Some(k) = avx512_or_skip() else { return };
    let mut rng = Rng(0x9e3779b97f4a7c15);
    for ty in [WeightType::F32, WeightType::F16, WeightType::BF16] {
        for n in [1, 17, 64, 100, 288, 2051] {
            let (w, _) = float_row(&mut rng, ty, n);
            let xs: Vec<Vec<f32>> = (0..FLOAT_TOKENS)
                .map(|_| (0..n).map(|_| rng.f32() * 3.0).collect())
                .collect();
            for t in 1..=FLOAT_TOKENS {
                let refs: Vec<&[f32]> = xs[..t].iter().map(|x| &x[..]).collect();
                let mut got = vec![0f32; t];
                let want: Vec<f32> = match ty {
                    WeightType::F32 => {
                        dot_float_tokens::<F32>(k, &w, &refs, &mut got);
                        refs.iter().map(|x| dot_float::<F32>(k, &w, x)).collect()
                    }
                    WeightType::F16 => {
                        dot_float_tokens::<F16>(k, &w, &refs, &mut got);
                        refs.iter().map(|x| dot_float::<F16>(k, &w, x)).collect()
                    }
                    _ => {
                        dot_float_tokens::<BF16>(k, &w, &refs, &mut got);
                        refs.iter().map(|x| dot_float::<BF16>(k, &w, x)).collect()
                    }
                };
                assert!(
                    got.iter()
                        .zip(&want)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{ty:?} n={n} tokens={t}: {got:?} vs {want:?}"
                );
            }
        }
    }
}

/// The AVX2 float kernel for several tokens (four rows side by side or one, every count of
/// tokens up to a block, rows long enough for several chunks of columns) gives each row and
/// token bitwise the one-token kernel's sum (a prompt's row path and a decode agree), and so
/// does the decode kernel for four rows side by side.
#[cfg(target_arch = "x86_64")]
#[test]
fn avx2_float_blocks_equal_the_one_token_kernel_bitwise() {
    use crate::avx2_dot::{
        dot_float, dot_float_block, dot_float_rows, interleave_tokens, BF16, BLOCK_TOKENS, F16, F32,
    };
    let Some(crate::cpu::Level::Avx2(k)) = crate::cpu::Level::new(crate::cpu::Isa::Avx2) else {
        eprintln!("skip: AVX2 not available");
        return;
    };
    let mut rng = Rng(0x510e527fade682d1);
    for ty in [WeightType::F32, WeightType::F16, WeightType::BF16] {
        for n in [1, 17, 64, 100, 288, 2051, 5000] {
            let rows: Vec<Vec<u8>> = (0..4).map(|_| float_row(&mut rng, ty, n).0).collect();
            let w4: [&[u8]; 4] = std::array::from_fn(|r| &rows[r][..]);
            let x: Vec<f32> = (0..BLOCK_TOKENS * n).map(|_| rng.f32() * 3.0).collect();
            let one = |w: &[u8], x: &[f32]| match ty {
                WeightType::F32 => dot_float::<F32>(k, w, x),
                WeightType::F16 => dot_float::<F16>(k, w, x),
                _ => dot_float::<BF16>(k, w, x),
            };
            let four = match ty {
                WeightType::F32 => dot_float_rows::<F32, 4>(k, w4, &x[..n]),
                WeightType::F16 => dot_float_rows::<F16, 4>(k, w4, &x[..n]),
                _ => dot_float_rows::<BF16, 4>(k, w4, &x[..n]),
            };
            for (r, v) in four.iter().enumerate() {
                assert_eq!(
                    v.to_bits(),
                    one(w4[r], &x[..n]).to_bits(),
                    "{ty:?} n={n} row {r}"
                );
            }
            for nt in [1, 2, 3, 4, 5, 7, 8, BLOCK_TOKENS - 1, BLOCK_TOKENS] {
                let x = &x[..nt * n];
                let mut xi = vec![0f32; nt * (n / 8 * 8)];
                interleave_tokens(x, n, &mut xi);
                let mut got = vec![[f32::NAN; 4]; nt];
                let mut alone = vec![f32::NAN; nt];
                let put = |r: usize, t: usize, v: f32| got[t][r] = v;
                let put1 = |_: usize, t: usize, v: f32| alone[t] = v;
                match ty {
                    WeightType::F32 => {
                        dot_float_block::<F32, 4>(k, w4, x, &xi, n, put);
                        dot_float_block::<F32, 1>(k, [w4[3]], x, &xi, n, put1);
                    }
                    WeightType::F16 => {
                        dot_float_block::<F16, 4>(k, w4, x, &xi, n, put);
                        dot_float_block::<F16, 1>(k, [w4[3]], x, &xi, n, put1);
                    }
                    _ => {
                        dot_float_block::<BF16, 4>(k, w4, x, &xi, n, put);
                        dot_float_block::<BF16, 1>(k, [w4[3]], x, &xi, n, put1);
                    }
                }
                for (t, xt) in x.chunks_exact(n).enumerate() {
                    let what = format!("{ty:?} n={n} tokens={nt} token {t}");
                    for (r, w) in w4.iter().enumerate() {
                        assert_eq!(got[t][r].to_bits(), one(w, xt).to_bits(), "{what} row {r}");
                    }
                    assert_eq!(alone[t].to_bits(), one(w4[3], xt).to_bits(), "{what} alone");
                }
            }
        }
    }
}

#[test]
fn quant_row_kernels_match_scalar() {
    let mut rng = Rng(0x13198a2e03707344);
    for (isa, level) in simd_levels() {
        for ty in [WeightType::Q8_0, WeightType::Q4_0] {
            for nb in [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 24, 31, 64, 177] {
                for unit in [true, false] {
                    if unit && nb * 32 > 1024 {
                        continue; // exactness needs every partial sum below 2^24
                    }
                    let row = quant_row(&mut rng, ty, nb, unit);
                    let x = acts(&mut rng, nb * 32, unit);
                    let k = crate::matmul_quant::lane_corr_k(level, ty);
                    let act = ActQ8::new(level, &x, 1, nb * 32, ActLayout::Natural, k);
                    let (qs, d) = (act.qs(0), act.d(0));
                    let want = if ty == WeightType::Q4_0 {
                        dot_scalar::dot_q4_0(&row, qs, d)
                    } else {
                        dot_scalar::dot_q8_0(&row, qs, d)
                    };
                    let got = crate::matmul_quant::dot_row(level, ty, &row, &act, 0);
                    let (exact, abs) = decoded_dot(ty, &row, qs, d);
                    if unit {
                        assert!(d.iter().all(|&s| s == 1.0));
                        assert_eq!(got, want, "{isa} {ty:?} nb={nb}");
                        assert_eq!(got as f64, exact, "{isa} {ty:?} nb={nb}");
                    } else {
                        assert!(
                            close(got, want, nb * 32, abs),
                            "{isa} {ty:?} nb={nb}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}

/// The four-row decode kernel gives each row bitwise the one-row kernel's result.
#[cfg(target_arch = "x86_64")]
#[test]
fn four_row_quant_kernel_equals_the_row_kernel_bitwise() {
    use crate::avx512_dot::{dot_quant_rows, ROWS};
    let mut rng = Rng(0x452821e638d01377);
    for (isa, level) in simd_levels() {
        let Level::Avx512(k) = level else { continue };
        for ty in [WeightType::Q8_0, WeightType::Q4_0] {
            for nb in [1, 3, 4, 5, 8, 17, 64, 177] {
                let rows: Vec<Vec<u8>> = (0..ROWS)
                    .map(|_| quant_row(&mut rng, ty, nb, false))
                    .collect();
                let x = acts(&mut rng, nb * 32, false);
                let lk = crate::matmul_quant::lane_corr_k(level, ty);
                let act = ActQ8::new(level, &x, 1, nb * 32, ActLayout::Natural, lk);
                let w = std::array::from_fn(|r| rows[r].as_slice());
                let got = dot_quant_rows(
                    k,
                    ty == WeightType::Q4_0,
                    w,
                    act.qs(0),
                    act.d(0),
                    act.lane_corr(0),
                );
                for (r, row) in rows.iter().enumerate() {
                    let want = crate::matmul_quant::dot_row(level, ty, row, &act, 0);
                    assert_eq!(
                        got[r].to_bits(),
                        want.to_bits(),
                        "{isa} {ty:?} nb={nb} row {r}"
                    );
                }
            }
        }
    }
}

#[test]
fn packers_match_scalar() {
    let mut rng = Rng(0xa4093822299f31d0);
    for (isa, level) in simd_levels() {
        for ty in [WeightType::F32, WeightType::F16, WeightType::BF16] {
            for n in [1, 7, 8, 16, 31, 64, 100, 2051] {
                let (w, _) = float_row(&mut rng, ty, n);
                let (mut got, mut want) = (vec![1f32; f32_row_len(n)], vec![2f32; f32_row_len(n)]);
                pack::pack_float_row(level, ty, &w, &mut got);
                pack::pack_float_row_scalar(ty, &w, &mut want);
                assert!(
                    got.iter()
                        .zip(&want)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{isa} {ty:?} {n}"
                );
            }
        }
        for ty in [WeightType::Q8_0, WeightType::Q4_0] {
            for nb in [1, 7, 8, 15, 16, 17, 33, 64] {
                let row = quant_row(&mut rng, ty, nb, false);
                let ng = n_groups(nb * 32);
                let (mut gq, mut gd) = (vec![1u8; ng * 512], vec![1f32; ng * 16]);
                let (mut wq, mut wd) = (vec![2u8; ng * 512], vec![2f32; ng * 16]);
                pack::pack_quant_row(level, ty, &row, &mut gq, &mut gd);
                pack::pack_quant_row_scalar(ty, &row, &mut wq, &mut wd);
                assert_eq!(gq, wq, "{isa} {ty:?} nb={nb}");
                assert_eq!(gd, wd, "{isa} {ty:?} nb={nb}");
            }
        }
    }
}

#[test]
fn packed_quant_rows_decode_to_the_stored_values() {
    let mut rng = Rng(0x082efa98ec4e6c89);
    for ty in [WeightType::Q8_0, WeightType::Q4_0] {
        let nb = 19;
        let row = quant_row(&mut rng, ty, nb, false);
        let mut dec = vec![0f32; nb * 32];
        crate::dequantize(ty, &row, &mut dec);
        let ng = n_groups(nb * 32);
        let (mut q, mut d) = (vec![0u8; ng * 512], vec![0f32; ng * 16]);
        pack::pack_quant_row_scalar(ty, &row, &mut q, &mut d);
        for (j, &want) in dec.iter().enumerate() {
            let (b, v) = (j / 32, j % 32);
            let at = (b / 16) * 512 + ((v / 4) * 16 + b % 16) * 4 + v % 4;
            assert_eq!(
                d[b] * (q[at] as i32 - offset_of(ty)) as f32,
                want,
                "{ty:?} value {j}"
            );
        }
    }
}

/// The outer-product float kernels (AVX-512 and AVX2) and their packers against the scalar
/// twin, bitwise: every group and token count, partial groups, column ranges inside a pass,
/// storing and adding.
#[cfg(target_arch = "x86_64")]
#[test]
fn float_panel_kernels_match_their_twin_bitwise() {
    for (_, level) in simd_levels() {
        float_panel_cases(level);
    }
}

#[cfg(target_arch = "x86_64")]
fn float_panel_cases(level: Level) {
    use crate::avx2_dot::{F16, F32};
    use crate::avx512_panel::{self as ap, GROUP_ROWS, MAX_GROUPS, TOKENS};
    let mut rng = Rng(0x3c6ef372fe94f82b);
    for (n_rows, kw) in [(1usize, 1usize), (16, 16), (23, 130), (64, 300), (49, 1024)] {
        let n_groups = n_rows.div_ceil(GROUP_ROWS);
        let xs: Vec<Vec<f32>> = (0..TOKENS)
            .map(|_| (0..kw).map(|_| rng.f32()).collect())
            .collect();
        // Each type's panels: `f32`, and as stored where the level keeps them so (short prompts).
        let types = [WeightType::F32, WeightType::F16, WeightType::BF16];
        let kinds = |ty| {
            let short = ap::panel_kind(level, ty, 1);
            assert_eq!(ap::panel_kind(level, ty, ap::HALF_PANEL_TOKENS + 1), F32);
            std::iter::once(F32).chain((short != F32).then_some(short))
        };
        for (ty, kind) in types
            .into_iter()
            .flat_map(|ty| kinds(ty).map(move |k| (ty, k)))
        {
            let rows: Vec<Vec<u8>> = (0..n_rows).map(|_| float_row(&mut rng, ty, kw).0).collect();
            // The panel as the kernels read it (on 4-byte boundaries), and as `f32` for the twin.
            let mut bytes = vec![f32::NAN; n_groups * ap::group_bytes(kind, kw) / 4];
            let packed: &mut [u8] = bytemuck::cast_slice_mut(&mut bytes);
            ap::pack_groups(level, ty, kind, |i| &rows[i][..], n_rows, kw, packed);
            let packed: &[u8] = bytemuck::cast_slice(&bytes);
            let groups: Vec<f32> = match kind {
                F32 => bytemuck::cast_slice(packed).to_vec(),
                kind => bytemuck::cast_slice::<u8, u16>(packed)
                    .iter()
                    .map(|&h| match kind {
                        F16 => half::f16::from_bits(h).to_f32(),
                        _ => half::bf16::from_bits(h).to_f32(),
                    })
                    .collect(),
            };
            let mut want = vec![0f32; f32_row_len(kw)];
            for g in 0..n_groups {
                for l in 0..GROUP_ROWS {
                    let r = g * GROUP_ROWS + l;
                    if r < n_rows {
                        pack::pack_float_row(Level::Scalar, ty, &rows[r], &mut want);
                    } else {
                        want.fill(0.0);
                    }
                    for (c, want) in want.iter().enumerate().take(kw) {
                        let got = groups[(g * kw + c) * GROUP_ROWS + l];
                        assert_eq!(
                            got.to_bits(),
                            want.to_bits(),
                            "{level:?} {ty:?} kind {kind} packed row {r} col {c}"
                        );
                    }
                }
            }
            for n_tokens in 1..=TOKENS {
                for cols in [0..kw, kw / 3..kw, 0..kw.min(128)] {
                    let x: Vec<&[f32]> = xs[..n_tokens].iter().map(|x| &x[cols.clone()]).collect();
                    let rows_used = n_rows.min(MAX_GROUPS * GROUP_ROWS);
                    for add in [false, true] {
                        let start: Vec<f32> = (0..rows_used).map(|_| rng.f32()).collect();
                        let mut got = vec![start.clone(); n_tokens];
                        let mut want = got.clone();
                        let mut g: Vec<&mut [f32]> = got.iter_mut().map(|o| &mut o[..]).collect();
                        let mut w: Vec<&mut [f32]> = want.iter_mut().map(|o| &mut o[..]).collect();
                        ap::tile(level, kind, packed, kw, cols.clone(), &x, &mut g, add);
                        tile_scalar::panel_f32(&groups, kw, cols.clone(), &x, &mut w, add);
                        for (t, (g, w)) in got.iter().zip(&want).enumerate() {
                            for (r, (g, w)) in g.iter().zip(w).enumerate() {
                                assert_eq!(
                                    g.to_bits(),
                                    w.to_bits(),
                                    "{level:?} {ty:?} kind {kind} {n_rows}x{kw} cols {cols:?} {n_tokens} tokens add {add}: out[{t}][{r}]"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One tile shape of the quantized kernels against the scalar twin (exactly with unit scales).
#[cfg(target_arch = "x86_64")]
fn check_quant_tile<const R: usize, const T: usize>(
    level: Level,
    rng: &mut Rng,
    ty: WeightType,
    nb: usize,
    unit: bool,
) {
    let n_cols = nb * 32;
    let ng = n_groups(n_cols);
    let raw: Vec<Vec<u8>> = (0..R).map(|_| quant_row(rng, ty, nb, unit)).collect();
    let mut q = vec![0u8; R * ng * 512];
    let mut d = vec![0f32; R * ng * 16];
    for (i, r) in raw.iter().enumerate() {
        let (qr, dr) = (
            &mut q[i * ng * 512..][..ng * 512],
            &mut d[i * ng * 16..][..ng * 16],
        );
        pack::pack_quant_row_scalar(ty, r, qr, dr);
    }
    let x = acts(rng, T * n_cols, unit);
    let act = ActQ8::new(Level::Scalar, &x, T, n_cols, ActLayout::Interleaved, None);
    let nat = ActQ8::new(Level::Scalar, &x, T, n_cols, ActLayout::Natural, None);
    let w: [QuantRow<'_>; R] = std::array::from_fn(|i| QuantRow {
        qs: &q[i * ng * 512..][..ng * 512],
        d: &d[i * ng * 16..][..ng * 16],
    });
    let a: [ActRow<'_>; T] = std::array::from_fn(|t| ActRow {
        qs: act.qs(t),
        d: act.d(t),
        sums: act.sums(t),
    });
    let offset = offset_of(ty);
    let want = tile_scalar::tile_quant(w, a, offset);
    let got = match level {
        Level::Avx2(k) => crate::avx2_tile::tile_quant(k, w, a, offset),
        Level::Avx512(k) => crate::avx512_tile::tile_quant(k, w, a, offset),
        Level::Scalar => unreachable!(),
    };
    for r in 0..R {
        for t in 0..T {
            let (exact, abs) = decoded_dot(ty, &raw[r], nat.qs(t), nat.d(t));
            let what = format!("{level:?} {ty:?} {R}x{T} nb={nb}");
            if unit {
                assert_eq!(got[r][t], want[r][t], "{what}");
                assert_eq!(got[r][t] as f64, exact, "{what}");
            } else {
                assert!(close(got[r][t], want[r][t], n_cols, abs), "{what}");
                assert!(close(want[r][t], exact as f32, n_cols, abs), "{what}");
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn quant_tile_kernels_match_scalar() {
    let mut rng = Rng(0xbe5466cf34e90c6c);
    assert_eq!((Q8_0_OFFSET, Q4_0_OFFSET), (128, 8));
    for (_, level) in simd_levels() {
        for ty in [WeightType::Q8_0, WeightType::Q4_0] {
            for nb in [1, 5, 16, 17, 32, 176] {
                for unit in [true, false] {
                    if unit && nb * 32 > 1024 {
                        continue; // exactness needs every partial sum below 2^24
                    }
                    check_quant_tile::<1, 1>(level, &mut rng, ty, nb, unit);
                    check_quant_tile::<1, 3>(level, &mut rng, ty, nb, unit);
                    check_quant_tile::<2, 2>(level, &mut rng, ty, nb, unit);
                    check_quant_tile::<2, 4>(level, &mut rng, ty, nb, unit);
                    check_quant_tile::<4, 4>(level, &mut rng, ty, nb, unit);
                }
            }
        }
    }
}

#[test]
fn extreme_weights_do_not_saturate() {
    // Q8_0 bytes of -128 and activations of ±127 are the largest products any kernel sees;
    // Q4_0's extremes (-8 and 7) fill the 16-bit sums of the AVX2 tiles the most. Token counts
    // from one (row kernels) to prompts (tiles in groups of 4, 2 and 1).
    let nb = 32;
    for (ty, byte, w_val) in [
        (WeightType::Q8_0, 0x80u8, -128.0f32),
        (WeightType::Q4_0, 0x00, -8.0),
        (WeightType::Q4_0, 0xff, 7.0),
    ] {
        let mut row = Vec::new();
        for _ in 0..nb {
            row.extend(f16::from_f32(1.0).to_le_bytes());
            row.extend(vec![byte; ty.row_bytes(32) - 2]);
        }
        for sign in [1.0f32, -1.0] {
            let x = vec![127.0 * sign; nb * 32];
            let want = w_val * 127.0 * sign * (nb * 32) as f32;
            for isa in Isa::ALL.into_iter().filter(|i| i.is_supported()) {
                let w = crate::WeightView {
                    ty,
                    n_rows: 1,
                    n_cols: nb * 32,
                    bytes: &row,
                };
                for n_tokens in [1, 3, 4, 7, 16] {
                    let xs: Vec<f32> = x.iter().copied().cycle().take(n_tokens * nb * 32).collect();
                    let mut out = vec![0f32; n_tokens];
                    crate::matmul_with(isa, &w, &xs, n_tokens, &mut out);
                    assert!(
                        out.iter().all(|&v| v == want),
                        "{isa} {ty:?} {byte:#x} {n_tokens}: {out:?}"
                    );
                }
            }
        }
    }
}

/// At the AMX level, a token's outputs by the AMX tiles (the bulk path) do not depend on the
/// other tokens of the call: each token of a batch gives bitwise the same outputs alone with a
/// neighbour, at either position.
#[cfg(target_arch = "x86_64")]
#[test]
fn amx_results_do_not_depend_on_the_batch() {
    if !Isa::Amx.is_supported() {
        eprintln!("skip: AMX not available");
        return;
    }
    let mut rng = Rng(0x9216d5d98979fb1b);
    for ty in [WeightType::Q8_0, WeightType::Q4_0] {
        let (n_rows, nb, n_tokens) = (37, 40, 35);
        let n_cols = nb * 32;
        let bytes: Vec<u8> = (0..n_rows)
            .flat_map(|_| quant_row(&mut rng, ty, nb, false))
            .collect();
        let w = crate::WeightView {
            ty,
            n_rows,
            n_cols,
            bytes: &bytes,
        };
        let x = acts(&mut rng, n_tokens * n_cols, false);
        let mut all = vec![0f32; n_tokens * n_rows];
        let bulk = crate::MatmulPath::Bulk;
        crate::matmul_path_with(Isa::Amx, bulk, &w, &x, n_tokens, &mut all);
        let other = acts(&mut rng, n_cols, false);
        for t in [0, 1, 15, 16, 17, 34] {
            let xt = &x[t * n_cols..(t + 1) * n_cols];
            let want = &all[t * n_rows..(t + 1) * n_rows];
            for first in [true, false] {
                let pair: Vec<f32> = if first {
                    xt.iter().chain(&other).copied().collect()
                } else {
                    other.iter().chain(xt).copied().collect()
                };
                let mut got = vec![0f32; 2 * n_rows];
                crate::matmul_path_with(Isa::Amx, bulk, &w, &pair, 2, &mut got);
                let got = if first {
                    &got[..n_rows]
                } else {
                    &got[n_rows..]
                };
                assert!(
                    got.iter()
                        .zip(want)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{ty:?} token {t} first={first}"
                );
            }
        }
    }
}

/// The repacked layouts of `qx16.rs` and their repacked weight types.
const X16_KINDS: [(X16, WeightType); 2] = [
    (X16::Q4_0, WeightType::Q4_0x16),
    (X16::Q8_0, WeightType::Q8_0x16),
];

/// A random stored row of `nb` blocks of `kind.stored()` and the same row repacked
/// (`qx16.rs`).
fn x16_rows(rng: &mut Rng, kind: X16, nb: usize, unit: bool) -> (Vec<u8>, Vec<u8>) {
    let stored = quant_row(rng, kind.stored(), nb, unit);
    let mut x16 = vec![0xffu8; crate::qx16::row_bytes(kind, nb * 32)];
    crate::qx16::repack_row(kind, &stored, &mut x16);
    (stored, x16)
}

#[test]
fn repacked_rows_hold_the_stored_blocks() {
    let mut rng = Rng(0x2ffd72dbd01adfb7);
    for (kind, ty) in X16_KINDS {
        let bytes = kind.block_bytes();
        for nb in [1, 15, 16, 17, 33, 344] {
            let (stored, x16) = x16_rows(&mut rng, kind, nb, false);
            // As long as the stored row: a partial last group takes only its own blocks.
            assert_eq!(x16.len(), nb * bytes);
            assert_eq!(x16.len(), ty.row_bytes(nb * 32));
            for (b, blk) in stored.chunks_exact(bytes).enumerate() {
                let got = crate::qx16::block_at(kind, &x16, b);
                assert_eq!(&got[..bytes], blk, "{ty:?} nb={nb} block {b}");
            }
            // Every group read whole: its blocks where a whole group keeps them, and after a
            // partial group's own blocks zero blocks (scale 0, so they add nothing).
            for g in 0..nb.div_ceil(16) {
                let whole = crate::qx16::whole_group(kind, &x16, g);
                for i in 0..16 {
                    let b = 16 * g + i;
                    let mut blk = vec![0u8; bytes];
                    blk[..2].copy_from_slice(&whole[2 * i..2 * i + 2]);
                    for k in 0..(bytes - 2) / 4 {
                        let at = crate::qx16::QUANTS_AT + 64 * k + 4 * i;
                        let flip = if kind == X16::Q8_0 { 0x80 } else { 0 };
                        for j in 0..4 {
                            blk[2 + 4 * k + j] = whole[at + j] ^ if b < nb { flip } else { 0 };
                        }
                    }
                    let want = if b < nb {
                        stored[b * bytes..(b + 1) * bytes].to_vec()
                    } else {
                        vec![0u8; bytes]
                    };
                    assert_eq!(blk, want, "{ty:?} nb={nb} group {g} block {i}");
                }
            }
            let (mut a, mut b) = (vec![0f32; nb * 32], vec![1f32; nb * 32]);
            crate::dequantize(kind.stored(), &stored, &mut a);
            crate::dequantize(ty, &x16, &mut b);
            assert_eq!(a, b, "{ty:?} nb={nb}");
            // The prefill panel of a repacked row is the stored row's panel, at every level.
            let ng = n_groups(nb * 32);
            let (mut q0, mut d0) = (vec![1u8; ng * 512], vec![1f32; ng * 16]);
            pack::pack_quant_row_scalar(kind.stored(), &stored, &mut q0, &mut d0);
            let levels =
                std::iter::once(Level::Scalar).chain(simd_levels().into_iter().map(|l| l.1));
            for level in levels {
                let (mut q1, mut d1) = (vec![2u8; ng * 512], vec![2f32; ng * 16]);
                pack::pack_quant_row(level, ty, &x16, &mut q1, &mut d1);
                let (f0, f1) = (
                    d0.iter().map(|v| v.to_bits()),
                    d1.iter().map(|v| v.to_bits()),
                );
                assert!(q0 == q1 && f0.eq(f1), "{level:?} {ty:?} nb={nb}");
            }
        }
    }
}

/// A partial last group's scales are `2n` bytes followed by its quants: kernels that read its
/// scales by whole 32-bit words (AVX2) must clear the stray half of an odd count's last word.
/// Here that half is an f16 NaN (two `0xff` quant bytes), which an unmasked scale turns into a
/// NaN dot product.
#[cfg(target_arch = "x86_64")]
#[test]
fn partial_groups_read_none_of_their_quants_as_scales() {
    let mut rng = Rng(0x5d1c3a7e90b2f468);
    for (kind, _) in X16_KINDS {
        for nb in [1, 3, 7, 9, 15, 17, 35] {
            let (_, mut x16) = x16_rows(&mut rng, kind, nb, false);
            let n = nb % 16;
            let at = (nb / 16) * kind.group_bytes() + 2 * n;
            x16[at..at + 2].fill(0xff);
            let x = acts(&mut rng, nb * 32, false);
            for (isa, level) in simd_levels() {
                let act = ActQ8::new(level, &x, 1, nb * 32, ActLayout::Interleaved, None);
                let (qs, d, sums) = (act.qs(0), act.d(0), act.sums(0));
                let want = crate::qx16::dot_lanes(lanes_of(level), kind, &x16, qs, d, sums);
                assert!(want.is_finite(), "{kind:?} nb={nb}");
                let mut got = [f32::NAN];
                match level {
                    Level::Avx512(k) => {
                        got[0] = crate::avx512_x16::dot_rows::<1>(k, kind, [&x16], qs, d, sums)[0];
                    }
                    Level::Avx2(k) => {
                        crate::avx2_x16::dot_matrix(k, kind, &x16, qs, d, sums, &mut got);
                    }
                    Level::Scalar => continue,
                }
                assert_eq!(got[0].to_bits(), want.to_bits(), "{isa} {kind:?} nb={nb}");
            }
        }
    }
}

/// The AVX-512 repacked kernel for two tokens gives each token bitwise its one-token result,
/// over a matrix of five rows (four at once, one alone) and whole or partial groups.
#[cfg(target_arch = "x86_64")]
#[test]
fn repacked_kernel_for_two_tokens_equals_one_token_bitwise() {
    let Some(k) = avx512_or_skip() else { return };
    let mut rng = Rng(0x3c6ef372fe94f82b);
    for (kind, nb) in X16_KINDS
        .into_iter()
        .flat_map(|(k, _)| [1, 9, 16, 25, 64].map(|nb| (k, nb)))
    {
        let w: Vec<u8> = (0..5)
            .flat_map(|_| x16_rows(&mut rng, kind, nb, false).1)
            .collect();
        let x = acts(&mut rng, 2 * nb * 32, false);
        let level = Level::Avx512(k);
        let act = ActQ8::new(level, &x, 2, nb * 32, ActLayout::Interleaved, None);
        let tok = |t: usize| (act.qs(t), act.d(t), act.sums(t));
        let (mut a, mut b) = (vec![f32::NAN; 5], vec![f32::NAN; 5]);
        crate::avx512_x16::dot_matrix_tokens(k, kind, &w, &[tok(0), tok(1)], &mut [&mut a, &mut b]);
        for (t, got) in [(0, &a), (1, &b)] {
            let mut one = vec![f32::NAN; 5];
            let (qs, d, sums) = tok(t);
            crate::avx512_x16::dot_matrix(k, kind, &w, qs, d, sums, &mut one);
            assert!(
                got.iter()
                    .zip(&one)
                    .all(|(g, o)| g.to_bits() == o.to_bits()),
                "{kind:?} nb={nb} token {t}: {got:?} vs {one:?}"
            );
        }
    }
}

#[test]
fn repacked_kernels_match_their_twins() {
    let mut rng = Rng(0xb8e1afed6a267e96);
    for (kind, nb) in X16_KINDS
        .into_iter()
        .flat_map(|(k, _)| [1, 2, 15, 16, 17, 31, 64, 177, 344].map(|nb| (k, nb)))
    {
        for unit in [true, false] {
            if unit && nb * 32 > 1024 {
                continue; // exactness needs every partial sum below 2^24
            }
            let rows: Vec<(Vec<u8>, Vec<u8>)> =
                (0..4).map(|_| x16_rows(&mut rng, kind, nb, unit)).collect();
            let x = acts(&mut rng, nb * 32, unit);
            // Scalar level: blocks in order, bitwise the stored row's kernel.
            let nat = ActQ8::new(Level::Scalar, &x, 1, nb * 32, ActLayout::Natural, None);
            let il = ActQ8::new(Level::Scalar, &x, 1, nb * 32, ActLayout::Interleaved, None);
            for (stored, x16) in &rows {
                let want = match kind {
                    X16::Q4_0 => dot_scalar::dot_q4_0(stored, nat.qs(0), nat.d(0)),
                    X16::Q8_0 => dot_scalar::dot_q8_0(stored, nat.qs(0), nat.d(0)),
                };
                let seq = crate::qx16::dot_sequential(kind, x16, nat.qs(0), nat.d(0));
                assert_eq!(seq.to_bits(), want.to_bits(), "{kind:?} nb={nb}");
                let (exact, abs) = decoded_dot(kind.stored(), stored, nat.qs(0), nat.d(0));
                for n in [Lanes::L8, Lanes::L16] {
                    let lanes = crate::qx16::dot_lanes(n, kind, x16, il.qs(0), il.d(0), il.sums(0));
                    if unit {
                        assert_eq!(lanes as f64, exact, "{n:?} {kind:?} nb={nb}");
                    } else {
                        assert!(
                            close(lanes, want, nb * 32, abs),
                            "{n:?} {kind:?} nb={nb}: {lanes} vs {want}"
                        );
                    }
                }
            }
            // AVX-512: four rows and one row; AVX2: the rows of a matrix; bitwise the lane-order
            // twin.
            #[cfg(target_arch = "x86_64")]
            for (isa, level) in simd_levels() {
                let act = ActQ8::new(level, &x, 1, nb * 32, ActLayout::Interleaved, None);
                let (qs, d, sums) = (act.qs(0), act.d(0), act.sums(0));
                let what = |r| format!("{isa} {kind:?} nb={nb} row {r}");
                let twins: Vec<f32> = rows
                    .iter()
                    .map(|(_, x16)| crate::qx16::dot_lanes(lanes_of(level), kind, x16, qs, d, sums))
                    .collect();
                let got: Vec<f32> = match level {
                    Level::Avx512(k) => {
                        let w = std::array::from_fn(|r| rows[r].1.as_slice());
                        let four = crate::avx512_x16::dot_rows::<4>(k, kind, w, qs, d, sums);
                        for (r, (_, x16)) in rows.iter().enumerate() {
                            let one =
                                crate::avx512_x16::dot_rows::<1>(k, kind, [x16], qs, d, sums)[0];
                            assert_eq!(one.to_bits(), twins[r].to_bits(), "{}", what(r));
                        }
                        four.to_vec()
                    }
                    Level::Avx2(k) => {
                        let w: Vec<u8> = rows.iter().flat_map(|(_, x16)| x16.clone()).collect();
                        let mut out = vec![f32::NAN; rows.len()];
                        crate::avx2_x16::dot_matrix(k, kind, &w, qs, d, sums, &mut out);
                        out
                    }
                    Level::Scalar => continue,
                };
                for (r, (g, t)) in got.iter().zip(&twins).enumerate() {
                    assert_eq!(g.to_bits(), t.to_bits(), "{}", what(r));
                }
            }
        }
    }
}

/// The AVX2 tiles on repacked rows where they lie (`avx2_tile::panel_x16`) against the same
/// rows packed into a panel (`panel_quant`): bitwise, for whole and partial last groups, odd
/// row counts, every token group size, with and without the prefetch ahead.
#[cfg(target_arch = "x86_64")]
#[test]
fn avx2_tiles_in_place_give_the_packed_bits() {
    use crate::avx2_tile::{panel_quant, panel_x16, x16_tails, TokenGroups};
    let Some(Level::Avx2(k)) = Level::new(Isa::Avx2) else {
        eprintln!("skip: AVX2 not available");
        return;
    };
    let mut rng = Rng(0x6a09e667f3bcc909);
    for (kind, _) in X16_KINDS {
        for nb in [16, 37, 64] {
            let n_cols = nb * 32;
            let ng = n_groups(n_cols);
            for np in [1, 2, 5] {
                let rows: Vec<u8> = (0..np)
                    .flat_map(|_| x16_rows(&mut rng, kind, nb, false).1)
                    .collect();
                let stride = rows.len() / np;
                let (mut q, mut d) = (vec![0u8; np * ng * 512], vec![0f32; np * ng * 16]);
                for (r, row) in rows.chunks_exact(stride).enumerate() {
                    let (qr, dr) = (
                        &mut q[r * ng * 512..][..ng * 512],
                        &mut d[r * ng * 16..][..ng * 16],
                    );
                    crate::qx16::pack_tiles_row(kind, row, qr, dr);
                }
                let tails = x16_tails(kind, &rows, stride);
                assert_eq!(tails.is_empty(), nb % 16 == 0);
                for nt in [4, 2, 1] {
                    let x = acts(&mut rng, nt * n_cols, false);
                    let act =
                        ActQ8::new(Level::Avx2(k), &x, nt, n_cols, ActLayout::Interleaved, None);
                    let groups = TokenGroups::new(&act);
                    let mut want = vec![vec![0f32; np]; nt];
                    let mut outs: Vec<&mut [f32]> = want.iter_mut().map(|o| &mut o[..]).collect();
                    let offset = kind.offset();
                    panel_quant(
                        k,
                        &q,
                        &d,
                        (ng * 512, ng * 16),
                        groups.group(0, nt),
                        &mut outs,
                        offset,
                    );
                    for ahead in [0, 16 << 10] {
                        let mut got = vec![vec![f32::NAN; np]; nt];
                        let mut outs: Vec<&mut [f32]> =
                            got.iter_mut().map(|o| &mut o[..]).collect();
                        panel_x16(
                            k,
                            kind,
                            &rows,
                            stride,
                            &tails,
                            ahead,
                            groups.group(0, nt),
                            &mut outs,
                        );
                        for (g, w) in got.iter().flatten().zip(want.iter().flatten()) {
                            assert_eq!(
                                g.to_bits(),
                                w.to_bits(),
                                "{kind:?} nb={nb} rows={np} tokens={nt}"
                            );
                        }
                    }
                }
            }
        }
    }
}
