//! Writing any model herd loads as a GGUF file of a chosen weight type, the way llama.cpp's
//! `llama-quantize` lays one out: `llama.*` hyperparameters, the tokenizer as `tokenizer.ggml.*`
//! keys, tensors under GGUF names with Q/K rows interleaved, norms in F32, and for the mixed
//! types (`q4_k_m`, ...) llama.cpp's per-tensor choices (output in Q6_K, more bits for some
//! `attn_v` / `ffn_down` layers).
//!
//! Q4_0 blocks get least-squares fitted scales with each column's error weighted by the mean
//! square of the input it meets, estimated from the weights alone (`importance.rs`); the
//! other types are byte-identical to ggml's reference quantizers.
//!
//! Tensors are converted and written one at a time (the destination is `OUT.tmp`, renamed at
//! the end), so memory holds the loaded model's mapping plus one tensor.

use std::io::BufWriter;
use std::path::{Path, PathBuf};

use formats::gguf::{GgufFile, Value};
use formats::gguf_write::{GgufWriter, TensorSpec};
use formats::DType;
use kernels::WeightType;
use model::{Llama, LlamaConfig, RopeScaling, Weight};
use tokenizer::{BpeTokenizer, PreTokenizer, SpmTokenizer, TokenKind};

use crate::importance;
use crate::load::{load_model, read_prefix, ModelFormat};
use crate::{EngineError, Result};

/// What `herd quantize --type` accepts: one weight type for every matrix, or one of
/// llama.cpp's mixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantType {
    F32,
    F16,
    BF16,
    Q8_0,
    Q4_0,
    /// Every matrix Q3_K / Q4_K / Q5_K (no per-tensor rules).
    Q3K,
    Q4K,
    Q5K,
    /// llama.cpp's Q6_K: output and every matrix Q6_K.
    Q6K,
    /// llama.cpp's mixes.
    Q2KMix,
    Q3KM,
    Q4KS,
    Q4KM,
    Q5KS,
    Q5KM,
}

/// The `--type` names, in the order help lists them.
pub const QUANT_TYPE_NAMES: &[(&str, QuantType)] = &[
    ("f32", QuantType::F32),
    ("f16", QuantType::F16),
    ("bf16", QuantType::BF16),
    ("q8_0", QuantType::Q8_0),
    ("q4_0", QuantType::Q4_0),
    ("q6_k", QuantType::Q6K),
    ("q5_k", QuantType::Q5K),
    ("q4_k", QuantType::Q4K),
    ("q3_k", QuantType::Q3K),
    ("q5_k_m", QuantType::Q5KM),
    ("q5_k_s", QuantType::Q5KS),
    ("q4_k_m", QuantType::Q4KM),
    ("q4_k_s", QuantType::Q4KS),
    ("q3_k_m", QuantType::Q3KM),
    ("q2_k", QuantType::Q2KMix),
];

impl QuantType {
    /// The type named `name` (case-insensitive), or an error listing the names.
    pub fn parse(name: &str) -> Result<QuantType> {
        let lower = name.to_ascii_lowercase();
        QUANT_TYPE_NAMES
            .iter()
            .find(|(n, _)| *n == lower)
            .map(|&(_, t)| t)
            .ok_or_else(|| {
                let names: Vec<&str> = QUANT_TYPE_NAMES.iter().map(|(n, _)| *n).collect();
                EngineError::Invalid(format!(
                    "unknown quantization type '{name}'; known: {}",
                    names.join(", ")
                ))
            })
    }

    /// The name `parse` accepts.
    pub fn name(self) -> &'static str {
        QUANT_TYPE_NAMES
            .iter()
            .find(|(_, t)| *t == self)
            .map_or("?", |(n, _)| n)
    }

    /// The type of matrices no rule singles out.
    pub fn base(self) -> WeightType {
        match self {
            QuantType::F32 => WeightType::F32,
            QuantType::F16 => WeightType::F16,
            QuantType::BF16 => WeightType::BF16,
            QuantType::Q8_0 => WeightType::Q8_0,
            QuantType::Q4_0 => WeightType::Q4_0,
            QuantType::Q2KMix => WeightType::Q2_K,
            QuantType::Q3K | QuantType::Q3KM => WeightType::Q3_K,
            QuantType::Q4K | QuantType::Q4KS | QuantType::Q4KM => WeightType::Q4_K,
            QuantType::Q5K | QuantType::Q5KS | QuantType::Q5KM => WeightType::Q5_K,
            QuantType::Q6K => WeightType::Q6_K,
        }
    }

    /// `general.file_type` in llama.cpp's `llama_ftype` numbering. The single-type K-quants
    /// take the number of their "_S" mix, the closest in content.
    pub fn file_type(self) -> u32 {
        match self {
            QuantType::F32 => 0,
            QuantType::F16 => 1,
            QuantType::Q4_0 => 2,
            QuantType::Q8_0 => 7,
            QuantType::Q2KMix => 10,
            QuantType::Q3K => 11,
            QuantType::Q3KM => 12,
            QuantType::Q4K | QuantType::Q4KS => 14,
            QuantType::Q4KM => 15,
            QuantType::Q5K | QuantType::Q5KS => 16,
            QuantType::Q5KM => 17,
            QuantType::Q6K => 18,
            QuantType::BF16 => 32,
        }
    }

    fn is_float(self) -> bool {
        matches!(self, QuantType::F32 | QuantType::F16 | QuantType::BF16)
    }

    /// Whether llama.cpp's per-tensor rules apply (every quantized type but the plain
    /// single-type K-quants).
    fn has_rules(self) -> bool {
        !self.is_float() && !matches!(self, QuantType::Q3K | QuantType::Q4K | QuantType::Q5K)
    }
}

/// One matrix of the output: GGUF name, shape `[rows, cols]`, the type written.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub ty: WeightType,
}

/// What [`quantize`] reports while it works.
#[derive(Debug, Clone, PartialEq)]
pub enum QuantizeEvent {
    /// The plan is made: tensors to write and the bytes of their data in total.
    Start { n_tensors: usize, total_bytes: u64 },
    /// A notice worth a log line (a fallback type, a missing tokenizer).
    Note(String),
    /// Tensor `index` (`name`, `bytes` of output) is written.
    Wrote {
        index: usize,
        name: String,
        ty: WeightType,
        bytes: u64,
    },
}

/// The outcome of [`quantize`].
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizeReport {
    pub format: ModelFormat,
    pub tensors: Vec<PlannedTensor>,
    /// Bytes of the output file.
    pub file_bytes: u64,
    /// Whether tokenizer keys were written.
    pub has_tokenizer: bool,
}

/// What a tensor holds for the type rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    TokenEmbd,
    Output,
    AttnQ,
    AttnK,
    AttnV,
    AttnOutput,
    FfnGate,
    FfnDown,
    FfnUp,
    Vector,
}

/// llama.cpp's `use_more_bits`: the first and last eighth of the layers and every third one
/// between.
fn use_more_bits(i: usize, n: usize) -> bool {
    let (i, n) = (i as i64, n as i64);
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

fn ggml_name(t: WeightType) -> &'static str {
    match t {
        WeightType::F32 => "F32",
        WeightType::F16 => "F16",
        WeightType::BF16 => "BF16",
        WeightType::Q8_0 | WeightType::Q8_0x16 => "Q8_0",
        // Repacked layouts live in memory only (never a target here); their file types are
        // the stored ones.
        WeightType::Q4_0 | WeightType::Q4_0x16 => "Q4_0",
        WeightType::Q2_K | WeightType::Q2_Kx16 => "Q2_K",
        WeightType::Q3_K | WeightType::Q3_Kx16 => "Q3_K",
        WeightType::Q4_K | WeightType::Q4_Kx16 => "Q4_K",
        WeightType::Q5_K | WeightType::Q5_Kx16 => "Q5_K",
        WeightType::Q6_K | WeightType::Q6_Kx16 => "Q6_K",
    }
}

/// The type of one tensor under `q`, following llama.cpp's `llama_tensor_get_type` for the
/// Llama architecture, then its fallback for rows that are not whole blocks. Returns the type
/// and, for a fallback, the line saying so.
fn tensor_type(
    q: QuantType,
    kind: Kind,
    layer: usize,
    c: &LlamaConfig,
    name: &str,
    n_cols: usize,
) -> (WeightType, Option<String>) {
    if kind == Kind::Vector {
        return (WeightType::F32, None);
    }
    let base = q.base();
    let mut t = base;
    let n = c.n_layers;
    let n_gqa = c.n_heads / c.n_kv_heads.max(1);
    let is_70b = n == 80;
    // A tied embedding is quantized as the output matrix.
    let is_output = kind == Kind::Output || (kind == Kind::TokenEmbd && c.tied_embeddings);
    if q.has_rules() {
        if is_output {
            if !n_cols.is_multiple_of(base.block_elems()) || !n_cols.is_multiple_of(kernels::QK_K) {
                t = WeightType::Q8_0;
            } else if base != WeightType::Q8_0 {
                t = WeightType::Q6_K;
            }
        } else {
            match kind {
                Kind::AttnV => {
                    t = match q {
                        QuantType::Q2KMix if n_gqa >= 4 => WeightType::Q4_K,
                        QuantType::Q2KMix => WeightType::Q3_K,
                        QuantType::Q3KM if layer < 2 => WeightType::Q5_K,
                        QuantType::Q3KM => WeightType::Q4_K,
                        QuantType::Q4KM | QuantType::Q5KM if use_more_bits(layer, n) => {
                            WeightType::Q6_K
                        }
                        QuantType::Q4KS if layer < 4 => WeightType::Q5_K,
                        _ => t,
                    };
                    if is_70b && matches!(t, WeightType::Q3_K | WeightType::Q4_K) {
                        t = WeightType::Q5_K;
                    }
                }
                Kind::FfnDown => {
                    t = match q {
                        QuantType::Q2KMix => WeightType::Q3_K,
                        QuantType::Q3KM if layer < n / 16 => WeightType::Q5_K,
                        QuantType::Q3KM => WeightType::Q4_K,
                        QuantType::Q4KM | QuantType::Q5KM if use_more_bits(layer, n) => {
                            WeightType::Q6_K
                        }
                        QuantType::Q4KS if layer < n / 8 => WeightType::Q5_K,
                        _ => t,
                    };
                }
                Kind::AttnOutput => {
                    t = match q {
                        QuantType::Q2KMix => WeightType::Q3_K,
                        QuantType::Q3KM => WeightType::Q4_K,
                        _ => t,
                    };
                }
                _ => {}
            }
        }
    }
    if n_cols.is_multiple_of(t.block_elems()) {
        return (t, None);
    }
    // llama.cpp's fallbacks are IQ4_NL (for Q2_K, Q3_K), Q5_0 (Q4_K), Q5_1 (Q5_K) and Q8_0
    // (Q6_K), all blocks of 32, else F16. herd writes none of IQ4_NL, Q5_0 and Q5_1, so it
    // takes Q4_0 for the 4-bit one and Q8_0 for the 5-bit ones; Q8_0 and Q4_0 rows that are
    // not whole blocks of 32 (an error in llama.cpp) go to F16 as its last resort does.
    let (cpp, fallback) = match t {
        WeightType::Q2_K | WeightType::Q3_K => ("IQ4_NL", WeightType::Q4_0),
        WeightType::Q4_K => ("Q5_0", WeightType::Q8_0),
        WeightType::Q5_K => ("Q5_1", WeightType::Q8_0),
        WeightType::Q6_K => ("Q8_0", WeightType::Q8_0),
        _ => ("F16", WeightType::F16),
    };
    let fallback = if n_cols.is_multiple_of(fallback.block_elems()) {
        fallback
    } else {
        WeightType::F16
    };
    let cpp = if matches!(t, WeightType::Q8_0 | WeightType::Q4_0) {
        "llama.cpp stops with an error here".to_string()
    } else if n_cols.is_multiple_of(32) {
        format!("llama.cpp: {cpp}")
    } else {
        "llama.cpp: F16".to_string()
    };
    let note = format!(
        "{name}: rows of {n_cols} values are not whole {} blocks of {}; using {} ({cpp})",
        ggml_name(t),
        t.block_elems(),
        ggml_name(fallback),
    );
    (fallback, Some(note))
}

fn dtype_of(t: WeightType) -> DType {
    match t {
        WeightType::F32 => DType::F32,
        WeightType::F16 => DType::F16,
        WeightType::BF16 => DType::BF16,
        WeightType::Q8_0 | WeightType::Q8_0x16 => DType::Q8_0,
        WeightType::Q4_0 | WeightType::Q4_0x16 => DType::Q4_0,
        WeightType::Q2_K | WeightType::Q2_Kx16 => DType::Q2_K,
        WeightType::Q3_K | WeightType::Q3_Kx16 => DType::Q3_K,
        WeightType::Q4_K | WeightType::Q4_Kx16 => DType::Q4_K,
        WeightType::Q5_K | WeightType::Q5_Kx16 => DType::Q5_K,
        WeightType::Q6_K | WeightType::Q6_Kx16 => DType::Q6_K,
    }
}

/// Where a tensor's values come from.
enum Source<'a> {
    Matrix(&'a Weight),
    Vector(Vec<f32>),
}

/// The input mean squares of the matrix `kind` of `layer` ([`crate::importance`]), for the
/// types whose quantizer weighs its error by them (Q4_0).
fn column_importance(
    imp: &[importance::LayerImportance],
    kind: Kind,
    layer: usize,
) -> Option<&[f32]> {
    let l = imp.get(layer)?;
    Some(match kind {
        Kind::AttnQ | Kind::AttnK | Kind::AttnV => &l.attn_in,
        Kind::AttnOutput => &l.attn_out_in,
        Kind::FfnGate | Kind::FfnUp => &l.ffn_in,
        Kind::FfnDown => &l.down_in,
        _ => return None,
    })
}

/// Every tensor of the output in GGUF order, with its values and role.
fn tensors_of(m: &Llama) -> Vec<(String, Kind, usize, Source<'_>)> {
    let c = &m.config;
    let mut out = vec![(
        "token_embd.weight".to_string(),
        Kind::TokenEmbd,
        0,
        Source::Matrix(&m.tok_embeddings),
    )];
    if let Some(d) = rope_divisors(c) {
        out.push((
            "rope_freqs.weight".into(),
            Kind::Vector,
            0,
            Source::Vector(d),
        ));
    }
    out.push((
        "output_norm.weight".into(),
        Kind::Vector,
        0,
        Source::Vector(m.output_norm.clone()),
    ));
    if !c.tied_embeddings {
        out.push((
            "output.weight".into(),
            Kind::Output,
            0,
            Source::Matrix(&m.output),
        ));
    }
    for (l, w) in m.layers.iter().enumerate() {
        let b = |s: &str| format!("blk.{l}.{s}.weight");
        out.push((
            b("attn_norm"),
            Kind::Vector,
            l,
            Source::Vector(w.attn_norm.clone()),
        ));
        out.push((b("attn_q"), Kind::AttnQ, l, Source::Matrix(&w.wq)));
        out.push((b("attn_k"), Kind::AttnK, l, Source::Matrix(&w.wk)));
        out.push((b("attn_v"), Kind::AttnV, l, Source::Matrix(&w.wv)));
        out.push((b("attn_output"), Kind::AttnOutput, l, Source::Matrix(&w.wo)));
        out.push((
            b("ffn_norm"),
            Kind::Vector,
            l,
            Source::Vector(w.ffn_norm.clone()),
        ));
        out.push((b("ffn_gate"), Kind::FfnGate, l, Source::Matrix(&w.w_gate)));
        out.push((b("ffn_down"), Kind::FfnDown, l, Source::Matrix(&w.w_down)));
        out.push((b("ffn_up"), Kind::FfnUp, l, Source::Matrix(&w.w_up)));
    }
    out
}

/// Per-frequency divisors for a `rope_freqs` tensor when the scaling is not a plain factor
/// (Llama 3.1's, or one read from a GGUF `rope_freqs`).
fn rope_divisors(c: &LlamaConfig) -> Option<Vec<f32>> {
    match &c.rope_scaling {
        RopeScaling::Divisors(d) => Some(d.clone()),
        RopeScaling::Llama3 { .. } => {
            let base = kernels::rope_inv_freqs(c.head_dim, c.rope_theta, None).inv_freq;
            let scaled = c.rope_freqs().inv_freq;
            Some(base.iter().zip(&scaled).map(|(b, s)| b / s).collect())
        }
        RopeScaling::None | RopeScaling::Linear { .. } => None,
    }
}

/// Rows converted per step when a matrix changes type (bounds the `f32` buffer).
const ROWS_PER_STEP_VALUES: usize = 1 << 22;

/// The bytes of `w` as `ty`: its own bytes when the type is unchanged, else every row decoded
/// to `f32` and encoded again, a slice of rows at a time.
fn convert(w: &Weight, ty: WeightType, importance: Option<&[f32]>) -> Vec<u8> {
    let v = w.view();
    if w.ty == ty {
        return v.bytes.to_vec();
    }
    let in_row = w.ty.row_bytes(w.n_cols);
    let out_row = ty.row_bytes(w.n_cols);
    let mut out = vec![0u8; w.n_rows * out_row];
    let rows_per_step = (ROWS_PER_STEP_VALUES / w.n_cols.max(1)).max(1);
    let mut f = Vec::new();
    for (src, dst) in v
        .bytes
        .chunks(in_row * rows_per_step)
        .zip(out.chunks_mut(out_row * rows_per_step))
    {
        let rows = src.len() / in_row;
        f.resize(rows * w.n_cols, 0f32);
        for (s, d) in src.chunks_exact(in_row).zip(f.chunks_exact_mut(w.n_cols)) {
            kernels::dequantize(w.ty, s, d);
        }
        kernels::quantize_rows_fitted(ty, &f, w.n_cols, importance, dst);
    }
    out
}

fn str_array(items: impl IntoIterator<Item = String>) -> Value {
    Value::Array(items.into_iter().map(Value::Str).collect())
}

/// The `tokenizer.ggml.*` keys (and chat template) for a tokenizer herd can read.
fn tokenizer_keys(path: &Path, vocab_size: usize) -> Result<Vec<(String, Value)>> {
    let bad = |msg: String| EngineError::NoTokenizer {
        path: path.to_path_buf(),
        msg,
    };
    if !path.exists() {
        return Err(EngineError::NotFound {
            path: path.to_path_buf(),
        });
    }
    let mut keys: Vec<(String, Value)> = Vec::new();
    let k = |s: &str| format!("tokenizer.ggml.{s}");
    let id = |v: u32| Value::U32(v);
    let (file, dir) = if path.is_dir() {
        let model = path.join("tokenizer.model");
        let json = path.join("tokenizer.json");
        if model.is_file() {
            (model, path.to_path_buf())
        } else if json.is_file() {
            (json, path.to_path_buf())
        } else {
            return Err(bad(
                "directory holds neither tokenizer.model nor tokenizer.json".into(),
            ));
        }
    } else {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        (path.to_path_buf(), dir)
    };
    let head = read_prefix(&file, 8)?;
    if head.starts_with(b"GGUF") {
        let g = GgufFile::open(&file)?;
        let keys: Vec<_> = g
            .metadata
            .into_iter()
            .filter(|(k, _)| k.starts_with("tokenizer."))
            .collect();
        let n = keys
            .iter()
            .find(|(k, _)| k == "tokenizer.ggml.tokens")
            .and_then(|(_, v)| v.as_array())
            .map(<[Value]>::len);
        match n {
            None => return Err(bad("GGUF file has no tokenizer.ggml.tokens".into())),
            Some(n) if n > vocab_size => {
                return Err(bad(format!(
                    "tokenizer has {n} tokens, the model's vocabulary only {vocab_size}"
                )))
            }
            Some(_) => return Ok(keys),
        }
    }
    let first = head.iter().copied().find(|b| !b.is_ascii_whitespace());
    let (bos, eos, n);
    if first == Some(b'{') {
        let t = BpeTokenizer::from_tokenizer_json(&file)?;
        let v = t.vocab();
        if !v.byte_level {
            return Err(EngineError::NoTokenizer {
                path: file.clone(),
                msg: "not a byte-level BPE tokenizer; pass the SentencePiece tokenizer.model \
                      instead"
                    .into(),
            });
        }
        let pre = match v.pre {
            PreTokenizer::Llama3 => "llama-bpe",
            PreTokenizer::Gpt2 | PreTokenizer::Whole => "gpt2",
        };
        keys.push((k("model"), Value::Str("gpt2".into())));
        keys.push((k("pre"), Value::Str(pre.into())));
        keys.push((k("tokens"), str_array(v.tokens.iter().cloned())));
        keys.push((
            k("token_type"),
            Value::Array(v.kinds.iter().map(|t| Value::I32(t.code())).collect()),
        ));
        keys.push((
            k("merges"),
            str_array(v.merges.iter().map(|(a, b)| format!("{a} {b}"))),
        ));
        (bos, eos, n) = (v.bos, v.eos, v.tokens.len());
        if let Some(u) = v.unk {
            keys.push((k("unknown_token_id"), id(u)));
        }
    } else {
        let t = if head.first() == Some(&0x0a) {
            SpmTokenizer::from_model_file(&file)?
        } else {
            SpmTokenizer::from_llama2c_bin(&file, Some(vocab_size))?
        };
        let v = t.vocab();
        keys.push((k("model"), Value::Str("llama".into())));
        keys.push((k("tokens"), str_array(v.pieces.iter().cloned())));
        keys.push((
            k("scores"),
            Value::Array(v.scores.iter().map(|&s| Value::F32(s)).collect()),
        ));
        keys.push((
            k("token_type"),
            Value::Array(
                v.kinds
                    .iter()
                    .map(|t: &TokenKind| Value::I32(t.code()))
                    .collect(),
            ),
        ));
        if let Some(u) = v.unk {
            keys.push((k("unknown_token_id"), id(u)));
        }
        keys.push((k("add_space_prefix"), Value::Bool(v.add_dummy_prefix)));
        keys.push((
            k("remove_extra_whitespaces"),
            Value::Bool(v.remove_extra_whitespaces),
        ));
        (bos, eos, n) = (v.bos, v.eos, v.pieces.len());
    }
    if n > vocab_size {
        return Err(bad(format!(
            "tokenizer has {n} tokens, the model's vocabulary only {vocab_size}"
        )));
    }
    if let Some(b) = bos {
        keys.push((k("bos_token_id"), id(b)));
    }
    if let Some(e) = eos {
        keys.push((k("eos_token_id"), id(e)));
    }
    // tokenizer_config.json beside the tokenizer: BOS/EOS policy, padding, chat template.
    let cfg_path = dir.join("tokenizer_config.json");
    let cfg = if cfg_path.is_file() {
        Some(formats::hf::read_json(&cfg_path)?)
    } else {
        None
    };
    let flag = |key: &str| cfg.as_ref().and_then(|c| c.get(key)?.as_bool());
    keys.push((
        k("add_bos_token"),
        Value::Bool(flag("add_bos_token").unwrap_or(bos.is_some())),
    ));
    keys.push((
        k("add_eos_token"),
        Value::Bool(flag("add_eos_token").unwrap_or(false)),
    ));
    let mut template = None;
    if let Some(c) = &cfg {
        if let Some(t) = chat::from_tokenizer_config(c, &cfg_path.display().to_string())? {
            template = Some(t.source().to_string());
        }
    }
    let jinja = dir.join("chat_template.jinja");
    if jinja.is_file() {
        template =
            Some(std::fs::read_to_string(&jinja).map_err(|e| formats::FormatError::io(&jinja, e))?);
    }
    if let Some(t) = template {
        keys.push(("tokenizer.chat_template".into(), Value::Str(t)));
    }
    Ok(keys)
}

/// Where a non-GGUF checkpoint keeps its tokenizer, if anywhere.
fn own_tokenizer_path(format: ModelFormat, at: &Path) -> Option<PathBuf> {
    match format {
        ModelFormat::HfSafetensors | ModelFormat::MetaPth => {
            let has = at.join("tokenizer.model").is_file() || at.join("tokenizer.json").is_file();
            has.then(|| at.to_path_buf())
        }
        ModelFormat::Gguf | ModelFormat::Llama2c => None,
    }
}

/// The `llama.*` keys of `c`.
fn hparam_keys(c: &LlamaConfig) -> Vec<(String, Value)> {
    let u = |v: usize| Value::U32(v as u32);
    let mut keys = vec![
        ("llama.context_length", u(c.max_seq_len)),
        ("llama.embedding_length", u(c.dim)),
        ("llama.block_count", u(c.n_layers)),
        ("llama.feed_forward_length", u(c.hidden_dim)),
        ("llama.attention.head_count", u(c.n_heads)),
        ("llama.attention.head_count_kv", u(c.n_kv_heads)),
        ("llama.rope.dimension_count", u(c.head_dim)),
        ("llama.rope.freq_base", Value::F32(c.rope_theta)),
        (
            "llama.attention.layer_norm_rms_epsilon",
            Value::F32(c.norm_eps),
        ),
        ("llama.vocab_size", u(c.vocab_size)),
    ];
    if c.head_dim * c.n_heads != c.dim {
        keys.push(("llama.attention.key_length", u(c.head_dim)));
        keys.push(("llama.attention.value_length", u(c.head_dim)));
    }
    if let RopeScaling::Linear { factor } = c.rope_scaling {
        keys.push(("llama.rope.scaling.type", Value::Str("linear".into())));
        keys.push(("llama.rope.scaling.factor", Value::F32(factor)));
    }
    keys.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// Keys a GGUF input's metadata loses: the ones this writer sets anew.
fn replaced_key(k: &str) -> bool {
    matches!(k, "general.file_type" | "general.quantization_version")
}

/// Quantizes the model at `input` (any format herd loads) into a GGUF file at `output` of
/// type `q`, with the tokenizer at `tokenizer` (else the one the checkpoint carries). Writes
/// `output` + ".tmp" and renames it at the end; `on_event` hears about progress.
pub fn quantize(
    input: &Path,
    output: &Path,
    q: QuantType,
    tokenizer: Option<&Path>,
    on_event: &mut dyn FnMut(QuantizeEvent),
) -> Result<QuantizeReport> {
    let (model, format, at) = load_model(input)?;
    let c = &model.config;

    // Metadata.
    let mut meta: Vec<(String, Value)> = Vec::new();
    let mut has_tokenizer = false;
    if format == ModelFormat::Gguf {
        let g = GgufFile::open(&at)?;
        for (k, v) in g.metadata {
            if replaced_key(&k) || (tokenizer.is_some() && k.starts_with("tokenizer.")) {
                continue;
            }
            has_tokenizer |= k.starts_with("tokenizer.ggml.");
            // The reader accepts any integer type here; GGUF's own is u32.
            let v = match (k.as_str(), v.as_u64().and_then(|a| u32::try_from(a).ok())) {
                ("general.alignment", Some(a)) => Value::U32(a),
                _ => v,
            };
            meta.push((k, v));
        }
    } else {
        let name = input
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into());
        meta.push(("general.architecture".into(), Value::Str("llama".into())));
        meta.push(("general.name".into(), Value::Str(name)));
        meta.extend(hparam_keys(c));
    }
    meta.push(("general.file_type".into(), Value::U32(q.file_type())));
    meta.push(("general.quantization_version".into(), Value::U32(2)));
    let tok_path = tokenizer
        .map(Path::to_path_buf)
        .or_else(|| own_tokenizer_path(format, &at));
    if let Some(p) = &tok_path {
        meta.extend(tokenizer_keys(p, c.vocab_size)?);
        has_tokenizer = true;
    }
    if !has_tokenizer {
        on_event(QuantizeEvent::Note(format!(
            "{}: no tokenizer found; the output has none (pass --tokenizer)",
            input.display()
        )));
    }

    // Tensor plan.
    let sources = tensors_of(&model);
    let mut specs = Vec::with_capacity(sources.len());
    let mut planned = Vec::with_capacity(sources.len());
    for (name, kind, layer, src) in &sources {
        let (shape, n_cols) = match src {
            Source::Matrix(w) => (vec![w.n_rows, w.n_cols], w.n_cols),
            Source::Vector(v) => (vec![v.len()], v.len()),
        };
        let (ty, note) = tensor_type(q, *kind, *layer, c, name, n_cols);
        if let Some(n) = note {
            on_event(QuantizeEvent::Note(n));
        }
        specs.push(TensorSpec::new(name.clone(), dtype_of(ty), shape.clone()));
        planned.push(PlannedTensor {
            name: name.clone(),
            shape,
            ty,
        });
    }
    let total: u64 = planned
        .iter()
        .map(|t| {
            (t.shape.iter().product::<usize>() / t.ty.block_elems() * t.ty.block_bytes()) as u64
        })
        .sum();
    on_event(QuantizeEvent::Start {
        n_tensors: planned.len(),
        total_bytes: total,
    });

    // Column importance, for the quantizers that use it.
    let converts_to_q4_0 = planned.iter().zip(&sources).any(|(t, (_, _, _, src))| {
        t.ty == WeightType::Q4_0 && matches!(src, Source::Matrix(m) if m.ty != t.ty)
    });
    let imp = if converts_to_q4_0 {
        importance::estimate(&model)
    } else {
        Vec::new()
    };

    // Data.
    let mut tmp_name = output.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let file = std::fs::File::create(&tmp).map_err(|e| formats::FormatError::io(&tmp, e))?;
    let result = (|| -> Result<()> {
        let mut w = GgufWriter::new(BufWriter::with_capacity(1 << 20, file), &tmp, meta, specs)?;
        for (index, ((name, kind, layer, src), plan)) in sources.iter().zip(&planned).enumerate() {
            let bytes = match src {
                Source::Matrix(m) => convert(m, plan.ty, column_importance(&imp, *kind, *layer)),
                Source::Vector(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            };
            w.write_tensor(&bytes)?;
            on_event(QuantizeEvent::Wrote {
                index,
                name: name.clone(),
                ty: plan.ty,
                bytes: bytes.len() as u64,
            });
        }
        let out = w.finish()?;
        let file = out
            .into_inner()
            .map_err(|e| formats::FormatError::io(&tmp, e.into_error()))?;
        file.sync_all()
            .map_err(|e| formats::FormatError::io(&tmp, e))?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, output).map_err(|e| formats::FormatError::io(output, e))?;
    let file_bytes = std::fs::metadata(output)
        .map_err(|e| formats::FormatError::io(output, e))?
        .len();
    Ok(QuantizeReport {
        format,
        tensors: planned,
        file_bytes,
        has_tokenizer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(n_layers: usize, n_heads: usize, n_kv: usize) -> LlamaConfig {
        LlamaConfig {
            dim: 4096,
            n_layers,
            n_heads,
            n_kv_heads: n_kv,
            head_dim: 128,
            hidden_dim: 11008,
            vocab_size: 32000,
            norm_eps: 1e-5,
            rope_theta: 10000.0,
            rope_scaling: RopeScaling::None,
            max_seq_len: 4096,
            tied_embeddings: false,
        }
    }

    fn ty(q: QuantType, kind: Kind, layer: usize, c: &LlamaConfig, cols: usize) -> WeightType {
        tensor_type(q, kind, layer, c, "t", cols).0
    }

    #[test]
    fn names_parse_and_round_trip() {
        for &(n, t) in QUANT_TYPE_NAMES {
            assert_eq!(QuantType::parse(n).unwrap(), t);
            assert_eq!(QuantType::parse(&n.to_uppercase()).unwrap(), t);
            assert_eq!(t.name(), n);
        }
        let e = QuantType::parse("q4_k_x").unwrap_err().to_string();
        assert!(
            e.contains("unknown quantization type 'q4_k_x'") && e.contains("q4_k_m"),
            "{e}"
        );
    }

    #[test]
    fn use_more_bits_matches_the_layer_pattern() {
        // 32 layers: 0..4, 28..32, and 4 + 3k + 2.
        let picked: Vec<usize> = (0..32).filter(|&i| use_more_bits(i, 32)).collect();
        assert_eq!(
            picked,
            [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]
        );
    }

    #[test]
    fn mixes_follow_the_per_tensor_rules() {
        let c = config(32, 32, 32);
        use Kind::*;
        use QuantType::*;
        use WeightType as W;
        assert_eq!(ty(Q4KM, Output, 0, &c, 4096), W::Q6_K);
        assert_eq!(ty(Q4_0, Output, 0, &c, 4096), W::Q6_K);
        assert_eq!(ty(Q8_0, Output, 0, &c, 4096), W::Q8_0);
        assert_eq!(ty(Q4KM, TokenEmbd, 0, &c, 4096), W::Q4_K);
        assert_eq!(ty(Q4KM, AttnV, 0, &c, 4096), W::Q6_K);
        assert_eq!(ty(Q4KM, AttnV, 4, &c, 4096), W::Q4_K);
        assert_eq!(ty(Q4KM, FfnDown, 6, &c, 11008), W::Q6_K);
        assert_eq!(ty(Q4KM, FfnDown, 7, &c, 11008), W::Q4_K);
        assert_eq!(ty(Q4KM, AttnQ, 0, &c, 4096), W::Q4_K);
        assert_eq!(ty(Q4KS, AttnV, 3, &c, 4096), W::Q5_K);
        assert_eq!(ty(Q4KS, AttnV, 4, &c, 4096), W::Q4_K);
        assert_eq!(ty(Q4KS, FfnDown, 3, &c, 11008), W::Q5_K);
        assert_eq!(ty(Q4KS, FfnDown, 4, &c, 11008), W::Q4_K);
        assert_eq!(ty(Q5KM, AttnV, 31, &c, 4096), W::Q6_K);
        assert_eq!(ty(Q5KS, AttnV, 31, &c, 4096), W::Q5_K);
        assert_eq!(ty(Q3KM, AttnV, 1, &c, 4096), W::Q5_K);
        assert_eq!(ty(Q3KM, AttnV, 2, &c, 4096), W::Q4_K);
        assert_eq!(ty(Q3KM, FfnDown, 1, &c, 11008), W::Q5_K);
        assert_eq!(ty(Q3KM, FfnDown, 2, &c, 11008), W::Q4_K);
        assert_eq!(ty(Q3KM, AttnOutput, 9, &c, 4096), W::Q4_K);
        assert_eq!(ty(Q3KM, FfnUp, 9, &c, 4096), W::Q3_K);
        assert_eq!(ty(Q2KMix, AttnV, 9, &c, 4096), W::Q3_K);
        assert_eq!(ty(Q2KMix, FfnDown, 9, &c, 11008), W::Q3_K);
        assert_eq!(ty(Q2KMix, AttnOutput, 9, &c, 4096), W::Q3_K);
        assert_eq!(ty(Q2KMix, FfnGate, 9, &c, 4096), W::Q2_K);
        // Grouped-query attention with 4+ query heads per KV head: attn_v gets Q4_K.
        let gqa = config(32, 32, 8);
        assert_eq!(ty(Q2KMix, AttnV, 9, &gqa, 4096), W::Q4_K);
        // Single-type K-quants and float types apply no rules.
        assert_eq!(ty(Q4K, Output, 0, &c, 4096), W::Q4_K);
        assert_eq!(ty(Q4K, AttnV, 0, &c, 4096), W::Q4_K);
        assert_eq!(ty(F16, Output, 0, &c, 4096), W::F16);
        assert_eq!(ty(F16, Vector, 0, &c, 4096), W::F32);
        // 70B (80 layers): attn_v Q4_K becomes Q5_K.
        let big = config(80, 64, 8);
        assert_eq!(ty(Q4KM, AttnV, 11, &big, 8192), W::Q5_K);
    }

    #[test]
    fn tied_embeddings_and_odd_rows_fall_back() {
        let mut c = config(5, 8, 4);
        c.tied_embeddings = true;
        use Kind::*;
        use QuantType::*;
        use WeightType as W;
        // Tied: the embedding is the output; 64-wide rows are not whole 256 blocks → Q8_0.
        assert_eq!(ty(Q4_0, TokenEmbd, 0, &c, 64), W::Q8_0);
        assert_eq!(ty(Q4KM, TokenEmbd, 0, &c, 4096), W::Q6_K);
        // Rows of 172 (not a multiple of 32): F16 with a note.
        let (t, note) = tensor_type(Q8_0, FfnDown, 0, &c, "blk.0.ffn_down.weight", 172);
        assert_eq!(t, W::F16);
        let note = note.unwrap();
        assert!(
            note.contains("blk.0.ffn_down.weight") && note.contains("F16"),
            "{note}"
        );
        assert_eq!(ty(Q4_0, FfnDown, 0, &c, 172), W::F16);
        // Rows of 64 under K-quants: the 32-block fallbacks.
        assert_eq!(ty(Q4K, AttnQ, 0, &c, 64), W::Q8_0);
        assert_eq!(ty(Q2KMix, FfnGate, 0, &c, 64), W::Q4_0);
        assert_eq!(ty(Q6K, AttnQ, 0, &c, 64), W::Q8_0);
        assert_eq!(tensor_type(Q4K, AttnQ, 0, &c, "x", 4096).1, None);
    }

    /// The tokenizer keys written for `path`, read back through a GGUF file as herd reads any
    /// GGUF vocabulary, encode like the tokenizer loaded from `path` itself.
    fn tokenizer_round_trip(path: &Path, vocab_size: usize, text: &str) {
        let keys = tokenizer_keys(path, vocab_size).unwrap();
        let dir = std::env::temp_dir().join(format!("herd-tok-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(format!(
            "{}.gguf",
            path.file_name().unwrap().to_string_lossy()
        ));
        let w =
            GgufWriter::new(std::fs::File::create(&file).unwrap(), &file, keys, vec![]).unwrap();
        w.finish().unwrap();
        let from_gguf = crate::gguf_tokenizer(&GgufFile::open(&file).unwrap())
            .unwrap()
            .unwrap();
        let direct = crate::load_tokenizer(path, Some(vocab_size)).unwrap();
        assert_eq!(from_gguf.vocab_size(), direct.vocab_size());
        assert_eq!(from_gguf.bos(), direct.bos());
        assert_eq!(from_gguf.eos(), direct.eos());
        for opts in [false, true] {
            let a = from_gguf.encode(text, opts);
            assert_eq!(a, direct.encode(text, opts), "{}", path.display());
            assert!(a.len() > 10);
        }
        std::fs::remove_file(&file).ok();
        std::fs::remove_dir(&dir).ok();
    }

    #[test]
    fn tokenizers_survive_the_trip_through_gguf_keys() {
        let text = "Hello world!  It's 2024; naïve café — 東京 <s> <|eot_id|>\n\tend";
        let fx = testdata::fixtures().join("tokenizers");
        tokenizer_round_trip(&fx.join("bpe"), 4500, text);
        let Some(d) = testdata::shared_data("tokenizers_survive_the_trip_through_gguf_keys") else {
            return;
        };
        tokenizer_round_trip(&d.join("llama2-tokenizer/tokenizer.model"), 32000, text);
        tokenizer_round_trip(&d.join("stories260K/tok512.model"), 512, text);
        tokenizer_round_trip(&d.join("stories260K/tok512.bin"), 512, text);
    }
}
