//! Throughput of `matmul` on one weight shape, per weight type, instruction-set level and thread
//! count: decode (one token: GB/s of weights read) and prefill (many tokens: GFLOP/s).
//!
//! ```text
//! cargo run --release -p herd-kernels --example matvec -- \
//!     [--rows 2048] [--cols 5632] [--types q8_0,q4_0,f16,q4_k,...] [--isas scalar,avx2,avx512,amx] \
//!     [--threads 1,2] [--tokens 128] [--decode-mib 1024] [--reference] [--tiles] [--by-rows]
//!     [--only decode|prefill]
//! ```
//!
//! `--tiles` adds, per level, the tile path for every call (as a server's steps take it), so
//! its one-token rate shows beside the row kernels'; `--by-rows` the row path for every call, so
//! a prompt's rate by rows shows beside the tiles'.
//!
//! Decode cycles through copies of the matrix filling `--decode-mib` so the weights come from
//! memory, not from the last-level cache; prefill reuses one matrix (it is compute-bound).
//! Figures are the median of several timed passes; machines shared with other work are noisy.

use std::time::{Duration, Instant};

#[path = "../tests/support/random.rs"]
mod random;

use kernels::{
    matmul_path_with, matmul_reference, matmul_with, Isa, MatmulPath, WeightType, WeightView,
};
use random::{view, Rng, MODEL_LIKE};

struct Args {
    rows: usize,
    cols: usize,
    types: Vec<WeightType>,
    isas: Vec<Isa>,
    threads: Vec<usize>,
    tokens: usize,
    decode_mib: usize,
    reference: bool,
    /// Also the tile path for every call, per level.
    tiles: bool,
    /// Also the row path for every call, per level.
    by_rows: bool,
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
        "q2_kx16" => WeightType::Q2_Kx16,
        "q3_kx16" => WeightType::Q3_Kx16,
        "q4_kx16" => WeightType::Q4_Kx16,
        "q5_kx16" => WeightType::Q5_Kx16,
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
        tiles: false,
        by_rows: false,
        only: None,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        if flag == "--tiles" {
            a.tiles = true;
            continue;
        }
        if flag == "--by-rows" {
            a.by_rows = true;
            continue;
        }
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
        let one = random::matrix(&mut rng, ty, a.rows, a.cols, MODEL_LIKE);
        let copies = ((a.decode_mib << 20) / one.len()).max(1);
        let many: Vec<Vec<u8>> = (0..copies).map(|_| one.clone()).collect();
        let mut variants: Vec<(String, Isa, Mm)> = a
            .isas
            .iter()
            .map(|&i| (i.name().to_string(), i, matmul_with as Mm))
            .collect();
        if a.tiles {
            let tiles: Mm = |i, w, x, n, out| matmul_path_with(i, MatmulPath::Tiles, w, x, n, out);
            for &i in &a.isas {
                variants.push((format!("{}-tiles", i.name()), i, tiles));
            }
        }
        if a.by_rows {
            let rows: Mm = |i, w, x, n, out| matmul_path_with(i, MatmulPath::Rows, w, x, n, out);
            for &i in &a.isas {
                variants.push((format!("{}-rows", i.name()), i, rows));
            }
        }
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
