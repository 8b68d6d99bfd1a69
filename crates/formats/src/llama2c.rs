//! llama2.c checkpoints: the legacy `.bin` layout (version 0) and export v1 (magic "ak42").
//!
//! Legacy: 7 little-endian `i32` (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
//! seq_len; a negative vocab_size means the classifier is not shared with the embedding), then
//! f32 arrays: token embedding, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3 (each stacked over
//! layers), rms_final, two unused RoPE tables (seq_len * head_size / 2 floats each), and the
//! classifier when unshared.
//!
//! Export v1: `u32` magic 0x616b3432, `i32` version 1, the same 7 `i32`, a `u8` shared-classifier
//! flag, zero padding to 256 bytes, then f32 arrays: attention norms, ffn norms, final norm, token
//! embedding, wq, wk, wv, wo, w1, w2, w3 (each stacked over layers), and the classifier when
//! unshared.
//!
//! Tensors are handed out under Meta's names, one per layer, as zero-copy ranges of the map.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::{map_file, DType, FormatError, Result, Storage, Tensor};

/// Magic of llama2.c export v1 and later, read as a little-endian `u32`.
pub const AK42_MAGIC: u32 = 0x616b_3432;
/// Bytes of the legacy header (7 `i32`).
const LEGACY_HEADER_BYTES: usize = 28;
/// Bytes of the export v1 header (magic, version, 7 `i32`, flag, padding).
const V1_HEADER_BYTES: usize = 256;
const F32_BYTES: usize = 4;

// Plausibility bounds used only to sniff legacy files, whose header has no magic.
const SNIFF_MAX_DIM: i32 = 1 << 16;
const SNIFF_MAX_HIDDEN: i32 = 1 << 18;
const SNIFF_MAX_LAYERS: i32 = 1 << 10;
const SNIFF_MAX_HEADS: i32 = 1 << 10;
const SNIFF_MAX_VOCAB: i32 = 1 << 22;
const SNIFF_MAX_SEQ: i32 = 1 << 24;

/// Hyperparameters from a llama2.c header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Llama2cHeader {
    /// 0 for the legacy layout, 1 for export v1 ("ak42").
    pub version: u32,
    pub dim: usize,
    pub hidden_dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub vocab_size: usize,
    pub seq_len: usize,
    /// The classifier is the token embedding (no `output.weight` in the file).
    pub shared_classifier: bool,
}

impl Llama2cHeader {
    /// `dim / n_heads`.
    pub fn head_size(&self) -> usize {
        self.dim / self.n_heads
    }
    /// `n_kv_heads * head_size`.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_size()
    }
}

/// An opened llama2.c checkpoint: its header and its tensors under Meta's names.
#[derive(Debug, Clone)]
pub struct Llama2cFile {
    pub path: PathBuf,
    pub header: Llama2cHeader,
    pub tensors: Vec<Tensor>,
}

fn i32_at(bytes: &[u8], at: usize) -> Option<i32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// True when `bytes_prefix` (the first bytes of a file, at least 28 for legacy files) looks like a
/// llama2.c checkpoint: the "ak42" magic, or 7 plausible legacy header fields.
pub fn looks_like_llama2c(bytes_prefix: &[u8]) -> bool {
    if let Some(magic) = i32_at(bytes_prefix, 0) {
        if magic as u32 == AK42_MAGIC {
            return true;
        }
    }
    let mut f = [0i32; 7];
    for (i, v) in f.iter_mut().enumerate() {
        match i32_at(bytes_prefix, i * 4) {
            Some(x) => *v = x,
            None => return false,
        }
    }
    let [dim, hidden, n_layers, n_heads, n_kv_heads, vocab, seq_len] = f;
    let in_range = |v: i32, max: i32| v > 0 && v <= max;
    in_range(dim, SNIFF_MAX_DIM)
        && in_range(hidden, SNIFF_MAX_HIDDEN)
        && in_range(n_layers, SNIFF_MAX_LAYERS)
        && in_range(n_heads, SNIFF_MAX_HEADS)
        && in_range(n_kv_heads, n_heads)
        && vocab != 0
        && vocab != i32::MIN
        && vocab.abs() <= SNIFF_MAX_VOCAB
        && in_range(seq_len, SNIFF_MAX_SEQ)
        && dim % n_heads == 0
        && n_heads % n_kv_heads == 0
}

/// Opens a llama2.c checkpoint (legacy or export v1), checking the header against the file size
/// before any tensor is sliced.
pub fn open(path: &Path) -> Result<Llama2cFile> {
    let map = map_file(path)?;
    let bytes: &[u8] = &map;
    let magic = i32_at(bytes, 0).ok_or_else(|| {
        FormatError::corrupt(
            path,
            "header",
            format!(
                "file is {} bytes, too short for a llama2.c header",
                bytes.len()
            ),
        )
    })?;
    let (header, data_start) = if magic as u32 == AK42_MAGIC {
        (read_v1_header(path, bytes)?, V1_HEADER_BYTES)
    } else {
        (read_legacy_header(path, bytes)?, LEGACY_HEADER_BYTES)
    };
    let layout = Layout::new(path, &header, data_start)?;
    if layout.end > bytes.len() {
        return Err(too_short(path, &layout, bytes.len()));
    }
    if header.version == 1 && layout.end < bytes.len() {
        return Err(FormatError::corrupt(
            path,
            "size",
            format!(
                "file is {} bytes but the header describes {} bytes ({} trailing bytes; is the \
                 shared_classifier flag right?)",
                bytes.len(),
                layout.end,
                bytes.len() - layout.end
            ),
        ));
    }
    let tensors = layout.tensors(path, &header, &map)?;
    Ok(Llama2cFile {
        path: path.to_path_buf(),
        header,
        tensors,
    })
}

fn read_fields(path: &Path, bytes: &[u8], at: usize) -> Result<[i32; 7]> {
    let mut f = [0i32; 7];
    for (i, v) in f.iter_mut().enumerate() {
        *v = i32_at(bytes, at + i * 4).ok_or_else(|| {
            FormatError::corrupt(
                path,
                "header",
                format!(
                    "file is {} bytes, too short for a llama2.c header",
                    bytes.len()
                ),
            )
        })?;
    }
    Ok(f)
}

fn read_legacy_header(path: &Path, bytes: &[u8]) -> Result<Llama2cHeader> {
    let f = read_fields(path, bytes, 0)?;
    let vocab = f[5];
    if vocab == 0 {
        return Err(FormatError::corrupt(path, "vocab_size", "vocab_size is 0"));
    }
    let mut fields = f;
    fields[5] = i32::try_from(vocab.unsigned_abs()).map_err(|_| {
        FormatError::corrupt(
            path,
            "vocab_size",
            format!("vocab_size {vocab} is out of range"),
        )
    })?;
    check_header(path, 0, fields, vocab > 0)
}

fn read_v1_header(path: &Path, bytes: &[u8]) -> Result<Llama2cHeader> {
    if bytes.len() < V1_HEADER_BYTES {
        return Err(FormatError::corrupt(
            path,
            "header",
            format!(
                "file is {} bytes, too short for the {V1_HEADER_BYTES}-byte export v1 header",
                bytes.len()
            ),
        ));
    }
    let version = i32_at(bytes, 4).unwrap_or_default();
    match version {
        1 => {}
        2 => {
            return Err(FormatError::unsupported(
                path,
                "llama2.c export version 2 (int8 quantized) is not supported",
            ))
        }
        v => {
            return Err(FormatError::unsupported(
                path,
                format!("llama2.c export version {v} is not supported (expected 1)"),
            ))
        }
    }
    let fields = read_fields(path, bytes, 8)?;
    let shared = match bytes[36] {
        0 => false,
        1 => true,
        b => {
            return Err(FormatError::corrupt(
                path,
                "shared_classifier",
                format!("flag is {b}, expected 0 or 1"),
            ))
        }
    };
    check_header(path, 1, fields, shared)
}

fn check_header(path: &Path, version: u32, f: [i32; 7], shared: bool) -> Result<Llama2cHeader> {
    const NAMES: [&str; 7] = [
        "dim",
        "hidden_dim",
        "n_layers",
        "n_heads",
        "n_kv_heads",
        "vocab_size",
        "seq_len",
    ];
    let mut u = [0usize; 7];
    for i in 0..7 {
        if f[i] <= 0 {
            return Err(FormatError::corrupt(
                path,
                NAMES[i],
                format!("{} is {}, must be positive", NAMES[i], f[i]),
            ));
        }
        u[i] = f[i] as usize;
    }
    let [dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len] = u;
    if dim % n_heads != 0 {
        return Err(FormatError::corrupt(
            path,
            "n_heads",
            format!("dim {dim} is not a multiple of n_heads {n_heads}"),
        ));
    }
    if n_kv_heads > n_heads || n_heads % n_kv_heads != 0 {
        return Err(FormatError::corrupt(
            path,
            "n_kv_heads",
            format!("n_heads {n_heads} is not a multiple of n_kv_heads {n_kv_heads}"),
        ));
    }
    Ok(Llama2cHeader {
        version,
        dim,
        hidden_dim,
        n_layers,
        n_heads,
        n_kv_heads,
        vocab_size,
        seq_len,
        shared_classifier: shared,
    })
}

/// One array of the file, in file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    TokEmbeddings,
    AttentionNorm,
    Wq,
    Wk,
    Wv,
    Wo,
    FfnNorm,
    W1,
    W2,
    W3,
    Norm,
    /// The unused RoPE tables of legacy files (skipped).
    FreqCis,
    Output,
}

impl Part {
    fn stacked(self) -> bool {
        !matches!(
            self,
            Part::TokEmbeddings | Part::Norm | Part::FreqCis | Part::Output
        )
    }
    /// The tensor name, with `{i}` the layer for stacked parts.
    fn name(self, layer: usize) -> String {
        let suffix = match self {
            Part::TokEmbeddings => return "tok_embeddings.weight".into(),
            Part::Norm => return "norm.weight".into(),
            Part::Output => return "output.weight".into(),
            Part::FreqCis => return "freq_cis_real/freq_cis_imag".into(),
            Part::AttentionNorm => "attention_norm.weight",
            Part::Wq => "attention.wq.weight",
            Part::Wk => "attention.wk.weight",
            Part::Wv => "attention.wv.weight",
            Part::Wo => "attention.wo.weight",
            Part::FfnNorm => "ffn_norm.weight",
            Part::W1 => "feed_forward.w1.weight",
            Part::W2 => "feed_forward.w2.weight",
            Part::W3 => "feed_forward.w3.weight",
        };
        format!("layers.{layer}.{suffix}")
    }
    fn shape(self, h: &Llama2cHeader) -> Vec<usize> {
        let q_dim = h.n_heads * h.head_size();
        match self {
            Part::TokEmbeddings | Part::Output => vec![h.vocab_size, h.dim],
            Part::AttentionNorm | Part::FfnNorm | Part::Norm => vec![h.dim],
            Part::Wq => vec![q_dim, h.dim],
            Part::Wk | Part::Wv => vec![h.kv_dim(), h.dim],
            Part::Wo => vec![h.dim, q_dim],
            Part::W1 | Part::W3 => vec![h.hidden_dim, h.dim],
            Part::W2 => vec![h.dim, h.hidden_dim],
            // Two tables of seq_len * head_size / 2 floats, as llama2.c computes it.
            Part::FreqCis => vec![2, h.seq_len.saturating_mul(h.head_size()) / 2],
        }
    }
}

/// Byte placement of every part, computed with checked arithmetic.
struct Layout {
    /// (part, start byte, bytes per layer or in all for unstacked parts, count of copies).
    parts: Vec<(Part, usize, usize, usize)>,
    end: usize,
}

impl Layout {
    fn new(path: &Path, h: &Llama2cHeader, data_start: usize) -> Result<Layout> {
        use Part::*;
        let mut order: Vec<Part> = if h.version == 0 {
            vec![
                TokEmbeddings,
                AttentionNorm,
                Wq,
                Wk,
                Wv,
                Wo,
                FfnNorm,
                W1,
                W2,
                W3,
                Norm,
                FreqCis,
            ]
        } else {
            vec![
                AttentionNorm,
                FfnNorm,
                Norm,
                TokEmbeddings,
                Wq,
                Wk,
                Wv,
                Wo,
                W1,
                W2,
                W3,
            ]
        };
        if !h.shared_classifier {
            order.push(Output);
        }
        let overflow = |part: Part| {
            FormatError::corrupt(
                path,
                "size",
                format!("byte size of '{}' overflows (header: {h:?})", part.name(0)),
            )
        };
        let mut at = data_start;
        let mut parts = Vec::with_capacity(order.len());
        for part in order {
            let shape = part.shape(h);
            let elems = shape
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .ok_or_else(|| overflow(part))?;
            let one = elems.checked_mul(F32_BYTES).ok_or_else(|| overflow(part))?;
            let count = if part.stacked() { h.n_layers } else { 1 };
            let all = one.checked_mul(count).ok_or_else(|| overflow(part))?;
            parts.push((part, at, one, count));
            at = at.checked_add(all).ok_or_else(|| overflow(part))?;
        }
        Ok(Layout { parts, end: at })
    }

    fn tensors(
        &self,
        path: &Path,
        h: &Llama2cHeader,
        map: &Arc<memmap2::Mmap>,
    ) -> Result<Vec<Tensor>> {
        let find = |p: Part| self.parts.iter().find(|e| e.0 == p).map(|e| (e.1, e.2));
        let mut out = Vec::with_capacity(h.n_layers * 9 + 3);
        let mut push = |part: Part, layer: usize| -> Result<()> {
            let Some((start, one)) = find(part) else {
                return Ok(());
            };
            // In bounds: the layout end was checked against the map length.
            let begin = start + layer * one;
            let storage = Storage::mapped(map.clone(), begin..begin + one);
            let t = Tensor::new(part.name(layer), DType::F32, part.shape(h), storage)
                .map_err(|msg| FormatError::bad_tensor(path, part.name(layer), msg))?;
            out.push(t);
            Ok(())
        };
        push(Part::TokEmbeddings, 0)?;
        for layer in 0..h.n_layers {
            for part in [
                Part::AttentionNorm,
                Part::Wq,
                Part::Wk,
                Part::Wv,
                Part::Wo,
                Part::FfnNorm,
                Part::W1,
                Part::W2,
                Part::W3,
            ] {
                push(part, layer)?;
            }
        }
        push(Part::Norm, 0)?;
        push(Part::Output, 0)?;
        Ok(out)
    }
}

/// The error for a file shorter than its header implies, naming the first tensor cut off.
fn too_short(path: &Path, layout: &Layout, len: usize) -> FormatError {
    let mut what = String::from("header");
    for &(part, start, one, count) in &layout.parts {
        let end = start + one * count;
        if end > len {
            let layer = len.saturating_sub(start).checked_div(one).unwrap_or(0);
            let begin = start + layer * one;
            what = format!(
                "tensor '{}' (bytes {}..{}) does not fit",
                part.name(layer),
                begin,
                begin + one
            );
            break;
        }
    }
    FormatError::corrupt(
        path,
        "size",
        format!(
            "file is {len} bytes but the header needs {} bytes; {what}",
            layout.end
        ),
    )
}
