//! Throughput of `matmul` on one weight shape, per weight type, instruction-set level and thread
//! count: decode (one token: GB/s of weights read) and prefill (many tokens: GFLOP/s).
//!
//! ```text
//! cargo run --release -p herd-kernels --example matvec -- \
//!     [--rows 2048] [--cols 5632] [--types q8_0,q4_0,f16,q4_k,...] [--isas scalar,avx2,avx512,amx] \
//!     [--threads 1,2] [--tokens 128] [--decode-mib 1024] [--reference] [--only decode|prefill]
//! ```
//!
//! Decode cycles through copies of the matrix filling `--decode-mib` so the weights come from
//! memory, not from the last-level cache; prefill reuses one matrix (it is compute-bound).
//! Figures are the median of several timed passes; machines shared with other work are noisy.

use std::time::{Duration, Instant};

use half::f16;
use kernels::{matmul_reference, matmul_with, Isa, WeightType, WeightView};

struct Args {
    rows: usize,
    cols: usize,
    types: Vec<WeightType>,
    isas: Vec<Isa>,
    threads: Vec<usize>,
    tokens: usize,
    decode_mib: usize,
    reference: bool,
    /// Run only `decode` or only `prefill`.
    only: Option<String>,
}

fn parse_type(s: &str) -> WeightType {
    match s.to_ascii_lowercase().as_str() {
        "f32" => WeightType::F32,
        "f16" => WeightType::F16,
        "bf16" => WeightType::BF16,
        "q8_0" => WeightType::Q8_0,
        "q4_0" => WeightType::Q4_0,
        "q4_0x16" => WeightType::Q4_0x16,
        "q8_0x16" => WeightType::Q8_0x16,
        "q4_kx16" => WeightType::Q4_Kx16,
        "q6_kx16" => WeightType::Q6_Kx16,
        "q2_k" => WeightType::Q2_K,
        "q3_k" => WeightType::Q3_K,
        "q4_k" => WeightType::Q4_K,
        "q5_k" => WeightType::Q5_K,
        "q6_k" => WeightType::Q6_K,
        _ => panic!("unknown weight type {s}"),
    }
}

fn parse_args() -> Args {
    let mut a = Args {
        rows: 2048,
        cols: 5632,
        types: vec![WeightType::Q8_0, WeightType::Q4_0, WeightType::F16],
        isas: Isa::ALL.into_iter().filter(|i| i.is_supported()).collect(),
        threads: vec![1, 2],
        tokens: 128,
        decode_mib: 1024,
        reference: false,
        only: None,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        if flag == "--reference" {
            a.reference = true;
            continue;
        }
        let v = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        let list = || v.split(',').map(str::trim).filter(|s| !s.is_empty());
        match flag.as_str() {
            "--rows" => a.rows = v.parse().unwrap(),
            "--cols" => a.cols = v.parse().unwrap(),
            "--types" => a.types = list().map(parse_type).collect(),
            "--isas" => a.isas = list().map(|s| Isa::from_name(s).expect("isa")).collect(),
            "--threads" => a.threads = list().map(|s| s.parse().unwrap()).collect(),
            "--tokens" => a.tokens = v.parse().unwrap(),
            "--decode-mib" => a.decode_mib = v.parse().unwrap(),
            "--only" => a.only = Some(v.clone()),
            _ => panic!("unknown flag {flag}"),
        }
    }
    a
}

/// xorshift64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn f32(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// A random matrix in `ty`'s layout (quantized blocks: random bytes, small random scales).
fn matrix(rng: &mut Rng, ty: WeightType, rows: usize, cols: usize) -> Vec<u8> {
    let n = rows * cols;
    let mut bytes = Vec::with_capacity(ty.row_bytes(cols) * rows);
    match ty {
        WeightType::F32 => (0..n).for_each(|_| bytes.extend((rng.f32() * 0.02).to_le_bytes())),
        WeightType::F16 | WeightType::BF16 => {
            for _ in 0..n {
                let x = rng.f32() * 0.02;
                bytes.extend(if ty == WeightType::F16 {
                    f16::from_f32(x).to_le_bytes()
                } else {
                    half::bf16::from_f32(x).to_le_bytes()
                });
            }
        }
        WeightType::Q4_0x16 | WeightType::Q8_0x16 | WeightType::Q4_Kx16 | WeightType::Q6_Kx16 => {
            let from = ty.stored();
            let stored = matrix(rng, from, rows, cols);
            let w = WeightView {
                ty: from,
                n_rows: rows,
                n_cols: cols,
                bytes: &stored,
            };
            bytes = kernels::repack(&w);
        }
        WeightType::Q8_0 | WeightType::Q4_0 => {
            let q = if ty == WeightType::Q4_0 { 16 } else { 32 };
            for _ in 0..n / 32 {
                bytes.extend(f16::from_f32(0.001 + rng.f32().abs() * 0.001).to_le_bytes());
                bytes.extend((0..q).map(|_| rng.next() as u8));
            }
        }
        _ => {
            // K-quants: random blocks with small f16 scales (ggml's block layouts).
            let scales: &[usize] = match ty {
                WeightType::Q2_K => &[80, 82],
                WeightType::Q3_K => &[108],
                WeightType::Q6_K => &[208],
                _ => &[0, 2],
            };
            for _ in 0..rows * (cols / 256) {
                let mut block: Vec<u8> = (0..ty.block_bytes()).map(|_| rng.next() as u8).collect();
                for &at in scales {
                    let d = f16::from_f32(0.001 + rng.f32().abs() * 0.001);
                    block[at..at + 2].copy_from_slice(&d.to_le_bytes());
                }
                bytes.extend(block);
            }
        }
    }
    bytes
}

/// Median of `samples`.
fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples[samples.len() / 2]
}

/// Runs `f` (after one warm-up) until `budget` has passed and at least `min` times; returns the
/// seconds of each run.
fn time_runs(min: usize, budget: Duration, mut f: impl FnMut()) -> Vec<f64> {
    f();
    let start = Instant::now();
    let mut runs = Vec::new();
    while runs.len() < min || start.elapsed() < budget {
        let t = Instant::now();
        f();
        runs.push(t.elapsed().as_secs_f64());
    }
    runs
}

type Mm = fn(Isa, &WeightView, &[f32], usize, &mut [f32]);

fn main() {
    let a = parse_args();
    let mut rng = Rng(0x9e3779b97f4a7c15);
    println!(
        "matrix {} x {}; decode GB/s of weights (median, {} MiB cycled), prefill {} tokens GFLOP/s (median)",
        a.rows, a.cols, a.decode_mib, a.tokens
    );
    println!(
        "{:<6} {:<9} {:>7} {:>10} {:>10}",
        "type", "kernels", "threads", "decode", "prefill"
    );
    let x1: Vec<f32> = (0..a.cols).map(|_| rng.f32()).collect();
    let xp: Vec<f32> = (0..a.cols * a.tokens).map(|_| rng.f32()).collect();
    let reference: Mm = |_, w, x, n, out| matmul_reference(w, x, n, out);
    for &ty in &a.types {
        let one = matrix(&mut rng, ty, a.rows, a.cols);
        let copies = ((a.decode_mib << 20) / one.len()).max(1);
        let many: Vec<Vec<u8>> = (0..copies).map(|_| one.clone()).collect();
        let mut variants: Vec<(String, Isa, Mm)> = a
            .isas
            .iter()
            .map(|&i| (i.name().to_string(), i, matmul_with as Mm))
            .collect();
        if a.reference {
            variants.push(("reference".into(), Isa::Scalar, reference));
        }
        for (name, isa, mm) in &variants {
            for &threads in &a.threads {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                pool.install(|| {
                    let view = |bytes| view(ty, a.rows, a.cols, bytes);
                    let mut out1 = vec![0f32; a.rows];
                    let (do_decode, do_prefill) = match a.only.as_deref() {
                        Some("decode") => (true, false),
                        Some("prefill") => (false, true),
                        _ => (true, true),
                    };
                    let mut gbs = f64::NAN;
                    let mut gflops = f64::NAN;
                    if do_decode {
                        let pass = time_runs(3, Duration::from_secs(2), || {
                            for m in &many {
                                mm(*isa, &view(m), &x1, 1, &mut out1);
                            }
                        });
                        gbs = median(
                            pass.iter()
                                .map(|s| (copies * one.len()) as f64 / s / 1e9)
                                .collect(),
                        );
                    }
                    if do_prefill {
                        let mut outp = vec![0f32; a.rows * a.tokens];
                        let runs = time_runs(3, Duration::from_secs(2), || {
                            mm(*isa, &view(&one), &xp, a.tokens, &mut outp);
                        });
                        let flops = 2.0 * (a.rows * a.cols * a.tokens) as f64;
                        gflops = median(runs.iter().map(|s| flops / s / 1e9).collect());
                    }
                    println!(
                        "{:<6} {:<9} {:>7} {:>10.2} {:>10.1}",
                        format!("{ty:?}"),
                        name,
                        threads,
                        gbs,
                        gflops
                    );
                });
            }
        }
    }
}

/// The matrix `bytes` as a `[rows, cols]` view.
fn view(ty: WeightType, n_rows: usize, n_cols: usize, bytes: &[u8]) -> WeightView<'_> {
    WeightView {
        ty,
        n_rows,
        n_cols,
        bytes,
    }
}
