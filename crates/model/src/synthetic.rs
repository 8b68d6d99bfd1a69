//! Random-weight models of real Llama shapes, built in memory (no file): for benchmarks, where
//! only the shapes and the stored types matter. Matrices are normal with standard deviation
//! 0.02, norms 1.0, as the random-weight GGUF files used for comparisons are.
//!
//! Each row is generated from its own seed and quantized at once into the matrix's bytes, in
//! parallel, so building needs only the stored size and the result does not depend on the
//! number of threads.

use std::path::PathBuf;

use rayon::prelude::*;

use kernels::{quantize_into, WeightType, K_QUANTIZE_TYPES, QK_K, QUANTIZE_TYPES};

use crate::{LayerWeights, Llama, LlamaConfig, ModelError, Result, RopeScaling, Weight};

/// Standard deviation of the random matrices.
const STD: f32 = 0.02;

/// A named model shape.
struct Shape {
    name: &'static str,
    dim: usize,
    hidden_dim: usize,
    n_layers: usize,
    n_heads: usize,
    n_kv_heads: usize,
    vocab_size: usize,
    max_seq_len: usize,
    rope_theta: f32,
    tied: bool,
}

#[rustfmt::skip]
const SHAPES: &[Shape] = &[
    Shape { name: "stories15m", dim: 288, hidden_dim: 768, n_layers: 6, n_heads: 6, n_kv_heads: 6, vocab_size: 32000, max_seq_len: 256, rope_theta: 10000.0, tied: true },
    Shape { name: "tinyllama-1.1b", dim: 2048, hidden_dim: 5632, n_layers: 22, n_heads: 32, n_kv_heads: 4, vocab_size: 32000, max_seq_len: 2048, rope_theta: 10000.0, tied: false },
    Shape { name: "llama2-7b", dim: 4096, hidden_dim: 11008, n_layers: 32, n_heads: 32, n_kv_heads: 32, vocab_size: 32000, max_seq_len: 4096, rope_theta: 10000.0, tied: false },
    Shape { name: "llama2-13b", dim: 5120, hidden_dim: 13824, n_layers: 40, n_heads: 40, n_kv_heads: 40, vocab_size: 32000, max_seq_len: 4096, rope_theta: 10000.0, tied: false },
    Shape { name: "llama3-8b", dim: 4096, hidden_dim: 14336, n_layers: 32, n_heads: 32, n_kv_heads: 8, vocab_size: 128256, max_seq_len: 8192, rope_theta: 500000.0, tied: false },
];

/// Names of the shapes [`synthetic`] builds.
pub fn synthetic_shapes() -> Vec<&'static str> {
    SHAPES.iter().map(|s| s.name).collect()
}

fn bad(field: &str, msg: String) -> ModelError {
    ModelError::BadConfig {
        file: PathBuf::from("synthetic model"),
        field: field.to_string(),
        msg,
    }
}

fn type_name(ty: WeightType) -> String {
    format!("{ty:?}").to_lowercase()
}

/// The types synthetic weights can be built in: every type `quantize_into` makes (the K-quants
/// only for shapes whose widths are whole 256-value super-blocks).
fn types() -> impl Iterator<Item = WeightType> {
    QUANTIZE_TYPES.iter().chain(K_QUANTIZE_TYPES).copied()
}

fn supported_types() -> String {
    let names: Vec<String> = types().map(type_name).collect();
    names.join(", ")
}

/// The weight type named `name` (`f32`, `f16`, `bf16`, `q8_0`, `q4_0`, `q2_k` ... `q6_k`; any
/// case) among those synthetic weights can be built in.
pub fn synthetic_type(name: &str) -> Result<WeightType> {
    types()
        .find(|&t| type_name(t) == name.to_lowercase())
        .ok_or_else(|| {
            bad(
                "type",
                format!(
                    "'{name}' is not a type synthetic weights are built in; supported: {}",
                    supported_types()
                ),
            )
        })
}

/// The configuration of the shape named `shape` (any case).
pub fn synthetic_config(shape: &str) -> Result<LlamaConfig> {
    let s = SHAPES
        .iter()
        .find(|s| s.name == shape.to_lowercase())
        .ok_or_else(|| {
            bad(
                "shape",
                format!(
                    "unknown shape '{shape}'; known shapes: {}",
                    synthetic_shapes().join(", ")
                ),
            )
        })?;
    Ok(LlamaConfig {
        dim: s.dim,
        n_layers: s.n_layers,
        n_heads: s.n_heads,
        n_kv_heads: s.n_kv_heads,
        head_dim: s.dim / s.n_heads,
        hidden_dim: s.hidden_dim,
        vocab_size: s.vocab_size,
        norm_eps: 1e-5,
        rope_theta: s.rope_theta,
        rope_scaling: RopeScaling::None,
        max_seq_len: s.max_seq_len,
        tied_embeddings: s.tied,
    })
}

/// A model of the named shape with random weights stored as `ty`; the same `seed` gives the
/// same weights.
pub fn synthetic(shape: &str, ty: WeightType, seed: u64) -> Result<Llama> {
    let c = synthetic_config(shape)?;
    if !types().any(|t| t == ty) {
        return Err(bad(
            "type",
            format!(
                "synthetic weights cannot be built in {ty:?}; supported: {}",
                supported_types()
            ),
        ));
    }
    let widths = [c.dim, c.q_dim(), c.hidden_dim];
    if ty.is_k_quant() && widths.iter().any(|w| !w.is_multiple_of(QK_K)) {
        return Err(bad(
            "type",
            format!(
                "{} rows of shape '{shape}' ({} and {} values) are not whole {QK_K}-value \
                 super-blocks",
                type_name(ty),
                c.dim,
                c.hidden_dim
            ),
        ));
    }
    fits(shape, ty, weight_bytes(&c, ty), formats::available_memory())?;
    let matrix =
        |id: u64, n_rows: usize, n_cols: usize| random_matrix(ty, n_rows, n_cols, mix(seed, id));
    let tok_embeddings = matrix(0, c.vocab_size, c.dim);
    let output = if c.tied_embeddings {
        tok_embeddings.clone()
    } else {
        matrix(1, c.vocab_size, c.dim)
    };
    let layers = (0..c.n_layers)
        .map(|l| {
            let id = |k: u64| 2 + 7 * l as u64 + k;
            LayerWeights {
                attn_norm: vec![1.0; c.dim],
                wq: matrix(id(0), c.q_dim(), c.dim),
                wk: matrix(id(1), c.kv_dim(), c.dim),
                wv: matrix(id(2), c.kv_dim(), c.dim),
                wo: matrix(id(3), c.dim, c.q_dim()),
                ffn_norm: vec![1.0; c.dim],
                w_gate: matrix(id(4), c.hidden_dim, c.dim),
                w_down: matrix(id(5), c.dim, c.hidden_dim),
                w_up: matrix(id(6), c.hidden_dim, c.dim),
            }
        })
        .collect();
    let output_norm = vec![1.0; c.dim];
    Ok(Llama::new(c, tok_embeddings, layers, output_norm, output))
}

const GIB: f64 = (1u64 << 30) as f64;

/// An error naming what is missing when `bytes` of weights need more than `available` memory
/// (the process would be killed part-way through filling them).
fn fits(shape: &str, ty: WeightType, bytes: u64, available: Option<u64>) -> Result<()> {
    match available {
        Some(avail) if bytes > avail => Err(bad(
            "shape",
            format!(
                "'{shape}' in {} needs {:.1} GiB for its weights; {:.1} GiB of memory is available",
                type_name(ty),
                bytes as f64 / GIB,
                avail as f64 / GIB
            ),
        )),
        _ => Ok(()),
    }
}

/// Bytes of the matrices [`synthetic`] builds for `c` in `ty` (norms aside).
fn weight_bytes(c: &LlamaConfig, ty: WeightType) -> u64 {
    let m = |n_rows: usize, n_cols: usize| (n_rows * ty.row_bytes(n_cols)) as u64;
    let embeddings = m(c.vocab_size, c.dim) * if c.tied_embeddings { 1 } else { 2 };
    let layer = 2 * m(c.q_dim(), c.dim) + 2 * m(c.kv_dim(), c.dim) + 3 * m(c.hidden_dim, c.dim);
    embeddings + c.n_layers as u64 * layer
}

/// `[n_rows, n_cols]` random values stored as `ty`, one row at a time per thread.
fn random_matrix(ty: WeightType, n_rows: usize, n_cols: usize, seed: u64) -> Weight {
    let row_bytes = ty.row_bytes(n_cols);
    let mut bytes = vec![0u8; n_rows * row_bytes];
    bytes.par_chunks_mut(row_bytes).enumerate().for_each_init(
        || vec![0f32; n_cols],
        |row, (r, dst)| {
            fill_normal(mix(seed, r as u64), row);
            quantize_into(ty, row, dst);
        },
    );
    Weight::from_owned(ty, n_rows, n_cols, bytes)
}

/// SplitMix64 of `a` combined with `b`: independent seeds for each tensor and row.
fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(0x632B_E59B_D9B4_E019);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fills `out` with N(0, STD²) values (Irwin–Hall: the sum of the four 16-bit uniforms of one
/// xorshift64* draw, centred and scaled), from four interleaved generators so the loop keeps
/// several draws in flight. The half-unit offset keeps every value non-zero.
fn fill_normal(seed: u64, out: &mut [f32]) {
    // Sum of four uniforms on 0..=65535: mean 131070, standard deviation 65536·sqrt(4/12).
    const MEAN: f32 = 131_069.5;
    const SCALE: f32 = STD / 37_837.23;
    let mut state: [u64; 4] = std::array::from_fn(|i| mix(seed, i as u64) | 1);
    for chunk in out.chunks_mut(4) {
        for (v, s) in chunk.iter_mut().zip(state.iter_mut()) {
            *s ^= *s >> 12;
            *s ^= *s << 25;
            *s ^= *s >> 27;
            let x = s.wrapping_mul(0x2545_F491_4F6C_DD1D);
            let sum = (x & 0xffff) + ((x >> 16) & 0xffff) + ((x >> 32) & 0xffff) + (x >> 48);
            *v = (sum as f32 - MEAN) * SCALE;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_values_have_the_asked_spread() {
        let mut x = vec![0f32; 100_000];
        fill_normal(7, &mut x);
        let n = x.len() as f64;
        let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        assert!(mean.abs() < 1e-3, "mean {mean}");
        assert!((var.sqrt() - 0.02).abs() < 5e-4, "std {}", var.sqrt());
        assert!(x.iter().all(|&v| v != 0.0));
    }

    #[test]
    fn builds_every_type_deterministically() {
        for &ty in QUANTIZE_TYPES {
            let a = synthetic("stories15m", ty, 1).unwrap();
            let b = synthetic("Stories15M", ty, 1).unwrap();
            assert_eq!(a.layers[0].wq.view().bytes, b.layers[0].wq.view().bytes);
            assert_eq!(a.layers[0].w_down.n_rows, 288);
            assert!(a.layers[5].w_up.view().bytes.iter().any(|&b| b != 0));
        }
        let c = synthetic("stories15m", WeightType::Q8_0, 2).unwrap();
        let a = synthetic("stories15m", WeightType::Q8_0, 1).unwrap();
        assert_ne!(a.layers[0].wq.view().bytes, c.layers[0].wq.view().bytes);
    }

    /// The size checked before building is the size built, and a model larger than the memory
    /// available is refused with both figures named.
    #[test]
    fn weights_that_do_not_fit_are_refused_before_building() {
        for ty in [WeightType::F32, WeightType::Q4_0] {
            let m = synthetic("stories15m", ty, 1).unwrap();
            let mut built = m.tok_embeddings.view().bytes.len() as u64;
            if !m.config.tied_embeddings {
                built += m.output.view().bytes.len() as u64;
            }
            for l in &m.layers {
                for w in [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_down, &l.w_up] {
                    built += w.view().bytes.len() as u64;
                }
            }
            assert_eq!(weight_bytes(&m.config, ty), built, "{ty:?}");
            assert!(fits("stories15m", ty, built, Some(built)).is_ok());
            assert!(fits("stories15m", ty, built, None).is_ok());
            let err = fits("stories15m", ty, built, Some(built - 1)).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("stories15m") && msg.contains("GiB"), "{msg}");
        }
        let c = synthetic_config("llama2-13b").unwrap();
        let gib = weight_bytes(&c, WeightType::F32) as f64 / GIB;
        assert!((48.0..49.0).contains(&gib), "13B in f32: {gib} GiB");
    }

    #[test]
    fn unknown_names_list_the_known_ones() {
        let e = synthetic_config("llama9").unwrap_err().to_string();
        assert!(e.contains("tinyllama-1.1b") && e.contains("llama9"), "{e}");
        let e = synthetic_type("q4_k_m").unwrap_err().to_string();
        assert!(e.contains("q8_0, q4_0") && e.contains("q4_k_m"), "{e}");
        assert_eq!(synthetic_type("Q4_0").unwrap(), WeightType::Q4_0);
        assert_eq!(synthetic_type("q6_k").unwrap(), WeightType::Q6_K);
        // K-quants need widths of whole super-blocks: stories15m's 288 is not.
        let e = synthetic("stories15m", WeightType::Q4_K, 1)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("288") && e.contains("super-blocks"), "{e}");
    }
}
