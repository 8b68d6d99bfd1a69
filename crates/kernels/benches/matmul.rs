//! Micro-benchmarks of `matmul` at TinyLlama-1.1B's weight shapes, for every weight type with
//! kernels of its own: one token (matvec, `Rows`: throughput in bytes of weights read) and 128
//! tokens (matmul, `Tiles`: throughput in multiply-adds).
//!
//! ```text
//! cargo bench -p herd-kernels --bench matmul [-- FILTER]
//! RAYON_NUM_THREADS=2 HERD_ISA=avx2 cargo bench -p herd-kernels --bench matmul -- q4_k
//! ```
//!
//! Threads come from rayon's global pool (`RAYON_NUM_THREADS`), kernels from `HERD_ISA`. The
//! matvec weights fit in the last-level cache of large server CPUs: for memory-bound decode
//! figures use the `matvec` example, which cycles through copies of the matrix.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
#[path = "../tests/support/random.rs"]
mod random;

use kernels::{matmul_path, MatmulPath, WeightType, WeightView};
use random::{Rng, MODEL_LIKE};

const TYPES: [WeightType; 17] = [
    WeightType::F32,
    WeightType::F16,
    WeightType::BF16,
    WeightType::Q8_0,
    WeightType::Q4_0,
    WeightType::Q4_0x16,
    WeightType::Q8_0x16,
    WeightType::Q2_K,
    WeightType::Q3_K,
    WeightType::Q4_K,
    WeightType::Q4_Kx16,
    WeightType::Q5_K,
    WeightType::Q6_K,
    WeightType::Q5_Kx16,
    WeightType::Q6_Kx16,
    WeightType::Q2_Kx16,
    WeightType::Q3_Kx16,
];

/// `(n_rows, n_cols)`: attention projections, MLP gate/up, MLP down.
const SHAPES: [(usize, usize); 3] = [(2048, 2048), (5632, 2048), (2048, 5632)];

/// Tokens of the matmul benchmarks.
const PREFILL_TOKENS: usize = 128;

fn name(ty: WeightType) -> String {
    format!("{ty:?}").to_ascii_lowercase()
}

fn bench_matvec(c: &mut Criterion) {
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let mut g = c.benchmark_group("matvec");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for ty in TYPES {
        for (n_rows, n_cols) in SHAPES {
            let bytes = random::matrix(&mut rng, ty, n_rows, n_cols, MODEL_LIKE);
            let w = WeightView {
                ty,
                n_rows,
                n_cols,
                bytes: &bytes,
            };
            let x: Vec<f32> = (0..n_cols).map(|_| rng.f32()).collect();
            let mut out = vec![0f32; n_rows];
            g.throughput(Throughput::Bytes(bytes.len() as u64));
            let id = BenchmarkId::new(name(ty), format!("{n_rows}x{n_cols}"));
            g.bench_with_input(id, &x, |b, x| {
                b.iter(|| matmul_path(MatmulPath::Rows, &w, x, 1, &mut out))
            });
        }
    }
    g.finish();
}

fn bench_matmul(c: &mut Criterion) {
    let mut rng = Rng(0x243f6a8885a308d3);
    let mut g = c.benchmark_group("matmul128");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for ty in TYPES {
        for (n_rows, n_cols) in SHAPES {
            let bytes = random::matrix(&mut rng, ty, n_rows, n_cols, MODEL_LIKE);
            let w = WeightView {
                ty,
                n_rows,
                n_cols,
                bytes: &bytes,
            };
            let x: Vec<f32> = (0..PREFILL_TOKENS * n_cols).map(|_| rng.f32()).collect();
            let mut out = vec![0f32; PREFILL_TOKENS * n_rows];
            // Multiply-adds; GFLOP/s is twice the reported Gelem/s.
            g.throughput(Throughput::Elements(
                (n_rows * n_cols * PREFILL_TOKENS) as u64,
            ));
            let id = BenchmarkId::new(name(ty), format!("{n_rows}x{n_cols}"));
            g.bench_with_input(id, &x, |b, x| {
                b.iter(|| matmul_path(MatmulPath::Tiles, &w, x, PREFILL_TOKENS, &mut out))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench_matvec, bench_matmul);
criterion_main!(benches);
