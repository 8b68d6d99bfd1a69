//! The batch-invariance contract of `matmul` (see `matmul.rs`): for a fixed instruction-set
//! level, path and weight type, `out[t, r]` is bitwise a function of weight row `r` and
//! activation row `t` only — whatever the number of tokens in the call (1..=40 here, across tile,
//! panel, column-block and thread-chunk edges), the token's position among them, and the number
//! of threads (rayon pools of 1 and 3). Where `MatmulPath::interchangeable` says so, the two
//! paths agree bitwise too.

#[path = "support/random.rs"]
mod random;

use kernels::{matmul_path_with, Isa, MatmulPath, WeightType, WeightView};
use random::{view, Rng, UNIT_RANGE};

/// A random matrix of `ty` with values of order one.
fn matrix(rng: &mut Rng, ty: WeightType, n_rows: usize, n_cols: usize) -> Vec<u8> {
    random::matrix(rng, ty, n_rows, n_cols, UNIT_RANGE)
}

const TYPES: [WeightType; 17] = [
    WeightType::F32,
    WeightType::F16,
    WeightType::BF16,
    WeightType::Q8_0,
    WeightType::Q4_0,
    WeightType::Q4_0x16,
    WeightType::Q8_0x16,
    WeightType::Q2_K,
    WeightType::Q2_Kx16,
    WeightType::Q3_K,
    WeightType::Q3_Kx16,
    WeightType::Q4_K,
    WeightType::Q4_Kx16,
    WeightType::Q5_K,
    WeightType::Q5_Kx16,
    WeightType::Q6_K,
    WeightType::Q6_Kx16,
];

const PATHS: [MatmulPath; 3] = [MatmulPath::Rows, MatmulPath::Tiles, MatmulPath::Bulk];

/// Most tokens in one call.
const MAX_TOKENS: usize = 40;

/// Columns per type: past the float kernels' 1024-column blocks and their padding to 16, past a
/// group of 16 Q8_0 blocks, three K-quant super-blocks.
fn n_cols(ty: WeightType) -> usize {
    match ty {
        WeightType::F32 | WeightType::F16 | WeightType::BF16 => 1100,
        WeightType::Q8_0 | WeightType::Q8_0x16 | WeightType::Q4_0 | WeightType::Q4_0x16 => 17 * 32,
        _ => 3 * 256,
    }
}

/// `n` rows, or the next whole number of groups for a type whose rows go in groups of 16.
fn rows_of(ty: WeightType, n: usize) -> usize {
    if ty.is_grouped() {
        n.next_multiple_of(16)
    } else {
        n
    }
}

fn supported() -> Vec<Isa> {
    Isa::ALL.into_iter().filter(|i| i.is_supported()).collect()
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool")
}

/// `matmul_path_with` on tokens `t0..t0 + n` of `x`.
fn run(isa: Isa, path: MatmulPath, w: &WeightView, x: &[f32], t0: usize, n: usize) -> Vec<f32> {
    let k = w.n_cols;
    let mut out = vec![f32::NAN; n * w.n_rows];
    matmul_path_with(isa, path, w, &x[t0 * k..(t0 + n) * k], n, &mut out);
    out
}

/// Each token of `x` alone: `[n_tokens][n_rows]`.
fn singles(isa: Isa, path: MatmulPath, w: &WeightView, x: &[f32], n_tokens: usize) -> Vec<f32> {
    (0..n_tokens)
        .flat_map(|t| run(isa, path, w, x, t, 1))
        .collect()
}

/// Tokens `t0..t0 + n` of a batch against the same tokens alone, bitwise.
fn assert_same(batch: &[f32], alone: &[f32], n_rows: usize, t0: usize, what: &str) {
    for (i, got) in batch.chunks_exact(n_rows).enumerate() {
        let want = &alone[(t0 + i) * n_rows..][..n_rows];
        for (r, (g, w)) in got.iter().zip(want).enumerate() {
            assert_eq!(
                g.to_bits(),
                w.to_bits(),
                "{what}: token {} (position {i}), row {r}: {g} batched vs {w} alone",
                t0 + i
            );
        }
    }
}

#[test]
fn outputs_do_not_depend_on_the_batch() {
    let mut rng = Rng(0x6a09e667f3bcc908);
    let one = pool(1);
    for ty in TYPES {
        let n_rows = rows_of(ty, 35); // odd: edge tiles of one row at every tile height
        let k = n_cols(ty);
        let bytes = matrix(&mut rng, ty, n_rows, k);
        let w = view(ty, n_rows, k, &bytes);
        let x: Vec<f32> = (0..MAX_TOKENS * k).map(|_| rng.f32() * 2.0).collect();
        for isa in supported() {
            for path in PATHS {
                one.install(|| {
                    let alone = singles(isa, path, &w, &x, MAX_TOKENS);
                    for n in 1..=MAX_TOKENS {
                        // A different position in the batch for the same token as n changes.
                        let t0 = (n * 7) % (MAX_TOKENS + 1 - n);
                        let batch = run(isa, path, &w, &x, t0, n);
                        let what = format!("{isa} {path:?} {ty:?}, {n} tokens from {t0}");
                        assert_same(&batch, &alone, n_rows, t0, &what);
                    }
                });
            }
        }
    }
}

#[test]
fn outputs_do_not_depend_on_the_threads() {
    let mut rng = Rng(0xbb67ae8584caa73b);
    // Enough rows for several chunks per thread count and, in one chunk, more than one panel
    // of every kind.
    let n_tokens = 17;
    let (one, three) = (pool(1), pool(3));
    for ty in TYPES {
        let n_rows = rows_of(ty, 1100);
        let k = n_cols(ty);
        let bytes = matrix(&mut rng, ty, n_rows, k);
        let w = view(ty, n_rows, k, &bytes);
        let x: Vec<f32> = (0..n_tokens * k).map(|_| rng.f32()).collect();
        for isa in supported() {
            for path in PATHS {
                let alone = one.install(|| singles(isa, path, &w, &x, n_tokens));
                for (threads, p) in [(1, &one), (3, &three)] {
                    for (t0, n) in [(5, 1), (2, 4), (0, n_tokens)] {
                        let batch = p.install(|| run(isa, path, &w, &x, t0, n));
                        let what = format!("{isa} {path:?} {ty:?}, {threads} threads, {n} tokens");
                        assert_same(&batch, &alone, n_rows, t0, &what);
                    }
                }
            }
        }
    }
}

/// A random `[n_rows, k]` matrix of `ty` against `n_tokens` random rows: at every level where
/// the two paths are interchangeable, the tiles give the row kernels' bits.
fn tiles_match_rows(rng: &mut Rng, ty: WeightType, n_rows: usize, k: usize, n_tokens: usize) {
    let bytes = matrix(rng, ty, n_rows, k);
    let w = view(ty, n_rows, k, &bytes);
    let x: Vec<f32> = (0..n_tokens * k).map(|_| rng.f32()).collect();
    for isa in supported() {
        if !MatmulPath::interchangeable(isa, ty) {
            continue;
        }
        let rows = run(isa, MatmulPath::Rows, &w, &x, 0, n_tokens);
        let tiles = run(isa, MatmulPath::Tiles, &w, &x, 0, n_tokens);
        let what = format!("{isa} {ty:?} {k} columns, Tiles vs Rows");
        assert_same(&tiles, &rows, n_rows, 0, &what);
    }
}

/// Rows long enough that the AVX-512 tiles take them in blocks of groups (Llama-2-7B's down
/// projection has 11008 columns): the tiles still give the row kernels' bits.
#[test]
fn long_rows_agree_bitwise() {
    let mut rng = Rng(0xbb67ae8584caa73b);
    let k = 215 * 32; // 13 whole groups and a part-filled one
    for ty in [
        WeightType::Q4_0,
        WeightType::Q8_0,
        WeightType::Q4_0x16,
        WeightType::Q8_0x16,
    ] {
        tiles_match_rows(&mut rng, ty, rows_of(ty, 21), k, 7);
    }
}

#[test]
fn interchangeable_paths_agree_bitwise() {
    let mut rng = Rng(0x3c6ef372fe94f82b);
    for ty in TYPES {
        tiles_match_rows(&mut rng, ty, rows_of(ty, 35), n_cols(ty), 9);
    }
    assert!(MatmulPath::interchangeable(Isa::Scalar, WeightType::F32));
    assert!(MatmulPath::interchangeable(
        Isa::Avx512,
        WeightType::Q4_0x16
    ));
    assert!(MatmulPath::interchangeable(
        Isa::Avx512,
        WeightType::Q8_0x16
    ));
    assert!(MatmulPath::interchangeable(Isa::Avx2, WeightType::Q4_0x16));
    // The AMX level's row and tile paths take the AVX-512 kernels.
    assert!(MatmulPath::interchangeable(Isa::Amx, WeightType::Q8_0x16));
    assert!(!MatmulPath::interchangeable(Isa::Avx2, WeightType::Q4_0));
    assert_eq!(MatmulPath::auto(1), MatmulPath::Rows);
    assert_eq!(MatmulPath::auto(2), MatmulPath::Tiles);
    assert_eq!(
        MatmulPath::auto(kernels::BULK_TOKENS - 1),
        MatmulPath::Tiles
    );
    assert_eq!(MatmulPath::auto(kernels::BULK_TOKENS), MatmulPath::Bulk);
    // Q8_0's tiles hold on longer (rows of whole groups of 16 blocks: 2048 values).
    let q8 = kernels::BULK_TOKENS_Q8_0;
    assert!(q8 > kernels::BULK_TOKENS);
    assert_eq!(
        MatmulPath::auto_for(q8 - 1, WeightType::Q8_0x16, 2048),
        MatmulPath::Tiles
    );
    assert_eq!(
        MatmulPath::auto_for(q8 - 1, WeightType::Q8_0, 2048),
        MatmulPath::Tiles
    );
    assert_eq!(
        MatmulPath::auto_for(q8, WeightType::Q8_0, 2048),
        MatmulPath::Bulk
    );
    assert_eq!(
        MatmulPath::auto_for(kernels::BULK_TOKENS, WeightType::Q4_0x16, 2048),
        MatmulPath::Bulk
    );
    // Rows that fill less than three quarters of their groups (288 values: 9 blocks of 16;
    // 768: 24 of 32 is three quarters) go to the bulk tiles sooner.
    let (short, short_q8) = (kernels::BULK_TOKENS_SHORT, kernels::BULK_TOKENS_SHORT_Q8_0);
    assert!(short < kernels::BULK_TOKENS && short_q8 < q8);
    for ty in [WeightType::Q4_0, WeightType::Q4_0x16] {
        assert_eq!(MatmulPath::auto_for(short - 1, ty, 288), MatmulPath::Tiles);
        assert_eq!(MatmulPath::auto_for(short, ty, 288), MatmulPath::Bulk);
        assert_eq!(MatmulPath::auto_for(short, ty, 768), MatmulPath::Tiles);
        assert_eq!(MatmulPath::auto_for(short, ty, 5632), MatmulPath::Tiles);
    }
    for ty in [WeightType::Q8_0, WeightType::Q8_0x16] {
        assert_eq!(
            MatmulPath::auto_for(short_q8 - 1, ty, 288),
            MatmulPath::Tiles
        );
        assert_eq!(MatmulPath::auto_for(short_q8, ty, 288), MatmulPath::Bulk);
        assert_eq!(MatmulPath::auto_for(short_q8, ty, 768), MatmulPath::Tiles);
    }
    // Float weights take the row path for a few tokens at the AVX-512 and AMX levels, and at
    // AVX2.
    let rows_float = kernels::isa() >= kernels::Isa::Avx512;
    let most = kernels::ROWS_FLOAT_TOKENS.max(kernels::ROWS_FLOAT_TOKENS_AVX2);
    for n in 2..=most + 1 {
        for ty in [WeightType::F32, WeightType::F16, WeightType::BF16] {
            let rows_avx2 =
                kernels::isa() == kernels::Isa::Avx2 && n <= kernels::ROWS_FLOAT_TOKENS_AVX2;
            let rows_float = rows_float && n <= kernels::ROWS_FLOAT_TOKENS;
            let want = if rows_float || rows_avx2 {
                MatmulPath::Rows
            } else {
                MatmulPath::Tiles
            };
            assert_eq!(MatmulPath::auto_for(n, ty, 2048), want, "{ty:?} {n}");
        }
    }
    assert_eq!(
        MatmulPath::auto_for(most + 1, WeightType::F16, 2048),
        MatmulPath::Tiles
    );
    // Other types keep BULK_TOKENS whatever their rows.
    assert_eq!(
        MatmulPath::auto_for(short, WeightType::Q4_K, 256),
        MatmulPath::Tiles
    );
    assert_eq!(
        MatmulPath::auto_for(1, WeightType::Q8_0, 288),
        MatmulPath::Rows
    );
}

#[test]
fn products_sharing_a_section_equal_each_alone() {
    use kernels::matmul_many_with;
    let mut rng = Rng(0xa54ff53a5f1d36f1);
    let k = 3 * 256; // valid for every type
    let sets: [[WeightType; 3]; 7] = [
        [WeightType::Q4_0, WeightType::Q4_0, WeightType::Q8_0],
        [WeightType::Q4_0x16, WeightType::Q8_0x16, WeightType::Q4_0],
        [WeightType::Q4_K, WeightType::Q4_K, WeightType::Q6_K],
        [WeightType::Q4_Kx16, WeightType::Q4_K, WeightType::Q6_Kx16],
        [WeightType::F16, WeightType::BF16, WeightType::F32],
        [WeightType::Q8_0, WeightType::Q5_K, WeightType::F16],
        [WeightType::Q3_Kx16, WeightType::Q2_Kx16, WeightType::Q3_K],
    ];
    let three = pool(3);
    for types in sets {
        let rows: Vec<usize> = types
            .iter()
            .zip([300, 37, 1])
            .map(|(&t, n)| rows_of(t, n))
            .collect();
        let bytes: Vec<Vec<u8>> = types
            .iter()
            .zip(&rows)
            .map(|(&ty, &n)| matrix(&mut rng, ty, n, k))
            .collect();
        let ws: Vec<WeightView> = types
            .iter()
            .zip(&rows)
            .zip(&bytes)
            .map(|((&ty, &n_rows), b)| view(ty, n_rows, k, b))
            .collect();
        for n_tokens in [1, 5] {
            let x: Vec<f32> = (0..n_tokens * k).map(|_| rng.f32()).collect();
            for isa in supported() {
                for path in PATHS {
                    let mut outs: Vec<Vec<f32>> =
                        rows.iter().map(|&n| vec![f32::NAN; n * n_tokens]).collect();
                    let mut refs: Vec<&mut [f32]> =
                        outs.iter_mut().map(|o| o.as_mut_slice()).collect();
                    three.install(|| matmul_many_with(isa, path, &ws, &x, n_tokens, &mut refs));
                    for (w, got) in ws.iter().zip(&outs) {
                        let alone = run(isa, path, w, &x, 0, n_tokens);
                        let what = format!("{isa} {path:?} {:?} among {types:?}", w.ty);
                        assert_same(got, &alone, w.n_rows, 0, &what);
                    }
                }
            }
        }
    }
}

/// Repacking (`kernels::repack`) changes no tile result at any level (Q4_0 / Q8_0: the panels
/// are the same bytes; K-quants: rows are turned back into their stored blocks), nor for Q4_0
/// and Q8_0 any result at the scalar level (blocks summed in the same order). Token counts in
/// each of the AVX-512 tiles' ways of reading repacked rows from memory (first pass streamed,
/// tile by tile, next panel prefetched), with an edge row.
#[test]
fn repacked_matrices_give_the_stored_results() {
    for n_tokens in [5, 13, 22] {
        repacked_matches_stored(n_tokens);
    }
}

fn repacked_matches_stored(n_tokens: usize) {
    let mut rng = Rng(0x510e527fade682d1);
    let cases = [
        (WeightType::Q4_0, WeightType::Q4_0x16, 37, 23 * 32),
        (WeightType::Q8_0, WeightType::Q8_0x16, 37, 23 * 32),
        (WeightType::Q4_K, WeightType::Q4_Kx16, 48, 5 * 256),
        (WeightType::Q5_K, WeightType::Q5_Kx16, 16, 2 * 256),
        (WeightType::Q6_K, WeightType::Q6_Kx16, 32, 3 * 256),
        (WeightType::Q3_K, WeightType::Q3_Kx16, 32, 3 * 256),
        (WeightType::Q2_K, WeightType::Q2_Kx16, 16, 2 * 256),
    ];
    for (ty, repacked, n_rows, k) in cases {
        let stored = matrix(&mut rng, ty, n_rows, k);
        let w = view(ty, n_rows, k, &stored);
        let bytes = kernels::repack(&w);
        let r = WeightView {
            ty: repacked,
            bytes: &bytes,
            ..w
        };
        let x: Vec<f32> = (0..n_tokens * k).map(|_| rng.f32()).collect();
        for isa in supported() {
            for path in PATHS {
                // Repacked rows have a row kernel of their own (K-quants: at every level).
                let same_rows =
                    isa == Isa::Scalar && matches!(ty, WeightType::Q4_0 | WeightType::Q8_0);
                if (path == MatmulPath::Rows || isa == Isa::Scalar) && !same_rows {
                    continue;
                }
                let want = run(isa, path, &w, &x, 0, n_tokens);
                let got = run(isa, path, &r, &x, 0, n_tokens);
                let what = format!("{isa} {path:?} {repacked:?}, {n_tokens} tokens");
                assert_same(&got, &want, n_rows, 0, &what);
            }
        }
    }
}

/// Float weights by tiles: a call of a few tokens multiplies the stored rows in registers, a
/// call of more packs panels; every token of a few-token call gets the bits it gets in a larger
/// one, at widths around the kernels' blocks of 8, 16, 128 and 1024 columns and heights around
/// their groups of 8, 16 and 32 rows.
#[test]
fn few_token_float_tiles_match_panels() {
    let mut rng = Rng(0x510e527fade682d1);
    let one = pool(1);
    for ty in [WeightType::F32, WeightType::F16, WeightType::BF16] {
        for (n_rows, k) in [
            (1, 1),
            (15, 7),
            (16, 16),
            (17, 100),
            (33, 128),
            (40, 129),
            (70, 1031),
            (9, 2100),
        ] {
            let bytes = matrix(&mut rng, ty, n_rows, k);
            let w = view(ty, n_rows, k, &bytes);
            let n_tokens = 8;
            let x: Vec<f32> = (0..n_tokens * k).map(|_| rng.f32() * 2.0).collect();
            for isa in supported() {
                one.install(|| {
                    let panels = run(isa, MatmulPath::Tiles, &w, &x, 0, n_tokens);
                    for n in 1..=6 {
                        let t0 = n_tokens - n;
                        let few = run(isa, MatmulPath::Tiles, &w, &x, t0, n);
                        let what = format!("{isa} {ty:?} {n_rows}x{k}, {n} tokens");
                        assert_same(&few, &panels, n_rows, t0, &what);
                    }
                });
            }
        }
    }
}
